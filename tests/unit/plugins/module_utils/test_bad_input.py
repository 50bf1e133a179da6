# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input is refused before the first write, with a message naming the field (issue 8).

The fault-injection catalogue (tests/integration/chaos/test_bad_inputs.py) runs the same mistakes
through ansible-playbook against a real cluster; these pin down the validation it found missing.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import os

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as model
from ansible_collections.progressive.delivery.plugins.module_utils import _gate
from ansible_collections.progressive.delivery.plugins.module_utils import _metrics
from ansible_collections.progressive.delivery.plugins.module_utils import _report
from ansible_collections.progressive.delivery.plugins.module_utils import _rollout as rollout
from ansible_collections.progressive.delivery.plugins.module_utils._gate import GateError
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeApiError
from ansible_collections.progressive.delivery.plugins.module_utils._metrics.http import HttpSource
from ansible_collections.progressive.delivery.plugins.module_utils._module import with_other_argument_errors
from ansible_collections.progressive.delivery.plugins.module_utils._routers import get_router
from ansible_collections.progressive.delivery.plugins.modules import canary_alert

from .test_routers import NS, FakeKube, deployment, make_canary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def good_spec(**analysis):
    spec = {'targetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'web'}, 'service': {'port': 80},
            'analysis': dict({'interval': '1m', 'stepWeight': 10}, **analysis)}
    return spec


# ----------------------------------------------------------------------------- the Canary spec

def test_step_weight_zero_is_named_and_explained():
    with pytest.raises(model.SpecError) as info:
        model.validate_spec(good_spec(stepWeight=0))
    assert info.value.field == 'analysis.stepWeight'
    assert 'analysis.stepWeight is 0' in info.value.message and 'unset' in info.value.message


def test_no_walk_at_all_still_names_the_choices():
    spec = good_spec()
    del spec['analysis']['stepWeight']
    with pytest.raises(model.SpecError) as info:
        model.validate_spec(spec)
    assert info.value.field == 'analysis' and 'stepWeight' in info.value.message


def test_init_keeps_the_whole_spec_message_and_writes_nothing():
    # The message contains ': ' itself; it used to be cut there ("the name of the Deployment to release").
    kube = FakeKube([deployment('web', 2)])
    spec = good_spec()
    del spec['targetRef']['name']
    with pytest.raises(rollout.RolloutError) as info:
        rollout.init(kube, 'web', NS, spec=spec)
    assert info.value.field == 'spec.targetRef.name'
    assert info.value.message.startswith('targetRef.name is required')
    assert kube.writes() == []


def test_init_names_step_weight_zero_in_full():
    kube = FakeKube([deployment('web', 2)])
    with pytest.raises(rollout.RolloutError) as info:
        rollout.init(kube, 'web', NS, spec=good_spec(stepWeight=0))
    assert str(info.value).startswith('spec.analysis.stepWeight: analysis.stepWeight is 0')
    assert kube.writes() == []


# ------------------------------------------------------------------------ promote and rollback

def initialized(run_id=None):
    status = {'phase': model.PHASE_INITIALIZED, 'canaryWeight': 0, 'primaryWeight': 100}
    if run_id:
        status['runId'] = run_id
    return make_canary('istio', status=status)


@pytest.mark.parametrize('recorded', [None, 'run-2'])
def test_rollback_of_a_run_that_is_not_on_record_is_refused(recorded):
    kube = FakeKube([initialized(recorded), deployment('web', 0)])
    with pytest.raises(rollout.RolloutError) as info:
        rollout.rollback(kube, 'web', NS, run_id='run-1', holder='me')
    assert info.value.field == 'run_id' and 'run-1' in str(info.value) and 'nothing was changed' in str(info.value)
    assert kube.writes() == []


def test_rollback_without_run_id_still_makes_sure_the_primary_serves():
    kube = FakeKube([initialized('run-2'), deployment('web', 0)])
    canary = make_canary('istio')
    get_router(kube, canary).reconcile(canary)
    result = rollout.rollback(kube, 'web', NS, holder='me')
    assert 'no run in progress' in result['messages'][-1]


def test_promote_with_a_run_id_when_no_run_is_in_progress_names_run_id():
    kube = FakeKube([initialized(), deployment('web', 0)])
    with pytest.raises(rollout.RolloutError) as info:
        rollout.promote(kube, 'web', NS, run_id='run-1', holder='me')
    assert info.value.field == 'run_id' and 'run run-1 is not in progress' in str(info.value)
    assert kube.writes() == []
    with pytest.raises(rollout.RolloutError) as info:
        rollout.promote(kube, 'web', NS, holder='me')
    assert info.value.field == 'state'


# ------------------------------------------------------------------ queries, reports, credentials

def test_an_invalid_jmespath_query_is_refused_before_the_source_is_asked():
    source = HttpSource({'address': 'http://127.0.0.1:9/never-asked'})
    prepared = [{'name': 'ok', 'query': 'a.b'}, {'name': 'errors', 'query': "data[?status=='500'"}]
    with pytest.raises(GateError) as info:
        _gate.check_queries(prepared, source)
    assert info.value.field == 'metrics[1] (errors).query'
    assert 'invalid JMESPath expression' in info.value.message


def test_sources_that_cannot_check_offline_are_left_to_the_gate():
    source = _metrics.make_source({'type': 'prometheus', 'address': 'http://127.0.0.1:9'})
    _gate.check_queries([{'name': 'x', 'query': 'sum(rate(x[1m])))'}], source)  # PromQL: the server judges


def test_report_of_an_unknown_run_names_run_id():
    canary = make_canary('istio', status={'phase': model.PHASE_INITIALIZED})
    with pytest.raises(_report.ReportError) as info:
        _report.build(canary, run_id='run-of-yesterday')
    assert info.value.field == 'run_id' and info.value.message.startswith('run_id run-of-yesterday')


def test_unauthorized_names_the_credential_options():
    error = KubeApiError('get', 'Canary', 'web', NS, 401, 'Unauthorized', 'Unauthorized')
    assert 'api_key' in str(error) and 'kubeconfig' in str(error) and '401' in str(error)


def test_a_misspelt_option_is_reported_with_the_first_error():
    spec = {'weight': {'type': 'int'}, 'primary_weight': {'type': 'int'}}
    result = ArgumentSpecValidator(spec, required_one_of=[('weight', 'primary_weight')]).validate({'weigth': 20})
    first = result.errors.msg
    assert 'weigth' not in first
    msg = with_other_argument_errors(first, result, 'mesh_weight')
    assert msg.startswith(first) and 'weigth' in msg and 'mesh_weight' in msg
    # One error, or a message that is not Ansible's: unchanged.
    assert with_other_argument_errors('other', result, 'mesh_weight') == 'other'
    single = ArgumentSpecValidator(spec).validate({'weight': 'abc'})
    assert with_other_argument_errors(single.errors.msg, single, 'mesh_weight') == single.errors.msg


# ---------------------------------------------------------------- the role's argument spec

def role_options():
    with open(os.path.join(REPO, 'roles', 'canary', 'meta', 'argument_specs.yml')) as handle:
        return yaml.safe_load(handle)['argument_specs']['main']['options']


def _same_spec(role, module, where):
    assert sorted(role) == sorted(module), where
    for name, option in module.items():
        for key in ('type', 'choices', 'default', 'required', 'no_log'):
            expected = option.get(key)
            if key == 'type':
                expected = expected or 'str'
            if key == 'required':
                expected = bool(expected)
            got = role[name].get(key, 'str' if key == 'type' else (False if key == 'required' else None))
            if key == 'choices' and expected is not None:
                expected, got = list(expected), list(got or [])
            if key == 'no_log':
                expected, got = bool(expected), bool(got)
            assert got == expected, '%s.%s: %s is %r in the role, %r in the module' % (where, name, key, got, expected)


def test_role_metrics_source_options_mirror_the_modules():
    _same_spec(role_options()['canary_metrics_source']['options'], _metrics.SOURCE_ARG_SPEC, 'canary_metrics_source')


def test_role_alert_provider_options_mirror_canary_alert():
    _same_spec(role_options()['canary_alert_providers']['options'], canary_alert.argspec()['providers']['options'],
               'canary_alert_providers')
