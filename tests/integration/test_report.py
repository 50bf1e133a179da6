"""canary_report through ansible-playbook, as the least-privilege ServiceAccount.

The admin client creates a Canary and writes a status with a gateHistory (a run rolled back when its
success rate fell below 99 %); the module reads it and writes the HTML and JSON report on this host.
"""

import json
import os
import re

from kubernetes import client

from ansible_runner import run_module, run_modules

GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"
APP = "podinfo"
RUN = "1a2b3c4d-20260131120000"
OLD_RUN = "99ffee00-20260130090000"


def _entry(minute, weight, verdict, failed_checks, rate, run=RUN):
    return {"time": "2026-01-31T12:%02d:00Z" % minute, "runId": run, "weight": weight, "iteration": 0,
            "verdict": verdict, "failedChecks": failed_checks, "message": "gate %s" % verdict,
            "metrics": [{"name": "request-success-rate", "value": rate, "min": 99,
                         "verdict": "pass" if rate >= 99 else "fail"},
                        {"name": "request-duration", "value": 120, "max": 500, "verdict": "pass"}]}


def create_failed_canary(api_client, namespace):
    body = {"apiVersion": "%s/%s" % (GROUP, VERSION), "kind": "Canary",
            "metadata": {"name": APP, "namespace": namespace},
            "spec": {"provider": "istio",
                     "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                     "service": {"port": 9898},
                     "analysis": {"interval": "1m", "threshold": 2, "stepWeight": 10, "maxWeight": 50,
                                  "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}},
                                              {"name": "request-duration", "thresholdRange": {"max": 500}}]}}}
    status = {"phase": "Failed", "runId": RUN, "canaryWeight": 0, "primaryWeight": 100, "failedChecks": 2,
              "lastAppliedSpec": "1a2b3c4d5e6f7a8b", "lastTransitionTime": "2026-01-31T12:04:05Z",
              "message": "run %s rolled back: gate fail" % RUN,
              "gateHistory": [_entry(0, 50, "pass", 0, 100.0, run=OLD_RUN),
                              _entry(1, 10, "pass", 0, 99.8), _entry(2, 20, "pass", 0, 99.6),
                              _entry(3, 30, "fail", 1, 81.2), _entry(4, 30, "fail", 2, 79.5)]}
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, APP, {"status": status})


def args(kubeconfig, namespace, **extra):
    values = {"kubeconfig": kubeconfig, "name": APP, "namespace": namespace}
    values.update(extra)
    return values


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_report_of_a_rolled_back_run(api_client, canary_crd, namespace, runner_kubeconfig, tmp_path):
    create_failed_canary(api_client, namespace)
    dest = str(tmp_path / "reports")
    events = [{"time": "2026-01-31T12:00:30Z", "kind": "hook", "name": "load-test", "type": "rollout", "ok": True}]
    result = run_module("canary_report", args(runner_kubeconfig, namespace, dest=dest, events=events))
    assert not result.get("failed"), result
    assert result["changed"] is True
    stem = "%s-%s-%s" % (namespace, APP, RUN)
    assert result["html_path"] == os.path.join(dest, stem + ".html")
    assert result["json_path"] == os.path.join(dest, stem + ".json")
    assert result["outcome"] == "rolled_back"
    assert result["summary"] == ("%s/%s run %s: rolled back at 30%% after 4 gates; request-success-rate failed 2 of 4 "
                                 "(min 99%%)" % (namespace, APP, RUN))

    html = read(result["html_path"]).decode("utf-8")
    data = json.loads(read(result["json_path"]).decode("utf-8"))
    assert data == result["data"]
    assert data["run_id"] == RUN and len(data["gates"]) == 4  # the older run's gate is left out
    assert [w["weight"] for w in data["weights"]] == [10, 20, 30, 0]

    # The chart carries the weight series ...
    weights = re.search(r'<polyline class="weight-line" data-weights="([^"]*)" points="([^"]*)"', html)
    assert weights and weights.group(1) == "10 20 30 0"
    assert len(weights.group(2).split()) == 8
    # ... and the failing metric, highlighted, with its series and its threshold line.
    failing = re.search(r'<section class="chart failing" id="metric-0"><h2>request-success-rate.*?</section>', html, re.S)
    assert failing, "the failing metric is not highlighted"
    series = re.search(r'<polyline class="metric-line" data-metric="request-success-rate" points="([^"]*)"',
                       failing.group(0))
    assert series and len(series.group(1).split()) == 4
    assert 'class="threshold threshold-min" data-threshold="99"' in failing.group(0)
    assert failing.group(0).count('class="gate gate-fail"') == 2
    assert "ROLLED BACK: request-success-rate failed" in html
    assert "load-test" in html
    assert "<script" not in html

    again = run_module("canary_report", args(runner_kubeconfig, namespace, dest=dest, events=events))
    assert not again.get("failed"), again
    assert again["changed"] is False
    assert read(again["html_path"]).decode("utf-8") == html


def test_check_mode_writes_nothing(api_client, canary_crd, namespace, runner_kubeconfig, tmp_path):
    create_failed_canary(api_client, namespace)
    dest = str(tmp_path / "never")
    result = run_module("canary_report", args(runner_kubeconfig, namespace, dest=dest), check=True)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["outcome"] == "rolled_back"
    assert result["data"]["metrics"][0]["name"] == "request-success-rate"
    assert not os.path.exists(dest)


def test_older_run_and_errors(api_client, canary_crd, namespace, runner_kubeconfig, tmp_path):
    create_failed_canary(api_client, namespace)
    dest = str(tmp_path)
    older, unknown, missing, relative = run_modules([
        ("canary_report", args(runner_kubeconfig, namespace, dest=dest, run_id=OLD_RUN)),
        ("canary_report", args(runner_kubeconfig, namespace, dest=dest, run_id="nope")),
        ("canary_report", args(runner_kubeconfig, namespace, dest=dest, name="absent")),
        ("canary_report", args(runner_kubeconfig, namespace, dest="reports")),
    ])
    assert not older.get("failed"), older
    assert older["outcome"] == "unknown"
    assert [g["weight"] for g in older["data"]["gates"]] == [50]
    assert os.path.exists(os.path.join(dest, "%s-%s-%s.html" % (namespace, APP, OLD_RUN)))
    assert unknown["failed"] and unknown["field"] == "run_id" and RUN in unknown["msg"]
    assert missing["failed"] and missing["field"] == "name" and "not found" in missing["msg"]
    assert relative["failed"] and relative["field"] == "dest" and "absolute" in relative["msg"]
