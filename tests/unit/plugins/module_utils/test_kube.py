# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the shared auth + client layer.

API behaviour is exercised against a small in-process HTTP server that speaks enough of
the Kubernetes API (discovery, CRUD, status, conflicts, scripted failures) for the real
kubernetes client and urllib3 to run unmodified: retries, headers and query parameters
are checked as they appear on the wire.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import urllib3
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.progressive.delivery.plugins.doc_fragments.auth import ModuleDocFragment
from ansible_collections.progressive.delivery.plugins.module_utils import _kube
from ansible_collections.progressive.delivery.plugins.module_utils._kube import (
    AUTH_ARG_SPEC,
    Kube,
    KubeApiError,
    KubeError,
    RetryPolicy,
    get_api_client,
    resolve_auth_params,
)

URLLIB3_MAJOR = int(urllib3.__version__.split('.', 1)[0])
FAST = dict(max_retries=3, backoff_factor=0.001, backoff_max=0.01, deadline=5)


# ---------------------------------------------------------------------------
# A tiny API server
# ---------------------------------------------------------------------------

_DISCOVERY = {
    '/version': {'major': '1', 'minor': '33', 'gitVersion': 'v1.33.0'},
    '/apis': {
        'kind': 'APIGroupList', 'apiVersion': 'v1',
        'groups': [{
            'name': 'apps',
            'versions': [{'groupVersion': 'apps/v1', 'version': 'v1'}],
            'preferredVersion': {'groupVersion': 'apps/v1', 'version': 'v1'},
        }],
    },
    '/api/v1': {
        'kind': 'APIResourceList', 'groupVersion': 'v1',
        'resources': [
            {'name': 'configmaps', 'singularName': 'configmap', 'namespaced': True, 'kind': 'ConfigMap',
             'verbs': ['create', 'delete', 'get', 'list', 'patch', 'update']},
            {'name': 'namespaces', 'singularName': 'namespace', 'namespaced': False, 'kind': 'Namespace',
             'verbs': ['create', 'delete', 'get', 'list', 'patch', 'update']},
        ],
    },
    '/apis/apps/v1': {
        'kind': 'APIResourceList', 'groupVersion': 'apps/v1',
        'resources': [
            {'name': 'deployments', 'singularName': 'deployment', 'namespaced': True, 'kind': 'Deployment',
             'verbs': ['create', 'delete', 'get', 'list', 'patch', 'update']},
            {'name': 'deployments/status', 'singularName': '', 'namespaced': True, 'kind': 'Deployment',
             'verbs': ['get', 'patch', 'update']},
        ],
    },
}


_COLLECTIONS = set(resource['name'] for listing in _DISCOVERY.values() for resource in listing.get('resources', ()))


def _merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _status(code, reason, message):
    return {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure', 'code': code,
            'reason': reason, 'message': message}


class FakeApiServer(object):
    """Objects live in ``objects`` keyed by their URL path; ``fail[(method, path)]`` is a
    list of status codes answered (and consumed) before the request is served."""

    def __init__(self):
        self.objects = {}
        self.fail = {}
        self.hang = {}
        self.requests = []
        self._version = 100
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get('Content-Length') or 0)
                raw = self.rfile.read(length) if length else b''
                url = urlparse(self.path)
                record = dict(
                    method=self.command, path=url.path, query=parse_qs(url.query),
                    headers=self.headers, body=json.loads(raw) if raw else None,
                    content_type=self.headers.get('Content-Type'))
                delay = server.hang.get((record['method'], record['path']))
                if delay:
                    time.sleep(delay)
                with server._lock:
                    server.requests.append(record)
                    code, payload = server._answer(record)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header('Content-Type', 'application/json')
                    self.send_header('Content-Length', str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting (timeout tests)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d' % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def put(self, path, obj):
        self._version += 1
        obj = copy.deepcopy(obj)
        obj.setdefault('metadata', {})['resourceVersion'] = str(self._version)
        self.objects[path] = obj
        return obj

    def sent(self, method=None, path=None):
        return [r for r in self.requests
                if (method is None or r['method'] == method) and (path is None or r['path'] == path)]

    def _answer(self, request):
        method, path = request['method'], request['path']
        scripted = self.fail.get((method, path))
        if scripted:
            code = scripted.pop(0)
            return code, _status(code, 'Scripted', 'scripted failure %d' % code)
        if method == 'GET' and path in _DISCOVERY:
            return 200, _DISCOVERY[path]
        dry_run = request['query'].get('dryRun') == ['All']
        status_only = path.endswith('/status')
        object_path = path[:-len('/status')] if status_only else path
        current = self.objects.get(object_path)
        body = request['body']
        if method == 'GET':
            if current is not None:
                return 200, current
            items = [obj for key, obj in sorted(self.objects.items()) if key.startswith(path + '/')]
            if path.rsplit('/', 1)[-1] in _COLLECTIONS:
                return 200, {'kind': 'List', 'apiVersion': 'v1', 'metadata': {}, 'items': items}
            return 404, _status(404, 'NotFound', 'not found')
        if method == 'POST':
            target = '%s/%s' % (path, body['metadata']['name'])
            if target in self.objects:
                return 409, _status(409, 'AlreadyExists', '"%s" already exists' % body['metadata']['name'])
            return 201, (body if dry_run else self.put(target, body))
        if current is None:
            if method == 'PATCH' and 'apply-patch' in (request['content_type'] or ''):
                return 201, (body if dry_run else self.put(object_path, body))
            return 404, _status(404, 'NotFound', '"%s" not found' % object_path.rsplit('/', 1)[-1])
        if method == 'DELETE':
            if not dry_run:
                del self.objects[object_path]
            return 200, current
        if method == 'PUT':
            sent_version = (body.get('metadata') or {}).get('resourceVersion')
            if sent_version and sent_version != current['metadata']['resourceVersion']:
                return 409, _status(409, 'Conflict', 'Operation cannot be fulfilled: the object has been modified; '
                                                     'please apply your changes to the latest version and try again')
            updated = copy.deepcopy(current)
            if status_only:
                updated['status'] = body.get('status')
            else:
                updated = dict(body, status=current.get('status'))
        else:  # PATCH: merge semantics are close enough for every patch type used here
            patch = body
            if status_only:
                patch = {'status': (body or {}).get('status')}
            updated = _merge_patch(current, patch)
        if dry_run:
            return 200, updated
        return 200, self.put(object_path, updated)


@pytest.fixture
def api_server():
    server = FakeApiServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith('K8S_AUTH_') or name.lower() in ('http_proxy', 'https_proxy', 'no_proxy', 'all_proxy'):
            monkeypatch.delenv(name)
    monkeypatch.delenv('KUBERNETES_SERVICE_HOST', raising=False)
    monkeypatch.delenv('KUBERNETES_SERVICE_PORT', raising=False)
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('KUBECONFIG', str(tmp_path / 'home' / 'no-such-kubeconfig'))


@pytest.fixture
def make_kube(api_server, tmp_path):
    def make(dry_run=False, **auth):
        params = dict(host=api_server.url, api_key='token')
        params.update(auth)
        api_client = get_api_client(params, retry_policy=RetryPolicy(**FAST))
        kube = Kube(api_client, dry_run=dry_run, retry_policy=RetryPolicy(**FAST),
                    discovery_cache_file=str(tmp_path / 'discovery.json'))
        kube.waits = []
        kube._sleep = kube.waits.append
        return kube
    return make


CM_PATH = '/api/v1/namespaces/apps/configmaps/settings'
DEPLOY_PATH = '/apis/apps/v1/namespaces/apps/deployments/web'


def _configmap(name='settings', data=None):
    return {'apiVersion': 'v1', 'kind': 'ConfigMap',
            'metadata': {'name': name, 'namespace': 'apps'}, 'data': data or {'color': 'blue'}}


def _deployment():
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment',
            'metadata': {'name': 'web', 'namespace': 'apps'},
            'spec': {'replicas': 1}, 'status': {'replicas': 1}}


# ---------------------------------------------------------------------------
# Options, env fallbacks and the doc fragment
# ---------------------------------------------------------------------------

def test_env_fallbacks_resolved(monkeypatch, tmp_path):
    ca = tmp_path / 'ca.pem'
    ca.write_text('not checked here')
    monkeypatch.setenv('K8S_AUTH_HOST', 'https://env.example:6443/')
    monkeypatch.setenv('K8S_AUTH_API_KEY', 'env-token')
    monkeypatch.setenv('K8S_AUTH_VERIFY_SSL', 'no')
    monkeypatch.setenv('K8S_AUTH_SSL_CA_CERT', str(ca))
    monkeypatch.setenv('K8S_AUTH_IMPERSONATE_USER', 'alice')
    monkeypatch.setenv('K8S_AUTH_IMPERSONATE_GROUPS', 'dev,ops')
    monkeypatch.setenv('K8S_AUTH_PROXY_HEADERS_USER_AGENT', 'pd/1.0')

    auth = resolve_auth_params({})
    assert auth['host'] == 'https://env.example:6443/'
    assert auth['api_key'] == 'env-token'
    assert auth['validate_certs'] is False
    assert auth['ca_cert'] == str(ca)
    assert auth['impersonate_groups'] == ['dev', 'ops']
    assert auth['proxy_headers'] == {'user_agent': 'pd/1.0'}

    # The spec alone carries the fallbacks, so AnsibleModule resolves them the same way.
    validated = ArgumentSpecValidator(AUTH_ARG_SPEC).validate({}).validated_parameters
    assert validated['api_key'] == 'env-token' and validated['validate_certs'] is False

    # A task argument beats the environment, also through an alias.
    assert resolve_auth_params({'host': 'https://task:6443', 'verify_ssl': True})['host'] == 'https://task:6443'
    assert resolve_auth_params({'verify_ssl': True})['validate_certs'] is True

    monkeypatch.setenv('K8S_AUTH_IMPERSONATE_GROUPS', 'dev')
    configuration = get_api_client({}).configuration
    assert configuration.host == 'https://env.example:6443'
    assert configuration.verify_ssl is False
    assert configuration.ssl_ca_cert == str(ca)
    assert configuration.api_key['authorization'] == 'Bearer env-token'


def test_validate_certs_defaults_to_true():
    assert resolve_auth_params({})['validate_certs'] is True


def test_mutually_exclusive_options_name_both_fields():
    with pytest.raises(KubeError) as error:
        get_api_client({'host': 'https://h', 'api_key': 't', 'username': 'u', 'password': 'p'})
    assert error.value.field == 'api_key'
    assert 'username' in str(error.value) and str(error.value).startswith('api_key:')

    with pytest.raises(KubeError) as error:
        get_api_client({'host': 'https://h', 'api_key': 't', 'impersonate_groups': ['dev']})
    assert str(error.value).startswith('impersonate_groups: is set but impersonate_user is not')


def test_doc_fragment_mirrors_auth_arg_spec():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)
    assert 'kubernetes >= 24.2.0' in documented['requirements']
    assert 'python >= 3.9' in documented['requirements']

    def compare(spec, docs, where):
        assert sorted(docs) == sorted(spec), where
        for name, option in spec.items():
            doc = docs[name]
            label = '%s%s' % (where, name)
            assert doc['type'] == option.get('type', 'str'), label
            assert sorted(doc.get('aliases', [])) == sorted(option.get('aliases', [])), label
            assert doc.get('default') == option.get('default'), label
            assert doc.get('elements') == option.get('elements'), label
            text = ' '.join(doc['description'])
            for env_name in option.get('fallback', (None, []))[1]:
                assert 'E(%s)' % env_name in text, label
            assert ('no_log' in text) == bool(option.get('no_log')), label
            if option.get('options'):
                compare(option['options'], doc['suboptions'], label + '.')

    compare(AUTH_ARG_SPEC, documented['options'], '')


# ---------------------------------------------------------------------------
# Building the ApiClient
# ---------------------------------------------------------------------------

def _kubeconfig(insecure=False):
    def cluster(server):
        return dict(server=server, **({'insecure-skip-tls-verify': True} if insecure else {}))

    return {
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'blue',
        'clusters': [{'name': 'blue', 'cluster': cluster('https://blue.example:6443')},
                     {'name': 'green', 'cluster': cluster('https://green.example:6443')}],
        'users': [{'name': 'blue', 'user': {'token': 'blue-token'}},
                  {'name': 'green', 'user': {'token': 'green-token'}}],
        'contexts': [{'name': 'blue', 'context': {'cluster': 'blue', 'user': 'blue'}},
                     {'name': 'green', 'context': {'cluster': 'green', 'user': 'green'}}],
    }


def _token(configuration):
    return configuration.get_api_key_with_prefix('authorization') or configuration.api_key.get('BearerToken')


def test_kubeconfig_path_and_dict_give_the_same_client(tmp_path):
    home = tmp_path / 'home'
    home.mkdir()
    (home / 'kc.yaml').write_text(yaml.safe_dump(_kubeconfig()))

    from_path = get_api_client({'kubeconfig': '~/kc.yaml'}).configuration
    from_dict = get_api_client({'kubeconfig': _kubeconfig()}).configuration
    assert from_path.host == from_dict.host == 'https://blue.example:6443'
    assert _token(from_path) == _token(from_dict) == 'Bearer blue-token'

    other = get_api_client({'kubeconfig': str(home / 'kc.yaml'), 'context': 'green'}).configuration
    assert other.host == 'https://green.example:6443'
    assert _token(other) == 'Bearer green-token'
    other = get_api_client({'kubeconfig': _kubeconfig(), 'context': 'green'}).configuration
    assert other.host == 'https://green.example:6443'


def test_default_kubeconfig_from_env_and_explicit_options_override(monkeypatch, tmp_path):
    path = tmp_path / 'env-kubeconfig'
    path.write_text(yaml.safe_dump(_kubeconfig(insecure=True)))
    monkeypatch.setenv('KUBECONFIG', str(path))

    configuration = get_api_client({}).configuration
    assert configuration.host == 'https://blue.example:6443'
    # Stricter than kubernetes.core: the kubeconfig's insecure-skip-tls-verify is not enough.
    assert configuration.verify_ssl is True
    assert get_api_client({'validate_certs': False}).configuration.verify_ssl is False

    configuration = get_api_client({'api_key': 'explicit', 'host': 'https://other:6443/'}).configuration
    assert configuration.host == 'https://other:6443'
    assert _token(configuration) == 'Bearer explicit'


def test_unknown_context_lists_the_available_ones(tmp_path):
    path = tmp_path / 'kc.yaml'
    path.write_text(yaml.safe_dump(_kubeconfig()))
    for kubeconfig in (str(path), _kubeconfig()):
        with pytest.raises(KubeError) as error:
            get_api_client({'kubeconfig': kubeconfig, 'context': 'purple'})
        assert error.value.field == 'context'
        assert 'context "purple" is not defined' in str(error.value)
        assert 'use one of: blue, green' in str(error.value)


def test_missing_kubeconfig_file(tmp_path):
    missing = str(tmp_path / 'nope.yaml')
    with pytest.raises(KubeError) as error:
        get_api_client({'kubeconfig': missing})
    assert str(error.value) == ('kubeconfig: file %s does not exist; pass a path to a kubeconfig file '
                                'or a kubeconfig dict' % missing)


def test_nothing_to_connect_with():
    with pytest.raises(KubeError) as error:
        get_api_client({})
    assert error.value.field == 'kubeconfig'
    assert 'no cluster connection configured' in str(error.value)


def test_missing_ca_cert_names_the_field(tmp_path):
    with pytest.raises(KubeError) as error:
        get_api_client({'host': 'https://h', 'api_key': 't', 'ca_cert': str(tmp_path / 'ca.pem')})
    assert str(error.value).startswith('ca_cert: file ')


def test_impersonation_headers_on_the_wire(make_kube, api_server):
    assert URLLIB3_MAJOR >= 2, 'requirements-dev.txt installs urllib3 2 (kubernetes pulls it in)'
    kube = make_kube(impersonate_user='alice', impersonate_groups=['dev', 'ops'])
    assert kube.get('v1', 'ConfigMap', 'settings', 'apps') is None
    request = api_server.sent('GET', CM_PATH)[0]
    assert request['headers'].get_all('Impersonate-User') == ['alice']
    assert request['headers'].get_all('Impersonate-Group') == ['dev', 'ops']
    assert request['headers'].get('Authorization') == 'Bearer token'


def test_several_impersonated_groups_need_urllib3_2(monkeypatch):
    # A managed node may carry urllib3 1.x, which would join the groups into one header.
    monkeypatch.setattr(_kube.urllib3, '__version__', '1.26.20')
    with pytest.raises(KubeError) as error:
        get_api_client({'host': 'https://h', 'api_key': 't', 'impersonate_user': 'alice',
                        'impersonate_groups': ['dev', 'ops']})
    assert error.value.field == 'impersonate_groups'


# ---------------------------------------------------------------------------
# Kube
# ---------------------------------------------------------------------------

def test_crud_returns_plain_dicts(make_kube, api_server):
    kube = make_kube()
    created = kube.create(_configmap())
    assert isinstance(created, dict) and created['data'] == {'color': 'blue'}
    assert kube.get('v1', 'ConfigMap', 'settings', 'apps')['metadata']['resourceVersion']
    patched = kube.patch('v1', 'ConfigMap', 'settings', 'apps', {'data': {'size': 'L'}})
    assert patched['data'] == {'color': 'blue', 'size': 'L'}
    assert api_server.sent('PATCH', CM_PATH)[0]['content_type'] == 'application/merge-patch+json'
    assert [item['metadata']['name'] for item in kube.list('v1', 'ConfigMap', 'apps')] == ['settings']
    assert kube.delete('v1', 'ConfigMap', 'settings', 'apps')['metadata']['name'] == 'settings'
    assert kube.delete('v1', 'ConfigMap', 'settings', 'apps') is None


def test_apply_is_server_side_apply(make_kube, api_server):
    make_kube().apply(_configmap())
    request = api_server.sent('PATCH', CM_PATH)[0]
    assert request['content_type'] == 'application/apply-patch+yaml'
    assert request['query']['fieldManager'] == ['progressive-delivery']
    assert request['query']['force'] == ['True'] or request['query']['force'] == ['true']


def test_status_subresource(make_kube, api_server):
    api_server.put(DEPLOY_PATH, _deployment())
    kube = make_kube()
    after = kube.patch_status('apps/v1', 'Deployment', 'web', 'apps', {'status': {'replicas': 3}})
    assert after['status'] == {'replicas': 3}
    assert api_server.sent('PATCH', DEPLOY_PATH + '/status')
    before, after = kube.update_with_retry('apps/v1', 'Deployment', 'web', 'apps',
                                           lambda obj: obj['status'].update(replicas=4), status=True)
    assert (before['status']['replicas'], after['status']['replicas']) == (3, 4)
    assert api_server.sent('PUT', DEPLOY_PATH + '/status')


def test_dry_run_sends_dry_run_all_on_every_write(make_kube, api_server):
    api_server.put(DEPLOY_PATH, _deployment())
    kube = make_kube(dry_run=True)
    kube.create(_configmap())
    kube.apply(_configmap())
    kube.patch('apps/v1', 'Deployment', 'web', 'apps', {'spec': {'replicas': 5}})
    kube.patch_status('apps/v1', 'Deployment', 'web', 'apps', {'status': {'replicas': 5}})
    deployment = kube.get('apps/v1', 'Deployment', 'web', 'apps')
    kube.replace(dict(deployment, spec={'replicas': 7}))
    kube.delete('apps/v1', 'Deployment', 'web', 'apps')

    writes = [r for r in api_server.requests if r['method'] != 'GET']
    assert len(writes) == 6
    assert all(r['query'].get('dryRun') == ['All'] for r in writes)
    assert not [r for r in api_server.requests if r['method'] == 'GET' and 'dryRun' in r['query']]
    # Nothing persisted.
    assert CM_PATH not in api_server.objects
    assert api_server.objects[DEPLOY_PATH]['spec'] == {'replicas': 1}


def test_retry_on_503_then_success(make_kube, api_server):
    api_server.put(CM_PATH, _configmap())
    kube = make_kube()
    kube.resource('v1', 'ConfigMap')
    kube.request_count = 0

    # GET: urllib3's Retry handles it inside one client call.
    api_server.fail[('GET', CM_PATH)] = [503, 503]
    assert kube.get('v1', 'ConfigMap', 'settings', 'apps')['data'] == {'color': 'blue'}
    assert len(api_server.sent('GET', CM_PATH)) == 3
    assert kube.request_count == 3
    assert kube.waits == []

    # POST: urllib3 will not replay it, so Kube's own loop does, with backoff.
    collection = '/api/v1/namespaces/apps/configmaps'
    api_server.fail[('POST', collection)] = [503, 429]
    assert kube.create(_configmap('other'))['metadata']['name'] == 'other'
    assert len(api_server.sent('POST', collection)) == 3
    assert len(kube.waits) == 2 and all(0 < wait <= FAST['backoff_max'] for wait in kube.waits)
    assert kube.request_count == 6


def test_retries_are_bounded(make_kube, api_server):
    kube = make_kube()
    collection = '/api/v1/namespaces/apps/configmaps'
    api_server.fail[('POST', collection)] = [503] * 10
    with pytest.raises(KubeApiError) as error:
        kube.create(_configmap())
    assert error.value.status == 503
    assert len(api_server.sent('POST', collection)) == FAST['max_retries'] + 1


def test_no_retry_on_422(make_kube, api_server):
    kube = make_kube()
    collection = '/api/v1/namespaces/apps/configmaps'
    api_server.fail[('POST', collection)] = [422]
    with pytest.raises(KubeApiError) as error:
        kube.create(_configmap())
    assert error.value.status == 422
    assert error.value.reason == 'Scripted'
    assert str(error.value) == 'create ConfigMap/settings in apps: 422 scripted failure 422'
    assert len(api_server.sent('POST', collection)) == 1
    assert kube.waits == []


def test_409_conflict_rereads_then_succeeds(make_kube, api_server):
    api_server.put(CM_PATH, _configmap())
    kube = make_kube()
    calls = []

    def mutate(obj):
        calls.append(obj['metadata']['resourceVersion'])
        if len(calls) == 1:
            # Another writer gets in between our read and our write.
            api_server.put(CM_PATH, _configmap(data={'color': 'green', 'owner': 'someone-else'}))
        obj['data']['color'] = 'red'

    before, after = kube.update_with_retry('v1', 'ConfigMap', 'settings', 'apps', mutate)
    assert len(calls) == 2 and calls[0] != calls[1]
    assert len(api_server.sent('PUT', CM_PATH)) == 2
    assert before['data'] == {'color': 'green', 'owner': 'someone-else'}
    assert after['data'] == {'color': 'red', 'owner': 'someone-else'}


def test_update_with_retry_uses_the_object_the_caller_read_and_rereads_only_on_conflict(make_kube, api_server):
    api_server.put(CM_PATH, _configmap())
    kube = make_kube()
    current = kube.get('v1', 'ConfigMap', 'settings', 'apps')
    gets = len(api_server.sent('GET', CM_PATH))
    kube.update_with_retry('v1', 'ConfigMap', 'settings', 'apps', lambda obj: obj['data'].update(color='red'),
                           current=current)
    assert len(api_server.sent('GET', CM_PATH)) == gets
    # A stale object (the write above moved the resourceVersion) conflicts and is read again.
    after = kube.update_with_retry('v1', 'ConfigMap', 'settings', 'apps',
                                   lambda obj: obj['data'].update(color='green'), current=current)[1]
    assert len(api_server.sent('GET', CM_PATH)) == gets + 1
    assert after['data']['color'] == 'green'


def test_update_with_retry_skips_the_write_when_nothing_changes(make_kube, api_server):
    api_server.put(CM_PATH, _configmap())
    kube = make_kube()
    # Both ways of "no change": a fresh equal dict, and an in-place edit that sets what is there.
    before, after = kube.update_with_retry('v1', 'ConfigMap', 'settings', 'apps', copy.deepcopy)
    assert before == after
    before, after = kube.update_with_retry('v1', 'ConfigMap', 'settings', 'apps',
                                           lambda obj: obj['data'].update(color='blue'))
    assert before == after
    assert not api_server.sent('PUT', CM_PATH)


def test_update_with_retry_gives_up_after_bounded_conflicts(make_kube, api_server):
    api_server.put(CM_PATH, _configmap())
    kube = make_kube()
    api_server.fail[('PUT', CM_PATH)] = [409] * 20
    with pytest.raises(KubeApiError) as error:
        kube.update_with_retry('v1', 'ConfigMap', 'settings', 'apps', lambda obj: obj['data'].update(a='b'))
    assert error.value.status == 409
    assert len(api_server.sent('PUT', CM_PATH)) == kube.retry_policy.conflict_retries + 1


def test_kind_not_served(make_kube):
    with pytest.raises(KubeError) as error:
        make_kube().resource('progressive.delivery/v1alpha1', 'Canary')
    assert error.value.field == 'kind'
    assert 'Canary (apiVersion progressive.delivery/v1alpha1) is not served' in str(error.value)


def test_resource_discovery_is_cached(make_kube, api_server):
    kube = make_kube()
    kube.resource('apps/v1', 'Deployment')
    discovered = len(api_server.requests)
    kube.resource('apps/v1', 'Deployment')
    kube.get('apps/v1', 'Deployment', 'web', 'apps')
    assert len(api_server.requests) == discovered + 1


def test_connection_refused_is_retried_then_reported(tmp_path):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    api_client = get_api_client({'host': 'http://127.0.0.1:%d' % port, 'api_key': 't'},
                                retry_policy=RetryPolicy(**FAST))
    kube = Kube(api_client, retry_policy=RetryPolicy(**FAST), discovery_cache_file=str(tmp_path / 'd.json'))
    with pytest.raises(KubeApiError) as error:
        kube.get('v1', 'ConfigMap', 'settings', 'apps')
    assert error.value.status is None
    assert 'no answer from the API server at http://127.0.0.1:%d, even after retries' % port in str(error.value)


def test_requests_time_out_instead_of_hanging(api_server, tmp_path):
    policy_args = dict(FAST)
    policy_args['max_retries'] = 1
    policy = RetryPolicy(**policy_args)
    api_client = get_api_client({'host': api_server.url, 'api_key': 't'}, retry_policy=policy)
    kube = Kube(api_client, retry_policy=policy, request_timeout=(1, 0.2),
                discovery_cache_file=str(tmp_path / 'd.json'))
    kube.resource('v1', 'ConfigMap')
    api_server.hang[('GET', CM_PATH)] = 1
    started = time.monotonic()
    with pytest.raises(KubeApiError) as error:
        kube.get('v1', 'ConfigMap', 'settings', 'apps')
    assert error.value.status is None and 'timed out' in str(error.value)
    assert time.monotonic() - started < 0.9


def test_urllib3_retry_covers_only_idempotent_methods():
    retry = RetryPolicy(max_retries=4).urllib3_retry()
    assert retry.total == 4
    assert set(retry.status_forcelist) == {429, 500, 502, 503, 504}
    assert 'GET' in retry.allowed_methods and 'PUT' in retry.allowed_methods
    assert 'POST' not in retry.allowed_methods and 'PATCH' not in retry.allowed_methods
    assert retry.raise_on_status is False


def test_kube_api_error_reads_the_status_body():
    class _Error(object):
        status = 409
        reason = 'Conflict'
        body = json.dumps(_status(409, 'Conflict', 'the object has been modified'))
    error = KubeApiError._from_api_exception('replace', 'Deployment', 'web', 'apps', _Error())
    assert (error.status, error.reason, error.message) == (409, 'Conflict', 'the object has been modified')
    assert str(error) == 'replace Deployment/web in apps: 409 the object has been modified'
    assert isinstance(error, KubeError)


def test_module_utils_imports_without_kubernetes():
    # ansible-test imports module_utils where kubernetes may be missing: the guard must hold.
    script = textwrap.dedent("""
        import importlib.abc, importlib.util, sys

        class NoKubernetes(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == 'kubernetes' or name.startswith('kubernetes.'):
                    raise ImportError('No module named %r' % name)

        sys.meta_path.insert(0, NoKubernetes())
        # The directory holding ansible_collections/, so _kube's sibling imports resolve.
        import os
        sys.path.insert(0, os.path.abspath(os.path.join(sys.argv[1], *(['..'] * 6))))
        spec = importlib.util.spec_from_file_location('_kube', sys.argv[1])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.HAS_KUBERNETES is False
        assert 'kubernetes' in module.KUBERNETES_IMPORT_ERROR
        try:
            module.get_api_client({})
        except module.KubeError as error:
            assert 'Failed to import the required Python library (kubernetes >= 24.2.0)' in str(error)
        else:
            raise AssertionError('expected KubeError')
    """)
    subprocess.check_call([sys.executable, '-c', script, _kube.__file__])
