"""What the commands share: their options, the invocation's :class:`Session`, consoles and progress display.

Data goes to stdout, narration to stderr, so ``poolserve render -o - | oc apply -f -`` works. Tables
fit the console's width: COLUMNS, else the terminal's (stdout's or stderr's), else ``PIPE_WIDTH`` when
both are piped (scripts, CI logs). Narration, errors and plain lines are never wrapped.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from poolserve.actions.common import Edges, Source, Where
from poolserve.config.defaults import CONFIG_ENV, DEFAULT_CONFIG

if TYPE_CHECKING:
    from rich.console import Console

    from poolserve.targets.base import ProgressFn

PIPE_WIDTH = 100
CONFIG = Path(DEFAULT_CONFIG)


class Session:
    """One invocation's edges, consoles and ``--debug`` (the click context's ``obj``)."""

    def __init__(self, edges: Edges, *, out: Console | None = None, err: Console | None = None,
                 debug: bool = False) -> None:
        self.edges = edges
        self.debug = debug
        self._out = out
        self._err = err

    def invocation(self, *, debug: bool) -> Session:
        """A session for one run of the app (consoles made for it, unless some were given)."""
        return Session(self.edges, out=self._out, err=self._err, debug=debug)

    def out(self) -> Console:
        """The console for data (stdout)."""
        if self._out is None:
            self._out = _console(stderr=False)
        return self._out

    def err(self) -> Console:
        """The console for narration and errors (stderr)."""
        if self._err is None:
            self._err = _console(stderr=True)
        return self._err


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # A terminal: rich measures it at each print (COLUMNS first), so `status --watch` follows a resize.
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else console_width())


def console_width() -> int:
    """The width tables fit when the output is piped: COLUMNS, else the terminal's, else ``PIPE_WIDTH``.

    The terminal is stdout's or stderr's: ``poolserve test | less`` still has its stderr on the
    terminal the table is read in.
    """
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    for fd in (1, 2):
        try:
            width = os.get_terminal_size(fd).columns
        except (OSError, ValueError):
            continue
        if width > 0:
            return width
    return PIPE_WIDTH


def session(ctx: typer.Context | Any) -> Session:
    """The session of the running command."""
    obj = ctx.find_root().obj
    assert isinstance(obj, Session), "commands run inside create_app()'s app"
    return obj


ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Config file.", envvar=CONFIG_ENV,
                                         show_default=True, metavar="FILE")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", help="Override a config key, e.g. --set namespace=dev (repeatable).", metavar="KEY=VALUE")]
TargetOpt = Annotated[str | None, typer.Option(
    "--target", "-t", help="cluster (KServe) or local (vLLM processes here). Default: $POOLSERVE_TARGET, else "
    "cluster.", show_default=False, metavar="NAME")]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context (cluster target).",
                                                metavar="NAME")]
KubeconfigOpt = Annotated[str | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", metavar="FILE",
                                                   help="kubeconfig file (cluster target).")]
NamesArg = Annotated[list[str] | None, typer.Argument(help="Model names from the config (default: all).",
                                                      show_default=False, metavar="NAME")]
TimeoutOpt = Annotated[str | None, typer.Option(
    "--timeout", help="How long to wait, e.g. 900s, 15m. Default: 15m on a cluster; locally the config's "
    "local.startup_timeout_s (600 s).", show_default=False, metavar="DURATION")]


class Output(enum.StrEnum):
    """``-o`` values (a str enum: compares equal to the plain strings)."""

    table = "table"
    json = "json"
    yaml = "yaml"


class TableOrJson(enum.StrEnum):
    """``-o`` values of commands without a YAML form."""

    table = "table"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table, json or yaml.", metavar="FORMAT")]
TableOrJsonOpt = Annotated[TableOrJson, typer.Option("--output", "-o", help="table or json.", metavar="FORMAT")]


def source(config: Path, sets: list[str] | None) -> Source:
    """``-c`` and ``--set`` as the actions take them."""
    return Source(config, tuple(sets or ()))


def where(target: str | None, context: str | None = None, kubeconfig: str | None = None) -> Where:
    """``--target``, ``--context`` and ``--kubeconfig`` as the actions take them."""
    return Where(target, context, kubeconfig)


@contextmanager
def progress_display(err: Console) -> Iterator[ProgressFn]:
    """A progress bar on stderr; yields the callback targets call while they wait (one line each when piped)."""
    from rich.markup import escape

    if not err.is_terminal:
        last: dict[str, str] = {}

        def plain(message: str, fraction: float | None) -> None:
            if last.get("m") != message:
                last["m"] = message
                err.print(f"… {escape(message)}", highlight=False)  # reasons may hold "[...]"

        yield plain
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("starting", total=1.0)

        def update(message: str, fraction: float | None) -> None:
            bar.update(task, description=escape(message), completed=fraction if fraction is not None else 0,
                       total=1.0 if fraction is not None else None)

        yield update
