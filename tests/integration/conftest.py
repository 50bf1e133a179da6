"""Session fixtures: one real local control plane and one real Prometheus for
the whole test session, or the user's cluster when PD_TEST_KUBECONFIG is set."""

import json
import os
import sys
import urllib.parse
import urllib.request
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "hack"))

import pdcluster  # noqa: E402  (dev tooling, not a package)
from pdworld import (bind_runner, install_canary_crd,  # noqa: E402
                     new_namespace as _new_namespace, token_kubeconfig)

SESSION_CLUSTER = os.environ.get("PD_TEST_CLUSTER_NAME", "pytest")
# The tests that skip do so only in a world the user brings (PD_TEST_KUBECONFIG) that lacks a part
# (no Prometheus file_sd dir, not a cluster this project can stop and start). In the world the
# session builds itself every part is there, so a skip there is a failure, not a pass in disguise.
OWN_WORLD = not os.environ.get("PD_TEST_KUBECONFIG")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if OWN_WORLD and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = ("%s skipped in the world this session built, where every part it needs is present: %s"
                           % (item.nodeid, report.longrepr))


def processes_mentioning(path):
    """PIDs whose command line names `path`: what an orphan of the launcher looks like."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % entry) as handle:
                if handle.read().split(")")[-1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if path in cmdline and "pytest" not in cmdline:
            found.append((int(entry), cmdline[:200]))
    return found


class World(object):
    """What the tests know about the cluster they run against."""

    def __init__(self, kubeconfig, prometheus_url, targets_dir=None, cluster=None):
        self.kubeconfig = kubeconfig
        self.prometheus_url = prometheus_url.rstrip("/") if prometheus_url else None
        self.targets_dir = targets_dir
        self.cluster = cluster  # a pdcluster.Cluster when the session started it

    @property
    def local(self):
        return self.cluster is not None

    def api_client(self):
        from kubernetes import config
        return config.new_client_from_config(config_file=self.kubeconfig)

    def prom_query(self, query):
        url = "%s/api/v1/query?%s" % (self.prometheus_url, urllib.parse.urlencode({"query": query}))
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def add_scrape_target(self, name, address, labels=None):
        """Makes Prometheus scrape `address` (host:port) within ~2 s (file_sd)."""
        if not self.targets_dir:
            pytest.skip("this Prometheus has no file_sd targets dir (set PD_TEST_PROMETHEUS_TARGETS_DIR)")
        path = os.path.join(self.targets_dir, "%s.json" % name)
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump([{"targets": [address], "labels": dict(labels or {}, target_name=name)}], handle)
        os.replace(tmp, path)
        return path


@pytest.fixture(scope="session")
def world():
    kubeconfig = os.environ.get("PD_TEST_KUBECONFIG")
    if kubeconfig:
        yield World(kubeconfig, os.environ.get("PD_TEST_PROMETHEUS_URL"),
                    os.environ.get("PD_TEST_PROMETHEUS_TARGETS_DIR"))
        return
    cluster = pdcluster.Cluster(SESSION_CLUSTER)
    # A session killed earlier may have left its cluster behind: never test on stale state.
    cluster.down()
    state = cluster.up(nodes=2)
    try:
        yield World(state["kubeconfig"], state["prometheus_url"], state["prometheus_targets_dir"], cluster)
    finally:
        cluster.down()
        leftovers = processes_mentioning(cluster.dir)
        assert not leftovers, "processes left running after the session: %s" % leftovers


@pytest.fixture(scope="session")
def api_client(world):
    return world.api_client()


@pytest.fixture
def namespace(api_client):
    """A fresh namespace per test, deleted afterwards (not waited for)."""
    from kubernetes import client
    core = client.CoreV1Api(api_client)
    name = _new_namespace(api_client, "t-%s" % uuid.uuid4().hex[:8], {"progressive.delivery/test": "true"})
    yield name
    try:
        core.delete_namespace(name)
    except Exception:
        pass


@pytest.fixture(scope="session")
def canary_crd(api_client):
    """The collection's Canary CRD, installed and Established."""
    return install_canary_crd(api_client)


@pytest.fixture(scope="session")
def runner_kubeconfig(world, api_client, canary_crd, tmp_path_factory):
    """A kubeconfig for a ServiceAccount bound to the shipped ClusterRole (never admin).

    The token is minted with TokenRequest, as AWX's Kubernetes credential would carry one.
    """
    namespace, account = "pd-system", "pd-runner"
    bind_runner(api_client, namespace, account, "progressive-delivery-tests")
    path = tmp_path_factory.mktemp("runner") / "kubeconfig"
    return token_kubeconfig(api_client, world.kubeconfig, str(path), namespace, account)
