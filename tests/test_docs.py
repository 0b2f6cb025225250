"""The README stays true: every command and package appears in it, and its test command is what CI runs."""

from __future__ import annotations

from pathlib import Path

import typer.main

from poolserve.cli.app import app

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    group = typer.main.get_group(app)
    names: list[str] = []
    for name, cmd in group.commands.items():
        sub = getattr(cmd, "commands", None)
        if sub:
            names += [f"{name} {s}" for s in sub]
        else:
            names.append(name)
    return names


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [c for c in _commands() if f"poolserve {c}" not in readme]
    assert missing == [], f"README.md does not mention: {missing}"


def test_every_command_has_help_text() -> None:
    group = typer.main.get_group(app)
    for name, cmd in group.commands.items():
        assert cmd.help, name
        for sub_name, sub in (getattr(cmd, "commands", None) or {}).items():
            assert sub.help, f"{name} {sub_name}"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in readme and "scripts/test.sh" in ci
    assert "scripts/local-demo.sh" in readme and (ROOT / "scripts" / "local-demo.sh").is_file()


def _config_keys(model: type, prefix: str = "") -> list[str]:
    """Every key of the config schema, as ``parent.key`` paths (nested models expanded)."""
    import typing

    from pydantic import BaseModel

    out: list[str] = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        out.append(prefix + name)
        for arg in [field.annotation, *typing.get_args(field.annotation)]:
            for inner in [arg, *typing.get_args(arg)]:
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    out += _config_keys(inner, f"{prefix}{name}.")
    return out


def test_every_config_key_is_in_the_readme_config_reference() -> None:
    from poolserve.config.schema import PoolSpec

    text = (ROOT / "README.md").read_text()
    block = text.split("## Config reference", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    import re

    missing = sorted({key for key in _config_keys(PoolSpec) if not re.search(rf"\b{key.rsplit('.', 1)[-1]}\b", block)})
    assert not missing, f"README 'Config reference' lacks: {', '.join(missing)}"


def _layout_paths() -> list[str]:
    """The paths the README's 'Where things live' block names: each line's first column, relative to src/poolserve/."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Where things live", 1)[1].split("\n#", 1)[0]
    block = section.split("```", 2)[1]
    lines = block.strip("\n").splitlines()
    assert lines[0].strip() == "src/poolserve/", "the block starts at src/poolserve/"
    paths = []
    for line in lines[1:]:
        first_column = line.strip().split("  ")[0]
        paths += first_column.split()
    return paths


def test_readme_layout_names_every_package_and_only_real_paths() -> None:
    src = ROOT / "src" / "poolserve"
    named = _layout_paths()
    assert named, "no paths in README 'Where things live'"
    unreal = [p for p in named if not (src / p).exists() or not p.endswith(("/", ".py"))]
    assert unreal == [], f"README 'Where things live' names what src/poolserve/ does not have: {', '.join(unreal)}"
    packages = sorted(f"{init.parent.relative_to(src).as_posix()}/" for init in src.rglob("__init__.py")
                      if init.parent != src)
    missing = [p for p in packages if p not in named]
    assert missing == [], f"README 'Where things live' lacks: {', '.join(missing)}"
