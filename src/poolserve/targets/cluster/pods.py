"""A pod's state (pure): which rollout it belongs to, what keeps it from running, and how it restarted.

- Rollouts: :func:`split_rollout` keeps the pods of the Deployment's newest ReplicaSet apart from the ones
  a rolling update is replacing (those may still crash-loop until the new one is ready).
- Findings: :func:`pod_problems` judges one pod's scheduling and container (waiting reasons, OOMKilled,
  crashes, Unschedulable), for a predictor or a cache Job; :func:`pod_findings` is the predictor pods'
  section of :func:`poolserve.targets.cluster.readiness.model_status`. OOMKilled is fatal only while the
  container is down (terminated, or crash-looping after it).
- Restarts: a crash is explained by :func:`poolserve.vllm.diagnose.diagnose` on the termination message
  (the runtime sets ``FallbackToLogsOnError``) or, when given, the previous container's log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from poolserve.errors import Diagnosis
from poolserve.kserve.names import CONTAINER_NAME, ISVC_LABEL, Manifest
from poolserve.targets.cluster.findings import (
    RANK_IMAGE_OR_CONFIG,
    RANK_UNSCHEDULABLE,
    Evidence,
    Finding,
    Observed,
    first_line,
    last_line,
)
from poolserve.targets.cluster.objects import dig, labels, meta
from poolserve.vllm.diagnose import diagnose, meaningful

TEMPLATE_HASH_LABEL = "pod-template-hash"
"""Set by the Deployment controller on each ReplicaSet's pods: which rollout a pod belongs to."""

_IMAGE_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
_CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
_RS_NAMED = re.compile(r'(?:ReplicaSet|replica set) "?([a-z0-9][a-z0-9.-]*?)"?(?: |\.?$)')
"""The ReplicaSet a Deployment's Progressing condition names (always its newest, e.g.
``ReplicaSet "m-predictor-5d9f7c8b6d" is progressing.``; kubernetes pkg/controller/deployment/progress.go)."""


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
            text = f"{what}: {diag}" if diag else (f"{what}: {last_line(message)}" if message.strip() else what)
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


def crash_looping(pod: Manifest, container: str = CONTAINER_NAME) -> bool:
    """``container`` is waiting in CrashLoopBackOff."""
    for cs in dig(pod, "status", "containerStatuses", default=[]) or []:
        if cs.get("name") == container and dig(cs, "state", "waiting", "reason") == "CrashLoopBackOff":
            return True
    return False


def starting(p: Manifest) -> bool:
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


def startup_window_s(p: Manifest) -> int | None:
    """Seconds kserve-container's startupProbe lets it start before the kubelet restarts it, if it has one."""
    for c in dig(p, "spec", "containers", default=[]) or []:
        probe = c.get("startupProbe") if c.get("name") == CONTAINER_NAME else None
        if probe:
            return int(probe.get("initialDelaySeconds") or 0) + int(probe.get("periodSeconds") or 10) * int(
                probe.get("failureThreshold") or 3)
    return None


def pod_findings(seen: Observed) -> Evidence:
    """The predictor pods: scheduling, waiting reasons, OOMKilled, crashes (newest pod first).

    Only pods of the newest ReplicaSet are judged: a rolling update keeps the old pod (crash-looping,
    say) until the new one is ready, and that old pod says nothing about the fix being rolled out. The
    old pods' detail lines (without their logs) follow the current pods'.
    """
    out = Evidence()
    old_details: list[str] = []
    for p in sorted(seen.pods, key=lambda p: meta(p).get("creationTimestamp") or "", reverse=True):
        prev_log = seen.logs.get(meta(p).get("name", ""))
        if meta(p).get("name") in seen.old_pods:
            pname = meta(p).get("name", "?")
            lines: list[str] = []
            _pod_problems(p, lines, prev_log)
            old_details += [ln.replace(f"pod {pname}:", f"pod {pname} (old ReplicaSet, replaced by the rollout):", 1)
                            for ln in lines if not ln.startswith("  log:")]
            continue
        out.findings.extend(_pod_problems(p, out.details, prev_log))
    out.details += old_details
    return out


def pod_problems(pod: Manifest, *, container: str = CONTAINER_NAME,
                 prev_log: Sequence[str] | None = None) -> list[Finding]:
    """Findings about one pod's scheduling and ``container`` (for any pod, e.g. a cache Job's)."""
    return _pod_problems(pod, [], prev_log, container)


def _pod_problems(p: Manifest, details: list[str], prev_log: Sequence[str] | None,
                  container: str = CONTAINER_NAME) -> list[Finding]:
    out: list[Finding] = []
    pname = meta(p).get("name", "?")
    prev_log = meaningful(prev_log) if prev_log else prev_log
    for c in dig(p, "status", "conditions", default=[]) or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            msg = first_line(str(c.get("message", "")))
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
        wmsg = first_line(str(waiting.get("message") or ""))
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
