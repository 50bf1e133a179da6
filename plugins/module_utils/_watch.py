# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watch: a sequential test that fails a step as soon as the canary is clearly worse.

While the role waits out a step's interval, the watch reads the canary's request counters every
few seconds and runs Wald's sequential probability ratio test (SPRT) on the proportion of failed
requests counted since the step began:

* ``request-success-rate`` with ``thresholdRange.min`` m: a failure is a request that failed; the
  acceptable failure rate is ``p0 = 1 - m/100``.
* ``request-duration`` with ``thresholdRange.max`` t (a P99): a failure is a request slower than
  t, counted from the histogram as all requests minus those in the smallest ``le`` bucket at or
  above t (a bucket above t hides some slow requests, which can only delay a rollback, never cause
  one); a P99 within t means at most ``p0 = 1%`` of requests above it.
* custom metrics with a ``success_query``/``total_query`` pair of counters and a minimum success
  rate in percent, judged like the built-in success rate.

H0 is ``p = p0``, H1 is ``p = p1 = p1_factor * p0``. After n requests with x failures the statistic
is the log likelihood ratio ``x ln(p1/p0) + (n - x) ln((1 - p1)/(1 - p0))``; at or above
``ln((1 - beta)/alpha)`` the canary is worse (roll back now), at or below ``ln(beta/(1 - alpha))``
it is acceptable for this step and no longer watched. By Wald's inequality a canary that meets its
threshold is rolled back with probability at most ``alpha/(1 - beta)`` per watched step, however
often it is polled (polls only see the statistic later, never earlier); a canary at p1 escapes the
watch with probability at most about ``beta`` and is still judged by the end-of-step gate.

The watch never decides on missing data or an unreachable source: those are the end-of-step
gate's no-data policy and outage handling. Pure apart from the source, clock and sleep it is
handed, so it is unit tested directly. Private to the collection: the API may change.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import math
import time

from collections.abc import Mapping

from ansible_collections.progressive.delivery.plugins.module_utils import _builtin_metrics as builtins
from ansible_collections.progressive.delivery.plugins.module_utils import _canary
from ansible_collections.progressive.delivery.plugins.module_utils import _gate
from ansible_collections.progressive.delivery.plugins.module_utils._metrics import MetricSourceError

WORSE, ACCEPTABLE, UNDECIDED = 'worse', 'acceptable', 'undecided'
DECISIONS = (WORSE, ACCEPTABLE, UNDECIDED)

DEFAULT_ALPHA = 0.001
DEFAULT_BETA = 0.05
DEFAULT_P1_FACTOR = 3.0
DEFAULT_WATCH_INTERVAL = 5.0
# The built-in request-duration is a P99: within the threshold means at most 1% of requests above it.
_DURATION_TAIL = 0.01
_LE_TOLERANCE = 1e-9


class WatchError(_gate.GateError):
    """Options that cannot be watched; ``field`` names the option, the message the fix."""


# --------------------------------------------------------------------------------------------
# the sequential test
# --------------------------------------------------------------------------------------------

def boundaries(alpha, beta):
    """Wald's (lower, upper) bounds of the log likelihood ratio for error rates alpha and beta."""
    for name, value in (('alpha', alpha), ('beta', beta)):
        if not 0 < value < 1:
            raise WatchError(name, '%s must be between 0 and 1 (exclusive), got %r' % (name, value))
    if alpha + beta >= 1:
        raise WatchError('beta', 'alpha + beta must be below 1, got %g + %g' % (alpha, beta))
    return math.log(beta / (1 - alpha)), math.log((1 - beta) / alpha)


def log_likelihood_ratio(failures, total, p0, p1):
    """ln of P(data | p1) / P(data | p0) for ``failures`` out of ``total`` Bernoulli trials.

    Counts may be fractional (they come from counters that are floats); p0 = 0 makes any failure
    infinitely unlikely under H0, so the ratio is infinite once one is seen.
    """
    failures = max(0.0, min(float(failures), float(total)))
    successes = float(total) - failures
    if p0 <= 0:
        return float('inf') if failures > 0 else successes * math.log(1 - p1)
    return failures * math.log(p1 / p0) + successes * math.log((1 - p1) / (1 - p0))


def unacceptable_rate(p0, p1_factor):
    """p1, the failure rate the watch must catch: p1_factor times p0, kept below 1.

    With p0 = 0 (a 100% success threshold) any failure already breaks the threshold; p1 is then a
    nominal 1% so that the statistic stays finite until the first failure.
    """
    if p1_factor <= 1:
        raise WatchError('p1_factor', 'p1_factor must be above 1 (p1 must be worse than p0), got %g' % p1_factor)
    if p0 <= 0:
        return 0.01
    return min(p0 * p1_factor, (1 + p0) / 2)


def sprt(failures, total, p0, p1, alpha, beta):
    """Wald's SPRT on the counts so far: the statistic, both bounds and the decision."""
    lower, upper = boundaries(alpha, beta)
    statistic = log_likelihood_ratio(failures, total, p0, p1)
    if statistic >= upper:
        decision = WORSE
    elif statistic <= lower:
        decision = ACCEPTABLE
    else:
        decision = UNDECIDED
    return {'statistic': statistic, 'lower': lower, 'upper': upper, 'decision': decision}


# --------------------------------------------------------------------------------------------
# what to watch
# --------------------------------------------------------------------------------------------

def plan(canary_metrics, watch_metrics, context, p1_factor=DEFAULT_P1_FACTOR):
    """The metrics the watch can test, and the ones it cannot (with why).

    ``canary_metrics`` are the Canary's ``analysis.metrics`` (camelCase); ``watch_metrics`` the
    task's custom counter pairs (``name``, ``success_query``, ``total_query``, ``min_success_rate``).
    ``context`` is the Canary's name, namespace and spec, for the query templates.
    Returns ``(watched, skipped)``; skipped entries are ``{'name', 'reason'}``.
    """
    spec = context.get('spec') or {}
    provider = spec.get('provider') or _canary.DEFAULT_PROVIDER
    values = _gate.template_values(context, '0s')
    by_name = {}
    for metric in canary_metrics or []:
        if isinstance(metric, Mapping) and metric.get('name'):
            by_name[metric['name']] = metric
    watched, skipped, custom = [], [], set()
    for index, metric in enumerate(watch_metrics or []):
        label = 'metrics[%d] (%s)' % (index, (metric or {}).get('name') or 'unnamed')
        if not isinstance(metric, Mapping) or not metric.get('name'):
            raise WatchError('metrics', '%s: a watched metric needs a name' % label)
        if not metric.get('success_query') or not metric.get('total_query'):
            raise WatchError('metrics', '%s: a watched metric needs success_query and total_query (counters of '
                                        'successful and of all requests)' % label)
        minimum = metric.get('min_success_rate')
        if minimum is None:
            minimum = ((by_name.get(metric['name']) or {}).get('thresholdRange') or {}).get('min')
        if minimum is None:
            raise WatchError('metrics', '%s: set min_success_rate (percent), or give the Canary a metric of the '
                                        'same name with thresholdRange.min' % label)
        variables = dict((by_name.get(metric['name']) or {}).get('templateVariables') or {})
        variables.update(metric.get('template_variables') or {})
        entry = _rate_entry(metric['name'], 'pair', float(minimum), p1_factor, label)
        entry['total_query'] = _gate.render(metric['total_query'], values, variables, label)
        entry['success_query'] = _gate.render(metric['success_query'], values, variables, label)
        watched.append(entry)
        custom.add(metric['name'])
    for index, metric in enumerate(canary_metrics or []):
        name = metric.get('name')
        label = 'analysis.metrics[%d] (%s)' % (index, name or 'unnamed')
        if name in custom:
            continue
        bounds = metric.get('thresholdRange') or {}
        if metric.get('query') or not builtins.is_builtin(name):
            skipped.append({'name': name, 'reason': 'a custom query gives no counters to watch; add a '
                                                    'success_query/total_query pair to watch it'})
            continue
        try:
            series = builtins.native_series(provider)
        except ValueError as error:
            skipped.append({'name': name, 'reason': str(error)})
            continue
        if name == builtins.REQUEST_SUCCESS_RATE:
            if bounds.get('min') is None:
                skipped.append({'name': name, 'reason': 'no thresholdRange.min to test against'})
                continue
            entry = _rate_entry(name, 'errors', float(bounds['min']), p1_factor, label)
            entry['total_query'] = _gate.render(series['requests'], values, {}, label)
            entry['success_query'] = _gate.render(series['successful'], values, {}, label)
        else:
            if bounds.get('max') is None:
                skipped.append({'name': name, 'reason': 'no thresholdRange.max to test against'})
                continue
            p0 = _DURATION_TAIL
            entry = {'name': name, 'kind': 'latency', 'threshold': float(bounds['max']), 'p0': p0,
                     'p1': unacceptable_rate(p0, p1_factor),
                     'buckets_query': _gate.render(series['buckets'], values, {}, label),
                     'le_threshold': float(bounds['max']) / series['bucket_unit_ms']}
        watched.append(entry)
    return watched, skipped


def _rate_entry(name, kind, minimum, p1_factor, label):
    if not 0 <= minimum <= 100:
        raise WatchError('metrics', '%s: the minimum success rate is a percentage (0-100), got %g' % (label, minimum))
    p0 = 1 - minimum / 100.0
    if p0 >= 1:
        raise WatchError('metrics', '%s: a minimum success rate of 0%% accepts every failure; nothing to watch'
                         % label)
    return {'name': name, 'kind': kind, 'threshold': minimum, 'p0': p0, 'p1': unacceptable_rate(p0, p1_factor)}


# --------------------------------------------------------------------------------------------
# counting since the step began
# --------------------------------------------------------------------------------------------

def _key(labels):
    return tuple(sorted(labels.items()))


def counter_increase(start, now):
    """The summed increase of counters from ``start`` to ``now`` (both ``{series key: value}``).

    Series new since the start count from zero; a value below its start is a counter reset (a
    restarted pod) and counts from zero again; series gone since the start have nothing to add.
    """
    increase = 0.0
    for key, value in now.items():
        before = start.get(key, 0.0)
        increase += value - before if value >= before else value
    return increase


def _snapshot(source, query, at):
    series = source.query_vector(query) if at is None else source.query_vector(query, at=at)
    return dict((_key(labels), value) for labels, value in series)


def _read(source, metric, at=None):
    """The counters of ``metric`` now (or at Unix time ``at``), as ``{part: {series key: value}}``."""
    if metric['kind'] == 'latency':
        return {'buckets': _snapshot(source, metric['buckets_query'], at)}
    return {'total': _snapshot(source, metric['total_query'], at),
            'success': _snapshot(source, metric['success_query'], at)}


def _parse_le(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def counts(metric, start, now):
    """``(failures, total, detail)`` of ``metric`` since ``start``, from two ``_read`` snapshots."""
    if metric['kind'] != 'latency':
        total = counter_increase(start['total'], now['total'])
        success = counter_increase(start['success'], now['success'])
        return max(0.0, total - success), total, {}
    by_le_now, by_le_start = {}, {}
    for snapshot, grouped in ((now['buckets'], by_le_now), (start['buckets'], by_le_start)):
        for key, value in snapshot.items():
            labels = dict(key)
            le = labels.pop('le', None)
            grouped.setdefault(le, {})[_key(labels)] = value
    increases = dict((le, counter_increase(by_le_start.get(le, {}), series)) for le, series in by_le_now.items())
    total = sum(value for le, value in increases.items() if (_parse_le(le) or 0) == float('inf'))
    candidates = sorted((_parse_le(le), le) for le in increases
                        if _parse_le(le) is not None and _parse_le(le) >= metric['le_threshold'] - _LE_TOLERANCE)
    if not candidates:
        return 0.0, total, {'bucket': None}
    bound, le = candidates[0]
    within = increases[le]
    detail = {'bucket': le if bound != float('inf') else '+Inf'}
    return max(0.0, total - within), total, detail


# --------------------------------------------------------------------------------------------
# the watch loop
# --------------------------------------------------------------------------------------------

def _metric_state(metric):
    state = {'name': metric['name'], 'kind': metric['kind'], 'threshold': metric['threshold'],
             'p0': metric['p0'], 'p1': metric['p1'], 'failures': 0.0, 'total': 0.0, 'statistic': 0.0,
             'lower': None, 'upper': None, 'decision': UNDECIDED, 'decided_after': None, 'error': None}
    for key in ('total_query', 'success_query', 'buckets_query'):
        if key in metric:
            state[key] = metric[key]
    return state


def watch(metrics, source, duration, watch_interval=DEFAULT_WATCH_INTERVAL, alpha=DEFAULT_ALPHA, beta=DEFAULT_BETA,
          since=None, clock=None, sleep=None, wall=None):
    """Watch ``metrics`` (from ``plan``) for ``duration`` seconds, polling every ``watch_interval``.

    Counts start at Unix time ``since`` when given (the moment the step changed the weight), else
    when the watch starts. With ``since`` the interval and the poll schedule run from that moment
    too: the seconds the task took to start count as watched time, and a poll that is already due
    is made at once, so a step lasts one interval after its weight change, not one after the watch
    began.

    Returns as soon as one metric is worse, else when the time is up. The result has ``decision``
    (worse or undecided: acceptable metrics leave the rest to the end-of-step gate), ``elapsed``,
    ``polls``, ``decided_after`` and per-metric states (counts, statistic, bounds, decision).
    """
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    wall = wall or time.time
    if watch_interval <= 0:
        raise WatchError('watch_interval', 'watch_interval must be above 0 seconds, got %g' % watch_interval)
    lower, upper = boundaries(alpha, beta)
    states = [_metric_state(metric) for metric in metrics]
    for state in states:
        state.update(lower=lower, upper=upper)
    began = clock()
    if since is not None:
        began -= max(0.0, min(float(duration), wall() - since))
    starts = [None] * len(metrics)
    polls = 0
    decided_after = None

    def take_start(index, at=None):
        try:
            starts[index] = _read(source, metrics[index], at)
            states[index]['error'] = None
        except MetricSourceError as error:
            # An outage is the end-of-step gate's to judge; the count starts once the source answers.
            states[index]['error'] = error.message

    for index in range(len(metrics)):
        take_start(index, since)
    while metrics:
        elapsed = clock() - began
        if elapsed >= duration:
            break
        # Polls fall on the schedule since + k * watch_interval; one already due is made now.
        sleep(max(0.0, min((polls + 1) * watch_interval - elapsed, duration - elapsed)))
        polls += 1
        elapsed = clock() - began
        for index, (metric, state) in enumerate(zip(metrics, states)):
            if state['decision'] != UNDECIDED:
                continue
            if starts[index] is None:
                take_start(index)
                continue
            try:
                now = _read(source, metric)
            except MetricSourceError as error:
                state['error'] = error.message
                continue
            failures, total, detail = counts(metric, starts[index], now)
            tested = sprt(failures, total, metric['p0'], metric['p1'], alpha, beta)
            state.update(failures=failures, total=total, statistic=tested['statistic'], error=None, **detail)
            if tested['decision'] != UNDECIDED:
                state.update(decision=tested['decision'], decided_after=round(elapsed, 3))
        if any(state['decision'] == WORSE for state in states):
            decided_after = round(elapsed, 3)
            break
        if all(state['decision'] != UNDECIDED for state in states):
            # Every metric is acceptable: nothing left to watch, the rest of the interval is waited out.
            remaining = duration - (clock() - began)
            if remaining > 0:
                sleep(remaining)
            break
    if not metrics and duration > clock() - began:
        sleep(duration - (clock() - began))
    decision = WORSE if decided_after is not None else UNDECIDED
    return {'decision': decision, 'elapsed': round(clock() - began, 3), 'polls': polls, 'decided_after': decided_after,
            'alpha': alpha, 'beta': beta, 'metrics': states}


# --------------------------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------------------------

def _json_number(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return round(value, 6) if isinstance(value, float) else value


def _metric_line(state):
    what = 'slower than %g ms' % state['threshold'] if state['kind'] == 'latency' else 'failed'
    line = '%s %s: %.6g of %.6g requests %s (p0 %.4g, p1 %.4g), log-likelihood ratio %.4g (bounds %.4g, %.4g)' % (
        state['name'], state['decision'].upper() if state['decision'] == WORSE else state['decision'],
        state['failures'], state['total'], what, state['p0'], state['p1'], state['statistic'],
        state['lower'], state['upper'])
    if state.get('error'):
        line += ' [source: %s]' % state['error']
    return line


def watch_message(result, skipped=None):
    lines = '; '.join(_metric_line(state) for state in result['metrics']) or 'no metric to watch'
    if result['decision'] == WORSE:
        head = 'watch: canary worse than its threshold after %.1fs, roll back now' % result['decided_after']
    else:
        head = 'watch: undecided after %.1fs, the end-of-step gate decides' % result['elapsed']
    tail = ''
    if skipped:
        tail = '; not watched: %s' % ', '.join('%s (%s)' % (item['name'], item['reason']) for item in skipped)
    return '%s: %s%s' % (head, lines, tail)


def history_entry(result, status, message, now):
    """A gateHistory item for a watch decision: verdict fail, the evidence under ``metrics``."""
    status = status or {}
    entry = {
        'time': _canary.format_time(now),
        'verdict': _gate.FAIL if result['decision'] == WORSE else _gate.INCONCLUSIVE,
        'failedChecks': int(status.get('failedChecks') or 0),
        'message': message,
        'metrics': [],
    }
    for key, field in (('runId', 'runId'), ('weight', 'canaryWeight')):
        if status.get(field) is not None:
            entry[key] = status[field]
    entry['iteration'] = int(status.get('iterations') or 0) + 1
    for state in result['metrics']:
        item = {'name': state['name'], 'verdict': _gate.FAIL if state['decision'] == WORSE else _gate.INCONCLUSIVE,
                'watch': state['decision'], 'failures': _json_number(state['failures']),
                'total': _json_number(state['total']), 'p0': state['p0'], 'p1': state['p1'],
                'statistic': _json_number(state['statistic']), 'lower': _json_number(state['lower']),
                'upper': _json_number(state['upper']), 'decidedAfter': state['decided_after']}
        if state['total'] > 0 and state['kind'] != 'latency':
            item['value'] = _json_number(100.0 * (1 - state['failures'] / state['total']))
        if state.get('bucket'):
            item['bucket'] = state['bucket']
        if state['kind'] == 'latency':
            item['max'] = state['threshold']
        else:
            item['min'] = state['threshold']
        entry['metrics'].append(item)
    return entry
