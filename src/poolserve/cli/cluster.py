"""``poolserve diff`` and ``poolserve cache warm``: the cluster-only commands.

``diff`` shows what ``deploy`` would change (server-side dry-run apply against the live objects,
fields the server defaults ignored) and exits 1 when anything differs, like ``kubectl diff``.
``cache warm`` runs a download Job per model into the cache PVC. Both go through the app's
injectable target factory, so tests run them against :class:`~poolserve.cluster.fake.FakeCluster`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poolserve.cli.app import ConfigOpt, Output, OutputOpt, SetOpt, cache_command, command, err, state
from poolserve.cli.ops import ContextOpt, KubeconfigOpt, NamesArg, load, parse_duration, progress_display
from poolserve.errors import SpecError
from poolserve.output import dumps
from poolserve.spec import DEFAULT_CONFIG
from poolserve.targets import TargetOptions

if TYPE_CHECKING:
    from poolserve.cluster.target import ClusterTarget


def cluster_target(context: str | None, kubeconfig: str | None) -> ClusterTarget:
    """The cluster target from the app's (injectable) factory.

    Raises:
        SpecError: if the factory does not give a cluster target (these commands have no local variant).
    """
    from poolserve.cluster.target import ClusterTarget

    tgt = state["target_factory"]("cluster", TargetOptions(context=context, kubeconfig=kubeconfig))
    if not isinstance(tgt, ClusterTarget):
        raise SpecError("this command needs the cluster target")
    return tgt


@command("diff")
def diff_cmd(
    names: NamesArg = None,
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Show what deploy would change on the cluster; exit 1 if anything differs (like kubectl diff)."""
    _, rendered, selected = load(config, set_, names)
    tgt = cluster_target(context, kubeconfig)
    diffs = tgt.diff(rendered, selected)
    changed = [d for d in diffs if d.action != "none"]
    for d in changed:
        typer.echo(d.diff, nl=False)
    for d in diffs:
        ns = f"{d.namespace}/" if d.namespace else ""
        verdict = {"create": "would be created", "update": "would be configured", "none": "unchanged"}[d.action]
        note = f" [{d.note}]" if d.note else ""
        err.print(f"{d.kind.lower()}/{ns}{d.name} {verdict}{note}", highlight=False,
                  style="dim" if d.action == "none" else None)
    if changed:
        err.print(f"{len(changed)} of {len(diffs)} objects differ", highlight=False)
        raise typer.Exit(1)
    err.print(f"no differences: all {len(diffs)} objects match the config", highlight=False)


@cache_command("warm")
def warm_cmd(
    names: NamesArg = None,
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    timeout: Annotated[str, typer.Option("--timeout", help="How long to wait for the download Jobs, e.g. 60m.")]
    = "60m",
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Download models into the cluster's cache PVC with a Job each, so pods can run offline."""
    spec, rendered, selected = load(config, set_, names)
    tgt = cluster_target(context, kubeconfig)
    with progress_display() as progress:
        result = tgt.warm_cache(rendered, selected, timeout_s=parse_duration(timeout), progress=progress)
    if output != "table":
        typer.echo(dumps(result, output), nl=False)
        return
    # Plain aligned columns (like `cache list`): ids and paths stay whole at any width.
    rows = [("MODEL", "MODEL ID", "RESULT", "DETAIL")]
    rows += [(j.model, j.model_id, j.state, j.message) for j in result.jobs]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        typer.echo("  ".join([*(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)), r[3]]).rstrip())
    hint = "" if spec.cache.offline else ": set cache.offline: true to serve from it with HF_HUB_OFFLINE=1"
    err.print(f"cache PVC {result.namespace}/{result.pvc} (HF_HOME={result.hf_home}){hint}", highlight=False)

