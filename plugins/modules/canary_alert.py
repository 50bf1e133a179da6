#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: canary_alert
short_description: Send a message about a Canary to Slack, Microsoft Teams, Discord or a generic webhook
version_added: 0.1.0
description:
  - Posts one message about a Canary to each provider in O(providers), in the JSON that provider's incoming
    webhooks accept. Slack gets an attachment with a colour per severity. Microsoft Teams gets an Adaptive Card
    for Workflows or a MessageCard for Office 365 connectors. Discord gets C(content) and C(embeds). A generic
    webhook gets C({name, namespace, phase, severity, message, metadata}).
  - Each provider has a minimum severity (V(info) < V(warn) < V(error)). A message below it is not sent to that
    provider.
  - The minimum is the provider's O(providers[].severity). When that is unset, it is the C(severity) of the
    Canary's C(analysis.alerts) entry whose C(providerRef.name) equals the provider's O(providers[].name), as in
    Flagger. Otherwise it is V(info).
  - With O(include_status=true) the message carries the Canary's target, phase, canary weight and failed checks
    as fields, followed by O(fields).
  - Provider URLs are treated as secrets (C(no_log)). Results and messages show them only as
    C(scheme://host:port/…).
  - The task does not fail when a delivery fails, unless O(fail_on_error=true). Alerts usually run in an
    C(always) section, where a chat outage must not hide the run's own result.
  - The Canary is read for its alerts and status. When it does not exist or cannot be read, the message is
    still sent, without those defaults, and RV(messages) says so.
author:
  - progressive.delivery developers (!UNKNOWN)
extends_documentation_fragment:
  - progressive.delivery.auth
  - progressive.delivery.canary
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details:
      - Nothing is sent in check mode. Each provider's record says whether the message would have passed its
        severity filter and holds the payload it would have carried.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
    details: Nothing in the cluster is changed, so there is nothing to diff.
options:
  msg:
    description: The message text.
    type: str
    required: true
  severity:
    description: Severity of the message.
    type: str
    choices: [info, warn, error]
    default: info
  providers:
    description: Where to send the message.
    type: list
    elements: dict
    required: true
    suboptions:
      type:
        description: The kind of incoming webhook.
        type: str
        required: true
        choices: [slack, msteams, discord, generic]
      url:
        description:
          - The incoming webhook URL.
          - Treated as a secret (C(no_log)); never returned in full.
        type: str
        required: true
      name:
        description:
          - Name of the provider, matched against C(providerRef.name) of the Canary's C(analysis.alerts).
          - Defaults to O(providers[].type).
        type: str
      username:
        description:
          - Sender name shown by Slack and Discord.
          - Defaults to V(progressive.delivery).
        type: str
      channel:
        description: Slack channel to post to, for webhooks that allow overriding their channel.
        type: str
      severity:
        description: Minimum severity this provider is sent; see the description for the default.
        type: str
        choices: [info, warn, error]
      card:
        description:
          - For O(providers[].type=msteams), the card format.
          - V(auto) sends a MessageCard to C(*.webhook.office.com) (Office 365 connectors) and an Adaptive Card
            to other URLs (Workflows).
        type: str
        choices: [auto, message_card, adaptive_card]
        default: auto
      validate_certs:
        description: Whether to verify the provider's TLS certificate.
        type: bool
        default: true
  fields:
    description:
      - Extra name-value pairs shown with the message. Slack shows them as attachment fields, Teams as facts,
        Discord as embed fields, and a generic webhook receives them as C(metadata).
      - Values are sent as strings.
    type: dict
    aliases: [metadata]
  include_status:
    description: Add the Canary's target, phase, canary weight and failed checks to the fields.
    type: bool
    default: true
  timeout:
    description: How long to wait for each answer, as a duration like V(10s).
    type: str
    default: 10s
  retries:
    description: How many times to retry on a refused or reset connection, a timeout, HTTP 429 or a 5xx other than 501.
    type: int
    default: 2
  fail_on_error:
    description: Fail the task when a provider could not be reached or answered other than 2xx.
    type: bool
    default: false
requirements:
  - kubernetes >= 24.2.0
  - requests >= 2.28.0
notes:
  - An C(analysis.alerts) entry whose provider is not in O(providers) is reported in RV(unresolved_alerts).
    The Canary never holds URLs, so this task must give them.
  - C(changed) is true when at least one message was sent (in check mode, would be sent), as with other chat
    modules.
seealso:
  - module: progressive.delivery.canary_hook
  - name: Flagger alerting
    description: The providers and severity filter this module follows.
    link: https://docs.flagger.app/usage/alerting
'''

EXAMPLES = r'''
- name: Tell the team a run failed
  progressive.delivery.canary_alert:
    name: podinfo
    namespace: test
    severity: error
    msg: "Canary analysis failed: {{ ansible_failed_result.msg | default('rolled back') }}"
    providers:
      - type: slack
        name: on-call
        url: "{{ slack_webhook_url }}"
        channel: "#releases"
      - type: msteams
        url: "{{ teams_workflow_url }}"
        severity: warn
    fields:
      Job: "{{ tower_job_id | default('local') }}"

- name: Progress notes only to a generic receiver; chat hears warnings and up
  progressive.delivery.canary_alert:
    name: podinfo
    namespace: test
    severity: info
    msg: "weight 30%"
    providers:
      - type: generic
        url: "{{ audit_receiver_url }}"
      - type: discord
        url: "{{ discord_webhook_url }}"
        severity: warn
'''

RETURN = r'''
severity:
  description: Severity of the message.
  returned: always
  type: str
  sample: error
phase:
  description: The Canary's phase, as sent to generic webhooks (empty when the Canary was not found).
  returned: success
  type: str
deliveries:
  description: One record per provider, in the order of O(providers).
  returned: success
  type: list
  elements: dict
  contains:
    provider:
      description: Name of the provider.
      type: str
    type:
      description: Type of the provider.
      type: str
    url:
      description: The provider's URL cut down to C(scheme://host:port/…).
      type: str
      sample: "https://hooks.slack.com/…"
    minimum_severity:
      description: The provider's minimum severity.
      type: str
    minimum_from:
      description: Where the minimum came from, V(provider), V(canary) (its C(analysis.alerts)) or V(default).
      type: str
    would_send:
      description: Whether the message passes the provider's severity filter.
      type: bool
    sent:
      description: Whether a request was made; false when filtered out and in check mode.
      type: bool
    ok:
      description: Whether the provider answered 2xx; null when nothing was sent.
      type: bool
    status:
      description: HTTP status of the last answer; null when none came.
      type: int
    duration:
      description: Seconds the delivery took, retries included.
      type: float
    attempts:
      description: Requests made, retries included.
      type: int
    message:
      description: Why the message was filtered, C(HTTP <status>) with the start of the answer, or why none came.
      type: str
    payload:
      description: The JSON body sent, or that would have been sent.
      type: dict
sent:
  description: How many providers were sent the message successfully.
  returned: success
  type: int
failed_deliveries:
  description: How many deliveries were attempted and failed.
  returned: success
  type: int
filtered:
  description: How many providers were left out by their severity filter.
  returned: success
  type: int
unresolved_alerts:
  description: The Canary's C(analysis.alerts) entries whose provider is not in O(providers).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Name of the alert.
      type: str
    provider:
      description: Its C(providerRef.name).
      type: str
messages:
  description: Notes on what was done.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.progressive.delivery.plugins.module_utils._module import build_module, exit_with, kube_for
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeError
from ansible_collections.progressive.delivery.plugins.module_utils._canary import (
    ALERT_SEVERITIES, API_VERSION, KIND, parse_duration,
)
from ansible_collections.progressive.delivery.plugins.module_utils import _alerts, _hooks


def argspec():
    provider = dict(
        type=dict(type='str', required=True, choices=list(_alerts.PROVIDER_TYPES)),
        url=dict(type='str', required=True, no_log=True),
        name=dict(type='str'),
        username=dict(type='str'),
        channel=dict(type='str'),
        severity=dict(type='str', choices=list(ALERT_SEVERITIES)),
        card=dict(type='str', choices=list(_alerts.TEAMS_CARDS), default='auto'),
        validate_certs=dict(type='bool', default=True),
    )
    return dict(
        msg=dict(type='str', required=True),
        severity=dict(type='str', choices=list(ALERT_SEVERITIES), default='info'),
        providers=dict(type='list', elements='dict', required=True, options=provider),
        fields=dict(type='dict', aliases=['metadata']),
        include_status=dict(type='bool', default=True),
        timeout=dict(type='str', default='10s'),
        retries=dict(type='int', default=2),
        fail_on_error=dict(type='bool', default=False),
    )


def main():
    module = build_module(argspec())
    params = module.params
    if not _hooks.HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib('requests'), exception=_hooks.REQUESTS_IMPORT_ERROR)
    try:
        timeout = parse_duration(params['timeout'])
    except ValueError as exc:
        module.fail_json(msg='timeout: %s' % exc, field='timeout')
    if timeout <= 0:
        module.fail_json(msg='timeout must be more than 0, got "%s"' % params['timeout'], field='timeout')
    if params['retries'] < 0:
        module.fail_json(msg='retries must be 0 or more, got %d' % params['retries'], field='retries')

    messages = []
    kube = kube_for(module)
    try:
        canary = kube.get(API_VERSION, KIND, params['name'], params['namespace'])
    except KubeError as exc:
        # An alert matters most when things are broken; a cluster that cannot be read must not silence it.
        messages.append('could not read the Canary (%s); sent without its alerts and status' % exc)
        canary = {}
    if canary is None:
        messages.append('Canary %s not found in namespace %s; sent without its alerts and status'
                        % (params['name'], params['namespace']))
        canary = {}

    try:
        providers = _alerts.normalize_providers(params['providers'])
    except _alerts.AlertError as exc:
        module.fail_json(msg=exc.message, field=exc.field)
    alerts = ((canary.get('spec') or {}).get('analysis') or {}).get('alerts')
    providers, unresolved = _alerts.apply_canary_alerts(providers, alerts)
    for alert in unresolved:
        messages.append('analysis.alerts entry %s names provider %s, which this task does not define'
                        % (alert['name'], alert['provider']))

    fields = _alerts.canary_fields(canary) if params['include_status'] else {}
    fields.update(params['fields'] or {})
    phase = (canary.get('status') or {}).get('phase') or ''

    deliveries = _alerts.deliver(providers, params['name'], params['namespace'], params['msg'], params['severity'],
                                 fields, phase=phase, timeout=timeout, retries=params['retries'],
                                 send=not module.check_mode)
    sent = sum(1 for record in deliveries if record['sent'] and record['ok'])
    failed = sum(1 for record in deliveries if record['sent'] and not record['ok'])
    filtered = sum(1 for record in deliveries if not record['would_send'])
    if module.check_mode:
        messages.append('check mode: %d of %d providers would be sent the message'
                        % (len(deliveries) - filtered, len(deliveries)))
    # In check mode "changed" predicts the real run: a message would go out.
    changed = (len(deliveries) - filtered > 0) if module.check_mode else sent > 0
    result = dict(changed=changed, severity=params['severity'], phase=phase, deliveries=deliveries, sent=sent,
                  failed_deliveries=failed, filtered=filtered, unresolved_alerts=unresolved, messages=messages)
    if failed and params['fail_on_error']:
        result['msg'] = '%d of %d deliveries failed: %s' % (
            failed, len(deliveries),
            '; '.join('%s: %s' % (record['provider'], record['message'])
                      for record in deliveries if record['sent'] and not record['ok']))
        module.fail_json(**result)
    exit_with(module, result)


if __name__ == '__main__':
    main()
