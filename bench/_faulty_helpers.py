"""Observation helpers of bench/faulty_share.py (dev tooling, not shipped).

The cluster, the runner ServiceAccount, ansible-playbook runs (with each output line stamped as it
is read: ``_common.run_playbook(..., stamp_lines=True)``) and the machine description come from
bench/_common.py; what is here is specific to faulty_share: Kubernetes watches of the
VirtualService and the Canary, the emulator traffic sampler, and parsing the playbook's stamped
output (task banners, failed task results). Everything uses one clock, ``time.time()`` of the
bench process (the modules run on the same machine, so their own ``time.time()`` values, such as
``decided_at``, are on it too), so that the instants can be subtracted from each other.
"""

import json
import threading
import time

GROUP, VERSION, PLURAL = "progressive.delivery", "v1alpha1", "canaries"
ISTIO_GROUP, ISTIO_VERSION, VS_PLURAL = "networking.istio.io", "v1", "virtualservices"


# ------------------------------------------------------------------------------------ playbook output

def task_starts(lines):
    """[(time, task name)] from the TASK banners of the default callback."""
    found = []
    for moment, text in lines:
        if text.startswith("TASK [") and "]" in text:
            found.append((moment, text[len("TASK ["):text.rindex("]")]))
    return found


FATAL = "FAILED! => "


def failed_results(lines):
    """[(time printed, task name, result dict)] of the failed task results in the output.

    The default callback prints ``fatal: [host]: FAILED! => {json}`` with the result on one line
    (result_format json, not pretty, verbosity < 3); the task is the last banner before it.
    Results that are not one line of JSON are skipped.
    """
    found = []
    task = None
    for moment, text in lines:
        if text.startswith("TASK [") and "]" in text:
            task = text[len("TASK ["):text.rindex("]")]
            continue
        if not text.startswith(("fatal:", "failed:")) or FATAL not in text:
            continue
        try:
            result = json.loads(text.split(FATAL, 1)[1])
        except ValueError:
            continue
        if isinstance(result, dict):
            found.append((moment, task, result))
    return found


def module_decision(lines):
    """The first failed task result carrying the module's ``decided_at`` (metric_watch,
    metric_gate): (time printed, task name, result), or None."""
    for moment, task, result in failed_results(lines):
        if isinstance(result.get("decided_at"), (int, float)):
            return moment, task, result
    return None


# ------------------------------------------------------------------------------------ observation

def vs_canary_weight(vs, app):
    """The canary's weight in a VirtualService: the largest over its http routes (0 when none)."""
    best = 0
    for route in ((vs or {}).get("spec") or {}).get("http") or []:
        for dest in route.get("route") or []:
            host = ((dest.get("destination") or {}).get("host") or "")
            if host.split(".")[0] == app + "-canary":
                best = max(best, int(dest.get("weight") or 0))
    return best


class Watcher(object):
    """Watches one namespace's VirtualServices and Canaries with Kubernetes watches.

    Records, with the bench's clock at the moment each event arrives: every change of the
    VirtualService canary weight (``weights``) and every new gateHistory entry (``gates``).
    """

    def __init__(self, kubeconfig, namespace, app, on_weight=None):
        self.kubeconfig, self.namespace, self.app = kubeconfig, namespace, app
        self.on_weight = on_weight
        self.weights = []       # [(time, canary weight)]
        self.gates = []         # [(time, entry)]
        self.phases = []        # [(time, phase)]
        self._seen_gates = None
        self._last_weight = None
        self._last_phase = None
        self._stop = threading.Event()
        self._watches = []
        self._threads = []
        self._lock = threading.Lock()

    def start(self):
        for target in (self._watch_vs, self._watch_canary):
            thread = threading.Thread(target=self._loop, args=(target,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self):
        self._stop.set()
        for watch in list(self._watches):
            try:
                watch.stop()
            except Exception:  # pylint: disable=broad-except
                pass
        for thread in self._threads:
            thread.join(timeout=12)

    def _loop(self, target):
        from kubernetes import config
        api_client = config.new_client_from_config(config_file=self.kubeconfig)
        while not self._stop.is_set():
            try:
                target(api_client)
            except Exception:  # pylint: disable=broad-except
                time.sleep(0.1)  # expired or not yet existing resource: start again

    def _stream(self, api_client, group, version, plural):
        from kubernetes import client, watch
        api = client.CustomObjectsApi(api_client)
        watcher = watch.Watch()
        self._watches.append(watcher)
        try:
            for event in watcher.stream(api.list_namespaced_custom_object, group, version, self.namespace, plural,
                                        timeout_seconds=10):
                yield time.time(), event
                if self._stop.is_set():
                    return
        finally:
            self._watches.remove(watcher)

    def _watch_vs(self, api_client):
        for moment, event in self._stream(api_client, ISTIO_GROUP, ISTIO_VERSION, VS_PLURAL):
            obj = event["object"]
            if (obj.get("metadata") or {}).get("name") != self.app:
                continue
            weight = 0 if event["type"] == "DELETED" else vs_canary_weight(obj, self.app)
            with self._lock:
                if weight != self._last_weight:
                    self._last_weight = weight
                    self.weights.append((moment, weight))
                    if self.on_weight:
                        self.on_weight(moment, weight)

    def _watch_canary(self, api_client):
        for moment, event in self._stream(api_client, GROUP, VERSION, PLURAL):
            obj = event["object"]
            if (obj.get("metadata") or {}).get("name") != self.app:
                continue
            status = obj.get("status") or {}
            history = status.get("gateHistory") or []
            with self._lock:
                if self._seen_gates is None:
                    # History from before the watch started is not this run's.
                    self._seen_gates = {json.dumps(entry, sort_keys=True) for entry in history}
                for entry in history:
                    key = json.dumps(entry, sort_keys=True)
                    if key not in self._seen_gates:
                        self._seen_gates.add(key)
                        self.gates.append((moment, entry))
                phase = status.get("phase")
                if phase != self._last_phase:
                    self._last_phase = phase
                    self.phases.append((moment, phase))

    def prime(self, canary_obj):
        """The gate history already there before the run (so the first event is not taken as new)."""
        history = ((canary_obj or {}).get("status") or {}).get("gateHistory") or []
        with self._lock:
            self._seen_gates = {json.dumps(entry, sort_keys=True) for entry in history}


class TrafficSampler(object):
    """Samples the emulator's /stats counters of one app every ``period`` seconds.

    ``samples`` is [(time, all user requests, requests of the faulty version)]; ``at(t)`` gives
    the counters at any instant by linear interpolation, to count the requests of a window.
    """

    def __init__(self, emu, namespace, app, is_faulty, period=0.2):
        self.emu, self.namespace, self.app, self.is_faulty = emu, namespace, app, is_faulty
        self.period = period
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        stats = self.emu.stats(self.namespace, self.app) or {}
        faulty = sum(v.get("requests", 0) for k, v in (stats.get("by_version") or {}).items() if self.is_faulty(k))
        entry = (time.time(), stats.get("requests", 0), faulty)
        self.samples.append(entry)
        return entry

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period)

    def at(self, moment):
        samples = self.samples
        if not samples:
            return 0.0, 0.0
        if moment <= samples[0][0]:
            return float(samples[0][1]), float(samples[0][2])
        for (t1, r1, f1), (t2, r2, f2) in zip(samples, samples[1:]):
            if t1 <= moment <= t2:
                share = (moment - t1) / (t2 - t1) if t2 > t1 else 0.0
                return r1 + share * (r2 - r1), f1 + share * (f2 - f1)
        return float(samples[-1][1]), float(samples[-1][2])

    def per_second(self, start, stop):
        """[(second start, requests in that second)] between start and stop (interpolated)."""
        out = []
        moment = start
        while moment < stop - 1e-9:
            end = min(moment + 1.0, stop)
            out.append((moment - start, self.at(end)[0] - self.at(moment)[0]))
            moment = end
        return out
