"""`poolserve test --fingerprint save|check FILE` and `deploy --check-fingerprint FILE` against a fake vLLM."""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from poolserve.cli.app import create_app
from poolserve.targets.base import DeployResult, Endpoint
from support.fake_vllm import FakeVllm

ROOT = Path(__file__).resolve().parents[1]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
URL = "http://127.0.0.1:18080"
runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "poolserve.yaml", tmp_path / "poolserve.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POOLSERVE_TOKEN", raising=False)
    return tmp_path


class FakeTarget:
    """A target whose model answers at the fake vLLM; deploy records the call."""

    name = "local"

    def __init__(self) -> None:
        self.deployed: list[Sequence[str]] = []

    def endpoint(self, rendered: Any, name: str) -> Endpoint:
        return Endpoint(url=URL, served_model=name)

    def server_command(self, rendered: Any, name: str) -> tuple[list[str], dict[str, str]]:
        return list(rendered.compose(name).argv), {}

    def deploy(self, rendered: Any, names: Sequence[str], **kwargs: Any) -> DeployResult:
        self.deployed.append(names)
        return DeployResult(target="local", changes=())


def cli(fake: FakeVllm, *args: str, target: FakeTarget | None = None) -> Result:
    app = create_app(http_transport=fake.transport, target_factory=lambda name, options: target or FakeTarget())
    return runner.invoke(app, list(args))


def embedder() -> FakeVllm:
    return FakeVllm(served=(MINILM, "minilm-embedding"))


def error_line(r: Result) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def nudge(fake: FakeVllm, scale: float) -> None:
    """Move every vector by relative noise ``scale`` (a dtype change is ~0.01), keeping it unit length."""
    original = fake.vector

    def moved(text: str) -> list[float]:
        rng = random.Random(text)
        v = [x + scale * rng.gauss(0, 1) / math.sqrt(len(original(text))) for x in original(text)]
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    fake.vector = moved  # type: ignore[method-assign]


def test_save_then_check_the_same_deployment_is_same(project: Path) -> None:
    fake = embedder()
    r = cli(fake, "test", "minilm-embedding", "--url", URL, "--fingerprint", "save", "fp.json")
    assert r.exit_code == 0, r.output
    assert "minilm-embedding: saved fingerprint fp.json" in r.stderr
    assert "64 probes, 384 dimensions (poolserve-probes-1)" in r.stderr
    data = json.loads((project / "fp.json").read_text())
    assert data["facts"]["target"] == "url" and data["facts"]["max_model_len"] == 256
    assert data["truncate_prompt_tokens"] == -1
    bodies = [b for _, p, b in fake.calls if p == "/v1/embeddings"]
    assert len(bodies) == 8 and all(len(b["input"]) == 8 and b["truncate_prompt_tokens"] == -1 for b in bodies)
    r = cli(fake, "test", "minilm-embedding", "--url", URL, "--fingerprint", "check", "fp.json")
    assert r.exit_code == 0, r.output
    assert "minilm-embedding against fp.json: SAME" in r.stdout
    assert "nothing poolserve knows of" in r.stdout


def test_a_small_move_is_compatible_and_a_large_one_exits_12(project: Path) -> None:
    assert cli(embedder(), "test", "minilm-embedding", "--url", URL, "--fingerprint", "save", "fp.json").exit_code == 0
    fake = embedder()
    nudge(fake, 0.01)
    r = cli(fake, "test", "minilm-embedding", "--url", URL, "--fingerprint", "check", "fp.json", "-o", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["verdict"] == "compatible" and out["comparison"]["min_cosine"] > 0.999
    fake = embedder()
    nudge(fake, 1.0)
    r = cli(fake, "test", "minilm-embedding", "--url", URL, "--fingerprint", "check", "fp.json")
    assert r.exit_code == 12, r.output
    assert "RE-INDEX" in r.stdout
    assert error_line(r).startswith("error: minilm-embedding: re-index: the outputs moved against fp.json")


def test_a_reranker_fingerprint(project: Path) -> None:
    fake = FakeVllm(task="score", served=("cross-encoder/ms-marco-MiniLM-L12-v2", "msmarco-reranker"),
                    max_model_len=512)
    r = cli(fake, "test", "msmarco-reranker", "--url", URL, "--fingerprint", "save", "ce.json")
    assert r.exit_code == 0, r.output
    assert "8 queries x 8 documents" in r.stderr
    assert [p for _, p, _ in fake.calls].count("/score") == 8
    r = cli(fake, "test", "msmarco-reranker", "--url", URL, "--fingerprint", "check", "ce.json")
    assert r.exit_code == 0 and "SAME" in r.stdout, r.output
    fake.score_offset = 3.0  # every score moves by 3: ranks hold, scores do not
    r = cli(fake, "test", "msmarco-reranker", "--url", URL, "--fingerprint", "check", "ce.json")
    assert r.exit_code == 12 and "Kendall tau min 1.000" in r.stdout, r.output
    r = cli(embedder(), "test", "minilm-embedding", "--url", URL, "--fingerprint", "check", "ce.json")
    assert r.exit_code == 2
    assert "is the fingerprint of a reranker (msmarco-reranker); minilm-embedding is an embedding model" in \
        error_line(r)


@pytest.mark.parametrize(("args", "message"), [
    (["--fingerprint", "load", "fp.json"], "--fingerprint 'load': use save FILE or check FILE"),
    (["--fingerprint", "check", "missing.json"], "missing.json: cannot read the fingerprint"),
    (["--fingerprint", "check", "poolserve.yaml"], "poolserve.yaml: not JSON"),
    (["--fingerprint", "save", "nodir/fp.json"], "nodir/fp.json: cannot write there"),
    (["--fingerprint", "save", "."], ".: is a directory"),
])
def test_bad_input_is_one_line_and_exit_2(project: Path, args: list[str], message: str) -> None:
    r = cli(embedder(), "test", "minilm-embedding", "--url", URL, *args)
    assert r.exit_code == 2, r.output
    assert message in error_line(r)


def test_facts_come_from_the_config_and_target(project: Path) -> None:
    r = cli(embedder(), "test", "minilm-embedding", "--target", "local", "--fingerprint", "save", "fp.json")
    assert r.exit_code == 0, r.output
    facts = json.loads((project / "fp.json").read_text())["facts"]
    # The fake target has no launch plan: the composed container's flags; the device is this machine's CPU.
    assert (facts["target"], facts["dtype"], facts["max_model_len"]) == ("local", "float16", 256)
    assert facts["pooling"] and facts["normalize"] is True and facts["device"].startswith("cpu (")
    assert facts["model"] == "/models/x"  # what the server says it loaded wins over the config


def test_deploy_checks_the_fingerprint_after_the_rollout(project: Path) -> None:
    assert cli(embedder(), "test", "minilm-embedding", "--target", "local", "--fingerprint", "save",
               "fp.json").exit_code == 0
    target = FakeTarget()
    r = cli(embedder(), "deploy", "minilm-embedding", "--target", "local", "--check-fingerprint", "fp.json",
            target=target)
    assert r.exit_code == 0, r.output
    assert target.deployed == [("minilm-embedding",)] and "minilm-embedding against fp.json: SAME" in r.stderr
    moved = embedder()
    nudge(moved, 1.0)
    r = cli(moved, "deploy", "minilm-embedding", "--target", "local", "--check-fingerprint", "fp.json", target=target)
    assert r.exit_code == 12 and "re-index" in error_line(r), r.output


@pytest.mark.parametrize(("args", "message"), [
    (["--no-wait"], "--check-fingerprint compares the model after the rollout"),
    (["--dry-run", "client"], "--check-fingerprint compares the model after the rollout"),
])
def test_deploy_refuses_a_check_it_cannot_make_before_deploying(project: Path, args: list[str], message: str) -> None:
    assert cli(embedder(), "test", "minilm-embedding", "--url", URL, "--fingerprint", "save", "fp.json").exit_code == 0
    target = FakeTarget()
    r = cli(embedder(), "deploy", "--target", "local", "--check-fingerprint", "fp.json", *args, target=target)
    assert r.exit_code == 2 and message in error_line(r)
    assert target.deployed == []


def test_deploy_refuses_a_fingerprint_of_another_config(project: Path) -> None:
    assert cli(embedder(), "test", "--url", URL, "--task", "embed", "--model", MINILM, "--fingerprint", "save",
               "fp.json").exit_code == 0
    target = FakeTarget()
    r = cli(embedder(), "deploy", "--target", "local", "--check-fingerprint", "fp.json", target=target)
    assert r.exit_code == 2 and f"is the fingerprint of '{MINILM}', which is not a model of" in error_line(r)
    assert target.deployed == []


def test_cluster_facts_come_from_the_composed_container_and_the_config() -> None:
    from poolserve.actions.common import Source
    from poolserve.actions.serving import deployment_facts
    from poolserve.targets.cluster.fake.cluster import FakeCluster
    from poolserve.targets.cluster.target import ClusterTarget

    rendered = Source(ROOT / "poolserve.yaml", ("models.0.mig_profile=1g.10gb",)).load()
    facts = deployment_facts(rendered, rendered.model("minilm-embedding"), ClusterTarget(FakeCluster()))
    assert (facts.target, facts.device, facts.dtype, facts.max_model_len, facts.revision) == (
        "cluster", "gpu MIG 1g.10gb", "float16", 256, None)  # the PVC's snapshot is not readable from here
    assert facts.model == MINILM and facts.normalize is True
    assert deployment_facts(rendered, rendered.model("granite-embedding"), None).device == "gpu"
