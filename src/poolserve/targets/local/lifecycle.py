"""How a local server lives like a pod's container (pure): probes, restarts, terminations, its status.

The local target's supervisor (:mod:`poolserve.targets.local.supervisor`) plays the kubelet for one model;
everything it decides is here, without a clock, a process or a socket, so it is tested directly:

- :func:`probes_of`: the container's rendered startup/readiness/liveness probes, with Kubernetes'
  defaults for unset fields (``k8s.io/api/core/v1`` ``Probe``: period 10 s, timeout 1 s, failure
  threshold 3, success threshold 1).
- :class:`ProbeCounter`: consecutive successes and failures against the thresholds, as the kubelet's
  prober worker counts them (``pkg/kubelet/prober/worker.go``).
- :class:`CrashLoopBackOff`: the kubelet's restart delays (below).
- :func:`classify_exit`: how a container ended (``Completed``, ``Error``, ``OOMKilled``; exit code
  128+N for signal N, as container runtimes report it).
- :class:`PodStatus`: what the supervisor writes to ``<state_dir>/pods/<model>.json`` and ``status``,
  ``wait`` and ``delete`` read.

CrashLoopBackOff, as in Kubernetes (``pkg/kubelet/kuberuntime/kuberuntime_manager.go`` ``doBackOff``
with ``client-go/util/flowcontrol/backoff.go``; ``backOffPeriod`` 10 s and ``MaxContainerBackOff``
300 s in ``pkg/kubelet/kubelet.go``): the first restart after a container exits is immediate; each
later one waits, from the moment the container exited, 10 s, then 20, 40, ... up to 300 s. A container
that ran longer than twice the maximum (10 min) since its last restart starts over at no delay and 10 s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

ProbeKind = Literal["startup", "readiness", "liveness"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("startup", "readiness", "liveness")
RestartPolicy = Literal["Always", "OnFailure", "Never"]

BACKOFF_INITIAL_S = 10.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_S = 2 * BACKOFF_MAX_S
"""A container that ran this long since its last restart resets the back-off (``hasExpired``)."""
MAX_EVENTS = 20
SIGKILL = 9


@dataclass(frozen=True)
class Probe:
    """One HTTP GET probe (``httpGet`` of a container), with Kubernetes' field defaults."""

    kind: ProbeKind
    path: str = "/health"
    period_s: float = 10.0
    timeout_s: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1
    initial_delay_s: float = 0.0
    termination_grace_period_s: float | None = None
    """The probe's own ``terminationGracePeriodSeconds`` (liveness/startup), else the pod's."""

    def describe(self) -> str:
        """``GET /health every 30s, timeout 10s, 5 failures`` (for notes and events)."""
        return (f"GET {self.path} every {self.period_s:g}s, timeout {self.timeout_s:g}s, "
                f"{self.failure_threshold} failure{'s' if self.failure_threshold != 1 else ''}")


def probes_of(container: Mapping[str, Any]) -> tuple[tuple[Probe, ...], tuple[str, ...]]:
    """The container's probes that can run here (HTTP GET), and a note for each one that cannot.

    Returns:
        ``(probes, notes)``: probes in startup, readiness, liveness order.
    """
    probes: list[Probe] = []
    notes: list[str] = []
    for kind in PROBE_KINDS:
        spec = container.get(f"{kind}Probe")
        if not spec:
            continue
        get = spec.get("httpGet")
        if not isinstance(get, Mapping):
            handler = next((k for k in ("exec", "tcpSocket", "grpc") if k in spec), "unknown")
            notes.append(f"{kind}Probe ({handler}) is not run locally: only httpGet probes are")
            continue
        grace = spec.get("terminationGracePeriodSeconds")
        probes.append(Probe(
            kind=kind, path=str(get.get("path") or "/"),
            period_s=float(spec.get("periodSeconds") or 10), timeout_s=float(spec.get("timeoutSeconds") or 1),
            failure_threshold=int(spec.get("failureThreshold") or 3),
            success_threshold=int(spec.get("successThreshold") or 1),
            initial_delay_s=float(spec.get("initialDelaySeconds") or 0),
            termination_grace_period_s=float(grace) if grace is not None else None,
        ))
    return tuple(probes), tuple(notes)


@dataclass
class ProbeCounter:
    """Consecutive results of one probe and when it is next due."""

    probe: Probe
    next_due: float
    failures: int = 0
    successes: int = 0
    last_error: str | None = None

    def record(self, ok: bool, detail: str | None, now: float) -> Literal["passed", "failed"] | None:
        """Count one result; returns ``passed``/``failed`` when a threshold is reached, else None."""
        self.next_due = now + self.probe.period_s
        if ok:
            self.failures = 0
            self.last_error = None
            self.successes += 1
            return "passed" if self.successes >= self.probe.success_threshold else None
        self.successes = 0
        self.failures += 1
        self.last_error = detail
        return "failed" if self.failures >= self.probe.failure_threshold else None


@dataclass
class CrashLoopBackOff:
    """The kubelet's per-container restart back-off (see the module docstring)."""

    initial_s: float = BACKOFF_INITIAL_S
    max_s: float = BACKOFF_MAX_S
    backoff_s: float | None = None
    last_update: float | None = None

    def _expired(self, finished_at: float) -> bool:
        return self.last_update is None or finished_at - self.last_update > 2 * self.max_s

    def delay(self, finished_at: float) -> float:
        """Seconds to wait, from ``finished_at``, before restarting a container that exited then."""
        if self.backoff_s is None or self._expired(finished_at):
            return 0.0
        return self.backoff_s

    def restarted(self, finished_at: float, now: float) -> None:
        """Record a restart at ``now`` of the container that exited at ``finished_at`` (``Backoff.Next``)."""
        if self.backoff_s is None or self._expired(finished_at):
            self.backoff_s = self.initial_s
        else:
            self.backoff_s = min(self.backoff_s * 2, self.max_s)
        self.last_update = now


def should_restart(policy: RestartPolicy, exit_code: int) -> bool:
    """A pod's ``restartPolicy`` applied to a container that exited with ``exit_code``."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def classify_exit(returncode: int, *, oom_killed: bool = False) -> tuple[str, int, int | None]:
    """``(reason, exit_code, signal)`` of a process that ended with Popen's ``returncode``.

    A negative returncode is a signal: exit code 128+N as container runtimes report it. ``OOMKilled``
    when the kernel's OOM killer acted in the container's cgroup while it ran (what CRI-O and containerd
    check), else ``Completed`` for 0 and ``Error`` for anything else.
    """
    signal = -returncode if returncode < 0 else None
    code = 128 + signal if signal is not None else returncode
    if oom_killed:
        return "OOMKilled", code, signal
    return ("Completed" if code == 0 else "Error"), code, signal


@dataclass(frozen=True)
class Termination:
    """How the last container of a model ended (``lastState.terminated`` of a pod)."""

    reason: str
    """``Completed``, ``Error`` or ``OOMKilled`` (Kubernetes' reasons)."""
    exit_code: int
    signal: int | None
    started_at: float
    finished_at: float
    during_startup: bool
    """It ended before its startup probe passed: a failure to start, not a crash of a ready server."""
    message: str
    """One line: the diagnosis of its log tail, or what killed it (a failed probe, ``delete``)."""
    diagnosis: str | None = None
    killed_by: Literal["liveness", "startup", "delete"] | None = None

    def describe(self) -> str:
        """``Error (exit 1): <message>`` / ``Error (signal 9, exit 137): ...``."""
        how = f"signal {self.signal}, exit {self.exit_code}" if self.signal else f"exit {self.exit_code}"
        return f"{self.reason} ({how}): {self.message}"


@dataclass(frozen=True)
class Running:
    """The container that runs now."""

    pid: int
    pgid: int
    ticks: int | None
    started_at: float
    started: bool = False
    """Its startup probe passed (or it has none)."""
    ready: bool = False
    """Its readiness probe passes."""
    probe_error: str | None = None
    """The last failed probe's result, while one is failing."""


@dataclass(frozen=True)
class Event:
    """Something the supervisor did or saw (a kubelet event)."""

    time: float
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class PodStatus:
    """The supervisor's view of its model, written to ``pods/<model>.json`` whenever it changes."""

    name: str
    uid: str
    supervisor_pid: int
    supervisor_ticks: int | None
    restart_policy: RestartPolicy
    port: int
    restarts: int = 0
    running: Running | None = None
    waiting_reason: str | None = None
    """``ContainerCreating``, ``CrashLoopBackOff``, ``PortInUse`` while no container runs."""
    waiting_message: str | None = None
    restart_at: float | None = None
    last_termination: Termination | None = None
    terminated: bool = False
    """The supervisor is done (deleted, or the restart policy keeps the container down)."""
    events: tuple[Event, ...] = ()
    updated_at: float = 0.0

    def with_event(self, event: Event) -> PodStatus:
        """This status with ``event`` appended (the last :data:`MAX_EVENTS` are kept)."""
        return replace(self, events=(*self.events, event)[-MAX_EVENTS:])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PodStatus:
        """Rebuild from :meth:`to_dict` data.

        Raises:
            KeyError, TypeError, ValueError: when ``data`` is not a pod status.
        """
        d = dict(data)
        run = d.get("running")
        term = d.get("last_termination")
        return cls(**{
            **d,
            "running": Running(**run) if run else None,
            "last_termination": Termination(**term) if term else None,
            "events": tuple(Event(**e) for e in d.get("events") or ()),
        })


def startup_failed(status: PodStatus) -> bool:
    """The model cannot start: its last container ended before its startup probe passed, and none has since.

    A crash loop while starting: what ``wait`` fails fast on.
    """
    term = status.last_termination
    if term is None or not term.during_startup or term.killed_by == "delete":
        return False
    return status.running is None or not status.running.started


def last_lines(lines: Sequence[str], *, max_lines: int = 80, max_bytes: int = 2048) -> list[str]:
    """The end of a log as the kubelet's ``FallbackToLogsOnError`` keeps it: at most 80 lines and 2 KiB.

    Kubernetes ``pkg/kubelet/container`` ``MaxContainerTerminationMessageLogLines`` (80) and
    ``MaxContainerTerminationMessageLogLength`` (2048).
    """
    kept: list[str] = []
    size = 0
    for line in reversed(list(lines)[-max_lines:]):
        size += len(line.encode("utf-8", "replace")) + 1
        if size > max_bytes:
            break
        kept.append(line)
    return kept[::-1]


@dataclass(frozen=True)
class StopRequest:
    """What ``delete`` asks of a supervisor (``pods/<model>.<uid>.stop``): the grace period to use."""

    uid: str
    grace_s: float
