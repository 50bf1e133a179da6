"""`make demo`: a full canary release on the embedded local cluster.

1. brings the local world up (control plane, Prometheus) and installs the collection's CRD and
   ClusterRole with playbooks/install.yml;
2. deploys the sample app (podinfo 6.7.0) and starts the traffic emulator (50 req/s, Istio);
3. first run of playbooks/demo.yml: the Canary is initialised, the primary takes over;
4. releases 6.7.1 (healthy): the role walks 20% -> 40% -> 60% with gates and promotes it;
5. releases 6.7.2 with 20% errors: the gate fails, the role rolls back, the job fails (expected);
6. prints where the HTML reports are.
"""
import os
import subprocess
import sys
import time

import emulator
import pdcluster
import sample_app

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NAMESPACE = "demo"
REPORTS = os.path.join(REPO, "build", "demo-reports")


def _collections_path():
    link = os.path.join(REPO, "build", "collections", "ansible_collections", "progressive", "delivery")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    return os.path.join(REPO, "build", "collections")


def _playbook(name, state, extra):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_collections_path(), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_DISPLAY_SKIPPED_HOSTS="0",
               ANSIBLE_DISPLAY_OK_HOSTS="1")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
            os.path.join(REPO, "playbooks", name), "-e", "@" + extra]
    started = time.time()
    proc = subprocess.run(argv, env=env, check=False, capture_output=True, text=True)
    # One line per step is what a release engineer watches; the rest is in the log file.
    log = os.path.join(REPORTS, "%s-%s.log" % (name.replace(".yml", ""), state))
    with open(log, "w") as handle:
        handle.write(proc.stdout + proc.stderr)
    for line in proc.stdout.splitlines():
        text = line.strip()
        if text.startswith('"msg": "localhost '):
            print("    " + text.split("localhost ", 1)[1].rstrip('",'))
        elif text.startswith("fatal:") and "rolled back:" in text:
            print("    " + text.split('"msg": ', 1)[-1].strip('"}')[:400])
    print("    -> exit status %d after %.0fs (full log: %s)" % (proc.returncode, time.time() - started, log))
    return proc.returncode


def main():
    os.makedirs(REPORTS, exist_ok=True)
    demo_started = time.time()
    print("== starting the local world (first run builds the control plane: ~10 min on 2 cores)")
    state = pdcluster.Cluster("demo").up(nodes=1)
    kubeconfig = state["kubeconfig"]
    os.environ["K8S_AUTH_KUBECONFIG"] = kubeconfig
    from kubernetes import config
    api = config.new_client_from_config(config_file=kubeconfig)

    print("== installing the Canary CRD and the ClusterRole (playbooks/install.yml)")
    extra = os.path.join(REPORTS, "vars.yml")
    import yaml
    with open(extra, "w") as handle:
        yaml.safe_dump({"canary_name": sample_app.APP, "canary_namespace": NAMESPACE,
                        "canary_auth": {"kubeconfig": kubeconfig},
                        "canary_metrics_source": {"type": "prometheus", "address": state["prometheus_url"]},
                        "canary_report_dir": REPORTS,
                        "canary_spec": sample_app.canary_spec("istio", interval="5s", step_weight=20, max_weight=60)},
                       handle)
    if _playbook("install.yml", "install", extra) != 0:
        return 1

    print("== deploying podinfo 6.7.0 and starting the traffic emulator (Istio metrics, 50 req/s)")
    sample_app.ensure_namespace(api, NAMESPACE)
    sample_app.release(api, NAMESPACE, "6.7.0")
    with emulator.Emulator(api_client=api, apps=[(NAMESPACE, sample_app.APP)], rps=50, seed=1,
                           targets_dir=state["prometheus_targets_dir"]) as traffic:
        print("== run 1: initialise the Canary (the primary takes over podinfo 6.7.0)")
        if _playbook("demo.yml", "init", extra) != 0:
            return 1
        print("== run 2: release podinfo 6.7.1 (healthy): expect promotion")
        sample_app.release(api, NAMESPACE, "6.7.1")
        if _playbook("demo.yml", "good", extra) != 0:
            print("demo: the healthy release was not promoted", file=sys.stderr)
            return 1
        print("== run 3: release podinfo 6.7.2 with 20% errors: expect an automatic rollback")
        sample_app.release(api, NAMESPACE, "6.7.2", fault={"errorRate": 0.2})
        if _playbook("demo.yml", "faulty", extra) == 0:
            print("demo: the faulty release was not rolled back", file=sys.stderr)
            return 1
        served = traffic.stats(NAMESPACE, sample_app.APP)["by_version"]
    faulty = [v for k, v in served.items() if "6.7.2" in k]
    total = sum(v["requests"] for v in served.values())
    if faulty and total:
        print("    the faulty version served %d of %d requests (%.1f%%), %d of them failed, before the rollback"
              % (faulty[0]["requests"], total, 100.0 * faulty[0]["requests"] / total, faulty[0]["errors"]))
    print("\n== reports")
    for name in sorted(os.listdir(REPORTS)):
        if name.endswith(".html"):
            print("    file://" + os.path.join(REPORTS, name))
    print("\ndemo finished in %.0fs. The cluster keeps running:\n  eval \"$(.venv/bin/python hack/pdcluster.py env "
          "--name demo)\"\nstop it with: .venv/bin/python hack/pdcluster.py down --name demo"
          % (time.time() - demo_started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
