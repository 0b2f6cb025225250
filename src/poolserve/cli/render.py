"""``poolserve render``: write manifests/kserve/ (or stdout), or check it is up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from poolserve.cli.options import CONFIG, ConfigOpt, SetOpt, session, source

DEFAULT_OUT = "manifests/kserve"


def render_cmd(
    ctx: typer.Context,
    config: ConfigOpt = CONFIG,
    output: Annotated[str, typer.Option("--output", "-o", help="Directory to write, or - for one YAML stream "
                                        "on stdout.", metavar="DIR")] = DEFAULT_OUT,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; print the diff and exit 1 if the "
                                        "directory differs from a fresh render.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace files in the output directory that poolserve "
                                        "did not write.")] = False,
    set_: SetOpt = None,
) -> None:
    """Render the config into KServe manifests (namespace, dashboard Templates, runtimes, models, kustomization)."""
    from poolserve.actions.render import RenderRequest, drift, render_manifests

    req = RenderRequest(source=source(config, set_), output=None if output == "-" else Path(output), check=check,
                        force=force)
    result = render_manifests(req)
    if result.stream is not None:
        typer.echo(result.stream, nl=False)
        return
    err = session(ctx).err()
    out_dir = Path(output)
    if check:
        problem = drift(req, result)
        if problem is None:
            err.print(f"{out_dir}: up to date with {config}")
            return
        for text in result.diffs:
            typer.echo(text, nl=False)
        raise problem
    for name in result.changed:
        err.print(f"wrote {out_dir / name}")
    for name in result.stale:
        err.print(f"removed {out_dir / name} (no longer in the config)")
    if not result.changed and not result.stale:
        err.print(f"{out_dir}: unchanged")
    for note in result.notes:
        err.print(f"note: {note}")
