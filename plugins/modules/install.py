#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: install
short_description: Install or remove the collection's cluster-wide objects (Canary CRD, ClusterRole)
version_added: 0.1.0
description:
  - Applies the given manifests with server-side apply (field manager C(progressive-delivery)), waits for
    CustomResourceDefinitions to be Established, or deletes them with O(state=absent).
  - Meant for the manifests shipped with the collection (C(crds/canary.yaml), C(rbac/clusterrole.yaml)); the
    playbook C(progressive.delivery.install) passes them in. Needs cluster-admin rights, unlike the other modules.
author:
  - progressive.delivery developers (!UNKNOWN)
extends_documentation_fragment:
  - progressive.delivery.auth
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Writes are sent with server-side dry run.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
options:
  definitions:
    description: The manifests to apply (each a dict with apiVersion, kind and metadata.name).
    type: list
    elements: dict
    required: true
  state:
    description: Whether the objects should exist.
    type: str
    choices: [present, absent]
    default: present
  wait_timeout:
    description: Seconds to wait for a CustomResourceDefinition to be Established.
    type: int
    default: 60
requirements:
  - kubernetes >= 24.2.0
'''

EXAMPLES = r'''
- name: Install the Canary CRD and the ClusterRole
  progressive.delivery.install:
    definitions: >-
      {{ (lookup('ansible.builtin.file', 'crds/canary.yaml') | from_yaml_all | list)
         + (lookup('ansible.builtin.file', 'rbac/clusterrole.yaml') | from_yaml_all | list) }}
'''

RETURN = r'''
objects:
  description: What happened to each object (kind, name, action of created, updated, unchanged, deleted, absent).
  returned: success
  type: list
  elements: dict
  sample: [{kind: CustomResourceDefinition, name: canaries.progressive.delivery, action: created}]
'''

import time

from ansible_collections.progressive.delivery.plugins.module_utils._module import build_module, exit_with, kube_for
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeError
from ansible_collections.progressive.delivery.plugins.module_utils._rollout import _is_subset, _strip_server_fields


def _established(obj):
    return any(c.get('type') == 'Established' and c.get('status') == 'True'
               for c in (obj.get('status') or {}).get('conditions') or [])


def _apply_all(module, kube, definitions):
    objects, diff = [], {'before': {}, 'after': {}}
    for index, definition in enumerate(definitions):
        if not definition.get('apiVersion') or not definition.get('kind') or \
                not (definition.get('metadata') or {}).get('name'):
            module.fail_json(msg='definitions[%d]: apiVersion, kind and metadata.name are required' % index,
                             field='definitions')
    for definition in definitions:
        api_version, kind, name = definition['apiVersion'], definition['kind'], definition['metadata']['name']
        current = kube.get(api_version, kind, name)
        key = '%s/%s' % (kind, name)
        if module.params['state'] == 'absent':
            if current is None:
                objects.append(dict(kind=kind, name=name, action='absent'))
                continue
            kube.delete(api_version, kind, name)
            diff['before'][key], diff['after'][key] = _strip_server_fields(current), None
            objects.append(dict(kind=kind, name=name, action='deleted'))
            continue
        wanted = dict((k, v) for k, v in definition.items() if k not in ('status',))
        if current is not None and _is_subset(wanted, current):
            objects.append(dict(kind=kind, name=name, action='unchanged'))
            continue
        after = kube.apply(definition)
        diff['before'][key] = _strip_server_fields(current) if current else None
        diff['after'][key] = _strip_server_fields(after)
        objects.append(dict(kind=kind, name=name, action='created' if current is None else 'updated'))
        if kind == 'CustomResourceDefinition' and not module.check_mode:
            deadline = time.time() + module.params['wait_timeout']
            while not _established(after):
                if time.time() > deadline:
                    module.fail_json(msg='wait_timeout: CustomResourceDefinition %s not Established after %ds'
                                     % (name, module.params['wait_timeout']), field='wait_timeout')
                time.sleep(0.2)
                after = kube.get(api_version, kind, name) or {}
    return objects, diff


def main():
    module = build_module(
        dict(
            definitions=dict(type='list', elements='dict', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            wait_timeout=dict(type='int', default=60),
        ),
        canary_id=False,
    )
    kube = kube_for(module)
    try:
        objects, diff = _apply_all(module, kube, module.params['definitions'])
    except KubeError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    changed = any(o['action'] in ('created', 'updated', 'deleted') for o in objects)
    exit_with(module, dict(changed=changed, objects=objects, diff=diff))


if __name__ == '__main__':
    main()
