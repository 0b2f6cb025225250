"""``poolserve test [NAME]``: prove a served model answers correctly (the action is :mod:`poolserve.actions.test`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from poolserve.cli.fingerprint import FingerprintOpt, fingerprint_cmd
from poolserve.cli.options import (
    CONFIG,
    ConfigOpt,
    ContextOpt,
    KubeconfigOpt,
    SetOpt,
    TargetOpt,
    session,
    source,
    where,
)
from poolserve.config.defaults import TOKEN_ENV
from poolserve.errors import SpecError

if TYPE_CHECKING:
    from rich.table import Table

    from poolserve.check.verify import VerifyReport

def check_table(report: VerifyReport) -> Table:
    """One row per check: result, latency, what was seen (the detail wraps to fit the console)."""
    from rich.text import Text

    from poolserve.cli.output import fit_table

    table = fit_table("CHECK", "RESULT", "LATENCY", "DETAIL", wrap=("DETAIL",))
    for c in report.checks:
        table.add_row(c.name, Text("PASS", style="green") if c.passed else Text("FAIL", style="bold red"),
                      "-" if c.latency_ms is None else f"{c.latency_ms:.0f} ms", Text(c.detail))
    return table


def test_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(
        help="Model name from the config (optional with --url: then --task says which checks apply).",
        show_default=False, metavar="NAME")] = None,
    config: ConfigOpt = CONFIG,
    url: Annotated[str | None, typer.Option(
        "--url", help="Base URL of the served model, e.g. https://<route-host> (default: ask the target).",
        metavar="URL")] = None,
    task: Annotated[str | None, typer.Option(
        "--task", help="embed or score: with --url and no NAME, which checks apply (required then).",
        metavar="TASK")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar=TOKEN_ENV, show_envvar=True, metavar="TOKEN",
        help="Bearer token (never printed). Default: $POOLSERVE_TOKEN, else the target's credentials.")] = None,
    ca_file: Annotated[str | None, typer.Option(
        "--ca-file", help="PEM CA bundle to trust for https (e.g. the OpenShift ingress CA).", metavar="FILE")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Do not verify the TLS certificate (warns).")] = False,
    served_model: Annotated[str | None, typer.Option(
        "--model", help="Model name to send (default: the target's served name, else the config's model_id).",
        metavar="MODEL")] = None,
    reference: Annotated[bool, typer.Option(
        "--reference", help="Also compare outputs with sentence-transformers run here on the same weights "
        "(pip install -e '.\\[reference]' in the poolserve checkout).")] = False,
    reference_model: Annotated[str | None, typer.Option(
        "--reference-model", help="Directory or HF id of the reference weights (default: model_id, looked up "
        "in the local and HF caches).", metavar="DIR_OR_ID")] = None,
    robustness: Annotated[bool, typer.Option(
        "--robustness", help="Also send bad inputs a deployment must survive (too long, empty, unknown model, "
        "2,048 texts, non-ASCII, a very long token): each needs a clean 4xx or a right answer, and /health "
        "200 after it.")] = False,
    timeout: Annotated[str, typer.Option("--timeout", help="Timeout of one request, e.g. 60s.",
                                         metavar="DURATION")] = "60s",
    target: TargetOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.", metavar="FORMAT")] = "table",
    fingerprint: FingerprintOpt = None,
) -> None:
    """Check a served model: routes, shapes, dimensions, ranking, limits; optionally against a reference."""
    from rich.text import Text

    if fingerprint is not None:  # instead of the checks
        return fingerprint_cmd(ctx, fingerprint, output, source(config, set_), where(target, context, kubeconfig),
                               name, url, task, token, ca_file, insecure, served_model, timeout)
    from poolserve.actions.test import VerifyRequest, failure, verify_model
    from poolserve.cli.output import print_result

    if output not in ("table", "json"):
        raise SpecError(f"--output {output!r}: use table or json")
    s = session(ctx)

    def notify(kind: Literal["note", "warning"], message: str) -> None:
        if kind == "warning":
            s.err().print(Text("warning: ", style="yellow") + Text(message))
        else:
            s.err().print(Text(f"note: {message}"))

    req = VerifyRequest(name=name, source=source(config, set_), where=where(target, context, kubeconfig), url=url,
                        task=task, token=token, ca_file=ca_file, insecure=insecure, served_model=served_model,
                        reference=reference, reference_model=reference_model, timeout=timeout,
                        robustness=robustness)
    report = verify_model(req, s.edges, notify=notify)
    served = report.served_model or "(server default model)"
    reference_text = f", reference {report.reference}" if report.reference else ""
    print_result(s, output, report, summary=Text(f"{report.name} ({report.task}) at {report.url}, model {served}, "
                                                 f"vLLM {report.vllm_version}{reference_text}"),
                 table=check_table(report), notes=[Text(f"note: {note}") for note in report.notes])
    problem = failure(report)
    if problem is not None:
        raise problem
    if output != "json":
        s.err().print(f"[green]{report.name}: all {len(report.checks)} checks passed[/]", highlight=False)
