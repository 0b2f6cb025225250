"""``poolserve cache import`` / ``cache list``: the local model cache (the local stand-in for the cache PVC)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from poolserve.cli.options import CONFIG, ConfigOpt, Output, OutputOpt, SetOpt, session, source


def size_text(n: int) -> str:
    """``2048`` -> ``2.0 KiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def import_cmd(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="Hugging Face id to file it under, e.g. "
                                            "sentence-transformers/all-MiniLM-L6-v2.", metavar="MODEL_ID")],
    path: Annotated[Path, typer.Argument(help="Local model directory (with config.json).", metavar="DIR")],
    config: ConfigOpt = CONFIG,
    link: Annotated[bool, typer.Option("--link", help="Symlink the files instead of copying them.")] = False,
    set_: SetOpt = None,
) -> None:
    """Lay a local model directory out as a Hugging Face hub cache entry in the local model cache."""
    from poolserve.actions.cache import ImportRequest, import_model

    done = import_model(ImportRequest(model_id, path, source=source(config, set_), link=link), session(ctx).edges)
    m = done.model
    session(ctx).err().print(f"imported {model_id} ({size_text(m.size_bytes)}, revision {m.revision[:12]}) "
                             f"into HF_HOME={done.hf_home}", highlight=False)
    typer.echo(str(m.path))


def list_cmd(
    ctx: typer.Context,
    config: ConfigOpt = CONFIG,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """List the models in the local model cache."""
    from poolserve.actions.cache import list_models
    from poolserve.cli.output import columns, print_result

    s = session(ctx)
    listing = list_models(source(config, set_), s.edges)
    if output == "table" and not listing.models:
        s.err().print(f"no models in {listing.hf_home} (add one with `poolserve cache import MODEL_ID DIR`)",
                      highlight=False)
        return
    data = [{"model_id": m.model_id, "revision": m.revision, "size_bytes": m.size_bytes, "path": str(m.path)}
            for m in listing.models]
    # Plain columns, not a rich Table: ids and paths stay whole (copy-pasteable) at any width, even piped.
    print_result(s, output, data, table=columns([("MODEL", "REVISION", "SIZE", "PATH"), *(
        (m.model_id, m.revision[:12], size_text(m.size_bytes), str(m.path)) for m in listing.models)]))
