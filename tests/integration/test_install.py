"""playbooks/install.yml puts the Canary CRD and the ClusterRole in place, idempotently."""

import os

from kubernetes import client

from ansible_runner import REPO, run_playbook


def _run(world, check=False):
    plays = [{"import_playbook": os.path.join(REPO, "playbooks", "install.yml")}]
    return run_playbook(plays, check=check, env={"K8S_AUTH_KUBECONFIG": world.kubeconfig})


def test_install_playbook_is_idempotent(world, api_client):
    rc, out, err = _run(world, check=True)
    assert rc == 0, out + err
    rc, out, err = _run(world)
    assert rc == 0, out + err
    crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition("canaries.progressive.delivery")
    assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
    role = client.RbacAuthorizationV1Api(api_client).read_cluster_role("progressive-delivery")
    assert any("canaries/status" in (r.resources or []) for r in role.rules)
    rc, out, err = _run(world)
    assert rc == 0 and "changed=0" in out, out + err
