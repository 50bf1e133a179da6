# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run report: its JSON data from a Canary, the HTML page and its SVG charts, escaping, stability."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import json
import re

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _report
from ansible_collections.progressive.delivery.plugins.module_utils._report import ReportError

RUN = '1a2b3c4d-20260131120000'
OLD_RUN = '99ffee00-20260130090000'


def _metric(name, value, verdict, **bounds):
    item = {'name': name, 'value': value, 'verdict': verdict}
    item.update(bounds)
    return item


def _entry(minute, weight, verdict, failed_checks, rate, duration, run=RUN):
    return {
        'time': '2026-01-31T12:%02d:00Z' % minute,
        'runId': run,
        'weight': weight,
        'iteration': 0,
        'verdict': verdict,
        'failedChecks': failed_checks,
        'message': 'gate %s' % verdict,
        'metrics': [
            _metric('request-success-rate', rate, 'pass' if rate >= 99 else 'fail', min=99),
            _metric('request-duration', duration, 'pass' if duration <= 500 else 'fail', max=500),
        ],
    }


def failed_canary():
    """A run that walked 10, 20, 30 % and was rolled back when the success rate fell to ~80 %."""
    return {
        'apiVersion': 'progressive.delivery/v1alpha1',
        'kind': 'Canary',
        'metadata': {'name': 'podinfo', 'namespace': 'shop'},
        'spec': {
            'provider': 'istio',
            'targetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'podinfo'},
            'service': {'port': 9898},
            'analysis': {
                'interval': '1m', 'threshold': 2, 'stepWeight': 10, 'maxWeight': 50,
                'metrics': [
                    {'name': 'request-success-rate', 'thresholdRange': {'min': 99}, 'interval': '1m'},
                    {'name': 'request-duration', 'thresholdRange': {'max': 500}, 'interval': '1m'},
                ],
            },
        },
        'status': {
            'phase': 'Failed',
            'runId': RUN,
            'canaryWeight': 0,
            'primaryWeight': 100,
            'failedChecks': 2,
            'lastAppliedSpec': '1a2b3c4d5e6f7a8b',
            'lastPromotedSpec': '99ffee0011223344',
            'lastTransitionTime': '2026-01-31T12:04:05Z',
            'message': 'run %s rolled back: gate fail' % RUN,
            'gateHistory': [
                _entry(0, 50, 'pass', 0, 100.0, 80, run=OLD_RUN),
                _entry(1, 10, 'pass', 0, 99.8, 120),
                _entry(2, 20, 'pass', 0, 99.6, 140),
                _entry(3, 30, 'fail', 1, 81.2, 180),
                _entry(4, 30, 'fail', 2, 79.5, 190),
            ],
        },
    }


def promoted_canary():
    canary = failed_canary()
    status = canary['status']
    status['phase'] = 'Succeeded'
    status['failedChecks'] = 0
    status['message'] = 'revision 1a2b3c4d5e6f7a8b promoted'
    status['gateHistory'] = [_entry(minute, minute * 10, 'pass', 0, 99.9, 100) for minute in range(1, 6)]
    status['lastTransitionTime'] = '2026-01-31T12:05:30Z'
    return canary


def _weight_polyline(html):
    found = re.search(r'<polyline class="weight-line" data-weights="([^"]*)" points="([^"]*)"', html)
    assert found, 'no weight polyline in the page'
    points = [tuple(float(c) for c in pair.split(',')) for pair in found.group(2).split()]
    return [int(w) for w in found.group(1).split()], points


def _weight_of_y(y):
    """Invert the weight chart's y scale (0 % at the bottom, 100 % at the top of the plot)."""
    frame = _report._Frame(0.0, 1.0, 0.0, 100.0, 260, top=44)
    return round((frame.bottom - y) / (frame.bottom - frame.top) * 100)


# --------------------------------------------------------------------------------------------
# the JSON data
# --------------------------------------------------------------------------------------------

def test_failed_run_schema():
    data = _report.build(failed_canary())
    assert data['schema_version'] == 1
    assert set(data) == {
        'schema_version', 'run_id', 'canary', 'app', 'namespace', 'provider', 'strategy', 'revision', 'current_run',
        'phase', 'started', 'finished', 'duration_seconds', 'outcome', 'outcome_text', 'reason', 'analysis',
        'failed_checks', 'peak_weight', 'weights', 'gates', 'metrics', 'decisions', 'events', 'title', 'why',
        'summary',
    }
    assert data['run_id'] == RUN
    assert data['canary'] == {'name': 'podinfo', 'namespace': 'shop'}
    assert (data['app'], data['namespace'], data['provider'], data['strategy']) == ('podinfo', 'shop', 'istio', 'canary')
    assert data['revision'] == '1a2b3c4d5e6f7a8b'
    assert data['current_run'] is True
    assert data['phase'] == 'Failed'
    assert data['started'] == '2026-01-31T12:00:00Z'
    assert data['finished'] == '2026-01-31T12:04:05Z'
    assert data['duration_seconds'] == 245
    assert data['outcome'] == 'rolled_back'
    assert data['outcome_text'] == 'Rolled back'
    assert data['failed_checks'] == 2
    assert data['peak_weight'] == 30
    assert data['analysis'] == {'interval': '1m', 'threshold': 2, 'max_weight': 50, 'step_weight': 10,
                                'step_weights': [], 'iterations': None}
    # Each weight is taken as set right after the gate before it; the rollback takes it back to 0.
    assert data['weights'] == [
        {'time': '2026-01-31T12:00:00Z', 'weight': 10, 'source': 'gate'},
        {'time': '2026-01-31T12:01:00Z', 'weight': 20, 'source': 'gate'},
        {'time': '2026-01-31T12:02:00Z', 'weight': 30, 'source': 'gate'},
        {'time': '2026-01-31T12:04:05Z', 'weight': 0, 'source': 'decision'},
    ]
    assert [g['verdict'] for g in data['gates']] == ['pass', 'pass', 'fail', 'fail']
    assert data['gates'][-1] == {'time': '2026-01-31T12:04:00Z', 'weight': 30, 'iteration': 0, 'verdict': 'fail',
                                 'failed_checks': 2, 'message': 'gate fail'}


def test_failed_run_metrics_and_decisions():
    data = _report.build(failed_canary())
    rate, duration = data['metrics']
    assert rate['name'] == 'request-success-rate'
    assert rate['unit'] == '%'
    assert rate['threshold_range'] == {'min': 99, 'max': None}
    assert rate['failing'] is True
    assert (rate['failed_gates'], rate['gates']) == (2, 4)
    assert [(p['time'][11:16], p['value'], p['verdict']) for p in rate['points']] == [
        ('12:01', 99.8, 'pass'), ('12:02', 99.6, 'pass'), ('12:03', 81.2, 'fail'), ('12:04', 79.5, 'fail')]
    assert rate['points'][2]['weight'] == 30
    assert duration['failing'] is False
    assert duration['threshold_range'] == {'min': None, 'max': 500}
    assert [d['kind'] for d in data['decisions']] == ['threshold_reached', 'rolled_back']
    reached, rolled_back = data['decisions']
    assert reached['time'] == '2026-01-31T12:04:00Z'
    assert 'failed checks 2 reached the threshold of 2' in reached['reason']
    assert 'request-success-rate 79.5% outside min 99%' in reached['reason']
    assert rolled_back == {'time': '2026-01-31T12:04:05Z', 'kind': 'rolled_back', 'source': 'status',
                           'reason': 'run %s rolled back: gate fail' % RUN}
    assert data['why'].startswith('Rolled back at 30% canary weight, 4m 05s after the run started')
    assert 'request-success-rate failed 2 of 4 gates: 81.2% at +3:00, 79.5% at +4:00, below its minimum of 99%' \
        in data['why']
    assert 'threshold of 2 at +4:00' in data['why']
    assert data['summary'] == ('shop/podinfo run %s: rolled back at 30%% after 4 gates; request-success-rate failed '
                               '2 of 4 (min 99%%)' % RUN)


def test_failing_metric_comes_first_whatever_the_spec_order():
    canary = failed_canary()
    canary['spec']['analysis']['metrics'].reverse()
    data = _report.build(canary)
    assert [m['name'] for m in data['metrics']] == ['request-success-rate', 'request-duration']


def test_older_run_is_filtered_by_run_id():
    data = _report.build(failed_canary(), run_id=OLD_RUN)
    assert data['run_id'] == OLD_RUN
    assert data['current_run'] is False
    assert data['phase'] is None
    assert len(data['gates']) == 1 and data['gates'][0]['weight'] == 50
    assert data['outcome'] == 'unknown'
    assert data['revision'] == '99ffee00'
    assert data['started'] == '2026-01-30T09:00:00Z'
    assert 'no longer the Canary\'s current run' in data['why']


def test_unknown_run_names_the_runs_on_record():
    with pytest.raises(ReportError) as caught:
        _report.build(failed_canary(), run_id='nope')
    assert caught.value.field == 'run_id'
    assert RUN in caught.value.message and OLD_RUN in caught.value.message


def test_no_run_yet():
    canary = failed_canary()
    canary['status'] = {'phase': 'Initialized'}
    with pytest.raises(ReportError, match='no run to report on'):
        _report.build(canary)


def test_promoted_run():
    data = _report.build(promoted_canary())
    assert data['outcome'] == 'promoted'
    assert data['peak_weight'] == 50
    # After a promotion the canary's 0 % is the primary running the new version: not drawn as a drop.
    assert data['weights'][-1]['weight'] == 50
    assert [d['kind'] for d in data['decisions']] == ['promoted']
    assert data['why'].startswith('Promoted, 5m 30s after the run started: all 5 gates passed, up to 50% canary weight.')
    assert data['summary'].endswith('promoted (peak weight 50%) after 5 gates; every metric passed')


def test_in_progress_run():
    canary = failed_canary()
    canary['status'].update(phase='Progressing', failedChecks=1, message='')
    canary['status']['gateHistory'] = canary['status']['gateHistory'][:4]
    data = _report.build(canary)
    assert data['outcome'] == 'in_progress'
    assert data['finished'] is None
    assert data['why'].startswith('The run is still in progress (phase Progressing) at 30% canary weight: 3 gates so '
                                  'far, 1 failed checks of a threshold of 2.')
    assert [d['kind'] for d in data['decisions']] == []


def test_promotion_failure_is_not_called_a_rollback():
    canary = failed_canary()
    canary['status']['message'] = ('promotion of revision 1a2b3c4d5e6f7a8b failed: primary not ready; traffic left as '
                                   'it was')
    data = _report.build(canary)
    assert data['outcome'] == 'failed'
    assert data['why'].startswith('Promotion failed')
    assert data['weights'][-1]['weight'] == 30


def test_events_weights_hooks_and_decision():
    canary = failed_canary()
    events = [
        {'time': '2026-01-31T12:00:05Z', 'kind': 'weight', 'weight': 10},
        {'time': '2026-01-31T12:01:05Z', 'kind': 'weight', 'weight': 20},
        {'time': '2026-01-31T12:02:05Z', 'kind': 'weight', 'weight': 30},
        {'time': 1769860800 + 30, 'kind': 'hook', 'name': 'load-test', 'type': 'rollout', 'ok': True},
        {'time': '2026-01-31T12:04:02+00:00', 'kind': 'rolled_back', 'reason': 'request-success-rate below 99'},
        {'time': '2026-01-31T12:04:03Z', 'kind': 'alert', 'provider': 'slack', 'severity': 'error'},
        {'time': '2026-01-31T12:00:00Z', 'kind': 'weight', 'weight': 90, 'run_id': OLD_RUN},
    ]
    data = _report.build(canary, events=events)
    assert [(w['time'][11:19], w['weight'], w['source']) for w in data['weights']] == [
        ('12:00:00', 0, 'start'), ('12:00:05', 10, 'event'), ('12:01:05', 20, 'event'), ('12:02:05', 30, 'event'),
        ('12:04:05', 0, 'decision')]
    assert [e['kind'] for e in data['events']] == ['weight', 'hook', 'weight', 'weight', 'rolled_back', 'alert']
    assert data['events'][1] == {'time': '2026-01-31T12:00:30Z', 'kind': 'hook', 'name': 'load-test',
                                 'type': 'rollout', 'ok': True}
    # The event's reason is kept; the status still dates the decision, on the charts too.
    assert data['reason'] == 'request-success-rate below 99'
    assert [(d['kind'], d['source'], d['time'][11:19]) for d in data['decisions']] == [
        ('threshold_reached', 'gate', '12:04:00'), ('rolled_back', 'event', '12:04:05')]
    html = _report.to_html(data)
    assert 'class="event event-hook"' in html and 'class="event event-alert"' in html
    assert 'load-test' in html


def test_gate_events_fill_in_history_that_was_trimmed():
    canary = failed_canary()
    trimmed = canary['status']['gateHistory'][2:]
    canary['status']['gateHistory'] = trimmed
    first_gate = dict(_entry(1, 10, 'pass', 0, 99.8, 120), kind='gate')
    duplicate = dict(trimmed[0], kind='gate')
    data = _report.build(canary, events=[first_gate, duplicate])
    assert [g['weight'] for g in data['gates']] == [10, 20, 30, 30]


@pytest.mark.parametrize('events, message', [
    ('not a list', 'events must be a list'),
    (['x'], r'events\[0\] must be a mapping'),
    ([{'time': '2026-01-31T12:00:00Z', 'kind': 'explosion'}], r'events\[0\]\.kind must be one of weight, gate'),
    ([{'time': 'yesterday', 'kind': 'hook'}], r'events\[0\]\.time must be an RFC 3339 time'),
    ([{'time': '2026-01-31T12:00:00Z', 'kind': 'weight'}], 'a weight event needs weight'),
])
def test_bad_events_name_the_field(events, message):
    with pytest.raises(ReportError, match=message) as caught:
        _report.build(failed_canary(), events=events)
    assert caught.value.field == 'events'


def test_missing_and_odd_fields_are_tolerated():
    canary = failed_canary()
    status = canary['status']
    status['gateHistory'] = [
        # A mapping of name -> detail, no verdicts (inferred from the range), NaN kept as text.
        {'time': '2026-01-31T12:01:00Z', 'runId': RUN, 'weight': 10,
         'metrics': {'latency': {'value': 'NaN', 'max': 300, 'verdict': 'inconclusive'},
                     'errors': {'value': 7, 'max': 5}, '_score': {'value': 40}}},
        # No metrics, no failedChecks, no message, unparseable time (skipped), no weight.
        {'time': '2026-01-31T12:02:00Z', 'runId': RUN, 'verdict': 'PASS'},
        {'time': 'garbage', 'runId': RUN, 'weight': 90},
        {'time': '2026-01-31T12:03:00Z', 'runId': RUN, 'weight': 20,
         'metrics': [{'name': 'errors', 'value': None, 'verdict': 'fail', 'error': 'prometheus is unavailable'},
                     {'value': 1}, 'junk']},
    ]
    data = _report.build(canary)
    assert [g['verdict'] for g in data['gates']] == ['unknown', 'pass', 'unknown']
    errors = next(m for m in data['metrics'] if m['name'] == 'errors')
    assert [p['verdict'] for p in errors['points']] == ['fail', 'fail']
    assert errors['points'][1]['error'] == 'prometheus is unavailable'
    assert errors['points'][1]['value'] is None
    latency = next(m for m in data['metrics'] if m['name'] == 'latency')
    assert latency['points'][0]['value'] is None and latency['points'][0]['error'] == 'value NaN'
    html = _report.to_html(data)
    assert 'no value (prometheus is unavailable)' in html
    json.loads(_report.to_json(data))


# --------------------------------------------------------------------------------------------
# the page and its charts
# --------------------------------------------------------------------------------------------

def test_weight_polyline_is_a_step_line_through_every_weight():
    html = _report.to_html(_report.build(failed_canary()))
    weights, points = _weight_polyline(html)
    assert weights == [10, 20, 30, 0]
    levels = [_weight_of_y(y) for _x, y in points]
    # Vertical jump at each change (same x, old then new weight), horizontal hold in between.
    assert levels == [10, 10, 20, 20, 30, 30, 0, 0]
    xs = [x for x, _y in points]
    assert xs[1] == xs[2] and xs[3] == xs[4] and xs[5] == xs[6]
    assert xs == sorted(xs)


def test_failing_metric_series_and_threshold_line():
    html = _report.to_html(_report.build(failed_canary()))
    section = re.search(r'<section class="chart failing" id="metric-0">.*?</section>', html, re.S)
    assert section, 'the failing metric is not highlighted'
    chart = section.group(0)
    assert '<h2>request-success-rate<span class="badge">FAILED 2 OF 4 GATES</span></h2>' in chart
    series = re.search(r'<polyline class="metric-line" data-metric="request-success-rate" points="([^"]*)"', chart)
    assert series and len(series.group(1).split()) == 4
    threshold = re.search(r'<line class="threshold threshold-min" data-threshold="99" x1="[0-9.]+" y1="([0-9.]+)"',
                          chart)
    assert threshold
    ys = [float(pair.split(',')[1]) for pair in series.group(1).split()]
    # The two good readings sit above the min line (smaller y), the two bad ones below it.
    line_y = float(threshold.group(1))
    assert ys[0] < line_y and ys[1] < line_y and ys[2] > line_y and ys[3] > line_y
    assert chart.count('class="gate gate-fail"') == 2
    assert chart.count('class="gate gate-pass"') == 2
    assert 'class="fail-zone"' in chart
    # The other metric passed and is not highlighted.
    assert '<section class="chart" id="metric-1"><h2>request-duration<span class="badge ok">PASSED</span>' in html


def test_page_says_the_outcome_and_why_in_words():
    data = _report.build(failed_canary())
    html = _report.to_html(data)
    assert '<div class="outcome">&#10008; ROLLED BACK: request-success-rate failed</div>' in html
    assert '<title>Rolled back: podinfo release 1a2b3c4d5e6f7a8b</title>' in html
    assert '<p class="why" id="why">Rolled back at 30% canary weight' in html
    assert 'class="decision decision-rolled_back"' in html
    assert 'class="decision decision-threshold_reached"' in html
    assert 'Threshold reached</text>' in html and 'Rolled back</text>' in html


def test_page_is_self_contained():
    html = _report.to_html(_report.build(failed_canary()))
    assert '<script' not in html
    assert not re.search(r'(src|href)\s*=', html)
    assert '@import' not in html and 'url(http' not in html
    assert html.startswith('<!DOCTYPE html>') and html.endswith('</html>\n')


def test_hostile_names_are_escaped():
    hostile = '<script>alert("x")</script>'
    canary = failed_canary()
    canary['metadata']['name'] = hostile
    canary['spec']['provider'] = '"><img onerror=alert(1)>'
    status = canary['status']
    status['message'] = hostile
    for entry in status['gateHistory']:
        entry['message'] = hostile
        entry['metrics'][0]['name'] = hostile
    status['gateHistory'][-1]['metrics'][0].update(value=None, error="it's <b>bad</b>")
    events = [{'time': '2026-01-31T12:00:30Z', 'kind': 'hook', 'name': hostile, 'extra': {'k': hostile}}]
    data = _report.build(canary, events=events, title=hostile)
    html = _report.to_html(data)
    assert '<script' not in html
    assert '<img' not in html
    assert '<b>bad' not in html
    assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' in html
    assert 'it&#x27;s &lt;b&gt;bad&lt;/b&gt;' in html
    # The JSON keeps the names as they are: it is data, not markup.
    assert json.loads(_report.to_json(data))['canary']['name'] == hostile


def test_output_is_stable():
    events = [{'time': '2026-01-31T12:00:30Z', 'kind': 'hook', 'name': 'smoke', 'meta': {'b': 1, 'a': 2}}]
    first = _report.build(failed_canary(), events=events)
    second = _report.build(copy.deepcopy(failed_canary()), events=copy.deepcopy(events))
    assert _report.to_json(first) == _report.to_json(second)
    assert _report.to_html(first) == _report.to_html(second)
    # Built from the JSON that was written, the page is the same: nothing hides outside the data.
    assert _report.to_html(json.loads(_report.to_json(first))) == _report.to_html(first)


def test_run_without_gates_still_renders():
    canary = failed_canary()
    canary['status'].update(phase='Progressing', gateHistory=[])
    data = _report.build(canary)
    html = _report.to_html(data)
    assert data['metrics'] == [] and data['gates'] == []
    assert 'No metric was evaluated in this run.' in html
    assert 'No gate result is recorded for this run.' in html


@pytest.mark.parametrize('run_id, stem', [
    (RUN, 'shop-podinfo-' + RUN),
    ('../../etc/passwd', 'shop-podinfo-_.._etc_passwd'),
    ('a b/c', 'shop-podinfo-a_b_c'),
])
def test_file_stem_stays_in_dest(run_id, stem):
    assert _report.file_stem('shop', 'podinfo', run_id) == stem
    assert '/' not in stem


def test_compare_mode_baseline_and_inconclusive_gates():
    canary = failed_canary()
    canary['status']['gateHistory'] = [
        {'time': '2026-01-31T12:01:00Z', 'runId': RUN, 'weight': 10, 'verdict': 'pass', 'failedChecks': 0,
         'metrics': [{'name': 'latency', 'value': 12.5, 'verdict': 'pass', 'classification': 'Pass',
                      'baselineValue': 11.0}, {'name': '_score', 'value': 100}]},
        {'time': '2026-01-31T12:02:00Z', 'runId': RUN, 'weight': 20, 'verdict': 'inconclusive', 'failedChecks': 0,
         'metrics': [{'name': 'latency', 'value': None, 'verdict': 'inconclusive', 'classification': 'Nodata'}]},
    ]
    canary['status'].update(phase='Progressing', failedChecks=0)
    data = _report.build(canary)
    assert data['gates'][0]['score'] == 100
    latency = data['metrics'][0]
    assert latency['points'][0]['baseline_value'] == 11
    assert [p['verdict'] for p in latency['points']] == ['pass', 'inconclusive']
    html = _report.to_html(data)
    assert '<polyline class="baseline-line" data-metric="latency"' in html
    assert 'class="gate gate-inconclusive"' in html
    assert '>primary</text>' in html
