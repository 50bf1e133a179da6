"""Local Kubernetes world for progressive.delivery's tests and demo.

Starts, on loopback only: etcd, kube-apiserver (token auth, RBAC, self-signed
serving certificate), kube-controller-manager, kube-scheduler, kwok (which
makes nodes and pods Ready without a kubelet) and a real Prometheus. Installs
the pinned upstream CRDs of Istio, Gateway API and SMI. Every cluster lives in
its own state directory (``--name``), so several can run side by side.

    pdcluster.py up [--name N] [--nodes K] [--no-prometheus]
    pdcluster.py down [--name N | --all]
    pdcluster.py status [--name N]
    pdcluster.py env [--name N]        # shell exports for the tests

This is dev tooling (kept out of the built collection), run with the project
venv's Python (it needs PyYAML, kubernetes and cryptography).
"""

import argparse
import base64
import datetime
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CONTROLPLANE_DIR = os.path.join(HERE, "controlplane")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "prometheus")
# Prometheus scrapes every second so a test sees a counter move within a couple of seconds.
SCRAPE_INTERVAL = "1s"
SERVICE_CIDR = "10.96.0.0/16"


class LaunchError(Exception):
    pass


def _read_env_file(path):
    values = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key] = value
    return values


def versions():
    pinned = _read_env_file(os.path.join(CONTROLPLANE_DIR, "versions.env"))
    pinned.update(_read_env_file(os.path.join(CONTROLPLANE_DIR, "etcd-version.env")))
    return pinned


def state_root():
    return os.environ.get("PD_STATE_DIR") or os.path.join(REPO, ".local", "clusters")


def cluster_dir(name):
    return os.path.join(state_root(), name)


def bin_dir():
    out = subprocess.run(
        [os.path.join(CONTROLPLANE_DIR, "build.sh"), "--print-bin-dir"],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def ensure_binaries():
    """Builds the control plane when the cache lacks it (a no-op when cached)."""
    subprocess.run([os.path.join(CONTROLPLANE_DIR, "build.sh")], check=True)
    directory = bin_dir()
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        if not os.access(os.path.join(directory, name), os.X_OK):
            raise LaunchError("%s missing from %s after the build" % (name, directory))
    return directory


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not running anything.
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _tail(path, lines=25):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return "(no log at %s)" % path
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- certificates

def _write_pki(pki):
    """A throw-away CA, the API server's serving certificate and the service-account key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID
    import ipaddress

    os.makedirs(pki, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def _key_pem(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "progressive-delivery-local-ca")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"), x509.DNSName("kubernetes.default.svc.cluster.local"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("10.96.0.1"))]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # RSA: the service-account token signer must be RSA or ECDSA; RSA is what kubeadm uses.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca.crt": ca_cert.public_bytes(serialization.Encoding.PEM),
        "ca.key": _key_pem(ca_key),
        "apiserver.crt": server_cert.public_bytes(serialization.Encoding.PEM),
        "apiserver.key": _key_pem(server_key),
        "sa.key": _key_pem(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    for name, data in files.items():
        path = os.path.join(pki, name)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o600)


def _kubeconfig(server, ca_path, token, user):
    with open(ca_path, "rb") as handle:
        ca_data = base64.b64encode(handle.read()).decode()
    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "pd-local", "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "pd-local", "context": {"cluster": "pd-local", "user": user}}],
        "current-context": "pd-local",
    }


# --------------------------------------------------------------------------- processes

class Cluster(object):
    def __init__(self, name):
        self.name = name
        self.dir = cluster_dir(name)
        self.state_path = os.path.join(self.dir, "state.json")
        self.log_dir = os.path.join(self.dir, "logs")

    # state.json is the record of what this launcher started; `down` trusts only it.
    def load(self):
        try:
            with open(self.state_path) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def save(self, state):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
        os.replace(tmp, self.state_path)

    def lock(self):
        """Serialises up/down on one data dir across processes."""
        os.makedirs(self.dir, exist_ok=True)
        handle = open(os.path.join(self.dir, ".lock"), "w")
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    def live_pids(self, state=None):
        state = state or self.load() or {}
        return {comp: pid for comp, pid in state.get("pids", {}).items() if _pid_alive(pid)}

    def _spawn(self, state, component, argv, env=None):
        os.makedirs(self.log_dir, exist_ok=True)
        log_path = os.path.join(self.log_dir, component + ".log")
        log = open(log_path, "ab")
        # Own session: `down` signals the whole group, and a Ctrl-C in the
        # caller's terminal does not half-stop the cluster.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=self.dir)
        log.close()
        state.setdefault("pids", {})[component] = proc.pid
        # Kept so one component can be stopped and started again alone (the fault-injection suite).
        state.setdefault("argv", {})[component] = list(argv)
        self.save(state)
        return proc

    def _wait(self, state, component, check, timeout):
        deadline = time.time() + timeout
        last_error = None
        while time.time() < deadline:
            pid = state["pids"].get(component)
            if pid and not _pid_alive(pid):
                raise LaunchError("%s exited during start-up; last log lines:\n%s"
                                  % (component, _tail(os.path.join(self.log_dir, component + ".log"))))
            try:
                if check():
                    return
            except Exception as exc:  # any failure of the probe just means "not yet"
                last_error = exc
            time.sleep(0.2)
        raise LaunchError("%s not ready after %ss (last probe error: %s); last log lines:\n%s"
                          % (component, timeout, last_error, _tail(os.path.join(self.log_dir, component + ".log"))))

    # ------------------------------------------------------------------ up

    def up(self, nodes=1, prometheus=True, timeout=120):
        handle = self.lock()
        try:
            state = self.load()
            if state:
                alive = self.live_pids(state)
                if alive and set(alive) == set(state.get("pids", {})):
                    print("cluster %r already running (pids %s); reusing it" % (self.name, sorted(alive.values())))
                    return state
                if alive:
                    # Half a cluster is worse than none: stop the rest and start clean.
                    print("cluster %r is partly running (%s); restarting it" % (self.name, sorted(alive)))
                    self._stop(state)
            binaries = ensure_binaries()
            return self._start(binaries, nodes, prometheus, timeout)
        finally:
            handle.close()

    def _start(self, binaries, nodes, prometheus, timeout):
        for sub in ("etcd", "pki", "logs", "prometheus"):
            shutil.rmtree(os.path.join(self.dir, sub), ignore_errors=True)
        pki = os.path.join(self.dir, "pki")
        _write_pki(pki)
        ports = {k: _free_port() for k in ("etcd", "etcd_peer", "apiserver", "controller_manager",
                                           "scheduler", "kwok", "prometheus")}
        tokens = {user: secrets.token_hex(24) for user in ("admin", "controller-manager", "scheduler", "kwok")}
        server = "https://127.0.0.1:%d" % ports["apiserver"]
        state = {"name": self.name, "dir": self.dir, "ports": ports, "server": server, "pids": {},
                 "started": time.time(), "versions": versions()}
        self.save(state)
        started = time.time()
        try:
            self._start_etcd(state, binaries, ports, timeout)
            self._start_apiserver(state, binaries, ports, tokens, pki, timeout)
            self._start_controllers(state, binaries, ports, tokens, pki, timeout)
            self._start_kwok(state, binaries, ports, tokens, pki, timeout)
            self._create_nodes(state, nodes, timeout)
            self._install_crds(state)
            if prometheus:
                self._start_prometheus(state, ports, tokens, pki, timeout)
        except BaseException:
            self._stop(state)
            raise
        state["ready_seconds"] = round(time.time() - started, 2)
        self.save(state)
        print("cluster %r ready in %.1fs: %s" % (self.name, state["ready_seconds"], server))
        return state

    def _start_etcd(self, state, binaries, ports, timeout):
        client_url = "http://127.0.0.1:%d" % ports["etcd"]
        peer_url = "http://127.0.0.1:%d" % ports["etcd_peer"]
        argv = [os.path.join(binaries, "etcd"), "--name", "pd", "--data-dir", os.path.join(self.dir, "etcd"),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", "pd=" + peer_url, "--initial-cluster-state", "new",
                # A throw-away test store: durability buys nothing and fsync costs seconds per test.
                "--unsafe-no-fsync", "--quota-backend-bytes", str(2 * 1024 ** 3), "--log-level", "warn"]
        self._spawn(state, "etcd", argv)
        state["etcd"] = client_url

        def _healthy():
            with urllib.request.urlopen(client_url + "/health", timeout=2) as resp:
                return json.load(resp).get("health") == "true"
        self._wait(state, "etcd", _healthy, timeout)

    def _start_apiserver(self, state, binaries, ports, tokens, pki, timeout):
        token_file = os.path.join(pki, "tokens.csv")
        with open(token_file, "w") as handle:
            handle.write('%s,admin,uid-admin,"system:masters"\n' % tokens["admin"])
            handle.write('%s,system:kube-controller-manager,uid-cm,"system:masters"\n' % tokens["controller-manager"])
            handle.write('%s,system:kube-scheduler,uid-sched,"system:masters"\n' % tokens["scheduler"])
            handle.write('%s,system:kwok,uid-kwok,"system:masters"\n' % tokens["kwok"])
        os.chmod(token_file, 0o600)
        audit_policy = os.path.join(pki, "audit-policy.yaml")
        with open(audit_policy, "w") as handle:
            # Metadata of every write and read by non-system users: the benchmark counts API requests per step.
            yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                            "rules": [{"level": "None", "userGroups": ["system:masters"],
                                       "users": ["system:kube-controller-manager", "system:kube-scheduler",
                                                 "system:kwok"]},
                                      {"level": "Metadata"}]}, handle)
        argv = [os.path.join(binaries, "kube-apiserver"),
                "--etcd-servers", state["etcd"],
                "--bind-address", "127.0.0.1", "--secure-port", str(ports["apiserver"]),
                # There is no default route on these machines, so the API server cannot guess its address.
                "--advertise-address", "127.0.0.1",
                # Loopback is not a valid endpoint address; nothing in-cluster needs the kubernetes Service.
                "--endpoint-reconciler-type", "none",
                "--tls-cert-file", os.path.join(pki, "apiserver.crt"),
                "--tls-private-key-file", os.path.join(pki, "apiserver.key"),
                "--client-ca-file", os.path.join(pki, "ca.crt"),
                "--token-auth-file", token_file,
                "--authorization-mode", "Node,RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", os.path.join(pki, "sa.pub"),
                "--service-account-signing-key-file", os.path.join(pki, "sa.key"),
                "--api-audiences", "https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--allow-privileged=true",
                "--audit-policy-file", audit_policy,
                "--audit-log-path", os.path.join(self.log_dir, "audit.log"),
                "--audit-log-maxsize", "100", "--audit-log-maxbackup", "1",
                "--profiling=false", "--v", "0"]
        self._spawn(state, "kube-apiserver", argv)
        admin = _kubeconfig(state["server"], os.path.join(pki, "ca.crt"), tokens["admin"], "admin")
        for user, kc_name in (("admin", "kubeconfig"), ("controller-manager", "controller-manager.kubeconfig"),
                              ("scheduler", "scheduler.kubeconfig"), ("kwok", "kwok.kubeconfig")):
            path = os.path.join(self.dir, kc_name)
            with open(path, "w") as handle:
                yaml.safe_dump(_kubeconfig(state["server"], os.path.join(pki, "ca.crt"), tokens[user], user), handle)
            os.chmod(path, 0o600)
        state["kubeconfig"] = os.path.join(self.dir, "kubeconfig")
        state["ca"] = os.path.join(pki, "ca.crt")
        self.save(state)
        ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))

        def _ready():
            req = urllib.request.Request(state["server"] + "/readyz",
                                         headers={"Authorization": "Bearer " + tokens["admin"]})
            with urllib.request.urlopen(req, timeout=3, context=ctx) as resp:
                return resp.status == 200
        self._wait(state, "kube-apiserver", _ready, timeout)
        del admin

    def _start_controllers(self, state, binaries, ports, tokens, pki, timeout):
        cm_kc = os.path.join(self.dir, "controller-manager.kubeconfig")
        self._spawn(state, "kube-controller-manager", [
            os.path.join(binaries, "kube-controller-manager"),
            "--kubeconfig", cm_kc, "--authentication-kubeconfig", cm_kc, "--authorization-kubeconfig", cm_kc,
            "--bind-address", "127.0.0.1", "--secure-port", str(ports["controller_manager"]),
            "--leader-elect=false", "--use-service-account-credentials=false",
            "--service-account-private-key-file", os.path.join(pki, "sa.key"),
            "--root-ca-file", os.path.join(pki, "ca.crt"),
            "--cluster-signing-cert-file", os.path.join(pki, "ca.crt"),
            "--cluster-signing-key-file", os.path.join(pki, "ca.key"),
            "--service-cluster-ip-range", SERVICE_CIDR,
            # Short resync so replica changes land quickly in tests.
            "--concurrent-deployment-syncs", "10", "--concurrent-replicaset-syncs", "10",
            "--v", "0"])
        sched_kc = os.path.join(self.dir, "scheduler.kubeconfig")
        self._spawn(state, "kube-scheduler", [
            os.path.join(binaries, "kube-scheduler"),
            "--kubeconfig", sched_kc, "--authentication-kubeconfig", sched_kc, "--authorization-kubeconfig", sched_kc,
            "--bind-address", "127.0.0.1", "--secure-port", str(ports["scheduler"]),
            "--leader-elect=false", "--v", "0"])
        insecure = ssl.create_default_context()
        # Their serving certificates are self-signed at start; health is all we read from them.
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE

        def _healthz(port):
            def _probe():
                with urllib.request.urlopen("https://127.0.0.1:%d/healthz" % port, timeout=2,
                                            context=insecure) as resp:
                    return resp.status == 200
            return _probe
        self._wait(state, "kube-controller-manager", _healthz(ports["controller_manager"]), timeout)
        self._wait(state, "kube-scheduler", _healthz(ports["scheduler"]), timeout)

    def _start_kwok(self, state, binaries, ports, tokens, pki, timeout):
        self._spawn(state, "kwok", [
            os.path.join(binaries, "kwok"),
            "--kubeconfig", os.path.join(self.dir, "kwok.kubeconfig"),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
            "--cidr", "10.244.0.0/16", "--node-ip", "10.0.0.1",
            "--node-lease-duration-seconds", "40",
            "--server-address", "127.0.0.1:%d" % ports["kwok"]])

        def _healthz():
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % ports["kwok"], timeout=2) as resp:
                return resp.status == 200
        self._wait(state, "kwok", _healthz, timeout)

    def _client(self, state):
        from kubernetes import client, config
        return config.new_client_from_config(config_file=state["kubeconfig"])

    def _create_nodes(self, state, count, timeout):
        from kubernetes import client
        api = client.CoreV1Api(self._client(state))
        names = []
        for index in range(count):
            name = "kwok-node-%d" % index
            names.append(name)
            body = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake",
                                                           "node.alpha.kubernetes.io/ttl": "0"},
                             "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                                        "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                        "kubernetes.io/role": "agent"}},
                "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                           "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"}},
            }
            api.create_node(body)

        def _ready():
            for name in names:
                node = api.read_node(name)
                if not any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or [])):
                    return False
            return True
        self._wait(state, "kwok", _ready, timeout)
        state["nodes"] = names
        self.save(state)

    def _install_crds(self, state):
        from kubernetes import client
        from kubernetes.client.rest import ApiException
        docs = upstream_crds()
        api = client.ApiextensionsV1Api(self._client(state))
        for doc in docs:
            try:
                api.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise LaunchError("installing CRD %s failed: %s" % (doc["metadata"]["name"], exc.body))
        deadline = time.time() + 60
        pending = {d["metadata"]["name"] for d in docs}
        while pending and time.time() < deadline:
            for name in sorted(pending):
                crd = api.read_custom_resource_definition(name)
                if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])):
                    pending.discard(name)
            time.sleep(0.2)
        if pending:
            raise LaunchError("CRDs not Established after 60s: %s" % sorted(pending))
        state["crds"] = sorted(d["metadata"]["name"] for d in docs)
        self.save(state)

    def _start_prometheus(self, state, ports, tokens, pki, timeout):
        prometheus = shutil.which("prometheus")
        if not prometheus:
            raise LaunchError("prometheus not found on PATH; install the Debian package: apt-get install prometheus")
        prom_dir = os.path.join(self.dir, "prometheus")
        targets_dir = os.path.join(prom_dir, "targets")
        os.makedirs(targets_dir, exist_ok=True)
        token_path = os.path.join(prom_dir, "apiserver.token")
        with open(token_path, "w") as handle:
            handle.write(tokens["admin"])
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": ["127.0.0.1:%d" % ports["prometheus"]]}]},
                {"job_name": "kube-apiserver", "scheme": "https",
                 "authorization": {"credentials_file": token_path},
                 "tls_config": {"ca_file": os.path.join(pki, "ca.crt")},
                 "static_configs": [{"targets": ["127.0.0.1:%d" % ports["apiserver"]]}]},
                # Tests and the traffic emulator add targets by dropping JSON files here.
                {"job_name": "extra", "file_sd_configs": [{"files": [os.path.join(targets_dir, "*.json")],
                                                           "refresh_interval": "1s"}]},
            ],
        }
        config_path = os.path.join(prom_dir, "prometheus.yml")
        with open(config_path, "w") as handle:
            yaml.safe_dump(config, handle)
        url = "http://127.0.0.1:%d" % ports["prometheus"]
        self._spawn(state, "prometheus", [
            prometheus, "--config.file", config_path, "--storage.tsdb.path", os.path.join(prom_dir, "data"),
            "--web.listen-address", "127.0.0.1:%d" % ports["prometheus"], "--web.enable-lifecycle",
            "--storage.tsdb.retention.time", "1d", "--log.level", "warn"])
        state["prometheus_url"] = url
        state["prometheus_targets_dir"] = targets_dir
        self.save(state)

        def _ready():
            with urllib.request.urlopen(url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        self._wait(state, "prometheus", _ready, timeout)

    # ------------------------------------------------------------------ one component

    def stop_component(self, component, sig=signal.SIGKILL):
        """Stops one running component (kill -9 by default: a crash, not a shutdown)."""
        handle = self.lock()
        try:
            state = self.load() or {}
            pid = state.get("pids", {}).get(component)
            if not pid:
                raise LaunchError("cluster %r has no %s" % (self.name, component))
            _signal_group(pid, sig)
            deadline = time.time() + 15
            while time.time() < deadline and _pid_alive(pid):
                time.sleep(0.05)
            if _pid_alive(pid):
                raise LaunchError("%s (pid %d) did not stop" % (component, pid))
        finally:
            handle.close()

    def start_component(self, component, timeout=60):
        """Starts a stopped component again with the command line it first ran with; waits until it
        answers (the API server's /readyz with the admin token, Prometheus' /-/ready)."""
        handle = self.lock()
        try:
            state = self.load() or {}
            pid = state.get("pids", {}).get(component)
            if pid and _pid_alive(pid):
                return
            self._spawn(state, component, state["argv"][component])
            if component == "kube-apiserver":
                with open(state["kubeconfig"]) as kc:
                    token = yaml.safe_load(kc)["users"][0]["user"]["token"]
                ctx = ssl.create_default_context(cafile=state["ca"])

                def _ready():
                    req = urllib.request.Request(state["server"] + "/readyz",
                                                 headers={"Authorization": "Bearer " + token})
                    with urllib.request.urlopen(req, timeout=3, context=ctx) as resp:
                        return resp.status == 200
                self._wait(state, component, _ready, timeout)
            elif component == "prometheus":
                url = state["prometheus_url"]

                def _ready():
                    with urllib.request.urlopen(url + "/-/ready", timeout=2) as resp:
                        return resp.status == 200
                self._wait(state, component, _ready, timeout)
        finally:
            handle.close()

    # ------------------------------------------------------------------ down

    def down(self):
        handle = self.lock()
        try:
            state = self.load()
            if not state:
                print("cluster %r: nothing to stop" % self.name)
                return
            self._stop(state)
            print("cluster %r stopped" % self.name)
        finally:
            handle.close()

    def _stop(self, state):
        pids = state.get("pids", {})
        # Reverse start order: clients go before the API server, the API server before etcd.
        order = [c for c in reversed(COMPONENTS) if c in pids]
        for component in order:
            _signal_group(pids[component], signal.SIGTERM)
        deadline = time.time() + 15
        while time.time() < deadline and any(_pid_alive(pids[c]) for c in order):
            time.sleep(0.1)
        for component in order:
            if _pid_alive(pids[component]):
                _signal_group(pids[component], signal.SIGKILL)
        deadline = time.time() + 5
        while time.time() < deadline and any(_pid_alive(pids[c]) for c in order):
            time.sleep(0.1)
        still = [c for c in order if _pid_alive(pids[c])]
        if still:
            raise LaunchError("could not stop %s" % still)
        state["pids"] = {}
        state["stopped"] = time.time()
        self.save(state)

    def env(self):
        state = self.load() or {}
        if not self.live_pids(state):
            raise LaunchError("cluster %r is not running; start it with: %s up --name %s"
                              % (self.name, sys.argv[0], self.name))
        return {
            "KUBECONFIG": state["kubeconfig"],
            "PD_TEST_KUBECONFIG": state["kubeconfig"],
            "PD_TEST_PROMETHEUS_URL": state.get("prometheus_url", ""),
            "PD_TEST_PROMETHEUS_TARGETS_DIR": state.get("prometheus_targets_dir", ""),
            "PD_TEST_CLUSTER_DIR": self.dir,
        }


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


# --------------------------------------------------------------------------- upstream CRDs

def _module_dir(module, version):
    """Where the Go module cache holds a pinned module (downloaded when missing)."""
    out = subprocess.run(["go", "mod", "download", "-json", "%s@%s" % (module, version)],
                         check=True, capture_output=True, text=True,
                         # Outside any module, so the download never edits our go.mod/go.sum.
                         cwd=tempfile.gettempdir())
    return json.loads(out.stdout)["Dir"]


def _v1beta1_crd_to_v1(doc):
    """SMI publishes its CRDs only as apiextensions.k8s.io/v1beta1, which no
    current API server serves. The conversion is the documented mechanical one:
    the top-level validation and printer columns move into each version."""
    spec = dict(doc["spec"])
    schema = (spec.pop("validation", None) or {}).get("openAPIV3Schema") or {}
    schema = dict(schema)
    schema.setdefault("type", "object")
    props = schema.setdefault("properties", {})
    for field in ("apiVersion", "kind"):
        props.setdefault(field, {"type": "string"})
    props.setdefault("metadata", {"type": "object"})
    columns = [{"name": c["name"], "type": c["type"], "description": c.get("description", ""),
                "jsonPath": c.get("JSONPath") or c.get("jsonPath")}
               for c in spec.pop("additionalPrinterColumns", [])]
    spec.pop("version", None)
    spec.pop("subresources", None)
    versions_ = []
    for version in spec.get("versions", []):
        entry = {"name": version["name"], "served": version["served"], "storage": version["storage"],
                 "schema": {"openAPIV3Schema": schema}}
        if columns:
            entry["additionalPrinterColumns"] = columns
        versions_.append(entry)
    spec["versions"] = versions_
    spec.pop("preserveUnknownFields", None)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": doc["metadata"]["name"],
                         "annotations": {"progressive.delivery/converted-from": "apiextensions.k8s.io/v1beta1"}},
            "spec": spec}


def upstream_crds():
    """The routing CRDs the collection targets, read from the pinned upstream Go modules."""
    pinned = versions()
    wanted = []
    istio = _module_dir("istio.io/api", pinned["ISTIO_API_VERSION"])
    with open(os.path.join(istio, "kubernetes", "customresourcedefinitions.gen.yaml")) as handle:
        for doc in yaml.safe_load_all(handle):
            if doc and doc["metadata"]["name"] in ("virtualservices.networking.istio.io",
                                                   "destinationrules.networking.istio.io"):
                wanted.append(doc)
    gateway = _module_dir("sigs.k8s.io/gateway-api", pinned["GATEWAY_API_VERSION"])
    for kind in ("gatewayclasses", "gateways", "httproutes", "referencegrants"):
        with open(os.path.join(gateway, "config", "crd", "standard", "gateway.networking.k8s.io_%s.yaml" % kind)) as h:
            wanted.extend(d for d in yaml.safe_load_all(h) if d)
    smi = _module_dir("github.com/servicemeshinterface/smi-sdk-go", pinned["SMI_SDK_VERSION"])
    with open(os.path.join(smi, "crds", "split.yaml")) as handle:
        for doc in yaml.safe_load_all(handle):
            if doc:
                wanted.append(_v1beta1_crd_to_v1(doc) if doc["apiVersion"].endswith("v1beta1") else doc)
    return wanted


# --------------------------------------------------------------------------- CLI

def all_clusters():
    root = state_root()
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "state.json")))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a local cluster (reuses a running one of the same name)")
    up.add_argument("--name", default="pd")
    up.add_argument("--count", type=int, default=1,
                    help="start this many independent clusters: NAME-1..NAME-N (NAME alone when 1)")
    up.add_argument("--nodes", type=int, default=1)
    up.add_argument("--no-prometheus", action="store_true")
    up.add_argument("--timeout", type=float, default=120)
    down = sub.add_parser("down", help="stop a cluster and every process it started")
    down.add_argument("--name", default="pd")
    down.add_argument("--all", action="store_true")
    status = sub.add_parser("status")
    status.add_argument("--name", default=None)
    env = sub.add_parser("env", help="print shell exports pointing the tests at a cluster")
    env.add_argument("--name", default="pd")
    sub.add_parser("build", help="build or verify the cached control-plane binaries")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            print(ensure_binaries())
        elif args.command == "up":
            names = [args.name] if args.count == 1 else ["%s-%d" % (args.name, i + 1) for i in range(args.count)]
            for name in names:
                Cluster(name).up(nodes=args.nodes, prometheus=not args.no_prometheus, timeout=args.timeout)
        elif args.command == "down":
            for name in (all_clusters() if args.all else [args.name]):
                Cluster(name).down()
        elif args.command == "status":
            rc = 0
            for name in ([args.name] if args.name else all_clusters()):
                cluster = Cluster(name)
                state = cluster.load() or {}
                alive = cluster.live_pids(state)
                running = bool(alive) and set(alive) == set(state.get("pids", {}))
                rc = rc if running else 3
                print("%-12s %-8s %s %s" % (name, "running" if running else "stopped",
                                            state.get("server", "-"), state.get("prometheus_url", "")))
                for comp, pid in sorted(state.get("pids", {}).items()):
                    print("    %-24s pid %-8d %s" % (comp, pid, "up" if comp in alive else "DEAD"))
            return rc
        elif args.command == "env":
            for key, value in Cluster(args.name).env().items():
                print("export %s=%s" % (key, value))
    except (LaunchError, subprocess.CalledProcessError) as exc:
        print("pdcluster: error: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
