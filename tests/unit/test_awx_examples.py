"""The AWX example set and the execution environment stay in step with the collection.

- examples/awx/survey.json asks for the canary role's options, with their types, required flags and
  defaults (roles/canary/meta/argument_specs.yml); the options it leaves out are left out on purpose.
- ansible-builder accepts the collection's meta/execution-environment.yml (introspect) and the users'
  examples/execution-environment.yml (create: a build context, no container runtime needed).
"""

import json
import os
import shutil
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Options a survey cannot carry well: credentials come from the inventory or an AWX credential,
# list options from a survey textarea would reach the role as a string, hook task files are paths
# of the project, not answers.
NOT_IN_SURVEY = {"canary_auth", "canary_metrics", "canary_watch_metrics", "canary_alert_providers", "canary_hook_tasks"}
# Role defaults that are templates: a survey answer is never templated, so the survey has its own.
TEMPLATED_DEFAULTS = {"canary_report_dir"}
# Play variables of playbooks/multicluster.yml the survey also asks for.
PLAY_VARIABLES = {"pd_rollback_promoted"}
SURVEY_TYPES = {"str": {"text", "textarea"}, "path": {"text"}, "bool": {"multiplechoice"},
                "dict": {"textarea"}, "int": {"integer"}, "float": {"float"}}


def _load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return json.load(handle) if parts[-1].endswith(".json") else yaml.safe_load(handle)


def _answer(question, option_type):
    """The value the role receives for the survey's default answer."""
    default = question.get("default", "")
    if option_type == "dict":
        return json.loads(default)
    if option_type == "float":
        return float(default)
    if option_type == "bool":
        return {"true": True, "false": False}[default]
    return default


def test_survey_mirrors_the_role_argument_specs():
    options = _load("roles", "canary", "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    survey = _load("examples", "awx", "survey.json")
    questions = {question["variable"]: question for question in survey["spec"]}
    assert len(questions) == len(survey["spec"]), "a variable is asked twice"

    role_questions = set(questions) - PLAY_VARIABLES
    assert role_questions == set(options) - NOT_IN_SURVEY, "survey and argument specs differ"
    for name in sorted(role_questions):
        option, question = options[name], questions[name]
        assert question["type"] in SURVEY_TYPES[option["type"]], (name, option["type"], question["type"])
        assert question["required"] == option.get("required", False), name
        if question["type"] == "multiplechoice":
            assert question["default"] in question["choices"], name
        if name not in TEMPLATED_DEFAULTS and not option.get("required"):
            assert _answer(question, option["type"]) == option["default"], name


def test_examples_are_valid_yaml_and_name_real_files():
    inventory = _load("examples", "awx", "inventory", "clusters.yml")
    hosts = inventory["all"]["children"]["pd_clusters"]["hosts"]
    assert set(inventory["all"]["children"]["pd_canary_wave"]["hosts"]) <= set(hosts)
    assert all("canary_auth" in host for host in hosts.values())
    config = _load("examples", "awx", "awx_config.yml")
    playbooks = [task["awx.awx.job_template"]["playbook"] for task in config[0]["tasks"]
                 if "awx.awx.job_template" in task]
    for playbook in playbooks:
        assert os.path.isfile(os.path.join(REPO, playbook)), playbook


def _ansible_builder():
    # requirements-dev.txt installs it: a missing builder is a broken set-up, not a reason to skip.
    for candidate in (os.path.join(os.path.dirname(sys.executable), "ansible-builder"), shutil.which("ansible-builder")):
        if candidate and os.path.isfile(candidate):
            return candidate
    raise AssertionError("ansible-builder is not installed; run make venv (requirements-dev.txt pins it)")


def test_ansible_builder_introspect_accepts_the_collection(tmp_path):
    builder = _ansible_builder()
    namespace_dir = tmp_path / "ansible_collections" / "progressive"
    namespace_dir.mkdir(parents=True)
    os.symlink(REPO, str(namespace_dir / "delivery"))
    proc = subprocess.run([builder, "introspect", str(tmp_path)], capture_output=True, text=True, check=False,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = yaml.safe_load(proc.stdout)
    python = [line.split("#")[0].strip() for line in data["python"]]
    system = [line.split("#")[0].strip() for line in data["system"]]
    assert {"kubernetes>=24.2.0", "requests>=2.28.0", "jmespath>=1.0.0"} <= set(python), proc.stdout
    assert "python3 [platform:rpm platform:dpkg]" in system, proc.stdout
    assert all("from collection progressive.delivery" in line for line in data["python"] + data["system"])


def test_ansible_builder_creates_a_context_from_the_example(tmp_path):
    builder = _ansible_builder()
    context = tmp_path / "context"
    proc = subprocess.run([builder, "create", "-f", os.path.join(REPO, "examples", "execution-environment.yml"),
                           "--context", str(context)], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Containerfile for podman, Dockerfile for docker: whichever runtime ansible-builder found.
    containerfile = next((context / name).read_text() for name in ("Containerfile", "Dockerfile")
                         if (context / name).exists())
    assert "ansible-galaxy" in containerfile or "install-from-bindep" in containerfile
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert {"name": "progressive.delivery"} in requirements["collections"]
