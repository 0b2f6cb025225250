"""``bench``: throughput and latency of a deployed model, against a baseline and the client's ceiling.

Sets up what the load generator (:func:`poolserve.bench.run.bench`) needs: the bounds of each setting,
the endpoint (``--url``, or the target's), the task and model (from the config model, or from
``--task``/``--model``), the batch sizes or documents per request, the HTTP API (``--api``), the
tokenizer that counts tokens (the model's own, from this machine) and the in-process baseline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from poolserve.actions.common import (
    Duration,
    Edges,
    Source,
    Where,
    config_model,
    parse_duration,
    parse_task,
    target_endpoint,
)
from poolserve.bench.workload import (
    BENCH_APIS,
    DEFAULT_BATCH_SIZES,
    DEFAULT_CONCURRENCY,
    DEFAULT_REQUESTS,
    BaselineFn,
    BenchApi,
    BenchTask,
    Bounds,
    ProgressCallback,
    TokenCountFn,
)
from poolserve.config.defaults import DEFAULT_DOCUMENTS, DEFAULT_INPUT_TOKENS
from poolserve.errors import EndpointError, SpecError
from poolserve.targets.base import Endpoint

if TYPE_CHECKING:
    from poolserve.bench.metrics import BenchReport
    from poolserve.vllm.facts import ServingFacts


@dataclass(frozen=True)
class BenchRequest:
    """What ``poolserve bench`` was asked."""

    name: str | None = None
    """A model of the config (optional with ``url`` or ``self_test``)."""
    source: Source = field(default_factory=Source)
    where: Where = field(default_factory=Where)
    url: str | None = None
    token: str | None = field(default=None, repr=False)
    task: str | None = None
    """``embed`` or ``score``, with ``url`` when ``name`` is not a model of the config."""
    model: str | None = None
    """Model name sent in requests, with ``url`` when ``name`` is not a model of the config."""
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    batch_sizes: tuple[int, ...] | None = None
    """Texts per embeddings request (default 1, 8, 32); not for rerankers."""
    documents: tuple[int, ...] = (DEFAULT_DOCUMENTS,)
    """Documents per rerank request (rerankers)."""
    requests: int | None = None
    """Measured requests per setting (default 200 unless ``duration``)."""
    duration: Duration | None = None
    warmup: int | None = None
    time_cap: Duration = "5m"
    input_tokens: int = DEFAULT_INPUT_TOKENS
    baseline: str | None = None
    """``sentence-transformers``: also encode the same texts in-process, after the load."""
    baseline_dtype: str = "float32"
    self_test: bool = False
    label: str | None = None
    api: str = "vllm"
    """Whose HTTP API the endpoint speaks: ``vllm`` or ``infinity``."""
    tokenizer: str | None = None
    """Count tokens with this tokenizer (a directory or a cached id); default: the model's."""


def _api(text: str) -> BenchApi:
    if text not in BENCH_APIS:
        raise SpecError(f"--api {text!r}: use {' or '.join(BENCH_APIS)}")
    return text


def _baseline(kind: str | None, model: str | None, task: BenchTask, dtype: str,
              hf_homes: Sequence[Path]) -> BaselineFn | None:
    if kind is None:
        return None
    from poolserve.bench import baseline as bl

    if kind not in bl.BASELINES:
        raise SpecError(f"--baseline {kind!r}: use {', '.join(bl.BASELINES)}")
    if not model:
        raise SpecError("--baseline needs the model: give NAME from the config, or --model")
    return bl.sentence_transformers_baseline(bl.resolve_model_path(model, hf_homes), task=task, dtype=dtype)


def benchmark(req: BenchRequest, edges: Edges, *, progress: ProgressCallback | None = None,
              notify: Callable[[str], None] | None = None) -> BenchReport:
    """Measure every setting (concurrency x batch size or documents) and return the report.

    ``notify`` hears what is about to be measured. A setting without one successful request is in the
    report (see :func:`unserved`), not raised.

    Raises:
        SpecError: bad input (a URL, counts, durations, a task, a baseline that cannot be set up).
        EndpointError: the endpoint does not answer at all, or wants a login (checked before the sweep).
        NotFound, NotReady: the target says the model is not deployed / not ready.
    """
    from poolserve.bench.run import bench
    from poolserve.bench.stub import self_test_report
    from poolserve.check.client import check_url

    if req.url is not None:
        check_url(req.url)
    api = _api(req.api)
    if req.requests is not None and req.duration is not None:
        raise SpecError("give --requests or --duration, not both")
    bounds = Bounds(requests=None if req.duration else (DEFAULT_REQUESTS if req.requests is None else req.requests),
                    duration_s=parse_duration(req.duration, "--duration") if req.duration else None,
                    warmup=req.warmup, max_time_s=parse_duration(req.time_cap, "--time-cap"))
    if req.name is None and req.url is None:
        if not req.self_test:
            raise SpecError("give a model NAME from the config, --url URL, or --self-test")
        return self_test_report(concurrency=req.concurrency, batch_sizes=req.batch_sizes or DEFAULT_BATCH_SIZES,
                                bounds=bounds, input_tokens=req.input_tokens, progress=progress)

    task: BenchTask = "embed"
    model = req.model
    benched: tuple[ServingFacts, int | None] | None = None  # what plan --from needs to know of the deployment
    model_id = req.model  # what the tokenizer is looked up by (the served name may differ)
    hf_homes: list[Path] = [Path(os.environ["HF_HOME"])] if os.environ.get("HF_HOME") else []
    endpoint = Endpoint(url=req.url.rstrip("/"), token=req.token) if req.url else None
    found = config_model(req.source, req.name, with_url=endpoint is not None)
    if found is not None:
        # NAME from the config gives the task, the model id and (without --url) the target's endpoint.
        rendered, m = found
        task = m.task
        model = model or m.model_id
        model_id = m.model_id
        try:
            hf_homes = [*edges.local_target().hf_homes(rendered), *hf_homes]  # the local cache (the PVC's layout)
        except SpecError:
            if req.baseline is not None:
                raise
        if endpoint is None:
            endpoint = target_endpoint(edges, req.where, rendered, m.name)
            model = endpoint.served_model or model
            from poolserve.actions.serving import benched_deployment

            benched = benched_deployment(rendered, m, edges.target(req.where))
    if endpoint is None:
        raise SpecError("give a model NAME from the config, or --url")
    if req.name is not None and found is None and req.task is None:
        raise SpecError(f"{req.name!r} is not a model in {req.source.config}: with --url give --task embed or "
                        "--task score (and --model for the served name)")
    if req.task is not None:
        task = parse_task(req.task)
    if task == "score":
        if req.batch_sizes is not None:
            raise SpecError("--batch-size applies to embedding models; use --documents for rerankers")
        sizes = req.documents
    else:
        sizes = req.batch_sizes or DEFAULT_BATCH_SIZES
    base = _baseline(req.baseline, model, task, req.baseline_dtype, hf_homes)
    counter, counted_by = _token_counter(req.tokenizer or model_id, hf_homes)
    if notify is not None:
        notify(f"benchmarking {model or '(server default model)'} at {endpoint.url} ({api} API): concurrency "
               f"{list(req.concurrency)}, {'documents' if task == 'score' else 'batch size'} {list(sizes)}; "
               f"tokens counted by {counted_by}")
    report = bench(endpoint, task=task, model=model, concurrency=req.concurrency, batch_sizes=sizes, bounds=bounds,
                   input_tokens=req.input_tokens, self_test=req.self_test, baseline=base, label=req.label,
                   progress=progress, api=api, tokens=counter, tokens_counted_by=counted_by)
    if benched is None:
        return report
    facts = replace(benched[0], vllm_version=report.machine.vllm_version or benched[0].vllm_version)
    return replace(report, deployment=facts, replicas=benched[1])


def _token_counter(model: str | None, hf_homes: Sequence[Path]) -> tuple[TokenCountFn | None, str]:
    """The model's own tokenizer, and what it is; or None and why there is none (the report says it)."""
    from poolserve.bench.tokens import NoCounter, load_counter

    found = load_counter(model, hf_homes)
    if isinstance(found, NoCounter):
        return None, f"nothing: {found.reason}"
    return found, found.source


def unserved(report: BenchReport) -> EndpointError | None:
    """The error for a report in which a setting had not one successful request (None otherwise)."""
    from poolserve.bench.metrics import unserved_settings

    bad = unserved_settings(report)
    if not bad:
        return None
    first = bad[0]
    kinds = ", ".join(f"{k} x{v}" for k, v in first.errors_by_kind.items()) or "no request finished"
    example = " ".join(next(iter(first.error_examples.values()), "").split())
    return EndpointError(f"{report.endpoint}: {len(bad)} of {len(report.settings)} settings had no successful "
                         f"request; c={first.concurrency} b={first.batch_size}: {kinds}"
                         + (f" ({example})" if example else ""), url=report.endpoint)
