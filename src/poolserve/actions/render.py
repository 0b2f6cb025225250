"""``render``: write ``manifests/kserve/`` (or one YAML stream), or check that it is up to date.

The directory is written all or nothing (staged next to the files, then renamed into place); files
poolserve did not write are never replaced without ``force``, and files it wrote for models no longer
in the config are removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from poolserve.actions.common import Source
from poolserve.errors import DriftError, SpecError

if TYPE_CHECKING:
    from poolserve.config.schema import PoolSpec

DEFAULT_OUT = Path("manifests/kserve")


@dataclass(frozen=True)
class RenderRequest:
    """What ``render`` was asked."""

    source: Source = field(default_factory=Source)
    output: Path | None = DEFAULT_OUT
    """The directory to write; None: one YAML stream (``-o -``)."""
    check: bool = False
    """Write nothing; report how the directory differs from a fresh render."""
    force: bool = False
    """Replace files in the directory that poolserve did not write."""


@dataclass(frozen=True)
class RenderResult:
    """What ``render`` produced, wrote or found."""

    stream: str | None = None
    """The YAML stream (``output`` None)."""
    out_dir: Path | None = None
    changed: tuple[str, ...] = ()
    """File names written (or, with ``check``, that differ)."""
    stale: tuple[str, ...] = ()
    """Files poolserve wrote for objects no longer in the config: removed (or, with ``check``, to remove)."""
    diffs: tuple[str, ...] = ()
    """With ``check``: a unified diff per changed or stale file."""
    templates_namespace: str | None = None
    """Set when ``dashboard-templates.yaml`` was rendered: the namespace its Templates go to."""
    notes: tuple[str, ...] = ()
    """What the user must know about what was written (who may apply the Templates)."""


def _existing(out_dir: Path) -> dict[str, str]:
    if not out_dir.is_dir():
        return {}
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(out_dir.iterdir())
            if p.is_file() and p.suffix in (".yaml", ".yml")}


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _write_atomically(out_dir: Path, texts: dict[str, str], stale: list[str]) -> None:
    """Write every file or none: stage each next to its target, then rename them into place."""
    staged: list[tuple[str, Path]] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        mode = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600
        for name, text in texts.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
            staged.append((tmp, out_dir / name))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, mode)
        for tmp, final in staged:
            os.replace(tmp, final)
        for name in stale:
            (out_dir / name).unlink()
    except OSError as e:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise SpecError(f"{out_dir}: cannot write manifests: {e}") from None


def render_manifests(req: RenderRequest) -> RenderResult:
    """Render the config; write the directory, or compare it (``check``), or return the stream.

    Raises:
        SpecError: a bad config, ``check`` without a directory, a foreign file in the way, or a write failure.
    """
    from poolserve.kserve.render import file_texts, is_generated, to_yaml, unified_diff

    rendered = req.source.load()
    if req.output is None:
        if req.check:
            raise SpecError("--check compares a directory: drop -o -")
        return RenderResult(stream=to_yaml(rendered.manifests))
    out_dir = req.output
    # The header names the config by file name only: how -c spelled the path must not change the output.
    texts = file_texts(rendered, req.source.config.name)
    existing = _existing(out_dir)
    stale = sorted(n for n, t in existing.items() if n not in texts and is_generated(t))
    changed = sorted(n for n, t in texts.items() if existing.get(n) != t)
    if req.check:
        diffs = [unified_diff(f"{out_dir}/{n}", existing.get(n), texts[n]) for n in changed]
        diffs += [unified_diff(f"{out_dir}/{n}", existing[n], None) for n in stale]
        return RenderResult(out_dir=out_dir, changed=tuple(changed), stale=tuple(stale), diffs=tuple(diffs))
    foreign = sorted(n for n in changed if n in existing and not is_generated(existing[n]))
    if foreign and not req.force:
        raise SpecError(f"{out_dir}/{foreign[0]} was not written by poolserve and would be replaced: move it, "
                        "or pass --force" + (f" ({len(foreign)} such files)" if len(foreign) > 1 else ""))
    _write_atomically(out_dir, texts, stale)
    from poolserve.kserve.objects import template_namespace

    spec = rendered.spec
    templates = template_namespace(spec) if spec.dashboard.templates else None
    return RenderResult(out_dir=out_dir, changed=tuple(changed), stale=tuple(stale), templates_namespace=templates,
                        notes=tuple(templates_notes(spec, out_dir)))


def templates_notes(spec: PoolSpec, out_dir: Path) -> list[str]:
    """Who may apply the rendered Templates, and what happens when nobody does."""
    from poolserve.kserve.objects import template_namespace, template_scope
    from poolserve.kserve.render import TEMPLATES_FILE

    if not spec.dashboard.templates:
        return []
    ns = template_namespace(spec)
    path = out_dir / TEMPLATES_FILE
    if template_scope(spec) == "project":
        return [f"{path}: project-scoped Templates in {ns}, applied with the rest (`poolserve deploy`, "
                "`oc apply -k`); OpenShift AI 3.5 does not look there and labels the runtimes 'Template removed'"]
    return [f"{path} goes to {ns}: creating Templates there needs an OpenShift AI admin "
            f"(`oc apply -f {path}`); `poolserve deploy` checks first, a project member's `oc apply -k` fails "
            "on it, and without it OpenShift AI 3.5+ labels the runtimes 'Template removed' "
            "(dashboard.templates_scope: project needs no admin)"]


def drift(req: RenderRequest, result: RenderResult) -> DriftError | None:
    """The error for a ``check`` that found differences (None when the directory is up to date)."""
    if not result.diffs:
        return None
    config = req.source.config
    return DriftError(f"{result.out_dir} differs from a fresh render of {config} "
                      f"({len(result.changed) + len(result.stale)} file(s)); "
                      f"run `poolserve render -c {config} -o {result.out_dir}`")
