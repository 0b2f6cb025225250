"""``poolserve catalog``: the built-in catalog of known-good pooling models."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from poolserve.cli.options import TableOrJson, TableOrJsonOpt, session
from poolserve.errors import SpecError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from poolserve.config.catalog import CatalogEntry


def _entry_view(e: CatalogEntry) -> RenderableType:
    """One model in full: ``key value`` rows, then its notes."""
    from rich.console import Group
    from rich.text import Text

    from poolserve.cli.output import fit_table
    from poolserve.config.versions import format_version

    rows = [
        ("model", e.model_id), ("task", e.task), ("languages", e.languages or "-"), ("architecture", e.architecture),
        ("max_model_len", str(e.max_model_len)), ("dimensions", str(e.dimensions or "-")),
        ("pooling", e.pooling or "-"), ("min vLLM", format_version(e.min_vllm)),
        ("required flags", " ".join(e.required_flags) or "none"),
        ("scores", e.score_output or "-"), ("query prefix", repr(e.query_prefix) if e.query_prefix else "-"),
    ]
    table = fit_table("KEY", "VALUE", wrap=("VALUE",), show_header=False, pad_edge=True)
    for k, v in rows:
        table.add_row(Text(k, style="bold"), v)
    return Group(table, *(f"- {note}" for note in e.notes))


def _list_table(entries: list[CatalogEntry]) -> RenderableType:
    """One row per model."""
    from rich import box

    from poolserve.cli.output import fit_table
    from poolserve.config.versions import format_version

    table = fit_table("model", "task", "languages", "max len", "dims", "min vLLM", "flags",
                      wrap=("languages", "flags"), box=box.HEAVY_HEAD, pad_edge=True)
    for e in entries:
        table.add_row(e.model_id, e.task, e.languages or "-", str(e.max_model_len), str(e.dimensions or "-"),
                      format_version(e.min_vllm), " ".join(f.split("=")[0] for f in e.required_flags) or "-")
    return table


def catalog_cmd(
    ctx: typer.Context,
    model_id: Annotated[str | None, typer.Argument(help="A Hugging Face model id to show in full.",
                                                   metavar="MODEL_ID")] = None,
    output: TableOrJsonOpt = TableOrJson.table,
) -> None:
    """List known-good vLLM pooling models, or show what one model needs."""
    from poolserve.cli.output import print_result
    from poolserve.config.catalog import CATALOG, lookup

    if model_id is not None:
        entry = lookup(model_id)
        if entry is None:
            raise SpecError(f"{model_id!r} is not in the catalog (see `poolserve catalog`); set task and "
                            "max_model_len in the config yourself")
        entries = [entry]
    else:
        entries = list(CATALOG.values())
    data = [asdict(e) | {"required_flags": e.required_flags} for e in entries]
    view = _entry_view(entries[0]) if model_id is not None else _list_table(entries)
    print_result(session(ctx), output, data, table=view)
