"""Measures the local control plane: warm start time (median of N) and the
resident memory of its processes once idle. Prints a Markdown table.

    .venv/bin/python hack/measure_controlplane.py [--runs 3]
"""
import argparse
import os
import platform
import statistics
import time

import pdcluster


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=20, help="seconds idle before reading memory")
    args = parser.parse_args()
    pdcluster.ensure_binaries()
    cluster = pdcluster.Cluster("measure")
    cluster.down()
    times = []
    rss = {}
    for run in range(args.runs):
        started = time.time()
        state = cluster.up(nodes=1)
        times.append(time.time() - started)
        if run == args.runs - 1:
            time.sleep(args.settle)
            rss = {comp: _rss_kib(pid) for comp, pid in state["pids"].items()}
        cluster.down()
    print("machine: %s, %d cores, %s" % (platform.node(), os.cpu_count(), platform.platform()))
    print("| warm start (s) runs | median |\n|---|---|\n| %s | %.1f |"
          % (", ".join("%.1f" % t for t in times), statistics.median(times)))
    print("\n| process | RSS (MiB) |\n|---|---|")
    for comp, kib in sorted(rss.items()):
        print("| %s | %.0f |" % (comp, kib / 1024.0))
    print("| total | %.0f |" % (sum(rss.values()) / 1024.0))


if __name__ == "__main__":
    main()
