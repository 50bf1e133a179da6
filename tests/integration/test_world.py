"""The local world is real: a scheduler, controllers, kwok, upstream CRDs, Prometheus."""

import os
import subprocess
import sys

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import wait_for

import pdcluster


def _deployment(name, replicas):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.7.0"}]}}},
    }


def test_deployment_becomes_available_through_scheduler_and_kwok(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, _deployment("web", 3))

    def _available():
        dep = apps.read_namespaced_deployment("web", namespace)
        return dep.status.available_replicas == 3 and dep
    wait_for(_available, timeout=90, message="web to have 3 available replicas")
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3
    # Scheduled by kube-scheduler onto a kwok node, made Running by kwok.
    assert all(p.spec.node_name and p.spec.node_name.startswith("kwok-node-") for p in pods)
    assert all(p.status.phase == "Running" for p in pods)


def test_version_reports_the_pinned_release(world, api_client):
    if not world.local:
        pytest.skip("only meaningful for the cluster this project builds")
    info = client.VersionApi(api_client).get_code()
    assert info.git_version == pdcluster.versions()["K8S_VERSION"]


def _virtual_service(weight):
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {"hosts": ["web"], "http": [{"route": [
            {"destination": {"host": "web-primary"}, "weight": weight},
            {"destination": {"host": "web-canary"}, "weight": 0}]}]},
    }


def test_istio_crd_schema_rejects_wrongly_typed_weight(api_client, namespace):
    custom = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object("networking.istio.io", "v1", namespace, "virtualservices",
                                               _virtual_service("ten"))
    assert err.value.status == 422
    assert "weight" in err.value.body
    created = custom.create_namespaced_custom_object("networking.istio.io", "v1", namespace, "virtualservices",
                                                     _virtual_service(100))
    assert created["spec"]["http"][0]["route"][0]["weight"] == 100


def test_gateway_api_and_smi_crds_are_served(api_client, namespace):
    custom = client.CustomObjectsApi(api_client)
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
             "spec": {"parentRefs": [{"name": "gw"}],
                      "rules": [{"backendRefs": [{"name": "web-primary", "port": 80, "weight": 90},
                                                 {"name": "web-canary", "port": 80, "weight": 10}]}]}}
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    bad = dict(route, metadata={"name": "bad"})
    bad["spec"] = {"rules": [{"backendRefs": [{"name": "web-primary", "port": 80, "weight": -1}]}]}
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", bad)
    assert err.value.status == 422
    split = {"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": "web"},
             "spec": {"service": "web", "backends": [{"service": "web-primary", "weight": 100},
                                                     {"service": "web-canary", "weight": 0}]}}
    got = custom.create_namespaced_custom_object("split.smi-spec.io", "v1alpha4", namespace, "trafficsplits", split)
    assert got["spec"]["backends"][0]["weight"] == 100


def test_prometheus_scrapes_its_targets(world):
    if not world.prometheus_url:
        pytest.skip("PD_TEST_PROMETHEUS_URL not set")
    wanted = {"prometheus", "kube-apiserver"} if world.local else {"prometheus"}

    def _jobs_up():
        jobs = {r["metric"]["job"] for r in world.prom_query("up") if r["value"][1] == "1"}
        # The API server's own metrics are scraped too: the benchmark counts API requests from them.
        return wanted <= jobs and jobs
    wait_for(_jobs_up, timeout=30, message="jobs %s scraped with up == 1" % sorted(wanted))


def test_second_up_reuses_the_running_cluster(world):
    if not world.local:
        pytest.skip("launcher behaviour; only for the cluster this session started")
    before = world.cluster.load()
    out = subprocess.run([sys.executable, os.path.join(pdcluster.HERE, "pdcluster.py"), "up",
                          "--name", world.cluster.name], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "reusing" in out.stdout
    after = world.cluster.load()
    assert after["pids"] == before["pids"]
    data_dir = os.path.join(world.cluster.dir, "etcd")
    etcds = [pid for pid in _pids_of("etcd") if data_dir in _cmdline(pid)]
    assert etcds == [before["pids"]["etcd"]]


def _pids_of(binary):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.path.basename(os.readlink("/proc/%s/exe" % entry)) == binary:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode()
