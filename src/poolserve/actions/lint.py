"""``lint`` and ``explain``: offline checks of the config and its objects, and the container KServe runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolserve.actions.common import Source

if TYPE_CHECKING:
    from poolserve.kserve.lint import LintReport


@dataclass(frozen=True)
class LintRequest:
    """What ``lint`` was asked."""

    source: Source = field(default_factory=Source)
    crd_dir: Path | None = None
    """The KServe CRDs to validate against (None: schemas are not checked)."""


def lint(req: LintRequest) -> LintReport:
    """Findings (errors, warnings, notes) about the rendered objects: schemas, dashboard rules, vLLM flags."""
    from poolserve.kserve.lint import lint as run_lint

    rendered = req.source.load()
    return run_lint(rendered.spec, rendered, crd_dir=req.crd_dir)


def explain(source: Source, names: tuple[str, ...] = ()) -> list[Mapping[str, Any]]:
    """The composed container of each named model (all when empty): image, argv, env, mounts, resources."""
    from poolserve.kserve.lint import explain as composed

    rendered = source.load(names)
    return composed(rendered, list(names))
