"""canary_hook and canary_alert through ansible-playbook, as the least-privilege ServiceAccount.

A receiver in this process (http.server on 127.0.0.1, a free port) plays every webhook and chat
endpoint: it records each request and answers with the status set for its path, so a test can
hold a gate closed and open it while a module is waiting. Every URL carries a secret token in its
path; no module output may contain it.
"""

import json
import threading
import uuid

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from ansible_runner import run_module, run_modules, run_playbook
from helpers import wait_for

GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"
APP = "app"
HOOK_TYPES = ("confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion",
              "post-rollout", "rollback", "event")
FIXED_PHASE_TYPES = ("confirm-rollout", "pre-rollout", "confirm-traffic-increase", "confirm-promotion")


class Receiver(object):
    """Records every POST; answers with the status set for the first path segment (default 200)."""

    def __init__(self):
        self.secret = "s3cr3t-%s" % uuid.uuid4().hex
        self.requests = []
        self.statuses = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8") if length else ""
                route = self.path.strip("/").split("/")[0]
                with owner.lock:
                    owner.requests.append({"route": route, "path": self.path, "headers": dict(self.headers),
                                           "json": json.loads(raw) if raw else None})
                    status = owner.statuses.get(route, 200)
                data = ("answer %d from %s" % (status, route)).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, route):
        return "%s/%s/%s?token=%s" % (self.base, route, self.secret, self.secret)

    def set_status(self, route, status):
        with self.lock:
            self.statuses[route] = status

    def received(self, route=None):
        with self.lock:
            return [dict(request) for request in self.requests if route is None or request["route"] == route]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    fake = Receiver()
    yield fake
    fake.close()


def create_canary(api_client, namespace, webhooks=(), alerts=(), status=None):
    body = {"apiVersion": "%s/%s" % (GROUP, VERSION), "kind": "Canary",
            "metadata": {"name": APP, "namespace": namespace},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                     "service": {"port": 80},
                     "analysis": {"interval": "1m", "threshold": 3, "stepWeight": 10, "maxWeight": 50,
                                  "webhooks": list(webhooks), "alerts": list(alerts)}}}
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    if status:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, APP, {"status": status})


def args(kubeconfig, namespace, **extra):
    values = {"kubeconfig": kubeconfig, "name": APP, "namespace": namespace}
    values.update(extra)
    return values


def assert_no_secret(receiver, *outputs):
    for output in outputs:
        text = output if isinstance(output, str) else json.dumps(output)
        assert receiver.secret not in text


# ----------------------------------------------------------------------------------- hooks

def test_each_hook_type_gets_flaggers_payload(api_client, canary_crd, namespace, runner_kubeconfig, receiver):
    webhooks = [{"name": "hook-%s" % hook_type, "type": hook_type, "url": receiver.url(hook_type),
                 "metadata": {"cmd": "hey -z 1m http://app-canary/", "for": hook_type}} for hook_type in HOOK_TYPES]
    create_canary(api_client, namespace, webhooks,
                  status={"phase": "WaitingPromotion", "lastAppliedSpec": "rev-0123abcd", "canaryWeight": 50})

    results = run_modules([("canary_hook", args(runner_kubeconfig, namespace, type=hook_type,
                                                event_message="New revision detected"))
                           for hook_type in HOOK_TYPES])

    for hook_type, result in zip(HOOK_TYPES, results):
        assert not result.get("failed"), result.get("msg")
        got = receiver.received(hook_type)
        assert len(got) == 1, hook_type
        assert got[0]["headers"]["Content-Type"] == "application/json"
        payload = got[0]["json"]
        phase = "Progressing" if hook_type in FIXED_PHASE_TYPES else "WaitingPromotion"
        expected_metadata = {"cmd": "hey -z 1m http://app-canary/", "for": hook_type}
        if hook_type == "event":
            assert payload["metadata"].pop("timestamp").isdigit()
            expected_metadata.update(eventMessage="New revision detected", eventType="Normal")
        assert payload == {"name": APP, "namespace": namespace, "phase": phase, "checksum": "rev-0123abcd",
                           "type": hook_type, "metadata": expected_metadata}
        assert result["phase"] == phase and result["checksum"] == "rev-0123abcd"
        assert [(hook["name"], hook["called"], hook["ok"], hook["status"]) for hook in result["hooks"]] == [
            ("hook-%s" % hook_type, True, True, 200)]
        assert (result["gate_open"], result["failed_checks_increment"], result["rollback_requested"]) == (
            True, 0, hook_type == "rollback")
        assert result["changed"] is False
        assert_no_secret(receiver, result)


def test_confirm_promotion_gate_holds_until_opened(api_client, canary_crd, namespace, runner_kubeconfig, receiver):
    create_canary(api_client, namespace,
                  [{"name": "promotion-gate", "type": "confirm-promotion", "url": receiver.url("gate")},
                   {"name": "load-test", "type": "rollout", "url": receiver.url("load")}],
                  status={"phase": "Progressing", "lastAppliedSpec": "rev-1"})
    receiver.set_status("gate", 403)

    asked = run_module("canary_hook", args(runner_kubeconfig, namespace, type="confirm-promotion"))
    assert not asked.get("failed"), asked.get("msg")
    assert asked["gate_open"] is False
    assert asked["hooks"][0]["status"] == 403 and asked["hooks"][0]["ok"] is False
    assert asked["hooks"][0]["message"] == "HTTP 403: answer 403 from gate"
    # Only hooks of the asked type run.
    assert receiver.received("load") == []

    # Someone approves while the module is waiting: after it has asked (and been refused) twice more.
    before = len(receiver.received("gate"))

    def approve():
        wait_for(lambda: len(receiver.received("gate")) >= before + 2, timeout=120, message="two more refusals")
        receiver.set_status("gate", 200)
    approver = threading.Thread(target=approve, daemon=True)
    approver.start()
    waited = run_module("canary_hook", args(runner_kubeconfig, namespace, type="confirm-promotion", wait=True,
                                            poll_interval="300ms", wait_timeout="5m"))
    approver.join(timeout=5)
    assert not waited.get("failed"), waited.get("msg")
    assert waited["gate_open"] is True and waited["timed_out"] is False
    assert waited["hooks"][0]["status"] == 200
    statuses = []
    for request in receiver.received("gate")[before:]:
        assert request["json"]["type"] == "confirm-promotion" and request["json"]["phase"] == "Progressing"
        statuses.append(request)
    assert waited["polls"] == len(statuses) >= 3
    assert_no_secret(receiver, asked, waited)


def test_confirm_gate_wait_times_out_closed(api_client, canary_crd, namespace, runner_kubeconfig, receiver):
    receiver.set_status("gate", 403)
    result = run_module("canary_hook", args(
        runner_kubeconfig, namespace, type="confirm-rollout", wait=True, poll_interval="200ms", wait_timeout="1s",
        phase="", checksum="rev-2", webhooks=[{"name": "start-gate", "url": receiver.url("gate")}]))
    assert not result.get("failed"), result.get("msg")
    assert result["gate_open"] is False and result["timed_out"] is True
    assert result["polls"] == len(receiver.received("gate")) >= 1


def test_rollback_hook_requests_rollback(api_client, canary_crd, namespace, runner_kubeconfig, receiver):
    create_canary(api_client, namespace,
                  [{"name": "brake-a", "type": "rollback", "url": receiver.url("brake-a")},
                   {"name": "brake-b", "type": "rollback", "url": receiver.url("brake-b")}],
                  status={"phase": "Progressing", "lastAppliedSpec": "rev-3"})
    receiver.set_status("brake-a", 404)
    receiver.set_status("brake-b", 404)

    closed = run_module("canary_hook", args(runner_kubeconfig, namespace, type="rollback"))
    assert closed["rollback_requested"] is False
    assert [hook["called"] for hook in closed["hooks"]] == [True, True]

    receiver.set_status("brake-a", 200)
    pulled = run_module("canary_hook", args(runner_kubeconfig, namespace, type="rollback"))
    assert pulled["rollback_requested"] is True
    # The first yes decides; the second brake is not asked.
    assert [(hook["name"], hook["called"]) for hook in pulled["hooks"]] == [("brake-a", True), ("brake-b", False)]
    assert len(receiver.received("brake-b")) == 1
    assert receiver.received("brake-a")[-1]["json"]["phase"] == "Progressing"


def test_failing_rollout_hook_is_a_failed_check_after_its_retries(canary_crd, namespace, runner_kubeconfig,
                                                                  receiver):
    receiver.set_status("load", 503)
    result = run_module("canary_hook", args(
        runner_kubeconfig, namespace, type="rollout", phase="Progressing", checksum="rev-4",
        webhooks=[{"name": "load-test", "url": receiver.url("load"), "retries": 1, "muteAlert": True},
                  {"name": "smoke", "url": receiver.url("smoke")},
                  {"name": "other-type", "type": "post-rollout", "url": receiver.url("post")}]))
    assert not result.get("failed"), result.get("msg")
    assert result["failed_checks_increment"] == 1 and result["mute_alert"] is True
    assert result["hooks"][0]["attempts"] == 2 and result["hooks"][0]["status"] == 503
    assert len(receiver.received("load")) == 2
    # Flagger stops at the first failing rollout hook; hooks of another type never run.
    assert [hook["name"] for hook in result["hooks"]] == ["load-test", "smoke"]
    assert result["hooks"][1]["called"] is False
    assert receiver.received("smoke") == [] and receiver.received("post") == []


def test_hook_check_mode_calls_nothing(api_client, canary_crd, namespace, runner_kubeconfig, receiver):
    create_canary(api_client, namespace, [{"name": "gate", "type": "confirm-promotion", "url": receiver.url("gate"),
                                           "metadata": {"token": receiver.secret}}])
    result = run_module("canary_hook", args(runner_kubeconfig, namespace, type="confirm-promotion", wait=True),
                        check=True)
    assert not result.get("failed"), result.get("msg")
    assert receiver.received() == []
    assert result["hooks"][0]["called"] is False and result["hooks"][0]["metadata_keys"] == ["token"]
    assert result["hooks"][0]["url"] == receiver.base + "/\u2026"
    assert_no_secret(receiver, result)


# ---------------------------------------------------------------------------------- alerts

def providers(receiver):
    return [{"type": "slack", "url": receiver.url("slack"), "channel": "#releases", "username": "deploys"},
            {"type": "msteams", "url": receiver.url("msteams"), "severity": "error"},
            # Its minimum comes from the Canary's analysis.alerts.
            {"type": "discord", "name": "chat", "url": receiver.url("discord")},
            {"type": "generic", "url": receiver.url("generic"), "severity": "warn"}]


def test_alerts_reach_each_provider_filtered_by_severity(api_client, canary_crd, namespace, runner_kubeconfig,
                                                         receiver):
    create_canary(api_client, namespace, alerts=[
        {"name": "chat-errors", "severity": "error", "providerRef": {"name": "chat"}},
        {"name": "pager", "severity": "error", "providerRef": {"name": "pagerduty"}}],
        status={"phase": "Progressing", "canaryWeight": 20, "failedChecks": 1})

    info, warn, error = run_modules([
        ("canary_alert", args(runner_kubeconfig, namespace, msg="weight 20%", severity="info",
                              providers=providers(receiver))),
        ("canary_alert", args(runner_kubeconfig, namespace, msg="halted: 1 failed check", severity="warn",
                              providers=providers(receiver), fields={"Job": "42"})),
        ("canary_alert", args(runner_kubeconfig, namespace, msg="rolled back", severity="error",
                              providers=providers(receiver))),
    ])
    for result in (info, warn, error):
        assert not result.get("failed"), result.get("msg")
        assert result["unresolved_alerts"] == [{"name": "pager", "provider": "pagerduty"}]
        assert_no_secret(receiver, result)
    assert [(r["provider"], r["minimum_severity"], r["minimum_from"]) for r in info["deliveries"]] == [
        ("slack", "info", "default"), ("msteams", "error", "provider"), ("chat", "error", "canary"),
        ("generic", "warn", "provider")]
    assert [r["sent"] for r in info["deliveries"]] == [True, False, False, False]
    assert [r["sent"] for r in warn["deliveries"]] == [True, False, False, True]
    assert [r["sent"] for r in error["deliveries"]] == [True, True, True, True]
    assert (info["sent"], warn["sent"], error["sent"]) == (1, 2, 4)
    assert info["changed"] is True

    assert len(receiver.received("slack")) == 3 and len(receiver.received("generic")) == 2
    assert len(receiver.received("msteams")) == 1 and len(receiver.received("discord")) == 1

    slack = receiver.received("slack")[1]["json"]
    assert slack["channel"] == "#releases" and slack["username"] == "deploys"
    assert slack["attachments"][0]["color"] == "warning"
    assert slack["attachments"][0]["text"] == "halted: 1 failed check"
    assert {"title": "Target", "value": "Deployment/%s.%s" % (APP, namespace), "short": False} in \
        slack["attachments"][0]["fields"]
    assert {"title": "Job", "value": "42", "short": False} in slack["attachments"][0]["fields"]

    generic = receiver.received("generic")[0]["json"]
    assert generic == {"name": APP, "namespace": namespace, "phase": "Progressing", "severity": "warn",
                       "message": "halted: 1 failed check",
                       "metadata": {"Target": "Deployment/%s.%s" % (APP, namespace), "Phase": "Progressing",
                                    "Canary weight": "20%", "Failed checks": "1/3", "Job": "42"}}

    teams = receiver.received("msteams")[0]["json"]
    assert teams["type"] == "message"
    assert teams["attachments"][0]["content"]["body"][1]["text"] == "rolled back"
    discord = receiver.received("discord")[0]["json"]
    assert discord["content"] == "rolled back" and discord["embeds"][0]["color"] == 0xE01E5A


def test_alert_failures_are_reported_and_fail_only_when_asked(canary_crd, namespace, runner_kubeconfig, receiver):
    receiver.set_status("slack", 404)
    lenient, strict = run_modules([
        ("canary_alert", args(runner_kubeconfig, namespace, msg="x", retries=0,
                              providers=[{"type": "slack", "url": receiver.url("slack")}])),
        ("canary_alert", args(runner_kubeconfig, namespace, msg="x", retries=0, fail_on_error=True,
                              providers=[{"type": "slack", "url": receiver.url("slack")}])),
    ])
    assert not lenient.get("failed")
    assert lenient["failed_deliveries"] == 1 and lenient["deliveries"][0]["status"] == 404
    # The Canary does not exist: the message still goes out, and the result says so.
    assert any("not found" in message for message in lenient["messages"])
    assert strict["failed"] is True and "slack: HTTP 404" in strict["msg"]
    assert_no_secret(receiver, lenient, strict)


def test_alert_check_mode_sends_nothing(canary_crd, namespace, runner_kubeconfig, receiver):
    result = run_module("canary_alert", args(runner_kubeconfig, namespace, msg="x", severity="warn",
                                             providers=providers(receiver)), check=True)
    assert not result.get("failed"), result.get("msg")
    assert receiver.received() == []
    assert [(r["would_send"], r["sent"]) for r in result["deliveries"]] == [
        (True, False), (False, False), (True, False), (True, False)]
    assert result["changed"] is True
    assert result["deliveries"][0]["payload"]["attachments"][0]["text"] == "x"


# ----------------------------------------------------------------------------- no URL leaks

def test_no_url_in_results_or_verbose_output(api_client, canary_crd, namespace, runner_kubeconfig, receiver):
    create_canary(api_client, namespace,
                  [{"name": "gate", "type": "confirm-promotion", "url": receiver.url("gate")},
                   {"name": "down", "type": "rollout", "url": "http://127.0.0.1:9/%s" % receiver.secret}],
                  status={"phase": "Progressing", "lastAppliedSpec": "rev-5"})
    receiver.set_status("gate", 403)
    receiver.set_status("slack", 500)
    common = {"kubeconfig": runner_kubeconfig, "name": APP, "namespace": namespace}
    tasks = [
        {"name": "canary gate", "progressive.delivery.canary_hook": dict(common, type="confirm-promotion"),
         "register": "gate"},
        {"name": "unreachable hook", "progressive.delivery.canary_hook": dict(common, type="rollout"),
         "register": "down"},
        {"name": "given hooks", "progressive.delivery.canary_hook": dict(
            common, type="event", event_message="hello", phase="Succeeded", checksum="rev-5",
            webhooks=[{"name": "ev", "url": receiver.url("event")}]), "register": "event"},
        {"name": "alert", "progressive.delivery.canary_alert": dict(
            common, msg="rolled back", severity="error", retries=1,
            providers=[{"type": "slack", "url": receiver.url("slack")},
                       {"type": "generic", "url": receiver.url("generic")}]), "register": "alert"},
        {"name": "show", "ansible.builtin.debug": {"var": "item"},
         "loop": ["{{ gate }}", "{{ down }}", "{{ event }}", "{{ alert }}"]},
    ]
    rc, stdout, stderr = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}],
                                      extra_args=("-vvv",))
    assert rc == 0, stdout[-3000:] + stderr[-2000:]
    # The calls really happened, so the absence of the secret means something.
    assert receiver.received("gate") and receiver.received("event") and len(receiver.received("slack")) == 2
    assert '"gate_open": false' in stdout and "connection refused" in stdout
    assert receiver.secret not in stdout
    assert receiver.secret not in stderr
