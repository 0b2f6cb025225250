"""The rules table (docs/reference/rules.md): every rule of poolserve's config and of its lint, and where each holds.

Rules are found in the source by what they are, wherever they live:

- the config's (``src/poolserve/config/``): a ``(key path, message)`` pair a check returns, or the ``ValueError``
  a parser raises (storage_uri);
- lint's (``src/poolserve/kserve/``, ``src/poolserve/vllm/``): a ``Finding``, a vLLM ``FlagProblem``, a
  ``LintError`` composing the pod, or a message of a ``*_problems`` function returning ``list[str]`` (the KServe
  webhook's rules).

A rule is keyed by its message, each formatted part written "…" (a message that wraps another rule's, such as
lint's ``vLLM {ver}: {p.message}``, is listed too). Where the Helm chart enforces a
rule: **schema** when a fragment of the generated values.schema.json names it (``$comment: "poolserve rule:
..."``, a distinctive part of the message), **chart** when ``templates/_validate.tpl`` fails with that message,
else **poolserve** alone (``poolserve lint -c values.yaml`` before ``helm install``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "poolserve"
TABLE = ROOT / "docs" / "reference" / "rules.md"
VALIDATE_TPL = ROOT / "charts" / "poolserve" / "templates" / "_validate.tpl"
RULE_TAG = "poolserve rule: "
GAP = "…"


@dataclass(frozen=True)
class Rule:
    """One rule: its message (the key), where it lives, and how severe (config rules are errors)."""

    message: str
    source: str
    """``config/storage.py: parse``: the module under src/poolserve/ and the function."""
    severity: str
    config: bool
    """A rule of the config (poolserve refuses to read a config that breaks it), not of lint."""

    def pattern(self) -> re.Pattern[str]:
        """A pattern that finds the rule's message in a text, any text in place of each "…"."""
        parts = [re.escape(p) for p in self.message.split(GAP)]
        return re.compile(".*?".join(parts) + r"( \(and \d+ more\))?$", re.DOTALL)


def _texts(node: ast.expr | None) -> list[str]:
    """A message expression as text with its formatted parts as "…", one per branch of a choice ([]: no message)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(str(v.value) if isinstance(v, ast.Constant) else GAP for v in node.values)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [a + b for a in _texts(node.left) for b in _texts(node.right)]
    if isinstance(node, ast.IfExp):
        return _texts(node.body) + _texts(node.orelse)
    return []




def _severity(node: ast.expr) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "error or warning"


def _is_list_of_str(node: ast.expr | None) -> bool:
    return node is not None and ast.unparse(node) == "list[str]"


class _Finder(ast.NodeVisitor):
    """Collects a module's rules, each with the (outermost) function it is in."""

    def __init__(self, module: str, config: bool) -> None:
        self.module, self.config = module, config
        self.function = ""
        self.problems_fn = self.why_fn = False
        self.found: dict[tuple[str, str], Rule] = {}

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        outer = self.function, self.problems_fn, self.why_fn
        self.function = self.function or node.name
        self.problems_fn = node.name.endswith("_problems") and _is_list_of_str(node.returns)
        doc = ast.get_docstring(node) or ""
        self.why_fn = doc.startswith("Why ") and node.returns is not None and ast.unparse(node.returns) == "str | None"
        self.generic_visit(node)
        self.function, self.problems_fn, self.why_fn = outer

    def _add(self, node: ast.expr | None, severity: str, config: bool = False) -> None:
        source = f"{self.module}: {self.function or '(module)'}"
        for text in _texts(node):
            if any(c.isalpha() for c in text):
                message = " ".join(text.split())
                self.found.setdefault((message, source), Rule(message, source, severity, config))

    def visit_Tuple(self, node: ast.Tuple) -> None:
        # The config's checks return (key path, message) pairs; a key path is a tuple, a name or a choice of them.
        if self.config and len(node.elts) == 2 and isinstance(node.elts[0], ast.Tuple | ast.Name | ast.IfExp):
            self._add(node.elts[1], "error", config=True)
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc
        wanted = "ValueError" if self.config else "LintError"
        if isinstance(exc, ast.Call) and isinstance(exc.func, ast.Name) and exc.func.id == wanted and exc.args:
            self._add(exc.args[0], "error", config=self.config)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        # A check lint runs that says why something is wrong, or None (storage.mount_conflict).
        if self.why_fn:
            self._add(node.value, "error")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if not self.config and isinstance(func, ast.Name) and func.id in ("Finding", "FlagProblem") \
                and len(node.args) == 3:
            self._add(node.args[2], _severity(node.args[0]))
        elif self.problems_fn and isinstance(func, ast.Attribute) and func.attr == "append" and node.args:
            self._add(node.args[0], "error")
        self.generic_visit(node)


def _modules() -> Iterator[tuple[Path, bool]]:
    for path in sorted((SRC / "config").rglob("*.py")):
        yield path, True
    for layer in ("kserve", "vllm"):
        for path in sorted((SRC / layer).rglob("*.py")):
            yield path, False


def discover() -> list[Rule]:
    """Every rule in the source, in source order (config first), one per message and function."""
    rules: list[Rule] = []
    for path, config in _modules():
        finder = _Finder(path.relative_to(SRC).as_posix(), config)
        finder.visit(ast.parse(path.read_text(encoding="utf-8")))
        rules += finder.found.values()
    return rules


def schema_tags(schema: Any) -> list[str]:
    """The rules each fragment of values.schema.json names (its ``$comment``), in schema order."""
    out: list[str] = []
    if isinstance(schema, dict):
        comment = schema.get("$comment")
        if isinstance(comment, str) and comment.startswith(RULE_TAG):
            out += comment.removeprefix(RULE_TAG).split(" | ")
        for value in schema.values():
            out += schema_tags(value)
    elif isinstance(schema, list):
        for value in schema:
            out += schema_tags(value)
    return out


def _in_template(rule: Rule, lines: list[str]) -> bool:
    """The template fails with the rule's message: its words, in order, on one line (printf's verbs for "…")."""
    parts = [re.escape(p.strip()) for p in rule.message.split(GAP) if p.strip()]
    pattern = re.compile(".*?".join(parts))
    return bool(parts) and any(pattern.search(line) for line in lines)


def enforcement(rules: list[Rule], schema: Any, template: str) -> dict[Rule, str]:
    """Where the chart enforces each rule: ``schema``, ``chart`` or ``poolserve`` (poolserve alone).

    Raises:
        SystemExit: when a schema fragment names a rule no config rule's message contains.
    """
    tags = schema_tags(schema)
    for tag in dict.fromkeys(tags):
        if not any(tag in r.message for r in rules if r.config):
            raise SystemExit(f"values.schema.json names a rule no config rule has: {tag!r}")
    lines = template.splitlines()
    out: dict[Rule, str] = {}
    for r in rules:
        where = [w for w, ok in (("schema", any(t in r.message for t in tags)), ("chart", _in_template(r, lines)))
                 if ok and r.config]  # the chart checks the config's rules only
        out[r] = " + ".join(where) or "poolserve"
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def constraints(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Each key's bounds and choices in pydantic's own schema: (``Class.key``, what it must be)."""
    words = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<",
             "minItems": "items >=", "maxLength": "length <="}
    out: list[tuple[str, str]] = []
    classes = {"PoolSpec": schema, **schema.get("$defs", {})}
    for cls, body in sorted(classes.items()):
        for key, prop in body.get("properties", {}).items():
            said = [f"{w} {prop[k]}" for k, w in words.items() if k in prop]
            if "enum" in prop:
                said.append("one of " + ", ".join(str(v) for v in prop["enum"] if v is not None))
            if said:
                out.append((f"{cls}.{key}", "; ".join(said)))
    return out


def markdown(rules: list[Rule], where: dict[Rule, str], bounds: list[tuple[str, str]], generated_by: str) -> str:
    """docs/reference/rules.md: the config's rules, lint's, and the keys' bounds and choices."""
    counts = {w: sum(1 for r in rules if r.config and where[r] == w) for w in ("schema", "chart", "poolserve")}
    lines = [
        "# Rules: what poolserve checks, and where the Helm chart checks it", "",
        f"<!-- {generated_by} -->", "",
        "poolserve checks every rule below: the config's whenever it reads a config, lint's in `poolserve lint`",
        "(and `deploy`). The Helm chart (`charts/poolserve`, whose values are a poolserve config) checks a rule",
        "before it renders anything in one of two places; the **Helm** column says which:", "",
        "- **schema**: the generated `values.schema.json` (Helm prints the schema's error, naming the key);",
        "- **chart**: `templates/_validate.tpl`, the rules across items the schema cannot say (poolserve's message);",
        "- **poolserve**: poolserve alone. Run `poolserve lint -c values.yaml` before `helm install`.", "",
        "The chart also refuses a `namespace:` other than the release namespace. Rules are found in the source",
        "(scripts/rules_table.py says how) and keyed by their message, each formatted part written \"…\";",
        "`tests/test_rules_table.py` fails when a rule is missing here.", "",
        f"## The config's rules ({counts['schema']} schema, {counts['chart']} chart, {counts['poolserve']} poolserve)",
        "", "| Rule (message) | Where | Helm |", "|---|---|---|",
    ]
    lines += [f"| {_cell(r.message)} | `{r.source}` | {where[r]} |" for r in rules if r.config]
    lines += ["", "## poolserve lint's rules", "",
              "Errors fail `poolserve lint` (and `deploy`); warnings and notes are printed.", "",
              "| Rule (message) | Severity | Where | Helm |", "|---|---|---|---|"]
    lines += [f"| {_cell(r.message)} | {r.severity} | `{r.source}` | {where[r]} |" for r in rules if not r.config]
    lines += ["", "## Each key's bounds and choices (pydantic; all in the schema)", "",
              "Types, required keys and unknown keys are the schema's too.", "",
              "| Key | Must be |", "|---|---|"]
    lines += [f"| `{key}` | {_cell(said)} |" for key, said in bounds]
    return "\n".join(lines) + "\n"


def read_table(text: str) -> list[tuple[str, str]]:
    """The rows of a rules table (docs/reference/rules.md): (message, where the chart enforces it)."""
    rows: list[tuple[str, str]] = []
    for line in text.splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) in (3, 4) and cells[-1] in ("schema", "chart", "poolserve", "schema + chart"):
            rows.append((cells[0], cells[-1]))
    return rows


def helm_for(message: str, rows: list[tuple[str, str]]) -> set[str]:
    """Where the chart enforces the rule whose message ``message`` is (as poolserve prints it, any prefix).

    Several rules' messages may fit (lint's ``vLLM …: …`` wraps vLLM's own): the most specific, the one with
    the most text of its own, is the rule.
    """
    fits = [(len(key.replace(GAP, "")), helm) for key, helm in rows
            if Rule(key, "", "", False).pattern().search(message)]
    best = max((n for n, _ in fits), default=0)
    return {helm for n, helm in fits if n == best}
