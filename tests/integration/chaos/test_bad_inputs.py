"""Fault injection: the bad-input catalogue (issue 8).

Realistic user mistakes, given to every module and to the role against a namespace holding a
real, initialised Canary (sample app, primary, services, Istio routing). Each mistake must be
refused with a message that names the offending field, and must change nothing: the
resourceVersion of every object in the namespace is the same before and after the catalogue.

Cost: the module cases run as tasks of one ansible-playbook (spread over a few local "hosts"
with the free strategy, so module start-ups overlap), the role cases as one play each, with
``include_role`` inside ``block``/``rescue``, in a second ansible-playbook.
"""

import json
import os
import tempfile
import time

from kubernetes import client, dynamic

import sample_app
from ansible_runner import run_playbook

APP = sample_app.APP
FAULT_MODULE = "bad input (module)"
FAULT_ROLE = "bad input (role)"
WORKERS = 3
FULL = os.environ.get("PD_CHAOS", "") == "full"  # as the chaos conftest decides it
# Pipelining sends each module over stdin: no temporary directory to make and remove per task.
FAST = {"ANSIBLE_PIPELINING": "1"}

# Written by controllers and the (kwok) node agent, never by the collection: their
# resourceVersion moves on its own and says nothing about what a refused task did.
NOISY_KINDS = frozenset(("Pod", "Event", "Endpoints", "EndpointSlice", "Lease", "ReplicaSet",
                         "ControllerRevision", "PodMetrics"))


def spec(**changes):
    """The sample Canary spec with ``analysis``/top-level fields changed (None deletes)."""
    good = sample_app.canary_spec("istio")
    for path, value in changes.items():
        node = good
        keys = path.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return good


# `make test` runs this slice (every module and the role, and every mistake that once got
# through); `make chaos` (PD_CHAOS=full) runs the whole catalogue. Each module case costs an
# interpreter start-up (~1.3 s of CPU), so the slice keeps the file near a minute and a half.
BOUNDED = frozenset((
    "weight-not-a-number", "weight-over-100", "weight-option-misspelt", "weights-not-summing-to-100",
    "stepWeight-zero", "maxWeight-over-100", "stepWeights-not-increasing", "interval-in-words",
    "thresholdRange-min-over-max", "targetRef-without-name", "service-without-port", "provider-unknown",
    "match-on-kubernetes-provider", "top-level-field-misspelt", "webhook-type-unknown", "init-context-unknown",
    "gate-source-type-unknown", "gate-address-not-a-url", "gate-jmespath-invalid",
    "watch-alpha-over-1", "watch-duration-words",
    "promote-state-misspelt", "promote-run-id-of-another-run", "rollback-run-id-of-another-run",
    "info-kubeconfig-missing", "info-api-key-stale",
    "hook-type-unknown", "hook-url-not-a-url",
    "alert-provider-without-url", "alert-timeout-bare-number",
    "report-dest-relative", "report-run-id-unknown",
    "install-state-unknown",
))


def module_catalogue(ns, kubeconfig, tmp):
    """(id, module, args, fields named): every entry a mistake a user could make."""
    auth = {"kubeconfig": kubeconfig}
    ident = dict(auth, name=APP, namespace=ns)
    prom = {"type": "prometheus", "address": "http://127.0.0.1:9"}
    hook = {"name": "smoke", "type": "pre-rollout", "url": "http://127.0.0.1:9/smoke"}
    slack = {"type": "slack", "url": "https://hooks.slack.example/T000/B000"}
    a_file = os.path.join(tmp, "a-file")
    with open(a_file, "w") as handle:
        handle.write("not a directory\n")

    def init(**changes):
        return dict(ident, spec=spec(**changes))
    cases = [
        # ---- mesh_weight
        ("weight-not-a-number", "mesh_weight", dict(ident, weight="abc"), ["weight"]),
        ("weight-over-100", "mesh_weight", dict(ident, weight=150), ["weight"]),
        ("weight-negative", "mesh_weight", dict(ident, weight=-5), ["weight"]),
        ("weight-option-misspelt", "mesh_weight", dict(ident, weigth=20), ["weigth"]),
        ("primary-weight-alone", "mesh_weight", dict(ident, primary_weight=80), ["canary_weight"]),
        ("weights-not-summing-to-100", "mesh_weight", dict(ident, primary_weight=80, canary_weight=30),
         ["primary_weight", "canary_weight"]),
        ("weight-and-split-both", "mesh_weight", dict(ident, weight=20, primary_weight=80, canary_weight=20),
         ["weight"]),
        ("mirror-weight-over-100", "mesh_weight", dict(ident, weight=0, mirror=True, mirror_weight=150),
         ["mirror_weight"]),
        ("weight-missing-namespace", "mesh_weight", dict(auth, name=APP, weight=20), ["namespace"]),
        # ---- canary_init: spec mistakes
        ("stepWeight-zero", "canary_init", init(analysis__stepWeight=0), ["stepWeight"]),
        ("maxWeight-over-100", "canary_init", init(analysis__maxWeight=120), ["analysis.maxWeight"]),
        ("stepWeights-not-increasing", "canary_init",
         init(analysis__stepWeight=None, analysis__maxWeight=None, analysis__stepWeights=[10, 5, 50]),
         ["analysis.stepWeights"]),
        ("interval-in-words", "canary_init", init(analysis__interval="3 minutes"), ["analysis.interval"]),
        ("threshold-negative", "canary_init", init(analysis__threshold=-1), ["analysis.threshold"]),
        ("thresholdRange-min-over-max", "canary_init",
         init(analysis__metrics=[{"name": "request-success-rate", "thresholdRange": {"min": 99, "max": 50}}]),
         ["thresholdRange"]),
        ("metric-without-query", "canary_init",
         init(analysis__metrics=[{"name": "error-budget", "thresholdRange": {"max": 1}}]),
         ["analysis.metrics[0]", "query"]),
        ("targetRef-statefulset", "canary_init", init(targetRef__kind="StatefulSet"), ["targetRef.kind"]),
        ("targetRef-without-name", "canary_init", init(targetRef__name=None), ["targetRef.name"]),
        ("service-without-port", "canary_init", init(service__port=None, service__portName="http"),
         ["service.port"]),
        ("nginx-without-ingressRef", "canary_init", init(provider="nginx"), ["ingressRef"]),
        ("provider-unknown", "canary_init", init(provider="linkerd2"), ["provider"]),
        ("match-on-kubernetes-provider", "canary_init",
         init(provider="kubernetes", analysis__stepWeight=None, analysis__maxWeight=None, analysis__iterations=3,
              analysis__match=[{"headers": {"x-canary": {"exact": "1"}}}]),
         ["analysis.match"]),
        ("top-level-field-misspelt", "canary_init", init(analysys={"interval": "1m"}), ["analysys"]),
        ("webhook-without-url", "canary_init",
         init(analysis__webhooks=[{"name": "smoke", "type": "pre-rollout"}]), ["analysis.webhooks[0].url"]),
        ("webhook-type-unknown", "canary_init",
         init(analysis__webhooks=[dict(hook, type="pre-deploy")]), ["analysis.webhooks[0].type"]),
        ("progressDeadline-as-duration", "canary_init", init(progressDeadlineSeconds="10m"),
         ["progressDeadlineSeconds"]),
        ("spec-and-definition", "canary_init",
         dict(init(), definition={"apiVersion": "flagger.app/v1beta1", "kind": "Canary"}), ["spec", "definition"]),
        ("flagger-manifest-bad-maxWeight", "canary_init",
         dict(ident, definition={"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                                 "metadata": {"name": APP, "namespace": ns}, "spec": spec(analysis__maxWeight=200)}),
         ["analysis.maxWeight"]),
        ("init-context-unknown", "canary_init", dict(init(), context="prod-cluster"), ["context"]),
        # ---- metric_gate
        ("gate-source-type-unknown", "metric_gate", dict(ident, source={"type": "influx"}), ["type", "source"]),
        ("gate-address-not-a-url", "metric_gate",
         dict(ident, source={"type": "prometheus", "address": "prometheus:9090"}), ["source.address"]),
        ("gate-thresholds-crossed", "metric_gate",
         dict(ident, source=prom, metrics=[{"name": "latency", "query": "vector(1)",
                                            "threshold_range": {"min": 10, "max": 5}}]), ["threshold_range"]),
        ("gate-metric-without-name", "metric_gate", dict(ident, source=prom, metrics=[{"query": "vector(1)"}]),
         ["name", "metrics"]),
        ("gate-mode-unknown", "metric_gate", dict(ident, source=prom, mode="bayesian"), ["mode"]),
        ("gate-confidence-over-1", "metric_gate",
         dict(ident, source=prom, mode="compare", compare={"confidence": 1.5}), ["confidence"]),
        ("gate-jmespath-invalid", "metric_gate",
         dict(ident, source={"type": "http", "address": "http://127.0.0.1:9/metrics"},
              metrics_merge="replace",
              metrics=[{"name": "errors", "query": "data[?status=='500'", "threshold_range": {"max": 1}}]),
         ["query"]),
        ("gate-interval-in-words", "metric_gate",
         dict(ident, source=prom, metrics=[{"name": "latency", "query": "vector(1)", "interval": "five minutes",
                                            "threshold_range": {"max": 5}}]), ["interval"]),
        # ---- metric_watch
        ("watch-alpha-over-1", "metric_watch", dict(ident, source=prom, alpha=1.5), ["alpha"]),
        ("watch-duration-words", "metric_watch", dict(ident, source=prom, duration="abc"), ["duration"]),
        ("watch-interval-zero", "metric_watch", dict(ident, source=prom, watch_interval=0), ["watch_interval"]),
        ("watch-address-not-a-url", "metric_watch", dict(ident, source={"address": "localhost:9090"}),
         ["source.address"]),
        ("watch-metric-without-total", "metric_watch",
         dict(ident, source=prom, metrics=[{"name": "errors", "success_query": "vector(1)"}]), ["total_query"]),
        # ---- canary_promote
        ("promote-state-misspelt", "canary_promote", dict(ident, state="promote"), ["state"]),
        ("promote-run-id-of-another-run", "canary_promote", dict(ident, state="promoted", run_id="run-of-yesterday"),
         ["run_id"]),
        ("rollback-run-id-of-another-run", "canary_promote",
         dict(ident, state="rolled_back", run_id="run-of-yesterday"), ["run_id"]),
        ("promote-wrong-canary-name", "canary_promote", dict(ident, name="podinf0", state="promoted"), ["name"]),
        # ---- canary_info and auth
        ("info-history-negative", "canary_info", dict(ident, history=-1), ["history"]),
        ("info-kubeconfig-missing", "canary_info", dict(ident, kubeconfig=os.path.join(tmp, "nope", "config")),
         ["kubeconfig"]),
        ("info-api-key-stale", "canary_info", dict(ident, api_key="expired-token"), ["api_key"]),
        ("info-username-without-password", "canary_info", dict(ident, username="deployer"), ["password"]),
        # ---- canary_hook
        ("hook-type-unknown", "canary_hook", dict(ident, type="pre-deploy"), ["type"]),
        ("hook-without-url", "canary_hook", dict(ident, type="pre-rollout", webhooks=[{"name": "smoke"}]), ["url"]),
        ("hook-url-not-a-url", "canary_hook",
         dict(ident, type="pre-rollout", webhooks=[dict(hook, url="smoke.test.svc/run")]), ["webhooks[0].url"]),
        ("hook-wait-timeout-words", "canary_hook",
         dict(ident, type="confirm-rollout", wait=True, wait_timeout="forever",
              webhooks=[dict(hook, type="confirm-rollout")]), ["wait_timeout"]),
        # ---- canary_alert
        ("alert-provider-type-unknown", "canary_alert",
         dict(ident, msg="hello", providers=[dict(slack, type="pagerduty")]), ["type"]),
        ("alert-provider-without-url", "canary_alert", dict(ident, msg="hello", providers=[{"type": "slack"}]),
         ["url"]),
        ("alert-url-without-scheme", "canary_alert",
         dict(ident, msg="hello", providers=[dict(slack, url="hooks.slack.example/T000/B000")]),
         ["providers[0].url"]),
        ("alert-timeout-bare-number", "canary_alert", dict(ident, msg="hello", providers=[slack], timeout="10"),
         ["timeout"]),
        # ---- canary_report
        ("report-dest-relative", "canary_report", dict(ident, dest="reports"), ["dest"]),
        ("report-dest-is-a-file", "canary_report", dict(ident, dest=a_file), ["dest"]),
        ("report-run-id-unknown", "canary_report", dict(ident, dest=tmp, run_id="run-of-yesterday"), ["run_id"]),
        # ---- install
        ("install-state-unknown", "install", dict(auth, state="installed", definitions=[]), ["state"]),
        ("install-without-definitions", "install", dict(auth), ["definitions"]),
    ]
    return cases


def role_catalogue(ns, kubeconfig, tmp, prometheus_url):
    """(id, role vars, fields named)."""
    base = {"canary_name": APP, "canary_namespace": ns, "canary_auth": {"kubeconfig": kubeconfig},
            "canary_metrics_source": {"type": "prometheus", "address": prometheus_url or "http://127.0.0.1:9"},
            "canary_report_dir": tmp}

    def with_(**changes):
        out = dict(base)
        for key, value in changes.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        return out

    return [
        ("name-missing", with_(canary_name=None), ["canary_name"]),
        ("watch-alpha-not-a-number", with_(canary_watch_alpha="x"), ["canary_watch_alpha"]),
        ("watch-alpha-over-1", with_(canary_watch_alpha=1.5), ["canary_watch_alpha"]),
        ("watch-interval-zero", with_(canary_watch_interval=0), ["canary_watch_interval"]),
        ("spec-maxWeight-over-100", with_(canary_spec=spec(analysis__maxWeight=120)), ["analysis.maxWeight"]),
        ("spec-not-a-mapping", with_(canary_spec="podinfo"), ["canary_spec"]),
        ("manifest-missing", with_(canary_manifest=os.path.join(tmp, "missing-canary.yaml")), ["canary_manifest"]),
        ("alert-provider-without-url", with_(canary_alert_providers=[{"type": "slack"}]),
         ["canary_alert_providers", "url"]),
        ("metrics-source-type-unknown", with_(canary_metrics_source={"type": "influx",
                                                                     "address": "http://127.0.0.1:8086"}),
         ["canary_metrics_source", "type"]),
        ("metrics-source-address-not-a-url", with_(canary_metrics_source={"address": "prometheus:9090"}),
         ["canary_metrics_source", "address"]),
        ("hook-phase-unknown", with_(canary_hook_tasks={"before_release": os.path.join(tmp, "approve.yml")}),
         ["canary_hook_tasks", "before_release"]),
        ("report-dir-relative", with_(canary_report_dir="reports"), ["canary_report_dir"]),
        ("spec-and-manifest", with_(canary_spec=spec(), canary_manifest=os.path.join(tmp, "canary.yaml")),
         ["canary_spec", "canary_manifest"]),
        ("kubeconfig-missing", with_(canary_auth={"kubeconfig": os.path.join(tmp, "nope", "config")}),
         ["kubeconfig"]),
    ]


def run_module_catalogue(cases, workers=WORKERS):
    """Every case as one task of one playbook; returns the result dicts in order."""
    with tempfile.TemporaryDirectory() as tmp:
        hosts = ["worker%d" % index for index in range(workers)]
        tasks = []
        mine = {host: [] for host in hosts}
        for index, (_case, module, args, _fields) in enumerate(cases):
            host = hosts[index % workers]
            mine[host].append(index)
            tasks.append({"name": "case %d" % index, "progressive.delivery." + module: args,
                          "register": "case_%d" % index, "ignore_errors": True,
                          "when": "inventory_hostname == '%s'" % host})
        save = {"ansible.builtin.copy": {
            "content": "{{ {%s} | to_json }}" % ", ".join(
                "'%d': case_%d" % (index, index) for index in range(len(cases))),
            "dest": os.path.join(tmp, "{{ inventory_hostname }}.json")}, "check_mode": False, "diff": False}
        # Each host saves only the results it ran (the others are 'skipped' entries).
        tasks.append(dict(save, name="save"))
        plays = [{"hosts": ",".join(hosts), "gather_facts": False, "strategy": "free", "tasks": tasks}]
        _rc, stdout, stderr = run_playbook(plays, env=FAST,
                                           extra_args=("-i", ",".join(hosts) + ",", "-f", str(workers)))
        results = [None] * len(cases)
        for host in hosts:
            try:
                with open(os.path.join(tmp, host + ".json")) as handle:
                    saved = json.load(handle)
            except (OSError, ValueError):
                raise AssertionError("no results from %s; stdout=%s stderr=%s" % (host, stdout[-3000:], stderr[-2000:]))
            for index in mine[host]:
                results[index] = saved[str(index)]
        return results


def run_role_catalogue(cases, tmp, workers=WORKERS):
    """Each case an include_role inside block/rescue, the failure (or none) saved to a file; the
    cases are spread over the same local "hosts" as the module cases."""
    hosts = ["worker%d" % index for index in range(workers)]
    tasks = []
    for index, (_case, role_vars, _fields) in enumerate(cases):
        out = os.path.join(tmp, "role-%d.json" % index)
        saved = ("{{ {'failed': true, 'msg': ansible_failed_result.msg | default(''), "
                 "'task': ansible_failed_task.name | default('')} | to_json }}")
        tasks.append({
            "name": "case %d" % index, "when": "inventory_hostname == '%s'" % hosts[index % workers],
            "block": [{"ansible.builtin.include_role": {"name": "progressive.delivery.canary"}, "vars": role_vars},
                      {"ansible.builtin.copy": {"content": '{"failed": false}', "dest": out}}],
            "rescue": [{"ansible.builtin.copy": {"content": saved, "dest": out}}]})
    plays = [{"hosts": ",".join(hosts), "gather_facts": False, "strategy": "free", "tasks": tasks}]
    _rc, stdout, stderr = run_playbook(plays, env=FAST, extra_args=("-i", ",".join(hosts) + ",", "-f", str(workers)))
    results = []
    for index in range(len(cases)):
        try:
            with open(os.path.join(tmp, "role-%d.json" % index)) as handle:
                results.append(json.load(handle))
        except (OSError, ValueError):
            raise AssertionError("no result for role case %d; stdout=%s stderr=%s"
                                 % (index, stdout[-3000:], stderr[-2000:]))
    return results


def snapshot(api_client, namespace):
    """kind/name -> resourceVersion of every object in the namespace the collection could touch."""
    dyn = dynamic.DynamicClient(api_client)
    # Discovery is cached on disk across sessions: without this a CRD installed since (the
    # Canary's own) would be missing from the snapshot.
    dyn.resources.invalidate_cache()
    seen = {}
    for resource in dyn.resources.search(namespaced=True):
        if resource.kind in NOISY_KINDS or resource.kind.endswith("List") or "list" not in (resource.verbs or []):
            continue
        if "/" in resource.name:  # subresources
            continue
        try:
            items = resource.get(namespace=namespace).items
        except Exception:  # a kind the runner's cluster serves but cannot list: nothing to compare
            continue
        for item in items:
            key = "%s/%s/%s" % (resource.group_version, resource.kind, item.metadata.name)
            seen[key] = item.metadata.resourceVersion
    return seen


def wait_settled(api_client, namespace, timeout=30):
    """Deployments observed and ready, so no controller writes during the catalogue."""
    apps = client.AppsV1Api(api_client)
    deadline = time.time() + timeout
    while time.time() < deadline:
        deps = apps.list_namespaced_deployment(namespace).items
        if all((d.status.observed_generation or 0) >= d.metadata.generation
               and (d.status.ready_replicas or 0) == (d.spec.replicas or 0)
               and (d.status.updated_replicas or 0) == (d.spec.replicas or 0) for d in deps):
            return
        time.sleep(0.3)
    raise AssertionError("deployments in %s did not settle" % namespace)


def judge(ledger, fault, case, result, fields):
    """Refused, and the message names every expected field: recorded, and returned as a problem or None."""
    msg = str(result.get("msg") or "")
    if not result.get("failed"):
        outcome, ok = "accepted", False
    elif not all(field in msg for field in fields):
        outcome, ok = "field not named", False
    else:
        outcome, ok = "refused, field named", True
    ledger.record(fault, outcome, ok, "%s: %s" % (case, msg[:300]))
    return None if ok else "%s: %s (expected %s) msg=%r" % (case, outcome, fields, msg[:400])


def test_bad_inputs_are_refused_naming_the_field_and_change_nothing(world, api_client, namespace, canary_crd,
                                                                    runner_kubeconfig, ledger, tmp_path):
    started = time.time()
    tmp = str(tmp_path)
    sample_app.release(api_client, namespace, "6.7.0")
    init = run_module_catalogue([("set-up", "canary_init",
                                  {"kubeconfig": runner_kubeconfig, "name": APP, "namespace": namespace,
                                   "spec": spec()}, [])], workers=1)[0]
    assert not init.get("failed"), init
    canary = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "progressive.delivery", "v1alpha1", namespace, "canaries", APP)
    assert canary["status"]["phase"] == "Initialized", canary["status"]
    wait_settled(api_client, namespace)
    before = snapshot(api_client, namespace)
    for kind in ("/Canary/", "/VirtualService/", "/Deployment/%s-primary" % APP, "/Service/%s-canary" % APP):
        assert any(kind in key for key in before), (kind, sorted(before))

    modules = module_catalogue(namespace, runner_kubeconfig, tmp)
    assert BOUNDED <= set(case for case, _m, _a, _f in modules)
    if not FULL:
        modules = [entry for entry in modules if entry[0] in BOUNDED]
    roles = role_catalogue(namespace, runner_kubeconfig, tmp, world.prometheus_url)
    assert len(modules) + len(roles) >= 40
    assert len(set(m for _c, m, _a, _f in modules)) == 10, "every module is in the catalogue"

    problems = []
    for (case, _module, _args, fields), result in zip(modules, run_module_catalogue(modules)):
        problems.append(judge(ledger, FAULT_MODULE, case, result, fields))
    for (case, _vars, fields), result in zip(roles, run_role_catalogue(roles, tmp)):
        problems.append(judge(ledger, FAULT_ROLE, case, result, fields))

    after = snapshot(api_client, namespace)
    changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    ledger.record("bad input (cluster untouched)", "unchanged" if not changed else "changed", not changed,
                  ", ".join(changed))
    problems = [problem for problem in problems if problem]
    assert not problems, "\n".join(problems)
    assert not changed, "objects written by refused tasks: %s" % changed
    print("bad-input catalogue: %d module cases, %d role cases, %.1f s"
          % (len(modules), len(roles), time.time() - started))
