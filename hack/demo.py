"""`make demo`: brings the local world up and deploys a sample app.

The full canary walk-through (a good release promoted, a faulty one rolled
back) is added when the rollout role lands; for now this shows the world the
collection will run against: a real API server, scheduler, controllers, kwok
nodes and Prometheus.
"""
import sys
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException

import pdcluster

NAMESPACE = "demo"
APP = "podinfo"


def main():
    state = pdcluster.Cluster("demo").up(nodes=1)
    api = config.new_client_from_config(config_file=state["kubeconfig"])
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    labels = {"app": APP}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP, "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": APP, "image": "ghcr.io/stefanprodan/podinfo:6.7.0",
                                                       "ports": [{"containerPort": 9898, "name": "http"}]}]}}},
    }
    try:
        apps.create_namespaced_deployment(NAMESPACE, deployment)
    except ApiException as exc:
        if exc.status != 409:
            raise
        apps.replace_namespaced_deployment(APP, NAMESPACE, deployment)
    deadline = time.time() + 90
    while time.time() < deadline:
        dep = apps.read_namespaced_deployment(APP, NAMESPACE)
        if (dep.status.ready_replicas or 0) == 2:
            break
        time.sleep(0.5)
    else:
        print("demo: %s not ready after 90s" % APP, file=sys.stderr)
        return 1
    print("\n%-40s %-8s %s" % ("POD", "PHASE", "NODE"))
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector="app=" + APP).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        print("%-40s %-8s %s%s" % (pod.metadata.name, pod.status.phase, pod.spec.node_name, "  Ready" if ready else ""))
    print("\nThe demo cluster keeps running. Use it with:\n  eval \"$(.venv/bin/python hack/pdcluster.py env --name demo)\""
          "\nStop it with:\n  .venv/bin/python hack/pdcluster.py down --name demo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
