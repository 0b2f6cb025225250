"""Cluster faults against the real envtest API server, seen through a fault-injecting HTTPS front
(:mod:`support.faultproxy`): the API server gone between two objects of one ``deploy``, an expired or
invalid token, 429/5xx answers. The control plane itself keeps running for the rest of the session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CONFIG
from support.envcluster import EnvCluster
from support.faultproxy import Fault, FaultProxy
from support.kubeapi import path
from support.poolcli import cli, error_line

MINILM = "minilm-embedding"
SR = ("serving.kserve.io/v1alpha1", "servingruntimes")
ISVC = ("serving.kserve.io/v1beta1", "inferenceservices")


@pytest.fixture
def proxy(kube: EnvCluster, tmp_path: Path) -> Iterator[FaultProxy]:
    p = FaultProxy(kube.cp, tmp_path)
    yield p
    p.stop()


@pytest.fixture
def config(ns: str, tmp_path: Path) -> Path:
    text = CONFIG.read_text()
    assert "namespace: vllm-embeddings\n" in text
    dest = tmp_path / "poolserve.yaml"
    dest.write_text(text.replace("namespace: vllm-embeddings\n", f"namespace: {ns}\n"))
    return dest


def applied(kube: EnvCluster, ns: str) -> set[str]:
    names = {f"servingruntime/{o['metadata']['name']}" for o in kube.api.list(path(*SR, ns))}
    return names | {f"inferenceservice/{o['metadata']['name']}" for o in kube.api.list(path(*ISVC, ns))}


def test_api_server_gone_between_two_objects_names_the_partial_apply_and_a_rerun_converges(
        kube: EnvCluster, ns: str, config: Path, proxy: FaultProxy) -> None:
    # The first object's apply reaches the API server; then it is gone (connection refused).
    proxy.rule = lambda method, p, n: Fault(down_after=True) if method == "PATCH" and "/servingruntimes/" in p else None
    r = cli("deploy", "--no-wait", kubeconfig=proxy.kubeconfig(), config=config)
    assert r.exit_code != 0
    line = error_line(r)
    assert line.startswith(f"error: cannot reach the Kubernetes API at {proxy.url}: ")
    assert "(after 5 attempts)" in line  # connection refused is retried with backoff: nothing was sent
    done = re.search(r"applied before the failure: ([^;]*); not applied: ([^(]*)", line)
    assert done, line
    assert done.group(1) == f"namespace/{ns} configured, servingruntime/vllm-embedding-runtime created", line
    not_applied = [x.strip() for x in done.group(2).split(",")]
    assert not_applied[0] == "servingruntime/vllm-reranker-runtime"
    assert f"inferenceservice/{MINILM}" in not_applied
    # The line is true: exactly what it says was applied is there.
    assert applied(kube, ns) == {"servingruntime/vllm-embedding-runtime"}

    # The API server is back: the same command converges, the first object unchanged.
    proxy.rule = lambda method, p, n: None
    proxy.come_back()
    r = cli("deploy", "--no-wait", kubeconfig=proxy.kubeconfig(), config=config)
    assert r.exit_code == 0, r.stderr
    assert f"servingruntime/{ns}/vllm-embedding-runtime unchanged" in r.stderr
    assert f"servingruntime/{ns}/vllm-reranker-runtime created" in r.stderr
    assert applied(kube, ns) >= {"servingruntime/vllm-embedding-runtime", "servingruntime/vllm-reranker-runtime",
                                 f"inferenceservice/{MINILM}", "inferenceservice/granite-embedding",
                                 "inferenceservice/msmarco-reranker"}
    again = cli("deploy", "--no-wait", kubeconfig=proxy.kubeconfig(), config=config)
    assert again.exit_code == 0 and "no changes" in again.stderr, again.stderr


@pytest.mark.parametrize("token", ["sha256~expired-long-ago", "not-a-token-at-all"])
def test_an_expired_or_invalid_token_is_one_line_and_not_retried(
        kube: EnvCluster, ns: str, config: Path, proxy: FaultProxy, token: str) -> None:
    kubeconfig = proxy.kubeconfig("nobody", token=token)
    for args in (("deploy", "--no-wait"), ("status",)):
        proxy.log.clear()
        r = cli(*args, kubeconfig=kubeconfig, config=config)
        assert r.exit_code != 0
        line = error_line(r)
        assert line.startswith(f"error: the Kubernetes API at {proxy.url} rejected the credentials "
                               "(401 Unauthorized)"), line
        assert "oc login" in line
        assert [s for _, _, s in proxy.log] == [401]  # asked once: a 401 is not retried
    assert applied(kube, ns) == set()


def test_429_and_5xx_are_retried_for_get_and_apply_only(kube: EnvCluster, ns: str, config: Path,
                                                        proxy: FaultProxy) -> None:
    # Every GET path and every apply answers 429 (with Retry-After) or 503 the first time.
    def rule(method: str, p: str, n: int) -> Fault | None:
        if n == 1 and method == "GET":
            return Fault(429, "TooManyRequests", retry_after="1")
        if n == 1 and method == "PATCH":
            return Fault(503, "ServiceUnavailable")
        return None

    proxy.rule = rule
    r = cli("deploy", "--no-wait", "--runtimes-only", kubeconfig=proxy.kubeconfig(), config=config)
    assert r.exit_code == 0, r.stderr
    assert applied(kube, ns) == {"servingruntime/vllm-embedding-runtime", "servingruntime/vllm-reranker-runtime"}
    patches = proxy.seen("PATCH")
    assert [s for _, _, s in patches] == [503, 201, 503, 201]  # each apply: refused once, then created
    gets = proxy.seen("GET")
    busy = [p for _, p, s in gets if s == 429]
    assert len(busy) >= 3 and len(set(busy)) == len(busy)  # once per path, then asked again:
    assert {p for _, p, s in gets if s != 429} == set(busy)  # the answer (200, or 404: not there yet) came

    # A POST (the access review of preflight) answered 503 is not sent again: one line, nothing applied.
    proxy.counts.clear()
    proxy.log.clear()
    proxy.rule = lambda method, p, n: Fault(503, "ServiceUnavailable") if method == "POST" else None
    r = cli("deploy", "--no-wait", kubeconfig=proxy.kubeconfig(), config=config)
    assert r.exit_code != 0
    line = error_line(r)
    assert "HTTP 503" in line and "selfsubjectaccessreviews" in line, line
    assert len(proxy.seen("POST")) == 1 and proxy.seen("PATCH") == []
