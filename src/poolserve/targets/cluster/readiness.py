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
  ReplicaFailure / ProgressDeadlineExceeded, one finding function per section
  (:mod:`~poolserve.targets.cluster.findings`, the pods' in :mod:`~poolserve.targets.cluster.pods`).
  :func:`verdict` turns them into the phase: the one-line ``reason`` is the most specific finding (a pod's
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

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from poolserve.kserve.names import (
    AUTOSCALER_CLASS,
    DEPLOYMENT_MODE,
    STOP_ANNOTATION,
    Manifest,
    is_stopped,
    predictor_name,
)
from poolserve.targets.base import ModelStatus, Phase
from poolserve.targets.cluster.findings import (
    Evidence,
    Observed,
    condition_findings,
    deployment_findings,
    event_findings,
    failure_findings,
    rolled_out,
    runtime_findings,
)
from poolserve.targets.cluster.objects import dig, meta
from poolserve.targets.cluster.pods import pod_findings, restart_summary, split_rollout, starting, startup_window_s
from poolserve.vllm.args import served_model_names

NO_STATUS_GRACE_S = 120
MAX_DETAILS = 14

RAW_MODES = ("RawDeployment", "Standard")
"""``Standard`` is KServe >= 0.16's name for ``RawDeployment`` (0.17+ rewrites the annotation)."""


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
    seen = _observe(name, isvc, now=now, deployments=deployments, pods=pods, events=events, runtimes=runtimes,
                    logs=logs or {})
    base = _base_status(seen, service)
    settled = _deleting_or_stopped(seen, base)
    if settled is not None:
        return settled
    evidence = [runtime_findings(seen), condition_findings(seen), failure_findings(seen), event_findings(seen),
                pod_findings(seen), deployment_findings(seen)]
    return verdict(seen, base, evidence, rollout_pending=rollout_pending)


def _observe(name: str, isvc: Manifest, *, now: datetime, deployments: Sequence[Manifest], pods: Sequence[Manifest],
             events: Sequence[Manifest], runtimes: Collection[str] | None,
             logs: Mapping[str, Sequence[str]]) -> Observed:
    """The live objects of one InferenceService, with its Deployment and rollout picked out once."""
    dep = next((d for d in deployments if meta(d).get("name") == predictor_name(name)), None)
    if dep is None and deployments:
        dep = deployments[0]
    desired = int(dig(dep, "spec", "replicas", default=0) or 0) if dep else int(
        dig(isvc, "spec", "predictor", "minReplicas", default=1) or 1)
    current, old = split_rollout(pods, dep)
    return Observed(name=name, isvc=isvc, now=now, dep=dep, pods=pods, current=current,
                    old_pods={meta(p).get("name") for p in old}, events=events, runtimes=runtimes, logs=logs,
                    desired=desired, starting=any(starting(p) for p in current),
                    startup_window_s=max((startup_window_s(p) or 0 for p in current), default=0))


def _base_status(seen: Observed, service: Manifest | None) -> ModelStatus:
    """What every phase shows: runtime, served name, URLs, replicas, autoscaler, age and restarts."""
    isvc, dep = seen.isvc, seen.dep
    internal, route = urls(isvc, service)
    created = seen.created
    age = (seen.now - created).total_seconds() if created else None
    ready_n = int(dig(dep, "status", "readyReplicas", default=0) or 0) if dep else 0
    pods_n = int(dig(dep, "status", "replicas", default=0) or 0) if dep else 0
    scaling = autoscaler_of(isvc)
    restarts, last_term = restart_summary(seen.current, seen.logs)
    return ModelStatus(name=seen.name, target="cluster", phase="Loading", ready=False, runtime=runtime_of(isvc),
                       served_model=served_model_name(isvc) or seen.name, url=internal, route_url=route,
                       replicas_ready=ready_n, replicas_desired=seen.desired, replicas_current=pods_n,
                       replicas_min=scaling[0] if scaling else None, replicas_max=scaling[1] if scaling else None,
                       autoscaler=scaling[2] if scaling else None, age_s=age, restarts=restarts,
                       last_termination=last_term)


def _deleting_or_stopped(seen: Observed, base: ModelStatus) -> ModelStatus | None:
    """Terminating, Stopped or restarting from a stop: phases no evidence changes; else None."""
    isvc = seen.isvc
    # Being deleted: its old status (maybe Ready) says nothing any more; it goes once its finalizers are done.
    if meta(isvc).get("deletionTimestamp"):
        return replace(base, phase="Terminating", ready=False, reason=terminating_reason(isvc))

    # Stopped (serving.kserve.io/stop): not a failure. The annotation is what was asked; KServe's
    # PredictorReady=False/Stopped may lag it either way (v0.20 components/predictor.go clears the status
    # and sets that reason while stopped, and resumes on its next reconcile).
    pred = seen.conditions.get("PredictorReady") or {}
    if is_stopped(isvc):
        gone = not seen.pods or pred.get("reason") == "Stopped"
        return replace(base, phase="Stopped", replicas_desired=0, url=None,
                       reason=f"stopped ({STOP_ANNOTATION}=true{'' if gone else '; KServe is removing its pods'}): "
                              f"`poolserve start {seen.name}` starts it")
    if pred.get("reason") == "Stopped":
        return replace(base, phase="Loading", reason="starting: KServe has not recreated the predictor yet")
    return None


def verdict(seen: Observed, base: ModelStatus, evidence: Sequence[Evidence], *,
            rollout_pending: bool = False) -> ModelStatus:
    """The model's phase and one-line reason, from the evidence of every section.

    Ready when the ``Ready`` condition is True, the model is UpToDate, the Deployment has rolled out,
    no change waits to be rolled out and no runtime is missing. Otherwise Failed when a finding is fatal
    (the most specific fatal one is the reason), else Loading with the most specific finding, or with
    what is being waited for when there is none.

    Args:
        seen: the live objects the evidence is about.
        base: the status every phase shows (replicas, URLs, ...).
        evidence: the sections' findings and details, in the order they were gathered.
        rollout_pending: the caller just changed the ISVC and KServe has not rolled the change out yet.
    """
    findings = [f for e in evidence for f in e.findings]
    details = [d for e in evidence for d in e.details]
    done = rolled_out(seen)
    ready_cond = (seen.conditions.get("Ready") or {}).get("status") == "True"
    up_to_date = seen.transition in (None, "UpToDate")
    if ready_cond and up_to_date and done and not rollout_pending and not any(f.rank == 0 for f in findings):
        return replace(base, phase="Ready", ready=True)
    fatal = [f for f in findings if f.fatal]
    phase: Phase
    if findings:
        phase = "Failed" if fatal else "Loading"
        reason = min(fatal or findings, key=lambda f: f.rank).text
    else:
        phase, reason = _waiting_for(seen, base, ready_cond=ready_cond, rolled_out=done,
                                     rollout_pending=rollout_pending)
    return replace(base, phase=phase, reason=reason, details=tuple(details[:MAX_DETAILS]))


def _waiting_for(seen: Observed, base: ModelStatus, *, ready_cond: bool, rolled_out: bool,
                 rollout_pending: bool) -> tuple[Phase, str]:
    """Phase and reason without any finding: what the model is waiting for."""
    status = seen.status
    if rollout_pending or (ready_cond and not rolled_out):
        return "Loading", (f"rolling out: {int(dig(seen.dep, 'status', 'updatedReplicas', default=0) or 0)}/"
                           f"{seen.desired} pods updated" if seen.dep else "waiting for KServe to roll out the change")
    if not status:
        if base.age_s is None or base.age_s < NO_STATUS_GRACE_S:
            return "Loading", "waiting for the KServe controller"
        return "Unknown", "the KServe controller has not reported any status: is KServe running in this cluster?"
    if seen.transition not in (None, "UpToDate"):
        return "Loading", f"model {seen.transition}: {_model_states(status)}"
    return "Loading", "waiting for the predictor to become ready"


def terminating_reason(obj: Manifest) -> str:
    """Why a deleted object is still there: ``being deleted (waiting for finalizers: a, b)``."""
    finalizers = ", ".join(str(f) for f in meta(obj).get("finalizers") or [])
    return "being deleted" + (f" (waiting for finalizers: {finalizers})" if finalizers else "")


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


def _model_states(status: Mapping[str, Any]) -> str:
    states = dig(status, "modelStatus", "states", default={}) or {}
    return f"{states.get('activeModelState') or '-'} -> {states.get('targetModelState') or '-'}"


def _has_port(url: str) -> bool:
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    return ":" in hostport


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]

