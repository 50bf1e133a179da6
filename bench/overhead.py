"""Benchmark part 1 (issue 8): control overhead per weight step, and API requests per step.

The same healthy canary release on the same private local cluster (hack/pdcluster.py: real
kube-apiserver and Prometheus, hack/emulator.py producing the app's Istio metrics), run by

* ``collection_watch``   -- the role progressive.delivery.canary, canary_watch: true (default)
* ``collection_nowatch`` -- the same with canary_watch: false (a plain wait per interval)
* ``handrolled``         -- bench/handrolled.yml: kubernetes.core.k8s/k8s_scale/k8s_info,
  ansible.builtin.uri against Prometheus, ansible.builtin.assert and ansible.builtin.pause

each with two step counts (stepWeights of --steps, default 5 and 10), all with the bench
virtualenv's ansible-playbook (.venv-bench, bench/requirements.txt) and the same ANSIBLE_*
settings, as the same runner ServiceAccount (bound to rbac/clusterrole.yaml).

* overhead per step = (wall time of ansible-playbook - steps x interval) / steps, per run;
  also the marginal cost of one more step (slope between the two step counts) and the fixed
  per-run cost (intercept), which separate init/promotion from the steps.
* API requests: the runner's requests in the API server's audit log during each run, by verb
  and resource; per step = slope between the two step counts, fixed = intercept.
* profile: per-task durations (ansible.posix.json callback) of one run of each variant, and
  micro-measurements (an empty task, a module round trip, python + kubernetes import, one API
  request on a fresh and a warm connection).

    .venv/bin/python bench/overhead.py [--out build/bench/overhead.json] [--repeat N]
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

sys.path.insert(0, _common.HACK)
import emulator  # noqa: E402
import sample_app  # noqa: E402

APP = sample_app.APP
HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("collection_watch", "collection_nowatch", "handrolled")
MIN_SUCCESS_RATE = 99
METRIC_WINDOW = "10s"
REPLICAS = 2
# Set on every run of every variant. Pipelining sends the module over the connection's stdin
# instead of writing it to a remote temp dir first: fewer file operations per task for both.
COMMON_ANSIBLE = {"ANSIBLE_PIPELINING": "1"}


def step_weights(steps, max_weight=50):
    """``steps`` evenly spaced weights up to ``max_weight``: 5 -> [10, 20, 30, 40, 50]."""
    return [int(round(max_weight * (index + 1) / float(steps))) for index in range(steps)]


def canary_spec(steps, interval):
    spec = sample_app.canary_spec("istio", interval="%ds" % interval, stepWeights=step_weights(steps))
    # One metric check per step, as the hand-rolled playbook does.
    spec["analysis"]["metrics"] = [{"name": "request-success-rate", "interval": METRIC_WINDOW,
                                    "thresholdRange": {"min": MIN_SUCCESS_RATE}}]
    return spec


class Bench(object):
    def __init__(self, world, admin, runner, interval, report_dir):
        self.world = world
        self.admin = admin
        self.runner = runner
        self.interval = interval
        self.report_dir = report_dir
        self.namespaces = {}
        self.releases = collections.Counter()

    # -- runs -----------------------------------------------------------------------------------

    def role_plays(self, namespace, steps, watch):
        role_vars = {"canary_name": APP, "canary_namespace": namespace,
                     "canary_auth": {"kubeconfig": self.runner},
                     "canary_metrics_source": {"type": "prometheus", "address": self.world.prometheus_url},
                     "canary_report_dir": self.report_dir, "canary_spec": canary_spec(steps, self.interval),
                     "canary_watch": watch}
        return [{"name": "release", "hosts": "localhost", "gather_facts": False,
                 "roles": [{"role": "progressive.delivery.canary", "vars": role_vars}]}]

    def handrolled_vars(self, namespace, steps):
        return {"app": APP, "app_namespace": namespace, "kubeconfig": self.runner,
                "prometheus_url": self.world.prometheus_url, "step_weights": step_weights(steps),
                "interval_seconds": self.interval, "replicas": REPLICAS, "min_success_rate": MIN_SUCCESS_RATE,
                "metric_window": METRIC_WINDOW}

    def setup(self, variant, steps):
        """A namespace per variant with the app bootstrapped by the collection (Canary, primary,
        Services, VirtualService at 100/0): the hand-rolled playbook starts from the same objects."""
        namespace = _common.new_namespace(self.admin, "ovh-" + variant.split("_")[-1][:6])
        sample_app.release(self.admin, namespace, "1.0.0", replicas=REPLICAS)
        _common.run_playbook(self.role_plays(namespace, steps, False), env=COMMON_ANSIBLE).check()
        self.namespaces[variant] = namespace
        return namespace

    def release(self, variant):
        """A new revision of the target (the run's reason to exist)."""
        self.releases[variant] += 1
        sample_app.release(self.admin, self.namespaces[variant], "1.1.%d" % self.releases[variant], replicas=REPLICAS)
        return "1.1.%d" % self.releases[variant]

    def run(self, variant, steps, env=None):
        namespace = self.namespaces[variant]
        version = self.release(variant)
        env = dict(COMMON_ANSIBLE, **(env or {}))
        if variant == "handrolled":
            run = _common.run_playbook(os.path.join(HERE, "handrolled.yml"),
                                       extra_vars=self.handrolled_vars(namespace, steps), env=env)
        else:
            run = _common.run_playbook(self.role_plays(namespace, steps, variant == "collection_watch"), env=env)
        run.check()
        self.check_promoted(namespace, version)
        return run

    def check_promoted(self, namespace, version):
        from kubernetes import client
        apps = client.AppsV1Api(self.admin)
        primary = apps.read_namespaced_deployment(APP + "-primary", namespace)
        image = primary.spec.template.spec.containers[0].image
        target = apps.read_namespaced_deployment(APP, namespace)
        if not image.endswith(":" + version) or target.spec.replicas != 0:
            raise RuntimeError("%s: not promoted (primary %s, target replicas %s)"
                               % (namespace, image, target.spec.replicas))

    def measure(self, variant, steps, env=None):
        run = self.run(variant, steps, env)
        api = _common.api_requests(self.world.audit_log, run.started, run.ended,
                                   namespaces={self.namespaces[variant]})
        return {"variant": variant, "steps": steps, "interval": self.interval, "wall": round(run.wall, 3),
                "waits": steps * self.interval,
                "overhead_per_step": round((run.wall - steps * self.interval) / steps, 3),
                "api_total": api["total"], "api": api["by_request"]}


# --------------------------------------------------------------------------- analysis

def _slope(points):
    """(slope, intercept) of the least-squares line through (x, y) points."""
    xs = [point[0] for point in points]
    ys = [point[1] for point in points]
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if not var:
        return None, None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
    return slope, mean_y - slope * mean_x


def summarise(runs, interval, step_counts):
    summary = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        slope, intercept = _slope([(r["steps"], r["wall"]) for r in mine])
        api_slope, api_intercept = _slope([(r["steps"], r["api_total"]) for r in mine])
        keys = sorted(set(k for r in mine for k in r["api"]))
        per_request = {}
        for key in keys:
            k_slope, k_intercept = _slope([(r["steps"], r["api"].get(key, 0)) for r in mine])
            per_request[key] = {"per_step": round(k_slope, 2) if k_slope is not None else None,
                                "fixed": round(k_intercept, 2) if k_intercept is not None else None}
        by_steps = {}
        for steps in step_counts:
            these = [r for r in mine if r["steps"] == steps]
            if these:
                by_steps[str(steps)] = {
                    "runs": len(these),
                    "wall_median": round(statistics.median(r["wall"] for r in these), 3),
                    "overhead_per_step_median": round(statistics.median(r["overhead_per_step"] for r in these), 3),
                    "api_total_median": statistics.median(r["api_total"] for r in these),
                    "api_per_step_naive": round(statistics.median(r["api_total"] for r in these) / float(steps), 2),
                }
        summary[variant] = {
            "by_steps": by_steps,
            # The brief's definition, at the smaller step count (init and promotion included).
            "overhead_per_step": by_steps[str(min(step_counts))]["overhead_per_step_median"],
            # The cost of one more step beyond its interval, and what a run costs besides its steps.
            "marginal_overhead_per_step": round(slope - interval, 3) if slope is not None else None,
            "fixed_overhead_per_run": round(intercept, 3) if intercept is not None else None,
            "api_per_step": round(api_slope, 2) if api_slope is not None else None,
            "api_fixed_per_run": round(api_intercept, 2) if api_intercept is not None else None,
            "api_by_request": per_request,
        }
    base = summary.get("handrolled")
    if base:
        for variant in ("collection_watch", "collection_nowatch"):
            if variant in summary:
                mine = summary[variant]
                mine["ratio_to_handrolled"] = _ratio(mine["overhead_per_step"], base["overhead_per_step"])
                mine["marginal_ratio_to_handrolled"] = _ratio(mine["marginal_overhead_per_step"],
                                                              base["marginal_overhead_per_step"])
    return summary


def _ratio(mine, base):
    if mine is None or not base or base <= 0:
        return None
    return round(mine / base, 2)


# --------------------------------------------------------------------------- profile

def _iso(stamp):
    return datetime.strptime(stamp[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=timezone.utc).timestamp()


def task_spans(json_stdout):
    """[(task name, start, end, skipped)] from the ansible.posix.json callback's output."""
    start = json_stdout.find("{")
    document = json.loads(json_stdout[start:])
    spans = []
    for play in document.get("plays", []):
        for task in play.get("tasks", []):
            info = task["task"]
            duration = info.get("duration") or {}
            if not duration.get("start") or not duration.get("end"):
                continue
            hosts = (task.get("hosts") or {}).values()
            skipped = bool(hosts) and all(h.get("skipped") for h in hosts)
            spans.append((info["name"], _iso(duration["start"]), _iso(duration["end"]), skipped))
    return spans


def task_durations(json_stdout):
    """{task name: [seconds, ...]} (skipped tasks marked) from the json callback's output."""
    found = collections.defaultdict(list)
    for name, began, ended, skipped in task_spans(json_stdout):
        found[name + (" [skipped]" if skipped else "")].append(ended - began)
    return found


def profile_run(bench, variant, steps):
    """One run with the json callback: where the wall time goes, task by task, and which task
    made which API requests (audit events matched to the task that was running)."""
    run = bench.run(variant, steps, env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
                                         "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})
    spans = task_spans(run.stdout)
    durations = collections.defaultdict(list)
    for name, began, ended, skipped in spans:
        durations[name + (" [skipped]" if skipped else "")].append(ended - began)
    in_tasks = sum(sum(v) for v in durations.values())
    rows = sorted(((name, len(v), sum(v)) for name, v in durations.items()), key=lambda row: -row[2])
    events = _common.audit_events(bench.world.audit_log, run.started, run.ended,
                                  namespaces={bench.namespaces[variant]})
    requests = collections.defaultdict(collections.Counter)
    for event in events:
        when = _common._event_time(event)
        owner = next((name for name, began, ended, _task in spans if began - 0.05 <= when <= ended + 0.05),
                     "(between tasks)")
        requests[owner][_common.request_key(event)] += 1
    return {"variant": variant, "steps": steps, "wall": round(run.wall, 3),
            "sum_of_task_durations": round(in_tasks, 3),
            "outside_tasks": round(run.wall - in_tasks, 3),
            "tasks": [{"task": name, "count": count, "total": round(total, 3), "mean": round(total / count, 3)}
                      for name, count, total in rows],
            "api_by_task": dict((task, dict(sorted(counter.items()))) for task, counter in requests.items())}


def micro_profile(bench):
    """Costs that make up one module task: measured separately, N times each, in one playbook."""
    namespace = bench.namespaces["collection_nowatch"]
    n = 8
    auth = {"kubeconfig": bench.runner}
    source = {"type": "prometheus", "address": bench.world.prometheus_url}
    tasks = []

    def add(name, task):
        for index in range(n):
            tasks.append(dict({"name": "%s #%d" % (name, index)}, **task))

    add("controller-only task (debug)", {"ansible.builtin.debug": {"msg": "x"}})
    add("trivial module round trip (ping)", {"ansible.builtin.ping": {}})
    add("mesh_weight", {"progressive.delivery.mesh_weight": dict(auth, name=APP, namespace=namespace, weight=0)})
    add("metric_gate (record: false)", {"progressive.delivery.metric_gate": dict(
        auth, name=APP, namespace=namespace, source=source, record=False)})
    add("metric_watch 0s", {"progressive.delivery.metric_watch": dict(
        auth, name=APP, namespace=namespace, source=source, duration="0s", record=False)})
    add("canary_info", {"progressive.delivery.canary_info": dict(auth, name=APP, namespace=namespace)})
    add("kubernetes.core.k8s patch VirtualService", {"kubernetes.core.k8s": {
        "kubeconfig": bench.runner, "state": "patched", "merge_type": "merge",
        "api_version": "networking.istio.io/v1", "kind": "VirtualService", "name": APP, "namespace": namespace,
        "definition": {"spec": {"http": [{"route": [{"destination": {"host": APP + "-primary"}, "weight": 100},
                                                    {"destination": {"host": APP + "-canary"}, "weight": 0}]}]}}}})
    add("uri Prometheus query", {"ansible.builtin.uri": {
        "url": bench.world.prometheus_url + "/api/v1/query?query=up", "return_content": True}})
    plays = [{"name": "micro", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    run = _common.run_playbook(plays, env=dict(COMMON_ANSIBLE, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                                               ANSIBLE_CALLBACK_RESULT_FORMAT="json")).check()
    durations = task_durations(run.stdout)
    grouped = collections.defaultdict(list)
    for name, values in durations.items():
        base = name.split(" #")[0]
        # The first of each kind pays for cold caches (discovery file, imports): reported apart.
        grouped[base].extend(values)
    rows = []
    for name, values in grouped.items():
        rows.append({"task": name, "n": len(values), "first": round(values[0], 3),
                     "median_rest": round(statistics.median(values[1:]), 3) if len(values) > 1 else None})

    python = os.path.join(_common.BENCH_VENV, "bin", "python")

    def timed(code, repeat=5):
        values = []
        for _attempt in range(repeat):
            began = time.time()
            subprocess.run([python, "-c", code], check=True, capture_output=True)
            values.append(time.time() - began)
        return round(statistics.median(values), 3)

    bare = timed("pass")
    imports = {
        "python start-up": bare,
        "+ import ansible.module_utils.basic": round(timed("import ansible.module_utils.basic") - bare, 3),
        "+ import kubernetes.client, kubernetes.dynamic": round(
            timed("import kubernetes.client, kubernetes.dynamic") - bare, 3),
        "+ import requests": round(timed("import requests") - bare, 3),
    }
    api_code = ("import time, sys\n"
                "from kubernetes import config, client\n"
                "t0 = time.time(); api = config.new_client_from_config(config_file=sys.argv[1])\n"
                "t1 = time.time(); core = client.CustomObjectsApi(api)\n"
                "core.get_namespaced_custom_object('progressive.delivery', 'v1alpha1', sys.argv[2], 'canaries', 'podinfo')\n"
                "t2 = time.time()\n"
                "for _ in range(10): core.get_namespaced_custom_object('progressive.delivery', 'v1alpha1', sys.argv[2], 'canaries', 'podinfo')\n"
                "t3 = time.time()\n"
                "print(t1 - t0, t2 - t1, (t3 - t2) / 10)")
    values = []
    for _attempt in range(3):
        out = subprocess.run([python, "-c", api_code, bench.runner, namespace], check=True, capture_output=True,
                             text=True).stdout.split()
        values.append([float(v) for v in out])
    api = {"load kubeconfig": round(statistics.median(v[0] for v in values), 4),
           "first request (TCP + TLS handshake + GET)": round(statistics.median(v[1] for v in values), 4),
           "warm GET of the Canary": round(statistics.median(v[2] for v in values), 4)}
    return {"tasks": rows, "imports": imports, "api_request": api}


# --------------------------------------------------------------------------- main

def print_table(summary, runs, interval):
    print()
    print("interval %ss; overhead/step = (wall - steps x interval) / steps; marginal = slope - interval" % interval)
    head = "%-20s %6s %10s %10s %10s %10s %9s %9s %8s" % (
        "variant", "steps", "wall s", "ovh/step", "marginal", "fixed s", "API/step", "API fix", "ratio")
    print(head)
    print("-" * len(head))
    for variant, entry in summary.items():
        for steps, figures in sorted(entry["by_steps"].items(), key=lambda kv: int(kv[0])):
            print("%-20s %6s %10.2f %10.3f %10s %10s %9s %9s %8s" % (
                variant, steps, figures["wall_median"], figures["overhead_per_step_median"],
                entry["marginal_overhead_per_step"], entry["fixed_overhead_per_run"], entry["api_per_step"],
                entry["api_fixed_per_run"], entry.get("ratio_to_handrolled", "")))
    print()
    for variant, entry in summary.items():
        print("API requests of %s (per step / fixed per run):" % variant)
        for key, value in entry["api_by_request"].items():
            if value["per_step"] or value["fixed"]:
                print("    %-55s %6s %8s" % (key, value["per_step"], value["fixed"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--out", default=os.path.join(_common.REPO, "build", "bench", "overhead.json"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant and step count (default 3)")
    parser.add_argument("--steps", default="5,10", help="two (or more) step counts, comma-separated")
    parser.add_argument("--interval", type=int, default=3, help="analysis interval in seconds (default 3)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--cluster", default="bench-overhead", help="private cluster name")
    parser.add_argument("--reuse-cluster", action="store_true",
                        help="use the cluster if it is already running and leave it running (development)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile runs")
    args = parser.parse_args(argv)
    step_counts = sorted(int(s) for s in args.steps.split(","))
    variants = [v for v in args.variants.split(",") if v]
    for variant in variants:
        if variant not in VARIANTS:
            parser.error("unknown variant %s; choose from %s" % (variant, ", ".join(VARIANTS)))

    _common.ensure_bench_venv()
    result = {"benchmark": "overhead", "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": _common.machine(), "versions": _common.package_versions(),
              "settings": {"interval_seconds": args.interval, "step_counts": step_counts,
                           "step_weights": {str(s): step_weights(s) for s in step_counts},
                           "repeat": args.repeat, "replicas": REPLICAS, "metric": "request-success-rate",
                           "metric_window": METRIC_WINDOW, "emulator_rps": 50,
                           "ansible_env": dict(_common.BASE_ANSIBLE_ENV, **COMMON_ANSIBLE),
                           "runner": _common.RUNNER_USER, "cluster": args.cluster}}
    build = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(build, exist_ok=True)
    began = time.time()
    with _common.local_cluster(args.cluster, nodes=2, reuse=args.reuse_cluster) as world:
        result["versions"]["cluster"] = world.versions
        admin = world.api_client()
        _common.install_crd_and_rbac(admin)
        runner = _common.runner_kubeconfig(admin, world.kubeconfig, os.path.join(build, "overhead-runner.kubeconfig"))
        report_dir = os.path.join(build, "overhead-reports")
        os.makedirs(report_dir, exist_ok=True)
        bench = Bench(world, admin, runner, args.interval, report_dir)
        with emulator.Emulator(api_client=admin, apps=[], rps=50, seed=7, targets_dir=world.targets_dir) as emu:
            for variant in set(variants) | {"collection_nowatch"}:
                namespace = bench.setup(variant, step_counts[0])
                emu.add_app(namespace, APP)
            # Warm-up, not measured: discovery caches of both clients, the canary's series in Prometheus.
            for variant in variants:
                bench.run(variant, 1)
            runs = []
            for repeat in range(args.repeat):
                for steps in step_counts:
                    # Alternate the order so a slow spell of the machine does not hit one variant only.
                    order = variants if (repeat + steps) % 2 == 0 else list(reversed(variants))
                    for variant in order:
                        entry = bench.measure(variant, steps)
                        entry["repeat"] = repeat
                        runs.append(entry)
                        print("%-20s steps %2d wall %6.2fs overhead/step %.3fs API %d"
                              % (variant, steps, entry["wall"], entry["overhead_per_step"], entry["api_total"]),
                              flush=True)
            result["runs"] = runs
            result["summary"] = summarise(runs, args.interval, step_counts)
            if not args.no_profile:
                result["profile"] = {"runs": [profile_run(bench, v, step_counts[0]) for v in variants],
                                     "micro": micro_profile(bench)}
    result["elapsed_seconds"] = round(time.time() - began, 1)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    print_table(result["summary"], result["runs"], args.interval)
    print("\nwritten to %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
