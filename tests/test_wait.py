"""The one wait loop (targets/wait.py) on fake statuses and a fake clock: no real time passes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from poolserve.targets.base import ModelStatus, Phase
from poolserve.targets.wait import Clock, count_report, wait_ready


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def clock(self) -> Clock:
        return Clock(now=lambda: self.t, sleep=self.sleep)


def st(name: str, phase: Phase, reason: str | None = None) -> ModelStatus:
    return ModelStatus(name=name, target="local", phase=phase, ready=phase == "Ready", reason=reason)


def looks(*rounds: Sequence[ModelStatus]) -> Iterator[Sequence[ModelStatus]]:
    yield from rounds
    while True:
        yield rounds[-1]


class Failed(Exception):
    pass


def failure(s: ModelStatus) -> Exception:
    return Failed(f"{s.name}: {s.phase}")


def timeout(waiting: Sequence[ModelStatus]) -> Exception:
    return TimeoutError(", ".join(s.name for s in waiting))


def test_ready_at_the_first_look_costs_no_sleep() -> None:
    time = FakeTime()
    seen: list[tuple[str, float | None]] = []
    out = wait_ready(lambda: [st("a", "Ready"), st("b", "Stopped")], timeout_s=60, poll_s=5, failure=failure,
                     timeout=timeout, progress=lambda m, f: seen.append((m, f)), clock=time.clock())
    assert [s.name for s in out] == ["a", "b"]
    assert time.sleeps == []
    assert seen == [("1/2 ready, 1 stopped", 1.0)]


def test_waits_until_ready_reporting_each_look() -> None:
    time = FakeTime()
    rounds = looks([st("a", "Loading", "pulling")], [st("a", "Loading", "loading")], [st("a", "Ready")])
    seen: list[str] = []
    wait_ready(lambda: next(rounds), timeout_s=60, poll_s=5, failure=failure, timeout=timeout,
               progress=lambda m, f: seen.append(m), clock=time.clock())
    assert time.sleeps == [5, 5]
    assert seen == ["0/1 ready; a: Loading (pulling)", "0/1 ready; a: Loading (loading)", "1/1 ready"]


@pytest.mark.parametrize("phase", ["Failed", "NotDeployed", "Terminating"])
def test_fails_fast_on_a_phase_waiting_cannot_change(phase: Phase) -> None:
    time = FakeTime()
    with pytest.raises(Failed, match=f"b: {phase}"):
        wait_ready(lambda: [st("a", "Loading"), st("b", phase)], timeout_s=60, poll_s=5, failure=failure,
                   timeout=timeout, clock=time.clock())
    assert time.sleeps == []


def test_times_out_at_the_deadline_never_sleeping_past_it() -> None:
    time = FakeTime()
    with pytest.raises(TimeoutError, match=r"^a$"):
        wait_ready(lambda: [st("a", "Loading"), st("b", "Ready")], timeout_s=12, poll_s=5, failure=failure,
                   timeout=timeout, clock=time.clock())
    assert time.sleeps == [5, 5, 2]


def test_a_report_with_nothing_to_say_is_not_passed_on() -> None:
    seen: list[str] = []
    rounds = looks([st("a", "Loading")], [st("a", "Ready")])
    wait_ready(lambda: next(rounds), timeout_s=60, poll_s=1, failure=failure, timeout=timeout,
               report=lambda statuses, waiting: None if waiting else ("done", 1.0),
               progress=lambda m, f: seen.append(m), clock=FakeTime().clock())
    assert seen == ["done"]


def test_count_report_names_the_first_model_still_waiting() -> None:
    statuses = [st("a", "Ready"), st("b", "Loading", "pulling the image"), st("c", "Loading")]
    assert count_report(statuses, statuses[1:]) == ("1/3 ready; b: Loading (pulling the image)", 1 / 3)
    assert count_report([], []) == ("0/0 ready", 1.0)
