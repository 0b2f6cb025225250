"""``poolserve diff`` and ``poolserve cache warm``: the cluster-only commands.

``diff`` shows what ``deploy`` would change (server-side dry-run apply against the live objects,
fields the server defaults ignored) and exits 1 when anything differs, like ``kubectl diff``.
``cache warm`` runs a download Job per model into the cache PVC.
"""

from __future__ import annotations

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
    progress_display,
    session,
    source,
    where,
)


def diff_cmd(
    ctx: typer.Context,
    names: NamesArg = None,
    config: ConfigOpt = CONFIG,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Show what deploy would change on the cluster; exit 1 if anything differs (like kubectl diff)."""
    from rich.markup import escape

    from poolserve.actions.diff import DiffRequest, diff

    s = session(ctx)
    diffs = diff(DiffRequest(source=source(config, set_), names=tuple(names or ()),
                             where=where("cluster", context, kubeconfig)), s.edges)
    changed = [d for d in diffs if d.action != "none"]
    for d in changed:
        typer.echo(d.diff, nl=False)
    for d in diffs:
        ns = f"{d.namespace}/" if d.namespace else ""
        verdict = {"create": "would be created", "update": "would be configured", "none": "unchanged"}[d.action]
        note = f" [{d.note}]" if d.note else ""
        # escape: rich would take "[apply needs --force-conflicts ...]" for markup and print nothing.
        s.err().print(escape(f"{d.kind.lower()}/{ns}{d.name} {verdict}{note}"), highlight=False,
                      style="dim" if d.action == "none" else None)
    if changed:
        s.err().print(f"{len(changed)} of {len(diffs)} objects differ", highlight=False)
        raise typer.Exit(1)
    s.err().print(f"no differences: all {len(diffs)} objects match the config", highlight=False)


def warm_cmd(
    ctx: typer.Context,
    names: NamesArg = None,
    config: ConfigOpt = CONFIG,
    timeout: Annotated[str, typer.Option("--timeout", help="How long to wait for the download Jobs, e.g. 60m.",
                                         metavar="DURATION")] = "60m",
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Download models into the cluster's cache PVC with a Job each, so pods can run offline."""
    from rich.text import Text

    from poolserve.actions.cache import WarmRequest, warm
    from poolserve.cli.output import columns, print_result

    s = session(ctx)
    req = WarmRequest(source=source(config, set_), names=tuple(names or ()),
                      where=where("cluster", context, kubeconfig), timeout=timeout)
    with progress_display(s.err()) as progress:
        result = warm(req, s.edges, progress=progress)
    # Plain aligned columns (like `cache list`): ids and paths stay whole at any width.
    lines = columns([("MODEL", "MODEL ID", "RESULT", "DETAIL"),
                     *((j.model, j.model_id, j.state, j.message) for j in result.jobs)])
    hint = "" if result.offline else ": set cache.offline: true to serve from it with HF_HUB_OFFLINE=1"
    print_result(s, output, result, table=[line.rstrip() for line in lines],
                 notes=[Text(f"cache PVC {result.namespace}/{result.pvc} (HF_HOME={result.hf_home}){hint}")])
