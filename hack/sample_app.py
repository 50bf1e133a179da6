"""The sample application of the demo and the end-to-end tests: a podinfo-like
Deployment whose releases can be made faulty through the emulator's fault
profile annotation (hack/emulator.py)."""

import json

from kubernetes import client
from kubernetes.client.rest import ApiException

APP = "podinfo"
PORT = 9898
FAULT_ANNOTATION = "progressive.delivery/fault"


def ensure_namespace(api_client, namespace):
    try:
        client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def release(api_client, namespace, version, fault=None, replicas=2, app=APP):
    """Create the app, or roll out a new version of it (a new pod template)."""
    annotations = {FAULT_ANNOTATION: json.dumps(fault, sort_keys=True)} if fault else {}
    template = {"metadata": {"labels": {"app": app}, "annotations": annotations},
                "spec": {"containers": [{"name": app, "image": "ghcr.io/stefanprodan/podinfo:%s" % version,
                                         "ports": [{"containerPort": PORT, "name": "http"}]}]}}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "labels": {"app": app}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}, "template": template}}
    apps = client.AppsV1Api(api_client)
    try:
        apps.create_namespaced_deployment(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        # A JSON merge patch replaces the annotation map: a healthy release drops an old fault.
        current = apps.read_namespaced_deployment(app, namespace)
        old = (current.spec.template.metadata.annotations or {})
        patch = {"spec": {"template": {"metadata": {"annotations": dict(
            {k: None for k in old if k == FAULT_ANNOTATION}, **annotations)}, "spec": template["spec"]}}}
        apps.patch_namespaced_deployment(app, namespace, patch)


def ingress(api_client, namespace, app=APP):
    """The user's Ingress that provider nginx builds its canary Ingress from."""
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": app, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
            "spec": {"rules": [{"host": "%s.example.test" % app, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": app, "port": {"number": PORT}}}}]}}]}}
    try:
        client.NetworkingV1Api(api_client).create_namespaced_ingress(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise


def canary_spec(provider="istio", interval="3s", step_weight=25, max_weight=50, threshold=2, **analysis):
    """A Canary spec with short intervals, the two built-in checks and Flagger's usual thresholds."""
    spec = {"provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "service": {"port": PORT},
            "progressDeadlineSeconds": 60,
            "analysis": dict({"interval": interval, "threshold": threshold,
                              "metrics": [{"name": "request-success-rate", "interval": "10s",
                                           "thresholdRange": {"min": 99}},
                                          {"name": "request-duration", "interval": "10s",
                                           "thresholdRange": {"max": 500}}]}, **analysis)}
    if "iterations" not in analysis and "stepWeights" not in analysis:
        spec["analysis"].update(stepWeight=step_weight, maxWeight=max_weight)
    if provider == "nginx":
        spec["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": APP}
    return spec
