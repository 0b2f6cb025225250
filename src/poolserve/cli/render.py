"""``poolserve render``: write manifests/kserve/ (or stdout), or check it is up to date."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from poolserve.cli.app import ConfigOpt, SetOpt, command, err, parse_sets
from poolserve.errors import DriftError, SpecError
from poolserve.render import file_texts, is_generated, render, to_yaml, unified_diff
from poolserve.spec import DEFAULT_CONFIG, load_spec

DEFAULT_OUT = Path("manifests/kserve")


def _existing(out_dir: Path) -> dict[str, str]:
    if not out_dir.is_dir():
        return {}
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(out_dir.iterdir())
            if p.is_file() and p.suffix in (".yaml", ".yml")}


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


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@command("render")
def render_cmd(
    config: ConfigOpt = Path(DEFAULT_CONFIG),
    output: Annotated[str, typer.Option("--output", "-o", help="Directory to write, or - for one YAML stream "
                                        "on stdout.")] = str(DEFAULT_OUT),
    check: Annotated[bool, typer.Option("--check", help="Write nothing; print the diff and exit 1 if the "
                                        "directory differs from a fresh render.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace files in the output directory that poolserve "
                                        "did not write.")] = False,
    set_: SetOpt = None,
) -> None:
    """Render the config into KServe manifests (ServingRuntimes, InferenceServices, namespace, kustomization)."""
    spec = load_spec(config, parse_sets(set_))
    rendered = render(spec)
    if output == "-":
        if check:
            raise SpecError("--check compares a directory: drop -o -")
        typer.echo(to_yaml(rendered.manifests), nl=False)
        return
    out_dir = Path(output)
    # The header names the config by file name only: how -c spelled the path must not change the output.
    texts = file_texts(rendered, config.name)
    existing = _existing(out_dir)
    stale = sorted(n for n, t in existing.items() if n not in texts and is_generated(t))
    changed = sorted(n for n, t in texts.items() if existing.get(n) != t)
    if check:
        if not changed and not stale:
            err.print(f"{out_dir}: up to date with {config}")
            return
        for name in changed:
            typer.echo(unified_diff(f"{out_dir}/{name}", existing.get(name), texts[name]), nl=False)
        for name in stale:
            typer.echo(unified_diff(f"{out_dir}/{name}", existing[name], None), nl=False)
        raise DriftError(f"{out_dir} differs from a fresh render of {config} "
                         f"({len(changed) + len(stale)} file(s)); run `poolserve render -c {config} -o {out_dir}`")
    foreign = sorted(n for n in changed if n in existing and not is_generated(existing[n]))
    if foreign and not force:
        raise SpecError(f"{out_dir}/{foreign[0]} was not written by poolserve and would be replaced: move it, "
                        "or pass --force" + (f" ({len(foreign)} such files)" if len(foreign) > 1 else ""))
    _write_atomically(out_dir, texts, stale)
    for name in changed:
        err.print(f"wrote {out_dir / name}")
    for name in stale:
        err.print(f"removed {out_dir / name} (no longer in the config)")
    if not changed and not stale:
        err.print(f"{out_dir}: unchanged")
    if spec.dashboard.templates:
        err.print(f"note: {out_dir}/dashboard-templates.yaml goes to {spec.dashboard.templates_namespace} and needs "
                  "admin rights; it is not in the kustomization: oc apply -f it separately")
