"""`poolserve test`: exit codes, one-line errors, table/json output, token handling, target lookup."""

from __future__ import annotations

import json
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from poolserve.actions.test import base_url
from poolserve.check.reference import INSTALL_HINT
from poolserve.cli.app import create_app
from poolserve.targets.base import Endpoint
from support.fake_vllm import FakeVllm

ROOT = Path(__file__).resolve().parents[1]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
RERANKER = "cross-encoder/ms-marco-MiniLM-L12-v2"
URL = "http://127.0.0.1:18080"
runner = CliRunner()
app = create_app()
_wired: dict[str, Any] = {}


def wire(monkeypatch: pytest.MonkeyPatch, **edges: Any) -> None:
    """The app under test acts with these edges (added to those this test wired before)."""
    merged = {**_wired, **edges}
    monkeypatch.setitem(globals(), "_wired", merged)
    monkeypatch.setitem(globals(), "app", create_app(**merged))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "poolserve.yaml", tmp_path / "poolserve.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POOLSERVE_TOKEN", raising=False)
    return tmp_path


def serve(monkeypatch: pytest.MonkeyPatch, fake: FakeVllm) -> FakeVllm:
    wire(monkeypatch, http_transport=fake.transport)
    return fake


def embedder() -> FakeVllm:
    return FakeVllm(served=(MINILM, "minilm-embedding"))


def reranker() -> FakeVllm:
    return FakeVllm(task="score", served=(RERANKER, "msmarco-reranker"), max_model_len=512)


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_embedding_model_passes(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve(monkeypatch, embedder())
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL])
    assert r.exit_code == 0, r.output
    assert r.stdout.count("PASS") == 7 and "FAIL" not in r.stdout
    assert "embed too long" in r.stdout and " ms " in r.stdout
    assert "minilm-embedding: all 7 checks passed" in r.stderr
    assert fake.calls[1][1] == "/v1/models" and fake.calls[2][2]["model"] == MINILM


def test_reranker_passes_json(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, reranker())
    r = runner.invoke(app, ["test", "msmarco-reranker", "--url", URL, "-o", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["passed"] is True and data["task"] == "score" and data["served_model"] == RERANKER
    assert [c["name"] for c in data["checks"]][-1] == "rerank top_n"
    assert all(set(c) == {"name", "passed", "detail", "latency_ms", "status"} for c in data["checks"])


def test_embedding_test_against_a_reranker_server_fails_clearly(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, reranker())
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL])
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    line = error_line(r.stderr)
    assert line.startswith(f"error: minilm-embedding: 6 of 7 checks failed at {URL}; embed single: ")
    assert "HTTP 404" in line and "no /v1/embeddings" in line and "cross-encoder" in line
    assert "FAIL" in r.stdout
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL, "-o", "json"])
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert r.exit_code == 1
    assert "HTTP 404" in checks["embed single"]["detail"] and "no /v1/embeddings" in checks["embed single"]["detail"]
    assert checks["embed batch"]["detail"] == "not run: embed single failed"


def test_failed_checks_in_json_still_exit_1(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve(monkeypatch, embedder())
    fake.dims = 128
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL, "-o", "json"])
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["passed"] is False
    assert "128 dims, expected 384" in error_line(r.stderr)


def test_connection_refused_is_one_line(project: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", f"http://127.0.0.1:{port}"])
    assert r.exit_code == 9
    assert "Traceback" not in r.output and r.stdout == ""
    assert error_line(r.stderr) == (f"error: GET http://127.0.0.1:{port}/health: connection refused: nothing "
                                    f"listens on 127.0.0.1:{port} (is the model running? see `poolserve status`)")


def test_token_from_env_and_flag_never_printed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, FakeVllm(served=(MINILM,), token="tok-123456"))
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL])
    assert r.exit_code == 9
    line = error_line(r.stderr)
    assert "HTTP 401" in line and "needs a bearer token" in line and "POOLSERVE_TOKEN" in line
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL], env={"POOLSERVE_TOKEN": "tok-123456"})
    assert r.exit_code == 0, r.output
    assert "tok-123456" not in r.output
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL, "--token", "bad-token-99", "-o", "json"])
    assert r.exit_code == 9 and "token was rejected" in r.stderr
    assert "bad-token-99" not in r.output


class FakeTarget:
    name = "local"

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self.asked: list[str] = []

    def endpoint(self, rendered: Any, name: str) -> Endpoint:
        self.asked.append(name)
        return self._endpoint

    def server_command(self, rendered: Any, name: str) -> tuple[list[str], dict[str, str]]:
        return list(rendered.compose(name).argv), {}


def test_endpoint_and_token_from_the_target(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve(monkeypatch, FakeVllm(served=("minilm-embedding",), token="from-target"))
    tgt = FakeTarget(Endpoint(url=URL, served_model="minilm-embedding", token="from-target"))
    wire(monkeypatch, target_factory=lambda name, options: tgt)
    r = runner.invoke(app, ["test", "minilm-embedding", "--target", "local"])
    assert r.exit_code == 0, r.output
    assert tgt.asked == ["minilm-embedding"]
    assert all(b is None or b.get("model") == "minilm-embedding" for _, _, b in fake.calls)
    assert "from-target" not in r.output


def test_url_with_v1_suffix_is_trimmed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve(monkeypatch, embedder())
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL + "/v1/"])
    assert r.exit_code == 0, r.output
    assert f"note: using {URL} (without /v1)" in r.stderr
    assert fake.paths()[0] == "/health"
    assert base_url("https://h/x") == ("https://h/x", None)


def test_insecure_warns_and_excludes_ca_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, embedder())
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", "https://m.apps.example.com", "--insecure"])
    assert r.exit_code == 0, r.output
    assert "warning: TLS certificate verification is off for https://m.apps.example.com" in r.stderr
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL, "--insecure", "--ca-file", "ca.pem"])
    assert r.exit_code == 2
    assert error_line(r.stderr) == "error: --ca-file and --insecure are mutually exclusive"


@pytest.mark.parametrize(("args", "message"), [
    (["--url", "127.0.0.1:1"], "error: --url '127.0.0.1:1': expected an http:// or https:// URL with a host, "
                               "e.g. http://127.0.0.1:8000"),
    (["--url", "ftp://host"], "error: --url 'ftp://host': expected an http:// or https:// URL"),
    (["--url", "https://h.example", "--ca-file", "/nonexistent/ca.pem"],
     "error: --ca-file /nonexistent/ca.pem: cannot read it: No such file or directory"),
    (["--url", "https://h.example", "--ca-file", "poolserve.yaml"], "error: --ca-file poolserve.yaml: not a PEM CA "
                                                                    "bundle"),
])
def test_url_and_ca_file_mistakes_are_input_errors(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                   args: list[str], message: str) -> None:
    fake = serve(monkeypatch, embedder())
    r = runner.invoke(app, ["test", "minilm-embedding", *args])
    assert r.exit_code == 2, r.output
    assert error_line(r.stderr).startswith(message) and "Traceback" not in r.output
    assert r.stderr.count("\n") == 1
    assert fake.calls == []  # nothing was sent


def test_unknown_model_name(project: Path) -> None:
    r = runner.invoke(app, ["test", "nope", "--url", URL])
    assert r.exit_code == 2
    assert "no model named 'nope'" in error_line(r.stderr)


def test_url_without_name_needs_no_config_like_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `bench --url` never needed NAME; `test --url` takes --task/--model instead, and reads no config.
    monkeypatch.chdir(tmp_path)  # no poolserve.yaml here
    fake = serve(monkeypatch, embedder())
    r = runner.invoke(app, ["test", "--url", URL, "--task", "embed", "--model", MINILM, "-o", "json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert (report["task"], report["served_model"], report["name"]) == ("embed", MINILM, MINILM)
    assert all(b is None or b.get("model") == MINILM for _, _, b in fake.calls)
    # What to expect comes from the catalog entry of --model: all-MiniLM-L6-v2 has 384 dimensions.
    serve(monkeypatch, FakeVllm(served=(MINILM,), dims=128))
    r = runner.invoke(app, ["test", "--url", URL, "--task", "embed", "--model", MINILM])
    assert r.exit_code == 1
    assert "384" in error_line(r.stderr) and "128" in error_line(r.stderr)


def test_without_name_or_task_says_what_to_give(project: Path) -> None:
    r = runner.invoke(app, ["test"])
    assert r.exit_code == 2
    assert error_line(r.stderr) == "error: give a model NAME from the config, or --url URL with --task embed|score"
    r = runner.invoke(app, ["test", "--url", URL])
    assert r.exit_code == 2
    assert error_line(r.stderr) == ("error: without NAME, give --task embed or --task score (and --model for the "
                                    "served name)")


class Ref:
    def __init__(self, fake: FakeVllm, source: str) -> None:
        self.fake, self.source = fake, source

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.fake.vector(t) for t in texts]

    def score(self, query: str, docs: Sequence[str]) -> list[float]:
        return [self.fake.relevance(query, d, i) for i, d in enumerate(docs)]


def test_reference_loader_gets_model_and_task(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve(monkeypatch, reranker())
    asked: list[tuple[str, str, list[Path]]] = []

    def loader(source: str, task: str, homes: Sequence[Path]) -> Ref:
        asked.append((source, task, list(homes)))
        return Ref(fake, source)

    wire(monkeypatch, reference_loader=loader)
    r = runner.invoke(app, ["test", "msmarco-reranker", "--url", URL, "--reference"])
    assert r.exit_code == 0, r.output
    assert asked[0][:2] == (RERANKER, "score")
    assert asked[0][2][0] == project / ".poolserve" / "cache" / "huggingface"  # local target cache first
    assert "reference score" in r.stdout and f"reference {RERANKER}" in r.stderr
    r = runner.invoke(app, ["test", "msmarco-reranker", "--url", URL, "--reference", "--reference-model", "/m/ce"])
    assert asked[1][0] == "/m/ce"


def test_reference_without_sentence_transformers(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve(monkeypatch, embedder())
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL, "--reference"])
    assert r.exit_code == 2
    assert INSTALL_HINT in error_line(r.stderr) and "Traceback" not in r.output
    assert "pip install -e '.[reference]' in the poolserve checkout" in r.stderr  # not from PyPI
    assert fake.calls == []  # fails before any request


def test_reference_help_names_the_checkout_install() -> None:
    import typer.main

    cmd = typer.main.get_command(app).commands["test"]  # type: ignore[attr-defined]
    help_text = next(p.help for p in cmd.params if p.name == "reference")
    assert "(pip install -e '.\\[reference]' in the poolserve checkout)" in help_text


def test_headline_prefers_a_failed_call() -> None:
    from poolserve.actions.test import headline
    from poolserve.check.runner import CheckResult

    models = CheckResult("models", False, "'x' is not served here")
    call = CheckResult("embed single", False, "HTTP 404: no embeddings API")
    skipped = CheckResult("embed batch", False, "not run: embed single failed")
    assert headline([models, call, skipped]) == call
    assert headline([models, skipped]) == models


def test_robustness_flag_adds_the_bad_input_checks_with_the_server_answers_in_json(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, reranker())
    r = runner.invoke(app, ["test", "msmarco-reranker", "--url", URL, "--robustness", "-o", "json"])
    assert r.exit_code == 0, r.output
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["robust zero documents"]["status"] == 400
    assert checks["robust unknown model"]["status"] == 404
    assert checks["robust batch 2048"]["status"] == 200 and checks["robust healthy after"]["passed"]
    r = runner.invoke(app, ["test", "msmarco-reranker", "--url", URL])
    assert "robust" not in r.stdout  # opt-in: 2,048 texts are not sent to a production model by default


def test_robustness_failure_exits_1_naming_the_check(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve(monkeypatch, embedder())
    real = fake.embeddings
    fake.embeddings = lambda body: (  # type: ignore[method-assign]
        httpx.Response(500, text="Internal Server Error") if body["input"] == [] else real(body))
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL, "--robustness"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert error_line(r.stderr).startswith(f"error: minilm-embedding: 1 of 15 checks failed at {URL}; "
                                           "robust empty input: not a clean answer: HTTP 500")


@pytest.mark.parametrize("columns", ["100", "72", None], ids=["COLUMNS=100", "COLUMNS=72", "unknown"])
def test_piped_table_fits_the_width_and_wraps_the_detail(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                         columns: str | None) -> None:
    # Piped, the table used to be 200 columns wide: its DETAIL column never wrapped.
    import os

    def no_terminal(fd: int = 1) -> os.terminal_size:
        raise OSError("not a terminal")

    monkeypatch.setattr(os, "get_terminal_size", no_terminal)  # piped, even under `pytest -s` in a terminal
    serve(monkeypatch, embedder())
    r = runner.invoke(app, ["test", "minilm-embedding", "--url", URL], env={"COLUMNS": columns})
    assert r.exit_code == 0, r.output
    width = int(columns or 100)  # unknown: 100 columns
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= width, r.stdout
    # Nothing is cut: each row's DETAIL (the last column, over its wrapped lines) is the whole detail.
    start = lines[0].index("DETAIL")
    rows: dict[str, str] = {}
    name = ""
    for line in lines[1:]:
        name = line[:start].split("  ")[0].strip() or name
        rows[name] = rows.get(name, "") + line[start:]
    details = {c["name"]: c["detail"] for c in json.loads(
        runner.invoke(app, ["test", "minilm-embedding", "--url", URL, "-o", "json"]).stdout)["checks"]}
    assert {k: "".join(v.split()) for k, v in rows.items()} == {k: "".join(v.split()) for k, v in details.items()}
    assert any(len(line) > width - 10 for line in lines)  # the detail uses the room it has
