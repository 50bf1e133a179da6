"""metric_gate against the real Prometheus of the test world.

A small exporter in this process serves every router's native request metrics with known rates;
Prometheus scrapes it through the targets dir. For each router the canary side receives 100
requests/s of which 1 is a 5xx, with 50% under 10 ms, 90% under 25 ms and all under 50 ms
(success rate 99%, P99 = 25 + 25 * (0.99 - 0.9) / (1 - 0.9) = 47.5 ms); the primary side receives
100 requests/s without errors, all under 10 ms (100%, P99 = 9.9 ms). Counters grow linearly with
time from one clock reading per scrape, so Prometheus' rate() ratios are exact.

Modules run through ansible-playbook as the least-privilege ServiceAccount (the shipped
ClusterRole); the admin client only sets the scene and checks the Canary status.
"""

import json
import math
import os
import random
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from ansible_runner import collections_path, run_playbook
from helpers import wait_for
from pdworld import new_namespace

# The collection is imported the way Ansible sees it, through the runner's collections path.
if collections_path() not in sys.path:
    sys.path.insert(0, collections_path())

from ansible_collections.progressive.delivery.plugins.module_utils import _builtin_metrics, _canary, _gate  # noqa: E402
from ansible_collections.progressive.delivery.plugins.module_utils._metrics import make_source  # noqa: E402

GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"
TARGET = "app"
PORT = 80
ROUTERS = ("istio", "linkerd", "osm", "nginx", "gatewayapi", "kubernetes")
CANARY_PROFILE = {"ok": 99.0, "errors": 1.0, "buckets": ((10, 0.5), (25, 0.9), (50, 1.0))}
PRIMARY_PROFILE = {"ok": 100.0, "errors": 0.0, "buckets": ((10, 1.0), (25, 1.0), (50, 1.0))}
EXPECTED = {"canary": (99.0, 47.5), "primary": (100.0, 9.9)}


# ----------------------------------------------------------------------------- the exporter

def _router_series(router, namespace, side, workload):
    """(counter name, histogram name, seconds per unit, labels, status label, ok code, error code)."""
    canary = side == "canary"
    if router == "istio":
        labels = {"reporter": "destination", "destination_workload_namespace": namespace,
                  "destination_workload": workload}
        return "istio_requests_total", "istio_request_duration_milliseconds_bucket", 1, labels, "response_code", \
            "200", "500"
    if router == "linkerd":
        labels = {"namespace": namespace, "deployment": workload, "direction": "inbound"}
        return "response_total", "response_latency_ms_bucket", 1, labels, "classification", "success", "failure"
    if router == "osm":
        labels = {"destination_namespace": namespace, "destination_kind": "Deployment", "destination_name": workload}
        return "osm_request_total", "osm_request_duration_ms_bucket", 1, labels, "response_code", "200", "503"
    if router == "nginx":
        labels = {"namespace": namespace, "ingress": TARGET, "service": TARGET}
        if canary:
            labels["canary"] = "%s-%s-canary-%d" % (namespace, TARGET, PORT)
        return "nginx_ingress_controller_requests", "nginx_ingress_controller_request_duration_seconds_bucket", \
            0.001, labels, "status", "200", "502"
    if router == "gatewayapi":
        labels = {"envoy_cluster_name": "%s_%s-%s_%d" % (namespace, TARGET, side, PORT)}
        return "envoy_cluster_upstream_rq", "envoy_cluster_upstream_rq_time_bucket", 1, labels, \
            "envoy_response_code", "200", "503"
    pod = "%s-7d9f8c6b5-x2k4q" % TARGET if canary else "%s-primary-5c6d7e8f9-abcde" % TARGET
    labels = {"kubernetes_namespace": namespace, "kubernetes_pod_name": pod}
    return "http_request_duration_seconds_count", "http_request_duration_seconds_bucket", 0.001, labels, "status", \
        "200", "500"


def _build_series(namespace):
    """[(name, labels, rate per second)] for every router and side, plus the no-traffic app."""
    series = []
    for router in ROUTERS:
        for side, profile in (("canary", CANARY_PROFILE), ("primary", PRIMARY_PROFILE)):
            workload = TARGET if side == "canary" else TARGET + "-primary"
            counter, histogram, unit, labels, code_label, ok, error = _router_series(router, namespace, side, workload)
            for code, rate in ((ok, profile["ok"]), (error, profile["errors"])):
                series.append((counter, dict(labels, **{code_label: code}), rate))
            total = profile["ok"] + profile["errors"]
            for bound, fraction in profile["buckets"]:
                series.append((histogram, dict(labels, le="%g" % (bound * unit)), total * fraction))
            series.append((histogram, dict(labels, le="+Inf"), total))
    # An app whose series exist but never move: every rate is 0, so the success rate is 0/0.
    quiet = {"reporter": "destination", "destination_workload_namespace": namespace, "destination_workload": "quiet"}
    series.append(("istio_requests_total", dict(quiet, response_code="200"), 0.0))
    series.append(("istio_request_duration_milliseconds_bucket", dict(quiet, le="+Inf"), 0.0))
    return series


class Exporter(object):
    """Prometheus text format: counters that grow at known rates, and noisy latency gauges."""

    def __init__(self, namespace):
        self.series = _build_series(namespace)
        self.start = time.time()
        self.noise = {"primary": random.Random(11), "canary_same": random.Random(12), "canary_2x": random.Random(13)}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = owner.render().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def render(self):
        # One clock reading per scrape: all series move together, so rate ratios are exact.
        elapsed = time.time() - self.start
        lines = []
        for name, labels, rate in self.series:
            pairs = ",".join('%s="%s"' % item for item in sorted(labels.items()))
            # A large start keeps Prometheus' extrapolation away from the counter's zero point.
            lines.append("%s{%s} %.6f" % (name, pairs, rate * (100000.0 + elapsed)))
        factors = {"primary": 1.0, "canary_same": 1.0, "canary_2x": 2.0}
        for series, rng in sorted(self.noise.items()):
            value = factors[series] * rng.lognormvariate(math.log(100.0), 0.05)
            lines.append('pd_test_latency_ms{series="%s"} %.6f' % (series, value))
        return "\n".join(lines) + "\n"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class StoppableProxy(object):
    """A "Prometheus" that forwards to the real one until GET /__stop, then is gone (port closed)."""

    def __init__(self, upstream):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                if self.path == "/__stop":
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    threading.Thread(target=owner.close, daemon=True).start()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                request = urllib.request.Request(upstream + self.path, data=data, method=self.command)
                if self.headers.get("Content-Type"):
                    request.add_header("Content-Type", self.headers["Content-Type"])
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, body = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _forward
            do_POST = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self._closed = False
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        if not self._closed:
            self._closed = True
            self.server.shutdown()
            self.server.server_close()


class JsonEndpoint(object):
    """A JSON API for the generic http source."""

    def __init__(self, document):
        payload = json.dumps(document).encode("utf-8")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def gate_namespace(api_client, canary_crd):
    """One namespace for the module: the exporter's labels name it, so it must exist before scraping."""
    core = client.CoreV1Api(api_client)
    name = new_namespace(api_client, "gate-%s" % uuid.uuid4().hex[:8], {"progressive.delivery/test": "true"})
    yield name
    try:
        core.delete_namespace(name)
    except Exception:
        pass


@pytest.fixture(scope="module")
def exporter(world, gate_namespace):
    if not world.prometheus_url:
        pytest.skip("no Prometheus (set PD_TEST_PROMETHEUS_URL)")
    served = Exporter(gate_namespace)
    target_name = "metric-gate-%s" % gate_namespace
    path = world.add_scrape_target(target_name, served.address, {"suite": "metric_gate"})
    source = make_source({"address": world.prometheus_url, "retries": 1})

    def _scraped_twice():
        # Two samples in the window make rate() defined for every series.
        found = source.query('count_over_time(pd_test_latency_ms{series="primary", target_name="%s"}[10s])'
                             % target_name)
        return not hasattr(found, "reason") and found >= 3
    wait_for(_scraped_twice, timeout=60, interval=0.5, message="Prometheus to scrape the test exporter")
    yield served
    os.unlink(path)
    served.close()


def _canary_spec(provider="istio", metrics=None, threshold=1, metrics_server=None, **analysis):
    spec = {
        "provider": provider,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": TARGET},
        "service": {"port": PORT},
        "analysis": dict({"interval": "10s", "threshold": threshold, "stepWeight": 10,
                          "metrics": metrics if metrics is not None else []}, **analysis),
    }
    if provider == "nginx":
        spec["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": TARGET}
    if metrics_server:
        spec["metricsServer"] = metrics_server
    return spec


def _create_canary(api_client, namespace, name, spec, status=None):
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": "%s/%s" % (GROUP, VERSION), "kind": "Canary", "metadata": {"name": name}, "spec": spec})
    if status:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})


def _status(api_client, namespace, name):
    return client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name).get("status") or {}


def _run_tasks(tasks, kubeconfig, check=False):
    """Runs tasks (each registered as r<index>, errors ignored) in one play; returns their results."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        play_tasks = []
        for index, task in enumerate(tasks):
            play_tasks.append(dict(task, register="r%d" % index, ignore_errors=True))
        saved = "{{ {%s} | to_json }}" % ", ".join("'r%d': r%d | default(None)" % (i, i) for i in range(len(tasks)))
        play_tasks.append({"name": "save", "ansible.builtin.copy": {"content": saved, "dest": out},
                           "check_mode": False, "diff": False})
        _rc, stdout, stderr = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": play_tasks}],
                                           check=check, env={"K8S_AUTH_KUBECONFIG": kubeconfig})
        try:
            with open(out) as handle:
                results = json.load(handle)
        except (OSError, ValueError):
            raise AssertionError("no results from ansible-playbook; stdout=%s stderr=%s"
                                 % (stdout[-3000:], stderr[-2000:]))
    return [results["r%d" % i] for i in range(len(tasks))]


def _gate_task(name, namespace, **args):
    return {"name": "gate %s" % name, "progressive.delivery.metric_gate": dict(name=name, namespace=namespace, **args)}


# --------------------------------------------------------------------- built-in queries

@pytest.mark.parametrize("router", ROUTERS)
def test_builtin_queries_return_the_expected_values(world, exporter, gate_namespace, router):
    provider = {"gatewayapi": "gatewayapi:v1"}.get(router, router)
    spec = _canary.validate_spec(_canary_spec(provider))
    context = {"name": "builtin", "namespace": gate_namespace, "spec": spec}
    metrics = [{"name": name, "interval": "10s"} for name in _builtin_metrics.BUILTIN_METRICS]
    source = make_source({"address": world.prometheus_url, "retries": 1})
    for side in ("canary", "primary"):
        prepared = _gate.prepare_metrics(metrics, context)
        if side == "primary":
            for metric in prepared:
                template = _builtin_metrics.builtin_query(provider, metric["name"], "primary")
                metric["query"] = _gate.render(template, _gate.template_values(context, "10s"), {}, metric["name"])
        gate = _gate.evaluate(prepared, source)
        values = [result["value"] for result in gate["metrics"]]
        assert values == [pytest.approx(expected, rel=1e-6) for expected in EXPECTED[side]], \
            (side, [result["message"] for result in gate["metrics"]])


# -------------------------------------------------------------------------------- no data

@pytest.mark.parametrize("policy, verdict", [("fail", "fail"), ("inconclusive", "inconclusive"), ("pass", "pass")])
@pytest.mark.parametrize("workload, why", [("quiet", "NaN"), ("ghost", "no series")])
def test_no_data_under_each_policy(world, exporter, gate_namespace, policy, verdict, workload, why):
    spec = _canary.validate_spec(dict(_canary_spec(), targetRef={"name": workload}))
    prepared = _gate.prepare_metrics(
        [{"name": "request-success-rate", "interval": "10s", "threshold_range": {"min": 99}, "no_data_policy": policy}],
        {"name": "nodata", "namespace": gate_namespace, "spec": spec})
    gate = _gate.evaluate(prepared, make_source({"address": world.prometheus_url, "retries": 1}))
    assert gate["verdict"] == verdict
    assert gate["metrics"][0]["value"] is None and why in gate["metrics"][0]["message"]


# ------------------------------------------------------------------------ the module itself

def test_breach_fails_the_task_and_rescue_runs(world, exporter, api_client, gate_namespace, runner_kubeconfig):
    name = "rescue"
    metrics = [{"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99.5}},
               {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}}]
    _create_canary(api_client, gate_namespace, name, _canary_spec(metrics=metrics, metrics_server=world.prometheus_url),
                   status={"phase": "Progressing", "canaryWeight": 10, "failedChecks": 0, "runId": "run-1"})
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "facts.json")
        plays = [{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"block": [
                {"name": "gate", "progressive.delivery.metric_gate": {"name": name, "namespace": gate_namespace},
                 "register": "gate"},
                {"name": "never reached", "ansible.builtin.set_fact": {"promoted": True}},
            ], "rescue": [
                {"name": "roll back", "ansible.builtin.set_fact": {
                    "rolled_back": True, "why": "{{ ansible_failed_result.msg }}",
                    "gate_result": "{{ ansible_failed_result }}"}},
            ]},
            {"name": "save", "ansible.builtin.copy": {
                "content": "{{ {'promoted': promoted | default(false), 'rolled_back': rolled_back | default(false),"
                           " 'why': why | default(''), 'gate': gate_result | default({})} | to_json }}",
                "dest": out}},
        ]}]
        rc, stdout, stderr = run_playbook(plays, env={"K8S_AUTH_KUBECONFIG": runner_kubeconfig})
        assert rc == 0, stdout[-3000:] + stderr[-2000:]
        with open(out) as handle:
            facts = json.load(handle)
    assert facts["rolled_back"] is True and facts["promoted"] is False
    assert "request-success-rate 99 (min 99.5) FAIL" in facts["why"]
    assert "request-duration 47.5 (max 500) pass" in facts["why"]
    assert "threshold reached" in facts["why"]
    gate = facts["gate"]
    assert gate["verdict"] == "fail" and gate["failed_checks"] == 1 and gate["threshold"] == 1
    assert gate["threshold_reached"] is True
    assert [m["verdict"] for m in gate["metrics"]] == ["fail", "pass"]
    assert gate["metrics"][0]["range"] == {"min": 99.5, "max": None}
    assert 'destination_workload="app"' in gate["metrics"][0]["query"]
    status = _status(api_client, gate_namespace, name)
    assert status["failedChecks"] == 1 and status["phase"] == "Progressing"
    entry = status["gateHistory"][-1]
    assert entry["verdict"] == "fail" and entry["runId"] == "run-1" and entry["weight"] == 10
    assert entry["metrics"][0]["name"] == "request-success-rate" and entry["metrics"][0]["value"] == \
        pytest.approx(99.0)


def test_pass_is_recorded_and_check_mode_writes_nothing(world, exporter, api_client, gate_namespace,
                                                        runner_kubeconfig):
    name = "record"
    metrics = [{"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 98}},
               {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 100}}]
    _create_canary(api_client, gate_namespace, name, _canary_spec(metrics=metrics, threshold=3),
                   status={"phase": "Progressing", "canaryWeight": 20, "failedChecks": 2})
    source = {"address": world.prometheus_url}
    in_check_mode, recorded, overridden = _run_tasks([
        dict(_gate_task(name, gate_namespace, source=source), check_mode=True),
        _gate_task(name, gate_namespace, source=source),
        # An override by name: a stricter duration ceiling, with no range change for the other.
        _gate_task(name, gate_namespace, source=source, record=False,
                   metrics=[{"name": "request-duration", "threshold_range": {"max": 40}}]),
    ], runner_kubeconfig)
    assert in_check_mode["verdict"] == "pass" and in_check_mode["recorded"] is False
    assert in_check_mode["failed_checks"] == 2 and in_check_mode["changed"] is True
    assert recorded["verdict"] == "pass" and recorded["recorded"] is True and not recorded.get("failed")
    assert [m["value"] for m in recorded["metrics"]] == [pytest.approx(99.0), pytest.approx(47.5)]
    assert overridden["verdict"] == "fail" and overridden["failed_checks"] == 3 and overridden["recorded"] is False
    assert overridden["failed"] is True and "request-duration 47.5 (max 40) FAIL" in overridden["msg"]
    status = _status(api_client, gate_namespace, name)
    # Only the recorded (non-check-mode) gate left a trace; cumulative mode keeps the 2.
    assert len(status["gateHistory"]) == 1 and status["gateHistory"][0]["verdict"] == "pass"
    assert status["failedChecks"] == 2


def test_prometheus_stopped_mid_run_fails_naming_the_cause(world, exporter, api_client, gate_namespace,
                                                           runner_kubeconfig):
    name = "outage"
    metrics = [{"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 90},
                "noDataPolicy": "pass"}]
    _create_canary(api_client, gate_namespace, name, _canary_spec(metrics=metrics, threshold=2),
                   status={"phase": "Progressing", "failedChecks": 0})
    proxy = StoppableProxy(world.prometheus_url)
    try:
        source = {"address": proxy.url, "retries": 1}
        before, stop, after = _run_tasks([
            _gate_task(name, gate_namespace, source=source),
            {"name": "stop prometheus", "ansible.builtin.uri": {"url": proxy.url + "/__stop", "return_content": True}},
            _gate_task(name, gate_namespace, source=source),
        ], runner_kubeconfig)
    finally:
        proxy.close()
    assert before["verdict"] == "pass", before
    assert stop["status"] == 200
    assert after["verdict"] == "fail" and after["failed_checks"] == 1
    assert proxy.url in after["source_error"] and "refused" in after["source_error"].lower()
    assert "no answer from Prometheus at " + proxy.url in after["message"]
    assert "refused" in after["message"].lower()
    assert after["metrics"][0]["error"] == "unavailable" and after["metrics"][0]["value"] is None
    status = _status(api_client, gate_namespace, name)
    assert [e["verdict"] for e in status["gateHistory"]] == ["pass", "fail"] and status["failedChecks"] == 1


def test_bad_query_and_bad_inputs_are_clear_errors(world, exporter, api_client, gate_namespace, runner_kubeconfig):
    name = "inputs"
    _create_canary(api_client, gate_namespace, name, _canary_spec(metrics_server=world.prometheus_url))
    results = _run_tasks([
        _gate_task(name, gate_namespace, metrics=[{"name": "broken-promql", "query": "sum(rate(istio_requests_total[1m])))",
                                                   "threshold_range": {"max": 1}}]),
        _gate_task(name, gate_namespace, metrics=[{"name": "request-duration", "threshold_range": {"min": 500, "max": 10}}]),
        _gate_task(name, gate_namespace, source={"type": "graphite"}, metrics=[{"name": "request-duration"}]),
        _gate_task(name, gate_namespace, metrics=[{
            "name": "regional", "query": '{% raw %}sum(up{region="{{ variables.region }}"}){% endraw %}'}]),
        _gate_task(name, gate_namespace, metrics=[{"name": "request-duration", "interval": "5 minutes"}]),
        _gate_task(name, gate_namespace),
        _gate_task("missing", gate_namespace),
    ], runner_kubeconfig)
    broken, min_max, unknown_source, variable, interval, nothing, missing = results
    assert broken["failed"] and "broken-promql" in broken["msg"] and "parse error" in broken["msg"]
    assert broken["metrics"][0]["error"] == "query"
    assert min_max["failed"] and "metrics[0] (request-duration)" in min_max["msg"] and \
        "min (500) must not exceed max (10)" in min_max["msg"]
    assert unknown_source["failed"] and "graphite" in unknown_source["msg"] and "prometheus" in unknown_source["msg"]
    assert variable["failed"] and "variables.region is not defined" in variable["msg"]
    assert interval["failed"] and '"5 minutes"' in interval["msg"] and "interval" in interval["msg"]
    assert nothing["failed"] and "no metrics to evaluate" in nothing["msg"]
    assert missing["failed"] and "not found" in missing["msg"]
    # Only the malformed query got as far as a gate; the input errors wrote nothing.
    history = _status(api_client, gate_namespace, name).get("gateHistory") or []
    assert [e["verdict"] for e in history] == ["fail"]


def test_generic_http_source_with_jmespath(api_client, gate_namespace, runner_kubeconfig, canary_crd):
    name = "http-source"
    _create_canary(api_client, gate_namespace, name, _canary_spec())
    endpoint = JsonEndpoint({"services": [{"name": "checkout", "slo": {"availability": "99.95", "p99_ms": 180}},
                                          {"name": "app", "slo": {"availability": 99.2, "p99_ms": 120}}]})
    try:
        source = {"type": "http", "address": endpoint.url + "/slo"}
        result, = _run_tasks([_gate_task(name, gate_namespace, source=source, record=False, fail_on_threshold=False,
                                         metrics=[
                                             {"name": "availability", "threshold_range": {"min": 99.5},
                                              "query": "services[?name=='app'].slo.availability | [0]"},
                                             {"name": "latency", "threshold_range": {"max": 150},
                                              "query": "services[?name=='app'].slo.p99_ms"}])],
                             runner_kubeconfig)
    finally:
        endpoint.close()
    assert not result.get("failed"), result
    assert result["verdict"] == "fail" and result["threshold_reached"] is True
    assert [(m["name"], m["value"], m["verdict"]) for m in result["metrics"]] == [
        ("availability", 99.2, "fail"), ("latency", 120.0, "pass")]


# ------------------------------------------------------------------------ statistical judge

def _wait_for_window(source, seconds):
    def _enough():
        found = source.query('count_over_time(pd_test_latency_ms{series="canary_2x"}[%ds])' % seconds)
        return not hasattr(found, "reason") and found >= seconds - 2
    wait_for(_enough, timeout=seconds + 30, interval=1, message="%ds of latency samples" % seconds)


@pytest.mark.parametrize("canary_series, verdict", [("primary", "pass"), ("canary_same", "pass"),
                                                    ("canary_2x", "fail")])
def test_statistical_judge_on_prometheus_series(world, exporter, gate_namespace, canary_series, verdict):
    source = make_source({"address": world.prometheus_url, "retries": 1})
    _wait_for_window(source, 20)
    compare = _gate.compare_settings({"window": "20s", "step": "1s"})
    spec = _canary.validate_spec(_canary_spec())
    # Small noise passes through the effect-size allowance (Kayenta's allowed increase/decrease).
    metrics = [{"name": "latency", "query": 'avg(pd_test_latency_ms{series="%s"})' % canary_series,
                "baseline_query": 'avg(pd_test_latency_ms{series="primary"})', "direction": "increase",
                "allowed_increase": 1.1}]
    prepared = _gate.prepare_metrics(metrics, {"name": "judge", "namespace": gate_namespace, "spec": spec},
                                     mode="compare", compare=compare)
    gate = _gate.evaluate(prepared, source, mode="compare", compare=compare)
    result = gate["metrics"][0]
    assert gate["verdict"] == verdict, result
    assert result["canary"]["count"] >= 15 and result["baseline"]["count"] >= 15
    if canary_series == "primary":
        assert result["classification"] == "pass" and "identical" in result["message"]
    if canary_series == "canary_2x":
        assert result["classification"] == "high" and result["ratio"] == pytest.approx(2.0, rel=0.1)


def test_compare_mode_through_the_module(world, exporter, api_client, gate_namespace, runner_kubeconfig):
    name = "compare"
    _create_canary(api_client, gate_namespace, name, _canary_spec(metrics_server=world.prometheus_url))
    _wait_for_window(make_source({"address": world.prometheus_url}), 20)
    result, = _run_tasks([_gate_task(
        name, gate_namespace, mode="compare", record=False, fail_on_threshold=False,
        compare={"window": "20s", "step": "2s"},
        metrics=[{"name": "request-duration", "interval": "10s"},
                 {"name": "latency", "query": 'avg(pd_test_latency_ms{series="canary_2x"})',
                  "baseline_query": 'avg(pd_test_latency_ms{series="primary"})', "critical": True}])],
        runner_kubeconfig)
    assert not result.get("failed"), result
    by_name = dict((m["name"], m) for m in result["metrics"])
    # The exporter's built-in series are constant-rate: canary P99 47.5 against primary 9.9 every step.
    assert by_name["request-duration"]["classification"] == "high"
    assert by_name["request-duration"]["value"] == pytest.approx(47.5, rel=1e-6)
    assert by_name["request-duration"]["baseline_value"] == pytest.approx(9.9, rel=1e-6)
    assert by_name["latency"]["classification"] == "high"
    assert result["verdict"] == "fail" and result["score"] == 0.0
