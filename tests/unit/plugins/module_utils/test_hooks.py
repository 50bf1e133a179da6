# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Webhooks: Flagger's payload and gating rules, URL hygiene, and the JSON POST against a small
in-process HTTP server (what goes on the wire, retries on 5xx, timeouts, refused connections)."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import socket
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _hooks
from ansible_collections.progressive.delivery.plugins.module_utils._hooks import (
    HookError,
    build_payload,
    failed_checks_increment,
    gate_open,
    normalize_hooks,
    outcome,
    payload_phase,
    post_json,
    redact_url,
    rollback_requested,
    run_hooks,
    scrub,
    wait_for_gate,
)

SECRET = 'T0KEN-5ecret'


class Receiver(object):
    """Answers each request with the next scripted (status, body[, delay]) or ``default``; records requests."""

    def __init__(self):
        self.requests = []
        self.script = []
        self.default = (200, 'ok')
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get('Content-Length') or 0)
                raw = self.rfile.read(length).decode('utf-8') if length else ''
                owner.requests.append({'path': self.path, 'headers': dict(self.headers), 'raw': raw,
                                       'json': json.loads(raw) if raw else None})
                answer = owner.script.pop(0) if owner.script else owner.default
                if len(answer) > 2 and answer[2]:
                    time.sleep(answer[2])
                data = answer[1].encode('utf-8')
                self.send_response(answer[0])
                self.send_header('Content-Type', 'text/plain')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.base = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.url = '%s/hooks/%s/gate?token=%s' % (self.base, SECRET, SECRET)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    fake = Receiver()
    yield fake
    fake.close()


def closed_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def hook(url, hook_type='rollout', **extra):
    spec = dict(name=extra.pop('name', 'h'), type=hook_type, url=url)
    spec.update(extra)
    return normalize_hooks([spec])[0]


def result(ok, called=True, mute=False, name='h'):
    return dict(name=name, ok=ok if called else None, called=called, mute_alert=mute)


# ----------------------------------------------------------------------------------- URLs

@pytest.mark.parametrize('url, expected', [
    ('https://hooks.slack.com/services/T0/B0/' + SECRET, u'https://hooks.slack.com/\u2026'),
    ('http://gate.test:8080/approve?token=' + SECRET, u'http://gate.test:8080/\u2026'),
    ('https://user:' + SECRET + '@gate.test/', 'https://gate.test/'),
    ('http://gate.test', 'http://gate.test/'),
    ('http://[::1]:9/x', u'http://[::1]:9/\u2026'),
    ('not a url', '<redacted>'),
    ('', '<redacted>'),
    (None, '<redacted>'),
])
def test_redact_url_keeps_only_scheme_host_and_port(url, expected):
    assert redact_url(url) == expected


def test_scrub_cuts_the_url_and_its_path_and_query_out_of_any_text():
    url = 'http://gate.test/hooks/%s/x?token=%s' % (SECRET, SECRET)
    text = ("HTTPConnectionPool(host='gate.test', port=80): Max retries exceeded with url: /hooks/%s/x?token=%s; "
            "also %s and the path /hooks/%s/x" % (SECRET, SECRET, url, SECRET))
    cleaned = scrub(text, [url])
    assert SECRET not in cleaned
    assert 'gate.test' in cleaned


# ------------------------------------------------------------------------------ definitions

def test_normalize_fills_flaggers_defaults():
    hooks = normalize_hooks([{'name': 'load', 'url': 'http://loadtester.test/'}])
    assert hooks == [dict(name='load', type='rollout', url='http://loadtester.test/', timeout='10s',
                          timeout_seconds=10.0, retries=0, metadata={}, disableTLS=False, muteAlert=False)]


def test_normalize_accepts_module_spelling_and_drops_nulls():
    hooks = normalize_hooks([{'name': 'g', 'url': 'https://g.test/', 'type': None, 'timeout': '1m30s', 'retries': 2,
                              'metadata': {'cmd': 'hey', 'n': 3}, 'disable_tls': True, 'mute_alert': True}],
                            default_type='confirm-promotion')
    assert hooks[0]['type'] == 'confirm-promotion'
    assert hooks[0]['timeout_seconds'] == 90.0
    assert hooks[0]['disableTLS'] is True and hooks[0]['muteAlert'] is True
    assert hooks[0]['metadata'] == {'cmd': 'hey', 'n': '3'}


@pytest.mark.parametrize('spec, field', [
    ({'name': 'a'}, 'webhooks[0].url'),
    ({'name': 'a', 'url': 'ftp://x/' + SECRET}, 'webhooks[0].url'),
    ({'url': 'http://x/'}, 'webhooks[0].name'),
    ({'name': 'a', 'url': 'http://x/', 'type': 'pre-promotion'}, 'webhooks[0].type'),
    ({'name': 'a', 'url': 'http://x/', 'timeout': '10'}, 'webhooks[0].timeout'),
    ({'name': 'a', 'url': 'http://x/', 'timeout': '0s'}, 'webhooks[0].timeout'),
    ({'name': 'a', 'url': 'http://x/', 'retries': -1}, 'webhooks[0].retries'),
    ({'name': 'a', 'url': 'http://x/', 'metadata': 'cmd'}, 'webhooks[0].metadata'),
    ({'name': 'a', 'url': 'http://x/', 'headers': {}}, 'webhooks[0].headers'),
])
def test_normalize_names_the_field_and_never_quotes_the_url(spec, field):
    with pytest.raises(HookError) as caught:
        normalize_hooks([spec])
    assert caught.value.field == field
    assert SECRET not in str(caught.value)


def test_normalize_refuses_duplicate_names():
    with pytest.raises(HookError) as caught:
        normalize_hooks([{'name': 'a', 'url': 'http://x/'}, {'name': 'a', 'url': 'http://y/'}])
    assert caught.value.field == 'webhooks[1].name'


# ---------------------------------------------------------------------------------- payload

@pytest.mark.parametrize('hook_type, expected', [
    ('confirm-rollout', 'Progressing'),
    ('pre-rollout', 'Progressing'),
    ('confirm-traffic-increase', 'Progressing'),
    ('confirm-promotion', 'Progressing'),
    ('rollout', 'WaitingPromotion'),
    ('post-rollout', 'WaitingPromotion'),
    ('rollback', 'WaitingPromotion'),
    ('event', 'WaitingPromotion'),
])
def test_payload_phase_is_flaggers(hook_type, expected):
    assert payload_phase(hook_type, 'WaitingPromotion') == expected


def test_payload_has_flaggers_fields_and_omits_empty_metadata():
    assert build_payload('podinfo', 'test', 'Progressing', 'abc', 'rollout') == {
        'name': 'podinfo', 'namespace': 'test', 'phase': 'Progressing', 'checksum': 'abc', 'type': 'rollout'}
    assert build_payload('podinfo', 'test', 'Progressing', 'abc', 'rollout', {'cmd': 'hey'})['metadata'] == {'cmd': 'hey'}


def test_event_payload_carries_message_type_and_milliseconds_and_wins_over_metadata():
    payload = build_payload('podinfo', 'test', 'Failed', 'abc', 'event', {'team': 'a', 'eventType': 'x'},
                            event_message='rolled back', event_type='Warning', now=1700000000.25)
    assert payload['metadata'] == {'team': 'a', 'eventMessage': 'rolled back', 'eventType': 'Warning',
                                   'timestamp': '1700000000250'}


# ---------------------------------------------------------------------------- gating rules

def test_gate_opens_only_when_every_hook_said_yes():
    assert gate_open([result(True), result(True)]) is True
    assert gate_open([result(True), result(False)]) is False
    assert gate_open([result(False), result(None, called=False)]) is False
    assert gate_open([]) is True


def test_check_hooks_count_one_failed_check_per_round():
    assert failed_checks_increment([result(True)]) == 0
    assert failed_checks_increment([result(False), result(False)]) == 1


def test_rollback_is_requested_by_any_yes():
    assert rollback_requested([result(False), result(True)]) is True
    assert rollback_requested([result(False)]) is False
    assert rollback_requested([]) is False


@pytest.mark.parametrize('hook_type, answers, expected', [
    ('confirm-promotion', [False], dict(gate_open=False, failed_checks_increment=0, rollback_requested=False)),
    ('confirm-rollout', [True], dict(gate_open=True, failed_checks_increment=0, rollback_requested=False)),
    ('pre-rollout', [False], dict(gate_open=True, failed_checks_increment=1, rollback_requested=False)),
    ('rollout', [True], dict(gate_open=True, failed_checks_increment=0, rollback_requested=False)),
    ('post-rollout', [False], dict(gate_open=True, failed_checks_increment=1, rollback_requested=False)),
    ('rollback', [True], dict(gate_open=True, failed_checks_increment=0, rollback_requested=True)),
    ('rollback', [False], dict(gate_open=True, failed_checks_increment=0, rollback_requested=False)),
    ('event', [False], dict(gate_open=True, failed_checks_increment=0, rollback_requested=False)),
])
def test_outcome_applies_each_rule_to_its_own_type_only(hook_type, answers, expected):
    got = outcome(hook_type, [result(answer) for answer in answers])
    got.pop('mute_alert')
    assert got == expected


def test_mute_alert_only_for_a_failing_muted_hook():
    assert outcome('rollout', [result(False, mute=True)])['mute_alert'] is True
    assert outcome('rollout', [result(True, mute=True)])['mute_alert'] is False


def _scripted_call(answers):
    calls = []

    def call(hook_def, payload):
        calls.append(hook_def['name'])
        summary = _hooks.hook_summary(hook_def, called=True)
        summary['ok'] = answers[hook_def['name']]
        return summary
    return call, calls


@pytest.mark.parametrize('hook_type, answers, called', [
    # The first "no" ends a round of gating or checking hooks, as Flagger returns on it.
    ('confirm-promotion', {'a': True, 'b': False, 'c': True}, ['a', 'b']),
    ('rollout', {'a': False, 'b': True, 'c': True}, ['a']),
    ('pre-rollout', {'a': True, 'b': True, 'c': True}, ['a', 'b', 'c']),
    # The first "yes" ends a round of rollback hooks.
    ('rollback', {'a': False, 'b': True, 'c': True}, ['a', 'b']),
    # Events are fire and forget: all of them, whatever they answer.
    ('event', {'a': False, 'b': False, 'c': True}, ['a', 'b', 'c']),
])
def test_run_hooks_stops_where_flagger_stops(hook_type, answers, called):
    hooks = normalize_hooks([{'name': name, 'type': hook_type, 'url': 'http://h.test/'} for name in 'abc'])
    call, calls = _scripted_call(answers)
    results = run_hooks(hooks, lambda hook_def: {}, call=call)
    assert calls == called
    assert [entry['name'] for entry in results] == ['a', 'b', 'c']
    assert [entry['called'] for entry in results] == [name in called for name in 'abc']


class FakeClock(object):
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_for_gate_asks_every_interval_until_open():
    clock = FakeClock()
    answers = [False, False, True]

    def ask():
        return [result(answers.pop(0))]
    results, polls, waited, timed_out = wait_for_gate(ask, 10, 300, clock=clock.clock, sleep=clock.sleep)
    assert (polls, timed_out, waited) == (3, False, 20.0)
    assert clock.sleeps == [10, 10]
    assert results[0]['ok'] is True


def test_wait_for_gate_gives_up_at_the_timeout_with_the_last_answer():
    clock = FakeClock()

    def ask():
        return [result(False)]
    results, polls, waited, timed_out = wait_for_gate(ask, 10, 25, clock=clock.clock, sleep=clock.sleep)
    assert timed_out is True
    assert clock.sleeps == [10, 10, 5]
    assert polls == 4
    assert results[0]['ok'] is False


# ------------------------------------------------------------------------------- the wire

def test_the_payload_is_posted_as_json(receiver):
    hook_def = hook(receiver.url, 'confirm-promotion', metadata={'approver': 'ops'})
    payload = build_payload('podinfo', 'test', 'Progressing', 'abc', 'confirm-promotion', hook_def['metadata'])
    summary = _hooks.call_hook(hook_def, payload)
    sent = receiver.requests[0]
    assert sent['headers']['Content-Type'] == 'application/json'
    assert sent['path'] == '/hooks/%s/gate?token=%s' % (SECRET, SECRET)
    assert sent['json'] == {'name': 'podinfo', 'namespace': 'test', 'phase': 'Progressing', 'checksum': 'abc',
                            'type': 'confirm-promotion', 'metadata': {'approver': 'ops'}}
    assert summary['ok'] is True and summary['status'] == 200 and summary['attempts'] == 1
    assert summary['message'] == 'HTTP 200: ok'


@pytest.mark.parametrize('status, ok', [(200, True), (201, True), (202, True), (204, False), (403, False),
                                        (404, False)])
def test_only_200_to_202_is_a_yes(receiver, status, ok):
    receiver.default = (status, '')
    summary = _hooks.call_hook(hook(receiver.url), {})
    assert summary['status'] == status
    assert summary['ok'] is ok


def test_5xx_is_retried_with_backoff_until_an_answer(receiver):
    receiver.script = [(503, 'busy'), (500, 'oops'), (200, 'ok')]
    summary = _hooks.call_hook(hook(receiver.url, retries=3), {}, backoff_factor=0)
    assert summary['ok'] is True
    assert summary['attempts'] == 3
    assert len(receiver.requests) == 3


def test_retries_run_out_and_the_last_answer_counts(receiver):
    receiver.default = (503, 'still busy')
    summary = _hooks.call_hook(hook(receiver.url, retries=2), {}, backoff_factor=0)
    assert summary['ok'] is False and summary['status'] == 503
    assert len(receiver.requests) == 3
    assert summary['message'] == 'HTTP 503: still busy'


@pytest.mark.parametrize('status', [403, 501])
def test_answers_that_will_not_change_are_not_retried(receiver, status):
    receiver.default = (status, 'no')
    summary = _hooks.call_hook(hook(receiver.url, retries=3), {}, backoff_factor=0)
    assert summary['status'] == status
    assert len(receiver.requests) == 1


def test_a_slow_hook_is_a_no_after_its_timeout(receiver):
    receiver.default = (200, 'late', 2)
    summary = _hooks.call_hook(hook(receiver.url, timeout='200ms'), {}, backoff_factor=0)
    assert summary['ok'] is False
    assert summary['status'] is None
    assert summary['message'] == 'no answer within 0.2s'


def test_a_refused_connection_is_a_no_and_names_no_url():
    url = 'http://127.0.0.1:%d/hooks/%s' % (closed_port(), SECRET)
    summary = _hooks.call_hook(hook(url, retries=1), {}, backoff_factor=0)
    assert summary['ok'] is False
    assert summary['message'] == 'connection refused (after 1 retry)'
    assert SECRET not in json.dumps(summary)
    assert summary['url'].startswith('http://127.0.0.1:')


def test_an_answer_echoing_the_url_is_scrubbed(receiver):
    receiver.default = (403, 'you called %s' % receiver.url)
    summary = _hooks.call_hook(hook(receiver.url), {})
    assert SECRET not in json.dumps(summary)
    assert summary['message'].startswith('HTTP 403: you called ')


def test_disable_tls_turns_verification_off():
    seen = {}

    class Session(object):
        def post(self, url, **kwargs):
            seen.update(kwargs)
            raise _hooks.requests.exceptions.ConnectionError('refused')

    post_json('https://h.test/x', {}, 1.0, verify=False, session=Session())
    assert seen['verify'] is False
    assert seen['timeout'] == (1.0, 1.0)
    assert seen['headers'] == {'Content-Type': 'application/json'}
