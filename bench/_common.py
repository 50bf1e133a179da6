"""Shared helpers of the benchmarks under bench/ (dev tooling, not shipped).

Generic on purpose: a private local cluster (hack/pdcluster.py), a runner ServiceAccount
kubeconfig bound to the shipped ClusterRole, the bench virtualenv (.venv-bench, built from
bench/requirements.txt), timed ansible-playbook runs, API request counts from the API
server's audit log, and a description of the machine.

    import _common
    with _common.local_cluster("bench-x", nodes=2) as world:      # down() on exit, also on error
        admin = world.api_client()
        _common.install_crd_and_rbac(admin)
        runner = _common.runner_kubeconfig(admin, world.kubeconfig, "build/bench/runner.kubeconfig")
        ns = _common.new_namespace(admin, "b")
        run = _common.run_playbook("play.yml", extra_vars={...}, env={...})   # wall time, rc, output
        counts = _common.api_requests(world.audit_log, run.started, run.ended, user=_common.RUNNER_USER)
        run = _common.run_playbook(plays, stamp_lines=True)   # run.lines: [(time.time(), line)] as printed

One clock throughout: ``time.time()`` of the bench process (the playbook's modules run on the same
machine, so a module's own ``time.time()`` can be subtracted from it).
"""

import collections
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HACK = os.path.join(REPO, "hack")
if HACK not in sys.path:
    sys.path.insert(0, HACK)

import pdcluster  # noqa: E402  (dev tooling, not a package)
from pdworld import (bind_runner, collections_path, install_canary_crd,  # noqa: E402
                     new_namespace as _new_namespace, token_kubeconfig)

BENCH_VENV = os.environ.get("PD_BENCH_VENV", os.path.join(REPO, ".venv-bench"))
BENCH_REQUIREMENTS = os.path.join(REPO, "bench", "requirements.txt")
RUNNER_NAMESPACE, RUNNER_ACCOUNT = "pd-system", "pd-runner"
RUNNER_USER = "system:serviceaccount:%s:%s" % (RUNNER_NAMESPACE, RUNNER_ACCOUNT)


# --------------------------------------------------------------------------- the cluster

class World(object):
    """A running local cluster: admin kubeconfig, Prometheus, file_sd dir, audit log."""

    def __init__(self, cluster, state):
        self.cluster = cluster
        self.name = cluster.name
        self.dir = cluster.dir
        self.kubeconfig = state["kubeconfig"]
        self.prometheus_url = state["prometheus_url"].rstrip("/")
        self.targets_dir = state["prometheus_targets_dir"]
        self.audit_log = os.path.join(cluster.log_dir, "audit.log")
        self.versions = state.get("versions", {})

    def api_client(self):
        from kubernetes import config
        return config.new_client_from_config(config_file=self.kubeconfig)


@contextlib.contextmanager
def local_cluster(name, nodes=2, keep=False, reuse=False):
    """Start a private cluster (stopping a stale one of that name first); stop it on exit,
    also on error.

    ``keep=True`` (or PD_BENCH_KEEP_CLUSTER=1) leaves it running for inspection;
    ``reuse=True`` uses the cluster of that name if it is running (and then leaves it running),
    for quick iterations while developing a benchmark.
    """
    cluster = pdcluster.Cluster(name)
    if reuse and cluster.live_pids():
        yield World(cluster, cluster.load())
        return
    cluster.down()
    try:
        state = cluster.up(nodes=nodes)
        yield World(cluster, state)
    finally:
        if not (keep or os.environ.get("PD_BENCH_KEEP_CLUSTER") == "1"):
            cluster.down()


def install_crd_and_rbac(api_client, account=RUNNER_ACCOUNT, namespace=RUNNER_NAMESPACE):
    """The collection's Canary CRD (Established) and ClusterRole, bound to a ServiceAccount."""
    install_canary_crd(api_client)
    bind_runner(api_client, namespace, account, "progressive-delivery-bench-%s" % account)


def runner_kubeconfig(api_client, admin_kubeconfig, path, account=RUNNER_ACCOUNT, namespace=RUNNER_NAMESPACE,
                      expiration=7200):
    """Write a kubeconfig for the ServiceAccount (token from TokenRequest, as AWX carries one)."""
    return token_kubeconfig(api_client, admin_kubeconfig, path, namespace, account, expiration)


def new_namespace(api_client, prefix="bench"):
    """A fresh namespace, ready for pods (its default ServiceAccount exists)."""
    return _new_namespace(api_client, "%s-%s" % (prefix, uuid.uuid4().hex[:6]), {"progressive.delivery/bench": "true"})


def delete_namespace(api_client, name):
    """Delete a namespace, not waiting for it to go; errors are ignored (clean-up only)."""
    from kubernetes import client
    try:
        client.CoreV1Api(api_client).delete_namespace(name)
    except Exception:  # pylint: disable=broad-except
        pass


# --------------------------------------------------------------------------- ansible-playbook

def ensure_bench_venv(venv=BENCH_VENV):
    """The bench virtualenv, created from bench/requirements.txt when missing. Returns its bin dir."""
    bindir = os.path.join(venv, "bin")
    stamp = os.path.join(venv, ".stamp")
    with open(BENCH_REQUIREMENTS) as handle:
        wanted = handle.read()
    try:
        with open(stamp) as handle:
            current = handle.read() == wanted
    except OSError:
        current = False
    if not current:
        if not os.path.exists(os.path.join(bindir, "python")):
            subprocess.run(["python3", "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(bindir, "pip"), "install", "-q", "-r", BENCH_REQUIREMENTS], check=True)
        with open(stamp, "w") as handle:
            handle.write(wanted)
    return bindir


# The settings both the collection's playbook and a hand-rolled one run with.
BASE_ANSIBLE_ENV = {
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_RETRY_FILES_ENABLED": "0",
    "ANSIBLE_LOCALHOST_WARNING": "0",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    "ANSIBLE_DEPRECATION_WARNINGS": "0",
    "ANSIBLE_GATHERING": "explicit",
}


def ansible_env(extra=None, venv=BENCH_VENV):
    env = dict(os.environ)
    for key in list(env):
        # Nothing of the caller's own cluster or Ansible configuration leaks in.
        if key.startswith("K8S_AUTH_") or key.startswith("ANSIBLE_") or key == "KUBECONFIG":
            del env[key]
    env.update(BASE_ANSIBLE_ENV)
    env["ANSIBLE_COLLECTIONS_PATH"] = collections_path()
    env["ANSIBLE_PYTHON_INTERPRETER"] = os.path.join(venv, "bin", "python")
    env["ANSIBLE_LOCAL_TEMP"] = os.path.join(tempfile.gettempdir(), "pd-bench-ansible-local")
    env.update(extra or {})
    return env


class PlaybookRun(object):
    def __init__(self, argv, rc, started, ended, stdout, stderr, lines=None):
        self.argv = argv
        self.rc = rc
        self.started = started  # Unix seconds, just before the process was started
        self.ended = ended      # Unix seconds, just after it exited
        self.wall = ended - started
        self.stdout = stdout
        self.stderr = stderr
        # With stamp_lines=True: [(Unix seconds when the bench read it, line)], stdout and stderr merged.
        self.lines = lines

    def check(self):
        if self.rc != 0:
            raise RuntimeError("ansible-playbook failed (rc %s): %s\n%s"
                               % (self.rc, self.stdout[-4000:], self.stderr[-2000:]))
        return self


def run_playbook(playbook, extra_vars=None, env=None, extra_args=(), venv=BENCH_VENV, timeout=900, cwd=None,
                 stamp_lines=False):
    """One ansible-playbook process on localhost (local connection), timed from start to exit.

    ``playbook`` is a path or a list of plays (written to a temporary file first, outside the timing).
    ``stamp_lines=True`` reads the output as it is printed (stderr merged into stdout) and stamps each
    line with ``time.time()`` when it was read (``run.lines``): a ``TASK [...]`` banner then gives
    the moment the task started. Pass ``PYTHONUNBUFFERED=1`` in ``env`` for prompt lines.
    """
    import yaml
    cleanup = None
    if not isinstance(playbook, str):
        handle = tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False)
        with handle:
            yaml.safe_dump(playbook, handle)
        playbook = cleanup = handle.name
    vars_file = None
    argv = [os.path.join(venv, "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local", playbook]
    if extra_vars:
        vars_handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        with vars_handle:
            json.dump(extra_vars, vars_handle)
        vars_file = vars_handle.name
        argv += ["-e", "@" + vars_file]
    argv += list(extra_args)
    try:
        if stamp_lines:
            return _run_stamped(argv, env=ansible_env(env, venv), timeout=timeout, cwd=cwd or REPO)
        started = time.time()
        proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(env, venv), timeout=timeout,
                              check=False, cwd=cwd or REPO)
        ended = time.time()
    finally:
        for path in (cleanup, vars_file):
            if path:
                os.unlink(path)
    return PlaybookRun(argv, proc.returncode, started, ended, proc.stdout, proc.stderr)


def _run_stamped(argv, env, timeout, cwd):
    lines = []
    started = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                            bufsize=1)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
        rc = proc.wait()
    finally:
        timer.cancel()
    ended = time.time()
    return PlaybookRun(argv, rc, started, ended, "\n".join(text for _t, text in lines), "", lines=lines)


# --------------------------------------------------------------------------- API requests

def _event_time(event):
    stamp = event.get("requestReceivedTimestamp") or event.get("stageTimestamp")
    # 2026-11-26T15:25:41.123456Z
    return datetime.strptime(stamp[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


def audit_events(audit_log, since, until, user=RUNNER_USER, namespaces=None):
    """Audit events (ResponseComplete stage) of ``user`` received between ``since`` and ``until``.

    ``namespaces``: keep only requests in those namespaces, plus cluster-wide ones (discovery).
    The API server writes the log synchronously (blocking mode), but give it a moment anyway.
    """
    time.sleep(0.5)
    found = []
    paths = [audit_log]
    base, ext = os.path.splitext(audit_log)
    # A rotated backup (audit-<time>.log) may hold the start of the window.
    directory = os.path.dirname(audit_log)
    paths += [os.path.join(directory, n) for n in os.listdir(directory)
              if n.startswith(os.path.basename(base) + "-") and n.endswith(ext)]
    for path in paths:
        with open(path) as handle:
            for line in handle:
                if user not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if (event.get("user") or {}).get("username") != user:
                    continue
                if event.get("stage") not in (None, "ResponseComplete", "Panic"):
                    continue
                when = _event_time(event)
                if not since <= when <= until:
                    continue
                ref = event.get("objectRef") or {}
                if namespaces and ref.get("namespace") and ref["namespace"] not in namespaces:
                    continue
                found.append(event)
    found.sort(key=_event_time)
    return found


def request_key(event):
    """'verb resource[/subresource]' of an audit event; non-resource URLs by path (discovery)."""
    ref = event.get("objectRef")
    if not ref:
        path = event.get("requestURI", "").split("?")[0]
        parts = path.strip("/").split("/")
        # /apis/<group>/<version> and /api/v1 are discovery documents
        return "%s %s" % (event.get("verb"), "discovery " + "/".join(parts[:3]) if parts and parts[0] in ("api", "apis")
                          else path)
    resource = ref.get("resource", "")
    if ref.get("apiGroup"):
        resource = "%s.%s" % (resource, ref["apiGroup"])
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return "%s %s" % (event.get("verb"), resource)


def api_requests(audit_log, since, until, user=RUNNER_USER, namespaces=None):
    """{'total': n, 'by_request': {'get deployments.apps': n, ...}} for one time window."""
    events = audit_events(audit_log, since, until, user=user, namespaces=namespaces)
    counts = collections.Counter(request_key(event) for event in events)
    return {"total": len(events), "by_request": dict(sorted(counts.items()))}


# --------------------------------------------------------------------------- the machine

def machine():
    info = {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = round(int(line.split()[1]) / 1024.0 / 1024.0, 1)
    except OSError:
        pass
    try:
        info["loadavg_at_start"] = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except (OSError, ValueError):
        pass
    return info


def load_average():
    """The 1, 5 and 15 minute load averages (None where there are none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def utc_now():
    """Now, UTC, to the second: 2026-11-26T15:25:41Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def software_versions(venv=BENCH_VENV):
    """package_versions() of the venv plus the collection's version, the git commit (and whether the
    work tree differs from it), the local control plane's versions and Prometheus's."""
    import yaml
    found = package_versions(venv)
    found["python"] = platform.python_version()
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        found["collection"] = yaml.safe_load(handle).get("version")
    try:
        found["git_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                                             text=True, check=False).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=False).stdout.strip()
        found["git_dirty"] = bool(dirty)
    except OSError:
        pass
    found["control_plane"] = pdcluster.versions()
    try:
        out = subprocess.run(["prometheus", "--version"], capture_output=True, text=True, check=False)
        found["prometheus"] = (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        found["prometheus"] = None
    return found


def package_versions(venv=BENCH_VENV, packages=("ansible-core", "ansible", "kubernetes", "urllib3", "requests")):
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: out[p] = None\n"
            "print(json.dumps(out))")
    proc = subprocess.run([os.path.join(venv, "bin", "python"), "-c", code] + list(packages),
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)
