"""Unit tests of the traffic emulator (hack/emulator.py): routing decisions for every router's
objects, fault profiles, histogram and exposition format, and that the collection's built-in
queries select the series it emits."""

import json
import os
import random
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "hack"))

import emulator  # noqa: E402  (dev tooling, not a package)
from emulator import Request  # noqa: E402
from ansible_collections.progressive.delivery.plugins.module_utils import _builtin_metrics  # noqa: E402

NS = "shop"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def deployment(name, labels=None):
    return {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": labels or {"app": name}}}}


def pod(name, app, image, ready=True, fault=None, terminating=False, extra_labels=None):
    metadata = {"name": name, "labels": dict({"app": app, "pod-template-hash": "abc123"}, **(extra_labels or {}))}
    if fault is not None:
        metadata["annotations"] = {emulator.FAULT_ANNOTATION: fault if isinstance(fault, str) else json.dumps(fault)}
    if terminating:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"containers": [{"name": "app", "image": image}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def service(name, selector):
    return {"metadata": {"name": name}, "spec": {"selector": selector}}


def canary(provider, match=None, ingress=None, port=80):
    spec = {"provider": provider, "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "service": {"port": port}, "analysis": {}}
    if match:
        spec["analysis"]["match"] = match
    if ingress:
        spec["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": ingress}
    return {"metadata": {"name": "web", "namespace": NS}, "spec": spec}


def snapshot(provider, objects=None, pods=None, services=None, **canary_args):
    return {
        "canary": canary(provider, **canary_args),
        "pods": pods if pods is not None else [
            pod("web-primary-7d9f8c6b5-aaaaa", "web-primary", "web:1"),
            pod("web-primary-7d9f8c6b5-bbbbb", "web-primary", "web:1"),
            pod("web-5b6c754f88-ccccc", "web", "web:2"),
        ],
        "deployments": {"web": deployment("web"), "web-primary": deployment("web-primary")},
        "services": services if services is not None else {
            "web": service("web", {"app": "web-primary"}),
            "web-primary": service("web-primary", {"app": "web-primary"}),
            "web-canary": service("web-canary", {"app": "web"}),
        },
        "objects": objects or {},
    }


def virtual_service(http):
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": http}}


def weighted(primary, canary_weight, host_suffix="", **extra):
    route = {"route": [{"destination": {"host": "web-primary" + host_suffix}, "weight": primary},
                       {"destination": {"host": "web-canary" + host_suffix}, "weight": canary_weight}]}
    route.update(extra)
    return route


def http_route(rules):
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": rules}}


def ingress(name, service_name, annotations=None, port=80):
    return {"metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": service_name, "port": {"number": port}}}}]}}]}}


def rounded(mapping):
    return {key: round(value, 6) for key, value in mapping.items()}


# ------------------------------------------------------------------------------------------------
# fault profiles
# ------------------------------------------------------------------------------------------------

def test_fault_profile_full_form():
    fault = emulator.parse_fault('{"errorRate": 0.2, "errorCode": 503, "latencyMs": {"p50": 20, "p99": 80}}')
    assert fault.as_dict() == {"errorRate": 0.2, "errorCode": 503, "latencyMs": {"p50": 20.0, "p99": 80.0}}


def test_fault_profile_defaults_and_short_forms():
    assert emulator.parse_fault(None) is emulator.HEALTHY
    assert emulator.parse_fault("  ") is emulator.HEALTHY
    assert emulator.parse_fault("{}") == emulator.HEALTHY
    assert emulator.HEALTHY.as_dict() == {"errorRate": 0.0, "errorCode": 500, "latencyMs": {"p50": 20.0, "p99": 60.0}}
    # A number is the median, with the default tail ratio.
    assert emulator.parse_fault('{"latencyMs": 100}').as_dict()["latencyMs"] == {"p50": 100.0, "p99": 300.0}
    # p50 alone keeps the default ratio too; p99 alone keeps the default median.
    assert emulator.parse_fault('{"latencyMs": {"p50": 50}}').as_dict()["latencyMs"] == {"p50": 50.0, "p99": 150.0}
    assert emulator.parse_fault('{"latencyMs": {"p99": 500}}').as_dict()["latencyMs"] == {"p50": 20.0, "p99": 500.0}


@pytest.mark.parametrize("text, message", [
    ("nope", "is not JSON"),
    ("[0.2]", "must be a JSON object"),
    ('{"errorrate": 0.2}', "unknown key(s) errorrate; known keys: errorRate, errorCode, latencyMs"),
    ('{"errorRate": 20}', "errorRate is a fraction between 0 and 1, got 20 (did you mean 0.2?)"),
    ('{"errorRate": -0.1}', "errorRate is a fraction between 0 and 1"),
    ('{"errorRate": "0.2"}', "errorRate must be a number"),
    ('{"errorRate": true}', "errorRate must be a number"),
    ('{"errorCode": 200}', "errorCode must be an HTTP error status between 400 and 599, got 200"),
    ('{"latencyMs": {"p50": 80, "p99": 20}}', "latencyMs.p99 (20) must not be below latencyMs.p50 (80)"),
    ('{"latencyMs": {"p95": 80}}', "latencyMs has unknown key(s) p95"),
    ('{"latencyMs": 0}', "latencyMs.p50 must be above 0"),
])
def test_fault_profile_errors_name_the_field(text, message):
    with pytest.raises(emulator.FaultError) as error:
        emulator.parse_fault(text)
    assert message in str(error.value)


def test_fault_profile_samples_follow_the_profile():
    fault = emulator.parse_fault('{"errorRate": 0.2, "latencyMs": {"p50": 20, "p99": 80}}')
    rng = random.Random(7)
    samples = [fault.sample(rng) for _sample in range(20000)]
    errors = sum(1 for code, _latency in samples if code == 500)
    assert abs(errors / len(samples) - 0.2) < 0.015
    assert set(code for code, _latency in samples) == {200, 500}
    latencies = sorted(latency for _code, latency in samples)
    assert abs(latencies[len(latencies) // 2] - 20) < 1.5
    assert abs(latencies[int(len(latencies) * 0.99)] - 80) < 10


def test_pod_version_carries_the_fault_annotation():
    healthy = emulator.version_of(pod("a", "web", "web:2"))
    faulty = emulator.version_of(pod("b", "web", "web:2", fault={"errorRate": 0.2}))
    broken = emulator.version_of(pod("c", "web", "web:2", fault="{oops"))
    assert healthy == ("web:2", emulator.HEALTHY, None)
    assert faulty[0].startswith("web:2+fault:") and faulty[1].error_rate == 0.2 and faulty[2] is None
    assert broken[1] is emulator.HEALTHY and "is not JSON" in broken[2]


# ------------------------------------------------------------------------------------------------
# histogram and exposition format
# ------------------------------------------------------------------------------------------------

def test_histogram_buckets_are_le_inclusive_and_cumulative():
    histogram = emulator.Histogram((1, 5, 10))
    for value in (0.5, 1, 1.0001, 5, 7, 10, 11, 1000):
        histogram.observe(value)
    assert histogram.cumulative() == [(1.0, 2), (5.0, 4), (10.0, 6), (float("inf"), 8)]
    assert histogram.count == 8
    assert histogram.sum == pytest.approx(0.5 + 1 + 1.0001 + 5 + 7 + 10 + 11 + 1000)


def parse_exposition(text):
    """[(name, labels, value)] with the format checked line by line."""
    series, typed = [], {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _hash, _type, name, kind = line.split(" ")
            assert name not in typed, "TYPE given twice for %s" % name
            typed[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = line_re.match(line)
        assert match, "bad exposition line: %r" % line
        labels = {}
        if match.group(3):
            position = 0
            for found in label_re.finditer(match.group(3)):
                assert found.start() == position, line
                labels[found.group(1)] = re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), found.group(2))
                position = found.end()
            assert position == len(match.group(3)), line
        float(match.group(4).replace("+Inf", "inf"))
        series.append((match.group(1), labels, float(match.group(4).replace("+Inf", "inf"))))
    keys = [(name, tuple(sorted(labels.items()))) for name, labels, _value in series]
    assert len(keys) == len(set(keys)), "duplicate series"
    return series


def test_exposition_format_of_counters_histograms_and_summaries():
    registry = emulator.Registry()
    counter = registry.family("demo_requests_total", "counter", "Requests.", ("path", "code"))
    histogram = registry.family("demo_duration_seconds", "histogram", "Duration.", ("path",), (0.5, 1, 2.5))
    summary = registry.family("demo_latency_seconds", "summary", "Latency.", ("path",))
    counter.inc({"path": 'a "quoted"\\path\nx', "code": 200}, 3)
    counter.inc({"path": "/", "code": 500})
    for value in (0.2, 0.7, 3.0):
        histogram.observe({"path": "/"}, value)
        summary.observe({"path": "/"}, value)
    text = registry.render()
    assert text.count("# TYPE demo_requests_total counter") == 1
    assert "# TYPE demo_duration_seconds histogram" in text and "# TYPE demo_latency_seconds summary" in text
    assert 'demo_requests_total{path="a \\"quoted\\"\\\\path\\nx",code="200"} 3' in text
    assert 'demo_duration_seconds_bucket{path="/",le="0.5"} 1' in text
    assert 'demo_duration_seconds_bucket{path="/",le="1"} 2' in text
    assert 'demo_duration_seconds_bucket{path="/",le="2.5"} 2' in text
    assert 'demo_duration_seconds_bucket{path="/",le="+Inf"} 3' in text
    assert 'demo_duration_seconds_count{path="/"} 3' in text
    assert 'demo_latency_seconds_count{path="/"} 3' in text
    series = parse_exposition(text)
    assert ("demo_requests_total", {"path": 'a "quoted"\\path\nx', "code": "200"}, 3.0) in series
    sums = [value for name, _labels, value in series if name == "demo_duration_seconds_sum"]
    assert sums == [pytest.approx(3.9)]


def test_registry_drops_an_owners_series():
    registry = emulator.Registry()
    counter = registry.family("x_total", "counter", "X.", ("app",))
    counter.inc({"app": "a"}, owner="ns/a")
    counter.inc({"app": "b"}, owner="ns/b")
    registry.drop("ns/a")
    assert 'x_total{app="a"}' not in registry.render() and 'x_total{app="b"} 1' in registry.render()


# ------------------------------------------------------------------------------------------------
# match conditions and example requests
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", [
    "^(.*?;)?(canary=always)(;.*)?$", "(insider|beta)", "[0-9]+", "[^;]+", "user-\\d{3}", "(?i)firefox.*",
    "a{2,3}b?", "[a-f0-9]{8}",
])
def test_example_for_regex_matches_the_whole_pattern(pattern):
    example = emulator.example_for_regex(pattern)
    assert example is not None and re.fullmatch(pattern, example)


def test_example_for_regex_gives_up_cleanly():
    assert emulator.example_for_regex("(unclosed") is None
    assert emulator.example_for_regex("(a)\\1") is None  # backreferences: no example


def test_request_for_condition_satisfies_istio_semantics():
    condition = {"headers": {"x-canary": {"exact": "insider"}, "cookie": {"regex": "^(.*?;)?(type=insider)(;.*)?$"},
                             "user-agent": {"prefix": "Mozilla"}},
                 "uri": {"prefix": "/api"}, "queryParams": {"beta": {"exact": "1"}}, "sourceLabels": {"app": "front"}}
    request, why = emulator.request_for_condition(condition)
    assert why is None
    assert emulator.istio_condition_matches(condition, request)
    assert not emulator.istio_condition_matches(condition, Request())
    nginx_request, _why = emulator.request_for_condition({"headers": {"cookie": {"exact": "canary"}}},
                                                         cookie_names_condition=True)
    assert nginx_request.cookies() == {"canary": "always"}


# ------------------------------------------------------------------------------------------------
# routing decisions, one router shape at a time
# ------------------------------------------------------------------------------------------------

def test_istio_weights_with_short_and_fqdn_hosts():
    for suffix in ("", ".shop", ".shop.svc", ".shop.svc.cluster.local"):
        decision = emulator.decide_istio(virtual_service([weighted(90, 10, suffix)]), Request(), NS)
        assert rounded(decision.shares()) == {"web-primary": 0.9, "web-canary": 0.1}
        assert decision.mirrors == []
    other_namespace = emulator.decide_istio(virtual_service([weighted(50, 50, ".elsewhere")]), Request(), NS)
    assert rounded(other_namespace.shares()) == {None: 1.0}


def test_istio_weight_zero_and_single_destination():
    assert rounded(emulator.decide_istio(virtual_service([weighted(100, 0)]), Request(), NS).shares()) == {"web-primary": 1.0}
    single = virtual_service([{"route": [{"destination": {"host": "web-canary", "port": {"number": 9898}}}]}])
    decision = emulator.decide_istio(single, Request(), NS)
    assert rounded(decision.shares()) == {"web-canary": 1.0} and decision.backends[0].port == 9898
    # Several destinations without weights: none gets traffic (Istio wants weights summing to 100).
    unweighted = virtual_service([{"route": [{"destination": {"host": "web-primary"}}, {"destination": {"host": "web-canary"}}]}])
    assert emulator.decide_istio(unweighted, Request(), NS).backends == []


def test_istio_ab_route_in_front_takes_matching_requests():
    vs = virtual_service([
        {"name": "progressive-delivery-match",
         "match": [{"headers": {"x-canary": {"exact": "insider"}}}, {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}],
         "route": [{"destination": {"host": "web-primary"}, "weight": 0}, {"destination": {"host": "web-canary"}, "weight": 100}]},
        weighted(100, 0, name="primary"),
    ])
    assert rounded(emulator.decide_istio(vs, Request(headers={"x-canary": "insider"}), NS).shares()) == {"web-canary": 1.0}
    assert rounded(emulator.decide_istio(vs, Request(headers={"cookie": "a=b;canary=always"}), NS).shares()) == {"web-canary": 1.0}
    assert rounded(emulator.decide_istio(vs, Request(headers={"x-canary": "outsider"}), NS).shares()) == {"web-primary": 1.0}
    assert rounded(emulator.decide_istio(vs, Request(), NS).shares()) == {"web-primary": 1.0}


def test_istio_mirror_with_and_without_percentage():
    full = emulator.decide_istio(virtual_service([weighted(100, 0, mirror={"host": "web-canary"})]), Request(), NS)
    assert full.mirror_shares() == {"web-canary": 1.0} and rounded(full.shares()) == {"web-primary": 1.0}
    partial = emulator.decide_istio(virtual_service([weighted(100, 0, mirror={"host": "web-canary"},
                                                              mirrorPercentage={"value": 25.0})]), Request(), NS)
    assert partial.mirror_shares() == {"web-canary": 0.25}
    mirrors = emulator.decide_istio(virtual_service([weighted(100, 0, mirrors=[{"destination": {"host": "web-canary"},
                                                                                "percentage": {"value": 5}}])]), Request(), NS)
    assert mirrors.mirror_shares() == {"web-canary": 0.05}


def test_istio_no_matching_route_is_no_route():
    vs = virtual_service([dict(weighted(90, 10), match=[{"uri": {"prefix": "/api"}}])])
    decision = emulator.decide_istio(vs, Request(path="/"), NS)
    assert decision.backends == [] and "no http route" in decision.note
    assert rounded(emulator.decide_istio(vs, Request(path="/api/v1"), NS).shares()) == {"web-primary": 0.9, "web-canary": 0.1}


def test_gateway_weights_are_proportions_with_default_one():
    route = http_route([{"backendRefs": [{"name": "web-primary", "port": 80, "weight": 1},
                                         {"name": "web-canary", "port": 80, "weight": 3}]}])
    assert rounded(emulator.decide_gateway(route, Request(), NS).shares()) == {"web-primary": 0.25, "web-canary": 0.75}
    defaults = http_route([{"backendRefs": [{"name": "web-primary", "port": 80}, {"name": "web-canary", "port": 80}]}])
    assert rounded(emulator.decide_gateway(defaults, Request(), NS).shares()) == {"web-primary": 0.5, "web-canary": 0.5}
    zero = http_route([{"backendRefs": [{"name": "web-primary", "port": 80, "weight": 100},
                                        {"name": "web-canary", "port": 80, "weight": 0}]}])
    assert rounded(emulator.decide_gateway(zero, Request(), NS).shares()) == {"web-primary": 1.0}


def test_gateway_most_specific_rule_wins_whatever_its_position():
    route = http_route([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
         "backendRefs": [{"name": "web-primary", "port": 80, "weight": 100}, {"name": "web-canary", "port": 80, "weight": 0}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                      "headers": [{"name": "X-Canary", "value": "insider"}]},
                     {"path": {"type": "PathPrefix", "value": "/"},
                      "headers": [{"type": "RegularExpression", "name": "cookie", "value": "^(.*?;)?(canary=always)(;.*)?$"}]}],
         "backendRefs": [{"name": "web-canary", "port": 80}]},
    ])
    assert rounded(emulator.decide_gateway(route, Request(headers={"x-canary": "insider"}), NS).shares()) == {"web-canary": 1.0}
    assert rounded(emulator.decide_gateway(route, Request(headers={"cookie": "canary=always"}), NS).shares()) == {"web-canary": 1.0}
    assert rounded(emulator.decide_gateway(route, Request(headers={"x-canary": "no"}), NS).shares()) == {"web-primary": 1.0}


def test_gateway_path_and_query_matching():
    route = http_route([{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                         "backendRefs": [{"name": "web-canary", "port": 80}]},
                        {"matches": [{"path": {"type": "Exact", "value": "/"}, "queryParams": [{"name": "beta", "value": "1"}]}],
                         "backendRefs": [{"name": "web-canary", "port": 80}]}])
    assert emulator.decide_gateway(route, Request(path="/apix"), NS).backends == []
    assert rounded(emulator.decide_gateway(route, Request(path="/api/x"), NS).shares()) == {"web-canary": 1.0}
    assert rounded(emulator.decide_gateway(route, Request(path="/", query={"beta": "1"}), NS).shares()) == {"web-canary": 1.0}
    assert emulator.decide_gateway(route, Request(path="/"), NS).backends == []


def test_gateway_request_mirror_percent_fraction_and_default():
    def mirrored(**extra):
        mirror = dict({"backendRef": {"name": "web-canary", "port": 80}}, **extra)
        route = http_route([{"backendRefs": [{"name": "web-primary", "port": 80}],
                             "filters": [{"type": "RequestMirror", "requestMirror": mirror}]}])
        return emulator.decide_gateway(route, Request(), NS).mirror_shares()
    assert mirrored() == {"web-canary": 1.0}
    assert mirrored(percent=30) == {"web-canary": 0.3}
    assert mirrored(fraction={"numerator": 1, "denominator": 8}) == {"web-canary": 0.125}


def test_gateway_backend_outside_the_namespace_is_unavailable():
    route = http_route([{"backendRefs": [{"name": "web-primary", "port": 80, "weight": 50},
                                         {"name": "web-canary", "namespace": "other", "port": 80, "weight": 50}]}])
    assert rounded(emulator.decide_gateway(route, Request(), NS).shares()) == {"web-primary": 0.5, "": 0.5}


def test_smi_traffic_split_weights():
    split = {"spec": {"service": "web", "backends": [{"service": "web-primary", "weight": 80}, {"service": "web-canary", "weight": 20}]}}
    assert rounded(emulator.decide_smi(split).shares()) == {"web-primary": 0.8, "web-canary": 0.2}
    split["spec"]["backends"][1]["weight"] = 0
    assert rounded(emulator.decide_smi(split).shares()) == {"web-primary": 1.0}


@pytest.mark.parametrize("annotations, request_args, expected", [
    ({"canary-weight": "30"}, {}, 0.3),
    ({"canary-weight": "0"}, {}, 0.0),
    ({"canary-weight": "100"}, {}, 1.0),
    ({"canary-weight": "30", "canary-weight-total": "1000"}, {}, 0.03),
    ({"canary-weight": "10", "canary-by-header": "X-Canary"}, {"headers": {"x-canary": "always"}}, 1.0),
    ({"canary-weight": "10", "canary-by-header": "X-Canary"}, {"headers": {"x-canary": "never"}}, 0.0),
    ({"canary-weight": "10", "canary-by-header": "X-Canary"}, {"headers": {"x-canary": "maybe"}}, 0.1),
    ({"canary-weight": "0", "canary-by-header": "X-Canary", "canary-by-header-value": "insider"},
     {"headers": {"x-canary": "insider"}}, 1.0),
    ({"canary-weight": "0", "canary-by-header": "X-Canary", "canary-by-header-value": "insider"},
     {"headers": {"x-canary": "always"}}, 0.0),
    ({"canary-weight": "0", "canary-by-header": "X-Canary", "canary-by-header-pattern": "^in.*"},
     {"headers": {"x-canary": "insider"}}, 1.0),
    ({"canary-weight": "0", "canary-by-cookie": "canary"}, {"headers": {"cookie": "a=1; canary=always"}}, 1.0),
    ({"canary-weight": "100", "canary-by-cookie": "canary"}, {"headers": {"cookie": "canary=never"}}, 0.0),
])
def test_nginx_canary_probability(annotations, request_args, expected):
    annotations = {emulator.NGINX + key: value for key, value in annotations.items()}
    assert emulator.nginx_canary_probability(annotations, Request(**request_args)) == pytest.approx(expected)


def test_nginx_decision_tags_the_canary_upstream():
    main = ingress("web", "web")
    canary_ingress = ingress("web-canary", "web-canary", {emulator.NGINX + "canary": "true", emulator.NGINX + "canary-weight": "20"})
    decision = emulator.decide_nginx(main, canary_ingress, Request(), NS, ("web", 80))
    assert rounded(decision.shares()) == {"web": 0.8, "web-canary": 0.2}
    assert [backend.tag for backend in decision.backends] == ["", "shop-web-canary-80"]
    canary_ingress["metadata"]["annotations"][emulator.NGINX + "canary"] = "false"
    assert rounded(emulator.decide_nginx(main, canary_ingress, Request(), NS, ("web", 80)).shares()) == {"web": 1.0}
    assert rounded(emulator.decide_nginx(main, None, Request(), NS, ("web", 80)).shares()) == {"web": 1.0}
    assert rounded(emulator.decide_nginx(None, None, Request(), NS, ("web", 80)).shares()) == {"web": 1.0}


# ------------------------------------------------------------------------------------------------
# plans: routes resolved to ready pods
# ------------------------------------------------------------------------------------------------

def plan_shares(plan):
    users, mirrored = plan.shares()
    return {key: value for key, value in users.items() if value}, {key: value for key, value in mirrored.items() if value}


def test_kubernetes_mode_shares_follow_ready_pods():
    pods = [pod("web-primary-1-a", "web-primary", "web:1"), pod("web-primary-1-b", "web-primary", "web:1"),
            pod("web-primary-1-c", "web-primary", "web:1"), pod("web-2-d", "web", "web:2"),
            pod("web-2-e", "web", "web:2", ready=False), pod("web-2-f", "web", "web:2", terminating=True),
            pod("other-1-g", "other", "other:1")]
    plan = emulator.build_plan(NS, "web", snapshot("kubernetes", pods=pods))
    assert plan_shares(plan) == ({"primary": 0.75, "canary": 0.25}, {})


def test_istio_plan_resolves_services_by_selector_or_by_name():
    objects = {"virtualservice": virtual_service([weighted(90, 10)])}
    with_services = emulator.build_plan(NS, "web", snapshot("istio", objects))
    without_services = emulator.build_plan(NS, "web", snapshot("istio", objects, services={}))
    assert plan_shares(with_services) == plan_shares(without_services) == ({"primary": 0.9, "canary": 0.1}, {})


def test_no_ready_canary_pod_makes_its_share_unavailable():
    pods = [pod("web-primary-1-a", "web-primary", "web:1"), pod("web-2-b", "web", "web:2", ready=False)]
    plan = emulator.build_plan(NS, "web", snapshot("istio", {"virtualservice": virtual_service([weighted(80, 20)])}, pods=pods))
    assert plan_shares(plan) == ({"primary": 0.8, "unavailable": 0.2}, {})


def test_missing_router_object_sends_everything_to_the_apex_service():
    plan = emulator.build_plan(NS, "web", snapshot("istio", {"virtualservice": None}))
    assert plan_shares(plan) == ({"primary": 1.0}, {})


def test_ab_users_come_from_the_canary_match():
    match = [{"headers": {"x-canary": {"exact": "insider"}}}]
    vs = virtual_service([
        {"name": "progressive-delivery-match", "match": match,
         "route": [{"destination": {"host": "web-primary"}, "weight": 0}, {"destination": {"host": "web-canary"}, "weight": 100}]},
        weighted(100, 0),
    ])
    plan = emulator.build_plan(NS, "web", snapshot("istio", {"virtualservice": vs}, match=match), ab_fraction=0.1)
    assert plan_shares(plan) == ({"primary": 0.9, "canary": 0.1}, {})
    assert [name for _p, name, _r, _d in plan.classes] == ["user", "ab"]
    # Explicit headers win over the Canary's conditions; headers that match nothing stay on the primary.
    other = emulator.build_plan(NS, "web", snapshot("istio", {"virtualservice": vs}, match=match), ab_fraction=0.1,
                                ab_headers={"x-canary": "outsider"})
    assert plan_shares(other) == ({"primary": 1.0}, {})
    none = emulator.build_plan(NS, "web", snapshot("istio", {"virtualservice": vs}, match=match), ab_fraction=0)
    assert plan_shares(none) == ({"primary": 1.0}, {})


def test_nginx_ab_cookie_condition_names_the_cookie():
    main = ingress("web", "web")
    canary_ingress = ingress("web-canary", "web-canary", {emulator.NGINX + "canary": "true", emulator.NGINX + "canary-weight": "0",
                                                          emulator.NGINX + "canary-by-cookie": "canary"})
    plan = emulator.build_plan(NS, "web", snapshot("nginx", {"ingress": main, "canary-ingress": canary_ingress}, ingress="web",
                                                   match=[{"headers": {"cookie": {"exact": "canary"}}}]), ab_fraction=0.25)
    assert plan_shares(plan) == ({"primary": 0.75, "canary": 0.25}, {})


def test_mirrored_share_is_reported_apart_from_users():
    vs = virtual_service([weighted(100, 0, mirror={"host": "web-canary"}, mirrorPercentage={"value": 50})])
    plan = emulator.build_plan(NS, "web", snapshot("istio", {"virtualservice": vs}))
    assert plan_shares(plan) == ({"primary": 1.0}, {"canary": 0.5})


def test_unknown_provider_is_a_warning_and_no_traffic():
    plan = emulator.build_plan(NS, "web", snapshot("consul"))
    assert plan.classes == [] and "unknown provider 'consul'" in plan.warnings[0]


def test_bad_fault_annotation_is_a_warning():
    pods = [pod("web-primary-1-a", "web-primary", "web:1"), pod("web-2-b", "web", "web:2", fault='{"errorRate": 20}')]
    plan = emulator.build_plan(NS, "web", snapshot("kubernetes", pods=pods))
    assert any("did you mean 0.2" in warning for warning in plan.warnings)


# ------------------------------------------------------------------------------------------------
# traffic generation, statistics, and the collection's built-in queries over what is emitted
# ------------------------------------------------------------------------------------------------

FAULTY = {"errorRate": 0.2, "latencyMs": {"p50": 40, "p99": 200}}

ROUTER_SNAPSHOTS = {
    "istio": lambda: snapshot("istio", {"virtualservice": virtual_service([weighted(50, 50)])}, pods=faulty_pods()),
    "linkerd": lambda: snapshot("linkerd", {"trafficsplit": {"spec": {"service": "web", "backends": [
        {"service": "web-primary", "weight": 50}, {"service": "web-canary", "weight": 50}]}}}, pods=faulty_pods()),
    "osm": lambda: snapshot("osm", {"trafficsplit": {"spec": {"service": "web", "backends": [
        {"service": "web-primary", "weight": 50}, {"service": "web-canary", "weight": 50}]}}}, pods=faulty_pods()),
    "nginx": lambda: snapshot("nginx", {"ingress": ingress("web", "web"), "canary-ingress": ingress(
        "web-canary", "web-canary", {emulator.NGINX + "canary": "true", emulator.NGINX + "canary-weight": "50"})},
        pods=faulty_pods(), ingress="web"),
    "gatewayapi": lambda: snapshot("gatewayapi", {"httproute": http_route([{"backendRefs": [
        {"name": "web-primary", "port": 80, "weight": 50}, {"name": "web-canary", "port": 80, "weight": 50}]}])},
        pods=faulty_pods()),
    "kubernetes": lambda: snapshot("kubernetes", pods=faulty_pods()[:1] + faulty_pods()[2:]),
}


def faulty_pods():
    return [pod("web-primary-7d9f8c6b5-aaaaa", "web-primary", "web:1"),
            pod("web-primary-7d9f8c6b5-bbbbb", "web-primary", "web:1"),
            pod("web-5b6c754f88-ccccc", "web", "web:2", fault=FAULTY)]


def run_traffic(snap, seconds=40, rps=500, seed=3, provider=None):
    state = emulator.AppState(NS, "web", rps=rps, ab_fraction=0.1, provider=provider)
    registry = emulator.Registry()
    plan = emulator.build_plan(NS, "web", snap)
    state.update_plan(plan, 1000.0)
    emitters = [emulator.METRIC_FAMILIES[plan.family](registry)]
    rng = random.Random(seed)
    state.due(1000.0)
    for step in range(1, seconds * 10 + 1):
        now = 1000.0 + step / 10.0
        state.generate(state.due(now), now, rng, emitters)
    return state, registry


def test_request_clock_owes_rate_times_elapsed():
    state = emulator.AppState(NS, "web", rps=33.3)
    assert state.due(0.0) == 0
    total = sum(state.due(step / 10.0) for step in range(1, 101))
    assert 332 <= total <= 333  # fractions carry over (float rounding may leave the last one owed)
    # A stalled generator does not burst more than MAX_CATCH_UP_SECONDS of requests.
    assert state.due(1000.0) in (166, 167)
    assert state.due(999.0) == 0  # the clock never runs backwards


def test_stats_count_requests_per_role_and_version():
    state, _registry = run_traffic(ROUTER_SNAPSHOTS["istio"]())
    assert state.requests == 20000
    canary_stats, primary_stats = state.served["canary"], state.served["primary"]
    assert canary_stats["requests"] + primary_stats["requests"] == 20000
    assert abs(canary_stats["requests"] / 20000 - 0.5) < 0.02
    assert abs(canary_stats["errors"] / canary_stats["requests"] - 0.2) < 0.02
    assert primary_stats["errors"] == 0
    (faulty_version,) = canary_stats["versions"]
    assert faulty_version.startswith("web:2+fault:")
    assert state.by_version[faulty_version]["fault"]["errorRate"] == 0.2
    assert state.errors == canary_stats["errors"]


def test_canary_traffic_periods_follow_plan_changes():
    state = emulator.AppState(NS, "web")
    plans = [(10.0, weighted(100, 0)), (20.0, weighted(90, 10)), (30.0, weighted(50, 50)), (40.0, weighted(100, 0)),
             (50.0, weighted(100, 0)), (60.0, weighted(80, 20))]
    for now, route in plans:
        state.update_plan(emulator.build_plan(NS, "web", snapshot("istio", {"virtualservice": virtual_service([route])})), now)
    snap = state.snapshot()
    assert snap["canary_traffic"]["periods"] == [{"start": 20.0, "stop": 40.0}, {"start": 60.0, "stop": None}]
    assert snap["canary_traffic"]["active"] and snap["canary_traffic"]["started"] == 60.0
    assert [entry["canary"] for entry in snap["history"]] == [0.0, 0.1, 0.5, 0.0, 0.2]
    state.reset_stats(70.0)
    assert state.snapshot()["canary_traffic"]["periods"] == [{"start": 70.0, "stop": None}]
    assert state.requests == 0


def test_mirrored_requests_are_counted_apart_and_emitted():
    vs = virtual_service([weighted(100, 0, mirror={"host": "web-canary"})])
    state, registry = run_traffic(snapshot("istio", {"virtualservice": vs}, pods=faulty_pods()), seconds=4)
    assert state.served["canary"]["requests"] == 0
    assert state.mirrored["requests"] == state.requests == 2000
    assert state.errors == 0 and state.mirrored["errors"] > 0
    series = parse_exposition(registry.render())
    canary_total = sum(value for name, labels, value in series
                       if name == "istio_requests_total" and labels["destination_workload"] == "web")
    assert canary_total == 2000


def _selector(query, which=-1):
    """(metric, [(label, op, value)]) of a selector of a built-in query (by default the last: a
    success rate's denominator)."""
    found = re.findall(r'([a-z_]+)\{([^}]*)\}', query)
    metric, text = found[which]
    return metric, re.findall(r'([a-zA-Z_]+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', text)


def _selects(matchers, labels):
    for label, op, value in matchers:
        actual = labels.get(label, "")
        if op == "=" and actual != value or op == "!=" and actual == value:
            return False
        if op == "=~" and not re.fullmatch(value, actual) or op == "!~" and re.fullmatch(value, actual):
            return False
    return True


def _render(template):
    for key, value in (("namespace", NS), ("target", "web"), ("service", "web"), ("ingress", "web"), ("interval", "1m")):
        template = template.replace("{{ %s }}" % key, value)
    return template


@pytest.mark.parametrize("provider", sorted(ROUTER_SNAPSHOTS))
def test_builtin_queries_select_what_the_emulator_emits(provider):
    """The collection's built-in success-rate and duration queries, rendered as metric_gate would,
    find the canary's and the primary's series, and the success rate they compute is the fault's."""
    state, registry = run_traffic(ROUTER_SNAPSHOTS[provider](), seconds=20)
    series = parse_exposition(registry.render())
    for side, expected_rate in (("canary", 80.0), ("primary", 100.0)):
        for_side = state.served[side]["requests"]
        assert for_side > 1000
        query = _render(_builtin_metrics.builtin_query(provider, "request-success-rate", side))
        metric, matchers = _selector(query)
        good_metric, good_matchers = _selector(query, 0)
        total = sum(value for name, labels, value in series if name == metric and _selects(matchers, labels))
        good = sum(value for name, labels, value in series if name == good_metric and _selects(good_matchers, labels))
        assert total == for_side, (provider, side, metric, matchers)
        assert abs(good / total * 100 - expected_rate) < 3, (provider, side)
        bucket_metric, bucket_matchers = _selector(_render(_builtin_metrics.builtin_query(provider, "request-duration", side)))
        inf = sum(value for name, labels, value in series
                  if name == bucket_metric and labels.get("le") == "+Inf" and _selects(bucket_matchers, labels))
        assert inf == for_side, (provider, side, bucket_metric)


def test_emitted_label_names_per_family():
    expected = {
        "istio": ("istio_requests_total", {"reporter", "destination_workload", "destination_workload_namespace",
                                           "destination_service_name", "response_code"}),
        "linkerd": ("response_total", {"deployment", "namespace", "direction", "classification", "status_code"}),
        "osm": ("osm_request_total", {"destination_namespace", "destination_kind", "destination_name", "response_code"}),
        "nginx": ("nginx_ingress_controller_requests", {"namespace", "ingress", "canary", "status", "service"}),
        "gatewayapi": ("envoy_cluster_upstream_rq", {"envoy_cluster_name", "envoy_response_code"}),
        "kubernetes": ("http_requests_total", {"kubernetes_namespace", "kubernetes_pod_name", "namespace", "app",
                                               "deployment", "status"}),
    }
    for provider, (metric, labels) in expected.items():
        _state, registry = run_traffic(ROUTER_SNAPSHOTS[provider](), seconds=1)
        series = [entry for entry in parse_exposition(registry.render()) if entry[0] == metric]
        assert series and all(labels <= set(entry[1]) for entry in series), provider
    _state, registry = run_traffic(ROUTER_SNAPSHOTS["gatewayapi"](), seconds=1)
    names = {labels["envoy_cluster_name"] for name, labels, _value in parse_exposition(registry.render())
             if name == "envoy_cluster_upstream_rq"}
    assert names == {"shop_web-primary_80", "shop_web-canary_80"}


def test_cli_arguments():
    args = emulator.parse_args(["--namespace", "a", "--app", "web", "--app", "b/api", "--rps", "20"])
    assert args.apps == [("a", "web"), ("b", "api")] and args.rps == 20
    with pytest.raises(SystemExit):
        emulator.parse_args(["--app", "web"])
    with pytest.raises(SystemExit):
        emulator.parse_args(["--namespace", "a", "--app", "web", "--ab-fraction", "2"])
    assert emulator.parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    with pytest.raises(ValueError):
        emulator.parse_listen("localhost")


class FakeReader:
    """ClusterReader's interface over a fixed snapshot."""

    api_exception = RuntimeError

    def __init__(self, snap):
        self.snap, self.requests = snap, 0

    def canaries(self, namespace=None):
        return [dict(self.snap["canary"], metadata={"name": "web", "namespace": NS})]

    def pods(self, namespace):
        return self.snap["pods"]

    def deployments(self, namespace):
        return self.snap["deployments"]

    def services(self, namespace):
        return self.snap["services"]

    def get(self, api_version, kind, name, namespace):
        return {"VirtualService": self.snap["objects"].get("virtualservice")}.get(kind)


def test_emulator_serves_metrics_stats_and_registers(monkeypatch, tmp_path):
    requests = pytest.importorskip("requests")
    snap = snapshot("istio", {"virtualservice": virtual_service([weighted(90, 10)])})
    monkeypatch.setattr(emulator, "ClusterReader", lambda api_client: FakeReader(snap))
    with pytest.raises(ValueError, match="unknown metric family nope"):
        emulator.Emulator(api_client=object(), apps=[(NS, "web")], also_emit=["nope"])
    # The traffic thread sleeps for an hour: the test drives the clock itself.
    emu = emulator.Emulator(api_client=object(), apps=[(NS, "web")], rps=100, seed=1, targets_dir=str(tmp_path), tick=3600)
    with emu:
        (registered,) = list(tmp_path.iterdir())
        assert json.loads(registered.read_text()) == [{"targets": [emu.address], "labels": {"emulator": "pd-emulator"}}]
        emu.tick(1000.0)
        emu.tick(1001.0)
        metrics = requests.get(emu.url + "/metrics", timeout=5)
        assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        series = parse_exposition(metrics.text)
        assert sum(value for name, _labels, value in series if name == "istio_requests_total") == 100
        one = requests.get(emu.url + "/stats", params={"namespace": NS, "app": "web"}, timeout=5).json()
        assert one["share"]["canary"] == 0.1 and one["requests"] == 100 and one["canary"] == "web"
        assert set(requests.get(emu.url + "/stats", timeout=5).json()["apps"]) == {"%s/web" % NS}
        assert requests.get(emu.url + "/stats", params={"namespace": NS, "app": "nope"}, timeout=5).status_code == 404
        assert requests.post(emu.url + "/reset", timeout=5).json() == {"reset": True}
        assert emu.stats(NS, "web")["served"]["canary"]["requests"] == 0
        assert requests.get(emu.url + "/healthz", timeout=5).text == "ok\n"
    assert not list(tmp_path.iterdir())


def test_discover_follows_canaries(monkeypatch):
    snap = snapshot("istio", {"virtualservice": virtual_service([weighted(90, 10)])})
    reader = FakeReader(snap)
    monkeypatch.setattr(emulator, "ClusterReader", lambda api_client: reader)
    emu = emulator.Emulator(api_client=object(), discover=True)
    emu.refresh()
    assert list(emu.apps) == ["%s/web" % NS] and emu.stats(NS, "web")["share"]["canary"] == 0.1
    emu.add_app("other", "api")
    reader.canaries = lambda namespace=None: []
    emu.refresh()
    assert list(emu.apps) == ["other/api"]  # apps given explicitly stay
