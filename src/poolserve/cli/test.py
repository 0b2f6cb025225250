"""``poolserve test NAME``: prove a served model answers correctly (checks in :mod:`poolserve.verify`).

The endpoint comes from ``--url`` or from the target (``Target.endpoint``: the local process, or
the InferenceService/Route on the cluster). Test injection points in :data:`poolserve.cli.app.state`:
``http_transport`` (an :class:`httpx.BaseTransport` for every request) and ``reference_loader``
(``(model, task, hf_homes) -> Reference``).
"""

from __future__ import annotations

import contextlib
import io
import ssl
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from poolserve.cli.app import ConfigOpt, SetOpt, TargetOpt, command, err, out, state
from poolserve.cli.ops import ContextOpt, KubeconfigOpt, get_target, load, parse_duration
from poolserve.client import InsecureTransportWarning, PoolClient, check_url
from poolserve.errors import CheckFailed, SpecError
from poolserve.output import dumps
from poolserve.spec import DEFAULT_CONFIG, Model, PoolSpec, Task
from poolserve.target import Endpoint
from poolserve.verify import CheckResult, Reference, VerifyReport, expectations_for, verify

TOKEN_ENV = "POOLSERVE_TOKEN"


def check_table(report: VerifyReport) -> Table:
    """One row per check: result, latency, what was seen."""
    table = Table("CHECK", "RESULT", "LATENCY", "DETAIL", box=None, pad_edge=False)
    for c in report.checks:
        table.add_row(c.name, Text("PASS", style="green") if c.passed else Text("FAIL", style="bold red"),
                      "-" if c.latency_ms is None else f"{c.latency_ms:.0f} ms", Text(c.detail))
    return table


def headline(failed: Sequence[CheckResult]) -> CheckResult:
    """The failure that explains most: a failed API call over the model list, never a 'not run'."""
    calls = [c for c in failed if c.name != "models" and not c.detail.startswith("not run:")]
    return calls[0] if calls else failed[0]


def base_url(url: str) -> tuple[str, str | None]:
    """Strip a trailing ``/v1`` (copied from an OpenAI-style setting): vLLM's /health and /score live at the root."""
    u = url.rstrip("/")
    if u.endswith("/v1"):
        return u[: -len("/v1")], f"using {u[: -len('/v1')]} (without /v1): poolserve adds the API paths itself"
    return u, None


def check_ca_file(path: str) -> None:
    """A one-line SpecError unless ``--ca-file`` is a readable PEM bundle with at least one certificate.

    A typo here is an input mistake (exit 2), not an endpoint failure.
    """
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as e:  # an OSError too: test it first
        raise SpecError(f"--ca-file {path}: not a PEM CA bundle ({e.reason or e})") from None
    except OSError as e:
        raise SpecError(f"--ca-file {path}: cannot read it: {e.strerror or e}") from None


def reference_homes(spec: PoolSpec) -> list[Path]:
    """HF caches to find the reference weights in: the local target's cache first."""
    from poolserve.reference import default_hf_homes

    extra: list[Path] = []
    try:
        from poolserve.local.plan import local_hf_home

        extra.append(local_hf_home(spec))
    except SpecError:
        pass
    return default_hf_homes(extra)


def _load_reference(source: str, task: Task, homes: Sequence[Path]) -> Reference:
    loader = state.get("reference_loader")
    if loader is not None:
        return loader(source, task, homes)  # type: ignore[no-any-return]
    from poolserve.reference import load_reference

    # sentence-transformers draws progress bars on stderr while loading; keep them out of the report.
    with contextlib.redirect_stderr(io.StringIO()):
        return load_reference(source, task, homes)


@contextlib.contextmanager
def _warnings_as_notes() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InsecureTransportWarning)
        yield
    for w in caught:
        err.print(Text("warning: ", style="yellow") + Text(str(w.message)))


def _endpoint(model: Model, spec: PoolSpec, rendered: Any, url: str | None, target: str | None,
              context: str | None, kubeconfig: str | None) -> Endpoint:
    if url is None:
        return get_target(target, context, kubeconfig).endpoint(rendered, model.name)
    fixed, note = base_url(url)
    if note:
        err.print(Text(f"note: {note}"))
    return Endpoint(url=fixed)


@command("test")
def test_cmd(
    name: Annotated[str, typer.Argument(help="Model name from the config.")],
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    url: Annotated[str | None, typer.Option(
        "--url", help="Base URL of the served model, e.g. https://<route-host> (default: ask the target).")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar=TOKEN_ENV, show_envvar=True,
        help="Bearer token (never printed). Default: $POOLSERVE_TOKEN, else the target's credentials.")] = None,
    ca_file: Annotated[str | None, typer.Option(
        "--ca-file", help="PEM CA bundle to trust for https (e.g. the OpenShift ingress CA).")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Do not verify the TLS certificate (warns).")] = False,
    served_model: Annotated[str | None, typer.Option(
        "--model", help="Model name to send (default: the target's served name, else the config's model_id).")]
    = None,
    reference: Annotated[bool, typer.Option(
        "--reference", help="Also compare outputs with sentence-transformers run here on the same weights "
        "(pip install -e '.\\[reference]' in the poolserve checkout).")] = False,
    reference_model: Annotated[str | None, typer.Option(
        "--reference-model", help="Directory or HF id of the reference weights (default: model_id, looked up "
        "in the local and HF caches).")] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Timeout of one request, e.g. 60s.")] = "60s",
    target: TargetOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    set_: SetOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Check a served model: routes, shapes, dimensions, ranking, limits; optionally against a reference."""
    if ca_file and insecure:
        raise SpecError("--ca-file and --insecure are mutually exclusive")
    if output not in ("table", "json"):
        raise SpecError(f"--output {output!r}: use table or json")
    if url is not None:
        check_url(url)
    if ca_file is not None:
        check_ca_file(ca_file)
    spec, rendered, _ = load(config, set_, [name])
    model = spec.model(name)
    ref = _load_reference(reference_model or model.model_id, model.task, reference_homes(spec)) if reference \
        else None
    endpoint = _endpoint(model, spec, rendered, url, target, context, kubeconfig)
    served = served_model or endpoint.served_model or model.model_id
    with _warnings_as_notes():
        client = PoolClient.from_endpoint(
            endpoint, model=served, token=token or endpoint.token, ca_file=ca_file or endpoint.ca_file,
            insecure=insecure or (not endpoint.verify_tls and not ca_file),
            timeout_s=parse_duration(timeout), transport=state.get("http_transport"))
    with client:
        report = verify(client, expectations_for(model, served_model=served), now=time.perf_counter, reference=ref)
    if output == "json":
        typer.echo(dumps(report, "json"), nl=False)
    else:
        err.print(Text(f"{name} ({model.task}) at {report.url}, model {served}, vLLM {report.vllm_version}"
                       + (f", reference {report.reference}" if report.reference else "")))
        out.print(check_table(report))
        for note in report.notes:
            err.print(Text(f"note: {note}"))
    bad = report.failed
    if bad:
        first = headline(bad)
        raise CheckFailed(f"{name}: {len(bad)} of {len(report.checks)} checks failed at {report.url}; "
                          f"{first.name}: {first.detail}")
    if output != "json":
        err.print(f"[green]{name}: all {len(report.checks)} checks passed[/]", highlight=False)
