"""Reading a config: :func:`load_spec` (a file) and :func:`parse_spec` (its text), with ``--set`` overrides.

``load_spec`` reads one YAML file; everything after that is pure. Errors name the file, the line and the
key (``poolserve.yaml:14: models[0].max_model_len``), or the ``--set`` the value came from: pydantic's
(one key at a time, :mod:`poolserve.config.schema`) and the rules across keys
(:mod:`poolserve.config.rules`) alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from poolserve.config.defaults import DEFAULT_CONFIG
from poolserve.config.rules import cross_check
from poolserve.config.schema import PoolSpec
from poolserve.config.yamlio import load_with_lines
from poolserve.errors import SpecError


def _loc(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Where:
    """Formats error locations as ``file:line: key`` from the loader's line map."""

    def __init__(self, source: str, lines: Mapping[tuple[str | int, ...], int],
                 overridden: Sequence[tuple[str, tuple[str | int, ...]]] = ()) -> None:
        self.source = source
        self.lines = lines
        self.overridden = overridden

    def __call__(self, path: Sequence[str | int]) -> str:
        p = tuple(path)
        for key, opath in self.overridden:
            # The value (or a mapping --set created on the way to it) came from the command line.
            if p and (p[: len(opath)] == opath or (opath[: len(p)] == p and p not in self.lines)):
                return f"--set {key}: {_loc(path)}"
        while p and p not in self.lines:
            p = p[:-1]
        line = self.lines.get(p)
        prefix = f"{self.source}:{line}" if line else self.source
        return f"{prefix}: {_loc(path)}"


def _pydantic_message(err: ValidationError, where: _Where) -> str:
    # A misspelt key usually also makes a required key "missing": name the misspelling first.
    errors = sorted(err.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see README 'Config reference')"
    elif first["type"] in ("tuple_type", "list_type"):
        msg = f"expected a list, got {type(first.get('input')).__name__}"
    elif first["type"] in ("dict_type", "model_type", "model_attributes_type"):
        msg = f"expected a mapping, got {type(first.get('input')).__name__}"
    elif first["type"] == "literal_error":
        msg = f"invalid value {first.get('input')!r}: {msg[0].lower()}{msg[1:]}"
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{where(loc)}: {msg}{more}"


def _apply_override(data: dict[str, Any], dotted: str, value: Any) -> tuple[str | int, ...]:
    """Set one dotted key (``models.0.max_model_len``) in the raw config; returns its key path.

    Raises:
        SpecError: ``--set KEY: ...`` when the path does not fit the config's shape.
    """
    parts = dotted.split(".")
    if not all(parts):
        raise SpecError(f"--set {dotted}: empty key segment")
    path: list[str | int] = []
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit():
                raise SpecError(f"--set {dotted}: {_loc(path) or 'this'} is a list: use an index "
                                f"0..{len(node) - 1}, not {part!r}")
            index = int(part)
            if index >= len(node):
                raise SpecError(f"--set {dotted}: {_loc(path)} has {len(node)} item(s); index {index} "
                                "is out of range")
            path.append(index)
            if last:
                node[index] = value
            else:
                if node[index] is None:
                    node[index] = {}
                node = node[index]
        elif isinstance(node, dict):
            path.append(part)
            if last:
                node[part] = value
            else:
                if node.get(part) is None:  # absent or null in the file: descend into a new mapping
                    node[part] = {}
                node = node[part]
        else:
            raise SpecError(f"--set {dotted}: {_loc(path)} is a {type(node).__name__}, not a mapping or list")
    return tuple(path)


def parse_spec(text: str, source: str = DEFAULT_CONFIG, overrides: Mapping[str, Any] | None = None) -> PoolSpec:
    """Parse and validate config text (pure). See :func:`load_spec`."""
    data, lines = load_with_lines(text, source)
    if data is None:
        raise SpecError(f"{source}: the file is empty; see README 'Config reference' for an example")
    if not isinstance(data, dict):
        raise SpecError(f"{source}:1: expected a mapping at the top level, got {type(data).__name__}")
    overridden = [(key, _apply_override(data, key, value)) for key, value in (overrides or {}).items()]
    where = _Where(source, lines, overridden)
    try:
        spec = PoolSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_pydantic_message(err, where)) from None
    problems = cross_check(spec)
    if problems:
        path, msg = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SpecError(f"{where(path)}: {msg}{more}")
    return spec


def load_spec(path: str | Path = DEFAULT_CONFIG, overrides: Mapping[str, Any] | None = None) -> PoolSpec:
    """Read and validate a config file.

    Args:
        path: the YAML file.
        overrides: dotted keys to set before validation (``{"namespace": "dev"}``): CLI flags win.

    Raises:
        SpecError: naming the file, line and key of the first problem.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: config file not found (pass -c FILE, or run from the directory holding it)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{p}: cannot read config: {err}") from None
    return parse_spec(text, str(p), overrides)
