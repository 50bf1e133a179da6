"""Fault injection on real releases: kill -9 of ansible-playbook at seeded random moments, Prometheus
stopped during the analysis, the API server restarted during a step, two runs on one Canary at once,
and the secrets a -vvv run must not print.

Every release goes through the canary role with ansible-playbook, as a ServiceAccount bound to the
shipped ClusterRole, on the session's real control plane and Prometheus, with the traffic emulator
serving the app. `make chaos` runs every try; `make test` runs the first few (see conftest.tries).
"""

import contextlib
import os
import random
import signal
import subprocess
import tempfile
import time

import pytest
import yaml
from kubernetes import client

import emulator
import sample_app
from ansible_runner import ansible_bin, ansible_env, run_playbook
from chaos_budget import tries
from helpers import wait_for
from pdworld import new_namespace

APP = sample_app.APP
GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"
FAULTY = {"errorRate": 0.2}
# Two weight steps of 2 s: a whole run takes ~15 s on the 2-core test machine.
SPEC = sample_app.canary_spec("istio", interval="2s", step_weight=25, max_weight=50, threshold=2)
KILL_SEEDS = list(range(1, 1 + tries(4, 50)))
# kill -9 lands uniformly in this window after the playbook starts: from before the first task
# to past the end of a typical run (a run that already ended is a try of "killed after the end").
KILL_WINDOW = (0.2, 20.0)


# --------------------------------------------------------------------------- helpers

def canary(api_client, namespace):
    return client.CustomObjectsApi(api_client).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, APP)


def routed_canary_weight(api_client, namespace):
    """The canary's weight as the VirtualService routes it (0 when the route is absent)."""
    vs = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "virtualservices", APP)
    weight = 0
    for route in vs["spec"].get("http") or []:
        for dest in route.get("route") or []:
            if dest["destination"]["host"].split(".")[0] == APP + "-canary":
                weight = max(weight, dest.get("weight", 0))
        if (route.get("mirror") or {}).get("host", "").split(".")[0] == APP + "-canary":
            weight = max(weight, 1)
    return weight


def role_vars(world, runner_kubeconfig, namespace, tmp_path, **extra):
    result = {"canary_name": APP, "canary_namespace": namespace,
              "canary_auth": {"kubeconfig": runner_kubeconfig},
              "canary_metrics_source": {"type": "prometheus", "address": world.prometheus_url},
              "canary_report_dir": str(tmp_path), "canary_spec": SPEC}
    result.update(extra)
    return result


def plays(variables):
    return [{"name": "release", "hosts": "localhost", "gather_facts": False,
             "roles": [{"role": "progressive.delivery.canary", "vars": variables}]}]


class Background(object):
    """ansible-playbook in its own process group, to be killed with -9 like a lost AWX node."""

    def __init__(self, variables, extra_args=()):
        handle = tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False)
        with handle:
            yaml.safe_dump(plays(variables), handle)
        self.path = handle.name
        self.out = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [ansible_bin("ansible-playbook"), "-i", "localhost,", "-c", "local", self.path] + list(extra_args),
            env=ansible_env(), stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.finish(timeout=30)

    def finish(self, timeout=600):
        try:
            self.proc.wait(timeout=timeout)
        finally:
            os.unlink(self.path)
        self.out.seek(0)
        output = self.out.read()
        self.out.close()
        return self.proc.returncode, output


@contextlib.contextmanager
def release_under_way(world, api_client, runner_kubeconfig, stage, version, until, what):
    """Releases ``version`` with a job in the background and yields it once ``until(status)`` holds;
    a job still running when the block ends is killed."""
    namespace = stage["namespace"]
    sample_app.release(api_client, namespace, version)
    run = Background(role_vars(world, runner_kubeconfig, namespace, stage["tmp_path"]))
    try:
        wait_for(lambda: until(canary(api_client, namespace).get("status") or {}), timeout=120, message=what)
        yield run
    finally:
        if run.proc.poll() is None:
            run.kill()


def has_traffic(status):
    return status.get("canaryWeight", 0) > 0


def release(world, runner_kubeconfig, namespace, tmp_path, **extra):
    rc, out, err = run_playbook(plays(role_vars(world, runner_kubeconfig, namespace, tmp_path, **extra)),
                                timeout=900)
    return rc, out + err


def image_version(api_client, namespace, name):
    dep = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    return dep.spec.template.spec.containers[0].image.rsplit(":", 1)[1], dep


def settled_state(api_client, namespace):
    """Where a release ended: ('promoted'|'rolled back'|..., primary version), with the invariants
    every end state must hold checked (primary serving all traffic, canary scaled to zero, no lock)."""
    status = canary(api_client, namespace).get("status") or {}
    primary_version, primary = image_version(api_client, namespace, APP + "-primary")
    _target_version, target = image_version(api_client, namespace, APP)
    problems = []
    if status.get("lock"):
        problems.append("lock still held by %s" % status["lock"].get("holder"))
    if routed_canary_weight(api_client, namespace) != 0:
        problems.append("router still sends traffic to the canary")
    if target.spec.replicas != 0:
        problems.append("canary not scaled to zero (%s replicas)" % target.spec.replicas)
    if not (primary.status.ready_replicas or 0) >= 1:
        problems.append("primary has no ready replica")
    outcome = {"Succeeded": "promoted", "Failed": "rolled back"}.get(status.get("phase"),
                                                                     "phase %s" % status.get("phase"))
    return outcome, primary_version, problems


def traffic_record_problem(api_client, namespace):
    """Canary traffic with nobody watching is allowed only with the run's record in the status."""
    weight = routed_canary_weight(api_client, namespace)
    if weight == 0:
        return None
    status = canary(api_client, namespace).get("status") or {}
    if status.get("phase") in ("Progressing", "WaitingPromotion", "Promoting", "Finalising") and status.get("lock"):
        return None
    return "canary routed %d%% but status is phase=%s lock=%s" % (weight, status.get("phase"), status.get("lock"))


@pytest.fixture(scope="module")
def stage(world, api_client, canary_crd, runner_kubeconfig, tmp_path_factory):
    """One namespace, its traffic and an initialised Canary, shared by the tries of this module:
    each try starts from wherever the previous one left the app, as a team's next release would."""
    if not world.targets_dir or not world.local:
        pytest.skip("fault injection needs the project's own local control plane and Prometheus")
    core = client.CoreV1Api(api_client)
    name = new_namespace(api_client, "chaos-%d" % int(time.time()), {"progressive.delivery/test": "true"})
    tmp_path = tmp_path_factory.mktemp("chaos")
    with emulator.Emulator(api_client=api_client, apps=[(name, APP)], rps=50, seed=11,
                           targets_dir=world.targets_dir) as emu:
        sample_app.release(api_client, name, "7.0.0")
        rc, out = release(world, runner_kubeconfig, name, tmp_path)
        assert rc == 0, out
        yield {"namespace": name, "tmp_path": tmp_path, "emulator": emu, "good": "7.0.0"}
    try:
        core.delete_namespace(name)
    except Exception:
        pass


# --------------------------------------------------------------------------- kill -9

@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_kill_9_at_a_random_moment_then_run_again(world, api_client, runner_kubeconfig, stage, ledger, seed):
    rng = random.Random(seed)
    namespace, tmp_path = stage["namespace"], stage["tmp_path"]
    faulty = rng.random() < 0.35
    version = "7.%d.%d" % (seed, 1 if faulty else 0)
    delay = rng.uniform(*KILL_WINDOW)
    sample_app.release(api_client, namespace, version, fault=FAULTY if faulty else None)

    run = Background(role_vars(world, runner_kubeconfig, namespace, tmp_path))
    time.sleep(delay)
    still_running = run.proc.poll() is None
    run.kill()
    problems = []
    after_kill = traffic_record_problem(api_client, namespace)
    if after_kill:
        problems.append("after the kill: " + after_kill)
    killed_status = canary(api_client, namespace).get("status") or {}

    rc, out = release(world, runner_kubeconfig, namespace, tmp_path)
    outcome, primary_version, end_problems = settled_state(api_client, namespace)
    problems.extend(end_problems)
    expected = ("rolled back", stage["good"]) if faulty else ("promoted", version)
    if (outcome, primary_version) != expected:
        problems.append("ended %s with primary %s, expected %s with %s" % ((outcome, primary_version) + expected))
    if (rc == 0) != (outcome == "promoted") and killed_status.get("phase") not in ("Failed", "Succeeded"):
        problems.append("second run's exit code %d does not match %s" % (rc, outcome))
    if not faulty and outcome == "promoted":
        stage["good"] = version
    label = "%s release, killed %s at %.1fs (%s, %s%%)" % (
        "faulty" if faulty else "good", "mid-run" if still_running else "after the end", delay,
        killed_status.get("phase"), killed_status.get("canaryWeight", 0))
    ledger.record("kill -9 ansible-playbook, run again", outcome + (" (faulty)" if faulty else ""),
                  ok=not problems, detail=label + ("; " + "; ".join(problems) if problems else ""))
    assert not problems, "%s\n%s" % (label, "\n".join(problems) + "\n" + out[-4000:])


# --------------------------------------------------------------------------- Prometheus down

@pytest.mark.parametrize("attempt", range(tries(1, 5)))
def test_prometheus_stopped_during_the_analysis_rolls_back(world, api_client, runner_kubeconfig, stage, ledger,
                                                           attempt):
    namespace = stage["namespace"]
    try:
        with release_under_way(world, api_client, runner_kubeconfig, stage, "8.%d.0" % attempt, has_traffic,
                               "the canary's first weight step") as run:
            world.cluster.stop_component("prometheus")
            rc, out = run.finish(timeout=300)
    finally:
        world.cluster.start_component("prometheus")
    outcome, primary_version, problems = settled_state(api_client, namespace)
    if outcome != "rolled back" or primary_version != stage["good"]:
        problems.append("ended %s with primary %s" % (outcome, primary_version))
    if rc == 0:
        problems.append("the job succeeded although its metrics were unreadable")
    history = (canary(api_client, namespace).get("status") or {}).get("gateHistory") or []
    if not any(entry.get("rollback") for entry in history[-2:]):
        problems.append("the gate that reached the threshold did not move the traffic itself (no rollback mark)")
    reason = (canary(api_client, namespace).get("status") or {}).get("message", "")
    ledger.record("Prometheus killed during the analysis", outcome, ok=not problems,
                  detail="; ".join(problems) or reason[:200])
    assert not problems, "\n".join(problems) + "\n" + out[-4000:]


# --------------------------------------------------------------------------- API server restart

@pytest.mark.parametrize("attempt", range(tries(1, 5)))
def test_api_server_restarted_during_a_step(world, api_client, runner_kubeconfig, stage, ledger, attempt):
    namespace, tmp_path = stage["namespace"], stage["tmp_path"]
    try:
        with release_under_way(world, api_client, runner_kubeconfig, stage, "9.%d.0" % attempt, has_traffic,
                               "the canary's first weight step") as run:
            time.sleep(random.Random(attempt).uniform(0, 2))
            world.cluster.stop_component("kube-apiserver")
            time.sleep(1)
            world.cluster.start_component("kube-apiserver")
            rc, out = run.finish(timeout=300)
    finally:
        world.cluster.start_component("kube-apiserver")
    first = "completed" if rc == 0 else "failed"
    problems = []
    if rc != 0:
        # Failing is allowed; failing dirtily is not: the next run must settle the release.
        rc2, out2 = release(world, runner_kubeconfig, namespace, tmp_path)
        out += out2
        first += ", next run settled it"
    outcome, primary_version, end_problems = settled_state(api_client, namespace)
    problems.extend(end_problems)
    if outcome == "promoted":
        stage["good"] = primary_version
    if outcome not in ("promoted", "rolled back"):
        problems.append("ended in %s" % outcome)
    ledger.record("kube-apiserver restarted during a step", "%s, %s" % (first, outcome), ok=not problems,
                  detail="; ".join(problems))
    assert not problems, "\n".join(problems) + "\n" + out[-4000:]


# --------------------------------------------------------------------------- two runs at once

@pytest.mark.parametrize("attempt", range(tries(1, 3)))
def test_a_second_run_on_the_same_canary_is_refused(world, api_client, runner_kubeconfig, stage, ledger, attempt):
    namespace, tmp_path = stage["namespace"], stage["tmp_path"]
    version = "10.%d.0" % attempt
    with release_under_way(world, api_client, runner_kubeconfig, stage, version,
                           lambda status: (status.get("lock") or {}).get("holder"), "the first run's lock") as first:
        holder = canary(api_client, namespace)["status"]["lock"]["holder"]
        rc2, out2 = release(world, runner_kubeconfig, namespace, tmp_path)
        rc1, out1 = first.finish(timeout=300)
    problems = []
    if rc2 == 0:
        problems.append("the second run was not refused")
    if holder not in out2:
        problems.append("the refusal does not name the holder %s" % holder)
    outcome, primary_version, end_problems = settled_state(api_client, namespace)
    problems.extend(end_problems)
    if rc1 != 0 or (outcome, primary_version) != ("promoted", version):
        problems.append("the first run was disturbed: rc %d, %s with %s" % (rc1, outcome, primary_version))
    else:
        stage["good"] = version
    ledger.record("second run on a Canary being released", "second refused, first %s" % outcome,
                  ok=not problems, detail="; ".join(problems))
    assert not problems, "\n".join(problems) + "\n" + out2[-3000:] + "\n" + out1[-3000:]


# --------------------------------------------------------------------------- secrets in -vvv

def test_a_vvv_run_prints_no_token_password_or_webhook_url(world, api_client, runner_kubeconfig, stage, ledger):
    namespace, tmp_path = stage["namespace"], stage["tmp_path"]
    with open(runner_kubeconfig) as handle:
        kubeconfig = yaml.safe_load(handle)
    token = kubeconfig["users"][0]["user"]["token"]
    cluster = kubeconfig["clusters"][0]["cluster"]
    ca_path = os.path.join(str(tmp_path), "ca.crt")
    if "certificate-authority-data" in cluster:
        import base64
        with open(ca_path, "wb") as handle:
            handle.write(base64.b64decode(cluster["certificate-authority-data"]))
    else:
        ca_path = cluster["certificate-authority"]
    password = "pr0m-Secret-%d" % random.Random(5).randint(10 ** 6, 10 ** 7)
    webhook = "http://127.0.0.1:9/services/T0SECRET/B0SECRET/xoxbSecretWebhookPath"
    hook_url = "http://127.0.0.1:9/hooks/confidential-hook-path"
    spec = dict(SPEC, analysis=dict(SPEC["analysis"], webhooks=[
        {"name": "notify", "type": "post-rollout", "url": hook_url, "timeout": "1s"}]))
    sample_app.release(api_client, namespace, "11.0.0")
    variables = role_vars(world, runner_kubeconfig, namespace, tmp_path,
                          canary_spec=spec,
                          canary_auth={"host": cluster["server"], "api_key": token, "ca_cert": ca_path},
                          canary_metrics_source={"type": "prometheus", "address": world.prometheus_url,
                                                 "username": "reader", "password": password},
                          canary_alert_providers=[{"type": "slack", "url": webhook, "severity": "info"}])
    run = Background(variables, extra_args=["-vvv"])
    rc, out = run.finish(timeout=600)
    (tmp_path / "vvv.log").write_text(out)
    leaks = [name for name, secret in (("token", token), ("password", password), ("alert webhook URL", webhook),
                                       ("hook URL", hook_url), ("webhook path", "xoxbSecretWebhookPath"))
             if secret in out]
    outcome, primary_version, problems = settled_state(api_client, namespace)
    if outcome == "promoted":
        stage["good"] = primary_version
    ledger.record("-vvv output of a full run", "leaks: %s" % (", ".join(leaks) or "none"), ok=not leaks,
                  detail="%d lines, run %s" % (out.count("\n"), outcome))
    assert rc == 0 and outcome == "promoted", out[-4000:]
    assert "<truncated>" not in out and out.count("\n") > 200  # a real -vvv log, not an empty one
    context = [line[:300] for line in out.splitlines()
               if any(secret in line for secret in (token, password, webhook, hook_url))]
    assert not leaks, "secrets in -vvv output: %s\n%s" % (leaks, "\n".join(context[:10]))
