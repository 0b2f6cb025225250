"""Printing fingerprint results (``test --fingerprint``, ``deploy --check-fingerprint``): lines and JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from poolserve.actions.fingerprint import FingerprintResult
    from poolserve.check.fingerprint_compare import Comparison

VERDICT_STYLE = {"same": "bold green", "compatible": "bold green", "re-index": "bold red"}


def _rows(c: Comparison) -> list[tuple[str, str]]:
    if c.task == "score":
        return [("scores", f"largest change {c.max_score_diff:.2e} (relative to max(1, |score|))"),
                ("ranks", f"Kendall tau min {c.min_tau:.3f}, mean {c.mean_tau:.3f}; best document kept first in "
                          f"{c.top1_kept}/{c.queries} queries")]
    if c.min_cosine is None:
        return []
    return [("vectors", f"cosine to the saved vectors min {c.min_cosine:.7f} ({c.worst_probe}), mean "
                        f"{c.mean_cosine:.7f}"),
            ("neighbours", f"recall@10 among the probes mean {c.mean_recall:.3f}, min {c.min_recall:.1f}"),
            ("similarity", f"largest change of a probe-to-probe cosine {c.max_similarity_change:.4f}")]


def result_lines(r: FingerprintResult) -> list[tuple[str, str | None]]:
    """``(line, style)`` pairs: the headline, then ``key  value`` rows."""
    from poolserve.check.fingerprint_probes import EMBED_PROBES, PROBE_SET, RERANK_QUERIES
    from poolserve.vllm.facts import describe

    fp = r.fingerprint
    what = (f"{len(RERANK_QUERIES)} queries x 8 documents" if fp.task == "score"
            else f"{len(EMBED_PROBES)} probes, {fp.dimensions} dimensions")
    if r.comparison is None:
        rows = [("probes", f"{what} ({PROBE_SET})"), ("deployment", describe(fp.facts))]
        head = f"{fp.name}: saved fingerprint {r.file}"
        return [(head, "bold"), *_table(rows)]
    c = r.comparison
    saved = r.saved
    assert saved is not None
    rows = [("saved", f"{saved.created}: {describe(saved.facts)}"), ("now", describe(fp.facts)),
            ("changed", "; ".join(c.changes) or "nothing poolserve knows of"), *_rows(c), ("why", c.reason)]
    return [(f"{fp.name} against {r.file}: {c.verdict.upper()}", VERDICT_STYLE[c.verdict]), *_table(rows)]


def _table(rows: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
    width = max(len(k) for k, _ in rows)
    return [(f" {k.ljust(width)}  {v}", None) for k, v in rows]


def result_data(r: FingerprintResult) -> dict[str, Any]:
    """JSON-ready summary (no vectors): the mode, the file, the facts on both sides and the comparison."""
    out: dict[str, Any] = {"mode": r.mode, "file": str(r.file), "name": r.fingerprint.name,
                           "task": r.fingerprint.task, "facts": r.fingerprint.facts.to_dict()}
    if r.saved is not None:
        out["saved_facts"] = r.saved.facts.to_dict()
        out["saved_created"] = r.saved.created
    if r.comparison is not None:
        out["comparison"] = asdict(r.comparison)
        out["verdict"] = r.comparison.verdict
    return out


def dumps(results: list[FingerprintResult]) -> str:
    """The results as JSON (one object, or a list for several)."""
    data: Any = [result_data(r) for r in results]
    return json.dumps(data[0] if len(data) == 1 else data, indent=2) + "\n"


FingerprintOpt = Annotated[tuple[str, Path] | None, typer.Option(
    "--fingerprint", help="Instead of the checks: 'save FILE' embeds the fixed probe set and saves the outputs with "
    "what the deployment runs with; 'check FILE' compares the deployment now with it: same, compatible or re-index "
    "(exit 12).", metavar="save|check FILE")]


def fingerprint_cmd(ctx: Any, option: tuple[str, Path], output: str, source: Any, where: Any, name: str | None,
                    url: str | None, task: str | None, token: str | None, ca_file: str | None, insecure: bool,
                    served_model: str | None, timeout: str) -> None:
    """``poolserve test NAME --fingerprint save|check FILE`` (the endpoint options as ``test`` got them).

    Prints the result, and exits 12 on re-index.
    """
    from rich.text import Text

    from poolserve.actions.fingerprint import FingerprintRequest, fingerprint, moved
    from poolserve.cli.options import session
    from poolserve.errors import SpecError

    mode, path = option
    if mode not in ("save", "check"):
        raise SpecError(f"--fingerprint {mode!r}: use save FILE or check FILE")
    if output not in ("table", "json"):
        raise SpecError(f"--output {output!r}: use table or json")
    s = session(ctx)
    req = FingerprintRequest(mode=mode, file=path, name=name, source=source, where=where, url=url,  # type: ignore[arg-type]
                             task=task, token=token, ca_file=ca_file, insecure=insecure, served_model=served_model,
                             timeout=timeout)
    result = fingerprint(req, s.edges, notify=lambda m: s.err().print(Text("warning: ", style="yellow") + Text(m)))
    if output == "json":
        typer.echo(dumps([result]), nl=False)
    else:
        print_result(s, result)
    problem = moved(result)
    if problem is not None:
        raise problem


def print_result(s: Any, result: FingerprintResult) -> None:
    """The result's lines: the headline on stderr when saving (nothing to pipe), the comparison on stdout."""
    console = s.err() if result.comparison is None else s.out()
    for line, style in result_lines(result):
        console.print(line, style=style, highlight=False, markup=False)


def precheck_fingerprints(files: tuple[Path, ...], source: Any, *, wait: bool, dry_run: str | None) -> None:
    """Before ``deploy`` changes anything: the fingerprints are readable, of this config's models, and will run.

    Raises:
        SpecError: with ``--no-wait`` or ``--dry-run`` (there is no rollout to check), or a bad fingerprint.
    """
    from poolserve.actions.fingerprint import models_of
    from poolserve.errors import SpecError

    if dry_run is not None or not wait:
        raise SpecError("--check-fingerprint compares the model after the rollout: drop --no-wait / --dry-run")
    models_of(files, source)


def check_fingerprints(s: Any, files: tuple[Path, ...], source: Any, where: Any) -> None:
    """``deploy --check-fingerprint``: check each, print each on stderr (stdout has the deploy's output)."""
    from rich.text import Text

    from poolserve.actions.fingerprint import check_after_deploy, moved

    results = check_after_deploy(files, source, where, s.edges,
                                 notify=lambda m: s.err().print(Text("warning: ", style="yellow") + Text(m)))
    problems = []
    for result in results:
        for line, style in result_lines(result):
            s.err().print(line, style=style, highlight=False, markup=False)
        problem = moved(result)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise problems[0] if len(problems) == 1 else problems[0].with_message(
            "; ".join(p.message for p in problems))
