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
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.progressive.delivery.plugins.module_utils._kube import (
    AUTH_ARG_SPEC, AUTH_MUTUALLY_EXCLUSIVE, AUTH_REQUIRED_BY, AUTH_REQUIRED_TOGETHER, HAS_KUBERNETES,
    KUBERNETES_IMPORT_ERROR, Kube, KubeError, get_api_client,
)

CANARY_ID_SPEC = dict(
    name=dict(type='str', required=True),
    namespace=dict(type='str', required=True),
)

# The Canary object a previous task returned (doc fragment progressive.delivery.canary.object).
CANARY_OBJECT_SPEC = dict(
    canary=dict(type='dict'),
)


class _Module(AnsibleModule):
    """AnsibleModule that names a misspelt option even when another check fails first.

    Ansible reports only the first argument error, and unsupported options come last: a task
    with ``weigth: 20`` would be told "one of the following is required: weight, ..." and never
    hear about the typo. The other errors are appended to that first one.
    """

    def fail_json(self, msg=None, **kwargs):
        if not getattr(self, '_pd_validated', False):
            msg = with_other_argument_errors(msg, getattr(self, 'validation_result', None), self._name)
        hide_webhook_urls(self, kwargs)
        super(_Module, self).fail_json(msg=msg, **kwargs)

    def exit_json(self, **kwargs):
        # A Canary the module returns (read back from the API server) carries the hook URLs even
        # when the task was handed a copy in which Ansible had already masked them.
        hide_webhook_urls(self, kwargs)
        super(_Module, self).exit_json(**kwargs)


def webhook_urls_in(value):
    """The URLs of every webhook list (a Canary's ``analysis.webhooks``) found anywhere in ``value``."""
    found = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == 'webhooks' and isinstance(item, list):
                found.update(hook['url'] for hook in item
                             if isinstance(hook, dict) and isinstance(hook.get('url'), str) and hook['url'])
            else:
                found.update(webhook_urls_in(item))
    elif isinstance(value, list):
        for item in value:
            found.update(webhook_urls_in(item))
    return found


def with_other_argument_errors(msg, validation_result, module_name):
    """``msg`` with the argument errors Ansible left out of it (all but the first)."""
    errors = list(getattr(getattr(validation_result, 'errors', None), 'errors', None) or [])
    if len(errors) < 2 or not msg or msg != errors[0].msg and not msg.endswith(errors[0].msg):
        return msg
    others = []
    for error in errors[1:]:
        text = error.msg
        if isinstance(error, UnsupportedError):
            text = 'unsupported parameters for (%s) module: %s (check the spelling)' % (module_name, text)
        if text not in others:
            others.append(text)
    return '%s; also %s' % (msg, '; '.join(others))


def build_module(argument_spec, supports_check_mode=True, mutually_exclusive=None, required_together=None,
                 required_by=None, required_if=None, required_one_of=None, canary_id=True):
    """AnsibleModule with the auth options (and the Canary's name/namespace) merged in."""
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    if canary_id:
        spec.update(copy.deepcopy(CANARY_ID_SPEC))
    spec.update(argument_spec)
    by = dict(AUTH_REQUIRED_BY)
    by.update(required_by or {})
    module = _Module(
        argument_spec=spec,
        supports_check_mode=supports_check_mode,
        mutually_exclusive=list(AUTH_MUTUALLY_EXCLUSIVE) + list(mutually_exclusive or []),
        required_together=list(AUTH_REQUIRED_TOGETHER) + list(required_together or []),
        required_by=by,
        required_if=required_if or [],
        required_one_of=required_one_of or [],
    )
    module._pd_validated = True
    hide_webhook_urls(module, module.params)  # canary_init's spec or definition, the handed-on canary
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib('kubernetes'), exception=KUBERNETES_IMPORT_ERROR)
    return module


def hide_webhook_urls(module, value):
    """Masks the webhook URLs found anywhere in ``value`` (a spec, a Canary, the options, a result) in
    everything the module prints or returns, as for any no_log option: a hook URL often carries a
    token (a chat webhook, a signed trigger)."""
    module.no_log_values.update(webhook_urls_in(value))


def kube_for(module):
    """The API client for the module's auth options; check mode writes with server-side dry run."""
    auth = dict((key, module.params.get(key)) for key in AUTH_ARG_SPEC)
    try:
        return Kube(get_api_client(auth), dry_run=module.check_mode)
    except KubeError as exc:
        module.fail_json(msg=str(exc), field=exc.field)


def given_canary(module):
    """The Canary object of option ``canary`` (a copy), None when not given; fail_json when it is
    not the module's Canary as the API server returned it."""
    given = module.params.get('canary')
    if not given:
        return None
    from ansible_collections.progressive.delivery.plugins.module_utils import _canary
    name, namespace = module.params['name'], module.params['namespace']
    meta = given.get('metadata') if isinstance(given.get('metadata'), dict) else {}
    if given.get('kind') != _canary.KIND or meta.get('name') != name or meta.get('namespace') != namespace \
            or not meta.get('resourceVersion'):
        module.fail_json(msg='canary must be the Canary %s/%s as a previous task returned it (kind %s, '
                             'metadata.name, metadata.namespace and metadata.resourceVersion); got %s %s/%s. '
                             'Pass the registered result\'s canary, or leave the option out'
                         % (namespace, name, _canary.KIND, given.get('kind'), meta.get('namespace'),
                            meta.get('name')), field='canary')
    given = copy.deepcopy(given)
    # Ansible masked the webhook URLs in the result this came from; none of the modules that take
    # the object call webhooks, and a status write ignores the spec, so the hooks are left out.
    analysis = (given.get('spec') or {}).get('analysis')
    if isinstance(analysis, dict):
        analysis.pop('webhooks', None)
    return given


def read_canary(module, kube):
    """(canary, validated spec) of the module's Canary, or fail_json naming what is wrong.

    The object of option ``canary`` stands in for the read when given."""
    from ansible_collections.progressive.delivery.plugins.module_utils import _canary
    name, namespace = module.params['name'], module.params['namespace']
    canary = given_canary(module)
    try:
        if canary is None:
            canary = kube.get(_canary.API_VERSION, _canary.KIND, name, namespace)
    except KubeError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    if canary is None:
        module.fail_json(msg='Canary %s/%s not found; create it first (canary_init)' % (namespace, name), field='name')
    hide_webhook_urls(module, canary.get('spec'))
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
