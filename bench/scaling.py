"""Benchmark part 3 (issue 8): wall time of one release wave on 1 cluster against 2, 4 and 8.

    .venv/bin/python bench/scaling.py [--clusters 1,2,4,8] [--out build/bench/scaling.json]
                                      [--repeat 1] [--variants linear] [--idle-seconds 30]

Starts max(N) local control planes (hack/pdcluster.py, names bench-scale-1..8, all kept running for
the whole benchmark, so every N sees the same background), one traffic emulator process per cluster,
installs the CRD and ClusterRole, deploys the sample app and lets a first run of
playbooks/multicluster.yml make each primary (not timed). It then measures the idle CPU of the
running clusters (nothing released), and for every N and variant releases a new healthy version on
the first N clusters and times ONE ansible-playbook run of the multicluster playbook with those N
hosts in one wave (pd_serial [N], forks >= N). Every run is checked: each cluster promoted the new
version. The clusters and emulators are stopped at the end whatever happens (try/finally).

Per run it records: wall time, CPU seconds of the ansible-playbook process tree (getrusage of the
children), CPU seconds of the control planes, Prometheus and emulators over the same window,
whole-machine CPU use (/proc/stat) and what is left for other users' processes (contention), the
load average, and per-task timing from a small callback (where the wall time goes).

Variants (--variants, comma-separated): linear (the playbook as shipped), free (ANSIBLE_STRATEGY=free),
pipelining (ANSIBLE_PIPELINING=True), free+pipelining, or playbook=PATH[:name] (a modified copy).
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "hack"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import pdcluster  # noqa: E402  (dev tooling, not a package)
import sample_app  # noqa: E402
from ansible_runner import ansible_bin, ansible_env  # noqa: E402

from kubernetes import client, config  # noqa: E402

APP = sample_app.APP
NAMESPACE = "bench"
PREFIX = "bench-scale-"
GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MULTICLUSTER = os.path.join(REPO, "playbooks", "multicluster.yml")

VARIANT_ENV = {
    "linear": {},
    "free": {"ANSIBLE_STRATEGY": "free"},
    "pipelining": {"ANSIBLE_PIPELINING": "True"},
    "free+pipelining": {"ANSIBLE_STRATEGY": "free", "ANSIBLE_PIPELINING": "True"},
}

# Per-task timing, written as a callback plugin next to the results: which task the wall time is spent in.
_TIMING_CALLBACK = '''
import json, os, time
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "pd_bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._events = [{"t": time.time(), "ev": "load"}]

    def _add(self, ev, task, host=None):
        self._events.append({"t": time.time(), "ev": ev, "task": task.get_name(), "action": task.action,
                             "uuid": task._uuid, "host": host})

    def v2_playbook_on_play_start(self, play):
        self._events.append({"t": time.time(), "ev": "play", "task": play.get_name()})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._add("task", task)

    def v2_runner_on_start(self, host, task):
        self._add("start", task, host.get_name())

    def _done(self, result, status):
        self._add(status, result._task, result._host.get_name())

    def v2_runner_on_ok(self, result):
        self._done(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._done(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._events.append({"t": time.time(), "ev": "end"})
        with open(os.environ["PD_BENCH_TIMING_OUT"], "w") as handle:
            json.dump(self._events, handle)
'''


# --------------------------------------------------------------------------- machine and CPU accounting

def machine():
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kib = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kib / 1048576.0, 1),
            "kernel": platform.release(), "hostname": platform.node()}


def versions():
    found = {"python": platform.python_version()}
    for name, module in (("ansible-core", "ansible.release"), ("kubernetes", "kubernetes")):
        try:
            mod = __import__(module, fromlist=["x"])
            found[name] = getattr(mod, "__version__")
        except Exception:  # a missing version is recorded, never fatal
            found[name] = None
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        found["collection"] = yaml.safe_load(handle).get("version")
    found["control_plane"] = pdcluster.versions()
    try:
        out = subprocess.run(["prometheus", "--version"], capture_output=True, text=True, check=False)
        found["prometheus"] = (out.stdout or out.stderr).splitlines()[0]
    except (OSError, IndexError):
        found["prometheus"] = None
    try:
        found["git_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                                             text=True, check=True).stdout.strip()
        found["git_dirty"] = bool(subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "plugins",
                                                  "roles", "playbooks"], capture_output=True, text=True,
                                                 check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        found["git_commit"] = None
    return found


def proc_cpu_seconds(pid):
    """utime + stime of one live process (0 once it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / float(CLK_TCK)


def system_cpu():
    """(busy seconds, total seconds) of the whole machine, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / float(CLK_TCK), total / float(CLK_TCK)


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sampler(object):
    """Samples runnable tasks (/proc/stat procs_running) and the machine's busy share once a second."""

    def __init__(self, period=1.0):
        self.period = period
        self.running = []
        self.busy = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        last = system_cpu()
        while not self._stop.wait(self.period):
            with open("/proc/stat") as handle:
                for line in handle:
                    if line.startswith("procs_running"):
                        # minus this sampler itself
                        self.running.append(int(line.split()[1]) - 1)
            now = system_cpu()
            if now[1] > last[1]:
                self.busy.append((now[0] - last[0]) / (now[1] - last[1]))
            last = now

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self):
        return {"procs_running_mean": _mean(self.running), "procs_running_max": max(self.running or [0]),
                "machine_busy_mean": _mean(self.busy)}


def _mean(values):
    return round(statistics.mean(values), 3) if values else None


# --------------------------------------------------------------------------- the world

class Member(object):
    """One local cluster with its emulator."""

    def __init__(self, cluster, state):
        self.name = cluster.name
        self.cluster = cluster
        self.state = state
        self.api = config.new_client_from_config(config_file=state["kubeconfig"])
        self.emulator = None

    def pids(self):
        pids = dict((self.state.get("pids") or {}).items())
        if self.emulator is not None:
            pids["emulator"] = self.emulator.pid
        return pids

    def cpu_by_component(self):
        return {component: proc_cpu_seconds(pid) for component, pid in self.pids().items()}


def renice(pids, niceness):
    """Lower the priority of every thread of these processes (Linux nice is per thread)."""
    for pid in pids:
        try:
            threads = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        except OSError:
            continue
        for tid in threads:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, niceness)


def _wait_for(predicate, timeout, message):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise RuntimeError("timed out after %ss waiting for %s" % (timeout, message))


def start_emulator(member, index, log_dir):
    """One emulator process per cluster, registered with that cluster's Prometheus (file_sd).

    Returns a function that waits until it serves (they start in parallel: a loaded machine takes a while)."""
    out_path = os.path.join(log_dir, "emulator-%s.out" % member.name)
    with open(out_path, "w") as out, open(os.path.join(log_dir, "emulator-%s.log" % member.name), "w") as err:
        proc = subprocess.Popen([sys.executable, os.path.join(REPO, "hack", "emulator.py"),
                                 "--kubeconfig", member.state["kubeconfig"], "--namespace", NAMESPACE,
                                 "--app", APP, "--rps", "50", "--seed", str(index), "--log-level", "WARNING",
                                 "--targets-dir", member.state["prometheus_targets_dir"]],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    member.emulator = proc

    def _address():
        if proc.poll() is not None:
            raise RuntimeError("the emulator of %s exited (%s)" % (member.name, proc.returncode))
        with open(out_path) as handle:
            line = handle.readline()
        return json.loads(line)["address"] if line.endswith("\n") else None
    return lambda: _wait_for(_address, 180, "the emulator of %s" % member.name)


def stop_emulator(member):
    proc = member.emulator
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bootstrap(member):
    """CRD + ClusterRole (playbooks/install.yml), the namespace and the sample app at 6.7.0."""
    plays = [{"import_playbook": os.path.join(REPO, "playbooks", "install.yml")}]
    proc = _ansible_playbook(plays, env={"K8S_AUTH_KUBECONFIG": member.state["kubeconfig"]})
    if proc.returncode != 0:
        raise RuntimeError("install.yml failed on %s:\n%s%s" % (member.name, proc.stdout[-3000:], proc.stderr[-2000:]))
    core = client.CoreV1Api(member.api)
    sample_app.ensure_namespace(member.api, NAMESPACE)
    _wait_for(lambda: core.list_namespaced_service_account(NAMESPACE, field_selector="metadata.name=default").items,
              30, "the default ServiceAccount of %s" % member.name)
    sample_app.release(member.api, NAMESPACE, "6.7.0")


def _ansible_playbook(plays, env=None, extra_args=(), timeout=900):
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False, dir=os.path.join(REPO, "build")) as handle:
        yaml.safe_dump(plays, handle)
        path = handle.name
    try:
        argv = [ansible_bin("ansible-playbook"), "-i", "localhost,", "-c", "local", path] + list(extra_args)
        return subprocess.run(argv, capture_output=True, text=True, env=ansible_env(env), timeout=timeout,
                              check=False)
    finally:
        os.unlink(path)


def write_inventory(path, members, spec, report_dir):
    hosts = {}
    for member in members:
        hosts[member.name] = {
            "canary_auth": {"kubeconfig": member.state["kubeconfig"]},
            "canary_metrics_source": {"type": "prometheus", "address": member.state["prometheus_url"]}}
    inventory = {"all": {"children": {
        "pd_canary_wave": {"hosts": {members[0].name: {}}},
        "pd_clusters": {"hosts": hosts,
                        "vars": {"ansible_connection": "local", "canary_name": APP, "canary_namespace": NAMESPACE, "canary_spec": spec,
                                 "canary_report_dir": report_dir}}}}}
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle)
    return path


def canary_status(member):
    obj = client.CustomObjectsApi(member.api).get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, APP)
    return obj.get("status") or {}


def primary_image(member):
    dep = client.AppsV1Api(member.api).read_namespaced_deployment(APP + "-primary", NAMESPACE)
    return dep.spec.template.spec.containers[0].image.rsplit(":", 1)[-1]


# --------------------------------------------------------------------------- one timed run

def run_wave(members, all_members, spec, variant, work, label):
    """Times one ansible-playbook run of the multicluster playbook, all `members` in one wave."""
    env_extra, playbook = variant_settings(variant)
    inventory = write_inventory(os.path.join(work, "inventory-%s.yml" % label), members, spec,
                                os.path.join(work, "reports"))
    timing_path = os.path.join(work, "timing-%s.json" % label)
    extra_vars = {"pd_serial": [len(members)]}
    argv = [ansible_bin("ansible-playbook"), "-i", inventory, playbook, "-e", json.dumps(extra_vars),
            "-f", str(max(5, len(members)))]
    module_log = os.path.join(work, "modules-%s.log" % label)
    env = ansible_env(dict({"ANSIBLE_CALLBACK_PLUGINS": os.path.join(work, "callback"),
                            "ANSIBLE_CALLBACKS_ENABLED": "pd_bench_timing",
                            "PD_BENCH_TIMING_OUT": timing_path,
                            "PD_BENCH_MODULE_LOG": module_log,
                            "ANSIBLE_PYTHON_INTERPRETER": os.path.join(work, "callback", "python-timed")},
                           **env_extra))

    cluster_before = {m.name: m.cpu_by_component() for m in all_members}
    machine_before, children_before, self_before = system_cpu(), children_cpu(), self_cpu()
    with Sampler() as sampler:
        started = time.time()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800, check=False)
        wall = time.time() - started
    machine_after, children_after, self_after = system_cpu(), children_cpu(), self_cpu()
    cluster_after = {m.name: m.cpu_by_component() for m in all_members}
    loadavg = open("/proc/loadavg").read().split()[:3]

    with open(os.path.join(work, "output-%s.txt" % label), "w") as handle:
        handle.write(proc.stdout + proc.stderr)

    by_component, in_wave = {}, 0.0
    names = {m.name for m in members}
    for name, after in cluster_after.items():
        for component, seconds in after.items():
            delta = seconds - cluster_before[name].get(component, 0.0)
            by_component[component] = by_component.get(component, 0.0) + delta
            if name in names:
                in_wave += delta
    ansible_cpu = children_after - children_before
    clusters_cpu = sum(by_component.values())
    machine_busy = machine_after[0] - machine_before[0]
    machine_total = machine_after[1] - machine_before[1]
    others = machine_busy - ansible_cpu - clusters_cpu - (self_after - self_before)
    result = {
        "label": label, "clusters": len(members), "variant": variant, "returncode": proc.returncode,
        "wall_seconds": round(wall, 2),
        "ansible_cpu_seconds": round(ansible_cpu, 2),
        "ansible_cpu_cores": round(ansible_cpu / wall, 3),
        "clusters_cpu_seconds": round(clusters_cpu, 2),
        "clusters_cpu_seconds_by_component": {k: round(v, 2) for k, v in sorted(by_component.items())},
        "wave_clusters_cpu_seconds": round(in_wave, 2),
        "machine_busy_seconds": round(machine_busy, 2),
        "machine_busy_share": round(machine_busy / machine_total, 3) if machine_total else None,
        # What neither the playbook, the simulated clusters nor this script used: other users' work.
        "other_processes_cpu_seconds": round(max(0.0, others), 2),
        "loadavg_after": [float(v) for v in loadavg],
    }
    result.update(sampler.summary())
    result["tasks"] = task_profile(timing_path)
    result["modules"] = module_profile(module_log)
    if result["modules"]:
        # The controller side: ansible-playbook itself, its forks, and the shells of the local connection.
        result["controller_cpu_seconds"] = round(ansible_cpu - result["modules"]["cpu_seconds"], 2)
    return result, proc


def module_profile(path):
    """CPU and wall of every module process (the interpreter is wrapped in /usr/bin/time)."""
    try:
        with open(path) as handle:
            lines = [line.split(None, 3) for line in handle if line.strip()]
    except OSError:
        return None
    by_module = {}
    for fields in lines:
        try:
            wall, user, system = float(fields[0]), float(fields[1]), float(fields[2])
        except (ValueError, IndexError):
            continue
        command = fields[3] if len(fields) > 3 else ""
        name = command.rsplit("AnsiballZ_", 1)[1].split(".py", 1)[0] if "AnsiballZ_" in command else "(pipelined)"
        entry = by_module.setdefault(name, {"count": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0})
        entry["count"] += 1
        entry["cpu_seconds"] += user + system
        entry["wall_seconds"] += wall
    for entry in by_module.values():
        entry["cpu_seconds_each"] = round(entry["cpu_seconds"] / entry["count"], 3)
        entry["cpu_seconds"] = round(entry["cpu_seconds"], 2)
        entry["wall_seconds"] = round(entry["wall_seconds"], 2)
    return {"count": sum(e["count"] for e in by_module.values()),
            "cpu_seconds": round(sum(e["cpu_seconds"] for e in by_module.values()), 2),
            "wall_seconds": round(sum(e["wall_seconds"] for e in by_module.values()), 2),
            "by_module": by_module}


def variant_settings(variant):
    if variant.startswith("playbook="):
        path = variant.split("=", 1)[1].split(":", 1)[0]
        return {}, os.path.abspath(path)
    return VARIANT_ENV[variant], MULTICLUSTER


def task_profile(path):
    """Where the wall time went: playbook start-up, per task (first start to last result) by action."""
    try:
        with open(path) as handle:
            events = json.load(handle)
    except (OSError, ValueError):
        return None
    load = events[0]["t"]
    end = events[-1]["t"]
    firsts = [e["t"] for e in events if e["ev"] == "task"]
    starts = {}
    host_seconds, spans, counts = {}, {}, {}
    task_first, task_last, task_action = {}, {}, {}
    for event in events:
        if event["ev"] == "start":
            starts[(event["uuid"], event["host"])] = event["t"]
            task_first.setdefault(event["uuid"], event["t"])
        elif event["ev"] in ("ok", "failed", "skipped", "unreachable"):
            began = starts.pop((event["uuid"], event["host"]), None)
            action = event["action"]
            task_action[event["uuid"]] = action
            task_last[event["uuid"]] = event["t"]
            if event["ev"] == "skipped":
                action += " (skipped)"
            if began is not None:
                host_seconds[action] = host_seconds.get(action, 0.0) + event["t"] - began
                counts[action] = counts.get(action, 0) + 1
    for uuid, last in task_last.items():
        first = task_first.get(uuid, last)
        action = task_action[uuid]
        spans[action] = spans.get(action, 0.0) + last - first
    return {
        "startup_seconds": round(firsts[0] - load, 2) if firsts else None,
        "callback_span_seconds": round(end - load, 2),
        # per action: summed over tasks, first host start to last host result (wall, overlapping across hosts)
        "span_seconds_by_action": {k: round(v, 2) for k, v in sorted(spans.items(), key=lambda kv: -kv[1])},
        # per action: summed over hosts and tasks (host-seconds), and how many host-task results
        "host_seconds_by_action": {k: round(v, 2) for k, v in sorted(host_seconds.items(), key=lambda kv: -kv[1])},
        "results_by_action": counts,
    }


def check_promoted(members, version):
    problems = []
    for member in members:
        status, image = canary_status(member), primary_image(member)
        if status.get("phase") != "Succeeded" or image != version:
            problems.append("%s: phase %s, primary %s (wanted %s)" % (member.name, status.get("phase"), image, version))
    return problems


# --------------------------------------------------------------------------- idle load

def measure_idle(members, seconds):
    """CPU of the running clusters (control plane, Prometheus, emulator) with nothing released."""
    before = {m.name: m.cpu_by_component() for m in members}
    machine_before, self_before, children_before = system_cpu(), self_cpu(), children_cpu()
    time.sleep(seconds)
    machine_after, self_after, children_after = system_cpu(), self_cpu(), children_cpu()
    after = {m.name: m.cpu_by_component() for m in members}
    per_cluster, by_component = [], {}
    for member in members:
        total = 0.0
        for component, value in after[member.name].items():
            delta = value - before[member.name].get(component, 0.0)
            by_component[component] = by_component.get(component, 0.0) + delta
            total += delta
        per_cluster.append(round(total / seconds, 3))
    clusters_cores = sum(per_cluster)
    machine_cores = (machine_after[0] - machine_before[0]) / seconds
    mine = (self_after - self_before + children_after - children_before) / seconds
    return {
        "seconds": seconds,
        "clusters_running": len(members),
        "cores_per_cluster": per_cluster,
        "cores_per_cluster_mean": round(clusters_cores / len(members), 3),
        "cores_by_component": {k: round(v / seconds, 3) for k, v in sorted(by_component.items())},
        "clusters_cores": round(clusters_cores, 3),
        "machine_busy_cores": round(machine_cores, 3),
        "other_processes_cores": round(max(0.0, machine_cores - clusters_cores - mine), 3),
    }


# --------------------------------------------------------------------------- main

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clusters", default="1,2,4,8", help="cluster counts, comma-separated (default 1,2,4,8)")
    parser.add_argument("--out", default=os.path.join("build", "bench", "scaling.json"))
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per N and variant (default 1)")
    parser.add_argument("--variants", default="linear",
                        help="comma-separated: linear, free, pipelining, free+pipelining, playbook=PATH[:name]")
    parser.add_argument("--nodes", type=int, default=1, help="kwok nodes per cluster (default 1)")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--interval", default="3s")
    parser.add_argument("--step-weight", type=int, default=25)
    parser.add_argument("--max-weight", type=int, default=50)
    parser.add_argument("--nice-clusters", type=int, default=0, metavar="N",
                        help="run the control planes, Prometheus and emulators at this nice value (e.g. 19), so "
                             "that they take only the CPU ansible leaves, as remote clusters would (default 0)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the clusters running at the end and reuse running ones (development only)")
    args = parser.parse_args(argv)
    args.counts = sorted({int(n) for n in args.clusters.split(",") if n.strip()})
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    for variant in args.variant_list:
        if not variant.startswith("playbook=") and variant not in VARIANT_ENV:
            parser.error("unknown variant %r (known: %s, playbook=PATH)" % (variant, ", ".join(VARIANT_ENV)))
    if not args.counts or args.counts[0] < 1 or args.counts[-1] > 8:
        parser.error("--clusters takes counts between 1 and 8, got %r" % args.clusters)
    return args


def variant_name(variant):
    if variant.startswith("playbook="):
        rest = variant.split("=", 1)[1]
        return rest.split(":", 1)[1] if ":" in rest else os.path.basename(rest)
    return variant


def _terminate(signum, _frame):
    # SIGTERM/SIGHUP take the same way out as Ctrl-C, so the finally block stops the clusters.
    raise KeyboardInterrupt("signal %d" % signum)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    out_path = os.path.abspath(args.out)
    work = os.path.join(os.path.dirname(out_path), "scaling-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "callback"))
    os.makedirs(os.path.join(work, "reports"))
    with open(os.path.join(work, "callback", "pd_bench_timing.py"), "w") as handle:
        handle.write(_TIMING_CALLBACK)
    # Every module process runs under /usr/bin/time (about a millisecond each): module CPU apart from the controller's.
    wrapper = os.path.join(work, "callback", "python-timed")
    with open(wrapper, "w") as handle:
        handle.write('#!/bin/sh\nexec /usr/bin/time -a -o "$PD_BENCH_MODULE_LOG" -f "%%e %%U %%S %%C" %s "$@"\n'
                     % sys.executable)
    os.chmod(wrapper, 0o755)

    spec = sample_app.canary_spec("istio", interval=args.interval, step_weight=args.step_weight,
                                  max_weight=args.max_weight, threshold=2)
    steps = list(range(args.step_weight, args.max_weight + 1, args.step_weight))
    report = {
        "benchmark": "scaling: one release wave on N local clusters (issue 8, part 3)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "versions": versions(),
        "schedule": {"provider": "istio", "interval": args.interval, "stepWeight": args.step_weight,
                     "maxWeight": args.max_weight, "steps": steps, "threshold": 2,
                     "metrics": "request-success-rate >= 99, request-duration <= 500 (10s windows)",
                     "canary_watch": True, "emulator_rps": 50, "nodes_per_cluster": args.nodes,
                     "target_replicas": 2},
        "method": ("all %d clusters run for the whole benchmark; each run releases a new healthy version on the "
                   "first N and times one ansible-playbook of playbooks/multicluster.yml with pd_serial [N] "
                   "(one wave) and forks max(5, N)" % args.counts[-1]),
        "counts": args.counts, "variants": [variant_name(v) for v in args.variant_list], "repeat": args.repeat,
        "runs": [],
    }
    members = []
    setup_started = time.time()
    try:
        for index in range(1, args.counts[-1] + 1):
            cluster = pdcluster.Cluster(PREFIX + str(index))
            if not args.keep:
                cluster.down()  # never measure what a killed session left behind
            members.append(None)
            state = cluster.up(nodes=args.nodes)
            members[-1] = Member(cluster, state)
            print("%s running (started in %ss)" % (cluster.name, state.get("ready_seconds", "?")), flush=True)
        for member in members:
            bootstrap(member)
        waits = [start_emulator(member, index, work) for index, member in enumerate(members)]
        for wait in waits:
            wait()
        report["setup_seconds"] = round(time.time() - setup_started, 1)
        for member in members:  # also back to 0 for clusters a --keep run left niced
            renice(member.pids().values(), args.nice_clusters)
        report["schedule"]["clusters_nice"] = args.nice_clusters

        # First sight: every primary takes over 6.7.0 (not timed as a release; all clusters, one wave).
        first, proc = run_wave(members, members, spec, "linear", work, "first-sight")
        if first["returncode"] != 0:
            raise RuntimeError("the first-sight run failed:\n" + (proc.stdout + proc.stderr)[-4000:])
        report["first_sight"] = {k: first[k] for k in ("wall_seconds", "ansible_cpu_seconds")}
        print("first sight on %d clusters: %.1fs" % (len(members), first["wall_seconds"]), flush=True)

        time.sleep(5)  # let the first run's after-effects (deployments, scrapes) settle
        print("measuring idle load for %ss ..." % args.idle_seconds, flush=True)
        report["idle"] = measure_idle(members, args.idle_seconds)
        report["idle"]["cores_first_n"] = {str(n): round(sum(report["idle"]["cores_per_cluster"][:n]), 3)
                                           for n in args.counts}
        print("idle: %.2f cores for %d clusters (%.3f per cluster), machine busy %.2f cores, others %.2f"
              % (report["idle"]["clusters_cores"], len(members), report["idle"]["cores_per_cluster_mean"],
                 report["idle"]["machine_busy_cores"], report["idle"]["other_processes_cores"]), flush=True)

        stamp = int(time.time()) % 100000
        serial = 0
        for repeat in range(args.repeat):
            for variant in args.variant_list:
                for count in args.counts:
                    serial += 1
                    version = "6.8.%d-b%d" % (serial, stamp)
                    wave = members[:count]
                    for member in wave:
                        sample_app.release(member.api, NAMESPACE, version)
                    label = "%s-n%d-r%d" % (variant_name(variant).replace("/", "_"), count, repeat + 1)
                    result, proc = run_wave(wave, members, spec, variant, work, label)
                    result["variant"] = variant_name(variant)
                    result["repeat"] = repeat + 1
                    result["version"] = version
                    result["problems"] = check_promoted(wave, version)
                    if proc.returncode != 0:
                        result["problems"].append("ansible-playbook exit %d" % proc.returncode)
                    report["runs"].append(result)
                    print("%-16s N=%d run %d: %6.1fs wall, ansible %5.1f CPU-s, clusters %5.1f CPU-s, "
                          "others %4.1f CPU-s%s" % (result["variant"], count, repeat + 1, result["wall_seconds"],
                                                    result["ansible_cpu_seconds"], result["clusters_cpu_seconds"],
                                                    result["other_processes_cpu_seconds"],
                                                    "  PROBLEMS: %s" % result["problems"] if result["problems"]
                                                    else ""), flush=True)
                    _save(report, out_path)
    finally:
        for member in members:
            if member is not None:
                stop_emulator(member)
        if not args.keep:
            for index in range(1, len(members) + 1):
                with contextlib.suppress(Exception):
                    pdcluster.Cluster(PREFIX + str(index)).down()
        report["summary"] = summarise(report)
        _save(report, out_path)
    print_table(report)
    print("wrote %s" % out_path)
    return 0 if all(not run["problems"] for run in report["runs"]) and report["runs"] else 1


def summarise(report):
    summary = {}
    idle = report.get("idle") or {}
    for variant in report["variants"]:
        rows = {}
        for count in report["counts"]:
            runs = [r for r in report["runs"] if r["variant"] == variant and r["clusters"] == count]
            if not runs:
                continue
            rows[str(count)] = {
                "runs": len(runs),
                "ok": all(not r["problems"] for r in runs),
                "wall_seconds": [r["wall_seconds"] for r in runs],
                "wall_seconds_median": round(statistics.median(r["wall_seconds"] for r in runs), 2),
                "ansible_cpu_seconds_median": round(statistics.median(r["ansible_cpu_seconds"] for r in runs), 2),
                "clusters_cpu_seconds_median": round(statistics.median(r["clusters_cpu_seconds"] for r in runs), 2),
                "module_cpu_seconds_median": _median_of(runs, lambda r: (r.get("modules") or {}).get("cpu_seconds")),
                "modules_per_run": _median_of(runs, lambda r: (r.get("modules") or {}).get("count")),
                "controller_cpu_seconds_median": _median_of(runs, lambda r: r.get("controller_cpu_seconds")),
                "other_processes_cpu_seconds_max": max(r["other_processes_cpu_seconds"] for r in runs),
                "machine_busy_share_median": statistics.median(r["machine_busy_share"] for r in runs),
                "idle_cores_of_these_clusters": (idle.get("cores_first_n") or {}).get(str(count)),
            }
        base = rows.get("1") or (rows[min(rows, key=int)] if rows else None)
        for row in rows.values():
            row["ratio_to_one"] = round(row["wall_seconds_median"] / base["wall_seconds_median"], 3) if base else None
            row["ansible_cpu_ratio_to_one"] = (round(row["ansible_cpu_seconds_median"]
                                                     / base["ansible_cpu_seconds_median"], 2) if base else None)
        summary[variant] = rows
    return summary


def _median_of(runs, get):
    values = [get(r) for r in runs if get(r) is not None]
    return round(statistics.median(values), 2) if values else None


def print_table(report):
    idle = report.get("idle") or {}
    print()
    print("machine: %(nproc)s cores, %(cpu_model)s, %(memory_gib)s GiB" % report["machine"])
    sched = report["schedule"]
    print("schedule: %s, interval %s, steps %s, %d clusters running throughout"
          % (sched["provider"], sched["interval"], sched["steps"], len(idle.get("cores_per_cluster") or [])))
    if idle:
        print("idle (nothing released): %.3f cores per cluster, %.2f cores for all %d; machine busy %.2f cores, "
              "others %.2f" % (idle["cores_per_cluster_mean"], idle["clusters_cores"], idle["clusters_running"],
                               idle["machine_busy_cores"], idle["other_processes_cores"]))
    header = "%-16s %3s %4s %8s %6s %10s %8s %8s %9s %8s %10s %9s %8s %4s" % (
        "variant", "N", "runs", "wall s", "ratio", "ansible s", "modules", "module s", "control s", "ans/wall",
        "clusters s", "idle cor", "others s", "ok")
    print(header)
    print("-" * len(header))
    for variant, rows in (report.get("summary") or {}).items():
        for count, row in sorted(rows.items(), key=lambda kv: int(kv[0])):
            print("%-16s %3s %4d %8.1f %6.2f %10.1f %8s %8s %9s %8.2f %10.1f %9s %8.1f %4s" % (
                variant, count, row["runs"], row["wall_seconds_median"], row["ratio_to_one"],
                row["ansible_cpu_seconds_median"], _fmt(row["modules_per_run"], "%d"),
                _fmt(row["module_cpu_seconds_median"]), _fmt(row["controller_cpu_seconds_median"]),
                row["ansible_cpu_seconds_median"] / row["wall_seconds_median"],
                row["clusters_cpu_seconds_median"], _fmt(row["idle_cores_of_these_clusters"], "%.2f"),
                row["other_processes_cpu_seconds_max"], "yes" if row["ok"] else "NO"))
    print("ansible s = CPU of the ansible-playbook process tree; module s = of its module processes; control s = "
          "the rest (controller, forks, shells); clusters s = CPU of all running control planes, Prometheus and "
          "emulators during the run; idle cor = idle cores of the N clusters with nothing released; others s = "
          "CPU of processes outside the benchmark (contention)")
    print("target: 8 clusters <= 1.3 x one cluster (wall, median of runs)")


def _fmt(value, pattern="%.1f"):
    return pattern % value if value is not None else "-"


def _save(report, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(report, handle, indent=2, sort_keys=False)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
