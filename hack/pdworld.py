"""What the integration tests and the benchmarks both set up on a cluster: manifests applied
with the admin client, the collection made visible to Ansible (dev tooling, not shipped)."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_DIR = os.path.join(REPO, "build", "collections")


def apply_manifest(api_client, manifest):
    """Create or replace one manifest with the given (admin) client."""
    from kubernetes import dynamic
    from kubernetes.client.rest import ApiException
    client = dynamic.DynamicClient(api_client)
    resource = client.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    namespace = manifest["metadata"].get("namespace")
    try:
        return resource.create(body=manifest, namespace=namespace)
    except ApiException as exc:
        if exc.status != 409:
            raise
    current = resource.get(name=manifest["metadata"]["name"], namespace=namespace)
    manifest = dict(manifest, metadata=dict(manifest["metadata"], resourceVersion=current.metadata.resourceVersion))
    return resource.replace(body=manifest, namespace=namespace)


def collections_path():
    """build/collections, holding ansible_collections/progressive/delivery as a link to the repository."""
    link = os.path.join(COLLECTIONS_DIR, "ansible_collections", "progressive", "delivery")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(REPO, link)
        except FileExistsError:
            pass
    return COLLECTIONS_DIR


def bind_runner(api_client, namespace, account, binding):
    """The ServiceAccount ``namespace/account`` bound (ClusterRoleBinding ``binding``) to the shipped
    ClusterRole (rbac/clusterrole.yaml): what a release runs as, never admin."""
    import time
    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    core = client.CoreV1Api(api_client)
    for create in (lambda: core.create_namespace({"metadata": {"name": namespace}}),
                   lambda: core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})):
        for attempt in range(50):
            try:
                create()
                break
            except ApiException as exc:
                if exc.status == 409:
                    break
                # The namespace still being set up (403) or a busy API server (5xx): try again.
                if (exc.status == 403 or exc.status >= 500) and attempt < 49:
                    time.sleep(0.2)
                    continue
                raise
    with open(os.path.join(REPO, "rbac", "clusterrole.yaml")) as handle:
        role = yaml.safe_load(handle)
    apply_manifest(api_client, role)
    apply_manifest(api_client, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                                "metadata": {"name": binding},
                                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                            "name": role["metadata"]["name"]},
                                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})


def token_kubeconfig(api_client, admin_kubeconfig, path, namespace, account, expiration=7200):
    """Write (mode 0600) a kubeconfig for the ServiceAccount, its token minted with TokenRequest as AWX's
    Kubernetes credential would carry one, for the cluster of the admin kubeconfig's current context."""
    import yaml
    from kubernetes import client
    token = client.CoreV1Api(api_client).create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": expiration}}).status.token
    with open(admin_kubeconfig) as handle:
        admin = yaml.safe_load(handle)
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
              "users": [{"name": account, "user": {"token": token}}],
              "contexts": [{"name": "runner", "context": {"cluster": cluster["name"], "user": account}}],
              "current-context": "runner"}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    os.chmod(path, 0o600)
    return path


def install_canary_crd(api_client, timeout=30):
    """The collection's Canary CRD (crds/canary.yaml), applied and Established; returns the manifest."""
    import time
    import yaml
    from kubernetes import client
    with open(os.path.join(REPO, "crds", "canary.yaml")) as handle:
        crd = yaml.safe_load(handle)
    apply_manifest(api_client, crd)
    ext = client.ApiextensionsV1Api(api_client)
    deadline = time.time() + timeout
    while True:
        got = ext.read_custom_resource_definition(crd["metadata"]["name"])
        if any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
            return crd
        if time.time() > deadline:
            raise RuntimeError("Canary CRD not Established after %d s" % timeout)
        time.sleep(0.2)


def new_namespace(api_client, name, labels=None, timeout=30):
    """Create namespace ``name`` and wait for its default ServiceAccount (the ServiceAccount admission
    refuses pods until it exists)."""
    import time
    from kubernetes import client
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
    deadline = time.time() + timeout
    while time.time() < deadline:
        if core.list_namespaced_service_account(name, field_selector="metadata.name=default").items:
            break
        time.sleep(0.2)
    return name
