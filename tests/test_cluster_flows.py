"""Full flows through the CLI against the envtest cluster: a real API server, controller-manager and scheduler.

The committed ``poolserve.yaml`` is deployed into a fresh namespace with the CLI (``poolserve deploy``,
``wait``, ``status``, ``test``, ``logs``, ``diff``, ``delete``, ``cache warm``). The simulated KServe
makes the predictor Deployment and Service, the real controller-manager the ReplicaSets and pods, the
real scheduler binds them to the simulated GPU nodes (or says why not), and the simulated kubelet runs
them as each test asks: ready, crashing with vLLM's message, image pull failing, OOM-killed, Jobs
completing or failing. ``poolserve test`` reaches a stub vLLM through the Service URL the status reports
(:mod:`support.network`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import Result

from conftest import CONFIG
from support.envcluster import EnvCluster
from support.fake_vllm import FakeVllm
from support.kubeapi import path
from support.kubelet_sim import Completes, Crash, Fails, ImagePullBackOff, OOMKilled, Ready
from support.network import PodServers, ServiceProxy
from support.poolcli import cli, error_line

ISVC = "serving.kserve.io/inferenceservice"
MINILM, GRANITE, RERANKER = "minilm-embedding", "granite-embedding", "msmarco-reranker"
# vLLM >= 0.13 given --task (removed): argparse's exit, as the container's termination message shows it.
TASK_CRASH = ("INFO 01-01 00:00:03 [api_server.py:1] vLLM API server version 0.32.0",
              "usage: api_server.py [-h] [--host HOST] [--port PORT] ...",
              "api_server.py: error: unrecognized arguments: --task=embed")


@dataclass
class Project:
    kube: EnvCluster
    ns: str
    config: Path

    def run(self, *args: str, poll_s: float | None = 0.5) -> Result:
        return cli(*args, kubeconfig=self.kube.kubeconfig, config=self.config, poll_s=poll_s)

    def isvc(self, name: str) -> dict | None:
        return self.kube.api.get(path("serving.kserve.io/v1beta1", "inferenceservices", self.ns, name))

    def pods(self, model: str | None = None) -> list[dict]:
        sel = f"{ISVC}={model}" if model else ISVC
        return self.kube.api.list(path("v1", "pods", self.ns), labelSelector=sel)

    def behave(self, model: str, behaviour: object) -> None:
        self.kube.kubelet.behave(self.ns, behaviour, selector={ISVC: model})  # type: ignore[arg-type]


@pytest.fixture
def project(kube: EnvCluster, ns: str, tmp_path: Path) -> Project:
    """The committed config, pointed at the test's namespace."""
    text = CONFIG.read_text()
    assert "namespace: vllm-embeddings\n" in text
    config = tmp_path / "poolserve.yaml"
    config.write_text(text.replace("namespace: vllm-embeddings\n", f"namespace: {ns}\n"))
    return Project(kube, ns, config)


@pytest.fixture
def network(kube: EnvCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PodServers, ServiceProxy]]:
    """Model servers for pod IPs, and HTTP_PROXY resolving Service hosts through the real EndpointSlices."""
    pods = PodServers()
    proxy = ServiceProxy(kube.api, pods)
    for var in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, proxy.url)
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    yield pods, proxy
    proxy.stop()
    pods.stop()


def statuses(p: Project, *names: str) -> dict[str, dict]:
    r = p.run("status", *names, "-o", "json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    return {s["name"]: s for s in data}


# --------------------------------------------------------------------------------------------------


def test_deploy_wait_ready_status_test_logs_diff(project: Project, network: tuple[PodServers, ServiceProxy]) -> None:
    p = project
    r = p.run("deploy", "--timeout", "90s")
    assert r.exit_code == 0, r.stderr
    assert f"inferenceservice/{p.ns}/{MINILM} created" in r.stderr
    assert f"servingruntime/{p.ns}/vllm-reranker-runtime created" in r.stderr
    assert "3/3 ready" in r.stderr

    # What the real controllers made of it: one pod per model, bound to a GPU node by the scheduler.
    for model in (MINILM, GRANITE, RERANKER):
        (pod,) = p.pods(model)
        assert pod["spec"]["nodeName"].startswith("gpu-node-")
        assert pod["metadata"]["labels"]["app"] == f"isvc.{model}-predictor"
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

    table = p.run("status")
    assert table.exit_code == 0, table.stderr
    for model in (MINILM, GRANITE, RERANKER):
        line = next(ln for ln in table.stdout.splitlines() if ln.startswith(model))
        assert "Ready" in line and "1/1" in line, table.stdout
    st = statuses(p)
    assert {s["phase"] for s in st.values()} == {"Ready"}
    url = st[MINILM]["url"]
    assert url == f"http://{MINILM}-predictor.{p.ns}.svc.cluster.local"
    assert st[MINILM]["served_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert st[MINILM]["route_url"] is None  # upstream KServe's example.com URL is no route

    # Each pod "runs" a stub vLLM at its pod IP; `poolserve test` reaches it through the Service URL.
    pods, proxy = network
    for model, fake in ((MINILM, FakeVllm("embed", ("sentence-transformers/all-MiniLM-L6-v2", MINILM), 384, 256)),
                        (RERANKER, FakeVllm("score", ("cross-encoder/ms-marco-MiniLM-L12-v2", RERANKER),
                                            max_model_len=512))):
        (pod,) = p.pods(model)
        pods.serve(pod["status"]["podIP"], fake)
    r = p.run("test", MINILM)
    assert r.exit_code == 0, r.stdout + r.stderr
    r = p.run("test", MINILM, "--url", url)
    assert r.exit_code == 0, r.stdout + r.stderr
    r = p.run("test", RERANKER, "-o", "json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert (f"{MINILM}-predictor.{p.ns}.svc.cluster.local:80",
            f"{p.pods(MINILM)[0]['status']['podIP']}:8080") in proxy.routes

    # Logs come from the (simulated) kubelet through the real API server's pods/log.
    logs = p.run("logs", MINILM)
    assert logs.exit_code == 0, logs.stderr
    assert "Application startup complete." in logs.stdout
    prev = p.run("logs", MINILM, "--previous")
    assert prev.exit_code == 5 and "it has not restarted" in error_line(prev)

    again = p.run("deploy", "--no-wait")
    assert again.exit_code == 0 and "no changes: all 6 objects already match the config" in again.stderr
    diff = p.run("diff")
    assert diff.exit_code == 0, diff.stdout + diff.stderr
    assert "no differences" in diff.stderr


def test_deploy_options_diff_and_conflicts_against_the_live_objects(project: Project) -> None:
    p = project
    for mode in ("server", "client"):
        r = p.run("deploy", "--dry-run", mode)
        assert r.exit_code == 0, r.stderr
        assert f"inferenceservice/{p.ns}/{MINILM} created (dry run: {mode})" in r.stderr
        assert p.isvc(MINILM) is None
    r = p.run("deploy", "--runtimes-only")
    assert r.exit_code == 0, r.stderr
    assert len(p.kube.api.list(path("serving.kserve.io/v1alpha1", "servingruntimes", p.ns))) == 2
    assert p.isvc(MINILM) is None
    diff = p.run("diff")
    assert diff.exit_code == 1 and f"inferenceservice/{p.ns}/{MINILM} would be created" in diff.stderr
    assert p.run("deploy", "--no-wait").exit_code == 0
    # Someone lets a predictor scale further by hand (an Update by another field manager). Raising
    # minReplicas above maxReplicas instead is refused by KServe's validating webhook.
    p.kube.api.merge_patch(path("serving.kserve.io/v1beta1", "inferenceservices", p.ns, MINILM),
                           {"spec": {"predictor": {"maxReplicas": 3}}}, fieldManager="kubectl-edit")
    diff = p.run("diff")
    assert diff.exit_code == 1
    assert "-    maxReplicas: 3\n+    maxReplicas: 1" in diff.stdout
    assert f"inferenceservice/{p.ns}/{MINILM} would be configured [apply needs --force-conflicts" in diff.stderr
    r = p.run("deploy", "--no-wait")
    assert r.exit_code == 6
    assert error_line(r).startswith(f'error: conflict applying InferenceService {p.ns}/{MINILM}: Apply failed with 1 '
                                    'conflict: conflict with "kubectl-edit" using serving.kserve.io/v1beta1: '
                                    ".spec.predictor.maxReplicas")
    # --no-wait: a maxReplicas change leaves the Deployment's generation alone until the HPA acts, so a wait
    # would hold the old Ready for ROLLOUT_GRACE_S (30 s).
    r = p.run("deploy", "--force-conflicts", "--no-wait")
    assert r.exit_code == 0, r.stderr
    assert f"inferenceservice/{p.ns}/{MINILM} configured" in r.stderr
    assert p.run("diff").exit_code == 0
    r = p.run("delete", MINILM)
    assert r.exit_code == 0 and "runtimes kept: vllm-embedding-runtime" in r.stderr


def test_bench_a_cluster_model_through_its_service_url(project: Project,
                                                        network: tuple[PodServers, ServiceProxy]) -> None:
    p = project
    assert p.run("deploy", MINILM, "--timeout", "60s").exit_code == 0
    pods, _ = network
    (pod,) = p.pods(MINILM)
    pods.serve(pod["status"]["podIP"], FakeVllm("embed", ("sentence-transformers/all-MiniLM-L6-v2", MINILM), 384, 256))
    r = p.run("bench", MINILM, "-n", "20", "--warmup", "2", "--concurrency", "2", "--batch-size", "4",
              "-o", "-")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["endpoint"] == f"http://{MINILM}-predictor.{p.ns}.svc.cluster.local"
    (setting,) = report["settings"]
    assert (setting["requests"], setting["errors"], setting["batch_size"]) == (20, 0, 4), setting
    assert pods.fakes[pod["status"]["podIP"]].paths().count("/v1/embeddings") >= 22  # 2 warm-up + 20 measured


def test_a_crash_with_the_removed_task_flag_fails_the_wait_with_the_diagnosis(project: Project) -> None:
    p = project
    p.behave(MINILM, Crash(logs=TASK_CRASH, exit_code=2))
    r = p.run("deploy", MINILM, "--timeout", "120s")
    assert r.exit_code == 8, r.stderr
    line = error_line(r)
    assert line.startswith(f"error: {MINILM} cannot become ready: CrashLoopBackOff: vLLM rejected a flag "
                           "(--task=embed): the image's vLLM does not know this flag (--task was removed in 0.13)")
    assert "timed out" not in line
    st = statuses(p, MINILM)[MINILM]
    assert st["phase"] == "Failed"
    assert any("unrecognized arguments: --task=embed" in d for d in st["details"]), st["details"]
    # KServe's own account: modelStatus with the termination message (PropagateModelStatus).
    failure = p.kube.wait("KServe's lastFailureInfo", lambda: (p.isvc(MINILM) or {}).get("status", {}).get(
        "modelStatus", {}).get("lastFailureInfo"))
    assert failure["reason"] == "ModelLoadFailed" and failure["exitCode"] == 2
    prev = p.run("logs", MINILM, "--previous")
    assert prev.exit_code == 0 and "unrecognized arguments: --task=embed" in prev.stdout


def test_gpus_that_do_not_fit_on_any_node_are_unschedulable(project: Project) -> None:
    p = project
    # 9 GPUs per pod: the nodes have 16 in total (preflight passes) but 8 each, so the scheduler says no.
    r = p.run("deploy", MINILM, "--set", "models.0.gpus=9", "--timeout", "60s")
    assert r.exit_code == 8, r.stderr
    line = error_line(r)
    assert f"{MINILM} cannot become ready: Unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu" \
        in line
    assert "not enough free GPUs: lower gpus or replicas, free a GPU, or add GPU nodes" in line
    # More than all nodes have: preflight refuses before anything is applied.
    r = p.run("deploy", GRANITE, "--set", "models.1.gpus=17", "--timeout", "60s")
    assert r.exit_code == 8
    assert "the nodes have 16 allocatable nvidia.com/gpu in total but the models ask for 17" in error_line(r)
    assert p.isvc(GRANITE) is None


def test_image_pull_and_oom_failures(project: Project) -> None:
    p = project
    p.behave(MINILM, ImagePullBackOff("manifest unknown: manifest unknown"))
    p.behave(GRANITE, OOMKilled())
    r = p.run("deploy", MINILM, "--timeout", "120s")
    assert r.exit_code == 8, r.stderr
    assert "ImagePullBackOff: Back-off pulling image \"vllm/vllm-openai:v0.32.0\"" in error_line(r)
    r = p.run("deploy", GRANITE, "--timeout", "120s")
    assert r.exit_code == 8, r.stderr
    assert f"{GRANITE} cannot become ready: OOMKilled: killed for exceeding its memory limit" in error_line(r)
    st = statuses(p, MINILM, GRANITE)
    assert st[MINILM]["phase"] == "Failed" and st[MINILM]["reason"].startswith("ImagePullBackOff")
    assert st[GRANITE]["phase"] == "Failed"
    assert st[GRANITE]["reason"].startswith("OOMKilled: killed for exceeding its memory limit")


def test_wait_after_deploy_no_wait(project: Project) -> None:
    p = project
    p.behave(RERANKER, Ready(after_s=2))
    assert p.run("deploy", RERANKER, "--no-wait").exit_code == 0
    r = p.run("wait", RERANKER, "--timeout", "60s")
    assert r.exit_code == 0, r.stderr
    assert statuses(p, RERANKER)[RERANKER]["phase"] == "Ready"


def test_delete_then_deploy_again(project: Project) -> None:
    p = project
    assert p.run("deploy", "--timeout", "90s").exit_code == 0
    old_uid = (p.isvc(MINILM) or {})["metadata"]["uid"]
    r = p.run("delete", "--runtimes")
    assert r.exit_code == 0, r.stderr
    assert f"inferenceservice/{p.ns}/{MINILM} deleted" in r.stderr
    assert f"servingruntime/{p.ns}/vllm-embedding-runtime deleted" in r.stderr
    # KServe's finalizer, then garbage collection of the Deployments, then the pods (kubelet).
    p.kube.wait("the models and their pods gone", lambda: p.isvc(MINILM) is None and not p.pods(), timeout_s=60)
    assert {s["phase"] for s in statuses(p).values()} == {"NotDeployed"}
    r = p.run("deploy", "--timeout", "90s")
    assert r.exit_code == 0, r.stderr
    assert "3/3 ready" in r.stderr
    assert (p.isvc(MINILM) or {})["metadata"]["uid"] != old_uid


def test_cache_warm_runs_jobs_to_completion_and_reports_a_gated_model(project: Project) -> None:
    p = project
    done = ("poolserve-cache: downloaded sentence-transformers/all-MiniLM-L6-v2 to /models/huggingface/hub/"
            "models--sentence-transformers--all-MiniLM-L6-v2/snapshots/c9745ed1 (90.9 MB in 12 s)")
    p.kube.kubelet.behave(p.ns, Completes(logs=("Fetching 10 files", done)),
                          selector={"job-name": "poolserve-cache-minilm-embedding"})
    r = p.run("cache", "warm", MINILM, "--timeout", "60s")
    assert r.exit_code == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith(MINILM))
    assert "downloaded" in row and "/models/huggingface/hub/models--sentence-transformers--all-MiniLM-L6-v2" in row
    job = p.kube.api.get(path("batch/v1", "jobs", p.ns, "poolserve-cache-minilm-embedding")) or {}
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    again = p.run("cache", "warm", MINILM, "--timeout", "60s")
    assert again.exit_code == 0 and "cached" in next(ln for ln in again.stdout.splitlines() if ln.startswith(MINILM))
    # A gated model: every attempt fails; the real Job controller retries (backoffLimit 2) before it gives up.
    p.kube.kubelet.behave(p.ns, Fails(logs=(
        "huggingface_hub.errors.GatedRepoError: 401 Client Error. Access to model "
        "ibm-granite/granite-embedding-278m-multilingual is restricted.",)),
        selector={"job-name": "poolserve-cache-granite-embedding"})
    r = p.run("cache", "warm", GRANITE, "--timeout", "120s")
    assert r.exit_code == 8, r.stderr
    line = error_line(r)
    assert "cache Job" in line and "the model is gated or private" in line
    attempts = p.kube.api.list(path("v1", "pods", p.ns), labelSelector="job-name=poolserve-cache-granite-embedding")
    assert len(attempts) == 3  # the first try and backoffLimit=2 retries


def test_deploy_while_the_old_inference_service_is_still_being_deleted(project: Project) -> None:
    p = project
    assert p.run("deploy", MINILM, "--timeout", "60s").exit_code == 0
    # Another controller's finalizer (odh-model-controller has one) keeps it Terminating for a while.
    isvc_path = path("serving.kserve.io/v1beta1", "inferenceservices", p.ns, MINILM)
    live = p.isvc(MINILM) or {}
    p.kube.api.merge_patch(isvc_path, {"metadata": {"finalizers": [*live["metadata"]["finalizers"],
                                                                   "example.com/slow-cleanup"]}})
    assert p.run("delete", MINILM).exit_code == 0
    p.kube.wait("KServe's finalizer done", lambda: (p.isvc(MINILM) or {}).get("metadata", {}).get(
        "finalizers") == ["example.com/slow-cleanup"])
    # Applying to it would succeed and change nothing; its old Ready status would pass `wait`. Both say no.
    r = p.run("deploy", MINILM, "--timeout", "30s")
    assert r.exit_code == 8, r.stderr
    assert error_line(r).startswith(f"error: InferenceService {p.ns}/{MINILM} is still being deleted (waiting for "
                                    "finalizers: example.com/slow-cleanup); applied before the failure:")
    st = statuses(p, MINILM)[MINILM]
    assert (st["phase"], st["ready"]) == ("Terminating", False)
    r = p.run("wait", MINILM, "--timeout", "30s")
    assert r.exit_code == 8 and "is being deleted (waiting for finalizers" in error_line(r)
    p.kube.api.merge_patch(isvc_path, {"metadata": {"finalizers": None}})
    p.kube.wait("the old InferenceService gone", lambda: p.isvc(MINILM) is None)
    r = p.run("deploy", MINILM, "--timeout", "60s")
    assert r.exit_code == 0, r.stderr


@pytest.fixture
def rwo_project(kube: EnvCluster, tmp_path: Path) -> Iterator[Project]:
    """The committed config in a namespace whose cache PVC is a ReadWriteOnce CSI volume (attach required)."""
    ns = kube.namespace(pvc=None)
    kube.bound_pvc(ns, "vllm-model-cache", ("ReadWriteOnce",), csi=True)
    config = tmp_path / "poolserve.yaml"
    config.write_text(CONFIG.read_text().replace("namespace: vllm-embeddings\n", f"namespace: {ns}\n"))
    yield Project(kube, ns, config)
    kube.delete_namespace(ns)


def test_multi_attach_on_a_readwriteonce_cache_pvc(rwo_project: Project) -> None:
    p = rwo_project
    on = {MINILM: "gpu-node-1", GRANITE: "gpu-node-2"}
    pin = [arg for i, model in enumerate((MINILM, GRANITE))
           for arg in ("--set", f"models.{i}.node_selector={{kubernetes.io/hostname: {on[model]}}}")]
    r = p.run("deploy", MINILM, *pin, "--timeout", "60s")
    assert r.exit_code == 0, r.stderr
    assert "PVC vllm-model-cache is ReadWriteOnce and up to 3 pods mount it: they must all run on one node" in r.stderr
    # The real attach/detach controller attached the volume to gpu-node-1 for the first predictor...
    (va,) = [v for v in p.kube.api.list("/apis/storage.k8s.io/v1/volumeattachments")
             if v["spec"]["source"].get("persistentVolumeName") == f"pv-{p.ns}-vllm-model-cache"]
    assert va["spec"]["nodeName"] == "gpu-node-1" and va["status"]["attached"]
    # ...so the second, scheduled on gpu-node-2, cannot start: the controller's Multi-Attach event explains it.
    r = p.run("deploy", GRANITE, *pin, "--timeout", "120s")
    assert r.exit_code == 8, r.stderr
    line = error_line(r)
    assert f"{GRANITE} cannot become ready: Multi-Attach: Multi-Attach error for volume " in line
    assert "the cache PVC is ReadWriteOnce and mounted on another node; use a ReadWriteMany PVC" in line
