"""How commands print results: ``-o json``/``yaml`` or a summary and a table, and the tables themselves.

:func:`print_result` is the one place a command's ``-o`` is honoured; the other functions turn
results into rich renderables, plain lines, JSON-ready data and YAML (returning values, printing nothing).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import typer
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
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


WRAP_MIN = 10
"""A long column gives way down to this width (or its natural width, if narrower), not further."""


class FitTable(Table):
    """A table that fits the console: long columns wrap first, then short columns' headers; values are never cut.

    rich, when a table is too wide, narrows its wrapping columns down to nothing (they vanish) and then
    every column evenly (cutting names and numbers). Here the long columns (``wrap`` in :func:`fit_table`)
    give way first, widest first, down to ``WRAP_MIN``; then the short columns' headers wrap between
    words, down to their widest value. A table that still does not fit runs long: nothing is cut.
    """

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # rich's own count of the space borders and cell padding take.
        frame = self._extra_width + sum(self._get_padding_width(i) for i in range(len(self.columns)))
        widths = self._fitted_widths(options.max_width - frame)
        if widths is None:
            yield from super().__rich_console__(console, options)
            return
        try:
            for column, width in zip(self.columns, widths, strict=True):
                column.width = width
            # Too wide even so: the lines run long rather than rich cutting every column evenly.
            yield from super().__rich_console__(console, options.update_width(max(options.max_width,
                                                                                  sum(widths) + frame)))
        finally:
            for column in self.columns:
                column.width = None

    def _fitted_widths(self, room: int) -> list[int] | None:
        """Each column's width (padding excluded) within ``room``; None when the table fits as it is."""
        widths = [max(_width(c.header), *(_width(cell) for cell in c.cells)) for c in self.columns]
        excess = sum(widths) - room
        if excess <= 0:
            return None
        floors = [min(w, WRAP_MIN) if not c.no_wrap else
                  max([*(cell_len(word) for word in _plain(c.header).split()), *(_width(cell) for cell in c.cells)])
                  for c, w in zip(self.columns, widths, strict=True)]
        for wraps in (True, False):  # the long columns first
            group = [i for i, c in enumerate(self.columns) if c.no_wrap != wraps]
            while excess > 0:
                wider = [i for i in group if widths[i] > floors[i]]
                if not wider:
                    break
                widths[max(wider, key=lambda i: widths[i])] -= 1
                excess -= 1
        return widths


def _width(cell: RenderableType) -> int:
    """The width of a cell's longest line."""
    return max((cell_len(line) for line in _plain(cell).splitlines()), default=0)


def _plain(cell: RenderableType) -> str:
    """The text a str (markup) or Text cell shows; other renderables count as empty."""
    if isinstance(cell, Text):
        return cell.plain
    return Text.from_markup(cell).plain if isinstance(cell, str) else ""


def fit_table(*columns: str, wrap: Collection[str] = (), **options: Any) -> Table:
    """A table that fits the console's width (COLUMNS, the terminal's, or 100 columns piped).

    Args:
        columns: the headers.
        wrap: headers of the long columns (free text, ids, URLs): they wrap between words and fold longer
            words, so nothing is cut off. The other columns (names, states, numbers) stay on one line;
            their headers wrap between words when the console is too narrow for them.
        options: more :class:`rich.table.Table` options (default: no box, no padding at the edges).
    """
    t = FitTable(**{"box": None, "pad_edge": False, **options})
    for column in columns:
        short = column not in wrap
        t.add_column(Text(column, no_wrap=False) if short else column, overflow="fold", no_wrap=short)
    return t


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
    # Never truncate ids and URLs: users copy them. Narrow terminals wrap them instead.
    table = fit_table("NAME", "TARGET", "STATUS", "REPLICAS", "RESTARTS", "RUNTIME", "MODEL", "URL", "AGE",
                 wrap=("MODEL", "URL", "RUNTIME"))
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
    """Plain aligned columns, the last one unpadded: ids and paths stay whole (copy-pasteable) at any width.

    The one kind of table that does not fit the console: ``cache list`` and ``cache warm`` print model
    ids and cache paths that scripts and users copy whole.
    """
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]) for r in rows]
