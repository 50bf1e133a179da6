#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: mesh_weight
short_description: Set the traffic split between a Canary's primary and canary
version_added: 0.1.0
description:
  - Routes a share of the traffic to the canary through the router of the Canary's C(spec.provider) (Istio
    VirtualService, Gateway API HTTPRoute, SMI TrafficSplit, NGINX canary Ingress, or replica counts when
    there is no mesh), and records the weights in the Canary's status (C(canaryWeight), C(primaryWeight)).
  - Optionally routes by match conditions (A/B testing) and mirrors traffic to the canary, where the router
    supports it; an unsupported request fails with a message naming the router and what it supports.
  - Everything is validated before the first write, so a failed task changes nothing.
  - The routing objects must exist; M(progressive.delivery.canary_init) creates or adopts them.
  - Idempotent; a repeat returns C(changed=false) and writes nothing.
author:
  - progressive.delivery developers (!UNKNOWN)
extends_documentation_fragment:
  - progressive.delivery.auth
  - progressive.delivery.canary
  - progressive.delivery.canary.object
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Writes are sent with server-side dry run, so the API server validates them and persists nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details: The routing objects and the Canary's recorded weights, before and after.
options:
  weight:
    description:
      - Percentage of the traffic for the canary, 0 to 100; the primary gets the rest.
      - Mutually exclusive with O(primary_weight) and O(canary_weight).
    type: int
  primary_weight:
    description:
      - Percentage of the traffic for the primary, 0 to 100. Needs O(canary_weight); the two must sum to 100.
    type: int
  canary_weight:
    description:
      - Percentage of the traffic for the canary, 0 to 100. Needs O(primary_weight); the two must sum to 100.
    type: int
  match:
    description:
      - Match conditions for A/B testing, in the form of Istio's HTTPMatchRequest (as in the Canary's
        C(analysis.match)); see the examples. Requests that match get the weights above; the others go to
        the primary.
      - When not given, the Canary's C(spec.analysis.match) applies. Pass V([]) for no match conditions.
      - Supported by the C(istio), C(gatewayapi) and C(nginx) routers. NGINX matches one header and one cookie
        (a C(cookie) header condition whose C(exact) value is the cookie's name), and only all-or-nothing, so
        the canary weight must be 0 or 100.
    type: list
    elements: dict
  mirror:
    description:
      - Also send a copy of the primary's traffic to the canary (responses from the canary are dropped).
      - Supported by the C(istio) and C(gatewayapi) routers.
    type: bool
    default: false
  mirror_weight:
    description:
      - Percentage of the traffic to mirror, 0 to 100; only with O(mirror=true).
      - Defaults to the Canary's C(spec.analysis.mirrorWeight), else all of it.
    type: int
requirements:
  - kubernetes >= 24.2.0
notes:
  - With provider C(kubernetes) the split is approximated by replica counts, in steps of 100 divided by the
    primary's replica count (25% with 4 replicas); see the collection's docs/routers.md.
seealso:
  - module: progressive.delivery.canary_init
  - module: progressive.delivery.canary_promote
'''

EXAMPLES = r'''
- name: Send 10% of the traffic to the canary
  progressive.delivery.mesh_weight:
    name: podinfo
    namespace: test
    weight: 10

- name: Same, as a pair
  progressive.delivery.mesh_weight:
    name: podinfo
    namespace: test
    primary_weight: 90
    canary_weight: 10

- name: A/B test - insiders go to the canary, everyone else to the primary
  progressive.delivery.mesh_weight:
    name: podinfo
    namespace: test
    weight: 100
    match:
      - headers:
          x-canary:
            exact: insider
      - headers:
          cookie:
            regex: "^(.*?;)?(canary=always)(;.*)?$"

- name: Blue/green with mirroring - no user sees the canary, it sees half of their requests
  progressive.delivery.mesh_weight:
    name: podinfo
    namespace: test
    weight: 0
    mirror: true
    mirror_weight: 50
'''

RETURN = r'''
canary:
  description:
    - The Canary object as this task left it (with its new C(metadata.resourceVersion)), for the O(canary) option
      of the next task of the run.
  returned: success
  type: dict
previous:
  description: The split before the task, read from the routing objects.
  returned: success
  type: dict
  contains:
    primary:
      description: Percentage of the traffic the primary got.
      type: int
    canary:
      description: Percentage of the traffic the canary got.
      type: int
    mirrored:
      description: Whether traffic was mirrored to the canary.
      type: bool
  sample: {primary: 100, canary: 0, mirrored: false}
weights:
  description: The split after the task (in check mode, what it would be), read from the routing objects.
  returned: success
  type: dict
  contains:
    primary:
      description: Percentage of the traffic the primary gets.
      type: int
    canary:
      description: Percentage of the traffic the canary gets.
      type: int
    mirrored:
      description: Whether traffic is mirrored to the canary.
      type: bool
  sample: {primary: 90, canary: 10, mirrored: false}
provider:
  description: The Canary's provider.
  returned: success
  type: str
  sample: istio
router:
  description: The router family that carried the request (istio, gatewayapi, smi, nginx or kubernetes).
  returned: success
  type: str
  sample: istio
'''

from ansible_collections.progressive.delivery.plugins.module_utils._module import (
    CANARY_OBJECT_SPEC, build_module, exit_with, given_canary, kube_for)
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeError


def argspec():
    return dict(
        weight=dict(type='int'),
        primary_weight=dict(type='int'),
        canary_weight=dict(type='int'),
        match=dict(type='list', elements='dict'),
        mirror=dict(type='bool', default=False),
        mirror_weight=dict(type='int'),
        **CANARY_OBJECT_SPEC
    )


def main():
    module = build_module(
        argspec(),
        mutually_exclusive=[('weight', 'primary_weight'), ('weight', 'canary_weight')],
        required_together=[('primary_weight', 'canary_weight')],
        required_one_of=[('weight', 'primary_weight')],
    )
    from ansible_collections.progressive.delivery.plugins.module_utils._routers import set_weights

    params = module.params
    if params['weight'] is not None:
        if not 0 <= params['weight'] <= 100:
            module.fail_json(msg='weight must be between 0 and 100, got %d' % params['weight'], field='weight')
        primary_weight, canary_weight = 100 - params['weight'], params['weight']
    else:
        primary_weight, canary_weight = params['primary_weight'], params['canary_weight']
    kube = kube_for(module)
    try:
        result = set_weights(kube, params['name'], params['namespace'], primary_weight, canary_weight,
                             mirrored=params['mirror'], match=params['match'], mirror_weight=params['mirror_weight'],
                             given=given_canary(module))
    except KubeError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    for warning in result.pop('warnings'):
        module.warn(warning)
    exit_with(module, result)


if __name__ == '__main__':
    main()
