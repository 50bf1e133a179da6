"""mesh_weight run through ansible, as the least-privilege ServiceAccount, on the real control plane.

The admin client only sets the scene (target, primary, Services, Canary, router objects through
the router's reconcile, as canary_init does) and checks the result.
"""

from kubernetes import client

from ansible_runner import run_module
from test_routers import new_kube, read_canary, resource_versions, setup_app, user_ingress

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as model
from ansible_collections.progressive.delivery.plugins.module_utils._routers import get_router

VS = ('networking.istio.io/v1', 'VirtualService', 'web')


def _args(kubeconfig, namespace, **extra):
    args = {'kubeconfig': kubeconfig, 'name': 'web', 'namespace': namespace}
    args.update(extra)
    return args


def _status(api_client, namespace, name='web'):
    return read_canary(api_client, namespace, name).get('status') or {}


def _reconciled(world, api_client, namespace, provider, **spec):
    canary = setup_app(api_client, namespace, provider, **spec)
    if provider == 'nginx':
        client.NetworkingV1Api(api_client).create_namespaced_ingress(namespace, user_ingress(namespace))
    get_router(new_kube(world), canary).reconcile(canary)
    return canary


def test_weight_walk_status_idempotency_check_and_diff(world, api_client, canary_crd, namespace, runner_kubeconfig):
    canary = _reconciled(world, api_client, namespace, 'istio')
    kube = new_kube(world)
    previous = 0
    for weight in (0, 5, 10, 50, 0):
        result = run_module('mesh_weight', _args(runner_kubeconfig, namespace, weight=weight))
        assert not result.get('failed'), result.get('msg')
        assert result['previous'] == {'primary': 100 - previous, 'canary': previous, 'mirrored': False}
        assert result['weights'] == {'primary': 100 - weight, 'canary': weight, 'mirrored': False}
        assert result['router'] == 'istio' and result['provider'] == 'istio'
        status = _status(api_client, namespace)
        assert (status['canaryWeight'], status['primaryWeight']) == (weight, 100 - weight)
        assert get_router(kube, canary).get_routes(canary) == (100 - weight, weight, False)
        previous = weight

    # The first 0 only recorded the status; a repeat changes nothing at all.
    versions = resource_versions(kube, canary, 'istio')
    again = run_module('mesh_weight', _args(runner_kubeconfig, namespace, weight=0))
    assert again['changed'] is False
    assert resource_versions(kube, canary, 'istio') == versions

    # Check mode: reported as a change, validated by the server, nothing persisted.
    checked = run_module('mesh_weight', _args(runner_kubeconfig, namespace, primary_weight=75, canary_weight=25),
                         check=True, diff=True)
    assert not checked.get('failed'), checked.get('msg')
    assert checked['changed'] is True
    assert checked['weights'] == {'primary': 75, 'canary': 25, 'mirrored': False}
    assert resource_versions(kube, canary, 'istio') == versions
    assert _status(api_client, namespace)['canaryWeight'] == 0

    # Diff mode: the routing object and the recorded weights, before and after.
    result = run_module('mesh_weight', _args(runner_kubeconfig, namespace, weight=20), diff=True)
    assert result['changed'] is True
    diff = result['diff']
    before_route = diff['before']['VirtualService/web']['spec']['http'][0]['route']
    after_route = diff['after']['VirtualService/web']['spec']['http'][0]['route']
    assert [d['weight'] for d in before_route] == [100, 0]
    assert [d['weight'] for d in after_route] == [80, 20]
    assert diff['before']['Canary/web/status'] == {'canaryWeight': 0, 'primaryWeight': 100}
    assert diff['after']['Canary/web/status'] == {'canaryWeight': 20, 'primaryWeight': 80}
    assert checked['diff']['after']['Canary/web/status'] == {'canaryWeight': 25, 'primaryWeight': 75}


def test_match_and_mirror_through_the_module(world, api_client, canary_crd, namespace, runner_kubeconfig):
    canary = _reconciled(world, api_client, namespace, 'gatewayapi')
    kube = new_kube(world)
    match = [{'headers': {'x-canary': {'exact': 'insider'}}}]
    result = run_module('mesh_weight', _args(runner_kubeconfig, namespace, weight=100, match=match))
    assert not result.get('failed'), result.get('msg')
    assert result['weights'] == {'primary': 0, 'canary': 100, 'mirrored': False}
    rules = kube.get('gateway.networking.k8s.io/v1', 'HTTPRoute', 'web', namespace)['spec']['rules']
    assert rules[0]['matches'][0]['headers'] == [{'name': 'x-canary', 'type': 'Exact', 'value': 'insider'}]
    assert run_module('mesh_weight', _args(runner_kubeconfig, namespace, weight=100, match=match))['changed'] is False

    result = run_module('mesh_weight', _args(runner_kubeconfig, namespace, weight=0, match=[], mirror=True,
                                             mirror_weight=50))
    assert result['weights'] == {'primary': 100, 'canary': 0, 'mirrored': True}
    assert get_router(kube, canary).get_routes(canary) == (100, 0, True)


def _unknown_provider_canary(api_client, namespace):
    body = {'apiVersion': model.API_VERSION, 'kind': model.KIND, 'metadata': {'name': 'web-traefik'},
            'spec': {'targetRef': {'name': 'web'}, 'service': {'port': 80}, 'provider': 'traefik',
                     'analysis': {'stepWeight': 10}}}
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        model.API_GROUP, model.API_VERSION_NAME, namespace, model.PLURAL, body)


def _extra_canary(api_client, namespace, name, provider, **spec):
    body = {'apiVersion': model.API_VERSION, 'kind': model.KIND, 'metadata': {'name': name},
            'spec': dict({'targetRef': {'name': 'web'}, 'service': {'port': 80}, 'provider': provider,
                          'analysis': {'stepWeight': 10}}, **spec)}
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        model.API_GROUP, model.API_VERSION_NAME, namespace, model.PLURAL, body)


BAD = [
    (dict(weight=101), 'weight must be between 0 and 100, got 101'),
    (dict(weight=-1), 'weight must be between 0 and 100, got -1'),
    (dict(weight='ten'), "'weight' is of type"),
    (dict(primary_weight=60, canary_weight=30), 'primary_weight (60) and canary_weight (30) must sum to 100'),
    (dict(primary_weight=101, canary_weight=-1), 'primary_weight must be between 0 and 100, got 101'),
    (dict(weight=10, primary_weight=90, canary_weight=10), 'mutually exclusive: weight|primary_weight'),
    (dict(canary_weight=10), 'primary_weight, canary_weight'),
    (dict(weight=10, mirror_weight=50), 'mirror_weight only applies with mirror: true'),
    (dict(weight=10, match=[{'headers': {'x': {'exact': 'a', 'regex': 'b'}}}]), 'match[0].headers.x must have'),
    (dict(name='missing', weight=10), 'Canary missing not found in namespace'),
    (dict(name='web-traefik', weight=10), 'is invalid: provider must be one of'),
    (dict(name='web-smi', weight=100, match=[{'headers': {'x-canary': {'exact': 'insider'}}}]),
     'match (match conditions (A/B testing)) is not supported by the smi router, which supports weights only'),
    (dict(name='web-nginx', weight=0, mirror=True), 'mirror (traffic mirroring) is not supported by the nginx router'),
    (dict(name='web-nginx', weight=50, match=[{'headers': {'x-canary': {'exact': 'insider'}}}]),
     'canary weight must be 0 (off) or 100 (on), got 50'),
]


def test_bad_inputs_fail_clearly_and_write_nothing(world, api_client, canary_crd, namespace, runner_kubeconfig):
    canary = _reconciled(world, api_client, namespace, 'istio')
    _unknown_provider_canary(api_client, namespace)
    _extra_canary(api_client, namespace, 'web-smi', 'linkerd')
    _extra_canary(api_client, namespace, 'web-nginx', 'nginx', ingressRef={'name': 'web'})
    kube = new_kube(world)
    canaries = ('web', 'web-traefik', 'web-smi', 'web-nginx')

    def versions():
        found = resource_versions(kube, canary, 'istio')
        for name in canaries:
            found[name] = kube.get(model.API_VERSION, model.KIND, name, namespace)['metadata']['resourceVersion']
        return found

    before = versions()
    for args, message in BAD:
        result = run_module('mesh_weight', _args(runner_kubeconfig, namespace, **args))
        assert result.get('failed') is True, (args, result)
        assert message in result['msg'], (args, result['msg'])
        assert versions() == before, args
