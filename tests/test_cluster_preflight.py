"""preflight: each check's failure is one line with the fix; checks it may not run become notes."""

from __future__ import annotations

import pytest

from poolserve.config.load import parse_spec
from poolserve.config.schema import PoolSpec
from poolserve.errors import Forbidden, NotFound, NotReady
from poolserve.kserve.render import render, select_models
from poolserve.targets.cluster.apply import deploy_objects
from poolserve.targets.cluster.base import forbidden, kind_info
from poolserve.targets.cluster.fake.cluster import FakeCluster
from poolserve.targets.cluster.fake.kserve import cluster_for
from poolserve.targets.cluster.fake.objects import crd, node
from poolserve.targets.cluster.preflight import PreflightReport, crd_versions, preflight
from poolserve.targets.cluster.target import ClusterTarget

SPEC = """\
namespace: embeddings
image: vllm/vllm-openai:v0.32.0
cache: {pvc: model-cache}
dashboard: {namespace_display_name: Embeddings}
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
  - {name: vllm-reranker-runtime, task: score}
defaults: {gpus: 1}
models:
  - {name: minilm, model_id: sentence-transformers/all-MiniLM-L6-v2}
  - {name: granite, model_id: ibm-granite/granite-embedding-278m-multilingual, replicas: 2}
  - {name: reranker, model_id: cross-encoder/ms-marco-MiniLM-L12-v2}
"""


@pytest.fixture
def spec() -> PoolSpec:
    return parse_spec(SPEC, "test.yaml")


def run(fake: FakeCluster, spec: PoolSpec, names: list[str] | None = None,
        runtimes_only: bool = False) -> PreflightReport:
    rendered = render(spec)
    models = [] if runtimes_only else select_models(rendered, names or [])
    return preflight(fake, spec, models, deploy_objects(rendered, names or [], runtimes_only=runtimes_only))


def denied_get(kind: str, api_version: str = "v1") -> Forbidden:
    return forbidden("get", kind_info(api_version, kind), None, detail=f'User "dev" cannot get resource "{kind}"')


def test_healthy_cluster(spec: PoolSpec) -> None:
    report = run(cluster_for(spec), spec)
    assert report.server_version == "v1.31.4"
    assert report.kserve == "InferenceService v1beta1, ServingRuntime v1alpha1"
    assert report.namespace_exists and not report.namespace_needs_apply
    assert report.notes == ("nvidia.com/gpu: 4 asked, 8 allocatable on 1 nodes (in use by others not counted)",)


def test_crd_version_label_is_reported() -> None:
    c = crd("inferenceservices", "InferenceService", "v1beta1", labels={"app.kubernetes.io/version": "v0.15.2"})
    assert crd_versions(c) == "InferenceService v1beta1 (app.kubernetes.io/version=v0.15.2)"


def test_users_who_may_not_read_crds_fall_back_to_listing(spec: PoolSpec) -> None:
    fake = cluster_for(spec)
    fake.errors["get:CustomResourceDefinition"] = denied_get("CustomResourceDefinition", "apiextensions.k8s.io/v1")
    assert run(fake, spec).kserve == "installed (versions unknown: you may not read CRDs)"
    fake.kserve = False
    with pytest.raises(NotFound, match="KServe is not installed"):
        run(fake, spec)


def test_missing_crd(spec: PoolSpec) -> None:
    fake = cluster_for(spec)
    fake.remove("CustomResourceDefinition", "servingruntimes.serving.kserve.io")
    with pytest.raises(NotFound) as exc:
        run(fake, spec)
    assert str(exc.value).startswith("the API server has no ServingRuntime (serving.kserve.io/v1alpha1) resource: "
                                     "KServe is not installed")
    assert exc.value.exit_code == 5


def test_missing_namespace_that_may_not_be_created(spec: PoolSpec) -> None:
    fake = cluster_for(spec)
    fake.remove("Namespace", "embeddings")
    fake.denied.add(("create", "namespaces"))
    with pytest.raises(NotFound) as exc:
        run(fake, spec)
    assert str(exc.value) == ("namespace embeddings does not exist (create it with `oc new-project embeddings` "
                              "(or ask an admin), or set namespace in the config)")


def test_missing_namespace_that_deploy_would_create_still_needs_the_pvc(spec: PoolSpec) -> None:
    fake = cluster_for(spec)
    fake.remove("Namespace", "embeddings")
    with pytest.raises(NotFound) as exc:
        run(fake, spec)
    assert "namespace embeddings is new (create the namespace (`oc new-project embeddings`) and the PVC first)" in str(
        exc.value)
    with pytest.raises(NotFound, match="namespace embeddings does not exist"):
        run(fake, spec, runtimes_only=True)  # only a full deploy applies the Namespace


def test_a_terminating_namespace_fails_before_anything_is_applied(spec: PoolSpec) -> None:
    fake = cluster_for(spec)
    fake.set_status("Namespace", "embeddings", None, {"phase": "Terminating"})
    with pytest.raises(NotReady) as exc:
        run(fake, spec)
    assert str(exc.value).startswith("namespace embeddings is being deleted (Terminating): nothing new can be "
                                     "created in it (wait until it is gone")
    assert not fake.verbs("apply")


def test_unlabelled_namespace_without_patch_permission(spec: PoolSpec) -> None:
    fake = cluster_for(spec, labelled=False)
    fake.denied.add(("patch", "namespaces"))
    with pytest.raises(Forbidden) as exc:
        run(fake, spec)
    assert "namespace embeddings lacks the labels opendatahub.io/dashboard=true modelmesh-enabled=false" in str(
        exc.value)
    assert "oc label namespace embeddings opendatahub.io/dashboard=true modelmesh-enabled=false" in str(exc.value)


def test_unlabelled_namespace_is_applied_when_allowed(spec: PoolSpec) -> None:
    fake = cluster_for(spec, labelled=False)
    assert run(fake, spec).namespace_needs_apply
    result = ClusterTarget(fake).deploy(render(spec), ["minilm"], wait=False, timeout_s=1)
    assert result.changes[0].kind == "Namespace" and result.changes[0].action == "configured"
    ns = fake.stored("Namespace", "embeddings")
    assert ns is not None and ns["metadata"]["labels"]["opendatahub.io/dashboard"] == "true"
    assert ns["metadata"]["annotations"]["openshift.io/display-name"] == "Embeddings"


def test_namespace_unreadable_but_present(spec: PoolSpec) -> None:
    fake = cluster_for(spec)
    fake.errors["get:Namespace"] = denied_get("Namespace")
    report = run(fake, spec)
    assert report.namespace_exists
    assert "cannot read namespace embeddings (forbidden)" in report.notes[0]


def test_missing_pvc(spec: PoolSpec) -> None:
    fake = cluster_for(spec)
    fake.remove("PersistentVolumeClaim", "model-cache", "embeddings")
    with pytest.raises(NotFound, match=r"PersistentVolumeClaim embeddings/model-cache \(cache.pvc\) does not exist"):
        run(fake, spec)
    run(fake, spec, runtimes_only=True)  # runtimes alone mount nothing


def test_lost_pvc(spec: PoolSpec) -> None:
    with pytest.raises(NotReady, match="is Lost"):
        run(cluster_for(spec, pvc_phase="Lost"), spec)


def test_pending_pvc_is_a_note(spec: PoolSpec) -> None:
    report = run(cluster_for(spec, pvc_phase="Pending"), spec)
    assert any("PVC model-cache is Pending" in n for n in report.notes)


def test_read_write_once_pod_with_several_pods(spec: PoolSpec) -> None:
    fake = cluster_for(spec, pvc_modes=("ReadWriteOncePod",))
    with pytest.raises(NotReady, match="ReadWriteOncePod but up to 4 pods mount it"):
        run(fake, spec)
    one = parse_spec(SPEC.split("  - {name: granite")[0], "test.yaml")
    run(cluster_for(one, pvc_modes=("ReadWriteOncePod",)), one)  # one model, one pod: fine


def test_pvc_access_mode_counts_every_models_pods_not_just_the_deployed_ones(spec: PoolSpec) -> None:
    # `deploy minilm` then `deploy reranker`: both predictors mount the one cache PVC.
    fake = cluster_for(spec, pvc_modes=("ReadWriteOncePod",))
    with pytest.raises(NotReady, match="ReadWriteOncePod but up to 4 pods mount it"):
        run(fake, spec, ["minilm"])
    autoscaled = parse_spec(SPEC.split("  - {name: granite")[0].replace(
        "sentence-transformers/all-MiniLM-L6-v2}", "sentence-transformers/all-MiniLM-L6-v2, max_replicas: 3}"),
        "test.yaml")
    report = run(cluster_for(autoscaled, pvc_modes=("ReadWriteOnce",)), autoscaled, ["minilm"])
    assert any("ReadWriteOnce and up to 3 pods mount it" in n for n in report.notes)


def test_read_write_once_with_several_pods_warns_about_multi_attach(spec: PoolSpec) -> None:
    report = run(cluster_for(spec, pvc_modes=("ReadWriteOnce",)), spec, ["granite"])
    assert any("ReadWriteOnce and up to 4 pods mount it" in n and "Multi-Attach" in n for n in report.notes)


def test_not_enough_gpus(spec: PoolSpec) -> None:
    fake = cluster_for(spec, gpus=2)
    with pytest.raises(NotReady) as exc:
        run(fake, spec)
    assert str(exc.value).startswith("the nodes have 2 allocatable nvidia.com/gpu in total but the models ask for 4 "
                                     "(minilm: 1, granite: 2, reranker: 1)")
    fake.seed(node("gpu-node-2", gpus=2))
    run(fake, spec)


def test_gpu_check_skipped_when_nodes_are_unreadable_or_nothing_is_asked(spec: PoolSpec) -> None:
    fake = cluster_for(spec, gpus=0)
    fake.errors["list:Node"] = forbidden("list", kind_info("v1", "Node"), None)
    report = run(fake, spec)
    assert any("you may not list nodes: GPU capacity not checked" in n for n in report.notes)
    cpu_spec = parse_spec(SPEC.replace("defaults: {gpus: 1}", "defaults: {gpus: 0}"), "test.yaml")
    fake = cluster_for(cpu_spec, gpus=0)
    run(fake, cpu_spec)
    assert not [c for c in fake.calls if c.kind == "Node"]


CPU_BF16 = """\
namespace: embeddings
cache: {pvc: model-cache}
runtimes:
  - {name: cpu, task: embed, device: cpu, dtype: bfloat16}
models:
  - {name: minilm, model_id: sentence-transformers/all-MiniLM-L6-v2}
"""


def test_bfloat16_on_cpu_needs_a_node_nfd_labels_with_bf16() -> None:
    spec = parse_spec(CPU_BF16, "test.yaml")
    fake = cluster_for(spec, gpus=0)
    fake.seed(node("avx2-only", gpus=0, labels={"feature.node.kubernetes.io/cpu-cpuid.AVX2": "true"}))
    with pytest.raises(NotReady) as exc:
        run(fake, spec)
    assert str(exc.value).startswith("no node is labelled feature.node.kubernetes.io/cpu-cpuid.AMXBF16=true or "
                                     "feature.node.kubernetes.io/cpu-cpuid.AVX512BF16=true")
    assert "(minilm)" in str(exc.value) and "Node Feature Discovery" in (exc.value.hint or "")
    fake.seed(node("sapphire", gpus=0, labels={"feature.node.kubernetes.io/cpu-cpuid.AMXBF16": "true"}))
    report = run(fake, spec)
    assert any(n.startswith("bfloat16 on CPU (minilm): 1 of") and "(sapphire)" in n for n in report.notes)
    fake.errors["list:Node"] = forbidden("list", kind_info("v1", "Node"), None)
    assert any("not checked that a node has bf16 for minilm" in n for n in run(fake, spec).notes)


def test_gpu_and_bf16_checks_list_the_nodes_once() -> None:
    spec = parse_spec(CPU_BF16.replace("models:\n", "  - {name: gpu, task: score}\nmodels:\n  - {name: rr, model_id: "
                                       "cross-encoder/ms-marco-MiniLM-L12-v2, runtime: gpu, gpus: 1}\n"), "test.yaml")
    fake = cluster_for(spec)
    fake.seed(node("sapphire", gpus=0, labels={"feature.node.kubernetes.io/cpu-cpuid.AMXBF16": "true"}))
    report = run(fake, spec)
    assert any(n.startswith("nvidia.com/gpu: 1 asked") for n in report.notes)
    assert any(n.startswith("bfloat16 on CPU (minilm)") for n in report.notes)
    assert len([c for c in fake.calls if c.kind == "Node" and c.verb == "list"]) == 1


def test_access_review_lists_every_refusal_in_one_line(spec: PoolSpec) -> None:
    fake = cluster_for(spec)
    fake.denied |= {("create", "servingruntimes.serving.kserve.io"), ("patch", "servingruntimes.serving.kserve.io"),
                    ("patch", "inferenceservices.serving.kserve.io")}
    with pytest.raises(Forbidden) as exc:
        run(fake, spec)
    assert str(exc.value).startswith(
        "forbidden: you may not create servingruntimes.serving.kserve.io, patch servingruntimes.serving.kserve.io, "
        "patch inferenceservices.serving.kserve.io in namespace embeddings (SelfSubjectAccessReview)")
    reviews = [dict(c.extra)["verb"] + " " + c.kind for c in fake.calls if c.verb == "access"]
    assert reviews == ["create ServingRuntime", "patch ServingRuntime", "create InferenceService",
                       "patch InferenceService"]
