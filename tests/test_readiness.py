"""readiness.model_status: realistic raw-mode objects for each state and failure (kserve.md section 3)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from poolserve.targets.cluster import readiness
from poolserve.targets.cluster.fake.objects import condition, deployment, event, isvc_status, later, pod, service
from poolserve.targets.cluster.findings import multi_attach
from poolserve.targets.cluster.pods import split_rollout, template_hash
from poolserve.targets.cluster.readiness import model_status

NS = "embeddings"
NAME = "minilm"
NOW = later(300)

TASK_CRASH = (
    "INFO 01-01 00:00:01 api_server.py:1] vLLM API server version 0.32.0\n"
    "usage: api_server.py [-h] [--host HOST] ...\n"
    "api_server.py: error: unrecognized arguments: --task=embed\n"
)


def isvc(*, status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None,
         runtime: str = "vllm-embedding-runtime") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1,
                     "annotations": {"serving.kserve.io/deploymentMode": "Standard", **(annotations or {})}},
        "spec": {"predictor": {"minReplicas": 1, "model": {
            "modelFormat": {"name": "huggingface"}, "runtime": runtime,
            "args": ["--model=sentence-transformers/all-MiniLM-L6-v2", "--served-model-name",
                     "sentence-transformers/all-MiniLM-L6-v2", "{{.Name}}"]}}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def not_ready_status(**kwargs: Any) -> dict[str, Any]:
    return isvc_status(NAME, NS, ready=False, **kwargs)


def status_of(obj: dict[str, Any] | None, **kwargs: Any) -> Any:
    kwargs.setdefault("runtimes", {"vllm-embedding-runtime"})
    return model_status(NAME, isvc=obj, now=NOW, **kwargs)


def test_ready_when_conditions_model_status_and_rollout_agree() -> None:
    st = status_of(isvc(status=isvc_status(NAME, NS)), deployments=[deployment(NAME, NS)], pods=[pod(NAME, NS)],
                   service=service(NAME, NS))
    assert st.phase == "Ready" and st.ready
    assert st.reason is None
    assert st.url == f"http://{NAME}-predictor.{NS}.svc.cluster.local"
    assert st.route_url is None
    assert st.served_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert st.runtime == "vllm-embedding-runtime"
    assert (st.replicas_ready, st.replicas_desired) == (1, 1)
    assert st.age_s == 300


@pytest.mark.parametrize(("args", "served"), [
    (["--served-model-name", "a", "b"], "a"),
    (["--served-model-name", "a", "--served-model-name", "b", "c"], "b"),  # argparse: the last occurrence wins
    (["--served-model-name=x", "--dtype=float16"], "x"),
    (["--served-model-name", "{{.Name}}", "alias"], NAME),  # KServe substitutes the InferenceService name
    (["--dtype=float16"], None),
])
def test_served_model_name_reads_args_like_vllm(args: list[str], served: str | None) -> None:
    obj = isvc()
    obj["spec"]["predictor"]["model"]["args"] = args
    assert readiness.served_model_name(obj) == served


def test_multi_attach_is_one_finding_with_the_fix_for_the_pod_at_hand() -> None:
    ev = event(NS, "Pod", "p", "FailedAttachVolume", 'Multi-Attach error for volume "pvc-1" Volume is already used')
    default = multi_attach(ev)
    assert default is not None and default.fatal
    assert default.text.startswith('Multi-Attach: Multi-Attach error for volume "pvc-1" Volume is already used: '
                                   "the cache PVC is ReadWriteOnce and mounted on another node; use a ReadWriteMany")
    custom = multi_attach(ev, fix="stop the predictors")
    assert custom is not None and custom.text.endswith("mounted on another node; stop the predictors")
    assert multi_attach(event(NS, "Pod", "p", "FailedMount", "timed out waiting for the condition")) is None


def test_a_deleted_isvc_is_terminating_whatever_its_last_status_says() -> None:
    obj = isvc(status=isvc_status(NAME, NS))
    obj["metadata"].update(deletionTimestamp="2026-01-01T00:04:00Z",
                           finalizers=["odh.inferenceservice.finalizers"])
    st = status_of(obj, deployments=[deployment(NAME, NS)], pods=[pod(NAME, NS)])
    assert (st.phase, st.ready) == ("Terminating", False)
    assert st.reason == "being deleted (waiting for finalizers: odh.inferenceservice.finalizers)"


def test_not_deployed() -> None:
    st = status_of(None)
    assert st.phase == "NotDeployed" and not st.ready
    assert "poolserve deploy minilm" in (st.reason or "")


def test_isvc_observed_generation_is_not_compared_with_its_generation() -> None:
    # Raw mode copies observedGeneration from the Deployment: 1 here while the ISVC is at generation 3.
    obj = isvc(status=isvc_status(NAME, NS))
    obj["metadata"]["generation"] = 3
    st = status_of(obj, deployments=[deployment(NAME, NS)], pods=[pod(NAME, NS)])
    assert st.ready


def test_rollout_in_progress_is_not_ready_even_though_ready_condition_is_true() -> None:
    dep = deployment(NAME, NS, replicas=2, generation=2, observed=2, updated=1, ready=2,
                     conditions=[condition("Progressing", "True", "ReplicaSetUpdated")])
    st = status_of(isvc(status=isvc_status(NAME, NS)), deployments=[dep], pods=[pod(NAME, NS)])
    assert st.phase == "Loading"
    assert "rolling out: 1/2" in (st.reason or "")


def test_deployment_generation_not_yet_observed_is_not_ready() -> None:
    dep = deployment(NAME, NS, generation=3, observed=2)
    st = status_of(isvc(status=isvc_status(NAME, NS)), deployments=[dep], pods=[pod(NAME, NS)])
    assert not st.ready


def test_rollout_pending_flag_holds_ready_back() -> None:
    st = status_of(isvc(status=isvc_status(NAME, NS)), deployments=[deployment(NAME, NS)], pods=[pod(NAME, NS)],
                   rollout_pending=True)
    assert st.phase == "Loading" and not st.ready


def test_model_status_in_progress_is_not_ready() -> None:
    st = status_of(isvc(status=isvc_status(NAME, NS, transition="InProgress")), deployments=[deployment(NAME, NS)])
    assert not st.ready
    assert "InProgress" in (st.reason or "")


def test_loading_pod_is_loading_not_failed() -> None:
    st = status_of(isvc(status=not_ready_status()), deployments=[deployment(NAME, NS, ready=0)],
                   pods=[pod(NAME, NS, ready=False)])
    assert st.phase == "Loading"
    assert "loading the model" in (st.reason or "")


def rs_pod(hash_: str, created_s: float, **kwargs: Any) -> dict[str, Any]:
    """A predictor pod of the ReplicaSet ``minilm-predictor-<hash_>``, as the Deployment controller labels it."""
    return pod(NAME, NS, name=f"{NAME}-predictor-{hash_}-x7k2p", created=later(created_s),
               labels={"serving.kserve.io/inferenceservice": NAME, "pod-template-hash": hash_}, **kwargs)


OLD_CRASH = dict(ready=False, restarts=7, waiting=("CrashLoopBackOff", "back-off 5m0s"),
                 last_terminated=("Error", TASK_CRASH, 2))


def test_old_replicaset_crash_does_not_fail_the_fixing_rollout() -> None:
    # One replica rolls out by surging: the crash-looping pod of the old ReplicaSet stays until the new is ready.
    old, new = rs_pod("aaaa1111", 0, **OLD_CRASH), rs_pod("bbbb2222", 200, ready=False)
    dep = deployment(NAME, NS, ready=0, updated=1, available=0, generation=2)
    st = status_of(isvc(status=not_ready_status()), deployments=[dep], pods=[old, new])
    assert st.phase == "Loading", st.reason
    assert "loading the model" in (st.reason or "")
    assert any(d.startswith(f"pod {NAME}-predictor-aaaa1111-x7k2p (old ReplicaSet") and "CrashLoopBackOff" in d
               for d in st.details)


def test_a_crash_in_the_newest_replicaset_still_fails() -> None:
    old, new = rs_pod("aaaa1111", 0, ready=True), rs_pod("bbbb2222", 200, **OLD_CRASH)
    st = status_of(isvc(status=not_ready_status()), deployments=[deployment(NAME, NS, updated=1)], pods=[old, new])
    assert st.phase == "Failed"
    assert (st.reason or "").startswith("CrashLoopBackOff: vLLM rejected a flag (--task=embed)")


def test_the_replicaset_the_deployment_names_is_current_even_with_a_newer_old_pod() -> None:
    # The old ReplicaSet recreated an evicted pod after the new one started: the Deployment still names the new one.
    new, old = rs_pod("bbbb2222", 100, ready=False), rs_pod("aaaa1111", 200, **OLD_CRASH)
    dep = deployment(NAME, NS, ready=0, updated=1, conditions=[
        condition("Progressing", "True", "ReplicaSetUpdated",
                  f'ReplicaSet "{NAME}-predictor-bbbb2222" is progressing.')])
    st = status_of(isvc(status=not_ready_status()), deployments=[dep], pods=[new, old])
    assert st.phase == "Loading", st.reason
    assert split_rollout([new, old], dep) == ([new], [old])


def test_events_about_an_old_replicasets_pod_are_shown_not_judged() -> None:
    old, new = rs_pod("aaaa1111", 0, ready=False), rs_pod("bbbb2222", 200, ready=False)
    ev = event(NS, "Pod", old["metadata"]["name"], "FailedAttachVolume", "Multi-Attach error for volume x")
    st = status_of(isvc(status=not_ready_status()), pods=[old, new], events=[ev])
    assert st.phase == "Loading"
    assert any("Multi-Attach" in d for d in st.details)


def test_template_hash_from_the_label_or_the_pod_name() -> None:
    dep = f"{NAME}-predictor"
    assert template_hash(rs_pod("cafe1234", 0), dep) == "cafe1234"
    assert template_hash(pod(NAME, NS, name=f"{dep}-5d9f7c8b6d-x7k2p"), dep) == "5d9f7c8b6d"
    assert template_hash(pod(NAME, NS, name=f"{dep}-new"), dep) is None
    # Pods without a hash are never set aside.
    assert split_rollout([pod(NAME, NS, name="a"), pod(NAME, NS, name="b")], None)[1] == []


def test_no_status_yet_then_controller_missing() -> None:
    young = model_status(NAME, isvc=isvc(), now=later(30), runtimes={"vllm-embedding-runtime"})
    assert young.phase == "Loading" and "KServe controller" in (young.reason or "")
    old = status_of(isvc())
    assert old.phase == "Unknown" and "is KServe running" in (old.reason or "")


def test_crashloop_with_task_flag_is_diagnosed_from_the_termination_message() -> None:
    p = pod(NAME, NS, ready=False, restarts=4, waiting=("CrashLoopBackOff", "back-off 40s restarting failed container"),
            last_terminated=("Error", TASK_CRASH, 2))
    failure = {"reason": "ModelLoadFailed", "message": TASK_CRASH, "exitCode": 2, "location": "kserve-container"}
    st = status_of(isvc(status=not_ready_status(transition="BlockedByFailedLoad", target="FailedToLoad",
                                                failure=failure)),
                   deployments=[deployment(NAME, NS, ready=0)], pods=[p])
    assert st.phase == "Failed"
    assert st.reason is not None
    assert st.reason.startswith("CrashLoopBackOff: vLLM rejected a flag (--task=embed)")
    assert any("unrecognized arguments: --task=embed" in d for d in st.details)
    # Evidence keeps KServe's surfacing order: conditions, lastFailureInfo, then pods.
    kinds = [d.split()[0] for d in st.details]
    assert kinds.index("condition") < kinds.index("lastFailureInfo") < kinds.index("pod")


def test_crashloop_without_message_uses_the_previous_log_when_given() -> None:
    p = pod(NAME, NS, ready=False, restarts=2, waiting=("CrashLoopBackOff", "back-off"),
            last_terminated=("Error", "", 1))
    without = status_of(isvc(status=not_ready_status()), pods=[p])
    assert without.phase == "Failed"
    assert "exited with code 1" in (without.reason or "") and "--previous" in (without.reason or "")
    log = ["Traceback (most recent call last):", "ValueError: User-specified max_model_len (8192) is greater than "
           "the derived max_model_len (max_position_embeddings=512)"]
    with_log = status_of(isvc(status=not_ready_status()), pods=[p], logs={p["metadata"]["name"]: log})
    assert "max_model_len 8192 is above the model's limit" in (with_log.reason or "")


@pytest.mark.parametrize(("message", "cause"), [
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "out of GPU memory"),
    ("huggingface_hub.errors.GatedRepoError: 401 Client Error. Access to model x is restricted", "gated"),
    ("PermissionError: [Errno 13] Permission denied: '/models/huggingface/hub'", "permission denied"),
    ("KeyError: 'getpwuid(): uid not found: 1000680000'", "passwd entry"),
    ("RuntimeError: Failed to infer device type", "no GPU is visible"),
    ("ValueError: The repository for x contains custom code which must be executed to correctly load the model.",
     "needs custom code"),
])
def test_crash_causes(message: str, cause: str) -> None:
    p = pod(NAME, NS, ready=False, restarts=1, waiting=("CrashLoopBackOff", "back-off"),
            last_terminated=("Error", message, 1))
    st = status_of(isvc(status=not_ready_status()), pods=[p])
    assert st.phase == "Failed"
    assert cause in (st.reason or "")


def test_vllm_config_line_is_not_mistaken_for_a_custom_code_error() -> None:
    message = ("INFO Initializing a V1 LLM engine with config: model='x', trust_remote_code=False, dtype=float16\n"
               "RuntimeError: Engine core initialization failed. See root cause above.")
    p = pod(NAME, NS, ready=False, restarts=1, waiting=("CrashLoopBackOff", "back-off"),
            last_terminated=("Error", message, 1))
    st = status_of(isvc(status=not_ready_status()), pods=[p])
    assert "custom code" not in (st.reason or "")
    assert "kserve-container exited with code 1" in (st.reason or "")


def test_image_pull_backoff() -> None:
    p = pod(NAME, NS, ready=False, waiting=("ImagePullBackOff", 'Back-off pulling image "vllm/vllm-openai:v9.9.9"'))
    st = status_of(isvc(status=not_ready_status()), deployments=[deployment(NAME, NS, ready=0)], pods=[p])
    assert st.phase == "Failed"
    assert st.reason is not None and st.reason.startswith("ImagePullBackOff: Back-off pulling image")
    assert "pull secret" in st.reason


def test_create_container_config_error_names_the_secret() -> None:
    p = pod(NAME, NS, ready=False, waiting=("CreateContainerConfigError", 'secret "hf-token" not found'))
    st = status_of(isvc(status=not_ready_status()), pods=[p])
    assert st.phase == "Failed"
    assert 'secret "hf-token" not found' in (st.reason or "")


def test_oomkilled_last_state() -> None:
    p = pod(NAME, NS, ready=False, restarts=3, waiting=("CrashLoopBackOff", "back-off"),
            last_terminated=("OOMKilled", "", 137))
    st = status_of(isvc(status=not_ready_status()), pods=[p])
    assert st.phase == "Failed"
    assert st.reason is not None and st.reason.startswith("OOMKilled")
    assert "resources.limits.memory" in st.reason


def test_oomkilled_now_is_fatal_even_before_the_backoff() -> None:
    p = pod(NAME, NS, ready=False, restarts=0, terminated=("OOMKilled", "", 137))
    st = status_of(isvc(status=not_ready_status()), pods=[p])
    assert st.phase == "Failed" and (st.reason or "").startswith("OOMKilled")


def test_a_container_running_again_after_an_oom_kill_is_not_failed() -> None:
    recovered = pod(NAME, NS, name=f"{NAME}-predictor-5d9f7c8b6d-aaaaa", ready=True, restarts=1,
                    last_terminated=("OOMKilled", "", 137))
    loading = pod(NAME, NS, name=f"{NAME}-predictor-5d9f7c8b6d-bbbbb", ready=False)
    dep = deployment(NAME, NS, replicas=2, ready=1, available=1)
    st = status_of(isvc(status=not_ready_status()), deployments=[dep], pods=[recovered, loading])
    assert st.phase == "Loading", st.reason
    assert (st.reason or "").startswith("restarted (1x, OOMKilled earlier): killed for exceeding its memory limit")
    assert f"pod {NAME}-predictor-5d9f7c8b6d-aaaaa: restarted after OOMKilled (restarts 1)" in st.details
    # Still loading (not ready) after the kill: also not fatal; the next crash loop is.
    again = pod(NAME, NS, ready=False, restarts=1, last_terminated=("OOMKilled", "", 137))
    assert status_of(isvc(status=not_ready_status()), pods=[again]).phase == "Loading"


def test_unschedulable_for_lack_of_gpus() -> None:
    msg = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available"
    p = pod(NAME, NS, ready=False, unschedulable=msg)
    st = status_of(isvc(status=not_ready_status()), deployments=[deployment(NAME, NS, ready=0)], pods=[p])
    assert st.phase == "Failed"
    assert st.reason is not None and "Insufficient nvidia.com/gpu" in st.reason
    assert "not enough free GPUs" in st.reason


def test_multi_attach_event_for_rwo_pvc() -> None:
    p = pod(NAME, NS, ready=False, waiting=("ContainerCreating", ""))
    ev = event(NS, "Pod", p["metadata"]["name"], "FailedAttachVolume",
               'Multi-Attach error for volume "pvc-0a1b" Volume is already used by pod(s) other-predictor-abc')
    st = status_of(isvc(status=not_ready_status()), pods=[p], events=[ev])
    assert st.phase == "Failed"
    assert st.reason is not None and st.reason.startswith("Multi-Attach")
    assert "ReadWriteMany" in st.reason


def test_events_about_other_objects_are_ignored() -> None:
    p = pod(NAME, NS, ready=False)
    ev = event(NS, "Pod", "someone-else-predictor-1", "FailedAttachVolume", "Multi-Attach error for volume x")
    st = status_of(isvc(status=not_ready_status()), pods=[p], events=[ev])
    assert st.phase == "Loading"


DEADLINE_DEP = deployment(NAME, NS, ready=0, conditions=[
    condition("Available", "False", "MinimumReplicasUnavailable"),
    condition("Progressing", "False", "ProgressDeadlineExceeded",
              'ReplicaSet "minilm-predictor-5d9f7c8b6d" has timed out progressing.')])
DEADLINE_STATUS = not_ready_status(predictor=condition("PredictorReady", "False", "ProgressDeadlineExceeded",
                                                       "ReplicaSet has timed out progressing."))


@pytest.mark.parametrize("pods", [
    [],  # no pod at all
    [pod(NAME, NS, ready=False, restarts=2)],  # the startupProbe already restarted it
    [pod(NAME, NS, ready=False, unschedulable="0/3 nodes are available: 3 node(s) had untolerated taint")],
], ids=["no-pod", "restarted", "unschedulable"])
def test_progress_deadline_exceeded_without_a_starting_pod_is_fatal(pods: list[dict[str, Any]]) -> None:
    st = status_of(isvc(status=not_ready_status()), deployments=[DEADLINE_DEP], pods=pods)
    assert st.phase == "Failed"
    if not pods:
        assert st.reason is not None and st.reason.startswith("ProgressDeadlineExceeded")
        assert "600 s" in st.reason


def test_progress_deadline_exceeded_while_the_model_still_loads_is_not_fatal() -> None:
    # The Deployment gives up after 600 s; the runtime's startupProbe allows 30 min (first downloads).
    loading = pod(NAME, NS, ready=False, created=later(-700))
    loading["spec"]["containers"][0]["startupProbe"] = {"httpGet": {"path": "/health", "port": 8080},
                                                        "periodSeconds": 10, "failureThreshold": 180}
    st = status_of(isvc(status=DEADLINE_STATUS), deployments=[DEADLINE_DEP], pods=[loading])
    assert st.phase == "Loading", st.reason
    assert (st.reason or "").startswith("ProgressDeadlineExceeded: not ready after the Deployment's 600 s deadline")
    assert "its startupProbe allows 30 min" in (st.reason or "")
    assert any("ProgressDeadlineExceeded" in d for d in st.details)
    creating = pod(NAME, NS, ready=False, waiting=("ContainerCreating", ""))
    assert status_of(isvc(status=DEADLINE_STATUS), deployments=[DEADLINE_DEP], pods=[creating]).phase == "Loading"


def test_replica_failure_quota() -> None:
    dep = deployment(NAME, NS, ready=0, conditions=[
        condition("ReplicaFailure", "True", "FailedCreate",
                  'pods "minilm-predictor-5d9f-x" is forbidden: exceeded quota: gpu-quota, requested: '
                  "requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=4, limited: requests.nvidia.com/gpu=4"),
        condition("Progressing", "True", "ReplicaSetUpdated")])
    st = status_of(isvc(status=not_ready_status()), deployments=[dep])
    assert st.phase == "Failed"
    assert "exceeded quota" in (st.reason or "") and "raise the namespace quota" in (st.reason or "")


@pytest.mark.parametrize(("message", "hint"), [
    # The API server's refusal when a runtime volume sits where KServe's pod mutator mounts the model.
    ('Pod "m-predictor-5d9f-x" is invalid: spec.containers[0].volumeMounts[5].mountPath: Invalid value: '
     '"/mnt/models": must be unique', "the predictor pod KServe built is invalid; `poolserve lint` explains"),
    # KServe's pod mutator, for a data connection without its storage-config entry.
    ('admission webhook "inferenceservice.kserve-webhook-server.pod-mutator" denied the request: can\'t read '
     'storage secret storage-config: secrets "storage-config" not found',
     "KServe reads data_connection from the storage-config Secret"),
])
def test_replica_failure_says_why_the_pod_cannot_be_created(message: str, hint: str) -> None:
    dep = deployment(NAME, NS, ready=0, conditions=[condition("ReplicaFailure", "True", "FailedCreate", message),
                                                    condition("Progressing", "True", "ReplicaSetUpdated")])
    st = status_of(isvc(status=not_ready_status()), deployments=[dep])
    assert st.phase == "Failed"
    assert hint in (st.reason or "") and "quota" not in (st.reason or ""), st.reason


def test_missing_runtime_is_reported_with_the_fix() -> None:
    status = not_ready_status(predictor=condition("PredictorReady", "False", "RuntimeNotRecognized",
                                                  "Waiting for runtime to become available"))
    st = status_of(isvc(status=status), runtimes=set())
    assert st.phase == "Failed"
    assert st.reason is not None
    assert "ServingRuntime vllm-embedding-runtime is missing" in st.reason
    assert "poolserve deploy --runtimes-only" in st.reason


def test_a_runtime_created_after_its_inference_service_is_not_a_failure() -> None:
    # helm install creates the InferenceServices before the ServingRuntimes (unknown kinds go alphabetically):
    # KServe's first reconcile fails (InvalidSpec, RuntimeNotRecognized, an InternalError event) and is retried.
    status = not_ready_status(predictor=condition("PredictorReady", "False", "RuntimeNotRecognized",
                                                  "Waiting for runtime to become available"))
    status["modelStatus"] = {"transitionStatus": "InvalidSpec", "lastFailureInfo": {
        "reason": "RuntimeNotRecognized", "message": "Waiting for runtime to become available"}}
    msg = ("fails to reconcile component: No ServingRuntimes or ClusterServingRuntimes with the name: "
           "vllm-embedding-runtime")
    internal = event(NS, "InferenceService", NAME, "InternalError", msg, when=later(1))
    st = status_of(isvc(status=status), events=[internal], runtimes={"vllm-embedding-runtime"})
    assert st.phase == "Loading", st.reason
    # Still missing: the same status fails the model, naming the fix.
    st = status_of(isvc(status=status), events=[internal], runtimes=set())
    assert st.phase == "Failed" and "ServingRuntime vllm-embedding-runtime is missing" in (st.reason or "")


def test_missing_runtime_beats_a_stale_ready_condition() -> None:
    st = status_of(isvc(status=isvc_status(NAME, NS)), deployments=[deployment(NAME, NS)], pods=[pod(NAME, NS)],
                   runtimes=set())
    assert st.phase == "Failed" and not st.ready


def test_internal_error_event_is_fatal_only_while_recent() -> None:
    msg = 'fails to reconcile predictor: failed creating host name: "a-very-long-name-predictor-ns" is too long'
    recent = event(NS, "InferenceService", NAME, "InternalError", msg, when=later(250))
    stale = event(NS, "InferenceService", NAME, "InternalError", msg, when=later(-3000))
    assert status_of(isvc(status=not_ready_status()), events=[recent]).phase == "Failed"
    long_lived = isvc(status=not_ready_status())
    long_lived["metadata"]["creationTimestamp"] = "2025-12-31T22:00:00Z"  # older than the stale event
    old = status_of(long_lived, events=[stale])
    assert old.phase == "Loading"
    assert any("InternalError" in d for d in old.details)


RECONCILE_ERROR = "fails to reconcile predictor: failed to replace placeholders in the runtime args"


def test_events_of_a_deleted_inferenceservice_with_the_same_name_are_ignored() -> None:
    # isvc() was created at later(0); the event is from the one deleted before (events live 1 h).
    before = event(NS, "InferenceService", NAME, "InternalError", RECONCILE_ERROR, when=later(-60))
    st = status_of(isvc(status=not_ready_status()), events=[before], pods=[pod(NAME, NS, ready=False)])
    assert st.phase == "Loading", st.reason
    assert not any("InternalError" in d for d in st.details)
    dep_quota = event(NS, "ReplicaSet", f"{NAME}-predictor-5d9f7c8b6d", "FailedCreate", "exceeded quota",
                      when=later(-60))
    assert status_of(isvc(status=not_ready_status()), events=[dep_quota]).phase != "Failed"


def test_events_are_matched_by_uid_when_both_have_one() -> None:
    obj = isvc(status=not_ready_status())
    obj["metadata"]["uid"] = "new-uid"
    other, same = (event(NS, "InferenceService", NAME, "InternalError", RECONCILE_ERROR, when=later(250))
                   for _ in range(2))
    other["involvedObject"]["uid"], same["involvedObject"]["uid"] = "old-uid", "new-uid"
    assert status_of(obj, events=[other]).phase == "Loading"  # same second as a re-creation: the uid tells
    assert status_of(obj, events=[same]).phase == "Failed"


def test_invalid_spec_condition_is_fatal() -> None:
    status = not_ready_status(predictor=condition("PredictorReady", "False", "InvalidSpec",
                                                  "failed to find kserve-container in ServingRuntime containers"))
    st = status_of(isvc(status=status))
    assert st.phase == "Failed"
    assert "kserve-container" in (st.reason or "")


def test_stopped() -> None:
    st = status_of(isvc(status=not_ready_status(), annotations={"serving.kserve.io/stop": "true"}))
    assert st.phase == "Stopped"


def test_headless_service_gets_port_8080_and_route_is_preferred_separately() -> None:
    status = isvc_status(NAME, NS, route="https://minilm-embeddings.apps.example.org")
    st = status_of(isvc(status=status), deployments=[deployment(NAME, NS)], service=service(NAME, NS, headless=True))
    assert st.url == f"http://{NAME}-predictor.{NS}.svc.cluster.local:8080"
    assert st.route_url == "https://minilm-embeddings.apps.example.org"


def test_upstream_placeholder_domain_is_not_a_route() -> None:
    status = isvc_status(NAME, NS, route=f"http://{NAME}-{NS}.example.com")
    st = status_of(isvc(status=status), deployments=[deployment(NAME, NS)])
    assert st.route_url is None


def test_standard_and_raw_deployment_are_the_same_mode() -> None:
    assert readiness.is_raw_mode(isvc(annotations={"serving.kserve.io/deploymentMode": "Standard"}))
    assert readiness.is_raw_mode(isvc(annotations={"serving.kserve.io/deploymentMode": "RawDeployment"}))
    assert not readiness.is_raw_mode(isvc(annotations={"serving.kserve.io/deploymentMode": "Serverless"}))


def test_readiness_is_pure() -> None:
    code = ("import sys, poolserve.targets.cluster.readiness, poolserve.targets.cluster.preflight\n"
            "import poolserve.targets.cluster.cachejob\n"
            "print(','.join(m for m in ('kubernetes', 'httpx', 'rich', 'urllib3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
