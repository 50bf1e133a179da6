# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the traffic routers against an in-memory API server that counts requests per object."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import json

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as model
from ansible_collections.progressive.delivery.plugins.module_utils import _routers as routers
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeApiError
from ansible_collections.progressive.delivery.plugins.module_utils._routers import (
    RouterError, get_router, set_weights,
)
from ansible_collections.progressive.delivery.plugins.module_utils._routers import gatewayapi, istio, kubernetes, nginx

NS = 'shop'
WRITES = ('create', 'replace', 'delete', 'patch_status')


class FakeKube(object):
    """Just enough of _kube.Kube: objects in a dict, resourceVersions, 409 on a stale replace."""

    def __init__(self, objects=(), dry_run=False):
        self.store = {}
        self.calls = []
        self.dry_run = dry_run
        self.version = 100
        self.conflicts = 0  # the next N replaces fail with 409, as if someone wrote in between
        for obj in objects:
            self._store(copy.deepcopy(obj))

    @staticmethod
    def _key(kind, name, namespace):
        return (kind, namespace, name)

    def _store(self, obj):
        self.version += 1
        obj.setdefault('metadata', {})['resourceVersion'] = str(self.version)
        meta = obj['metadata']
        self.store[self._key(obj['kind'], meta['name'], meta.get('namespace'))] = obj
        return copy.deepcopy(obj)

    @property
    def request_count(self):
        return len(self.calls)

    def calls_for(self, kind, name):
        return [verb for verb, call_kind, call_name in self.calls if (call_kind, call_name) == (kind, name)]

    def writes(self):
        return [call for call in self.calls if call[0] in WRITES]

    def obj(self, kind, name, namespace=NS):
        return copy.deepcopy(self.store.get(self._key(kind, name, namespace)))

    def get(self, api_version, kind, name, namespace=None):
        self.calls.append(('get', kind, name))
        return self.obj(kind, name, namespace)

    def create(self, obj):
        meta = obj['metadata']
        self.calls.append(('create', obj['kind'], meta['name']))
        if self._key(obj['kind'], meta['name'], meta.get('namespace')) in self.store:
            raise KubeApiError('create', obj['kind'], meta['name'], meta.get('namespace'), 409, 'AlreadyExists', 'exists')
        if self.dry_run:
            return copy.deepcopy(obj)
        return self._store(copy.deepcopy(obj))

    def replace(self, obj):
        meta = obj['metadata']
        self.calls.append(('replace', obj['kind'], meta['name']))
        current = self.store.get(self._key(obj['kind'], meta['name'], meta.get('namespace')))
        if current is None:
            raise KubeApiError('replace', obj['kind'], meta['name'], meta.get('namespace'), 404, 'NotFound', 'gone')
        if self.conflicts:
            self.conflicts -= 1
            self._store(copy.deepcopy(current))  # someone else wrote: the version moves on
            raise KubeApiError('replace', obj['kind'], meta['name'], meta.get('namespace'), 409, 'Conflict', 'stale')
        if meta.get('resourceVersion') not in (None, current['metadata']['resourceVersion']):
            raise KubeApiError('replace', obj['kind'], meta['name'], meta.get('namespace'), 409, 'Conflict', 'stale')
        if self.dry_run:
            return copy.deepcopy(obj)
        return self._store(copy.deepcopy(obj))

    def delete(self, api_version, kind, name, namespace=None, propagation_policy='Background'):
        self.calls.append(('delete', kind, name))
        if not self.dry_run:
            self.store.pop(self._key(kind, name, namespace), None)

    def patch_status(self, api_version, kind, name, namespace, patch, patch_type='merge'):
        self.calls.append(('patch_status', kind, name))
        obj = self.store[self._key(kind, name, namespace)]
        if not self.dry_run:
            obj.setdefault('status', {}).update(patch['status'])
            self._store(obj)
        return copy.deepcopy(obj)

    def update_with_retry(self, api_version, kind, name, namespace, mutate, status=False):
        while True:
            current = self.get(api_version, kind, name, namespace)
            desired = mutate(copy.deepcopy(current))
            if desired == current:
                return current, current
            try:
                return current, self.replace(desired)
            except KubeApiError as error:
                if error.status != 409:
                    raise


def make_canary(provider='istio', status=None, **overrides):
    spec = {'targetRef': {'name': 'web'}, 'service': {'port': 80}, 'provider': provider,
            'analysis': {'stepWeight': 10}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = dict(spec[key], **value)
        else:
            spec[key] = value
    return {'apiVersion': model.API_VERSION, 'kind': model.KIND, 'metadata': {'name': 'web', 'namespace': NS},
            'spec': model.validate_spec(spec), 'status': status or {}}


def deployment(name, replicas, labels=None):
    labels = labels or {'app': name}
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name, 'namespace': NS},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels}, 'spec': {'containers': [{'name': 'a', 'image': 'x'}]}}}}


def user_virtual_service():
    return {
        'apiVersion': istio.API_VERSION, 'kind': 'VirtualService',
        'metadata': {'name': 'web', 'namespace': NS, 'annotations': {'team': 'shop'}},
        'spec': {
            'hosts': ['web', 'web.example.com'], 'gateways': ['mesh', 'public-gw'],
            'http': [
                {'name': 'legacy', 'match': [{'uri': {'prefix': '/legacy'}}],
                 'route': [{'destination': {'host': 'legacy'}}]},
                {'name': 'main', 'retries': {'attempts': 3, 'perTryTimeout': '2s'}, 'timeout': '10s',
                 'corsPolicy': {'allowOrigins': [{'exact': 'https://example.com'}]},
                 'headers': {'request': {'set': {'x-env': 'prod'}}},
                 'route': [{'destination': {'host': 'web', 'port': {'number': 80}}}]},
            ]},
    }


# --------------------------------------------------------------------------------------------
# factory and validation
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('provider, family', [
    ('istio', 'istio'), ('gatewayapi:v1', 'gatewayapi'), ('linkerd', 'smi'), ('osm', 'smi'),
    ('nginx', 'nginx'), ('kubernetes', 'kubernetes'),
])
def test_factory_picks_the_router_by_family(provider, family):
    overrides = {'ingressRef': {'name': 'web'}} if provider == 'nginx' else {}
    router = get_router(FakeKube(), make_canary(provider, **overrides))
    assert router.name == family
    assert router.scales_workloads is (family == 'kubernetes')
    # The features the router claims are the ones _canary.validate_spec lets a spec ask for.
    assert router.features == model.PROVIDER_FEATURES[family]


def test_factory_rejects_an_unknown_provider_by_field():
    canary = make_canary()
    canary['spec']['provider'] = 'traefik'
    with pytest.raises(RouterError) as err:
        get_router(FakeKube(), canary)
    assert err.value.field == 'provider'
    assert 'traefik' in str(err.value) and 'istio' in str(err.value)


@pytest.mark.parametrize('primary, canary_weight, field, text', [
    (0, 101, 'canary_weight', 'between 0 and 100, got 101'),
    (101, -1, 'primary_weight', 'between 0 and 100, got 101'),
    (100, 'ten', 'canary_weight', "integer between 0 and 100, got 'ten'"),
    (100, True, 'canary_weight', 'integer'),
    (50, 40, 'primary_weight', 'must sum to 100'),
])
def test_weights_are_checked_before_any_request(primary, canary_weight, field, text):
    kube = FakeKube()
    with pytest.raises(RouterError) as err:
        get_router(kube, make_canary()).set_routes(make_canary(), primary, canary_weight)
    assert err.value.field == field and text in str(err.value)
    assert kube.calls == []


@pytest.mark.parametrize('provider, kwargs, field, words', [
    ('smi', dict(match=[{'headers': {'x': {'exact': 'y'}}}]), 'match', 'supports weights only'),
    ('smi', dict(mirrored=True), 'mirror', 'use provider gatewayapi or istio'),
    ('nginx', dict(mirrored=True), 'mirror', 'supports weights, match conditions (A/B testing)'),
    ('kubernetes', dict(mirrored=True), 'mirror', 'the kubernetes router'),
    ('kubernetes', dict(match=[{'headers': {'x': {'exact': 'y'}}}]), 'match', 'use provider gatewayapi or istio or nginx'),
])
def test_unsupported_requests_name_the_router_and_what_it_supports(provider, kwargs, field, words):
    canary = make_canary(provider, **({'ingressRef': {'name': 'web'}} if provider == 'nginx' else {}))
    kube = FakeKube()
    with pytest.raises(RouterError) as err:
        get_router(kube, canary).set_routes(canary, 90, 10, **kwargs)
    assert err.value.field == field
    assert provider in str(err.value) and words in str(err.value)
    assert kube.calls == []


def test_mirror_weight_without_mirror_is_refused():
    with pytest.raises(RouterError) as err:
        get_router(FakeKube(), make_canary()).check(make_canary(), 100, 0, mirrored=False, mirror_weight=50)
    assert err.value.field == 'mirror_weight'


# --------------------------------------------------------------------------------------------
# istio
# --------------------------------------------------------------------------------------------

def test_istio_reconcile_creates_a_virtual_service_at_100_0():
    kube = FakeKube()
    canary = make_canary(service={'port': 80, 'hosts': ['web.example.com'], 'timeout': '5s'})
    router = get_router(kube, canary)
    assert router.reconcile(canary) is True
    vs = kube.obj('VirtualService', 'web')
    assert vs['spec']['hosts'] == ['web.example.com', 'web']
    assert vs['spec']['gateways'] == ['mesh']
    assert vs['spec']['http'] == [{'timeout': '5s', 'route': [
        {'destination': {'host': 'web-primary'}, 'weight': 100},
        {'destination': {'host': 'web-canary'}, 'weight': 0}]}]
    assert vs['metadata']['annotations'][routers.MANAGED_ANNOTATION] == 'created'
    assert router.get_routes(canary) == (100, 0, False)
    kube.calls = []
    assert router.reconcile(canary) is False
    assert kube.writes() == []


def test_istio_set_routes_reads_once_writes_once_and_only_when_different():
    kube = FakeKube()
    canary = make_canary()
    router = get_router(kube, canary)
    router.reconcile(canary)
    for weight in (0, 5, 10, 50, 0):
        kube.calls = []
        changed, before, after = router.set_routes(canary, 100 - weight, weight)
        assert kube.calls_for('VirtualService', 'web') == (['get', 'replace'] if changed else ['get'])
        assert after['weights'] == {'primary': 100 - weight, 'canary': weight, 'mirrored': False}
        assert router.get_routes(canary) == (100 - weight, weight, False)
        kube.calls = []
        assert router.set_routes(canary, 100 - weight, weight)[0] is False
        assert kube.calls == [('get', 'VirtualService', 'web')]
    assert before['objects']['VirtualService/web']['spec']['http'][0]['route'][1]['weight'] == 50


def test_istio_adopts_a_user_virtual_service_and_finalize_restores_it():
    original = user_virtual_service()
    kube = FakeKube([original])
    canary = make_canary()
    router = get_router(kube, canary)
    assert router.reconcile(canary) is True
    vs = kube.obj('VirtualService', 'web')
    assert vs['spec']['hosts'] == original['spec']['hosts']
    assert vs['spec']['gateways'] == original['spec']['gateways']
    legacy, main = vs['spec']['http']
    assert legacy == original['spec']['http'][0]
    for key in ('name', 'retries', 'timeout', 'corsPolicy', 'headers'):
        assert main[key] == original['spec']['http'][1][key]
    assert main['route'] == [{'destination': {'host': 'web-primary', 'port': {'number': 80}}, 'weight': 100},
                             {'destination': {'host': 'web-canary', 'port': {'number': 80}}, 'weight': 0}]
    annotations = vs['metadata']['annotations']
    assert annotations['team'] == 'shop'
    assert json.loads(annotations[routers.ORIGINAL_SPEC_ANNOTATION]) == original['spec']

    router.set_routes(canary, 70, 30)
    vs = kube.obj('VirtualService', 'web')
    assert vs['spec']['http'][0] == original['spec']['http'][0]
    assert vs['spec']['http'][1]['retries'] == original['spec']['http'][1]['retries']
    assert router.get_routes(canary) == (70, 30, False)
    assert router.reconcile(canary) is False  # a run in progress keeps its weights

    assert router.finalize(canary) is True
    vs = kube.obj('VirtualService', 'web')
    assert vs['spec'] == original['spec']
    assert vs['metadata']['annotations'] == {'team': 'shop'}


def test_istio_refuses_to_adopt_a_virtual_service_without_a_route_to_the_apex():
    vs = user_virtual_service()
    vs['spec']['http'] = vs['spec']['http'][:1]
    kube = FakeKube([vs])
    with pytest.raises(RouterError) as err:
        get_router(kube, make_canary()).reconcile(make_canary())
    assert 'no http route whose destinations are all the apex Service web' in str(err.value)
    assert kube.writes() == []


def test_istio_ab_match_route_in_front_of_the_weighted_route():
    kube = FakeKube()
    canary = make_canary(service={'port': 80, 'match': [{'uri': {'prefix': '/api'}}]})
    router = get_router(kube, canary)
    router.reconcile(canary)
    match = [{'headers': {'X-Canary': {'exact': 'insider'}}},
             {'headers': {'cookie': {'regex': '^(.*?;)?(canary=always)(;.*)?$'}}},
             {'sourceLabels': {'app': 'tester'}}]
    changed, _before, after = router.set_routes(canary, 0, 100, match=match)
    assert changed and after['weights'] == {'primary': 0, 'canary': 100, 'mirrored': False}
    ab, base = kube.obj('VirtualService', 'web')['spec']['http']
    assert ab['name'] == routers.MATCH_ROUTE_NAME
    assert ab['match'] == [
        {'uri': {'prefix': '/api'}, 'headers': {'x-canary': {'exact': 'insider'}}},
        {'uri': {'prefix': '/api'}, 'headers': {'cookie': {'regex': '^(.*?;)?(canary=always)(;.*)?$'}}},
        {'uri': {'prefix': '/api'}, 'sourceLabels': {'app': 'tester'}}]
    assert [d['weight'] for d in ab['route']] == [0, 100]
    assert [d['weight'] for d in base['route']] == [100, 0]
    assert router.get_routes(canary) == (0, 100, False)
    assert router.set_routes(canary, 0, 100, match=match)[0] is False
    # match=[] drops the A/B route again
    router.set_routes(canary, 100, 0, match=[])
    assert [r.get('name') for r in kube.obj('VirtualService', 'web')['spec']['http']] == [None]


def test_istio_match_syntax_errors_name_the_field():
    router = get_router(FakeKube(), make_canary())
    with pytest.raises(RouterError) as err:
        router.check(make_canary(), 0, 100, match=[{'headers': {'x': {'exact': 'a', 'regex': 'b'}}}])
    assert 'match[0].headers.x must have exactly one of' in str(err.value)
    with pytest.raises(RouterError) as err:
        router.check(make_canary(), 0, 100, match=[{'header': {'x': {'exact': 'a'}}}])
    assert 'unknown field(s) header' in str(err.value)
    with pytest.raises(RouterError) as err:
        router.check(make_canary(), 0, 100, match='x-canary')
    assert err.value.field == 'match'


def test_istio_mirror_and_mirror_percentage():
    kube = FakeKube()
    canary = make_canary()
    router = get_router(kube, canary)
    router.reconcile(canary)
    changed, before, after = router.set_routes(canary, 100, 0, mirrored=True, mirror_weight=50)
    route = kube.obj('VirtualService', 'web')['spec']['http'][0]
    assert route['mirror'] == {'host': 'web-canary'} and route['mirrorPercentage'] == {'value': 50.0}
    assert before['weights']['mirrored'] is False and after['weights']['mirrored'] is True
    assert router.get_routes(canary) == (100, 0, True)
    assert router.set_routes(canary, 100, 0, mirrored=True, mirror_weight=50)[0] is False
    router.set_routes(canary, 90, 10)
    route = kube.obj('VirtualService', 'web')['spec']['http'][0]
    assert 'mirror' not in route and 'mirrorPercentage' not in route


def test_istio_session_affinity_as_flagger():
    kube = FakeKube()
    canary = make_canary(analysis={'stepWeight': 10, 'sessionAffinity': {'cookieName': 'flagger-cookie',
                                                                         'maxAge': 60}})
    router = get_router(kube, canary)
    router.reconcile(canary)
    router.set_routes(canary, 90, 10)
    vs = kube.obj('VirtualService', 'web')
    cookie = vs['metadata']['annotations'][routers.SESSION_COOKIE_ANNOTATION]
    assert cookie.startswith('flagger-cookie=') and len(cookie) == len('flagger-cookie=') + 10
    sticky, weighted = vs['spec']['http']
    assert sticky['name'] == routers.STICKY_ROUTE_NAME
    assert sticky['match'] == [{'headers': {'cookie': {'regex': '.*flagger-cookie.*%s.*' % cookie.split('=')[1]}}}]
    assert [d['weight'] for d in sticky['route']] == [0, 100]
    assert weighted['route'][1]['headers'] == {'response': {'add': {'Set-Cookie': cookie + '; Max-Age=60'}}}
    assert router.get_routes(canary) == (90, 10, False)
    assert router.set_routes(canary, 90, 10)[0] is False  # the same cookie, so nothing to write
    router.set_routes(canary, 80, 20)
    assert kube.obj('VirtualService', 'web')['metadata']['annotations'][routers.SESSION_COOKIE_ANNOTATION] == cookie
    # Back to 0: the cookie is expired for those who have it.
    router.set_routes(canary, 100, 0)
    vs = kube.obj('VirtualService', 'web')
    annotations = vs['metadata']['annotations']
    assert routers.SESSION_COOKIE_ANNOTATION not in annotations
    assert annotations[routers.PREVIOUS_SESSION_COOKIE_ANNOTATION] == cookie
    sticky, weighted = vs['spec']['http']
    assert sticky['headers'] == {'response': {'add': {'Set-Cookie': cookie + '; Max-Age=-1'}}}
    assert [d['weight'] for d in sticky['route']] == [100, 0]
    assert 'headers' not in weighted['route'][1]
    assert router.set_routes(canary, 100, 0)[0] is False


def test_a_conflict_is_resolved_by_reading_again():
    kube = FakeKube()
    canary = make_canary()
    router = get_router(kube, canary)
    router.reconcile(canary)
    kube.conflicts = 1
    kube.calls = []
    changed, _before, _after = router.set_routes(canary, 80, 20)
    assert changed and router.get_routes(canary) == (80, 20, False)
    assert kube.calls_for('VirtualService', 'web')[:4] == ['get', 'replace', 'get', 'replace']


def test_check_mode_writes_nothing():
    kube = FakeKube()
    canary = make_canary()
    get_router(kube, canary).reconcile(canary)
    before = kube.obj('VirtualService', 'web')
    kube.dry_run = True
    changed, _before, after = get_router(kube, canary).set_routes(canary, 50, 50)
    assert changed and after['weights']['canary'] == 50
    assert kube.obj('VirtualService', 'web') == before


# --------------------------------------------------------------------------------------------
# gateway api
# --------------------------------------------------------------------------------------------

def test_gatewayapi_creates_an_httproute_with_explicit_defaults():
    kube = FakeKube()
    canary = make_canary('gatewayapi', service={'port': 9898, 'hosts': ['app.example.com'], 'timeout': '30s',
                                                'gatewayRefs': [{'name': 'public', 'namespace': 'gw'}]})
    router = get_router(kube, canary)
    assert router.reconcile(canary)
    route = kube.obj('HTTPRoute', 'web')
    assert route['spec']['parentRefs'] == [{'group': 'gateway.networking.k8s.io', 'kind': 'Gateway',
                                            'name': 'public', 'namespace': 'gw'}]
    assert route['spec']['hostnames'] == ['app.example.com']
    assert route['spec']['rules'] == [{
        'matches': [{'path': {'type': 'PathPrefix', 'value': '/'}}], 'timeouts': {'request': '30s'},
        'backendRefs': [{'group': '', 'kind': 'Service', 'name': 'web-primary', 'port': 9898, 'weight': 100},
                        {'group': '', 'kind': 'Service', 'name': 'web-canary', 'port': 9898, 'weight': 0}]}]
    assert router.get_routes(canary) == (100, 0, False)


def test_gatewayapi_without_gateway_refs_attaches_to_the_apex_service():
    kube = FakeKube()
    canary = make_canary('gatewayapi')
    get_router(kube, canary).reconcile(canary)
    assert kube.obj('HTTPRoute', 'web')['spec']['parentRefs'] == [
        {'group': '', 'kind': 'Service', 'name': 'web', 'port': 80}]


def test_gatewayapi_ab_matches_and_mirror_filter():
    kube = FakeKube()
    canary = make_canary('gatewayapi')
    router = get_router(kube, canary)
    router.reconcile(canary)
    match = [{'headers': {'x-canary': {'exact': 'insider'}, 'x-team': {'prefix': 'qa.'}},
              'queryParams': {'beta': {'regex': '^1$'}}}]
    router.set_routes(canary, 0, 100, match=match)
    ab, base = kube.obj('HTTPRoute', 'web')['spec']['rules']
    assert ab['name'] == routers.MATCH_ROUTE_NAME
    assert ab['matches'] == [{'path': {'type': 'PathPrefix', 'value': '/'},
                              'headers': [{'name': 'x-canary', 'type': 'Exact', 'value': 'insider'},
                                          {'name': 'x-team', 'type': 'RegularExpression', 'value': r'^qa\..*'}],
                              'queryParams': [{'name': 'beta', 'type': 'RegularExpression', 'value': '^1$'}]}]
    assert [b['weight'] for b in ab['backendRefs']] == [0, 100]
    assert [b['weight'] for b in base['backendRefs']] == [100, 0]
    assert router.get_routes(canary) == (0, 100, False)

    router.set_routes(canary, 100, 0, mirrored=True, mirror_weight=25, match=[])
    rules = kube.obj('HTTPRoute', 'web')['spec']['rules']
    assert len(rules) == 1
    assert rules[0]['filters'] == [{'type': 'RequestMirror', 'requestMirror': {
        'backendRef': {'group': '', 'kind': 'Service', 'name': 'web-canary', 'port': 80}, 'percent': 25}}]
    assert router.get_routes(canary) == (100, 0, True)
    router.set_routes(canary, 100, 0, match=[])
    assert 'filters' not in kube.obj('HTTPRoute', 'web')['spec']['rules'][0]


def test_gatewayapi_rejects_what_an_httproute_cannot_match():
    router = get_router(FakeKube(), make_canary('gatewayapi'))
    with pytest.raises(RouterError) as err:
        router.check(make_canary('gatewayapi'), 0, 100, match=[{'sourceLabels': {'app': 'x'}}])
    assert 'sourceLabels cannot be expressed in a Gateway API HTTPRoute' in str(err.value)


def test_gatewayapi_adopts_a_user_route_and_keeps_parents_and_hostnames():
    user = {'apiVersion': gatewayapi.API_VERSION, 'kind': 'HTTPRoute', 'metadata': {'name': 'web', 'namespace': NS},
            'spec': {'parentRefs': [{'group': 'gateway.networking.k8s.io', 'kind': 'Gateway', 'name': 'edge'}],
                     'hostnames': ['shop.example.com'],
                     'rules': [{'matches': [{'path': {'type': 'PathPrefix', 'value': '/static'}}],
                                'backendRefs': [{'group': '', 'kind': 'Service', 'name': 'cdn', 'port': 80,
                                                 'weight': 1}]},
                               {'matches': [{'path': {'type': 'PathPrefix', 'value': '/'}}],
                                'backendRefs': [{'group': '', 'kind': 'Service', 'name': 'web', 'port': 8080,
                                                 'weight': 1}]}]}}
    kube = FakeKube([user])
    canary = make_canary('gatewayapi')
    router = get_router(kube, canary)
    router.reconcile(canary)
    router.set_routes(canary, 95, 5)
    route = kube.obj('HTTPRoute', 'web')
    assert route['spec']['parentRefs'] == user['spec']['parentRefs']
    assert route['spec']['hostnames'] == user['spec']['hostnames']
    assert route['spec']['rules'][0] == user['spec']['rules'][0]
    assert route['spec']['rules'][1]['backendRefs'] == [
        {'group': '', 'kind': 'Service', 'name': 'web-primary', 'port': 8080, 'weight': 95},
        {'group': '', 'kind': 'Service', 'name': 'web-canary', 'port': 8080, 'weight': 5}]
    router.finalize(canary)
    assert kube.obj('HTTPRoute', 'web')['spec'] == user['spec']


def test_gatewayapi_session_affinity():
    kube = FakeKube()
    canary = make_canary('gatewayapi', analysis={'stepWeight': 10, 'sessionAffinity': {'cookieName': 'sticky'}})
    router = get_router(kube, canary)
    router.reconcile(canary)
    router.set_routes(canary, 90, 10)
    route = kube.obj('HTTPRoute', 'web')
    cookie = route['metadata']['annotations'][routers.SESSION_COOKIE_ANNOTATION]
    sticky, weighted = route['spec']['rules']
    assert sticky['matches'][0]['headers'] == [{'name': 'Cookie', 'type': 'RegularExpression',
                                                'value': '.*sticky.*%s.*' % cookie.split('=')[1]}]
    assert [b['weight'] for b in sticky['backendRefs']] == [0, 100]
    assert weighted['backendRefs'][1]['filters'][0]['responseHeaderModifier']['add'] == [
        {'name': 'Set-Cookie', 'value': cookie + '; Max-Age=86400'}]
    assert router.get_routes(canary) == (90, 10, False)
    assert router.set_routes(canary, 90, 10)[0] is False


# --------------------------------------------------------------------------------------------
# smi
# --------------------------------------------------------------------------------------------

def test_smi_traffic_split_lifecycle():
    kube = FakeKube()
    canary = make_canary('linkerd')
    router = get_router(kube, canary)
    router.reconcile(canary)
    split = kube.obj('TrafficSplit', 'web')
    assert split['apiVersion'] == 'split.smi-spec.io/v1alpha4'
    assert split['spec'] == {'service': 'web', 'backends': [{'service': 'web-primary', 'weight': 100},
                                                            {'service': 'web-canary', 'weight': 0}]}
    router.set_routes(canary, 60, 40)
    assert router.get_routes(canary) == (60, 40, False)
    assert router.finalize(canary) is True
    assert kube.obj('TrafficSplit', 'web') is None


# --------------------------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------------------------

def user_ingress():
    return {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress',
            'metadata': {'name': 'web', 'namespace': NS, 'labels': {'app': 'web'},
                         'annotations': {'nginx.ingress.kubernetes.io/rewrite-target': '/',
                                         'kubectl.kubernetes.io/last-applied-configuration': '{}'}},
            'spec': {'ingressClassName': 'nginx', 'rules': [{'host': 'shop.example.com', 'http': {'paths': [
                {'path': '/', 'pathType': 'Prefix', 'backend': {'service': {'name': 'web', 'port': {'number': 80}}}},
                {'path': '/img', 'pathType': 'Prefix',
                 'backend': {'service': {'name': 'images', 'port': {'number': 80}}}}]}}]}}


def test_nginx_canary_ingress_beside_the_untouched_user_ingress():
    kube = FakeKube([user_ingress()])
    canary = make_canary('nginx', ingressRef={'name': 'web'})
    router = get_router(kube, canary)
    assert router.reconcile(canary) is True
    copy_ = kube.obj('Ingress', 'web-canary')
    paths = copy_['spec']['rules'][0]['http']['paths']
    assert paths[0]['backend']['service']['name'] == 'web-canary'
    assert paths[1]['backend']['service']['name'] == 'images'
    annotations = copy_['metadata']['annotations']
    assert annotations[nginx.CANARY] == 'true' and annotations[nginx.CANARY_WEIGHT] == '0'
    assert annotations['nginx.ingress.kubernetes.io/rewrite-target'] == '/'
    assert 'kubectl.kubernetes.io/last-applied-configuration' not in annotations
    for weight in (5, 10, 50, 0):
        router.set_routes(canary, 100 - weight, weight)
        assert router.get_routes(canary) == (100 - weight, weight, False)
    router.set_routes(canary, 0, 100, match=[{'headers': {'x-canary': {'exact': 'insider'}}},
                                             {'headers': {'cookie': {'exact': 'canary'}}}])
    annotations = kube.obj('Ingress', 'web-canary')['metadata']['annotations']
    assert annotations[nginx.CANARY_BY_HEADER] == 'x-canary'
    assert annotations[nginx.CANARY_BY_HEADER_VALUE] == 'insider'
    assert annotations[nginx.CANARY_BY_COOKIE] == 'canary'
    assert annotations[nginx.CANARY_WEIGHT] == '0'
    assert router.get_routes(canary) == (0, 100, False)
    router.set_routes(canary, 100, 0, match=[{'headers': {'x-canary': {'regex': '^in.*'}}}])
    annotations = kube.obj('Ingress', 'web-canary')['metadata']['annotations']
    assert not any(key in annotations for key in nginx._MATCH_ANNOTATIONS)
    assert router.get_routes(canary) == (100, 0, False)
    writes_on_user = [call for call in kube.writes() if call[2] == 'web']
    assert writes_on_user == []
    assert kube.obj('Ingress', 'web')['spec'] == user_ingress()['spec']
    assert router.finalize(canary) is True
    assert kube.obj('Ingress', 'web-canary') is None


@pytest.mark.parametrize('match, weight, text', [
    ([{'headers': {'x-a': {'exact': '1'}, 'x-b': {'exact': '2'}}}], 100, 'one header only'),
    ([{'uri': {'prefix': '/api'}}], 100, 'one header and one cookie only'),
    ([{'headers': {'x-a': {'exact': '1'}}}], 50, 'must be 0 (off) or 100 (on), got 50'),
    ([{'headers': {'cookie': {'regex': 'a'}}}], 100, 'regex matching is not supported'),
])
def test_nginx_match_limits(match, weight, text):
    kube = FakeKube([user_ingress()])
    canary = make_canary('nginx', ingressRef={'name': 'web'})
    with pytest.raises(RouterError) as err:
        get_router(kube, canary).set_routes(canary, 100 - weight, weight, match=match)
    assert text in str(err.value)
    assert kube.calls == []


def test_nginx_refuses_a_user_owned_ingress_of_the_canary_name():
    theirs = user_ingress()
    theirs['metadata']['name'] = 'web-canary'
    kube = FakeKube([user_ingress(), theirs])
    canary = make_canary('nginx', ingressRef={'name': 'web'})
    with pytest.raises(RouterError) as err:
        get_router(kube, canary).reconcile(canary)
    assert 'was not created by progressive.delivery' in str(err.value)
    assert kube.writes() == []


# --------------------------------------------------------------------------------------------
# kubernetes (replica ratio)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('total, weight, expected', [
    (4, 0, (4, 0)), (4, 5, (4, 0)), (4, 12, (4, 0)), (4, 13, (3, 1)), (4, 25, (3, 1)), (4, 50, (2, 2)),
    (4, 75, (1, 3)), (4, 99, (1, 4)), (4, 100, (0, 4)), (1, 50, (1, 1)), (1, 49, (1, 0)), (10, 5, (9, 1)),
])
def test_replicas_for(total, weight, expected):
    assert kubernetes.replicas_for(total, weight) == expected


def test_kubernetes_router_scales_both_deployments():
    kube = FakeKube([deployment('web-primary', 4), deployment('web', 0)])
    canary = make_canary('kubernetes')
    router = get_router(kube, canary)
    assert router.reconcile(canary) is True
    annotations = kube.obj('Deployment', 'web-primary')['metadata']['annotations']
    assert annotations[kubernetes.TOTAL_REPLICAS_ANNOTATION] == '4'
    assert router.get_routes(canary) == (100, 0, False)
    for weight, replicas in ((5, (4, 0)), (10, (4, 0)), (50, (2, 2)), (0, (4, 0))):
        kube.calls = []
        changed, _before, after = router.set_routes(canary, 100 - weight, weight)
        for name in ('web-primary', 'web'):
            verbs = kube.calls_for('Deployment', name)
            assert verbs.count('get') == 1 and verbs.count('replace') <= 1
        assert (kube.obj('Deployment', 'web-primary')['spec']['replicas'],
                kube.obj('Deployment', 'web')['spec']['replicas']) == replicas
        assert router.get_routes(canary) == (100 - weight, weight, False)
        assert after['weights']['canary'] == weight
    # Grow first: at 50 the target was scaled up before the primary went down.
    kube.calls = []
    router.set_routes(canary, 50, 50)
    assert [c for c in kube.calls if c[0] == 'replace'] == [('replace', 'Deployment', 'web'),
                                                            ('replace', 'Deployment', 'web-primary')]
    # Someone scaled the target by hand: get_routes reports what the replicas give.
    target = kube.obj('Deployment', 'web')
    target['spec']['replicas'] = 6
    kube.replace(target)
    assert router.get_routes(canary) == (25, 75, False)
    # A reconcile during the run keeps the total.
    router.reconcile(canary)
    assert kube.obj('Deployment', 'web-primary')['metadata']['annotations'][
        kubernetes.TOTAL_REPLICAS_ANNOTATION] == '4'
    router.finalize(canary)
    primary = kube.obj('Deployment', 'web-primary')
    assert primary['spec']['replicas'] == 4
    assert kubernetes.TOTAL_REPLICAS_ANNOTATION not in primary['metadata']['annotations']


def test_kubernetes_router_warns_when_the_apex_service_selects_only_the_primary():
    service = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'web', 'namespace': NS},
               'spec': {'selector': {'app': 'web-primary'}}}
    kube = FakeKube([deployment('web-primary', 2), deployment('web', 0), service])
    router = get_router(kube, make_canary('kubernetes'))
    router.reconcile(make_canary('kubernetes'))
    assert len(router.warnings) == 1 and 'does not select the pods of Deployment web' in router.warnings[0]


def test_kubernetes_router_needs_reconcile_first():
    kube = FakeKube([deployment('web-primary', 2), deployment('web', 0)])
    with pytest.raises(RouterError) as err:
        get_router(kube, make_canary('kubernetes')).set_routes(make_canary('kubernetes'), 50, 50)
    assert 'run canary_init first' in str(err.value)
    assert kube.writes() == []


# --------------------------------------------------------------------------------------------
# finalize gives the apex Service back
# --------------------------------------------------------------------------------------------

def test_finalize_restores_the_apex_service_selector():
    service = {'apiVersion': 'v1', 'kind': 'Service',
               'metadata': {'name': 'web', 'namespace': NS,
                            'annotations': {routers.ORIGINAL_SELECTOR_ANNOTATION: '{"app":"web"}'}},
               'spec': {'selector': {'app': 'web-primary'}}}
    kube = FakeKube([service])
    canary = make_canary('linkerd')
    router = get_router(kube, canary)
    router.reconcile(canary)
    assert router.finalize(canary) is True
    restored = kube.obj('Service', 'web')
    assert restored['spec']['selector'] == {'app': 'web'}
    assert routers.ORIGINAL_SELECTOR_ANNOTATION not in restored['metadata']['annotations']


# --------------------------------------------------------------------------------------------
# set_weights (the mesh_weight module)
# --------------------------------------------------------------------------------------------

def canary_object(provider='istio', **overrides):
    obj = make_canary(provider, **overrides)
    obj['spec'] = dict(obj['spec'])
    return obj


def test_set_weights_routes_records_status_and_is_idempotent():
    kube = FakeKube([canary_object()])
    canary = make_canary()
    get_router(kube, canary).reconcile(canary)
    kube.calls = []
    result = set_weights(kube, 'web', NS, 90, 10)
    assert result['changed'] is True
    assert result['previous'] == {'primary': 100, 'canary': 0, 'mirrored': False}
    assert result['weights'] == {'primary': 90, 'canary': 10, 'mirrored': False}
    assert kube.obj('Canary', 'web')['status'] == {'canaryWeight': 10, 'primaryWeight': 90}
    assert result['diff']['after']['Canary/web/status'] == {'canaryWeight': 10, 'primaryWeight': 90}
    assert kube.calls_for('VirtualService', 'web') == ['get', 'replace']
    assert kube.calls_for('Canary', 'web') == ['get', 'patch_status']
    kube.calls = []
    again = set_weights(kube, 'web', NS, 90, 10)
    assert again['changed'] is False and kube.writes() == []


def test_set_weights_with_the_canary_handed_on_reads_it_not_and_returns_the_written_one():
    kube = FakeKube([canary_object()])
    canary = make_canary()
    get_router(kube, canary).reconcile(canary)
    given = kube.obj('Canary', 'web')
    kube.calls = []
    result = set_weights(kube, 'web', NS, 75, 25, given=given)
    # A step costs the router's read and write and the weight record: 3 requests, no Canary read.
    assert kube.calls_for('Canary', 'web') == ['patch_status'] and len(kube.calls) == 3
    assert result['canary']['status']['canaryWeight'] == 25
    assert result['canary']['metadata']['resourceVersion'] != given['metadata']['resourceVersion']
    assert given['spec'] == kube.obj('Canary', 'web')['spec']  # the caller's copy is not changed


@pytest.mark.parametrize('args, field', [
    ((101, -1), 'primary_weight'),
    ((50, 40), 'primary_weight'),
])
def test_set_weights_bad_input_writes_nothing(args, field):
    kube = FakeKube([canary_object()])
    with pytest.raises(RouterError) as err:
        set_weights(kube, 'web', NS, *args)
    assert err.value.field == field
    assert kube.writes() == []


def test_set_weights_missing_canary_names_it():
    with pytest.raises(RouterError) as err:
        set_weights(FakeKube(), 'nope', NS, 90, 10)
    assert err.value.field == 'name' and 'Canary nope not found in namespace shop' in str(err.value)


def test_set_weights_unknown_provider_and_unsupported_match_write_nothing():
    bad = canary_object()
    bad['spec']['provider'] = 'traefik'
    kube = FakeKube([bad])
    with pytest.raises(RouterError) as err:
        set_weights(kube, 'web', NS, 90, 10)
    assert err.value.field == 'spec.provider' and 'traefik' in str(err.value)
    kube = FakeKube([canary_object('smi')])
    with pytest.raises(RouterError) as err:
        set_weights(kube, 'web', NS, 0, 100, match=[{'headers': {'x': {'exact': '1'}}}])
    assert err.value.field == 'match' and 'smi router' in str(err.value)
    assert kube.writes() == []


def test_set_weights_before_reconcile_says_to_run_canary_init():
    kube = FakeKube([canary_object()])
    with pytest.raises(RouterError) as err:
        set_weights(kube, 'web', NS, 90, 10)
    assert 'VirtualService web not found' in str(err.value) and 'canary_init' in str(err.value)
    assert kube.writes() == []


def test_kubernetes_reconcile_in_check_mode_before_the_primary_exists():
    kube = FakeKube([deployment('web', 3)], dry_run=True)
    assert get_router(kube, make_canary('kubernetes')).reconcile(make_canary('kubernetes')) is True
    assert kube.writes() == []
    kube.dry_run = False
    with pytest.raises(RouterError) as err:
        get_router(kube, make_canary('kubernetes')).reconcile(make_canary('kubernetes'))
    assert 'Deployment web-primary not found' in str(err.value)
