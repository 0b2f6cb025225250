"""ClusterTarget against FakeCluster: deploy, status, wait, logs, delete, endpoint, diff, cache warm.

Success and failure paths; assertions on results, raised errors and ``fake.calls``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from poolserve.config.load import parse_spec
from poolserve.config.schema import PoolSpec
from poolserve.errors import ClusterUnreachable, Conflict, Forbidden, Invalid, NotFound, NotReady, PoolserveError
from poolserve.kserve.render import Rendered, render
from poolserve.targets.base import DeployOptions
from poolserve.targets.cluster.apply import deploy_objects
from poolserve.targets.cluster.base import conflict, invalid, unauthorized, unreachable
from poolserve.targets.cluster.fake.cluster import FakeCluster
from poolserve.targets.cluster.fake.kserve import cluster_for, ready_controller, ready_objects
from poolserve.targets.cluster.fake.objects import condition, deployment, event, isvc_status, later, pod
from poolserve.targets.cluster.target import ClusterTarget

SPEC = """\
namespace: embeddings
image: vllm/vllm-openai:v0.32.0
cache: {pvc: model-cache}
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
  - {name: vllm-reranker-runtime, task: score}
defaults: {gpus: 1}
models:
  - {name: minilm, model_id: sentence-transformers/all-MiniLM-L6-v2, max_model_len: 256}
  - {name: granite, model_id: ibm-granite/granite-embedding-278m-multilingual}
  - {name: reranker, model_id: cross-encoder/ms-marco-MiniLM-L12-v2, expose: true}
"""
NS = "embeddings"
TASK_CRASH = "INFO vLLM API server version 0.32.0\napi_server.py: error: unrecognized arguments: --task=embed"


class Clock:
    """Monotonic time that advances only when the target sleeps; ``on_sleep`` lets a test change the cluster."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        if self.on_sleep is not None:
            self.on_sleep(self.t)


def make(text: str = SPEC, **overrides: Any) -> tuple[PoolSpec, Rendered]:
    spec = parse_spec(text, "test.yaml", overrides or None)
    return spec, render(spec)


@pytest.fixture
def spec() -> PoolSpec:
    return make()[0]


@pytest.fixture
def rendered(spec: PoolSpec) -> Rendered:
    return render(spec)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def target_for(fake: FakeCluster, clock: Clock) -> ClusterTarget:
    return ClusterTarget(fake, sleep=clock.sleep, now=clock.now, clock=lambda: later(120), poll_s=5)


def calls(fake: FakeCluster, verb: str) -> list[tuple[str, str | None]]:
    return [(c.kind, c.name) for c in fake.calls if c.verb == verb]


# --------------------------------------------------------------------------------------------------
# deploy


def test_deploy_creates_everything_then_a_second_run_changes_nothing(spec: PoolSpec, rendered: Rendered,
                                                                     clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    first = tgt.deploy(rendered, [], wait=False, timeout_s=60)
    actions = {(c.kind, c.name): c.action for c in first.changes}
    assert actions[("Namespace", NS)] == "unchanged"  # labelled already: not applied at all
    assert actions[("ServingRuntime", "vllm-embedding-runtime")] == "created"
    assert actions[("InferenceService", "reranker")] == "created"
    assert actions[("Secret", "default-reranker-sa")] == "created"  # expose -> auth objects
    assert ("Namespace", NS) not in calls(fake, "apply")
    applied = [o for o in fake.all() if o["metadata"].get("managedFields")]
    assert {o["kind"] for o in applied} >= {"ServingRuntime", "InferenceService", "ServiceAccount", "Role"}

    fake.calls.clear()
    second = tgt.deploy(rendered, [], wait=False, timeout_s=60)
    assert {c.action for c in second.changes} == {"unchanged"}
    assert any(n.startswith("no changes: all") for n in second.notes)
    # Still applied (server-side apply is the idempotent operation), nothing written.
    assert len(calls(fake, "apply")) == len(second.changes) - 1


def test_deploy_applies_exactly_the_rendered_objects(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    target_for(fake, clock).deploy(rendered, [], wait=False, timeout_s=60)
    for obj in rendered.manifests:
        if obj["kind"] == "Namespace":
            continue
        live = fake.stored(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
        assert live is not None
        assert live["spec" if "spec" in obj else "metadata"] is not None
        if obj["kind"] == "ServingRuntime":
            assert live["spec"] == obj["spec"]
        if obj["kind"] == "InferenceService":
            assert live["spec"] == obj["spec"]
            # the fake's webhook rewrote the mode, as KServe >= 0.17 does
            assert live["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_deploying_one_model_applies_its_runtime_and_nothing_else(spec: PoolSpec, rendered: Rendered,
                                                                  clock: Clock) -> None:
    fake = cluster_for(spec)
    result = target_for(fake, clock).deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    assert [(c.kind, c.name) for c in result.changes] == [
        ("Namespace", NS), ("ServingRuntime", "vllm-embedding-runtime"), ("InferenceService", "minilm")]


def test_runtimes_only(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    result = target_for(fake, clock).deploy(rendered, [], wait=False, timeout_s=60,
                                            options=DeployOptions(runtimes_only=True))
    assert [(c.kind, c.action) for c in result.changes] == [("ServingRuntime", "created")] * 2
    assert fake.all("InferenceService") == []


def test_server_dry_run_persists_nothing(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    result = target_for(fake, clock).deploy(rendered, ["minilm"], wait=True, timeout_s=60,
                                            options=DeployOptions(dry_run="server"))
    assert result.dry_run == "server"
    assert [c.action for c in result.changes] == ["unchanged", "created", "created"]
    assert all(c.dry_run for c in fake.calls if c.verb == "apply")
    assert fake.all("InferenceService") == [] and fake.all("ServingRuntime") == []
    assert result.statuses == ()  # no wait on a dry run


def test_client_dry_run_never_applies(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    fake.calls.clear()
    changed, _ = make(SPEC.replace("max_model_len: 256", "max_model_len: 128"))
    result = tgt.deploy(render(changed), [], wait=False, timeout_s=60,
                        options=DeployOptions(dry_run="client"))
    assert calls(fake, "apply") == []
    actions = {c.name: c.action for c in result.changes}
    assert actions["minilm"] == "configured"
    assert actions["vllm-embedding-runtime"] == "unchanged"
    assert actions["granite"] == "created"


def test_changed_config_is_configured_and_wait_holds_until_kserve_rolls_it_out(
        spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, ["minilm"], wait=True, timeout_s=60)
    fake.controller = None  # KServe is slow to notice the change
    changed, _ = make(SPEC.replace("max_model_len: 256", "max_model_len: 128"))
    seen: list[str] = []

    def reconcile(t: float) -> None:
        if t >= 10:
            isvc = fake.stored("InferenceService", "minilm", NS)
            assert isvc is not None
            ready_objects(fake, isvc)

    clock.on_sleep = reconcile
    result = tgt.deploy(render(changed), ["minilm"], wait=True, timeout_s=60,
                        progress=lambda m, f: seen.append(m))
    assert {c.name: c.action for c in result.changes}["minilm"] == "configured"
    assert result.statuses[0].ready
    assert clock.sleeps, "the old Ready condition must not count before the Deployment changed"
    assert "--max-model-len=128" in fake.stored("Deployment", "minilm-predictor", NS)["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert seen[0].startswith("0/1 ready")


def test_changed_runtime_holds_wait_until_kserve_rolls_out_every_model_using_it(
        spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, [], wait=True, timeout_s=60)
    fake.controller = None  # KServe is slow to notice the change
    changed, _ = make(SPEC.replace("{name: vllm-embedding-runtime, task: embed}",
                                   "{name: vllm-embedding-runtime, task: embed, env: {VLLM_LOGGING_LEVEL: DEBUG}}"))

    def reconcile(t: float) -> None:
        if t >= 10:
            for name in ("minilm", "granite"):
                isvc = fake.stored("InferenceService", name, NS)
                assert isvc is not None
                ready_objects(fake, isvc)

    clock.on_sleep = reconcile
    result = tgt.deploy(render(changed), ["minilm"], wait=True, timeout_s=60)
    actions = {c.name: c.action for c in result.changes}
    assert (actions["vllm-embedding-runtime"], actions["minilm"]) == ("configured", "unchanged")
    assert result.statuses[0].ready
    assert clock.t == 10, "the old Ready condition must not count before the Deployment changed"
    env = fake.stored("Deployment", "minilm-predictor", NS)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"} in env


def test_changed_runtime_marks_unselected_models_using_it_as_rolling_out(
        spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, [], wait=True, timeout_s=60)
    fake.controller = None
    changed, _ = make(SPEC.replace("{name: vllm-embedding-runtime, task: embed}",
                                   "{name: vllm-embedding-runtime, task: embed, env: {VLLM_LOGGING_LEVEL: DEBUG}}"))
    tgt.deploy(render(changed), ["minilm"], wait=False, timeout_s=60)
    phases = {s.name: s.phase for s in tgt.status(render(changed), [])}
    assert phases == {"minilm": "Loading", "granite": "Loading", "reranker": "Ready"}


def test_a_fast_controller_does_not_hold_wait_for_the_grace_period(
        spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    # The Deployment generation is read before applying: a controller that rolls out at once is seen at once.
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, ["minilm"], wait=True, timeout_s=60)
    changed, _ = make(SPEC.replace("max_model_len: 256", "max_model_len: 128"))
    result = tgt.deploy(render(changed), ["minilm"], wait=True, timeout_s=60)
    assert {c.name: c.action for c in result.changes}["minilm"] == "configured"
    assert result.statuses[0].ready
    assert clock.sleeps == []


def test_deploy_wait_reports_ready_statuses(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    result = target_for(fake, clock).deploy(rendered, [], wait=True, timeout_s=60)
    assert [s.phase for s in result.statuses] == ["Ready"] * 3
    assert clock.sleeps == []  # checked before sleeping: ready at once, never slept
    reranker = result.statuses[2]
    assert reranker.route_url == "https://reranker-embeddings.apps.example.com"


def test_conflict_with_another_manager_explains_force_conflicts(spec: PoolSpec, rendered: Rendered,
                                                                clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    fake.edit("InferenceService", "minilm", NS, {"spec": {"predictor": {"minReplicas": 3}}}, manager="kubectl-edit")
    with pytest.raises(Conflict) as exc:
        tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    msg = str(exc.value)
    assert "conflict applying InferenceService embeddings/minilm" in msg
    assert '"kubectl-edit"' in msg and ".spec.predictor.minReplicas" in msg
    assert "--force-conflicts" in msg
    assert "applied before the failure: namespace/embeddings unchanged, servingruntime/vllm-embedding-runtime " \
           "unchanged; not applied: inferenceservice/minilm" in msg
    assert "\n" not in msg
    forced = tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60,
                        options=DeployOptions(force_conflicts=True))
    assert {c.name: c.action for c in forced.changes}["minilm"] == "configured"
    assert fake.stored("InferenceService", "minilm", NS)["spec"]["predictor"]["minReplicas"] == 1


def test_webhook_rejection_shows_the_webhook_message_and_what_was_applied(spec: PoolSpec, rendered: Rendered,
                                                                          clock: Clock) -> None:
    fake = cluster_for(spec)
    webhook = ('admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: '
               "the 'name' field is not allowed in standard predictor")
    fake.errors["apply:InferenceService/granite"] = invalid("InferenceService", "granite", NS, webhook)
    with pytest.raises(Invalid) as exc:
        target_for(fake, clock).deploy(rendered, [], wait=False, timeout_s=60)
    msg = str(exc.value)
    assert msg.startswith("InferenceService embeddings/granite rejected: admission webhook")
    assert "not allowed in standard predictor" in msg
    assert "inferenceservice/minilm created" in msg
    assert "not applied: inferenceservice/granite, inferenceservice/reranker, serviceaccount/reranker-sa" in msg
    assert exc.value.exit_code == 7


def test_first_apply_failing_says_nothing_was_applied(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    fake.errors["apply"] = invalid("ServingRuntime", "vllm-embedding-runtime", NS, "spec.containers: Required value")
    with pytest.raises(Invalid) as exc:
        target_for(fake, clock).deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    assert str(exc.value).endswith("spec.containers: Required value; applied before the failure: namespace/embeddings "
                                   "unchanged; not applied: servingruntime/vllm-embedding-runtime, "
                                   "inferenceservice/minilm")


def test_nothing_applied_when_the_namespace_apply_fails(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, labelled=False)
    fake.errors["apply:Namespace"] = invalid("Namespace", NS, None, "metadata.labels: Invalid value")
    with pytest.raises(Invalid, match="nothing was applied; not applied: namespace/embeddings, servingruntime/"):
        target_for(fake, clock).deploy(rendered, ["minilm"], wait=False, timeout_s=60)


@pytest.mark.parametrize(("error", "cls", "text"), [
    (unreachable("https://api.crc.testing:6443", "[Errno 111] Connection refused"), ClusterUnreachable,
     "cannot reach the Kubernetes API at https://api.crc.testing:6443"),
    (unauthorized("https://api.crc.testing:6443"), ClusterUnreachable, "run `oc login` again"),
])
def test_unreachable_or_expired_token_stops_before_anything(spec: PoolSpec, rendered: Rendered, clock: Clock,
                                                           error: PoolserveError, cls: type, text: str) -> None:
    fake = cluster_for(spec)
    fake.errors["server_version"] = error
    with pytest.raises(cls, match=text.replace("(", r"\(").replace(")", r"\)").replace("`", ".")):
        target_for(fake, clock).deploy(rendered, [], wait=False, timeout_s=60)
    assert calls(fake, "apply") == []


def test_kserve_not_installed(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, kserve=False)
    for crd in list(fake.all("CustomResourceDefinition")):
        fake.remove("CustomResourceDefinition", crd["metadata"]["name"])
    with pytest.raises(NotFound, match="KServe is not installed"):
        target_for(fake, clock).deploy(rendered, [], wait=False, timeout_s=60)
    with pytest.raises(NotFound, match="KServe is not installed"):
        target_for(fake, clock).status(rendered, [])


def test_access_review_refusal_names_verb_and_resource(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    fake.denied.add(("create", "inferenceservices.serving.kserve.io"))
    with pytest.raises(Forbidden) as exc:
        target_for(fake, clock).deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    assert "you may not create inferenceservices.serving.kserve.io in namespace embeddings" in str(exc.value)
    assert calls(fake, "apply") == []


def test_403_from_the_api_during_apply_keeps_the_message(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    from poolserve.targets.cluster.base import forbidden, kind_info

    fake = cluster_for(spec)
    fake.errors["apply:Role"] = forbidden(
        "apply (patch)", kind_info("rbac.authorization.k8s.io/v1", "Role"), NS, "reranker-view-role",
        'roles.rbac.authorization.k8s.io "reranker-view-role" is forbidden: user "dev" is attempting to grant '
        "RBAC permissions not currently held")
    with pytest.raises(Forbidden) as exc:
        target_for(fake, clock).deploy(rendered, ["reranker"], wait=False, timeout_s=60)
    assert "you may not apply (patch) roles.rbac.authorization.k8s.io/reranker-view-role" in str(exc.value)
    assert "attempting to grant RBAC permissions" in str(exc.value)
    assert exc.value.exit_code == 4


# --------------------------------------------------------------------------------------------------
# status


def test_status_makes_one_list_call_per_kind(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    fake.calls.clear()
    statuses = tgt.status(rendered, [])
    assert [s.name for s in statuses] == ["minilm", "granite", "reranker"]
    assert all(s.ready for s in statuses)
    lists = sorted(c.kind for c in fake.calls if c.verb == "list")
    assert lists == sorted(["InferenceService", "ServingRuntime", "Deployment", "Pod", "Event", "Service"])
    assert [c for c in fake.calls if c.verb != "list"] == []


def test_status_of_not_deployed_models(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    statuses = target_for(fake, clock).status(rendered, ["minilm"])
    assert statuses[0].phase == "NotDeployed"


def test_status_reads_the_previous_log_when_the_termination_message_is_empty(
        spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    fake.set_status("InferenceService", "minilm", NS, isvc_status("minilm", NS, ready=False))
    p = pod("minilm", NS, ready=False, restarts=5, waiting=("CrashLoopBackOff", "back-off"),
            last_terminated=("Error", "", 1))
    fake.seed(p)
    fake.pod_logs[(p["metadata"]["name"], "kserve-container", True)] = [
        "INFO loading", "huggingface_hub.errors.GatedRepoError: 401 Client Error: Access to model x is restricted"]
    st = tgt.status(rendered, ["minilm"])[0]
    assert st.phase == "Failed"
    assert "the model is gated or private" in (st.reason or "")
    assert ("Pod", p["metadata"]["name"]) in calls(fake, "logs")


def test_status_reports_a_runtime_deleted_by_the_dashboard(spec: PoolSpec, rendered: Rendered,
                                                           clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    fake.remove("ServingRuntime", "vllm-embedding-runtime", NS)  # the dashboard's Delete
    st = tgt.status(rendered, ["minilm"])[0]
    assert st.phase == "Failed"
    assert "poolserve deploy --runtimes-only" in (st.reason or "")


# --------------------------------------------------------------------------------------------------
# wait


def seed_failure(fake: FakeCluster, name: str, *, pods: list[dict[str, Any]] | None = None,
                 events: list[dict[str, Any]] | None = None, dep: dict[str, Any] | None = None,
                 **status: Any) -> None:
    fake.set_status("InferenceService", name, NS, isvc_status(name, NS, ready=False, **status))
    fake.seed(dep or deployment(name, NS, ready=0))
    for p in pods or []:
        fake.seed(p)
    for e in events or []:
        fake.seed(e)


@pytest.fixture
def deployed(spec: PoolSpec, rendered: Rendered, clock: Clock) -> tuple[FakeCluster, ClusterTarget]:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    return fake, tgt


def test_wait_fails_fast_on_crashloop_with_the_diagnosis(deployed: tuple[FakeCluster, ClusterTarget], spec: PoolSpec,
                                                         rendered: Rendered, clock: Clock) -> None:
    fake, tgt = deployed
    seed_failure(fake, "minilm", transition="BlockedByFailedLoad", pods=[
        pod("minilm", NS, ready=False, restarts=3, waiting=("CrashLoopBackOff", "back-off 40s"),
            last_terminated=("Error", TASK_CRASH, 2))])
    with pytest.raises(NotReady) as exc:
        tgt.wait(rendered, ["minilm"], timeout_s=900)
    msg = str(exc.value)
    assert msg.startswith("minilm cannot become ready: CrashLoopBackOff: vLLM rejected a flag (--task=embed)")
    assert "poolserve logs minilm --previous" in msg
    assert clock.sleeps == []


@pytest.mark.parametrize(("state", "expected"), [
    ({"pods": [pod("minilm", NS, ready=False, waiting=("ImagePullBackOff", 'Back-off pulling image "x:v9"'))]},
     "ImagePullBackOff"),
    ({"pods": [pod("minilm", NS, ready=False,
                   unschedulable="0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")]},
     "Insufficient nvidia.com/gpu"),
    ({"pods": [pod("minilm", NS, ready=False, restarts=2, waiting=("CrashLoopBackOff", "back-off"),
                   last_terminated=("OOMKilled", "", 137))]}, "OOMKilled"),
    ({"pods": [pod("minilm", NS, name="minilm-predictor-abc-1", ready=False, waiting=("ContainerCreating", ""))],
      "events": [event(NS, "Pod", "minilm-predictor-abc-1", "FailedAttachVolume",
                       'Multi-Attach error for volume "pvc-1" Volume is already used by pod(s) granite-predictor-x')]},
     "Multi-Attach"),
    ({"dep": deployment("minilm", NS, ready=0, conditions=[
        condition("Progressing", "False", "ProgressDeadlineExceeded", "ReplicaSet has timed out progressing.")])},
     "ProgressDeadlineExceeded"),
])
def test_wait_fails_fast(deployed: tuple[FakeCluster, ClusterTarget], spec: PoolSpec, rendered: Rendered,
                         clock: Clock, state: dict[str, Any], expected: str) -> None:
    fake, tgt = deployed
    seed_failure(fake, "minilm", **state)
    with pytest.raises(NotReady, match=expected):
        tgt.wait(rendered, ["minilm"], timeout_s=900)
    assert clock.sleeps == []


def test_wait_keeps_waiting_past_the_progress_deadline_while_the_model_loads(
        deployed: tuple[FakeCluster, ClusterTarget], spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake, tgt = deployed
    dep = deployment("minilm", NS, ready=0, conditions=[
        condition("Progressing", "False", "ProgressDeadlineExceeded", "ReplicaSet has timed out progressing.")])
    seed_failure(fake, "minilm", dep=dep, pods=[pod("minilm", NS, ready=False)],
                 predictor=condition("PredictorReady", "False", "ProgressDeadlineExceeded", "timed out progressing"))
    with pytest.raises(NotReady) as exc:
        tgt.wait(rendered, ["minilm"], timeout_s=30)
    assert str(exc.value).startswith("timed out after 30s waiting for 1 model: minilm: Loading "
                                     "(ProgressDeadlineExceeded: not ready after the Deployment's 600 s deadline")
    assert sum(clock.sleeps) == 30


def test_wait_times_out_with_the_reason(deployed: tuple[FakeCluster, ClusterTarget], spec: PoolSpec,
                                        rendered: Rendered, clock: Clock) -> None:
    fake, tgt = deployed
    seed_failure(fake, "minilm", pods=[pod("minilm", NS, ready=False)])
    progress: list[tuple[str, float | None]] = []
    with pytest.raises(NotReady) as exc:
        tgt.wait(rendered, ["minilm"], timeout_s=30, progress=lambda m, f: progress.append((m, f)))
    assert str(exc.value).startswith("timed out after 30s waiting for 1 model: minilm: Loading (loading the model")
    assert "--timeout" in str(exc.value)
    assert sum(clock.sleeps) == 30 and max(clock.sleeps) <= 5
    assert progress[0] == ("0/1 ready; minilm: Loading (loading the model (container running, /health not ready "
                           "yet))", 0.0)


def test_wait_for_a_model_that_is_not_deployed(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    with pytest.raises(NotFound, match="poolserve deploy granite"):
        target_for(cluster_for(spec), clock).wait(rendered, ["granite"], timeout_s=60)


def test_wait_until_ready(deployed: tuple[FakeCluster, ClusterTarget], spec: PoolSpec, rendered: Rendered,
                          clock: Clock) -> None:
    fake, tgt = deployed
    seed_failure(fake, "minilm", pods=[pod("minilm", NS, ready=False)])

    def become_ready(t: float) -> None:
        if t >= 15:
            isvc = fake.stored("InferenceService", "minilm", NS)
            assert isvc is not None
            ready_objects(fake, isvc)

    clock.on_sleep = become_ready
    statuses = tgt.wait(rendered, ["minilm"], timeout_s=600)
    assert statuses[0].ready
    assert clock.t == 15


def test_wait_after_fixing_a_crash_is_not_failed_by_the_old_replicasets_pod(
        deployed: tuple[FakeCluster, ClusterTarget], spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    # Redeploying a fix rolls out a new ReplicaSet; the old crash-looping pod stays until the new one is ready.
    fake, tgt = deployed

    def rs_pod(hash_: str, **kwargs: Any) -> dict[str, Any]:
        return pod("minilm", NS, name=f"minilm-predictor-{hash_}-x7k2p",
                   labels={"serving.kserve.io/inferenceservice": "minilm", "pod-template-hash": hash_}, **kwargs)

    old = rs_pod("aaaa1111", ready=False, restarts=6, waiting=("CrashLoopBackOff", "back-off 5m0s"),
                 last_terminated=("Error", TASK_CRASH, 2), created=later(0))
    new = rs_pod("bbbb2222", ready=False, created=later(100))
    seed_failure(fake, "minilm", pods=[old, new], dep=deployment("minilm", NS, ready=0, updated=1, generation=2))
    crashed_logs = ("minilm-predictor-aaaa1111-x7k2p", "kserve-container", True)
    fake.pod_logs[crashed_logs] = ["error: unrecognized arguments: --task=embed"]

    def rolled_out(t: float) -> None:
        if t >= 20:
            fake.remove("Pod", old["metadata"]["name"], NS)
            isvc = fake.stored("InferenceService", "minilm", NS)
            assert isvc is not None
            ready_objects(fake, isvc)

    clock.on_sleep = rolled_out
    assert tgt.wait(rendered, ["minilm"], timeout_s=600)[0].ready
    assert clock.t == 20
    assert ("Pod", old["metadata"]["name"]) not in calls(fake, "logs")


# --------------------------------------------------------------------------------------------------
# logs, delete, endpoint


def test_logs_of_the_newest_predictor_pod(spec: PoolSpec, clock: Clock) -> None:
    fake = cluster_for(spec)
    fake.seed(pod("minilm", NS, name="minilm-predictor-old", created=later(0)))
    fake.seed(pod("minilm", NS, name="minilm-predictor-new", created=later(60)))
    fake.pod_logs[("minilm-predictor-new", "kserve-container", False)] = ["INFO: Started server process"]
    fake.pod_logs[("minilm-predictor-new", "kserve-container", True)] = ["error: unrecognized arguments: --task"]
    tgt = target_for(fake, clock)
    assert list(tgt.logs(render(spec), "minilm")) == ["INFO: Started server process"]
    assert list(tgt.logs(render(spec), "minilm", previous=True)) == ["error: unrecognized arguments: --task"]
    logs_calls = [c for c in fake.calls if c.verb == "logs"]
    assert logs_calls[-1].name == "minilm-predictor-new"
    assert dict(logs_calls[-1].extra) == {"container": "kserve-container", "previous": True, "follow": False}


def test_logs_without_pods_or_previous_container(spec: PoolSpec, clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    with pytest.raises(NotFound, match="no predictor pod for InferenceService embeddings/minilm"):
        tgt.logs(render(spec), "minilm")
    fake.seed(pod("minilm", NS))
    with pytest.raises(NotFound, match="has not restarted"):
        tgt.logs(render(spec), "minilm", previous=True)


def test_delete_keeps_runtimes_unless_asked(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    result = tgt.delete(rendered, ["reranker"])
    assert [(c.kind, c.name, c.action) for c in result.changes] == [
        ("InferenceService", "reranker", "deleted"), ("ServiceAccount", "reranker-sa", "deleted"),
        ("Role", "reranker-view-role", "deleted"), ("RoleBinding", "reranker-view", "deleted"),
        ("Secret", "default-reranker-sa", "deleted")]
    assert "runtimes kept: vllm-reranker-runtime" in result.notes[0]
    assert fake.stored("ServingRuntime", "vllm-reranker-runtime", NS) is not None
    assert fake.all("Deployment") and not fake.stored("Deployment", "reranker-predictor", NS)  # cascaded


def test_delete_never_removes_a_runtime_another_model_uses(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    result = tgt.delete(rendered, ["minilm", "reranker"], runtimes=True)
    by = {(c.kind, c.name): c for c in result.changes}
    kept = by[("ServingRuntime", "vllm-embedding-runtime")]
    assert kept.action == "kept" and kept.note == "used by granite; --force deletes it anyway"
    assert by[("ServingRuntime", "vllm-reranker-runtime")].action == "deleted"
    assert fake.stored("ServingRuntime", "vllm-embedding-runtime", NS) is not None
    forced = tgt.delete(rendered, ["minilm"], runtimes=True, force=True)
    by = {(c.kind, c.name): c for c in forced.changes}
    assert by[("InferenceService", "minilm")].action == "absent"
    assert by[("ServingRuntime", "vllm-embedding-runtime")].action == "deleted"
    assert by[("ServingRuntime", "vllm-embedding-runtime")].note == "was used by granite"


def test_endpoint_prefers_the_route_and_reads_the_token(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    ep = tgt.endpoint(rendered, "reranker")
    assert ep.url == "https://reranker-embeddings.apps.example.com"
    assert ep.served_model == "cross-encoder/ms-marco-MiniLM-L12-v2"
    assert ep.token == "fake-token"
    assert "fake-token" not in repr(ep)
    internal = tgt.endpoint(rendered, "minilm")
    assert internal.url == "http://minilm-predictor.embeddings.svc.cluster.local"
    assert internal.token is None


def test_endpoint_of_missing_or_unready_models(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    with pytest.raises(NotFound, match="InferenceService embeddings/minilm does not exist"):
        tgt.endpoint(rendered, "minilm")
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    with pytest.raises(NotReady, match="is not ready"):
        tgt.endpoint(rendered, "minilm")


# --------------------------------------------------------------------------------------------------
# diff


def test_diff_after_deploy_is_empty_despite_server_defaults(spec: PoolSpec, rendered: Rendered,
                                                            clock: Clock) -> None:
    fake = cluster_for(spec, controller=ready_controller)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    live = fake.stored("InferenceService", "minilm", NS)
    assert live is not None and live["metadata"]["annotations"]["modelFormat"] == "huggingface"
    fake.calls.clear()
    diffs = tgt.diff(rendered, [])
    assert {d.action for d in diffs} == {"none"}, [d.diff for d in diffs if d.diff]
    assert all(c.dry_run for c in fake.calls if c.verb == "apply" and c.kind != "Namespace")


def test_diff_shows_what_apply_would_change(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    changed, _ = make(SPEC.replace("max_model_len: 256", "max_model_len: 128"))
    diffs = {d.name: d for d in tgt.diff(render(changed), [])}
    assert diffs["minilm"].action == "update"
    changed_lines = [ln for ln in diffs["minilm"].diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert [ln[0] + ln[1:].strip() for ln in changed_lines] == ["-- --max-model-len=256", "+- --max-model-len=128"]
    assert "Standard" not in diffs["minilm"].diff and "modelFormat: huggingface" not in diffs["minilm"].diff
    assert diffs["granite"].action == "create"
    assert diffs["vllm-embedding-runtime"].action == "none"
    assert fake.stored("InferenceService", "granite", NS) is None


def test_diff_flags_fields_owned_by_another_manager(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    fake.edit("InferenceService", "minilm", NS, {"spec": {"predictor": {"minReplicas": 2}}})
    d = next(d for d in tgt.diff(rendered, ["minilm"]) if d.name == "minilm")
    assert d.action == "update" and "minReplicas" in d.diff
    assert d.note is not None and "--force-conflicts" in d.note


def test_diff_of_unlabelled_namespace(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec, labelled=False)
    d = next(d for d in target_for(fake, clock).diff(rendered, []) if d.kind == "Namespace")
    assert d.action == "update" and "+    opendatahub.io/dashboard: 'true'" in d.diff


# --------------------------------------------------------------------------------------------------
# cache warm


def job_done(fake: FakeCluster, name: str, message: str) -> None:
    fake.set_status("Job", name, NS, {"succeeded": 1, "conditions": [condition("Complete", "True")]})
    fake.seed(pod("x", NS, name=f"{name}-abcde", container="download", labels={"job-name": name}, ready=False,
                  terminated=("Completed", message, 0)))


def test_cache_warm_runs_a_job_per_model_and_skips_completed_ones(spec: PoolSpec, rendered: Rendered,
                                                                  clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)

    def finish(t: float) -> None:
        for job in fake.all("Job"):
            if not job.get("status"):
                job_done(fake, job["metadata"]["name"],
                         f"poolserve-cache: downloaded {job['metadata']['annotations']['poolserve.io/model-id']} "
                         "to /models/huggingface/hub/... (90.9 MB in 12 s)")

    clock.on_sleep = finish
    progress: list[str] = []
    result = tgt.warm_cache(rendered, ["minilm", "reranker"], timeout_s=600,
                            progress=lambda m, f: progress.append(m))
    assert [(j.model, j.state) for j in result.jobs] == [("minilm", "downloaded"), ("reranker", "downloaded")]
    assert result.jobs[0].message == "to /models/huggingface/hub/... (90.9 MB in 12 s)"
    assert [n for k, n in calls(fake, "apply")] == ["poolserve-cache-minilm", "poolserve-cache-reranker"]
    assert progress[-1] == "cache: 2/2 downloaded"
    again = tgt.warm_cache(rendered, ["minilm"], timeout_s=600)
    assert again.jobs[0].state == "cached"
    assert len(calls(fake, "apply")) == 2


def test_cache_warm_reports_a_gated_model(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)

    def fail(t: float) -> None:
        fake.set_status("Job", "poolserve-cache-minilm", NS,
                        {"failed": 3, "conditions": [condition("Failed", "True", "BackoffLimitExceeded")]})
        fake.seed(pod("x", NS, name="poolserve-cache-minilm-x", container="download",
                      labels={"job-name": "poolserve-cache-minilm"}, ready=False, terminated=(
                          "Error", "huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo",
                          1)))

    clock.on_sleep = fail
    with pytest.raises(NotReady) as exc:
        tgt.warm_cache(rendered, ["minilm"], timeout_s=600)
    assert "cache Job embeddings/poolserve-cache-minilm for sentence-transformers/all-MiniLM-L6-v2 failed" in str(
        exc.value)
    assert "gated or private" in str(exc.value) and "hf_token_secret" in str(exc.value)


def test_cache_warm_fails_fast_on_a_missing_token_secret(clock: Clock) -> None:
    spec, rendered = make(SPEC.replace("cache: {pvc: model-cache}",
                                       "cache: {pvc: model-cache, hf_token_secret: {name: hf-token}}"))
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)

    def stuck(t: float) -> None:
        fake.seed(pod("x", NS, name="poolserve-cache-minilm-x", container="download",
                      labels={"job-name": "poolserve-cache-minilm"}, ready=False,
                      waiting=("CreateContainerConfigError", 'secret "hf-token" not found')))

    clock.on_sleep = stuck
    assert all(o["kind"] != "Job" for o in deploy_objects(rendered, []))  # cache Jobs are not deployed
    with pytest.raises(NotReady, match='secret "hf-token" not found'):
        tgt.warm_cache(rendered, ["minilm"], timeout_s=600)


def test_cache_warm_fails_fast_when_the_rwo_pvc_is_attached_elsewhere(spec: PoolSpec, rendered: Rendered,
                                                                      clock: Clock) -> None:
    fake = cluster_for(spec, pvc_modes=("ReadWriteOnce",))
    tgt = target_for(fake, clock)

    def stuck(t: float) -> None:
        fake.seed(pod("x", NS, name="poolserve-cache-minilm-x", container="download",
                      labels={"job-name": "poolserve-cache-minilm"}, ready=False, waiting=("ContainerCreating", "")))
        fake.seed(event(NS, "Pod", "poolserve-cache-minilm-x", "FailedAttachVolume",
                        'Multi-Attach error for volume "pvc-9" Volume is already used by pod(s) minilm-predictor-1'))

    clock.on_sleep = stuck
    with pytest.raises(NotReady, match=r"Multi-Attach: .* ReadWriteOnce and mounted on another node"):
        tgt.warm_cache(rendered, ["minilm"], timeout_s=600)
    assert clock.t == 5


def test_cache_warm_needs_the_pvc(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    fake.remove("PersistentVolumeClaim", "model-cache", NS)
    with pytest.raises(NotFound, match="PersistentVolumeClaim embeddings/model-cache"):
        target_for(fake, clock).warm_cache(rendered, [], timeout_s=60)


def test_conflict_error_builder_is_one_line() -> None:
    err = conflict("InferenceService", "m", NS, "Apply failed with 1 conflict")
    assert "\n" not in str(err) and err.exit_code == 6


def test_deploy_refuses_an_inference_service_still_being_deleted(clock: Clock) -> None:
    spec, rendered = make()
    fake = cluster_for(spec, controller=ready_controller)
    tgt = ClusterTarget(fake, sleep=clock.sleep, now=clock.now, clock=lambda: later(60))
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    fake.edit("InferenceService", "minilm", NS, {"metadata": {"finalizers": ["odh.inferenceservice.finalizers"]}},
              manager="odh-model-controller")
    assert tgt.delete(rendered, ["minilm"]).changes[0].action == "deleted"
    with pytest.raises(NotReady) as exc:
        tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    assert str(exc.value).startswith(f"InferenceService {NS}/minilm is still being deleted (waiting for finalizers: "
                                     "odh.inferenceservice.finalizers); applied before the failure: namespace/")
    (st,) = tgt.status(rendered, ["minilm"])
    assert st.phase == "Terminating"
    with pytest.raises(NotReady, match="is being deleted"):
        tgt.wait(rendered, ["minilm"], timeout_s=60)
    fake.finalize("InferenceService", "minilm", NS, "odh.inferenceservice.finalizers")
    assert tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60).changes[-1].action == "created"


def test_a_controller_writing_between_read_and_apply_does_not_make_a_no_op_configured(clock: Clock) -> None:
    """Seen on the envtest cluster: KServe's status updates (and its finalizer) land between deploy's get and
    its apply, so the resourceVersion moves though poolserve changed nothing."""
    spec, rendered = make()

    class Busy(FakeCluster):
        def apply(self, obj: Any, *, dry_run: bool = False, force: bool = False) -> Any:
            meta = obj["metadata"]
            if obj["kind"] == "InferenceService" and self.stored(obj["kind"], meta["name"], meta["namespace"]):
                self.set_status(obj["kind"], meta["name"], meta["namespace"], {"observedGeneration": 1})
                self.edit(obj["kind"], meta["name"], meta["namespace"],
                          {"metadata": {"finalizers": ["inferenceservice.finalizers"]}}, manager="manager")
            return super().apply(obj, dry_run=dry_run, force=force)

    fake = cluster_for(spec)
    busy = Busy(list(fake.all()))
    tgt = ClusterTarget(busy, sleep=clock.sleep, now=clock.now, clock=lambda: later(60))
    tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    again = tgt.deploy(rendered, ["minilm"], wait=False, timeout_s=60)
    assert {c.action for c in again.changes} == {"unchanged"}, again.changes
    _, changed = make(SPEC.replace("max_model_len: 256", "max_model_len: 128"))
    third = tgt.deploy(changed, ["minilm"], wait=False, timeout_s=60)
    assert {c.name: c.action for c in third.changes}["minilm"] == "configured"


def helm_installed(fake: FakeCluster, rendered: Rendered, release: str | None = "poolserve",
                   kinds: set[str] | None = None) -> None:
    """The rendered objects (of ``kinds``) as a Helm release left them (the chart's labels and Helm's annotations)."""
    for obj in rendered.manifests:
        if obj["kind"] == "Namespace" or (kinds is not None and obj["kind"] not in kinds):
            continue
        obj = copy.deepcopy(obj)
        obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "Helm"
        if release:
            obj["metadata"].setdefault("annotations", {})["meta.helm.sh/release-name"] = release
        fake.seed(obj, manager="helm")


def test_deploy_refuses_objects_helm_manages_and_changes_nothing(spec: PoolSpec, rendered: Rendered,
                                                                 clock: Clock) -> None:
    fake = cluster_for(spec)
    helm_installed(fake, rendered)
    tgt = target_for(fake, clock)
    with pytest.raises(Conflict) as err:
        tgt.deploy(rendered, [], wait=False, timeout_s=60)
    assert err.value.message == (
        "ServingRuntime embeddings/vllm-embedding-runtime (and 8 more) is managed by Helm (release poolserve): "
        "use `helm upgrade poolserve -n embeddings`, or --force to take it over")
    assert calls(fake, "apply") == []
    # One model's objects only: the refusal names that model's first object.
    with pytest.raises(Conflict, match=r"^ServingRuntime embeddings/vllm-reranker-runtime \(and 5 more\)"):
        tgt.deploy(rendered, ["reranker"], wait=False, timeout_s=60)
    result = tgt.deploy(rendered, [], wait=False, timeout_s=60, options=DeployOptions(force=True))
    assert {c.action for c in result.changes} <= {"unchanged", "configured"}
    assert calls(fake, "apply")


def test_objects_rendered_by_helm_without_a_release_are_refused_too(spec: PoolSpec, rendered: Rendered,
                                                                   clock: Clock) -> None:
    fake = cluster_for(spec)
    helm_installed(fake, rendered, release=None)  # e.g. applied by Argo CD from `helm template`
    with pytest.raises(Conflict, match=r"is managed by Helm \(a chart\): use `helm upgrade RELEASE -n embeddings`"):
        target_for(fake, clock).deploy(rendered, ["minilm"], wait=False, timeout_s=60)


def test_delete_refuses_objects_helm_manages_unless_forced(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    helm_installed(fake, rendered)
    tgt = target_for(fake, clock)
    with pytest.raises(Conflict) as err:
        tgt.delete(rendered, ["reranker"])
    assert err.value.message == (
        "InferenceService embeddings/reranker (and 4 more) is managed by Helm (release poolserve): "
        "use `helm uninstall poolserve -n embeddings`, or --force to take it over")
    assert calls(fake, "delete") == []
    result = tgt.delete(rendered, ["reranker"], force=True)
    assert ("InferenceService", "reranker", "deleted") in [(c.kind, c.name, c.action) for c in result.changes]


def test_delete_refuses_helm_managed_companions_and_templates_too(clock: Clock) -> None:
    # A budget, a PodMonitor and the runtime's Template go with the model: Helm's are refused like its InferenceService.
    text = SPEC.replace("defaults: {gpus: 1}", "defaults: {gpus: 1, replicas: 2, disruption_budget: {}}").replace(
        "namespace: embeddings\n", "namespace: embeddings\nmonitoring: {enabled: true}\n"
        "dashboard: {templates: true, templates_scope: project}\n")
    spec, rendered = make(text)
    fake = cluster_for(spec)
    target_for(fake, clock).deploy(rendered, [], wait=False, timeout_s=60)
    helm_kinds = {"PodDisruptionBudget", "PodMonitor", "Template"}
    helm_installed(fake, render(spec), kinds=helm_kinds)
    with pytest.raises(Conflict) as err:
        target_for(fake, clock).delete(rendered, ["reranker"], runtimes=True)
    # The Template (applied first), the budget and the PodMonitor.
    assert err.value.message.startswith("Template embeddings/vllm-reranker-runtime (and 2 more) is managed by Helm"), \
        err.value.message
    assert calls(fake, "delete") == []


def test_poolserves_own_objects_are_not_refused(spec: PoolSpec, rendered: Rendered, clock: Clock) -> None:
    fake = cluster_for(spec)
    tgt = target_for(fake, clock)
    tgt.deploy(rendered, [], wait=False, timeout_s=60)
    assert {c.action for c in tgt.deploy(rendered, [], wait=False, timeout_s=60).changes} == {"unchanged"}
    tgt.delete(rendered, ["minilm"], runtimes=True)
