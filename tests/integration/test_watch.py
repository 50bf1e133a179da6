"""Fast fail: the role's watch (metric_watch) on the local world, real Prometheus, emulated traffic.

* a canary with 20% errors at 10% of 50 req/s is rolled back within seconds of receiving traffic
  (the figure is printed and goes into docs/fast-fail.md; no timed assertion);
* a latency-only fault is caught by the histogram path;
* without traffic the watch decides nothing and the gate's no-data policy applies.
"""

import json
import threading
import time

import pytest
from kubernetes import client

import emulator
import sample_app
from ansible_runner import run_playbook
from helpers import wait_for

APP = sample_app.APP
GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"


def _canary(api_client, namespace):
    return client.CustomObjectsApi(api_client).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, APP)


def _release(world, runner_kubeconfig, namespace, tmp_path, spec=None, extra_vars=None):
    role_vars = {"canary_name": APP, "canary_namespace": namespace,
                 "canary_auth": {"kubeconfig": runner_kubeconfig},
                 "canary_metrics_source": {"type": "prometheus", "address": world.prometheus_url},
                 "canary_report_dir": str(tmp_path)}
    if spec is not None:
        role_vars["canary_spec"] = spec
    role_vars.update(extra_vars or {})
    plays = [{"name": "release", "hosts": "localhost", "gather_facts": False,
              "roles": [{"role": "progressive.delivery.canary", "vars": role_vars}]}]
    rc, out, err = run_playbook(plays, timeout=600)
    return rc, out + err


def _bootstrap(world, api_client, runner_kubeconfig, namespace, tmp_path, spec):
    sample_app.release(api_client, namespace, "6.7.0")
    rc, out = _release(world, runner_kubeconfig, namespace, tmp_path, spec)
    assert rc == 0, out


def _live_canary_weight(api_client, namespace):
    """The canary's weight in the Istio VirtualService: what the data plane (the emulator) follows."""
    service = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "virtualservices", APP)
    return sum(route.get("weight") or 0 for http in service["spec"].get("http") or []
               for route in http.get("route") or []
               if route["destination"]["host"].split(".")[0] == APP + "-canary")


class _WeightClock(object):
    """Polls the live route weight: when the canary first got traffic, when it was back at 0."""

    def __init__(self, api_client, namespace):
        self.api_client, self.namespace = api_client, namespace
        self.on = self.off = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                weight = _live_canary_weight(self.api_client, self.namespace)
            except Exception:  # pylint: disable=broad-except  # a missed poll only blurs the figure
                weight = None
            now = time.monotonic()
            if weight and self.on is None:
                self.on = now
            if weight == 0 and self.on is not None and self.off is None:
                self.off = now
            time.sleep(0.1)

    def close(self):
        self.stop.set()
        self.thread.join(5)


def _watch_entries(api_client, namespace):
    history = (_canary(api_client, namespace).get("status") or {}).get("gateHistory") or []
    return [entry for entry in history if entry["message"].startswith("watch:")]


@pytest.fixture
def traffic(world, api_client, namespace, canary_crd):
    if not world.targets_dir:
        pytest.skip("the watch needs a Prometheus scraping the emulator (PD_TEST_PROMETHEUS_TARGETS_DIR)")
    with emulator.Emulator(api_client=api_client, apps=[(namespace, APP)], rps=50, seed=9,
                           targets_dir=world.targets_dir) as emu:
        yield emu


@pytest.mark.parametrize("watch_interval", [5, 2])
def test_twenty_percent_errors_roll_back_within_seconds(world, api_client, runner_kubeconfig, namespace, traffic,
                                                        tmp_path, watch_interval):
    # Flagger's usual 1m interval and 10% steps: without the watch the first gate alone is a minute away.
    spec = sample_app.canary_spec("istio", interval="1m", step_weight=10, max_weight=50, threshold=5)
    _bootstrap(world, api_client, runner_kubeconfig, namespace, tmp_path, spec)
    sample_app.release(api_client, namespace, "6.7.2", fault={"errorRate": 0.2})
    clock = _WeightClock(api_client, namespace)
    began = time.monotonic()
    try:
        rc, out = _release(world, runner_kubeconfig, namespace, tmp_path,
                           extra_vars={"canary_watch_interval": watch_interval})
        wait_for(lambda: clock.off is not None, timeout=60, message="the canary weight back at 0")
    finally:
        clock.close()
    assert rc != 0, out
    status = _canary(api_client, namespace)["status"]
    assert status["phase"] == "Failed" and status["canaryWeight"] == 0, status
    entries = _watch_entries(api_client, namespace)
    assert entries, status.get("gateHistory")
    decided = [m for m in entries[-1]["metrics"] if m.get("watch") == "worse"]
    assert decided and decided[0]["name"] == "request-success-rate", entries[-1]
    # The watch moved the traffic itself before the rollback task ran, and its record says so.
    assert entries[-1].get("rollback") is True, entries[-1]
    print("\nwatch_interval %ss: 20%% errors at 10%% of 50 req/s: back at 0%% %.1f s after the canary got traffic "
          "(run started %.1f s before); decided after %ss on %s of %s requests failed, statistic %s >= %s"
          % (watch_interval, clock.off - clock.on, clock.on - began, decided[0]["decidedAfter"],
             decided[0]["failures"], decided[0]["total"], decided[0]["statistic"], decided[0]["upper"]))


def test_a_latency_fault_is_caught_by_the_histogram(world, api_client, runner_kubeconfig, namespace, traffic,
                                                    tmp_path):
    spec = sample_app.canary_spec("istio", interval="1m", step_weight=50, max_weight=50, threshold=5)
    _bootstrap(world, api_client, runner_kubeconfig, namespace, tmp_path, spec)
    sample_app.release(api_client, namespace, "6.7.3", fault={"latencyMs": {"p50": 40, "p99": 900}})
    began = time.monotonic()
    rc, out = _release(world, runner_kubeconfig, namespace, tmp_path, extra_vars={"canary_watch_interval": 2})
    took = time.monotonic() - began
    assert rc != 0, out
    entries = _watch_entries(api_client, namespace)
    assert entries, out
    decided = dict((m["name"], m) for m in entries[-1]["metrics"])
    assert decided["request-duration"]["watch"] == "worse", entries[-1]
    assert decided["request-success-rate"]["watch"] != "worse", entries[-1]
    print("\nlatency fault (p50 40 ms, p99 900 ms vs max 500 ms) at 50%%: decided after %ss on %s of %s requests "
          "above the %s ms bucket; run took %.1f s"
          % (decided["request-duration"]["decidedAfter"], decided["request-duration"]["failures"],
             decided["request-duration"]["total"], decided["request-duration"]["bucket"], took))


def test_without_traffic_the_watch_decides_nothing_and_the_no_data_policy_applies(world, api_client,
                                                                                  runner_kubeconfig, namespace,
                                                                                  canary_crd, tmp_path):
    spec = sample_app.canary_spec("istio", interval="1m", step_weight=10, max_weight=50, threshold=5)
    _bootstrap(world, api_client, runner_kubeconfig, namespace, tmp_path, spec)
    result_file = tmp_path / "result.json"
    common = {"name": APP, "namespace": namespace, "kubeconfig": runner_kubeconfig,
              "source": {"type": "prometheus", "address": world.prometheus_url}}
    tasks = [
        {"name": "watch", "progressive.delivery.metric_watch": dict(common, duration="6s", watch_interval=2),
         "register": "watched"},
        {"name": "gate", "progressive.delivery.metric_gate": dict(common, record=False, fail_on_threshold=False),
         "register": "gated"},
        {"name": "keep", "ansible.builtin.copy": {"content": "{{ {'watch': watched, 'gate': gated} | to_json }}",
                                                  "dest": str(result_file)}},
    ]
    rc, out, err = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], timeout=300)
    assert rc == 0, out + err
    result = json.loads(result_file.read_text())
    watch, gate = result["watch"], result["gate"]
    assert watch["decision"] == "undecided" and watch["polls"] == 3, watch
    assert all(m["total"] == 0 and m["decision"] == "undecided" for m in watch["metrics"]), watch["metrics"]
    # The gate's default no-data policy (fail, as Flagger) decides the step.
    assert gate["verdict"] == "fail", gate
    assert all(m["value"] is None and "no data" in m["message"] for m in gate["metrics"]), gate["metrics"]
    assert not _watch_entries(api_client, namespace)
