# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The built-in checks, as PromQL templates over each router's native request metrics.

* ``request-success-rate``: percent of requests that did not end in a 5xx (0-100).
* ``request-duration``: the 99th percentile of request duration, in milliseconds.

Templates use the same variables as user queries (``{{ namespace }}``, ``{{ target }}``,
``{{ service }}``, ``{{ ingress }}``, ``{{ interval }}``) and are rendered by ``_gate``. Each router
has a canary side (the target, the version under test) and a primary side (the baseline the
statistical judge compares against).

Metric and label names are the ones each data plane exports, and the selectors follow Flagger's
observers so a Flagger user gets the same numbers, except where noted:

* istio: ``istio_requests_total`` and ``istio_request_duration_milliseconds_bucket``, reported by
  the destination proxy, selected by ``destination_workload(_namespace)``.
* linkerd (also plain ``smi``): ``response_total`` and ``response_latency_ms_bucket`` of the inbound
  proxy, selected by ``namespace`` and ``deployment``; failures by Linkerd's ``classification``.
* osm: ``osm_request_total`` and ``osm_request_duration_ms_bucket`` by ``destination_*`` labels.
* nginx (ingress-nginx): ``nginx_ingress_controller_requests`` and
  ``nginx_ingress_controller_request_duration_seconds_bucket``. Requests the canary served carry
  the canary upstream (``<namespace>-<service>-canary-<port>``) in the ``canary`` label; the
  primary's have none. Flagger measures the whole Ingress and the mean upstream latency instead:
  that mixes primary traffic into the canary's numbers, and a mean is not a P99.
* gatewayapi (Envoy data planes such as Contour and Envoy Gateway in per-Service cluster mode):
  ``envoy_cluster_upstream_rq`` and ``envoy_cluster_upstream_rq_time_bucket`` (milliseconds) of the
  cluster ``<namespace>_<service>-canary_<port>``.
* kubernetes (no mesh): the application's own ``http_request_duration_seconds`` histogram
  (``_count`` for the rate, ``status`` label for the code), on pods of the Deployment, with the
  ``kubernetes_namespace``/``kubernetes_pod_name`` target labels Flagger expects.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

REQUEST_SUCCESS_RATE = 'request-success-rate'
REQUEST_DURATION = 'request-duration'
BUILTIN_METRICS = (REQUEST_SUCCESS_RATE, REQUEST_DURATION)

# Which way a built-in gets worse, for the statistical judge.
BUILTIN_DIRECTIONS = {REQUEST_SUCCESS_RATE: 'decrease', REQUEST_DURATION: 'increase'}
BUILTIN_UNITS = {REQUEST_SUCCESS_RATE: '%', REQUEST_DURATION: 'ms'}

SIDES = ('canary', 'primary')

# Pods of a Deployment are <deployment>-<replicaset hash>-<pod suffix>; the anchored regex keeps
# <target>-primary-<hash>-<suffix> (three parts) out of the target's side.
_POD_OF = '{{ target }}%s-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)'

_ROUTERS = {
    'istio': dict(
        requests='istio_requests_total',
        buckets='istio_request_duration_milliseconds_bucket',
        to_ms='',
        success='response_code!~"5.*"',
        canary='reporter="destination", destination_workload_namespace="{{ namespace }}", '
               'destination_workload="{{ target }}"',
        primary='reporter="destination", destination_workload_namespace="{{ namespace }}", '
                'destination_workload="{{ target }}-primary"',
    ),
    'linkerd': dict(
        requests='response_total',
        buckets='response_latency_ms_bucket',
        to_ms='',
        success='classification!="failure"',
        canary='namespace="{{ namespace }}", deployment="{{ target }}", direction="inbound"',
        primary='namespace="{{ namespace }}", deployment="{{ target }}-primary", direction="inbound"',
    ),
    'osm': dict(
        requests='osm_request_total',
        buckets='osm_request_duration_ms_bucket',
        to_ms='',
        success='response_code!~"5.*"',
        canary='destination_namespace="{{ namespace }}", destination_kind="Deployment", '
               'destination_name="{{ target }}"',
        primary='destination_namespace="{{ namespace }}", destination_kind="Deployment", '
                'destination_name="{{ target }}-primary"',
    ),
    'nginx': dict(
        requests='nginx_ingress_controller_requests',
        buckets='nginx_ingress_controller_request_duration_seconds_bucket',
        to_ms=' * 1000',
        success='status!~"5.*"',
        canary='namespace="{{ namespace }}", ingress="{{ ingress }}", '
               'canary=~"{{ namespace }}-{{ service }}-canary-.+"',
        # An empty matcher selects series without the label: requests no canary upstream served.
        primary='namespace="{{ namespace }}", ingress="{{ ingress }}", canary=""',
    ),
    'gatewayapi': dict(
        requests='envoy_cluster_upstream_rq',
        buckets='envoy_cluster_upstream_rq_time_bucket',
        to_ms='',
        success='envoy_response_code!~"5.*"',
        canary='envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+"',
        primary='envoy_cluster_name=~"{{ namespace }}_{{ service }}-primary_[0-9a-zA-Z-]+"',
    ),
    'kubernetes': dict(
        requests='http_request_duration_seconds_count',
        buckets='http_request_duration_seconds_bucket',
        to_ms=' * 1000',
        success='status!~"5.*"',
        canary='kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"%s"' % (_POD_OF % ''),
        primary='kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"%s"' % (_POD_OF % '-primary'),
    ),
}

ROUTERS = tuple(sorted(_ROUTERS))

# Provider spellings (see _canary.KNOWN_PROVIDERS) -> the metrics their data plane exports.
# Plain smi means Linkerd, the SMI implementation still in wide use.
_PROVIDER_ROUTERS = {
    'istio': 'istio',
    'linkerd': 'linkerd',
    'smi': 'linkerd',
    'smi:v1alpha1': 'linkerd',
    'smi:v1alpha2': 'linkerd',
    'smi:v1alpha3': 'linkerd',
    'osm': 'osm',
    'nginx': 'nginx',
    'gatewayapi': 'gatewayapi',
    'gatewayapi:v1': 'gatewayapi',
    'gatewayapi:v1beta1': 'gatewayapi',
    'kubernetes': 'kubernetes',
}


def is_builtin(name):
    return name in BUILTIN_METRICS


def router_for(provider):
    """The built-in query set for a Canary provider spelling; ValueError naming the choices."""
    router = _PROVIDER_ROUTERS.get(provider or 'kubernetes')
    if router is None:
        raise ValueError('no built-in metrics for provider "%s"; known providers: %s'
                         % (provider, ', '.join(sorted(_PROVIDER_ROUTERS))))
    return router


def builtin_query(provider, name, side='canary'):
    """The PromQL template of built-in ``name`` for ``provider``'s data plane, on ``side``."""
    if name not in BUILTIN_METRICS:
        raise ValueError('"%s" is not a built-in metric; built in are %s' % (name, ', '.join(BUILTIN_METRICS)))
    if side not in SIDES:
        raise ValueError('side must be one of %s, got "%s"' % (', '.join(SIDES), side))
    spec = _ROUTERS[router_for(provider)]
    selector = spec[side]
    if name == REQUEST_SUCCESS_RATE:
        return ('sum(rate(%(requests)s{%(selector)s, %(success)s}[{{ interval }}])) / '
                'sum(rate(%(requests)s{%(selector)s}[{{ interval }}])) * 100'
                % dict(spec, selector=selector))
    return ('histogram_quantile(0.99, sum(rate(%(buckets)s{%(selector)s}[{{ interval }}])) by (le))%(to_ms)s'
            % dict(spec, selector=selector))


def native_series(provider, side='canary'):
    """The raw counters behind the built-ins, for watching them accumulate (``_watch``).

    Returns ``requests`` (a selector of the request counters), ``successful`` (the same, limited to
    requests that did not fail), ``buckets`` (a selector of the latency histogram buckets) and
    ``bucket_unit_ms`` (how many milliseconds one unit of ``le`` is). Templates, like the queries.
    """
    if side not in SIDES:
        raise ValueError('side must be one of %s, got "%s"' % (', '.join(SIDES), side))
    spec = _ROUTERS[router_for(provider)]
    selector = spec[side]
    return {
        'requests': '%s{%s}' % (spec['requests'], selector),
        'successful': '%s{%s, %s}' % (spec['requests'], selector, spec['success']),
        'buckets': '%s{%s}' % (spec['buckets'], selector),
        'bucket_unit_ms': 1000.0 if spec['to_ms'] else 1.0,
    }
