"""This machine's CPU and memory, read from ``/proc`` (Linux; empty values elsewhere).

One parser of ``/proc/cpuinfo`` for everything that depends on the CPU: the local target's
defaults (``local.dtype: auto`` needs the instruction-set flags, ``local.reserved_cpus`` the core
count) and the machine description every benchmark report carries.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass


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
