"""Issue 11's cluster side against the envtest cluster: a real API server, controller-manager and scheduler.

- ``poolserve stop``/``start`` flip ``serving.kserve.io/stop`` with server-side apply as field manager
  poolserve, and nothing else changes; the simulated KServe v0.20 deletes and recreates the predictor;
  ``status`` says Stopped, ``wait`` does not wait for it; ``start`` takes the annotation over from the
  dashboard's JSON patch.
- The new spec cases (CPU runtime, shared GPUs and MIG slices, a stopped model) pass the real API
  server's validation (``deploy --dry-run server``) and deploy: the CPU model's pod asks for no GPU and
  the real scheduler puts it on the tainted CPU-pool node, the MIG model's pod on the node with slices.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from conftest import CONFIG
from support.envcluster import EnvCluster, add_gpu_node
from support.kubeapi import path
from support.poolcli import cli

ROOT = Path(__file__).resolve().parents[1]
ISVC = "serving.kserve.io/inferenceservice"
ISVC_PATH = "serving.kserve.io/v1beta1"
STOP = "serving.kserve.io/stop"
MINILM = "minilm-embedding"
MIG = "nvidia.com/mig-1g.10gb"


@dataclass
class Project:
    kube: EnvCluster
    ns: str
    config: Path

    def run(self, *args: str) -> Result:
        return cli(*args, kubeconfig=self.kube.kubeconfig, config=self.config)

    def isvc(self, name: str) -> dict[str, Any] | None:
        return self.kube.api.get(path(ISVC_PATH, "inferenceservices", self.ns, name))

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.kube.api.get(path("apps/v1", "deployments", self.ns, f"{name}-predictor"))

    def pods(self, model: str) -> list[dict[str, Any]]:
        return self.kube.api.list(path("v1", "pods", self.ns), labelSelector=f"{ISVC}={model}")

    def statuses(self) -> dict[str, dict[str, Any]]:
        r = self.run("status", "-o", "json")
        assert r.exit_code == 0, r.stderr
        return {s["name"]: s for s in json.loads(r.stdout)}


def _project(kube: EnvCluster, ns: str, tmp_path: Path, source: Path) -> Project:
    text = source.read_text()
    namespace = next(line for line in text.splitlines() if line.startswith("namespace: "))
    config = tmp_path / "poolserve.yaml"
    config.write_text(text.replace(namespace + "\n", f"namespace: {ns}\n", 1))
    return Project(kube, ns, config)


@pytest.fixture
def project(kube: EnvCluster, ns: str, tmp_path: Path) -> Project:
    """The committed config, in the test's namespace."""
    return _project(kube, ns, tmp_path, CONFIG)


_node_ids = itertools.count(1)


@pytest.fixture
def pool_nodes(kube: EnvCluster, ns: str) -> Iterator[tuple[str, str]]:
    """Two more nodes for this test: seven 1g.10gb MIG slices (the GPU operator's mixed strategy) and no
    whole GPU, and a CPU node labelled and tainted for a dedicated CPU pool (what
    tests/specs/cpu-runtime.yaml selects). Removed once the test's pods on them are gone."""
    n = next(_node_ids)
    mig, cpu = f"mig-node-{n}", f"cpu-node-{n}"
    add_gpu_node(kube.api, mig, gpus=0, kubelet_port=kube.kubelet.port, extra={MIG: "7"})
    add_gpu_node(kube.api, cpu, gpus=0, kubelet_port=kube.kubelet.port)
    kube.api.merge_patch(f"/api/v1/nodes/{cpu}", {
        "metadata": {"labels": {"node-role.kubernetes.io/cpu-inference": ""}},
        "spec": {"taints": [{"key": "dedicated", "value": "cpu-inference", "effect": "NoSchedule"}]}})
    kube.kubelet.nodes.update((mig, cpu))
    yield mig, cpu
    # The InferenceServices go first (their Deployments and pods with them, through the real garbage
    # collector), so no pod is left on a node that disappears.
    for isvc in kube.api.list(path(ISVC_PATH, "inferenceservices", ns)):
        kube.api.delete(path(ISVC_PATH, "inferenceservices", ns, isvc["metadata"]["name"]))
    kube.cp.wait("the pods on the extra nodes gone", lambda: not [
        pod for pod in kube.api.list("/api/v1/pods") if pod["spec"].get("nodeName") in (mig, cpu)], timeout_s=60)
    for name in (mig, cpu):
        kube.kubelet.nodes.discard(name)
        kube.api.delete(f"/api/v1/nodes/{name}")


def _ours(obj: dict[str, Any]) -> dict[str, Any]:
    entry = next(e for e in obj["metadata"]["managedFields"]
                 if e["manager"] == "poolserve" and e["operation"] == "Apply")
    return entry["fieldsV1"]  # type: ignore[no-any-return]


def _wait_for(kube: EnvCluster, what: str, check: Any, timeout_s: float = 60) -> None:
    kube.cp.wait(what, check, timeout_s=timeout_s)


def test_stop_and_start_flip_only_the_annotation_and_kserve_follows(project: Project) -> None:
    p = project
    r = p.run("deploy", MINILM)
    assert r.exit_code == 0, r.stderr
    before = p.isvc(MINILM)
    assert before is not None and p.pods(MINILM)

    r = p.run("stop", MINILM)
    assert r.exit_code == 0, r.stderr
    assert f"inferenceservice/{p.ns}/{MINILM} stopped" in r.stderr
    after = p.isvc(MINILM)
    assert after is not None and after["metadata"]["annotations"][STOP] == "true"
    # Server-side apply as poolserve touched nothing else: spec and generation as they were, and
    # poolserve's field set is the old one plus the annotation.
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert {k: v for k, v in after["metadata"]["annotations"].items() if k != STOP} == before["metadata"]["annotations"]
    grown = _ours(after)
    assert "f:serving.kserve.io/stop" in grown["f:metadata"]["f:annotations"]
    grown["f:metadata"]["f:annotations"].pop("f:serving.kserve.io/stop")
    assert grown == _ours(before)

    # KServe (simulated from v0.20) deletes the predictor; the pods go with it.
    _wait_for(p.kube, "the predictor Deployment deleted", lambda: p.deployment(MINILM) is None)
    _wait_for(p.kube, "the predictor pods gone", lambda: not p.pods(MINILM))
    isvc = p.isvc(MINILM)
    assert isvc is not None
    conds = {c["type"]: c for c in isvc["status"]["conditions"]}
    assert conds["Stopped"]["status"] == "True"
    assert (conds["PredictorReady"]["status"], conds["PredictorReady"].get("reason")) == ("False", "Stopped")
    assert "url" not in isvc["status"]
    st = p.statuses()[MINILM]
    assert st["phase"] == "Stopped" and st["replicas_desired"] == 0
    r = p.run("wait", MINILM, "--timeout", "5s")  # nothing to wait for
    assert r.exit_code == 0, r.stderr
    assert p.run("stop", MINILM).stderr.count("unchanged") == 1

    r = p.run("start", MINILM)  # waits until ready
    assert r.exit_code == 0, r.stderr
    assert f"inferenceservice/{p.ns}/{MINILM} started" in r.stderr
    live = p.isvc(MINILM)
    assert live is not None and live["metadata"]["annotations"][STOP] == "false"
    assert p.deployment(MINILM) is not None and p.statuses()[MINILM]["phase"] == "Ready"

    # The config is the truth: deploy applies no annotation, so the one poolserve owns goes.
    r = p.run("deploy", MINILM, "--no-wait")
    assert r.exit_code == 0 and f"inferenceservice/{p.ns}/{MINILM} configured" in r.stderr
    live = p.isvc(MINILM)
    assert live is not None and STOP not in live["metadata"]["annotations"]


def test_start_takes_the_annotation_over_from_the_dashboards_stop(project: Project) -> None:
    p = project
    assert p.run("deploy", MINILM).exit_code == 0
    # The dashboard's Stop button: a JSON patch under the user's own identity (odh-dashboard
    # packages/kserve/src/deploymentStatus.ts patchDeploymentStoppedStatus).
    p.kube.api.request("PATCH", path(ISVC_PATH, "inferenceservices", p.ns, MINILM),
                       body=[{"op": "add", "path": "/metadata/annotations/serving.kserve.io~1stop", "value": "true"}],
                       content_type="application/json-patch+json", params={"fieldManager": "odh-dashboard"})
    _wait_for(p.kube, "the predictor Deployment deleted", lambda: p.deployment(MINILM) is None)
    assert p.statuses()[MINILM]["phase"] == "Stopped"
    r = p.run("start", MINILM)
    assert r.exit_code == 0, r.stderr  # no conflict with the dashboard's field manager
    live = p.isvc(MINILM)
    assert live is not None and live["metadata"]["annotations"][STOP] == "false"
    assert "f:serving.kserve.io/stop" in _ours(live)["f:metadata"]["f:annotations"]


@pytest.mark.parametrize("case", ["cpu-runtime", "gpu-sharing", "stopped"])
def test_new_spec_cases_pass_the_api_server_and_deploy(case: str, kube: EnvCluster, ns: str, tmp_path: Path,
                                                       pool_nodes: tuple[str, str]) -> None:
    mig_node, cpu_node = pool_nodes
    p = _project(kube, ns, tmp_path, ROOT / "tests" / "specs" / f"{case}.yaml")
    r = p.run("deploy", "--dry-run", "server")
    assert r.exit_code == 0, r.stderr
    assert "created (dry run: server)" in r.stderr and p.isvc(next(iter(p.statuses()))) is None
    r = p.run("deploy", "--timeout", "90s")
    assert r.exit_code == 0, r.stderr
    phases = {name: s["phase"] for name, s in p.statuses().items()}
    if case == "cpu-runtime":
        assert phases == {"minilm-cpu": "Ready", "msmarco-reranker": "Ready"}
        (cpu_pod,) = p.pods("minilm-cpu")
        c = cpu_pod["spec"]["containers"][0]
        assert not any(k.startswith("nvidia.com/") for k in c["resources"].get("limits", {}))
        assert cpu_pod["spec"]["nodeSelector"]["kubernetes.io/arch"] == "amd64"
        assert any(t.get("key") == "dedicated" for t in cpu_pod["spec"]["tolerations"])
        assert cpu_pod["spec"]["nodeName"] == cpu_node  # the CPU pool, tolerating its taint
        omp = next(e for e in c["env"] if e["name"] == "OMP_NUM_THREADS")
        assert omp["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
        (mig_pod,) = p.pods("msmarco-reranker")
        assert mig_pod["spec"]["nodeName"] == mig_node
    elif case == "gpu-sharing":
        assert set(phases.values()) == {"Ready"}
        (bge,) = p.pods("bge-m3")
        assert bge["spec"]["nodeName"] == mig_node
    else:
        assert phases == {"minilm": "Ready", "reranker": "Stopped"}  # deploy did not wait for the stopped one
        assert not p.pods("reranker") and p.deployment("reranker") is None
