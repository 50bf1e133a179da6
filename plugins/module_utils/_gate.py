# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One gate: evaluate the analysis metrics of a Canary and decide pass, inconclusive or fail.

The pieces, in the order metric_gate uses them:

* ``merge_metrics`` -- the Canary's ``analysis.metrics`` (camelCase, as in the CRD) with the task's
  ``metrics`` (snake_case) laid over them by name; ``replace`` ignores the Canary's list.
* ``prepare_metrics`` -- validate each metric and render its query: built-ins come from
  ``_builtin_metrics``; templates get ``{{ name }}``, ``{{ namespace }}``, ``{{ target }}``,
  ``{{ service }}``, ``{{ ingress }}``, ``{{ interval }}`` and ``{{ variables.<key> }}``. A variable
  that is not defined is an error naming it, never an empty string in a query.
* ``evaluate`` -- run the queries against a metric source (``_metrics``):
  ``threshold`` mode compares each value with ``threshold_range`` min/max; ``compare`` mode runs the
  statistical judge (``_judge``) on canary and primary series. No data follows the metric's
  no-data policy (fail | inconclusive | pass). A source that is down or errors makes the metric
  fail, with the cause in the message: an outage must never look like a healthy canary.
  ``dry_run`` metrics are evaluated and reported but never counted.
* ``next_failed_checks`` / ``record`` -- the run's failed-check count (cumulative or consecutive,
  via ``_canary``) and the status update with a gateHistory entry.

Pure apart from the source it is handed: no Kubernetes access, so it is unit tested directly.
Private to the collection (the leading underscore): its API may change between minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import math
import re
import time

from collections.abc import Mapping

from ansible_collections.progressive.delivery.plugins.module_utils import _builtin_metrics as builtins
from ansible_collections.progressive.delivery.plugins.module_utils import _canary
from ansible_collections.progressive.delivery.plugins.module_utils import _judge
from ansible_collections.progressive.delivery.plugins.module_utils._metrics import (
    MetricSourceError,
    QueryRejected,
    SourceUnavailable,
    is_no_data,
)

MODES = ('threshold', 'compare')
VERDICTS = ('pass', 'inconclusive', 'fail')
PASS, INCONCLUSIVE, FAIL = VERDICTS

# CRD (camelCase) -> task (snake_case) names of a metric's fields.
_CANARY_METRIC_FIELDS = {
    'name': 'name', 'interval': 'interval', 'thresholdRange': 'threshold_range', 'query': 'query',
    'templateRef': 'template_ref', 'templateVariables': 'template_variables', 'noDataPolicy': 'no_data_policy',
}
METRIC_FIELDS = (
    'name', 'query', 'baseline_query', 'interval', 'threshold_range', 'no_data_policy', 'template_variables',
    'template_ref', 'dry_run', 'direction', 'allowed_increase', 'allowed_decrease', 'critical', 'group',
    'nan_strategy',
)

COMPARE_DEFAULTS = {
    'window': '10m',
    'step': '30s',
    'confidence': _judge.DEFAULT_CONFIDENCE,
    'tolerance': _judge.DEFAULT_TOLERANCE,
    'pass_score': _judge.DEFAULT_PASS_SCORE,
    'marginal_score': _judge.DEFAULT_MARGINAL_SCORE,
    'group_weights': None,
    'nan_strategy': 'remove',
    'outliers': 'keep',
    'outlier_factor': _judge.DEFAULT_OUTLIER_FACTOR,
}
# Prometheus refuses range queries of more than 11,000 points per series.
_MAX_POINTS = 11000

_PLACEHOLDER = re.compile(r'\{\{(.*?)\}\}', re.S)
_VARIABLE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z0-9_-]+))?\s*$')
_PROMETHEUS_DURATION = re.compile(r'^(?:[0-9]+(?:ms|s|m|h))+$')
TEMPLATE_VARIABLES = ('name', 'namespace', 'target', 'service', 'ingress', 'interval')


class GateError(ValueError):
    """Input that cannot be evaluated. ``field`` is the offending option, the message says the fix."""

    def __init__(self, field, message):
        super(GateError, self).__init__(message)
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------
# which metrics
# --------------------------------------------------------------------------------------------

def _from_canary(metric):
    converted = {}
    for key, value in (metric or {}).items():
        converted[_CANARY_METRIC_FIELDS.get(key, key)] = copy.deepcopy(value)
    return converted


def merge_metrics(canary_metrics, task_metrics=None, replace=False):
    """The metrics to evaluate: the Canary's, with the task's laid over them by name.

    A task metric whose name matches one of the Canary's overrides only the fields it sets
    (unset fields are None from the argument spec); other task metrics are added at the end.
    """
    merged = [] if replace else [_from_canary(m) for m in (canary_metrics or [])]
    by_name = dict((m.get('name'), m) for m in merged)
    for index, metric in enumerate(task_metrics or []):
        if not isinstance(metric, Mapping):
            raise GateError('metrics', 'metrics[%d] must be a mapping with at least a name, got %r' % (index, metric))
        given = dict((k, copy.deepcopy(v)) for k, v in metric.items() if v is not None)
        name = given.get('name')
        if name in by_name:
            by_name[name].update(given)
        else:
            merged.append(given)
            if name:
                by_name[name] = given
    return merged


def _label(index, metric):
    return 'metrics[%d] (%s)' % (index, metric.get('name') or 'unnamed')


def _number_or_none(value, field):
    if value is None:
        return None
    if isinstance(value, bool):
        raise GateError(field, '%s must be a number, got %r' % (field, value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GateError(field, '%s must be a number, got %r' % (field, value))
    if math.isnan(number):
        raise GateError(field, '%s must be a number, got NaN' % field)
    return number


def _duration(text, field):
    try:
        seconds = _canary.parse_duration(text)
    except ValueError as error:
        raise GateError(field, '%s: %s' % (field, error))
    if seconds <= 0:
        raise GateError(field, '%s must be longer than zero, got "%s"' % (field, text))
    return seconds


def prometheus_duration(text, seconds):
    """``text`` when PromQL accepts it as written, else whole milliseconds ("1.5h" -> "5400000ms")."""
    stripped = (text or '').strip()
    if _PROMETHEUS_DURATION.match(stripped):
        return stripped
    return '%dms' % int(round(seconds * 1000))


def _threshold_range(metric, label):
    bounds = metric.get('threshold_range')
    if bounds is None:
        return {'min': None, 'max': None}
    if not isinstance(bounds, Mapping):
        raise GateError(label + '.threshold_range', '%s: threshold_range must be a mapping with min and/or max, '
                                                    'got %r' % (label, bounds))
    unknown = sorted(set(bounds) - {'min', 'max'})
    if unknown:
        raise GateError(label + '.threshold_range', '%s: threshold_range only takes min and max, got %s'
                        % (label, ', '.join(unknown)))
    low = _number_or_none(bounds.get('min'), '%s: threshold_range.min' % label)
    high = _number_or_none(bounds.get('max'), '%s: threshold_range.max' % label)
    if low is not None and high is not None and low > high:
        raise GateError(label + '.threshold_range', '%s: threshold_range.min (%g) must not exceed max (%g)'
                        % (label, low, high))
    return {'min': low, 'max': high}


def _choice(metric, key, choices, default, label):
    value = metric.get(key)
    if value is None:
        return default
    if value not in choices:
        raise GateError('%s.%s' % (label, key), '%s: %s must be one of %s, got "%s"'
                        % (label, key, ', '.join(choices), value))
    return value


def prepare_metrics(metrics, context, source_type='prometheus', mode='threshold', compare=None):
    """Validate ``metrics`` (output of merge_metrics) and render their queries.

    ``context``: ``name``, ``namespace`` of the Canary and its validated ``spec``. Returns a list of
    dicts ready for ``evaluate``; raises GateError naming the metric and the fix.
    """
    if mode not in MODES:
        raise GateError('mode', 'mode must be one of %s, got "%s"' % (', '.join(MODES), mode))
    if not metrics:
        raise GateError('metrics', 'there are no metrics to evaluate: the Canary has no analysis.metrics and the '
                                   'task gives none; add one, e.g. metrics: [{name: request-success-rate, '
                                   'threshold_range: {min: 99}}]')
    spec = context.get('spec') or {}
    provider = spec.get('provider') or _canary.DEFAULT_PROVIDER
    prepared = []
    seen = set()
    for index, metric in enumerate(metrics):
        label = _label(index, metric)
        unknown = sorted(set(metric) - set(METRIC_FIELDS))
        if unknown:
            raise GateError('metrics', '%s: unknown field %s; metrics take %s' % (label, ', '.join(unknown),
                                                                                  ', '.join(METRIC_FIELDS)))
        name = metric.get('name')
        if not name or not isinstance(name, str):
            raise GateError('metrics', '%s: name is required' % label)
        if name in seen:
            raise GateError('metrics', '%s: the name "%s" is used twice; metric names must be unique' % (label, name))
        seen.add(name)
        if metric.get('template_ref') is not None:
            raise GateError(label + '.templateRef', '%s: templateRef (a Flagger MetricTemplate) is not read by '
                                                    'metric_gate; put the query inline in query' % label)
        interval_text = metric.get('interval') or _canary.DEFAULT_METRIC_INTERVAL
        interval = _duration(interval_text, '%s: interval' % label)
        entry = {
            'name': name,
            'interval': interval_text,
            'interval_seconds': interval,
            'range': _threshold_range(metric, label),
            'no_data_policy': _choice(metric, 'no_data_policy', _canary.NO_DATA_POLICIES,
                                      _canary.DEFAULT_NO_DATA_POLICY, label),
            'dry_run': bool(metric.get('dry_run')),
            'direction': _choice(metric, 'direction', _judge.DIRECTIONS,
                                 builtins.BUILTIN_DIRECTIONS.get(name, 'either'), label),
            'allowed_increase': _number_or_none(metric.get('allowed_increase'), label + ': allowed_increase'),
            'allowed_decrease': _number_or_none(metric.get('allowed_decrease'), label + ': allowed_decrease'),
            'critical': bool(metric.get('critical')),
            'group': metric.get('group') or name,
            'nan_strategy': _choice(metric, 'nan_strategy', _judge.NAN_STRATEGIES, None, label),
        }
        if entry['allowed_increase'] is None:
            entry['allowed_increase'] = 1.0
        if entry['allowed_decrease'] is None:
            entry['allowed_decrease'] = 1.0
        variables = metric.get('template_variables') or {}
        if not isinstance(variables, Mapping):
            raise GateError(label + '.template_variables', '%s: template_variables must map names to strings' % label)
        query, baseline = _query_templates(metric, name, provider, source_type, label)
        if mode == 'compare':
            rate_window = compare['step_text'] if compare else COMPARE_DEFAULTS['step']
            rate_seconds = compare['step'] if compare else _canary.parse_duration(COMPARE_DEFAULTS['step'])
        else:
            rate_window, rate_seconds = interval_text, interval
        values = template_values(context, prometheus_duration(rate_window, rate_seconds))
        entry['query'] = render(query, values, variables, label)
        if mode == 'compare':
            primary_values = dict(values)
            if baseline is None:
                # Same query, scoped to the primary: what the baseline of a Kayenta comparison is.
                primary_values['target'] = _canary.primary_name(values['target'])
                baseline = query
            entry['baseline_query'] = render(baseline, primary_values, variables, label)
        prepared.append(entry)
    return prepared


def check_queries(metrics, source):
    """GateError for the first prepared query the source can tell is malformed without asking it.

    Runs before ``evaluate``, so a typo in a query fails the task before anything is recorded
    (an outage would otherwise hide it, and a reachable source would reject it after the gate
    was written to the Canary's status).
    """
    check = getattr(source, 'check_query', None)
    if check is None:
        return
    for index, metric in enumerate(metrics):
        for key in ('query', 'baseline_query'):
            if metric.get(key) is None:
                continue
            try:
                check(metric[key])
            except QueryRejected as error:
                label = _label(index, metric)
                raise GateError('%s.%s' % (label, key), '%s: %s: %s; fix the %s' % (label, key, error.message, key))


def _query_templates(metric, name, provider, source_type, label):
    query = metric.get('query')
    baseline = metric.get('baseline_query')
    if query:
        return query, baseline
    if not builtins.is_builtin(name):
        raise GateError(label + '.query', '%s: needs a query; only %s are built in'
                        % (label, ' and '.join(builtins.BUILTIN_METRICS)))
    if source_type != 'prometheus':
        raise GateError(label + '.query', '%s: the built-in %s is PromQL and needs a prometheus source; give a '
                                          'query for the %s source' % (label, name, source_type))
    try:
        return (builtins.builtin_query(provider, name, 'canary'),
                baseline or builtins.builtin_query(provider, name, 'primary'))
    except ValueError as error:
        raise GateError(label, '%s: %s' % (label, error))


def template_values(context, interval):
    """The variables a query template may use, from the Canary (``context``) and the window."""
    spec = context.get('spec') or {}
    target = ((spec.get('targetRef') or {}).get('name')) or context.get('name')
    values = {
        'name': context.get('name'),
        'namespace': context.get('namespace'),
        'target': target,
        'service': (spec.get('service') or {}).get('name') or target,
        'interval': interval,
    }
    ingress = (spec.get('ingressRef') or {}).get('name')
    if ingress:
        values['ingress'] = ingress
    return values


def render(template, values, variables, label):
    """``template`` with every ``{{ variable }}`` substituted; GateError naming anything undefined."""
    if not isinstance(template, str):
        raise GateError(label + '.query', '%s: the query must be a string, got %r' % (label, template))

    def substitute(match):
        found = _VARIABLE.match(match.group(1))
        if not found:
            raise GateError(label + '.query', '%s: unsupported template expression "%s": only variables are '
                                              'substituted (%s, variables.<key>)'
                            % (label, match.group(0), ', '.join(TEMPLATE_VARIABLES)))
        head, key = found.groups()
        if head == 'variables':
            if key is None:
                raise GateError(label + '.query', '%s: "%s" needs a key, e.g. {{ variables.region }}'
                                % (label, match.group(0)))
            if key not in variables:
                defined = ', '.join(sorted(variables)) or 'none'
                raise GateError(label + '.template_variables', '%s: template variable variables.%s is not defined; '
                                                               'set it in templateVariables (template_variables in '
                                                               'the task); defined: %s' % (label, key, defined))
            return str(variables[key])
        if key is not None or head not in TEMPLATE_VARIABLES:
            raise GateError(label + '.query', '%s: unknown template variable "%s"; known: %s, variables.<key>'
                            % (label, match.group(1).strip(), ', '.join(TEMPLATE_VARIABLES)))
        if values.get(head) in (None, ''):
            hint = ' (the Canary has no spec.ingressRef)' if head == 'ingress' else ''
            raise GateError(label + '.query', '%s: template variable %s is not defined%s' % (label, head, hint))
        return str(values[head])

    return _PLACEHOLDER.sub(substitute, template)


def compare_settings(options):
    """Validated compare-mode settings, defaults filled in."""
    settings = dict(COMPARE_DEFAULTS)
    settings.update(dict((k, v) for k, v in (options or {}).items() if v is not None))
    unknown = sorted(set(settings) - set(COMPARE_DEFAULTS))
    if unknown:
        raise GateError('compare', 'compare: unknown setting %s; known: %s'
                        % (', '.join(unknown), ', '.join(sorted(COMPARE_DEFAULTS))))
    settings['window_text'] = settings['window']
    settings['step_text'] = settings['step']
    settings['window'] = _duration(settings['window'], 'compare.window')
    settings['step'] = _duration(settings['step'], 'compare.step')
    if settings['step'] > settings['window']:
        raise GateError('compare.step', 'compare.step (%s) must not exceed compare.window (%s)'
                        % (settings['step_text'], settings['window_text']))
    if settings['window'] / settings['step'] > _MAX_POINTS:
        raise GateError('compare.step', 'compare.window / compare.step gives more than %d points; use a longer step'
                        % _MAX_POINTS)
    confidence = _number_or_none(settings['confidence'], 'compare.confidence')
    if not 0 < confidence < 1:
        raise GateError('compare.confidence', 'compare.confidence must be between 0 and 1, e.g. 0.98; got %g'
                        % confidence)
    settings['confidence'] = confidence
    for key in ('tolerance', 'pass_score', 'marginal_score', 'outlier_factor'):
        settings[key] = _number_or_none(settings[key], 'compare.' + key)
        if settings[key] < 0:
            raise GateError('compare.' + key, 'compare.%s must be 0 or more, got %g' % (key, settings[key]))
    if not settings['marginal_score'] <= settings['pass_score'] <= 100:
        raise GateError('compare.pass_score', 'need compare.marginal_score (%g) <= compare.pass_score (%g) <= 100'
                        % (settings['marginal_score'], settings['pass_score']))
    for key, choices in (('nan_strategy', _judge.NAN_STRATEGIES), ('outliers', _judge.OUTLIER_STRATEGIES)):
        if settings[key] not in choices:
            raise GateError('compare.' + key, 'compare.%s must be one of %s, got "%s"'
                            % (key, ', '.join(choices), settings[key]))
    return settings


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------

def _json_number(value):
    # Kubernetes (JSON) has no NaN or Infinity; keep them readable instead of failing the write.
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return value


def _in_range(value, bounds):
    if bounds['min'] is not None and value < bounds['min']:
        return False
    if bounds['max'] is not None and value > bounds['max']:
        return False
    return True


def _range_text(bounds):
    parts = []
    if bounds['min'] is not None:
        parts.append('min %g' % bounds['min'])
    if bounds['max'] is not None:
        parts.append('max %g' % bounds['max'])
    return ', '.join(parts) or 'no range'


def _no_data_verdict(policy):
    return {'fail': FAIL, 'inconclusive': INCONCLUSIVE, 'pass': PASS}[policy]


def _error_kind(error):
    if isinstance(error, QueryRejected):
        return 'query'
    if isinstance(error, SourceUnavailable):
        return 'unavailable'
    return 'result'


def _base_result(metric):
    result = {
        'name': metric['name'],
        'query': metric['query'],
        'interval': metric['interval'],
        'range': dict(metric['range']),
        'no_data_policy': metric['no_data_policy'],
        'dry_run': metric['dry_run'],
        'value': None,
        'verdict': None,
        'error': None,
        'message': '',
    }
    if 'baseline_query' in metric:
        result['baseline_query'] = metric['baseline_query']
    return result


def _threshold_result(metric, source, outage):
    result = _base_result(metric)
    if outage is not None:
        # The outage message already names the source and its address.
        result.update(verdict=FAIL, error=_error_kind(outage), message='%s: %s' % (metric['name'], outage.message))
        return result
    try:
        value = source.query(metric['query'], window=metric['interval_seconds'])
    except MetricSourceError as error:
        result.update(verdict=FAIL, error=_error_kind(error),
                      message='%s: %s' % (metric['name'], error.message))
        return result
    if is_no_data(value):
        verdict = _no_data_verdict(metric['no_data_policy'])
        result.update(verdict=verdict, message='%s: no data (%s); no-data policy %s'
                      % (metric['name'], value.reason, metric['no_data_policy']))
        return result
    result['value'] = value
    if _in_range(value, metric['range']):
        result.update(verdict=PASS, message='%s: %.6g within %s' % (metric['name'], value, _range_text(metric['range'])))
    else:
        result.update(verdict=FAIL, message='%s: %.6g outside %s' % (metric['name'], value,
                                                                     _range_text(metric['range'])))
    return result


def _series(source, query, start, end, step):
    points = source.query_range(query, start, end, step)
    if is_no_data(points):
        return []
    return [value for _stamp, value in points]


def _compare_result(metric, source, outage, settings, now):
    result = _base_result(metric)
    nan_strategy = metric['nan_strategy'] or settings['nan_strategy']
    # The newest step may still be filling (scrapes land a little after their timestamp), and
    # canary and baseline must be read from the same settled data.
    end = now - settings['step']
    start = end - settings['window']
    try:
        if outage is not None:
            raise outage
        canary = _series(source, metric['query'], start, end, settings['step'])
        baseline = _series(source, metric['baseline_query'], start, end, settings['step'])
    except MetricSourceError as error:
        result.update(verdict=FAIL, error=_error_kind(error), classification='error',
                      message='%s: %s' % (metric['name'], error.message))
        return result
    judged = _judge.classify_metric(
        canary, baseline, direction=metric['direction'], confidence=settings['confidence'],
        tolerance=settings['tolerance'], allowed_increase=metric['allowed_increase'],
        allowed_decrease=metric['allowed_decrease'], nan_strategy=nan_strategy, outliers=settings['outliers'],
        outlier_factor=settings['outlier_factor'])
    classification = judged['classification']
    result.update(classification=classification, canary=judged['canary'], baseline=judged['baseline'],
                  ratio=judged.get('ratio'), value=judged['canary'].get('mean'),
                  baseline_value=judged['baseline'].get('mean'))
    for key in ('p_value', 'lower', 'upper', 'estimate'):
        if key in judged:
            result[key] = judged[key]
    if classification == _judge.NODATA:
        verdict = _no_data_verdict(metric['no_data_policy'])
        result.update(verdict=verdict, message='%s: %s; no-data policy %s' % (metric['name'], judged['reason'],
                                                                              metric['no_data_policy']))
    else:
        result.update(verdict=PASS if classification == _judge.PASS else FAIL,
                      message='%s: %s (%s)' % (metric['name'], classification, judged['reason']))
    return result


def _check_online(source):
    try:
        source.is_online()
    except MetricSourceError as error:
        return error
    return None


def evaluate(metrics, source, mode='threshold', compare=None, now=None):
    """Evaluate prepared ``metrics`` with ``source``; returns the gate result (see ``gate_summary``).

    The source is checked once first, so an outage is reported once with its cause instead of
    each metric waiting out its own retries.
    """
    outage = _check_online(source)
    if mode == 'compare':
        settings = compare or compare_settings(None)
        now = time.time() if now is None else now
        results = [_compare_result(metric, source, outage, settings, now) for metric in metrics]
        judged = _judge.score(
            [dict(name=r['name'], classification=r.get('classification'), group=m['group'], critical=m['critical'],
                  no_data_policy=m['no_data_policy'], counted=not m['dry_run'])
             for r, m in zip(results, metrics)],
            group_weights=settings['group_weights'], pass_score=settings['pass_score'],
            marginal_score=settings['marginal_score'])
        verdict, score, reason = judged['verdict'], judged['score'], judged['reason']
    else:
        results = [_threshold_result(metric, source, outage) for metric in metrics]
        verdict, score, reason = _threshold_verdict(results), None, None
    return {'mode': mode, 'verdict': verdict, 'metrics': results, 'score': score, 'score_reason': reason,
            'source_error': outage.message if outage is not None else None}


def _threshold_verdict(results):
    counted = [r['verdict'] for r in results if not r['dry_run']]
    if FAIL in counted:
        return FAIL
    if INCONCLUSIVE in counted:
        return INCONCLUSIVE
    return PASS


def query_errors(gate):
    """Counted metrics whose query the source rejected: configuration errors, not canary faults."""
    return [r for r in gate['metrics'] if r['error'] == 'query' and not r['dry_run']]


# --------------------------------------------------------------------------------------------
# failed checks, the message and the status record
# --------------------------------------------------------------------------------------------

def next_failed_checks(failed_checks, verdict, mode=_canary.DEFAULT_FAILED_CHECKS_MODE):
    """failedChecks after a gate: a fail counts, a pass forgives (consecutive mode only), and an
    inconclusive gate does neither -- no data is not evidence either way."""
    if verdict == INCONCLUSIVE:
        return int(failed_checks or 0)
    return _canary.next_failed_checks(failed_checks, verdict == PASS, mode)


def _metric_line(result):
    status = result['verdict'].upper() if result['verdict'] == FAIL else result['verdict']
    tag = ' [dry run, not counted]' if result['dry_run'] else ''
    if result.get('classification') is not None and result.get('baseline_query'):
        if result['value'] is None:
            value = 'no value'
        else:
            value = 'canary mean %.6g vs primary %s' % (
                result['value'], '%.6g' % result['baseline_value'] if result.get('baseline_value') is not None else '-')
        return '%s %s (%s) %s%s' % (result['name'], value, result['classification'], status, tag)
    if result['value'] is not None:
        return '%s %.6g (%s) %s%s' % (result['name'], result['value'], _range_text(result['range']), status, tag)
    reason = result['message'].split(': ', 1)[-1]
    return '%s no value (%s; %s) %s%s' % (result['name'], _range_text(result['range']), reason, status, tag)


def gate_message(gate, failed_checks, threshold, reached):
    """One line saying the verdict, every metric's value against its range, and the count."""
    lines = '; '.join(_metric_line(r) for r in gate['metrics'])
    score = ''
    if gate.get('score_reason'):
        score = ' (%s)' % gate['score_reason']
    outcome = 'threshold reached, roll back' if reached else 'below the threshold'
    return 'gate %s%s: %s; failed checks %d of threshold %d: %s' % (
        gate['verdict'], score, lines, failed_checks, threshold, outcome)


def history_entry(gate, status, failed_checks, message, now):
    """The gateHistory item for this gate (only fields the CRD keeps; detail under metrics)."""
    status = status or {}
    entry = {
        'time': _canary.format_time(now),
        'verdict': gate['verdict'],
        'failedChecks': int(failed_checks),
        'message': message,
        'metrics': [],
    }
    for key, field in (('runId', 'runId'), ('weight', 'canaryWeight')):
        if status.get(field) is not None:
            entry[key] = status[field]
    entry['iteration'] = int(status.get('iterations') or 0) + 1
    for result in gate['metrics']:
        item = {'name': result['name'], 'verdict': result['verdict'], 'value': _json_number(result['value'])}
        for bound in ('min', 'max'):
            if result['range'][bound] is not None:
                item[bound] = result['range'][bound]
        if result['dry_run']:
            item['dryRun'] = True
        if result['error']:
            item['error'] = result['message']
        if result.get('classification'):
            item['classification'] = result['classification']
            item['baselineValue'] = _json_number(result.get('baseline_value'))
        entry['metrics'].append(item)
    if gate.get('score') is not None:
        entry['metrics'].append({'name': '_score', 'value': gate['score']})
    return entry


def record(status, gate, analysis, now):
    """New status after this gate: failedChecks counted, a gateHistory entry appended.

    Returns ``(status, failed_checks, reached, message)``. Called inside a read-modify-write
    loop, so the count always builds on the status just read.
    """
    analysis = analysis or {}
    mode = analysis.get('failedChecksMode') or _canary.DEFAULT_FAILED_CHECKS_MODE
    failed_checks = next_failed_checks((status or {}).get('failedChecks'), gate['verdict'], mode)
    new_status = copy.deepcopy(dict(status or {}))
    new_status['failedChecks'] = failed_checks
    # One gate is one analysis iteration (as Flagger counts them); A/B and blue/green runs
    # resume from this count after an interruption.
    new_status['iterations'] = int(new_status.get('iterations') or 0) + 1
    reached = _canary.threshold_reached(new_status, analysis)
    threshold = int(analysis.get('threshold') or _canary.DEFAULT_THRESHOLD)
    message = gate_message(gate, failed_checks, threshold, reached)
    new_status = _canary.append_gate_result(new_status, history_entry(gate, status, failed_checks, message, now))
    # The run made progress: its lock's lease starts again (no extra write, this one is made anyway).
    _canary.renew_lock(new_status, now)
    return new_status, failed_checks, reached, message
