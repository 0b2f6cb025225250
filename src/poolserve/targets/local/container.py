"""The supervisor's edges: the server process it runs, the HTTP probes it makes, what the kernel counts.

:class:`~poolserve.targets.local.supervisor.Supervisor` decides; these act: :func:`spawn` starts the
server in a session (process group) of its own with its output on the log, :class:`Container` signals
it and lists its group, :func:`http_probe` makes one probe as the kubelet's prober does,
:func:`oom_counters` reads the kernel's OOM kill counts, and :func:`port_user` names who holds a port.
Tests of the supervisor replace them.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from poolserve.machine import group_members, start_ticks
from poolserve.targets.local.process import port_free


class Container:
    """The running server: a process group started with a log file."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid
        self.ticks = start_ticks(popen.pid)

    def poll(self) -> int | None:
        """Popen's returncode (negative: the signal), None while it runs."""
        return self.popen.poll()

    def members(self) -> list[int]:
        """Live pids of its process group."""
        self.popen.poll()
        return group_members(self.pgid)

    def signal_leader(self, sig: int) -> None:
        """Send ``sig`` to the server process alone (a container's PID 1)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to its whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)


def spawn(argv: Sequence[str], cwd: Path, log: Path) -> Container:
    """Start ``argv`` in a new session, stdout+stderr appended to ``log``, with this process's environment.

    Raises:
        OSError: the executable cannot be run, or the log cannot be opened.
    """
    with log.open("ab") as out:
        os.chmod(log, 0o600)
        popen = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return Container(popen)


def http_probe(host: str, port: int, path: str, timeout_s: float) -> tuple[bool, str]:
    """One HTTP GET as the kubelet's prober makes it: 200-399 passes. Returns ``(passed, what happened)``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"User-Agent": "poolserve-probe"})
        status = conn.getresponse().status
    except TimeoutError:
        return False, f"GET {path}: no answer within {timeout_s:g}s"
    except ConnectionRefusedError:
        return False, f"GET {path}: connection refused"
    except (OSError, http.client.HTTPException) as err:
        return False, f"GET {path}: {type(err).__name__}: {err}"
    finally:
        conn.close()
    return 200 <= status < 400, f"GET {path}: HTTP {status}"


def _read_int(path: str, key: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
    except (OSError, ValueError):
        return None
    return None


def oom_counters() -> tuple[int | None, int | None]:
    """``(this cgroup's oom_kill count, the host's)``, None where unreadable.

    From cgroup v2 ``memory.events``, v1 ``memory.oom_control``, and ``/proc/vmstat`` (Linux >= 4.13).
    """
    cgroup: int | None = None
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            entries = [line.strip().split(":", 2) for line in f if line.strip()]
    except OSError:
        entries = []
    for hid, controllers, rel in entries:
        if hid == "0" and controllers == "":
            cgroup = _read_int(f"/sys/fs/cgroup{rel}/memory.events", "oom_kill")
        elif "memory" in controllers.split(","):
            cgroup = _read_int(f"/sys/fs/cgroup/memory{rel}/memory.oom_control", "oom_kill")
        if cgroup is not None:
            break
    return cgroup, _read_int("/proc/vmstat", "oom_kill")


def port_user(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound now; else who holds it (``pid 123: python -m http.server``)."""
    if port_free(host, port):
        return None
    return listener(port) or "another program"


def listener(port: int) -> str | None:
    """``pid N: command`` of the process listening on TCP ``port`` (this user's processes only)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    if not inodes:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
            for fd in fds:
                link = os.readlink(f"/proc/{entry.name}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                        "utf-8", "replace").strip()
                    return f"pid {entry.name}: {cmd[:120]}"
        except OSError:
            continue
    return None
