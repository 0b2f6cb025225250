"""``poolserve lint`` and ``poolserve explain``: offline checks and the effective container."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from poolserve.cli.options import (
    CONFIG,
    ConfigOpt,
    Output,
    OutputOpt,
    SetOpt,
    TableOrJson,
    TableOrJsonOpt,
    session,
    source,
)
from poolserve.config.defaults import CRD_DIR_ENV
from poolserve.errors import LintError

_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}


def lint_cmd(
    ctx: typer.Context,
    config: ConfigOpt = CONFIG,
    crd_dir: Annotated[Path | None, typer.Option("--crd-dir", envvar=CRD_DIR_ENV, metavar="DIR",
                                                 help="Directory with the KServe CRDs "
                                                 "(serving.kserve.io_servingruntimes.yaml, "
                                                 "serving.kserve.io_inferenceservices.yaml) to validate against.")]
    = None,
    set_: SetOpt = None,
    output: TableOrJsonOpt = TableOrJson.table,
) -> None:
    """Check the config and rendered objects offline: CRD schemas, dashboard rules, names, vLLM flags."""
    from rich.console import Group
    from rich.text import Text

    from poolserve.actions.lint import LintRequest, lint
    from poolserve.cli.output import print_result

    s = session(ctx)
    report = lint(LintRequest(source=source(config, set_), crd_dir=crd_dir))
    data = {"schemas_checked": report.schemas_checked, "findings": [
        {"severity": f.severity, "subject": f.subject, "message": f.message} for f in report.findings]}
    lines = [Text.from_markup(f"[{_STYLE[f.severity]}]{f.severity}[/]: {f.subject}: {f.message}")
             for f in report.findings]
    print_result(s, output, data, table=Group(*lines) if lines else None,
                 notes=[] if report.schemas_checked else
                 ["note: CRD schemas not checked (pass --crd-dir DIR with the KServe CRDs)"])
    if report.errors:
        raise LintError(f"{config}: {len(report.errors)} error(s)")
    s.err().print(f"{config}: ok ({len(report.findings)} finding(s), no errors)")


def explain_lines(row: Mapping[str, Any]) -> list[str]:
    """One model's container as plain lines: a title, then ``key  value`` rows, values one item a line.

    Plain text, not a rich table: piped, a table pads every line to its width with trailing spaces
    and folds the argv at 200 columns.
    """
    fields = [
        ("image", [str(row["image"])]),
        ("argv", [" ".join(row["argv"])]),
        ("env", [f"{k}={v}" for k, v in row["env"].items()]),
        ("mounts", [f"{k} <- {v}" for k, v in row["volumeMounts"].items()]),
        ("resources", [json.dumps(row["resources"])]),
    ]
    width = max(len(k) for k, _ in fields)
    lines = [f"{row['name']} (runtime {row['runtime']})"]
    for key, values in fields:
        for i, value in enumerate(values or [""]):
            lines.append(f" {(key if i == 0 else '').ljust(width)}  {value}".rstrip())
    return lines


def explain_cmd(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Models to show (default: all).", show_default=False,
                                                      metavar="NAME")] = None,
    config: ConfigOpt = CONFIG,
    set_: SetOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show the container KServe runs for each model: runtime + InferenceService merged, {{.Name}} filled in."""
    from rich.console import Group
    from rich.text import Text

    from poolserve.actions.lint import explain
    from poolserve.cli.output import print_result
    from poolserve.config import yamlio

    rows = explain(source(config, set_), tuple(names or ()))
    if output == "yaml":
        typer.echo(yamlio.dump_all(rows), nl=False)  # one YAML document per model
        return
    print_result(session(ctx), output, rows, table=Group(*(
        Text(line, style="bold" if i == 0 else "") for row in rows for i, line in enumerate(explain_lines(row)))))
