"""Stopping a local model like a pod: SIGTERM, the grace period, SIGKILL of what is left.

``delete``, ``stop`` and a ``deploy`` that replaces a server all stop it here, in two steps so
several models stop together (the slowest grace period bounds the wait, not their sum):

- :func:`ask_to_stop` writes the stop request (with the grace period) for the supervisor and sends it
  SIGTERM; a server whose supervisor is gone gets the SIGTERM itself;
- :func:`finish_stop` waits for the supervisor to stop its server, and past the grace period (plus
  :data:`STOP_MARGIN_S` for a supervisor) kills the server's process group and the supervisor, then
  removes the pod status and says how the server ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

from poolserve.machine import group_members, pid_alive
from poolserve.targets.base import ObjectChange
from poolserve.targets.local.lifecycle import PodStatus, StopRequest, Termination
from poolserve.targets.local.running import KIND, Supervisors
from poolserve.targets.local.state import (
    STATE_FILE,
    LocalEntry,
    LocalState,
    locked,
    pod_path,
    read_pod,
    read_state,
    stop_path,
    write_state,
    write_stop,
)

STOP_MARGIN_S = 15.0
"""Beyond the grace period: how long ``delete`` waits for a supervisor before it kills the server itself."""
KILL_WAIT_S = 5.0
"""After SIGKILL: how long to wait for the processes to be gone."""


@dataclass(frozen=True)
class Stopping:
    """A supervised server being stopped: what it was when asked, and until when it may take."""

    entry: LocalEntry
    pod: PodStatus | None
    members: tuple[int, ...]
    """The server's process group when it was asked to stop."""
    pgid: int | None
    deadline: float
    """Monotonic time the grace period ends."""


def ask_to_stop(state_dir: Path, entry: LocalEntry, grace_s: float, supervisors: Supervisors) -> Stopping:
    """Ask the supervisor of ``entry`` to stop its server with ``grace_s`` (or SIGTERM the server, unsupervised)."""
    pod = read_pod(state_dir, entry.name)
    pod = pod if pod is not None and pod.uid == entry.uid else None
    run = pod.running if pod is not None else None
    pgid = run.pgid if run is not None and pid_alive(run.pid, run.ticks) else None
    members = tuple(group_members(pgid)) if pgid else ()
    if supervisors.alive(entry):
        with contextlib.suppress(OSError):
            write_stop(state_dir, entry.name, StopRequest(uid=entry.uid, grace_s=grace_s))
        with contextlib.suppress(ProcessLookupError):
            os.kill(entry.pid, signal.SIGTERM)
    elif run is not None and pgid is not None:
        with contextlib.suppress(ProcessLookupError):  # nothing supervises it: SIGTERM the server ourselves
            os.kill(run.pid, signal.SIGTERM)
    return Stopping(entry, pod, members, pgid, time.monotonic() + grace_s)


def finish_stop(state_dir: Path, s: Stopping, supervisors: Supervisors) -> ObjectChange:
    """Wait for the supervisor to stop its server; past the grace period (and a margin) kill what is left."""
    entry = s.entry
    killed_here = _wait_or_kill(s, supervisors)
    supervisors.reap(entry.name)
    term = _forget_pod(state_dir, s)
    if not s.members:
        return ObjectChange(KIND, entry.name, None, "deleted", "no server was running")
    pid = s.members[0] if s.pod is None or s.pod.running is None else s.pod.running.pid
    if killed_here:
        how = "SIGKILL (its supervisor did not stop it in time)"
    elif term is not None and term.killed_by == "delete" and term.signal == signal.SIGKILL:
        how = "SIGKILL after the grace period"
    else:
        how = "SIGTERM"
    return ObjectChange(KIND, entry.name, None, "stopped", f"pid {pid}, {how}")


def _wait_or_kill(s: Stopping, supervisors: Supervisors) -> bool:
    """Wait until the supervisor and the server's group are gone; True when they had to be killed here."""
    entry = s.entry
    while True:
        sup = supervisors.alive(entry)
        left = [p for p in s.members if pid_alive(p)] if s.pgid else []
        if not sup and not left:
            return False
        if time.monotonic() >= s.deadline + (STOP_MARGIN_S if sup else 0.0):
            break
        time.sleep(0.05)
    if s.pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(s.pgid, signal.SIGKILL)
    if sup:
        with contextlib.suppress(ProcessLookupError):
            os.kill(entry.pid, signal.SIGKILL)
    end = time.monotonic() + KILL_WAIT_S
    while (supervisors.alive(entry) or any(pid_alive(p) for p in s.members)) and time.monotonic() < end:
        time.sleep(0.05)
    return True


def _forget_pod(state_dir: Path, s: Stopping) -> Termination | None:
    """Remove the stop request and this deployment's pod status; return how its server ended."""
    entry = s.entry
    final = read_pod(state_dir, entry.name)
    final = final if final is not None and final.uid == entry.uid else s.pod
    for path in (pod_path(state_dir, entry.name), stop_path(state_dir, entry.name, entry.uid)):
        if path.name.endswith(".stop") or (final is not None and final.uid == entry.uid):
            with contextlib.suppress(OSError):
                path.unlink()
    return final.last_termination if final is not None else None


def stop_now(state_dir: Path, entry: LocalEntry, grace_s: float, supervisors: Supervisors) -> ObjectChange:
    """Stop one deployment at once: ask, then wait (a replaced one, or one that did not start in time)."""
    return finish_stop(state_dir, ask_to_stop(state_dir, entry, grace_s, supervisors), supervisors)


def stop_one(state_dir: Path, name: str, grace_s: float, supervisors: Supervisors, *, reason: str) -> ObjectChange:
    """Stop ``name``'s server as ``delete`` does (SIGTERM, grace period, SIGKILL), keeping its entry marked stopped.

    ``status`` then says Stopped; ``start`` starts it again.

    The mark is written first: the supervisor, asked to stop, also sees its entry stopped and exits instead
    of restarting the server (its restartPolicy does not apply to a stop on purpose).
    """
    state_path = state_dir / STATE_FILE
    with locked(state_dir):
        state = read_state(state_path)
        entry = state.models.get(name)
        if entry is None:
            return ObjectChange(KIND, name, None, "unchanged", f"{reason}: not started")
        if entry.stopped and not supervisors.alive(entry):
            return ObjectChange(KIND, name, None, "unchanged", "already stopped")
        write_state(state_path, LocalState({**state.models, name: replace(entry, stopped=True)}))
        stopping = ask_to_stop(state_dir, entry, grace_s, supervisors)
    done = finish_stop(state_dir, stopping, supervisors)
    return ObjectChange(KIND, name, None, "stopped",
                        f"{reason}; was not running" if done.action == "deleted" else f"{reason}; {done.note}")
