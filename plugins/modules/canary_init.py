#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: canary_init
short_description: Prepare a Canary and start or resume a progressive-delivery run
version_added: 0.1.0
description:
  - Ensures the Canary resource, the C(<app>-primary) Deployment, the services C(<apex>), C(<apex>-primary) and
    C(<apex>-canary), the primary copies of the ConfigMaps and Secrets the target reads, and the routing objects of
    the Canary's provider. Objects that already exist are adopted, not replaced.
  - The first time, the primary takes a copy of the target's pod template, and only once the primary is ready
    is the target scaled to 0.
  - Afterwards it detects a new revision by hashing the target's pod template and the data of its tracked configs
    and comparing the hash with the last promoted one. For a new revision it takes the run lock, scales the target
    up and waits for it to be ready within C(progressDeadlineSeconds), and sets the phase to C(Progressing).
  - For a run that was interrupted (same revision, phase still C(Progressing)) it returns where that run stands so
    the caller can resume it.
  - Bad input fails before anything in the cluster is changed.
author:
  - progressive.delivery developers (!UNKNOWN)
extends_documentation_fragment:
  - progressive.delivery.auth
  - progressive.delivery.canary
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Writes are sent with server-side dry run; nothing is waited for.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
options:
  spec:
    description:
      - The Canary's spec, in the same shape as Flagger's C(Canary) spec (C(targetRef), C(service), C(provider),
        C(analysis), C(progressDeadlineSeconds), ...). See C(docs/canary-resource.md).
      - When given, the Canary is created or its spec updated. When omitted, the Canary must already exist.
      - Mutually exclusive with O(definition).
    type: dict
  definition:
    description:
      - A whole Canary manifest, either of this collection (C(progressive.delivery/v1alpha1)) or a Flagger one
        (C(flagger.app/v1beta1)), which is converted. Its spec is used as O(spec) would be.
    type: dict
  lock_holder:
    description:
      - Identity recorded as the holder of the run lock.
      - Defaults to C(awx-job-<id>) under AWX, else C(<host>:<pid of ansible-playbook>), so that a run killed on this
        host can be taken over at once by the next one.
    type: str
  wait:
    description: Wait for the primary (bootstrap) and the target (new run) to be ready.
    type: bool
    default: true
requirements:
  - kubernetes >= 24.2.0
notes:
  - The run lock lives in the Canary's status and is written with the resourceVersion that was read, so two
    concurrent runs can never both hold it.
seealso:
  - module: progressive.delivery.canary_promote
  - module: progressive.delivery.canary_info
'''

EXAMPLES = r'''
- name: Prepare the podinfo canary and start a run if the image changed
  progressive.delivery.canary_init:
    name: podinfo
    namespace: test
    spec:
      provider: istio
      targetRef:
        apiVersion: apps/v1
        kind: Deployment
        name: podinfo
      service:
        port: 9898
      analysis:
        interval: 1m
        threshold: 5
        stepWeight: 10
        maxWeight: 50
  register: init

- name: Resume where an interrupted run stopped
  ansible.builtin.debug:
    msg: "resume at {{ init.resume.weight }}%"
  when: init.resumed

- name: Bring a Flagger manifest across
  progressive.delivery.canary_init:
    name: podinfo
    namespace: test
    definition: "{{ lookup('ansible.builtin.file', 'podinfo-canary.yaml') | from_yaml }}"
'''

RETURN = r'''
run_needed:
  description: Whether a run is in progress for a revision that is not yet promoted (new or resumed).
  returned: success
  type: bool
bootstrapped:
  description: Whether this call created the primary from the target (first initialisation).
  returned: success
  type: bool
resumed:
  description: Whether an interrupted run of the same revision was found and its lock taken.
  returned: success
  type: bool
resume:
  description:
    - Where the interrupted run stands; null unless RV(resumed).
    - C(rollback_pending) is true when the run's last gate decided the rollback and moved the traffic to the
      primary before the job died; the rollback is then to be finished, not the run continued.
  returned: success
  type: dict
  sample: {weight: 20, iterations: 2, failed_checks: 1, phase: Progressing, rollback_pending: false}
run_id:
  description: Id of the current run.
  returned: success
  type: str
  sample: 3f2a9c1d-20261126120000
revision:
  description: Hash of the target's pod template and tracked configs.
  returned: success
  type: str
last_promoted_revision:
  description: The revision the primary runs.
  returned: success
  type: str
last_applied_revision:
  description: The revision of the current or last run.
  returned: success
  type: str
phase:
  description: The Canary's phase after this call.
  returned: success
  type: str
  sample: Progressing
strategy:
  description: The release strategy the analysis describes (canary, ab, bluegreen, bluegreen-mirror).
  returned: success
  type: str
steps:
  description: The canary weights the run walks through.
  returned: success
  type: list
  elements: int
  sample: [10, 20, 30, 40, 50]
interval_seconds:
  description: The analysis interval, in seconds.
  returned: success
  type: float
analysis_iterations:
  description: The Canary's analysis.iterations (A/B and blue/green runs), 0 when unset.
  returned: success
  type: int
match:
  description: The Canary's analysis.match (A/B routing rules).
  returned: success
  type: list
  elements: dict
webhook_types:
  description: The webhook types the Canary's analysis declares, so callers can skip the others.
  returned: success
  type: list
  elements: str
  sample: [confirm-promotion, rollout]
mirror:
  description: The Canary's analysis.mirror.
  returned: success
  type: bool
skip_analysis:
  description: The Canary's skipAnalysis.
  returned: success
  type: bool
suspended:
  description: The Canary's suspend; no run is started or resumed while true.
  returned: success
  type: bool
lock_holder:
  description: The identity this call used for the run lock.
  returned: success
  type: str
lock:
  description: The run lock as recorded in the status (holder, acquiredAt, renewedAt, expiresAt).
  returned: success
  type: dict
canary_weight:
  description: The canary weight recorded in the status.
  returned: success
  type: int
primary_weight:
  description: The primary weight recorded in the status.
  returned: success
  type: int
iterations:
  description: Iterations recorded for the current run.
  returned: success
  type: int
failed_checks:
  description: Failed checks recorded for the current run.
  returned: success
  type: int
run_status:
  description: The Canary's whole status.
  returned: success
  type: dict
messages:
  description: Notes on what was done or skipped.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.progressive.delivery.plugins.module_utils._module import build_module, exit_with, kube_for
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeError


def main():
    module = build_module(
        dict(
            spec=dict(type='dict'),
            definition=dict(type='dict'),
            lock_holder=dict(type='str'),
            wait=dict(type='bool', default=True),
        ),
        mutually_exclusive=[('spec', 'definition')],
    )
    from ansible_collections.progressive.delivery.plugins.module_utils import _canary as model
    from ansible_collections.progressive.delivery.plugins.module_utils._rollout import RolloutError, init

    params = module.params
    spec = params['spec']
    messages = []
    if params['definition'] is not None:
        try:
            if params['definition'].get('apiVersion') == model.API_VERSION:
                spec = params['definition'].get('spec') or {}
            else:
                spec, messages = model.convert_flagger_manifest(params['definition'])
        except model.SpecError as exc:
            module.fail_json(msg='definition.%s' % exc, field='definition.' + exc.field, messages=[])
    kube = kube_for(module)
    try:
        result = init(kube, params['name'], params['namespace'], spec=spec, holder=params['lock_holder'],
                      wait=params['wait'])
    except RolloutError as exc:
        module.fail_json(msg=str(exc), field=exc.field, messages=messages)
    except KubeError as exc:
        module.fail_json(msg=str(exc), field=exc.field, messages=messages)
    result['messages'] = messages + result.get('messages', [])
    result['run_status'] = result.pop('status', {})
    exit_with(module, result)


if __name__ == '__main__':
    main()
