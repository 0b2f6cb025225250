"""``poolserve cache import`` / ``cache list``: the local model cache (the local stand-in for the cache PVC).

Models land where the local target's ``HF_HOME`` points: ``cache.hf_home`` mapped into
``local.cache_dir``, in the Hugging Face hub layout, so ``--model=<hf id>`` with
``HF_HUB_OFFLINE=1`` resolves locally exactly as it does from the PVC on a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from poolserve.cli.app import ConfigOpt, Output, OutputOpt, SetOpt, cache_command, err, parse_sets
from poolserve.errors import SpecError
from poolserve.output import dumps
from poolserve.spec import DEFAULT_CONFIG, load_spec


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


@cache_command("import")
def import_cmd(
    model_id: Annotated[str, typer.Argument(help="Hugging Face id to file it under, e.g. "
                                            "sentence-transformers/all-MiniLM-L6-v2.")],
    path: Annotated[Path, typer.Argument(help="Local model directory (with config.json).")],
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    link: Annotated[bool, typer.Option("--link", help="Symlink the files instead of copying them.")] = False,
    set_: SetOpt = None,
) -> None:
    """Lay a local model directory out as a Hugging Face hub cache entry in the local model cache."""
    from poolserve.hfcache import import_model
    from poolserve.local.plan import local_hf_home

    spec = load_spec(config, parse_sets(set_))
    if not path.is_dir():
        raise SpecError(f"{path}: not a directory (expected a model directory with config.json)")
    hf_home = local_hf_home(spec)
    cached = import_model(hf_home, model_id, path, link=link)
    err.print(f"imported {model_id} ({_size(cached.size_bytes)}, revision {cached.revision[:12]}) "
              f"into HF_HOME={hf_home}", highlight=False)
    typer.echo(str(cached.path))


@cache_command("list")
def list_cmd(
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """List the models in the local model cache."""
    from poolserve.hfcache import list_models
    from poolserve.local.plan import local_hf_home

    spec = load_spec(config, parse_sets(set_))
    hf_home = local_hf_home(spec)
    models = list_models(hf_home)
    if output != "table":
        data = [{"model_id": m.model_id, "revision": m.revision, "size_bytes": m.size_bytes, "path": str(m.path)}
                for m in models]
        typer.echo(dumps(data, output), nl=False)
        return
    if not models:
        err.print(f"no models in {hf_home} (add one with `poolserve cache import MODEL_ID DIR`)", highlight=False)
        return
    # Plain columns, not a rich Table: ids and paths stay whole (copy-pasteable) at any width, even piped.
    rows = [("MODEL", "REVISION", "SIZE", "PATH")]
    rows += [(m.model_id, m.revision[:12], _size(m.size_bytes), str(m.path)) for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        typer.echo("  ".join([*(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)), r[3]]))
