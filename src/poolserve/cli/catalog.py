"""``poolserve catalog``: the built-in catalog of known-good pooling models."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from poolserve.cli.options import TableOrJson, TableOrJsonOpt, session
from poolserve.errors import SpecError


def catalog_cmd(
    ctx: typer.Context,
    model_id: Annotated[str | None, typer.Argument(help="A Hugging Face model id to show in full.",
                                                   metavar="MODEL_ID")] = None,
    output: TableOrJsonOpt = TableOrJson.table,
) -> None:
    """List known-good vLLM pooling models, or show what one model needs."""
    from rich.table import Table

    from poolserve.config.catalog import CATALOG, lookup
    from poolserve.config.versions import format_version

    if model_id is not None:
        entry = lookup(model_id)
        if entry is None:
            raise SpecError(f"{model_id!r} is not in the catalog (see `poolserve catalog`); set task and "
                            "max_model_len in the config yourself")
        entries = [entry]
    else:
        entries = list(CATALOG.values())
    if output == "json":
        typer.echo(json.dumps([asdict(e) | {"required_flags": e.required_flags} for e in entries], indent=2))
        return
    out = session(ctx).out()
    if model_id is not None:
        e = entries[0]
        rows = [
            ("model", e.model_id), ("task", e.task), ("architecture", e.architecture),
            ("max_model_len", str(e.max_model_len)), ("dimensions", str(e.dimensions or "-")),
            ("pooling", e.pooling or "-"), ("min vLLM", format_version(e.min_vllm)),
            ("required flags", " ".join(e.required_flags) or "none"),
            ("scores", e.score_output or "-"), ("query prefix", repr(e.query_prefix) if e.query_prefix else "-"),
        ]
        table = Table(show_header=False, box=None)
        for k, v in rows:
            table.add_row(f"[bold]{k}[/]", v)
        out.print(table)
        for note in e.notes:
            out.print(f"- {note}")
        return
    table = Table("model", "task", "max len", "dims", "min vLLM", "flags")
    for e in entries:
        table.add_row(e.model_id, e.task, str(e.max_model_len), str(e.dimensions or "-"),
                      format_version(e.min_vllm), " ".join(f.split("=")[0] for f in e.required_flags) or "-")
    out.print(table)
