"""How commands print results: ``-o json``/``yaml`` or a summary and a table, and the tables themselves.

:func:`print_result` is the one place a command's ``-o`` is honoured; the other functions turn
results into rich renderables, plain lines, JSON-ready data and YAML (returning values, printing nothing).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from poolserve.config import yamlio
from poolserve.targets.base import DeleteResult, DeployResult, ModelStatus

if TYPE_CHECKING:
    from poolserve.cli.options import Session


def print_result(s: Session, output: str, result: Any, *, summary: RenderableType | None = None,
                 table: RenderableType | list[str] | None = None, notes: Sequence[RenderableType] = ()) -> None:
    """Print a command's result the way ``-o`` asks.

    Args:
        s: the running command's session (its consoles).
        output: ``table``, ``json`` or ``yaml``.
        result: what ``-o json`` and ``-o yaml`` serialize on stdout (see :func:`dumps`); nothing else is
            printed then.
        summary: with ``-o table``, printed first, on stderr.
        table: with ``-o table``, printed next, on stdout: a rich renderable, or plain lines echoed as they are.
        notes: with ``-o table``, printed last, on stderr.
    """
    if output != "table":
        typer.echo(dumps(result, output), nl=False)
        return
    if summary is not None:
        s.err().print(summary)
    if isinstance(table, list):
        for line in table:
            typer.echo(line)
    elif table is not None:
        s.out().print(table)
    for note in notes:
        s.err().print(note)


def to_data(value: Any) -> Any:
    """Dataclasses (and lists/tuples of them) -> plain JSON-able data; secrets (``token``) dropped."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "token"}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    return value


def dumps(value: Any, fmt: str) -> str:
    """Serialize results as ``json`` or ``yaml``."""
    data = to_data(value)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yamlio.dump(data)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


_PHASE_STYLE = {"Ready": "green", "Loading": "yellow", "Failed": "bold red", "Stopped": "dim",
                "Terminating": "yellow", "NotDeployed": "dim", "Unknown": "yellow"}


def _replicas(s: ModelStatus) -> str:
    """``ready/desired``; an autoscaled model adds its range and what it scales on: ``2/3 (1-4 queue 16/replica)``."""
    text = f"{s.replicas_ready}/{s.replicas_desired}"
    if s.autoscaler:
        text += f" ({s.replicas_min}-{s.replicas_max} {s.autoscaler})"
    return text


def status_table(statuses: Sequence[ModelStatus]) -> RenderableType:
    """The ``poolserve status`` table; reasons, the last termination and evidence follow under it."""
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "TARGET", "STATUS", "REPLICAS", "RESTARTS", "RUNTIME", "MODEL", "URL", "AGE"):
        # Never truncate ids and URLs: users copy them. Narrow terminals wrap them instead.
        table.add_column(column, overflow="fold", no_wrap=column not in ("MODEL", "URL", "RUNTIME"))
    notes: list[RenderableType] = []
    for s in statuses:
        table.add_row(
            s.name, s.target, Text(s.phase, style=_PHASE_STYLE.get(s.phase, "")),
            _replicas(s), "-" if s.restarts is None else str(s.restarts), s.runtime or "-", s.served_model or "-",
            s.route_url or s.url or "-", _age(s.age_s),
        )
        if s.reason:
            notes.append(Text(f"{s.name}: {s.reason}", style="red" if s.phase == "Failed" else "yellow"))
        if s.last_termination and s.phase != "Failed" and s.last_termination not in (s.reason or ""):
            notes.append(Text(f"{s.name}: last termination: {s.last_termination}", style="dim"))
        if s.reason:
            notes.extend(Text(f"  {line}", style="dim") for line in s.details)
        notes.extend(Text(f"{s.name}: warning: {w}", style="yellow") for w in s.warnings)
    return Group(table, *notes) if notes else table


def deploy_summary(result: DeployResult | DeleteResult) -> RenderableType:
    """One line per object changed, then notes."""
    lines: list[RenderableType] = []
    suffix = f" (dry run: {result.dry_run})" if isinstance(result, DeployResult) and result.dry_run else ""
    for c in result.changes:
        ns = f"{c.namespace}/" if c.namespace else ""
        note = f"  [{c.note}]" if c.note else ""
        style = {"unchanged": "dim", "kept": "yellow", "absent": "dim"}.get(c.action, "")
        lines.append(Text(f"{c.kind.lower()}/{ns}{c.name} {c.action}{suffix}{note}", style=style))
    lines.extend(Text(f"note: {n}", style="cyan") for n in result.notes)
    if isinstance(result, DeployResult):
        lines.extend(Text(f"warning: {w}", style="yellow") for w in result.warnings)
    return Group(*lines)


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain aligned columns, the last one unpadded: ids and paths stay whole (copy-pasteable) at any width."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]) for r in rows]
