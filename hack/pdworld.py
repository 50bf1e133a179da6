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
