"""What the local target's ``wait`` looks at and how it words it, for :func:`poolserve.targets.wait.wait_ready`.

:class:`LocalWatch` reads each waited model's entry and its supervisor's pod status. A model is Ready
when its supervisor's readiness probe passed; Failed when waiting cannot help (it cannot start, it
crash-loops, its port was taken, nothing supervises it), with the error the wait raises; NotDeployed
when its entry is gone; Loading otherwise, with the startup phase its log shows for the progress line.

A server stopped on request, or a supervisor gone, is no failure while another ``deploy`` replaces the
deployment or a ``delete`` removes it: the watch takes the state lock (held until the replacement is
recorded) and follows the decision, rather than report the stop as a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from poolserve.errors import LocalRunError, NotFound, NotReady
from poolserve.targets.base import ModelStatus
from poolserve.targets.local.lifecycle import PodStatus
from poolserve.targets.local.process import read_tail
from poolserve.targets.local.running import Supervisors
from poolserve.targets.local.state import STATE_FILE, LocalEntry, locked, read_pod, read_state
from poolserve.targets.local.status import cannot_start, failed_log, port_in_use_error, start_error
from poolserve.vllm.diagnose import startup_phase


class LocalWatch:
    """One ``wait`` of the local target: the look, the failure, the timeout and the progress of its models."""

    def __init__(self, state_dir: Path, names: Sequence[str], supervisors: Supervisors, *, timeout_s: float,
                 status_of: Callable[[LocalEntry], ModelStatus]) -> None:
        """Watch ``names`` in ``state_dir``; ``status_of(entry)`` words a model whose supervisor is gone."""
        self.state_dir = state_dir
        self.names = tuple(names)
        self.supervisors = supervisors
        self.timeout_s = timeout_s
        self.status_of = status_of
        self._entries: dict[str, LocalEntry] = {}
        self._errors: dict[str, Exception] = {}

    def look(self) -> list[ModelStatus]:
        """The wait statuses of the watched models, now."""
        return [self._look_one(name) for name in self.names]

    def _look_one(self, name: str) -> ModelStatus:
        state_path = self.state_dir / STATE_FILE
        while True:
            entry = read_state(state_path).models.get(name)
            if entry is None:
                self._errors[name] = NotFound(f"{name} was deleted while waiting for it")
                return ModelStatus(name=name, target="local", phase="NotDeployed", ready=False)
            pod = read_pod(self.state_dir, name)
            mine = pod if pod is not None and pod.uid == entry.uid else None
            stopped_on_request = mine is not None and mine.last_termination is not None \
                and mine.last_termination.killed_by == "delete"
            if stopped_on_request or not self.supervisors.alive(entry):
                # Asked to stop, or gone: another deploy replacing it (it holds the state lock until the new
                # one is recorded) or a delete. Wait for that decision and follow it, rather than report the
                # stop as a crash.
                with locked(self.state_dir):
                    now = read_state(state_path).models.get(name)
                if now != entry:  # replaced, deleted, or recorded while its supervisor started (pid 0 until then)
                    continue
            self._entries[name] = entry
            return self._verdict(entry, mine)

    def _verdict(self, entry: LocalEntry, pod: PodStatus | None) -> ModelStatus:
        status = ModelStatus(name=entry.name, target="local", phase="Loading", ready=False,
                             restarts=pod.restarts if pod is not None else None)
        error: Exception | None = None
        if pod is not None:
            if pod.running is not None and pod.running.ready:
                return ModelStatus(name=entry.name, target="local", phase="Ready", ready=True, restarts=pod.restarts)
            error = port_in_use_error(entry, pod)
            if error is None and cannot_start(pod):
                log = failed_log(entry, pod)
                error = start_error(entry, pod, read_tail(log), log)
        if error is None and not self.supervisors.alive(entry):
            error = LocalRunError(f"{entry.name}: {self.status_of(entry).reason or 'its supervisor exited'}")
        if error is None:
            return status
        self._errors[entry.name] = error
        return ModelStatus(name=entry.name, target="local", phase="Failed", ready=False, restarts=status.restarts)

    def failure(self, status: ModelStatus) -> Exception:
        """The error found for ``status`` when it was looked at."""
        return self._errors[status.name]

    def timeout(self, waiting: Sequence[ModelStatus]) -> Exception:
        """NotReady for the first model still starting, with its last log line."""
        entry = self._entries[waiting[0].name]
        tail = read_tail(Path(entry.log), 5)
        return NotReady(f"{entry.name}: not ready after {self.timeout_s:.0f}s (still starting; last log line: "
                        f"{tail[-1] if tail else '(empty log)'}); see {entry.log}")

    def report(self, statuses: Sequence[ModelStatus],
               waiting: Sequence[ModelStatus]) -> tuple[str, float | None] | None:
        """``<model>: loading weights (restart 1)`` with the startup fraction its log shows; ``<model>: ready``.

        Nothing while only models that cannot become ready are left: the wait raises their error next.
        """
        if not waiting:
            return f"{statuses[-1].name}: ready", 1.0
        first = next((s for s in waiting if s.phase == "Loading"), None)
        if first is None:
            return None
        phase = startup_phase(read_tail(Path(self._entries[first.name].log), 200))
        text, fraction = phase if phase else ("starting", None)
        restarted = f" (restart {first.restarts})" if first.restarts else ""
        return f"{first.name}: {text}{restarted}", fraction
