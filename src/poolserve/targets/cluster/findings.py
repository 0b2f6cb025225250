"""Why an InferenceService is not ready: the evidence, one finding function per section (pure).

Each section function reads one part of the live objects (:class:`Observed`) and returns its
:class:`Evidence`: ranked :class:`Finding` s (fatal or not) and the detail lines ``status`` shows. Gathered
in KServe's failure-surfacing order (kserve.md §3): :func:`runtime_findings` (a runtime the
InferenceService names but that is missing), :func:`condition_findings` (False conditions),
:func:`failure_findings` (``modelStatus.lastFailureInfo``), :func:`event_findings` (Warning events,
Multi-Attach), then the pods (:func:`poolserve.targets.cluster.pods.pod_findings`) and
:func:`deployment_findings` (ReplicaFailure / ProgressDeadlineExceeded).
:func:`poolserve.targets.cluster.readiness.model_status` turns them into the verdict.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from poolserve.kserve.names import Manifest, predictor_name
from poolserve.targets.cluster.objects import dig, meta, parse_time
from poolserve.vllm.diagnose import diagnose

PROGRESS_DEADLINE_S = 600  # KServe's default progressDeadlineSeconds for the predictor Deployment
RECENT_EVENT_S = 600
"""InferenceService Warning events older than this are shown but do not fail the model (they live 1 h)."""
MISSING_RUNTIME_ERROR = "No ServingRuntimes or ClusterServingRuntimes with the name"
"""KServe's reconcile error (InternalError event) for an InferenceService whose runtime it cannot find."""
RANK_IMAGE_OR_CONFIG = 2
RANK_UNSCHEDULABLE = 3

MULTI_ATTACH_FIX = "use a ReadWriteMany PVC, or pin all predictors to one node (node_selector)"

_FATAL_CONDITION_REASONS = ("InvalidSpec", "InvalidPredictorSpec", "NoSupportingRuntime", "RuntimeDisabled",
                            "ServingRuntimeNotFound", "ProgressDeadlineExceeded", "FailedCreate")


@dataclass(frozen=True)
class Finding:
    """One piece of evidence about why a model is not ready."""

    rank: int
    """Lower is more specific; the lowest becomes the one-line reason."""
    fatal: bool
    """Waiting will not fix it: ``wait`` fails fast."""
    text: str


@dataclass
class Evidence:
    """What one section of the live objects shows: its findings and the detail lines ``status`` prints."""

    findings: list[Finding] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Observed:
    """The live objects of one InferenceService, and what is derived from them once for every section."""

    name: str
    isvc: Manifest
    now: datetime
    dep: Manifest | None
    """Its predictor Deployment, if any."""
    pods: Sequence[Manifest]
    current: Sequence[Manifest]
    """The pods of the Deployment's newest ReplicaSet (or of no known one): only these are judged."""
    old_pods: Collection[str | None]
    """Names of the other pods: a rolling update keeps them until the new one is ready; shown, not judged."""
    events: Sequence[Manifest]
    runtimes: Collection[str] | None
    """Names of the ServingRuntimes in the namespace; None when unknown."""
    logs: Mapping[str, Sequence[str]]
    """Pod name -> previous container log lines."""
    desired: int
    """Replicas the Deployment wants (the InferenceService's minReplicas before it has one)."""
    starting: bool
    """A current pod is still starting without restarts. The Deployment's 600 s progress deadline is shorter
    than the runtime's startupProbe (30 min, for first downloads): meanwhile the deadline is not a failure."""
    startup_window_s: int
    """The longest startupProbe window of the current pods (0 when none has one)."""

    @property
    def status(self) -> Mapping[str, Any]:
        """The InferenceService's ``status`` (empty before KServe reports one)."""
        return self.isvc.get("status") or {}

    @property
    def conditions(self) -> dict[Any, Mapping[str, Any]]:
        """Its status conditions by type."""
        return {c.get("type"): c for c in self.status.get("conditions") or []}

    @property
    def transition(self) -> Any:
        """``modelStatus.transitionStatus`` (UpToDate, BlockedByFailedLoad, ...), if reported."""
        return dig(self.status, "modelStatus", "transitionStatus")

    @property
    def created(self) -> datetime | None:
        """The InferenceService's creationTimestamp."""
        return parse_time(meta(self.isvc).get("creationTimestamp"))

    @property
    def runtime(self) -> Any:
        """The runtime the InferenceService names (``spec.predictor.model.runtime``), if any."""
        return dig(self.isvc, "spec", "predictor", "model", "runtime")

    @property
    def runtime_back(self) -> bool:
        """The named runtime was missing when KServe reconciled, and it exists now.

        A Helm install creates the InferenceServices first (kinds it does not know go in alphabetical order).
        KServe's reconcile failed and is retried, so its RuntimeNotRecognized status and InternalError event
        are stale, not fatal.
        """
        rt = self.runtime
        return bool(rt) and self.runtimes is not None and rt in self.runtimes


def runtime_findings(seen: Observed) -> Evidence:
    """A runtime the InferenceService names but that does not exist (the dashboard's Delete removes it)."""
    out = Evidence()
    rt = seen.runtime
    if rt and seen.runtimes is not None and rt not in seen.runtimes:
        out.findings.append(Finding(0, True, f"ServingRuntime {rt} is missing (deleting a deployment in the "
                                    "dashboard also deletes its runtime): run `poolserve deploy --runtimes-only`"))
    return out


def condition_findings(seen: Observed) -> Evidence:
    """The InferenceService's False conditions (``Ready`` only when it does not repeat PredictorReady)."""
    out = Evidence()
    conds = seen.conditions
    pred = conds.get("PredictorReady") or {}
    for ctype in ("PredictorReady", "IngressReady", "Ready"):
        c = conds.get(ctype)
        if c is None or c.get("status") == "True":
            continue
        text = f"{c.get('reason') or c.get('status')}: {c.get('message') or ''}".rstrip(": ")
        if ctype == "Ready" and pred.get("status") not in (None, "True"):
            continue  # Ready repeats PredictorReady
        out.details.append(f"condition {ctype}={c.get('status')} {text}")
        reason = c.get("reason") or ""
        fatal = (c.get("status") == "False" and reason in _FATAL_CONDITION_REASONS
                 and not (reason == "ProgressDeadlineExceeded" and seen.starting)) or (
            reason == "RuntimeNotRecognized" and (seen.runtimes is None or seen.runtime not in seen.runtimes))
        if fatal:
            out.findings.append(Finding(8, True, f"{ctype} is False: {text}"))
        elif c.get("status") == "False":
            out.findings.append(Finding(20, False, f"{ctype} is False: {text}"))
    return out


def failure_findings(seen: Observed) -> Evidence:
    """``modelStatus.lastFailureInfo``: fatal while the transition is BlockedByFailedLoad or InvalidSpec."""
    out = Evidence()
    failure = dig(seen.status, "modelStatus", "lastFailureInfo")
    if not failure:
        return out
    msg = str(failure.get("message") or "")
    diag = diagnose(msg) if msg else None
    head = f"{failure.get('reason', 'Failure')}: {diag.evidence if diag else last_line(msg)}".rstrip(": ")
    out.details.append(f"lastFailureInfo {head}" + (f" (exit code {failure['exitCode']})"
                                                    if failure.get("exitCode") is not None else ""))
    fatal = seen.transition in ("BlockedByFailedLoad", "InvalidSpec") and not (
        seen.runtime_back and failure.get("reason") == "RuntimeNotRecognized")
    out.findings.append(Finding(7, fatal, f"{failure.get('reason', 'Failure')}: {diag}" if diag else head))
    return out


def event_findings(seen: Observed) -> Evidence:
    """Warning events about the InferenceService, its Deployment, ReplicaSets and pods, oldest first.

    Of this incarnation only: events outlive a deleted InferenceService by an hour, and a new one may
    reuse the name. Events about a pod the rollout replaces are shown, not judged.
    """
    out = Evidence()
    pod_names = {meta(p).get("name") for p in seen.pods}
    uids = {"InferenceService": meta(seen.isvc).get("uid"), "Deployment": meta(seen.dep).get("uid")}
    created = seen.created
    related = [e for e in seen.events if e.get("type") == "Warning" and _about(e, seen.name, pod_names)
               and _current_event(e, created, uids)]
    related.sort(key=lambda e: _event_time(e) or seen.now)
    for e in related:
        inv = e.get("involvedObject") or {}
        count = f" (x{e['count']})" if int(e.get("count") or 1) > 1 else ""
        out.details.append(f"event {inv.get('kind')}/{inv.get('name')} {e.get('reason')}{count}: "
                           f"{first_line(str(e.get('message', '')))}")
        reason, msg = str(e.get("reason") or ""), str(e.get("message") or "")
        if inv.get("kind") == "Pod" and inv.get("name") in seen.old_pods:
            continue  # evidence about a pod the rollout replaces: shown, not judged
        attach = multi_attach(e)
        if attach is not None:
            out.findings.append(attach)
        elif inv.get("kind") == "InferenceService":
            when = _event_time(e)
            recent = when is None or (seen.now - when).total_seconds() <= RECENT_EVENT_S
            stale = seen.runtime_back and MISSING_RUNTIME_ERROR in msg
            out.findings.append(Finding(9, recent and reason == "InternalError" and not stale,
                                        f"{reason}: {first_line(msg)}"))
        elif reason == "FailedCreate":
            out.findings.append(Finding(10, True, f"FailedCreate: {first_line(msg)}{create_failure_hint(msg)}"))
        elif reason in ("FailedMount", "FailedAttachVolume"):
            out.findings.append(Finding(12, False, f"{reason}: {first_line(msg)}"))
    return out


def deployment_findings(seen: Observed) -> Evidence:
    """The predictor Deployment: ReplicaFailure (quota), ProgressDeadlineExceeded (600 s without progress).

    ProgressDeadlineExceeded is fatal only when no pod is still starting without restarts (the
    runtime's startupProbe allows 30 min). A Deployment not rolled out yet adds its counts to the details.
    """
    out = Evidence()
    dep = seen.dep
    if dep is None:
        return out
    dconds = _deployment_conditions(dep)
    rf = dconds.get("ReplicaFailure")
    if rf and rf.get("status") == "True":
        out.details.append(f"deployment ReplicaFailure {rf.get('reason')}: {rf.get('message')}")
        rf_msg = str(rf.get("message", ""))
        out.findings.append(Finding(4, True, f"ReplicaFailure ({rf.get('reason')}): "
                                    f"{first_line(rf_msg)}{create_failure_hint(rf_msg)}"))
    prog = dconds.get("Progressing") or {}
    deadline = int(dig(dep, "spec", "progressDeadlineSeconds", default=PROGRESS_DEADLINE_S) or PROGRESS_DEADLINE_S)
    if prog.get("status") == "False" and prog.get("reason") == "ProgressDeadlineExceeded":
        out.details.append(f"deployment Progressing=False ProgressDeadlineExceeded: {prog.get('message', '')}")
        if seen.starting:
            window = seen.startup_window_s
            allows = f"its startupProbe allows {window // 60} min" if window else "its startupProbe decides"
            out.findings.append(Finding(11, False, f"ProgressDeadlineExceeded: not ready after the Deployment's "
                                        f"{deadline} s deadline, but the pod is still starting without restarts "
                                        f"({allows}, e.g. for a first download): still waiting"))
        else:
            out.findings.append(Finding(11, True, f"ProgressDeadlineExceeded: the predictor made no progress for "
                                        f"{deadline} s ({first_line(prog.get('message', ''))})"))
    if not rolled_out(seen):
        gen, observed, updated, available = _rollout_counts(dep)
        out.details.append(f"deployment {meta(dep).get('name')}: {updated}/{seen.desired} updated, {available} "
                           f"available (generation {gen}, observed {observed})")
    return out


def rolled_out(seen: Observed) -> bool:
    """The predictor Deployment has rolled out (True without one).

    observedGeneration >= generation, updatedReplicas == replicas, availableReplicas >= updatedReplicas,
    Progressing NewReplicaSetAvailable.
    """
    if seen.dep is None:
        return True
    prog = _deployment_conditions(seen.dep).get("Progressing") or {}
    gen, observed, updated, available = _rollout_counts(seen.dep)
    return (observed >= gen and updated == seen.desired and available >= updated
            and prog.get("reason", "NewReplicaSetAvailable") == "NewReplicaSetAvailable")


def multi_attach(event: Manifest, *, fix: str = MULTI_ATTACH_FIX) -> Finding | None:
    """The fatal finding for a Multi-Attach event (a ReadWriteOnce volume in use on another node), else None.

    Args:
        event: an Event (any involved object).
        fix: what the user can do, for the pod at hand (a predictor by default).
    """
    msg = str(event.get("message") or "")
    if "Multi-Attach error" not in msg:
        return None
    return Finding(5, True, f"Multi-Attach: {first_line(msg)}: the cache PVC is ReadWriteOnce and mounted on "
                   f"another node; {fix}")


def create_failure_hint(message: str) -> str:
    """What to do when the ReplicaSet cannot create a predictor pod, from the API server's refusal."""
    if "exceeded quota" in message:
        return ": raise the namespace quota or lower the resources"
    if "storage-config" in message:
        # KServe's pod mutator reads a data connection's credential from this Secret, which odh-model-controller
        # builds from the namespace's data connections (credentials.CreateStorageSpecSecretEnvs).
        return (": KServe reads data_connection from the storage-config Secret: create the data connection in "
                "the project (OpenShift AI builds storage-config from it), or fix data_connection")
    if "must be unique" in message or " is invalid: " in message:
        return ": the predictor pod KServe built is invalid; `poolserve lint` explains which setting causes it"
    if "admission webhook" in message:
        return ": a webhook refused the predictor pod"
    return ""


def first_line(text: str, limit: int = 300) -> str:
    """The line that says what happened: the first, or a traceback's last; cut to ``limit`` characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[-1] if len(lines) > 1 and lines[0].startswith("Traceback") else (lines[0] if lines else "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def last_line(text: str, limit: int = 300) -> str:
    """The last non-blank line, cut to ``limit`` characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _deployment_conditions(dep: Manifest) -> dict[Any, Mapping[str, Any]]:
    return {c.get("type"): c for c in dig(dep, "status", "conditions", default=[]) or []}


def _rollout_counts(dep: Manifest) -> tuple[int, int, int, int]:
    """``(generation, observedGeneration, updatedReplicas, availableReplicas)`` of a Deployment."""
    return (int(meta(dep).get("generation", 0) or 0),
            int(dig(dep, "status", "observedGeneration", default=0) or 0),
            int(dig(dep, "status", "updatedReplicas", default=0) or 0),
            int(dig(dep, "status", "availableReplicas", default=0) or 0))


def _about(e: Manifest, isvc: str, pod_names: Collection[Any]) -> bool:
    inv = e.get("involvedObject") or {}
    kind, name = inv.get("kind"), str(inv.get("name") or "")
    if kind == "InferenceService":
        return name == isvc
    if kind == "Pod":
        return name in pod_names
    if kind in ("Deployment", "ReplicaSet"):
        return name == predictor_name(isvc) or name.startswith(predictor_name(isvc) + "-")
    return False


def _current_event(e: Manifest, created: datetime | None, uids: Mapping[str, Any]) -> bool:
    """Not about an earlier object of the same name: same uid when both are known, else not older than ``created``."""
    inv = e.get("involvedObject") or {}
    ours = uids.get(str(inv.get("kind")))
    if ours and inv.get("uid"):
        return bool(inv["uid"] == ours)
    when = _event_time(e)
    return created is None or when is None or when >= created


def _event_time(e: Manifest) -> datetime | None:
    return parse_time(e.get("lastTimestamp") or e.get("eventTime") or meta(e).get("creationTimestamp"))
