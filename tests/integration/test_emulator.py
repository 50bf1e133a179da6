"""The traffic emulator against the real control plane and the real Prometheus: the share of
requests Prometheus sees follows the VirtualService's weights, a fault annotation on the target's
template makes the canary fail, and weight 0 stops canary traffic. Then the command-line process:
file_sd registration, the no-mesh mode, and a clean SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from ansible_runner import collections_path
from helpers import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "hack"))
# The collection is imported the way Ansible sees it, through the runner's collections path.
if collections_path() not in sys.path:
    sys.path.insert(0, collections_path())

import emulator  # noqa: E402  (dev tooling, not a package)
from ansible_collections.progressive.delivery.plugins.module_utils import _builtin_metrics  # noqa: E402

FAULT = {"errorRate": 0.2}


def _deployment(name, image, replicas=1, annotations=None):
    template_metadata = {"labels": {"app": name}}
    if annotations:
        template_metadata["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": template_metadata,
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def _service(name, app):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def _virtual_service(primary_weight, canary_weight):
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [{"route": [
                {"destination": {"host": "web-primary"}, "weight": primary_weight},
                {"destination": {"host": "web-canary"}, "weight": canary_weight}]}]}}


def _create_app(api_client, namespace, primary_replicas=1, target_replicas=1):
    from kubernetes import client
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, _deployment("web-primary", "example/web:1", primary_replicas))
    apps.create_namespaced_deployment(namespace, _deployment("web", "example/web:2", target_replicas))
    for name, app in (("web", "web-primary"), ("web-primary", "web-primary"), ("web-canary", "web")):
        core.create_namespaced_service(namespace, _service(name, app))


def _prom(world, query, at=None):
    params = {"query": query}
    if at is not None:
        params["time"] = "%.3f" % at
    response = requests.get(world.prometheus_url + "/api/v1/query", params=params, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _scalar(world, query, at=None):
    result = _prom(world, query, at)
    return float(result[0]["value"][1]) if result else None


def _window_filled(world, selector, start, end, samples):
    """True once Prometheus holds at least ``samples`` scrapes of ``selector`` within (start, end]."""
    found = _scalar(world, "max(count_over_time(%s[%ds]))" % (selector, round(end - start)), at=end)
    return found is not None and found >= samples


@pytest.fixture
def prometheus(world):
    if not world.prometheus_url or not world.targets_dir:
        pytest.skip("needs a Prometheus with a file_sd targets dir (PD_TEST_PROMETHEUS_URL, PD_TEST_PROMETHEUS_TARGETS_DIR)")
    return world


def test_istio_share_faults_and_stop(prometheus, api_client, namespace, canary_crd):
    from kubernetes import client
    world = prometheus
    custom = client.CustomObjectsApi(api_client)
    _create_app(api_client, namespace)
    custom.create_namespaced_custom_object("progressive.delivery", "v1alpha1", namespace, "canaries", {
        "apiVersion": "progressive.delivery/v1alpha1", "kind": "Canary", "metadata": {"name": "web"},
        "spec": {"provider": "istio", "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80}}})
    custom.create_namespaced_custom_object("networking.istio.io", "v1", namespace, "virtualservices", _virtual_service(90, 10))

    def set_weights(primary_weight, canary_weight):
        current = custom.get_namespaced_custom_object("networking.istio.io", "v1", namespace, "virtualservices", "web")
        current["spec"] = _virtual_service(primary_weight, canary_weight)["spec"]
        custom.replace_namespaced_custom_object("networking.istio.io", "v1", namespace, "virtualservices", "web", current)

    workload = 'reporter="destination", destination_workload_namespace="%s", destination_workload="%%s"' % namespace
    canary_selector = "istio_requests_total{%s}" % (workload % "web")
    all_selector = 'istio_requests_total{reporter="destination", destination_workload_namespace="%s"}' % namespace

    with emulator.Emulator(api_client=world.api_client(), apps=[(namespace, "web")], rps=200, seed=11,
                           targets_dir=world.targets_dir, target_labels={"test_namespace": namespace}) as emu:
        def both_ready():
            snap = emu.stats(namespace, "web")
            return snap if snap["ready"]["primary"] and snap["ready"]["canary"] else None
        stats = wait_for(both_ready, timeout=30, message="ready primary and canary pods")
        assert stats["provider"] == "istio" and stats["share"]["canary"] == pytest.approx(0.1)
        assert stats["versions"] == {"primary": ["example/web:1"], "canary": ["example/web:2"], "other": []}

        # 1. Prometheus sees ~10% of the requests on the canary workload.
        first = wait_for(lambda: _scalar(world, "sum(%s)" % canary_selector) is not None and time.time(), timeout=30,
                         message="the emulator's first scrape")
        wait_for(lambda: _window_filled(world, canary_selector, first, first + 8, 7), timeout=30,
                 message="8 s of Prometheus data")
        share = _scalar(world, "sum(rate(%s[8s])) / sum(rate(%s[8s]))" % (canary_selector, all_selector), at=first + 8)
        assert share == pytest.approx(0.10, abs=0.04)
        served = emu.stats(namespace, "web")["served"]
        assert served["canary"]["requests"] / (served["canary"]["requests"] + served["primary"]["requests"]) == \
            pytest.approx(0.10, abs=0.04)

        # 2. A faulty release: the target's template carries errorRate 0.2 (and half the traffic, for a tight estimate).
        client.AppsV1Api(api_client).patch_namespaced_deployment("web", namespace, {"spec": {"template": {"metadata": {
            "annotations": {emulator.FAULT_ANNOTATION: json.dumps(FAULT)}}}}})
        set_weights(50, 50)

        def faulty_only():
            snap = emu.stats(namespace, "web")
            versions = snap["versions"]["canary"]
            return (snap["share"]["canary"] == 0.5 and len(versions) == 1 and "+fault:" in versions[0]
                    and snap["faults"][versions[0]]["errorRate"] == 0.2) and time.time()
        since = wait_for(faulty_only, timeout=30, message="only the faulty version on the canary, at 50%")
        emu.reset(namespace, "web")
        until = since + 8
        wait_for(lambda: _window_filled(world, canary_selector, since, until, 7), timeout=30,
                 message="8 s of Prometheus data after the faulty release")
        errors = _scalar(world, 'sum(rate(istio_requests_total{%s, response_code=~"5.."}[8s])) / sum(rate(%s[8s]))'
                         % (workload % "web", canary_selector), at=until)
        assert errors == pytest.approx(0.2, abs=0.07)
        primary_errors = _scalar(world, 'sum(rate(istio_requests_total{%s, response_code=~"5.."}[8s]))'
                                 % (workload % "web-primary"), at=until)
        assert not primary_errors
        # The collection's own built-in query, rendered as metric_gate renders it.
        query = _builtin_metrics.builtin_query("istio", "request-success-rate", "canary")
        for key, value in (("namespace", namespace), ("target", "web"), ("service", "web"), ("interval", "8s")):
            query = query.replace("{{ %s }}" % key, value)
        assert _scalar(world, query, at=until) == pytest.approx(80, abs=7)
        faulty = emu.stats(namespace, "web")["served"]["canary"]
        assert faulty["errors"] / faulty["requests"] == pytest.approx(0.2, abs=0.06)

        # 3. Weight 0: canary traffic stops, in /stats and in Prometheus.
        set_weights(100, 0)
        stopped = wait_for(lambda: emu.stats(namespace, "web")["canary_traffic"]["stopped"], timeout=30,
                           message="the emulator to see weight 0")
        count_at_stop = emu.stats(namespace, "web")["served"]["canary"]["requests"]
        wait_for(lambda: _window_filled(world, canary_selector, stopped + 1, stopped + 6, 4), timeout=30,
                 message="Prometheus data after the stop")
        assert _scalar(world, "sum(increase(%s[5s]))" % canary_selector, at=stopped + 6) == 0
        after = emu.stats(namespace, "web")
        assert after["served"]["canary"]["requests"] == count_at_stop
        assert after["share"]["canary"] == 0 and not after["canary_traffic"]["active"]
        assert after["served"]["primary"]["requests"] > 0
        targets_file = emu.targets_file
        assert os.path.exists(targets_file)
    assert not os.path.exists(targets_file)


def test_command_line_no_mesh_mode_and_sigterm(prometheus, api_client, namespace):
    world = prometheus
    _create_app(api_client, namespace, primary_replicas=2, target_replicas=1)
    command = [sys.executable, os.path.join(REPO, "hack", "emulator.py"), "--kubeconfig", world.kubeconfig,
               "--namespace", namespace, "--app", "web", "--provider", "kubernetes", "--rps", "60",
               "--listen", "127.0.0.1:0", "--targets-dir", world.targets_dir, "--log-level", "WARNING"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # pylint: disable=consider-using-with
    try:
        first_line = []
        reader = threading.Thread(target=lambda: first_line.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=30)
        assert first_line and first_line[0], "the emulator printed no address: %s" % process.stderr.read()
        started = json.loads(first_line[0])
        address, targets_file = started["address"], started["targets_file"]
        with open(targets_file, encoding="utf-8") as handle:
            assert json.load(handle)[0]["targets"] == [address]

        def shares():
            snap = requests.get(started["stats"], params={"namespace": namespace, "app": "web"}, timeout=5).json()
            return snap["share"] if snap["ready"]["primary"] == 2 and snap["ready"]["canary"] == 1 else None
        share = wait_for(shares, timeout=30, message="2 primary and 1 canary pods ready")
        assert share["primary"] == pytest.approx(2 / 3, abs=1e-4) and share["canary"] == pytest.approx(1 / 3, abs=1e-4)

        canary_pods = 'http_request_duration_seconds_count{kubernetes_namespace="%s", kubernetes_pod_name=~"web-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}' \
            % namespace
        wait_for(lambda: _scalar(world, "sum(%s)" % canary_pods), timeout=30, message="the canary's pods in Prometheus")
        assert _scalar(world, 'up{instance="%s"}' % address) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        process.stdout.close()
        process.stderr.close()
    assert returncode == 0
    assert not os.path.exists(targets_file)
