"""A local server seen from outside: its port, its ``/health``, its log.

Ports are chosen free and checked the way servers bind them; the log's tail is read without the
noise a crash leaves, and the startup phase is read from it. Its processes are
:mod:`poolserve.machine`'s (pids with their start time, process groups).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path

from poolserve.errors import LocalRunError
from poolserve.vllm.diagnose import meaningful

TAIL_LINES = 30


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
