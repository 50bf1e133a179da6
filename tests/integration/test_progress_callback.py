"""The progress callback collects the role's step lines and each cluster's outcome into a recap."""

from ansible_runner import run_playbook

STEP = "c1 ns/app step %d/2 weight %d%% %s | request-success-rate=%s [99..] %s | failed checks %d/1"


def test_recap_lists_each_clusters_steps_and_outcome():
    tasks = [{"name": "Show the step", "ansible.builtin.debug": {"msg": STEP % (1, 25, "PASS", "100.0", "ok", 0)}},
             {"name": "Show the step", "ansible.builtin.debug": {"msg": STEP % (2, 50, "FAIL", "80.0", "fail", 1)}},
             {"name": "Any task that sets the record",
              "ansible.builtin.set_fact": {"pd_record": {"outcome": "rolled_back", "failure": "gate failed"}}}]
    rc, out, err = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}],
                                env={"ANSIBLE_CALLBACKS_ENABLED": "progressive.delivery.progress"})
    assert rc == 0, out + err
    recap = out.split("PROGRESSIVE DELIVERY", 1)[1].splitlines()
    assert "localhost: ROLLED_BACK - gate failed" in recap
    assert "  [ok] " + STEP % (1, 25, "PASS", "100.0", "ok", 0) in recap
    assert "  [x] " + STEP % (2, 50, "FAIL", "80.0", "fail", 1) in recap


def test_silent_without_release_tasks():
    rc, out, err = run_playbook([{"hosts": "localhost", "gather_facts": False,
                                  "tasks": [{"name": "noop", "ansible.builtin.debug": {"msg": "hello"}}]}],
                                env={"ANSIBLE_CALLBACKS_ENABLED": "progressive.delivery.progress"})
    assert rc == 0, out + err
    assert "PROGRESSIVE DELIVERY" not in out
