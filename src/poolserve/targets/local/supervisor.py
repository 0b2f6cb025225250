"""The supervisor of one local model: a small process that plays the kubelet for its vLLM server.

``deploy --target local`` starts ``python -m poolserve.targets.local.supervisor`` in a session of its own (so
it outlives the CLI and a Ctrl-C at the terminal does not reach it) and sends it a
:class:`SupervisorSpec` on stdin; the server's environment is the supervisor's own, inherited, and
is never written to disk. The supervisor then, like the kubelet for one container:

- starts the server (a new process group) with its output appended to ``logs/<model>.log``; at each
  restart the last log becomes ``logs/<model>.previous.log`` (``poolserve logs --previous``);
- runs the rendered startup, readiness and liveness probes (:mod:`poolserve.targets.local.lifecycle`). The
  startup probe's failures are counted every ``periodSeconds`` as the kubelet counts them, but its
  success is noticed within a second, so a local start is not rounded up to the next period;
- restarts the server when it exits or fails its liveness (or startup) probe, as ``restartPolicy``
  says, after the kubelet's CrashLoopBackOff delay; a liveness kill gets the grace period too;
- records each termination (reason, exit code, signal, the diagnosis of the log tail, and whether the
  kernel's OOM killer acted meanwhile) and writes its :class:`~poolserve.targets.local.lifecycle.PodStatus` to
  ``pods/<model>.json`` whenever something changes;
- stops the server on SIGTERM (from ``delete``, with the grace period of the stop request), or by
  itself when its entry in ``local-state.json`` is gone or names another deployment: the state file is
  the desired state, so a CLI killed half-way through ``delete`` leaves nothing running.

Why a process per model rather than the state file plus a watchdog: the supervisor is the server's
parent, so it gets the real exit status (code, signal) from ``waitpid``, which no other process can;
one model's supervisor failing cannot affect another; and nothing has to be installed or kept running
when no model is deployed.

What it acts with (the server process, the HTTP probes, the kernel's OOM counters, who holds a port)
is :mod:`poolserve.targets.local.container`; tests replace it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Literal

from poolserve.machine import start_ticks
from poolserve.targets.local.container import Container, http_probe, oom_counters, port_user, spawn
from poolserve.targets.local.lifecycle import (
    CrashLoopBackOff,
    Event,
    PodStatus,
    Probe,
    ProbeCounter,
    RestartPolicy,
    Running,
    Termination,
    classify_exit,
    last_lines,
    should_restart,
)
from poolserve.targets.local.process import read_tail
from poolserve.targets.local.state import STATE_FILE, read_stop, write_pod
from poolserve.vllm.diagnose import diagnose

TICK_S = 0.25
FAST_STARTUP_POLL_S = 1.0
DESIRED_CHECK_S = 1.0
KILL_WAIT_S = 5.0
DIAGNOSIS_LINES = 200


@dataclass(frozen=True)
class SupervisorSpec:
    """What the CLI hands a supervisor on stdin (no environment: that is inherited)."""

    name: str
    uid: str
    argv: tuple[str, ...]
    cwd: str
    state_dir: str
    log: str
    port: int
    host: str
    probes: tuple[Probe, ...]
    restart_policy: RestartPolicy
    grace_s: float

    def to_json(self) -> str:
        """The spec as one JSON document."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SupervisorSpec:
        """Parse :meth:`to_json` output.

        Raises:
            ValueError, KeyError, TypeError: when it is not a spec.
        """
        d = json.loads(text)
        return cls(**{**d, "argv": tuple(d["argv"]), "probes": tuple(Probe(**p) for p in d["probes"])})


def new_uid() -> str:
    """A fresh deployment id."""
    return uuid.uuid4().hex[:12]


class Supervisor:
    """One model's kubelet (see the module docstring). ``run()`` returns when it is done."""

    def __init__(
        self,
        spec: SupervisorSpec,
        *,
        spawn_fn: Callable[[Sequence[str], Path, Path], Container] = spawn,
        probe_fn: Callable[[str, int, str, float], tuple[bool, str]] = http_probe,
        port_user_fn: Callable[[str, int], str | None] = port_user,
        oom_fn: Callable[[], tuple[int | None, int | None]] = oom_counters,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        write: Callable[[PodStatus], None] | None = None,
        desired: Callable[[], bool] | None = None,
    ) -> None:
        self.spec = spec
        self.state_dir = Path(spec.state_dir)
        self.log = Path(spec.log)
        self._spawn = spawn_fn
        self._probe = probe_fn
        self._port_user = port_user_fn
        self._oom = oom_fn
        self._now = now
        self._sleep = sleep
        self._write = write or (lambda st: write_pod(self.state_dir, st))
        self._desired = desired or self._entry_is_mine
        self.backoff = CrashLoopBackOff()
        self.container: Container | None = None
        self.counters: dict[str, ProbeCounter] = {}
        self.stop_requested = False
        self._written: PodStatus | None = None
        self._next_desired_check = 0.0
        self._next_fast_poll = 0.0
        self._oom_at_start: tuple[int | None, int | None] = (None, None)
        self._killed_by: Literal["liveness", "startup", "delete"] | None = None
        self._kill_detail = ""
        self.status = PodStatus(name=spec.name, uid=spec.uid, supervisor_pid=os.getpid(),
                                supervisor_ticks=start_ticks(os.getpid()), restart_policy=spec.restart_policy,
                                port=spec.port, waiting_reason="ContainerCreating", updated_at=now())

    # -- the loop -----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop at the next tick (the signal handler's part)."""
        self.stop_requested = True

    def run(self) -> int:
        """Supervise until deleted (exit 0) or until the restart policy keeps the server down (exit 0).

        Exit 1 without starting anything when the first status cannot be written (nobody could see it).
        """
        try:
            self._write(self.status)
        except OSError as err:
            print(f"cannot write the status of {self.spec.name}: {err}; not starting", file=sys.stderr, flush=True)
            return 1
        self._written = self.status
        self._start()
        while True:
            now = self._now()
            if self.stop_requested or not self._still_desired(now):
                self._shutdown()
                return 0
            if self.container is not None:
                rc = self.container.poll()
                if rc is not None:
                    self._exited(rc)
                else:
                    self._run_probes(now)
            if self.container is None:
                if self.status.restart_at is None:
                    self._set(terminated=True)
                    self._publish()
                    return 0
                if self._now() >= self.status.restart_at:
                    self._start()
            self._publish()
            self._sleep(TICK_S)

    def _still_desired(self, now: float) -> bool:
        if now < self._next_desired_check:
            return True
        self._next_desired_check = now + DESIRED_CHECK_S
        return self._desired()

    def _entry_is_mine(self) -> bool:
        """The state file still deploys this model with this uid, not stopped (a missing or unreadable file: no)."""
        try:
            data = json.loads((self.state_dir / STATE_FILE).read_text(encoding="utf-8"))
            entry = data["models"].get(self.spec.name)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return True  # being rewritten or damaged: keep serving; a missing entry is what stops us
        return isinstance(entry, dict) and entry.get("uid") == self.spec.uid and not entry.get("stopped")

    # -- status -------------------------------------------------------------------------------------

    def _set(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]

    def _event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.status = self.status.with_event(Event(self._now(), type_, reason, message))
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {type_} {reason}: {message}", file=sys.stderr, flush=True)

    def _publish(self) -> None:
        if self.status == self._written:
            return
        self.status = replace(self.status, updated_at=self._now())
        try:
            self._write(self.status)
        except OSError as err:
            print(f"cannot write the status: {err}", file=sys.stderr, flush=True)
        self._written = self.status

    # -- the container ------------------------------------------------------------------------------

    def _start(self) -> None:
        now = self._now()
        busy = self._port_user(self.spec.host, self.spec.port)
        if busy is not None:
            # The port was free when poolserve chose it; another program took it since. Retried with the
            # back-off (it may be a previous server still exiting), and `deploy` picks a new port.
            delay = max(self.backoff.delay(now), 1.0)
            self.backoff.restarted(now, now)
            message = f"{self.spec.host}:{self.spec.port} is in use by {busy}"
            if self.status.waiting_reason != "PortInUse":
                self._event("Warning", "PortInUse", message)
            self._set(waiting_reason="PortInUse", waiting_message=message, restart_at=now + delay)
            return
        term = self.status.last_termination
        if term is not None:
            self.backoff.restarted(term.finished_at, now)
            self._set(restarts=self.status.restarts + 1)
            with contextlib.suppress(OSError):
                self.log.replace(self.log.with_name(f"{self.spec.name}.previous.log"))
        self._oom_at_start = self._oom()
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            container = self._spawn(self.spec.argv, Path(self.spec.cwd), self.log)
        except OSError as err:
            message = f"cannot start {self.spec.argv[0]}: {err.strerror or err}"
            self._event("Warning", "Failed", message)
            self._record(Termination(reason="ContainerCannotRun", exit_code=128, signal=None, started_at=now,
                                     finished_at=now, during_startup=True, message=message))
            return
        self.container = container
        self._killed_by = None
        started = not any(p.kind == "startup" for p in self.spec.probes)
        self.counters = {p.kind: ProbeCounter(p, next_due=now + p.initial_delay_s) for p in self.spec.probes}
        self._next_fast_poll = now + next((p.initial_delay_s for p in self.spec.probes if p.kind == "startup"), 0.0)
        self._set(running=Running(pid=container.pid, pgid=container.pgid, ticks=container.ticks, started_at=now,
                                  started=started, ready=False),
                  waiting_reason=None, waiting_message=None, restart_at=None)
        self._event("Normal", "Started", f"started the server (pid {container.pid})"
                    + (f", restart {self.status.restarts}" if self.status.restarts else ""))

    def _run_probes(self, now: float) -> None:
        run = self.status.running
        assert run is not None and self.container is not None
        if not run.started:
            self._startup(now, run)
            return
        for kind in ("liveness", "readiness"):
            counter = self.counters.get(kind)
            if counter is None or now < counter.next_due:
                continue
            p = counter.probe
            ok, detail = self._probe(self.spec.host, self.spec.port, p.path, p.timeout_s)
            outcome = counter.record(ok, detail, self._now())
            if kind == "readiness":
                if outcome == "passed" and not run.ready:
                    self._set(running=replace(run, ready=True, probe_error=None))
                elif outcome == "failed" and run.ready:
                    self._event("Warning", "Unhealthy", f"Readiness probe failed: {detail}")
                    self._set(running=replace(run, ready=False, probe_error=f"readiness: {detail}"))
                run = self.status.running or run
            elif outcome == "failed":
                self._event("Warning", "Unhealthy", f"Liveness probe failed {counter.failures} times: {detail}")
                self._kill("liveness", p, detail)
                return
            elif not ok:
                self._set(running=replace(run, probe_error=f"liveness: {detail}"))
                run = self.status.running or run
        if "readiness" not in self.counters and not run.ready:
            self._set(running=replace(run, ready=True))  # no readiness probe: ready once started

    def _startup(self, now: float, run: Running) -> None:
        counter = self.counters["startup"]
        p = counter.probe
        counted = now >= counter.next_due
        if not counted and now < self._next_fast_poll:
            return
        self._next_fast_poll = now + min(FAST_STARTUP_POLL_S, p.period_s)
        ok, detail = self._probe(self.spec.host, self.spec.port, p.path, p.timeout_s)
        if ok:
            counter.record(True, detail, self._now())
            self._set(running=replace(run, started=True, ready=True, probe_error=None))
            self._event("Normal", "Ready", f"startup probe passed after {self._now() - run.started_at:.1f}s")
            for kind in ("readiness", "liveness"):
                if kind in self.counters:
                    self.counters[kind].next_due = self._now() + self.counters[kind].probe.period_s
            return
        if not counted:
            return  # a fast poll: only the probe's own period counts failures
        if counter.record(False, detail, now) == "failed":
            self._event("Warning", "Unhealthy", f"Startup probe failed {counter.failures} times: {detail}")
            self._kill("startup", p, detail)

    def _kill(self, why: Literal["liveness", "startup"], probe: Probe, detail: str) -> None:
        """Kill a container that failed its probe, with the grace period, then let the restart policy decide."""
        grace = probe.termination_grace_period_s if probe.termination_grace_period_s is not None \
            else self.spec.grace_s
        self._killed_by = why
        self._kill_detail = detail
        self._event("Normal", "Killing", f"Container failed {why} probe ({detail}), will be "
                    + ("restarted" if self.spec.restart_policy != "Never" else "stopped (restartPolicy Never)"))
        rc = self._terminate(grace)
        self._exited(rc)

    def _terminate(self, grace_s: float) -> int:
        """SIGTERM the server, SIGKILL its group once it exited or after ``grace_s``; returns its returncode."""
        c = self.container
        assert c is not None
        c.signal_leader(signal.SIGTERM)
        deadline = self._now() + grace_s
        while c.poll() is None and self._now() < deadline:
            self._sleep(0.1)
        if c.poll() is None:
            self._event("Warning", "Killing", f"still running {grace_s:g}s after SIGTERM: SIGKILL")
        c.signal_group(signal.SIGKILL)
        end = self._now() + KILL_WAIT_S
        while (c.poll() is None or c.members()) and self._now() < end:
            self._sleep(0.05)
        rc = c.poll()
        return rc if rc is not None else -signal.SIGKILL

    def _exited(self, rc: int) -> None:
        c = self.container
        run = self.status.running
        assert c is not None and run is not None
        c.signal_group(signal.SIGKILL)  # PID 1 is gone: the rest of the container goes with it
        now = self._now()
        cgroup0, host0 = self._oom_at_start
        cgroup1, host1 = self._oom()
        oom = cgroup0 is not None and cgroup1 is not None and cgroup1 > cgroup0
        host_oom = host0 is not None and host1 is not None and host1 > host0
        reason, code, sig = classify_exit(rc, oom_killed=oom)
        tail = read_tail(self.log, DIAGNOSIS_LINES)
        diag = diagnose(last_lines(tail)) or diagnose(tail)
        killed_by = self._killed_by
        if killed_by == "delete":
            message = "stopped by poolserve delete"
        elif killed_by is not None:
            message = f"killed after its {killed_by} probe failed {self._failures(killed_by)}: {self._kill_detail}"
        elif diag is not None:
            message = str(diag)
        else:
            message = f"exited; no known cause in its log ({self.log.name}, `poolserve logs --previous`)"
        if oom:
            message += f"; the kernel OOM killer acted in this cgroup while it ran (oom_kill {cgroup0} -> {cgroup1})"
        elif host_oom and killed_by != "delete":
            message += (f"; the kernel OOM killer acted on this host while it ran (oom_kill {host0} -> {host1}): "
                        "`dmesg` names the process")
        term = Termination(reason=reason, exit_code=code, signal=sig, started_at=run.started_at, finished_at=now,
                           during_startup=not run.started, message=message, diagnosis=str(diag) if diag else None,
                           killed_by=killed_by)
        self.container = None
        self._event("Warning" if killed_by != "delete" else "Normal", "Terminated", term.describe())
        self._record(term)

    def _failures(self, kind: str) -> str:
        counter = self.counters.get(kind)
        n = counter.failures if counter is not None else 0
        return f"{n} time{'s' if n != 1 else ''}"

    def _record(self, term: Termination) -> None:
        """A container ended: keep it as the last termination and schedule the restart the policy asks for."""
        restart = term.killed_by != "delete" and should_restart(self.spec.restart_policy, term.exit_code)
        if not restart:
            self._set(running=None, last_termination=term, restart_at=None, waiting_reason=None, waiting_message=None)
            return
        delay = self.backoff.delay(term.finished_at)
        waiting = "CrashLoopBackOff" if delay else None
        message = (f"back-off {delay:g}s restarting failed container (restarts {self.status.restarts})"
                   if delay else None)
        if delay:
            self._event("Warning", "BackOff", message or "")
        self._set(running=None, last_termination=term, restart_at=term.finished_at + delay, waiting_reason=waiting,
                  waiting_message=message)

    def _shutdown(self) -> None:
        """Stop for good: the server gets SIGTERM and the stop request's grace period (else the spec's)."""
        request = read_stop(self.state_dir, self.spec.name, self.spec.uid)
        grace = request.grace_s if request is not None else self.spec.grace_s
        if self.container is not None:
            self._killed_by = "delete"
            self._event("Normal", "Killing", f"stopping the server (SIGTERM, grace period {grace:g}s)")
            self._publish()
            rc = self._terminate(grace)
            self._exited(rc)
        self._set(terminated=True, restart_at=None, waiting_reason=None, waiting_message=None)
        self._publish()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m poolserve.targets.local.supervisor``: read the spec from stdin, supervise, exit when done."""
    del argv
    # deploy holds SIGINT/SIGTERM off while it starts us, and a signal mask survives exec.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    spec = SupervisorSpec.from_json(sys.stdin.read())
    sup = Supervisor(spec)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        sup.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
