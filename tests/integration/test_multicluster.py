"""One release across three local control planes, in waves (playbooks/multicluster.yml).

Each cluster has its own API server, Prometheus and traffic emulator. A good version is promoted
wave by wave; a version that is faulty on the second cluster stops the waves there: that cluster
rolls back, the first (already promoted) is reverted as pd_rollback_promoted asks, the third is
never started, and the job fails with a per-cluster summary. Finally the same playbook runs with
nothing but AWX's K8S_AUTH_* environment (a TokenRequest token and the cluster CA).
"""

import contextlib
import json
import os

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

import emulator
import pdcluster
import sample_app
from ansible_runner import REPO, run_playbook
from helpers import wait_for

APP = sample_app.APP
NAMESPACE = "mc"
NAMES = ("mc-1", "mc-2", "mc-3")
GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"
SPEC = sample_app.canary_spec("istio", interval="3s", step_weight=50, max_weight=50, threshold=1)


class _Member(object):
    def __init__(self, name, state):
        self.name = name
        self.state = state
        self.api = config.new_client_from_config(config_file=state["kubeconfig"])


@pytest.fixture(scope="module")
def clusters():
    if os.environ.get("PD_TEST_KUBECONFIG"):
        pytest.skip("the multi-cluster test starts its own local control planes")
    started = []
    try:
        for name in NAMES:
            cluster = pdcluster.Cluster(name)
            cluster.down()  # never test on what a killed session left behind
            started.append(cluster)
            state = cluster.up(nodes=1)
            rc, out, err = run_playbook([{"import_playbook": os.path.join(REPO, "playbooks", "install.yml")}],
                                        env={"K8S_AUTH_KUBECONFIG": state["kubeconfig"]})
            assert rc == 0, out + err
        members = [_Member(cluster.name, cluster.load()) for cluster in started]
        for member in members:
            core = client.CoreV1Api(member.api)
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            _wait_default_account(core)
            sample_app.release(member.api, NAMESPACE, "6.7.0")
        with contextlib.ExitStack() as stack:
            for index, member in enumerate(members):
                stack.enter_context(emulator.Emulator(api_client=member.api, apps=[(NAMESPACE, APP)], rps=50,
                                                      seed=index, targets_dir=member.state["prometheus_targets_dir"]))
            yield members
    finally:
        for cluster in started:
            cluster.down()


def _wait_default_account(core):
    wait_for(lambda: core.list_namespaced_service_account(NAMESPACE, field_selector="metadata.name=default").items,
             timeout=30, message="the default ServiceAccount")


def _inventory(tmp_path, members, auth=True):
    hosts = {}
    for member in members:
        host = {"canary_metrics_source": {"type": "prometheus", "address": member.state["prometheus_url"]}}
        if auth:
            host["canary_auth"] = {"kubeconfig": member.state["kubeconfig"]}
        hosts[member.name] = host
    inventory = {"all": {"children": {
        "pd_canary_wave": {"hosts": {members[0].name: {}}},
        "pd_clusters": {"hosts": hosts,
                        "vars": {"ansible_connection": "local", "canary_name": APP, "canary_namespace": NAMESPACE,
                                 "canary_spec": SPEC, "canary_report_dir": str(tmp_path)}}}}}
    path = tmp_path / "clusters.yml"
    path.write_text(yaml.safe_dump(inventory))
    return str(path)


def _waves(inventory, extra_vars=None, env=None):
    plays = [{"import_playbook": os.path.join(REPO, "playbooks", "multicluster.yml")}]
    extra = dict({"pd_serial": [1, 1]}, **(extra_vars or {}))
    env = dict({"ANSIBLE_CALLBACKS_ENABLED": "progressive.delivery.progress"}, **(env or {}))
    rc, out, err = run_playbook(plays, env=env, timeout=900, extra_args=("-i", inventory, "-e", json.dumps(extra)))
    return rc, out + err


def _canary(member):
    return client.CustomObjectsApi(member.api).get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, APP)


def _image(member, name):
    dep = client.AppsV1Api(member.api).read_namespaced_deployment(name, NAMESPACE)
    return dep.spec.template.spec.containers[0].image.rsplit(":", 1)[-1]


def _outcome(out, name):
    """The outcome word of a cluster's line in the per-cluster summary (progress lines say "step")."""
    prefix = '"msg": "%s %s/%s ' % (name, NAMESPACE, APP)
    words = [line.split(prefix, 1)[1].split()[0] for line in out.splitlines() if prefix in line]
    outcomes = [word for word in words if word.isupper() and word not in ("PASS", "FAIL")]
    assert outcomes, "no summary line for %s" % name
    return outcomes[-1]


def _runner_token(member):
    """A TokenRequest token of a ServiceAccount bound to the shipped ClusterRole (what AWX would carry)."""
    core = client.CoreV1Api(member.api)
    for create in (lambda: core.create_namespace({"metadata": {"name": "pd-system"}}),
                   lambda: core.create_namespaced_service_account("pd-system", {"metadata": {"name": "pd-runner"}}),
                   lambda: client.RbacAuthorizationV1Api(member.api).create_cluster_role_binding(
                       {"metadata": {"name": "pd-runner"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                    "name": "progressive-delivery"},
                        "subjects": [{"kind": "ServiceAccount", "name": "pd-runner", "namespace": "pd-system"}]})):
        try:
            create()
        except ApiException as exc:
            if exc.status != 409:
                raise
    return core.create_namespaced_service_account_token(
        "pd-runner", "pd-system", {"spec": {"expirationSeconds": 3600}}).status.token


@pytest.mark.slow
def test_waves_promote_stop_on_failure_and_run_on_awx_environment(clusters, tmp_path):
    first, second, third = clusters
    inventory = _inventory(tmp_path, clusters)

    # First sight: every cluster's primary takes over 6.7.0.
    rc, out = _waves(inventory, {"pd_serial": [3]})
    assert rc == 0, out
    assert all(_canary(member)["status"]["phase"] == "Initialized" for member in clusters), out

    # A good version goes out wave by wave: the canary cluster first, then one at a time.
    for member in clusters:
        sample_app.release(member.api, NAMESPACE, "6.7.1")
    rc, out = _waves(inventory)
    assert rc == 0, out
    for member in clusters:
        assert _canary(member)["status"]["phase"] == "Succeeded"
        assert _image(member, APP + "-primary") == "6.7.1"
        assert _outcome(out, member.name) == "PROMOTED"
    progress = [out.index("%s %s/%s step 1/1 weight 50%% PASS" % (member.name, NAMESPACE, APP)) for member in clusters]
    assert progress == sorted(progress), "the waves ran out of order"
    assert "request-success-rate=" in out and "ok" in out

    # 6.7.2 is faulty on the second cluster only: waves stop there.
    for member in clusters:
        sample_app.release(member.api, NAMESPACE, "6.7.2", fault={"errorRate": 0.2} if member is second else None)
    rc, out = _waves(inventory, {"pd_rollback_promoted": True})
    assert rc != 0, out
    assert "mc-1 %s/%s step 1/1 weight 50%% PASS" % (NAMESPACE, APP) in out
    assert "%s/%s rolled back" % (NAMESPACE, APP) in out
    assert "mc-3 %s/%s step" % (NAMESPACE, APP) not in out
    # the failed cluster rolled back
    status = _canary(second)["status"]
    assert status["phase"] == "Failed" and _image(second, APP + "-primary") == "6.7.1"
    assert _outcome(out, "mc-2") == "ROLLED_BACK"
    # the cluster already promoted is reverted to the previous template, target included
    status = _canary(first)["status"]
    assert status["phase"] == "Succeeded" and "reverted" in status.get("message", "") + json.dumps(status)
    assert _image(first, APP + "-primary") == "6.7.1" and _image(first, APP) == "6.7.1"
    assert _outcome(out, "mc-1") == "REVERTED"
    # the later wave never started
    assert _canary(third)["status"]["phase"] == "Succeeded" and _image(third, APP + "-primary") == "6.7.1"
    assert _outcome(out, "mc-3") == "NOT_STARTED"
    assert "the release stopped" in out
    # the progress callback's recap: outcome per cluster, then its steps
    recap = out.split("PROGRESSIVE DELIVERY", 1)[1]
    assert "mc-1: REVERTED" in recap and "mc-2: ROLLED_BACK" in recap and "mc-3: NOT_STARTED" in recap
    assert "  [ok] mc-1 %s/%s step 1/1 weight 50%% PASS" % (NAMESPACE, APP) in recap

    # AWX's Kubernetes bearer-token credential: nothing but K8S_AUTH_* in the environment,
    # and no canary_auth in the inventory. One credential is one cluster: the run targets mc-3.
    env = {"K8S_AUTH_HOST": third.state["server"], "K8S_AUTH_API_KEY": _runner_token(third),
           "K8S_AUTH_SSL_CA_CERT": third.state["ca"], "K8S_AUTH_VERIFY_SSL": "true"}
    env_inventory = _inventory(tmp_path, [third], auth=False)
    rc, out = _waves(env_inventory, env=env)
    assert rc == 0, out
    assert "mc-3 %s/%s step 1/1 weight 50%% PASS" % (NAMESPACE, APP) in out
    assert _image(third, APP + "-primary") == "6.7.2" and _canary(third)["status"]["phase"] == "Succeeded"

    # The AWX workflow "gated release": analyse holds the run before promotion, the approval node
    # decides, finish.yml promotes with the run id that analyse published through set_stats.
    sample_app.release(first.api, NAMESPACE, "6.7.3")
    gated_inventory = _inventory(tmp_path, [first])
    rc, out = _example("analyse.yml", gated_inventory, env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"})
    assert rc == 0, out
    status = _canary(first)["status"]
    assert status["phase"] not in ("Succeeded", "Failed") and status["runId"], status
    assert _image(first, APP + "-primary") == "6.7.1"
    assert "pd_pending" in out and status["runId"] in out  # the job's artifacts
    pending = {first.name: {"name": APP, "namespace": NAMESPACE, "run_id": status["runId"]}}
    rc, out = _example("finish.yml", gated_inventory, {"pd_pending": pending, "pd_decision": "promoted"})
    assert rc == 0, out
    assert _canary(first)["status"]["phase"] == "Succeeded" and _image(first, APP + "-primary") == "6.7.3"


def _example(playbook, inventory, extra_vars=None, env=None):
    plays = [{"import_playbook": os.path.join(REPO, "examples", "awx", playbook)}]
    rc, out, err = run_playbook(plays, env=env, timeout=900,
                                extra_args=("-i", inventory, "-e", json.dumps(extra_vars or {})))
    return rc, out + err
