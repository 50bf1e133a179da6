# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watch: SPRT bounds and statistic against hand-computed values, counting counters since
the step began, what is watched per router, and simulated steps of healthy and faulty canaries."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import datetime
import math
import random

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _canary
from ansible_collections.progressive.delivery.plugins.module_utils import _watch
from ansible_collections.progressive.delivery.plugins.module_utils._metrics import SourceUnavailable

NOW = datetime.datetime(2026, 1, 31, 12, 0, 0, tzinfo=datetime.timezone.utc)
ERRORS = {'name': 'request-success-rate', 'kind': 'errors', 'threshold': 99.0, 'p0': 0.01, 'p1': 0.03,
          'total_query': 'total', 'success_query': 'success'}
LATENCY = {'name': 'request-duration', 'kind': 'latency', 'threshold': 500.0, 'p0': 0.01, 'p1': 0.03,
           'buckets_query': 'buckets', 'le_threshold': 500.0}


# --------------------------------------------------------------------------------------------
# the test itself
# --------------------------------------------------------------------------------------------

def test_bounds_are_walds():
    lower, upper = _watch.boundaries(0.001, 0.05)
    # ln(0.05 / 0.999) and ln(0.95 / 0.001), by hand.
    assert lower == pytest.approx(-2.994731, abs=1e-6)
    assert upper == pytest.approx(6.856462, abs=1e-6)


@pytest.mark.parametrize('alpha, beta', [(0, 0.05), (1, 0.05), (0.001, 0), (0.6, 0.5)])
def test_bounds_refuse_impossible_error_rates(alpha, beta):
    with pytest.raises(_watch.WatchError):
        _watch.boundaries(alpha, beta)


def test_statistic_matches_hand_computed_values():
    # Per failure ln(0.03/0.01) = 1.0986123, per success ln(0.97/0.99) = -0.0204089.
    assert _watch.log_likelihood_ratio(10, 100, 0.01, 0.03) == pytest.approx(10 * 1.0986123 - 90 * 0.0204089,
                                                                             abs=1e-5)
    assert _watch.log_likelihood_ratio(0, 0, 0.01, 0.03) == 0
    assert _watch.log_likelihood_ratio(1, 0, 0.01, 0.03) == 0  # more failures than requests: clipped


def test_decisions_at_the_bounds():
    # 7 failures in 7 requests: 7.690 >= 6.856 -> worse; 6 of 6 (6.592) is not yet.
    assert _watch.sprt(7, 7, 0.01, 0.03, 0.001, 0.05)['decision'] == _watch.WORSE
    assert _watch.sprt(6, 6, 0.01, 0.03, 0.001, 0.05)['decision'] == _watch.UNDECIDED
    # Without failures the statistic falls 0.0204089 a request: 147 requests reach -2.99473, 146 do not.
    assert _watch.sprt(0, 147, 0.01, 0.03, 0.001, 0.05)['decision'] == _watch.ACCEPTABLE
    assert _watch.sprt(0, 146, 0.01, 0.03, 0.001, 0.05)['decision'] == _watch.UNDECIDED


def test_unacceptable_rate():
    assert _watch.unacceptable_rate(0.01, 3) == pytest.approx(0.03)
    assert _watch.unacceptable_rate(0.4, 3) == pytest.approx(0.7)  # kept below 1
    assert _watch.unacceptable_rate(0.0, 3) == 0.01
    with pytest.raises(_watch.WatchError):
        _watch.unacceptable_rate(0.01, 1)


def test_a_100_percent_threshold_fails_at_the_first_failure():
    assert _watch.sprt(1, 10, 0.0, 0.01, 0.001, 0.05)['decision'] == _watch.WORSE
    assert _watch.sprt(0, 10, 0.0, 0.01, 0.001, 0.05)['decision'] == _watch.UNDECIDED


# --------------------------------------------------------------------------------------------
# counting since the step began
# --------------------------------------------------------------------------------------------

def test_counter_increase_handles_new_series_and_resets():
    start = {('pod', 'a'): 100.0, ('pod', 'b'): 50.0, ('pod', 'gone'): 7.0}
    now = {('pod', 'a'): 130.0, ('pod', 'b'): 4.0, ('pod', 'new'): 3.0}
    assert _watch.counter_increase(start, now) == 30 + 4 + 3


def _buckets(values):
    return dict(((('le', le), ('pod', 'a')), value) for le, value in values.items())


def test_latency_counts_requests_above_the_smallest_bucket_at_or_above_the_threshold():
    start = {'buckets': _buckets({'250': 10.0, '500': 10.0, '1000': 10.0, '+Inf': 10.0})}
    now = {'buckets': _buckets({'250': 80.0, '500': 96.0, '1000': 105.0, '+Inf': 110.0})}
    failures, total, detail = _watch.counts(LATENCY, start, now)
    assert (failures, total, detail['bucket']) == (14.0, 100.0, '500')
    # A threshold between buckets takes the next one up: fewer counted as slow, never more.
    failures, total, detail = _watch.counts(dict(LATENCY, le_threshold=400.0), start, now)
    assert (failures, detail['bucket']) == (14.0, '500')
    # Seconds-based histograms (le="0.5") after the unit conversion.
    start_s = {'buckets': _buckets({'0.25': 0.0, '0.5': 0.0, '+Inf': 0.0})}
    now_s = {'buckets': _buckets({'0.25': 5.0, '0.5': 8.0, '+Inf': 10.0})}
    assert _watch.counts(dict(LATENCY, le_threshold=0.5), start_s, now_s)[:2] == (2.0, 10.0)


def test_errors_count_failures_as_total_minus_successes():
    start = {'total': {('pod', 'a'): 10.0}, 'success': {('pod', 'a'): 10.0}}
    now = {'total': {('pod', 'a'): 60.0}, 'success': {('pod', 'a'): 50.0}}
    assert _watch.counts(ERRORS, start, now)[:2] == (10.0, 50.0)


# --------------------------------------------------------------------------------------------
# what is watched
# --------------------------------------------------------------------------------------------

def _context(provider='istio', metrics=None):
    return {'name': 'podinfo', 'namespace': 'test',
            'spec': {'provider': provider, 'targetRef': {'name': 'podinfo'}, 'service': {'port': 9898},
                     'analysis': {'metrics': metrics or []}}}


CANARY_METRICS = [{'name': 'request-success-rate', 'thresholdRange': {'min': 99}},
                  {'name': 'request-duration', 'thresholdRange': {'max': 500}},
                  {'name': 'custom', 'query': 'sum(x)', 'thresholdRange': {'max': 1}}]


def test_plan_watches_the_builtins_and_says_what_it_skips():
    watched, skipped = _watch.plan(CANARY_METRICS, None, _context())
    errors, latency = watched
    assert errors['p0'] == pytest.approx(0.01) and errors['p1'] == pytest.approx(0.03)
    assert errors['total_query'] == ('istio_requests_total{reporter="destination", destination_workload_namespace='
                                     '"test", destination_workload="podinfo"}')
    assert errors['success_query'].endswith(', response_code!~"5.*"}')
    assert latency['kind'] == 'latency' and latency['le_threshold'] == 500
    assert latency['buckets_query'].startswith('istio_request_duration_milliseconds_bucket{')
    assert [item['name'] for item in skipped] == ['custom']


def test_plan_converts_the_threshold_to_seconds_buckets():
    watched = _watch.plan(CANARY_METRICS, None, _context('kubernetes'))[0]
    assert watched[1]['le_threshold'] == 0.5


def test_plan_takes_custom_counter_pairs():
    pair = {'name': 'custom', 'success_query': 'ok_total{ns="{{ namespace }}"}', 'total_query': 'all_total',
            'min_success_rate': None}
    with pytest.raises(_watch.WatchError, match='min_success_rate'):
        _watch.plan(CANARY_METRICS, [pair], _context())
    watched = _watch.plan(CANARY_METRICS, [dict(pair, min_success_rate=99.5)], _context())[0]
    custom = [metric for metric in watched if metric['name'] == 'custom'][0]
    assert custom['kind'] == 'pair' and custom['p0'] == pytest.approx(0.005)
    assert custom['success_query'] == 'ok_total{ns="test"}'


# --------------------------------------------------------------------------------------------
# simulated steps
# --------------------------------------------------------------------------------------------

class _Canary(object):
    """A canary serving ``rps`` requests a second, each failing with ``error_rate`` and slower
    than the threshold with ``slow_rate``; its counters are what the source answers."""

    def __init__(self, rng, rps, error_rate=0.0, slow_rate=0.0, down=False):
        self.rng, self.rps, self.error_rate, self.slow_rate, self.down = rng, rps, error_rate, slow_rate, down
        self.now = 0.0
        self.total = self.success = self.fast = 0.0
        self.carry = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.carry += self.rps * seconds
        requests = int(self.carry)
        self.carry -= requests
        for _request in range(requests):
            self.total += 1
            self.success += self.rng.random() >= self.error_rate
            self.fast += self.rng.random() >= self.slow_rate

    def query_vector(self, text, at=None):
        self.asked_at = at
        if self.down:
            raise SourceUnavailable('Prometheus at http://127.0.0.1:9 is down')
        if text == 'buckets':
            return [({'le': '500'}, self.fast), ({'le': '+Inf'}, self.total)]
        return [({'pod': 'a'}, self.total if text == 'total' else self.success)]


def _step(canary, metrics=(ERRORS,), duration=60, watch_interval=5, alpha=0.001, beta=0.05):
    return _watch.watch(list(metrics), canary, duration, watch_interval=watch_interval, alpha=alpha, beta=beta,
                        clock=canary.clock, sleep=canary.sleep)


def test_a_healthy_canary_survives_200_watched_steps():
    # 10% of 50 req/s, 0.5% errors against a 99% threshold, Flagger's default 1m interval.
    rng = random.Random(20260131)
    rollbacks = sum(_step(_Canary(rng, rps=5, error_rate=0.005))['decision'] == _watch.WORSE for _step_no in range(200))
    promised = 200 * 0.001 / (1 - 0.05)
    print('false rollbacks in 200 watched steps: %d (alpha promises at most %.2f)' % (rollbacks, promised))
    assert rollbacks <= math.floor(promised)


def test_at_the_threshold_itself_false_rollbacks_stay_within_alpha():
    # The worst healthy case, p = p0, with a large alpha so that 400 steps can show the rate.
    rng = random.Random(7)
    alpha, beta, steps = 0.05, 0.05, 400
    rollbacks = sum(_step(_Canary(rng, rps=5, error_rate=0.01), duration=300, alpha=alpha, beta=beta)['decision']
                    == _watch.WORSE for _step_no in range(steps))
    print('false rollbacks at p = p0 in %d steps: %d (at most %.1f promised)' % (steps, rollbacks,
                                                                                 steps * alpha / (1 - beta)))
    assert rollbacks <= steps * alpha / (1 - beta)


def test_twenty_percent_errors_are_caught_within_a_few_polls():
    rng = random.Random(11)
    results = [_step(_Canary(rng, rps=5, error_rate=0.2)) for _run in range(50)]
    assert all(result['decision'] == _watch.WORSE for result in results)
    print('polls to decide at 20%% errors: %s' % sorted(set(result['polls'] for result in results)))
    assert max(result['polls'] for result in results) <= 3
    worst = results[0]['metrics'][0]
    assert worst['decision'] == _watch.WORSE and worst['statistic'] >= worst['upper']


def test_a_latency_fault_is_caught_by_the_histogram():
    rng = random.Random(3)
    result = _step(_Canary(rng, rps=25, slow_rate=0.06), metrics=(ERRORS, LATENCY))
    assert result['decision'] == _watch.WORSE
    errors, latency = result['metrics']
    assert latency['decision'] == _watch.WORSE and latency['bucket'] == '500'
    assert errors['decision'] != _watch.WORSE


def test_no_traffic_decides_nothing_and_waits_the_interval_out():
    canary = _Canary(random.Random(1), rps=0)
    result = _step(canary, duration=12, watch_interval=5)
    assert result['decision'] == _watch.UNDECIDED and result['decided_after'] is None
    assert result['polls'] == 3 and canary.now == 12
    assert result['metrics'][0]['total'] == 0


def test_counts_start_when_the_step_began():
    canary = _Canary(random.Random(4), rps=5)
    _watch.watch([ERRORS], canary, 5, since=1234.5, clock=canary.clock, sleep=canary.sleep, wall=lambda: 1234.5)
    # The start snapshot was read at the step's start; later polls read the present.
    assert canary.asked_at is None
    seen = []
    original = canary.query_vector

    def recording(text, at=None):
        seen.append(at)
        return original(text, at=at)
    canary.query_vector = recording
    _watch.watch([ERRORS], canary, 5, since=1234.5, clock=canary.clock, sleep=canary.sleep, wall=lambda: 1234.5)
    assert seen[:2] == [1234.5, 1234.5] and set(seen[2:]) == {None}


def test_the_step_lasts_one_interval_from_the_weight_change_and_a_due_poll_is_made_at_once():
    # The task started 3 s after the weight changed: 2 s are left, and the poll due at 2 s is made now.
    canary = _Canary(random.Random(4), rps=50, error_rate=0.3)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        canary.sleep(seconds)
    result = _watch.watch([ERRORS], canary, 5, watch_interval=2, since=100.0, clock=canary.clock, sleep=sleep,
                          wall=lambda: 103.0)
    assert sleeps[0] == 0.0 and result['decision'] == _watch.WORSE
    healthy = _Canary(random.Random(4), rps=0)
    result = _watch.watch([ERRORS], healthy, 5, watch_interval=2, since=100.0, clock=healthy.clock,
                          sleep=healthy.sleep, wall=lambda: 103.0)
    assert healthy.now == 2.0 and result['elapsed'] == 5.0
    # A task that started after the whole interval had passed does not wait another one.
    late = _Canary(random.Random(4), rps=0)
    _watch.watch([ERRORS], late, 5, watch_interval=2, since=100.0, clock=late.clock, sleep=late.sleep,
                 wall=lambda: 109.0)
    assert late.now == 0.0


def test_an_unreachable_source_decides_nothing():
    canary = _Canary(random.Random(1), rps=5, error_rate=0.5, down=True)
    result = _step(canary, duration=10)
    assert result['decision'] == _watch.UNDECIDED and 'down' in result['metrics'][0]['error']


def test_acceptable_metrics_stop_the_watch_but_not_the_wait():
    canary = _Canary(random.Random(2), rps=50)
    result = _step(canary, duration=60)
    assert result['metrics'][0]['decision'] == _watch.ACCEPTABLE and result['decision'] == _watch.UNDECIDED
    assert canary.now == 60 and result['polls'] < 12


def test_the_record_fits_the_gate_history():
    rng = random.Random(5)
    result = _step(_Canary(rng, rps=5, error_rate=0.2))
    message = _watch.watch_message(result, [{'name': 'custom', 'reason': 'no counters'}])
    assert message.startswith('watch: canary worse than its threshold after 10.0s, roll back now')
    assert 'not watched: custom (no counters)' in message
    entry = _watch.history_entry(result, {'runId': 'r1', 'canaryWeight': 10, 'failedChecks': 1, 'iterations': 2},
                                 message, NOW)
    status = _canary.append_gate_result({}, entry)
    item = status['gateHistory'][0]['metrics'][0]
    assert status['gateHistory'][0]['verdict'] == 'fail' and status['gateHistory'][0]['weight'] == 10
    assert item['watch'] == 'worse' and item['statistic'] >= item['upper'] and item['min'] == 99
    assert item['failures'] > 0 and item['total'] > item['failures']
