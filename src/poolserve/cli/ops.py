"""``deploy``, ``status``, ``wait``, ``logs``, ``delete``, ``stop``, ``start``: one set of verbs for every target.

``--target cluster`` (KServe) and ``--target local`` (vLLM processes) both implement
:class:`poolserve.targets.base.Target`, so the commands cannot drift between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from poolserve.cli.options import (
    CONFIG,
    ConfigOpt,
    ContextOpt,
    KubeconfigOpt,
    NamesArg,
    Output,
    OutputOpt,
    SetOpt,
    TargetOpt,
    TimeoutOpt,
    progress_display,
    session,
    source,
    where,
)
from poolserve.errors import SpecError


def deploy_cmd(
    ctx: typer.Context,
    names: NamesArg = None,
    config: ConfigOpt = CONFIG,
    target: TargetOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the models are ready.")] = True,
    timeout: TimeoutOpt = None,
    dry_run: Annotated[str | None, typer.Option("--dry-run", help="client or server (cluster target): "
                                                "validate without changing anything.", metavar="MODE")] = None,
    runtimes_only: Annotated[bool, typer.Option("--runtimes-only", help="Apply only the ServingRuntimes "
                                                "(cluster target).")] = False,
    force_conflicts: Annotated[bool, typer.Option("--force-conflicts", help="Take over fields another "
                                                  "field manager owns (cluster target).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Take over objects Helm manages, fields and all (cluster "
                                        "target; otherwise deploy refuses and names the helm command).")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
    check_fingerprint: Annotated[list[Path] | None, typer.Option(
        "--check-fingerprint", help="After the rollout, compare the model with this saved fingerprint (`poolserve "
        "test NAME --fingerprint save FILE`); exit 12 when it says re-index (repeatable).", metavar="FILE")] = None,
) -> None:
    """Deploy models: apply the rendered manifests (cluster) or start vLLM processes (local)."""
    from poolserve.actions.deploy import DeployRequest, deploy
    from poolserve.cli.output import deploy_summary, print_result, status_table

    if dry_run not in (None, "client", "server"):
        raise SpecError(f"--dry-run {dry_run!r}: use client or server")
    if check_fingerprint:
        from poolserve.cli.fingerprint import precheck_fingerprints

        precheck_fingerprints(tuple(check_fingerprint), source(config, set_), wait=wait, dry_run=dry_run)
    s = session(ctx)
    req = DeployRequest(source=source(config, set_), names=tuple(names or ()), where=where(target, context, kubeconfig),
                        wait=wait, timeout=timeout, dry_run=dry_run, runtimes_only=runtimes_only,  # type: ignore[arg-type]
                        force_conflicts=force_conflicts, force=force)
    with progress_display(s.err()) as progress:
        result = deploy(req, s.edges, progress=progress)
    print_result(s, output, result, summary=deploy_summary(result),
                 table=status_table(result.statuses) if result.statuses else None)
    if check_fingerprint:
        from poolserve.cli.fingerprint import check_fingerprints

        check_fingerprints(s, tuple(check_fingerprint), source(config, set_), where(target, context, kubeconfig))


def status_cmd(
    ctx: typer.Context,
    names: NamesArg = None,
    config: ConfigOpt = CONFIG,
    target: TargetOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every 2 s until interrupted.")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show each model's state: ready, URLs, runtime, replicas, and why it is not ready."""
    from poolserve.actions import status as action
    from poolserve.cli.output import print_result, status_table

    s = session(ctx)
    req = action.StatusRequest(source=source(config, set_), names=tuple(names or ()),
                               where=where(target, context, kubeconfig))
    if not watch:
        statuses = action.status(req, s.edges)
        print_result(s, output, statuses, table=status_table(statuses))
        return
    if output != "table":
        raise SpecError("--watch redraws a table: drop -o (or poll with -o json yourself)")
    from rich.live import Live

    with Live(console=s.out(), auto_refresh=False) as live:
        for statuses in action.watch(req, s.edges):
            live.update(status_table(statuses), refresh=True)


def wait_cmd(
    ctx: typer.Context,
    names: NamesArg = None,
    config: ConfigOpt = CONFIG,
    target: TargetOpt = None,
    timeout: TimeoutOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Wait until the models are ready; fail fast with a diagnosis when one cannot start."""
    from poolserve.actions.wait import WaitRequest, wait
    from poolserve.cli.output import status_table

    s = session(ctx)
    req = WaitRequest(source=source(config, set_), names=tuple(names or ()), where=where(target, context, kubeconfig),
                      timeout=timeout)
    with progress_display(s.err()) as progress:
        statuses = wait(req, s.edges, progress=progress)
    s.out().print(status_table(statuses))


def logs_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.", metavar="NAME")],
    config: ConfigOpt = CONFIG,
    target: TargetOpt = None,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="The previous (crashed) container's log.")]
    = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Print the vLLM server log of a model."""
    from poolserve.actions.logs import LogsRequest, logs

    req = LogsRequest(name=name, source=source(config, set_), where=where(target, context, kubeconfig),
                      previous=previous, follow=follow)
    for line in logs(req, session(ctx).edges):
        typer.echo(line)


def delete_cmd(
    ctx: typer.Context,
    names: NamesArg = None,
    config: ConfigOpt = CONFIG,
    target: TargetOpt = None,
    runtimes: Annotated[bool, typer.Option("--runtimes", help="Also delete ServingRuntimes no remaining "
                                           "InferenceService uses (cluster target).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete runtimes even if other InferenceServices "
                                        "still use them, and objects Helm manages.")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Delete models (cluster) or stop their processes (local)."""
    from poolserve.actions.delete import DeleteRequest, delete
    from poolserve.cli.output import deploy_summary, print_result

    s = session(ctx)
    req = DeleteRequest(source=source(config, set_), names=tuple(names or ()), where=where(target, context, kubeconfig),
                        runtimes=runtimes, force=force)
    result = delete(req, s.edges)
    print_result(s, output, result, summary=deploy_summary(result))


StopNames = Annotated[list[str], typer.Argument(help="Models to act on.", show_default=False, metavar="NAME...")]
HelmForceOpt = Annotated[bool, typer.Option("--force", help="Also models whose InferenceService Helm manages "
                                           "(cluster target; otherwise refused: set stopped: in the values and "
                                           "helm upgrade).")]


def stop_cmd(
    ctx: typer.Context,
    names: StopNames,
    config: ConfigOpt = CONFIG,
    target: TargetOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
    force: HelmForceOpt = False,
) -> None:
    """Stop models without deleting them: serving.kserve.io/stop=true (cluster), or stop the process (local)."""
    from poolserve.actions.stop import StopRequest, stop
    from poolserve.cli.output import deploy_summary, print_result, status_table

    s = session(ctx)
    result = stop(StopRequest(names=tuple(names), source=source(config, set_),
                              where=where(target, context, kubeconfig), force=force), s.edges)
    print_result(s, output, result, summary=deploy_summary(result), table=status_table(result.statuses))


def start_cmd(
    ctx: typer.Context,
    names: StopNames,
    config: ConfigOpt = CONFIG,
    target: TargetOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the models are ready.")] = True,
    timeout: TimeoutOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
    force: HelmForceOpt = False,
) -> None:
    """Start stopped models: serving.kserve.io/stop=false (cluster), or start the process (local)."""
    from poolserve.actions.stop import StopRequest, start
    from poolserve.cli.output import deploy_summary, print_result, status_table

    s = session(ctx)
    req = StopRequest(names=tuple(names), source=source(config, set_), where=where(target, context, kubeconfig),
                      wait=wait, timeout=timeout, force=force)
    with progress_display(s.err()) as progress:
        result = start(req, s.edges, progress=progress)
    print_result(s, output, result, summary=deploy_summary(result), table=status_table(result.statuses))
