"""Benchmark (issue 8, part 2): how much traffic a faulty canary serves before it is rolled back,
this collection against Flagger's algorithm, and how long the rollback takes once decided.

    .venv/bin/python bench/faulty_share.py [--out build/bench/faulty_share.json] [--repeat N]

What it does, on a private local cluster (hack/pdcluster.py, name ``bench-faulty``, stopped at
the end) with the traffic emulator (hack/emulator.py) at ``--rps`` requests/s and the sample app
behind Istio routing, driven through ansible-playbook and the ``canary`` role with a
least-privilege ServiceAccount (rbac/clusterrole.yaml), as tests/integration does:

1. For each repeat (seed ``--seed + i``) and each mode (``canary_watch: true`` and ``false``), in
   a fresh namespace: release 6.7.0 and initialise the Canary, then release 6.7.1 with 20% errors
   and run the role until it rolls back. Watches on the VirtualService and on the Canary (bench
   clock) record when the canary got traffic (t0), when the failing decision was written into
   ``status.gateHistory`` and when the router was back at 0% canary weight.

   **Share** = requests served by the faulty version / all requests of the app, both counted by
   the emulator (``/stats`` ``by_version``), over a common window of ``--window`` seconds that
   starts at t0 (the first weight step). The window is the same for the collection and for
   Flagger and long enough to hold the slowest rollback, so the share is proportional to the
   number of requests the faulty version served; the ratio of two shares is the ratio of
   faulty requests. (The share over the whole ansible-playbook run, which includes the
   initialisation before t0, is reported too as ``share_of_run``; it flatters whoever is slower.)

2. Flagger's algorithm, simulated tick by tick on the same run's actual traffic (the emulator's
   per-second request counts from t0), same interval, stepWeight, maxWeight, threshold, metric
   window and error rate (see ``simulate_flagger``).

3. Decision to primary at 100%: from the module's own ``decided_at`` (metric_watch/metric_gate,
   Unix time when the verdict was known; read from the failed task's result, which the default
   callback prints as one line of JSON after ``FAILED! =>``) to the moment the bench's watch saw
   the VirtualService at canary weight 0 (bench ``time.time()``: same machine, same clock). The
   modules move the traffic to the primary themselves (``route_to_primary_on_fail``, set by the
   role) before recording the decision; ``routed_at - decided_at`` (their router write, in the
   module) is reported too. Only when no ``decided_at`` is found does it fall back to the moment
   the bench saw the failing gateHistory entry (``decision_source`` says which); that entry is
   written after the router write, so the fallback under-measures and can go negative.
   Split with the playbook's task banners (stamped as they were printed) into: decision -> router
   written in the module -> seen by the watch, and decision -> the failing task's result printed
   -> the rescue's "Roll back" task started.

The results go to a table on stdout and to JSON (machine, date, versions, schedule, raw per-run
figures, medians and ranges, ratio collection / Flagger).
"""

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common  # noqa: E402  (bench tooling, not a package)
import _faulty_helpers as helpers  # noqa: E402

REPO = _common.REPO
APP = "podinfo"
GOOD, FAULTY = "6.7.0", "6.7.1"
MODES = (("watch", True), ("no-watch", False))
# Every ansible-playbook run: lines printed as they come (they are stamped when read), and failed
# task results as one line of JSON (parsed for the modules' decided_at / routed_at).
PLAYBOOK_ENV = {"PYTHONUNBUFFERED": "1", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}


# ------------------------------------------------------------------------------------ Flagger
#
# Based on fluxcd/flagger pkg/controller/scheduler.go, Controller.advanceCanary (the function the
# CanaryJob ticker calls every analysis.interval, pkg/controller/job.go), with runCanary,
# runAnalysis and rollback from the same file, and runBuiltinMetricChecks from
# pkg/controller/scheduler_metrics.go. The order of operations on one tick of a Progressing
# canary, as the code has it:
#
#   1. read the Canary, reconcile services/primary/router, GetRoutes -> (primaryWeight, canaryWeight);
#   2. runRollbackHooks (none here);
#   3. if Status.FailedChecks >= analysis.threshold: rollback() -> SetRoutes(100, 0) and phase
#      Failed; return.  (The count was raised on an earlier tick, so the rollback lands on the
#      tick AFTER the one whose check reached the threshold.)
#   4. if canaryWeight == 0 and Status.Iterations == 0: pre-rollout hooks only (no metric check),
#      else runAnalysis(): rollout webhooks, then runBuiltinMetricChecks(): each metric's query
#      over its own ``interval`` window (request-success-rate: 100 * non-5xx rate / all rate of the
#      canary workload; no values -> "Halt advancement no values found" -> fail); on failure
#      SetStatusFailedChecks(FailedChecks + 1) and return (the weight is NOT changed);
#   5. runCanary(): if canaryWeight < maxWeight: canaryWeight += stepWeight, SetRoutes; else
#      promote (copy spec, phase Promoting; the next tick routes everything to the primary).
#
# So with a canary that fails every check: weight stepWeight at t = 0 (step 4/5 of the first
# tick of the run), failed checks at t = interval, 2*interval, ..., threshold*interval, rollback
# at t = (threshold + 1) * interval, the weight never going above the first step.

def simulate_flagger(traffic, interval, step_weight, max_weight, threshold, metric_window, error_rate,
                     min_success, seed, horizon, scrape_lag=1.0, min_samples_span=2.0):
    """Flagger's scheduler on a request stream; returns the ticks, weights and faulty requests.

    ``traffic`` is [(second offset from t0, requests in that second)] (all of the app's requests).
    The canary gets weight/100 of each second's requests. The metric check at tick t sees the
    canary's requests in [t - metric_window, t - scrape_lag] (Prometheus scrapes every second in
    the local world, so the newest second is not there yet); rate() needs two samples, so less
    than ``min_samples_span`` seconds of canary traffic is "no values" (a failed check, as in
    Flagger). Its errors are drawn Binomial(n, error_rate) with ``seed``.
    """
    rng = random.Random(seed)
    rate = dict((int(second), count) for second, count in traffic)

    def requests_in(second):
        if second in rate:
            return rate[second]
        return statistics.mean(rate.values()) if rate else 0.0  # beyond the measured series

    changes = [(0.0, step_weight)]  # (time, canary weight from then on)

    def weight_at(moment):
        current = 0
        for when, weight in changes:
            if when <= moment:
                current = weight
        return current

    def canary_requests(start, stop):
        total, span = 0.0, 0.0
        second = int(math.floor(max(start, 0.0)))
        while second < stop:
            lo, hi = max(second, start, 0.0), min(second + 1, stop)
            if hi > lo:
                share = weight_at(lo) / 100.0
                total += requests_in(second) * (hi - lo) * share
                if share > 0:
                    span += hi - lo
            second += 1
        return total, span

    ticks = [{"t": 0.0, "action": "advance", "weight": step_weight, "failed_checks": 0}]
    failed_checks, weight, outcome = 0, step_weight, "running"
    tick = 1
    while tick * interval <= horizon:
        moment = tick * interval
        if failed_checks >= threshold:
            changes.append((moment, 0))
            ticks.append({"t": moment, "action": "rollback", "weight": 0, "failed_checks": failed_checks})
            outcome = "rolled_back"
            break
        expected, span = canary_requests(moment - metric_window, moment - scrape_lag)
        requests = int(round(expected))
        if requests == 0 or span < min_samples_span:
            value, passed = None, False
        else:
            errors = sum(1 for _request in range(requests) if rng.random() < error_rate)
            value = 100.0 * (requests - errors) / requests
            passed = value >= min_success
        if not passed:
            failed_checks += 1
            ticks.append({"t": moment, "action": "halt", "weight": weight, "success_rate": value,
                          "canary_requests": requests, "failed_checks": failed_checks})
        elif weight < max_weight:
            weight = min(weight + step_weight, 100)
            changes.append((moment, weight))
            ticks.append({"t": moment, "action": "advance", "weight": weight, "success_rate": value,
                          "canary_requests": requests, "failed_checks": failed_checks})
        else:
            ticks.append({"t": moment, "action": "promote", "weight": weight, "success_rate": value,
                          "failed_checks": failed_checks})
            outcome = "promoted"
            break
        tick += 1
    faulty, _span = canary_requests(0.0, horizon)
    total = sum(requests_in(second) for second in range(int(math.ceil(horizon))))
    rolled_back_at = next((t["t"] for t in ticks if t["action"] == "rollback"), None)
    return {"outcome": outcome, "rolled_back_at": rolled_back_at, "ticks": ticks,
            "faulty_requests": round(faulty, 1), "window_requests": round(total, 1),
            "share": faulty / total if total else None}


# ------------------------------------------------------------------------------------ one run

def canary_spec(args):
    import sample_app  # noqa: E402
    spec = sample_app.canary_spec("istio", interval="%ds" % args.interval, step_weight=args.step_weight,
                                  max_weight=args.max_weight, threshold=args.threshold)
    for metric in spec["analysis"]["metrics"]:
        metric["interval"] = args.metric_interval
    return spec


def run_role(values, timeout=900):
    """One ansible-playbook run of the canary role, each output line stamped when read (run.lines)."""
    plays = [{"name": "release", "hosts": "localhost", "gather_facts": False,
              "roles": [{"role": "progressive.delivery.canary", "vars": values}]}]
    return _common.run_playbook(plays, env=PLAYBOOK_ENV, timeout=timeout, stamp_lines=True)


def role_vars(world, namespace, report_dir, spec=None, watch=True):
    values = {"canary_name": APP, "canary_namespace": namespace,
              "canary_auth": {"kubeconfig": world["runner_kubeconfig"]},
              "canary_metrics_source": {"type": "prometheus", "address": world["prometheus_url"]},
              "canary_report_dir": report_dir, "canary_watch": watch}
    if spec is not None:
        values["canary_spec"] = spec
    return values


def read_canary(api_client, namespace):
    from kubernetes import client
    return client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        helpers.GROUP, helpers.VERSION, namespace, helpers.PLURAL, APP)


def _first(items, predicate):
    return next((item for item in items if predicate(item)), None)


def one_run(world, args, repeat, mode, watch, seed, spec):
    import emulator  # noqa: E402
    import sample_app  # noqa: E402
    admin = world["api_client"]
    namespace = _common.new_namespace(admin, "bf-%s-%d" % (mode, repeat))
    report_dir = tempfile.mkdtemp(prefix="bench-faulty-reports-")
    run = {"repeat": repeat, "mode": mode, "canary_watch": watch, "seed": seed, "namespace": namespace}
    try:
        with emulator.Emulator(api_client=admin, apps=[(namespace, APP)], rps=args.rps, seed=seed,
                               targets_dir=world["targets_dir"]) as emu:
            # A scrape that Prometheus gave up on (busy machine) is no result of ours: keep stderr quiet.
            emu.server.handle_error = lambda request, client_address: None
            sample_app.release(admin, namespace, GOOD)
            boot = run_role(role_vars(world, namespace, report_dir, spec, watch))
            rc, lines = boot.rc, boot.lines
            phase = (read_canary(admin, namespace).get("status") or {}).get("phase")
            if rc != 0 or phase != "Initialized":
                raise RuntimeError("bootstrap failed (rc %s, phase %s):\n%s"
                                   % (rc, phase, "\n".join(text for _t, text in lines[-40:])))

            sample_app.release(admin, namespace, FAULTY, fault={"errorRate": args.error_rate})
            watcher = helpers.Watcher(world["kubeconfig"], namespace, APP).start()
            watcher.prime(read_canary(admin, namespace))
            time.sleep(1.0)  # both watches established (their first event is the current state)
            emu.reset(namespace, APP)
            sampler = helpers.TrafficSampler(emu, namespace, APP, lambda version: ":%s" % FAULTY in version).start()
            play = run_role(role_vars(world, namespace, report_dir, None, watch))
            rc, lines, play_start, play_end = play.rc, play.lines, play.started, play.ended
            weights = list(watcher.weights)
            t0 = _first(weights, lambda item: item[1] > 0)
            if t0 is None:
                raise RuntimeError("the canary never got traffic (rc %s):\n%s"
                                   % (rc, "\n".join(text for _t, text in lines[-40:])))
            t0 = t0[0]
            back = _first(watcher.weights, lambda item: item[0] > t0 and item[1] == 0)
            # The common window; a rollback later than the window (a very busy machine) widens this
            # run's window, and its Flagger simulation uses the same one, so that the two still
            # count every faulty request over the same traffic.
            window = max(args.window, math.ceil(back[0] - t0 + 2.0)) if back else args.window
            remaining = t0 + window - time.time()
            if remaining > 0:
                time.sleep(remaining + 0.3)
            sampler.stop()
            watcher.stop()
            stats = emu.stats(namespace, APP)
    finally:
        _common.delete_namespace(admin, namespace)

    weights = list(watcher.weights)
    back = _first(weights, lambda item: item[0] > t0 and item[1] == 0)
    t_zero = back[0] if back else None
    fails = [(moment, entry) for moment, entry in watcher.gates if entry.get("verdict") == "fail"]
    # The failing gateHistory entry as the Canary watch saw it: written AFTER the module's router
    # write now, so only a fallback for the decision instant.
    gate_decision = _first(fails, lambda item: str(item[1].get("message", "")).startswith("watch:")
                           or int(item[1].get("failedChecks") or 0) >= args.threshold)
    module = helpers.module_decision(lines)  # (printed at, task, result) of the failed metric_watch/metric_gate
    decided_at = float(module[2]["decided_at"]) if module else None
    routed_at = module[2].get("routed_at") if module else None
    routed_at = float(routed_at) if isinstance(routed_at, (int, float)) else None
    if decided_at is not None:
        decision_at, source = decided_at, "module"
    elif gate_decision:
        decision_at, source = gate_decision[0], "gateHistory"
    else:
        decision_at, source = None, None
    window_end = t0 + window
    if window > args.window:
        print("WARNING: run %s/%d rolled back %.1f s after t0, after the %ss window; its window is %ss"
              % (mode, repeat, t_zero - t0, args.window, window))
    run["window_seconds"] = window
    req_t0, faulty_t0 = sampler.at(t0)
    req_end, faulty_end = sampler.at(window_end)
    faulty_total = sum(v.get("requests", 0) for k, v in (stats.get("by_version") or {}).items()
                       if ":%s" % FAULTY in k)
    faulty_errors = sum(v.get("errors", 0) for k, v in (stats.get("by_version") or {}).items()
                        if ":%s" % FAULTY in k)
    req_play_end, faulty_play_end = sampler.at(play_end)
    run.update({
        "rc": rc,
        "rolled_back": rc != 0 and any("rolled back" in text for _t, text in lines),
        "faulty_requests": round(faulty_end - faulty_t0, 1),
        "faulty_requests_total": faulty_total,
        "faulty_errors_total": faulty_errors,
        "window_requests": round(req_end - req_t0, 1),
        "share": (faulty_end - faulty_t0) / (req_end - req_t0) if req_end > req_t0 else None,
        "share_of_run": faulty_play_end / req_play_end if req_play_end else None,
        "run_requests": round(req_play_end, 1),
        "timeline": {  # seconds from t0 (the first weight step seen on the VirtualService)
            "play_start": round(play_start - t0, 3),
            "weights": [(round(moment - t0, 3), weight) for moment, weight in weights],
            "gates": [{"t": round(moment - t0, 3), "verdict": entry.get("verdict"),
                       "failedChecks": entry.get("failedChecks"), "weight": entry.get("weight"),
                       "message": str(entry.get("message", ""))[:200]} for moment, entry in watcher.gates],
            "phases": [(round(moment - t0, 3), phase) for moment, phase in watcher.phases],
            "decision": round(decision_at - t0, 3) if decision_at else None,
            "decision_task": module[1] if module else None,
            "routed_in_module": round(routed_at - t0, 3) if routed_at else None,
            "failed_result_printed": round(module[0] - t0, 3) if module else None,
            "gate_entry_seen": round(gate_decision[0] - t0, 3) if gate_decision else None,
            "back_to_zero": round(t_zero - t0, 3) if t_zero else None,
            "play_end": round(play_end - t0, 3),
        },
        "canary_served_seconds": round(t_zero - t0, 3) if t_zero else None,
    })
    run["decision_source"] = source
    run["decision_to_primary_100"] = round(t_zero - decision_at, 3) if (decision_at and t_zero) else None
    run["decision_to_routed_in_module"] = round(routed_at - decided_at, 3) if (routed_at and decided_at) else None
    run["routed_to_primary_by_module"] = module[2].get("routed_to_primary") if module else None
    run["gate_entry_to_primary_100"] = round(t_zero - gate_decision[0], 3) if (gate_decision and t_zero) else None
    run["decision_breakdown"] = breakdown(lines, decision_at, t_zero, module)
    run["module_startup"] = startup_costs(lines, weights, module, gate_decision, t0)
    run["tasks"] = [(round(moment - t0, 3), name) for moment, name in helpers.task_starts(lines)]
    run["progress_lines"] = [text for _t, text in lines if "weight" in text and "failed checks" in text]
    traffic = sampler.per_second(t0, window_end)
    run["traffic_rps_measured"] = round(sum(count for _s, count in traffic) / window, 2)
    run["flagger"] = simulate_flagger(traffic, args.interval, args.step_weight, args.max_weight, args.threshold,
                                      parse_seconds(args.metric_interval), args.error_rate, args.min_success,
                                      seed, window)
    return run


def breakdown(lines, decision, t_zero, module=None):
    """Where the time between the decision and the router write went (one clock, seconds).

    With the module's result: decision -> its router write returned (in the module) -> the
    VirtualService change seen by the bench's watch. Then, either way: decision -> the failing
    task's result printed -> the rescue's "Roll back" task started (and, when the module did not
    route itself, that task -> the router write seen).
    """
    if decision is None or t_zero is None:
        return None
    out = {}
    result = module[2] if module else {}
    routed_at = result.get("routed_at")
    if isinstance(routed_at, (int, float)):
        out["decision_to_router_written_in_module"] = round(routed_at - decision, 3)
        out["router_written_to_seen_by_watch"] = round(t_zero - routed_at, 3)
    if module:
        fatal = module[0], module[1]
    else:
        fatal = _first(lines, lambda item: item[0] >= decision - 0.05 and item[1].startswith(("fatal:", "failed:")))
    rescue = _first(helpers.task_starts(lines), lambda item: item[0] >= decision - 0.05
                    and item[1].endswith(": Roll back"))
    if fatal:
        out["decision_to_task_result"] = round(fatal[0] - decision, 3)
    if fatal and rescue:
        out["task_result_to_rollback_task_start"] = round(rescue[0] - fatal[0], 3)
    if rescue and not result.get("routed_to_primary"):
        out["rollback_task_start_to_router_written"] = round(t_zero - rescue[0], 3)
    return out


def startup_costs(lines, weights, module, gate_decision, t0):
    """What a module task costs before it acts, seen from outside (bench clock, seconds).

    * each mesh_weight task: its banner -> the VirtualService change it wrote (the same kind of
      write the rollback does, so the same start-up cost);
    * the watch: its banner -> its decision (the module's ``decided_at``), minus the watch's own
      ``decided_after`` = the time before its first count (module start-up), and ``decided_after``
      itself. Without ``decided_at``: the failing gateHistory entry seen and its ``decidedAfter``
      (that entry now comes after the router write, so this includes the write).
    """
    tasks = helpers.task_starts(lines)
    out = {"mesh_weight_task_to_router_written": []}
    for moment, name in tasks:
        if ": Send the canary its share of the traffic" in name:
            write = _first(weights, lambda item, moment=moment: item[0] > moment and item[1] > 0)
            if write:
                out["mesh_weight_task_to_router_written"].append(round(write[0] - moment, 3))
    watch_task = ": Watch the canary for one analysis interval"
    if module and str(module[1] or "").endswith(watch_task) and module[2].get("decided_after") is not None:
        moment, decided_after, source = float(module[2]["decided_at"]), float(module[2]["decided_after"]), "module"
    elif not module and gate_decision and str(gate_decision[1].get("message", "")).startswith("watch:"):
        moment, source = gate_decision[0], "gateHistory"
        decided_after = max([float(m.get("decidedAfter") or 0) for m in gate_decision[1].get("metrics") or []]
                            or [0])
    else:
        return out
    began = [start for start, name in tasks if name.endswith(watch_task) and start < moment]
    if began:
        out["watch_task_start"] = round(began[-1] - t0, 3)
        out["watch_decided_after"] = decided_after
        out["watch_task_to_watch_loop"] = round(moment - began[-1] - decided_after, 3)
        out["watch_source"] = source
    return out


def parse_seconds(text):
    units = {"s": 1, "m": 60, "h": 3600}
    total, number = 0.0, ""
    for char in str(text):
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number) * units[char]
            number = ""
    return total + (float(number) if number else 0.0)


# ------------------------------------------------------------------------------------ summary

def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(runs, args):
    out = {}
    for mode, _watch in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        if not mine:
            continue
        out[mode] = {
            "share": spread([r["share"] for r in mine]),
            "faulty_requests": spread([r["faulty_requests"] for r in mine]),
            "share_of_run": spread([r["share_of_run"] for r in mine]),
            "canary_served_seconds": spread([r["canary_served_seconds"] for r in mine]),
            "decision_to_primary_100": spread([r["decision_to_primary_100"] for r in mine]),
            "decision_to_routed_in_module": spread([r.get("decision_to_routed_in_module") for r in mine]),
            "decision_source": dict((source, sum(1 for r in mine if str(r.get("decision_source")) == source))
                                    for source in sorted(set(str(r.get("decision_source")) for r in mine))),
            "flagger_share": spread([r["flagger"]["share"] for r in mine]),
            "flagger_faulty_requests": spread([r["flagger"]["faulty_requests"] for r in mine]),
            "flagger_rolled_back_at": spread([r["flagger"]["rolled_back_at"] for r in mine]),
            "ratio_to_flagger": spread([r["share"] / r["flagger"]["share"] for r in mine
                                        if r["share"] is not None and r["flagger"]["share"]]),
        }
        med = out[mode]
        if med["share"] and med["flagger_share"]:
            med["ratio_of_medians"] = med["share"]["median"] / med["flagger_share"]["median"]
    return out


def _fmt_pct(summary):
    if not summary:
        return "-"
    return "%.2f%% [%.2f..%.2f]" % (100 * summary["median"], 100 * summary["min"], 100 * summary["max"])


def _fmt_s(summary):
    if not summary:
        return "-"
    return "%.2f s [%.2f..%.2f]" % (summary["median"], summary["min"], summary["max"])


def print_table(result):
    args = result["schedule"]
    print()
    print("schedule: interval %ss, stepWeight %s, maxWeight %s, threshold %s, metric interval %s, "
          "%s req/s, faulty error rate %.0f%%, window %ss from the first weight step"
          % (args["interval_seconds"], args["step_weight"], args["max_weight"], args["threshold"],
             args["metric_interval"], args["rps"], 100 * args["error_rate"], args["window_seconds"]))
    print()
    header = "%-4s %-9s %-8s %-10s %-10s %-10s %-10s %-12s %-10s"
    print(header % ("run", "mode", "rc", "faulty", "window", "share", "flagger", "canary on", "decision"))
    print(header % ("", "", "", "requests", "requests", "", "share", "seconds", "->100% s"))
    for run in result["runs"]:
        print("%-4d %-9s %-8s %-10s %-10s %-10s %-10s %-12s %-10s" % (
            run["repeat"], run["mode"], run["rc"], run["faulty_requests"], run["window_requests"],
            "%.2f%%" % (100 * run["share"]) if run["share"] is not None else "-",
            "%.2f%%" % (100 * run["flagger"]["share"]) if run["flagger"]["share"] is not None else "-",
            run["canary_served_seconds"], run["decision_to_primary_100"]))
    print()
    for mode, summary in result["summary"].items():
        ratio = summary["ratio_to_flagger"]
        print("%-9s share %s | Flagger (simulated) %s | ratio %s | canary served %s | decision -> primary 100%% %s"
              " (router write in the module %s; decision from %s)"
              % (mode, _fmt_pct(summary["share"]), _fmt_pct(summary["flagger_share"]),
                 "%.2f [%.2f..%.2f]" % (ratio["median"], ratio["min"], ratio["max"]) if ratio else "-",
                 _fmt_s(summary["canary_served_seconds"]), _fmt_s(summary["decision_to_primary_100"]),
                 _fmt_s(summary.get("decision_to_routed_in_module")), summary.get("decision_source")))
    print()
    print("targets: share <= 1/2 of Flagger's (ratio <= 0.5); decision -> primary 100% <= 1 s")


# ------------------------------------------------------------------------------------ main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--out", default=os.path.join(REPO, "build", "bench", "faulty_share.json"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261201, help="seed of repeat 0; repeat i uses seed + i")
    parser.add_argument("--interval", type=int, default=10, help="analysis.interval, seconds")
    parser.add_argument("--step-weight", type=int, default=10)
    parser.add_argument("--max-weight", type=int, default=50)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--metric-interval", default="1m", help="the metrics' query window (Flagger's default 1m)")
    parser.add_argument("--min-success", type=float, default=99.0, help="request-success-rate thresholdRange.min")
    parser.add_argument("--rps", type=float, default=50.0)
    parser.add_argument("--error-rate", type=float, default=0.2)
    parser.add_argument("--window", type=float, default=60.0,
                        help="seconds from the first weight step over which shares are counted")
    parser.add_argument("--modes", default="watch,no-watch", help="comma-separated: watch, no-watch")
    parser.add_argument("--cluster-name", default="bench-faulty")
    parser.add_argument("--flagger-only", action="store_true",
                        help="only the Flagger simulation at the configured rps (no cluster)")
    return parser.parse_args(argv)


def schedule_of(args):
    return {"provider": "istio", "interval_seconds": args.interval, "step_weight": args.step_weight,
            "max_weight": args.max_weight, "threshold": args.threshold, "metric_interval": args.metric_interval,
            "min_success": args.min_success, "rps": args.rps, "error_rate": args.error_rate,
            "window_seconds": args.window, "first_weight_step": "t = 0 (both)",
            "watch_defaults": {"canary_watch_interval": 5, "alpha": 0.001, "beta": 0.05, "p1_factor": 3}}


def main(argv=None):
    args = parse_args(argv)
    modes = [(name, watch) for name, watch in MODES if name in args.modes.split(",")]
    result = {"benchmark": "faulty_share", "issue": 8, "date": _common.utc_now(), "machine": _common.machine(),
              "schedule": schedule_of(args),
              "definitions": {
                  "share": "requests served by the faulty version / all user requests of the app, emulator /stats, "
                           "over [t0, t0 + window], t0 = the first weight step seen on the VirtualService",
                  "share_of_run": "the same over the whole faulty ansible-playbook run (from before "
                                  "canary_init to the end of the play)",
                  "flagger": "fluxcd/flagger pkg/controller/scheduler.go Controller.advanceCanary simulated on the "
                             "run's own per-second traffic (see simulate_flagger)",
                  "decision_to_primary_100": "the failing metric_watch/metric_gate result's decided_at (the "
                                             "module's time.time() when the verdict was known, from the "
                                             "'FAILED! =>' line) -> the VirtualService seen at canary weight 0 "
                                             "by the bench's watch (bench time.time(), same machine)",
                  "decision_to_routed_in_module": "routed_at - decided_at of that result: the module's own "
                                                  "router write (route_to_primary_on_fail)",
                  "decision_source": "module = decided_at found; gateHistory = fallback, the failing "
                                     "gateHistory entry seen by a watch on the Canary (written after the "
                                     "router write: under-measures, can be negative)",
                  "gate_entry_to_primary_100": "the old measure (gateHistory entry seen -> weight 0), for "
                                               "comparison only"}}
    flagger_nominal = simulate_flagger([(s, args.rps) for s in range(int(args.window))], args.interval,
                                       args.step_weight, args.max_weight, args.threshold,
                                       parse_seconds(args.metric_interval), args.error_rate, args.min_success,
                                       args.seed, args.window)
    result["flagger_at_configured_rps"] = flagger_nominal
    if args.flagger_only:
        print(json.dumps(flagger_nominal, indent=2))
        return 0

    _common.ensure_bench_venv()
    result["versions"] = _common.software_versions()
    runs = []
    started = time.time()
    # A fresh private cluster (a left-over one of that name is stopped first), stopped at the end.
    with _common.local_cluster(args.cluster_name, nodes=2) as cluster:
        api_client = cluster.api_client()
        _common.install_crd_and_rbac(api_client)
        runner = _common.runner_kubeconfig(api_client, cluster.kubeconfig,
                                           os.path.join(tempfile.mkdtemp(prefix="bench-faulty-"), "runner-kubeconfig"))
        world = {"kubeconfig": cluster.kubeconfig, "prometheus_url": cluster.prometheus_url,
                 "targets_dir": cluster.targets_dir, "api_client": api_client, "runner_kubeconfig": runner}
        spec = canary_spec(args)
        result["canary_spec"] = spec
        for repeat in range(args.repeat):
            for mode, watch in modes:
                print("run %d/%d %s ..." % (repeat + 1, args.repeat, mode), flush=True)
                run = one_run(world, args, repeat, mode, watch, args.seed + repeat, spec)
                runs.append(run)
                figures = (run["rc"], run["faulty_requests"], run["window_requests"], 100 * (run["share"] or 0),
                           100 * (run["flagger"]["share"] or 0), run["canary_served_seconds"],
                           run["decision_to_primary_100"], run["decision_source"], run["decision_breakdown"])
                print("  rc %s, faulty %s of %s requests (%.2f%%), Flagger %.2f%%, canary on %s s, "
                      "decision -> 0%% %s s (%s) %s" % figures, flush=True)
    result["runs"] = runs
    result["summary"] = summarise(runs, args)
    result["elapsed_seconds"] = round(time.time() - started, 1)
    result["machine"]["loadavg_end"] = _common.load_average()
    print_table(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    print("written %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
