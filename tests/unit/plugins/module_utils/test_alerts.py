# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alerts: the JSON each provider gets, the severity filter, defaults from the Canary's
analysis.alerts, and delivery against a small in-process HTTP server."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import socket
import threading

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils._alerts import (
    AlertError,
    apply_canary_alerts,
    build_payload,
    canary_fields,
    deliver,
    normalize_providers,
    severity_passes,
)

SECRET = 'XOXB-5ecret'


class Receiver(object):
    def __init__(self):
        self.requests = []
        self.script = []
        self.default = (200, 'ok')
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get('Content-Length') or 0)
                raw = self.rfile.read(length).decode('utf-8') if length else ''
                owner.requests.append({'path': self.path, 'headers': dict(self.headers), 'json': json.loads(raw)})
                status, body = owner.script.pop(0) if owner.script else owner.default
                data = body.encode('utf-8')
                self.send_response(status)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.base = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
        self.thread.start()

    def url(self, name):
        return '%s/%s/%s' % (self.base, name, SECRET)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    fake = Receiver()
    yield fake
    fake.close()


def provider(kind, url='https://example.test/hook', **extra):
    spec = dict(type=kind, url=url)
    spec.update(extra)
    providers, _unresolved = apply_canary_alerts(normalize_providers([spec]), [])
    return providers[0]


FIELDS = {'Target': 'Deployment/podinfo.test', 'Failed checks': '2/5'}


# ---------------------------------------------------------------------------------- severity

@pytest.mark.parametrize('severity, minimum, passes', [
    ('info', 'info', True), ('warn', 'info', True), ('error', 'info', True),
    ('info', 'warn', False), ('warn', 'warn', True), ('error', 'warn', True),
    ('info', 'error', False), ('warn', 'error', False), ('error', 'error', True),
    ('info', None, True),
])
def test_a_message_reaches_a_provider_at_or_above_its_minimum(severity, minimum, passes):
    assert severity_passes(severity, minimum) is passes


# ---------------------------------------------------------------------------------- providers

def test_providers_default_their_name_to_the_type():
    providers = normalize_providers([{'type': 'slack', 'url': 'https://hooks.slack.test/x', 'channel': None}])
    assert providers == [dict(name='slack', type='slack', url='https://hooks.slack.test/x', username=None,
                              channel=None, severity=None, card='auto', validate_certs=True)]


@pytest.mark.parametrize('spec, field', [
    ({'type': 'pagerduty', 'url': 'https://x/'}, 'providers[0].type'),
    ({'type': 'slack', 'url': 'hooks.slack.com/' + SECRET}, 'providers[0].url'),
    ({'type': 'slack', 'url': 'https://x/', 'severity': 'critical'}, 'providers[0].severity'),
    ({'type': 'msteams', 'url': 'https://x/', 'card': 'hero'}, 'providers[0].card'),
])
def test_bad_providers_name_the_field_and_not_the_url(spec, field):
    with pytest.raises(AlertError) as caught:
        normalize_providers([spec])
    assert caught.value.field == field
    assert SECRET not in str(caught.value)


def test_canary_alerts_set_the_minimum_unless_the_provider_does():
    providers = normalize_providers([
        {'type': 'slack', 'name': 'on-call', 'url': 'https://a/'},
        {'type': 'discord', 'name': 'chat', 'url': 'https://b/', 'severity': 'info'},
        {'type': 'generic', 'url': 'https://c/'},
    ])
    alerts = [
        {'name': 'pager', 'severity': 'error', 'providerRef': {'name': 'on-call'}},
        {'name': 'pager-warn', 'severity': 'warn', 'providerRef': {'name': 'on-call'}},
        {'name': 'chat', 'severity': 'error', 'providerRef': {'name': 'chat'}},
        {'name': 'mail', 'severity': 'info', 'providerRef': {'name': 'mailer', 'namespace': 'ops'}},
    ]
    resolved, unresolved = apply_canary_alerts(providers, alerts)
    # Two alerts name on-call: the more permissive one lets warnings through.
    assert [(p['name'], p['severity'], p['minimum_from']) for p in resolved] == [
        ('on-call', 'warn', 'canary'), ('chat', 'info', 'provider'), ('generic', 'info', 'default')]
    assert unresolved == [{'name': 'mail', 'provider': 'mailer'}]


def test_canary_fields_are_flagger_like_facts():
    canary = {'metadata': {'name': 'podinfo', 'namespace': 'test'},
              'spec': {'targetRef': {'name': 'podinfo'}, 'analysis': {'threshold': 5}},
              'status': {'phase': 'Progressing', 'canaryWeight': 30, 'failedChecks': 2}}
    assert canary_fields(canary) == {'Target': 'Deployment/podinfo.test', 'Phase': 'Progressing',
                                     'Canary weight': '30%', 'Failed checks': '2/5'}
    assert canary_fields({}) == {}


# ----------------------------------------------------------------------------------- payloads

@pytest.mark.parametrize('severity, color', [('info', 'good'), ('warn', 'warning'), ('error', 'danger')])
def test_slack_gets_an_attachment_coloured_by_severity(severity, color):
    payload = build_payload(provider('slack', channel='#releases', username='bot'), 'podinfo', 'test',
                            'Canary analysis failed', severity, FIELDS)
    assert payload == {
        'text': 'podinfo.test: Canary analysis failed', 'username': 'bot', 'channel': '#releases',
        'icon_emoji': ':rocket:',
        'attachments': [{'color': color, 'author_name': 'podinfo.test', 'text': 'Canary analysis failed',
                         'mrkdwn_in': ['text'],
                         'fields': [{'title': 'Target', 'value': 'Deployment/podinfo.test', 'short': False},
                                    {'title': 'Failed checks', 'value': '2/5', 'short': False}]}]}


def test_slack_leaves_the_channel_to_the_webhook_when_not_given():
    payload = build_payload(provider('slack'), 'podinfo', 'test', 'hi', 'info', {})
    assert 'channel' not in payload
    assert payload['username'] == 'progressive.delivery'


def test_teams_connectors_get_a_message_card():
    payload = build_payload(provider('msteams', url='https://contoso.webhook.office.com/webhookb2/x'),
                            'podinfo', 'test', 'rolled back', 'error', FIELDS)
    assert payload == {
        '@type': 'MessageCard', '@context': 'http://schema.org/extensions', 'themeColor': 'FF0000',
        'summary': 'podinfo.test',
        'sections': [{'activityTitle': 'rolled back', 'activitySubtitle': 'podinfo.test',
                      'facts': [{'name': 'Target', 'value': 'Deployment/podinfo.test'},
                                {'name': 'Failed checks', 'value': '2/5'}]}]}


def test_teams_workflows_get_an_adaptive_card():
    payload = build_payload(provider('msteams', url='https://prod-01.westeurope.logic.azure.com/workflows/x'),
                            'podinfo', 'test', 'promoted', 'info', FIELDS)
    assert payload['type'] == 'message'
    attachment = payload['attachments'][0]
    assert attachment['contentType'] == 'application/vnd.microsoft.card.adaptive'
    card = attachment['content']
    assert card['type'] == 'AdaptiveCard' and card['version'] == '1.4'
    assert [block['type'] for block in card['body']] == ['TextBlock', 'TextBlock', 'FactSet']
    assert card['body'][0]['text'] == 'podinfo.test' and card['body'][0]['color'] == 'Good'
    assert card['body'][1]['text'] == 'promoted'
    assert card['body'][2]['facts'][1] == {'title': 'Failed checks', 'value': '2/5'}


def test_teams_card_can_be_forced():
    payload = build_payload(provider('msteams', url='https://contoso.webhook.office.com/x', card='adaptive_card'),
                            'podinfo', 'test', 'x', 'warn', {})
    assert payload['type'] == 'message'


def test_discord_gets_content_and_an_embed():
    payload = build_payload(provider('discord', url='https://discord.test/api/webhooks/1/' + SECRET), 'podinfo',
                            'test', 'weight 30%', 'warn', FIELDS)
    assert payload == {'content': 'weight 30%', 'username': 'progressive.delivery', 'embeds': [{
        'title': 'podinfo.test', 'color': 0xFFA500,
        'fields': [{'name': 'Target', 'value': 'Deployment/podinfo.test', 'inline': False},
                   {'name': 'Failed checks', 'value': '2/5', 'inline': False}]}]}


def test_discord_keeps_within_its_limits():
    fields = dict(('f%02d' % index, 'v' * 2000) for index in range(30))
    payload = build_payload(provider('discord'), 'podinfo', 'test', 'm' * 3000, 'info', fields)
    assert len(payload['content']) == 2000
    assert len(payload['embeds'][0]['fields']) == 25
    assert all(len(field['value']) == 1024 for field in payload['embeds'][0]['fields'])


def test_discord_slack_compatible_endpoint_gets_the_slack_form():
    payload = build_payload(provider('discord', url='https://discord.test/api/webhooks/1/x/slack'), 'podinfo', 'test',
                            'hi', 'info', {})
    assert 'attachments' in payload and 'embeds' not in payload


def test_generic_gets_the_run_facts_and_fields_as_metadata():
    payload = build_payload(provider('generic'), 'podinfo', 'test', 'promoted', 'info', {'job': 42}, phase='Succeeded')
    assert payload == {'name': 'podinfo', 'namespace': 'test', 'phase': 'Succeeded', 'severity': 'info',
                       'message': 'promoted', 'metadata': {'job': '42'}}


# ----------------------------------------------------------------------------------- delivery

def _providers(receiver, *specs):
    defined = normalize_providers([dict(spec, url=receiver.url(spec['type'])) for spec in specs])
    return apply_canary_alerts(defined, [])[0]


def test_each_provider_gets_its_own_payload_and_low_severities_are_filtered(receiver):
    providers = _providers(receiver, {'type': 'slack'}, {'type': 'discord', 'severity': 'error'},
                           {'type': 'generic', 'severity': 'warn'})
    records = deliver(providers, 'podinfo', 'test', 'weight 30%', 'warn', {}, phase='Progressing', backoff_factor=0)
    assert [(r['provider'], r['would_send'], r['sent'], r['ok']) for r in records] == [
        ('slack', True, True, True), ('discord', False, False, None), ('generic', True, True, True)]
    assert sorted(request['path'].split('/')[1] for request in receiver.requests) == ['generic', 'slack']
    assert records[1]['message'] == 'filtered: warn is below the minimum severity error'
    generic = next(request for request in receiver.requests if request['path'].startswith('/generic/'))
    assert generic['json']['severity'] == 'warn' and generic['json']['phase'] == 'Progressing'
    assert generic['headers']['Content-Type'] == 'application/json'


def test_check_mode_sends_nothing_but_says_what_would_go(receiver):
    providers = _providers(receiver, {'type': 'slack'}, {'type': 'generic', 'severity': 'error'})
    records = deliver(providers, 'podinfo', 'test', 'hi', 'info', {}, send=False)
    assert receiver.requests == []
    assert [(r['would_send'], r['sent']) for r in records] == [(True, False), (False, False)]
    assert records[0]['payload']['text'] == 'podinfo.test: hi'


def test_delivery_retries_5xx_and_reports_failures_without_the_url(receiver):
    receiver.script = [(500, 'oops'), (200, 'ok')]
    records = deliver(_providers(receiver, {'type': 'slack'}), 'podinfo', 'test', 'hi', 'info', {}, retries=2,
                      backoff_factor=0)
    assert records[0]['ok'] is True and records[0]['attempts'] == 2
    receiver.default = (404, 'no such hook %s' % receiver.url('slack'))
    records = deliver(_providers(receiver, {'type': 'slack'}), 'podinfo', 'test', 'hi', 'info', {}, backoff_factor=0)
    assert records[0]['ok'] is False and records[0]['status'] == 404
    assert SECRET not in json.dumps(records)


def test_discord_204_is_a_success(receiver):
    receiver.default = (204, '')
    records = deliver(_providers(receiver, {'type': 'discord'}), 'podinfo', 'test', 'hi', 'info', {})
    assert records[0]['ok'] is True


def test_an_unreachable_provider_is_a_failed_delivery_not_an_exception():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    providers = apply_canary_alerts(normalize_providers([
        {'type': 'generic', 'url': 'http://127.0.0.1:%d/%s' % (port, SECRET)}]), [])[0]
    records = deliver(providers, 'podinfo', 'test', 'hi', 'error', {}, retries=0, backoff_factor=0)
    assert records[0]['sent'] is True and records[0]['ok'] is False
    assert records[0]['message'] == 'connection refused'
    assert SECRET not in json.dumps(records)
