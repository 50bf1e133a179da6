"""Unit tests of the rollout core's pure helpers (the API flows are integration-tested)."""

import datetime
import os
import socket
import subprocess
import sys

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as model
from ansible_collections.progressive.delivery.plugins.module_utils import _rollout as rollout


def test_subset_ignores_fields_the_server_added():
    desired = {"spec": {"ports": [{"port": 80, "targetPort": 9898}], "selector": {"app": "a-primary"}}}
    live = {"spec": {"ports": [{"port": 80, "targetPort": 9898, "protocol": "TCP"}], "clusterIP": "10.96.0.9",
                     "selector": {"app": "a-primary"}}}
    assert rollout._is_subset(desired, live)
    live["spec"]["selector"] = {"app": "a"}
    assert not rollout._is_subset(desired, live)


def test_subset_compares_lists_by_length_and_position():
    assert not rollout._is_subset({"a": [1, 2]}, {"a": [1]})
    assert not rollout._is_subset({"a": [{"x": 1}]}, {"a": [{"x": 2}]})
    assert rollout._is_subset({"port": 80}, {"port": "80"})


@pytest.mark.parametrize("status,ready", [
    ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}, True),
    ({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}, False),
    ({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}, False),
    ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}, False),
    ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
      "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "x"}]}, False),
])
def test_deployment_ready(status, ready):
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": status}
    assert rollout.deployment_ready(dep)[0] is ready


def test_scaled_to_zero_is_ready_and_missing_is_not():
    assert rollout.deployment_ready({"metadata": {"generation": 1}, "spec": {"replicas": 0},
                                     "status": {"observedGeneration": 1}})[0]
    assert rollout.deployment_ready(None) == (False, "not found")


def test_holder_on_this_host_that_exited_is_dead():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = socket.gethostname()
    assert rollout._holder_is_dead("%s:%d" % (host, proc.pid))
    assert not rollout._holder_is_dead("%s:%d" % (host, os.getpid()))
    # Another host or an AWX job: we cannot tell, so the lease decides.
    assert not rollout._holder_is_dead("elsewhere:%d" % proc.pid)
    assert not rollout._holder_is_dead("awx-job-12")


class _FakeRollout(object):
    def __init__(self, holder):
        self.holder = holder
        self.messages = []

    @staticmethod
    def _now():
        return datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)


def test_lock_of_a_dead_local_run_is_taken_over_at_once():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = "%s:%d" % (socket.gethostname(), proc.pid)
    now = _FakeRollout._now()
    status = model.acquire_lock({}, dead, now, 600)
    taken = rollout._acquire(_FakeRollout("me:1"), status, 600)
    assert taken["lock"]["holder"] == "me:1"


def test_lock_of_a_live_run_is_refused():
    now = _FakeRollout._now()
    status = model.acquire_lock({}, "awx-job-1", now, 600)
    with pytest.raises(model.LockHeldError) as err:
        rollout._acquire(_FakeRollout("awx-job-2"), status, 600)
    assert "awx-job-1" in str(err.value)


def test_default_holder_prefers_the_awx_job():
    assert rollout.default_holder({"JOB_ID": "77"}) == "awx-job-77"
    assert rollout.default_holder({}).startswith(socket.gethostname() + ":")


def test_a_gate_that_moved_the_traffic_leaves_a_rollback_for_the_resumed_run():
    entry = {'time': '2026-11-26T10:00:00Z', 'runId': 'r1', 'verdict': 'fail', 'failedChecks': 2, 'metrics': [],
             'message': 'failed'}
    status = {'phase': 'Progressing', 'runId': 'r1', 'canaryWeight': 25, 'primaryWeight': 75,
              'gateHistory': [dict(entry)]}
    assert not rollout.rollback_pending(status)
    marked = rollout.mark_rollback(status)
    assert marked['canaryWeight'] == 0 and marked['primaryWeight'] == 100
    assert marked['gateHistory'][-1]['rollback'] is True and rollout.rollback_pending(marked)
    # Not for another run's entry, and not once the run is over.
    assert not rollout.rollback_pending(dict(marked, runId='r2'))
    assert not rollout.rollback_pending(dict(marked, phase='Failed'))
    # A later gate of the same run (an entry without the mark) is what counts.
    later = dict(marked, gateHistory=marked['gateHistory'] + [dict(entry, verdict='pass')])
    assert not rollout.rollback_pending(later)
