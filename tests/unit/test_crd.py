# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Canary CRD is structural, matches the Python model, and keeps what the model writes."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import os
import re

import pytest
import yaml

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as canary

CRD_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        'crds', 'canary.yaml')
VALID_TYPES = ('object', 'array', 'string', 'integer', 'number', 'boolean')


@pytest.fixture(scope='module')
def crd():
    with open(CRD_PATH) as handle:
        documents = [doc for doc in yaml.safe_load_all(handle) if doc]
    assert len(documents) == 1
    return documents[0]


@pytest.fixture(scope='module')
def version(crd):
    versions = crd['spec']['versions']
    assert len(versions) == 1
    return versions[0]


@pytest.fixture(scope='module')
def schema(version):
    return version['schema']['openAPIV3Schema']


def _walk(node, path='', free=False):
    """Yield (path, node, under_preserve_unknown) for every schema node."""
    yield path, node, free
    free = free or bool(node.get('x-kubernetes-preserve-unknown-fields'))
    for name, child in (node.get('properties') or {}).items():
        yield from _walk(child, '%s.%s' % (path, name), free)
    if isinstance(node.get('additionalProperties'), dict):
        yield from _walk(node['additionalProperties'], path + '{}', free)
    if isinstance(node.get('items'), dict):
        yield from _walk(node['items'], path + '[]', free)


def _node(schema, dotted):
    node = schema
    for part in dotted.split('.'):
        if part == '[]':
            node = node['items']
        else:
            node = node['properties'][part]
    return node


def test_identity(crd, version):
    assert crd['apiVersion'] == 'apiextensions.k8s.io/v1'
    assert crd['kind'] == 'CustomResourceDefinition'
    assert crd['metadata']['name'] == canary.CRD_NAME == 'canaries.progressive.delivery'
    spec = crd['spec']
    assert spec['group'] == canary.API_GROUP
    assert spec['scope'] == 'Namespaced'
    names = spec['names']
    assert names['kind'] == canary.KIND and names['plural'] == canary.PLURAL
    assert names['singular'] == 'canary' and names['listKind'] == 'CanaryList'
    assert names['shortNames'] == ['pdcanary', 'pdc']
    assert version['name'] == canary.API_VERSION_NAME
    assert version['served'] is True and version['storage'] is True


def test_status_subresource(version):
    assert version['subresources'] == {'status': {}}


def test_printer_columns(version):
    columns = dict((column['name'], column) for column in version['additionalPrinterColumns'])
    assert columns['Status']['jsonPath'] == '.status.phase'
    assert columns['Weight']['jsonPath'] == '.status.canaryWeight'
    assert columns['FailedChecks']['jsonPath'] == '.status.failedChecks'
    assert columns['LastTransitionTime']['jsonPath'] == '.status.lastTransitionTime'
    assert columns['LastTransitionTime']['type'] == 'date'
    default_columns = [c['name'] for c in version['additionalPrinterColumns'] if not c.get('priority')]
    assert default_columns == ['Status', 'Weight', 'FailedChecks', 'LastTransitionTime']
    for column in version['additionalPrinterColumns']:
        assert column['type'] in ('string', 'integer', 'number', 'boolean', 'date')


def test_printer_columns_point_at_schema_fields(version, schema):
    for column in version['additionalPrinterColumns']:
        node = _node(schema, column['jsonPath'].lstrip('.'))
        expected = 'string' if column['type'] == 'date' else column['type']
        assert node['type'] == expected, column


def test_schema_is_structural(schema):
    assert schema['type'] == 'object'
    assert schema['properties']['metadata'] == {'type': 'object'}, 'metadata may only be typed'
    for path, node, free in _walk(schema):
        special = node.get('x-kubernetes-int-or-string') or node.get('x-kubernetes-preserve-unknown-fields')
        if 'type' not in node:
            assert special, '%s has no type' % (path or '<root>')
        else:
            assert node['type'] in VALID_TYPES, path
        if node.get('x-kubernetes-int-or-string'):
            assert 'type' not in node, '%s: int-or-string nodes must not set type' % path
        if 'properties' in node:
            assert node.get('type') == 'object', '%s has properties but is not an object' % path
            assert 'additionalProperties' not in node, '%s mixes properties and additionalProperties' % path
        if node.get('type') == 'array':
            assert isinstance(node.get('items'), dict), '%s is an array without items' % path
        if node.get('type') == 'object' and 'additionalProperties' in node:
            assert isinstance(node['additionalProperties'], dict), path
        for forbidden in ('$ref', 'definitions', 'dependencies', 'patternProperties', 'default'):
            assert forbidden not in node, '%s uses %s' % (path, forbidden)
        for required in node.get('required') or []:
            assert required in (node.get('properties') or {}), '%s requires unknown %s' % (path, required)
        for value in node.get('enum') or []:
            kind = node.get('type')
            assert (kind == 'string' and isinstance(value, str)) or kind != 'string', path
        if 'pattern' in node:
            re.compile(node['pattern'])


def test_free_form_nodes_are_where_flagger_is_free_form(schema):
    free = sorted(path for path, node, _free in _walk(schema) if node.get('x-kubernetes-preserve-unknown-fields'))
    assert free == sorted([
        '.spec.analysis.match[]',
        '.spec.service.match[]', '.spec.service.headers', '.spec.service.corsPolicy',
        '.spec.service.trafficPolicy', '.spec.service.mirror[]',
        '.status.gateHistory[].metrics',
    ])


def test_validation_bounds(schema):
    analysis = _node(schema, 'spec.analysis')['properties']
    for field in ('stepWeight', 'maxWeight', 'mirrorWeight', 'stepWeightPromotion'):
        assert (analysis[field]['minimum'], analysis[field]['maximum']) == (0, 100), field
    assert (analysis['stepWeights']['items']['minimum'], analysis['stepWeights']['items']['maximum']) == (1, 100)
    assert analysis['threshold']['minimum'] == 1
    assert analysis['iterations']['minimum'] == 0
    assert analysis['failedChecksMode']['enum'] == list(canary.FAILED_CHECKS_MODES)
    metric = analysis['metrics']['items']['properties']
    assert metric['noDataPolicy']['enum'] == list(canary.NO_DATA_POLICIES)
    assert _node(schema, 'spec.progressDeadlineSeconds')['minimum'] == 1
    assert 'enum' not in _node(schema, 'spec.provider'), 'providers are validated in Python'
    assert _node(schema, 'spec.service.targetPort') == {
        'description': _node(schema, 'spec.service.targetPort')['description'], 'x-kubernetes-int-or-string': True}
    webhook_types = analysis['webhooks']['items']['properties']['type']['enum']
    assert set(webhook_types) == set(canary.WEBHOOK_TYPES) | {''}


@pytest.mark.parametrize('text', ['30s', '1m', '1m30s', '500ms', '2h', '1.5h', '10s', '5 minutes', '1d', '60',
                                  '', 'm', '1m 30s'])
def test_duration_pattern_agrees_with_parse_duration(schema, text):
    pattern = _node(schema, 'spec.analysis.interval')['pattern']
    try:
        canary.parse_duration(text)
        python_accepts = True
    except ValueError:
        python_accepts = False
    assert bool(re.match(pattern, text)) == python_accepts
    for other in ('spec.analysis.metrics.[].interval', 'spec.analysis.webhooks.[].timeout'):
        assert _node(schema, other)['pattern'] == pattern


def test_status_fields(schema):
    status = _node(schema, 'status')['properties']
    assert status['phase']['enum'] == list(canary.PHASES)
    for field in ('canaryWeight', 'primaryWeight', 'iterations', 'failedChecks', 'observedGeneration'):
        assert status[field]['type'] == 'integer', field
    for field in ('lastAppliedSpec', 'lastPromotedSpec', 'runId', 'message'):
        assert status[field]['type'] == 'string', field
    assert status['trackedConfigs']['additionalProperties'] == {'type': 'string'}
    assert status['lastTransitionTime']['format'] == 'date-time'
    assert sorted(status['lock']['properties']) == sorted(
        ['holder', 'acquiredAt', 'renewedAt', 'expiresAt', 'leaseDurationSeconds'])
    assert status['lock']['nullable'] is True, 'release_lock writes lock: null'
    condition = status['conditions']['items']['properties']
    assert sorted(condition) == sorted(['type', 'status', 'reason', 'message', 'lastUpdateTime',
                                        'lastTransitionTime'])
    history = status['gateHistory']
    assert history['maxItems'] == canary.GATE_HISTORY_LIMIT
    assert set(canary.GATE_ENTRY_FIELDS) == set(history['items']['properties'])


def _pruned(value, node, path=''):
    """Paths of value the apiserver would prune (fields the schema does not declare)."""
    if node.get('x-kubernetes-preserve-unknown-fields'):
        return []
    lost = []
    if isinstance(value, dict):
        properties = node.get('properties')
        for key, child in value.items():
            if properties is not None and key in properties:
                lost += _pruned(child, properties[key], '%s.%s' % (path, key))
            elif isinstance(node.get('additionalProperties'), dict):
                lost += _pruned(child, node['additionalProperties'], '%s.%s' % (path, key))
            else:
                lost.append('%s.%s' % (path, key))
    elif isinstance(value, list) and isinstance(node.get('items'), dict):
        for index, child in enumerate(value):
            lost += _pruned(child, node['items'], '%s[%d]' % (path, index))
    return lost


def test_everything_python_accepts_survives_the_apiserver(schema):
    spec = {
        'targetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'podinfo'},
        'autoscalerRef': {'apiVersion': 'autoscaling/v2', 'kind': 'HorizontalPodAutoscaler', 'name': 'podinfo',
                          'primaryScalerReplicas': {'minReplicas': 2, 'maxReplicas': 4}},
        'provider': 'istio',
        'metricsServer': 'http://prometheus:9090',
        'progressDeadlineSeconds': 120,
        'service': {'port': 9898, 'gateways': ['gw'], 'hosts': ['a.example.com'], 'timeout': '5s',
                    'retries': {'attempts': 3, 'perTryTimeout': '1s', 'retryOn': '5xx'},
                    'trafficPolicy': {'tls': {'mode': 'ISTIO_MUTUAL'}},
                    'apex': {'labels': {'a': 'b'}}, 'gatewayRefs': [{'name': 'gw', 'namespace': 'istio'}]},
        'analysis': {
            'interval': '30s', 'threshold': 3, 'stepWeight': 10, 'maxWeight': 50, 'mirror': True,
            'mirrorWeight': 20, 'stepWeightPromotion': 50, 'failedChecksMode': 'consecutive',
            'sessionAffinity': {'cookieName': 'c', 'maxAge': 60},
            'match': [{'headers': {'x': {'exact': 'y'}}}],
            'metrics': [{'name': 'request-success-rate', 'threshold': 99},
                        {'name': 'latency', 'templateRef': {'name': 't', 'namespace': 'n'},
                         'templateVariables': {'a': 'b'}, 'thresholdRange': {'max': 5},
                         'noDataPolicy': 'inconclusive'}],
            'webhooks': [{'name': 'w', 'url': 'http://x/', 'type': 'confirm-promotion', 'metadata': {'a': 'b'},
                          'muteAlert': True, 'retries': 2}],
            'alerts': [{'name': 'a', 'severity': 'warn', 'providerRef': {'name': 'slack', 'namespace': 'x'}}],
        },
    }
    normalised = canary.validate_spec(spec)
    assert _pruned(normalised, _node(schema, 'spec'), 'spec') == []
    status = canary.set_phase({}, 'Initialized', canary.parse_time('2026-01-31T12:00:00Z'))
    status = canary.start_run(status, 'abcdef0123456789', 'run-1', canary.parse_time('2026-01-31T12:01:00Z'))
    status = canary.acquire_lock(status, 'awx-job-1', canary.parse_time('2026-01-31T12:01:00Z'), 300)
    status = canary.append_gate_result(status, {'time': '2026-01-31T12:02:00Z', 'runId': 'run-1', 'weight': 10,
                                                'iteration': 1, 'verdict': 'pass', 'failedChecks': 0,
                                                'metrics': {'request-success-rate': 99.9}, 'message': 'ok'})
    status['trackedConfigs'] = canary.tracked_configs({('ConfigMap', 'cfg'): {'a': '1'}})
    assert _pruned(status, _node(schema, 'status'), 'status') == []


def test_python_field_lists_are_in_the_crd(schema):
    spec = _node(schema, 'spec')['properties']
    assert set(canary._SPEC_FIELDS) == set(spec)
    assert set(canary._ANALYSIS_FIELDS) == set(spec['analysis']['properties'])
    assert set(canary._SERVICE_FIELDS) == set(spec['service']['properties'])
    assert set(canary._METRIC_FIELDS) == set(spec['analysis']['properties']['metrics']['items']['properties'])
    assert set(canary._WEBHOOK_FIELDS) == set(spec['analysis']['properties']['webhooks']['items']['properties'])
