# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canary webhooks with Flagger's semantics, and the JSON POST every outgoing call of the
collection (hooks and alerts) goes through.

What is Flagger's, so a Canary brought across behaves the same:

* the payload: ``{"name", "namespace", "phase", "checksum", "type", "metadata"}`` POSTed as
  ``application/json``; event hooks carry ``eventMessage``, ``eventType`` and ``timestamp``
  (Unix milliseconds, as a string) in ``metadata``;
* a hook passes on HTTP 200, 201 or 202 only (Flagger's ``StatusCode > 202`` test): a 204, a
  redirect left unfollowed, a 4xx, a 5xx, a timeout or a refused connection all count as "no";
* ``timeout`` per hook, a Go duration, default 10s; ``retries`` on refused or reset connections,
  timeouts, 429 and 5xx other than 501, with exponential backoff; ``disableTLS`` skips
  certificate verification;
* hooks of one type run in spec order and the first hook that decides ends the round: the
  first "no" for confirm, pre-rollout, rollout and post-rollout hooks, the first "yes" for
  rollback hooks. Event hooks are all called; their answers change nothing.

Where we differ, and why:

* ``timeout`` bounds each attempt, not the whole retried call (urllib3 has no overall deadline);
  the worst case is (retries + 1) x timeout plus the backoff waits.
* A ``Retry-After`` header is not obeyed: a hook that asks for an hour would hold the job.

URLs are secrets (Slack and Teams webhook URLs carry their token in the path; load testers often
carry one in the query): nothing returned or raised here contains more of a URL than
``scheme://host:port/…``.

Private to the collection (the leading underscore): its API may change between minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import re
import time
import traceback
import warnings

from collections.abc import Mapping
from urllib.parse import urlsplit

from ansible_collections.progressive.delivery.plugins.module_utils._http import HAS_URLLIB3, make_retry
from ansible_collections.progressive.delivery.plugins.module_utils._canary import (
    DEFAULT_WEBHOOK_TIMEOUT,
    PHASE_PROGRESSING,
    WEBHOOK_TYPES,
    parse_duration,
)

try:
    import requests
    import requests.adapters
    import requests.exceptions
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError:
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

try:
    from urllib3.exceptions import InsecureRequestWarning
except ImportError:
    pass  # HAS_URLLIB3 is False then, and the warning is never silenced


CONFIRM_TYPES = ('confirm-rollout', 'confirm-traffic-increase', 'confirm-promotion')
CHECK_TYPES = ('pre-rollout', 'rollout', 'post-rollout')
ROLLBACK_TYPE = 'rollback'
EVENT_TYPE = 'event'
DEFAULT_HOOK_TYPE = 'rollout'
EVENT_TYPES = ('Normal', 'Warning')

# Flagger calls these with a fixed phase whatever the status says; the other types get the
# Canary's own phase.
_FIXED_PHASES = {
    'confirm-rollout': PHASE_PROGRESSING,
    'pre-rollout': PHASE_PROGRESSING,
    'confirm-traffic-increase': PHASE_PROGRESSING,
    'confirm-promotion': PHASE_PROGRESSING,
}

HOOK_OK_STATUSES = frozenset((200, 201, 202))
# go-retryablehttp's default policy, which Flagger's retries use: 429 and every 5xx but 501
# (Not Implemented will not change on a second try).
RETRY_STATUSES = tuple([429] + [code for code in range(500, 600) if code != 501])
DEFAULT_BACKOFF_FACTOR = 1.0
_BACKOFF_MAX = 30.0
_BODY_LIMIT = 300
_HOOK_FIELDS = ('name', 'type', 'url', 'timeout', 'metadata', 'muteAlert', 'retries', 'disableTLS')


class HookError(ValueError):
    """A hook definition that cannot be called. ``field`` names the offending option."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------
# URL hygiene
# --------------------------------------------------------------------------------------------

def redact_url(url):
    """``scheme://host:port/…``: enough to tell hooks apart in a log, never the secret part."""
    try:
        parts = urlsplit(url or '')
        host = parts.hostname or ''
        port = parts.port
    except (ValueError, TypeError, AttributeError):
        return '<redacted>'
    if not parts.scheme or not host:
        return '<redacted>'
    if ':' in host:
        host = '[%s]' % host
    if port:
        host = '%s:%d' % (host, port)
    rest = (parts.path not in ('', '/')) or parts.query or parts.fragment
    return '%s://%s/%s' % (parts.scheme, host, u'\u2026' if rest else '')


def scrub(text, urls):
    """``text`` with every URL in ``urls``, and its path, query and credentials, cut out.

    Exception texts of urllib3 carry the path on its own ("Max retries exceeded with url:
    /services/T0/B0/secret"), and a receiver may echo its own URL in an error body.
    """
    if not text:
        return text
    text = str(text)
    pieces = []
    for url in urls or ():
        if not url:
            continue
        pieces.append(url)
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        tail = parts.path + ('?' + parts.query if parts.query else '')
        for piece in (tail, parts.path, parts.query, parts.username, parts.password):
            if piece and piece not in ('/', ''):
                pieces.append(piece)
    # Longest first, so a URL is not half-replaced through one of its own pieces.
    for piece in sorted(set(pieces), key=len, reverse=True):
        if len(piece) > 1:
            text = text.replace(piece, u'\u2026')
    return text


# --------------------------------------------------------------------------------------------
# hook definitions
# --------------------------------------------------------------------------------------------

def normalize_hooks(hooks, field='webhooks', default_type=DEFAULT_HOOK_TYPE):
    """Hook definitions in the CRD's spelling with Flagger's defaults filled in, or HookError.

    Accepts the CRD spelling (``disableTLS``, ``muteAlert``) and the module's option spelling
    (``disable_tls``, ``mute_alert``); null values count as unset, as Ansible passes them.
    """
    if hooks is None:
        return []
    if not isinstance(hooks, (list, tuple)):
        raise HookError(field, '%s must be a list of hooks like [{name: gate, type: confirm-promotion, '
                               'url: "http://gate.example/approve"}], got %s' % (field, type(hooks).__name__))
    normalized = []
    seen = set()
    for index, hook in enumerate(hooks):
        where = '%s[%d]' % (field, index)
        if not isinstance(hook, Mapping):
            raise HookError(where, '%s must be a mapping with name, type and url' % where)
        hook = dict((key, value) for key, value in hook.items() if value is not None)
        for snake, camel in (('disable_tls', 'disableTLS'), ('mute_alert', 'muteAlert')):
            if snake in hook:
                hook[camel] = hook.pop(snake)
        unknown = sorted(set(hook) - set(_HOOK_FIELDS))
        if unknown:
            raise HookError('%s.%s' % (where, unknown[0]), '%s.%s is not a webhook field; known fields are %s'
                            % (where, unknown[0], ', '.join(_HOOK_FIELDS)))
        name = hook.get('name')
        if not name or not isinstance(name, str):
            raise HookError(where + '.name', '%s.name is required' % where)
        if name in seen:
            raise HookError(where + '.name', '%s.name "%s" is used twice; webhook names must be unique' % (where, name))
        seen.add(name)
        url = hook.get('url')
        if not isinstance(url, str) or not re.match(r'^https?://[^/?#]+', url):
            # The value itself is never quoted: it is a secret even when malformed.
            raise HookError(where + '.url', '%s.url must be an http:// or https:// URL with a host' % where)
        hook_type = hook.get('type') or default_type
        if hook_type not in WEBHOOK_TYPES:
            raise HookError(where + '.type', '%s.type must be one of %s, got "%s"'
                            % (where, ', '.join(WEBHOOK_TYPES), hook_type))
        timeout = hook.get('timeout') or DEFAULT_WEBHOOK_TIMEOUT
        try:
            seconds = parse_duration(timeout)
        except ValueError as exc:
            raise HookError(where + '.timeout', '%s.timeout: %s' % (where, exc))
        if seconds <= 0:
            raise HookError(where + '.timeout', '%s.timeout must be more than 0, got "%s"' % (where, timeout))
        retries = hook.get('retries', 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise HookError(where + '.retries', '%s.retries must be a whole number, 0 or more, got %r' % (where, retries))
        metadata = hook.get('metadata') or {}
        if not isinstance(metadata, Mapping) or not all(isinstance(key, str) for key in metadata):
            raise HookError(where + '.metadata', '%s.metadata must map names to strings' % where)
        normalized.append(dict(
            name=name, type=hook_type, url=url, timeout=timeout, timeout_seconds=seconds, retries=retries,
            # Flagger's metadata is map[string]string; numbers a YAML author left unquoted are sent as text.
            metadata=dict((key, value if isinstance(value, str) else json.dumps(value)) for key, value in metadata.items()),
            disableTLS=bool(hook.get('disableTLS', False)), muteAlert=bool(hook.get('muteAlert', False)),
        ))
    return normalized


def hooks_of_type(hooks, hook_type):
    return [hook for hook in hooks if hook['type'] == hook_type]


def payload_phase(hook_type, status_phase):
    """The phase Flagger puts in the payload for this hook type."""
    return _FIXED_PHASES.get(hook_type, status_phase or '')


def build_payload(name, namespace, phase, checksum, hook_type, metadata=None, event_message=None,
                  event_type='Normal', now=None):
    """Flagger's CanaryWebhookPayload as a dict (``metadata`` left out when empty, as Flagger does)."""
    payload = dict(name=name, namespace=namespace, phase=phase or '', checksum=checksum or '', type=hook_type)
    merged = dict(metadata or {})
    if hook_type == EVENT_TYPE:
        stamp = time.time() if now is None else now
        # The event's own keys win over the hook's metadata, as in Flagger.
        merged.update(eventMessage=event_message or '', eventType=event_type or 'Normal',
                      timestamp=str(int(stamp * 1000)))
    if merged:
        payload['metadata'] = merged
    return payload


# --------------------------------------------------------------------------------------------
# the one JSON POST
# --------------------------------------------------------------------------------------------

def _retry(retries, backoff_factor):
    # Hooks and alerts are notifications and questions; replaying a POST is what Flagger does too.
    # Retry-After is ignored so that a hook cannot hold the job.
    return make_retry(['POST'], retries, backoff_factor, RETRY_STATUSES, _BACKOFF_MAX,
                      respect_retry_after_header=False)


def _causes(error):
    cause = error
    for _depth in range(8):
        yield cause
        following = getattr(cause, 'reason', None)
        if following is None and getattr(cause, 'args', None) and isinstance(cause.args[0], BaseException):
            following = cause.args[0]
        if not isinstance(following, BaseException) or following is cause:
            return
        cause = following


def _describe(error, timeout, retries):
    """A cause a user can act on, built from exception types, never from their text (it holds the URL)."""
    after = ' (after %d %s)' % (retries, 'retry' if retries == 1 else 'retries') if retries else ''
    names = [type(cause).__name__ for cause in _causes(error)]
    if any('SSL' in name or 'Certificate' in name for name in names):
        return 'TLS handshake failed%s: the certificate is not trusted; fix the certificate or set disableTLS' % after
    if any('Timeout' in name for name in names):
        return 'no answer within %gs%s' % (timeout, after)
    if any(name in ('NewConnectionError', 'ConnectionRefusedError') for name in names):
        return 'connection refused%s' % after
    if any(name in ('NameResolutionError', 'gaierror') for name in names):
        return 'host name not found%s' % after
    if any(name in ('ProtocolError', 'RemoteDisconnected', 'ConnectionResetError') for name in names):
        return 'connection closed without an answer%s' % after
    if any(name == 'TooManyRedirects' for name in names):
        return 'too many redirects'
    return 'request failed%s: %s' % (after, names[-1] if names else 'unknown error')


def post_json(url, body, timeout, retries=0, verify=True, backoff_factor=DEFAULT_BACKOFF_FACTOR, session=None):
    """POST ``body`` as JSON; returns ``dict(status, body, attempts, duration, error)``.

    ``status`` is None when no answer came (``error`` says why). Never raises for transport
    failures, and nothing returned contains the URL beyond ``redact_url``.
    """
    if not HAS_REQUESTS:
        raise HookError(None, 'calling webhooks needs the Python library requests (pip install requests)')
    own_session = session is None
    if own_session:
        session = requests.Session()
        # A proxy set in the environment is honoured; credentials in .netrc are not sent to hooks.
        session.trust_env = True
        if HAS_URLLIB3:
            adapter = requests.adapters.HTTPAdapter(max_retries=_retry(retries, backoff_factor))
            session.mount('http://', adapter)
            session.mount('https://', adapter)
    data = json.dumps(body, sort_keys=True).encode('utf-8')
    started = time.monotonic()
    result = dict(status=None, body='', attempts=None, duration=0.0, error=None)
    try:
        with warnings.catch_warnings():
            if not verify and HAS_URLLIB3:
                # The user turned verification off on purpose; urllib3's warning would also name the host.
                warnings.simplefilter('ignore', InsecureRequestWarning)
            response = session.post(url, data=data, headers={'Content-Type': 'application/json'},
                                    timeout=(timeout, timeout), verify=verify, auth=_no_auth)
        result['status'] = response.status_code
        result['body'] = scrub((response.text or '')[:_BODY_LIMIT].strip(), [url])
        history = getattr(getattr(response.raw, 'retries', None), 'history', None) or ()
        result['attempts'] = len(history) + 1
    except requests.exceptions.RequestException as error:
        result['error'] = scrub(_describe(error, timeout, retries), [url])
        result['attempts'] = retries + 1
    except (ValueError, TypeError) as error:
        # requests raises these for URLs it cannot even build a request from.
        result['error'] = 'invalid URL (%s)' % type(error).__name__
        result['attempts'] = 1
    finally:
        result['duration'] = round(time.monotonic() - started, 3)
        if own_session:
            session.close()
    return result


def _no_auth(request):
    # requests would otherwise add basic auth from ~/.netrc for the hook's host.
    return request


# --------------------------------------------------------------------------------------------
# calling hooks and reading their answers
# --------------------------------------------------------------------------------------------

def hook_summary(hook, called=False):
    """The part of a hook that is safe to return: no URL beyond its host, no metadata values."""
    return dict(name=hook['name'], type=hook['type'], url=redact_url(hook['url']), called=called, ok=None,
                status=None, duration=0.0, attempts=0, message='', mute_alert=hook['muteAlert'],
                timeout=hook['timeout'], retries=hook['retries'], metadata_keys=sorted(hook['metadata']))


def call_hook(hook, payload, backoff_factor=DEFAULT_BACKOFF_FACTOR, session=None):
    """One hook, one payload: the summary with ``ok`` (HTTP 200-202), status, duration and message."""
    answer = post_json(hook['url'], payload, hook['timeout_seconds'], retries=hook['retries'],
                       verify=not hook['disableTLS'], backoff_factor=backoff_factor, session=session)
    summary = hook_summary(hook, called=True)
    summary.update(status=answer['status'], duration=answer['duration'], attempts=answer['attempts'])
    if answer['status'] is None:
        summary.update(ok=False, message=answer['error'])
    else:
        summary['ok'] = answer['status'] in HOOK_OK_STATUSES
        text = 'HTTP %d' % answer['status']
        if answer['body']:
            text += ': %s' % answer['body']
        summary['message'] = text
    return summary


def _decides(hook_type, result):
    """Whether this answer ends the round (Flagger stops at the first hook that decides)."""
    if hook_type == ROLLBACK_TYPE:
        return bool(result['ok'])
    if hook_type == EVENT_TYPE:
        return False
    return not result['ok']


def run_hooks(hooks, payload_for, call=call_hook):
    """Call ``hooks`` (all of one type) in order until one decides; later ones are reported uncalled.

    ``payload_for(hook)`` builds each payload (event metadata differs per hook). Returns one
    summary per hook, in spec order.
    """
    results = []
    decided = False
    for hook in hooks:
        if decided:
            summary = hook_summary(hook)
            summary['message'] = 'not called: an earlier %s hook already decided' % hook['type']
            results.append(summary)
            continue
        result = call(hook, payload_for(hook))
        results.append(result)
        decided = _decides(hook['type'], result)
    return results


def _called(results):
    return [result for result in results if result.get('called')]


def gate_open(results):
    """Confirm hooks: the gate is open when every hook answered 200-202 (no hooks: open).

    A hook that was not called (check mode, or after an earlier "no") keeps the gate closed,
    unless nothing was called at all, which only check mode does.
    """
    called = _called(results)
    if not called:
        return True
    return len(called) == len(results) and all(result['ok'] for result in called)


def failed_checks_increment(results):
    """pre-rollout, rollout, post-rollout: one failed check per round with a failing hook, as Flagger counts."""
    return 1 if any(result['ok'] is False for result in _called(results)) else 0


def rollback_requested(results):
    """Rollback hooks: any 200-202 asks for the run to be rolled back now."""
    return any(result['ok'] for result in _called(results))


def outcome(hook_type, results):
    """The three verdicts for one round, with neutral values for the types they do not apply to."""
    return dict(
        gate_open=gate_open(results) if hook_type in CONFIRM_TYPES else True,
        failed_checks_increment=failed_checks_increment(results) if hook_type in CHECK_TYPES else 0,
        rollback_requested=rollback_requested(results) if hook_type == ROLLBACK_TYPE else False,
        # Flagger's muteAlert: a failing hook marked so should not page anyone.
        mute_alert=any(result['mute_alert'] and result['ok'] is False for result in _called(results)),
    )


def wait_for_gate(ask, poll_interval, timeout, clock=time.monotonic, sleep=time.sleep):
    """Ask until the gate opens or ``timeout`` seconds pass; returns (results, polls, waited, timed_out).

    ``ask()`` runs one round and returns its results. The last round's answers are returned, so
    a closed gate reports what held it.
    """
    started = clock()
    deadline = started + timeout
    polls = 0
    while True:
        results = ask()
        polls += 1
        if gate_open(results):
            return results, polls, round(clock() - started, 3), False
        remaining = deadline - clock()
        if remaining <= 0:
            return results, polls, round(clock() - started, 3), True
        sleep(min(poll_interval, remaining))
