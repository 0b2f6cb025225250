"""preflight for the operators and claims the new keys rely on: KEDA, the Prometheus operator, storage_uri PVCs."""

from __future__ import annotations

import pytest

from poolserve.config.load import parse_spec
from poolserve.config.schema import PoolSpec
from poolserve.errors import NotFound
from poolserve.kserve.render import render, select_models
from poolserve.targets.cluster.apply import deploy_objects
from poolserve.targets.cluster.base import forbidden, kind_info, kind_missing
from poolserve.targets.cluster.fake.cluster import FakeCluster
from poolserve.targets.cluster.fake.kserve import cluster_for
from poolserve.targets.cluster.preflight import PreflightReport, preflight

SPEC = """\
namespace: embeddings
cache: {pvc: model-cache}
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
models:
  - name: minilm
    model_id: sentence-transformers/all-MiniLM-L6-v2
    max_replicas: 3
    autoscaling: {metric: queue, target: 8}
  - name: e5
    model_id: intfloat/e5-base-v2
    storage_uri: pvc://model-store/intfloat/e5-base-v2
"""


def run(fake: FakeCluster, spec: PoolSpec) -> PreflightReport:
    rendered = render(spec)
    return preflight(fake, spec, select_models(rendered, []), deploy_objects(rendered, []))


def test_healthy() -> None:
    spec = parse_spec("monitoring: {enabled: true}\n" + SPEC)
    fake = cluster_for(spec)
    fake.seed({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "model-store", "namespace": "embeddings"}, "status": {"phase": "Bound"}})
    run(fake, spec)
    assert any(c.verb == "list" and c.kind == "ScaledObject" for c in fake.calls)
    assert any(c.verb == "list" and c.kind == "PodMonitor" for c in fake.calls)


def test_queue_autoscaling_without_keda() -> None:
    spec = parse_spec(SPEC)
    fake = cluster_for(spec)
    fake.errors["list:ScaledObject"] = kind_missing("keda.sh/v1alpha1", "ScaledObject")
    with pytest.raises(NotFound) as exc:
        run(fake, spec)
    msg = str(exc.value)
    assert msg.startswith("the API server has no ScaledObject (keda.sh/v1alpha1) resource")
    assert "autoscaling on the queue (minilm) needs KEDA: install the Custom Metrics Autoscaler operator" in msg
    assert "\n" not in msg and exc.value.exit_code == 5


def test_monitoring_without_the_prometheus_operator() -> None:
    spec = parse_spec("monitoring: {enabled: true}\n" + SPEC.replace("    autoscaling: {metric: queue, target: 8}\n",
                                                                   "    autoscaling: {metric: cpu, target: 80}\n"))
    fake = cluster_for(spec)
    fake.errors["list:PodMonitor"] = kind_missing("monitoring.coreos.com/v1", "PodMonitor")
    with pytest.raises(NotFound, match=r"no PodMonitor \(monitoring.coreos.com/v1\).*set monitoring.enabled: false"):
        run(fake, spec)
    assert not any(c.kind == "ScaledObject" for c in fake.calls)  # cpu: KEDA is not needed


def test_a_check_the_user_may_not_run_is_a_note() -> None:
    spec = parse_spec(SPEC)
    fake = cluster_for(spec)
    fake.errors["list:ScaledObject"] = forbidden("list", kind_info("keda.sh/v1alpha1", "ScaledObject"), "embeddings")
    fake.errors["get:PersistentVolumeClaim/model-store"] = forbidden(
        "get", kind_info("v1", "PersistentVolumeClaim"), "embeddings")
    report = run(fake, spec)
    assert any("cannot check that ScaledObject" in n for n in report.notes)
    assert any("cannot check PersistentVolumeClaim embeddings/model-store" in n for n in report.notes)


def test_a_storage_uri_claim_that_does_not_exist() -> None:
    spec = parse_spec(SPEC)
    with pytest.raises(NotFound, match=r"^PersistentVolumeClaim embeddings/model-store \(e5's storage_uri\) does "
                                       r"not exist"):
        run(cluster_for(spec), spec)
