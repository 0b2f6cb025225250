"""The typer app, shared options and the error boundary.

Command modules (one per command, in this package) register on :data:`app`; they parse options,
call core or action functions, and hand results to :mod:`poolserve.output`. No logic lives here.
"""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from poolserve.errors import PoolserveError, SpecError

app = typer.Typer(
    name="poolserve",
    help="Deploy vLLM pooling models (embeddings, rerankers) on KServe / OpenShift AI, run them locally, "
    "and prove they work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cache_app = typer.Typer(help="The model cache: import local model dirs, list, warm the cluster PVC.",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")

# Data on stdout, narration on stderr: `poolserve render -o - | oc apply -f -` works.
# Piped output (scripts, CI logs) gets whole lines instead of rich's 80-column fallback, which folds
# tables of model ids and URLs into unreadable columns.
_PIPE_WIDTH = 200
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Config file.", envvar="POOLSERVE_CONFIG", show_default=True)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set namespace=dev (repeatable)."),
]
TargetOpt = Annotated[
    str | None,
    typer.Option("--target", "-t", help="cluster (KServe) or local (vLLM processes here). "
                 "Default: $POOLSERVE_TARGET, else cluster.", show_default=False),
]
class Output(enum.StrEnum):
    """``-o`` values (a str enum: compares equal to the plain strings)."""

    table = "table"
    json = "json"
    yaml = "yaml"


class TableOrJson(enum.StrEnum):
    """``-o`` values of commands without a YAML form."""

    table = "table"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table, json or yaml.")]
TableOrJsonOpt = Annotated[TableOrJson, typer.Option("--output", "-o", help="table or json.")]

def _default_target_factory(name: Any, options: Any) -> Any:
    from poolserve.targets import make_target

    return make_target(name, options)


# Process-wide CLI state. Tests replace "target_factory" to inject a fake cluster or local target.
state: dict[str, Any] = {"debug": False, "target_factory": _default_target_factory}


def parse_sets(values: list[str] | None) -> dict[str, Any]:
    """``["a.b=1"]`` -> ``{"a.b": 1}`` (values parsed as YAML scalars)."""
    import yaml

    out_: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out_[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or "invalid YAML"
            raise SpecError(f"--set {key.strip()}: the value {raw!r} is not valid YAML ({problem})") from None
    return out_


def _print_version(value: bool) -> None:
    if value:
        from poolserve import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    state["debug"] = debug


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command: a PoolserveError prints ``error: <message>`` on stderr and exits with its code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PoolserveError as e:
            if state["debug"]:
                err.print_exception()
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@command()``: register on :data:`app` with the error boundary."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        return app.command(*args, **kwargs)(handle_errors(fn))

    return deco


def cache_command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@cache_command()``: register under ``poolserve cache`` with the error boundary."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        return cache_app.command(*args, **kwargs)(handle_errors(fn))

    return deco


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``poolserve`` script."""
    from poolserve import cli as _commands  # noqa: F401 - registers the commands

    app(args=argv)
