# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gate: which metrics, how their queries are rendered, how values, no data and source
failures become verdicts, and how failed checks and the status record follow."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import datetime
import math
import random

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _builtin_metrics as builtins
from ansible_collections.progressive.delivery.plugins.module_utils import _canary
from ansible_collections.progressive.delivery.plugins.module_utils import _gate
from ansible_collections.progressive.delivery.plugins.module_utils._gate import GateError
from ansible_collections.progressive.delivery.plugins.module_utils._metrics import (
    NoData,
    QueryRejected,
    SourceUnavailable,
    UnexpectedResult,
)

NOW = datetime.datetime(2026, 1, 31, 12, 0, 0, tzinfo=datetime.timezone.utc)


def spec(provider='istio', metrics=None, **analysis):
    analysis.setdefault('stepWeight', 10)
    analysis['metrics'] = metrics if metrics is not None else []
    raw = {
        'provider': provider,
        'targetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'podinfo'},
        'service': {'port': 9898},
        'analysis': analysis,
    }
    if provider == 'nginx':
        raw['ingressRef'] = {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress', 'name': 'podinfo-web'}
    return _canary.validate_spec(raw)


def context(provider='istio', **kwargs):
    return {'name': 'podinfo', 'namespace': 'shop', 'spec': spec(provider, **kwargs)}


def prepare(metrics, provider='istio', **kwargs):
    return _gate.prepare_metrics(_gate.merge_metrics([], metrics), context(provider), **kwargs)


class FakeSource(object):
    """Answers queries from a dict (query -> value, NoData or an exception to raise)."""

    name = 'prometheus'
    address = 'http://prometheus.test:9090'

    def __init__(self, answers=None, series=None, offline=None):
        self.answers = answers or {}
        self.series = series or {}
        self.offline = offline
        self.queries = []

    def is_online(self):
        if self.offline:
            raise self.offline
        return True

    def _answer(self, table, text):
        self.queries.append(text)
        for fragment, answer in table.items():
            if fragment in text:
                if isinstance(answer, Exception):
                    raise answer
                return answer
        return NoData('the query returned no series')

    def query(self, text, window=None, at=None):
        return self._answer(self.answers, text)

    def query_range(self, text, start, end, step):
        found = self._answer(self.series, text)
        if isinstance(found, NoData):
            return found
        return [(start + i * step, v) for i, v in enumerate(found)]


# ------------------------------------------------------------------------- built-in queries

def test_builtin_names_agree_with_the_canary_model():
    assert builtins.BUILTIN_METRICS == _canary.BUILTIN_METRICS


@pytest.mark.parametrize('provider', sorted(_canary.KNOWN_PROVIDERS))
def test_every_provider_has_both_builtins_on_both_sides(provider):
    for name in builtins.BUILTIN_METRICS:
        for side in builtins.SIDES:
            assert '{{ interval }}' in builtins.builtin_query(provider, name, side)


@pytest.mark.parametrize('provider, fragments', [
    ('istio', ['istio_requests_total{reporter="destination", destination_workload_namespace="shop", '
               'destination_workload="podinfo", response_code!~"5.*"}[1m]',
               'istio_request_duration_milliseconds_bucket{reporter="destination", '
               'destination_workload_namespace="shop", destination_workload="podinfo"}[1m]']),
    ('linkerd', ['response_total{namespace="shop", deployment="podinfo", direction="inbound", '
                 'classification!="failure"}', 'response_latency_ms_bucket{']),
    ('smi', ['response_total{namespace="shop", deployment="podinfo"']),
    ('osm', ['osm_request_total{destination_namespace="shop", destination_kind="Deployment", '
             'destination_name="podinfo", response_code!~"5.*"}', 'osm_request_duration_ms_bucket{']),
    ('nginx', ['nginx_ingress_controller_requests{namespace="shop", ingress="podinfo-web", '
               'canary=~"shop-podinfo-canary-.+", status!~"5.*"}',
               'nginx_ingress_controller_request_duration_seconds_bucket{', ') * 1000']),
    ('gatewayapi:v1', ['envoy_cluster_upstream_rq{envoy_cluster_name=~"shop_podinfo-canary_[0-9a-zA-Z-]+", '
                       'envoy_response_code!~"5.*"}', 'envoy_cluster_upstream_rq_time_bucket{']),
    ('kubernetes', ['http_request_duration_seconds_count{kubernetes_namespace="shop", '
                    'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", status!~"5.*"}',
                    'http_request_duration_seconds_bucket{', ') * 1000']),
])
def test_builtins_render_with_the_router_native_metrics(provider, fragments):
    prepared = prepare([{'name': 'request-success-rate'}, {'name': 'request-duration'}], provider)
    rendered = ' '.join(m['query'] for m in prepared)
    for fragment in fragments:
        assert fragment in rendered
    assert '{{' not in rendered
    assert prepared[0]['query'].endswith('* 100')
    assert prepared[1]['query'].startswith('histogram_quantile(0.99, ')


def test_builtin_primary_side_selects_the_primary():
    prepared = prepare([{'name': 'request-duration'}], 'istio', mode='compare', compare=_gate.compare_settings({}))
    assert 'destination_workload="podinfo-primary"' in prepared[0]['baseline_query']
    assert 'destination_workload="podinfo"' in prepared[0]['query']
    # compare mode: every point covers one step.
    assert '[30s]' in prepared[0]['query']


def test_unknown_router_for_builtins():
    with pytest.raises(ValueError) as info:
        builtins.router_for('traefik')
    assert 'traefik' in str(info.value)


# ------------------------------------------------------------------------ metrics and merge

def test_task_metrics_override_by_name_and_extend():
    canary = [{'name': 'request-success-rate', 'interval': '1m', 'thresholdRange': {'min': 99},
               'noDataPolicy': 'fail'}]
    task = [{'name': 'request-success-rate', 'threshold_range': {'min': 99.9, 'max': None}, 'interval': None},
            {'name': 'custom', 'query': 'up', 'threshold_range': {'min': 1}}]
    merged = _gate.merge_metrics(canary, task)
    assert merged[0] == {'name': 'request-success-rate', 'interval': '1m', 'threshold_range': {'min': 99.9, 'max': None},
                         'no_data_policy': 'fail'}
    assert merged[1]['name'] == 'custom'


def test_replace_ignores_the_canary_metrics():
    merged = _gate.merge_metrics([{'name': 'request-duration'}], [{'name': 'x', 'query': 'up'}], replace=True)
    assert [m['name'] for m in merged] == ['x']


def test_no_metrics_at_all_is_a_clear_error():
    with pytest.raises(GateError) as info:
        _gate.prepare_metrics([], context())
    assert info.value.field == 'metrics'
    assert 'no metrics to evaluate' in str(info.value) and 'request-success-rate' in str(info.value)


def test_min_above_max_is_an_error_naming_the_metric():
    with pytest.raises(GateError) as info:
        prepare([{'name': 'request-duration', 'threshold_range': {'min': 500, 'max': 100}}])
    assert 'metrics[0] (request-duration)' in str(info.value)
    assert 'min (500) must not exceed max (100)' in str(info.value)


def test_interval_in_words_is_an_error_naming_the_accepted_forms():
    with pytest.raises(GateError) as info:
        prepare([{'name': 'request-duration', 'interval': '5 minutes'}])
    message = str(info.value)
    assert 'metrics[0] (request-duration): interval' in message and '"5 minutes"' in message and '"1m30s"' in message


def test_zero_interval_is_refused():
    with pytest.raises(GateError) as info:
        prepare([{'name': 'request-duration', 'interval': '0s'}])
    assert 'longer than zero' in str(info.value)


def test_custom_metric_without_query_is_an_error():
    with pytest.raises(GateError) as info:
        prepare([{'name': 'error-budget'}])
    assert 'needs a query' in str(info.value) and 'request-success-rate and request-duration' in str(info.value)


def test_builtins_need_prometheus():
    with pytest.raises(GateError) as info:
        prepare([{'name': 'request-success-rate'}], source_type='datadog')
    assert 'needs a prometheus source' in str(info.value)


def test_template_ref_is_refused_with_the_fix():
    with pytest.raises(GateError) as info:
        _gate.prepare_metrics(_gate.merge_metrics([{'name': 'lat', 'templateRef': {'name': 't'}}]), context())
    assert 'put the query inline' in str(info.value)


def test_duplicate_names_are_refused():
    with pytest.raises(GateError) as info:
        _gate.prepare_metrics([{'name': 'a', 'query': 'up'}, {'name': 'a', 'query': 'up'}], context())
    assert 'used twice' in str(info.value)


def test_unknown_metric_fields_are_named():
    with pytest.raises(GateError) as info:
        _gate.prepare_metrics([{'name': 'a', 'query': 'up', 'treshold': 1}], context())
    assert 'treshold' in str(info.value)


@pytest.mark.parametrize('policy', ['maybe', 'FAIL'])
def test_unknown_no_data_policy(policy):
    with pytest.raises(GateError) as info:
        prepare([{'name': 'a', 'query': 'up', 'no_data_policy': policy}])
    assert 'fail, inconclusive, pass' in str(info.value)


# --------------------------------------------------------------------------------- templates

def test_template_variables_are_rendered():
    prepared = prepare([{'name': 'custom', 'interval': '30s', 'template_variables': {'region': 'eu-1'},
                         'query': 'x{ns="{{ namespace }}", app="{{target}}", svc="{{ service }}", '
                                  'canary="{{ name }}", region="{{ variables.region }}"}[{{ interval }}]'}])
    assert prepared[0]['query'] == 'x{ns="shop", app="podinfo", svc="podinfo", canary="podinfo", region="eu-1"}[30s]'


def test_missing_template_variable_is_an_error_naming_it():
    with pytest.raises(GateError) as info:
        prepare([{'name': 'custom', 'query': 'x{region="{{ variables.region }}"}', 'template_variables': {'a': 'b'}}])
    message = str(info.value)
    assert 'variables.region is not defined' in message and 'templateVariables' in message and 'defined: a' in message


def test_unknown_template_variable_is_an_error_naming_it():
    with pytest.raises(GateError) as info:
        prepare([{'name': 'custom', 'query': 'x{pod="{{ pod }}"}'}])
    assert 'unknown template variable "pod"' in str(info.value)


def test_ingress_without_ingress_ref_is_explained():
    with pytest.raises(GateError) as info:
        prepare([{'name': 'custom', 'query': 'x{ingress="{{ ingress }}"}'}])
    assert 'spec.ingressRef' in str(info.value)


def test_template_expressions_other_than_variables_are_refused():
    with pytest.raises(GateError) as info:
        prepare([{'name': 'custom', 'query': 'x{a="{{ namespace | upper }}"}'}])
    assert 'unsupported template expression' in str(info.value)


@pytest.mark.parametrize('text, expected', [('1m', '1m'), ('1m30s', '1m30s'), ('500ms', '500ms'),
                                            ('1.5h', '5400000ms'), ('0.5s', '500ms')])
def test_interval_is_rendered_as_a_prometheus_duration(text, expected):
    assert _gate.prometheus_duration(text, _canary.parse_duration(text)) == expected


def test_compare_baseline_defaults_to_the_query_scoped_to_the_primary():
    prepared = prepare([{'name': 'lat', 'query': 'avg(lat{app="{{ target }}"})'}], mode='compare',
                       compare=_gate.compare_settings({}))
    assert prepared[0]['baseline_query'] == 'avg(lat{app="podinfo-primary"})'


# -------------------------------------------------------------------------- threshold mode

def metrics_for_threshold():
    return prepare([
        {'name': 'request-success-rate', 'threshold_range': {'min': 99}},
        {'name': 'request-duration', 'threshold_range': {'max': 500}},
    ])


def test_values_within_range_pass():
    source = FakeSource({'istio_requests_total': 99.5, 'istio_request_duration': 120.0})
    gate = _gate.evaluate(metrics_for_threshold(), source)
    assert gate['verdict'] == 'pass'
    assert [r['verdict'] for r in gate['metrics']] == ['pass', 'pass']
    assert gate['metrics'][0]['value'] == 99.5 and gate['metrics'][0]['range'] == {'min': 99.0, 'max': None}


def test_a_breach_fails():
    source = FakeSource({'istio_requests_total': 98.0, 'istio_request_duration': 120.0})
    gate = _gate.evaluate(metrics_for_threshold(), source)
    assert gate['verdict'] == 'fail'
    assert gate['metrics'][0]['verdict'] == 'fail' and 'outside min 99' in gate['metrics'][0]['message']


def test_both_bounds_are_inclusive():
    metrics = prepare([{'name': 'x', 'query': 'x', 'threshold_range': {'min': 1, 'max': 2}}])
    for value, verdict in ((1.0, 'pass'), (2.0, 'pass'), (0.99, 'fail'), (2.01, 'fail')):
        assert _gate.evaluate(metrics, FakeSource({'x': value}))['verdict'] == verdict


def test_infinite_value_breaches_a_maximum():
    metrics = prepare([{'name': 'request-duration', 'threshold_range': {'max': 500}}])
    assert _gate.evaluate(metrics, FakeSource({'istio': float('inf')}))['verdict'] == 'fail'


@pytest.mark.parametrize('policy, verdict', [('fail', 'fail'), ('inconclusive', 'inconclusive'), ('pass', 'pass')])
def test_no_data_follows_the_policy(policy, verdict):
    metrics = prepare([{'name': 'request-success-rate', 'threshold_range': {'min': 99}, 'no_data_policy': policy}])
    gate = _gate.evaluate(metrics, FakeSource({}))
    assert gate['verdict'] == verdict
    assert gate['metrics'][0]['value'] is None
    assert 'no data' in gate['metrics'][0]['message'] and policy in gate['metrics'][0]['message']


def test_default_no_data_policy_is_fail_as_flagger():
    gate = _gate.evaluate(prepare([{'name': 'request-success-rate'}]), FakeSource({}))
    assert gate['verdict'] == 'fail'


def test_source_down_fails_every_metric_with_the_cause_and_never_passes():
    outage = SourceUnavailable('no answer from Prometheus at http://prometheus.test:9090/api/v1/query (after 3 '
                               'retries): Connection refused')
    metrics = prepare([{'name': 'request-success-rate', 'no_data_policy': 'pass'},
                       {'name': 'request-duration', 'no_data_policy': 'pass'}])
    source = FakeSource({'istio': 100.0}, offline=outage)
    gate = _gate.evaluate(metrics, source)
    assert gate['verdict'] == 'fail'
    assert all(r['verdict'] == 'fail' and r['error'] == 'unavailable' for r in gate['metrics'])
    assert all('Connection refused' in r['message'] for r in gate['metrics'])
    assert gate['source_error'] and source.queries == []  # one check, no per-metric retries


def test_source_failing_mid_gate_fails_that_metric():
    source = FakeSource({'istio_requests_total': 99.9,
                         'istio_request_duration': SourceUnavailable('Prometheus at x failed with HTTP 503')})
    gate = _gate.evaluate(metrics_for_threshold(), source)
    assert gate['verdict'] == 'fail'
    assert gate['metrics'][1]['error'] == 'unavailable' and 'HTTP 503' in gate['metrics'][1]['message']


def test_malformed_query_fails_naming_the_metric():
    source = FakeSource({'rate(x))': QueryRejected('Prometheus rejected the query (bad_data): parse error')})
    metrics = prepare([{'name': 'broken', 'query': 'rate(x))', 'threshold_range': {'max': 1}}])
    gate = _gate.evaluate(metrics, source)
    assert gate['verdict'] == 'fail'
    broken = _gate.query_errors(gate)
    assert [r['name'] for r in broken] == ['broken'] and 'broken: Prometheus rejected' in broken[0]['message']


def test_several_series_fail_the_metric():
    source = FakeSource({'x': UnexpectedResult('expected exactly one series, got 2')})
    gate = _gate.evaluate(prepare([{'name': 'x', 'query': 'x'}]), source)
    assert gate['metrics'][0]['error'] == 'result' and gate['verdict'] == 'fail'


def test_dry_run_metrics_are_reported_not_counted():
    metrics = prepare([{'name': 'request-success-rate', 'threshold_range': {'min': 99}},
                       {'name': 'new-check', 'query': 'x', 'threshold_range': {'max': 1}, 'dry_run': True}])
    gate = _gate.evaluate(metrics, FakeSource({'istio': 99.9, 'x': 50.0}))
    assert gate['verdict'] == 'pass'
    assert gate['metrics'][1]['verdict'] == 'fail' and gate['metrics'][1]['dry_run'] is True
    broken = FakeSource({'istio': 99.9, 'x': QueryRejected('bad')})
    assert _gate.query_errors(_gate.evaluate(metrics, broken)) == []


def test_metric_without_range_is_reported_and_passes():
    gate = _gate.evaluate(prepare([{'name': 'x', 'query': 'x'}]), FakeSource({'x': 5.0}))
    assert gate['verdict'] == 'pass' and 'no range' in gate['metrics'][0]['message']


def test_fail_outweighs_inconclusive():
    metrics = prepare([{'name': 'a', 'query': 'a', 'no_data_policy': 'inconclusive'},
                       {'name': 'b', 'query': 'b', 'threshold_range': {'max': 1}}])
    assert _gate.evaluate(metrics, FakeSource({'b': 2.0}))['verdict'] == 'fail'
    assert _gate.evaluate(metrics, FakeSource({'b': 0.5}))['verdict'] == 'inconclusive'


# ---------------------------------------------------------------------------- compare mode

def noisy(seed, count, factor=1.0):
    rng = random.Random(seed)
    return [factor * rng.lognormvariate(math.log(100), 0.1) for _index in range(count)]


def compare_metrics(**extra):
    metric = dict(name='latency', query='lat{app="{{ target }}"}')
    metric.update(extra)
    return prepare([metric], mode='compare', compare=_gate.compare_settings({'window': '10m', 'step': '10s'}))


def test_compare_identical_series_pass():
    series = noisy(1, 60)
    source = FakeSource(series={'podinfo-primary': series, 'podinfo': list(series)})
    gate = _gate.evaluate(compare_metrics(), source, mode='compare', compare=_gate.compare_settings({}), now=1000.0)
    assert gate['verdict'] == 'pass' and gate['score'] == 100.0
    assert gate['metrics'][0]['classification'] == 'pass'


def test_compare_twice_the_latency_fails():
    source = FakeSource(series={'podinfo-primary': noisy(2, 60), 'podinfo"': noisy(3, 60, factor=2.0)})
    gate = _gate.evaluate(compare_metrics(direction='increase'), source, mode='compare',
                          compare=_gate.compare_settings({}), now=1000.0)
    assert gate['verdict'] == 'fail'
    assert gate['metrics'][0]['classification'] == 'high' and gate['metrics'][0]['ratio'] > 1.8


def test_compare_small_noise_passes():
    source = FakeSource(series={'podinfo-primary': noisy(4, 60), 'podinfo"': noisy(5, 60)})
    gate = _gate.evaluate(compare_metrics(), source, mode='compare', compare=_gate.compare_settings({}), now=1000.0)
    assert gate['verdict'] == 'pass'


def test_compare_no_data_follows_the_policy():
    source = FakeSource(series={'podinfo-primary': noisy(4, 60)})
    for policy, verdict in (('fail', 'fail'), ('inconclusive', 'inconclusive'), ('pass', 'pass')):
        gate = _gate.evaluate(compare_metrics(no_data_policy=policy), source, mode='compare',
                              compare=_gate.compare_settings({}), now=1000.0)
        assert gate['verdict'] == verdict


def test_compare_outage_fails():
    source = FakeSource(offline=SourceUnavailable('connection refused'))
    gate = _gate.evaluate(compare_metrics(no_data_policy='pass'), source, mode='compare',
                          compare=_gate.compare_settings({}), now=1000.0)
    assert gate['verdict'] == 'fail' and 'connection refused' in gate['metrics'][0]['message']


@pytest.mark.parametrize('options, fragment', [
    ({'step': '20m'}, 'must not exceed compare.window'),
    ({'window': '5 minutes'}, 'compare.window'),
    ({'confidence': 1.5}, 'between 0 and 1'),
    ({'pass_score': 50, 'marginal_score': 80}, 'marginal_score'),
    ({'outliers': 'trim'}, 'keep, remove'),
    ({'window': '30d'}, 'compare.window'),
    ({'window': '10h', 'step': '1s'}, 'more than 11000 points'),
])
def test_compare_settings_are_checked(options, fragment):
    with pytest.raises(GateError) as info:
        _gate.compare_settings(options)
    assert fragment in str(info.value)


# ------------------------------------------------------------------ failed checks and record

@pytest.mark.parametrize('mode, before, verdict, after', [
    ('cumulative', 2, 'fail', 3), ('cumulative', 2, 'pass', 2), ('cumulative', 2, 'inconclusive', 2),
    ('consecutive', 2, 'fail', 3), ('consecutive', 2, 'pass', 0), ('consecutive', 2, 'inconclusive', 2),
    ('cumulative', None, 'fail', 1),
])
def test_failed_checks(mode, before, verdict, after):
    assert _gate.next_failed_checks(before, verdict, mode) == after


def gate_result(verdict='fail', value=98.0):
    source = FakeSource({'istio_requests_total': value, 'istio_request_duration': 47.5})
    gate = _gate.evaluate(metrics_for_threshold(), source)
    assert gate['verdict'] == verdict
    return gate


def test_record_counts_and_appends_history():
    status = {'failedChecks': 1, 'runId': 'abc-1', 'canaryWeight': 20, 'iterations': 0, 'phase': 'Progressing'}
    analysis = spec(threshold=5)['analysis']
    new_status, failed, reached, message = _gate.record(status, gate_result(), analysis, NOW)
    assert failed == 2 and new_status['failedChecks'] == 2 and not reached
    entry = new_status['gateHistory'][-1]
    assert set(entry) <= set(_canary.GATE_ENTRY_FIELDS)
    assert entry['runId'] == 'abc-1' and entry['weight'] == 20 and entry['iteration'] == 1 and new_status['iterations'] == 1
    assert entry['verdict'] == 'fail' and entry['failedChecks'] == 2 and entry['time'] == '2026-01-31T12:00:00Z'
    assert entry['metrics'][0] == {'name': 'request-success-rate', 'verdict': 'fail', 'value': 98.0, 'min': 99.0}
    assert status['failedChecks'] == 1  # the input is not modified


def test_record_message_lists_every_metric_against_its_range():
    _status, _failed, reached, message = _gate.record({}, gate_result(), spec()['analysis'], NOW)
    assert reached  # default threshold 1, as in Flagger
    assert 'request-success-rate 98 (min 99) FAIL' in message
    assert 'request-duration 47.5 (max 500) pass' in message
    assert 'failed checks 1 of threshold 1: threshold reached, roll back' in message


def test_record_consecutive_mode_forgives_on_pass():
    analysis = spec(threshold=3, failedChecksMode='consecutive')['analysis']
    new_status, failed, reached, _message = _gate.record({'failedChecks': 2}, gate_result('pass', 99.9), analysis, NOW)
    assert failed == 0 and not reached


def test_record_keeps_json_safe_values():
    metrics = prepare([{'name': 'request-duration', 'threshold_range': {'max': 500}}])
    gate = _gate.evaluate(metrics, FakeSource({'istio': float('inf')}))
    new_status, _failed, _reached, _message = _gate.record({}, gate, {}, NOW)
    assert new_status['gateHistory'][-1]['metrics'][0]['value'] == 'inf'


def test_record_mentions_no_value_and_why():
    gate = _gate.evaluate(prepare([{'name': 'request-success-rate', 'threshold_range': {'min': 99},
                                    'no_data_policy': 'inconclusive'}]), FakeSource({}))
    _status, failed, _reached, message = _gate.record({'failedChecks': 0}, gate, {}, NOW)
    assert failed == 0
    assert 'request-success-rate no value (min 99; no data' in message and 'inconclusive' in message


def test_record_keeps_the_history_bounded():
    status = {'gateHistory': [{'verdict': 'pass'}] * _canary.GATE_HISTORY_LIMIT}
    new_status = _gate.record(status, gate_result(), {}, NOW)[0]
    assert len(new_status['gateHistory']) == _canary.GATE_HISTORY_LIMIT
    assert new_status['gateHistory'][-1]['verdict'] == 'fail'
