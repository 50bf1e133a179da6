#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: canary_info
short_description: Read a Canary's spec, run record, workload readiness and live traffic split
version_added: 0.1.0
description:
  - Read-only. Returns the Canary's spec and status, whether the primary and the target are ready, the weights
    the router objects carry right now, and the newest gate results; enough for a report or an AWX artifact.
author:
  - progressive.delivery developers (!UNKNOWN)
extends_documentation_fragment:
  - progressive.delivery.auth
  - progressive.delivery.canary
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: The module never writes.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
options:
  history:
    description: How many of the newest gate results to return.
    type: int
    default: 10
requirements:
  - kubernetes >= 24.2.0
'''

EXAMPLES = r'''
- name: Where does the podinfo release stand?
  progressive.delivery.canary_info:
    name: podinfo
    namespace: test
  register: podinfo

- name: Publish it for the AWX workflow
  ansible.builtin.set_stats:
    data:
      podinfo_phase: "{{ podinfo.phase }}"
      podinfo_weight: "{{ podinfo.canary_weight }}"
'''

RETURN = r'''
phase:
  description: The Canary's phase.
  returned: success
  type: str
run_id:
  description: Id of the current or last run.
  returned: success
  type: str
canary_weight:
  description: Canary weight recorded in the status.
  returned: success
  type: int
primary_weight:
  description: Primary weight recorded in the status.
  returned: success
  type: int
iterations:
  description: Iterations of the current or last run.
  returned: success
  type: int
failed_checks:
  description: Failed checks of the current or last run.
  returned: success
  type: int
last_promoted_revision:
  description: The revision the primary runs.
  returned: success
  type: str
last_applied_revision:
  description: The revision of the current or last run.
  returned: success
  type: str
lock:
  description: The run lock (holder, acquiredAt, renewedAt, expiresAt), or null.
  returned: success
  type: dict
spec:
  description: The Canary's spec as stored.
  returned: success
  type: dict
run_status:
  description: The Canary's whole status.
  returned: success
  type: dict
primary:
  description: Readiness of the primary Deployment (name, exists, ready, detail, replicas, available_replicas).
  returned: success
  type: dict
target:
  description: Readiness of the target Deployment, same keys as RV(primary).
  returned: success
  type: dict
routes:
  description:
    - Live weights read from the router objects (primary, canary, mirrored), or an error message when they
      cannot be read. Null when the router layer is not available.
  returned: success
  type: dict
gate_history:
  description: The newest gate results, oldest first.
  returned: success
  type: list
  elements: dict
'''

from ansible_collections.progressive.delivery.plugins.module_utils._module import build_module, exit_with, kube_for
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeError


def main():
    module = build_module(dict(history=dict(type='int', default=10)))
    from ansible_collections.progressive.delivery.plugins.module_utils._rollout import RolloutError, info

    params = module.params
    if params['history'] < 0:
        module.fail_json(msg='history must be 0 or more, got %d' % params['history'], field='history')
    kube = kube_for(module)
    try:
        result = info(kube, params['name'], params['namespace'], history=params['history'])
    except (RolloutError, KubeError) as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    result.pop('canary', None)
    result['run_status'] = result.pop('status', {})
    exit_with(module, result)


if __name__ == '__main__':
    main()
