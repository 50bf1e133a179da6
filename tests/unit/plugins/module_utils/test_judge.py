# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The statistical judge.

Reference values: judge_reference.json next to this file was computed ONCE with scipy 1.17.1 and
numpy 2.4.6 in a throwaway virtualenv (``python3 -m venv /tmp/scipyvenv &&
/tmp/scipyvenv/bin/pip install scipy``), by the generator script stored inside the JSON itself
(key ``generator``; its ``_provenance`` key says exactly which scipy calls produced which number).
The collection never imports scipy or numpy; these tests check the pure-Python implementation
against those numbers.

Synthetic series use ``random.Random`` with fixed seeds, so every run sees the same data.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import math
import os
import random

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _judge
from ansible_collections.progressive.delivery.plugins.module_utils._judge import JudgeError

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'judge_reference.json')) as _handle:
    REFERENCE = json.load(_handle)


def test_reference_file_says_how_it_was_made():
    assert 'scipy' in REFERENCE['_provenance'] and 'throwaway venv' in REFERENCE['_provenance']
    assert 'scipy.stats as st' in REFERENCE['generator']


# ----------------------------------------------------------------------------- Mann-Whitney

@pytest.mark.parametrize('case', REFERENCE['mann_whitney'], ids=lambda c: c['name'])
def test_mann_whitney_matches_scipy(case):
    result = _judge.mann_whitney(case['canary'], case['baseline'], confidence=case['confidence'])
    assert result.u == pytest.approx(case['u'], abs=1e-9)
    assert result.p_value == pytest.approx(case['p_value'], rel=1e-9, abs=1e-15)
    assert result.lower == pytest.approx(case['lower'], abs=1e-9)
    assert result.upper == pytest.approx(case['upper'], abs=1e-9)
    assert result.estimate == pytest.approx(case['estimate'], abs=1e-9)
    assert result.lower <= result.estimate <= result.upper


def test_mann_whitney_is_antisymmetric():
    case = REFERENCE['mann_whitney'][2]
    forward = _judge.mann_whitney(case['canary'], case['baseline'])
    backward = _judge.mann_whitney(case['baseline'], case['canary'])
    assert backward.p_value == pytest.approx(forward.p_value)
    assert backward.lower == pytest.approx(-forward.upper)
    assert backward.upper == pytest.approx(-forward.lower)
    assert backward.estimate == pytest.approx(-forward.estimate)


def test_wider_confidence_gives_a_wider_interval():
    case = REFERENCE['mann_whitney'][2]
    narrow = _judge.mann_whitney(case['canary'], case['baseline'], confidence=0.9)
    wide = _judge.mann_whitney(case['canary'], case['baseline'], confidence=0.99)
    assert wide.lower <= narrow.lower and wide.upper >= narrow.upper


@pytest.mark.parametrize('canary, baseline', [([], [1.0]), ([1.0], [])])
def test_mann_whitney_needs_both_sides(canary, baseline):
    with pytest.raises(JudgeError):
        _judge.mann_whitney(canary, baseline)


@pytest.mark.parametrize('confidence', [0, 1, 1.5, -0.1])
def test_mann_whitney_rejects_impossible_confidence(confidence):
    with pytest.raises(JudgeError) as info:
        _judge.mann_whitney([1, 2], [3, 4], confidence=confidence)
    assert info.value.field == 'confidence'


def test_midranks_share_tied_ranks():
    assert _judge._midranks([10, 20, 20, 30, 10]) == [1.5, 3.5, 3.5, 5.0, 1.5]


# ------------------------------------------------------------------------------ preprocessing

def test_outlier_removal_matches_numpy_quartiles():
    data = REFERENCE['outliers']
    assert _judge._quantile(sorted(data['values']), 0.25) == pytest.approx(data['q1'])
    assert _judge._quantile(sorted(data['values']), 0.75) == pytest.approx(data['q3'])
    assert _judge.remove_outliers(data['values'], data['factor']) == data['kept']


def test_nan_strategies():
    values = [1.0, float('nan'), None, 3.0]
    assert _judge.prepare(values, 'remove') == [1.0, 3.0]
    assert _judge.prepare(values, 'replace') == [1.0, 0.0, 0.0, 3.0]


@pytest.mark.parametrize('kwargs, field', [({'nan_strategy': 'drop'}, 'nan_strategy'),
                                           ({'outliers': 'trim'}, 'outliers')])
def test_prepare_rejects_unknown_strategies(kwargs, field):
    with pytest.raises(JudgeError) as info:
        _judge.prepare([1.0], **kwargs)
    assert info.value.field == field


# ------------------------------------------------------------------------- synthetic series

def latency(seed, count=60, median=100.0, spread=0.15, factor=1.0):
    rng = random.Random(seed)
    return [round(factor * rng.lognormvariate(math.log(median), spread), 3) for _index in range(count)]


def test_identical_series_pass():
    series = latency(1)
    result = _judge.classify_metric(series, list(series), direction='increase')
    assert result['classification'] == _judge.PASS
    assert 'identical' in result['reason']


def test_canary_with_twice_the_latency_fails_high():
    result = _judge.classify_metric(latency(2, factor=2.0), latency(3), direction='increase')
    assert result['classification'] == _judge.HIGH
    assert result['ratio'] == pytest.approx(2.0, rel=0.1)
    assert result['lower'] > 0 and result['p_value'] < 1e-6


def test_small_noise_passes():
    # Same distribution, independent draws: what a healthy canary looks like.
    result = _judge.classify_metric(latency(4), latency(5), direction='either')
    assert result['classification'] == _judge.PASS
    assert result['lower'] <= 0 <= result['upper']


def test_a_small_significant_shift_passes_within_the_allowed_increase():
    canary = latency(6, factor=1.08)
    baseline = latency(7)
    strict = _judge.classify_metric(canary, baseline, direction='increase')
    tolerant = _judge.classify_metric(canary, baseline, direction='increase', allowed_increase=1.2)
    assert strict['classification'] == _judge.HIGH
    assert tolerant['classification'] == _judge.PASS
    assert 'within the allowed increase' in tolerant['reason']


def test_direction_limits_what_fails():
    rng = random.Random(8)
    baseline = [round(rng.gauss(99.5, 0.2), 3) for _index in range(40)]
    canary = [round(rng.gauss(97.0, 0.4), 3) for _index in range(40)]
    assert _judge.classify_metric(canary, baseline, direction='decrease')['classification'] == _judge.LOW
    assert _judge.classify_metric(canary, baseline, direction='either')['classification'] == _judge.LOW
    # A success rate that rises is never a failure of an "increase is bad" metric.
    assert _judge.classify_metric(canary, baseline, direction='increase')['classification'] == _judge.PASS


def test_tolerance_band_hides_tiny_but_significant_shifts():
    baseline = [float(v) for v in range(100, 140)]
    canary = [v + 0.5 for v in baseline]
    loose = _judge.classify_metric(canary, baseline, tolerance=100.0)
    assert loose['classification'] == _judge.PASS


def test_no_data_on_either_side():
    result = _judge.classify_metric([], [1.0, 2.0])
    assert result['classification'] == _judge.NODATA and 'canary' in result['reason']
    result = _judge.classify_metric([float('nan')], [1.0], nan_strategy='remove')
    assert result['classification'] == _judge.NODATA


def test_one_distinct_value_passes():
    assert _judge.classify_metric([5.0, 5.0], [5.0, 5.0, 5.0])['classification'] == _judge.PASS


def test_outliers_removed_before_the_test():
    baseline = latency(9, count=40)
    canary = latency(10, count=40) + [5000.0, 7000.0]
    kept = _judge.classify_metric(canary, baseline, outliers='remove')
    assert kept['canary']['count'] == 40
    assert kept['canary']['max'] < 5000


def test_unknown_direction_is_refused():
    with pytest.raises(JudgeError) as info:
        _judge.classify_metric([1.0], [1.0], direction='up')
    assert 'increase, decrease, either' in str(info.value)


# ------------------------------------------------------------------------------------ score

def metric(name, classification, **extra):
    return dict(name=name, classification=classification, **extra)


def test_all_pass_scores_100():
    scored = _judge.score([metric('a', 'pass'), metric('b', 'pass')])
    assert scored['score'] == 100.0 and scored['verdict'] == 'pass'


def test_one_of_two_failing_scores_50_and_fails():
    scored = _judge.score([metric('a', 'pass'), metric('b', 'high')])
    assert scored['score'] == 50.0 and scored['verdict'] == 'fail'


def test_marginal_score_is_inconclusive():
    results = [metric('m%d' % i, 'pass') for i in range(9)] + [metric('bad', 'low')]
    scored = _judge.score(results)
    assert scored['score'] == pytest.approx(90.0) and scored['verdict'] == 'inconclusive'


def test_group_weights():
    results = [metric('latency', 'high', group='perf'), metric('errors', 'pass', group='errors')]
    scored = _judge.score(results, group_weights={'errors': 80})
    assert scored['score'] == pytest.approx(80.0)
    assert scored['groups'] == {'perf': 0.0, 'errors': 100.0}


def test_weights_over_100_are_refused():
    with pytest.raises(JudgeError) as info:
        _judge.score([metric('a', 'pass')], group_weights={'a': 70, 'b': 40})
    assert info.value.field == 'group_weights'


def test_critical_failure_zeroes_the_score():
    results = [metric('m%d' % i, 'pass') for i in range(19)] + [metric('latency', 'high', critical=True)]
    scored = _judge.score(results)
    assert scored['score'] == 0.0 and scored['verdict'] == 'fail' and 'latency' in scored['reason']


@pytest.mark.parametrize('policy, verdict, score', [('fail', 'fail', 50.0), ('pass', 'pass', 100.0),
                                                    ('inconclusive', 'pass', 100.0)])
def test_no_data_follows_the_policy(policy, verdict, score):
    scored = _judge.score([metric('a', 'pass'), metric('b', 'nodata', no_data_policy=policy)])
    assert scored['verdict'] == verdict and scored['score'] == score


def test_nothing_to_compare_is_inconclusive():
    scored = _judge.score([metric('a', 'nodata', no_data_policy='inconclusive')])
    assert scored['verdict'] == 'inconclusive' and scored['score'] is None


def test_dry_run_metrics_are_not_scored():
    scored = _judge.score([metric('a', 'pass'), metric('b', 'high', counted=False)])
    assert scored['score'] == 100.0


def test_error_counts_as_a_failure():
    scored = _judge.score([metric('a', 'pass'), metric('b', 'error')])
    assert scored['verdict'] == 'fail'


def test_score_thresholds_must_be_ordered():
    with pytest.raises(JudgeError):
        _judge.score([metric('a', 'pass')], pass_score=70, marginal_score=80)
