"""canary_init / canary_promote / canary_info on the real local control plane.

Every module call runs through ansible-playbook as the least-privilege ServiceAccount
(the shipped ClusterRole), never as admin; the admin client only sets the scene and checks.
"""

import datetime

import pytest
from kubernetes import client

from ansible_runner import run_module, run_modules
from helpers import wait_for

APP = "podinfo"
GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"


def _spec(**analysis):
    spec = {"provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "service": {"port": 9898},
            "progressDeadlineSeconds": 60,
            "analysis": dict({"interval": "5s", "threshold": 2, "stepWeight": 25, "maxWeight": 50}, **analysis)}
    return spec


def _deploy_target(api_client, namespace, image="podinfo:6.7.0", replicas=2, config_data=None, extra_env=None):
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    if config_data is not None:
        body = {"metadata": {"name": "podinfo-config"}, "data": config_data}
        try:
            core.create_namespaced_config_map(namespace, body)
        except client.rest.ApiException as exc:
            if exc.status != 409:
                raise
            core.replace_namespaced_config_map("podinfo-config", namespace, body)
    container = {"name": APP, "image": image, "ports": [{"containerPort": 9898, "name": "http"}]}
    if config_data is not None:
        container["envFrom"] = [{"configMapRef": {"name": "podinfo-config"}}]
    if extra_env:
        container["env"] = extra_env
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP, "labels": {"app": APP}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": APP}},
                     "template": {"metadata": {"labels": {"app": APP}}, "spec": {"containers": [container]}}}}
    try:
        apps.create_namespaced_deployment(namespace, body)
    except client.rest.ApiException as exc:
        if exc.status != 409:
            raise
        apps.patch_namespaced_deployment(APP, namespace, {"spec": {"template": body["spec"]["template"]}})
    _settle(api_client, namespace, APP)


def _settle(api_client, namespace, name):
    """Wait until the controllers stop writing a Deployment's status (so resourceVersions hold still)."""
    def _done():
        dep = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
        wanted = dep.spec.replicas or 0
        return (dep.status.observed_generation or 0) >= dep.metadata.generation and \
            (dep.status.available_replicas or 0) == wanted and (dep.status.replicas or 0) == wanted and \
            (dep.status.updated_replicas or 0) == wanted
    wait_for(_done, timeout=60, message="Deployment %s to settle" % name)


def _set_image(api_client, namespace, image):
    client.AppsV1Api(api_client).patch_namespaced_deployment(
        APP, namespace, {"spec": {"template": {"spec": {"containers": [{"name": APP, "image": image}]}}}})
    _settle(api_client, namespace, APP)


def _canary(api_client, namespace):
    return client.CustomObjectsApi(api_client).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, APP)


def _patch_status(api_client, namespace, status):
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, APP, {"status": status})


def _image_of(api_client, namespace, name):
    dep = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    return dep.spec.template.spec.containers[0].image, dep


def _resource_versions(api_client, namespace):
    """resourceVersion of every object a module could touch in the namespace."""
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    versions = {}
    for kind, items in (("Deployment", apps.list_namespaced_deployment(namespace).items),
                        ("Service", core.list_namespaced_service(namespace).items),
                        ("ConfigMap", core.list_namespaced_config_map(namespace).items),
                        ("Secret", core.list_namespaced_secret(namespace).items)):
        for item in items:
            versions["%s/%s" % (kind, item.metadata.name)] = item.metadata.resource_version
    for plural in ("canaries",):
        for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]:
            versions["Canary/%s" % item["metadata"]["name"]] = item["metadata"]["resourceVersion"]
    for item in custom.list_namespaced_custom_object("networking.istio.io", "v1", namespace,
                                                     "virtualservices")["items"]:
        versions["VirtualService/%s" % item["metadata"]["name"]] = item["metadata"]["resourceVersion"]
    return versions


@pytest.fixture
def run(runner_kubeconfig, namespace):
    def _run(module, check=False, diff=False, **args):
        args.setdefault("name", APP)
        args.setdefault("namespace", namespace)
        args.setdefault("kubeconfig", runner_kubeconfig)
        return run_module(module, args, check=check, diff=diff)
    return _run


@pytest.fixture
def initialized(api_client, namespace, run):
    _deploy_target(api_client, namespace, config_data={"color": "blue"})
    result = run("canary_init", spec=_spec(), lock_holder="job-a")
    assert not result.get("failed"), result
    return result


def test_first_init_bootstraps_and_a_repeat_changes_nothing(api_client, namespace, initialized, run):
    result = initialized
    assert result["changed"] and result["bootstrapped"] and not result["run_needed"]
    assert result["phase"] == "Initialized"
    assert result["last_promoted_revision"] == result["revision"]
    image, primary = _image_of(api_client, namespace, APP + "-primary")
    assert image == "podinfo:6.7.0"
    assert primary.status.available_replicas == 2
    assert primary.spec.selector.match_labels == {"app": APP + "-primary"}
    # The primary reads its own copy of the tracked ConfigMap.
    assert primary.spec.template.spec.containers[0].env_from[0].config_map_ref.name == "podinfo-config-primary"
    copy = client.CoreV1Api(api_client).read_namespaced_config_map("podinfo-config-primary", namespace)
    assert copy.data == {"color": "blue"}
    target = client.AppsV1Api(api_client).read_namespaced_deployment(APP, namespace)
    assert target.spec.replicas == 0
    core = client.CoreV1Api(api_client)
    selectors = {name: core.read_namespaced_service(name, namespace).spec.selector
                 for name in (APP, APP + "-primary", APP + "-canary")}
    assert selectors == {APP: {"app": APP + "-primary"}, APP + "-primary": {"app": APP + "-primary"},
                         APP + "-canary": {"app": APP}}
    pods = core.list_namespaced_pod(namespace, label_selector="app=%s-primary" % APP).items
    assert len(pods) == 2

    before = _resource_versions(api_client, namespace)
    again = run("canary_init", spec=_spec(), lock_holder="job-a")
    assert not again.get("failed"), again
    assert again["changed"] is False and not again["run_needed"]
    assert _resource_versions(api_client, namespace) == before


def test_new_image_starts_a_run_and_promotion_copies_it_to_the_primary(api_client, namespace, initialized, run):
    _set_image(api_client, namespace, "podinfo:6.7.1")
    started = run("canary_init", lock_holder="job-a")
    assert not started.get("failed"), started
    assert started["run_needed"] and not started["resumed"] and started["phase"] == "Progressing"
    assert started["revision"] != initialized["revision"]
    assert started["lock"]["holder"] == "job-a"
    target = client.AppsV1Api(api_client).read_namespaced_deployment(APP, namespace)
    assert target.spec.replicas == 2 and target.status.available_replicas == 2

    info = run("canary_info")
    assert info["phase"] == "Progressing" and info["target"]["ready"] and info["primary"]["ready"]

    promoted = run("canary_promote", state="promoted", run_id=started["run_id"], lock_holder="job-a")
    assert not promoted.get("failed"), promoted
    assert promoted["phase"] == "Succeeded" and promoted["lock"] is None
    assert promoted["last_promoted_revision"] == started["revision"]
    image, primary = _image_of(api_client, namespace, APP + "-primary")
    assert image == "podinfo:6.7.1" and primary.status.available_replicas == 2
    assert client.AppsV1Api(api_client).read_namespaced_deployment(APP, namespace).spec.replicas == 0

    again = run("canary_promote", state="promoted", lock_holder="job-a")
    assert not again.get("failed") and again["changed"] is False
    assert run("canary_init", lock_holder="job-a")["run_needed"] is False


def test_rollback_keeps_the_primary_and_the_gate_history(api_client, namespace, initialized, run):
    _set_image(api_client, namespace, "podinfo:6.7.2-bad")
    started = run("canary_init", lock_holder="job-a")
    assert started["run_needed"]
    gate = {"time": "2026-11-26T12:00:00Z", "runId": started["run_id"], "weight": 25, "verdict": "fail",
            "failedChecks": 2, "message": "request-success-rate 80 < 99"}
    _patch_status(api_client, namespace, {"canaryWeight": 25, "gateHistory": [gate]})

    rolled = run("canary_promote", state="rolled_back", run_id=started["run_id"], lock_holder="job-a",
                 reason="success rate below 99%")
    assert not rolled.get("failed"), rolled
    assert rolled["phase"] == "Failed" and rolled["canary_weight"] == 0 and rolled["lock"] is None
    status = _canary(api_client, namespace)["status"]
    assert status["gateHistory"] == [gate]
    assert "success rate below 99%" in status["message"]
    assert _image_of(api_client, namespace, APP + "-primary")[0] == "podinfo:6.7.0"
    assert client.AppsV1Api(api_client).read_namespaced_deployment(APP, namespace).spec.replicas == 0
    again = run("canary_promote", state="rolled_back", lock_holder="job-a")
    assert not again.get("failed") and again["changed"] is False


def test_changed_configmap_is_a_new_revision_and_gets_a_primary_copy(api_client, namespace, initialized, run):
    _deploy_target(api_client, namespace, config_data={"color": "green"})
    started = run("canary_init", lock_holder="job-a")
    assert started["run_needed"] and started["revision"] != initialized["revision"]
    promoted = run("canary_promote", state="promoted", run_id=started["run_id"], lock_holder="job-a")
    assert promoted["phase"] == "Succeeded", promoted
    copy = client.CoreV1Api(api_client).read_namespaced_config_map("podinfo-config-primary", namespace)
    assert copy.data == {"color": "green"}
    assert promoted["run_status"]["trackedConfigs"].keys() == {"configmap/podinfo-config"}


def test_config_tracking_can_be_opted_out(api_client, namespace, run):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "podinfo-config", "annotations": {"progressive.delivery/config-tracking": "disabled"}},
        "data": {"color": "blue"}})
    _deploy_target(api_client, namespace, config_data=None,
                   extra_env=[{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "podinfo-config",
                                                                                  "key": "color"}}}])
    first = run("canary_init", spec=_spec(), lock_holder="job-a")
    assert first["bootstrapped"], first
    core.patch_namespaced_config_map("podinfo-config", namespace, {"data": {"color": "red"}})
    assert run("canary_init", lock_holder="job-a")["run_needed"] is False
    names = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
    assert "podinfo-config-primary" not in names


def test_second_concurrent_init_is_refused_naming_the_holder(api_client, namespace, initialized, run):
    _set_image(api_client, namespace, "podinfo:6.8.0")
    first = run("canary_init", lock_holder="awx-job-41")
    assert first["run_needed"]
    before = _resource_versions(api_client, namespace)
    second = run("canary_init", lock_holder="awx-job-42")
    assert second.get("failed")
    assert "awx-job-41" in second["msg"] and second["field"] == "lock"
    assert _resource_versions(api_client, namespace) == before
    # The holder itself may come back (a retried task) and resumes its own run.
    same = run("canary_init", lock_holder="awx-job-41")
    assert not same.get("failed") and same["resumed"], same


def test_an_expired_lock_is_taken_over(api_client, namespace, initialized, run):
    _set_image(api_client, namespace, "podinfo:6.8.1")
    first = run("canary_init", lock_holder="awx-job-1")
    past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    lock = dict(_canary(api_client, namespace)["status"]["lock"], expiresAt=past)
    _patch_status(api_client, namespace, {"lock": lock})
    second = run("canary_init", lock_holder="awx-job-2")
    assert not second.get("failed"), second
    assert second["lock"]["holder"] == "awx-job-2"
    assert second["resumed"] and second["run_id"] == first["run_id"]


def test_an_interrupted_run_reports_where_to_resume(api_client, namespace, initialized, run):
    _set_image(api_client, namespace, "podinfo:6.9.0")
    first = run("canary_init", lock_holder="awx-job-7")
    _patch_status(api_client, namespace, {"canaryWeight": 25, "primaryWeight": 75, "iterations": 1,
                                          "failedChecks": 1})
    again = run("canary_init", lock_holder="awx-job-7")
    assert again["resumed"] and again["run_id"] == first["run_id"]
    assert again["resume"] == {"weight": 25, "iterations": 1, "failed_checks": 1, "phase": "Progressing",
                               "rollback_pending": False}
    # A gate of this run that decided a rollback the killed process did not finish: the next run is
    # told to roll back, not to resume the steps.
    _patch_status(api_client, namespace, {"failedChecks": 2, "gateHistory": [
        {"time": "2026-11-26T00:00:00Z", "runId": first["run_id"], "weight": 25, "iteration": 1,
         "verdict": "fail", "failedChecks": 2, "rollback": True}]})
    pending = run("canary_init", lock_holder="awx-job-7")
    assert pending["resumed"] and pending["resume"]["rollback_pending"] is True, pending["resume"]


def test_check_mode_writes_nothing(api_client, namespace, run):
    _deploy_target(api_client, namespace, config_data={"color": "blue"})
    before = _resource_versions(api_client, namespace)
    bootstrap = run("canary_init", check=True, diff=True, spec=_spec())
    assert not bootstrap.get("failed"), bootstrap
    assert bootstrap["changed"] and bootstrap["bootstrapped"]
    assert "Deployment/%s-primary" % APP in bootstrap["diff"]["after"]
    assert _resource_versions(api_client, namespace) == before

    assert not run("canary_init", spec=_spec(), lock_holder="job-a").get("failed")
    _set_image(api_client, namespace, "podinfo:7.0.0")
    _settle(api_client, namespace, APP)
    before = _resource_versions(api_client, namespace)
    start = run("canary_init", check=True, lock_holder="job-a")
    assert start["changed"] and start["run_needed"]
    assert _resource_versions(api_client, namespace) == before
    real = run("canary_init", lock_holder="job-a")
    _settle(api_client, namespace, APP)
    before = _resource_versions(api_client, namespace)
    for state in ("promoted", "rolled_back"):
        checked = run("canary_promote", check=True, state=state, run_id=real["run_id"], lock_holder="job-a")
        assert not checked.get("failed") and checked["changed"], checked
        assert _resource_versions(api_client, namespace) == before


def test_autoscaler_ref_gets_a_primary_hpa(api_client, namespace, run):
    _deploy_target(api_client, namespace)
    client.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(namespace, {
        "metadata": {"name": APP},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                 "minReplicas": 2, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 80}}}]}})
    spec = dict(_spec(), autoscalerRef={"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                        "name": APP})
    result = run("canary_init", spec=spec, lock_holder="job-a")
    assert not result.get("failed"), result
    hpa = client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler(APP + "-primary", namespace)
    assert hpa.spec.scale_target_ref.name == APP + "-primary" and hpa.spec.max_replicas == 4


BAD_INPUTS = [
    ("missing target", {"spec": dict(_spec(), targetRef={"apiVersion": "apps/v1", "kind": "Deployment",
                                                         "name": "nope"})}, "spec.targetRef.name"),
    ("target of another kind", {"spec": dict(_spec(), targetRef={"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                                 "name": APP})}, "targetRef.kind"),
    ("invalid canary name", {"name": "Bad_Name", "spec": _spec()}, "name"),
    ("invalid target name", {"spec": dict(_spec(), targetRef={"apiVersion": "apps/v1", "kind": "Deployment",
                                                              "name": "UPPER"})}, "targetRef.name"),
    ("negative deadline", {"spec": dict(_spec(), progressDeadlineSeconds=-5)}, "progressDeadlineSeconds"),
    ("step weight too high", {"spec": _spec(stepWeight=150)}, "stepWeight"),
    ("both step forms", {"spec": _spec(stepWeights=[10, 20])}, "stepWeight"),
    ("bad interval", {"spec": _spec(interval="5 minutes")}, "interval"),
    ("unknown provider", {"spec": dict(_spec(), provider="traefik-ng")}, "provider"),
    ("missing service port", {"spec": dict(_spec(), service={})}, "service.port"),
    ("negative iterations", {"spec": _spec(iterations=-1)}, "iterations"),
    ("kubeconfig file missing", {"kubeconfig": "/nonexistent/kubeconfig", "spec": _spec()}, "kubeconfig"),
    ("kubeconfig dict without clusters",
     {"kubeconfig": {"apiVersion": "v1", "kind": "Config", "clusters": []}, "spec": _spec()}, "kubeconfig"),
    ("unknown context", {"context": "no-such-context", "spec": _spec()}, "context"),
    ("spec and definition together", {"spec": _spec(), "definition": {"apiVersion": "flagger.app/v1beta1"}},
     "spec"),
    ("flagger manifest of another kind", {"definition": {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
                                                         "spec": {}}}, "kind"),
    ("no spec and no Canary", {}, "name"),
    ("api_key with username", {"api_key": "tok-3f9a1c", "username": "someone", "password": "pw-77d2e0",
                               "spec": _spec()}, "api_key"),
]


def test_bad_inputs_fail_naming_the_field_and_change_nothing(api_client, namespace, runner_kubeconfig):
    _deploy_target(api_client, namespace)
    before = _resource_versions(api_client, namespace)
    calls = []
    for _label, args, _field in BAD_INPUTS:
        args = dict(args)
        args.setdefault("name", APP)
        args.setdefault("namespace", namespace)
        args.setdefault("kubeconfig", runner_kubeconfig)
        calls.append(("canary_init", args))
    results = run_modules(calls)
    problems = []
    for (label, _args, field), result in zip(BAD_INPUTS, results):
        if not result.get("failed") or field not in result.get("msg", ""):
            problems.append("%s: expected a failure naming %s, got %s" % (label, field, result.get("msg", result)))
    assert not problems, "\n".join(problems)
    assert _resource_versions(api_client, namespace) == before


def test_promote_bad_inputs(api_client, namespace, initialized, run):
    before = _resource_versions(api_client, namespace)
    for args, field in (({"state": "sideways"}, "state"),
                        ({"state": "promoted"}, "state"),  # no run in progress
                        ({"state": "promoted", "name": "missing"}, "name")):
        result = run("canary_promote", **args)
        assert result.get("failed") and field in result["msg"], result
    _set_image(api_client, namespace, "podinfo:9.9.9")
    started = run("canary_init", lock_holder="job-a")
    before = _resource_versions(api_client, namespace)
    stale = run("canary_promote", state="promoted", run_id="0000-stale", lock_holder="job-a")
    assert stale.get("failed") and "run_id" in stale["msg"]
    other = run("canary_promote", state="promoted", lock_holder="job-b")
    assert other.get("failed") and "job-a" in other["msg"]
    assert _resource_versions(api_client, namespace) == before
    assert started["run_needed"]


def test_canary_info_is_read_only_and_reports_readiness(api_client, namespace, initialized, run):
    before = _resource_versions(api_client, namespace)
    info = run("canary_info", history=5)
    assert not info.get("failed") and info["changed"] is False
    assert info["primary"]["ready"] and info["primary"]["replicas"] == 2
    assert info["target"]["replicas"] == 0
    assert info["spec"]["targetRef"]["name"] == APP
    assert _resource_versions(api_client, namespace) == before


def test_without_a_mesh_the_apex_service_reaches_both_versions(api_client, namespace, run):
    _deploy_target(api_client, namespace, replicas=4)
    spec = dict(_spec(), provider="kubernetes")
    first = run("canary_init", spec=spec, lock_holder="job-a")
    assert not first.get("failed"), first
    # The shared label is ours, not part of the revision: a repeat is no new run.
    assert run("canary_init", lock_holder="job-a")["run_needed"] is False
    _set_image(api_client, namespace, "podinfo:6.7.1")
    started = run("canary_init", lock_holder="job-a")
    assert started["run_needed"], started
    half = run("mesh_weight", weight=50)
    assert not half.get("failed"), half
    core = client.CoreV1Api(api_client)
    selector = core.read_namespaced_service(APP, namespace).spec.selector
    assert selector == {"progressive.delivery/app": APP}

    def _serving_images():
        pods = core.list_namespaced_pod(namespace, label_selector="progressive.delivery/app=%s" % APP).items
        ready = [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]
        images = sorted(p.spec.containers[0].image for p in ready)
        return images if images == ["podinfo:6.7.0"] * 2 + ["podinfo:6.7.1"] * 2 else None
    wait_for(_serving_images, timeout=60, message="apex pods split 2/2 between primary and canary")
    promoted = run("canary_promote", state="promoted", run_id=started["run_id"], lock_holder="job-a")
    assert promoted["phase"] == "Succeeded", promoted
