"""The release end to end: ansible-playbook runs the canary role on the local world.

Real API server, real Prometheus, and the traffic emulator standing in for the data plane:
a good version is promoted, a faulty one (20% errors) is rolled back and the job fails.
"""

import json
import os
import threading
import http.server

import pytest
from kubernetes import client

import emulator
import sample_app
from ansible_runner import run_playbook
from helpers import wait_for

APP = sample_app.APP
GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"
FAULTY = {"errorRate": 0.2}


@pytest.fixture
def traffic(world, api_client, namespace, canary_crd):
    if not world.targets_dir:
        pytest.skip("end-to-end runs need a Prometheus scraping the emulator (PD_TEST_PROMETHEUS_TARGETS_DIR)")
    with emulator.Emulator(api_client=api_client, apps=[(namespace, APP)], rps=50, seed=7,
                           targets_dir=world.targets_dir) as emu:
        yield emu


def release(world, runner_kubeconfig, namespace, spec=None, extra_vars=None, tmp_path=None, manifest=None):
    """One ansible-playbook run of the role; returns (rc, stdout)."""
    role_vars = {"canary_name": APP, "canary_namespace": namespace,
                 "canary_auth": {"kubeconfig": runner_kubeconfig},
                 "canary_metrics_source": {"type": "prometheus", "address": world.prometheus_url},
                 "canary_report_dir": str(tmp_path or "/tmp")}
    if spec is not None:
        role_vars["canary_spec"] = spec
    if manifest is not None:
        role_vars["canary_manifest"] = manifest
    role_vars.update(extra_vars or {})
    plays = [{"name": "release", "hosts": "localhost", "gather_facts": False,
              "roles": [{"role": "progressive.delivery.canary", "vars": role_vars}]}]
    rc, out, err = run_playbook(plays, timeout=900)
    return rc, out + err


def canary(api_client, namespace):
    return client.CustomObjectsApi(api_client).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, APP)


def image_of(api_client, namespace, name):
    dep = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    return dep.spec.template.spec.containers[0].image, dep.spec.replicas


def assert_promoted(api_client, namespace, version):
    status = canary(api_client, namespace)["status"]
    assert status["phase"] == "Succeeded", status
    assert image_of(api_client, namespace, APP + "-primary")[0].endswith(":" + version)
    assert image_of(api_client, namespace, APP)[1] == 0
    assert status.get("lock") is None


def assert_rolled_back(api_client, namespace, primary_version):
    status = canary(api_client, namespace)["status"]
    assert status["phase"] == "Failed", status
    assert status["canaryWeight"] == 0 and status.get("lock") is None
    assert image_of(api_client, namespace, APP + "-primary")[0].endswith(":" + primary_version)
    assert image_of(api_client, namespace, APP)[1] == 0
    assert any(entry["verdict"] == "fail" for entry in status["gateHistory"])


def bootstrap(world, api_client, runner_kubeconfig, namespace, spec, tmp_path, replicas=2):
    sample_app.release(api_client, namespace, "6.7.0", replicas=replicas)
    if spec.get("provider") == "nginx":
        sample_app.ingress(api_client, namespace)
    rc, out = release(world, runner_kubeconfig, namespace, spec, tmp_path=tmp_path)
    assert rc == 0, out
    assert canary(api_client, namespace)["status"]["phase"] == "Initialized"


@pytest.mark.parametrize("provider", ["istio", "gatewayapi", "smi", "nginx", "kubernetes"])
def test_good_release_is_promoted_and_faulty_one_rolled_back(world, api_client, runner_kubeconfig, namespace,
                                                             traffic, tmp_path, provider):
    replicas = 4 if provider == "kubernetes" else 2
    spec = sample_app.canary_spec(provider)
    bootstrap(world, api_client, runner_kubeconfig, namespace, spec, tmp_path, replicas=replicas)

    sample_app.release(api_client, namespace, "6.7.1", replicas=replicas)
    rc, out = release(world, runner_kubeconfig, namespace, tmp_path=tmp_path)
    assert rc == 0, out
    assert_promoted(api_client, namespace, "6.7.1")
    assert "step 2/2 weight 50%" in out  # the progress line of each step

    sample_app.release(api_client, namespace, "6.7.2", fault=FAULTY, replicas=replicas)
    rc, out = release(world, runner_kubeconfig, namespace, tmp_path=tmp_path)
    assert rc != 0, out
    assert "rolled back" in out
    assert_rolled_back(api_client, namespace, "6.7.1")
    # The faulty version served real (emulated) users before the rollback, and none after it.
    stats = traffic.stats(namespace, APP)
    assert any(":6.7.2" in version for version in stats["by_version"]), stats["by_version"].keys()
    reports = [name for name in os.listdir(str(tmp_path)) if name.endswith(".html")]
    assert reports, "no report written"
    rolled = max((os.path.join(str(tmp_path), name) for name in reports), key=os.path.getmtime)
    with open(rolled) as handle:
        html = handle.read()
    assert "ROLLED BACK" in html and "request-success-rate" in html and "<polyline" in html


def test_ab_blue_green_and_mirroring_runs(world, api_client, runner_kubeconfig, namespace, traffic, tmp_path):
    spec = sample_app.canary_spec("istio", iterations=2,
                                  match=[{"headers": {"x-canary": {"exact": "insider"}}}])
    bootstrap(world, api_client, runner_kubeconfig, namespace, spec, tmp_path)
    sample_app.release(api_client, namespace, "7.0.0")
    rc, out = release(world, runner_kubeconfig, namespace, tmp_path=tmp_path)
    assert rc == 0, out
    assert "iteration 2/2 (ab)" in out
    assert_promoted(api_client, namespace, "7.0.0")

    # Blue/green without mirroring sees canary traffic only from a load tester, as with Flagger.
    traffic.remove_app(namespace, APP)
    traffic.add_app(namespace, APP, loadtest_fraction=0.1)
    for strategy, extra in (("bluegreen", {}), ("bluegreen-mirror", {"mirror": True})):
        blue_green = sample_app.canary_spec("istio", iterations=2, **extra)
        rc, out = release(world, runner_kubeconfig, namespace, blue_green, tmp_path=tmp_path)
        assert rc == 0, out  # the spec change alone is no new revision
        version = "7.1.0" if strategy == "bluegreen" else "7.2.0"
        sample_app.release(api_client, namespace, version)
        rc, out = release(world, runner_kubeconfig, namespace, tmp_path=tmp_path)
        assert rc == 0, out
        assert "iteration 2/2 (%s)" % strategy in out
        assert_promoted(api_client, namespace, version)


class _Receiver(object):
    """A local webhook receiver: records every request, answers what the test says."""

    def __init__(self):
        self.requests = []
        self.answers = {}
        receiver = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                receiver.requests.append((self.path, body))
                code = receiver.answers.get(self.path, 200)
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self):
        return [path for path, _body in self.requests]


@pytest.fixture
def receiver():
    rec = _Receiver()
    yield rec
    rec.server.shutdown()


def test_hooks_gate_promotion_and_force_rollback_and_alerts_arrive(world, api_client, runner_kubeconfig, namespace,
                                                                   traffic, tmp_path, receiver):
    hooks = [{"name": "gate", "type": "confirm-promotion", "url": receiver.url + "/gate"},
             {"name": "smoke", "type": "rollout", "url": receiver.url + "/rollout"},
             {"name": "abort", "type": "rollback", "url": receiver.url + "/rollback"}]
    spec = sample_app.canary_spec("istio", webhooks=hooks)
    bootstrap(world, api_client, runner_kubeconfig, namespace, spec, tmp_path)
    receiver.answers.update({"/gate": 403, "/rollback": 403})
    alerts = {"canary_alert_providers": [{"type": "slack", "url": receiver.url + "/slack", "severity": "info"}]}

    sample_app.release(api_client, namespace, "8.0.0")

    # The confirm-promotion gate holds the run; a thread opens it once the run has asked a few times.
    def _open_gate():
        wait_for(lambda: receiver.paths().count("/gate") >= 2, timeout=300, message="the gate to be asked twice")
        receiver.answers["/gate"] = 200
    opener = threading.Thread(target=_open_gate, daemon=True)
    opener.start()
    rc, out = release(world, runner_kubeconfig, namespace, extra_vars=alerts, tmp_path=tmp_path)
    opener.join(5)
    assert rc == 0, out
    assert_promoted(api_client, namespace, "8.0.0")
    gate_payloads = [body for path, body in receiver.requests if path == "/gate"]
    assert gate_payloads[0]["type"] == "confirm-promotion" and gate_payloads[0]["name"] == APP
    assert gate_payloads[0]["namespace"] == namespace and gate_payloads[0]["checksum"]
    assert "/rollout" in receiver.paths() and "/slack" in receiver.paths()
    assert receiver.url not in out  # webhook URLs never reach the job output

    receiver.answers["/rollback"] = 200
    sample_app.release(api_client, namespace, "8.0.1")
    rc, out = release(world, runner_kubeconfig, namespace, extra_vars=alerts, tmp_path=tmp_path)
    assert rc != 0, out
    assert "rollback webhook" in out
    assert_rolled_back_without_metric_failure(api_client, namespace, "8.0.0")


def assert_rolled_back_without_metric_failure(api_client, namespace, primary_version):
    status = canary(api_client, namespace)["status"]
    assert status["phase"] == "Failed" and status["canaryWeight"] == 0, status
    assert image_of(api_client, namespace, APP + "-primary")[0].endswith(":" + primary_version)


def test_a_flagger_manifest_runs_through_the_role(world, api_client, runner_kubeconfig, namespace, traffic,
                                                  tmp_path):
    import yaml
    sample_app.release(api_client, namespace, "6.7.0")
    manifest = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                "metadata": {"name": APP, "namespace": namespace},
                "spec": {"provider": "istio",
                         "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                         "progressDeadlineSeconds": 60,
                         "service": {"port": 9898, "targetPort": 9898, "gateways": ["public-gateway"],
                                     "hosts": ["app.example.com"]},
                         "analysis": {"interval": "3s", "threshold": 2, "maxWeight": 50, "stepWeight": 25,
                                      "metrics": [{"name": "request-success-rate", "interval": "10s",
                                                   "thresholdRange": {"min": 99}},
                                                  {"name": "request-duration", "interval": "10s",
                                                   "thresholdRange": {"max": 500}}]}}}
    path = tmp_path / "podinfo-canary.yaml"
    path.write_text(yaml.safe_dump(manifest))
    rc, out = release(world, runner_kubeconfig, namespace, manifest=str(path), tmp_path=tmp_path)
    assert rc == 0, out
    sample_app.release(api_client, namespace, "6.7.1")
    rc, out = release(world, runner_kubeconfig, namespace, manifest=str(path), tmp_path=tmp_path)
    assert rc == 0, out
    assert_promoted(api_client, namespace, "6.7.1")
    vs = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "virtualservices", APP)
    # As Flagger does, the mesh-internal apex name is routed too, beside the manifest's public host.
    assert vs["spec"]["hosts"] == ["app.example.com", APP] and vs["spec"]["gateways"] == ["public-gateway"]


def test_a_run_killed_between_steps_resumes_at_the_recorded_weight(world, api_client, runner_kubeconfig,
                                                                   namespace, traffic, tmp_path):
    spec = sample_app.canary_spec("istio", stepWeights=[10, 20, 30, 40])
    bootstrap(world, api_client, runner_kubeconfig, namespace, spec, tmp_path)
    sample_app.release(api_client, namespace, "9.0.0")
    # Start the run in the background and kill -9 the playbook once the weight reached 20%.
    import subprocess
    import signal
    import tempfile
    import yaml
    from ansible_runner import ansible_env, ansible_bin
    role_vars = {"canary_name": APP, "canary_namespace": namespace, "canary_auth": {"kubeconfig": runner_kubeconfig},
                 "canary_metrics_source": {"type": "prometheus", "address": world.prometheus_url},
                 "canary_report_dir": str(tmp_path)}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False,
                         "roles": [{"role": "progressive.delivery.canary", "vars": role_vars}]}], handle)
    proc = subprocess.Popen([ansible_bin("ansible-playbook"), "-i", "localhost,", "-c", "local", handle.name],
                            env=ansible_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(lambda: (canary(api_client, namespace).get("status") or {}).get("canaryWeight") == 20,
                 timeout=300, message="the run to reach 20%")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        os.unlink(handle.name)
    killed = canary(api_client, namespace)["status"]
    assert killed["phase"] == "Progressing" and killed["canaryWeight"] == 20 and killed["lock"]
    rc, out = release(world, runner_kubeconfig, namespace, tmp_path=tmp_path)
    assert rc == 0, out
    # The second run took the dead run's lock at once and did not start again from 10%.
    assert "step 1/3 weight 20%" in out and "weight 10%" not in out
    assert_promoted(api_client, namespace, "9.0.0")
