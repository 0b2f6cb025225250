"""`helm test`: the hook Pods the chart renders, and the script they run (charts/poolserve/files/smoke.py).

The script runs here exactly as the Pod runs it (its command and env from `helm template`, only the
URLs pointed at loopback servers): against stub vLLM servers for every failure it must catch, over
HTTPS with a token, and against real vLLM serving the plan's models (`vllm` tests).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poolserve.check import probes
from support.controlplane import make_pki
from support.fake_vllm import FakeVllm, not_found_route
from support.helm import CHART, load_objects, template
from support.network import LoopbackServer, vllm_server

ROOT = Path(__file__).resolve().parents[1]
SMOKE = CHART / "files" / "smoke.py"
SECURE = ROOT / "tests" / "specs" / "per-model-secure.yaml"


def hook_pods(*args: str | Path, namespace: str) -> dict[str, dict[str, Any]]:
    """The `helm test` Pods of a render, by model name."""
    objects = load_objects(template(*args, namespace=namespace).stdout)
    pods = [o for o in objects if o["kind"] == "Pod"]
    assert all(p["metadata"]["annotations"]["helm.sh/hook"] == "test" for p in pods)
    return {next(e["value"] for e in p["spec"]["containers"][0]["env"] if e["name"] == "POOLSERVE_MODEL"): p
            for p in pods}


def run_pod(pod: dict[str, Any], urls: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run the Pod's command here with its env; POOLSERVE_URLS replaced by ``urls``."""
    container = pod["spec"]["containers"][0]
    pod_env = {e["name"]: e["value"] for e in container["env"]}
    pod_env["POOLSERVE_URLS"] = " ".join(urls)
    pod_env.update(env)
    command = [sys.executable if container["command"][0] == "python" else container["command"][0],
               *container["command"][1:]]
    clean = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return subprocess.run(command, env={**clean, **pod_env}, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[LoopbackServer] = []

    def start(fake: FakeVllm, tls: tuple[Path, Path] | None = None) -> str:
        server = vllm_server(fake)
        if tls is not None:  # the same handler behind TLS
            server.stop()
            server = LoopbackServer(server.httpd.RequestHandlerClass, tls=tls)  # type: ignore[arg-type]
        servers.append(server)
        return f"{'https' if tls else 'http'}://127.0.0.1:{server.port}"

    yield start
    for s in servers:
        s.stop()


def closed_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# --------------------------------------------------------------------------------------------------
# The Pods.


def test_one_hook_pod_per_model_running_the_script_in_the_vllm_image() -> None:
    pods = hook_pods("-f", SECURE, namespace="search")
    assert set(pods) == {"bge-m3", "bge-reranker"}
    bge = pods["bge-m3"]
    assert bge["metadata"]["name"] == "poolserve-test-bge-m3"
    assert bge["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    spec = bge["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "vllm/vllm-openai:v0.32.0"
    assert container["command"] == ["python", "-c", SMOKE.read_text()]
    env = {e["name"]: e["value"] for e in container["env"]}
    host = "bge-m3-predictor.search.svc.cluster.local"
    # Token auth: kube-rbac-proxy's port first, with the model's ServiceAccount token.
    assert env["POOLSERVE_URLS"] == f"https://{host}:8443 http://{host} http://{host}:8080"
    assert env["POOLSERVE_TOKEN_FILE"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert spec["serviceAccountName"] == "bge-m3-sa"
    assert env["POOLSERVE_TASK"] == "embed" and env["POOLSERVE_DIMENSIONS"] == "1024"
    # Beside the model's pods (the image is there), with the model's node selector and tolerations.
    term = spec["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": "bge-m3"}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nvidia.com/gpu" not in str(container["resources"])
    reranker = pods["bge-reranker"]["spec"]
    env = {e["name"]: e["value"] for e in reranker["containers"][0]["env"]}
    assert env["POOLSERVE_TASK"] == "score" and "POOLSERVE_DIMENSIONS" not in env
    assert "POOLSERVE_TOKEN_FILE" not in env and reranker["automountServiceAccountToken"] is False


def test_hook_image_follows_the_model_then_helm_test_image() -> None:
    text = "--set-json=models=" + (
        '[{"name":"a","model_id":"sentence-transformers/all-MiniLM-L6-v2","image":"vllm/vllm-openai:v0.33.1"},'
        '{"name":"b","model_id":"sentence-transformers/all-MiniLM-L6-v2"}]')
    pods = hook_pods(text, namespace="vllm-embeddings")
    assert pods["a"]["spec"]["containers"][0]["image"] == "vllm/vllm-openai:v0.33.1"
    assert pods["b"]["spec"]["containers"][0]["image"] == "vllm/vllm-openai:v0.32.0"
    pods = hook_pods(text, "--set", "helm.test_image=registry.local/python:3.12", namespace="vllm-embeddings")
    assert {p["spec"]["containers"][0]["image"] for p in pods.values()} == {"registry.local/python:3.12"}


def test_hook_pods_pull_the_image_with_the_models_pull_secrets() -> None:
    pods = hook_pods("-f", ROOT / "tests" / "specs" / "rwo-rollout.yaml", namespace="embeddings-dev")
    assert pods["minilm-embedding"]["spec"]["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert "imagePullSecrets" not in hook_pods("-f", SECURE, namespace="search")["bge-m3"]["spec"]


def test_the_script_uses_poolserves_probes() -> None:
    spec = importlib.util.spec_from_file_location("smoke", SMOKE)
    assert spec and spec.loader
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    assert smoke.EMBED_TEXTS == probes.EMBED_TEXTS
    assert smoke.RERANK_QUERY == probes.RERANK_QUERY
    assert smoke.RERANK_DOCUMENTS == probes.RERANK_DOCUMENTS
    assert smoke.RERANK_RELEVANT_INDEX == probes.RERANK_RELEVANT_INDEX


# --------------------------------------------------------------------------------------------------
# The script against stub servers.


@pytest.fixture(scope="module")
def plan_pods() -> dict[str, dict[str, Any]]:
    return hook_pods(namespace="vllm-embeddings")


MINILM_SERVED = ("sentence-transformers/all-MiniLM-L6-v2", "minilm-embedding")
RERANKER_SERVED = ("cross-encoder/ms-marco-MiniLM-L12-v2", "msmarco-reranker")


def test_passes_for_a_healthy_embedding_model_on_the_second_url(plan_pods: dict, serve: Any) -> None:
    fake = FakeVllm("embed", MINILM_SERVED, dims=384)
    out = run_pod(plan_pods["minilm-embedding"], [closed_port(), serve(fake)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: minilm-embedding at http://127.0.0.1:")
    assert "4 embeddings of 384 dimensions" in out.stdout
    assert fake.calls[-1][1] == "/v1/embeddings" and fake.calls[-1][2]["model"] == "minilm-embedding"


def test_passes_for_a_healthy_reranker(plan_pods: dict, serve: Any) -> None:
    out = run_pod(plan_pods["msmarco-reranker"], [serve(FakeVllm("score", RERANKER_SERVED))])
    assert out.returncode == 0, out.stderr
    assert "the relevant document ranks first (5.250 > -3.000)" in out.stdout


def test_an_old_vllm_without_rerank_is_checked_through_score(plan_pods: dict, serve: Any) -> None:
    fake = FakeVllm("score", RERANKER_SERVED)
    fake.routes["/rerank"] = lambda request: not_found_route()
    out = run_pod(plan_pods["msmarco-reranker"], [serve(fake)])
    assert out.returncode == 0, out.stderr
    assert [p for p in fake.paths() if p != "/health"] == ["/rerank", "/score"]


@pytest.mark.parametrize(("model", "fault", "says"), [
    ("minilm-embedding", {"dims": 768}, "embeddings have 768 dimensions, the model has 384"),
    ("minilm-embedding", {"nan": True}, "embeddings contain NaN"),
    ("minilm-embedding", {"served": ("other",)}, "POST /v1/embeddings answered 404"),
    ("minilm-embedding", {"healthy": False}, "no URL answered /health: http://127.0.0.1:"),
    ("msmarco-reranker", {"reverse_rerank": True}, "/rerank put document"),
    ("msmarco-reranker", {"relevant_loses": True}, "not the relevant one (1)"),
], ids=["wrong-dimension", "nan", "model-not-served", "unhealthy", "reversed-ranking", "relevant-loses"])
def test_fails_with_the_reason(plan_pods: dict, serve: Any, model: str, fault: dict[str, Any], says: str) -> None:
    task = "embed" if model == "minilm-embedding" else "score"
    fake = FakeVllm(task, fault.pop("served", MINILM_SERVED if task == "embed" else RERANKER_SERVED),
                    dims=fault.pop("dims", 384))
    for attr, value in fault.items():
        setattr(fake, attr, value)
    out = run_pod(plan_pods[model], [serve(fake)])
    assert out.returncode == 1
    assert out.stderr.startswith(f"FAILED: {model} ({task}): ") and says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_token_auth_over_https(serve: Any, tmp_path: Path) -> None:
    # (--set models[0].expose=true would replace the whole list: Helm does not merge into list items.)
    pods = hook_pods("--set-json", 'models=[{"name": "minilm-embedding", "expose": true, '
                     '"model_id": "sentence-transformers/all-MiniLM-L6-v2"}]', namespace="vllm-embeddings")
    pod = pods["minilm-embedding"]
    assert pod["spec"]["serviceAccountName"] == "minilm-embedding-sa"
    pki = make_pki(tmp_path / "pki")
    url = serve(FakeVllm("embed", MINILM_SERVED, token="s3cret"), tls=pki.issue(tmp_path, "kube-rbac-proxy"))
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    ok = run_pod(pod, [url], POOLSERVE_TOKEN_FILE=str(token), POOLSERVE_CA_FILE=str(pki.ca_cert))
    assert ok.returncode == 0, ok.stderr
    token.write_text("wrong")
    denied = run_pod(pod, [url], POOLSERVE_TOKEN_FILE=str(token), POOLSERVE_CA_FILE=str(pki.ca_cert))
    assert denied.returncode == 1 and "/health answered 401" in denied.stderr


# --------------------------------------------------------------------------------------------------
# The script against real vLLM (the plan's MiniLM, and the test cross-encoder under the reranker's name).


def test_real_vllm_embedding_model(plan_pods: dict, minilm_server: Any) -> None:
    out = run_pod(plan_pods["minilm-embedding"], [minilm_server.endpoint.url])
    assert out.returncode == 0, out.stderr
    assert "4 embeddings of 384 dimensions" in out.stdout


def test_real_vllm_reranker(plan_pods: dict, reranker_server: Any) -> None:
    out = run_pod(plan_pods["msmarco-reranker"], [reranker_server.endpoint.url])
    assert out.returncode == 0, out.stderr
    assert "the relevant document ranks first" in out.stdout
