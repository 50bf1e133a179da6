# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of one run: the data (``build``), as JSON (``to_json``) and as one HTML page (``to_html``).

``build`` reads a Canary (spec and status, as the API returns it) and optional events the caller
recorded (weights set, hooks called, alerts sent, the decision), and returns plain data with a
stable schema (``SCHEMA_VERSION``; see docs/report.md). ``to_html`` draws that data as a
self-contained page: inline CSS and inline SVG, no script, no external asset, so it can be
attached to a ticket or an AWX job and read offline, printed, or in greyscale.

Everything that comes from the cluster or the caller is escaped before it reaches the page.
The output depends only on the input (no clock, no randomness, sorted JSON keys), so the same
run always gives the same bytes and the module can say ``changed: false``.

Pure: no Kubernetes access. Private to the collection (the leading underscore): its API may
change between minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import datetime
import json
import math
import re

from collections.abc import Mapping
from xml.sax.saxutils import escape

from ansible_collections.progressive.delivery.plugins.module_utils import _canary

SCHEMA_VERSION = 1
EVENT_KINDS = ('weight', 'gate', 'hook', 'alert', 'decision', 'promoted', 'rolled_back')
OUTCOMES = ('promoted', 'rolled_back', 'failed', 'in_progress', 'unknown')
OUTCOME_TEXT = {
    'promoted': 'Promoted',
    'rolled_back': 'Rolled back',
    'failed': 'Promotion failed',
    'in_progress': 'In progress',
    'unknown': 'Outcome unknown',
}
DECISION_TEXT = {
    'promoted': 'Promoted',
    'rolled_back': 'Rolled back',
    'failed': 'Promotion failed',
    'threshold_reached': 'Threshold reached',
    'decision': 'Decision',
}
VERDICTS = ('pass', 'fail', 'inconclusive', 'unknown')

# The built-ins have fixed units (see _builtin_metrics); other queries are the user's own.
_UNITS = {'request-success-rate': '%', 'request-duration': 'ms'}
# make_run_id writes "<revision[:8]>-<YYYYmmddHHMMSS>": the start time is in the id.
_RUN_ID_TIME = re.compile(r'^(.*)-(\d{14})$')
_FILE_UNSAFE = re.compile(r'[^A-Za-z0-9._-]+')
# canary_promote writes this when the primary would not become ready: traffic was left where it
# was, so calling it a rollback would tell the reader the users are safe when they may not be.
_PROMOTION_FAILED_PREFIX = 'promotion of revision'
_TERMINAL = ('promoted', 'rolled_back', 'failed')


class ReportError(ValueError):
    """Input that cannot be reported on. ``field`` names the option at fault, the message the fix."""

    def __init__(self, field, message):
        super(ReportError, self).__init__(message)
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------
# small conversions
# --------------------------------------------------------------------------------------------

def _moment(value, field):
    """Epoch seconds of an RFC 3339 string, a datetime or epoch seconds; ReportError naming field."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, float)) and not (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return float(value)
    if isinstance(value, datetime.datetime):
        return _canary.parse_time(value).timestamp()
    if isinstance(value, str):
        try:
            return _canary.parse_time(value.strip()).timestamp()
        except ValueError:
            pass
    raise ReportError(field, '%s must be an RFC 3339 time like "2026-01-31T12:00:00Z" or epoch seconds, got %r'
                      % (field, value))


def _time_text(seconds):
    return _canary.format_time(datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc))


def _number(value):
    """Float, or None for anything that is not a finite number (gate records keep NaN as "nan")."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if math.isnan(number) or math.isinf(number):
        return None
    return number


def _integer(value):
    number = _number(value)
    return None if number is None else int(round(number))


def _plain(number):
    """A float that is whole as an int, so the JSON says 20 rather than 20.0."""
    if number is None:
        return None
    return int(number) if float(number).is_integer() else number


def _fmt(value):
    """Short human form of a number: 4 significant digits, never an exponent for ordinary values."""
    if value is None:
        return '-'
    if abs(value) >= 1000:
        return '%.0f' % value
    text = '%.4g' % value
    if 'e' in text:
        text = '%.6f' % value
        text = text.rstrip('0').rstrip('.')
    return text


def _duration_text(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return '%dh %02dm' % (hours, minutes)
    if minutes:
        return '%dm %02ds' % (minutes, secs)
    return '%ds' % secs


def _offset_text(seconds):
    """'+m:ss' (or '+h:mm:ss') since the start of the run."""
    sign = '-' if seconds < 0 else '+'
    seconds = int(round(abs(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return '%s%d:%02d:%02d' % (sign, hours, minutes, secs)
    return '%s%d:%02d' % (sign, minutes, secs)


def _text(value):
    if value is None:
        return ''
    return value if isinstance(value, str) else str(value)


def _verdict(value):
    text = _text(value).strip().lower()
    return text if text in VERDICTS else 'unknown'


def _range_text(low, high, unit=''):
    parts = []
    if low is not None:
        parts.append('min %s%s' % (_fmt(low), unit))
    if high is not None:
        parts.append('max %s%s' % (_fmt(high), unit))
    return ', '.join(parts) or 'no threshold'


def file_stem(namespace, name, run_id):
    """``<namespace>-<name>-<run_id>`` with anything but letters, digits, '.', '_' and '-' replaced.

    The run id may be given by hand; it must never take the file outside ``dest``.
    """
    parts = [_FILE_UNSAFE.sub('_', _text(part)).strip('.') or '_' for part in (namespace, name, run_id)]
    return '-'.join(parts)


# --------------------------------------------------------------------------------------------
# gates and events
# --------------------------------------------------------------------------------------------

def _metric_items(raw):
    """(name, item) pairs of a gate record's metrics: metric_gate writes a list of {name, ...}; a
    mapping of name -> {value, ...} (or name -> value) is read too."""
    pairs = []
    if isinstance(raw, Mapping):
        for name, item in raw.items():
            if isinstance(item, Mapping):
                item = dict(item)
                item.setdefault('name', name)
            else:
                item = {'name': name, 'value': item}
            pairs.append(item)
    elif isinstance(raw, list):
        pairs = [dict(item) for item in raw if isinstance(item, Mapping)]
    return [(_text(item.get('name')), item) for item in pairs if item.get('name') not in (None, '')]


def _bounds(item):
    low, high = _number(item.get('min')), _number(item.get('max'))
    for key in ('range', 'thresholdRange', 'threshold_range'):
        nested = item.get(key)
        if isinstance(nested, Mapping):
            low = low if low is not None else _number(nested.get('min'))
            high = high if high is not None else _number(nested.get('max'))
    return low, high


def _gate_metrics(raw):
    metrics, score = [], None
    for name, item in _metric_items(raw):
        if name == '_score':
            score = _number(item.get('value'))
            continue
        if name.startswith('_'):
            continue
        value = _number(item.get('value'))
        low, high = _bounds(item)
        verdict = _verdict(item.get('verdict'))
        if verdict == 'unknown' and value is not None and (low is not None or high is not None):
            verdict = 'fail' if (low is not None and value < low) or (high is not None and value > high) else 'pass'
        point = {'name': name, 'value': value, 'verdict': verdict, 'min': low, 'max': high,
                 'dry_run': bool(item.get('dryRun') or item.get('dry_run')), 'error': None, 'baseline_value': None}
        error = item.get('error')
        if error:
            point['error'] = _text(error)
        elif value is None and item.get('value') is not None:
            point['error'] = 'value %s' % _text(item.get('value'))
        baseline = _number(item.get('baselineValue', item.get('baseline_value')))
        if baseline is not None:
            point['baseline_value'] = baseline
        metrics.append(point)
    return metrics, score


def _gate(entry, field, strict):
    """A gate record (gateHistory item or caller event) in one shape; None when unreadable and not strict."""
    try:
        moment = _moment(entry.get('time'), field + '.time')
    except ReportError:
        if strict:
            raise
        return None
    metrics, score = _gate_metrics(entry.get('metrics'))
    failed = entry.get('failedChecks', entry.get('failed_checks'))
    return {
        't': moment,
        'weight': _integer(entry.get('weight')),
        'iteration': _integer(entry.get('iteration')),
        'verdict': _verdict(entry.get('verdict')),
        'failed_checks': _integer(failed),
        'message': _text(entry.get('message')),
        'metrics': metrics,
        'score': score,
    }


def _json_safe(value):
    """A copy that json.dumps takes as is (the caller's events may hold anything Ansible passes)."""
    if isinstance(value, Mapping):
        return dict((_text(key), _json_safe(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if not (math.isnan(value) or math.isinf(value)) else _text(value)
    return _text(value)


def _events(events, run_id):
    """Caller events checked and sorted by time; events of other runs dropped."""
    if events is None:
        return []
    if not isinstance(events, list):
        raise ReportError('events', 'events must be a list of mappings with time and kind, got %r' % (events,))
    normalised = []
    for index, event in enumerate(events):
        field = 'events[%d]' % index
        if not isinstance(event, Mapping):
            raise ReportError('events', '%s must be a mapping with time and kind, got %r' % (field, event))
        kind = _text(event.get('kind'))
        if kind not in EVENT_KINDS:
            raise ReportError('events', '%s.kind must be one of %s, got "%s"' % (field, ', '.join(EVENT_KINDS), kind))
        other_run = event.get('run_id', event.get('runId'))
        if other_run not in (None, '') and _text(other_run) != run_id:
            continue
        try:
            moment = _moment(event.get('time'), field + '.time')
        except ReportError as error:
            raise ReportError('events', error.message)
        if kind == 'weight' and _integer(event.get('weight')) is None:
            raise ReportError('events', '%s: a weight event needs weight (0 to 100), got %r' % (field, event.get('weight')))
        detail = dict((_text(key), _json_safe(value)) for key, value in event.items()
                      if key not in ('time', 'kind', 'run_id', 'runId'))
        normalised.append({'t': moment, 'kind': kind, 'detail': detail, 'index': index, 'raw': event})
    normalised.sort(key=lambda item: (item['t'], item['index']))
    return normalised


def _event_reason(event):
    detail = event['detail']
    for key in ('reason', 'message', 'msg'):
        if detail.get(key):
            return _text(detail[key])
    return ''


# --------------------------------------------------------------------------------------------
# the report data
# --------------------------------------------------------------------------------------------

def build(canary, run_id=None, events=None, title=None):
    """The report data of one run of ``canary`` (see docs/report.md for the schema).

    ``run_id`` defaults to the Canary's current (or last) run. ``events`` are the caller's own
    records, each ``{time, kind, ...}`` with kind one of EVENT_KINDS; an event carrying a
    ``run_id`` of another run is left out. Raises ReportError naming the option at fault.
    """
    if not isinstance(canary, Mapping):
        raise ReportError('name', 'there is no Canary to report on')
    metadata = canary.get('metadata') or {}
    spec = canary.get('spec') or {}
    status = canary.get('status') or {}
    analysis = spec.get('analysis') or {}
    name, namespace = _text(metadata.get('name')), _text(metadata.get('namespace'))
    history = [entry for entry in status.get('gateHistory') or [] if isinstance(entry, Mapping)]
    current_run = _text(status.get('runId')) or None
    recorded_runs = []
    for entry in history:
        if entry.get('runId') and _text(entry['runId']) not in recorded_runs:
            recorded_runs.append(_text(entry['runId']))

    if run_id in (None, ''):
        run_id = current_run or (recorded_runs[-1] if recorded_runs else None)
    if not run_id:
        raise ReportError('run_id', 'Canary %s in namespace %s has no run to report on: status.runId is empty and '
                                    'gateHistory records no run; start one with canary_init' % (name, namespace))
    run_id = _text(run_id)
    is_current = run_id == current_run

    gates = []
    for index, entry in enumerate(history):
        if _text(entry.get('runId')) == run_id:
            gate = _gate(entry, 'status.gateHistory[%d]' % index, strict=False)
            if gate is not None:
                gates.append(gate)
    run_events = _events(events, run_id)
    # gateHistory keeps only the newest 50 gates: the caller's gate events fill in older ones.
    known = set((gate['t'], gate['weight']) for gate in gates)
    for event in run_events:
        if event['kind'] == 'gate':
            gate = _gate(dict(event['raw']), 'events[%d]' % event['index'], strict=True)
            if (gate['t'], gate['weight']) not in known:
                known.add((gate['t'], gate['weight']))
                gates.append(gate)
    gates.sort(key=lambda gate: gate['t'])

    if not is_current and not gates and not run_events:
        runs = ', '.join(([current_run] if current_run else []) + [r for r in recorded_runs if r != current_run])
        raise ReportError('run_id', 'run_id %s is not recorded on Canary %s in namespace %s: it is not the '
                                    'current run and gateHistory (the newest %d gates) holds nothing of it; runs on '
                                    'record: %s. Pass one of those, or leave run_id out for the latest run'
                          % (run_id, name, namespace, _canary.GATE_HISTORY_LIMIT, runs or 'none'))

    phase = _text(status.get('phase')) if is_current else None
    threshold = _integer(analysis.get('threshold')) or _canary.DEFAULT_THRESHOLD
    outcome, decision_time, decision_reason = _outcome(status, is_current, run_events)

    times = [gate['t'] for gate in gates] + [event['t'] for event in run_events]
    if decision_time is not None:
        times.append(decision_time)
    started = _run_start(run_id)
    if started is None and times:
        started = min(times)
    finished = decision_time if outcome in _TERMINAL else None

    decisions = _decisions(gates, run_events, status, is_current, outcome, decision_time, threshold)
    weights = _weights(gates, run_events, started, outcome, decision_time)
    metrics = _metrics(gates, analysis)

    if is_current and status.get('failedChecks') is not None:
        failed_checks = _integer(status.get('failedChecks')) or 0
    else:
        failed_checks = next((g['failed_checks'] for g in reversed(gates) if g['failed_checks'] is not None),
                             sum(1 for g in gates if g['verdict'] == 'fail'))

    revision = _text(status.get('lastAppliedSpec')) if is_current and status.get('lastAppliedSpec') else None
    if revision is None:
        matched = _RUN_ID_TIME.match(run_id)
        revision = matched.group(1) if matched else None
    app = _text((spec.get('targetRef') or {}).get('name')) or name

    data = {
        'schema_version': SCHEMA_VERSION,
        'run_id': run_id,
        'canary': {'name': name, 'namespace': namespace},
        'app': app,
        'namespace': namespace,
        'provider': _text(spec.get('provider')) or _canary.DEFAULT_PROVIDER,
        'strategy': _canary.strategy(spec),
        'revision': revision,
        'current_run': is_current,
        'phase': phase,
        'started': _time_text(started) if started is not None else None,
        'finished': _time_text(finished) if finished is not None else None,
        'duration_seconds': int(round(finished - started)) if finished is not None and started is not None else None,
        'outcome': outcome,
        'outcome_text': OUTCOME_TEXT[outcome],
        'reason': decision_reason,
        'analysis': {
            'interval': _text(analysis.get('interval')) or _canary.DEFAULT_INTERVAL,
            'threshold': threshold,
            'max_weight': _integer(analysis.get('maxWeight')),
            'step_weight': _integer(analysis.get('stepWeight')),
            'step_weights': [_integer(w) for w in analysis.get('stepWeights') or []],
            'iterations': _integer(analysis.get('iterations')),
        },
        'failed_checks': failed_checks,
        'peak_weight': max([point['weight'] for point in weights] or [0]),
        'weights': weights,
        'gates': [_gate_out(gate) for gate in gates],
        'metrics': metrics,
        'decisions': decisions,
        'events': [dict(event['detail'], time=_time_text(event['t']), kind=event['kind']) for event in run_events],
    }
    data['title'] = _text(title) if title else '%s release %s' % (app, revision or run_id)
    data['why'] = _why(data)
    data['summary'] = _summary(data)
    return data


def _run_start(run_id):
    matched = _RUN_ID_TIME.match(run_id)
    if not matched:
        return None
    try:
        moment = datetime.datetime.strptime(matched.group(2), '%Y%m%d%H%M%S')
    except ValueError:
        return None
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def _outcome(status, is_current, run_events):
    """(outcome, decision time, reason): the status decides for the current run, else the events."""
    phase = _text(status.get('phase'))
    message = _text(status.get('message'))
    finals = [event for event in run_events if event['kind'] in ('promoted', 'rolled_back')]
    if is_current and phase in (_canary.PHASE_SUCCEEDED, _canary.PHASE_FAILED):
        if phase == _canary.PHASE_SUCCEEDED:
            outcome = 'promoted'
        else:
            outcome = 'failed' if message.startswith(_PROMOTION_FAILED_PREFIX) else 'rolled_back'
        same = [event for event in finals if event['kind'] == outcome]
        reason = _event_reason(same[-1]) if same and _event_reason(same[-1]) else message
        moment = None
        if status.get('lastTransitionTime'):
            try:
                moment = _moment(status['lastTransitionTime'], 'status.lastTransitionTime')
            except ReportError:
                moment = None
        if moment is None and same:
            moment = same[-1]['t']
        return outcome, moment, reason
    if finals:
        return finals[-1]['kind'], finals[-1]['t'], _event_reason(finals[-1])
    if is_current and phase not in (_canary.PHASE_SUCCEEDED, _canary.PHASE_FAILED):
        return 'in_progress', None, message
    return 'unknown', None, ''


def _failing_at(gate, threshold_of=None):
    """'metric value outside range' for each counted failing metric of a gate."""
    parts = []
    for point in gate['metrics']:
        if point['verdict'] != 'fail' or point['dry_run']:
            continue
        unit = _UNITS.get(point['name'], '')
        if point['value'] is None:
            parts.append('%s had no value%s' % (point['name'], ' (%s)' % point['error'] if point['error'] else ''))
        else:
            parts.append('%s %s%s outside %s' % (point['name'], _fmt(point['value']), unit,
                                                 _range_text(point['min'], point['max'], unit)))
    return '; '.join(parts)


def _decisions(gates, run_events, status, is_current, outcome, decision_time, threshold):
    decisions = []
    for gate in gates:
        if gate['verdict'] == 'fail' and gate['failed_checks'] is not None and gate['failed_checks'] >= threshold:
            failing = _failing_at(gate)
            decisions.append({'t': gate['t'], 'kind': 'threshold_reached', 'source': 'gate',
                              'reason': 'failed checks %d reached the threshold of %d%s'
                                        % (gate['failed_checks'], threshold, ': ' + failing if failing else '')})
            break
    event_kinds = set()
    status_decides = is_current and outcome in _TERMINAL and decision_time is not None
    for event in run_events:
        if event['kind'] in ('decision', 'promoted', 'rolled_back'):
            event_kinds.add(event['kind'])
            # The status dates the outcome of the current run; one time for it on every chart.
            moment = decision_time if status_decides and event['kind'] == outcome else event['t']
            decisions.append({'t': moment, 'kind': event['kind'], 'source': 'event', 'reason': _event_reason(event)})
    if status_decides and outcome not in event_kinds:
        decisions.append({'t': decision_time, 'kind': outcome, 'source': 'status', 'reason': _text(status.get('message'))})
    decisions.sort(key=lambda item: item['t'])
    return [{'time': _time_text(item['t']), 'kind': item['kind'], 'source': item['source'], 'reason': item['reason']}
            for item in decisions]


def _weights(gates, run_events, started, outcome, decision_time):
    """The canary weight as a step series [{time, weight, source}] of changes, oldest first.

    Weight events are the truth when the caller gives them. Otherwise the weight of each gate is
    taken as set right after the gate before it (or at the start): the role sets the weight,
    waits an interval and then gates, so that is when the traffic moved.
    """
    points = []
    if started is not None:
        points.append((started, 0, 'start'))
    weight_events = [event for event in run_events if event['kind'] == 'weight']
    if weight_events:
        points.extend((event['t'], max(0, min(100, _integer(event['detail'].get('weight')))), 'event')
                      for event in weight_events)
    else:
        previous = started
        for gate in gates:
            if gate['weight'] is None:
                continue
            points.append((previous if previous is not None and previous <= gate['t'] else gate['t'],
                           max(0, min(100, gate['weight'])), 'gate'))
            previous = gate['t']
    # After a rollback the users are back on the primary: that drop is the point of the chart.
    # After a promotion the canary's 0 % means the primary runs the new version, so it is not drawn.
    if outcome == 'rolled_back' and decision_time is not None:
        points.append((decision_time, 0, 'decision'))
    ordered = sorted(enumerate(points), key=lambda item: (item[1][0], item[0]))
    series = []
    for _index, (moment, weight, source) in ordered:
        if series and series[-1]['t'] == moment:
            series.pop()
        if series and series[-1]['weight'] == weight:
            continue
        series.append({'t': moment, 'weight': weight, 'source': source})
    return [{'time': _time_text(p['t']), 'weight': p['weight'], 'source': p['source']} for p in series]


def _metrics(gates, analysis):
    spec_order = []
    spec_ranges = {}
    for metric in analysis.get('metrics') or []:
        if isinstance(metric, Mapping) and metric.get('name'):
            metric_name = _text(metric['name'])
            spec_order.append(metric_name)
            bounds = metric.get('thresholdRange') or metric.get('threshold_range') or {}
            if isinstance(bounds, Mapping):
                spec_ranges[metric_name] = (_number(bounds.get('min')), _number(bounds.get('max')))
    series = {}
    for gate in gates:
        for point in gate['metrics']:
            series.setdefault(point['name'], []).append((gate, point))
    names = [n for n in spec_order if n in series] + [n for n in series if n not in spec_order]
    metrics = []
    for position, metric_name in enumerate(names):
        points = series[metric_name]
        low, high = spec_ranges.get(metric_name, (None, None))
        for _gate_record, point in points:
            if point['min'] is not None or point['max'] is not None:
                low, high = point['min'], point['max']
        dry_run = all(point['dry_run'] for _gate_record, point in points)
        failed = sum(1 for _gate_record, point in points if point['verdict'] == 'fail' and not point['dry_run'])
        out_points = []
        for gate, point in points:
            item = {'time': _time_text(gate['t']), 'value': _plain(point['value']), 'verdict': point['verdict'],
                    'weight': gate['weight']}
            if point['error']:
                item['error'] = point['error']
            if point['baseline_value'] is not None:
                item['baseline_value'] = _plain(point['baseline_value'])
            if point['dry_run']:
                item['dry_run'] = True
            out_points.append(item)
        metrics.append({'name': metric_name, 'unit': _UNITS.get(metric_name, ''),
                        'threshold_range': {'min': _plain(low), 'max': _plain(high)},
                        'dry_run': dry_run, 'failing': failed > 0, 'failed_gates': failed, 'gates': len(points),
                        'points': out_points, '_position': position})
    # The metric that sank the run is the first thing the reader should find under the weight.
    metrics.sort(key=lambda m: (0 if m['failing'] else 1, -m['failed_gates'], m['_position']))
    for metric in metrics:
        del metric['_position']
    return metrics


def _gate_out(gate):
    out = {'time': _time_text(gate['t']), 'weight': gate['weight'], 'iteration': gate['iteration'],
           'verdict': gate['verdict'], 'failed_checks': gate['failed_checks'], 'message': gate['message']}
    if gate['score'] is not None:
        out['score'] = _plain(gate['score'])
    return out


# --------------------------------------------------------------------------------------------
# the words: why and summary
# --------------------------------------------------------------------------------------------

def _offset_of(data, time_text):
    if not data.get('started') or not time_text:
        return time_text or ''
    return _offset_text(_moment(time_text, 'time') - _moment(data['started'], 'started'))


def _metric_story(data, metric, limit=3):
    unit = metric['unit']
    low, high = metric['threshold_range']['min'], metric['threshold_range']['max']
    fails = [p for p in metric['points'] if p['verdict'] == 'fail' and not p.get('dry_run')]
    readings = []
    for point in fails[:limit]:
        if point['value'] is None:
            readings.append('no value at %s%s' % (_offset_of(data, point['time']),
                                                  ' (%s)' % point['error'] if point.get('error') else ''))
        else:
            readings.append('%s%s at %s' % (_fmt(point['value']), unit, _offset_of(data, point['time'])))
    if len(fails) > limit:
        readings.append('%d more' % (len(fails) - limit))
    valued = [p['value'] for p in fails if p['value'] is not None]
    if valued and low is not None and all(v < low for v in valued):
        side = 'below its minimum of %s%s' % (_fmt(low), unit)
    elif valued and high is not None and all(v > high for v in valued):
        side = 'above its maximum of %s%s' % (_fmt(high), unit)
    else:
        side = 'outside its threshold (%s)' % _range_text(low, high, unit)
    return '%s failed %d of %d gates: %s, %s.' % (metric['name'], metric['failed_gates'], metric['gates'],
                                                  ', '.join(readings), side)


def _why(data):
    gates = data['gates']
    failing = [m for m in data['metrics'] if m['failing']]
    failed_gates = sum(1 for g in gates if g['verdict'] == 'fail')
    outcome = data['outcome']
    threshold = data['analysis']['threshold']
    when = ''
    if data['finished'] and data['duration_seconds'] is not None:
        when = ', %s after the run started' % _duration_text(data['duration_seconds'])
    sentences = []
    if outcome == 'rolled_back':
        last_weight = next((g['weight'] for g in reversed(gates) if g['weight'] is not None), None)
        at = ' at %d%% canary weight' % last_weight if last_weight is not None else ''
        sentences.append('Rolled back%s%s; at most %d%% of the traffic reached the new version.'
                         % (at, when, data['peak_weight']))
        sentences.extend(_metric_story(data, metric) for metric in failing)
        reached = [d for d in data['decisions'] if d['kind'] == 'threshold_reached']
        if reached:
            sentences.append('Failed checks reached the threshold of %d at %s, so all traffic went back to the primary.'
                             % (threshold, _offset_of(data, reached[0]['time'])))
        elif not failing:
            sentences.append('No metric failed its threshold.')
        if data['reason']:
            sentences.append('Recorded reason: %s' % data['reason'].rstrip('.') + '.')
    elif outcome == 'promoted':
        if not gates:
            sentences.append('Promoted%s without any recorded gate.' % when)
        elif failed_gates == 0:
            sentences.append('Promoted%s: all %d gates passed, up to %d%% canary weight.'
                             % (when, len(gates), data['peak_weight']))
        else:
            sentences.append('Promoted%s: %d of %d gates failed, which stayed below the failed-check threshold of %d; '
                             'the canary reached %d%% weight.'
                             % (when, failed_gates, len(gates), threshold, data['peak_weight']))
            sentences.extend(_metric_story(data, metric) for metric in failing)
        sentences.append('Revision %s now runs on the primary.' % (data['revision'] or data['run_id']))
    elif outcome == 'failed':
        sentences.append('Promotion failed%s: %s' % (when, data['reason'] or 'no reason recorded'))
    elif outcome == 'in_progress':
        current = next((g['weight'] for g in reversed(gates) if g['weight'] is not None), None)
        sentences.append('The run is still in progress (phase %s)%s: %d gates so far, %d failed checks of a threshold '
                         'of %d.' % (data['phase'] or 'unknown',
                                     ' at %d%% canary weight' % current if current is not None else '',
                                     len(gates), data['failed_checks'], threshold))
        sentences.extend(_metric_story(data, metric) for metric in failing)
    else:
        sentences.append('No promotion or rollback is recorded for run %s: it is no longer the Canary\'s current run '
                         'and no decision event was passed in. %d gates are on record, %d of them failed.'
                         % (data['run_id'], len(gates), failed_gates))
        sentences.extend(_metric_story(data, metric) for metric in failing)
    return ' '.join(sentences)


def _summary(data):
    gates = data['gates']
    text = '%s/%s run %s: %s' % (data['namespace'], data['canary']['name'], data['run_id'], data['outcome_text'].lower())
    if data['outcome'] == 'rolled_back':
        last_weight = next((g['weight'] for g in reversed(gates) if g['weight'] is not None), None)
        if last_weight is not None:
            text += ' at %d%%' % last_weight
    elif data['outcome'] in ('promoted', 'in_progress', 'unknown'):
        text += ' (peak weight %d%%)' % data['peak_weight']
    text += ' after %d gate%s' % (len(gates), '' if len(gates) == 1 else 's')
    failing = [m for m in data['metrics'] if m['failing']]
    if failing:
        parts = []
        for metric in failing:
            low, high = metric['threshold_range']['min'], metric['threshold_range']['max']
            parts.append('%s failed %d of %d (%s)' % (metric['name'], metric['failed_gates'], metric['gates'],
                                                      _range_text(low, high, metric['unit'])))
        text += '; ' + '; '.join(parts)
    elif gates:
        text += '; every metric passed'
    return text


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------

def to_json(data):
    """The report data as JSON text: sorted keys, two-space indent, newline at the end."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, separators=(',', ': ')) + '\n'


# --------------------------------------------------------------------------------------------
# HTML and SVG
# --------------------------------------------------------------------------------------------

_ATTRIBUTE_ENTITIES = {'"': '&quot;', "'": '&#x27;'}
_WIDTH = 960
_LEFT, _RIGHT = 64, 28
_COLOURS = {'pass': '#15803d', 'fail': '#dc2626', 'inconclusive': '#b45309', 'unknown': '#6b7280'}
_DECISION_COLOURS = {'promoted': '#15803d', 'rolled_back': '#b91c1c', 'failed': '#b91c1c',
                     'threshold_reached': '#7f1d1d', 'decision': '#374151'}
_OUTCOME_COLOURS = {'promoted': '#166534', 'rolled_back': '#b91c1c', 'failed': '#b91c1c',
                    'in_progress': '#1d4ed8', 'unknown': '#4b5563'}
_OUTCOME_SYMBOLS = {'promoted': '&#10004;', 'rolled_back': '&#10008;', 'failed': '&#10008;',
                    'in_progress': '&#8635;', 'unknown': '?'}
_VERDICT_SYMBOLS = {'pass': '&#9679;', 'fail': '&#10005;', 'inconclusive': '&#9671;', 'unknown': '&#9671;'}
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

_CSS = '''
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;color:#111827;margin:24px auto;max-width:1000px;
line-height:1.45;padding:0 16px}
header{border-left:10px solid var(--outcome);padding:8px 16px;margin-bottom:16px;background:#f9fafb}
.outcome{font-size:28px;font-weight:700;color:var(--outcome);letter-spacing:.5px}
h1{font-size:20px;margin:4px 0}h2{font-size:17px;margin:20px 0 6px}
.facts{color:#374151;font-size:13px;margin:4px 0}.facts span{margin-right:14px;white-space:nowrap}
.why{font-size:15px;background:#fff;border:1px solid #d1d5db;padding:10px 14px}
.chart{border:1px solid #d1d5db;padding:4px 10px 8px;margin:12px 0}
.chart.failing{border:3px solid #dc2626}
.badge{display:inline-block;font-size:12px;font-weight:700;padding:1px 8px;border-radius:3px;margin-left:8px;
vertical-align:middle;color:#fff;background:#dc2626}.badge.ok{background:#15803d}.badge.dry{background:#6b7280}
.note{font-size:13px;color:#374151;margin:2px 0 4px}
svg{display:block;max-width:100%;height:auto}
table{border-collapse:collapse;font-size:13px;width:100%}th,td{border-bottom:1px solid #e5e7eb;text-align:left;
padding:3px 6px;vertical-align:top}th{background:#f3f4f6}tr.fail td{background:#fef2f2}
.verdict-fail{color:#dc2626;font-weight:700}.verdict-pass{color:#15803d}.verdict-inconclusive{color:#b45309}
footer{margin-top:24px;font-size:12px;color:#6b7280}
'''


def _detail_text(value):
    """An event field as the reader expects it: strings as they are, anything else as JSON (true, not True)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _esc(value):
    """Text and attribute-safe: everything from the cluster or the caller goes through here."""
    return escape(_text(value), _ATTRIBUTE_ENTITIES)


def _c(number):
    return ('%.1f' % number).replace('-0.0', '0.0')


class _Frame(object):
    """Maps time and value to SVG coordinates for one chart."""

    def __init__(self, t0, t1, low, high, height, top):
        self.t0, self.t1 = t0, t1
        self.low, self.high = low, high
        self.height = height
        self.left, self.right = _LEFT, _WIDTH - _RIGHT
        self.top, self.bottom = top, height - 42

    def x(self, moment):
        return self.left + (moment - self.t0) / (self.t1 - self.t0) * (self.right - self.left)

    def y(self, value):
        value = min(max(value, self.low), self.high)
        return self.bottom - (value - self.low) / (self.high - self.low) * (self.bottom - self.top)


def _time_domain(data):
    moments = []
    for key in ('started', 'finished'):
        if data.get(key):
            moments.append(_moment(data[key], key))
    for collection in (data['weights'], data['gates'], data['decisions'], data['events']):
        moments.extend(_moment(item['time'], 'time') for item in collection)
    if not moments:
        return 0.0, 60.0, 0.0, 0.0
    first, last = min(moments), max(moments)
    origin = _moment(data['started'], 'started') if data.get('started') else first
    span = max(last - first, 60.0)
    pad = span * 0.04
    return first - pad, max(last, first + 60.0) + pad, origin, last


def _time_axis(frame, origin):
    span = frame.t1 - frame.t0
    step = next((s for s in _TIME_STEPS if span / s <= 9), _TIME_STEPS[-1])
    parts = []
    tick = math.ceil((frame.t0 - origin) / step) * step
    while origin + tick <= frame.t1:
        x = frame.x(origin + tick)
        parts.append('<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#e5e7eb"/>' % (_c(x), frame.top, _c(x), frame.bottom))
        parts.append('<text x="%s" y="%d" text-anchor="middle" font-size="11" fill="#4b5563">%s</text>'
                     % (_c(x), frame.bottom + 15, _offset_text(tick)))
        tick += step
    parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#6b7280"/>'
                 % (frame.left, frame.bottom, frame.right, frame.bottom))
    parts.append('<text x="%d" y="%d" text-anchor="middle" font-size="11" fill="#4b5563">time since the run started '
                 '(m:ss; start %s)</text>' % ((frame.left + frame.right) // 2, frame.bottom + 32,
                                              _esc(_time_text(origin).replace('T', ' '))))
    return parts


def _nice_step(span, target=5):
    raw = span / float(target)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * magnitude >= raw:
            return multiple * magnitude
    return 10 * magnitude


def _value_domain(values):
    values = [v for v in values if v is not None]
    if not values:
        return 0.0, 1.0, 0.25
    low, high = min(values), max(values)
    if high - low < 1e-9:
        pad = max(abs(low) * 0.05, 1.0)
    else:
        pad = (high - low) * 0.1
    low, high = low - pad, high + pad
    step = _nice_step(high - low)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def _value_axis(frame, step, unit):
    parts = []
    tick = frame.low
    while tick <= frame.high + step * 1e-6:
        y = frame.y(tick)
        parts.append('<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#e5e7eb"/>' % (frame.left, _c(y), frame.right, _c(y)))
        parts.append('<text x="%d" y="%s" text-anchor="end" font-size="11" fill="#4b5563">%s%s</text>'
                     % (frame.left - 6, _c(y + 4), _fmt(round(tick, 9)), _esc(unit)))
        tick += step
    parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#6b7280"/>' % (frame.left, frame.top, frame.left,
                                                                               frame.bottom))
    return parts


def _marker(x, y, verdict, tip):
    """Gate marker, told apart by shape as well as colour: disc pass, ringed cross fail, hollow diamond otherwise."""
    title = '<title>%s</title>' % _esc(tip)
    if verdict == 'pass':
        return ('<circle class="gate gate-pass" cx="%s" cy="%s" r="5.5" fill="%s" stroke="#fff" stroke-width="1.5">%s'
                '</circle>' % (_c(x), _c(y), _COLOURS['pass'], title))
    if verdict == 'fail':
        return ('<g class="gate gate-fail">%s<circle cx="%s" cy="%s" r="8" fill="#fff" stroke="%s" stroke-width="2"/>'
                '<path d="M%s %sL%s %sM%s %sL%s %s" stroke="%s" stroke-width="2.6" stroke-linecap="round"/></g>'
                % (title, _c(x), _c(y), _COLOURS['fail'], _c(x - 4), _c(y - 4), _c(x + 4), _c(y + 4), _c(x - 4),
                   _c(y + 4), _c(x + 4), _c(y - 4), _COLOURS['fail']))
    return ('<path class="gate gate-%s" d="M%s %sL%s %sL%s %sL%s %sZ" fill="#fff" stroke="%s" stroke-width="2">%s'
            '</path>' % (verdict, _c(x), _c(y - 7), _c(x + 7), _c(y), _c(x), _c(y + 7), _c(x - 7), _c(y),
                         _COLOURS.get(verdict, _COLOURS['unknown']), title))


def _decision_lines(frame, data, labelled):
    parts = []
    middle = (frame.left + frame.right) / 2.0
    for index, decision in enumerate(data['decisions']):
        x = frame.x(_moment(decision['time'], 'time'))
        colour = _DECISION_COLOURS.get(decision['kind'], _DECISION_COLOURS['decision'])
        label = DECISION_TEXT.get(decision['kind'], decision['kind'])
        tip = '%s at %s: %s' % (label, _offset_of(data, decision['time']), decision['reason'] or 'no reason recorded')
        dash = '2 3' if decision['kind'] == 'threshold_reached' else '7 4'
        parts.append('<g class="decision decision-%s"><title>%s</title><line x1="%s" y1="%d" x2="%s" y2="%d" '
                     'stroke="%s" stroke-width="2" stroke-dasharray="%s"/>'
                     % (_esc(decision['kind']), _esc(tip), _c(x), frame.top - (6 if labelled else 0), _c(x),
                        frame.bottom, colour, dash))
        if labelled:
            anchor, shift = ('end', -5) if x > middle else ('start', 5)
            parts.append('<text x="%s" y="%d" text-anchor="%s" font-size="12" font-weight="700" fill="%s">%s</text>'
                         % (_c(x + shift), frame.top - 8 - 14 * (index % 2), anchor, colour, _esc(label)))
        parts.append('</g>')
    return parts


def _event_marks(frame, data):
    """Hooks (triangles) and alerts (squares) along the top edge of the weight chart."""
    parts = []
    for event in data['events']:
        if event['kind'] not in ('hook', 'alert'):
            continue
        x = frame.x(_moment(event['time'], 'time'))
        y = frame.top + 7
        details = ', '.join('%s=%s' % (key, _detail_text(event[key])) for key in sorted(event)
                            if key not in ('time', 'kind') and not isinstance(event[key], (dict, list)))
        tip = '%s at %s: %s' % (event['kind'], _offset_of(data, event['time']), details)
        if event['kind'] == 'hook':
            shape = '<path d="M%s %sL%s %sL%s %sZ" fill="#4b5563"/>' % (
                _c(x - 5), _c(y - 5), _c(x + 5), _c(y - 5), _c(x), _c(y + 4))
        else:
            shape = '<rect x="%s" y="%s" width="8" height="8" fill="#7c3aed"/>' % (_c(x - 4), _c(y - 4))
        parts.append('<g class="event event-%s"><title>%s</title>%s</g>' % (_esc(event['kind']), _esc(tip), shape))
    return parts


def _svg_open(height, label):
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
            'aria-label="%s" font-family="DejaVu Sans, Helvetica, Arial, sans-serif"><title>%s</title>'
            '<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>'
            % (_WIDTH, height, _WIDTH, height, _esc(label), _esc(label), _WIDTH, height))


def _weight_chart(data, t0, t1, origin, last):
    height = 260
    frame = _Frame(t0, t1, 0.0, 100.0, height, top=44)
    parts = [_svg_open(height, 'Canary weight over time')]
    parts.extend(_value_axis(frame, 25.0, '%'))
    parts.extend(_time_axis(frame, origin))
    middle = (frame.top + frame.bottom) // 2
    parts.append('<text x="14" y="%d" font-size="11" fill="#4b5563" transform="rotate(-90 14 %d)" text-anchor="middle">'
                 'share of traffic on the canary</text>' % (middle, middle))
    weights = data['weights']
    if weights:
        end = max(last, _moment(weights[-1]['time'], 'time'))
        coords = []
        previous = None
        for point in weights:
            x = frame.x(_moment(point['time'], 'time'))
            if previous is not None:
                coords.append((x, frame.y(previous)))
            coords.append((x, frame.y(point['weight'])))
            previous = point['weight']
        coords.append((frame.x(end), frame.y(previous)))
        points_text = ' '.join('%s,%s' % (_c(x), _c(y)) for x, y in coords)
        area = '%s,%s %s %s,%s' % (_c(coords[0][0]), _c(frame.bottom), points_text, _c(coords[-1][0]), _c(frame.bottom))
        parts.append('<polygon points="%s" fill="#dbeafe" stroke="none"/>' % area)
        parts.append('<polyline class="weight-line" data-weights="%s" points="%s" fill="none" stroke="#1d4ed8" '
                     'stroke-width="2.5" stroke-linejoin="round"/>'
                     % (' '.join(str(point['weight']) for point in weights), points_text))
        for index, point in enumerate(weights):
            if point['weight'] <= 0:
                continue
            x = frame.x(_moment(point['time'], 'time'))
            following = coords[-1][0] if index + 1 == len(weights) else frame.x(_moment(weights[index + 1]['time'], 'time'))
            if following - x >= 30 or point['weight'] == data['peak_weight']:
                parts.append('<text x="%s" y="%s" font-size="11" fill="#1d4ed8" font-weight="700">%d%%</text>'
                             % (_c(x + 3), _c(frame.y(point['weight']) - 5), point['weight']))
    else:
        parts.append('<text x="%d" y="%d" text-anchor="middle" font-size="13" fill="#6b7280">no weight recorded</text>'
                     % ((frame.left + frame.right) // 2, (frame.top + frame.bottom) // 2))
    parts.extend(_decision_lines(frame, data, labelled=True))
    parts.extend(_event_marks(frame, data))
    for gate in data['gates']:
        if gate['weight'] is None:
            continue
        tip = 'gate at %s, weight %d%%: %s (failed checks %s)%s' % (
            _offset_of(data, gate['time']), gate['weight'], gate['verdict'],
            '-' if gate['failed_checks'] is None else gate['failed_checks'],
            ': ' + gate['message'] if gate['message'] else '')
        parts.append(_marker(frame.x(_moment(gate['time'], 'time')), frame.y(gate['weight']), gate['verdict'], tip))
    parts.append('</svg>')
    return ''.join(parts)


def _metric_chart(data, metric, index, t0, t1, origin):
    height = 240
    low, high = metric['threshold_range']['min'], metric['threshold_range']['max']
    values = [p['value'] for p in metric['points']] + [p.get('baseline_value') for p in metric['points']] + [low, high]
    dom_low, dom_high, step = _value_domain(values)
    frame = _Frame(t0, t1, dom_low, dom_high, height, top=20)
    unit = metric['unit']
    parts = [_svg_open(height, '%s over time' % metric['name'])]
    pattern = 'hatch-%d' % index
    parts.append('<defs><pattern id="%s" width="8" height="8" patternUnits="userSpaceOnUse" '
                 'patternTransform="rotate(45)"><rect width="8" height="8" fill="#fef2f2"/>'
                 '<line x1="0" y1="0" x2="0" y2="8" stroke="#fecaca" stroke-width="3"/></pattern></defs>' % pattern)
    # The failing zone is hatched, so "where the line must not go" reads without colour.
    if low is not None and low > dom_low:
        parts.append('<rect class="fail-zone" x="%d" y="%s" width="%d" height="%s" fill="url(#%s)"/>'
                     % (frame.left, _c(frame.y(low)), frame.right - frame.left, _c(frame.bottom - frame.y(low)), pattern))
    if high is not None and high < dom_high:
        parts.append('<rect class="fail-zone" x="%d" y="%d" width="%d" height="%s" fill="url(#%s)"/>'
                     % (frame.left, frame.top, frame.right - frame.left, _c(frame.y(high) - frame.top), pattern))
    parts.extend(_value_axis(frame, step, unit))
    parts.extend(_time_axis(frame, origin))
    for bound, label in ((low, 'min'), (high, 'max')):
        if bound is None:
            continue
        y = frame.y(bound)
        parts.append('<line class="threshold threshold-%s" data-threshold="%s" x1="%d" y1="%s" x2="%d" y2="%s" '
                     'stroke="#991b1b" stroke-width="1.8" stroke-dasharray="8 4"/>'
                     % (label, _fmt(bound), frame.left, _c(y), frame.right, _c(y)))
        # Left end: the right end is where the decision lines and the last readings are.
        parts.append('<text x="%d" y="%s" font-size="12" font-weight="700" fill="#991b1b" '
                     'stroke="#fff" stroke-width="3" paint-order="stroke">%s %s%s</text>'
                     % (frame.left + 6, _c(y - 5 if label == 'min' else y + 14), label, _fmt(bound), _esc(unit)))
    parts.extend(_decision_lines(frame, data, labelled=False))
    for key, css, style in (('baseline_value', 'baseline-line', 'stroke="#6b7280" stroke-width="1.6" stroke-dasharray="4 3"'),
                            ('value', 'metric-line', 'stroke="#111827" stroke-width="2"')):
        run = []
        segments = []
        for point in metric['points']:
            if point.get(key) is None:
                if run:
                    segments.append(run)
                run = []
                continue
            run.append((frame.x(_moment(point['time'], 'time')), frame.y(point[key])))
        if run:
            segments.append(run)
        for segment in segments:
            parts.append('<polyline class="%s" data-metric="%s" points="%s" fill="none" %s/>'
                         % (css, _esc(metric['name']), ' '.join('%s,%s' % (_c(x), _c(y)) for x, y in segment), style))
    for point in metric['points']:
        x = frame.x(_moment(point['time'], 'time'))
        if point['value'] is None:
            y = frame.bottom - 8
            shown = 'no value' + (' (%s)' % point['error'] if point.get('error') else '')
        else:
            y = frame.y(point['value'])
            shown = '%s%s' % (_fmt(point['value']), unit)
        tip = '%s at %s (weight %s%%): %s, %s' % (
            metric['name'], _offset_of(data, point['time']), '-' if point['weight'] is None else point['weight'],
            shown, point['verdict'])
        parts.append(_marker(x, y, point['verdict'], tip))
        if point['verdict'] == 'fail' and not point.get('dry_run'):
            parts.append('<text x="%s" y="%s" font-size="11" font-weight="700" fill="%s" stroke="#fff" '
                         'stroke-width="3" paint-order="stroke">%s</text>'
                         % (_c(x + 10), _c(y + 4), _COLOURS['fail'],
                            _esc('no value' if point['value'] is None else shown)))
    parts.append('</svg>')
    return ''.join(parts)


def _legend(has_baseline):
    items = [
        '<circle cx="10" cy="12" r="5.5" fill="%s"/><text x="22" y="16">gate passed</text>' % _COLOURS['pass'],
        '<circle cx="130" cy="12" r="8" fill="#fff" stroke="%s" stroke-width="2"/><path d="M126 8L134 16M126 16L134 8" '
        'stroke="%s" stroke-width="2.6"/><text x="144" y="16">gate failed</text>' % (_COLOURS['fail'], _COLOURS['fail']),
        '<path d="M250 5L257 12L250 19L243 12Z" fill="#fff" stroke="%s" stroke-width="2"/>'
        '<text x="264" y="16">inconclusive / no data</text>' % _COLOURS['inconclusive'],
        '<rect x="432" y="4" width="22" height="16" fill="url(#hatch-legend)"/><text x="460" y="16">outside threshold'
        '</text>',
        '<line x1="584" y1="2" x2="584" y2="22" stroke="#b91c1c" stroke-width="2" stroke-dasharray="7 4"/>'
        '<text x="592" y="16">decision</text>',
        '<path d="M670 7L680 7L675 16Z" fill="#4b5563"/><text x="686" y="16">hook</text>'
        '<rect x="728" y="8" width="8" height="8" fill="#7c3aed"/><text x="742" y="16">alert</text>',
    ]
    if has_baseline:
        items.append('<line x1="790" y1="12" x2="816" y2="12" stroke="#6b7280" stroke-width="1.6" '
                     'stroke-dasharray="4 3"/><text x="822" y="16">primary</text>')
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="24" viewBox="0 0 %d 24" role="img" '
            'aria-label="legend" font-size="12" fill="#111827" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">'
            '<defs><pattern id="hatch-legend" width="8" height="8" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="8" height="8" fill="#fef2f2"/><line x1="0" y1="0" x2="0" y2="8" '
            'stroke="#fecaca" stroke-width="3"/></pattern></defs>%s</svg>' % (_WIDTH, _WIDTH, ''.join(items)))


def _facts(data):
    facts = [
        ('Canary', '%s/%s' % (data['namespace'], data['canary']['name'])),
        ('Provider', data['provider']),
        ('Strategy', data['strategy']),
        ('Revision', data['revision'] or '-'),
        ('Run', data['run_id']),
        ('Started', (data['started'] or '-').replace('T', ' ')),
    ]
    if data['finished']:
        facts.append(('Finished', '%s (%s)' % (data['finished'].replace('T', ' '),
                                               _duration_text(data['duration_seconds'] or 0))))
    elif data['phase']:
        facts.append(('Phase', data['phase']))
    facts.append(('Failed checks', '%d of threshold %d' % (data['failed_checks'], data['analysis']['threshold'])))
    return ' '.join('<span><b>%s:</b> %s</span>' % (_esc(key), _esc(value)) for key, value in facts)


def _metric_section(data, metric, index, t0, t1, origin):
    low, high = metric['threshold_range']['min'], metric['threshold_range']['max']
    unit = metric['unit']
    if metric['dry_run']:
        badge = '<span class="badge dry">DRY RUN, NOT COUNTED</span>'
    elif metric['failing']:
        badge = '<span class="badge">FAILED %d OF %d GATES</span>' % (metric['failed_gates'], metric['gates'])
    else:
        badge = '<span class="badge ok">PASSED</span>'
    if low is not None and high is not None:
        rule = 'passes between %s%s and %s%s' % (_fmt(low), unit, _fmt(high), unit)
    elif low is not None:
        rule = 'passes at %s%s or more' % (_fmt(low), unit)
    elif high is not None:
        rule = 'passes at %s%s or less' % (_fmt(high), unit)
    else:
        rule = 'no threshold range: the verdict came from the gate'
    css = 'chart failing' if metric['failing'] else 'chart'
    return ('<section class="%s" id="metric-%d"><h2>%s%s</h2><p class="note">%s</p>%s</section>'
            % (css, index, _esc(metric['name']), badge, _esc(rule), _metric_chart(data, metric, index, t0, t1, origin)))


def _gate_table(data):
    if not data['gates']:
        return '<p class="note">No gate result is recorded for this run.</p>'
    rows = []
    for number, gate in enumerate(data['gates'], 1):
        rows.append('<tr class="%s"><td>%d</td><td>%s</td><td>%s</td><td class="verdict-%s">%s %s</td><td>%s</td>'
                    '<td>%s</td></tr>'
                    % ('fail' if gate['verdict'] == 'fail' else '', number, _esc(_offset_of(data, gate['time'])),
                       '-' if gate['weight'] is None else '%d%%' % gate['weight'], _esc(gate['verdict']),
                       _VERDICT_SYMBOLS.get(gate['verdict'], '?'), _esc(gate['verdict']),
                       '-' if gate['failed_checks'] is None else gate['failed_checks'], _esc(gate['message'])))
    return ('<table><thead><tr><th>#</th><th>time</th><th>weight</th><th>verdict</th><th>failed checks</th>'
            '<th>message</th></tr></thead><tbody>%s</tbody></table>' % ''.join(rows))


def _timeline_table(data):
    entries = [(d['time'], DECISION_TEXT.get(d['kind'], d['kind']), d['reason'] or 'no reason recorded')
               for d in data['decisions']]
    for event in data['events']:
        if event['kind'] in ('hook', 'alert'):
            details = ', '.join('%s: %s' % (key, _detail_text(event[key])) for key in sorted(event)
                                if key not in ('time', 'kind'))
            entries.append((event['time'], event['kind'], details))
    if not entries:
        return ''
    entries.sort(key=lambda entry: entry[0])
    rows = ''.join('<tr><td>%s</td><td>%s</td><td>%s</td></tr>' % (_esc(_offset_of(data, when)), _esc(what), _esc(text))
                   for when, what, text in entries)
    return ('<h2>Decisions, hooks and alerts</h2><table><thead><tr><th>time</th><th>what</th><th>detail</th></tr>'
            '</thead><tbody>%s</tbody></table>' % rows)


def to_html(data):
    """One self-contained HTML page (inline CSS and SVG, no script) drawing the report data."""
    t0, t1, origin, last = _time_domain(data)
    colour = _OUTCOME_COLOURS.get(data['outcome'], _OUTCOME_COLOURS['unknown'])
    outcome_words = data['outcome_text'].upper()
    failing = [m for m in data['metrics'] if m['failing']]
    headline = outcome_words
    if failing and data['outcome'] in ('rolled_back', 'in_progress', 'unknown'):
        headline = '%s: %s failed' % (outcome_words, ', '.join(m['name'] for m in failing))
    has_baseline = any(p.get('baseline_value') is not None for m in data['metrics'] for p in m['points'])
    metric_sections = ''.join(_metric_section(data, metric, index, t0, t1, origin)
                              for index, metric in enumerate(data['metrics']))
    if not data['metrics']:
        metric_sections = '<p class="note">No metric was evaluated in this run.</p>'
    page = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        '<meta name="generator" content="progressive.delivery canary_report, schema %d">\n' % SCHEMA_VERSION,
        '<title>%s: %s</title>\n' % (_esc(data['outcome_text']), _esc(data['title'])),
        '<style>%s</style>\n</head>\n' % _CSS,
        '<body style="--outcome:%s">\n' % colour,
        '<header><div class="outcome">%s %s</div><h1>%s</h1><p class="facts">%s</p></header>\n'
        % (_OUTCOME_SYMBOLS[data['outcome']], _esc(headline), _esc(data['title']), _facts(data)),
        '<section><h2>Why</h2><p class="why" id="why">%s</p></section>\n' % _esc(data['why']),
        '<section class="chart" id="weight"><h2>Canary weight</h2><p class="note">Share of the traffic sent to the new '
        'version; each gate is marked at the weight it ran at.</p>%s</section>\n' % _weight_chart(data, t0, t1, origin, last),
        _legend(has_baseline), '\n', metric_sections, '\n',
        '<h2>Gates</h2>%s\n' % _gate_table(data),
        _timeline_table(data), '\n',
        '<footer>%s</footer>\n' % _esc(data['summary']),
        '</body>\n</html>\n',
    ]
    return ''.join(page)
