# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Kubernetes connection, authentication and API access shared by every module.

Private to the collection (the leading underscore): modules import it, users do not.

* ``AUTH_ARG_SPEC`` -- the connection options, named as in kubernetes.core so that an
  AWX Kubernetes credential (``K8S_AUTH_*`` variables) works unchanged. Mirrored 1:1 by
  the ``progressive.delivery.auth`` doc fragment.
* ``get_api_client(params)`` -- a ``kubernetes.client.ApiClient`` built from those options.
* ``Kube`` -- the thin client every module talks through: cached discovery, server-side
  dry run for check mode, bounded retries, optimistic-concurrency updates, request counting.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

from ansible_collections.progressive.delivery.plugins.module_utils._http import make_retry

import atexit
import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

try:
    import kubernetes
    import kubernetes.client
    import kubernetes.config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.kube_config import KubeConfigMerger
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()

try:
    import urllib3
    import urllib3.exceptions
    from urllib3.util.retry import Retry
    try:
        from urllib3 import HTTPHeaderDict
    except ImportError:
        # urllib3 1.x only has it in the private module; same class.
        from urllib3._collections import HTTPHeaderDict
    HAS_URLLIB3 = True
except ImportError:
    HAS_URLLIB3 = False


# ---------------------------------------------------------------------------
# Connection options
# ---------------------------------------------------------------------------

AUTH_PROXY_HEADERS_SPEC = dict(
    proxy_basic_auth=dict(type='str', no_log=True,
                          fallback=(env_fallback, ['K8S_AUTH_PROXY_HEADERS_PROXY_BASIC_AUTH'])),
    basic_auth=dict(type='str', no_log=True,
                    fallback=(env_fallback, ['K8S_AUTH_PROXY_HEADERS_BASIC_AUTH'])),
    user_agent=dict(type='str',
                    fallback=(env_fallback, ['K8S_AUTH_PROXY_HEADERS_USER_AGENT'])),
)

# Environment names follow kubernetes.core, which accepts both K8S_AUTH_<option> and
# K8S_AUTH_<kubernetes-client name> (option name first), so either spelling that AWX or a
# user already exports keeps working.
AUTH_ARG_SPEC = dict(
    kubeconfig=dict(type='raw', fallback=(env_fallback, ['K8S_AUTH_KUBECONFIG'])),
    context=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_CONTEXT'])),
    host=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_HOST'])),
    api_key=dict(type='str', no_log=True, fallback=(env_fallback, ['K8S_AUTH_API_KEY'])),
    username=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_USERNAME'])),
    password=dict(type='str', no_log=True, fallback=(env_fallback, ['K8S_AUTH_PASSWORD'])),
    # Stricter than kubernetes.core (which leaves it unset): TLS is verified unless the
    # user says otherwise, even when the kubeconfig sets insecure-skip-tls-verify.
    validate_certs=dict(type='bool', default=True, aliases=['verify_ssl'],
                        fallback=(env_fallback, ['K8S_AUTH_VALIDATE_CERTS', 'K8S_AUTH_VERIFY_SSL'])),
    ca_cert=dict(type='path', aliases=['ssl_ca_cert'],
                 fallback=(env_fallback, ['K8S_AUTH_CA_CERT', 'K8S_AUTH_SSL_CA_CERT'])),
    client_cert=dict(type='path', aliases=['cert_file'],
                     fallback=(env_fallback, ['K8S_AUTH_CLIENT_CERT', 'K8S_AUTH_CERT_FILE'])),
    client_key=dict(type='path', aliases=['key_file'], no_log=False,
                    fallback=(env_fallback, ['K8S_AUTH_CLIENT_KEY', 'K8S_AUTH_KEY_FILE'])),
    proxy=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_PROXY'])),
    no_proxy=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_NO_PROXY'])),
    proxy_headers=dict(type='dict', options=AUTH_PROXY_HEADERS_SPEC),
    persist_config=dict(type='bool', fallback=(env_fallback, ['K8S_AUTH_PERSIST_CONFIG'])),
    impersonate_user=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_IMPERSONATE_USER'])),
    impersonate_groups=dict(type='list', elements='str',
                            fallback=(env_fallback, ['K8S_AUTH_IMPERSONATE_GROUPS'])),
)

# For AnsibleModule(mutually_exclusive=..., required_together=..., required_by=...).
# get_api_client() checks the same rules itself, because env fallbacks and callers that
# are not modules (lookup/inventory plugins, tests) never go through AnsibleModule.
AUTH_MUTUALLY_EXCLUSIVE = [
    ('api_key', 'username'),
    ('api_key', 'password'),
]
AUTH_REQUIRED_TOGETHER = [
    ('username', 'password'),
]
AUTH_REQUIRED_BY = {
    # The API server rejects group (or extra) impersonation without a user.
    'impersonate_groups': ('impersonate_user',),
    'client_key': ('client_cert',),
}

_AUTH_COMBINATION_FIXES = {
    ('api_key', 'username'): 'authenticate with a bearer token (api_key) or with basic auth '
                             '(username and password), not both',
    ('api_key', 'password'): 'authenticate with a bearer token (api_key) or with basic auth '
                             '(username and password), not both',
    ('username', 'password'): 'basic auth needs both username and password',
    ('impersonate_groups', 'impersonate_user'): 'the API server only impersonates groups on '
                                                'behalf of an impersonated user; set impersonate_user too',
    ('client_key', 'client_cert'): 'a client key is only used together with its client certificate; '
                                   'set client_cert too',
}

_PATCH_CONTENT_TYPES = {
    'merge': 'application/merge-patch+json',
    'strategic': 'application/strategic-merge-patch+json',
    'json': 'application/json-patch+json',
}

DEFAULT_FIELD_MANAGER = 'progressive-delivery'


class KubeError(Exception):
    """A problem the user fixes by changing ``field``; str() names the field and the fix.

    Base class of everything this module raises, so a module can catch one type.
    """

    def __init__(self, field, message):
        self.field = field
        self.message = message
        super(KubeError, self).__init__(str(self))

    def __str__(self):
        if self.field:
            return '%s: %s' % (self.field, self.message)
        return self.message


class KubeApiError(KubeError):
    """A request the API server refused (or that never got an answer).

    ``status`` is the HTTP status code (None when the connection failed), ``reason`` the
    machine-readable reason (``Conflict``, ``Invalid``, ...) and ``message`` the server's
    explanation, both from the returned Status object when there is one.
    """

    def __init__(self, verb, kind, name, namespace, status, reason, message, body=None):
        self.verb = verb
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.status = status
        self.reason = reason
        self.body = body
        super(KubeApiError, self).__init__(None, message)

    def __str__(self):
        target = '%s %s/%s' % (self.verb, self.kind, self.name) if self.name else '%s %s' % (self.verb, self.kind)
        if self.namespace:
            target += ' in %s' % self.namespace
        if self.status == 401:
            # The server says only "Unauthorized": say which options carry the credentials.
            return ('%s: 401 %s; the API server did not accept the credentials: renew the token (api_key, or the '
                    'user in the kubeconfig) or fix username/password or client_cert/client_key'
                    % (target, self.message))
        if self.status:
            return '%s: %s %s' % (target, self.status, self.message)
        return '%s: %s' % (target, self.message)

    @classmethod
    def _from_api_exception(cls, verb, kind, name, namespace, error):
        body = getattr(error, 'body', None)
        if isinstance(body, bytes):
            body = body.decode('utf-8', 'replace')
        reason = getattr(error, 'reason', None)
        message = None
        try:
            status_object = json.loads(body) if body else None
        except ValueError:
            status_object = None
        if isinstance(status_object, dict):
            message = status_object.get('message')
            reason = status_object.get('reason') or reason
        if not message:
            message = (body or reason or 'no message from the server').strip()
        return cls(verb, kind, name, namespace, error.status or None, reason, message, body)


def resolve_auth_params(params):
    """Return the connection options of ``params`` with aliases, env fallbacks, types and
    defaults applied, exactly as AnsibleModule would.

    Idempotent, so module.params (already resolved) can go through it again; callers that
    are not modules get the same ``K8S_AUTH_*`` behaviour.
    """
    params = params or {}
    given = {}
    for name, spec in AUTH_ARG_SPEC.items():
        value = params.get(name)
        for alias in spec.get('aliases', ()):
            if value is None:
                value = params.get(alias)
        if value is not None:
            given[name] = value
    result = ArgumentSpecValidator(AUTH_ARG_SPEC).validate(given)
    if result.error_messages:
        raise KubeError(None, '; '.join(result.error_messages))
    resolved = result.validated_parameters
    if resolved.get('proxy_headers') is None:
        # Suboption fallbacks only run when the dict itself is given; kubernetes.core also
        # reads K8S_AUTH_PROXY_HEADERS_* when it is not.
        from_env = {}
        for key, spec in AUTH_PROXY_HEADERS_SPEC.items():
            env_names = spec['fallback'][1]
            for env_name in env_names:
                if env_name in os.environ:
                    from_env[key] = os.environ[env_name]
                    break
        resolved['proxy_headers'] = from_env or None
    return resolved


def _check_auth_combinations(auth):
    for first, second in AUTH_MUTUALLY_EXCLUSIVE:
        if auth.get(first) and auth.get(second):
            raise KubeError(first, 'cannot be combined with %s; %s'
                            % (second, _AUTH_COMBINATION_FIXES[(first, second)]))
    for group in AUTH_REQUIRED_TOGETHER:
        present = [name for name in group if auth.get(name)]
        if present and len(present) != len(group):
            missing = [name for name in group if name not in present]
            raise KubeError(present[0], 'is set but %s is not; %s'
                            % (', '.join(missing), _AUTH_COMBINATION_FIXES[tuple(group)]))
    for name, needed in AUTH_REQUIRED_BY.items():
        if not auth.get(name):
            continue
        for other in needed:
            if not auth.get(other):
                raise KubeError(name, 'is set but %s is not; %s'
                                % (other, _AUTH_COMBINATION_FIXES[(name, other)]))


# ---------------------------------------------------------------------------
# Retries
# ---------------------------------------------------------------------------

class RetryPolicy(object):
    """How hard to retry transient failures: HTTP 429/500/502/503/504, refused or reset
    connections and timeouts. Never 4xx validation errors.

    Two layers share these numbers. urllib3's ``Retry`` (set as ``Configuration.retries``
    by get_api_client) retries connection failures for every request, and status codes and
    read failures for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS). ``Kube`` retries
    the rest itself: status codes on POST/PATCH, which urllib3 will not replay, and read
    failures for writes that are idempotent anyway (server-side apply, merge patches).

    Bounded by ``max_retries`` per request and by ``deadline`` seconds for Kube's own loop;
    each wait is ``backoff_factor * 2**n`` seconds, capped at ``backoff_max``.
    ``conflict_retries`` bounds Kube.update_with_retry's re-read-and-retry on HTTP 409.
    """

    IDEMPOTENT_METHODS = frozenset(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])

    def __init__(self, max_retries=5, backoff_factor=0.5, backoff_max=8.0, deadline=60.0,
                 statuses=(429, 500, 502, 503, 504), conflict_retries=5):
        self.max_retries = int(max_retries)
        self.backoff_factor = float(backoff_factor)
        self.backoff_max = float(backoff_max)
        self.deadline = float(deadline)
        self.statuses = frozenset(statuses)
        self.conflict_retries = int(conflict_retries)

    def delay(self, retry_number, retry_after=None):
        """Seconds to wait before retry ``retry_number`` (0-based)."""
        wait = min(self.backoff_max, self.backoff_factor * (2 ** retry_number))
        if retry_after is not None:
            # The server knows better when it will have room again, but never wait
            # longer than our own cap.
            wait = max(wait, min(retry_after, self.backoff_max))
        return wait

    def urllib3_retry(self):
        """The connection-level half, for ``kubernetes.client.Configuration.retries``."""
        return make_retry(self.IDEMPOTENT_METHODS, self.max_retries, self.backoff_factor, self.statuses,
                          self.backoff_max)


# ---------------------------------------------------------------------------
# ApiClient construction
# ---------------------------------------------------------------------------

def _require_kubernetes():
    # The traceback stays in KUBERNETES_IMPORT_ERROR for fail_json(exception=...).
    if not HAS_KUBERNETES:
        raise KubeError(None, missing_required_lib('kubernetes >= 24.2.0'))


def _kubeconfig_paths(value):
    return [os.path.expanduser(path) for path in value.split(os.pathsep) if path]


def _default_kubeconfig():
    # Read at call time: kubernetes.config captures KUBECONFIG once, at import.
    return os.environ.get('KUBECONFIG') or '~/.kube/config'


def _contexts_of(config):
    names = []
    for entry in config.get('contexts') or []:
        # Entries of a merged kubeconfig come wrapped in the client's ConfigNode.
        entry = getattr(entry, 'value', entry)
        if isinstance(entry, dict) and entry.get('name'):
            names.append(entry['name'])
    return names, config.get('current-context')


def _read_kubeconfig_files(paths, source):
    try:
        merged = KubeConfigMerger(os.pathsep.join(paths)).config
    except Exception as error:  # yaml and ConfigException alike: the file is unusable
        raise KubeError('kubeconfig', 'cannot read %s: %s; pass a valid kubeconfig file' % (source, error))
    value = getattr(merged, 'value', merged)
    if not isinstance(value, dict):
        raise KubeError('kubeconfig', '%s is not a kubeconfig (no mapping at the top level); '
                                      'pass a valid kubeconfig file' % source)
    return value


def _check_context(context, config, source):
    contexts, current = _contexts_of(config)
    available = ', '.join(sorted(contexts)) or 'none'
    if context:
        if context not in contexts:
            raise KubeError('context', 'context "%s" is not defined in %s; use one of: %s'
                            % (context, source, available))
    elif not current:
        raise KubeError('context', '%s has no current-context; pass context, one of: %s' % (source, available))


def _load_kubeconfig(configuration, kubeconfig, context, persist_config):
    persist = bool(persist_config)
    if isinstance(kubeconfig, dict):
        source = 'the kubeconfig dict'
        _check_context(context, kubeconfig, source)
        load = kubernetes.config.load_kube_config_from_dict
        load_args = dict(config_dict=kubeconfig)
    elif kubeconfig is None or isinstance(kubeconfig, str):
        explicit = kubeconfig is not None
        paths = _kubeconfig_paths(kubeconfig if explicit else _default_kubeconfig())
        existing = [path for path in paths if os.path.isfile(path)]
        missing = [path for path in paths if path not in existing]
        if explicit and (missing or not paths):
            raise KubeError('kubeconfig', 'file %s does not exist; pass a path to a kubeconfig file or '
                                          'a kubeconfig dict' % (missing[0] if missing else '""'))
        if not existing:
            raise KubeError('kubeconfig', 'no cluster connection configured: not running in a pod and no '
                                          'kubeconfig at %s; pass kubeconfig (a path or a dict), or host with '
                                          'api_key, or set K8S_AUTH_KUBECONFIG' % os.pathsep.join(paths))
        source = 'kubeconfig %s' % os.pathsep.join(existing)
        _check_context(context, _read_kubeconfig_files(existing, source), source)
        load = kubernetes.config.load_kube_config
        load_args = dict(config_file=os.pathsep.join(existing))
    else:
        raise KubeError('kubeconfig', 'expected a path to a kubeconfig file or a kubeconfig dict, got %s'
                        % type(kubeconfig).__name__)
    try:
        load(context=context, client_configuration=configuration, persist_config=persist, **load_args)
    except KubeError:
        raise
    except Exception as error:  # ConfigException, exec plugin failures, bad base64, ...
        raise KubeError('kubeconfig', 'cannot use %s%s: %s; fix the kubeconfig or pass host and credentials'
                        % (source, ' (context %s)' % context if context else '', error))


def _has_explicit_credentials(auth):
    return bool(auth.get('host') and (auth.get('api_key')
                                      or (auth.get('username') and auth.get('password'))
                                      or auth.get('client_cert')))


def _base_configuration(auth):
    configuration = kubernetes.client.Configuration()
    if _has_explicit_credentials(auth):
        return configuration
    if auth.get('kubeconfig') is not None or auth.get('context'):
        _load_kubeconfig(configuration, auth.get('kubeconfig'), auth.get('context'), auth.get('persist_config'))
        return configuration
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
        return configuration
    except kubernetes.config.ConfigException:
        pass  # not in a pod: the default kubeconfig is next, as kubectl does
    _load_kubeconfig(configuration, None, None, auth.get('persist_config'))
    return configuration


def _set_authorization(configuration, value):
    # Older clients read api_key['authorization'], 37+ reads 'BearerToken' first; an explicit
    # credential must also win over a kubeconfig exec/oidc token and its refresh hook.
    configuration.api_key = {'authorization': value, 'BearerToken': value}
    configuration.api_key_prefix = {}
    configuration.refresh_api_key_hook = None


def _check_file(field, path, what):
    if path and not os.path.isfile(path):
        raise KubeError(field, 'file %s does not exist; pass the path to %s' % (path, what))


def _apply_explicit_options(configuration, auth):
    if auth.get('host'):
        configuration.host = auth['host'].rstrip('/')
    if auth.get('api_key'):
        token = auth['api_key'].strip()
        if token.lower().startswith('bearer '):
            token = token[len('bearer '):].strip()
        _set_authorization(configuration, 'Bearer %s' % token)
    elif auth.get('username') and auth.get('password'):
        _set_authorization(configuration, urllib3.util.make_headers(
            basic_auth='%s:%s' % (auth['username'], auth['password']))['authorization'])
    if auth.get('validate_certs') is not None:
        configuration.verify_ssl = auth['validate_certs']
    _check_file('ca_cert', auth.get('ca_cert'), "the PEM bundle of the CA that signed the API server's certificate")
    _check_file('client_cert', auth.get('client_cert'), 'the PEM client certificate')
    _check_file('client_key', auth.get('client_key'), 'the PEM key of the client certificate')
    if auth.get('ca_cert'):
        configuration.ssl_ca_cert = auth['ca_cert']
    if auth.get('client_cert'):
        configuration.cert_file = auth['client_cert']
    if auth.get('client_key'):
        configuration.key_file = auth['client_key']
    if auth.get('proxy'):
        configuration.proxy = auth['proxy']
    if auth.get('no_proxy'):
        configuration.no_proxy = auth['no_proxy']
    headers = dict((key, value) for key, value in (auth.get('proxy_headers') or {}).items() if value is not None)
    if headers:
        configuration.proxy_headers = urllib3.util.make_headers(**headers)


def _wrap_rest_request(api_client, wrapper):
    """Route every HTTP request of ``api_client`` through ``wrapper(send, *args, **kwargs)``.

    All client generations funnel requests through ``rest_client.request`` (the per-verb
    helpers of older ones call it too), so this sees discovery and API calls alike.
    """
    rest_client = api_client.rest_client
    send = rest_client.request

    def request(*args, **kwargs):
        return wrapper(send, *args, **kwargs)

    rest_client.request = request


def _install_impersonation(api_client, user, groups):
    if user:
        api_client.set_default_header('Impersonate-User', user)
    if not groups:
        return
    if len(groups) > 1 and int(urllib3.__version__.split('.', 1)[0]) < 2:
        raise KubeError('impersonate_groups', 'more than one group needs urllib3 >= 2 (urllib3 %s would send '
                                              'them as one comma-joined group); upgrade urllib3 or pass one group'
                        % urllib3.__version__)

    # The API server wants one Impersonate-Group header per group, but the generated client
    # keeps headers in a plain dict; urllib3's HTTPHeaderDict sends repeated values.
    def with_group_headers(send, *args, **kwargs):
        headers = HTTPHeaderDict(kwargs.get('headers') or {})
        for group in groups:
            headers.add('Impersonate-Group', group)
        kwargs['headers'] = headers
        return send(*args, **kwargs)

    _wrap_rest_request(api_client, with_group_headers)


def get_api_client(params=None, retry_policy=None):
    """Build a ``kubernetes.client.ApiClient`` from the connection options in ``params``.

    Resolution follows kubernetes.core: host with a credential (api_key, username and
    password, or client_cert) needs nothing else; otherwise kubeconfig (a path, several
    joined by ``:``, or a dict) and/or context are loaded; otherwise the in-cluster service
    account, then the default kubeconfig (``KUBECONFIG`` or ``~/.kube/config``). Explicit
    options then override what was loaded. Raises KubeError naming the option to fix.
    """
    _require_kubernetes()
    auth = resolve_auth_params(params)
    _check_auth_combinations(auth)
    configuration = _base_configuration(auth)
    _apply_explicit_options(configuration, auth)
    configuration.retries = (retry_policy or RetryPolicy()).urllib3_retry()
    api_client = kubernetes.client.ApiClient(configuration)
    _install_impersonation(api_client, auth.get('impersonate_user'), auth.get('impersonate_groups'))
    return api_client


# ---------------------------------------------------------------------------
# The client modules use
# ---------------------------------------------------------------------------

_private_cache_dir = []


def _discovery_cache_file(host):
    """A per-user discovery cache, so module runs after the first skip rediscovery.

    Kept out of the shared temp directory the dynamic client defaults to: a file there
    could be planted by another user to redirect requests.
    """
    name = 'discovery-%s.json' % hashlib.sha256(host.encode('utf-8')).hexdigest()[:24]
    directory = os.path.join(os.path.expanduser('~'), '.kube', 'cache', 'progressive-delivery')
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        if os.access(directory, os.W_OK):
            return os.path.join(directory, name)
    except OSError:
        pass
    if not _private_cache_dir:
        _private_cache_dir.append(tempfile.mkdtemp(prefix='pd-discovery-'))
        atexit.register(shutil.rmtree, _private_cache_dir[0], True)
    return os.path.join(_private_cache_dir[0], name)


def _to_dict(value):
    if value is None:
        return None
    if hasattr(value, 'to_dict'):
        return value.to_dict()
    return value


def _retry_after_seconds(error):
    headers = getattr(error, 'headers', None)
    if not headers:
        return None
    try:
        return float(headers.get('Retry-After'))
    except (TypeError, ValueError):
        return None


class Kube(object):
    """What modules use to talk to the API server. Every method returns plain dicts.

    ``dry_run=True`` sends every write with ``dryRun=All``: the server validates and
    admits it, runs defaulting, and persists nothing -- this is how check mode works.
    ``request_count`` counts HTTP requests (discovery and retries included).
    """

    def __init__(self, api_client, dry_run=False, retry_policy=None, request_timeout=(10, 60),
                 discovery_cache_file=None):
        _require_kubernetes()
        self.api_client = api_client
        self.dry_run = bool(dry_run)
        self.retry_policy = retry_policy or RetryPolicy()
        self.request_timeout = request_timeout
        self._discovery_cache_file = discovery_cache_file
        self._dynamic = None
        self._resources = {}
        self._requests = 0
        self._sleep = time.sleep
        self._clock = time.monotonic
        _wrap_rest_request(api_client, self._counted)
        retries = getattr(api_client.configuration, 'retries', None)
        if isinstance(retries, Retry) and retries.status_forcelist:
            self._urllib3_retried_methods = frozenset(
                getattr(retries, 'allowed_methods', None) or getattr(retries, 'method_whitelist', None) or ())
        else:
            self._urllib3_retried_methods = frozenset()

    # -- request accounting -------------------------------------------------

    @property
    def request_count(self):
        return self._requests

    @request_count.setter
    def request_count(self, value):
        # Lets a benchmark reset the counter between steps.
        self._requests = int(value)

    def _counted(self, send, *args, **kwargs):
        # Here rather than per call so discovery requests get a timeout too: without one a
        # hung API server would hang the module forever.
        if kwargs.get('_request_timeout') is None:
            kwargs['_request_timeout'] = self.request_timeout
        self._requests += 1
        response = send(*args, **kwargs)
        # The urllib3 response is wrapped (37+: .response, older: .urllib3_response), or
        # returned as is when the caller asked not to preload the body.
        raw = getattr(response, 'response', None) or getattr(response, 'urllib3_response', None) or response
        history = getattr(getattr(raw, 'retries', None), 'history', None) or ()
        # Retries urllib3 made inside this call are requests too.
        self._requests += len(history)
        return response

    # -- discovery ----------------------------------------------------------

    @property
    def dynamic(self):
        """The underlying ``kubernetes.dynamic.DynamicClient``, created (and discovery
        started) on first use."""
        if self._dynamic is None:
            cache_file = self._discovery_cache_file or _discovery_cache_file(self.api_client.configuration.host)
            self._dynamic = self._call('discover', 'APIResources', None, None,
                                       lambda: DynamicClient(self.api_client, cache_file=cache_file),
                                       method='GET', idempotent=True)
        return self._dynamic

    def resource(self, api_version, kind):
        """The discovered API resource for ``api_version``/``kind`` (cached)."""
        key = (api_version, kind)
        if key not in self._resources:
            dynamic = self.dynamic
            try:
                # LazyDiscoverer refreshes once on a miss, so a CRD installed since the
                # cache was written is still found.
                found = self._call('discover', kind, None, None,
                                   lambda: dynamic.resources.get(api_version=api_version, kind=kind),
                                   method='GET', idempotent=True)
            except (ResourceNotFoundError, ResourceNotUniqueError):
                raise KubeError('kind', '%s (apiVersion %s) is not served by the cluster at %s; install the '
                                        'CRD or API that provides it, or correct apiVersion/kind'
                                % (kind, api_version, self.api_client.configuration.host))
            self._resources[key] = found
        return self._resources[key]

    def _status_resource(self, api_version, kind):
        resource = self.resource(api_version, kind)
        status = (getattr(resource, 'subresources', None) or {}).get('status')
        if status is None:
            raise KubeError('kind', '%s (apiVersion %s) has no status subresource; enable '
                                    'subresources.status in its CRD' % (kind, api_version))
        return resource, status

    # -- the retry loop -----------------------------------------------------

    def _dry_run_args(self):
        return {'dry_run': 'All'} if self.dry_run else {}

    def _call(self, verb, kind, name, namespace, send, method, idempotent, missing_ok=False):
        """Run ``send()`` and retry what urllib3 could not (see RetryPolicy)."""
        policy = self.retry_policy
        started = self._clock()
        retry_number = 0
        while True:
            retry_after = None
            try:
                return send()
            except ApiException as error:
                if error.status == 404 and missing_ok:
                    return None
                retryable = (error.status in policy.statuses
                             and method not in self._urllib3_retried_methods)
                retry_after = _retry_after_seconds(error)
                failure = KubeApiError._from_api_exception(verb, kind, name, namespace, error)
            except urllib3.exceptions.MaxRetryError as error:
                # urllib3 has already spent the retry budget on this one.
                retryable = False
                failure = KubeApiError(verb, kind, name, namespace, None, 'ConnectionFailed',
                                       'no answer from the API server at %s, even after retries: %s'
                                       % (self.api_client.configuration.host, error.reason))
            except (urllib3.exceptions.HTTPError, OSError) as error:
                # A write that died mid-flight may have landed; only replay it if doing it
                # twice is harmless.
                retryable = idempotent and method not in self._urllib3_retried_methods
                failure = KubeApiError(verb, kind, name, namespace, None, 'ConnectionFailed',
                                       'no answer from the API server at %s: %s'
                                       % (self.api_client.configuration.host, error))
            if retryable and retry_number < policy.max_retries:
                wait = policy.delay(retry_number, retry_after)
                if self._clock() - started + wait <= policy.deadline:
                    self._sleep(wait)
                    retry_number += 1
                    continue
            raise failure

    # -- reads --------------------------------------------------------------

    def _namespace_for(self, resource, kind, namespace):
        if getattr(resource, 'namespaced', False):
            if not namespace:
                raise KubeError('namespace', '%s is namespaced; pass the namespace it lives in' % kind)
            return namespace
        return None

    def get(self, api_version, kind, name, namespace=None):
        """The object as a dict, or None when it does not exist."""
        resource = self.resource(api_version, kind)
        namespace = self._namespace_for(resource, kind, namespace)
        found = self._call('get', kind, name, namespace,
                           lambda: resource.get(name=name, namespace=namespace),
                           method='GET', idempotent=True, missing_ok=True)
        return _to_dict(found)

    def list(self, api_version, kind, namespace=None, label_selector=None, field_selector=None):
        """The items (dicts) of ``kind``; all namespaces when ``namespace`` is None."""
        resource = self.resource(api_version, kind)
        found = self._call('list', kind, '', namespace,
                           lambda: resource.get(namespace=namespace, label_selector=label_selector,
                                                field_selector=field_selector),
                           method='GET', idempotent=True)
        return (_to_dict(found) or {}).get('items') or []

    # -- writes -------------------------------------------------------------

    @staticmethod
    def _identity(obj):
        if not isinstance(obj, dict):
            raise KubeError('definition', 'expected a Kubernetes object as a dict, got %s' % type(obj).__name__)
        metadata = obj.get('metadata') or {}
        api_version, kind = obj.get('apiVersion'), obj.get('kind')
        if not api_version or not kind:
            raise KubeError('definition', 'apiVersion and kind are required in the object')
        return api_version, kind, metadata.get('name'), metadata.get('namespace')

    def create(self, obj):
        api_version, kind, name, namespace = self._identity(obj)
        resource = self.resource(api_version, kind)
        namespace = self._namespace_for(resource, kind, namespace)
        shown_name = name or '%s*' % ((obj.get('metadata') or {}).get('generateName') or '')
        created = self._call('create', kind, shown_name, namespace,
                             lambda: resource.create(body=obj, namespace=namespace, **self._dry_run_args()),
                             method='POST', idempotent=False)
        return _to_dict(created)

    def replace(self, obj):
        """PUT the whole object. With metadata.resourceVersion set, fails with 409 when the
        object changed since it was read (see update_with_retry)."""
        api_version, kind, name, namespace = self._identity(obj)
        resource = self.resource(api_version, kind)
        namespace = self._namespace_for(resource, kind, namespace)
        replaced = self._call('replace', kind, name, namespace,
                              lambda: resource.replace(body=obj, name=name, namespace=namespace, **self._dry_run_args()),
                              method='PUT', idempotent=True)
        return _to_dict(replaced)

    def _patch(self, target, verb, kind, name, namespace, patch, patch_type):
        if patch_type not in _PATCH_CONTENT_TYPES:
            raise KubeError('patch_type', 'must be one of %s, got %s'
                            % (', '.join(sorted(_PATCH_CONTENT_TYPES)), patch_type))
        if patch_type == 'json' and not isinstance(patch, list):
            raise KubeError('patch', 'a json patch is a list of operations, got %s' % type(patch).__name__)
        patched = self._call(verb, kind, name, namespace,
                             lambda: self.dynamic.patch(target, body=patch, name=name, namespace=namespace,
                                                        content_type=_PATCH_CONTENT_TYPES[patch_type],
                                                        **self._dry_run_args()),
                             # A JSON patch can append to lists; replaying it could apply it twice.
                             method='PATCH', idempotent=patch_type != 'json')
        return _to_dict(patched)

    def patch(self, api_version, kind, name, namespace, patch, patch_type='merge'):
        """Patch with a merge (RFC 7386), strategic-merge (built-in kinds only) or JSON
        (RFC 6902, a list) patch."""
        resource = self.resource(api_version, kind)
        namespace = self._namespace_for(resource, kind, namespace)
        return self._patch(resource, 'patch', kind, name, namespace, patch, patch_type)

    def apply(self, obj, field_manager=DEFAULT_FIELD_MANAGER, force=True):
        """Server-side apply: the server merges ``obj`` and records ``field_manager`` as the
        owner of the fields it sets. ``force`` takes over fields other managers own."""
        api_version, kind, name, namespace = self._identity(obj)
        if not name:
            raise KubeError('definition', 'metadata.name is required to apply %s' % kind)
        resource = self.resource(api_version, kind)
        namespace = self._namespace_for(resource, kind, namespace)
        # Sent as a JSON string (JSON is YAML): older clients refuse to serialise a dict for
        # the application/apply-patch+yaml content type.
        body = json.dumps(obj)
        applied = self._call('apply', kind, name, namespace,
                             lambda: self.dynamic.server_side_apply(
                                 resource, body=body, name=name, namespace=namespace,
                                 field_manager=field_manager, force_conflicts=bool(force), **self._dry_run_args()),
                             method='PATCH', idempotent=True)
        return _to_dict(applied)

    def delete(self, api_version, kind, name, namespace=None, propagation_policy='Background'):
        """Delete; returns what the server answered (the object or a Status), or None when
        it was already gone."""
        resource = self.resource(api_version, kind)
        namespace = self._namespace_for(resource, kind, namespace)
        deleted = self._call('delete', kind, name, namespace,
                             lambda: resource.delete(name=name, namespace=namespace,
                                                     propagation_policy=propagation_policy,
                                                     **self._dry_run_args()),
                             method='DELETE', idempotent=True, missing_ok=True)
        return _to_dict(deleted)

    def patch_status(self, api_version, kind, name, namespace, patch, patch_type='merge'):
        """Patch the status subresource (the main resource ignores status changes)."""
        resource, status = self._status_resource(api_version, kind)
        namespace = self._namespace_for(resource, kind, namespace)
        return self._patch(status, 'patch status of', kind, name, namespace, patch, patch_type)

    def replace_status(self, obj):
        api_version, kind, name, namespace = self._identity(obj)
        resource, status = self._status_resource(api_version, kind)
        namespace = self._namespace_for(resource, kind, namespace)
        replaced = self._call('replace status of', kind, name, namespace,
                              lambda: self.dynamic.replace(status, body=obj, name=name, namespace=namespace,
                                                           **self._dry_run_args()),
                              method='PUT', idempotent=True)
        return _to_dict(replaced)

    def update_with_retry(self, api_version, kind, name, namespace, mutate, status=False, current=None):
        """Read, ``mutate(obj)`` (edit in place or return a new dict), replace; on 409
        Conflict re-read and try again, at most ``retry_policy.conflict_retries`` times.

        Returns ``(before, after)``; when mutate changed nothing there is no write and
        ``after`` equals ``before``. ``status=True`` writes the status subresource.
        ``current``, the object as the caller just read it, saves the first GET; a conflict
        still re-reads.
        """
        write = self.replace_status if status else self.replace
        policy = self.retry_policy
        conflict_number = 0
        while True:
            if current is None:
                current = self.get(api_version, kind, name, namespace)
            if current is None:
                raise KubeApiError('update', kind, name, namespace, 404, 'NotFound',
                                   '%s "%s" not found' % (kind, name))
            before = copy.deepcopy(current)
            returned = mutate(current)
            desired = current if returned is None else returned
            if desired == before:
                return before, before
            # Pin the version we read, even if mutate built a fresh dict: without it the
            # PUT would silently overwrite a concurrent change instead of conflicting.
            desired.setdefault('metadata', {})['resourceVersion'] = before['metadata'].get('resourceVersion')
            try:
                return before, write(desired)
            except KubeApiError as error:
                if error.status != 409 or conflict_number >= policy.conflict_retries:
                    raise
            # Someone else just wrote; client-go's DefaultRetry re-reads after ~10 ms, growing.
            self._sleep(min(0.01 * (2 ** conflict_number), policy.backoff_max))
            conflict_number += 1
            current = None
