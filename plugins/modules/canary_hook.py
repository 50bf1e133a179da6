#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: canary_hook
short_description: Call a Canary's webhooks of one type, with Flagger's payload and gating rules
version_added: 0.1.0
description:
  - Calls the webhooks of one O(type) from the Canary's C(analysis.webhooks), or the hooks given in O(webhooks),
    with Flagger's JSON payload C({name, namespace, phase, checksum, type, metadata}) sent by HTTP POST as
    C(application/json).
  - A hook says yes with HTTP 200, 201 or 202, as in Flagger. Anything else (another status, a timeout, a refused
    connection) is a no.
  - Hooks run in the order of the spec, and the first hook that decides ends the round, as in Flagger. For
    C(confirm-rollout), C(confirm-traffic-increase), C(confirm-promotion), C(pre-rollout), C(rollout) and
    C(post-rollout) hooks that is the first no; for C(rollback) hooks the first yes. Every C(event) hook is
    called.
  - Confirm hooks gate the run. A no means not yet, so RV(gate_open) is false. With O(wait=true) the module
    asks again every O(poll_interval) until the gate opens or O(wait_timeout) passes.
  - For C(pre-rollout), C(rollout) and C(post-rollout) hooks a no is a failed check.
    RV(failed_checks_increment) is 1, and the caller adds it to the run's failed checks. A failing
    C(pre-rollout) hook rolls the run back once the checks reach C(analysis.threshold), as in Flagger.
    C(post-rollout) hooks run after the run has ended, so their failures are for the report only.
  - For C(rollback) hooks a yes sets RV(rollback_requested). The caller then rolls back at once.
  - C(event) hooks are fire and forget. Their answers are reported and change nothing.
  - The task does not fail because a hook said no. Hooks answer questions, and the caller (the role) acts on
    the answers. It fails only when the hooks cannot be read or are invalid.
  - Webhook URLs are treated as secrets. Results and messages show them only as C(scheme://host:port/…).
  - The module only reads the cluster. It reads the Canary when O(webhooks), O(phase) or O(checksum) is not
    given.
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
      - No hook is called in check mode. Each hook that would be called is reported with its redacted URL and
        metadata keys, and the outcome fields hold their neutral values (gate open, no failed check, no rollback).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
    details: Nothing in the cluster is changed, so there is nothing to diff.
options:
  type:
    description:
      - The hook type to run. Only hooks of this type are called.
    type: str
    required: true
    choices: [confirm-rollout, pre-rollout, rollout, confirm-traffic-increase, confirm-promotion, post-rollout,
              rollback, event]
  webhooks:
    description:
      - Hooks to call instead of the Canary's C(analysis.webhooks), in the Canary's spelling.
      - Hooks whose O(webhooks[].type) differs from O(type) are not called.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the hook; unique within the list.
        type: str
        required: true
      url:
        description:
          - URL the payload is POSTed to.
          - Treated as a secret (C(no_log)); never returned in full.
        type: str
        required: true
      type:
        description: Hook type. Defaults to O(type).
        type: str
        choices: [confirm-rollout, pre-rollout, rollout, confirm-traffic-increase, confirm-promotion, post-rollout,
                  rollback, event]
      timeout:
        description: How long to wait for each answer, as a duration like V(10s), V(1m) or V(500ms).
        type: str
        default: 10s
      retries:
        description:
          - How many times to retry on a refused or reset connection, a timeout, HTTP 429 or a 5xx other than 501.
          - Retries wait 1s, 2s, 4s and so on, up to 30s, between attempts.
        type: int
        default: 0
      metadata:
        description: Key-value pairs sent as the payload's C(metadata); values are sent as strings.
        type: dict
      disable_tls:
        description: Skip verification of the hook's TLS certificate.
        type: bool
        default: false
        aliases: [disableTLS]
      mute_alert:
        description: When this hook fails, report RV(mute_alert) so the caller sends no alert, as Flagger's C(muteAlert).
        type: bool
        default: false
        aliases: [muteAlert]
  phase:
    description:
      - The C(phase) of the payload.
      - Defaults to V(Progressing) for C(confirm-rollout), C(pre-rollout), C(confirm-traffic-increase) and
        C(confirm-promotion), as Flagger sends, and to the Canary's status phase for the other types.
    type: str
  checksum:
    description:
      - The C(checksum) of the payload, which identifies the revision under test.
      - Defaults to the Canary's C(status.lastAppliedSpec). That value hashes the pod template and the tracked
        configs, as Flagger's checksum does.
    type: str
  event_message:
    description: For C(event) hooks, the event message sent as C(metadata.eventMessage).
    type: str
  event_type:
    description: For C(event) hooks, the event type sent as C(metadata.eventType).
    type: str
    choices: [Normal, Warning]
    default: Normal
  wait:
    description:
      - For confirm hooks, keep asking until the gate opens or O(wait_timeout) passes.
      - Without it the hooks are asked once and the answer is reported.
      - Ignored for the other types.
    type: bool
    default: false
  poll_interval:
    description:
      - With O(wait=true), the pause between two rounds of questions, as a duration like V(10s) or V(1m).
      - Defaults to the Canary's C(analysis.interval). When the Canary is not read, or sets no interval, the
        default is V(1m).
    type: str
  wait_timeout:
    description:
      - With O(wait=true), how long to keep asking, as a duration like V(30m) or V(2h).
      - When it passes with the gate still closed, RV(timed_out) is true and the task still succeeds.
    type: str
    default: 30m
requirements:
  - kubernetes >= 24.2.0
  - requests >= 2.28.0
notes:
  - The per-hook timeout bounds each attempt. With retries, the worst case is (retries + 1) times the
    timeout plus the backoff waits. In Flagger the timeout bounds all attempts together.
  - A C(Retry-After) header is not obeyed, so a hook cannot hold the job for longer than its retries allow.
  - Like M(ansible.builtin.uri), the module reports C(changed=false) when it calls a hook. What the receiver does
    with the call is not the module's change to report.
seealso:
  - module: progressive.delivery.canary_alert
  - name: Flagger webhooks
    description: The hook types and payload this module follows.
    link: https://docs.flagger.app/usage/webhooks
'''

EXAMPLES = r'''
- name: Ask the promotion gate, waiting up to an hour for a human to open it
  progressive.delivery.canary_hook:
    name: podinfo
    namespace: test
    type: confirm-promotion
    wait: true
    poll_interval: 30s
    wait_timeout: 1h
  register: promotion_gate

- name: Stop here when nobody approved in time
  ansible.builtin.fail:
    msg: "promotion not approved: {{ promotion_gate.hooks | map(attribute='message') | join('; ') }}"
  when: not promotion_gate.gate_open

- name: Run the rollout hooks (load test) before each gate
  progressive.delivery.canary_hook:
    name: podinfo
    namespace: test
    type: rollout
  register: rollout_hooks

- name: Ask the rollback hooks whether someone pulled the brake
  progressive.delivery.canary_hook:
    name: podinfo
    namespace: test
    type: rollback
  register: rollback_hooks

- name: Notify an event receiver; the hook is given here, not in the Canary
  progressive.delivery.canary_hook:
    name: podinfo
    namespace: test
    type: event
    event_message: "podinfo.test promoted"
    webhooks:
      - name: events
        url: "{{ event_receiver_url }}"
        timeout: 5s
        retries: 2
'''

RETURN = r'''
type:
  description: The hook type that was run.
  returned: always
  type: str
  sample: confirm-promotion
phase:
  description:
    - The C(phase) sent in the payload.
    - For event hooks it is the Canary's phase; confirm and pre-rollout hooks always get V(Progressing).
  returned: success
  type: str
  sample: Progressing
checksum:
  description: The C(checksum) sent in the payload.
  returned: success
  type: str
hooks:
  description: One entry per hook of the type, in spec order, including those not called.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Name of the hook.
      type: str
    type:
      description: Type of the hook.
      type: str
    url:
      description: The hook's URL cut down to C(scheme://host:port/…).
      type: str
      sample: "https://gate.example.com/…"
    called:
      description: Whether the hook was called. Hooks are not called in check mode or after an earlier hook decided.
      type: bool
    ok:
      description: Whether the hook said yes (HTTP 200-202); null when not called.
      type: bool
    status:
      description: HTTP status of the last answer; null when none came.
      type: int
      sample: 403
    duration:
      description: Seconds the call took, retries included.
      type: float
    attempts:
      description: Requests made, retries included.
      type: int
    message:
      description: C(HTTP <status>) with the start of the answer's body, or why no answer came.
      type: str
      sample: "HTTP 403: gate closed"
    mute_alert:
      description: The hook's C(muteAlert).
      type: bool
    timeout:
      description: The hook's timeout per attempt.
      type: str
    retries:
      description: The hook's retries.
      type: int
    metadata_keys:
      description: Names of the metadata sent; the values are left out, as they may hold tokens.
      type: list
      elements: str
gate_open:
  description:
    - For confirm hooks, whether every hook said yes (true when there are none).
    - Always true for the other types, which never hold a run.
  returned: success
  type: bool
failed_checks_increment:
  description:
    - For C(pre-rollout), C(rollout) and C(post-rollout) hooks, 1 when a hook said no and 0 otherwise. A failed
      round counts once, as in Flagger.
    - Always 0 for the other types.
  returned: success
  type: int
rollback_requested:
  description: For C(rollback) hooks, whether a hook asked for the run to be rolled back. Always false for the other types.
  returned: success
  type: bool
mute_alert:
  description: Whether a hook that said no has C(muteAlert) set, so the caller should not send an alert about it.
  returned: success
  type: bool
polls:
  description: Rounds of calls made (more than 1 only with O(wait=true)).
  returned: success
  type: int
waited:
  description: Seconds spent from the first round to the last answer.
  returned: success
  type: float
timed_out:
  description: Whether O(wait_timeout) passed with the gate still closed.
  returned: success
  type: bool
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
    API_VERSION, DEFAULT_INTERVAL, KIND, WEBHOOK_TYPES, parse_duration,
)
from ansible_collections.progressive.delivery.plugins.module_utils import _hooks


def argspec():
    webhook = dict(
        name=dict(type='str', required=True),
        url=dict(type='str', required=True, no_log=True),
        type=dict(type='str', choices=list(WEBHOOK_TYPES)),
        timeout=dict(type='str', default='10s'),
        retries=dict(type='int', default=0),
        metadata=dict(type='dict'),
        disable_tls=dict(type='bool', default=False, aliases=['disableTLS']),
        mute_alert=dict(type='bool', default=False, aliases=['muteAlert']),
    )
    return dict(
        type=dict(type='str', required=True, choices=list(WEBHOOK_TYPES)),
        webhooks=dict(type='list', elements='dict', options=webhook),
        phase=dict(type='str'),
        checksum=dict(type='str'),
        event_message=dict(type='str'),
        event_type=dict(type='str', choices=list(_hooks.EVENT_TYPES), default='Normal'),
        wait=dict(type='bool', default=False),
        poll_interval=dict(type='str'),
        wait_timeout=dict(type='str', default='30m'),
    )


def _duration(module, field, text):
    try:
        return parse_duration(text)
    except ValueError as exc:
        module.fail_json(msg='%s: %s' % (field, exc), field=field)


def _read_canary(module):
    params = module.params
    kube = kube_for(module)
    try:
        canary = kube.get(API_VERSION, KIND, params['name'], params['namespace'])
    except KubeError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    if canary is None:
        module.fail_json(msg='Canary %s not found in namespace %s; create it first, or pass webhooks, phase and '
                             'checksum to call hooks without it' % (params['name'], params['namespace']), field='name')
    return canary


def main():
    module = build_module(argspec())
    params = module.params
    if not _hooks.HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib('requests'), exception=_hooks.REQUESTS_IMPORT_ERROR)

    hook_type = params['type']
    messages = []
    canary = None
    if params['webhooks'] is None or params['phase'] is None or params['checksum'] is None:
        canary = _read_canary(module)
    spec = (canary or {}).get('spec') or {}
    status = (canary or {}).get('status') or {}
    analysis = spec.get('analysis') or {}

    try:
        if params['webhooks'] is not None:
            hooks = _hooks.normalize_hooks(params['webhooks'], 'webhooks', default_type=hook_type)
        else:
            hooks = _hooks.normalize_hooks(analysis.get('webhooks'), 'spec.analysis.webhooks')
    except _hooks.HookError as exc:
        module.fail_json(msg=exc.message, field=exc.field)
    # Hooks read from the cluster are not module options, so Ansible does not know to mask them.
    for hook in hooks:
        module.no_log_values.add(hook['url'])
    selected = _hooks.hooks_of_type(hooks, hook_type)
    if len(selected) < len(hooks) and params['webhooks'] is not None:
        messages.append('%d of the given hooks are not of type %s and were not called'
                        % (len(hooks) - len(selected), hook_type))
    if not selected:
        messages.append('no %s hooks defined' % hook_type)

    phase = params['phase'] if params['phase'] is not None else _hooks.payload_phase(hook_type, status.get('phase'))
    checksum = params['checksum'] if params['checksum'] is not None else (status.get('lastAppliedSpec') or '')

    def payload_for(hook):
        return _hooks.build_payload(params['name'], params['namespace'], phase, checksum, hook_type,
                                    metadata=hook['metadata'], event_message=params['event_message'],
                                    event_type=params['event_type'])

    def ask():
        return _hooks.run_hooks(selected, payload_for)

    result = dict(changed=False, type=hook_type, phase=phase, checksum=checksum, polls=0, waited=0.0, timed_out=False)
    wait = params['wait'] and hook_type in _hooks.CONFIRM_TYPES
    if params['wait'] and not wait:
        messages.append('wait only applies to confirm hooks; %s hooks were asked once' % hook_type)

    if module.check_mode:
        results = []
        for hook in selected:
            summary = _hooks.hook_summary(hook)
            summary['message'] = 'check mode: not called'
            results.append(summary)
        messages.append('check mode: %d %s hooks would be called' % (len(selected), hook_type))
    elif wait:
        interval = _duration(module, 'poll_interval', params['poll_interval'] or analysis.get('interval') or DEFAULT_INTERVAL)
        timeout = _duration(module, 'wait_timeout', params['wait_timeout'])
        if interval <= 0:
            module.fail_json(msg='poll_interval must be more than 0, got "%s"' % params['poll_interval'], field='poll_interval')
        results, polls, waited, timed_out = _hooks.wait_for_gate(ask, interval, timeout)
        result.update(polls=polls, waited=waited, timed_out=timed_out)
        if timed_out:
            messages.append('the %s gate was still closed after %s' % (hook_type, params['wait_timeout']))
    else:
        results = ask()
        result['polls'] = 1

    result['hooks'] = results
    result.update(_hooks.outcome(hook_type, results))
    result['messages'] = messages
    exit_with(module, result)


if __name__ == '__main__':
    main()
