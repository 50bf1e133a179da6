# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection does the same way: its argument spec around the
shared auth options, the client it builds, and how errors become ``fail_json``.

This file is private to the collection: its API may change between minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.progressive.delivery.plugins.module_utils._kube import (
    AUTH_ARG_SPEC, AUTH_MUTUALLY_EXCLUSIVE, AUTH_REQUIRED_BY, AUTH_REQUIRED_TOGETHER, HAS_KUBERNETES,
    KUBERNETES_IMPORT_ERROR, Kube, KubeError, get_api_client,
)

CANARY_ID_SPEC = dict(
    name=dict(type='str', required=True),
    namespace=dict(type='str', required=True),
)


def build_module(argument_spec, supports_check_mode=True, mutually_exclusive=None, required_together=None,
                 required_by=None, required_if=None, required_one_of=None, canary_id=True):
    """AnsibleModule with the auth options (and the Canary's name/namespace) merged in."""
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    if canary_id:
        spec.update(copy.deepcopy(CANARY_ID_SPEC))
    spec.update(argument_spec)
    by = dict(AUTH_REQUIRED_BY)
    by.update(required_by or {})
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=supports_check_mode,
        mutually_exclusive=list(AUTH_MUTUALLY_EXCLUSIVE) + list(mutually_exclusive or []),
        required_together=list(AUTH_REQUIRED_TOGETHER) + list(required_together or []),
        required_by=by,
        required_if=required_if or [],
        required_one_of=required_one_of or [],
    )
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib('kubernetes'), exception=KUBERNETES_IMPORT_ERROR)
    return module


def kube_for(module):
    """The API client for the module's auth options; check mode writes with server-side dry run."""
    auth = dict((key, module.params.get(key)) for key in AUTH_ARG_SPEC)
    try:
        return Kube(get_api_client(auth), dry_run=module.check_mode)
    except KubeError as exc:
        module.fail_json(msg=str(exc), field=exc.field)


def read_canary(module, kube):
    """(canary, validated spec) of the module's Canary, or fail_json naming what is wrong."""
    from ansible_collections.progressive.delivery.plugins.module_utils import _canary
    name, namespace = module.params['name'], module.params['namespace']
    try:
        canary = kube.get(_canary.API_VERSION, _canary.KIND, name, namespace)
    except KubeError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    if canary is None:
        module.fail_json(msg='Canary %s/%s not found; create it first (canary_init)' % (namespace, name), field='name')
    try:
        return canary, _canary.validate_spec(canary.get('spec') or {})
    except _canary.SpecError as exc:
        module.fail_json(msg='Canary %s/%s: %s' % (namespace, name, exc.message), field=exc.field)
    return None, None


def exit_with(module, result):
    """exit_json with the diff only in diff mode (it can be large), and the API request count."""
    result = dict(result)
    diff = result.pop('diff', None)
    if module._diff and diff is not None:
        result['diff'] = diff
    module.exit_json(**result)
