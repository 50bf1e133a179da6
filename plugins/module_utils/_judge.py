# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The statistical judge: canary series against primary (baseline) series, in the style of
Kayenta's NetflixACAJudge. Pure Python (no numpy or scipy at run time).

Per metric (``classify_metric``):

1. NaN values are removed (``nan_strategy: remove``, the default) or replaced by 0 (``replace``);
   optionally, outliers beyond ``outlier_factor`` interquartile ranges are removed.
2. No data on either side -> ``nodata``. Identical data, or one distinct value overall -> ``pass``.
3. Mann-Whitney U (Wilcoxon rank-sum) test of canary against baseline, with the confidence
   interval of the location shift (canary - baseline) at ``confidence`` (default 0.98) and its
   Hodges-Lehmann estimate. The computation is R's ``wilcox.test(canary, baseline,
   conf.int=TRUE, exact=FALSE, correct=TRUE)``, which Kayenta ported: normal approximation with
   tie correction and continuity correction; the interval bounds are where the standardised
   statistic of the shifted sample crosses the normal quantile. The statistic only changes at
   pairwise differences, so the crossings are found exactly among them (R finds them with
   ``uniroot`` to a tolerance).
4. Tolerance band: the shift counts only when the interval clears ``tolerance`` (default 0.25)
   times the absolute estimate. ``high`` when the interval lies above the band (and the direction
   is ``increase`` or ``either``), ``low`` when below (``decrease`` or ``either``).
5. Effect size: the ratio of means (canary / baseline) must also reach ``allowed_increase`` (for
   high) or fall to ``allowed_decrease`` (for low); a statistically clear but small change passes.

Scoring (``score``), after Kayenta's WeightedSumScorer: each group scores
``100 * pass / (pass + high + low)``; the summary is the weighted mean of the groups that have
data (groups without a weight share what the given weights leave of 100). A failing ``critical``
metric makes the score 0. ``score >= pass_score`` (default 95) -> pass, ``>= marginal_score``
(default 75) -> inconclusive, else fail. No-data metrics count as failures, passes or not at all,
following their no-data policy (fail, pass, inconclusive).

Private to the collection (the leading underscore): its API may change between minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import math
import statistics

from collections import namedtuple

DEFAULT_CONFIDENCE = 0.98
DEFAULT_TOLERANCE = 0.25
DEFAULT_PASS_SCORE = 95.0
DEFAULT_MARGINAL_SCORE = 75.0
DEFAULT_OUTLIER_FACTOR = 3.0
DIRECTIONS = ('increase', 'decrease', 'either')
NAN_STRATEGIES = ('remove', 'replace')
OUTLIER_STRATEGIES = ('keep', 'remove')
NO_DATA_POLICIES = ('fail', 'inconclusive', 'pass')

PASS = 'pass'
HIGH = 'high'
LOW = 'low'
NODATA = 'nodata'

MannWhitneyResult = namedtuple('MannWhitneyResult', 'u z p_value lower upper estimate confidence')


class JudgeError(ValueError):
    """Judge settings that make no sense; ``field`` names the setting."""

    def __init__(self, field, message):
        super(JudgeError, self).__init__('%s: %s' % (field, message))
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------
# Mann-Whitney U
# --------------------------------------------------------------------------------------------

def _midranks(values):
    """1-based ranks, ties sharing the mean of the ranks they span (R's rank(), ties='average')."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        rank = (start + end) / 2.0 + 1.0
        for position in range(start, end + 1):
            ranks[order[position]] = rank
        start = end + 1
    return ranks


def _tie_term(values):
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return sum(float(t) ** 3 - t for t in counts.values() if t > 1)


def _standardised(canary, baseline, shift, correct):
    """(U - mn/2 - continuity) / sigma for canary - shift against baseline, ties corrected."""
    m, n = len(canary), len(baseline)
    pooled = [value - shift for value in canary] + list(baseline)
    ranks = _midranks(pooled)
    u_statistic = sum(ranks[:m]) - m * (m + 1) / 2.0
    deviation = u_statistic - m * n / 2.0
    total = m + n
    sigma = math.sqrt(m * n / 12.0 * ((total + 1) - _tie_term(pooled) / (total * (total - 1.0))))
    if sigma == 0:
        return u_statistic, 0.0
    correction = math.copysign(0.5, deviation) if (correct and deviation != 0) else 0.0
    return u_statistic, (deviation - correction) / sigma


def _normal_quantile(probability):
    return statistics.NormalDist().inv_cdf(probability)


def _first_region_below(canary, baseline, diffs, limit, correct):
    """The pairwise difference where the standardised statistic drops below ``limit``.

    Region k is the open interval right of diffs[k] (region -1 is left of every difference);
    the statistic is constant inside a region and non-increasing from region to region.
    """
    def region_z(k):
        if k < 0:
            point = diffs[0] - 1.0
        elif k == len(diffs) - 1:
            point = diffs[-1] + 1.0
        else:
            point = (diffs[k] + diffs[k + 1]) / 2.0
        return _standardised(canary, baseline, point, correct)[1]

    low, high = -1, len(diffs) - 1
    if region_z(high) >= limit:
        return diffs[-1]
    if region_z(low) < limit:
        return diffs[0]
    # Invariant: region_z(low) >= limit > region_z(high).
    while high - low > 1:
        middle = (low + high) // 2
        if region_z(middle) < limit:
            high = middle
        else:
            low = middle
    return diffs[high]


def mann_whitney(canary, baseline, confidence=DEFAULT_CONFIDENCE, correct=True):
    """Two-sided Mann-Whitney U test of ``canary`` against ``baseline`` (see the module doc).

    Returns ``u`` (the canary's U), ``z``, ``p_value``, the confidence interval ``lower``/``upper``
    of the shift canary - baseline, and its Hodges-Lehmann ``estimate``.
    """
    canary = [float(v) for v in canary]
    baseline = [float(v) for v in baseline]
    if not canary or not baseline:
        raise JudgeError('series', 'the Mann-Whitney test needs data on both sides (canary %d, baseline %d points)'
                         % (len(canary), len(baseline)))
    if not 0 < confidence < 1:
        raise JudgeError('confidence', 'must be between 0 and 1 (exclusive), got %r' % (confidence,))
    u_statistic, z_value = _standardised(canary, baseline, 0.0, correct)
    p_value = min(1.0, math.erfc(abs(z_value) / math.sqrt(2.0)))
    all_diffs = [c - b for c in canary for b in baseline]
    diffs = sorted(set(all_diffs))
    quantile = _normal_quantile(1.0 - (1.0 - confidence) / 2.0)
    lower = _first_region_below(canary, baseline, diffs, quantile, correct)
    upper = _first_region_below(canary, baseline, diffs, -quantile, correct)
    return MannWhitneyResult(u=u_statistic, z=z_value, p_value=p_value, lower=lower, upper=upper,
                             estimate=statistics.median(all_diffs), confidence=confidence)


# --------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------

def _quantile(sorted_values, fraction):
    # Linear interpolation between closest ranks (R's type 7, numpy's default).
    position = (len(sorted_values) - 1) * fraction
    below = int(math.floor(position))
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * (position - below)


def remove_outliers(values, factor=DEFAULT_OUTLIER_FACTOR):
    """Values within [Q1 - factor*IQR, Q3 + factor*IQR] (Tukey's fences)."""
    if len(values) < 4:
        return list(values)
    ordered = sorted(values)
    first, third = _quantile(ordered, 0.25), _quantile(ordered, 0.75)
    spread = third - first
    low, high = first - factor * spread, third + factor * spread
    return [v for v in values if low <= v <= high]


def prepare(values, nan_strategy='remove', outliers='keep', outlier_factor=DEFAULT_OUTLIER_FACTOR):
    """The values the test sees: NaN (and None) removed or replaced by 0, outliers optionally removed."""
    if nan_strategy not in NAN_STRATEGIES:
        raise JudgeError('nan_strategy', 'must be one of %s, got "%s"' % (', '.join(NAN_STRATEGIES), nan_strategy))
    if outliers not in OUTLIER_STRATEGIES:
        raise JudgeError('outliers', 'must be one of %s, got "%s"' % (', '.join(OUTLIER_STRATEGIES), outliers))
    cleaned = []
    for value in values:
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        if missing:
            if nan_strategy == 'replace':
                cleaned.append(0.0)
            continue
        cleaned.append(float(value))
    if outliers == 'remove':
        cleaned = remove_outliers(cleaned, outlier_factor)
    return cleaned


def describe(values):
    if not values:
        return {'count': 0}
    return {'count': len(values), 'mean': sum(values) / len(values), 'median': statistics.median(values),
            'min': min(values), 'max': max(values)}


# --------------------------------------------------------------------------------------------
# classification and scoring
# --------------------------------------------------------------------------------------------

def _mean_ratio(canary, baseline):
    canary_mean = sum(canary) / len(canary)
    baseline_mean = sum(baseline) / len(baseline)
    if baseline_mean == 0:
        return 1.0 if canary_mean == 0 else math.copysign(float('inf'), canary_mean)
    return canary_mean / baseline_mean


def classify_metric(canary, baseline, direction='either', confidence=DEFAULT_CONFIDENCE,
                    tolerance=DEFAULT_TOLERANCE, allowed_increase=1.0, allowed_decrease=1.0,
                    nan_strategy='remove', outliers='keep', outlier_factor=DEFAULT_OUTLIER_FACTOR):
    """Classify one metric's canary series against its baseline: pass, high, low or nodata.

    Returns a dict: ``classification``, ``reason``, ``ratio`` (canary mean / baseline mean), and
    when the test ran ``p_value``, ``lower``, ``upper``, ``estimate``; ``canary`` and ``baseline``
    summary statistics.
    """
    if direction not in DIRECTIONS:
        raise JudgeError('direction', 'must be one of %s, got "%s"' % (', '.join(DIRECTIONS), direction))
    if tolerance < 0:
        raise JudgeError('tolerance', 'must be 0 or more, got %r' % (tolerance,))
    canary = prepare(canary, nan_strategy, outliers, outlier_factor)
    baseline = prepare(baseline, nan_strategy, outliers, outlier_factor)
    result = {'canary': describe(canary), 'baseline': describe(baseline)}
    if not canary or not baseline:
        missing = ' and '.join(side for side, values in (('canary', canary), ('baseline', baseline)) if not values)
        result.update(classification=NODATA, reason='no data for the %s' % missing, ratio=None)
        return result
    if sorted(canary) == sorted(baseline):
        result.update(classification=PASS, reason='the canary and baseline data are identical', ratio=1.0)
        return result
    if len(set(canary) | set(baseline)) == 1:
        result.update(classification=PASS, reason='every value is the same', ratio=1.0)
        return result
    test = mann_whitney(canary, baseline, confidence)
    ratio = _mean_ratio(canary, baseline)
    band = tolerance * abs(test.estimate)
    result.update(p_value=test.p_value, lower=test.lower, upper=test.upper, estimate=test.estimate, ratio=ratio)
    interval = '%g%% interval of the shift [%.6g, %.6g], estimate %.6g, mean ratio %.4g' % (
        confidence * 100, test.lower, test.upper, test.estimate, ratio)
    if direction in ('increase', 'either') and test.lower > band:
        if ratio >= allowed_increase:
            result.update(classification=HIGH, reason='canary higher than baseline: ' + interval)
        else:
            result.update(classification=PASS, reason='canary higher, within the allowed increase %g: %s'
                                                      % (allowed_increase, interval))
        return result
    if direction in ('decrease', 'either') and test.upper < -band:
        if ratio <= allowed_decrease:
            result.update(classification=LOW, reason='canary lower than baseline: ' + interval)
        else:
            result.update(classification=PASS, reason='canary lower, within the allowed decrease %g: %s'
                                                      % (allowed_decrease, interval))
        return result
    result.update(classification=PASS, reason='no significant difference: ' + interval)
    return result


def _group_weights(groups, group_weights):
    group_weights = dict(group_weights or {})
    for name, weight in group_weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise JudgeError('group_weights', 'the weight of group "%s" must be a number >= 0, got %r' % (name, weight))
    given = sum(float(w) for w in group_weights.values())
    if given > 100:
        raise JudgeError('group_weights', 'the weights add up to %g; they are percentages and must not exceed 100'
                         % given)
    unweighted = [g for g in groups if g not in group_weights]
    share = (100.0 - given) / len(unweighted) if unweighted else 0.0
    return dict((g, float(group_weights.get(g, share))) for g in groups)


def score(metric_results, group_weights=None, pass_score=DEFAULT_PASS_SCORE, marginal_score=DEFAULT_MARGINAL_SCORE):
    """Overall verdict from classified metrics.

    ``metric_results``: dicts with ``name``, ``classification``, optional ``group`` (default:
    the metric's own name), ``critical`` (bool), ``no_data_policy`` (fail|inconclusive|pass)
    and ``counted`` (False for dry-run metrics, which are left out).

    Returns ``score`` (None when no group had data), ``verdict`` (pass|inconclusive|fail),
    ``groups`` ({group: score or None}) and ``reason``.
    """
    if not 0 <= marginal_score <= pass_score <= 100:
        raise JudgeError('marginal_score', 'need 0 <= marginal_score <= pass_score <= 100, got %r and %r'
                         % (marginal_score, pass_score))
    labels = {}
    critical_failures = []
    for result in metric_results:
        if not result.get('counted', True):
            continue
        group = result.get('group') or result['name']
        label = result['classification']
        if label == NODATA:
            policy = result.get('no_data_policy') or 'fail'
            if policy not in NO_DATA_POLICIES:
                raise JudgeError('no_data_policy', 'must be one of %s, got "%s"' % (', '.join(NO_DATA_POLICIES), policy))
            label = {'fail': 'nodata-fail', 'pass': PASS, 'inconclusive': None}[policy]
        labels.setdefault(group, [])
        if label is not None:
            labels[group].append(label)
        if result.get('critical') and label not in (PASS, None):
            critical_failures.append(result['name'])
    weights = _group_weights(sorted(labels), group_weights)
    groups = {}
    for group, group_labels in labels.items():
        groups[group] = (100.0 * group_labels.count(PASS) / len(group_labels)) if group_labels else None
    if critical_failures:
        return {'score': 0.0, 'verdict': 'fail', 'groups': groups,
                'reason': 'critical metric %s failed' % ', '.join(critical_failures)}
    with_data = [g for g in groups if groups[g] is not None]
    total_weight = sum(weights[g] for g in with_data)
    if not with_data or total_weight == 0:
        return {'score': None, 'verdict': 'inconclusive', 'groups': groups,
                'reason': 'no metric had data to compare'}
    summary = sum(groups[g] * weights[g] for g in with_data) / total_weight
    if summary >= pass_score:
        verdict = 'pass'
    elif summary >= marginal_score:
        verdict = 'inconclusive'
    else:
        verdict = 'fail'
    return {'score': summary, 'verdict': verdict, 'groups': groups,
            'reason': 'score %.1f (pass >= %g, marginal >= %g)' % (summary, pass_score, marginal_score)}
