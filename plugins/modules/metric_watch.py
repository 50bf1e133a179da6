#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: metric_watch
short_description: Watch a canary during a step and fail at once when it is clearly worse than its thresholds
version_added: 0.2.0
description:
  - Waits out one step of a progressive delivery run (O(duration)) while it watches the canary. Every
    O(watch_interval) seconds it reads the canary's request counters accumulated since the watch began, and runs
    Wald's sequential probability ratio test on the share of failed requests against each metric's threshold.
  - As soon as the test decides that the canary is worse than a threshold, the decision is recorded in the Canary
    status and the task fails, so that the role's C(rescue) block rolls back within seconds instead of after
    several intervals.
  - When the time is up without a decision, the task succeeds with RV(decision=undecided) and the usual
    end-of-step gate (M(progressive.delivery.metric_gate)) decides. Missing data and an unreachable source are
    never a decision of the watch. They are left to the gate's no-data policy and outage handling.
  - V(request-success-rate) with C(thresholdRange.min) m is tested with an acceptable failure rate
    p0 = 1 - m/100. V(request-duration) with C(thresholdRange.max) t (a P99) counts requests slower than t from
    the latency histogram (all requests minus the smallest C(le) bucket at or above t), with p0 = 1%. Both use
    the native counters of the Canary's provider (istio, linkerd/smi, osm, nginx, gatewayapi (Envoy), kubernetes).
  - Custom metrics are watched when O(metrics) gives a pair of counter queries for them.
  - A canary that meets its thresholds is rolled back by the watch with a probability of at most
    O(alpha)/(1 - O(beta)) per watched step. See the fast-fail documentation for the test and its figures.
author:
  - progressive.delivery developers (!UNKNOWN)
extends_documentation_fragment:
  - progressive.delivery.auth
  - progressive.delivery.canary
  - progressive.delivery.canary.object
  - progressive.delivery.metric_source
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details:
      - The watch runs as usual, because reading metrics changes nothing. A decision is returned and not written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
options:
  duration:
    description:
      - How long to watch, as a Go-style duration such as V(30s) or V(1m).
      - The default is the Canary's C(analysis.interval).
    type: str
  since:
    description:
      - The Unix time at which the step began (the weight changed). The counts start there, so that the seconds
        that the task takes to start are not lost.
      - The default is the start of the watch.
    type: float
  watch_interval:
    description: Seconds between two readings of the counters.
    type: float
    default: 5
  alpha:
    description:
      - The false-rollback rate. A canary whose failure rate is at its threshold is rolled back by the watch with
        a probability of at most O(alpha)/(1 - O(beta)) per watched step, and a better one less often.
    type: float
    default: 0.001
  beta:
    description:
      - The miss rate. A canary whose failure rate is O(p1_factor) times the acceptable one is let through the
        watch with a probability of at most about O(beta). It is still judged by the end-of-step gate.
    type: float
    default: 0.05
  p1_factor:
    description:
      - The failure rate that the watch must catch quickly (p1), as a multiple of the acceptable one (p0).
      - A higher factor decides sooner about gross faults and later about mild ones.
    type: float
    default: 3
  metrics:
    description:
      - Custom metrics to watch, each given as a pair of counter queries. A metric of the same name in the
        Canary's C(analysis.metrics) is then watched through this pair.
    type: list
    elements: dict
    suboptions:
      name:
        description: The metric's name.
        type: str
        required: true
      success_query:
        description:
          - PromQL selecting the counters of the successful requests, for example
            C(http_requests_total{namespace="{{ namespace }}", app="{{ target }}", code!~"5.."}).
          - Raw counter selectors are best, because each series' resets are then handled.
          - Templates use the same variables as the gate's queries. Mark them C(!unsafe) in a playbook.
        type: str
        required: true
      total_query:
        description: PromQL selecting the counters of all requests.
        type: str
        required: true
      min_success_rate:
        description:
          - The lowest acceptable success rate, in percent.
          - The default is C(thresholdRange.min) of the Canary's metric of the same name.
        type: float
      template_variables:
        description: Values for C({{ variables.<key> }}) in the queries.
        type: dict
  record:
    description:
      - Write a decision that the canary is worse into the Canary status, as a C(gateHistory) entry with the
        counts, the test statistic and the bounds under C(metrics).
    type: bool
    default: true
  route_to_primary_on_fail:
    description:
      - When the watch decides that the canary is worse, send all traffic to the primary at once, from this task,
        before the decision is recorded; the record marks the entry C(rollback=true).
      - The rest of the rollback is left to M(progressive.delivery.canary_promote) with
        O(progressive.delivery.canary_promote#module:state=rolled_back); a run resumed before that finishes the
        rollback instead of routing to the canary again.
      - Never in check mode.
    type: bool
    default: false
requirements:
  - kubernetes >= 24.2.0
  - requests >= 2.28.0
notes:
  - Only a Prometheus source is watched. With another source type, the module waits out O(duration) and leaves
    the decision to the end-of-step gate.
seealso:
  - module: progressive.delivery.metric_gate
  - name: Fast fail documentation
    description: The sequential test, its error rates, what is recorded and measured figures.
    link: https://github.com/progressive-delivery/delivery/blob/main/docs/fast-fail.md
'''

EXAMPLES = r'''
- name: Watch the step, then gate it
  block:
    - name: Watch the canary while the interval runs
      progressive.delivery.metric_watch:
        name: podinfo
        namespace: test
        source:
          address: http://prometheus.monitoring:9090
        watch_interval: 5
    - name: Evaluate the metrics at the end of the step
      progressive.delivery.metric_gate:
        name: podinfo
        namespace: test
  rescue:
    - name: Roll back
      progressive.delivery.canary_promote:
        name: podinfo
        namespace: test
        state: rolled_back

- name: Watch a custom success rate through its counters
  progressive.delivery.metric_watch:
    name: podinfo
    namespace: test
    metrics:
      - name: checkout-success
        success_query: !unsafe 'checkout_total{namespace="{{ namespace }}", app="{{ target }}", outcome="ok"}'
        total_query: !unsafe 'checkout_total{namespace="{{ namespace }}", app="{{ target }}"}'
        min_success_rate: 99.5
'''

RETURN = r'''
canary:
  description:
    - The Canary object as this task left it (with its new C(metadata.resourceVersion)), for the O(canary) option
      of the next task of the run.
  returned: success
  type: dict
decision:
  description: V(worse) when the watch failed the step, else V(undecided) (the end-of-step gate decides).
  returned: always
  type: str
  sample: worse
decided_after:
  description: Seconds from the start of the watch to the decision, or null.
  returned: success
  type: float
elapsed:
  description: Seconds the watch ran.
  returned: success
  type: float
polls:
  description: How many times the counters were read.
  returned: success
  type: int
metrics:
  description:
    - One entry per watched metric with C(name), C(kind) (V(errors), V(latency) or V(pair)), C(threshold),
      C(p0), C(p1), C(failures), C(total) (counts since the watch began), C(statistic) (the log likelihood
      ratio), C(lower) and C(upper) (the bounds), C(decision) (V(worse), V(acceptable) or V(undecided)),
      C(decided_after), C(error) (the source's last error, or null) and the queries.
  returned: success
  type: list
  elements: dict
skipped:
  description: Metrics that are not watched, each with C(name) and C(reason).
  returned: success
  type: list
  elements: dict
message:
  description: The decision and each metric's counts, statistic and bounds.
  returned: always
  type: str
recorded:
  description: Whether a decision was written into the Canary status.
  returned: success
  type: bool
routed_to_primary:
  description: Whether this task sent all traffic to the primary (O(route_to_primary_on_fail)).
  returned: always
  type: bool
decided_at:
  description: Unix time at which the watch ended (decided, or its time was up).
  returned: success
  type: float
routed_at:
  description: Unix time at which the router write of O(route_to_primary_on_fail) returned; null when none was made.
  returned: success
  type: float
'''

import copy
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.progressive.delivery.plugins.module_utils._module import (
    CANARY_OBJECT_SPEC, build_module, exit_with, kube_for, read_canary)
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeError
from ansible_collections.progressive.delivery.plugins.module_utils import _canary
from ansible_collections.progressive.delivery.plugins.module_utils import _gate
from ansible_collections.progressive.delivery.plugins.module_utils import _metrics
from ansible_collections.progressive.delivery.plugins.module_utils import _rollout
from ansible_collections.progressive.delivery.plugins.module_utils import _watch


def argspec():
    source = copy.deepcopy(_metrics.SOURCE_ARG_SPEC)
    metric = dict(
        name=dict(type='str', required=True),
        success_query=dict(type='str', required=True),
        total_query=dict(type='str', required=True),
        min_success_rate=dict(type='float'),
        template_variables=dict(type='dict'),
    )
    return dict(
        duration=dict(type='str'),
        since=dict(type='float'),
        watch_interval=dict(type='float', default=_watch.DEFAULT_WATCH_INTERVAL),
        alpha=dict(type='float', default=_watch.DEFAULT_ALPHA),
        beta=dict(type='float', default=_watch.DEFAULT_BETA),
        p1_factor=dict(type='float', default=_watch.DEFAULT_P1_FACTOR),
        metrics=dict(type='list', elements='dict', options=metric),
        source=dict(type='dict', options=source),
        record=dict(type='bool', default=True),
        route_to_primary_on_fail=dict(type='bool', default=False),
        **CANARY_OBJECT_SPEC
    )


def main():
    module = build_module(argspec())
    params = module.params
    if not _metrics.HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib('requests'), exception=_metrics.REQUESTS_IMPORT_ERROR)
    kube = kube_for(module)
    name, namespace = params['name'], params['namespace']
    canary, spec = read_canary(module, kube)
    analysis = spec.get('analysis') or {}

    settings = dict(params.get('source') or {})
    settings.setdefault('type', 'prometheus')
    if settings['type'] == 'prometheus' and not settings.get('address'):
        settings['address'] = spec.get('metricsServer')
    try:
        duration = _canary.parse_duration(params['duration'] or analysis.get('interval') or _canary.DEFAULT_INTERVAL)
    except ValueError as exc:
        module.fail_json(msg='duration: %s' % exc, field='duration')
    try:
        watched, skipped = _watch.plan(analysis.get('metrics'), params.get('metrics'),
                                       {'name': name, 'namespace': namespace, 'spec': spec},
                                       p1_factor=params['p1_factor'])
        _watch.boundaries(params['alpha'], params['beta'])
        source = _metrics.make_source(settings)
    except (_gate.GateError, _metrics.SourceConfigError) as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    if not hasattr(source, 'query_vector'):
        skipped = [{'name': metric['name'], 'reason': 'the %s source has no counters to watch' % settings['type']}
                   for metric in watched] + skipped
        watched = []
    try:
        result = _watch.watch(watched, source, duration, watch_interval=params['watch_interval'],
                              alpha=params['alpha'], beta=params['beta'], since=params['since'])
    except _gate.GateError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    message = _watch.watch_message(result, skipped)
    worse = result['decision'] == _watch.WORSE

    decided_at = time.time()
    routed = False
    routed_at = None
    if worse and params['route_to_primary_on_fail'] and not module.check_mode:
        # Traffic first: the users leave the canary before anything else is written.
        try:
            _rollout.stop_canary_traffic(kube, name, namespace, canary, spec)
            routed, routed_at = True, time.time()
        except (KubeError, _rollout.RolloutError) as exc:
            message += '; moving the traffic to the primary failed: %s' % exc
    recorded = False
    if worse and params['record'] and not module.check_mode:
        now = _canary.parse_time(time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))

        def apply(obj):
            status = obj.get('status') or {}
            obj['status'] = _canary.append_gate_result(status, _watch.history_entry(result, status, message, now))
            if routed:
                _rollout.mark_rollback(obj['status'])
            return obj

        try:
            _before, canary = kube.update_with_retry(_canary.API_VERSION, _canary.KIND, name, namespace, apply,
                                                     status=True, current=copy.deepcopy(canary))
            recorded = True
        except KubeError as exc:
            message += '; recording the decision in the Canary status failed: %s' % exc

    output = dict(changed=recorded or routed, routed_to_primary=routed, decided_at=decided_at, routed_at=routed_at,
                  decision=result['decision'], decided_after=result['decided_after'],
                  elapsed=result['elapsed'], polls=result['polls'], metrics=result['metrics'], skipped=skipped,
                  message=message, recorded=recorded, canary=canary)
    if worse:
        module.fail_json(msg=message, **output)
    exit_with(module, output)


if __name__ == '__main__':
    main()
