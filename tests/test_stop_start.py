"""Stop and start: the ``serving.kserve.io/stop`` annotation, flipped with server-side apply and nothing else.

Rendering (``models[].stopped``), extracting what poolserve applied from ``managedFields``
(:mod:`poolserve.targets.cluster.ssa`), readiness, and ``ClusterTarget.stop/start`` against FakeCluster with the
fake KServe, which deletes a stopped model's workload as KServe v0.20 does. The same flows against the
real API server are in ``test_cluster_stop.py``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from poolserve.config.load import parse_spec
from poolserve.config.schema import PoolSpec
from poolserve.errors import NotFound
from poolserve.kserve.names import ISVC_API_VERSION, ISVC_KIND, STOP_ANNOTATION, is_stopped
from poolserve.kserve.render import Rendered, render
from poolserve.targets.cluster import ssa
from poolserve.targets.cluster.base import FIELD_MANAGER
from poolserve.targets.cluster.fake.cluster import FakeCluster
from poolserve.targets.cluster.fake.kserve import cluster_for, ready_controller
from poolserve.targets.cluster.fake.objects import condition, later
from poolserve.targets.cluster.objects import strip_server_fields
from poolserve.targets.cluster.readiness import model_status
from poolserve.targets.cluster.target import ClusterTarget

SPEC = """\
namespace: embeddings
image: vllm/vllm-openai:v0.32.0
cache: {pvc: model-cache}
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
defaults: {gpus: 1}
models:
  - {name: minilm, model_id: sentence-transformers/all-MiniLM-L6-v2}
  - {name: granite, model_id: ibm-granite/granite-embedding-278m-multilingual}
"""
NS = "embeddings"


def make(text: str = SPEC) -> tuple[PoolSpec, Rendered]:
    spec = parse_spec(text)
    return spec, render(spec)


def isvc_of(rendered: Rendered, name: str) -> dict[str, Any]:
    return rendered.objects_by_model[name][1]


# -- rendering ----------------------------------------------------------------------------------


def test_stopped_model_renders_the_dashboards_stop_annotation_and_a_running_one_none() -> None:
    _, rendered = make(SPEC.replace("model_id: sentence-transformers/all-MiniLM-L6-v2}",
                                    "model_id: sentence-transformers/all-MiniLM-L6-v2, stopped: true}"))
    assert isvc_of(rendered, "minilm")["metadata"]["annotations"][STOP_ANNOTATION] == "true"
    assert STOP_ANNOTATION not in isvc_of(rendered, "granite")["metadata"]["annotations"]


@pytest.mark.parametrize(("value", "stopped"), [("true", True), ("True", True), ("TRUE", True), ("false", False),
                                                ("", False), (None, False), ("yes", False)])
def test_is_stopped_reads_the_annotation_like_kserve(value: str | None, stopped: bool) -> None:
    obj = {"metadata": {"annotations": {} if value is None else {STOP_ANNOTATION: value}}}
    assert is_stopped(obj) is stopped


# -- what poolserve applied, read back ------------------------------------------------------------


def test_extract_follows_fieldsv1_of_the_api_server() -> None:
    # The shape the API server writes: keyed lists (k:), sets (v:), indexes (i:), "." for the item itself.
    live = {
        "apiVersion": "v1", "kind": "Thing",
        "metadata": {"name": "t", "namespace": "ns", "uid": "u", "resourceVersion": "9",
                     "annotations": {"a": "1", "theirs": "2"}, "finalizers": ["x", "y"],
                     "managedFields": [
                         {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {
                             "f:metadata": {"f:annotations": {".": {}, "f:a": {}}, "f:finalizers": {"v:\"y\"": {}}},
                             "f:spec": {"f:env": {"k:{\"name\":\"B\"}": {".": {}, "f:name": {}, "f:value": {}}},
                                        "f:args": {}, "f:ports": {"i:1": {"f:port": {}}}}}},
                         {"manager": FIELD_MANAGER, "operation": "Update", "fieldsV1": {"f:spec": {"f:x": {}}}},
                         {"manager": "dashboard", "operation": "Update", "fieldsV1": {
                             "f:metadata": {"f:annotations": {"f:theirs": {}}}}}]},
        "spec": {"env": [{"name": "A", "value": "a"}, {"name": "B", "value": "b", "valueFrom": None}],
                 "args": ["--x", "--y"], "ports": [{"port": 1, "name": "p"}, {"port": 2, "name": "q"}], "x": 5},
        "status": {"ready": True},
    }
    assert ssa.extract(live, FIELD_MANAGER) == {
        "apiVersion": "v1", "kind": "Thing",
        "metadata": {"name": "t", "namespace": "ns", "annotations": {"a": "1"}, "finalizers": ["y"]},
        "spec": {"env": [{"name": "B", "value": "b"}], "args": ["--x", "--y"], "ports": [{"port": 2}]},
    }
    never = copy.deepcopy(live)
    never["metadata"]["managedFields"] = never["metadata"]["managedFields"][1:]
    assert ssa.extract(never, FIELD_MANAGER) == {"apiVersion": "v1", "kind": "Thing",
                                                 "metadata": {"name": "t", "namespace": "ns"}}


# -- readiness ------------------------------------------------------------------------------------


def _isvc(annotations: dict[str, str], predictor: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": ISVC_API_VERSION, "kind": ISVC_KIND,
            "metadata": {"name": "minilm", "namespace": NS, "annotations": annotations,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"predictor": {"model": {"runtime": "rt"}}},
            "status": {"conditions": [predictor]}}


def test_status_follows_the_annotation_while_kserve_catches_up() -> None:
    now = later(60)
    stopped = model_status("minilm", isvc=_isvc({STOP_ANNOTATION: "true"},
                                                condition("PredictorReady", "True")), now=now)
    assert stopped.phase == "Stopped" and not stopped.ready and stopped.replicas_desired == 0
    assert "`poolserve start minilm`" in (stopped.reason or "")
    # Started again, KServe's status still says Stopped: it is starting, not stopped.
    starting = model_status("minilm", isvc=_isvc({STOP_ANNOTATION: "false"},
                                                 condition("PredictorReady", "False", "Stopped")), now=now)
    assert starting.phase == "Loading" and "has not recreated the predictor" in (starting.reason or "")


# -- ClusterTarget on FakeCluster with the fake KServe ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def deployed(text: str = SPEC) -> tuple[FakeCluster, ClusterTarget, Rendered]:
    spec, rendered = make(text)
    fake = cluster_for(spec)
    fake.controller = ready_controller
    clock = Clock()
    tgt = ClusterTarget(fake, sleep=clock.sleep, now=clock.now, clock=lambda: later(120), poll_s=5)
    tgt.deploy(rendered, [], wait=True, timeout_s=60)
    return fake, tgt, rendered


def _ours(obj: dict[str, Any]) -> Any:
    return ssa.applied_fields(obj, FIELD_MANAGER)


def test_stop_flips_only_the_annotation_and_kserve_removes_the_workload() -> None:
    fake, tgt, rendered = deployed()
    before = fake.stored(ISVC_KIND, "minilm", NS)
    assert before is not None and fake.stored("Deployment", "minilm-predictor", NS) is not None
    fake.calls.clear()
    result = tgt.stop(rendered, ["minilm"])
    assert [(c.name, c.action) for c in result.changes] == [("minilm", "stopped")]
    (applied,) = [c for c in fake.calls if c.verb == "apply"]
    assert applied.kind == ISVC_KIND and applied.force
    after = fake.stored(ISVC_KIND, "minilm", NS)
    assert after is not None and after["metadata"]["annotations"][STOP_ANNOTATION] == "true"
    # Nothing else moved, and poolserve's apply entry now also owns the annotation.
    a, b = strip_server_fields(after), strip_server_fields(before)
    a["metadata"]["annotations"].pop(STOP_ANNOTATION)
    assert a == b and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert "f:serving.kserve.io/stop" in _ours(after)["f:metadata"]["f:annotations"]
    assert fake.stored("Deployment", "minilm-predictor", NS) is None  # KServe deleted it
    (st,) = result.statuses
    assert st.phase == "Stopped" and st.replicas_desired == 0
    # Stopped again: unchanged, nothing applied.
    fake.calls.clear()
    again = tgt.stop(rendered, ["minilm"])
    assert [(c.action, c.note) for c in again.changes] == [("unchanged", "already stopped")]
    assert not [c for c in fake.calls if c.verb == "apply"]


def test_wait_does_not_wait_for_a_stopped_model() -> None:
    _, tgt, rendered = deployed()
    tgt.stop(rendered, ["minilm"])
    statuses = {s.name: s.phase for s in tgt.wait(rendered, [], timeout_s=1)}
    assert statuses == {"minilm": "Stopped", "granite": "Ready"}


def test_start_sets_false_like_the_dashboard_and_waits_until_ready() -> None:
    fake, tgt, rendered = deployed()
    tgt.stop(rendered, ["minilm"])
    result = tgt.start(rendered, ["minilm"], wait=True, timeout_s=60)
    assert [(c.name, c.action) for c in result.changes] == [("minilm", "started")]
    live = fake.stored(ISVC_KIND, "minilm", NS)
    assert live is not None and live["metadata"]["annotations"][STOP_ANNOTATION] == "false"
    assert [s.phase for s in result.statuses] == ["Ready"]
    # The config is the truth at the next deploy: stopped: false renders no annotation, so it goes.
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    live = fake.stored(ISVC_KIND, "minilm", NS)
    assert live is not None and STOP_ANNOTATION not in live["metadata"]["annotations"]


def test_start_takes_over_the_annotation_the_dashboard_set() -> None:
    fake, tgt, rendered = deployed()
    fake.edit(ISVC_KIND, "minilm", NS, {"metadata": {"annotations": {STOP_ANNOTATION: "true"}}},
              manager="odh-dashboard")
    ready_controller(fake, fake.stored(ISVC_KIND, "minilm", NS))  # type: ignore[arg-type]
    assert tgt.status(rendered, ["minilm"])[0].phase == "Stopped"
    tgt.start(rendered, ["minilm"], wait=True, timeout_s=60)
    live = fake.stored(ISVC_KIND, "minilm", NS)
    assert live is not None and live["metadata"]["annotations"][STOP_ANNOTATION] == "false"


def test_stopped_in_the_config_deploys_stopped_and_start_notes_that_deploy_stops_it_again() -> None:
    text = SPEC.replace("model_id: sentence-transformers/all-MiniLM-L6-v2}",
                        "model_id: sentence-transformers/all-MiniLM-L6-v2, stopped: true}")
    fake, tgt, rendered = deployed(text)  # deploy --wait returned: the stopped model was not waited for
    assert {s.name: s.phase for s in tgt.status(rendered, [])} == {"minilm": "Stopped", "granite": "Ready"}
    assert fake.stored("Deployment", "minilm-predictor", NS) is None
    result = tgt.start(rendered, ["minilm"], wait=False, timeout_s=60)
    assert any("the next `poolserve deploy` stops it again" in n for n in result.notes)


def test_stop_of_a_model_that_is_not_deployed_is_not_found() -> None:
    spec, rendered = make()
    tgt = ClusterTarget(cluster_for(spec))
    with pytest.raises(NotFound, match=f"InferenceService {NS}/minilm does not exist"):
        tgt.stop(rendered, ["minilm"])
