"""The traffic routers against a real API server with the upstream Istio, Gateway API and SMI CRDs.

Every write goes through the API server's own validation (CRD schemas, CEL rules), so "accepted"
here means accepted under the upstream schema. Requests are counted twice: per object (verb, kind,
name) by recording the Kube calls, and in total at the HTTP level with ``Kube.request_count``, so
no hidden request can slip past the "one GET, at most one write per router object" rule.
"""

import json
import sys

import pytest
from kubernetes import client

from ansible_runner import collections_path
from helpers import wait_for

# The collection is imported the way Ansible sees it, through the runner's collections path.
if collections_path() not in sys.path:
    sys.path.insert(0, collections_path())

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as model
from ansible_collections.progressive.delivery.plugins.module_utils._kube import Kube, get_api_client
from ansible_collections.progressive.delivery.plugins.module_utils._routers import (
    MANAGED_ANNOTATION, ORIGINAL_SPEC_ANNOTATION, RouterError, get_router,
)
from ansible_collections.progressive.delivery.plugins.module_utils._routers import kubernetes as kube_router
from ansible_collections.progressive.delivery.plugins.module_utils._routers import nginx as nginx_router

ROUTER_OBJECTS = {
    'istio': [('networking.istio.io/v1', 'VirtualService', 'web')],
    'gatewayapi': [('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web')],
    'smi': [('split.smi-spec.io/v1alpha4', 'TrafficSplit', 'web')],
    'nginx': [('networking.k8s.io/v1', 'Ingress', 'web-canary')],
    'kubernetes': [('apps/v1', 'Deployment', 'web-primary'), ('apps/v1', 'Deployment', 'web')],
}
WALK = (0, 5, 10, 50, 0)


# --------------------------------------------------------------------------------------------
# set-up: what canary_init would have made (primary, services, the Canary resource)
# --------------------------------------------------------------------------------------------

class RecordingKube(Kube):
    """Kube that also records (verb, kind, name) of every call a router makes."""

    def __init__(self, *args, **kwargs):
        super(RecordingKube, self).__init__(*args, **kwargs)
        self.calls = []

    def get(self, api_version, kind, name, namespace=None):
        self.calls.append(('get', kind, name))
        return super(RecordingKube, self).get(api_version, kind, name, namespace)

    def create(self, obj):
        self.calls.append(('create', obj['kind'], obj['metadata']['name']))
        return super(RecordingKube, self).create(obj)

    def replace(self, obj):
        self.calls.append(('replace', obj['kind'], obj['metadata']['name']))
        return super(RecordingKube, self).replace(obj)

    def delete(self, api_version, kind, name, namespace=None, propagation_policy='Background'):
        self.calls.append(('delete', kind, name))
        return super(RecordingKube, self).delete(api_version, kind, name, namespace, propagation_policy)

    def patch_status(self, api_version, kind, name, namespace, patch, patch_type='merge'):
        self.calls.append(('patch_status', kind, name))
        return super(RecordingKube, self).patch_status(api_version, kind, name, namespace, patch, patch_type)

    def verbs_for(self, kind, name):
        return [verb for verb, call_kind, call_name in self.calls if (call_kind, call_name) == (kind, name)]


def new_kube(world, dry_run=False):
    return RecordingKube(get_api_client({'kubeconfig': world.kubeconfig}), dry_run=dry_run)


def _deployment(name, replicas):
    labels = {'app': name}
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name, 'labels': labels},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels},
                                  'spec': {'containers': [{'name': 'app', 'image': 'ghcr.io/stefanprodan/podinfo:6.7.0',
                                                           'ports': [{'containerPort': 9898}]}]}}}}


def _service(name, selector):
    return {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': name},
            'spec': {'selector': {'app': selector}, 'ports': [{'name': 'http', 'port': 80, 'targetPort': 9898}]}}


def setup_app(api_client, namespace, provider, primary_replicas=2, **spec_overrides):
    """Target, primary, the three Services and the Canary resource; returns the Canary as routers get it."""
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, _deployment('web', 0))
    apps.create_namespaced_deployment(namespace, _deployment('web-primary', primary_replicas))
    for name, selector in (('web', 'web-primary'), ('web-primary', 'web-primary'), ('web-canary', 'web')):
        core.create_namespaced_service(namespace, _service(name, selector))
    spec = {'targetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'web'},
            'service': {'port': 80, 'targetPort': 9898}, 'provider': provider,
            'analysis': {'interval': '10s', 'stepWeight': 5, 'maxWeight': 50}}
    if provider == 'nginx':
        spec['ingressRef'] = {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress', 'name': 'web'}
    for key, value in spec_overrides.items():
        spec[key] = dict(spec[key], **value) if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
    body = {'apiVersion': model.API_VERSION, 'kind': model.KIND, 'metadata': {'name': 'web'}, 'spec': spec}
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        model.API_GROUP, model.API_VERSION_NAME, namespace, model.PLURAL, body)
    return read_canary(api_client, namespace)


def read_canary(api_client, namespace, name='web'):
    canary = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        model.API_GROUP, model.API_VERSION_NAME, namespace, model.PLURAL, name)
    canary['spec'] = model.validate_spec(canary['spec'])
    return canary


def user_ingress(namespace):
    return {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress',
            'metadata': {'name': 'web', 'namespace': namespace, 'labels': {'team': 'shop'},
                         'annotations': {'nginx.ingress.kubernetes.io/proxy-body-size': '8m'}},
            'spec': {'ingressClassName': 'nginx', 'rules': [{'host': 'shop.example.com', 'http': {'paths': [
                {'path': '/', 'pathType': 'Prefix', 'backend': {'service': {'name': 'web', 'port': {'number': 80}}}},
                {'path': '/img', 'pathType': 'Prefix',
                 'backend': {'service': {'name': 'images', 'port': {'number': 80}}}}]}}]}}


def resource_versions(kube, canary, provider):
    namespace = canary['metadata']['namespace']
    versions = {}
    for api_version, kind, name in ROUTER_OBJECTS[provider] + [(model.API_VERSION, model.KIND, 'web')]:
        obj = kube.get(api_version, kind, name, namespace)
        if obj and kind == 'Deployment':
            # The controllers keep writing a Deployment's status while kwok starts pods, so its
            # resourceVersion moves on by itself; generation and annotations move only with our writes.
            versions['%s/%s' % (kind, name)] = (obj['metadata']['generation'], obj['metadata'].get('annotations'),
                                                obj['spec']['replicas'])
        else:
            versions['%s/%s' % (kind, name)] = obj['metadata']['resourceVersion'] if obj else None
    return versions


def running_pods(api_client, namespace, app):
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector='app=%s' % app).items
    return len([p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == 'Running'])


@pytest.fixture
def kube(world):
    return new_kube(world)


# --------------------------------------------------------------------------------------------
# the weight walk, for every router
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('provider', ['istio', 'gatewayapi', 'smi', 'nginx', 'kubernetes'])
def test_weight_walk(world, api_client, canary_crd, namespace, kube, provider):
    primary_replicas = 4 if provider == 'kubernetes' else 1
    canary = setup_app(api_client, namespace, provider, primary_replicas=primary_replicas)
    if provider == 'nginx':
        client.NetworkingV1Api(api_client).create_namespaced_ingress(namespace, user_ingress(namespace))
    objects = ROUTER_OBJECTS[provider]
    router = get_router(kube, canary)

    assert router.reconcile(canary) is True
    for api_version, kind, name in objects:
        assert kube.get(api_version, kind, name, namespace) is not None, '%s/%s not created' % (kind, name)
    assert router.get_routes(canary) == (100, 0, False)
    assert router.reconcile(canary) is False

    for weight in WALK:
        kube.calls = []
        requests = kube.request_count
        changed, before, after = router.set_routes(canary, 100 - weight, weight)
        # One GET per router object, and one write for each that had to change.
        writes = 0
        for _api_version, kind, name in objects:
            verbs = kube.verbs_for(kind, name)
            assert verbs.count('get') == 1, (kind, name, verbs)
            assert len(verbs) - 1 <= 1, (kind, name, verbs)
            writes += len(verbs) - 1
        assert kube.request_count - requests == len(objects) + writes
        assert changed is (writes > 0)
        assert after['weights'] == {'primary': 100 - weight, 'canary': weight, 'mirrored': False}
        assert router.get_routes(canary) == (100 - weight, weight, False)

        # A repeat reads and writes nothing else.
        requests = kube.request_count
        assert router.set_routes(canary, 100 - weight, weight)[0] is False
        assert kube.request_count - requests == len(objects)

        # Check mode: the server validates the write and persists nothing.
        dry = new_kube(world, dry_run=True)
        versions = resource_versions(kube, canary, provider)
        dry_changed, _dry_before, dry_after = get_router(dry, canary).set_routes(canary, 70, 30)
        assert dry_changed is True and dry_after['weights']['canary'] == 30
        assert resource_versions(kube, canary, provider) == versions
        assert router.get_routes(canary) == (100 - weight, weight, False)

        if provider == 'kubernetes':
            primary_pods, canary_pods = kube_router.replicas_for(4, weight)
            wait_for(lambda: (running_pods(api_client, namespace, 'web-primary'),
                              running_pods(api_client, namespace, 'web')) == (primary_pods, canary_pods),
                     timeout=90, message='%d primary and %d canary pods at weight %d'
                     % (primary_pods, canary_pods, weight))
    assert before is not None


def test_kubernetes_granularity_with_kwok_pods(world, api_client, canary_crd, namespace, kube):
    """With 4 replicas the split moves in 25% steps; the pods kwok runs follow."""
    canary = setup_app(api_client, namespace, 'kubernetes', primary_replicas=4)
    router = get_router(kube, canary)
    router.reconcile(canary)
    for weight, pods in ((25, (3, 1)), (75, (1, 3)), (100, (0, 4)), (12, (4, 0)), (13, (3, 1)), (0, (4, 0))):
        router.set_routes(canary, 100 - weight, weight)
        wait_for(lambda: (running_pods(api_client, namespace, 'web-primary'),
                          running_pods(api_client, namespace, 'web')) == pods,
                 timeout=90, message='pods %s at weight %d' % (pods, weight))
        assert router.get_routes(canary) == (100 - weight, weight, False)
    # Someone scales the target by hand: the router reports the split the pods give.
    client.AppsV1Api(api_client).patch_namespaced_deployment_scale('web', namespace, {'spec': {'replicas': 4}})
    assert router.get_routes(canary) == (50, 50, False)
    assert router.finalize(canary) is True
    primary = kube.get('apps/v1', 'Deployment', 'web-primary', namespace)
    assert primary['spec']['replicas'] == 4
    assert kube_router.TOTAL_REPLICAS_ANNOTATION not in (primary['metadata'].get('annotations') or {})


# --------------------------------------------------------------------------------------------
# adopting user objects
# --------------------------------------------------------------------------------------------

def _custom(api_client):
    return client.CustomObjectsApi(api_client)


def test_istio_user_virtual_service_survives_set_and_finalize(api_client, canary_crd, namespace, kube):
    canary = setup_app(api_client, namespace, 'istio')
    user_spec = {
        'hosts': ['web', 'web.example.com'], 'gateways': ['mesh', 'istio-system/public'],
        'http': [
            {'name': 'legacy', 'match': [{'uri': {'prefix': '/legacy'}}],
             'route': [{'destination': {'host': 'legacy'}}]},
            {'name': 'main', 'timeout': '10s', 'retries': {'attempts': 3, 'perTryTimeout': '2s', 'retryOn': '5xx'},
             'corsPolicy': {'allowOrigins': [{'exact': 'https://example.com'}], 'allowMethods': ['GET']},
             'headers': {'request': {'set': {'x-env': 'prod'}}},
             'route': [{'destination': {'host': 'web', 'port': {'number': 80}}}]},
        ]}
    _custom(api_client).create_namespaced_custom_object(
        'networking.istio.io', 'v1', namespace, 'virtualservices',
        {'apiVersion': 'networking.istio.io/v1', 'kind': 'VirtualService',
         'metadata': {'name': 'web', 'annotations': {'owner': 'team-shop'}}, 'spec': user_spec})
    original = kube.get('networking.istio.io/v1', 'VirtualService', 'web', namespace)['spec']

    router = get_router(kube, canary)
    assert router.reconcile(canary) is True
    for weight in WALK:
        router.set_routes(canary, 100 - weight, weight)
        vs = kube.get('networking.istio.io/v1', 'VirtualService', 'web', namespace)
        assert vs['spec']['hosts'] == original['hosts'] and vs['spec']['gateways'] == original['gateways']
        legacy, main = vs['spec']['http']
        assert legacy == original['http'][0]
        for key in ('name', 'timeout', 'retries', 'corsPolicy', 'headers'):
            assert main[key] == original['http'][1][key]
        assert main['route'] == [
            {'destination': {'host': 'web-primary', 'port': {'number': 80}}, 'weight': 100 - weight},
            {'destination': {'host': 'web-canary', 'port': {'number': 80}}, 'weight': weight}]
        assert vs['metadata']['annotations']['owner'] == 'team-shop'
        assert router.get_routes(canary) == (100 - weight, weight, False)

    # A/B and mirroring keep the user's fields too, and are accepted by the schema.
    router.set_routes(canary, 0, 100, match=[{'headers': {'x-canary': {'exact': 'insider'}}},
                                             {'headers': {'cookie': {'regex': '^(.*?;)?(canary=always)(;.*)?$'}}},
                                             {'sourceLabels': {'app': 'tester'}}])
    legacy, ab, main = kube.get('networking.istio.io/v1', 'VirtualService', 'web', namespace)['spec']['http']
    assert legacy == original['http'][0]
    assert ab['retries'] == original['http'][1]['retries'] and len(ab['match']) == 3
    assert router.get_routes(canary) == (0, 100, False)
    router.set_routes(canary, 100, 0, mirrored=True, mirror_weight=25, match=[])
    main = kube.get('networking.istio.io/v1', 'VirtualService', 'web', namespace)['spec']['http'][1]
    assert main['mirror'] == {'host': 'web-canary', 'port': {'number': 80}}
    assert main['mirrorPercentage']['value'] == 25
    assert router.get_routes(canary) == (100, 0, True)
    assert router.set_routes(canary, 100, 0, mirrored=True, mirror_weight=25, match=[])[0] is False

    assert router.finalize(canary) is True
    restored = kube.get('networking.istio.io/v1', 'VirtualService', 'web', namespace)
    assert restored['spec'] == original
    assert restored['metadata']['annotations'] == {'owner': 'team-shop'}


def test_istio_session_affinity_is_accepted(api_client, canary_crd, namespace, kube):
    canary = setup_app(api_client, namespace, 'istio', analysis={
        'interval': '10s', 'stepWeight': 5, 'sessionAffinity': {'cookieName': 'canary-affinity', 'maxAge': 120,
                                                                'secure': True}})
    router = get_router(kube, canary)
    router.reconcile(canary)
    router.set_routes(canary, 90, 10)
    vs = kube.get('networking.istio.io/v1', 'VirtualService', 'web', namespace)
    sticky, weighted = vs['spec']['http']
    assert [d['weight'] for d in sticky['route']] == [0, 100]
    set_cookie = weighted['route'][1]['headers']['response']['add']['Set-Cookie']
    assert set_cookie.startswith('canary-affinity=') and set_cookie.endswith('; Max-Age=120; Secure')
    assert router.get_routes(canary) == (90, 10, False)
    assert router.set_routes(canary, 90, 10)[0] is False
    router.set_routes(canary, 100, 0)
    sticky = kube.get('networking.istio.io/v1', 'VirtualService', 'web', namespace)['spec']['http'][0]
    assert sticky['headers']['response']['add']['Set-Cookie'].endswith('; Max-Age=-1')
    assert router.finalize(canary) is True
    assert kube.get('networking.istio.io/v1', 'VirtualService', 'web', namespace) is None


def test_gatewayapi_user_route_survives_and_ab_mirror_affinity_are_accepted(api_client, canary_crd, namespace, kube):
    canary = setup_app(api_client, namespace, 'gatewayapi', service={
        'port': 80, 'gatewayRefs': [{'name': 'public', 'namespace': 'gateways'}], 'hosts': ['shop.example.com']})
    user_spec = {'parentRefs': [{'name': 'edge'}], 'hostnames': ['www.example.com'],
                 'rules': [{'matches': [{'path': {'type': 'PathPrefix', 'value': '/static'}}],
                            'backendRefs': [{'name': 'cdn', 'port': 80}]},
                           {'backendRefs': [{'name': 'web', 'port': 80}], 'timeouts': {'request': '15s'}}]}
    _custom(api_client).create_namespaced_custom_object(
        'gateway.networking.k8s.io', 'v1', namespace, 'httproutes',
        {'apiVersion': 'gateway.networking.k8s.io/v1', 'kind': 'HTTPRoute', 'metadata': {'name': 'web'},
         'spec': user_spec})
    original = kube.get('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web', namespace)['spec']

    router = get_router(kube, canary)
    assert router.reconcile(canary) is True
    route = kube.get('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web', namespace)
    assert json.loads(route['metadata']['annotations'][ORIGINAL_SPEC_ANNOTATION]) == original
    for weight in WALK:
        router.set_routes(canary, 100 - weight, weight)
        spec = kube.get('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web', namespace)['spec']
        # The user's parents and hostnames, not the Canary's gatewayRefs and hosts: the route is theirs.
        assert spec['parentRefs'] == original['parentRefs'] and spec['hostnames'] == original['hostnames']
        assert spec['rules'][0] == original['rules'][0]
        assert spec['rules'][1]['timeouts'] == {'request': '15s'}
        assert router.get_routes(canary) == (100 - weight, weight, False)

    router.set_routes(canary, 0, 100, match=[{'headers': {'x-canary': {'exact': 'insider'}},
                                              'queryParams': {'beta': {'regex': '^(1|true)$'}}},
                                             {'headers': {'x-tier': {'prefix': 'gold'}}}])
    rules = kube.get('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web', namespace)['spec']['rules']
    assert [r.get('name') for r in rules] == [None, 'progressive-delivery-match', None]
    assert router.get_routes(canary) == (0, 100, False)
    assert router.set_routes(canary, 0, 100, match=[{'headers': {'x-canary': {'exact': 'insider'}},
                                                     'queryParams': {'beta': {'regex': '^(1|true)$'}}},
                                                    {'headers': {'x-tier': {'prefix': 'gold'}}}])[0] is False

    router.set_routes(canary, 100, 0, mirrored=True, mirror_weight=20, match=[])
    assert router.get_routes(canary) == (100, 0, True)
    assert router.set_routes(canary, 100, 0, mirrored=True, mirror_weight=20, match=[])[0] is False

    assert router.finalize(canary) is True
    assert kube.get('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web', namespace)['spec'] == original


def test_gatewayapi_created_route_and_session_affinity(api_client, canary_crd, namespace, kube):
    canary = setup_app(api_client, namespace, 'gatewayapi', analysis={
        'interval': '10s', 'stepWeight': 5, 'sessionAffinity': {'cookieName': 'sticky'}})
    router = get_router(kube, canary)
    assert router.reconcile(canary) is True
    route = kube.get('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web', namespace)
    assert route['metadata']['annotations'][MANAGED_ANNOTATION] == 'created'
    assert route['spec']['parentRefs'] == [{'group': '', 'kind': 'Service', 'name': 'web', 'port': 80}]
    assert router.reconcile(canary) is False  # the server's defaults are already what we wrote
    for weight in (10, 20, 0):
        router.set_routes(canary, 100 - weight, weight)
        assert router.get_routes(canary) == (100 - weight, weight, False)
        assert router.set_routes(canary, 100 - weight, weight)[0] is False
    assert router.finalize(canary) is True
    assert kube.get('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web', namespace) is None


def test_nginx_user_ingress_is_never_written(api_client, canary_crd, namespace, kube):
    canary = setup_app(api_client, namespace, 'nginx')
    networking = client.NetworkingV1Api(api_client)
    networking.create_namespaced_ingress(namespace, user_ingress(namespace))
    before = kube.get('networking.k8s.io/v1', 'Ingress', 'web', namespace)
    router = get_router(kube, canary)
    router.reconcile(canary)
    copy_ = kube.get('networking.k8s.io/v1', 'Ingress', 'web-canary', namespace)
    assert copy_['spec']['rules'][0]['http']['paths'][0]['backend']['service']['name'] == 'web-canary'
    assert copy_['spec']['rules'][0]['http']['paths'][1]['backend']['service']['name'] == 'images'
    assert copy_['metadata']['annotations']['nginx.ingress.kubernetes.io/proxy-body-size'] == '8m'
    router.set_routes(canary, 0, 100, match=[{'headers': {'x-canary': {'exact': 'insider'}}},
                                             {'headers': {'cookie': {'exact': 'canary'}}}])
    annotations = kube.get('networking.k8s.io/v1', 'Ingress', 'web-canary', namespace)['metadata']['annotations']
    assert annotations[nginx_router.CANARY_BY_HEADER] == 'x-canary'
    assert annotations[nginx_router.CANARY_BY_HEADER_VALUE] == 'insider'
    assert annotations[nginx_router.CANARY_BY_COOKIE] == 'canary'
    assert router.get_routes(canary) == (0, 100, False)
    router.set_routes(canary, 100, 0, match=[])
    assert router.get_routes(canary) == (100, 0, False)
    with pytest.raises(RouterError) as err:
        router.set_routes(canary, 100, 0, mirrored=True)
    assert 'nginx router' in str(err.value)
    assert router.finalize(canary) is True
    assert kube.get('networking.k8s.io/v1', 'Ingress', 'web-canary', namespace) is None
    after = kube.get('networking.k8s.io/v1', 'Ingress', 'web', namespace)
    assert after['metadata']['resourceVersion'] == before['metadata']['resourceVersion']
    assert [c for c in kube.calls if c[0] != 'get' and c[2] == 'web' and c[1] == 'Ingress'] == []


def test_smi_adopts_a_user_traffic_split(api_client, canary_crd, namespace, kube):
    canary = setup_app(api_client, namespace, 'linkerd')
    user = {'apiVersion': 'split.smi-spec.io/v1alpha4', 'kind': 'TrafficSplit', 'metadata': {'name': 'web'},
            'spec': {'service': 'web', 'backends': [{'service': 'web-v1', 'weight': 100}]}}
    _custom(api_client).create_namespaced_custom_object('split.smi-spec.io', 'v1alpha4', namespace,
                                                        'trafficsplits', user)
    router = get_router(kube, canary)
    assert router.reconcile(canary) is True
    for weight in WALK:
        router.set_routes(canary, 100 - weight, weight)
        assert router.get_routes(canary) == (100 - weight, weight, False)
    assert router.finalize(canary) is True
    assert kube.get('split.smi-spec.io/v1alpha4', 'TrafficSplit', 'web', namespace)['spec'] == user['spec']


def test_set_routes_before_reconcile_fails_clearly_and_writes_nothing(api_client, canary_crd, namespace, kube):
    canary = setup_app(api_client, namespace, 'istio')
    with pytest.raises(RouterError) as err:
        get_router(kube, canary).set_routes(canary, 90, 10)
    assert 'VirtualService web not found' in str(err.value) and 'canary_init' in str(err.value)
    assert [c for c in kube.calls if c[0] != 'get'] == []


def test_reconcile_respects_the_server_schema(api_client, canary_crd, namespace, kube):
    """A Canary asking for something the upstream schema refuses fails with the server's message."""
    canary = setup_app(api_client, namespace, 'gatewayapi', service={'port': 80, 'timeout': '1.5s'})
    with pytest.raises(Exception) as err:
        get_router(kube, canary).reconcile(canary)
    assert 'timeouts' in str(err.value) or 'request' in str(err.value)
    assert kube.get('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web', namespace) is None
