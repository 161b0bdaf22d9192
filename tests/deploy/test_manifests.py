"""Every manifest in deploy/ validates offline and strictly (unknown fields are errors): the
core kinds with kubernetes-validate against a current Kubernetes, the KServe kinds against the
KServe CRD schemas; and the probes, security context, resources and ports are the ones
docs/deployment.md describes."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.crd_schema import errors, load_crds

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
KSERVE = REPO_ROOT / "deploy" / "kserve"
KUBERNETES_VERSION = "1.37.0"
# The KServe CRDs live beside the clone (shared/ is laid next to it); KSERVE_CRDS overrides.
CRDS = Path(os.environ.get("KSERVE_CRDS", REPO_ROOT.parent / "shared" / "kserve-crds"))
SHUTDOWN_TIMEOUT = 30.0
MEASURED_PEAK_RSS_MIB = 215  # docs/deployment.md: example models under load


def documents(folder: Path) -> dict[str, dict[str, Any]]:
    """kind -> the one manifest of that kind in folder."""
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in found, f"two {document['kind']} in {folder}"
            found[document["kind"]] = document
    return found


CORE = documents(KUBERNETES)
CUSTOM = documents(KSERVE)


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity).groups()
    return float(number) * (1024 if unit == "Gi" else 1)


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_the_expected_kinds_are_there() -> None:
    assert sorted(CORE) == [
        "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
        "PodDisruptionBudget", "Service",
    ]  # fmt: skip
    assert sorted(CUSTOM) == ["InferenceService", "ServingRuntime"]


@pytest.mark.parametrize("kind", sorted(CORE))
def test_core_manifest_validates_strictly(kind: str) -> None:
    kubernetes_validate.validate(CORE[kind], KUBERNETES_VERSION, strict=True)


def test_core_validation_rejects_an_unknown_field() -> None:
    deployment = copy.deepcopy(CORE["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["name"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.fixture(scope="module")
def crds() -> dict:
    if not CRDS.is_dir():
        pytest.skip(f"KServe CRD schemas not found at {CRDS} (set KSERVE_CRDS to their folder)")
    return load_crds(CRDS)


@pytest.mark.parametrize("kind", sorted(CUSTOM))
def test_kserve_manifest_validates_strictly(kind: str, crds: dict) -> None:
    assert errors(CUSTOM[kind], crds) == []


def test_kserve_validation_rejects_an_unknown_field(crds: dict) -> None:
    runtime = copy.deepcopy(CUSTOM["ServingRuntime"])
    runtime["spec"]["containers"][0]["ports"][0]["appProtocol"] = "h2c"  # a Service field
    assert errors(runtime, crds) == [
        "spec/containers/0/ports/0: Additional properties are not allowed "
        "('appProtocol' was unexpected)"
    ]


def container(kind_map: dict, kind: str) -> dict[str, Any]:
    spec = kind_map[kind]["spec"]
    containers = (
        spec["template"]["spec"]["containers"] if kind == "Deployment" else spec["containers"]
    )
    assert len(containers) == 1
    return containers[0]


def test_probes_use_the_grpc_health_services() -> None:
    server = container(CORE, "Deployment")
    probes = {key: server[key] for key in ("startupProbe", "livenessProbe", "readinessProbe")}
    # Numeric ports, as Kubernetes requires for gRPC probes; liveness is not readiness.
    assert {key: probe["grpc"] for key, probe in probes.items()} == {
        "startupProbe": {"port": 8001, "service": ""},
        "livenessProbe": {"port": 8001, "service": "liveness"},
        "readinessProbe": {"port": 8001, "service": ""},
    }
    startup = probes["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 300  # model loads: 5 min


def test_security_context() -> None:
    pod = CORE["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    for server in (container(CORE, "Deployment"), container(CUSTOM, "ServingRuntime")):
        assert server["securityContext"] == {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }


def test_resources_cover_the_measured_memory() -> None:
    for server in (container(CORE, "Deployment"), container(CUSTOM, "ServingRuntime")):
        requests, limits = server["resources"]["requests"], server["resources"]["limits"]
        assert requests == {"cpu": "1", "memory": "256Mi"}
        assert limits == {"cpu": "2", "memory": "512Mi"}
        assert mebibytes(requests["memory"]) >= MEASURED_PEAK_RSS_MIB
        assert cores(limits["cpu"]) >= cores(requests["cpu"])


def test_shutdown_fits_in_the_grace_period() -> None:
    pod = CORE["Deployment"]["spec"]["template"]["spec"]
    args = container(CORE, "Deployment")["args"]
    timeout = float(args[args.index("--shutdown-timeout") + 1])
    assert timeout == SHUTDOWN_TIMEOUT
    assert pod["terminationGracePeriodSeconds"] > timeout
    runtime_args = container(CUSTOM, "ServingRuntime")["args"]
    assert f"--shutdown-timeout={SHUTDOWN_TIMEOUT:g}" in runtime_args


def test_ports_service_and_scrape_annotations() -> None:
    server = container(CORE, "Deployment")
    ports = {port["name"]: port["containerPort"] for port in server["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    service = CORE["Service"]["spec"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]} == {
        "http": (8000, "http"), "grpc": (8001, "grpc"), "metrics": (8002, "metrics"),
    }  # fmt: skip
    labels = CORE["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    annotations = CORE["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8002",
        "prometheus.io/path": "/metrics",
    }


def test_models_come_read_only_from_a_volume() -> None:
    pod = CORE["Deployment"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in container(CORE, "Deployment")["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]
    assert claim == {
        "claimName": CORE["PersistentVolumeClaim"]["metadata"]["name"],
        "readOnly": True,
    }
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["medium"] == "Memory"


def test_autoscaler_and_disruption_budget_never_block_a_drain() -> None:
    hpa = CORE["HorizontalPodAutoscaler"]["spec"]
    deployment = CORE["Deployment"]["metadata"]["name"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment,
    }
    assert hpa["minReplicas"] >= 2
    pdb = CORE["PodDisruptionBudget"]["spec"]
    labels = CORE["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    # At the minimum replica count one pod may still be evicted.
    if "maxUnavailable" in pdb:
        assert pdb["maxUnavailable"] >= 1
    else:
        assert pdb["minAvailable"] < hpa["minReplicas"]


def test_serving_runtime_declares_one_h2c_port_for_grpc_v2() -> None:
    runtime = CUSTOM["ServingRuntime"]["spec"]
    server = container(CUSTOM, "ServingRuntime")
    # Knative allows one container port; HTTP/2 goes only to a port named h2c.
    assert server["ports"] == [{"name": "h2c", "containerPort": 8001, "protocol": "TCP"}]
    assert "--grpc-port=8001" in server["args"]
    assert "--model-name={{.Name}}" in server["args"]
    assert server["command"] == ["/opt/onnxserve/bin/onnxserve-kserve"]
    assert "grpc-v2" in runtime["protocolVersions"]
    assert [f["name"] for f in runtime["supportedModelFormats"]] == ["onnx"]
    service = CUSTOM["InferenceService"]["spec"]["predictor"]["model"]
    assert service["runtime"] == CUSTOM["ServingRuntime"]["metadata"]["name"]
    assert service["protocolVersion"] == "grpc-v2"
    assert service["modelFormat"]["name"] == "onnx"
    assert service["storageUri"]


def test_the_docs_give_the_same_settings() -> None:
    docs = (REPO_ROOT / "docs" / "deployment.md").read_text()
    for fact in (
        "service: liveness",
        "terminationGracePeriodSeconds: 40",
        "cpu: 1, memory: 256Mi",
        "cpu: 2, memory: 512Mi",
        "maxUnavailable: 1",
        "h2c",
        "/mnt/models",
    ):
        assert fact in docs, fact
