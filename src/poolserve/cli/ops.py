"""``deploy``, ``status``, ``wait``, ``logs``, ``delete``: one set of verbs for every target.

``--target cluster`` (KServe) and ``--target local`` (vLLM processes) both implement
:class:`poolserve.target.Target`, so the commands cannot drift between them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from poolserve.cli.app import ConfigOpt, Output, OutputOpt, SetOpt, TargetOpt, command, err, out, parse_sets, state
from poolserve.errors import SpecError
from poolserve.output import deploy_summary, dumps, status_table
from poolserve.render import Rendered, render
from poolserve.spec import DEFAULT_CONFIG, PoolSpec, load_spec
from poolserve.target import DeployOptions, ProgressFn, Target, target_name
from poolserve.targets import TargetOptions

NamesArg = Annotated[list[str] | None, typer.Argument(help="Model names from the config (default: all).",
                                                      show_default=False)]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context (cluster target).")]
KubeconfigOpt = Annotated[str | None, typer.Option("--kubeconfig", envvar="KUBECONFIG",
                                                   help="kubeconfig file (cluster target).")]
TimeoutOpt = Annotated[str | None, typer.Option("--timeout", help="How long to wait, e.g. 900s, 15m. Default: 15m "
                                                "on a cluster, local.startup_timeout_s (600 s) locally.",
                                                show_default=False)]
CLUSTER_TIMEOUT_S = 900.0


def parse_duration(text: str, option: str = "--timeout") -> float:
    """``90``, ``90s``, ``15m``, ``1h`` -> seconds; errors name ``option``."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise SpecError(f"{option} {text!r}: expected a duration like 30s or 15m") from None
    if value <= 0:
        raise SpecError(f"{option} {text!r}: must be positive")
    return value


def load(config: Path, sets: list[str] | None, names: list[str] | None) -> tuple[PoolSpec, Rendered, list[str]]:
    """Load + render the config and check the model names exist (one-line error otherwise)."""
    spec = load_spec(config, parse_sets(sets))
    for n in names or []:
        spec.model(n)
    return spec, render(spec), list(names or [])


def get_target(target: str | None, context: str | None = None, kubeconfig: str | None = None) -> Target:
    """Resolve ``--target``/``$POOLSERVE_TARGET`` and build it through the app's (injectable) factory."""
    factory = state["target_factory"]
    return factory(target_name(target), TargetOptions(context=context, kubeconfig=kubeconfig))  # type: ignore[no-any-return]


def wait_timeout(timeout: str | None, spec: PoolSpec, target: Target) -> float:
    """``--timeout`` if given, else the target's default (the config's ``local.startup_timeout_s`` locally)."""
    if timeout is not None:
        return parse_duration(timeout)
    return spec.local.startup_timeout_s if target.name == "local" else CLUSTER_TIMEOUT_S


@contextmanager
def progress_display(enabled: bool = True) -> Iterator[ProgressFn]:
    """A progress bar on stderr; yields the callback targets call while they wait."""
    if not enabled or not err.is_terminal:
        last: dict[str, str] = {}

        def plain(message: str, fraction: float | None) -> None:
            if last.get("m") != message:
                last["m"] = message
                err.print(f"… {message}", highlight=False)

        yield plain
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("starting", total=1.0)

        def update(message: str, fraction: float | None) -> None:
            bar.update(task, description=message, completed=fraction if fraction is not None else 0,
                       total=1.0 if fraction is not None else None)

        yield update


@command("deploy")
def deploy_cmd(
    names: NamesArg = None,
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    target: TargetOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the models are ready.")] = True,
    timeout: TimeoutOpt = None,
    dry_run: Annotated[str | None, typer.Option("--dry-run", help="client or server (cluster target): "
                                                "validate without changing anything.")] = None,
    runtimes_only: Annotated[bool, typer.Option("--runtimes-only", help="Apply only the ServingRuntimes "
                                                "(cluster target).")] = False,
    force_conflicts: Annotated[bool, typer.Option("--force-conflicts", help="Take over fields another "
                                                  "field manager owns (cluster target).")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Deploy models: apply the rendered manifests (cluster) or start vLLM processes (local)."""
    if dry_run not in (None, "client", "server"):
        raise SpecError(f"--dry-run {dry_run!r}: use client or server")
    spec, rendered, selected = load(config, set_, names)
    tgt = get_target(target, context, kubeconfig)
    options = DeployOptions(dry_run=dry_run, runtimes_only=runtimes_only,  # type: ignore[arg-type]
                            force_conflicts=force_conflicts)
    with progress_display() as progress:
        result = tgt.deploy(rendered, selected, wait=wait and dry_run is None,
                            timeout_s=wait_timeout(timeout, spec, tgt), options=options, progress=progress)
    if output != "table":
        typer.echo(dumps(result, output), nl=False)
        return
    err.print(deploy_summary(result))
    if result.statuses:
        out.print(status_table(result.statuses))


@command("status")
def status_cmd(
    names: NamesArg = None,
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    target: TargetOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every 2 s until interrupted.")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show each model's state: ready, URLs, runtime, replicas, and why it is not ready."""
    _, rendered, selected = load(config, set_, names)
    tgt = get_target(target, context, kubeconfig)

    def once() -> None:
        statuses = tgt.status(rendered, selected)
        if output != "table":
            typer.echo(dumps(statuses, output), nl=False)
        else:
            out.print(status_table(statuses))

    if not watch:
        once()
        return
    if output != "table":
        raise SpecError("--watch redraws a table: drop -o (or poll with -o json yourself)")
    from rich.live import Live

    with Live(console=out, auto_refresh=False) as live:
        while True:
            live.update(status_table(tgt.status(rendered, selected)), refresh=True)
            time.sleep(2)


@command("wait")
def wait_cmd(
    names: NamesArg = None,
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    target: TargetOpt = None,
    timeout: TimeoutOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Wait until the models are ready; fail fast with a diagnosis when one cannot start."""
    spec, rendered, selected = load(config, set_, names)
    tgt = get_target(target, context, kubeconfig)
    with progress_display() as progress:
        statuses = tgt.wait(rendered, selected, timeout_s=wait_timeout(timeout, spec, tgt), progress=progress)
    out.print(status_table(statuses))


@command("logs")
def logs_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    target: TargetOpt = None,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="The previous (crashed) container's log.")]
    = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Print the vLLM server log of a model."""
    spec, _, _ = load(config, set_, [name])
    tgt = get_target(target, context, kubeconfig)
    for line in tgt.logs(render(spec), name, previous=previous, follow=follow):
        typer.echo(line)


@command("delete")
def delete_cmd(
    names: NamesArg = None,
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    target: TargetOpt = None,
    runtimes: Annotated[bool, typer.Option("--runtimes", help="Also delete ServingRuntimes no remaining "
                                           "InferenceService uses (cluster target).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete runtimes even if other InferenceServices "
                                        "still use them.")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Delete models (cluster) or stop their processes (local)."""
    _, rendered, selected = load(config, set_, names)
    tgt = get_target(target, context, kubeconfig)
    result = tgt.delete(rendered, selected, runtimes=runtimes, force=force)
    if output != "table":
        typer.echo(dumps(result, output), nl=False)
        return
    err.print(deploy_summary(result))

