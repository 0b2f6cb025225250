"""``poolserve lint`` and ``poolserve explain``: offline checks and the effective container."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from poolserve import yamlio
from poolserve.cli.app import (
    ConfigOpt,
    Output,
    OutputOpt,
    SetOpt,
    TableOrJson,
    TableOrJsonOpt,
    command,
    err,
    out,
    parse_sets,
)
from poolserve.errors import LintError
from poolserve.lint import explain, lint
from poolserve.render import render
from poolserve.spec import DEFAULT_CONFIG, load_spec

_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}


@command("lint")
def lint_cmd(
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    crd_dir: Annotated[Path | None, typer.Option("--crd-dir", envvar="POOLSERVE_CRD_DIR",
                                                 help="Directory with the KServe CRDs "
                                                 "(serving.kserve.io_servingruntimes.yaml, "
                                                 "serving.kserve.io_inferenceservices.yaml) to validate against.")]
    = None,
    set_: SetOpt = None,
    output: TableOrJsonOpt = TableOrJson.table,
) -> None:
    """Check the config and rendered objects offline: CRD schemas, dashboard rules, names, vLLM flags."""
    spec = load_spec(config, parse_sets(set_))
    report = lint(spec, render(spec), crd_dir=crd_dir)
    if output == "json":
        typer.echo(json.dumps({"schemas_checked": report.schemas_checked, "findings": [
            {"severity": f.severity, "subject": f.subject, "message": f.message} for f in report.findings]}, indent=2))
    else:
        for f in report.findings:
            out.print(f"[{_STYLE[f.severity]}]{f.severity}[/]: {f.subject}: {f.message}", highlight=False)
        if not report.schemas_checked:
            err.print("note: CRD schemas not checked (pass --crd-dir DIR with the KServe CRDs)")
    if report.errors:
        raise LintError(f"{config}: {len(report.errors)} error(s)")
    err.print(f"{config}: ok ({len(report.findings)} finding(s), no errors)")


@command("explain")
def explain_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="Models to show (default: all).")] = None,
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show the container KServe runs for each model: runtime + InferenceService merged, {{.Name}} filled in."""
    spec = load_spec(config, parse_sets(set_))
    rendered = render(spec)
    for n in names or []:
        spec.model(n)  # one-line error for an unknown name
    rows = explain(rendered, names or [])
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    if output == "yaml":
        typer.echo(yamlio.dump_all(rows), nl=False)
        return
    for row in rows:
        table = Table(show_header=False, box=None, title=f"{row['name']} (runtime {row['runtime']})",
                      title_justify="left")
        table.add_row("[bold]image[/]", str(row["image"]))
        table.add_row("[bold]argv[/]", " ".join(row["argv"]))
        table.add_row("[bold]env[/]", "\n".join(f"{k}={v}" for k, v in row["env"].items()))
        table.add_row("[bold]mounts[/]", "\n".join(f"{k} <- {v}" for k, v in row["volumeMounts"].items()))
        table.add_row("[bold]resources[/]", json.dumps(row["resources"]))
        out.print(table)
