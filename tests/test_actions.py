"""Actions without the CLI: a request and the edges in, a result out (as an API user calls them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from poolserve.actions.common import Edges, Source, Where, on_target
from poolserve.actions.deploy import DeployRequest, deploy
from poolserve.actions.status import StatusRequest, status, watch
from poolserve.config.load import parse_spec
from poolserve.errors import ClusterUnreachable, MissingDependency, SpecError
from poolserve.kserve.render import render
from poolserve.targets.cluster.fake.kserve import cluster_for, ready_controller
from poolserve.targets.cluster.target import ClusterTarget
from poolserve.targets.local.state import LocalEntry, LocalState, write_state
from poolserve.targets.local.target import LocalTarget
from test_cluster_target import NS, SPEC


@pytest.fixture
def source(tmp_path: Path) -> Source:
    (tmp_path / "poolserve.yaml").write_text(SPEC)
    return Source(tmp_path / "poolserve.yaml", (f"local.state_dir={tmp_path / 'state'}",))


def cluster_edges() -> tuple[Edges, Any]:
    fake = cluster_for(parse_spec(SPEC, "poolserve.yaml"), controller=ready_controller)
    target = ClusterTarget(fake, sleep=lambda s: None, now=lambda: 0.0)
    return Edges(target_factory=lambda name, options: target), fake


def test_deploy_then_status_through_the_actions(source: Source) -> None:
    edges, fake = cluster_edges()
    result = deploy(DeployRequest(source=source, names=("minilm",), where=Where("cluster")), edges)
    assert [(s.name, s.phase) for s in result.statuses] == [("minilm", "Ready")]
    assert fake.stored("InferenceService", "minilm", NS) is not None
    statuses = status(StatusRequest(source=source, names=("minilm",), where=Where("cluster")), edges)
    assert [(s.name, s.ready) for s in statuses] == [("minilm", True)]


def test_watch_polls_the_same_target_until_the_reader_stops(source: Source) -> None:
    edges, _ = cluster_edges()
    sleeps: list[float] = []
    polls = watch(StatusRequest(source=source, names=("minilm",), where=Where("cluster")), edges,
                  interval_s=2.0, sleep=sleeps.append)
    assert [s.phase for s in next(polls)] == ["NotDeployed"]
    assert [s.phase for s in next(polls)] == ["NotDeployed"]
    assert sleeps == [2.0]  # sleeps between polls, never before the first


def test_unknown_model_name_fails_before_any_target_is_built(source: Source) -> None:
    built: list[str] = []
    edges = Edges(target_factory=lambda name, options: built.append(name))  # type: ignore[arg-type,func-returns-value]
    with pytest.raises(SpecError, match="no model named 'nope'"):
        deploy(DeployRequest(source=source, names=("nope",)), edges)
    assert built == []


@pytest.mark.parametrize("error", [MissingDependency("the kubernetes Python client is not installed"),
                                   ClusterUnreachable("no kubeconfig found")])
def test_the_local_hint_needs_a_defaulted_target_and_a_local_model(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    monkeypatch.delenv("POOLSERVE_TARGET", raising=False)
    rendered = render(source.spec())
    write_state(tmp_path / "state" / "local-state.json", LocalState({"minilm": LocalEntry(
        name="minilm", pid=1, pgid=1, port=1, url="u", log="l", started_at=0.0, argv=(), served_model="m",
        runtime="r", fingerprint="f", uid="u1")}))

    edges = Edges(target_factory=lambda name, options: LocalTarget(state_dir=options.state_dir))

    def fail(where: Where, names: tuple[str, ...]) -> str:
        try:
            with on_target(where, rendered, names, edges):
                raise error
        except type(error) as raised:
            return str(raised)
        raise AssertionError("on_target swallowed the error")

    assert fail(Where(), ("minilm",)).startswith("minilm is deployed locally, but --target defaults to cluster")
    assert fail(Where(), ()).startswith("minilm is deployed locally")  # all models: the one running locally
    assert fail(Where("cluster"), ("minilm",)) == str(error)  # chosen explicitly: nothing to hint
    monkeypatch.setenv("POOLSERVE_TARGET", "cluster")
    assert fail(Where(), ("minilm",)) == str(error)
    monkeypatch.delenv("POOLSERVE_TARGET")
    assert fail(Where(), ("granite",)) == str(error)  # not deployed locally


def test_what_each_target_has_here_deployed_caches_and_process_group(source: Source, tmp_path: Path) -> None:
    # What test, bench, cache and the soak ask a target instead of reading the local target's files.
    from poolserve.targets.local.lifecycle import PodStatus, Running
    from poolserve.targets.local.state import write_pod

    rendered = source.load()
    write_state(tmp_path / "state" / "local-state.json", LocalState({"minilm": LocalEntry(
        name="minilm", pid=1, pgid=1, port=1, url="u", log="l", started_at=0.0, argv=(), served_model="m",
        runtime="r", fingerprint="f", uid="u1")}))
    local = LocalTarget()
    assert local.deployed(rendered, []) == ["minilm"]
    assert local.deployed(rendered, ["granite", "minilm"]) == ["minilm"]
    assert local.hf_homes(rendered) == [Path(rendered.spec.local.cache_dir).absolute() / "huggingface"]
    assert local.server_pgid(rendered, "minilm") is None
    write_pod(tmp_path / "state", PodStatus(name="minilm", uid="u1", supervisor_pid=1, supervisor_ticks=None,
                                            restart_policy="Always", port=1,
                                            running=Running(pid=41, pgid=40, ticks=None, started_at=0.0)))
    assert local.server_pgid(rendered, "minilm") == 40

    edges, _ = cluster_edges()
    deploy(DeployRequest(source=source, names=("minilm",), where=Where("cluster")), edges)
    cluster = edges.target(Where("cluster"))
    assert cluster.deployed(rendered, []) == ["minilm"]
    assert cluster.deployed(rendered, ["granite"]) == []
    assert cluster.hf_homes(rendered) == [] and cluster.server_pgid(rendered, "minilm") is None
    with pytest.raises(SpecError, match="no model named 'nope'"):
        cluster.deployed(rendered, ["nope"])
