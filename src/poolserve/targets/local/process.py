"""A vLLM server process on this machine: spawn it, wait for ``/health``, stop its process group.

:class:`VllmProcess` runs an argv in its own session (so it, the EngineCore and the workers it
spawns share one process group that ``stop`` can end as a whole), logs to a file, and waits for
``GET /health`` == 200 against a monotonic deadline, checking before it sleeps and failing at once
with the log tail and a :func:`poolserve.vllm.diagnose.diagnose` line when the process exits. A process
started by another ``poolserve`` invocation is re-attached from its pid/pgid (see
:meth:`VllmProcess.attach`); pids are matched with their start time so a recycled pid is never
mistaken for (or killed as) ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from poolserve.errors import LocalRunError, LocalStartError, NotReady
from poolserve.targets.base import ProgressFn
from poolserve.vllm.diagnose import diagnose, meaningful

TAIL_LINES = 30
HealthCheck = Callable[[str], bool]
"""``healthy(url) -> bool``: True when ``GET url`` answered 200."""


def free_port(host: str = "127.0.0.1", *, avoid: Sequence[int] = ()) -> int:
    """A TCP port nobody listens on right now (the OS picks it; ``avoid`` skips ports we handed out)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if port not in avoid:
            return port
    raise LocalRunError(f"no free TCP port on {host}")


def port_free(host: str, port: int) -> bool:
    """Nothing listens on ``host:port``: binding it succeeds with ``SO_REUSEADDR``, as servers bind.

    Without ``SO_REUSEADDR`` the connections of a server that just stopped (TIME_WAIT, 60 s on Linux)
    make its port look taken, and a restarted server would move to another port for nothing.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def http_healthy(url: str, *, timeout_s: float = 2.0) -> bool:
    """``GET url`` answered 200 (connection errors and timeouts count as not healthy)."""
    import httpx  # here, not at import: the supervisor process imports this module and never needs httpx

    try:
        # trust_env=False: an http_proxy from the environment must not intercept 127.0.0.1.
        return httpx.get(url, timeout=timeout_s, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def read_tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` meaningful lines of a log file (empty when it does not exist).

    Blank lines and the leak reports Python prints at exit after a crash (:func:`poolserve.vllm.diagnose.is_noise`)
    are left out: they once filled a 30-line tail and hid vLLM's EngineDeadError.
    """
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return [ln for ln in meaningful(text.splitlines()) if ln.strip()][-lines:]


# vLLM's startup, as its log shows it (0.32, CPU and GPU): (substring, phase, fraction).
_PHASES: tuple[tuple[str, str, float], ...] = (
    ("non-default args", "parsing config", 0.05),
    ("Resolved architecture", "resolving the model", 0.15),
    ("Initializing a V1 LLM engine", "starting the engine", 0.3),
    ("Starting to load model", "loading weights", 0.45),
    ("Loading weights took", "weights loaded", 0.6),
    # Not a bare "torch.compile": eager mode logs "disabling torch.compile" early on.
    ("Warming up model for the compilation", "compiling (torch.compile)", 0.65),  # CPU
    ("Dynamo bytecode transform", "compiling (torch.compile)", 0.65),  # GPU
    ("init engine", "warming up", 0.85),
    ("Starting vLLM server on", "starting the HTTP server", 0.95),
    ("Application startup complete", "ready", 1.0),
)


def startup_phase(lines: Sequence[str]) -> tuple[str, float] | None:
    """The latest startup phase a vLLM log tail shows, as ``(label, fraction)``, or None."""
    best: tuple[str, float] | None = None
    for line in lines:
        for needle, label, fraction in _PHASES:
            if needle in line and (best is None or fraction >= best[1]):
                best = (label, fraction)
    return best


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgid, start time in clock ticks) from /proc, or None when the pid does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[2]), int(fields[19])


_HAS_PROC = Path("/proc/self/stat").exists()


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), to tell it from a later process with the same pid."""
    st = _stat(pid) if _HAS_PROC else None
    return st[2] if st else None


def pid_alive(pid: int, ticks: int | None = None) -> bool:
    """``pid`` runs (not a zombie) and, when ``ticks`` is given, is the process that started then."""
    if _HAS_PROC:
        st = _stat(pid)
        return st is not None and st[0] not in ("Z", "X") and (ticks is None or st[2] == ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids in process group ``pgid``."""
    if not _HAS_PROC:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    out: list[int] = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
                out.append(int(entry.name))
    return sorted(out)


@dataclass(frozen=True)
class StopResult:
    """What :meth:`VllmProcess.stop` did."""

    was_running: bool
    killed: bool
    """True when SIGTERM was not enough and the group got SIGKILL."""


class VllmProcess:
    """One vLLM server (or any HTTP server with a ``/health`` route) in its own process group."""

    def __init__(self, *, pid: int, pgid: int, log_path: Path, health_url: str, ticks: int | None = None,
                 popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.pgid = pgid
        self.log_path = log_path
        self.health_url = health_url
        self.ticks = ticks
        self._popen = popen

    @classmethod
    def spawn(cls, argv: Sequence[str], env: Mapping[str, str], log_path: Path, health_url: str, *,
              cwd: Path | None = None) -> VllmProcess:
        """Start ``argv`` with exactly ``env``, stdout+stderr appended to ``log_path``, in a new session.

        Raises:
            LocalRunError: when the executable cannot be started at all.
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            try:
                popen = subprocess.Popen(
                    list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
            except OSError as err:
                raise LocalRunError(f"cannot start {argv[0]}: {err.strerror or err}") from err
        return cls(pid=popen.pid, pgid=popen.pid, log_path=log_path, health_url=health_url,
                   ticks=start_ticks(popen.pid), popen=popen)

    @classmethod
    def attach(cls, *, pid: int, pgid: int, log_path: Path, health_url: str, ticks: int | None) -> VllmProcess:
        """A process another invocation started (from the local state file)."""
        return cls(pid=pid, pgid=pgid, log_path=log_path, health_url=health_url, ticks=ticks)

    def returncode(self) -> int | None:
        """The exit code when we started it and it has exited; None otherwise."""
        return self._popen.poll() if self._popen is not None else None

    def alive(self) -> bool:
        """The server process (the group leader) still runs."""
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_alive(self.pid, self.ticks)

    def members(self) -> list[int]:
        """Live pids of its process group (server, EngineCore, workers), unless the pgid was recycled."""
        if self._popen is not None:
            self._popen.poll()  # reap the leader so it does not linger as a zombie
        if not self.alive() and pid_alive(self.pgid):
            return []  # the leader's pid now belongs to another process: not our group any more
        return group_members(self.pgid)

    def log_tail(self, lines: int = TAIL_LINES) -> list[str]:
        """The last lines of its log."""
        return read_tail(self.log_path, lines)

    def wait_ready(
        self,
        timeout_s: float,
        *,
        label: str = "vLLM",
        progress: ProgressFn | None = None,
        healthy: HealthCheck = http_healthy,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.monotonic,
        interval_s: float = 1.0,
    ) -> float:
        """Block until ``/health`` answers 200; return the seconds it took.

        Raises:
            LocalStartError: the process exited first (message: exit code, diagnosis, log tail).
            NotReady: ``timeout_s`` passed; the process keeps running.
        """
        start = now()
        deadline = start + timeout_s
        while True:
            if not self.alive():
                raise self.exit_error(label)
            if healthy(self.health_url):
                if progress:
                    progress(f"{label}: ready", 1.0)
                return now() - start
            if now() >= deadline:
                tail = self.log_tail(5)
                raise NotReady(
                    f"{label}: not ready after {timeout_s:.0f}s (pid {self.pid} still starting; last log line: "
                    f"{tail[-1] if tail else '(empty log)'}); see {self.log_path}"
                )
            if progress:
                phase = startup_phase(self.log_tail(200))
                text, fraction = phase if phase else ("starting", None)
                # No seconds in the message: the CLI prints each new message when stderr is not a TTY.
                progress(f"{label}: {text}", fraction)
            sleep(min(interval_s, max(0.0, deadline - now())))

    def exit_error(self, label: str) -> LocalStartError:
        """The error for a server that exited while starting: exit code, diagnosis and log tail."""
        rc = self.returncode()
        tail = self.log_tail()
        diag = diagnose(tail)
        how = f"exited with code {rc}" if rc is not None else "exited"
        cause = f": {diag}" if diag else f" (no known cause recognised; see {self.log_path})"
        body = "\n".join(f"  | {ln}" for ln in tail) if tail else "  | (empty log)"
        message = f"{label}: vLLM {how} while starting{cause}\n  last log lines ({self.log_path}):\n{body}"
        return LocalStartError(message, diagnosis=diag, log_tail=tail, returncode=rc)

    def stop(self, grace_s: float = 30.0, *, sleep: Callable[[float], None] = time.sleep,
             now: Callable[[], float] = time.monotonic) -> StopResult:
        """Stop the server as the kubelet stops a container.

        SIGTERM goes to the server alone (a container's PID 1), so it can finish the requests in flight
        and shut its engine down itself; once it has exited, whatever is left of its process group gets
        SIGKILL (the kernel kills a container's other processes when PID 1 exits); after ``grace_s`` the
        whole group gets SIGKILL.
        """
        if not self.members():
            return StopResult(was_running=False, killed=False)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        deadline = now() + grace_s
        killed = False
        while self.members():
            if not self.alive() or now() >= deadline:
                killed = self.alive()  # the grace period ran out with the server still running
                self._signal(signal.SIGKILL)
                kill_deadline = now() + 5.0
                while self.members() and now() < kill_deadline:
                    sleep(0.05)
                break
            sleep(0.1)
        return StopResult(was_running=True, killed=killed)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)
        if self._popen is not None:
            self._popen.poll()
