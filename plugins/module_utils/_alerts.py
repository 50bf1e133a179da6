# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run notifications to chat tools and plain webhooks, with a severity filter per provider.

Each provider type turns one message (text, severity, the Canary it is about, fields) into the
JSON its incoming webhooks accept:

* ``slack``: ``{"text", "username", "channel"?, "icon_emoji", "attachments": [{color, author_name,
  text, fields}]}``, the attachment form Flagger posts; ``text`` is the notification fallback.
* ``msteams``: a Workflows (Power Automate) message carrying an Adaptive Card, or the legacy
  Office 365 connector MessageCard Flagger posts; ``card: auto`` picks MessageCard for
  ``*.webhook.office.com`` URLs (connectors) and the Adaptive Card for everything else.
* ``discord``: the native ``{"content", "username", "embeds": [...]}``; a URL ending in ``/slack``
  is Discord's Slack-compatible endpoint (what Flagger uses) and gets the Slack form instead.
* ``generic``: ``{"name", "namespace", "phase", "severity", "message", "metadata"}``. Flagger has
  no generic alert provider (its nearest thing is the event webhook), so this shape is ours.

Severities are ordered info < warn < error. A provider hears a message when the message is at
least as severe as the provider's minimum, Flagger's rule for ``analysis.alerts[].severity``.

Delivery goes through ``_hooks.post_json``: requests with urllib3 retries and a timeout on every
call; URLs never appear in what is returned.

Private to the collection (the leading underscore): its API may change between minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import re

from collections.abc import Mapping
from urllib.parse import urlsplit

from ansible_collections.progressive.delivery.plugins.module_utils._canary import ALERT_SEVERITIES
from ansible_collections.progressive.delivery.plugins.module_utils._hooks import (
    DEFAULT_BACKOFF_FACTOR,
    post_json,
    redact_url,
)

PROVIDER_TYPES = ('slack', 'msteams', 'discord', 'generic')
TEAMS_CARDS = ('auto', 'message_card', 'adaptive_card')
SEVERITY_RANK = dict((severity, rank) for rank, severity in enumerate(ALERT_SEVERITIES))
DEFAULT_USERNAME = 'progressive.delivery'

_SLACK_COLORS = {'info': 'good', 'warn': 'warning', 'error': 'danger'}
_TEAMS_THEME = {'info': '0076D7', 'warn': 'FFA500', 'error': 'FF0000'}
_ADAPTIVE_COLORS = {'info': 'Good', 'warn': 'Warning', 'error': 'Attention'}
_DISCORD_COLORS = {'info': 0x2EB67D, 'warn': 0xFFA500, 'error': 0xE01E5A}
# Discord's documented embed limits; longer values make it reject the whole message.
_DISCORD_TITLE, _DISCORD_FIELD_NAME, _DISCORD_FIELD_VALUE, _DISCORD_FIELDS, _DISCORD_CONTENT = 256, 256, 1024, 25, 2000


class AlertError(ValueError):
    """A provider definition that cannot be used. ``field`` names the offending option."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


def severity_passes(severity, minimum):
    """True when a message of ``severity`` reaches a provider whose minimum is ``minimum``."""
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum or 'info']


def _check_severity(value, field):
    if value not in SEVERITY_RANK:
        raise AlertError(field, '%s must be one of %s, got "%s"' % (field, ', '.join(ALERT_SEVERITIES), value))
    return value


def normalize_providers(providers, field='providers'):
    """Provider definitions with defaults filled in (``name`` defaults to the type), or AlertError."""
    normalized = []
    for index, provider in enumerate(providers or []):
        where = '%s[%d]' % (field, index)
        if not isinstance(provider, Mapping):
            raise AlertError(where, '%s must be a mapping with type and url' % where)
        provider = dict((key, value) for key, value in provider.items() if value is not None)
        kind = provider.get('type')
        if kind not in PROVIDER_TYPES:
            raise AlertError(where + '.type', '%s.type must be one of %s, got "%s"'
                             % (where, ', '.join(PROVIDER_TYPES), kind))
        url = provider.get('url')
        if not isinstance(url, str) or not re.match(r'^https?://[^/?#]+', url):
            raise AlertError(where + '.url', '%s.url must be an http:// or https:// URL with a host' % where)
        if provider.get('severity') is not None:
            _check_severity(provider['severity'], where + '.severity')
        card = provider.get('card') or 'auto'
        if card not in TEAMS_CARDS:
            raise AlertError(where + '.card', '%s.card must be one of %s, got "%s"' % (where, ', '.join(TEAMS_CARDS), card))
        normalized.append(dict(
            name=provider.get('name') or kind, type=kind, url=url, username=provider.get('username'),
            channel=provider.get('channel'), severity=provider.get('severity'), card=card,
            validate_certs=bool(provider.get('validate_certs', True)),
        ))
    return normalized


def apply_canary_alerts(providers, alerts):
    """Fill each provider's minimum severity from the Canary's ``analysis.alerts``.

    An alert names a provider through ``providerRef.name``. A provider's own ``severity`` wins;
    when several alerts name one provider the most permissive severity applies (any of them would
    let the message through). Returns ``(providers, unresolved)``: the alerts that name no
    provider of this task, as ``{name, provider}`` (the URL lives with the task, not the Canary).
    """
    by_name = {}
    unresolved = []
    for alert in alerts or []:
        if not isinstance(alert, Mapping):
            continue
        ref = (alert.get('providerRef') or {}).get('name')
        severity = alert.get('severity') or 'info'
        if severity not in SEVERITY_RANK:
            severity = 'info'
        if not any(provider['name'] == ref for provider in providers):
            unresolved.append(dict(name=alert.get('name'), provider=ref))
            continue
        known = by_name.get(ref)
        if known is None or SEVERITY_RANK[severity] < SEVERITY_RANK[known]:
            by_name[ref] = severity
    resolved = []
    for provider in providers:
        provider = dict(provider)
        provider['minimum_from'] = 'provider'
        if provider['severity'] is None:
            if provider['name'] in by_name:
                provider['severity'] = by_name[provider['name']]
                provider['minimum_from'] = 'canary'
            else:
                provider['severity'] = 'info'
                provider['minimum_from'] = 'default'
        resolved.append(provider)
    return resolved, unresolved


def canary_fields(canary):
    """Flagger-like facts about the Canary for the message: target, phase, weight, failed checks."""
    if not canary:
        return {}
    metadata = canary.get('metadata') or {}
    spec = canary.get('spec') or {}
    status = canary.get('status') or {}
    analysis = spec.get('analysis') or {}
    fields = {}
    target = (spec.get('targetRef') or {}).get('name')
    if target:
        fields['Target'] = 'Deployment/%s.%s' % (target, metadata.get('namespace', ''))
    if status.get('phase'):
        fields['Phase'] = status['phase']
    if status.get('canaryWeight') is not None:
        fields['Canary weight'] = '%s%%' % status['canaryWeight']
    if status.get('failedChecks') is not None:
        fields['Failed checks'] = '%s/%s' % (status['failedChecks'], analysis.get('threshold') or 1)
    return fields


# --------------------------------------------------------------------------------------------
# payloads
# --------------------------------------------------------------------------------------------

def _subject(name, namespace):
    return '%s.%s' % (name, namespace)


def slack_payload(provider, name, namespace, message, severity, fields):
    payload = dict(
        text='%s: %s' % (_subject(name, namespace), message),
        username=provider.get('username') or DEFAULT_USERNAME,
        icon_emoji=':rocket:',
        attachments=[dict(
            color=_SLACK_COLORS[severity], author_name=_subject(name, namespace), text=message,
            mrkdwn_in=['text'], fields=[dict(title=key, value=value, short=False) for key, value in fields.items()],
        )],
    )
    if provider.get('channel'):
        payload['channel'] = provider['channel']
    return payload


def _teams_card(provider):
    if provider.get('card', 'auto') != 'auto':
        return provider['card']
    host = (urlsplit(provider['url']).hostname or '').lower()
    # Office 365 connectors live on webhook.office.com (and outlook.office.com before it) and
    # only take MessageCards; Workflows endpoints take Adaptive Cards.
    if host.endswith('webhook.office.com') or host == 'outlook.office.com':
        return 'message_card'
    return 'adaptive_card'


def msteams_payload(provider, name, namespace, message, severity, fields):
    facts = [dict(name=key, value=value) for key, value in fields.items()]
    if _teams_card(provider) == 'message_card':
        return {
            '@type': 'MessageCard',
            '@context': 'http://schema.org/extensions',
            'themeColor': _TEAMS_THEME[severity],
            'summary': _subject(name, namespace),
            'sections': [dict(activityTitle=message, activitySubtitle=_subject(name, namespace), facts=facts)],
        }
    body = [
        dict(type='TextBlock', text=_subject(name, namespace), weight='Bolder', size='Medium',
             color=_ADAPTIVE_COLORS[severity]),
        dict(type='TextBlock', text=message, wrap=True),
    ]
    if facts:
        body.append(dict(type='FactSet', facts=[dict(title=fact['name'], value=fact['value']) for fact in facts]))
    return dict(type='message', attachments=[dict(
        contentType='application/vnd.microsoft.card.adaptive',
        contentUrl=None,
        content={'$schema': 'http://adaptivecards.io/schemas/adaptive-card.json', 'type': 'AdaptiveCard',
                 'version': '1.4', 'body': body},
    )])


def _cut(text, limit):
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + u'\u2026'


def discord_payload(provider, name, namespace, message, severity, fields):
    if urlsplit(provider['url']).path.rstrip('/').endswith('/slack'):
        return slack_payload(provider, name, namespace, message, severity, fields)
    embed = dict(title=_cut(_subject(name, namespace), _DISCORD_TITLE), color=_DISCORD_COLORS[severity])
    embed_fields = [dict(name=_cut(key, _DISCORD_FIELD_NAME), value=_cut(value or '-', _DISCORD_FIELD_VALUE), inline=False)
                    for key, value in list(fields.items())[:_DISCORD_FIELDS]]
    if embed_fields:
        embed['fields'] = embed_fields
    return dict(content=_cut(message, _DISCORD_CONTENT), username=provider.get('username') or DEFAULT_USERNAME,
                embeds=[embed])


def generic_payload(provider, name, namespace, message, severity, fields, phase=''):
    return dict(name=name, namespace=namespace, phase=phase or '', severity=severity, message=message,
                metadata=dict(fields))


def build_payload(provider, name, namespace, message, severity, fields, phase=''):
    fields = dict((str(key), '' if value is None else str(value)) for key, value in (fields or {}).items())
    if provider['type'] == 'generic':
        return generic_payload(provider, name, namespace, message, severity, fields, phase=phase)
    builder = {'slack': slack_payload, 'msteams': msteams_payload, 'discord': discord_payload}[provider['type']]
    return builder(provider, name, namespace, message, severity, fields)


# --------------------------------------------------------------------------------------------
# delivery
# --------------------------------------------------------------------------------------------

def deliver(providers, name, namespace, message, severity, fields, phase='', timeout=10.0, retries=2,
            send=True, backoff_factor=DEFAULT_BACKOFF_FACTOR, post=post_json):
    """One delivery record per provider: sent or filtered out by severity, and how it went.

    With ``send=False`` (check mode) nothing leaves the machine; each record says whether it
    would have been sent and carries the payload it would have carried.
    """
    _check_severity(severity, 'severity')
    deliveries = []
    for provider in providers:
        record = dict(provider=provider['name'], type=provider['type'], url=redact_url(provider['url']),
                      minimum_severity=provider['severity'], minimum_from=provider.get('minimum_from', 'provider'),
                      would_send=severity_passes(severity, provider['severity']), sent=False, ok=None,
                      status=None, duration=0.0, attempts=0, message='')
        record['payload'] = build_payload(provider, name, namespace, message, severity, fields, phase=phase)
        if not record['would_send']:
            record['message'] = 'filtered: %s is below the minimum severity %s' % (severity, provider['severity'])
        elif not send:
            record['message'] = 'check mode: not sent'
        else:
            answer = post(provider['url'], record['payload'], timeout, retries=retries,
                          verify=provider['validate_certs'], backoff_factor=backoff_factor)
            record.update(sent=True, status=answer['status'], duration=answer['duration'], attempts=answer['attempts'])
            if answer['status'] is None:
                record.update(ok=False, message=answer['error'])
            else:
                # Chat webhooks answer 200 (Slack, Teams connectors), 202 (Workflows) or 204 (Discord).
                record['ok'] = 200 <= answer['status'] < 300
                record['message'] = 'HTTP %d%s' % (answer['status'], ': ' + answer['body'] if answer['body'] else '')
        deliveries.append(record)
    return deliveries
