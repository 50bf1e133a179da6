# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import datetime

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as canary
from ansible_collections.progressive.delivery.plugins.module_utils._canary import (
    LockHeldError, PhaseTransitionError, SpecError,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)


def minimal_spec(**analysis):
    analysis.setdefault('stepWeight', 10)
    return {
        'targetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'podinfo'},
        'service': {'port': 9898},
        'analysis': analysis,
    }


def template(image='ghcr.io/stefanprodan/podinfo:6.0.0', **extra_spec):
    pod_spec = {'containers': [{'name': 'podinfo', 'image': image, 'ports': [{'containerPort': 9898}]}]}
    pod_spec.update(extra_spec)
    return {'metadata': {'labels': {'app': 'podinfo'}}, 'spec': pod_spec}


# ------------------------------------------------------------------ durations

@pytest.mark.parametrize('text, seconds', [
    ('30s', 30.0), ('1m', 60.0), ('1m30s', 90.0), ('500ms', 0.5), ('2h', 7200.0), ('1.5h', 5400.0),
    ('1h2m3s', 3723.0), (' 10s ', 10.0), ('0s', 0.0),
])
def test_parse_duration_accepts_go_forms(text, seconds):
    assert canary.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize('text', ['5 minutes', '', '10', '1d', 'm', '-1s', '1m 30s', 60, None, True])
def test_parse_duration_rejects_other_forms_and_names_accepted_ones(text):
    with pytest.raises(ValueError) as info:
        canary.parse_duration(text)
    assert '"1m30s"' in str(info.value)


def test_interval_five_minutes_is_a_spec_error_naming_the_field():
    with pytest.raises(SpecError) as info:
        canary.validate_spec(minimal_spec(interval='5 minutes'))
    assert info.value.field == 'analysis.interval'
    assert str(info.value).startswith('analysis.interval')
    assert '"5 minutes"' in str(info.value) and '"30s"' in str(info.value)


def test_time_round_trip_and_offsets():
    assert canary.format_time(NOW) == '2026-01-31T12:00:00Z'
    assert canary.parse_time('2026-01-31T12:00:00Z') == NOW
    assert canary.parse_time('2026-01-31T13:00:00+01:00') == NOW
    assert canary.parse_time('2026-01-31T12:00:00.250Z') == NOW + datetime.timedelta(milliseconds=250)
    # naive datetimes are UTC
    assert canary.format_time(datetime.datetime(2026, 1, 31, 12)) == '2026-01-31T12:00:00Z'
    with pytest.raises(ValueError):
        canary.parse_time('yesterday')


# ------------------------------------------------------------------ validate_spec: defaults

def test_defaults_are_flaggers():
    spec = canary.validate_spec(minimal_spec())
    assert spec['provider'] == 'kubernetes'
    assert spec['progressDeadlineSeconds'] == 600
    assert spec['skipAnalysis'] is False and spec['suspend'] is False and spec['revertOnDeletion'] is False
    assert spec['service'] == {'port': 9898, 'name': 'podinfo', 'portName': 'http', 'targetPort': 9898,
                               'portDiscovery': False}
    analysis = spec['analysis']
    assert analysis['interval'] == '1m'
    assert analysis['threshold'] == 1
    assert analysis['maxWeight'] == 100
    assert analysis['failedChecksMode'] == 'cumulative'
    assert analysis['primaryReadyThreshold'] == 100 and analysis['canaryReadyThreshold'] == 100
    assert analysis['mirror'] is False
    assert analysis['metrics'] == [] and analysis['webhooks'] == [] and analysis['alerts'] == []


def test_nulls_mean_unset():
    raw = minimal_spec(threshold=None, maxWeight=None, metrics=None, sessionAffinity=None)
    raw['service'].update(name=None, portName=None, targetPort=None, apex=None)
    raw['provider'] = None
    spec = canary.validate_spec(raw)
    assert spec == canary.validate_spec(minimal_spec())


def test_validate_does_not_mutate_input_and_is_idempotent():
    raw = minimal_spec(metrics=[{'name': 'request-success-rate', 'threshold': 99}])
    before = copy.deepcopy(raw)
    once = canary.validate_spec(raw)
    assert raw == before
    assert canary.validate_spec(once) == once


def test_metric_and_webhook_defaults():
    spec = canary.validate_spec(minimal_spec(
        metrics=[{'name': 'request-success-rate', 'thresholdRange': {'min': 99}},
                 {'name': 'error-rate', 'query': 'sum(rate(x[1m]))', 'noDataPolicy': 'inconclusive'}],
        webhooks=[{'name': 'load', 'url': 'http://loadtester.test/'}],
        alerts=[{'name': 'ops', 'providerRef': {'name': 'slack'}}],
    ))
    first, second = spec['analysis']['metrics']
    assert first['interval'] == '1m' and first['noDataPolicy'] == 'fail'
    assert second['noDataPolicy'] == 'inconclusive'
    hook = spec['analysis']['webhooks'][0]
    assert hook['type'] == 'rollout' and hook['timeout'] == '10s' and hook['retries'] == 0
    assert spec['analysis']['alerts'][0]['severity'] == 'info'


def test_zero_values_mean_unset_as_in_flagger():
    spec = canary.validate_spec(minimal_spec(iterations=0, stepWeightPromotion=0, maxWeight=0))
    assert 'iterations' not in spec['analysis']
    assert 'stepWeightPromotion' not in spec['analysis']
    assert spec['analysis']['maxWeight'] == 100


def test_step_weights_set_max_weight_to_last_entry():
    raw = minimal_spec(stepWeights=[1, 5, 10, 50])
    del raw['analysis']['stepWeight']
    assert canary.validate_spec(raw)['analysis']['maxWeight'] == 50


def test_skip_analysis_needs_no_strategy():
    raw = minimal_spec()
    raw['analysis'] = {}
    raw['skipAnalysis'] = True
    assert canary.validate_spec(raw)['skipAnalysis'] is True


def test_provider_aliases_are_kept_and_mapped_to_families():
    for provider, family in [('gatewayapi:v1', 'gatewayapi'), ('linkerd', 'smi'), ('osm', 'smi'),
                             ('istio', 'istio'), ('smi', 'smi')]:
        spec = minimal_spec()
        spec['provider'] = provider
        assert canary.validate_spec(spec)['provider'] == provider
        assert canary.provider_family(provider) == family


def test_default_provider_argument():
    assert canary.validate_spec(minimal_spec(), default_provider='istio')['provider'] == 'istio'


def test_deprecated_metric_threshold_becomes_threshold_range():
    spec = canary.validate_spec(minimal_spec(metrics=[
        {'name': 'request-success-rate', 'threshold': 99},
        {'name': 'request-duration', 'threshold': 500},
    ]))
    success, duration = spec['analysis']['metrics']
    assert success['thresholdRange'] == {'min': 99} and 'threshold' not in success
    assert duration['thresholdRange'] == {'max': 500}


# ------------------------------------------------------------------ validate_spec: errors

def _error(spec, **kwargs):
    with pytest.raises(SpecError) as info:
        canary.validate_spec(spec, **kwargs)
    message = str(info.value)
    # every message starts with the field it is about
    assert message.startswith(info.value.field.split('[')[0]), message
    return info.value


def _with(path, value, spec=None):
    spec = copy.deepcopy(spec or minimal_spec())
    node = spec
    keys = path.split('.')
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return spec


_DELETE = object()


@pytest.mark.parametrize('path, value, field, fragment', [
    ('targetRef.name', _DELETE, 'targetRef.name', 'required'),
    ('targetRef.name', 'PodInfo', 'targetRef.name', 'lowercase'),
    ('targetRef.name', 'a' * 254, 'targetRef.name', 'at most 253'),
    ('targetRef.kind', 'DaemonSet', 'targetRef.kind', 'later release'),
    ('targetRef.kind', 'StatefulSet', 'targetRef.kind', 'must be Deployment'),
    ('targetRef.apiVersion', 'apps/v1beta1', 'targetRef.apiVersion', 'apps/v1'),
    ('targetRef.namespace', 'other', 'targetRef.namespace', 'own namespace'),
    ('service.port', _DELETE, 'service.port', 'required'),
    ('service.port', 70000, 'service.port', 'between 1 and 65535'),
    ('service.port', '80', 'service.port', 'integer'),
    ('service.name', '9lives', 'service.name', 'starting with a letter'),
    ('service.name', 'a' * 56, 'service.name', '-primary'),
    ('service.targetPort', 0.5, 'service.targetPort', 'port number or a container port name'),
    ('service.targetPort', 70000, 'service.targetPort', '65535'),
    ('service.timeout', 'forever', 'service.timeout', '"30s"'),
    ('service.hosts', 'app.example.com', 'service.hosts', 'list of strings'),
    ('service.meshName', 'global', 'service.meshName', 'remove it'),
    ('provider', 'appmesh', 'provider', 'istio'),
    ('provider', 'nginx', 'ingressRef', 'required with provider nginx'),
    ('metricsServer', 9090, 'metricsServer', 'URL'),
    ('progressDeadlineSeconds', 0, 'progressDeadlineSeconds', 'at least 1'),
    ('progressDeadlineSeconds', -5, 'progressDeadlineSeconds', 'at least 1'),
    ('suspend', 'yes', 'suspend', 'true or false'),
    ('routeRef', {'name': 'x'}, 'routeRef', 'remove it'),
    ('anlysis', {}, 'anlysis', 'did you mean analysis'),
    ('analysis.stepWeight', 150, 'analysis.stepWeight', 'between 1 and 100, got 150'),
    ('analysis.stepWeight', -1, 'analysis.stepWeight', 'between 1 and 100'),
    ('analysis.maxWeight', 101, 'analysis.maxWeight', 'between 1 and 100, got 101'),
    ('analysis.maxWeight', 5, 'analysis.stepWeight', 'must not exceed analysis.maxWeight'),
    ('analysis.threshold', 0, 'analysis.threshold', 'at least 1'),
    ('analysis.iterations', -1, 'analysis.iterations', 'at least 1'),
    ('analysis.iterations', 10, 'analysis.iterations', 'remove analysis.stepWeight'),
    ('analysis.stepWeights', [10, 20], 'analysis.stepWeights', 'mutually exclusive'),
    ('analysis.interval', '0s', 'analysis.interval', 'longer than zero'),
    ('analysis.failedChecksMode', 'sometimes', 'analysis.failedChecksMode', 'cumulative, consecutive'),
    ('analysis.mirror', True, 'analysis.mirror', 'use provider gatewayapi or istio'),
    ('analysis.mirrorWeight', 10, 'analysis.mirrorWeight', 'set mirror'),
    ('analysis.primaryReadyThreshold', 120, 'analysis.primaryReadyThreshold', 'between 0 and 100'),
    ('analysis.sessionAffinity', {'maxAge': 10}, 'analysis.sessionAffinity', 'use provider'),
    ('analysis.stepSize', 10, 'analysis.stepSize', 'did you mean analysis.stepWeight'),
    ('analysis.metrics', {'name': 'x'}, 'analysis.metrics', 'must be a list'),
    ('analysis.metrics', ['x'], 'analysis.metrics[0]', 'must be a mapping'),
    ('analysis.metrics', [{'query': 'up'}], 'analysis.metrics[0].name', 'required'),
    ('analysis.metrics', [{'name': 'error-rate'}], 'analysis.metrics[0].query', 'only request-success-rate'),
    ('analysis.metrics', [{'name': 'e', 'query': 'q', 'templateRef': {'name': 't'}}],
     'analysis.metrics[0].query', 'keep one'),
    ('analysis.metrics', [{'name': 'e', 'templateRef': {}}], 'analysis.metrics[0].templateRef.name', 'required'),
    ('analysis.metrics', [{'name': 'request-duration', 'interval': '1 minute'}],
     'analysis.metrics[0].interval', '"30s"'),
    ('analysis.metrics', [{'name': 'request-duration', 'noDataPolicy': 'ignore'}],
     'analysis.metrics[0].noDataPolicy', 'fail, inconclusive, pass'),
    ('analysis.metrics', [{'name': 'request-duration', 'thresholdRange': {'min': 5, 'max': 1}}],
     'analysis.metrics[0].thresholdRange', 'must not exceed'),
    ('analysis.metrics', [{'name': 'request-duration', 'thresholdRange': {'max': '500'}}],
     'analysis.metrics[0].thresholdRange.max', 'number'),
    ('analysis.metrics', [{'name': 'request-duration'}, {'name': 'request-duration'}],
     'analysis.metrics[1].name', 'unique'),
    ('analysis.metrics', [{'name': 'e', 'query': 'q', 'templateVariables': {'n': 1}}],
     'analysis.metrics[0].templateVariables', 'strings'),
    ('analysis.webhooks', [{'name': 'w', 'url': 'loadtester/'}], 'analysis.webhooks[0].url', 'http://'),
    ('analysis.webhooks', [{'name': 'w', 'url': 'http://x/', 'type': 'pre'}], 'analysis.webhooks[0].type',
     'pre-rollout'),
    ('analysis.webhooks', [{'url': 'http://x/'}], 'analysis.webhooks[0].name', 'required'),
    ('analysis.webhooks', [{'name': 'w', 'url': 'http://x/', 'metadata': {'n': 1}}],
     'analysis.webhooks[0].metadata', 'quote numbers'),
    ('analysis.alerts', [{'name': 'a'}], 'analysis.alerts[0].providerRef.name', 'required'),
    ('analysis.alerts', [{'name': 'a', 'providerRef': {'name': 'p'}, 'severity': 'fatal'}],
     'analysis.alerts[0].severity', 'info, warn, error'),
])
def test_spec_errors_name_field_and_fix(path, value, field, fragment):
    error = _error(_with(path, value))
    assert error.field == field
    assert fragment in str(error), str(error)


def test_long_target_name_needs_a_service_name():
    spec = _with('targetRef.name', 'a' * 60)
    error = _error(spec)
    assert error.field == 'service.name' and 'set service.name' in str(error)
    spec['service']['name'] = 'short'
    assert canary.validate_spec(spec)['service']['name'] == 'short'


def test_missing_target_ref_and_service():
    assert _error({'service': {'port': 80}, 'analysis': {'stepWeight': 5}}).field == 'targetRef'
    assert _error({'targetRef': {'name': 'a'}, 'analysis': {'stepWeight': 5}}).field == 'service'
    assert _error(['not', 'a', 'mapping']).field == 'spec'


def test_no_strategy_is_an_error_unless_skip_analysis():
    spec = minimal_spec()
    spec['analysis'] = {'interval': '30s'}
    error = _error(spec)
    assert error.field == 'analysis' and 'skipAnalysis' in str(error)


@pytest.mark.parametrize('weights, fragment', [
    ([10, 5, 50], 'strictly increasing'),
    ([10, 10], 'strictly increasing'),
    ([0, 10], 'between 1 and 100'),
    ([10, 150], 'between 1 and 100, got 150'),
    ([10, '20'], 'integer'),
    ('10,20', 'list of weights'),
])
def test_step_weights_errors(weights, fragment):
    spec = minimal_spec(stepWeights=weights)
    del spec['analysis']['stepWeight']
    error = _error(spec)
    assert error.field == 'analysis.stepWeights'
    assert fragment in str(error)


def test_max_weight_conflicting_with_step_weights():
    spec = minimal_spec(stepWeights=[10, 20], maxWeight=50)
    del spec['analysis']['stepWeight']
    assert _error(spec).field == 'analysis.maxWeight'
    spec['analysis']['maxWeight'] = 20
    assert canary.validate_spec(spec)['analysis']['maxWeight'] == 20


def test_features_allowed_where_the_router_supports_them():
    spec = minimal_spec(mirror=True, mirrorWeight=50, sessionAffinity={'cookieName': 'c'})
    spec['provider'] = 'istio'
    normalised = canary.validate_spec(spec)
    assert normalised['analysis']['sessionAffinity'] == {'cookieName': 'c', 'maxAge': 86400}
    ab = minimal_spec(match=[{'headers': {'x-canary': {'exact': 'insider'}}}], iterations=10)
    del ab['analysis']['stepWeight']
    ab['provider'] = 'nginx'
    ab['ingressRef'] = {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress', 'name': 'podinfo'}
    assert canary.validate_spec(ab)['analysis']['iterations'] == 10
    ab['provider'] = 'linkerd'
    assert _error(ab).field == 'analysis.match'


def test_session_affinity_needs_cookie_name():
    spec = minimal_spec(sessionAffinity={'maxAge': 10})
    spec['provider'] = 'istio'
    assert _error(spec).field == 'analysis.sessionAffinity.cookieName'


def test_ingress_ref_name_checked():
    spec = minimal_spec()
    spec['ingressRef'] = {'kind': 'Ingress'}
    assert _error(spec).field == 'ingressRef.name'


# ------------------------------------------------------------------ weights, strategy, failed checks

@pytest.mark.parametrize('analysis, steps', [
    ({'stepWeight': 10, 'maxWeight': 50}, [10, 20, 30, 40, 50]),
    ({'stepWeights': [1, 5, 10, 50]}, [1, 5, 10, 50]),
    ({'stepWeight': 20, 'maxWeight': 50}, [20, 40, 50]),
    ({'stepWeight': 25}, [25, 50, 75, 100]),
    ({'stepWeight': 30}, [30, 60, 90, 100]),
    ({'stepWeight': 50, 'maxWeight': 50}, [50]),
    ({'iterations': 10}, []),
    ({}, []),
    (None, []),
])
def test_weight_steps(analysis, steps):
    assert canary.weight_steps(analysis) == steps


def test_next_weight():
    analysis = {'stepWeight': 10, 'maxWeight': 30}
    assert canary.next_weight(analysis, 0) == 10
    assert canary.next_weight(analysis, 10) == 20
    assert canary.next_weight(analysis, 25) == 30
    assert canary.next_weight(analysis, 30) is None


@pytest.mark.parametrize('analysis, expected', [
    ({'stepWeight': 10}, 'canary'),
    ({'stepWeight': 10, 'match': [{'headers': {}}]}, 'canary'),
    ({'stepWeight': 10, 'mirror': True}, 'canary'),
    ({'iterations': 10}, 'bluegreen'),
    ({'iterations': 10, 'mirror': True}, 'bluegreen-mirror'),
    ({'iterations': 10, 'match': [{'headers': {}}]}, 'ab'),
    # match wins over mirror, as in Flagger's scheduler
    ({'iterations': 10, 'match': [{'headers': {}}], 'mirror': True}, 'ab'),
])
def test_strategy_precedence(analysis, expected):
    assert canary.strategy({'analysis': analysis}) == expected


def test_failed_checks_modes():
    assert canary.next_failed_checks(2, passed=False) == 3
    assert canary.next_failed_checks(2, passed=True) == 2
    assert canary.next_failed_checks(2, passed=True, mode='consecutive') == 0
    assert canary.next_failed_checks(None, passed=False, mode='consecutive') == 1
    with pytest.raises(SpecError):
        canary.next_failed_checks(0, True, mode='other')
    assert canary.threshold_reached({'failedChecks': 2}, {'threshold': 2})
    assert not canary.threshold_reached({'failedChecks': 1}, {'threshold': 2})
    assert canary.threshold_reached({'failedChecks': 1}, {})


# ------------------------------------------------------------------ Flagger manifests

FLAGGER_MANIFEST = {
    'apiVersion': 'flagger.app/v1beta1',
    'kind': 'Canary',
    'metadata': {'name': 'podinfo', 'namespace': 'test'},
    'spec': {
        'provider': 'istio',
        'targetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'podinfo'},
        'autoscalerRef': {'apiVersion': 'autoscaling/v2', 'kind': 'HorizontalPodAutoscaler', 'name': 'podinfo'},
        'progressDeadlineSeconds': 60,
        'service': {
            'port': 9898, 'targetPort': 9898, 'gateways': ['public-gateway.istio-system.svc.cluster.local'],
            'hosts': ['app.example.com'],
            'trafficPolicy': {'tls': {'mode': 'DISABLE'}},
            'retries': {'attempts': 3, 'perTryTimeout': '1s', 'retryOn': 'gateway-error'},
        },
        'analysis': {
            'interval': '1m', 'threshold': 5, 'maxWeight': 50, 'stepWeight': 10,
            'metrics': [
                {'name': 'request-success-rate', 'thresholdRange': {'min': 99}, 'interval': '1m'},
                {'name': 'request-duration', 'threshold': 500, 'interval': '30s'},
            ],
            'webhooks': [
                {'name': 'acceptance-test', 'type': 'pre-rollout', 'url': 'http://flagger-loadtester.test/',
                 'timeout': '30s', 'metadata': {'type': 'bash', 'cmd': 'curl -s http://podinfo-canary:9898/token'}},
                {'name': 'load-test', 'url': 'http://flagger-loadtester.test/',
                 'metadata': {'cmd': 'hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/'}},
            ],
        },
    },
}


def test_flagger_manifest_converts_field_for_field():
    spec = canary.flagger_manifest_to_spec(FLAGGER_MANIFEST)
    assert spec['provider'] == 'istio'
    assert spec['targetRef'] == FLAGGER_MANIFEST['spec']['targetRef']
    assert spec['autoscalerRef']['name'] == 'podinfo'
    assert spec['progressDeadlineSeconds'] == 60
    assert spec['service']['trafficPolicy'] == {'tls': {'mode': 'DISABLE'}}
    assert spec['analysis']['threshold'] == 5
    assert canary.weight_steps(spec['analysis']) == [10, 20, 30, 40, 50]
    assert spec['analysis']['metrics'][1]['thresholdRange'] == {'max': 500}
    assert spec['analysis']['webhooks'][1]['type'] == 'rollout'
    assert FLAGGER_MANIFEST['spec']['analysis']['metrics'][1] == {
        'name': 'request-duration', 'threshold': 500, 'interval': '30s'}, 'input must not be modified'


def test_flagger_manifest_notes_and_silent_conflicts():
    manifest = copy.deepcopy(FLAGGER_MANIFEST)
    manifest['spec']['analysis'].update(threshold=0, stepWeights=[5, 10], iterations=0)
    manifest['spec']['service']['meshName'] = 'global'
    spec, notes = canary.convert_flagger_manifest(manifest)
    assert spec['analysis']['threshold'] == 1
    assert spec['analysis']['stepWeight'] == 10 and 'stepWeights' not in spec['analysis']
    assert 'meshName' not in spec['service']
    text = ' | '.join(notes)
    assert 'threshold' in text and 'stepWeights dropped' in text and 'service.meshName dropped' in text


def test_flagger_iterations_win_over_weights():
    manifest = copy.deepcopy(FLAGGER_MANIFEST)
    manifest['spec']['analysis']['iterations'] = 10
    spec, notes = canary.convert_flagger_manifest(manifest)
    assert canary.strategy(spec) == 'bluegreen'
    assert 'stepWeight' not in spec['analysis'] and 'maxWeight' not in spec['analysis']
    assert any('iterations' in note for note in notes)


def test_flagger_step_weights_drop_max_weight():
    manifest = copy.deepcopy(FLAGGER_MANIFEST)
    analysis = manifest['spec']['analysis']
    del analysis['stepWeight']
    analysis['stepWeights'] = [1, 5, 10, 30]
    spec = canary.flagger_manifest_to_spec(manifest)
    assert spec['analysis']['maxWeight'] == 30


def test_flagger_legacy_canary_analysis_and_default_provider():
    manifest = copy.deepcopy(FLAGGER_MANIFEST)
    manifest['spec']['canaryAnalysis'] = manifest['spec'].pop('analysis')
    del manifest['spec']['provider']
    spec, notes = canary.convert_flagger_manifest(manifest, default_provider='linkerd')
    assert spec['provider'] == 'linkerd'
    assert spec['analysis']['maxWeight'] == 50
    assert any('canaryAnalysis' in note for note in notes)
    assert canary.flagger_manifest_to_spec(manifest)['provider'] == 'kubernetes'


@pytest.mark.parametrize('change, field', [
    ({'apiVersion': 'flagger.app/v1alpha3'}, 'apiVersion'),
    ({'kind': 'MetricTemplate'}, 'kind'),
    ({'spec.targetRef.kind': 'DaemonSet'}, 'targetRef.kind'),
    ({'spec.targetRef.kind': 'Service'}, 'targetRef.kind'),
    ({'spec.provider': 'appmesh'}, 'provider'),
    ({'spec.provider': 'contour'}, 'provider'),
])
def test_flagger_manifest_we_cannot_take(change, field):
    manifest = copy.deepcopy(FLAGGER_MANIFEST)
    for path, value in change.items():
        node = manifest
        keys = path.split('.')
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    with pytest.raises(SpecError) as info:
        canary.flagger_manifest_to_spec(manifest)
    assert info.value.field == field


def test_flagger_route_ref_dropped():
    manifest = copy.deepcopy(FLAGGER_MANIFEST)
    manifest['spec']['upstreamRef'] = {'name': 'x'}
    spec, notes = canary.convert_flagger_manifest(manifest)
    assert 'upstreamRef' not in spec and notes


def test_canary_resource():
    spec = canary.validate_spec(minimal_spec())
    obj = canary.canary_resource('podinfo', 'test', spec, labels={'team': 'a'})
    assert obj['apiVersion'] == 'progressive.delivery/v1alpha1' and obj['kind'] == 'Canary'
    assert obj['metadata'] == {'name': 'podinfo', 'namespace': 'test', 'labels': {'team': 'a'}}
    assert obj['spec'] == spec and obj['spec'] is not spec
    with pytest.raises(SpecError):
        canary.canary_resource('Bad_Name', 'test', spec)


# ------------------------------------------------------------------ names

def test_names():
    assert canary.primary_name('podinfo') == 'podinfo-primary'
    assert canary.primary_config_name('podinfo-config') == 'podinfo-config-primary'
    assert canary.canary_service_name('podinfo') == 'podinfo-canary'
    assert canary.primary_service_name('podinfo') == 'podinfo-primary'
    spec = canary.validate_spec(minimal_spec())
    assert canary.service_names(spec) == ('podinfo', 'podinfo-primary', 'podinfo-canary')
    spec['service']['name'] = 'web'
    assert canary.service_names(spec) == ('web', 'web-primary', 'web-canary')
    assert canary.apex_service_name({'targetRef': {'name': 'x'}}) == 'x'


def test_constants():
    assert canary.API_VERSION == 'progressive.delivery/v1alpha1'
    assert canary.API_GROUP == 'progressive.delivery' and canary.KIND == 'Canary'
    assert canary.CONFIG_TRACKING_ANNOTATION == 'progressive.delivery/config-tracking'
    assert canary.CONFIG_TRACKING_DISABLED == 'disabled'
    assert canary.GATE_HISTORY_LIMIT == 50
    assert set(canary.PHASES) == set(canary.ALLOWED_TRANSITIONS)


# ------------------------------------------------------------------ revisions and configs

def test_hash_is_stable_across_key_order():
    first = {'metadata': {'labels': {'app': 'a', 'tier': 'web'}, 'annotations': {'x': '1'}},
             'spec': {'containers': [{'name': 'c', 'image': 'i:1', 'env': [{'name': 'A', 'value': '1'}]}]}}
    second = {'spec': {'containers': [{'env': [{'value': '1', 'name': 'A'}], 'image': 'i:1', 'name': 'c'}]},
              'metadata': {'annotations': {'x': '1'}, 'labels': {'tier': 'web', 'app': 'a'}}}
    configs_a = {('ConfigMap', 'a'): {'k': 'v', 'z': 'y'}, ('Secret', 's'): 'abc'}
    configs_b = {'secret/s': 'abc', 'configmap/a': {'z': 'y', 'k': 'v'}}
    assert canary.revision_hash(first, configs_a) == canary.revision_hash(second, configs_b)
    assert len(canary.revision_hash(first)) == 16
    int(canary.revision_hash(first), 16)


def test_hash_changes_with_image_and_config_data():
    base = canary.revision_hash(template(), {('ConfigMap', 'cfg'): {'level': 'info'}})
    assert canary.revision_hash(template(image='podinfo:6.0.1'), {('ConfigMap', 'cfg'): {'level': 'info'}}) != base
    assert canary.revision_hash(template(), {('ConfigMap', 'cfg'): {'level': 'debug'}}) != base
    assert canary.revision_hash(template(), {('Secret', 'cfg'): {'level': 'info'}}) != base
    assert canary.revision_hash(template(), {}) != base
    assert canary.revision_hash(template(), None) == canary.revision_hash(template(), {})


def test_hash_ignores_creation_timestamp_and_nulls_but_not_restarted_at():
    base = canary.revision_hash(template())
    stamped = template()
    stamped['metadata']['creationTimestamp'] = None
    assert canary.revision_hash(stamped) == base
    stamped['metadata']['creationTimestamp'] = '2026-01-01T00:00:00Z'
    assert canary.revision_hash(stamped) == base
    nulls = template()
    nulls['spec']['nodeSelector'] = None
    assert canary.revision_hash(nulls) == base
    only_stamp = {'metadata': {'creationTimestamp': None}, 'spec': template()['spec']}
    assert canary.revision_hash(only_stamp) == canary.revision_hash({'spec': template()['spec']})
    restarted = template()
    restarted['metadata']['annotations'] = {'kubectl.kubernetes.io/restartedAt': '2026-01-31T12:00:00Z'}
    assert canary.revision_hash(restarted) != base


def test_hash_does_not_mutate_input():
    stamped = template()
    stamped['metadata']['creationTimestamp'] = None
    before = copy.deepcopy(stamped)
    canary.revision_hash(stamped)
    assert stamped == before


def test_config_checksum_and_tracked_configs():
    assert canary.config_checksum({'a': '1'}) == canary.config_checksum({'a': '1'}, {})
    assert canary.config_checksum({'a': '1'}) != canary.config_checksum({'a': '1'}, {'b': 'AA=='})
    tracked = canary.tracked_configs({('ConfigMap', 'cfg'): {'a': '1'}, 'Secret/db': 'cafe'})
    assert tracked == {'configmap/cfg': canary.config_checksum({'a': '1'}), 'secret/db': 'cafe'}
    assert canary.config_key('ConfigMap', 'x') == 'configmap/x'


def test_tracking_opt_out_and_secret_types():
    disabled = {'metadata': {'annotations': {'progressive.delivery/config-tracking': 'disabled'}}}
    assert canary.is_config_tracking_disabled(disabled)
    assert canary.is_config_tracking_disabled(disabled['metadata'])
    assert not canary.is_config_tracking_disabled({'metadata': {'annotations': {'flagger.app/x': 'y'}}})
    assert not canary.is_config_tracking_disabled({'metadata': {}})
    assert canary.is_trackable_secret({'type': 'Opaque'})
    assert canary.is_trackable_secret({})
    assert canary.is_trackable_secret({'type': 'kubernetes.io/tls'})
    assert not canary.is_trackable_secret({'type': 'kubernetes.io/dockerconfigjson'})
    assert not canary.is_trackable_secret({'type': 'kubernetes.io/service-account-token'})


POD_SPEC = {
    'initContainers': [{
        'name': 'init',
        'env': [{'name': 'MODE', 'valueFrom': {'configMapKeyRef': {'name': 'init-config', 'key': 'mode'}}}],
    }],
    'containers': [
        {
            'name': 'app',
            'env': [
                {'name': 'PLAIN', 'value': 'x'},
                {'name': 'POD', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.name'}}},
                {'name': 'LEVEL', 'valueFrom': {'configMapKeyRef': {'name': 'app-config', 'key': 'level'}}},
                {'name': 'PASSWORD', 'valueFrom': {'secretKeyRef': {'name': 'db-secret', 'key': 'password'}}},
            ],
            'envFrom': [{'configMapRef': {'name': 'app-env'}}, {'secretRef': {'name': 'app-secret-env'}},
                        {'prefix': 'X_', 'configMapRef': {'name': 'app-config'}}],
        },
        {'name': 'sidecar', 'envFrom': [{'secretRef': {'name': 'sidecar-secret'}}]},
    ],
    'volumes': [
        {'name': 'config', 'configMap': {'name': 'app-files'}},
        {'name': 'tls', 'secret': {'secretName': 'app-tls'}},
        {'name': 'scratch', 'emptyDir': {}},
        {'name': 'bundle', 'projected': {'sources': [
            {'configMap': {'name': 'bundle-config'}},
            {'secret': {'name': 'bundle-secret'}},
            {'serviceAccountToken': {'path': 'token'}},
            {'downwardAPI': {'items': []}},
        ]}},
    ],
    'imagePullSecrets': [{'name': 'registry'}],
}


def test_referenced_configs_everywhere():
    assert canary.referenced_configs(POD_SPEC) == [
        ('ConfigMap', 'app-config'), ('ConfigMap', 'app-env'), ('ConfigMap', 'app-files'),
        ('ConfigMap', 'bundle-config'), ('ConfigMap', 'init-config'),
        ('Secret', 'app-secret-env'), ('Secret', 'app-tls'), ('Secret', 'bundle-secret'),
        ('Secret', 'db-secret'), ('Secret', 'sidecar-secret'),
    ]
    assert canary.referenced_configs({}) == []
    assert canary.referenced_configs(None) == []


def test_rewrite_config_refs_points_tracked_configs_at_primary_copies():
    refs = [('ConfigMap', 'app-config'), ('ConfigMap', 'init-config'), ('ConfigMap', 'bundle-config'),
            ('Secret', 'app-tls'), ('Secret', 'db-secret'), ('Secret', 'bundle-secret'), ('Secret', 'app-secret-env')]
    before = copy.deepcopy(POD_SPEC)
    rewritten = canary.rewrite_config_refs(POD_SPEC, canary.primary_config_names(refs))
    assert POD_SPEC == before, 'input must not be modified'
    assert canary.referenced_configs(rewritten) == [
        ('ConfigMap', 'app-config-primary'), ('ConfigMap', 'app-env'), ('ConfigMap', 'app-files'),
        ('ConfigMap', 'bundle-config-primary'), ('ConfigMap', 'init-config-primary'),
        ('Secret', 'app-secret-env-primary'), ('Secret', 'app-tls-primary'), ('Secret', 'bundle-secret-primary'),
        ('Secret', 'db-secret-primary'), ('Secret', 'sidecar-secret'),
    ]
    app = rewritten['containers'][0]
    assert app['envFrom'][2] == {'prefix': 'X_', 'configMapRef': {'name': 'app-config-primary'}}
    assert app['env'][3]['valueFrom']['secretKeyRef'] == {'name': 'db-secret-primary', 'key': 'password'}
    assert rewritten['imagePullSecrets'] == [{'name': 'registry'}]


def test_rewrite_is_kind_specific():
    pod_spec = {'volumes': [{'name': 'a', 'configMap': {'name': 'same'}}, {'name': 'b', 'secret': {'secretName': 'same'}}]}
    rewritten = canary.rewrite_config_refs(pod_spec, {('Secret', 'same'): 'same-primary'})
    assert rewritten['volumes'][0]['configMap']['name'] == 'same'
    assert rewritten['volumes'][1]['secret']['secretName'] == 'same-primary'


# ------------------------------------------------------------------ phases

@pytest.mark.parametrize('old, new', [
    ('', 'Initializing'), ('Initializing', 'Initialized'), ('', 'Initialized'),
    ('Initialized', 'Progressing'), ('Initialized', 'Waiting'), ('Waiting', 'Progressing'),
    ('Progressing', 'Progressing'), ('Progressing', 'WaitingPromotion'), ('WaitingPromotion', 'Promoting'),
    ('WaitingPromotion', 'Progressing'), ('Progressing', 'Promoting'), ('Promoting', 'Finalising'),
    ('Finalising', 'Succeeded'), ('Progressing', 'Failed'), ('Promoting', 'Failed'),
    ('Succeeded', 'Progressing'), ('Failed', 'Progressing'), ('Failed', 'Waiting'),
    ('Progressing', 'Succeeded'), ('Succeeded', 'Terminating'), ('Terminating', 'Terminated'),
    (None, 'Initializing'), ('Succeeded', 'Succeeded'),
])
def test_legal_transitions(old, new):
    canary.check_transition(old, new)


@pytest.mark.parametrize('old, new, fragment', [
    ('Succeeded', 'Promoting', 'start a new run'),
    ('Failed', 'Finalising', 'start a new run'),
    ('Initialized', 'Promoting', 'Progressing'),
    ('', 'Progressing', 'Initialized'),
    ('Terminated', 'Initializing', 'nothing'),
    ('Waiting', 'Succeeded', 'Finalising'),
    ('Progressing', 'Bogus', 'unknown Canary phase'),
])
def test_illegal_transitions(old, new, fragment):
    with pytest.raises(PhaseTransitionError) as info:
        canary.check_transition(old, new)
    assert info.value.old == (old or '') and info.value.new == new
    assert fragment in str(info.value), str(info.value)


def test_is_run_active():
    assert [p for p in canary.PHASES if canary.is_run_active(p)] == [
        'Waiting', 'Progressing', 'WaitingPromotion', 'Promoting', 'Finalising']


def test_set_phase_and_start_run():
    status = canary.set_phase({}, 'Initialized', NOW, message='ready')
    assert status == {'phase': 'Initialized', 'lastTransitionTime': '2026-01-31T12:00:00Z', 'message': 'ready'}
    later = NOW + datetime.timedelta(minutes=5)
    assert canary.set_phase(status, 'Initialized', later)['lastTransitionTime'] == '2026-01-31T12:00:00Z'
    started = canary.start_run(dict(status, failedChecks=3, canaryWeight=40), 'abcdef0123456789',
                               canary.make_run_id('abcdef0123456789', later), later)
    assert started['phase'] == 'Progressing'
    assert started['lastTransitionTime'] == '2026-01-31T12:05:00Z'
    assert started['failedChecks'] == 0 and started['canaryWeight'] == 0 and started['primaryWeight'] == 100
    assert started['lastAppliedSpec'] == 'abcdef0123456789'
    assert started['runId'] == 'abcdef01-20260131120500'
    with pytest.raises(PhaseTransitionError):
        canary.set_phase({'phase': 'Succeeded'}, 'Promoting', NOW)


# ------------------------------------------------------------------ gate history

def test_gate_history_bounded_newest_kept():
    status = {'phase': 'Progressing'}
    for index in range(60):
        status = canary.append_gate_result(status, {'iteration': index, 'verdict': 'pass'})
    history = status['gateHistory']
    assert len(history) == canary.GATE_HISTORY_LIMIT
    assert history[0]['iteration'] == 10 and history[-1]['iteration'] == 59


def test_gate_history_custom_limit_and_purity():
    status = {'gateHistory': [{'iteration': 1}]}
    entry = {'iteration': 2}
    new = canary.append_gate_result(status, entry, limit=1)
    assert new['gateHistory'] == [{'iteration': 2}]
    assert status == {'gateHistory': [{'iteration': 1}]}
    entry['iteration'] = 99
    assert new['gateHistory'] == [{'iteration': 2}]
    with pytest.raises(ValueError):
        canary.append_gate_result(status, entry, limit=0)
    with pytest.raises(ValueError) as info:
        canary.append_gate_result(status, {'iteration': 3, 'canaryValue': 99.1})
    assert 'canaryValue' in str(info.value) and 'metrics' in str(info.value)


# ------------------------------------------------------------------ lock

def test_lock_holder_identity():
    assert canary.lock_holder_identity({'JOB_ID': '42'}) == 'awx-job-42'
    assert canary.lock_holder_identity({'AWX_JOB_ID': '7'}) == 'awx-job-7'
    assert canary.lock_holder_identity({'TOWER_JOB_ID': '9'}) == 'awx-job-9'
    assert canary.lock_holder_identity({}, hostname='ctl', pid=123) == 'ctl:123'
    assert ':' in canary.lock_holder_identity({})


def test_lock_free_held_expired():
    assert canary.lock_state({}, NOW) == 'free'
    assert canary.lock_state({'lock': None}, NOW) == 'free'
    status = canary.acquire_lock({'phase': 'Initialized'}, 'awx-job-1', NOW, 300)
    assert status['phase'] == 'Initialized'
    assert status['lock'] == {
        'holder': 'awx-job-1', 'acquiredAt': '2026-01-31T12:00:00Z', 'renewedAt': '2026-01-31T12:00:00Z',
        'expiresAt': '2026-01-31T12:05:00Z', 'leaseDurationSeconds': 300,
    }
    assert canary.lock_state(status, NOW + datetime.timedelta(seconds=299)) == 'held'
    assert canary.lock_state(status, NOW + datetime.timedelta(seconds=300)) == 'expired'
    assert canary.lock_state({'lock': {'holder': 'x'}}, NOW) == 'expired'


def test_lock_held_by_other_raises_with_holder_and_expiry():
    status = canary.acquire_lock({}, 'awx-job-1', NOW, 300)
    with pytest.raises(LockHeldError) as info:
        canary.acquire_lock(status, 'ctl:99', NOW + datetime.timedelta(seconds=10), 300)
    assert info.value.holder == 'awx-job-1'
    assert info.value.expires_at == '2026-01-31T12:05:00Z'
    assert 'awx-job-1' in str(info.value) and '2026-01-31T12:05:00Z' in str(info.value)


def test_lock_renew_keeps_acquired_at():
    status = canary.acquire_lock({}, 'awx-job-1', NOW, 300)
    later = NOW + datetime.timedelta(seconds=120)
    renewed = canary.acquire_lock(status, 'awx-job-1', later, 300)
    assert renewed['lock']['acquiredAt'] == '2026-01-31T12:00:00Z'
    assert renewed['lock']['renewedAt'] == '2026-01-31T12:02:00Z'
    assert renewed['lock']['expiresAt'] == '2026-01-31T12:07:00Z'


def test_a_gate_renews_the_held_lock_and_leaves_a_free_or_expired_one():
    status = canary.acquire_lock({}, 'awx-job-1', NOW, 300)
    later = NOW + datetime.timedelta(seconds=200)
    renewed = canary.renew_lock(dict(status), later)
    assert renewed['lock']['holder'] == 'awx-job-1' and renewed['lock']['acquiredAt'] == '2026-01-31T12:00:00Z'
    assert renewed['lock']['expiresAt'] == '2026-01-31T12:08:20Z'
    assert canary.renew_lock({'lock': None}, later) == {'lock': None}
    expired = canary.renew_lock(dict(status), NOW + datetime.timedelta(seconds=301))
    assert expired['lock']['expiresAt'] == '2026-01-31T12:05:00Z'


def test_lock_takeover_after_expiry():
    status = canary.acquire_lock({}, 'awx-job-1', NOW, 60)
    later = NOW + datetime.timedelta(seconds=61)
    taken = canary.acquire_lock(status, 'awx-job-2', later, 60)
    assert taken['lock']['holder'] == 'awx-job-2'
    assert taken['lock']['acquiredAt'] == '2026-01-31T12:01:01Z'
    assert status['lock']['holder'] == 'awx-job-1', 'input must not be modified'


def test_lock_release():
    status = canary.acquire_lock({'phase': 'Progressing'}, 'awx-job-1', NOW, 60)
    assert canary.release_lock(status, 'awx-job-2') == status
    released = canary.release_lock(status, 'awx-job-1')
    assert released['lock'] is None and released['phase'] == 'Progressing'
    assert canary.lock_state(released, NOW) == 'free'
    assert canary.release_lock({}, 'awx-job-1') == {'lock': None}


def test_lock_lease_validation_and_naive_now():
    with pytest.raises(ValueError):
        canary.acquire_lock({}, 'a', NOW, 0)
    naive = datetime.datetime(2026, 1, 31, 12, 0, 0)
    status = canary.acquire_lock({}, 'a', naive, 10)
    assert canary.lock_state(status, NOW) == 'held'


def test_lease_seconds_for():
    assert canary.lease_seconds_for(canary.validate_spec(minimal_spec())) == 720
    assert canary.lease_seconds_for({'progressDeadlineSeconds': 60, 'analysis': {'interval': '30s'}}) == 120
