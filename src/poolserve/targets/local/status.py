"""What the local target says of a model (pure): state entry + supervisor pod status + probes -> ModelStatus.

The local counterpart of :mod:`poolserve.targets.cluster.readiness`. The target gathers the
:class:`Evidence` (the entry of ``local-state.json``, the supervisor's ``pods/<model>.json``,
whether the supervisor runs, the log tails, and, when the supervisor is gone, whether the server
still runs and answers ``/health``); everything decided from it is here, with no process, file or
socket touched, so every phase is tested from plain values:

- :func:`entry_status`: the ``poolserve status`` row of a deployed model (Ready, Loading, Failed with
  the reason and the log tail, Stopped).
- :func:`undeployed_status`: the row of a configured model with no entry (NotDeployed, or Stopped
  when the config says ``stopped: true``).
- :func:`port_in_use_error`, :func:`cannot_start`, :func:`start_error`: what ``wait`` fails fast with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolserve.config.resolve import Model
from poolserve.errors import LocalRunError, LocalStartError
from poolserve.targets.base import ModelStatus
from poolserve.targets.local.lifecycle import PodStatus, Running, startup_failed
from poolserve.targets.local.state import LocalEntry
from poolserve.vllm.diagnose import diagnose, startup_phase

LOG_LINES = 200
"""How much of the server's log :class:`Evidence` carries: enough for the startup phase."""
DETAIL_LINES = 10
"""Log lines a Failed status shows as its details."""


@dataclass(frozen=True)
class Evidence:
    """What the target saw of one deployed model, for :func:`entry_status`."""

    entry: LocalEntry
    pod: PodStatus | None
    """The supervisor's status of this deployment (None: none written yet, or another deployment's)."""
    supervised: bool
    """Its supervisor runs."""
    now: float
    """Wall-clock time (epoch seconds), for ages and back-off waits."""
    supervisor_log: Path
    log: tuple[str, ...] = ()
    """The last :data:`LOG_LINES` meaningful lines of the server's log."""
    previous_log: tuple[str, ...] = ()
    """The last :data:`DETAIL_LINES` lines of the previous run's log."""
    server_alive: bool = False
    """The server process runs (probed only when :func:`probes_server` says so)."""
    server_healthy: bool = False
    """It answers ``/health`` (probed only when it runs)."""


def previous_log(entry: LocalEntry) -> Path:
    """``logs/<model>.previous.log``: the log of the run before the current one."""
    return Path(entry.log).with_name(f"{entry.name}.previous.log")


def probes_server(entry: LocalEntry, pod: PodStatus | None, *, supervised: bool) -> bool:
    """Whether the status needs the server probed: its supervisor is gone, but the server may still run.

    Only then are ``server_alive``/``server_healthy`` of :class:`Evidence` read.
    """
    if supervised or pod is None or pod.terminated:
        return False
    return not entry.stopped


def undeployed_status(model: Model) -> ModelStatus:
    """The row of a configured model that is not deployed here (Stopped when the config stops it)."""
    stopped = model.stopped
    return ModelStatus(name=model.name, target="local", phase="Stopped" if stopped else "NotDeployed",
                       ready=False, runtime=model.runtime.name, served_model=model.model_id,
                       replicas_desired=0 if stopped else 1,
                       reason=f"stopped: true in the config: `poolserve start --target local {model.name}`"
                       if stopped else None)


def entry_status(ev: Evidence) -> ModelStatus:
    """Ready, Loading, Failed (CrashLoopBackOff, startup failure: log tail + diagnosis) or Stopped."""
    entry, pod = ev.entry, ev.pod
    base: dict[str, Any] = {
        "name": entry.name, "target": "local", "runtime": entry.runtime, "served_model": entry.served_model,
        "url": entry.url, "replicas_desired": 1, "age_s": max(0.0, ev.now - entry.started_at)}
    if entry.stopped and not ev.supervised:
        return ModelStatus(**{**base, "replicas_desired": 0}, phase="Stopped", ready=False, restarts=0,
                           reason=f"stopped: `poolserve start --target local {entry.name}` starts it")
    if pod is None:
        if ev.supervised:
            return ModelStatus(**base, phase="Loading", ready=False, restarts=0,
                               reason=f"starting its supervisor (pid {entry.pid})")
        return ModelStatus(**base, phase="Failed", ready=False, reason=(
            f"its supervisor is not running (see {ev.supervisor_log}); "
            f"`poolserve deploy --target local {entry.name}` starts it again"))
    term = pod.last_termination
    base["restarts"] = pod.restarts
    base["last_termination"] = term.describe() if term else None
    if not ev.supervised and not pod.terminated:
        # The supervisor was killed: the server may still run, but nothing probes or restarts it.
        ready = ev.server_alive and ev.server_healthy
        return ModelStatus(**base, phase="Ready" if ready else ("Loading" if ev.server_alive else "Failed"),
                           ready=ready, replicas_ready=int(ready), reason=(
                               f"its supervisor (pid {entry.pid}) is gone: no probes or restarts until "
                               f"`poolserve deploy --target local {entry.name}`"))
    if pod.running is not None:
        return _running_status(ev, pod, pod.running, base)
    return _down_status(ev, pod, base)


def _running_status(ev: Evidence, pod: PodStatus, run: Running, base: dict[str, Any]) -> ModelStatus:
    """A server runs: Ready, starting (maybe after a failed start), or failing its readiness probe."""
    term = pod.last_termination
    if run.ready:
        return ModelStatus(**base, phase="Ready", ready=True, replicas_ready=1)
    if run.started:
        return ModelStatus(**base, phase="Loading", ready=False,
                           reason=f"not ready (pid {run.pid}): {run.probe_error or 'readiness probe failing'}")
    if startup_failed(pod) and term is not None:
        return ModelStatus(**base, phase="Failed", ready=False, details=ev.previous_log[-DETAIL_LINES:],
                           reason=f"restarted after it failed to start: {term.message} (restart "
                                  f"{pod.restarts}, starting again)")
    phase = startup_phase(ev.log)
    why = f"starting (pid {run.pid}): {phase[0] if phase else 'starting'}"
    if term is not None:
        why += f"; restart {pod.restarts} after {term.describe()}"
    return ModelStatus(**base, phase="Loading", ready=False, reason=why, details=ev.log[-3:])


def _down_status(ev: Evidence, pod: PodStatus, base: dict[str, Any]) -> ModelStatus:
    """No server runs: its port is taken, it crash-loops, it restarts, or it stays down as its policy says."""
    name, term = ev.entry.name, pod.last_termination
    if pod.waiting_reason == "PortInUse":
        return ModelStatus(**base, phase="Failed", ready=False, reason=(
            f"PortInUse: {pod.waiting_message}; `poolserve deploy --target local {name}` picks a free port"))
    if pod.waiting_reason == "CrashLoopBackOff" and term is not None:
        wait_s = max(0.0, (pod.restart_at or 0) - ev.now)
        return ModelStatus(**base, phase="Failed", ready=False, details=ev.log[-DETAIL_LINES:],
                           reason=f"CrashLoopBackOff: {pod.waiting_message}, next start in {wait_s:.0f}s; last: "
                                  f"{term.describe()}")
    if pod.restart_at is not None and term is not None:
        return ModelStatus(**base, phase="Loading", ready=False, reason=f"restarting after {term.describe()}")
    if term is None:
        return ModelStatus(**base, phase="Stopped", ready=False, reason="no server runs (supervisor done)")
    if term.reason == "Completed":
        return ModelStatus(**base, phase="Stopped", ready=False, reason=(
            f"exited cleanly (restartPolicy {pod.restart_policy}); `poolserve deploy --target local "
            f"{name}` starts it"))
    return ModelStatus(**base, phase="Failed", ready=False, details=ev.log[-DETAIL_LINES:],
                       reason=f"exited: {term.describe()} (restartPolicy {pod.restart_policy})")


# -- what wait fails fast with ----------------------------------------------------------------------


def port_in_use_error(entry: LocalEntry, pod: PodStatus) -> LocalRunError | None:
    """The error for a server whose port another program took after poolserve chose it (None: not so)."""
    if pod.waiting_reason != "PortInUse":
        return None
    return LocalRunError(f"{entry.name}: {pod.waiting_message} (it was free when poolserve chose it); "
                         f"`poolserve deploy --target local {entry.name}` picks another port")


def cannot_start(pod: PodStatus) -> bool:
    """Waiting cannot help: it failed to start, it crash-loops, or it ended and stays down."""
    if pod.last_termination is None:
        return False
    return startup_failed(pod) or pod.waiting_reason == "CrashLoopBackOff" \
        or (pod.terminated and pod.running is None)


def failed_log(entry: LocalEntry, pod: PodStatus) -> Path:
    """The log of the run that failed: the previous one when the server has restarted since."""
    return previous_log(entry) if pod.running is not None else Path(entry.log)


def start_error(entry: LocalEntry, pod: PodStatus, tail: Sequence[str], log: Path) -> LocalStartError:
    """The error of a model that :func:`cannot_start`: how it ended, what its policy does, its log tail."""
    term = pod.last_termination
    assert term is not None  # cannot_start(pod)
    tail = list(tail)
    what = "exited while starting" if term.during_startup else "keeps crashing"
    policy = pod.restart_policy
    then = (f"restartPolicy {policy}: it restarts with back-off until you fix it; `poolserve delete --target local "
            f"{entry.name}` stops it") if policy != "Never" else "restartPolicy Never: it stays down"
    body = "\n".join(f"  | {ln}" for ln in tail) if tail else "  | (empty log)"
    message = (f"{entry.name}: vLLM {what} ({term.reason}, exit {term.exit_code}): {term.message}\n  {then}\n"
               f"  last log lines ({log}):\n{body}")
    return LocalStartError(message, diagnosis=diagnose(tail), log_tail=tail, returncode=term.exit_code)
