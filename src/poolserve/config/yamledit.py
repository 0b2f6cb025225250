"""Setting keys of one model in the config text, keeping every comment, blank line and key order (pure).

PyYAML drops comments when it loads, so a load-and-dump round trip would strip the user's file. Instead
:func:`set_model_keys` finds the model's mapping in the parsed node tree (which keeps each node's character
offsets) and edits the text in place: a key that exists gets its value replaced where it stands (a nested
mapping such as ``autoscaling`` key by key, so its other keys and comments stay); a missing key is added
as a new line after the mapping's last line, at the indentation of its keys (or inside the braces of a
flow mapping). Everything else is left byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from poolserve.errors import SpecError

_Edit = tuple[int, int, int, str]
"""``(start, -depth, end, new)``: replace ``text[start:end]`` with ``new``; at one offset the deeper edit goes first."""


def flow(value: Any) -> str:
    """``value`` in YAML flow style, on one line: ``{metric: queue, target: 16}``, ``4``, ``'true'``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _key(node: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    return next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def find_model(root: yaml.Node | None, name: str, source: str) -> yaml.MappingNode:
    """The mapping node of ``models[]`` item ``name``.

    Raises:
        SpecError: no such model (or no ``models:`` list).
    """
    models = _key(root, "models") if isinstance(root, yaml.MappingNode) else None
    if models is None or not isinstance(models[1], yaml.SequenceNode):
        raise SpecError(f"{source}: no models: list to edit")
    for item in models[1].value:
        if isinstance(item, yaml.MappingNode):
            n = _key(item, "name")
            if n is not None and isinstance(n[1], yaml.ScalarNode) and n[1].value == name:
                return item
    raise SpecError(f"{source}: no model named {name!r} to edit")


def _last_index(node: yaml.Node, text: str) -> int:
    """Where the line after ``node``'s last line starts (a trailing comment on that line stays there)."""
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return _last_index(last[1] if isinstance(last, tuple) else last, text)
    end = node.end_mark.index
    if node.end_mark.column == 0:  # a block scalar ends at the start of the line after it
        return end
    newline = text.find("\n", end)
    return len(text) if newline < 0 else newline + 1


def _set(node: yaml.MappingNode, updates: Mapping[str, Any], text: str, depth: int = 0) -> list[_Edit]:
    edits: list[_Edit] = []
    missing: list[str] = []
    for key, value in updates.items():
        found = _key(node, key)
        if found is None:
            missing.append(f"{key}: {flow(value)}")
        elif isinstance(value, Mapping) and isinstance(found[1], yaml.MappingNode):
            edits += _set(found[1], value, text, depth + 1)
        else:
            v = found[1]
            if isinstance(v, yaml.MappingNode | yaml.SequenceNode) and not v.flow_style:
                # A block collection replaced by a scalar or flow value: its lines go, the key's line takes it.
                start = found[0].end_mark.index
                colon = text.index(":", start)
                edits.append((colon + 1, -depth, _last_index(v, text) - 1, f" {flow(value)}"))
            else:
                edits.append((v.start_mark.index, -depth, v.end_mark.index, flow(value)))
    if missing:
        at, new = _insert(node, missing, text)
        edits.append((at, -depth, at, new))
    return edits


def _insert(node: yaml.MappingNode, items: list[str], text: str) -> tuple[int, str]:
    if node.flow_style:
        close = node.end_mark.index - 1  # the closing brace
        sep = ", " if node.value else ""
        return close, sep + ", ".join(items)
    if not node.value:
        raise SpecError("cannot add keys to an empty block mapping")
    indent = node.value[0][0].start_mark.column
    at = _last_index(node, text)
    lead = "" if at == 0 or text[at - 1] == "\n" else "\n"
    return at, lead + "".join(" " * indent + item + "\n" for item in items)


def set_model_keys(text: str, name: str, updates: Mapping[str, Any], source: str = "config") -> str:
    """``text`` with model ``name``'s keys set to ``updates`` (nested mappings merged key by key).

    Raises:
        SpecError: the text is not YAML, or has no such model.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise SpecError(f"{source}: YAML syntax error: {err}") from None
    model = find_model(root, name, source)
    out = text
    # Last offset first, so earlier offsets stay valid; at one offset the last applied lands first in the text.
    for start, _, end, new in sorted(_set(model, updates, text), reverse=True):
        out = out[:start] + new + out[end:]
    return out
