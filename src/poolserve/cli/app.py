"""The typer app: :func:`create_app` wires the commands to their edges; the error boundary lives here.

Each command module (one per group of verbs, in this package) only parses options, calls one action
(:mod:`poolserve.actions`) and prints its result. :func:`create_app` is where the edges come in, the
way Helm's ``cmd/`` builds its ``action.Configuration``: the target factory (the real cluster and
local targets by default), the HTTP transport and the reference loader; tests pass fakes, and the
consoles to print to. Importing this module imports no command's dependencies (httpx, asyncio,
kubernetes, rich tables, pydantic): each command imports what it needs when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core

from poolserve.actions.common import Edges, ReferenceLoader
from poolserve.cli import bench as bench_cmd
from poolserve.cli import cache, catalog, cluster, lint, ops, plan, render
from poolserve.cli import test as test_cmd
from poolserve.cli.options import Session, session
from poolserve.errors import PoolserveError
from poolserve.targets.base import Target, TargetFactory, TargetName, TargetOptions

if TYPE_CHECKING:
    from rich.console import Console

HELP = ("Deploy vLLM pooling models (embeddings, rerankers) on KServe / OpenShift AI, run them locally, "
        "and prove they work.")

COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("deploy", ops.deploy_cmd),
    ("status", ops.status_cmd),
    ("wait", ops.wait_cmd),
    ("logs", ops.logs_cmd),
    ("delete", ops.delete_cmd),
    ("stop", ops.stop_cmd),
    ("start", ops.start_cmd),
    ("bench", bench_cmd.bench_cmd),
    ("catalog", catalog.catalog_cmd),
    ("diff", cluster.diff_cmd),
    ("lint", lint.lint_cmd),
    ("explain", lint.explain_cmd),
    ("plan", plan.plan_cmd),
    ("render", render.render_cmd),
    ("test", test_cmd.test_cmd),
)
CACHE_COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("import", cache.import_cmd),
    ("list", cache.list_cmd),
    ("warm", cluster.warm_cmd),
)


def default_target_factory(name: TargetName, options: TargetOptions) -> Target:
    """The real targets: vLLM processes here (``local``), or KServe through the kubeconfig (``cluster``).

    Imported when first used: the local target needs no Kubernetes client, the cluster target no
    vLLM, and ``poolserve render`` neither.
    """
    if name == "local":
        from poolserve.targets.local.target import LocalTarget

        local: Target = LocalTarget(state_dir=options.state_dir)
        return local
    from poolserve.targets.cluster.kube import KubeCluster
    from poolserve.targets.cluster.target import ClusterTarget

    cluster_target: Target = ClusterTarget(KubeCluster(context=options.context, kubeconfig=options.kubeconfig))
    return cluster_target


class _Flagless:
    """Flags show no value type in ``--help`` (typer prints ``<bool>``, as if ``--debug`` took a value)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class Command(_Flagless, typer.core.TyperCommand):
    """A poolserve command."""


class Group(_Flagless, typer.core.TyperGroup):
    """The ``poolserve`` group and ``poolserve cache``; the root one is the error boundary."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a PoolserveError prints ``error: <message>`` on stderr and exits with its code."""
        try:
            return super().invoke(ctx)
        except PoolserveError as e:
            if ctx.parent is not None:
                raise  # the root group reports it
            from rich.markup import escape

            current = session(ctx)
            if current.debug:
                current.err().print_exception()
            current.err().print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(e.exit_code) from None


def _print_version(value: bool) -> None:
    if value:
        from poolserve import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    ctx.obj = session(ctx).invocation(debug=debug)


def create_app(*, target_factory: TargetFactory | None = None, http_transport: Any = None,
               reference_loader: ReferenceLoader | None = None, out: Console | None = None,
               err: Console | None = None) -> typer.Typer:
    """The ``poolserve`` CLI, acting with the given edges.

    Args:
        target_factory: builds ``--target`` (default: :func:`default_target_factory`).
        http_transport: an ``httpx.BaseTransport`` for every request ``test`` makes (default: the network).
        reference_loader: loads ``test --reference``'s model (default: sentence-transformers).
        out: console for data (default: stdout, whole lines when piped).
        err: console for narration and errors (default: stderr, whole lines when piped).
    """
    edges = Edges(target_factory=target_factory or default_target_factory, http_transport=http_transport,
                  reference_loader=reference_loader)
    app = typer.Typer(name="poolserve", help=HELP, cls=Group, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, context_settings={"obj": Session(edges, out=out, err=err)})
    app.callback()(_root)
    for name, fn in COMMANDS:
        app.command(name, cls=Command)(fn)
    cache_app = typer.Typer(help="The model cache: import local model dirs, list, warm the cluster PVC.",
                            cls=Group, no_args_is_help=True)
    for name, fn in CACHE_COMMANDS:
        cache_app.command(name, cls=Command)(fn)
    app.add_typer(cache_app, name="cache")
    return app


app = create_app()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``poolserve`` script."""
    app(args=argv)
