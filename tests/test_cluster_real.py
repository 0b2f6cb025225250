"""The full cluster flow against a real Kubernetes cluster with KServe (``-m cluster``).

Skipped unless ``KUBECONFIG`` (or ``~/.kube/config``) reaches an API server that serves the KServe
CRDs and lets the user create namespaces. Each test gets its own namespace, deleted at teardown.
Waiting for a model to become ready pulls the vLLM image and downloads a model, so it only runs
with ``POOLSERVE_CLUSTER_WAIT=1``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from poolserve.config.load import parse_spec
from poolserve.errors import PoolserveError
from poolserve.kserve.render import render
from poolserve.targets.base import DeployOptions

pytestmark = pytest.mark.cluster

SPEC = """\
namespace: {ns}
image: vllm/vllm-openai:v0.32.0
cache: {{pvc: model-cache}}
runtimes:
  - {{name: vllm-embedding-runtime, task: embed, gpu_memory_utilization: 0.3, accelerator: null}}
defaults:
  gpus: 0
  resources: {{requests: {{cpu: "1", memory: 2Gi}}, limits: {{cpu: "2", memory: 4Gi}}}}
models:
  - {{name: minilm, model_id: sentence-transformers/all-MiniLM-L6-v2, max_model_len: 256}}
"""


@pytest.fixture(scope="session")
def kube() -> object:
    pytest.importorskip("kubernetes")
    from poolserve.targets.cluster.kube import KubeCluster

    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if not any(os.path.exists(p) for p in path.split(os.pathsep) if p):
        pytest.skip("no KUBECONFIG: no cluster to test against")
    cluster = KubeCluster()
    try:
        cluster.server_version()
        cluster.list("serving.kserve.io/v1beta1", "InferenceService", "default")
    except PoolserveError as err:
        pytest.skip(f"no usable cluster with KServe: {err}")
    return cluster


@pytest.fixture
def namespace(kube: object) -> Iterator[str]:
    from poolserve.targets.cluster.kube import KubeCluster

    assert isinstance(kube, KubeCluster)
    name = f"poolserve-test-{uuid.uuid4().hex[:8]}"
    try:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except PoolserveError as err:
        pytest.skip(f"cannot create a test namespace: {err}")
    try:
        kube.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "model-cache", "namespace": name},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}})
        yield name
    finally:
        kube.delete("v1", "Namespace", name)


def test_deploy_diff_status_delete(kube: object, namespace: str) -> None:
    from poolserve.targets.cluster.kube import KubeCluster
    from poolserve.targets.cluster.target import ClusterTarget

    assert isinstance(kube, KubeCluster)
    spec = parse_spec(SPEC.format(ns=namespace), "cluster-test.yaml")
    rendered = render(spec)
    tgt = ClusterTarget(kube)

    dry = tgt.deploy(rendered, [], wait=False, timeout_s=60, options=DeployOptions(dry_run="server"))
    assert {c.kind for c in dry.changes if c.action == "created"} == {"ServingRuntime", "InferenceService"}
    assert kube.get("serving.kserve.io/v1beta1", "InferenceService", "minilm", namespace) is None

    assert {d.action for d in tgt.diff(rendered, []) if d.kind != "Namespace"} == {"create"}

    first = tgt.deploy(rendered, [], wait=False, timeout_s=60)
    assert {c.name: c.action for c in first.changes}["minilm"] == "created"
    second = tgt.deploy(rendered, [], wait=False, timeout_s=60)
    assert {c.action for c in second.changes} == {"unchanged"}, second.changes
    # The server's defaults (Standard, the modelFormat annotation) are not differences.
    assert [d.diff for d in tgt.diff(rendered, []) if d.action != "none"] == []

    (st,) = tgt.status(rendered, [])
    assert st.phase in ("Loading", "Ready", "Failed")
    if os.environ.get("POOLSERVE_CLUSTER_WAIT") == "1":
        (ready,) = tgt.wait(rendered, ["minilm"], timeout_s=1800)
        assert ready.ready and ready.url
        assert any("Uvicorn running" in line or "Started server" in line for line in tgt.logs(render(spec), "minilm"))

    deleted = tgt.delete(rendered, [], runtimes=True)
    assert {(c.kind, c.action) for c in deleted.changes} == {("InferenceService", "deleted"),
                                                            ("ServingRuntime", "deleted")}
