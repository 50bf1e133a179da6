# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Metric sources: one file per source behind one small interface, and a factory by name.

Every source offers:

* ``query(text, window=None, at=None)`` -- one number (float) for the query, or a ``NoData``
  result when the source answered but had nothing to judge (no series, NaN, null). ``window`` is
  the look-back in seconds for sources whose query language has no range of its own (Datadog);
  ``at`` is the evaluation time (Unix seconds), default now.
* ``query_range(text, start, end, step)`` -- a list of ``(unix_time, value)`` pairs (values may be
  NaN), or ``NoData``; the statistical judge needs series, not single numbers.
* ``is_online()`` -- True, or raises ``SourceUnavailable`` naming the cause: a bare False would
  lose the reason the gate has to report.

Failures are exceptions, never numbers, so no caller can mistake an outage for a passing value:
``SourceUnavailable`` (down, timed out, 5xx, credentials refused), ``QueryRejected`` (the source
says the query itself is wrong), ``UnexpectedResult`` (an answer the gate cannot turn into one
number, e.g. several series).

HTTP goes through ``requests`` with urllib3 ``Retry`` for transient failures (refused or reset
connections, 429, 500, 502, 503, 504) and a timeout on every call.

Private to the collection (the leading underscore): its API may change between minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

from ansible_collections.progressive.delivery.plugins.module_utils._http import HAS_URLLIB3, make_retry

import re
import traceback

try:
    import requests
    import requests.adapters
    import requests.exceptions
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError:
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()


SOURCE_TYPES = ('prometheus', 'datadog', 'http')

# The ``source`` option of metric_gate and metric_watch, documented once by the
# progressive.delivery.metric_source doc fragment.
SOURCE_ARG_SPEC = dict(
    type=dict(type='str', choices=list(SOURCE_TYPES), default='prometheus'),
    address=dict(type='str'),
    bearer_token=dict(type='str', no_log=True),
    username=dict(type='str'),
    password=dict(type='str', no_log=True),
    headers=dict(type='dict', no_log=True),
    ca_cert=dict(type='path'),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='float', default=10),
    retries=dict(type='int', default=3),
    api_key=dict(type='str', no_log=True),
    application_key=dict(type='str', no_log=True),
    method=dict(type='str', choices=['GET', 'POST'], default='GET'),
    body=dict(type='raw'),
)
DEFAULT_SOURCE_TYPE = 'prometheus'
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
RETRY_STATUSES = (429, 500, 502, 503, 504)
# Queries are reads, so POST (Prometheus' form-encoded queries) is as safe to replay as GET.
RETRY_METHODS = frozenset(['GET', 'POST', 'HEAD'])
_BACKOFF_FACTOR = 0.5
_BACKOFF_MAX = 5.0

# The settings every source understands; the module's ``source`` option mirrors them.
SETTINGS_KEYS = (
    'type', 'address', 'bearer_token', 'username', 'password', 'headers', 'ca_cert', 'validate_certs',
    'timeout', 'retries', 'api_key', 'application_key', 'method', 'body',
)


class NoData(object):
    """The source answered, with nothing to judge. Falsy, and never equal to a number."""

    def __init__(self, reason):
        self.reason = reason

    def __bool__(self):
        return False

    __nonzero__ = __bool__

    def __repr__(self):
        return 'NoData(%r)' % (self.reason,)


def is_no_data(value):
    return isinstance(value, NoData)


class MetricSourceError(Exception):
    """The source gave no usable answer. ``message`` says why, naming the source and address."""

    def __init__(self, message):
        super(MetricSourceError, self).__init__(message)
        self.message = message


class SourceUnavailable(MetricSourceError):
    """Down, unreachable, timed out, overloaded, or refusing our credentials."""


class QueryRejected(MetricSourceError):
    """The source says the query itself is wrong (syntax, unknown function, bad expression)."""


class UnexpectedResult(MetricSourceError):
    """An answer that is not one number: several series, a string, a wrong result type."""


class SourceConfigError(ValueError):
    """Settings that cannot work (missing address, unknown type). ``field`` names the option."""

    def __init__(self, field, message):
        super(SourceConfigError, self).__init__('%s: %s' % (field, message) if field else message)
        self.field = field
        self.message = message


def make_source(settings, session=None, clock=None):
    """The source named by ``settings['type']`` (default prometheus), built from ``settings``.

    Imports are local: each source module imports this package for the shared pieces above.
    """
    settings = dict(settings or {})
    source_type = settings.get('type') or DEFAULT_SOURCE_TYPE
    if source_type not in SOURCE_TYPES:
        raise SourceConfigError('source.type', 'must be one of %s, got "%s"' % (', '.join(SOURCE_TYPES), source_type))
    if source_type == 'prometheus':
        from ansible_collections.progressive.delivery.plugins.module_utils._metrics.prometheus import PrometheusSource
        return PrometheusSource(settings, session=session, clock=clock)
    if source_type == 'datadog':
        from ansible_collections.progressive.delivery.plugins.module_utils._metrics.datadog import DatadogSource
        return DatadogSource(settings, session=session, clock=clock)
    from ansible_collections.progressive.delivery.plugins.module_utils._metrics.http import HttpSource
    return HttpSource(settings, session=session, clock=clock)


def to_float(value):
    """float of a number or numeric string; None when it is neither (bools are not numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------------------------
# the HTTP client every source shares
# --------------------------------------------------------------------------------------------

def _retry(retries):
    return make_retry(RETRY_METHODS, retries, _BACKOFF_FACTOR, RETRY_STATUSES, _BACKOFF_MAX)


# urllib3 prefixes causes with object reprs and pool descriptions that say nothing to a user.
_NOISE = re.compile(r'^(?:<[^>]*>|\w*Connection(?:Pool)?\([^)]*\)):\s*')


def describe_connection_error(error):
    """The innermost cause of a requests exception, without urllib3's object reprs."""
    cause = error
    for _depth in range(6):
        reason = getattr(cause, 'reason', None)
        if reason is None and cause.args and isinstance(cause.args[0], BaseException):
            reason = cause.args[0]
        if reason is None or reason is cause or not isinstance(reason, BaseException):
            break
        cause = reason
    text = _NOISE.sub('', str(cause)).strip()
    return text or type(cause).__name__


def _is_timeout(error):
    cause = error
    for _depth in range(6):
        if isinstance(cause, (requests.exceptions.Timeout, TimeoutError)) or 'Timeout' in type(cause).__name__:
            return True
        following = getattr(cause, 'reason', None)
        if following is None and cause.args and isinstance(cause.args[0], BaseException):
            following = cause.args[0]
        if not isinstance(following, BaseException) or following is cause:
            return False
        cause = following
    return False


class HttpClient(object):
    """A requests session with auth, TLS settings, retries and a timeout on every call."""

    def __init__(self, settings, what, session=None):
        if not HAS_REQUESTS:
            raise SourceConfigError(None, 'the %s source needs the Python library requests '
                                          '(pip install requests)' % what)
        self.what = what
        self.timeout = float(settings.get('timeout') or DEFAULT_TIMEOUT)
        retries = settings.get('retries')
        retries = DEFAULT_RETRIES if retries is None else int(retries)
        if retries < 0:
            raise SourceConfigError('source.retries', 'must be 0 or more, got %d' % retries)
        self.retries = retries
        self.session = session or requests.Session()
        if session is None and HAS_URLLIB3:
            adapter = requests.adapters.HTTPAdapter(max_retries=_retry(retries))
            self.session.mount('http://', adapter)
            self.session.mount('https://', adapter)
        headers = settings.get('headers') or {}
        if not isinstance(headers, dict):
            raise SourceConfigError('source.headers', 'must be a mapping of header names to values')
        self.headers = dict((str(k), str(v)) for k, v in headers.items())
        if settings.get('bearer_token'):
            if settings.get('username') or settings.get('password'):
                raise SourceConfigError('source.bearer_token', 'cannot be combined with username/password; '
                                                               'use a bearer token or basic auth, not both')
            self.headers['Authorization'] = 'Bearer %s' % settings['bearer_token']
        self.auth = None
        if settings.get('username') or settings.get('password'):
            if not (settings.get('username') and settings.get('password')):
                raise SourceConfigError('source.username', 'basic auth needs both username and password')
            self.auth = (settings['username'], settings['password'])
        validate = settings.get('validate_certs')
        validate = True if validate is None else bool(validate)
        # A CA bundle only matters while verifying; without verification requests ignores it.
        self.verify = (settings.get('ca_cert') or True) if validate else False

    def request(self, method, url, **kwargs):
        headers = dict(self.headers)
        headers.update(kwargs.pop('headers', None) or {})
        try:
            return self.session.request(method, url, headers=headers, auth=self.auth, verify=self.verify,
                                        timeout=self.timeout, **kwargs)
        except requests.exceptions.SSLError as error:
            raise SourceUnavailable('TLS handshake with %s at %s failed: %s (set source.ca_cert to the CA '
                                    'that signed its certificate)' % (self.what, url, describe_connection_error(error)))
        except requests.exceptions.RequestException as error:
            if _is_timeout(error):
                raise SourceUnavailable('%s at %s did not answer within %gs (after %d retries): %s'
                                        % (self.what, url, self.timeout, self.retries,
                                           describe_connection_error(error)))
            raise SourceUnavailable('no answer from %s at %s (after %d retries): %s'
                                    % (self.what, url, self.retries, describe_connection_error(error)))


def response_json(response, what):
    """The decoded JSON body, or SourceUnavailable quoting the start of what came instead."""
    try:
        return response.json()
    except ValueError:
        snippet = (response.text or '').strip().replace('\n', ' ')[:200]
        raise SourceUnavailable('%s answered HTTP %d with a body that is not JSON: %s'
                                % (what, response.status_code, snippet or '(empty)'))


def auth_failure(response, what, url):
    return SourceUnavailable('%s at %s refused the request with HTTP %d %s: check the credentials in source '
                             '(bearer_token, username/password, api_key/application_key)'
                             % (what, url, response.status_code, response.reason or ''))
