"""``plan NAME --from BENCH.json --rate R --p99 L``: replicas and the KEDA target from a measured curve.

Reads the benchmark report and the config, computes the plan (:func:`poolserve.bench.capacity.plan_capacity`)
with what ``plan`` already knows of the model's GPU memory, and with ``--write`` sets the model's
``max_replicas`` and ``autoscaling: {metric: queue, target: N}`` in the config file, keeping its comments and
order (:mod:`poolserve.config.yamledit`). The file is replaced whole only after the edited text validates and
renders to the planned values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolserve.actions.common import Source
from poolserve.errors import CapacityError, SpecError

if TYPE_CHECKING:
    from poolserve.bench.capacity import CapacityPlan
    from poolserve.bench.metrics import BenchReport
    from poolserve.config.schema import PoolSpec


@dataclass(frozen=True)
class CapacityRequest:
    """What ``poolserve plan NAME --from BENCH.json`` was asked."""

    name: str
    report: Path
    rate: str
    """``500/s``, ``30000/min``: requests of the ``batch`` shape."""
    p99: str
    """``200ms``, ``0.5s``."""
    source: Source = field(default_factory=Source)
    batch: int | None = None
    headroom: str | None = None
    """``20%`` (default) or ``0.2``."""
    write: bool = False


@dataclass(frozen=True)
class CapacityResult:
    """The plan, what the report measured, the GPU memory side, and the config edit (when written)."""

    plan: CapacityPlan
    report: BenchReport
    memory: tuple[str, ...]
    updates: dict[str, Any]
    """The model's keys the plan sets (``max_replicas``, ``autoscaling``), ready to paste or written."""
    written: Path | None = None


def read_report(path: Path) -> BenchReport:
    """The benchmark report at ``path``.

    Raises:
        CapacityError: unreadable, or not a report (naming the ``poolserve bench`` that writes one).
    """
    from poolserve.bench.metrics import report_from_json

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CapacityError(f"--from {path}: cannot read it ({e.strerror or e}); write one with "
                            "`poolserve bench NAME -o bench.json`") from None
    try:
        return report_from_json(text, str(path))
    except SpecError as e:
        raise CapacityError(f"--from {e.message}; write one with `poolserve bench NAME -o bench.json`") from None


def updates_for(plan: CapacityPlan, spec: PoolSpec, name: str) -> dict[str, Any]:
    """The keys to set on model ``name``: ``max_replicas`` and a queue ``autoscaling`` block.

    A model without its own ``autoscaling`` inherits ``defaults.autoscaling``; its KEDA settings
    (``prometheus_url``, ``authentication``) are copied so the model's own block keeps them.
    """
    autoscaling: dict[str, Any] = {"metric": "queue", "target": plan.target}
    own = next(m for m in spec.models if m.name == name)
    inherited = spec.defaults.autoscaling
    if own.autoscaling is None and inherited is not None and inherited.metric == "queue":
        for key in ("prometheus_url", "authentication"):
            if key in inherited.model_fields_set:
                autoscaling[key] = getattr(inherited, key)
    return {"max_replicas": plan.max_replicas, "autoscaling": autoscaling}


def _write(req: CapacityRequest, plan: CapacityPlan, updates: dict[str, Any]) -> Path:
    from poolserve.actions.files import write_atomic
    from poolserve.config.load import parse_spec
    from poolserve.config.yamledit import set_model_keys
    from poolserve.kserve.render import render

    path = req.source.config
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read the config to --write it: {e.strerror or e}") from None
    edited = set_model_keys(text, req.name, updates, str(path))
    model = render(parse_spec(edited, str(path))).model(req.name)
    got = (model.max_replicas, model.autoscaling.metric if model.autoscaling else None,
           model.autoscaling.target if model.autoscaling else None)
    if got != (plan.max_replicas, "queue", plan.target):
        raise SpecError(f"{path}: the edited config resolves to max_replicas {got[0]}, autoscaling {got[1]} "
                        f"{got[2]}, not the plan's; nothing was written")
    write_atomic(path, edited)
    return path


def capacity(req: CapacityRequest) -> CapacityResult:
    """Plan replicas and the KEDA target for ``req.name`` from the benchmark ``req.report``.

    Raises:
        CapacityError: the report cannot answer (another model, no such request shape, a goal no measured
            point meets, a rate of 0); the message names the ``poolserve bench`` run to make.
        SpecError: a bad config, an unknown NAME, ``--write`` with ``--set``.
    """
    from poolserve.actions.serving import deployment_facts
    from poolserve.bench.capacity import Goal, Subject, memory_fit, parse_headroom, parse_latency_ms, parse_rate
    from poolserve.bench.capacity import plan_capacity as compute
    from poolserve.vllm.sizing import plan_model

    if req.write and req.source.overrides:
        raise SpecError("--write edits the config file: drop --set (or put the values in the file)")
    if req.batch is not None and req.batch < 1:
        raise CapacityError(f"--batch {req.batch}: must be at least 1")
    goal = Goal(rate_per_s=parse_rate(req.rate), p99_ms=parse_latency_ms(req.p99), batch=req.batch,
                headroom=parse_headroom(req.headroom) if req.headroom is not None else Goal.headroom)
    rendered = req.source.load([req.name])
    model = rendered.model(req.name)
    report = read_report(req.report)
    measured_target = report.deployment.target if report.deployment is not None else None
    subject = Subject(name=model.name, model_id=model.model_id, task=model.task, replicas=model.replicas,
                      facts=deployment_facts(rendered, model, None),
                      target=measured_target if measured_target in ("local", "cluster") else None)
    plan = compute(report, goal, subject)
    tokens = next((s.tokens_per_text for s in report.settings if s.batch_size == plan.batch and s.tokens_per_text),
                  float(report.input_tokens))
    memory = memory_fit(plan_model(model), plan.target, tokens)
    updates = updates_for(plan, rendered.spec, model.name)
    written = _write(req, plan, updates) if req.write else None
    return CapacityResult(plan=plan, report=report, memory=tuple(memory), updates=updates, written=written)
