"""Traffic emulator: a stand-in for the mesh data plane of the local test world.

Nothing serves HTTP in the local world (kwok pods have no containers), so this process plays the
part of the proxies. For every app it follows it reads, every ``--refresh`` seconds, the Canary
(for the provider), the live routing objects of that provider, the Services and the pods; it works
out where each kind of synthetic request goes (weights, A/B match rules, mirroring) and which
version serves it; then it generates ``--rps`` requests a second, draws each response (status
code, latency) from the fault profile of the version that served it, and counts them in the
router's native Prometheus metrics, served on ``/metrics``. ``/stats`` has the same traffic as
JSON, per role and version, with the times the canary's share of users started and stopped.

    python hack/emulator.py --kubeconfig K --namespace NS --app APP [--app NS2/APP2 ...]
        [--rps 50] [--ab-fraction 0.1] [--listen 127.0.0.1:0] [--targets-dir DIR]

Dev tooling (kept out of the built collection); run with the project venv's Python. See
docs/emulator.md.
"""

import argparse
import bisect
import collections
import hashlib
import http.server
import json
import logging
import math
import os
import random
import re
import signal
import string
import sys
import threading
import time
import urllib.parse

from re import _parser as _regex_parser  # pylint: disable=no-name-in-module

LOG = logging.getLogger("pd-emulator")

FAULT_ANNOTATION = "progressive.delivery/fault"
CANARY_GROUP, CANARY_VERSION, CANARY_PLURAL = "progressive.delivery", "v1alpha1", "canaries"
ROLES = ("primary", "canary", "other")

# provider spelling -> (router family, metric family)
PROVIDERS = {
    "istio": ("istio", "istio"),
    "gatewayapi": ("gatewayapi", "envoy"),
    "gatewayapi:v1": ("gatewayapi", "envoy"),
    "gatewayapi:v1beta1": ("gatewayapi", "envoy"),
    "smi": ("smi", "linkerd"),
    "smi:v1alpha1": ("smi", "linkerd"),
    "smi:v1alpha2": ("smi", "linkerd"),
    "smi:v1alpha3": ("smi", "linkerd"),
    "linkerd": ("smi", "linkerd"),
    "osm": ("smi", "osm"),
    "nginx": ("nginx", "nginx"),
    "kubernetes": ("kubernetes", "kubernetes"),
}
DEFAULT_PROVIDER = "kubernetes"

# Histogram bounds of each data plane, in the unit of its metric.
ENVOY_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
                    1800000, 3600000)
LINKERD_BUCKETS_MS = (1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,
                      10000, 20000, 30000, 40000, 50000)
PROMETHEUS_DEFAULT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Beyond this, a stalled generator does not make up for lost time in one burst.
MAX_CATCH_UP_SECONDS = 5.0
HISTORY_LIMIT = 1000


# ------------------------------------------------------------------------------------------------
# fault profiles
# ------------------------------------------------------------------------------------------------

class FaultError(ValueError):
    pass


class FaultProfile:
    """How a version answers: a share of 5xx responses and a log-normal latency (median p50, 99th p99)."""

    KEYS = ("errorRate", "errorCode", "latencyMs")
    Z99 = 2.3263478740408408  # standard normal quantile at 0.99

    def __init__(self, error_rate=0.0, error_code=500, p50=20.0, p99=60.0):
        self.error_rate = float(error_rate)
        self.error_code = int(error_code)
        self.p50 = float(p50)
        self.p99 = float(p99)
        self._mu = math.log(self.p50)
        self._sigma = math.log(self.p99 / self.p50) / self.Z99

    def sample(self, rng):
        """(status code, latency in ms) of one response."""
        code = self.error_code if self.error_rate and rng.random() < self.error_rate else 200
        latency = rng.lognormvariate(self._mu, self._sigma) if self._sigma else self.p50
        return code, latency

    def as_dict(self):
        return {"errorRate": self.error_rate, "errorCode": self.error_code,
                "latencyMs": {"p50": self.p50, "p99": self.p99}}

    def __eq__(self, other):
        return isinstance(other, FaultProfile) and self.as_dict() == other.as_dict()

    def __hash__(self):
        return hash(json.dumps(self.as_dict(), sort_keys=True))

    def __repr__(self):
        return "FaultProfile(%s)" % json.dumps(self.as_dict(), sort_keys=True)


HEALTHY = FaultProfile()


def _number(value, field):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise FaultError("%s must be a number, got %s" % (field, json.dumps(value)))
    return float(value)


def parse_fault(text):
    """FaultProfile from the annotation's JSON; FaultError naming the field and the fix.

    ``{"errorRate": 0.2, "errorCode": 503, "latencyMs": {"p50": 20, "p99": 80}}``; every key is
    optional. ``latencyMs`` may be a number: the median, with the default tail (p99 = 3 x p50).
    """
    if text is None or not str(text).strip():
        return HEALTHY
    try:
        data = json.loads(text)
    except ValueError as error:
        raise FaultError("%s is not JSON (%s); e.g. {\"errorRate\": 0.2, \"latencyMs\": {\"p50\": 20, \"p99\": 80}}"
                         % (FAULT_ANNOTATION, error)) from error
    if not isinstance(data, dict):
        raise FaultError("%s must be a JSON object, got %s" % (FAULT_ANNOTATION, json.dumps(data)))
    unknown = sorted(set(data) - set(FaultProfile.KEYS))
    if unknown:
        raise FaultError("%s has unknown key(s) %s; known keys: %s"
                         % (FAULT_ANNOTATION, ", ".join(unknown), ", ".join(FaultProfile.KEYS)))
    error_rate = _number(data.get("errorRate", 0), "errorRate")
    if not 0 <= error_rate <= 1:
        hint = " (did you mean %g?)" % (error_rate / 100) if 1 < error_rate <= 100 else ""
        raise FaultError("errorRate is a fraction between 0 and 1, got %g%s" % (error_rate, hint))
    error_code = data.get("errorCode", 500)
    if isinstance(error_code, bool) or not isinstance(error_code, int) or not 400 <= error_code <= 599:
        raise FaultError("errorCode must be an HTTP error status between 400 and 599, got %s" % json.dumps(error_code))
    latency = data.get("latencyMs", {})
    if isinstance(latency, dict):
        unknown = sorted(set(latency) - set(("p50", "p99")))
        if unknown:
            raise FaultError("latencyMs has unknown key(s) %s; it takes p50 and p99 (milliseconds)" % ", ".join(unknown))
        p50 = _number(latency.get("p50", HEALTHY.p50), "latencyMs.p50")
        p99 = _number(latency.get("p99", max(p50 * HEALTHY.p99 / HEALTHY.p50, p50)), "latencyMs.p99")
    else:
        p50 = _number(latency, "latencyMs")
        p99 = p50 * HEALTHY.p99 / HEALTHY.p50
    if p50 <= 0:
        raise FaultError("latencyMs.p50 must be above 0, got %g" % p50)
    if p99 < p50:
        raise FaultError("latencyMs.p99 (%g) must not be below latencyMs.p50 (%g)" % (p99, p50))
    return FaultProfile(error_rate, error_code, p50, p99)


# ------------------------------------------------------------------------------------------------
# Prometheus text exposition
# ------------------------------------------------------------------------------------------------

def format_value(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def format_le(bound):
    """A bucket bound as exporters write it: 0.5, 1, 2.5, 3600000, +Inf."""
    if math.isinf(bound):
        return "+Inf"
    return "%d" % bound if float(bound).is_integer() else repr(float(bound))


def escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _label_text(names, values, extra=None):
    pairs = ['%s="%s"' % (name, escape_label(value)) for name, value in zip(names, values)]
    if extra:
        pairs.append('%s="%s"' % extra)
    return "{%s}" % ",".join(pairs) if pairs else ""


class Histogram:
    """One histogram series: per-bucket counts (not cumulative until rendered), sum and count."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds):
        self.bounds = tuple(float(bound) for bound in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf only
        self.sum = 0.0
        self.count = 0

    def observe(self, value):
        # le is inclusive: a value equal to a bound belongs to that bucket.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self):
        """[(le, cumulative count)] ending with (+Inf, count), as the exposition format wants."""
        result, running = [], 0
        for bound, count in zip(self.bounds + (float("inf"),), self.counts):
            running += count
            result.append((bound, running))
        return result


class MetricFamily:
    """A counter, histogram or summary (sum and count only) with fixed label names."""

    def __init__(self, name, kind, help_text, labelnames, buckets=None):
        assert kind in ("counter", "histogram", "summary")
        self.name, self.kind, self.help = name, kind, help_text
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(buckets or ())
        self.series = {}
        self.owners = {}

    def _labels(self, labels):
        return tuple(str(labels[name]) for name in self.labelnames)

    def inc(self, labels, amount=1, owner=None):
        key = self._labels(labels)
        self.series[key] = self.series.get(key, 0) + amount
        self.owners[key] = owner

    def observe(self, labels, value, owner=None):
        key = self._labels(labels)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Histogram(self.buckets) if self.kind == "histogram" else [0.0, 0]
            self.owners[key] = owner
        if self.kind == "histogram":
            series.observe(value)
        else:
            series[0] += value
            series[1] += 1

    def drop(self, owner):
        for key in [key for key, who in self.owners.items() if who == owner]:
            del self.series[key]
            del self.owners[key]

    def render(self, lines):
        if not self.series:
            return
        lines.append("# HELP %s %s" % (self.name, self.help))
        lines.append("# TYPE %s %s" % (self.name, self.kind))
        for key in sorted(self.series):
            series = self.series[key]
            if self.kind == "counter":
                lines.append("%s%s %s" % (self.name, _label_text(self.labelnames, key), format_value(series)))
            elif self.kind == "histogram":
                for bound, count in series.cumulative():
                    lines.append("%s_bucket%s %s" % (self.name, _label_text(self.labelnames, key, ("le", format_le(bound))),
                                                     count))
                lines.append("%s_sum%s %s" % (self.name, _label_text(self.labelnames, key), format_value(series.sum)))
                lines.append("%s_count%s %s" % (self.name, _label_text(self.labelnames, key), series.count))
            else:
                lines.append("%s_sum%s %s" % (self.name, _label_text(self.labelnames, key), format_value(series[0])))
                lines.append("%s_count%s %s" % (self.name, _label_text(self.labelnames, key), series[1]))


class Registry:
    def __init__(self):
        self.families = collections.OrderedDict()

    def family(self, name, kind, help_text, labelnames, buckets=None):
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = MetricFamily(name, kind, help_text, labelnames, buckets)
        return family

    def drop(self, owner):
        for family in self.families.values():
            family.drop(owner)

    def render(self):
        lines = []
        for family in self.families.values():
            family.render(lines)
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# the metric families of each data plane
# ------------------------------------------------------------------------------------------------

class Hit:
    """One response, as a data plane's metrics see it."""

    __slots__ = ("ctx", "pod", "backend", "code", "latency_ms", "mirrored")

    def __init__(self, ctx, pod, backend, code, latency_ms, mirrored=False):
        self.ctx, self.pod, self.backend = ctx, pod, backend
        self.code, self.latency_ms, self.mirrored = code, latency_ms, mirrored


def _fqdn(service, namespace):
    return "%s.%s.svc.cluster.local" % (service, namespace)


class IstioMetrics:
    """Istio standard metrics as the destination's sidecar reports them."""

    name = "istio"
    LABELS = ("reporter", "source_workload", "source_workload_namespace", "destination_workload",
              "destination_workload_namespace", "destination_app", "destination_version", "destination_service",
              "destination_service_name", "destination_service_namespace", "destination_canonical_service",
              "request_protocol", "response_code", "response_flags", "connection_security_policy")

    def __init__(self, registry):
        self.requests = registry.family("istio_requests_total", "counter", "Requests, by the Istio proxy.", self.LABELS)
        self.duration = registry.family("istio_request_duration_milliseconds", "histogram",
                                        "Request duration in milliseconds, by the Istio proxy.", self.LABELS,
                                        ENVOY_BUCKETS_MS)

    def record(self, hit):
        ns, pod = hit.ctx.namespace, hit.pod
        service = hit.backend.service or hit.ctx.apex
        labels = {
            "reporter": "destination", "source_workload": "unknown", "source_workload_namespace": "unknown",
            "destination_workload": pod.workload, "destination_workload_namespace": ns,
            "destination_app": pod.labels.get("app", "unknown"), "destination_version": pod.labels.get("version", "unknown"),
            "destination_service": _fqdn(service, ns), "destination_service_name": service,
            "destination_service_namespace": ns,
            "destination_canonical_service": pod.labels.get("service.istio.io/canonical-name", pod.workload),
            "request_protocol": "http", "response_code": hit.code, "response_flags": "-",
            "connection_security_policy": "mutual_tls",
        }
        self.requests.inc(labels, owner=hit.ctx.key)
        self.duration.observe(labels, hit.latency_ms, owner=hit.ctx.key)

    def unavailable(self, ctx, backend):
        """Requests no pod answered: the destination proxy never sees them."""


class LinkerdMetrics:
    """Linkerd proxy metrics of the inbound side."""

    name = "linkerd"
    LABELS = ("direction", "namespace", "deployment", "authority", "tls", "status_code", "classification")

    def __init__(self, registry):
        self.responses = registry.family("response_total", "counter", "Responses, by the Linkerd proxy.", self.LABELS)
        self.latency = registry.family("response_latency_ms", "histogram",
                                       "Elapsed times between a request's headers being received and its response "
                                       "stream completing, by the Linkerd proxy.", self.LABELS[:-1], LINKERD_BUCKETS_MS)

    def record(self, hit):
        service = hit.backend.service or hit.ctx.apex
        labels = {"direction": "inbound", "namespace": hit.ctx.namespace, "deployment": hit.pod.workload,
                  "authority": "%s:%s" % (_fqdn(service, hit.ctx.namespace), hit.backend.port or hit.ctx.port),
                  "tls": "true", "status_code": hit.code, "classification": "failure" if hit.code >= 500 else "success"}
        self.responses.inc(labels, owner=hit.ctx.key)
        self.latency.observe(labels, hit.latency_ms, owner=hit.ctx.key)

    def unavailable(self, ctx, backend):
        pass


class OsmMetrics:
    """Open Service Mesh (Envoy) request metrics."""

    name = "osm"
    LABELS = ("source_namespace", "source_kind", "source_name", "destination_namespace", "destination_kind",
              "destination_name", "response_code")

    def __init__(self, registry):
        self.requests = registry.family("osm_request_total", "counter", "Requests, by the OSM proxy.", self.LABELS)
        self.duration = registry.family("osm_request_duration_ms", "histogram",
                                        "Request duration in milliseconds, by the OSM proxy.", self.LABELS,
                                        ENVOY_BUCKETS_MS)

    def record(self, hit):
        labels = {"source_namespace": "unknown", "source_kind": "unknown", "source_name": "unknown",
                  "destination_namespace": hit.ctx.namespace, "destination_kind": "Deployment",
                  "destination_name": hit.pod.workload, "response_code": hit.code}
        self.requests.inc(labels, owner=hit.ctx.key)
        self.duration.observe(labels, hit.latency_ms, owner=hit.ctx.key)

    def unavailable(self, ctx, backend):
        pass


class NginxMetrics:
    """ingress-nginx controller metrics: the controller reports every request, 503s included.

    ``canary`` is the upstream of the canary Ingress (``<namespace>-<service>-<port>``) when the
    canary served the request, empty otherwise; ``ingress`` and ``service`` are the main Ingress's.
    """

    name = "nginx"
    LABELS = ("controller_class", "controller_namespace", "controller_pod", "host", "ingress", "namespace", "service",
              "canary", "method", "path", "status")
    LATENCY_LABELS = ("controller_class", "controller_namespace", "controller_pod", "ingress", "namespace", "service",
                      "canary")

    def __init__(self, registry):
        self.requests = registry.family("nginx_ingress_controller_requests", "counter",
                                        "The total number of client requests", self.LABELS)
        self.duration = registry.family("nginx_ingress_controller_request_duration_seconds", "histogram",
                                        "The request processing time in seconds", self.LABELS,
                                        PROMETHEUS_DEFAULT_BUCKETS_S)
        # What Flagger's nginx observer reads for request-duration (a summary in older controllers).
        self.upstream = registry.family("nginx_ingress_controller_ingress_upstream_latency_seconds", "summary",
                                        "Upstream service latency per Ingress", self.LATENCY_LABELS)

    def _labels(self, ctx, backend, status):
        return {"controller_class": "k8s.io/ingress-nginx", "controller_namespace": "ingress-nginx",
                "controller_pod": "pd-emulator", "host": ctx.ingress_host, "ingress": ctx.ingress,
                "namespace": ctx.namespace, "service": ctx.ingress_service, "canary": backend.tag or "",
                "method": "GET", "path": ctx.ingress_path, "status": status}

    def record(self, hit):
        labels = self._labels(hit.ctx, hit.backend, hit.code)
        self.requests.inc(labels, owner=hit.ctx.key)
        self.duration.observe(labels, hit.latency_ms / 1000.0, owner=hit.ctx.key)
        self.upstream.observe(labels, hit.latency_ms / 1000.0, owner=hit.ctx.key)

    def unavailable(self, ctx, backend):
        labels = self._labels(ctx, backend, 503)
        self.requests.inc(labels, owner=ctx.key)
        self.duration.observe(labels, 0.0, owner=ctx.key)


class EnvoyMetrics:
    """Envoy cluster stats of a Gateway API data plane with per-Service clusters (Contour's naming)."""

    name = "envoy"
    LABELS = ("envoy_cluster_name", "envoy_response_code")

    def __init__(self, registry):
        self.requests = registry.family("envoy_cluster_upstream_rq", "counter", "Upstream requests, by Envoy.",
                                        self.LABELS)
        self.time = registry.family("envoy_cluster_upstream_rq_time", "histogram",
                                    "Upstream request time in milliseconds, by Envoy.", self.LABELS[:1], ENVOY_BUCKETS_MS)

    def record(self, hit):
        cluster = "%s_%s_%s" % (hit.ctx.namespace, hit.backend.service or hit.ctx.apex, hit.backend.port or hit.ctx.port)
        labels = {"envoy_cluster_name": cluster, "envoy_response_code": hit.code}
        self.requests.inc(labels, owner=hit.ctx.key)
        self.time.observe(labels, hit.latency_ms, owner=hit.ctx.key)

    def unavailable(self, ctx, backend):
        pass


class KubernetesMetrics:
    """The application's own metrics (podinfo style), per pod, with the target labels Prometheus's
    Kubernetes service discovery would add (kubernetes_namespace, kubernetes_pod_name)."""

    name = "kubernetes"
    LABELS = ("kubernetes_namespace", "kubernetes_pod_name", "namespace", "app", "deployment", "method", "path",
              "status")

    def __init__(self, registry):
        self.requests = registry.family("http_requests_total", "counter", "The total number of HTTP requests.",
                                        self.LABELS)
        self.duration = registry.family("http_request_duration_seconds", "histogram",
                                        "The HTTP request latencies in seconds.", self.LABELS,
                                        PROMETHEUS_DEFAULT_BUCKETS_S)

    def record(self, hit):
        labels = {"kubernetes_namespace": hit.ctx.namespace, "kubernetes_pod_name": hit.pod.name,
                  "namespace": hit.ctx.namespace, "app": hit.pod.labels.get("app", hit.pod.workload),
                  "deployment": hit.pod.workload, "method": "GET", "path": "/", "status": hit.code}
        self.requests.inc(labels, owner=hit.ctx.key)
        self.duration.observe(labels, hit.latency_ms / 1000.0, owner=hit.ctx.key)

    def unavailable(self, ctx, backend):
        pass


METRIC_FAMILIES = {cls.name: cls for cls in (IstioMetrics, LinkerdMetrics, OsmMetrics, NginxMetrics, EnvoyMetrics,
                                             KubernetesMetrics)}


# ------------------------------------------------------------------------------------------------
# synthetic requests and match conditions
# ------------------------------------------------------------------------------------------------

class Request:
    """What a synthetic request carries that routing rules can look at."""

    def __init__(self, path="/", method="GET", headers=None, query=None, source_labels=None, authority=""):
        self.path, self.method, self.authority = path, method, authority
        self.headers = {key.lower(): value for key, value in (headers or {}).items()}
        self.query = dict(query or {})
        self.source_labels = dict(source_labels or {})

    def cookies(self):
        jar = {}
        for part in self.headers.get("cookie", "").split(";"):
            if "=" in part:
                key, value = part.split("=", 1)
                jar[key.strip()] = value.strip()
        return jar

    def add_cookie(self, name, value):
        cookie = "%s=%s" % (name, value)
        self.headers["cookie"] = "%s; %s" % (self.headers["cookie"], cookie) if self.headers.get("cookie") else cookie

    def describe(self):
        parts = ["%s %s" % (self.method, self.path)]
        parts += ["%s: %s" % item for item in sorted(self.headers.items())]
        if self.query:
            parts.append("?" + urllib.parse.urlencode(sorted(self.query.items())))
        if self.source_labels:
            parts.append("from %s" % ",".join("%s=%s" % item for item in sorted(self.source_labels.items())))
        return "; ".join(parts)


_EXAMPLE_CHARS = string.ascii_lowercase + string.digits + string.ascii_uppercase + "-_.=;/ "


def _in_matches(items, char):
    code = ord(char)
    for op, arg in items:
        name = str(op)
        if name == "LITERAL" and arg == code:
            return True
        if name == "RANGE" and arg[0] <= code <= arg[1]:
            return True
        if name == "CATEGORY":
            category = str(arg)
            tests = {"CATEGORY_DIGIT": char.isdigit(), "CATEGORY_NOT_DIGIT": not char.isdigit(),
                     "CATEGORY_WORD": char.isalnum() or char == "_", "CATEGORY_NOT_WORD": not (char.isalnum() or char == "_"),
                     "CATEGORY_SPACE": char.isspace(), "CATEGORY_NOT_SPACE": not char.isspace()}
            if tests.get(category):
                return True
    return False


def _in_example(items):
    negate = bool(items) and str(items[0][0]) == "NEGATE"
    if negate:
        items = items[1:]
    for char in _EXAMPLE_CHARS:
        if _in_matches(items, char) != negate:
            return char
    raise ValueError("no example character for the set")


def _example_of(tokens):
    out = []
    for op, arg in tokens:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if arg != ord("a") else "b")
        elif name == "ANY":
            out.append("a")
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _high, sub = arg
            out.append(_example_of(sub) * low)
        elif name == "SUBPATTERN":
            out.append(_example_of(arg[-1]))
        elif name == "ATOMIC_GROUP":
            out.append(_example_of(arg))
        elif name == "BRANCH":
            out.append(_example_of(arg[1][0]))
        elif name == "IN":
            out.append(_in_example(arg))
        elif name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue
        else:
            raise ValueError("cannot build an example for %s" % name)
    return "".join(out)


def example_for_regex(pattern):
    """A short string the regex matches as a whole (RE2/Envoy semantics), or None."""
    try:
        candidate = _example_of(_regex_parser.parse(pattern))
        return candidate if re.fullmatch(pattern, candidate) else None
    except (re.error, ValueError, TypeError):
        return None


def example_for_match(spec):
    """A value that an Istio StringMatch ({exact|prefix|regex}) accepts, or None."""
    if not isinstance(spec, dict) or not spec:
        return "present"
    if "exact" in spec:
        return str(spec["exact"])
    if "prefix" in spec:
        return str(spec["prefix"])
    if "regex" in spec:
        return example_for_regex(str(spec["regex"]))
    return None


def string_matches(spec, value, ignore_case=False):
    """Istio StringMatch semantics; an empty spec asks only that the value be present."""
    if value is None:
        return False
    if not isinstance(spec, dict) or not spec:
        return True
    if ignore_case:
        value = value.lower()
    if "exact" in spec:
        return value == (str(spec["exact"]).lower() if ignore_case else str(spec["exact"]))
    if "prefix" in spec:
        return value.startswith(str(spec["prefix"]).lower() if ignore_case else str(spec["prefix"]))
    if "regex" in spec:
        try:
            return re.fullmatch(str(spec["regex"]), value) is not None
        except re.error:
            return False
    return False


def request_for_condition(condition, cookie_names_condition=False):
    """A synthetic request that satisfies one Istio-style match condition (Canary analysis.match).

    With ``cookie_names_condition`` (the nginx router), ``headers.cookie.exact`` names a cookie
    that the request sets to ``always``, as ingress-nginx's canary-by-cookie wants.
    Returns (request, None) or (None, why not).
    """
    request = Request()
    uri = condition.get("uri")
    if uri:
        path = example_for_match(uri)
        if path is None:
            return None, "no example path for uri %s" % json.dumps(uri)
        request.path = path if path.startswith("/") else "/" + path
    if condition.get("method"):
        method = example_for_match(condition["method"])
        if method is None:
            return None, "no example method for %s" % json.dumps(condition["method"])
        request.method = method
    for name, spec in (condition.get("headers") or {}).items():
        if name.lower() == "cookie" and cookie_names_condition:
            request.add_cookie(str(spec.get("exact") if isinstance(spec, dict) else spec), "always")
            continue
        value = example_for_match(spec)
        if value is None:
            return None, "no example value for header %s %s" % (name, json.dumps(spec))
        request.headers[name.lower()] = value
    for name, spec in (condition.get("queryParams") or {}).items():
        value = example_for_match(spec)
        if value is None:
            return None, "no example value for query parameter %s %s" % (name, json.dumps(spec))
        request.query[name] = value
    request.source_labels = dict(condition.get("sourceLabels") or {})
    return request, None


# ------------------------------------------------------------------------------------------------
# routing decisions: which Service (and port) gets a request, with what probability
# ------------------------------------------------------------------------------------------------

class Backend:
    """A share of a request class sent to a Service; ``service`` None means "every pod of both
    Deployments" (the no-mesh mode). ``tag`` is the canary upstream for nginx."""

    def __init__(self, service, weight, port=None, tag=""):
        self.service, self.weight, self.port, self.tag = service, float(weight), port, tag
        self.endpoints = []

    def __repr__(self):
        return "Backend(%r, %.4f, port=%r, tag=%r)" % (self.service, self.weight, self.port, self.tag)


class Decision:
    """Where one kind of request goes: weighted backends (weights summing to 1; none: no route, a
    404) and mirrors (a Backend whose weight is the fraction of requests copied to it)."""

    def __init__(self, backends=(), mirrors=(), note=""):
        total = sum(backend.weight for backend in backends)
        self.backends = [backend for backend in backends if backend.weight > 0]
        for backend in self.backends:
            backend.weight /= total
        self.mirrors = [mirror for mirror in mirrors if mirror.weight > 0]
        self.note = note

    def shares(self):
        """{service: share} (for tests and /stats)."""
        result = collections.OrderedDict()
        for backend in self.backends:
            result[backend.service] = result.get(backend.service, 0.0) + backend.weight
        return result

    def mirror_shares(self):
        return {mirror.service: mirror.weight for mirror in self.mirrors}


def service_of_host(host, namespace):
    """Service name of an Istio destination host in ``namespace``: name, name.ns, name.ns.svc...; None elsewhere."""
    parts = str(host or "").split(".")
    if len(parts) > 1 and parts[1] != namespace:
        return None
    return parts[0] or None


def _istio_port(destination):
    port = (destination or {}).get("port") or {}
    return port.get("number")


def istio_condition_matches(condition, request):
    ignore_case = bool(condition.get("ignoreUriCase"))
    if condition.get("uri") and not string_matches(condition["uri"], request.path, ignore_case):
        return False
    if condition.get("method") and not string_matches(condition["method"], request.method):
        return False
    if condition.get("authority") and not string_matches(condition["authority"], request.authority):
        return False
    if condition.get("scheme") and not string_matches(condition["scheme"], "http"):
        return False
    for name, spec in (condition.get("headers") or {}).items():
        if not string_matches(spec, request.headers.get(name.lower())):
            return False
    for name, spec in (condition.get("withoutHeaders") or {}).items():
        if string_matches(spec, request.headers.get(name.lower())):
            return False
    for name, spec in (condition.get("queryParams") or {}).items():
        if not string_matches(spec, request.query.get(name)):
            return False
    for key, value in (condition.get("sourceLabels") or {}).items():
        if request.source_labels.get(key) != value:
            return False
    # port, gateways, sourceNamespace: the synthetic client arrives wherever the route listens.
    return True


def decide_istio(virtual_service, request, namespace):
    """Envoy's reading of a VirtualService: the first http route whose match (any condition)
    accepts the request; its destinations by weight; its mirror(s) by mirrorPercentage."""
    for route in ((virtual_service or {}).get("spec") or {}).get("http") or []:
        conditions = route.get("match") or [{}]
        if not any(istio_condition_matches(condition, request) for condition in conditions):
            continue
        destinations = route.get("route") or []
        backends = []
        for destination in destinations:
            weight = destination.get("weight")
            if weight is None:
                weight = 100 if len(destinations) == 1 else 0
            backends.append(Backend(service_of_host((destination.get("destination") or {}).get("host"), namespace),
                                    weight, _istio_port(destination.get("destination"))))
        mirrors = []
        if route.get("mirror"):
            percent = (route.get("mirrorPercentage") or {}).get("value", 100.0)
            mirrors.append(Backend(service_of_host(route["mirror"].get("host"), namespace), float(percent) / 100.0,
                                   _istio_port(route["mirror"])))
        for mirror in route.get("mirrors") or []:
            percent = (mirror.get("percentage") or {}).get("value", 100.0)
            mirrors.append(Backend(service_of_host((mirror.get("destination") or {}).get("host"), namespace),
                                   float(percent) / 100.0, _istio_port(mirror.get("destination"))))
        if not any(backend.weight > 0 for backend in backends):
            return Decision(note="route %s has no weighted destination" % (route.get("name") or "(unnamed)"))
        return Decision(backends, mirrors, note="route %s" % (route.get("name") or "(unnamed)"))
    return Decision(note="no http route matches")


def _gateway_string_matches(spec, value):
    if value is None:
        return False
    kind = spec.get("type") or "Exact"
    if kind == "RegularExpression":
        try:
            return re.fullmatch(str(spec.get("value", "")), value) is not None
        except re.error:
            return False
    return value == str(spec.get("value", ""))


def _gateway_path_matches(path_match, path):
    kind = path_match.get("type") or "PathPrefix"
    value = path_match.get("value", "/")
    if kind == "Exact":
        return path == value
    if kind == "RegularExpression":
        try:
            return re.fullmatch(value, path) is not None
        except re.error:
            return False
    prefix = value.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or not prefix


def gateway_match_specificity(match, request):
    """None if the HTTPRouteMatch rejects the request, else the Gateway API precedence key
    (exact path, prefix length, method, header count, query count; higher wins)."""
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    if not _gateway_path_matches(path, request.path):
        return None
    if match.get("method") and match["method"] != request.method:
        return None
    for header in match.get("headers") or []:
        if not _gateway_string_matches(header, request.headers.get(str(header.get("name", "")).lower())):
            return None
    for param in match.get("queryParams") or []:
        if not _gateway_string_matches(param, request.query.get(param.get("name"))):
            return None
    return (1 if path.get("type") == "Exact" else 0, len(path.get("value", "/")), 1 if match.get("method") else 0,
            len(match.get("headers") or []), len(match.get("queryParams") or []))


def _gateway_mirror_fraction(mirror):
    if mirror.get("percent") is not None:
        return float(mirror["percent"]) / 100.0
    fraction = mirror.get("fraction")
    if fraction:
        return float(fraction.get("numerator", 0)) / float(fraction.get("denominator") or 100)
    return 1.0


def decide_gateway(http_route, request, namespace):
    """The HTTPRoute rule the Gateway API precedence rules pick; backendRefs by weight (default 1);
    RequestMirror filters by percent or fraction (default all)."""
    best, best_key = None, None
    for index, rule in enumerate(((http_route or {}).get("spec") or {}).get("rules") or []):
        for match in rule.get("matches") or [{}]:
            key = gateway_match_specificity(match, request)
            # Ties keep the earlier rule; a later rule needs a strictly more specific match.
            if key is not None and (best_key is None or key > best_key):
                best, best_key = (index, rule), key
    if best is None:
        return Decision(note="no rule matches")
    index, rule = best
    backends = []
    for ref in rule.get("backendRefs") or []:
        # A backend that is not a Service of this namespace has no pods the emulator knows: its share is unavailable.
        local = (ref.get("kind") or "Service") == "Service" and (ref.get("namespace") or namespace) == namespace
        backends.append(Backend(ref.get("name") if local else "", ref.get("weight", 1), ref.get("port")))
    mirrors = []
    for rule_filter in rule.get("filters") or []:
        if rule_filter.get("type") == "RequestMirror":
            mirror = rule_filter.get("requestMirror") or {}
            ref = mirror.get("backendRef") or {}
            mirrors.append(Backend(ref.get("name"), _gateway_mirror_fraction(mirror), ref.get("port")))
    name = rule.get("name") or "rules[%d]" % index
    if not any(backend.weight > 0 for backend in backends):
        return Decision(note="%s has no backend with weight" % name)
    return Decision(backends, mirrors, note=name)


def decide_smi(traffic_split):
    backends = [Backend(backend.get("service"), backend.get("weight", 0))
                for backend in ((traffic_split or {}).get("spec") or {}).get("backends") or []]
    if not any(backend.weight > 0 for backend in backends):
        return Decision(note="TrafficSplit has no backend with weight")
    return Decision(backends, note="TrafficSplit")


NGINX = "nginx.ingress.kubernetes.io/"


def ingress_backend(ingress, path):
    """(service, port) the Ingress sends ``path`` to: the longest matching rule path, else the default backend."""
    spec = (ingress or {}).get("spec") or {}
    best, best_length = None, -1
    for rule in spec.get("rules") or []:
        for entry in ((rule.get("http") or {}).get("paths")) or []:
            value = entry.get("path") or "/"
            kind = entry.get("pathType") or "ImplementationSpecific"
            if kind == "Exact":
                ok = path == value
            else:
                prefix = value.rstrip("/")
                ok = path == prefix or path.startswith(prefix + "/") or not prefix
            if ok and len(value) > best_length:
                best, best_length = (entry.get("backend") or {}, rule.get("host") or "", value), len(value)
    if best is None and spec.get("defaultBackend"):
        best = (spec["defaultBackend"], "", "/")
    if best is None or not best[0].get("service"):
        return None
    service = best[0]["service"]
    port = (service.get("port") or {}).get("number") or (service.get("port") or {}).get("name")
    return service.get("name"), port, best[1], best[2]


def nginx_canary_probability(annotations, request):
    """Chance that ingress-nginx sends ``request`` to the canary Ingress: header, then cookie, then weight."""
    header = annotations.get(NGINX + "canary-by-header")
    if header and header.lower() in request.headers:
        value = request.headers[header.lower()]
        expected = annotations.get(NGINX + "canary-by-header-value")
        pattern = annotations.get(NGINX + "canary-by-header-pattern")
        if expected:
            if value == expected:
                return 1.0
        elif pattern:
            try:
                if re.search(pattern, value):
                    return 1.0
            except re.error:
                pass
        elif value == "always":
            return 1.0
        elif value == "never":
            return 0.0
    cookie = annotations.get(NGINX + "canary-by-cookie")
    if cookie:
        value = request.cookies().get(cookie)
        if value == "always":
            return 1.0
        if value == "never":
            return 0.0
    try:
        weight = float(annotations.get(NGINX + "canary-weight") or 0)
        total = float(annotations.get(NGINX + "canary-weight-total") or 100)
    except ValueError:
        return 0.0
    return min(max(weight / total, 0.0), 1.0) if total > 0 else 0.0


def decide_nginx(main_ingress, canary_ingress, request, namespace, fallback):
    """ingress-nginx: the main Ingress's backend, with the canary Ingress (annotation canary "true")
    taking nginx_canary_probability of the requests. ``fallback`` is (service, port) when there
    is no main Ingress. The canary Backend's tag is its upstream name, ingress-nginx's ``canary`` label."""
    main = ingress_backend(main_ingress, request.path) if main_ingress else (fallback[0], fallback[1], "", "/")
    if main is None:
        return Decision(note="the Ingress has no path for %s" % request.path)
    backends = [Backend(main[0], 1.0, main[1])]
    annotations = ((canary_ingress or {}).get("metadata") or {}).get("annotations") or {}
    canary = ingress_backend(canary_ingress, request.path) if canary_ingress else None
    if canary is None or str(annotations.get(NGINX + "canary", "")).lower() != "true":
        return Decision(backends, note="main Ingress only")
    probability = nginx_canary_probability(annotations, request)
    backends[0].weight = 1.0 - probability
    backends.append(Backend(canary[0], probability, canary[1], tag="%s-%s-%s" % (namespace, canary[0], canary[1])))
    if probability <= 0:
        return Decision(backends[:1], note="canary Ingress at 0")
    return Decision(backends, note="canary Ingress at %g%%" % (probability * 100))


# ------------------------------------------------------------------------------------------------
# the cluster as the emulator sees it: pods, their roles and versions
# ------------------------------------------------------------------------------------------------

class Pod:
    __slots__ = ("name", "labels", "ready", "role", "workload", "version", "fault", "fault_error")

    def __init__(self, name, labels, ready, role, workload, version, fault, fault_error=None):
        self.name, self.labels, self.ready, self.role, self.workload = name, labels, ready, role, workload
        self.version, self.fault, self.fault_error = version, fault, fault_error

    def __repr__(self):
        return "Pod(%s, %s, %s, ready=%s)" % (self.name, self.role, self.version, self.ready)


def selector_matches(selector, labels):
    """A Deployment's label selector (matchLabels, matchExpressions) or a Service's plain selector."""
    if not selector:
        return False
    match_labels = selector.get("matchLabels") if ("matchLabels" in selector or "matchExpressions" in selector) else selector
    for key, value in (match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_ready(pod):
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(condition.get("type") == "Ready" and condition.get("status") == "True"
               for condition in status.get("conditions") or [])


_FAULT_CACHE = {}


def version_of(pod):
    """(version, FaultProfile, error): images joined by ",", plus "+fault:<hash>" when the pod
    carries a fault annotation (the same image can be released healthy and then faulty)."""
    spec = pod.get("spec") or {}
    images = ",".join(container.get("image", "?") for container in spec.get("containers") or []) or "?"
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(FAULT_ANNOTATION)
    if not text:
        return images, HEALTHY, None
    if text not in _FAULT_CACHE:
        try:
            _FAULT_CACHE[text] = (parse_fault(text), None)
        except FaultError as error:
            _FAULT_CACHE[text] = (HEALTHY, str(error))
    fault, error = _FAULT_CACHE[text]
    return "%s+fault:%s" % (images, hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]), fault, error


def classify_pods(raw_pods, deployments, app):
    """Pods with role (primary: of <app>-primary, canary: of <app>, other), workload and version."""
    primary, target = deployments.get(app + "-primary"), deployments.get(app)

    def selector(deployment, default):
        return ((deployment or {}).get("spec") or {}).get("selector") or {"matchLabels": {"app": default}}

    primary_selector, target_selector = selector(primary, app + "-primary"), selector(target, app)
    pods = []
    for raw in raw_pods:
        metadata = raw.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if selector_matches(primary_selector, labels):
            role, workload = "primary", app + "-primary"
        elif selector_matches(target_selector, labels):
            role, workload = "canary", app
        else:
            role, workload = "other", None
            for name, deployment in deployments.items():
                if selector_matches((deployment.get("spec") or {}).get("selector"), labels):
                    workload = name
                    break
            if workload is None:
                owner = next((ref.get("name") for ref in metadata.get("ownerReferences") or []), None)
                workload = owner.rsplit("-", 1)[0] if owner and labels.get("pod-template-hash") else (owner or metadata.get("name"))
        version, fault, error = version_of(raw)
        pods.append(Pod(metadata.get("name"), labels, pod_ready(raw), role, workload, version, fault, error))
    return pods


# ------------------------------------------------------------------------------------------------
# an app's plan: request classes, their routes, resolved down to ready pods
# ------------------------------------------------------------------------------------------------

class AppContext:
    """Names the metrics need: namespace, app (target), apex Service, port, Ingress."""

    def __init__(self, namespace, app, apex=None, port=80, ingress=None):
        self.namespace, self.app = namespace, app
        self.apex = apex or app
        self.port = port
        self.ingress = ingress or self.apex
        self.ingress_host, self.ingress_service, self.ingress_path = "", self.apex, "/"
        self.key = "%s/%s" % (namespace, app)


class Plan:
    """Request classes (probability, name, request, Decision with resolved endpoints)."""

    def __init__(self, ctx, provider, router, family, classes, pods, objects, warnings):
        self.ctx, self.provider, self.router, self.family = ctx, provider, router, family
        self.classes = classes
        self.pods = pods
        self.objects = objects
        self.warnings = warnings
        self._cumulative = []
        running = 0.0
        for probability, _name, _request, decision in classes:
            running += probability
            self._cumulative.append(running)

    def pick_class(self, rng):
        draw = rng.random() * (self._cumulative[-1] if self._cumulative else 1.0)
        index = bisect.bisect_right(self._cumulative, draw)
        return self.classes[min(index, len(self.classes) - 1)]

    def shares(self):
        """Expected share of user requests per role (plus 'unavailable': no route or no ready pod)
        and of mirrored copies per role."""
        users = dict.fromkeys(ROLES + ("unavailable",), 0.0)
        mirrored = dict.fromkeys(ROLES, 0.0)
        for probability, _name, _request, decision in self.classes:
            if not decision.backends:
                users["unavailable"] += probability
            for backend in decision.backends:
                share = probability * backend.weight
                if not backend.endpoints:
                    users["unavailable"] += share
                for pod in backend.endpoints:
                    users[pod.role] += share / len(backend.endpoints)
            for mirror in decision.mirrors:
                for pod in mirror.endpoints:
                    mirrored[pod.role] += probability * mirror.weight / len(mirror.endpoints)
        return {key: round(value, 6) for key, value in users.items()}, {key: round(value, 6) for key, value in mirrored.items()}


def _canary_spec(canary):
    return (canary or {}).get("spec") or {}


def app_context(namespace, app, canary):
    spec = _canary_spec(canary)
    service = spec.get("service") or {}
    ingress = (spec.get("ingressRef") or {}).get("name")
    return AppContext(namespace, app, service.get("name") or app, service.get("port") or 80, ingress)


def resolve_provider(canary, override=None):
    """(provider, router family, metric family, warning or None)."""
    provider = override or _canary_spec(canary).get("provider") or DEFAULT_PROVIDER
    if provider not in PROVIDERS:
        return provider, None, None, "unknown provider %r; known: %s" % (provider, ", ".join(sorted(PROVIDERS)))
    router, family = PROVIDERS[provider]
    return provider, router, family, None


def routing_objects(ctx, router, provider):
    """[(key, apiVersion, kind, name)] the router reads for this app."""
    if router == "istio":
        return [("virtualservice", "networking.istio.io/v1", "VirtualService", ctx.apex)]
    if router == "gatewayapi":
        version = "v1beta1" if provider == "gatewayapi:v1beta1" else "v1"
        return [("httproute", "gateway.networking.k8s.io/" + version, "HTTPRoute", ctx.apex)]
    if router == "smi":
        return [("trafficsplit", "split.smi-spec.io/v1alpha4", "TrafficSplit", ctx.apex)]
    if router == "nginx":
        return [("ingress", "networking.k8s.io/v1", "Ingress", ctx.ingress),
                ("canary-ingress", "networking.k8s.io/v1", "Ingress", ctx.ingress + "-canary")]
    return []


def ab_requests(canary, router, ab_headers=None, ab_cookies=None):
    """The requests A/B users send: the explicit headers/cookies if given, else one per condition of
    the Canary's analysis.match. Returns ([Request], [warning])."""
    if ab_headers or ab_cookies:
        request = Request(headers=ab_headers)
        for name, value in (ab_cookies or {}).items():
            request.add_cookie(name, value)
        return [request], []
    requests, warnings = [], []
    for index, condition in enumerate(((_canary_spec(canary).get("analysis") or {}).get("match")) or []):
        request, why = request_for_condition(condition or {}, cookie_names_condition=(router == "nginx"))
        if request is None:
            warnings.append("analysis.match[%d]: %s; A/B users will not send it" % (index, why))
        else:
            requests.append(request)
    return requests, warnings


def build_plan(namespace, app, snapshot, provider_override=None, ab_fraction=0.1, ab_headers=None, ab_cookies=None,
               loadtest_fraction=0.0):
    """The routing plan of an app from a snapshot of the cluster:

    ``{"canary": Canary or None, "pods": [...], "deployments": {name: obj}, "services": {name: obj},
    "objects": {key: obj or None}}`` (keys as routing_objects gives them).
    """
    canary = snapshot.get("canary")
    ctx = app_context(namespace, app, canary)
    provider, router, family, warning = resolve_provider(canary, provider_override)
    warnings = [warning] if warning else []
    pods = classify_pods(snapshot.get("pods") or [], snapshot.get("deployments") or {}, app)
    warnings += sorted(set("%s: %s" % (pod.version, pod.fault_error) for pod in pods if pod.fault_error))
    objects = snapshot.get("objects") or {}
    if router is None:
        return Plan(ctx, provider, router, family, [], pods, objects, warnings)
    services = snapshot.get("services") or {}
    requests, ab_warnings = ab_requests(canary, router, ab_headers, ab_cookies)
    warnings += ab_warnings
    classes = []
    if requests and ab_fraction > 0:
        classes.append((1.0 - ab_fraction, "user", Request()))
        classes += [(ab_fraction / len(requests), "ab", request) for request in requests]
    else:
        classes.append((1.0, "user", Request()))
    if loadtest_fraction > 0:
        # A load tester (Flagger's flagger-loadtester in a rollout webhook) calls the canary
        # Service directly: the only canary traffic of a blue/green run without mirroring.
        classes = [(probability * (1.0 - loadtest_fraction), name, request) for probability, name, request in classes]
        classes.append((loadtest_fraction, "loadtest", Request()))
    if router == "nginx":
        main = objects.get("ingress")
        if main:
            found = ingress_backend(main, "/")
            if found:
                ctx.ingress_service, ctx.ingress_host, ctx.ingress_path = found[0], found[2], found[3]
    resolved = []
    for probability, name, request in classes:
        request.authority = ctx.apex
        if name == "loadtest":
            decision = Decision([Backend(ctx.apex + "-canary", 1.0, ctx.port)], note="load tester on the canary Service")
        else:
            decision = decide(router, ctx, objects, request, warnings)
        for backend in decision.backends + decision.mirrors:
            backend.endpoints = endpoints(ctx, backend.service, services, pods, router)
        resolved.append((probability, name, request, decision))
    return Plan(ctx, provider, router, family, resolved, pods, objects, warnings)


def decide(router, ctx, objects, request, warnings):
    fallback = Decision([Backend(ctx.apex, 1.0, ctx.port)], note="no routing object: the apex Service")
    if router == "kubernetes":
        return Decision([Backend(None, 1.0, ctx.port)], note="ready pods of both Deployments")
    if router == "istio":
        virtual_service = objects.get("virtualservice")
        return decide_istio(virtual_service, request, ctx.namespace) if virtual_service else fallback
    if router == "gatewayapi":
        http_route = objects.get("httproute")
        return decide_gateway(http_route, request, ctx.namespace) if http_route else fallback
    if router == "smi":
        traffic_split = objects.get("trafficsplit")
        return decide_smi(traffic_split) if traffic_split else fallback
    if router == "nginx":
        if not objects.get("ingress"):
            warnings.append("Ingress %s not found: requests go straight to the apex Service" % ctx.ingress)
        return decide_nginx(objects.get("ingress"), objects.get("canary-ingress"), request, ctx.namespace,
                            (ctx.apex, ctx.port))
    raise ValueError("unknown router %s" % router)


def endpoints(ctx, service, services, pods, router):
    """Ready pods behind a Service: by its selector when it exists, else by Flagger's naming
    (<apex>-primary: the primary, <apex>-canary: the target, <apex>: the primary)."""
    if router == "kubernetes" and service is None:
        return [pod for pod in pods if pod.ready and pod.role in ("primary", "canary")]
    if not service:
        return []
    obj = services.get(service)
    if obj is not None:
        selector = (obj.get("spec") or {}).get("selector")
        return [pod for pod in pods if pod.ready and selector_matches(selector, pod.labels)]
    if service in (ctx.apex + "-primary", ctx.apex):
        return [pod for pod in pods if pod.ready and pod.role == "primary"]
    if service == ctx.apex + "-canary":
        return [pod for pod in pods if pod.ready and pod.role == "canary"]
    return []


# ------------------------------------------------------------------------------------------------
# one app: traffic generation and its statistics
# ------------------------------------------------------------------------------------------------

def _counter():
    return {"requests": 0, "errors": 0}


class AppState:
    """An app the emulator follows: its options, current plan, request clock and statistics."""

    def __init__(self, namespace, app, rps=50.0, ab_fraction=0.1, provider=None, ab_headers=None, ab_cookies=None,
                 also_emit=(), discovered=False, loadtest_fraction=0.0):
        self.namespace, self.app = namespace, app
        self.loadtest_fraction = float(loadtest_fraction)
        self.key = "%s/%s" % (namespace, app)
        self.rps, self.ab_fraction, self.provider = float(rps), float(ab_fraction), provider
        self.ab_headers, self.ab_cookies = ab_headers, ab_cookies
        self.also_emit = tuple(also_emit)
        self.discovered = discovered
        self.plan = None
        self.last_tick = None
        self.carry = 0.0
        self.canary_name = None
        self.last_refresh = None
        self.refresh_error = None
        self.shares = None
        self.mirrored_shares = None
        self.reset_stats(None)

    def reset_stats(self, now):
        self.requests = 0
        self.errors = 0
        self.unavailable = {"no_route": 0, "no_endpoints": 0}
        self.served = {role: dict(_counter(), versions={}) for role in ROLES}
        self.mirrored = dict(_counter(), versions={})
        self.by_version = {}
        self.last_request = {}
        self.periods = []
        self.history = collections.deque(maxlen=HISTORY_LIMIT)
        self.stats_since = now
        if now is not None and self.shares and self.shares["canary"] > 0:
            self.periods.append({"start": now, "stop": None})

    # -- plan updates ----------------------------------------------------------------------------

    def update_plan(self, plan, now):
        users, mirrored = plan.shares()
        if users != self.shares or mirrored != self.mirrored_shares:
            self.history.append(dict(time=now, canary=users["canary"], primary=users["primary"],
                                     unavailable=users["unavailable"], mirrored=mirrored["canary"]))
        had_canary = bool(self.shares and self.shares["canary"] > 0)
        has_canary = users["canary"] > 0
        if has_canary and not had_canary:
            self.periods.append({"start": now, "stop": None})
        elif had_canary and not has_canary and self.periods:
            self.periods[-1]["stop"] = now
        self.shares, self.mirrored_shares = users, mirrored
        self.plan = plan
        self.last_refresh = now
        self.refresh_error = None

    # -- traffic ----------------------------------------------------------------------------------

    def due(self, now):
        """How many requests the clock owes since the last tick (fractions carried over)."""
        if self.last_tick is None:
            self.last_tick = now
            return 0
        elapsed = min(max(now - self.last_tick, 0.0), MAX_CATCH_UP_SECONDS)
        self.last_tick = now
        owed = self.rps * elapsed + self.carry
        count = int(owed)
        self.carry = owed - count
        return count

    def generate(self, count, now, rng, emitters):
        plan = self.plan
        if plan is None or not plan.classes or count <= 0:
            return
        for _request_number in range(count):
            _probability, _name, _request, decision = plan.pick_class(rng)
            self._serve(decision, now, rng, emitters)

    def _serve(self, decision, now, rng, emitters):
        self.requests += 1
        if not decision.backends:
            self.unavailable["no_route"] += 1
            self.errors += 1
            return
        draw, backend = rng.random(), decision.backends[-1]
        for candidate in decision.backends:
            if draw < candidate.weight:
                backend = candidate
                break
            draw -= candidate.weight
        if not backend.endpoints:
            self.unavailable["no_endpoints"] += 1
            self.errors += 1
            for emitter in emitters:
                emitter.unavailable(self.plan.ctx, backend)
            return
        pod = backend.endpoints[int(rng.random() * len(backend.endpoints))]
        code, latency = pod.fault.sample(rng)
        failed = code >= 500
        self.errors += failed
        self._count(self.served[pod.role], pod, failed)
        version = self.by_version.setdefault(pod.version, dict(_counter(), roles=[], fault=pod.fault.as_dict()))
        version["requests"] += 1
        version["errors"] += failed
        if pod.role not in version["roles"]:
            version["roles"].append(pod.role)
        self.last_request[pod.role] = now
        hit = Hit(self.plan.ctx, pod, backend, code, latency)
        for emitter in emitters:
            emitter.record(hit)
        for mirror in decision.mirrors:
            if mirror.endpoints and rng.random() < mirror.weight:
                shadow = mirror.endpoints[int(rng.random() * len(mirror.endpoints))]
                code, latency = shadow.fault.sample(rng)
                self._count(self.mirrored, shadow, code >= 500)
                mirrored_hit = Hit(self.plan.ctx, shadow, mirror, code, latency, mirrored=True)
                for emitter in emitters:
                    emitter.record(mirrored_hit)

    @staticmethod
    def _count(bucket, pod, failed):
        bucket["requests"] += 1
        bucket["errors"] += failed
        version = bucket["versions"].setdefault(pod.version, _counter())
        version["requests"] += 1
        version["errors"] += failed

    # -- reporting --------------------------------------------------------------------------------

    def snapshot(self):
        plan = self.plan
        routes = []
        ready = dict.fromkeys(ROLES, 0)
        versions = {role: [] for role in ROLES}
        faults = {}
        warnings = []
        if plan is not None:
            for probability, name, request, decision in plan.classes:
                routes.append({"class": name, "probability": round(probability, 6), "request": request.describe(),
                               "via": decision.note, "backends": {str(k): round(v, 6) for k, v in decision.shares().items()},
                               "mirrors": {str(k): round(v, 6) for k, v in decision.mirror_shares().items()}})
            for pod in plan.pods:
                if pod.ready:
                    ready[pod.role] += 1
                    if pod.version not in versions[pod.role]:
                        versions[pod.role].append(pod.version)
                faults[pod.version] = pod.fault.as_dict()
            warnings = list(plan.warnings)
        last = self.periods[-1] if self.periods else None
        return {
            "namespace": self.namespace, "app": self.app, "canary": self.canary_name,
            "provider": plan.provider if plan else self.provider, "router": plan.router if plan else None,
            "metrics": ([plan.family] if plan and plan.family else []) + list(self.also_emit),
            "rps": self.rps, "ab_fraction": self.ab_fraction,
            "share": self.shares, "mirrored_share": self.mirrored_shares, "routes": routes,
            "ready": ready, "versions": versions, "faults": faults,
            "stats_since": self.stats_since, "requests": self.requests, "errors": self.errors,
            "unavailable": dict(self.unavailable),
            "served": json.loads(json.dumps(self.served)), "mirrored": json.loads(json.dumps(self.mirrored)),
            "by_version": json.loads(json.dumps(self.by_version)), "last_request": dict(self.last_request),
            "canary_traffic": {"periods": [dict(period) for period in self.periods],
                               "started": last["start"] if last else None, "stopped": last["stop"] if last else None,
                               "active": bool(last and last["stop"] is None)},
            "history": list(self.history), "warnings": warnings,
            "last_refresh": self.last_refresh, "refresh_error": self.refresh_error,
        }


# ------------------------------------------------------------------------------------------------
# reading the cluster
# ------------------------------------------------------------------------------------------------

class ClusterReader:
    """Raw JSON reads (no model deserialisation: it costs CPU the shared machine does not have)."""

    def __init__(self, api_client, timeout=5):
        from kubernetes import client  # pylint: disable=import-outside-toplevel
        from kubernetes.client.rest import ApiException  # pylint: disable=import-outside-toplevel
        self.api_client = api_client
        self.api_exception = ApiException
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.timeout = timeout
        self.requests = 0

    def _json(self, call, *args, missing=None, **kwargs):
        self.requests += 1
        try:
            response = call(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        except self.api_exception as error:
            if error.status == 404:
                return missing
            raise
        return json.loads(response.data)

    def canaries(self, namespace=None):
        if namespace:
            found = self._json(self.custom.list_namespaced_custom_object, CANARY_GROUP, CANARY_VERSION, namespace,
                               CANARY_PLURAL)
        else:
            found = self._json(self.custom.list_cluster_custom_object, CANARY_GROUP, CANARY_VERSION, CANARY_PLURAL)
        return (found or {}).get("items") or []

    def pods(self, namespace):
        return (self._json(self.core.list_namespaced_pod, namespace) or {}).get("items") or []

    def deployments(self, namespace):
        items = (self._json(self.apps.list_namespaced_deployment, namespace) or {}).get("items") or []
        return {item["metadata"]["name"]: item for item in items}

    def services(self, namespace):
        items = (self._json(self.core.list_namespaced_service, namespace) or {}).get("items") or []
        return {item["metadata"]["name"]: item for item in items}

    def get(self, api_version, kind, name, namespace):
        if kind == "Ingress":
            return self._json(self.networking.read_namespaced_ingress, name, namespace)
        group, version = api_version.split("/")
        plural = {"VirtualService": "virtualservices", "HTTPRoute": "httproutes", "TrafficSplit": "trafficsplits"}[kind]
        return self._json(self.custom.get_namespaced_custom_object, group, version, namespace, plural, name)


def canary_for(canaries, app):
    """The Canary whose targetRef names ``app`` (else one named ``app``)."""
    for canary in canaries:
        if ((canary.get("spec") or {}).get("targetRef") or {}).get("name") == app:
            return canary
    return next((canary for canary in canaries if canary["metadata"]["name"] == app), None)


# ------------------------------------------------------------------------------------------------
# the emulator
# ------------------------------------------------------------------------------------------------

def parse_listen(text):
    host, _sep, port = str(text).rpartition(":")
    if not _sep or not port.isdigit():
        raise ValueError("listen must be host:port, e.g. 127.0.0.1:0, got %r" % text)
    return host or "127.0.0.1", int(port)


class Emulator:
    """The emulator as a library: ``with Emulator(kubeconfig=K, apps=[(ns, app)]) as emulator: ...``.

    Threads: one reads the cluster every ``refresh`` seconds, one generates requests every
    ``tick`` seconds, one serves HTTP (``/metrics``, ``/stats``, ``/healthz``, ``POST /reset``).
    """

    def __init__(self, kubeconfig=None, api_client=None, apps=(), rps=50.0, ab_fraction=0.1, listen="127.0.0.1:0",
                 targets_dir=None, refresh=0.5, tick=0.1, seed=None, discover=False, discover_namespace=None,
                 provider=None, also_emit=(), ab_headers=None, ab_cookies=None, target_labels=None):
        if api_client is None:
            from kubernetes import config  # pylint: disable=import-outside-toplevel
            api_client = config.new_client_from_config(config_file=kubeconfig)
        self.reader = ClusterReader(api_client)
        self.defaults = dict(rps=rps, ab_fraction=ab_fraction, provider=provider, also_emit=tuple(also_emit),
                             ab_headers=ab_headers, ab_cookies=ab_cookies)
        self.listen = listen
        self.targets_dir = targets_dir
        self.target_labels = dict(target_labels or {})
        self.refresh_interval, self.tick_interval = float(refresh), float(tick)
        self.discover, self.discover_namespace = discover, discover_namespace
        self.rng = random.Random(seed)
        self.registry = Registry()
        self.emitters = {}
        self.apps = collections.OrderedDict()
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.started = None
        self.server = None
        self.address = None
        self.targets_file = None
        self.refresh_count = 0
        self._threads = []
        for entry in apps:
            namespace, app = entry[0], entry[1]
            self.add_app(namespace, app, **(entry[2] if len(entry) > 2 else {}))

    # -- apps --------------------------------------------------------------------------------------

    def add_app(self, namespace, app, discovered=False, **options):
        settings = dict(self.defaults, **options)
        unknown = sorted(set(settings["also_emit"]) - set(METRIC_FAMILIES))
        if unknown:
            raise ValueError("also_emit: unknown metric family %s; known: %s"
                             % (", ".join(unknown), ", ".join(sorted(METRIC_FAMILIES))))
        with self.lock:
            key = "%s/%s" % (namespace, app)
            if key not in self.apps:
                self.apps[key] = AppState(namespace, app, discovered=discovered, **settings)
        self.wake.set()
        return key

    def remove_app(self, namespace, app):
        with self.lock:
            key = "%s/%s" % (namespace, app)
            if self.apps.pop(key, None) is not None:
                self.registry.drop(key)

    def set_rps(self, namespace, app, rps):
        with self.lock:
            self.apps["%s/%s" % (namespace, app)].rps = float(rps)

    def _emitters(self, state):
        names = ([state.plan.family] if state.plan and state.plan.family else []) + list(state.also_emit)
        result = []
        for name in dict.fromkeys(names):
            if name not in self.emitters:
                self.emitters[name] = METRIC_FAMILIES[name](self.registry)
            result.append(self.emitters[name])
        return result

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self):
        host, port = parse_listen(self.listen)
        self.server = http.server.ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        bound_host, bound_port = self.server.server_address[:2]
        self.address = "%s:%d" % ("127.0.0.1" if bound_host in ("0.0.0.0", "") else bound_host, bound_port)
        self.started = time.time()
        self.refresh()
        for name, target in (("http", self.server.serve_forever), ("refresh", self._refresh_loop),
                             ("traffic", self._traffic_loop)):
            thread = threading.Thread(target=target, name="pd-emulator-" + name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.targets_dir:
            self._register()
        return self

    def stop(self):
        self.stopping.set()
        self.wake.set()
        if self.targets_file:
            try:
                os.unlink(self.targets_file)
            except OSError:
                pass
            self.targets_file = None
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def url(self):
        return "http://%s" % self.address

    def _register(self):
        """Drop a file_sd target file for Prometheus (atomically: it globs *.json)."""
        os.makedirs(self.targets_dir, exist_ok=True)
        path = os.path.join(self.targets_dir, "pd-emulator-%s.json" % self.address.replace(":", "-"))
        labels = dict({"emulator": "pd-emulator"}, **self.target_labels)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump([{"targets": [self.address], "labels": labels}], handle)
        os.replace(tmp, path)
        self.targets_file = path

    # -- loops -------------------------------------------------------------------------------------

    def _traffic_loop(self):
        while not self.stopping.wait(self.tick_interval):
            try:
                self.tick(time.time())
            except Exception:  # pylint: disable=broad-except
                # One bad tick must not end the traffic for good: log it and keep the clock going.
                LOG.exception("generating traffic failed")

    def tick(self, now):
        with self.lock:
            for state in self.apps.values():
                count = state.due(now)
                if count:
                    state.generate(count, now, self.rng, self._emitters(state))

    def _refresh_loop(self):
        while not self.stopping.is_set():
            self.wake.wait(self.refresh_interval)
            self.wake.clear()
            if self.stopping.is_set():
                return
            try:
                self.refresh()
            except Exception as error:  # pylint: disable=broad-except
                LOG.warning("refresh failed: %s", error)

    def refresh(self):
        """Read the cluster once and recompute every app's plan."""
        self.refresh_count += 1
        if self.discover:
            self._discover()
        with self.lock:
            by_namespace = collections.OrderedDict()
            for state in self.apps.values():
                by_namespace.setdefault(state.namespace, []).append(state)
        for namespace, states in by_namespace.items():
            try:
                self._refresh_namespace(namespace, states)
            except Exception as error:  # pylint: disable=broad-except
                LOG.warning("refresh of namespace %s failed: %s", namespace, error)
                with self.lock:
                    for state in states:
                        state.refresh_error = "%s: %s" % (type(error).__name__, error)

    def _discover(self):
        found = set()
        for canary in self.reader.canaries(self.discover_namespace):
            target = ((canary.get("spec") or {}).get("targetRef") or {}).get("name")
            if target:
                found.add((canary["metadata"]["namespace"], target))
                self.add_app(canary["metadata"]["namespace"], target, discovered=True)
        with self.lock:
            gone = [state for state in self.apps.values() if state.discovered and (state.namespace, state.app) not in found]
        for state in gone:
            self.remove_app(state.namespace, state.app)

    def _refresh_namespace(self, namespace, states):
        reader = self.reader
        try:
            canaries = reader.canaries(namespace)
        except self.reader.api_exception as error:
            if error.status not in (403, 404):
                raise
            canaries = []
        base = {"pods": reader.pods(namespace), "deployments": reader.deployments(namespace),
                "services": reader.services(namespace)}
        for state in states:
            canary = canary_for(canaries, state.app)
            provider, router, _family, _warning = resolve_provider(canary, state.provider)
            ctx = app_context(namespace, state.app, canary)
            objects = {}
            for key, api_version, kind, name in routing_objects(ctx, router, provider):
                objects[key] = reader.get(api_version, kind, name, namespace)
            snapshot = dict(base, canary=canary, objects=objects)
            plan = build_plan(namespace, state.app, snapshot, state.provider, state.ab_fraction, state.ab_headers,
                              state.ab_cookies, state.loadtest_fraction)
            with self.lock:
                if self.apps.get(state.key) is not state:
                    continue
                if state.plan is not None and state.plan.family != plan.family:
                    self.registry.drop(state.key)
                state.canary_name = canary["metadata"]["name"] if canary else None
                state.update_plan(plan, time.time())

    # -- reporting ---------------------------------------------------------------------------------

    def metrics_text(self):
        with self.lock:
            return self.registry.render()

    def stats(self, namespace=None, app=None):
        with self.lock:
            apps = {key: state.snapshot() for key, state in self.apps.items()}
        if namespace and app:
            return apps.get("%s/%s" % (namespace, app))
        return {"time": time.time(), "started": self.started, "address": self.address,
                "refreshes": self.refresh_count, "kube_requests": self.reader.requests, "apps": apps}

    def reset(self, namespace=None, app=None):
        """Zero the /stats counters (not the Prometheus counters, which must only grow)."""
        now = time.time()
        with self.lock:
            for state in self.apps.values():
                if (namespace is None or state.namespace == namespace) and (app is None or state.app == app):
                    state.reset_stats(now)


def _handler_for(emulator):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status, body, content_type):
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/metrics":
                self._send(200, emulator.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")
            elif url.path == "/stats":
                body = emulator.stats(query.get("namespace"), query.get("app"))
                self._send(200 if body is not None else 404, json.dumps(body, indent=1, sort_keys=True) + "\n",
                           "application/json")
            elif url.path == "/healthz":
                self._send(200, "ok\n", "text/plain")
            else:
                self._send(404, "not found: try /metrics or /stats\n", "text/plain")

        def do_POST(self):  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/reset":
                self._send(404, "not found: POST /reset\n", "text/plain")
                return
            query = dict(urllib.parse.parse_qsl(url.query))
            emulator.reset(query.get("namespace"), query.get("app"))
            self._send(200, "{\"reset\": true}\n", "application/json")

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            LOG.debug("%s " + format, self.address_string(), *args)

    return Handler


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------

def _pairs(values, what):
    result = {}
    for value in values or []:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise SystemExit("--%s takes NAME=VALUE, got %r" % (what, value))
        result[name] = text
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or os.environ.get("PD_TEST_KUBECONFIG"),
                        help="kubeconfig file (default: $KUBECONFIG, then $PD_TEST_KUBECONFIG)")
    parser.add_argument("--namespace", help="namespace of the apps given without one; with --discover, where to look")
    parser.add_argument("--app", action="append", default=[],
                        help="target Deployment to emulate, APP or NAMESPACE/APP; repeatable")
    parser.add_argument("--discover", action="store_true",
                        help="emulate every Canary found (in --namespace, else in all namespaces), following additions")
    parser.add_argument("--rps", type=float, default=50.0, help="requests per second per app (default 50)")
    parser.add_argument("--ab-fraction", type=float, default=0.1,
                        help="share of requests from A/B users, who satisfy the Canary's analysis.match (default 0.1)")
    parser.add_argument("--ab-header", action="append", help="NAME=VALUE that A/B users send instead; repeatable")
    parser.add_argument("--ab-cookie", action="append", help="NAME=VALUE cookie that A/B users send instead; repeatable")
    parser.add_argument("--provider", choices=sorted(PROVIDERS), help="override the Canary's spec.provider")
    parser.add_argument("--also-emit", action="append", default=[], choices=sorted(METRIC_FAMILIES),
                        help="also emit this metric family for every app (e.g. kubernetes for the app's own metrics)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="address for /metrics and /stats (default 127.0.0.1:0)")
    parser.add_argument("--targets-dir", help="Prometheus file_sd directory to register in (removed on exit)")
    parser.add_argument("--refresh", type=float, default=0.5, help="seconds between cluster reads (default 0.5)")
    parser.add_argument("--seed", type=int, help="random seed, for repeatable runs")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.app and not args.discover:
        parser.error("give at least one --app, or --discover")
    if not 0 <= args.ab_fraction <= 1:
        parser.error("--ab-fraction must be between 0 and 1, got %g" % args.ab_fraction)
    if args.rps < 0:
        parser.error("--rps must not be negative, got %g" % args.rps)
    apps = []
    for entry in args.app:
        namespace, _sep, app = entry.rpartition("/")
        namespace = namespace or args.namespace
        if not namespace:
            parser.error("--app %s has no namespace: write NAMESPACE/%s or give --namespace" % (entry, entry))
        apps.append((namespace, app))
    args.apps = apps
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    emulator = Emulator(kubeconfig=args.kubeconfig, apps=args.apps, rps=args.rps, ab_fraction=args.ab_fraction,
                        listen=args.listen, targets_dir=args.targets_dir, refresh=args.refresh, seed=args.seed,
                        discover=args.discover, discover_namespace=args.namespace if args.discover else None,
                        provider=args.provider, also_emit=args.also_emit,
                        ab_headers=_pairs(args.ab_header, "ab-header"), ab_cookies=_pairs(args.ab_cookie, "ab-cookie"))
    done = threading.Event()

    def _stop(signum, _frame):
        LOG.info("signal %d: stopping", signum)
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    emulator.start()
    print(json.dumps({"address": emulator.address, "metrics": emulator.url + "/metrics", "stats": emulator.url + "/stats",
                      "targets_file": emulator.targets_file}), flush=True)
    try:
        while not done.wait(1.0):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
