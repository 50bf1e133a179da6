#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: metric_gate
short_description: Evaluate a Canary's analysis metrics once and fail the task when the run must roll back
version_added: 0.1.0
description:
  - Runs one gate of a progressive delivery run. Each metric is evaluated and recorded in the Canary
    status, and the task fails when the run must roll back, so that a C(rescue) block can roll it back.
  - The metrics come from the Canary's C(analysis.metrics). The O(metrics) option overrides or extends them.
    V(request-success-rate) (percent of non-5xx requests) and V(request-duration) (P99 in milliseconds) are
    built in. They are written in PromQL for the native metrics of the Canary's provider (istio, linkerd/smi,
    osm, nginx, gatewayapi (Envoy), kubernetes). Other metrics carry a query template.
  - Query templates can use C({{ name }}), C({{ namespace }}), C({{ target }}), C({{ service }}),
    C({{ ingress }}), C({{ interval }}) and C({{ variables.<key> }}). A template that uses an undefined variable
    is an error that names the variable. In a playbook, mark such queries C(!unsafe) so that Ansible leaves the
    braces alone.
  - In O(mode=threshold), each value is compared with its O(metrics[].threshold_range).
  - In O(mode=compare), the canary's series are compared with the primary's by a Mann-Whitney U test, in the
    style of Kayenta's NetflixACAJudge, and the results are scored.
  - When a query returns no data, the metric's no-data policy decides the outcome (V(fail), which is the
    default, V(inconclusive) or V(pass)).
  - When the metric source is down or returns an error, the metric fails and the message gives the cause. An
    outage never passes a gate.
  - A failing gate adds one to the Canary's C(status.failedChecks). In C(cumulative) mode (as in Flagger)
    failed checks add up over the whole run. In C(consecutive) mode, set by the Canary's
    C(analysis.failedChecksMode), a passing gate resets the count. An inconclusive gate neither adds to the
    count nor resets it.
  - When the count reaches C(analysis.threshold), the task fails (see O(fail_on_threshold)).
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
      - Metrics are queried as usual, because reading them changes nothing. The verdict and the failed-check
        count that would be written are returned, and the Canary status is not written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details: Shows the failed-check count and the gate history entry that are, or would be, written.
options:
  metrics:
    description:
      - Metrics that override or extend the Canary's C(analysis.metrics).
      - A metric with the same name as one of the Canary's overrides only the fields it sets. Metrics with new
        names are added. With O(metrics_merge=replace), the Canary's metrics are ignored.
      - Fields left unset take the Canary's value, and otherwise the default.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Metric name. V(request-success-rate) and V(request-duration) are built in and need no query.
        type: str
        required: true
      query:
        description:
          - The query template. For Prometheus this is PromQL. For Datadog it is a metrics query. For the V(http)
            source it is a JMESPath expression that selects the number from the JSON response.
        type: str
      baseline_query:
        description:
          - Used by O(mode=compare) only. The query for the primary (the baseline).
          - When it is not set, O(metrics[].query) is rendered again with C(target) set to the primary
            Deployment (C(<target>-primary)). For the built-in metrics, the primary's own selectors are used.
        type: str
      interval:
        description:
          - The look-back window of the metric, as a Go-style duration, for example V(30s), V(1m) or V(1m30s).
          - It is rendered as C({{ interval }}). For Datadog it is the query window.
          - The default is V(1m).
        type: str
      threshold_range:
        description:
          - The accepted range of values in O(mode=threshold). Without a range the metric is only reported.
        type: dict
        suboptions:
          min:
            description: The lowest value that passes.
            type: float
          max:
            description: The highest value that passes.
            type: float
      no_data_policy:
        description:
          - What a query that returns no data (no series, or NaN such as 0/0 when there is no traffic) means.
          - The default is V(fail), as in Flagger.
        type: str
        choices: [fail, inconclusive, pass]
      template_variables:
        description: Values for C({{ variables.<key> }}) in the query.
        type: dict
      dry_run:
        description:
          - Evaluate and report the metric without counting it towards the verdict. Use it to try out a new
            check.
        type: bool
      direction:
        description:
          - Used by O(mode=compare) only. The direction of change that fails.
          - The default is V(decrease) for V(request-success-rate), V(increase) for V(request-duration) and
            V(either) for other metrics.
        type: str
        choices: [increase, decrease, either]
      allowed_increase:
        description:
          - Used by O(mode=compare) only. The ratio of the canary's mean to the primary's mean up to which a
            significant increase still passes. For example, V(1.1) allows 10%.
          - The default is V(1.0).
        type: float
      allowed_decrease:
        description:
          - Used by O(mode=compare) only. The ratio of the canary's mean to the primary's mean down to which a
            significant decrease still passes. For example, V(0.9) allows 10%.
          - The default is V(1.0).
        type: float
      critical:
        description: Used by O(mode=compare) only. When this metric fails, the whole comparison fails.
        type: bool
      group:
        description:
          - Used by O(mode=compare) only. The group that the metric is scored in (see O(compare.group_weights)).
          - The default is the metric's own name.
        type: str
      nan_strategy:
        description:
          - Used by O(mode=compare) only. V(remove) drops NaN points and V(replace) turns them into 0.
          - The default is O(compare.nan_strategy).
        type: str
        choices: [remove, replace]
  metrics_merge:
    description:
      - V(merge) lays O(metrics) over the Canary's C(analysis.metrics), matching by name.
      - V(replace) evaluates O(metrics) only.
    type: str
    choices: [merge, replace]
    default: merge
  mode:
    description:
      - V(threshold) compares each metric's current value with its O(metrics[].threshold_range), as Flagger does.
      - V(compare) runs the statistical judge on the canary's and the primary's series over O(compare.window).
    type: str
    choices: [threshold, compare]
    default: threshold
  compare:
    description: The settings of the statistical judge for O(mode=compare).
    type: dict
    suboptions:
      window:
        description: How far back the series go, as a Go-style duration.
        type: str
        default: 10m
      step:
        description:
          - The resolution of the series. Each point covers one step, so C({{ interval }}) is rendered as the step
            in this mode. Use at least two scrape intervals.
        type: str
        default: 30s
      confidence:
        description: The confidence level of the Mann-Whitney U test.
        type: float
        default: 0.98
      tolerance:
        description:
          - A change counts only when the confidence interval of the shift lies beyond this fraction of the
            shift's estimate.
        type: float
        default: 0.25
      pass_score:
        description: The lowest score (0-100) that passes.
        type: float
        default: 95
      marginal_score:
        description: The lowest score that is inconclusive rather than failing.
        type: float
        default: 75
      group_weights:
        description:
          - The weight, in percent, of each metric group in the score.
          - Groups without a weight share what is left of 100 equally.
        type: dict
      nan_strategy:
        description: The default way to handle NaN points. V(remove) drops them and V(replace) turns them into 0.
        type: str
        choices: [remove, replace]
        default: remove
      outliers:
        description: V(remove) drops points beyond O(compare.outlier_factor) interquartile ranges before the test.
        type: str
        choices: [keep, remove]
        default: keep
      outlier_factor:
        description: The number of interquartile ranges beyond the quartiles at which a point is an outlier.
        type: float
        default: 3.0
  record:
    description:
      - Write the result into the Canary status, that is C(failedChecks) and a C(gateHistory) entry.
      - Only the status subresource is written.
      - When this is V(false), the count that would result is returned and nothing is written.
    type: bool
    default: true
  fail_on_threshold:
    description:
      - Fail the task when the failed checks reach the Canary's C(analysis.threshold), so that a C(rescue) block
        can roll back.
      - When this is V(false), the task reports RV(threshold_reached) and does not fail.
      - A query that the source rejects as invalid always fails the task, because it cannot pass until the
        query is fixed.
    type: bool
    default: true
  route_to_primary_on_fail:
    description:
      - When this gate makes the failed checks reach the threshold, send all traffic to the primary at once, from
        this task, before the gate is recorded; the record marks the gate entry C(rollback=true).
      - The rest of the rollback (target scaled to 0, phase Failed, lock released) is left to
        M(progressive.delivery.canary_promote) with O(progressive.delivery.canary_promote#module:state=rolled_back);
        a run resumed before that finishes the rollback instead of routing to the canary again.
      - Only with O(record=true) and O(fail_on_threshold=true), and never in check mode.
    type: bool
    default: false
requirements:
  - kubernetes >= 24.2.0
  - requests >= 2.28.0
  - jmespath >= 1.0.0 (for the V(http) source)
notes:
  - The module only reads from the metric source. The only write it makes is to the Canary's status subresource.
seealso:
  - name: Metrics documentation
    description: Built-in queries, sources, the no-data policy and the statistical judge.
    link: https://github.com/progressive-delivery/delivery/blob/main/docs/metrics.md
'''

EXAMPLES = r'''
- name: Gate the current step; a rescue block rolls back when the threshold is reached
  block:
    - name: Check the canary
      progressive.delivery.metric_gate:
        name: podinfo
        namespace: test
        source:
          address: http://prometheus.monitoring:9090
  rescue:
    - name: Roll back
      progressive.delivery.canary_promote:
        name: podinfo
        namespace: test
        state: rolled_back
        reason: "{{ ansible_failed_result.msg }}"

- name: Override a threshold and add a custom query (unsafe keeps Ansible away from the braces)
  progressive.delivery.metric_gate:
    name: podinfo
    namespace: test
    metrics:
      - name: request-success-rate
        threshold_range:
          min: 99.5
      - name: error-budget-burn
        query: !unsafe >-
          sum(rate(http_errors_total{namespace="{{ namespace }}", app="{{ target }}"}[{{ interval }}]))
          / sum(rate(http_requests_total{namespace="{{ namespace }}", app="{{ target }}"}[{{ interval }}]))
        threshold_range:
          max: 0.01
        no_data_policy: inconclusive

- name: Compare canary and primary statistically
  progressive.delivery.metric_gate:
    name: podinfo
    namespace: test
    mode: compare
    compare:
      window: 10m
      step: 30s
    metrics:
      - name: request-duration
        allowed_increase: 1.1
        critical: true

- name: Read a number from any JSON endpoint
  progressive.delivery.metric_gate:
    name: podinfo
    namespace: test
    metrics_merge: replace
    source:
      type: http
      address: https://slo.example.com/api/podinfo
      bearer_token: "{{ slo_token }}"
    metrics:
      - name: availability
        query: slo.availability
        threshold_range:
          min: 99.9
'''

RETURN = r'''
canary:
  description:
    - The Canary object as this task left it (with its new C(metadata.resourceVersion)), for the O(canary) option
      of the next task of the run.
  returned: success
  type: dict
verdict:
  description: The verdict of the gate, V(pass), V(inconclusive) or V(fail). Dry-run metrics do not count.
  returned: success
  type: str
  sample: fail
metrics:
  description:
    - One entry per metric, with C(name), C(query) (as rendered), C(value) (null without data), C(range)
      (C(min), C(max)), C(verdict), C(message), C(dry_run), C(interval), C(no_data_policy) and C(error)
      (V(unavailable), V(query) or V(result) when the source failed, otherwise null).
    - In O(mode=compare), each entry also has C(baseline_query), C(baseline_value) (the primary's mean),
      C(classification) (V(pass), V(high), V(low), V(nodata) or V(error)), C(ratio), C(p_value), C(lower),
      C(upper) and C(estimate), and summaries C(canary) and C(baseline) (count, mean, median, min, max).
  returned: success
  type: list
  elements: dict
  sample:
    - name: request-success-rate
      query: sum(rate(istio_requests_total{...}[1m])) / sum(rate(istio_requests_total{...}[1m])) * 100
      value: 98.2
      range: {min: 99, max: null}
      verdict: fail
failed_checks:
  description: The failed checks of the run after this gate, whether written or not.
  returned: success
  type: int
  sample: 1
threshold:
  description: The Canary's C(analysis.threshold).
  returned: success
  type: int
  sample: 5
threshold_reached:
  description: Whether RV(failed_checks) reached RV(threshold), meaning that the run must roll back.
  returned: success
  type: bool
score:
  description: The score (0-100) in O(mode=compare), or null when no metric had data.
  returned: when O(mode=compare)
  type: float
message:
  description: The verdict, every metric's value against its range, and the failed-check count.
  returned: always
  type: str
recorded:
  description: Whether the result was written into the Canary status.
  returned: success
  type: bool
routed_to_primary:
  description: Whether this task sent all traffic to the primary (O(route_to_primary_on_fail)).
  returned: always
  type: bool
decided_at:
  description: Unix time at which the gate's verdict was known (all metrics queried and judged).
  returned: success
  type: float
routed_at:
  description: Unix time at which the router write of O(route_to_primary_on_fail) returned; null when none was made.
  returned: success
  type: float
source_error:
  description: Why the metric source was unavailable, or null.
  returned: success
  type: str
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
from ansible_collections.progressive.delivery.plugins.module_utils._judge import JudgeError
from ansible_collections.progressive.delivery.plugins.module_utils._metrics import http as _http_source


def argspec():
    threshold_range = dict(min=dict(type='float'), max=dict(type='float'))
    metric = dict(
        name=dict(type='str', required=True),
        query=dict(type='str'),
        baseline_query=dict(type='str'),
        interval=dict(type='str'),
        threshold_range=dict(type='dict', options=threshold_range),
        no_data_policy=dict(type='str', choices=['fail', 'inconclusive', 'pass']),
        template_variables=dict(type='dict'),
        dry_run=dict(type='bool'),
        direction=dict(type='str', choices=['increase', 'decrease', 'either']),
        allowed_increase=dict(type='float'),
        allowed_decrease=dict(type='float'),
        critical=dict(type='bool'),
        group=dict(type='str'),
        nan_strategy=dict(type='str', choices=['remove', 'replace']),
    )
    source = copy.deepcopy(_metrics.SOURCE_ARG_SPEC)
    compare = dict(
        window=dict(type='str', default='10m'),
        step=dict(type='str', default='30s'),
        confidence=dict(type='float', default=0.98),
        tolerance=dict(type='float', default=0.25),
        pass_score=dict(type='float', default=95, no_log=False),
        marginal_score=dict(type='float', default=75),
        group_weights=dict(type='dict'),
        nan_strategy=dict(type='str', choices=['remove', 'replace'], default='remove'),
        outliers=dict(type='str', choices=['keep', 'remove'], default='keep'),
        outlier_factor=dict(type='float', default=3.0),
    )
    return dict(
        metrics=dict(type='list', elements='dict', options=metric),
        metrics_merge=dict(type='str', choices=['merge', 'replace'], default='merge'),
        source=dict(type='dict', options=source),
        mode=dict(type='str', choices=list(_gate.MODES), default='threshold'),
        compare=dict(type='dict', options=compare),
        record=dict(type='bool', default=True),
        fail_on_threshold=dict(type='bool', default=True),
        route_to_primary_on_fail=dict(type='bool', default=False),
        **CANARY_OBJECT_SPEC
    )


def _source_settings(params, spec):
    settings = dict(params.get('source') or {})
    settings.setdefault('type', 'prometheus')
    if settings['type'] == 'prometheus' and not settings.get('address'):
        settings['address'] = spec.get('metricsServer')
    return settings


def main():
    module = build_module(argspec())
    params = module.params
    if not _metrics.HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib('requests'), exception=_metrics.REQUESTS_IMPORT_ERROR)
    settings = dict(params.get('source') or {})
    if settings.get('type') == 'http' and not _http_source.HAS_JMESPATH:
        module.fail_json(msg=missing_required_lib('jmespath'), exception=_http_source.JMESPATH_IMPORT_ERROR)

    kube = kube_for(module)
    name, namespace = params['name'], params['namespace']
    canary, spec = read_canary(module, kube)
    analysis = spec.get('analysis') or {}

    try:
        settings = _source_settings(params, spec)
        compare = _gate.compare_settings(params.get('compare')) if params['mode'] == 'compare' else None
        metrics = _gate.merge_metrics(analysis.get('metrics'), params.get('metrics'),
                                      replace=params['metrics_merge'] == 'replace')
        prepared = _gate.prepare_metrics(metrics, {'name': name, 'namespace': namespace, 'spec': spec},
                                         source_type=settings['type'], mode=params['mode'], compare=compare)
        source = _metrics.make_source(settings)
        _gate.check_queries(prepared, source)
        gate = _gate.evaluate(prepared, source, mode=params['mode'], compare=compare)
    except (_gate.GateError, _metrics.SourceConfigError, JudgeError) as exc:
        module.fail_json(msg=str(exc), field=exc.field)

    now = _utcnow()
    decided_at = time.time()
    outcome = {}
    recorded = bool(params['record']) and not module.check_mode
    routed = False
    routed_at = None
    if recorded and params['fail_on_threshold'] and params['route_to_primary_on_fail'] and \
            _gate.record(canary.get('status') or {}, gate, analysis, now)[2]:
        # This gate ends the run: traffic first, then the record says so.
        try:
            _rollout.stop_canary_traffic(kube, name, namespace, canary, spec)
            routed, routed_at = True, time.time()
        except (KubeError, _rollout.RolloutError) as exc:
            outcome['route_error'] = str(exc)

    def apply(obj):
        before = obj.get('status') or {}
        status, failed_checks, reached, message = _gate.record(before, gate, analysis, now)
        if routed:
            _rollout.mark_rollback(status)
        outcome.update(before=before.get('failedChecks') or 0, failed_checks=failed_checks, reached=reached,
                       message=message, entry=status['gateHistory'][-1])
        obj['status'] = status
        return obj

    try:
        if recorded:
            _before, canary = kube.update_with_retry(_canary.API_VERSION, _canary.KIND, name, namespace, apply,
                                                     status=True, current=copy.deepcopy(canary))
        else:
            apply(dict(canary))
    except KubeError as exc:
        module.fail_json(msg='gate %s, but recording it in the Canary status failed: %s' % (gate['verdict'], exc),
                         field=exc.field, verdict=gate['verdict'], metrics=gate['metrics'])
    except ValueError as exc:
        module.fail_json(msg='gate %s, but its record is not valid: %s' % (gate['verdict'], exc))
    if recorded and outcome['reached'] and params['fail_on_threshold'] and params['route_to_primary_on_fail'] \
            and not routed and 'route_error' not in outcome:
        # The copy the check above judged from was stale: the write re-read and reached the threshold.
        try:
            _rollout.stop_canary_traffic(kube, name, namespace, canary, spec)
            routed, routed_at = True, time.time()
            _before, canary = kube.update_with_retry(_canary.API_VERSION, _canary.KIND, name, namespace,
                                                     lambda obj: obj.update(status=_rollout.mark_rollback(
                                                         obj.get('status') or {})),
                                                     status=True, current=copy.deepcopy(canary))
        except (KubeError, _rollout.RolloutError) as exc:
            outcome['route_error'] = str(exc)

    result = dict(
        changed=bool(params['record']),
        verdict=gate['verdict'],
        metrics=gate['metrics'],
        failed_checks=outcome['failed_checks'],
        threshold=int(analysis.get('threshold') or _canary.DEFAULT_THRESHOLD),
        threshold_reached=outcome['reached'],
        message=outcome['message'],
        recorded=recorded,
        routed_to_primary=routed,
        decided_at=decided_at,
        routed_at=routed_at,
        source_error=gate['source_error'],
        canary=canary,
        diff=dict(before={'failedChecks': outcome['before']},
                  after={'failedChecks': outcome['failed_checks'], 'gateHistory': [outcome['entry']]}),
    )
    if params['mode'] == 'compare':
        result['score'] = gate['score']

    broken = _gate.query_errors(gate)
    if broken:
        result.pop('diff')
        module.fail_json(msg='the metric source rejected the query of %s: %s'
                         % (', '.join(r['name'] for r in broken), '; '.join(r['message'] for r in broken)),
                         **result)
    if outcome['reached'] and params['fail_on_threshold']:
        result.pop('diff')
        message = outcome['message']
        if outcome.get('route_error'):
            message += '; moving the traffic to the primary failed: %s' % outcome['route_error']
        module.fail_json(msg=message, **result)
    exit_with(module, result)


def _utcnow():
    return _canary.parse_time(time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))


if __name__ == '__main__':
    main()
