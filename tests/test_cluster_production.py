"""Autoscaling, storage URIs, hardware profiles, monitoring and rollout safety on the envtest cluster.

The specs in ``tests/specs`` go through the CLI to a real API server: ``deploy --dry-run server`` runs
KServe's (simulated) defaulting and validating webhooks and the API server's schema checks; a real
deploy lets the simulated KServe build the autoscaler (HPA or KEDA ScaledObject), the real
controller-manager the ReplicaSets and pods, and KServe's pod mutator add the model storage to each
pod as it is created, where the API server validates the result.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import Result

from poolserve.config.load import load_spec
from poolserve.kserve.lint import lint
from poolserve.kserve.render import render
from poolserve.kserve.scaling import kserve_webhook_problems
from support.envcluster import EnvCluster
from support.kubeapi import ApiError, path
from support.poolcli import cli, error_line

SPECS = Path(__file__).parent / "specs"
ISVC = "serving.kserve.io/inferenceservice"
V1B1 = "serving.kserve.io/v1beta1"


@dataclass
class Project:
    kube: EnvCluster
    ns: str
    config: Path

    def run(self, *args: str) -> Result:
        return cli(*args, kubeconfig=self.kube.kubeconfig, config=self.config)

    def get(self, api_version: str, plural: str, name: str) -> dict | None:
        return self.kube.api.get(path(api_version, plural, self.ns, name))

    def pods(self, model: str) -> list[dict]:
        return self.kube.api.list(path("v1", "pods", self.ns), labelSelector=f"{ISVC}={model}")

    def wait_for(self, what: str, check: Callable[[], object], timeout_s: float = 30) -> object:
        return self.kube.wait(what, check, timeout_s=timeout_s)


@pytest.fixture
def project(kube: EnvCluster, ns: str, tmp_path: Path) -> Callable[..., Project]:
    """A spec from tests/specs (or text) pointed at the test's namespace, with the PVCs it names."""
    def make(spec: str, *, pvcs: dict[str, tuple[str, ...]] | None = None, edit: Callable[[str], str] = str) -> Project:
        text = (SPECS / spec).read_text() if spec.endswith(".yaml") else spec
        lines = [ln for ln in text.splitlines() if not ln.startswith("namespace:")]
        config = tmp_path / "poolserve.yaml"
        config.write_text(edit(f"namespace: {ns}\n" + "\n".join(lines) + "\n"))
        for name, modes in (pvcs or {}).items():
            kube.bound_pvc(ns, name, modes)
        return Project(kube, ns, config)
    return make


def test_dry_run_server_accepts_every_new_spec(project: Callable[..., Project]) -> None:
    for spec, pvcs in (("autoscaling.yaml", {}),
                       ("storage-uris.yaml", {"hf-cache": ("ReadWriteMany",), "model-store": ("ReadWriteMany",)}),
                       ("rwo-rollout.yaml", {"model-cache-rwo": ("ReadWriteOnce",)})):
        p = project(spec, pvcs=pvcs)
        r = p.run("deploy", "--dry-run", "server")
        assert r.exit_code == 0, (spec, r.stderr)
        objects = render(load_spec(p.config)).manifests
        for obj in objects:
            if obj["kind"] != "Namespace":
                line = f"{obj['kind'].lower()}/{p.ns}/{obj['metadata']['name']} created (dry run: server)"
                assert line in r.stderr, (spec, line, r.stderr)
        assert p.kube.api.list(path(V1B1, "inferenceservices", p.ns)) == []


def test_autoscalers_kserve_builds_from_the_rendered_fields(project: Callable[..., Project]) -> None:
    p = project("autoscaling.yaml")
    r = p.run("deploy", "--timeout", "60s")
    assert r.exit_code == 0, r.stderr
    # queue -> KEDA: a ScaledObject with vLLM's in-flight requests, no HPA of KServe's.
    so = p.get("keda.sh/v1alpha1", "scaledobjects", "minilm-embedding-predictor")
    assert so is not None
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "16"
    assert trigger["metadata"]["namespace"] == p.ns and "vllm:num_requests_waiting" in trigger["metadata"]["query"]
    assert trigger["authenticationRef"] == {"name": "inference-prometheus-auth"}
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 4)
    assert p.get("autoscaling/v2", "horizontalpodautoscalers", "minilm-embedding-predictor") is None
    # cpu / memory -> KServe's HPA with the target and the range.
    cpu = p.get("autoscaling/v2", "horizontalpodautoscalers", "e5-base-predictor")
    assert cpu is not None and (cpu["spec"]["minReplicas"], cpu["spec"]["maxReplicas"]) == (2, 6)
    assert cpu["spec"]["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization",
                                                                                "averageUtilization": 70}}
    mem = p.get("autoscaling/v2", "horizontalpodautoscalers", "granite-embedding-predictor")
    assert mem is not None and mem["spec"]["metrics"][0]["resource"]["name"] == "memory"
    # The PodMonitors and budgets select the pods KServe labelled (the disruption controller counts them).
    for model in ("minilm-embedding", "e5-base", "msmarco-reranker", "granite-embedding"):
        pm = p.get("monitoring.coreos.com/v1", "podmonitors", f"{model}-vllm")
        assert pm is not None
        sel = ",".join(f"{k}={v}" for k, v in pm["spec"]["selector"]["matchLabels"].items())
        assert p.kube.api.list(path("v1", "pods", p.ns), labelSelector=sel), model
    p.wait_for("the disruption controller to count e5-base's 2 ready pods, 1 of them evictable", lambda: (
        (o := p.get("policy/v1", "poddisruptionbudgets", "e5-base-predictor")) and
        (o.get("status") or {}).get("expectedPods") == 2 and o["status"].get("disruptionsAllowed") == 1))
    # status: ready/desired, and how the count can move.
    st = p.run("status", "-o", "json")
    assert st.exit_code == 0, st.stderr
    rows = {row["name"]: row for row in json.loads(st.stdout)}
    assert (rows["minilm-embedding"]["replicas_min"], rows["minilm-embedding"]["replicas_max"]) == (1, 4)
    assert rows["minilm-embedding"]["autoscaler"] == "queue 16/replica"
    assert rows["e5-base"]["autoscaler"] == "cpu 70%" and rows["e5-base"]["replicas_desired"] == 2
    table = p.run("status")
    assert "(2-6 cpu 70%)" in next(ln for ln in table.stdout.splitlines() if ln.startswith("e5-base"))
    # delete takes the budgets and PodMonitors with the InferenceServices.
    r = p.run("delete")
    assert r.exit_code == 0, r.stderr
    assert f"poddisruptionbudget/{p.ns}/e5-base-predictor deleted" in r.stderr
    assert p.get("monitoring.coreos.com/v1", "podmonitors", "e5-base-vllm") is None


def test_switching_to_the_queue_removes_the_hpa_kserve_leaves_behind(project: Callable[..., Project]) -> None:
    p = project("rwo-rollout.yaml", pvcs={"model-cache-rwo": ("ReadWriteOnce",)})
    assert p.run("deploy", "--no-wait").exit_code == 0
    hpa = "minilm-embedding-predictor"
    p.wait_for("KServe's default HPA", lambda: p.get("autoscaling/v2", "horizontalpodautoscalers", hpa))
    text = p.config.read_text().replace("    model_id: sentence-transformers/all-MiniLM-L6-v2\n",
                                        "    model_id: sentence-transformers/all-MiniLM-L6-v2\n"
                                        "    max_replicas: 1\n    autoscaling: {metric: queue, target: 8}\n")
    p.config.write_text(text)
    dry = p.run("deploy", "--dry-run", "server")
    assert dry.exit_code == 0, dry.stderr
    assert f"HorizontalPodAutoscaler {p.ns}/{hpa} is left from minilm-embedding's previous autoscaler" in dry.stderr
    assert p.get("autoscaling/v2", "horizontalpodautoscalers", hpa) is not None
    r = p.run("deploy", "--no-wait")
    assert r.exit_code == 0, r.stderr
    assert f"horizontalpodautoscaler/{p.ns}/{hpa} deleted" in r.stderr
    p.wait_for("KServe's ScaledObject", lambda: p.get("keda.sh/v1alpha1", "scaledobjects", hpa))
    assert p.get("autoscaling/v2", "horizontalpodautoscalers", hpa) is None


def test_kserves_validating_webhook_refuses_what_lint_reports(project: Callable[..., Project]) -> None:
    p = project("autoscaling.yaml")
    isvc = next(o for o in render(load_spec(p.config)).manifests
                if o["kind"] == "InferenceService" and o["metadata"]["name"] == "minilm-embedding")
    isvc["spec"]["predictor"]["scaleMetric"] = "cpu"
    (problem,) = kserve_webhook_problems(isvc)
    with pytest.raises(ApiError) as exc:
        p.kube.api.create(path(V1B1, "inferenceservices", p.ns), isvc, dryRun="All")
    assert exc.value.status == 403
    message = exc.value.body["message"]
    assert 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request' in message
    assert problem.split(" (KServe")[0] in message


def test_storage_uris_reach_the_pods_as_kserve_mounts_them(project: Callable[..., Project]) -> None:
    p = project("storage-uris.yaml", pvcs={"hf-cache": ("ReadWriteMany",), "model-store": ("ReadWriteMany",)})
    p.kube.api.create(path("v1", "secrets", p.ns), {"metadata": {"name": "storage-config"}, "data": {
        "aws-models": base64.b64encode(json.dumps({"type": "s3", "bucket": "models"}).encode()).decode()}})
    r = p.run("deploy", "--timeout", "60s")
    assert r.exit_code == 0, r.stderr
    (pvc,) = p.pods("minilm-pvc")
    main = pvc["spec"]["containers"][0]
    assert {"name": "kserve-pvc-source", "mountPath": "/mnt/models", "readOnly": True,
            "subPath": "sentence-transformers/all-MiniLM-L6-v2"} in main["volumeMounts"]
    assert main["command"] == ["vllm", "serve", "/mnt/models"]
    (oci,) = p.pods("minilm-oci")
    assert [c["name"] for c in oci["spec"]["containers"]] == ["kserve-container", "modelcar"]
    assert oci["spec"]["shareProcessNamespace"] is True
    assert oci["spec"]["imagePullSecrets"] == [{"name": "quay-pull"}]
    (hf,) = p.pods("e5-hf")
    (init,) = hf["spec"]["initContainers"]
    assert init["name"] == "storage-initializer" and init["args"] == ["hf://intfloat/e5-base-v2:main", "/mnt/models"]
    (s3,) = p.pods("reranker-s3")
    env = s3["spec"]["initContainers"][0]["env"]
    assert env == [{"name": "STORAGE_CONFIG", "valueFrom": {"secretKeyRef": {"name": "storage-config",
                                                                              "key": "aws-models"}}}]
    for name in ("minilm-pvc", "e5-hf"):  # the hardware profile reaches the objects the dashboard reads
        ann = p.get(V1B1, "inferenceservices", name)["metadata"]["annotations"]  # type: ignore[index]
        assert "opendatahub.io/hardware-profile-name" in ann


def test_a_missing_data_connection_fails_the_wait_with_kserves_message(project: Callable[..., Project]) -> None:
    text = (SPECS / "storage-uris.yaml").read_text().split("models:\n")[0] + (
        "models:\n  - name: reranker-s3\n    model_id: cross-encoder/ms-marco-MiniLM-L12-v2\n"
        "    storage_uri: s3://models/cross-encoder/ms-marco-MiniLM-L12-v2\n    data_connection: aws-models\n")
    p = project(text, pvcs={"hf-cache": ("ReadWriteMany",)})
    r = p.run("deploy", "--timeout", "40s")
    assert r.exit_code == 8, r.stderr
    line = error_line(r)
    assert "can't read storage secret storage-config" in line, line
    assert "create the data connection in the project" in line, line


def test_a_runtime_volume_at_mnt_models_is_refused_by_the_api_server(project: Callable[..., Project]) -> None:
    """lint's error, seen on the cluster: KServe adds its mount anyway and the pod cannot be created."""
    def edit(text: str) -> str:
        return (text.replace("cache:\n  pvc: model-cache-rwo\n", "cache:\n  pvc: model-cache-rwo\n  mount_path: "
                             "/mnt/models\n  hf_home: /mnt/models/hf\n")
                .replace("    model_id: sentence-transformers/all-MiniLM-L6-v2\n",
                         "    model_id: sentence-transformers/all-MiniLM-L6-v2\n    storage_uri: hf://org/minilm\n"))
    p = project("rwo-rollout.yaml", pvcs={"model-cache-rwo": ("ReadWriteOnce",)}, edit=edit)
    spec = load_spec(p.config)
    assert any("mountPath must be unique" in f.message for f in lint(spec, render(spec)).errors)
    r = p.run("deploy", "--timeout", "40s")
    assert r.exit_code == 8, r.stderr
    line = error_line(r)
    assert '"/mnt/models": must be unique' in line and "`poolserve lint` explains" in line, line


def test_readwriteonce_cache_rolls_out_with_recreate(project: Callable[..., Project]) -> None:
    p = project("rwo-rollout.yaml", pvcs={"model-cache-rwo": ("ReadWriteOnce",)})
    assert p.run("deploy", "--no-wait").exit_code == 0
    dep = p.wait_for("the predictor Deployment",
                     lambda: p.get("apps/v1", "deployments", "minilm-embedding-predictor"))
    assert isinstance(dep, dict) and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry-creds"}]


CPU_QUEUE_STOPPED = """\
monitoring: {enabled: true}
cache: {access_mode: ReadWriteMany}
runtimes:
  - {name: vllm-cpu-embedding-runtime, task: embed, device: cpu}
models:
  - name: minilm-cpu
    model_id: sentence-transformers/all-MiniLM-L6-v2
    storage_uri: pvc://model-store/sentence-transformers/all-MiniLM-L6-v2
    resources: {requests: {cpu: "2", memory: 4Gi}, limits: {cpu: "2", memory: 4Gi}}
    max_replicas: 3
    autoscaling: {metric: queue, target: 8, authentication: null}
    stopped: true
"""


def test_a_cpu_model_from_a_storage_uri_on_the_queue_deploys_stopped_and_starts(
        project: Callable[..., Project]) -> None:
    """device: cpu, storage_uri, KEDA autoscaling and stopped together, as KServe v0.20 handles them."""
    p = project(CPU_QUEUE_STOPPED, pvcs={"model-store": ("ReadWriteMany",)})
    r = p.run("deploy", "--dry-run", "server")
    assert r.exit_code == 0, r.stderr
    r = p.run("deploy", "--timeout", "60s")  # does not wait for a stopped model
    assert r.exit_code == 0, r.stderr
    assert json.loads(p.run("status", "-o", "json").stdout)[0]["phase"] == "Stopped"
    so = ("keda.sh/v1alpha1", "scaledobjects", "minilm-cpu-predictor")
    assert p.get(*so) is None and p.get("apps/v1", "deployments", "minilm-cpu-predictor") is None

    r = p.run("start", "minilm-cpu", "--timeout", "60s")
    assert r.exit_code == 0, r.stderr
    scaled = p.wait_for("KServe's ScaledObject", lambda: p.get(*so))
    assert isinstance(scaled, dict) and (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 3)
    (pod,) = p.pods("minilm-cpu")
    c = pod["spec"]["containers"][0]
    assert c["image"] == "vllm/vllm-openai-cpu:v0.32.0-x86_64"
    assert c["command"] == ["vllm", "serve", "/mnt/models"]  # the model KServe mounted, first after serve
    assert {"name": "kserve-pvc-source", "mountPath": "/mnt/models", "readOnly": True,
            "subPath": "sentence-transformers/all-MiniLM-L6-v2"} in c["volumeMounts"]
    assert not any(k.startswith("nvidia.com/") for k in c["resources"].get("limits", {}))

    r = p.run("stop", "minilm-cpu")
    assert r.exit_code == 0, r.stderr
    # keda_reconciler.go deletes the ScaledObject of a stopped InferenceService, as the HPA reconciler does its HPA.
    p.wait_for("the ScaledObject deleted", lambda: p.get(*so) is None)
    p.wait_for("the predictor Deployment deleted",
               lambda: p.get("apps/v1", "deployments", "minilm-cpu-predictor") is None)
