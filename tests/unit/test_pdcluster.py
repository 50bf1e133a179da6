"""Unit tests of the launcher's pure parts (dev tooling under hack/)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "hack"))

import pdcluster  # noqa: E402


V1BETA1_SPLIT = {
    "apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "trafficsplits.split.smi-spec.io"},
    "spec": {
        "group": "split.smi-spec.io", "scope": "Namespaced",
        "names": {"kind": "TrafficSplit", "plural": "trafficsplits"},
        "version": "v1alpha4",
        "versions": [{"name": "v1alpha4", "served": True, "storage": True},
                     {"name": "v1alpha3", "served": False, "storage": False}],
        "additionalPrinterColumns": [{"name": "Service", "type": "string", "JSONPath": ".spec.service"}],
        "validation": {"openAPIV3Schema": {"properties": {"spec": {"type": "object"}}}},
    },
}


def test_v1beta1_crd_is_converted_to_v1_with_schema_in_every_version():
    crd = pdcluster._v1beta1_crd_to_v1(V1BETA1_SPLIT)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    spec = crd["spec"]
    assert "validation" not in spec and "version" not in spec and "additionalPrinterColumns" not in spec
    assert [v["name"] for v in spec["versions"]] == ["v1alpha4", "v1alpha3"]
    for version in spec["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"  # structural schemas need a root type
        assert schema["properties"]["spec"] == {"type": "object"}
        assert version["additionalPrinterColumns"][0]["jsonPath"] == ".spec.service"
    assert spec["versions"][0]["storage"] is True


def test_versions_file_pins_everything_the_launcher_reads():
    pinned = pdcluster.versions()
    for key in ("K8S_VERSION", "KWOK_VERSION", "ETCD_VERSION", "ISTIO_API_VERSION", "GATEWAY_API_VERSION",
                "SMI_SDK_VERSION"):
        assert pinned.get(key, "").startswith("v"), key
