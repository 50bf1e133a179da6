# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Canary object handed from task to task (option canary) and the masking of webhook URLs."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _module


class _Failed(Exception):
    pass


class _FakeModule(object):
    def __init__(self, **params):
        self.params = dict(name='web', namespace='ns', **params)
        self.no_log_values = set()

    def fail_json(self, **kwargs):
        raise _Failed(kwargs)


def _canary(**meta):
    return {'apiVersion': 'progressive.delivery/v1alpha1', 'kind': 'Canary',
            'metadata': dict({'name': 'web', 'namespace': 'ns', 'resourceVersion': '7'}, **meta),
            'spec': {'analysis': {'webhooks': [{'name': 'h', 'url': '********'}]}}}


def test_the_handed_on_canary_is_a_copy_without_its_masked_webhooks():
    given = _canary()
    module = _FakeModule(canary=given)
    copy = _module.given_canary(module)
    assert 'webhooks' not in copy['spec']['analysis'] and given['spec']['analysis']['webhooks']
    assert _module.given_canary(_FakeModule(canary=None)) is None


@pytest.mark.parametrize('meta', [{'name': 'other'}, {'namespace': 'elsewhere'}, {'resourceVersion': None}])
def test_another_or_a_hand_made_canary_is_refused_naming_the_option(meta):
    with pytest.raises(_Failed) as failed:
        _module.given_canary(_FakeModule(canary=_canary(**meta)))
    assert failed.value.args[0]['field'] == 'canary' and 'leave the option out' in failed.value.args[0]['msg']


def test_webhook_urls_of_a_spec_become_no_log_values():
    module = _FakeModule()
    _module.hide_webhook_urls(module, {'analysis': {'webhooks': [{'url': 'https://hooks.example/T0/secret'},
                                                                 {'name': 'no url'}]}})
    _module.hide_webhook_urls(module, None)
    assert module.no_log_values == {'https://hooks.example/T0/secret'}


def test_webhook_urls_anywhere_in_a_result_are_found():
    result = {'canary': {'spec': {'analysis': {'webhooks': [{'url': 'http://h/one'}, {'url': ''}, 'junk']}}},
              'diff': {'after': [{'analysis': {'webhooks': [{'url': 'http://h/two'}]}}]}}
    assert _module.webhook_urls_in(result) == {'http://h/one', 'http://h/two'}
    assert _module.webhook_urls_in({'webhooks': 'not a list'}) == set()


def test_a_canary_returned_by_a_module_has_its_hook_urls_masked(capsys):
    # The task may have been handed a copy whose URLs Ansible had masked already; the object read
    # back from the API server has them in clear, and the module must not print them.
    from ansible.module_utils.testing import patch_module_args
    secret = 'http://127.0.0.1:9/hooks/confidential'
    returned = {'kind': 'Canary', 'spec': {'analysis': {'webhooks': [{'name': 'h', 'url': secret}]}}}
    with patch_module_args({'name': 'web'}):
        module = _module._Module(argument_spec={'name': {'type': 'str'}})
        with pytest.raises(SystemExit):
            module.exit_json(changed=False, canary=returned)
    out = capsys.readouterr().out
    assert secret not in out and 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in out
