#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: canary_promote
short_description: Promote a Canary's run to the primary, or roll it back
version_added: 0.1.0
description:
  - With O(state=promoted) copies the target's pod template, strategy, minReadySeconds and tracked ConfigMaps and
    Secrets to the primary, waits until the primary is ready, routes all traffic to the primary, scales the
    target to 0, sets the phase to C(Succeeded) and releases the run lock.
  - If the primary does not become ready in time, traffic is left where it is, the phase becomes C(Failed) with a
    message saying so, and the task fails.
  - With O(state=rolled_back) routes all traffic to the primary first, then scales the target to 0, sets the
    phase to C(Failed) and releases the lock. The gate history is kept as evidence.
  - Both states are idempotent; a repeat returns C(changed=false).
author:
  - progressive.delivery developers (!UNKNOWN)
extends_documentation_fragment:
  - progressive.delivery.auth
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Writes are sent with server-side dry run; nothing is waited for.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
options:
  name:
    description: Name of the Canary resource.
    type: str
    required: true
  namespace:
    description: Namespace of the Canary.
    type: str
    required: true
  state:
    description:
      - Whether to promote the run's revision or roll it back.
      - C(reverted) puts the previously promoted template back on the target and the primary, without analysis,
        once no run is in progress (the primary records it at each promotion). Multi-cluster waves use it to
        roll back clusters that a failed release had already promoted.
    type: str
    required: true
    choices: [promoted, rolled_back, reverted]
  run_id:
    description:
      - Id of the run this call acts on, as returned by M(progressive.delivery.canary_init). When given, a
        Canary whose current run differs is left alone and the task fails.
      - Also lets a different lock holder (for example a later job) finish a run it did not start.
    type: str
  lock_holder:
    description: Identity of the caller for the run lock; see M(progressive.delivery.canary_init).
    type: str
  reason:
    description: Why the run is rolled back; recorded in the Canary's status message.
    type: str
  wait:
    description: Wait for the primary to be ready after promotion.
    type: bool
    default: true
requirements:
  - kubernetes >= 24.2.0
seealso:
  - module: progressive.delivery.canary_init
'''

EXAMPLES = r'''
- name: Promote the analysed revision
  progressive.delivery.canary_promote:
    name: podinfo
    namespace: test
    state: promoted
    run_id: "{{ init.run_id }}"

- name: Roll back after a failed gate
  progressive.delivery.canary_promote:
    name: podinfo
    namespace: test
    state: rolled_back
    run_id: "{{ init.run_id }}"
    reason: "{{ ansible_failed_result.msg | default('rolled back') }}"

- name: Go back to the revision promoted before the last one (another cluster of the wave failed)
  progressive.delivery.canary_promote:
    name: podinfo
    namespace: test
    state: reverted
'''

RETURN = r'''
phase:
  description: The Canary's phase after this call.
  returned: success
  type: str
  sample: Succeeded
run_id:
  description: Id of the run.
  returned: success
  type: str
canary_weight:
  description: The canary weight recorded in the status (0 after promotion or rollback).
  returned: success
  type: int
primary_weight:
  description: The primary weight recorded in the status.
  returned: success
  type: int
iterations:
  description: Iterations recorded for the run.
  returned: success
  type: int
failed_checks:
  description: Failed checks recorded for the run.
  returned: success
  type: int
last_promoted_revision:
  description: The revision the primary runs.
  returned: success
  type: str
last_applied_revision:
  description: The revision of the run.
  returned: success
  type: str
lock:
  description: The run lock after this call (null once released).
  returned: success
  type: dict
run_status:
  description: The Canary's whole status.
  returned: success
  type: dict
messages:
  description: Notes on what was done.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.progressive.delivery.plugins.module_utils._module import build_module, exit_with, kube_for
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeError


def main():
    module = build_module(
        dict(
            state=dict(type='str', required=True, choices=['promoted', 'rolled_back', 'reverted']),
            run_id=dict(type='str'),
            lock_holder=dict(type='str'),
            reason=dict(type='str'),
            wait=dict(type='bool', default=True),
        ),
    )
    from ansible_collections.progressive.delivery.plugins.module_utils._rollout import (
        RolloutError, promote, revert, rollback)
    from ansible_collections.progressive.delivery.plugins.module_utils._canary import SpecError

    params = module.params
    kube = kube_for(module)
    try:
        if params['state'] == 'promoted':
            result = promote(kube, params['name'], params['namespace'], run_id=params['run_id'],
                             holder=params['lock_holder'], wait=params['wait'])
        elif params['state'] == 'reverted':
            result = revert(kube, params['name'], params['namespace'], holder=params['lock_holder'],
                            wait=params['wait'])
        else:
            result = rollback(kube, params['name'], params['namespace'], run_id=params['run_id'],
                              holder=params['lock_holder'], reason=params['reason'])
    except (RolloutError, KubeError) as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    except SpecError as exc:
        module.fail_json(msg='the Canary in the cluster is invalid: %s' % exc, field='spec.' + exc.field)
    result['run_status'] = result.pop('status', {})
    exit_with(module, result)


if __name__ == '__main__':
    main()
