"""The local target's pod semantics: probes, restarts with CrashLoopBackOff, terminations (pure rules), and the
supervisor driving them against a fake clock and fake processes (no real time passes, no process starts)."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from poolserve.config.load import load_spec
from poolserve.kserve.render import render
from poolserve.targets.local.lifecycle import (
    CrashLoopBackOff,
    PodStatus,
    Probe,
    ProbeCounter,
    Running,
    Termination,
    classify_exit,
    last_lines,
    probes_of,
    should_restart,
    startup_failed,
)
from poolserve.targets.local.supervisor import Supervisor, SupervisorSpec

ROOT = Path(__file__).resolve().parents[1]

# -- pure rules ------------------------------------------------------------------------------------


def test_crashloop_backoff_follows_the_kubelet() -> None:
    # A container that exits 1 s after each start: restarts at once, then 10, 20, 40 ... 300 s after each exit.
    b = CrashLoopBackOff()
    t, delays = 0.0, []
    for _ in range(9):
        t += 1.0  # it ran one second
        delay = b.delay(t)
        delays.append(delay)
        t += delay
        b.restarted(t - delay, t)
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_crashloop_backoff_resets_after_ten_minutes_of_running() -> None:
    b = CrashLoopBackOff()
    b.restarted(0, 0)  # first crash, restarted at once: back-off 10 s
    b.restarted(10, 20)  # second: 20 s
    assert b.delay(25) == 20
    assert b.delay(20 + 600) == 20  # exactly 2 x 300 s: still counted
    assert b.delay(20 + 601) == 0  # ran longer than 10 min since its last restart: starts over
    b.restarted(621, 621)
    assert b.backoff_s == 10


def test_restart_policy() -> None:
    assert should_restart("Always", 0) and should_restart("Always", 1)
    assert should_restart("OnFailure", 137) and not should_restart("OnFailure", 0)
    assert not should_restart("Never", 1)


def test_exit_statuses_read_like_a_container_runtime() -> None:
    assert classify_exit(0) == ("Completed", 0, None)
    assert classify_exit(1) == ("Error", 1, None)
    assert classify_exit(-9) == ("Error", 137, 9)
    assert classify_exit(-15) == ("Error", 143, 15)
    assert classify_exit(-9, oom_killed=True) == ("OOMKilled", 137, 9)


def test_rendered_probes_with_kubernetes_defaults() -> None:
    spec = load_spec(ROOT / "poolserve.yaml")
    probes, notes = probes_of(render(spec).compose("minilm-embedding").container)
    assert [(p.kind, p.path, p.period_s, p.timeout_s, p.failure_threshold) for p in probes] == [
        ("startup", "/health", 10, 5, 180), ("readiness", "/health", 10, 5, 3), ("liveness", "/health", 30, 10, 5)]
    assert notes == ()
    custom, notes = probes_of({"livenessProbe": {"httpGet": {"path": "/ping"}, "terminationGracePeriodSeconds": 3},
                               "readinessProbe": {"exec": {"command": ["true"]}}})
    assert custom == (Probe("liveness", "/ping", 10, 1, 3, 1, 0, 3.0),)
    assert notes == ("readinessProbe (exec) is not run locally: only httpGet probes are",)


def test_probe_config_keys_render_and_reach_the_local_target() -> None:
    spec = load_spec(ROOT / "poolserve.yaml", {"runtimes.0.probes.liveness.period_s": 2,
                                                "runtimes.0.probes.liveness.failure_threshold": 2,
                                                "runtimes.0.probes.startup.initial_delay_s": 5})
    container = render(spec).compose("minilm-embedding").container
    assert container["livenessProbe"] == {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                          "periodSeconds": 2, "timeoutSeconds": 10, "failureThreshold": 2}
    assert container["startupProbe"]["initialDelaySeconds"] == 5
    probes, _ = probes_of(container)
    assert probes[2].period_s == 2 and probes[0].initial_delay_s == 5


def test_probe_counter_counts_consecutive_results() -> None:
    c = ProbeCounter(Probe("liveness", failure_threshold=3, period_s=5), next_due=0)
    assert c.record(False, "timeout", 0) is None and c.next_due == 5
    assert c.record(False, "timeout", 5) is None
    assert c.record(True, "200", 10) == "passed" and c.failures == 0  # a success resets the count
    assert [c.record(False, "t", t) for t in (15, 20, 25)] == [None, None, "failed"]


def test_startup_failed_is_a_crash_before_the_startup_probe_passed() -> None:
    base = PodStatus(name="m", uid="u", supervisor_pid=1, supervisor_ticks=None, restart_policy="Always", port=1)
    crash = Termination("Error", 1, None, 0, 5, during_startup=True, message="bad flag")
    assert not startup_failed(base)
    assert startup_failed(PodStatus(**{**base.__dict__, "last_termination": crash}))
    starting = Running(pid=2, pgid=2, ticks=None, started_at=6)
    assert startup_failed(PodStatus(**{**base.__dict__, "last_termination": crash, "running": starting}))
    up = Running(pid=2, pgid=2, ticks=None, started_at=6, started=True, ready=True)
    assert not startup_failed(PodStatus(**{**base.__dict__, "last_termination": crash, "running": up}))
    later = Termination("Error", 137, 9, 0, 500, during_startup=False, message="engine died")
    assert not startup_failed(PodStatus(**{**base.__dict__, "last_termination": later}))


def test_pod_status_round_trips() -> None:
    st = PodStatus(name="m", uid="u", supervisor_pid=1, supervisor_ticks=7, restart_policy="Always", port=9,
                   restarts=2, running=Running(3, 3, 11, 1.5, True, True),
                   last_termination=Termination("OOMKilled", 137, 9, 0, 1, False, "oom", None, None))
    assert PodStatus.from_dict(st.to_dict()) == st


def test_termination_message_keeps_what_the_kubelet_keeps() -> None:
    lines = [f"line {i}" for i in range(200)]
    kept = last_lines(lines)
    assert kept == lines[-80:]
    long = ["x" * 100] * 50
    assert len(last_lines(long)) == 20  # 2 KiB: 20 lines of 101 bytes


# -- the supervisor with fake processes and a fake clock -----------------------------------------------


@dataclass
class World:
    """Time, and the behaviour of each server the supervisor starts (by start index)."""

    t: float = 0.0
    starts: list[float] = field(default_factory=list)
    containers: list[FakeContainer] = field(default_factory=list)
    healthy_after_s: float = 3.0
    exit_after_s: dict[int, tuple[float, int]] = field(default_factory=dict)
    """start index -> (seconds after start, returncode)."""
    hang_after_s: dict[int, float] = field(default_factory=dict)
    ignores_term: bool = False
    port_taken: int = 0
    """How many start attempts find the port taken."""

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class FakeContainer:
    def __init__(self, world: World, index: int) -> None:
        self.world, self.index = world, index
        self.pid = self.pgid = 1000 + index
        self.ticks = index
        self.started = world.t
        self.rc: int | None = None
        self.term_at: float | None = None

    def poll(self) -> int | None:
        if self.rc is None:
            exit_at = self.world.exit_after_s.get(self.index)
            if exit_at is not None and self.world.t >= self.started + exit_at[0]:
                self.rc = exit_at[1]
            elif self.term_at is not None and self.world.t >= self.term_at:
                self.rc = -signal.SIGTERM
        return self.rc

    def members(self) -> list[int]:
        return [] if self.poll() is not None else [self.pid]

    def signal_leader(self, sig: int) -> None:
        if sig == signal.SIGTERM and not self.world.ignores_term and not self.hung():
            self.term_at = self.world.t + 0.5

    def signal_group(self, sig: int) -> None:
        if sig == signal.SIGKILL and self.poll() is None:
            self.rc = -signal.SIGKILL

    def hung(self) -> bool:
        at = self.world.hang_after_s.get(self.index)
        return at is not None and self.world.t >= self.started + at

    def healthy(self) -> bool:
        return self.poll() is None and not self.hung() and self.world.t >= self.started + self.world.healthy_after_s


def _supervisor(tmp_path: Path, world: World, *, probes: Sequence[Probe] = (), policy: str = "Always",
                grace_s: float = 30, stop_at: float | None = None) -> tuple[Supervisor, list[PodStatus]]:
    log = tmp_path / "m.log"
    log.write_text("INFO: starting\n")
    spec = SupervisorSpec(name="m", uid="u1", argv=("vllm",), cwd=str(tmp_path), state_dir=str(tmp_path),
                          log=str(log), port=8000, host="127.0.0.1", probes=tuple(probes),
                          restart_policy=policy, grace_s=grace_s)  # type: ignore[arg-type]
    written: list[PodStatus] = []

    def spawn(argv: Sequence[str], cwd: Path, log: Path) -> FakeContainer:
        c = FakeContainer(world, len(world.containers))
        world.containers.append(c)
        world.starts.append(world.t)
        return c

    def probe(host: str, port: int, path: str, timeout_s: float) -> tuple[bool, str]:
        c = world.containers[-1]
        if c.hung():
            world.t += timeout_s
            return False, f"GET {path}: no answer within {timeout_s:g}s"
        return (True, "GET /health: HTTP 200") if c.healthy() else (False, "GET /health: connection refused")

    def port_user(host: str, port: int) -> str | None:
        if world.port_taken:
            world.port_taken -= 1
            return "pid 42: nc -l 8000"
        return None

    sup = Supervisor(spec, spawn_fn=spawn, probe_fn=probe, port_user_fn=port_user,  # type: ignore[arg-type]
                     oom_fn=lambda: (0, 0), now=world.now, sleep=world.sleep, write=written.append,
                     desired=lambda: stop_at is None or world.t < stop_at)
    return sup, written


PROBES = (Probe("startup", period_s=10, timeout_s=5, failure_threshold=3),
          Probe("readiness", period_s=10, timeout_s=5, failure_threshold=3),
          Probe("liveness", period_s=30, timeout_s=10, failure_threshold=5))


def test_a_crash_loop_restarts_with_the_kubelets_delays(tmp_path: Path) -> None:
    world = World(exit_after_s={i: (1.0, 1) for i in range(6)})
    sup, written = _supervisor(tmp_path, world, stop_at=400)
    sup.run()
    # Exits 1 s after each start: immediate restart, then 10, 20, 40, 80, 160 s after each exit.
    gaps = [round(b - a - 1.0) for a, b in zip(world.starts, world.starts[1:], strict=False)]
    assert gaps == [0, 10, 20, 40, 80, 160]
    looping = [s for s in written if s.waiting_reason == "CrashLoopBackOff"]
    assert looping[0].waiting_message == "back-off 10s restarting failed container (restarts 1)"
    final = written[-1]
    assert final.terminated and final.restarts == 6
    assert final.last_termination is not None and final.last_termination.killed_by == "delete"


def test_startup_success_is_seen_within_a_second_but_failures_count_per_period(tmp_path: Path) -> None:
    world = World(healthy_after_s=3.3)
    sup, written = _supervisor(tmp_path, world, probes=PROBES, stop_at=20)
    sup.run()
    ready = next(s for s in written if s.running is not None and s.running.ready)
    assert 3.3 <= ready.updated_at <= 4.6  # not the startup probe's 10 s period
    assert len(world.starts) == 1


def test_a_startup_probe_that_never_passes_kills_and_restarts(tmp_path: Path) -> None:
    world = World(healthy_after_s=1e9)
    sup, written = _supervisor(tmp_path, world, probes=PROBES, stop_at=60, grace_s=2)
    sup.run()
    # Counted at 0, 10, 20: the third failure kills it (SIGTERM: it exits in 0.5 s) and it restarts at once.
    assert world.starts[:2] == [0.0, pytest.approx(20.5, abs=0.3)]
    term = next(s.last_termination for s in written if s.last_termination is not None)
    assert term.killed_by == "startup" and term.during_startup and term.reason == "Error" and term.signal == 15
    assert term.message == "killed after its startup probe failed 3 times: GET /health: connection refused"


def test_a_hung_server_fails_liveness_and_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    # Hung (SIGSTOP) 60 s after it started: /health times out, 5 liveness failures 30 s apart, SIGTERM is
    # not handled by a stopped process, SIGKILL after the 7 s grace period, restart at once.
    world = World(hang_after_s={0: 60.0})
    sup, written = _supervisor(tmp_path, world, probes=PROBES, stop_at=400, grace_s=7)
    sup.run()
    assert len(world.starts) >= 2
    term = next(s.last_termination for s in written if s.last_termination is not None)
    assert term.killed_by == "liveness" and not term.during_startup
    assert (term.reason, term.exit_code, term.signal) == ("Error", 137, 9)
    assert term.message == "killed after its liveness probe failed 5 times: GET /health: no answer within 10s"
    reasons = [e.reason for e in written[-1].events]
    assert reasons[:4] == ["Started", "Ready", "Unhealthy", "Unhealthy"]  # readiness, then liveness x5
    assert "Killing" in reasons and reasons.count("Started") >= 2
    restarted = next(s for s in written if s.restarts == 1 and s.running is not None and s.running.ready)
    assert restarted.last_termination == term


def test_restart_policy_never_and_on_failure(tmp_path: Path) -> None:
    world = World(exit_after_s={0: (5.0, 3)})
    sup, written = _supervisor(tmp_path, world, policy="Never")
    assert sup.run() == 0
    assert len(world.starts) == 1 and written[-1].terminated and written[-1].last_termination is not None
    assert written[-1].last_termination.exit_code == 3 and written[-1].restart_at is None
    world = World(exit_after_s={0: (5.0, 0)})
    sup, written = _supervisor(tmp_path, world, policy="OnFailure")
    sup.run()
    assert len(world.starts) == 1 and written[-1].last_termination is not None
    assert written[-1].last_termination.reason == "Completed"


def test_delete_gives_the_grace_period_then_kills(tmp_path: Path) -> None:
    world = World(ignores_term=True)
    sup, written = _supervisor(tmp_path, world, probes=PROBES, stop_at=10, grace_s=4)
    sup.run()
    term = written[-1].last_termination
    assert term is not None and term.killed_by == "delete" and term.signal == 9
    assert 14 <= term.finished_at <= 15  # asked at 10, SIGKILL at 14
    assert [e.reason for e in written[-1].events][-3:] == ["Killing", "Killing", "Terminated"]
    world = World()
    sup, written = _supervisor(tmp_path, world, probes=PROBES, stop_at=10, grace_s=4)
    sup.run()
    term = written[-1].last_termination
    assert term is not None and term.signal == 15 and term.finished_at < 11  # it handled SIGTERM


def test_a_port_taken_before_the_start_is_named_and_retried(tmp_path: Path) -> None:
    world = World(port_taken=2)
    sup, written = _supervisor(tmp_path, world, probes=PROBES, stop_at=60)
    sup.run()
    taken = [s for s in written if s.waiting_reason == "PortInUse"]
    assert taken and taken[0].waiting_message == "127.0.0.1:8000 is in use by pid 42: nc -l 8000"
    assert world.starts and world.starts[0] >= 1  # retried once the port was free
    assert all(s.restarts == 0 for s in written)  # never started: not a restart
