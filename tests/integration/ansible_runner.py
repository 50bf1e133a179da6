"""Runs the collection's modules the way users do: through ansible-playbook.

The collection is made visible to Ansible with a collections path that holds
``ansible_collections/progressive/delivery`` as a symlink to the repository.
"""

import json
import os
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "hack"))

from pdworld import collections_path  # noqa: E402  (dev tooling, not a package)


def ansible_env(extra=None):
    env = dict(os.environ)
    # Modules must not pick up the developer's own cluster by accident.
    for key in list(env):
        if key.startswith("K8S_AUTH_"):
            del env[key]
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    })
    env.update(extra or {})
    return env


def ansible_bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def run_playbook(plays, check=False, diff=False, env=None, extra_args=(), timeout=600):
    """Runs a playbook (list of plays); returns (returncode, stdout, stderr)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        yaml.safe_dump(plays, handle)
        path = handle.name
    try:
        argv = [ansible_bin("ansible-playbook"), "-i", "localhost,", "-c", "local", path]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        argv.extend(extra_args)
        proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(env), timeout=timeout,
                              check=False)
    finally:
        os.unlink(path)
    return proc.returncode, proc.stdout, proc.stderr


def run_module(module, args, check=False, diff=False, env=None):
    """Runs one module task on localhost and returns its result dict (``failed`` set on failure)."""
    fqcn = module if "." in module else "progressive.delivery." + module
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        # ansible-core has no JSON stdout callback of its own any more: the registered result
        # is written by a second task that runs even in check mode.
        plays = [{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "run", fqcn: args, "register": "result", "ignore_errors": True},
            {"name": "save", "ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": out},
             "check_mode": False, "diff": False}]}]
        _rc, stdout, stderr = run_playbook(plays, check=check, diff=diff, env=env)
        try:
            with open(out) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            raise AssertionError("no task result from ansible-playbook; stdout=%s stderr=%s"
                                 % (stdout[-3000:], stderr[-2000:]))


def run_modules(calls, check=False, diff=False, env=None):
    """Runs several independent module tasks in one playbook (one interpreter start-up for all).

    ``calls`` is a list of (module, args); returns their result dicts in the same order.
    """
    with tempfile.TemporaryDirectory() as tmp:
        tasks = []
        for index, (module, args) in enumerate(calls):
            fqcn = module if "." in module else "progressive.delivery." + module
            out = os.path.join(tmp, "result-%d.json" % index)
            tasks.append({"name": "run %d" % index, fqcn: args, "register": "result_%d" % index,
                          "ignore_errors": True})
            tasks.append({"name": "save %d" % index,
                          "ansible.builtin.copy": {"content": "{{ result_%d | to_json }}" % index, "dest": out},
                          "check_mode": False, "diff": False})
        _rc, stdout, stderr = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}],
                                           check=check, diff=diff, env=env)
        results = []
        for index in range(len(calls)):
            try:
                with open(os.path.join(tmp, "result-%d.json" % index)) as handle:
                    results.append(json.load(handle))
            except (OSError, ValueError):
                raise AssertionError("no result for task %d; stdout=%s stderr=%s"
                                     % (index, stdout[-3000:], stderr[-2000:]))
        return results
