"""The one wait loop of every target: poll the models' statuses until each is Ready, fail fast, time out.

``deploy --wait``, ``wait`` and ``start --wait`` end here on both targets. :func:`wait_ready` looks at
the models, reports progress, returns once none is left waiting (Ready, or Stopped on purpose), raises
the target's error as soon as one cannot become ready (a ``Failed``, ``NotDeployed`` or
``Terminating`` status), and otherwise sleeps until the next look, never past a monotonic deadline
(it checks before it sleeps: a model that is Ready already costs no sleep). What the target sees and
how it words a failure stay the target's: it passes them in, with the clock, so tests need no real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from poolserve.targets.base import ModelStatus, Phase, ProgressFn

FATAL: frozenset[Phase] = frozenset({"Failed", "NotDeployed", "Terminating"})
"""Phases waiting cannot change: the wait fails at once."""

Look = Callable[[], Sequence[ModelStatus]]
"""``look()``: the statuses of the models being waited for, now."""
Failure = Callable[[ModelStatus], Exception]
"""``failure(status)``: the error to raise for a model in a :data:`FATAL` phase."""
Timeout = Callable[[Sequence[ModelStatus]], Exception]
"""``timeout(waiting)``: the error to raise when the deadline passed with these models still waiting."""
Report = Callable[[Sequence[ModelStatus], Sequence[ModelStatus]], "tuple[str, float | None] | None"]
"""``report(statuses, waiting)``: the progress message and fraction of one look (None: nothing to say)."""


@dataclass(frozen=True)
class Clock:
    """Monotonic seconds and a sleep: the real ones, or a test's fake time."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def waiting_for(statuses: Sequence[ModelStatus]) -> list[ModelStatus]:
    """The models still to wait for: neither Ready nor Stopped on purpose."""
    return [s for s in statuses if not s.ready and s.phase != "Stopped"]


def count_report(statuses: Sequence[ModelStatus], waiting: Sequence[ModelStatus]) -> tuple[str, float | None]:
    """``1/2 ready, 1 stopped; granite: Loading (pulling the image)`` and the fraction not waiting."""
    ready = sum(1 for s in statuses if s.ready)
    stopped = len(statuses) - ready - len(waiting)
    first = waiting[0] if waiting else None
    msg = f"{ready}/{len(statuses)} ready" + (f", {stopped} stopped" if stopped else "") + (
        f"; {first.name}: {first.phase}{f' ({first.reason})' if first.reason else ''}" if first else "")
    return msg, (len(statuses) - len(waiting)) / len(statuses) if statuses else 1.0


def wait_ready(
    look: Look,
    *,
    timeout_s: float,
    poll_s: float,
    failure: Failure,
    timeout: Timeout,
    report: Report = count_report,
    progress: ProgressFn | None = None,
    clock: Clock = Clock(),
) -> list[ModelStatus]:
    """Look until no model is left waiting; return the last look.

    Each round: look, report progress (unless ``report`` has nothing to say), return when nothing
    waits, raise ``failure(status)`` for the first waiting model in a :data:`FATAL` phase, raise
    ``timeout(waiting)`` once ``timeout_s`` has passed, else sleep ``poll_s`` (never past the deadline).

    Raises:
        Exception: what ``failure`` or ``timeout`` return.
    """
    deadline = clock.now() + timeout_s
    while True:
        statuses = list(look())
        waiting = waiting_for(statuses)
        if progress is not None:
            said = report(statuses, waiting)
            if said is not None:
                progress(*said)
        if not waiting:
            return statuses
        for s in waiting:
            if s.phase in FATAL:
                raise failure(s)
        remaining = deadline - clock.now()
        if remaining <= 0:
            raise timeout(waiting)
        clock.sleep(min(poll_s, remaining))
