"""deploy removes the autoscaler KServe leaves behind when an InferenceService's class changes (FakeCluster)."""

from __future__ import annotations

from typing import Any

from poolserve.config.load import parse_spec
from poolserve.kserve.render import render
from poolserve.targets.base import DeployOptions
from poolserve.targets.cluster.base import forbidden, kind_info, kind_missing
from poolserve.targets.cluster.fake.kserve import cluster_for
from poolserve.targets.cluster.target import ClusterTarget

NS = "embeddings"
SPEC = """\
namespace: embeddings
cache: {pvc: model-cache}
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
models:
  - name: minilm
    model_id: sentence-transformers/all-MiniLM-L6-v2
    max_replicas: 4
"""
QUEUE = "    autoscaling: {metric: queue, target: 8}\n"


def _owned(api_version: str, kind: str, owner: str = "minilm") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {
        "name": "minilm-predictor", "namespace": NS,
        "ownerReferences": [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "name": owner,
                             "uid": "u", "controller": True}]}, "spec": {}}


def _deploy(text: str, fake: Any, **options: Any) -> Any:
    rendered = render(parse_spec(text))
    return ClusterTarget(fake).deploy(rendered, [], wait=False, timeout_s=10, options=DeployOptions(**options))


def test_moving_to_the_queue_deletes_kserves_hpa() -> None:
    spec = parse_spec(SPEC + QUEUE)
    fake = cluster_for(spec)
    fake.seed(_owned("autoscaling/v2", "HorizontalPodAutoscaler"))
    result = _deploy(SPEC + QUEUE, fake)
    deleted = [c for c in result.changes if c.action == "deleted"]
    assert [(c.kind, c.name) for c in deleted] == [("HorizontalPodAutoscaler", "minilm-predictor")]
    assert fake.get("autoscaling/v2", "HorizontalPodAutoscaler", "minilm-predictor", NS) is None


def test_leaving_the_queue_deletes_the_scaled_object() -> None:
    spec = parse_spec(SPEC)
    fake = cluster_for(spec)
    fake.seed(_owned("keda.sh/v1alpha1", "ScaledObject"))
    _deploy(SPEC, fake)
    assert fake.get("keda.sh/v1alpha1", "ScaledObject", "minilm-predictor", NS) is None


def test_the_current_autoscaler_and_foreign_ones_stay() -> None:
    spec = parse_spec(SPEC + QUEUE)
    fake = cluster_for(spec)
    fake.seed(_owned("keda.sh/v1alpha1", "ScaledObject"))  # the one KServe keeps for class keda
    hpa = _owned("autoscaling/v2", "HorizontalPodAutoscaler", owner="someone-else")
    fake.seed(hpa)
    result = _deploy(SPEC + QUEUE, fake)
    assert not [c for c in result.changes if c.action == "deleted"]
    assert fake.get("keda.sh/v1alpha1", "ScaledObject", "minilm-predictor", NS) is not None
    assert fake.get("autoscaling/v2", "HorizontalPodAutoscaler", "minilm-predictor", NS) is not None


def test_dry_runs_delete_nothing() -> None:
    spec = parse_spec(SPEC + QUEUE)
    fake = cluster_for(spec)
    fake.seed(_owned("autoscaling/v2", "HorizontalPodAutoscaler"))
    server = _deploy(SPEC + QUEUE, fake, dry_run="server")
    assert any("is left from minilm's previous autoscaler" in n and "deploy removes it" in n for n in server.notes)
    _deploy(SPEC + QUEUE, fake, dry_run="client")
    assert fake.get("autoscaling/v2", "HorizontalPodAutoscaler", "minilm-predictor", NS) is not None
    assert not [c for c in fake.calls if c.verb == "delete"]


def test_without_keda_or_the_right_to_delete() -> None:
    spec = parse_spec(SPEC)
    fake = cluster_for(spec)
    fake.errors["get:ScaledObject"] = kind_missing("keda.sh/v1alpha1", "ScaledObject")
    assert not [c for c in _deploy(SPEC, fake).changes if c.action == "deleted"]  # no KEDA: nothing left behind
    spec = parse_spec(SPEC + QUEUE)
    fake = cluster_for(spec)
    fake.seed(_owned("autoscaling/v2", "HorizontalPodAutoscaler"))
    fake.errors["delete:HorizontalPodAutoscaler"] = forbidden(
        "delete", kind_info("autoscaling/v2", "HorizontalPodAutoscaler"), NS)
    result = _deploy(SPEC + QUEUE, fake)
    assert any("you may not delete it; ask an admin to `oc delete horizontalpodautoscaler -n embeddings "
               "minilm-predictor`" in n for n in result.notes)


def test_a_member_who_may_not_read_the_autoscaler_kinds_still_deploys() -> None:
    spec = parse_spec(SPEC)
    fake = cluster_for(spec)
    fake.errors["get:ScaledObject"] = forbidden("get", kind_info("keda.sh/v1alpha1", "ScaledObject"), NS)
    result = _deploy(SPEC, fake)
    assert not result.notes or not any("previous autoscaler" in n for n in result.notes)
    spec = parse_spec(SPEC + QUEUE)
    fake = cluster_for(spec)
    fake.errors["get:HorizontalPodAutoscaler"] = forbidden(
        "get", kind_info("autoscaling/v2", "HorizontalPodAutoscaler"), NS)
    result = _deploy(SPEC + QUEUE, fake)
    assert any("cannot check for HorizontalPodAutoscaler embeddings/minilm-predictor" in n for n in result.notes)
