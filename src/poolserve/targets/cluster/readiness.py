"""Is an InferenceService ready, and if not, why? Pure: live objects in, ModelStatus out.

:func:`model_status` turns the live objects of one InferenceService (the ISVC, its predictor
Deployment, pods, events and Service, and the ServingRuntimes that exist) into the
:class:`~poolserve.targets.base.ModelStatus` that ``status`` shows and ``wait`` acts on. Rules (kserve.md
§3, KServe v0.20 ``inference_service_status.go`` and the raw reconciler):

- Ready = the ``Ready`` condition (PredictorReady ∧ IngressReady) is True, ``modelStatus.transitionStatus``
  is UpToDate, and the Deployment ``<isvc>-predictor`` has rolled out (observedGeneration >= generation,
  updatedReplicas == replicas, availableReplicas >= updatedReplicas, Progressing NewReplicaSetAvailable).
  The ISVC's own ``status.observedGeneration`` is copied from the Deployment in raw mode, so it is
  never compared with ``metadata.generation``.
- Evidence is gathered in KServe's failure-surfacing order: False conditions, ``modelStatus.lastFailureInfo``,
  Warning events, pod states (waiting reasons, OOMKilled, Unschedulable), Multi-Attach events, Deployment
  ReplicaFailure / ProgressDeadlineExceeded. The one-line ``reason`` is the most specific finding (a pod's
  CrashLoopBackOff with vLLM's diagnosed error beats a generic "MinimumReplicasUnavailable").
- A crash is explained by :func:`poolserve.vllm.diagnose.diagnose` on the termination message (the runtime
  sets ``FallbackToLogsOnError``) or, when given, the previous container's log.
- An InferenceService with a ``deletionTimestamp`` is Terminating, whatever its (last) status says:
  it disappears once its finalizers (KServe's, odh-model-controller's) are done.
- What is judged (a fatal finding makes ``wait`` fail at once): only pods of the Deployment's newest
  ReplicaSet (a rolling update keeps the old, maybe crash-looping, pod until the new one is ready);
  OOMKilled only while the container is down (terminated, or crash-looping after it); the 600 s
  ProgressDeadlineExceeded only when no pod is still starting without restarts (the runtime's
  startupProbe allows 30 min); Warning events only of this incarnation of the objects (same uid, or
  not older than the InferenceService), since events outlive a deleted object by an hour.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from poolserve.kserve.compose import (
    AUTOSCALER_CLASS,
    CONTAINER_NAME,
    DEPLOYMENT_MODE,
    ISVC_LABEL,
    STOP_ANNOTATION,
    Manifest,
    is_stopped,
    predictor_name,
)
from poolserve.targets.base import ModelStatus, Phase
from poolserve.targets.cluster.objects import dig, labels, meta, parse_time
from poolserve.vllm.args import served_model_names
from poolserve.vllm.diagnose import Diagnosis, diagnose, meaningful

TEMPLATE_HASH_LABEL = "pod-template-hash"
"""Set by the Deployment controller on each ReplicaSet's pods: which rollout a pod belongs to."""
PROGRESS_DEADLINE_S = 600  # KServe's default progressDeadlineSeconds for the predictor Deployment
RECENT_EVENT_S = 600
MISSING_RUNTIME_ERROR = "No ServingRuntimes or ClusterServingRuntimes with the name"
"""KServe's reconcile error (InternalError event) for an InferenceService whose runtime it cannot find."""
"""InferenceService Warning events older than this are shown but do not fail the model (they live 1 h)."""
NO_STATUS_GRACE_S = 120
MAX_DETAILS = 14
RANK_IMAGE_OR_CONFIG = 2
RANK_UNSCHEDULABLE = 3

MULTI_ATTACH_FIX = "use a ReadWriteMany PVC, or pin all predictors to one node (node_selector)"

RAW_MODES = ("RawDeployment", "Standard")
"""``Standard`` is KServe >= 0.16's name for ``RawDeployment`` (0.17+ rewrites the annotation)."""

_IMAGE_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
_CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
_RS_NAMED = re.compile(r'(?:ReplicaSet|replica set) "?([a-z0-9][a-z0-9.-]*?)"?(?: |\.?$)')
"""The ReplicaSet a Deployment's Progressing condition names (always its newest, e.g.
``ReplicaSet "m-predictor-5d9f7c8b6d" is progressing.``; kubernetes pkg/controller/deployment/progress.go)."""
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


def is_raw_mode(isvc: Manifest) -> bool:
    """True for RawDeployment/Standard (also when the annotation is absent: poolserve always sets it)."""
    mode = (meta(isvc).get("annotations") or {}).get(DEPLOYMENT_MODE)
    return mode is None or mode in RAW_MODES


def served_model_name(isvc: Manifest) -> str | None:
    """The name clients send: the first ``--served-model-name`` in the InferenceService args, if any.

    Parsed as vLLM's argparse does (:func:`poolserve.vllm.args.served_model_names`); KServe replaces
    ``{{.Name}}`` with the InferenceService's name.
    """
    names = served_model_names([str(a) for a in dig(isvc, "spec", "predictor", "model", "args", default=[]) or []])
    first = names[0] if names else ""
    if first == "{{.Name}}":
        first = str(meta(isvc).get("name", ""))
    return first or None


def runtime_of(isvc: Manifest) -> str | None:
    """The runtime the ISVC names (``spec.predictor.model.runtime``) or the one KServe chose."""
    named = dig(isvc, "spec", "predictor", "model", "runtime") or dig(isvc, "status", "servingRuntimeName")
    return str(named) if named else None


def urls(isvc: Manifest, service: Manifest | None = None) -> tuple[str | None, str | None]:
    """``(internal_url, route_url)`` of an InferenceService.

    Internal: ``status.address.url``, else the predictor Service; a headless Service (clusterIP None,
    ODH <= 3.3's default) has no port 80, so ``:8080`` is added. Route: ``status.url`` when it is not
    a cluster-local host (ODH sets it to the Route when ``visibility: exposed``) nor upstream's
    placeholder ``example.com`` domain.
    """
    name = meta(isvc).get("name", "")
    ns = meta(isvc).get("namespace", "")
    headless = service is not None and dig(service, "spec", "clusterIP") == "None"
    internal = dig(isvc, "status", "address", "url")
    if not internal and service is not None:
        internal = f"http://{meta(service).get('name', predictor_name(name))}.{ns}.svc.cluster.local"
    if internal and headless and not _has_port(internal):
        internal = f"{internal.rstrip('/')}:8080"
    url = dig(isvc, "status", "url")
    route = None
    if url:
        host = _host(url)
        placeholder = host.partition(".")[2] == "example.com"  # upstream's default domain: no real ingress
        if not (host.endswith(".svc.cluster.local") or host.endswith(".svc") or placeholder):
            route = url
    return (internal or None), route


def model_status(
    name: str,
    *,
    isvc: Manifest | None,
    now: datetime,
    deployments: Sequence[Manifest] = (),
    pods: Sequence[Manifest] = (),
    events: Sequence[Manifest] = (),
    service: Manifest | None = None,
    runtimes: Collection[str] | None = None,
    logs: Mapping[str, Sequence[str]] | None = None,
    rollout_pending: bool = False,
) -> ModelStatus:
    """The state of one model on the cluster.

    Args:
        name: InferenceService name.
        isvc: the live InferenceService, or None when it does not exist.
        now: the current time (ages, recent events).
        deployments: Deployments of this ISVC (``<isvc>-predictor``); others are ignored.
        pods: its predictor pods (label ``serving.kserve.io/inferenceservice=<isvc>``).
        events: events in the namespace; only Warning events about this ISVC, its pods, Deployment
            and ReplicaSets are used.
        service: the Service ``<isvc>-predictor`` (for headless detection), if known.
        runtimes: names of the ServingRuntimes in the namespace; None when unknown.
        logs: pod name -> previous container log lines, for crashes the termination message does not explain.
        rollout_pending: the caller just changed the ISVC and KServe has not rolled the change out yet.
    """
    if isvc is None:
        return ModelStatus(name=name, target="cluster", phase="NotDeployed", ready=False,
                           reason=f"not deployed (run `poolserve deploy {name}`)")
    status = isvc.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    dep = next((d for d in deployments if meta(d).get("name") == predictor_name(name)), None)
    if dep is None and deployments:
        dep = deployments[0]
    internal, route = urls(isvc, service)
    created = parse_time(meta(isvc).get("creationTimestamp"))
    age = (now - created).total_seconds() if created else None
    desired = int(dig(dep, "spec", "replicas", default=0) or 0) if dep else int(
        dig(isvc, "spec", "predictor", "minReplicas", default=1) or 1)
    ready_n = int(dig(dep, "status", "readyReplicas", default=0) or 0) if dep else 0
    pods_n = int(dig(dep, "status", "replicas", default=0) or 0) if dep else 0
    scaling = autoscaler_of(isvc)
    current, old = split_rollout(pods, dep)
    restarts, last_term = restart_summary(current, logs or {})
    base = ModelStatus(name=name, target="cluster", phase="Loading", ready=False, runtime=runtime_of(isvc),
                       served_model=served_model_name(isvc) or name, url=internal, route_url=route,
                       replicas_ready=ready_n, replicas_desired=desired, replicas_current=pods_n,
                       replicas_min=scaling[0] if scaling else None, replicas_max=scaling[1] if scaling else None,
                       autoscaler=scaling[2] if scaling else None, age_s=age, restarts=restarts,
                       last_termination=last_term)

    details: list[str] = []
    findings: list[Finding] = []
    transition = dig(status, "modelStatus", "transitionStatus")
    old_pods = {meta(p).get("name") for p in old}
    # The Deployment's 600 s progress deadline is shorter than the runtime's startupProbe (30 min, for
    # first downloads): while a pod is still starting without restarts, the deadline is not a failure.
    starting = any(_starting(p) for p in current)

    # Being deleted: its old status (maybe Ready) says nothing any more; it goes once its finalizers are done.
    if meta(isvc).get("deletionTimestamp"):
        return replace(base, phase="Terminating", ready=False, reason=terminating_reason(isvc))

    # Stopped (serving.kserve.io/stop): not a failure. The annotation is what was asked; KServe's
    # PredictorReady=False/Stopped may lag it either way (v0.20 components/predictor.go clears the status
    # and sets that reason while stopped, and resumes on its next reconcile).
    pred = conds.get("PredictorReady") or {}
    if is_stopped(isvc):
        gone = not pods or pred.get("reason") == "Stopped"
        return replace(base, phase="Stopped", replicas_desired=0, url=None,
                       reason=f"stopped ({STOP_ANNOTATION}=true{'' if gone else '; KServe is removing its pods'}): "
                              f"`poolserve start {name}` starts it")
    if pred.get("reason") == "Stopped":
        return replace(base, phase="Loading", reason="starting: KServe has not recreated the predictor yet")

    # 0. A runtime the ISVC names but that does not exist (the dashboard's Delete removes it).
    rt = dig(isvc, "spec", "predictor", "model", "runtime")
    # KServe reconciled before the runtime existed, and it exists now: a Helm install creates the
    # InferenceServices first (kinds it does not know go in alphabetical order). KServe's reconcile failed and is
    # retried, so its RuntimeNotRecognized status and InternalError event are stale, not fatal.
    runtime_back = bool(rt) and runtimes is not None and rt in runtimes
    if rt and runtimes is not None and rt not in runtimes:
        findings.append(Finding(0, True, f"ServingRuntime {rt} is missing (deleting a deployment in the "
                                "dashboard also deletes its runtime): run `poolserve deploy --runtimes-only`"))

    # 1. False conditions.
    for ctype in ("PredictorReady", "IngressReady", "Ready"):
        c = conds.get(ctype)
        if c is None or c.get("status") == "True":
            continue
        text = f"{c.get('reason') or c.get('status')}: {c.get('message') or ''}".rstrip(": ")
        if ctype == "Ready" and pred.get("status") not in (None, "True"):
            continue  # Ready repeats PredictorReady
        details.append(f"condition {ctype}={c.get('status')} {text}")
        reason = c.get("reason") or ""
        fatal = (c.get("status") == "False" and reason in _FATAL_CONDITION_REASONS
                 and not (reason == "ProgressDeadlineExceeded" and starting)) or (
            reason == "RuntimeNotRecognized" and (runtimes is None or rt not in runtimes))
        if fatal:
            findings.append(Finding(8, True, f"{ctype} is False: {text}"))
        elif c.get("status") == "False":
            findings.append(Finding(20, False, f"{ctype} is False: {text}"))

    # 2. modelStatus.lastFailureInfo.
    failure = dig(status, "modelStatus", "lastFailureInfo")
    if failure:
        msg = str(failure.get("message") or "")
        diag = diagnose(msg) if msg else None
        head = f"{failure.get('reason', 'Failure')}: {diag.evidence if diag else _last_line(msg)}".rstrip(": ")
        details.append(f"lastFailureInfo {head}" + (f" (exit code {failure['exitCode']})"
                                                    if failure.get("exitCode") is not None else ""))
        fatal = transition in ("BlockedByFailedLoad", "InvalidSpec") and not (
            runtime_back and failure.get("reason") == "RuntimeNotRecognized")
        findings.append(Finding(7, fatal, f"{failure.get('reason', 'Failure')}: {diag}" if diag else head))

    # 3. Warning events about the ISVC, its Deployment, ReplicaSets and pods: of this incarnation only
    # (events outlive a deleted InferenceService by an hour, and a new one may reuse the name).
    pod_names = {meta(p).get("name") for p in pods}
    uids = {"InferenceService": meta(isvc).get("uid"), "Deployment": meta(dep).get("uid")}
    related = [e for e in events if e.get("type") == "Warning" and _about(e, name, pod_names)
               and _current_event(e, created, uids)]
    related.sort(key=lambda e: _event_time(e) or now)
    for e in related:
        inv = e.get("involvedObject") or {}
        count = f" (x{e['count']})" if int(e.get("count") or 1) > 1 else ""
        details.append(f"event {inv.get('kind')}/{inv.get('name')} {e.get('reason')}{count}: "
                       f"{_first_line(str(e.get('message', '')))}")
        reason, msg = str(e.get("reason") or ""), str(e.get("message") or "")
        if inv.get("kind") == "Pod" and inv.get("name") in old_pods:
            continue  # evidence about a pod the rollout replaces: shown, not judged
        attach = multi_attach(e)
        if attach is not None:
            findings.append(attach)
        elif inv.get("kind") == "InferenceService":
            when = _event_time(e)
            recent = when is None or (now - when).total_seconds() <= RECENT_EVENT_S
            stale = runtime_back and MISSING_RUNTIME_ERROR in msg
            findings.append(Finding(9, recent and reason == "InternalError" and not stale,
                                    f"{reason}: {_first_line(msg)}"))
        elif reason == "FailedCreate":
            findings.append(Finding(10, True, f"FailedCreate: {_first_line(msg)}{create_failure_hint(msg)}"))
        elif reason in ("FailedMount", "FailedAttachVolume"):
            findings.append(Finding(12, False, f"{reason}: {_first_line(msg)}"))

    # 4. Pods: scheduling, waiting reasons, OOMKilled, crashes (newest pod first). Only pods of the
    # newest ReplicaSet are judged: a rolling update keeps the old pod (crash-looping, say) until the
    # new one is ready, and that old pod says nothing about the fix being rolled out.
    old_details: list[str] = []
    for p in sorted(pods, key=lambda p: meta(p).get("creationTimestamp") or "", reverse=True):
        prev_log = (logs or {}).get(meta(p).get("name", ""))
        if meta(p).get("name") in old_pods:
            pname = meta(p).get("name", "?")
            lines: list[str] = []
            _pod_findings(p, lines, prev_log)
            old_details += [ln.replace(f"pod {pname}:", f"pod {pname} (old ReplicaSet, replaced by the rollout):", 1)
                            for ln in lines if not ln.startswith("  log:")]
            continue
        findings.extend(_pod_findings(p, details, prev_log))
    details += old_details

    # 5. The Deployment: ReplicaFailure (quota), ProgressDeadlineExceeded (600 s without progress).
    rolled_out = True
    if dep is not None:
        dconds = {c.get("type"): c for c in dig(dep, "status", "conditions", default=[]) or []}
        rf = dconds.get("ReplicaFailure")
        if rf and rf.get("status") == "True":
            details.append(f"deployment ReplicaFailure {rf.get('reason')}: {rf.get('message')}")
            rf_msg = str(rf.get("message", ""))
            findings.append(Finding(4, True, f"ReplicaFailure ({rf.get('reason')}): "
                                    f"{_first_line(rf_msg)}{create_failure_hint(rf_msg)}"))
        prog = dconds.get("Progressing") or {}
        deadline = int(dig(dep, "spec", "progressDeadlineSeconds", default=PROGRESS_DEADLINE_S) or PROGRESS_DEADLINE_S)
        if prog.get("status") == "False" and prog.get("reason") == "ProgressDeadlineExceeded":
            details.append(f"deployment Progressing=False ProgressDeadlineExceeded: {prog.get('message', '')}")
            if starting:
                window = max((_startup_window_s(p) or 0 for p in current), default=0)
                allows = f"its startupProbe allows {window // 60} min" if window else "its startupProbe decides"
                findings.append(Finding(11, False, f"ProgressDeadlineExceeded: not ready after the Deployment's "
                                        f"{deadline} s deadline, but the pod is still starting without restarts "
                                        f"({allows}, e.g. for a first download): still waiting"))
            else:
                findings.append(Finding(11, True, f"ProgressDeadlineExceeded: the predictor made no progress for "
                                        f"{deadline} s ({_first_line(prog.get('message', ''))})"))
        gen = int(meta(dep).get("generation", 0) or 0)
        observed = int(dig(dep, "status", "observedGeneration", default=0) or 0)
        updated = int(dig(dep, "status", "updatedReplicas", default=0) or 0)
        available = int(dig(dep, "status", "availableReplicas", default=0) or 0)
        rolled_out = (observed >= gen and updated == desired and available >= updated
                      and prog.get("reason", "NewReplicaSetAvailable") == "NewReplicaSetAvailable")
        if not rolled_out:
            details.append(f"deployment {meta(dep).get('name')}: {updated}/{desired} updated, {available} available"
                           f" (generation {gen}, observed {observed})")

    ready_cond = (conds.get("Ready") or {}).get("status") == "True"
    up_to_date = transition in (None, "UpToDate")
    if ready_cond and up_to_date and rolled_out and not rollout_pending and not any(
            f.rank == 0 for f in findings):
        return replace(base, phase="Ready", ready=True)

    phase: Phase
    if any(f.fatal for f in findings):
        phase = "Failed"
        best = min((f for f in findings if f.fatal), key=lambda f: f.rank)
    elif findings:
        phase = "Loading"
        best = min(findings, key=lambda f: f.rank)
    else:
        best = None
        phase = "Loading"
    reason = best.text if best else None
    if reason is None:
        if rollout_pending or (ready_cond and not rolled_out):
            reason = f"rolling out: {int(dig(dep, 'status', 'updatedReplicas', default=0) or 0)}/{desired} " \
                     "pods updated" if dep else "waiting for KServe to roll out the change"
        elif not status:
            phase = "Loading" if age is None or age < NO_STATUS_GRACE_S else "Unknown"
            reason = "waiting for the KServe controller" if phase == "Loading" else \
                "the KServe controller has not reported any status: is KServe running in this cluster?"
        elif not up_to_date:
            reason = f"model {transition}: {_model_states(status)}"
        else:
            reason = "waiting for the predictor to become ready"
    return replace(base, phase=phase, reason=reason, details=tuple(details[:MAX_DETAILS]))


def terminating_reason(obj: Manifest) -> str:
    """Why a deleted object is still there: ``being deleted (waiting for finalizers: a, b)``."""
    finalizers = ", ".join(str(f) for f in meta(obj).get("finalizers") or [])
    return "being deleted" + (f" (waiting for finalizers: {finalizers})" if finalizers else "")


def multi_attach(event: Manifest, *, fix: str = MULTI_ATTACH_FIX) -> Finding | None:
    """The fatal finding for a Multi-Attach event (a ReadWriteOnce volume in use on another node), else None.

    Args:
        event: an Event (any involved object).
        fix: what the user can do, for the pod at hand (a predictor by default).
    """
    msg = str(event.get("message") or "")
    if "Multi-Attach error" not in msg:
        return None
    return Finding(5, True, f"Multi-Attach: {_first_line(msg)}: the cache PVC is ReadWriteOnce and mounted on "
                   f"another node; {fix}")


def template_hash(pod: Manifest, deployment: str | None = None) -> str | None:
    """The ReplicaSet hash of a Deployment's pod: label ``pod-template-hash``, else from its name.

    A Deployment's pod is named ``<deployment>-<hash>-<suffix>``, so without the label (objects not
    written by the controller) the hash is the name's second-last part after ``deployment``.
    """
    value = labels(pod).get(TEMPLATE_HASH_LABEL)
    if value:
        return str(value)
    name = str(meta(pod).get("name") or "")
    if deployment and name.startswith(f"{deployment}-"):
        parts = name[len(deployment) + 1:].split("-")
        if len(parts) == 2 and all(parts):
            return parts[0]
    return None


def current_template_hash(pods: Sequence[Manifest], deployment: Manifest | None) -> str | None:
    """The hash of the Deployment's newest ReplicaSet, as far as the pods show it.

    The ReplicaSet the Deployment's Progressing condition names, when the controller has observed
    the current generation and some pod belongs to it; otherwise the hash of the newest pod (by
    creationTimestamp: an old ReplicaSet replacing an evicted pod is the rare exception). None
    when no pod has a hash.
    """
    dname = meta(deployment).get("name") if deployment else None
    hashed = [p for p in pods if template_hash(p, dname)]
    if not hashed:
        return None
    if deployment is not None and int(dig(deployment, "status", "observedGeneration", default=0) or 0) >= int(
            meta(deployment).get("generation", 0) or 0):
        for c in dig(deployment, "status", "conditions", default=[]) or []:
            m = _RS_NAMED.search(str(c.get("message") or "")) if c.get("type") == "Progressing" else None
            named = m.group(1)[len(f"{dname}-"):] if m and dname and m.group(1).startswith(f"{dname}-") else None
            if named and any(template_hash(p, dname) == named for p in hashed):
                return named
    newest = max(hashed, key=lambda p: (meta(p).get("creationTimestamp") or "", meta(p).get("name") or ""))
    return template_hash(newest, dname)


def split_rollout(pods: Sequence[Manifest], deployment: Manifest | None) -> tuple[list[Manifest], list[Manifest]]:
    """``(current, old)``: pods of the Deployment's newest ReplicaSet (or of no known one), and the rest."""
    dname = meta(deployment).get("name") if deployment else None
    newest = current_template_hash(pods, deployment)
    current: list[Manifest] = []
    old: list[Manifest] = []
    for p in pods:
        h = template_hash(p, dname)
        (old if newest is not None and h is not None and h != newest else current).append(p)
    return current, old


def restart_summary(pods: Sequence[Manifest], logs: Mapping[str, Sequence[str]],
                    container: str = CONTAINER_NAME) -> tuple[int, str | None]:
    """Restarts of ``container`` summed over ``pods``, and how its latest ended (``Completed (exit 0): ...``).

    The ending is explained by :func:`poolserve.vllm.diagnose.diagnose` on the termination message, else on the
    previous log in ``logs`` (vLLM exits 0 when its engine died, and ``FallbackToLogsOnError`` only keeps the
    log of a container that exited with an error).
    """
    total = 0
    latest: tuple[str, str] | None = None
    for p in pods:
        for cs in dig(p, "status", "containerStatuses", default=[]) or []:
            if cs.get("name") != container:
                continue
            total += int(cs.get("restartCount") or 0)
            term = dig(cs, "lastState", "terminated", default=None) or dig(cs, "state", "terminated", default=None)
            if not term:
                continue
            message = str(term.get("message") or "")
            diag = (diagnose(message) if message else None) or diagnose(logs.get(meta(p).get("name", ""), []))
            signal = f"signal {term['signal']}, " if term.get("signal") else ""
            what = f"{term.get('reason') or 'Terminated'} ({signal}exit {term.get('exitCode', '?')})"
            text = f"{what}: {diag}" if diag else (f"{what}: {_last_line(message)}" if message.strip() else what)
            when = str(term.get("finishedAt") or "")
            if latest is None or when > latest[0]:
                latest = (when, text)
    return total, latest[1] if latest else None


def restarted_unexplained(pod: Manifest, container: str = CONTAINER_NAME) -> bool:
    """``container`` restarted, and its termination message does not say why (its previous log may)."""
    for cs in dig(pod, "status", "containerStatuses", default=[]) or []:
        if cs.get("name") != container:
            continue
        term = dig(cs, "lastState", "terminated", default=None) or {}
        return bool(term) and diagnose(str(term.get("message") or "")) is None
    return False


def pod_problems(pod: Manifest, *, container: str = CONTAINER_NAME,
                 prev_log: Sequence[str] | None = None) -> list[Finding]:
    """Findings about one pod's scheduling and ``container`` (for any pod, e.g. a cache Job's)."""
    return _pod_findings(pod, [], prev_log, container)


def _pod_findings(p: Manifest, details: list[str], prev_log: Sequence[str] | None,
                  container: str = CONTAINER_NAME) -> list[Finding]:
    out: list[Finding] = []
    pname = meta(p).get("name", "?")
    prev_log = meaningful(prev_log) if prev_log else prev_log
    for c in dig(p, "status", "conditions", default=[]) or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            msg = _first_line(str(c.get("message", "")))
            details.append(f"pod {pname}: {c.get('reason', 'Unschedulable')}: {msg}")
            out.append(Finding(RANK_UNSCHEDULABLE, c.get("reason") == "Unschedulable",
                               f"Unschedulable: {msg.rstrip('.')}: {_schedule_fix(msg)}"))
    for cs in dig(p, "status", "containerStatuses", default=[]) or []:
        if cs.get("name") != container:
            continue
        restarts = int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        last = dig(cs, "lastState", "terminated", default={}) or {}
        term = state.get("terminated") or {}
        wreason = str(waiting.get("reason") or "")
        wmsg = _first_line(str(waiting.get("message") or ""))
        dead = term or last
        message = str(dead.get("message") or "")
        diag: Diagnosis | None = diagnose(message) if message else None
        if diag is None and prev_log:
            diag = diagnose(prev_log)
        if wreason or term or last:
            what = wreason or (f"terminated {term.get('reason')}" if term else f"restarted after {last.get('reason')}")
            details.append(f"pod {pname}: {what}" + (f" (restarts {restarts})" if restarts else "")
                           + (f": {wmsg}" if wmsg and wreason not in ("CrashLoopBackOff",) else ""))
        tail = [ln for ln in meaningful(message.splitlines()) if ln.strip()][-5:] or list(prev_log or [])[-5:]
        if (wreason == "CrashLoopBackOff" or term.get("reason") == "Error") and tail:
            details.extend(f"  log: {ln.strip()}" for ln in tail)
        if wreason in _IMAGE_REASONS:
            out.append(Finding(RANK_IMAGE_OR_CONFIG, True, f"{wreason}: {wmsg or 'cannot pull the image'}: check "
                               "the image name and tag, the registry's reachability and the pull secret"))
        elif wreason in _CONFIG_REASONS:
            out.append(Finding(RANK_IMAGE_OR_CONFIG, True, f"{wreason}: {wmsg}: create the missing Secret/ConfigMap "
                               "or fix the config that names it (cache.hf_token_secret)"))
        elif term.get("reason") == "OOMKilled" or (wreason == "CrashLoopBackOff" and last.get("reason") == "OOMKilled"):
            # Fatal only while it is down: a container running (or ready) again after one OOM kill may be fine.
            out.append(Finding(1, True, f"OOMKilled: {diagnose(['OOMKilled'])}"
                               + (f" (restarts {restarts})" if restarts else "")))
        elif wreason == "CrashLoopBackOff" or term.get("reason") == "Error":
            code = dead.get("exitCode")
            cause = str(diag) if diag else (f"{container} exited with code {code}; see "
                                            f"`poolserve logs {labels(p).get(ISVC_LABEL, '')} --previous`")
            out.append(Finding(1, True, f"CrashLoopBackOff: {cause}" if wreason else f"Error: {cause}"))
        elif last.get("reason") == "OOMKilled":
            out.append(Finding(6, False, f"restarted ({restarts}x, OOMKilled earlier): {diagnose(['OOMKilled'])}"))
        elif last and diag:
            out.append(Finding(6, False, f"restarted ({restarts}x): {diag}"))
        elif wreason == "ContainerCreating" or wreason == "PodInitializing":
            out.append(Finding(15, False, f"{wreason}"))
        elif "running" in state and not cs.get("ready"):
            out.append(Finding(16, False, "loading the model (container running, /health not ready yet)"))
    return out


def _starting(p: Manifest) -> bool:
    """The pod's kserve-container is being created or running (not ready) and has never restarted."""
    if any(c.get("type") == "PodScheduled" and c.get("status") == "False"
           for c in dig(p, "status", "conditions", default=[]) or []):
        return False
    for cs in dig(p, "status", "containerStatuses", default=[]) or []:
        if cs.get("name") != CONTAINER_NAME:
            continue
        state = cs.get("state") or {}
        if int(cs.get("restartCount") or 0) or cs.get("ready"):
            return False
        reason = dig(state, "waiting", "reason")
        return "running" in state or reason in ("ContainerCreating", "PodInitializing")
    return bool(dig(p, "status", "phase") == "Pending")  # scheduled, no container status yet


def _startup_window_s(p: Manifest) -> int | None:
    """Seconds kserve-container's startupProbe lets it start before the kubelet restarts it, if it has one."""
    for c in dig(p, "spec", "containers", default=[]) or []:
        probe = c.get("startupProbe") if c.get("name") == CONTAINER_NAME else None
        if probe:
            return int(probe.get("initialDelaySeconds") or 0) + int(probe.get("periodSeconds") or 10) * int(
                probe.get("failureThreshold") or 3)
    return None


def _schedule_fix(msg: str) -> str:
    if "nvidia.com/gpu" in msg or "gpu" in msg.lower():
        return "not enough free GPUs: lower gpus or replicas, free a GPU, or add GPU nodes"
    if "taint" in msg:
        return "no node tolerates the pod: add tolerations"
    if "affinity" in msg or "selector" in msg:
        return "no node matches node_selector"
    if "Insufficient memory" in msg or "Insufficient cpu" in msg:
        return "lower resources.requests or add capacity"
    if "persistentvolumeclaim" in msg.lower() or "volume" in msg.lower():
        return "the cache PVC cannot be mounted where the pod can run"
    return "see `oc describe pod`"


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


def _model_states(status: Mapping[str, Any]) -> str:
    states = dig(status, "modelStatus", "states", default={}) or {}
    return f"{states.get('activeModelState') or '-'} -> {states.get('targetModelState') or '-'}"


def autoscaler_of(isvc: Manifest) -> tuple[int, int, str] | None:
    """``(min, max, what it scales on)`` when KServe may change the model's replica count, else None.

    KServe raises minReplicas below 1 to 1 and maxReplicas below min to min (hpa_reconciler.go createHPA,
    keda_reconciler.go); class ``hpa`` (the default) scales on CPU at 80 % unless scaleMetric/scaleTarget
    say otherwise; ``none`` and ``external`` leave the count alone.
    """
    predictor = dig(isvc, "spec", "predictor", default={}) or {}
    lo = max(int(predictor.get("minReplicas") or 1), 1)
    hi = max(int(predictor.get("maxReplicas") or 0), lo)
    cls = (dig(isvc, "metadata", "annotations", default={}) or {}).get(AUTOSCALER_CLASS, "hpa")
    if lo == hi or cls in ("none", "external"):
        return None
    if cls == "keda":
        metrics = dig(predictor, "autoScaling", "metrics", default=[]) or []
        ext = next((m.get("external") for m in metrics if m.get("type") == "External"), None)
        query = str(dig(ext, "metric", "query", default="") or "")
        value = dig(ext, "target", "value")
        what = "queue" if "vllm:num_requests_waiting" in query else "keda"
        return lo, hi, f"{what} {value}/replica" if value is not None else what
    metric = predictor.get("scaleMetric") or "cpu"
    target = predictor.get("scaleTarget") or (80 if metric == "cpu" else None)
    return lo, hi, f"{metric} {target}%" if target is not None else metric


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


def _first_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[-1] if len(lines) > 1 and lines[0].startswith("Traceback") else (lines[0] if lines else "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _last_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _has_port(url: str) -> bool:
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    return ":" in hostport


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]

