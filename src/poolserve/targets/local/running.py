"""Which supervisors run: those this process started (their Popen, reaped here) and others' by pid and start time.

A supervisor is recorded in ``local-state.json`` by pid and start time (ticks), so a later
invocation finds it without mistaking a recycled pid for it. One this process spawned is asked
through its ``Popen`` instead, which also reaps it once it exits (no zombie lingers while ``deploy``
waits or ``delete`` stops it).
"""

from __future__ import annotations

import subprocess

from poolserve.machine import pid_alive
from poolserve.targets.local.state import LocalEntry

KIND = "Process"
"""The kind the local target's changes name (``process/<model> started``)."""


class Supervisors:
    """The supervisors one :class:`~poolserve.targets.local.target.LocalTarget` knows of."""

    def __init__(self) -> None:
        self._started: dict[str, subprocess.Popen[bytes]] = {}

    def add(self, name: str, popen: subprocess.Popen[bytes]) -> None:
        """Remember the supervisor this process just spawned for model ``name``."""
        self._started[name] = popen

    def alive(self, entry: LocalEntry) -> bool:
        """The supervisor of ``entry`` runs."""
        popen = self._started.get(entry.name)
        if popen is not None and popen.pid == entry.pid:
            return popen.poll() is None
        return entry.pid > 0 and pid_alive(entry.pid, entry.ticks)

    def reap(self, name: str) -> None:
        """Forget model ``name``'s spawned supervisor, reaping it if it has exited."""
        popen = self._started.pop(name, None)
        if popen is not None:
            popen.poll()
