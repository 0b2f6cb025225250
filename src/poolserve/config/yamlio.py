"""YAML in and out: loading with line numbers for error messages, and deterministic dumping.

Loading keeps a map from key paths (``("models", 0, "max_model_len")``) to 1-based line numbers,
so a validation error can name ``poolserve.yaml:14 models[0].max_model_len``. Dumping keeps
insertion order, never emits anchors/aliases and always quotes strings that YAML would read as
another type (``"true"``, ``"8080"``), so rendered files are byte-for-byte reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from poolserve.errors import SpecError

Path_ = tuple[str | int, ...]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_map(node: yaml.Node | None, path: Path_, out: dict[Path_, int]) -> None:
    if node is None:
        return
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _line_map(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out)


def load_with_lines(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    """Parse one YAML document and return ``(data, {key_path: line})``.

    Raises:
        SpecError: on a syntax error or a duplicate key, naming ``source:line``.
    """
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = err.problem or err.context or "invalid YAML"
        raise SpecError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{source}: YAML syntax error: {err}") from None
    lines: dict[Path_, int] = {}
    _line_map(node, (), lines)
    return data, lines


class _Dumper(yaml.SafeDumper):
    """Deterministic block-style dumper without aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent sequences inside mappings, as kubectl and oc print them.
        super().increase_indent(flow, False)


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def dump(doc: Any) -> str:
    """Dump one document deterministically (insertion order, block style)."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096)


def dump_all(docs: Iterable[Any]) -> str:
    """Dump documents separated by ``---``."""
    return "---\n".join(dump(d) for d in docs)


def load_all(text: str) -> list[Any]:
    """Parse a multi-document YAML string (safe loader), skipping empty documents."""
    return [d for d in yaml.safe_load_all(text) if d is not None]
