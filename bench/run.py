"""Runs the benchmarks of issue 8 one after the other, then writes build/bench/summary.md.

    .venv/bin/python bench/run.py [--only overhead,faulty,scaling] [--summary-only] [--out-dir build/bench]

In this order, sequentially (they time things: never two at once): bench/overhead.py,
bench/faulty_share.py, bench/scaling.py, each with ``--out <out-dir>/<name>.json`` and the
arguments of BENCHMARKS below; each one's output goes to the terminal and to <out-dir>/<name>.log.
A benchmark that fails does not stop the next ones; the exit status is non-zero then.

summary.md: the machine and date, then one row per target of the issue with the measured value
and pass/miss, read from the JSON the benchmarks wrote (``--summary-only`` rebuilds it from the
JSON already there, running nothing).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common  # noqa: E402  (bench tooling, not a package)

# The benchmarks, in the order they run, with their arguments (--out is added): change them here.
BENCHMARKS = [
    ("overhead", "overhead.py", ["--repeat", "2", "--steps", "5,10", "--interval", "3"]),
    ("faulty", "faulty_share.py", ["--repeat", "2"]),
    ("scaling", "scaling.py", ["--clusters", "1,2,4,8", "--variants", "linear", "--nice-clusters", "19"]),
]
JSON_NAME = {"overhead": "overhead.json", "faulty": "faulty_share.json", "scaling": "scaling.json"}

# The targets of the issue.
OVERHEAD_PER_STEP_MAX = 0.3      # seconds of control overhead per weight step
OVERHEAD_RATIO_MAX = 0.5         # x the hand-rolled playbook's overhead per step
DECISION_TO_PRIMARY_MAX = 1.0    # seconds, failed gate -> primary at 100 %
SHARE_RATIO_MAX = 0.5            # x Flagger's faulty-canary share
API_PER_STEP_MAX = 4             # API requests per step
SCALING_RATIO_MAX = 1.3          # wall of 8 clusters / wall of one


# --------------------------------------------------------------------------- running

def run_benchmark(name, script, args, out_dir):
    out = os.path.join(out_dir, JSON_NAME[name])
    log = os.path.join(out_dir, name + ".log")
    argv = [sys.executable, os.path.join(HERE, script)] + list(args) + ["--out", out]
    print("== %s: %s" % (name, " ".join(argv)), flush=True)
    began = time.time()
    with open(log, "w") as handle:
        handle.write("$ %s\n" % " ".join(argv))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=_common.REPO,
                                bufsize=1)
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            handle.write(line)
        rc = proc.wait()
    elapsed = round(time.time() - began, 1)
    print("== %s: exit %s after %.0f s" % (name, rc, elapsed), flush=True)
    return {"name": name, "argv": argv, "rc": rc, "elapsed_seconds": elapsed, "out": out, "log": log,
            "finished": _common.utc_now()}


# --------------------------------------------------------------------------- summary

def load(out_dir, name):
    path = os.path.join(out_dir, JSON_NAME[name])
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def verdict(value, limit):
    if value is None:
        return "n/a"
    return "pass" if value <= limit else "**miss**"


def fmt(value, pattern="%.3f"):
    return pattern % value if isinstance(value, (int, float)) else "-"


def fmt_spread(spread, pattern="%.3f", scale=1.0):
    if not spread:
        return "-"
    return "%s [%s..%s] (n=%s)" % (fmt(spread["median"] * scale, pattern), fmt(spread["min"] * scale, pattern),
                                   fmt(spread["max"] * scale, pattern), spread.get("n"))


def overhead_rows(data):
    rows = []
    summary = (data or {}).get("summary") or {}
    labels = (("collection_watch", "collection, watch on (default)"), ("collection_nowatch", "collection, watch off"))
    settings = (data or {}).get("settings") or {}
    steps = min(settings.get("step_counts") or [0]) or "?"
    hand = summary.get("handrolled") or {}
    # (target, the figure judged, its limit, how the measurement reads); one block of rows per target.
    targets = (
        ("Overhead <= %.1f s per step" % OVERHEAD_PER_STEP_MAX, "overhead_per_step", OVERHEAD_PER_STEP_MAX,
         lambda e: "%s s/step (%s steps, init and promotion included); marginal %s s/step"
         % (fmt(e.get("overhead_per_step")), steps, fmt(e.get("marginal_overhead_per_step")))),
        ("Overhead <= %.1f x hand-rolled" % OVERHEAD_RATIO_MAX, "ratio_to_handrolled", OVERHEAD_RATIO_MAX,
         lambda e: "%s x (hand-rolled %s s/step); marginal %s x"
         % (fmt(e.get("ratio_to_handrolled"), "%.2f"), fmt(hand.get("overhead_per_step")),
            fmt(e.get("marginal_ratio_to_handrolled"), "%.2f"))),
        ("<= %d API requests per step" % API_PER_STEP_MAX, "api_per_step", API_PER_STEP_MAX,
         lambda e: "%s per step (slope over step counts); %s fixed per run"
         % (fmt(e.get("api_per_step"), "%.2f"), fmt(e.get("api_fixed_per_run"), "%.1f"))),
    )
    for index, (target, key, limit, measured) in enumerate(targets):
        for variant, label in labels:
            entry = summary.get(variant)
            if not entry:
                if index == 0:  # said once, under the first target
                    rows.append(("%s, %s" % (target, label), "not measured", "n/a", "overhead.json"))
                continue
            rows.append(("%s, %s" % (target, label), measured(entry), verdict(entry.get(key), limit),
                         "overhead.json summary.%s.%s" % (variant, key)))
    return rows


def faulty_rows(data):
    rows = []
    summary = (data or {}).get("summary") or {}
    labels = (("watch", "watch on (default)"), ("no-watch", "watch off"))
    for mode, label in labels:
        entry = summary.get(mode)
        if not entry:
            rows.append(("Failed gate -> primary 100 %% <= %.0f s, %s" % (DECISION_TO_PRIMARY_MAX, label),
                         "not measured", "n/a", "faulty_share.json"))
            continue
        spread = entry.get("decision_to_primary_100")
        sources = entry.get("decision_source") or {}
        note = ""
        if any(source != "module" for source in sources):
            note = "; decision from %s (only 'module' is the decided_at measure)" % sources
        rows.append((
            "Failed gate -> primary 100 %% <= %.0f s, %s" % (DECISION_TO_PRIMARY_MAX, label),
            "%s s; router write in the module %s s%s"
            % (fmt_spread(spread), fmt_spread(entry.get("decision_to_routed_in_module")), note),
            verdict(spread["median"] if spread else None, DECISION_TO_PRIMARY_MAX)
            + (" (max %s)" % verdict(spread["max"], DECISION_TO_PRIMARY_MAX) if spread and spread["max"]
               > DECISION_TO_PRIMARY_MAX >= spread["median"] else ""),
            "faulty_share.json summary.%s.decision_to_primary_100 (median)" % mode))
    for mode, label in labels:
        entry = summary.get(mode)
        if not entry:
            rows.append(("Faulty-canary share <= 1/2 of Flagger's, %s" % label, "not measured", "n/a",
                         "faulty_share.json"))
            continue
        ratio = entry.get("ratio_to_flagger")
        rows.append((
            "Faulty-canary share <= 1/2 of Flagger's, %s" % label,
            "ratio %s; share %s %% vs Flagger (simulated) %s %%"
            % (fmt_spread(ratio, "%.2f"), fmt_spread(entry.get("share"), "%.2f", 100),
               fmt_spread(entry.get("flagger_share"), "%.2f", 100)),
            verdict(ratio["median"] if ratio else None, SHARE_RATIO_MAX),
            "faulty_share.json summary.%s.ratio_to_flagger (median)" % mode))
    return rows


def scaling_summary(data):
    """summary[variant][str(N)] as scaling.py writes it; recomputed from the runs when absent."""
    summary = (data or {}).get("summary")
    if summary:
        return summary
    out = {}
    for run in (data or {}).get("runs") or []:
        rows = out.setdefault(run.get("variant", "linear"), {})
        row = rows.setdefault(str(run["clusters"]), {"wall_seconds": [], "ok": True})
        row["wall_seconds"].append(run["wall_seconds"])
        row["ok"] = row["ok"] and not run.get("problems")
    for rows in out.values():
        for row in rows.values():
            values = sorted(row["wall_seconds"])
            row["wall_seconds_median"] = values[len(values) // 2] if len(values) % 2 else \
                (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2.0
        base = rows.get("1")
        for row in rows.values():
            row["ratio_to_one"] = round(row["wall_seconds_median"] / base["wall_seconds_median"], 3) if base else None
    return out


def scaling_rows(data):
    summary = scaling_summary(data)
    rows = []
    for variant, by_count in summary.items():
        if not by_count:
            continue
        top = max(by_count, key=int)
        row, one = by_count[top], by_count.get("1")
        label = "%s clusters <= %.1f x one, %s" % (top, SCALING_RATIO_MAX, variant)
        if top != "8":
            label += " (8 not measured)"
        ratio = row.get("ratio_to_one") if one else None
        ok = all(r.get("ok", True) for r in by_count.values())
        rows.append((label,
                     "%s x (%s s vs %s s, medians)%s"
                     % (fmt(ratio, "%.2f"), fmt(row.get("wall_seconds_median"), "%.1f"),
                        fmt((one or {}).get("wall_seconds_median"), "%.1f"),
                        "" if ok else "; some runs had problems (not all promoted / non-zero exit)"),
                     (verdict(ratio, SCALING_RATIO_MAX) if ok else "invalid") if top == "8" else "n/a",
                     "scaling.json summary.%s.\"%s\".ratio_to_one" % (variant, top)))
    if not rows:
        rows.append(("8 clusters <= %.1f x one" % SCALING_RATIO_MAX, "not measured", "n/a", "scaling.json"))
    return rows


def write_summary(out_dir, runs=None):
    data = {name: load(out_dir, name) for name in JSON_NAME}
    info = _common.machine()
    lines = ["# Benchmarks of issue 8", "",
             "Summary written %s on %s cores, %s, %s GiB RAM (load average %s; %s)."
             % (_common.utc_now(), info.get("nproc"), info.get("cpu_model", "?"), info.get("memory_gib", "?"),
                info.get("loadavg_at_start"), info.get("platform")), ""]
    lines += ["| benchmark | date | machine (as recorded by it) | file |", "|---|---|---|---|"]
    for name, found in data.items():
        if not found:
            lines.append("| %s | - | - | %s missing |" % (name, JSON_NAME[name]))
            continue
        m = found.get("machine") or {}
        lines.append("| %s | %s | %s cores, %s, %s GiB, load %s | %s |"
                     % (name, found.get("date", "?"), m.get("nproc"), m.get("cpu_model", "?"), m.get("memory_gib", "?"),
                        m.get("loadavg_at_start") or m.get("loadavg_start") or "-", JSON_NAME[name]))
    lines += ["", "| target | measured | result | from |", "|---|---|---|---|"]
    for row in overhead_rows(data["overhead"]) + faulty_rows(data["faulty"]) + scaling_rows(data["scaling"]):
        lines.append("| %s |" % " | ".join(str(cell).replace("|", "\\|") for cell in row))
    lines += ["", "pass/miss on medians; [min..max] over the runs. Overhead per step = (wall - steps x interval) "
                  "/ steps at the smaller step count; marginal = slope of wall over steps - interval. "
                  "Failed gate -> primary 100 % = the VirtualService seen at canary weight 0 by the bench's watch "
                  "- the module's decided_at (one clock)."]
    if runs:
        lines += ["", "## This invocation", "", "| benchmark | exit | seconds | log |", "|---|---|---|---|"]
        for run in runs:
            lines.append("| %s | %s | %s | %s |" % (run["name"], run["rc"], run["elapsed_seconds"],
                                                    os.path.relpath(run["log"], _common.REPO)))
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- main

def main(argv=None):
    names = [name for name, _script, _args in BENCHMARKS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--only", default=",".join(names),
                        help="comma-separated subset of %s (run in that order)" % ",".join(names))
    parser.add_argument("--summary-only", action="store_true",
                        help="run nothing; rebuild summary.md from the JSON already in --out-dir")
    parser.add_argument("--out-dir", default=os.path.join(_common.REPO, "build", "bench"))
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    for name in only:
        if name not in names:
            parser.error("unknown benchmark %r; choose from %s" % (name, ", ".join(names)))
    out_dir = os.path.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    runs = []
    if not args.summary_only:
        for name, script, extra in BENCHMARKS:
            if name in only:
                runs.append(run_benchmark(name, script, extra, out_dir))
        with open(os.path.join(out_dir, "run.json"), "w") as handle:
            json.dump({"date": _common.utc_now(), "machine": _common.machine(), "runs": runs}, handle, indent=2)
    path = write_summary(out_dir, runs)
    with open(path) as handle:
        print(handle.read())
    print("written %s" % path)
    return 1 if any(run["rc"] != 0 for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
