"""The docs stay true: generated pages current, every command, option, config key, module and lesson they name
exists, and the tutorials' commands run (the local one on a stub vLLM here and on real vLLM with the ``vllm``
marker, the OpenShift AI one against FakeCluster)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import sys
import typing
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from poolserve.cli.app import app
from poolserve.config.schema import PoolSpec

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LESSONS = DOCS / "explanation" / "lessons"
ARCHITECTURE = DOCS / "explanation" / "architecture.md"
LOCAL_TUTORIAL = DOCS / "tutorials" / "local.md"
OPENSHIFT_TUTORIAL = DOCS / "tutorials" / "openshift-ai.md"
GENERATED = {DOCS / "reference" / n for n in ("cli.md", "config.md", "helm-values.md", "catalog.md", "exit-codes.md")}


def _pages() -> list[Path]:
    """Every hand-written Markdown page a reader sees: README, LESSONS_LEARNED and docs/ (generated ones aside)."""
    pages = [ROOT / "README.md", ROOT / "LESSONS_LEARNED.md", ROOT / "charts" / "poolserve" / "README.md",
             *sorted(DOCS.rglob("*.md"))]
    return [p for p in pages if p not in GENERATED]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --------------------------------------------------------------------------------------------------
# Generated pages


def _gen_docs() -> Any:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return importlib.import_module("gen_docs")
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_generated_docs_are_current() -> None:
    stale = [_rel(path) for path, text in _gen_docs().outputs().items()
             if not path.is_file() or path.read_text(encoding="utf-8") != text]
    assert stale == [], f"stale generated docs: {', '.join(stale)}: run `make docs` (scripts/gen_docs.py)"


def test_every_config_key_has_a_description() -> None:
    schema = PoolSpec.model_json_schema(mode="validation")
    missing = [f"{cls}.{key}" for cls, node in [("PoolSpec", schema), *schema["$defs"].items()]
               for key, prop in node.get("properties", {}).items() if not prop.get("description")]
    assert missing == [], f"config keys without a description (an attribute docstring in config/schema.py): {missing}"


def test_exit_codes_page_has_every_code_and_1_and_130() -> None:
    text = (DOCS / "reference" / "exit-codes.md").read_text()
    codes = {code for code, _ in _gen_docs().exit_codes()}
    assert {1, 2, 130} <= codes
    for code in codes:
        assert f"\n| {code} |" in text, code


# --------------------------------------------------------------------------------------------------
# The CLI


def _group() -> Any:
    return typer.main.get_group(app)


def _commands() -> list[str]:
    names: list[str] = []
    for name, cmd in _group().commands.items():
        sub = getattr(cmd, "commands", None)
        names += [f"{name} {s}" for s in sub] if sub else [name]
    return names


def test_every_command_is_in_the_readme_and_the_cli_reference() -> None:
    readme = (ROOT / "README.md").read_text()
    cli = (DOCS / "reference" / "cli.md").read_text()
    assert [c for c in _commands() if f"poolserve {c}" not in readme] == []
    assert [c for c in _commands() if f"## poolserve {c}\n" not in cli] == []


def test_every_command_has_help_text() -> None:
    for name, cmd in _group().commands.items():
        assert cmd.help, name
        for sub_name, sub in (getattr(cmd, "commands", None) or {}).items():
            assert sub.help, f"{name} {sub_name}"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in readme and "scripts/test.sh" in ci
    assert "scripts/local-demo.sh" in readme and (ROOT / "scripts" / "local-demo.sh").is_file()
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert "scripts/gen_docs.py --check" in test_sh and "mkdocs build --strict" in test_sh


def test_readme_fits_two_screens() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


# --------------------------------------------------------------------------------------------------
# Code blocks: every poolserve command, option and config key they show exists


def _code_blocks(path: Path) -> Iterator[tuple[str, str, int]]:
    """``(language, text, first line number)`` of each fenced code block, indented ones too."""
    lang, start, lines, indent = None, 0, [], 0
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if lang is None and stripped.startswith("```"):
            lang, start, lines, indent = stripped[3:].strip() or "text", i + 1, [], len(line) - len(line.lstrip())
        elif lang is not None and stripped == "```":
            yield lang, "\n".join(lines), start
            lang = None
        elif lang is not None:
            lines.append(line[indent:])


def _shell_lines(lang: str, text: str) -> Iterator[str]:
    """The command lines of a shell block: continuations joined, heredoc bodies skipped, prompts stripped."""
    joined: list[str] = []
    heredoc: str | None = None
    pending = ""
    for raw in text.splitlines():
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        line = pending + raw
        pending = ""
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        m = re.search(r"<<-?\s*'?\"?(\w+)", line)
        if m:
            heredoc = m.group(1)
        joined.append(line)
    for line in joined:
        if lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        yield line


_SEGMENT = re.compile(r"\$\(|\||;|&&|\|\||`")


def _poolserve_invocations(lang: str, text: str) -> Iterator[list[str]]:
    """The argv (after ``poolserve``) of every poolserve command in a shell block."""
    if lang not in ("bash", "sh", "console", "shell"):
        return
    for line in _shell_lines(lang, text):
        for segment in _SEGMENT.split(line):
            segment = segment.strip().rstrip(")")
            words = segment.split()
            while words and re.match(r"^[A-Z_]+=", words[0]):
                words = words[1:]  # VAR=value prefixes
            if not words or not (words[0] == "poolserve" or words[0].endswith("/poolserve")):
                continue
            try:
                argv = shlex.split(" ".join(words), comments=True)
            except ValueError:
                continue
            yield argv[1:]


def _resolve(argv: list[str]) -> tuple[Any, list[str], str]:
    """The click command ``argv`` names, the rest of argv, and its name; LookupError when there is none."""
    cmd, rest, name = _group(), list(argv), "poolserve"
    while rest and getattr(cmd, "commands", None) and not rest[0].startswith("-"):
        sub = rest.pop(0)
        if sub not in cmd.commands:
            raise LookupError(f"`{name} {sub}` is not a command")
        cmd, name = cmd.commands[sub], f"{name} {sub}"
    return cmd, rest, name


def _check_invocation(argv: list[str]) -> list[str]:
    """What is wrong with a documented ``poolserve`` argv: unknown commands, options, --set keys."""
    try:
        cmd, rest, name = _resolve(argv)
    except LookupError as err:
        return [str(err)]
    problems: list[str] = []
    options = {o: p for p in cmd.params if p.param_type_name == "option" for o in [*p.opts, *p.secondary_opts]}
    options["--help"] = None
    i = 0
    while i < len(rest):
        word = rest[i]
        i += 1
        if not word.startswith("-") or word == "-":
            continue
        flag, _, inline = word.partition("=")
        if flag not in options:
            problems.append(f"`{name}` has no option {flag}")
            continue
        param = options[flag]
        takes_value = param is not None and not param.is_flag
        value = inline or (rest[i] if takes_value and i < len(rest) else "")
        if takes_value and not inline:
            i += 1
        if flag in ("--set", "-s") and value:
            problems += [f"--set {value}: {p}" for p in _key_problems(value.split("=", 1)[0])]
    return problems


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The config class a field holds, and whether it holds a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (tuple, list) and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0], True
    for arg in args:
        found, many = _model_of(arg)
        if found:
            return found, many
    return None, False


def _key_problems(path: str) -> list[str]:
    """A ``--set`` path (``models.0.max_model_len``) against the schema."""
    cls: type[BaseModel] | None = PoolSpec
    parts = path.split(".")
    for i, part in enumerate(parts):
        if cls is None:
            return []  # inside a free-form mapping (env, node_selector, ...)
        if part.isdigit():
            continue
        if part not in cls.model_fields:
            return [f"{'.'.join(parts[:i + 1])} is not a config key"]
        cls, _ = _model_of(cls.model_fields[part].annotation)
    return []


def _yaml_key_problems(data: Any, cls: type[BaseModel], where: str) -> list[str]:
    problems: list[str] = []
    if not isinstance(data, dict):
        return problems
    for key, value in data.items():
        if key not in cls.model_fields:
            problems.append(f"{where}{key} is not a config key")
            continue
        sub, many = _model_of(cls.model_fields[key].annotation)
        if sub is None:
            continue
        for item in (value if many and isinstance(value, list) else [value]):
            problems += _yaml_key_problems(item, sub, f"{where}{key}{'[]' if many else ''}.")
    return problems


def _config_blocks(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """YAML blocks that are (part of) a poolserve config: top-level keys of PoolSpec, no apiVersion."""
    for lang, text, line in _code_blocks(path):
        if lang not in ("yaml", "yml"):
            continue
        data = yaml.safe_load(text)
        if isinstance(data, dict) and data and "apiVersion" not in data and set(data) <= set(PoolSpec.model_fields):
            yield line, data


def test_every_poolserve_command_in_the_docs_exists_with_its_options() -> None:
    problems, seen = [], 0
    for page in _pages():
        for lang, text, line in _code_blocks(page):
            for argv in _poolserve_invocations(lang, text):
                seen += 1
                problems += [f"{_rel(page)}:{line}: {p}" for p in _check_invocation(argv)]
    assert seen > 40, seen
    assert problems == [], "\n".join(problems)


def test_the_command_checker_catches_what_is_wrong() -> None:
    assert _check_invocation(["deploy", "--target", "local", "x"]) == []
    assert _check_invocation(["cache", "warm", "--timeout", "5m"]) == []
    assert _check_invocation(["deplo"]) == ["`poolserve deplo` is not a command"]
    assert _check_invocation(["deploy", "--no-such"]) == ["`poolserve deploy` has no option --no-such"]
    assert _check_invocation(["render", "--set", "modles.0.x=1"]) == ["--set modles.0.x=1: modles is not a config key"]
    assert _check_invocation(["render", "--set", "models.0.env.FOO=1"]) == []


def test_every_config_key_in_the_docs_exists() -> None:
    from poolserve.config.load import parse_spec

    problems, seen = [], 0
    for page in _pages():
        for line, data in _config_blocks(page):
            seen += 1
            problems += [f"{_rel(page)}:{line}: {p}" for p in _yaml_key_problems(data, PoolSpec, "")]
            if {"runtimes", "models"} <= set(data):  # a whole config: it must load
                try:
                    parse_spec(yaml.safe_dump(data), f"{_rel(page)}:{line}")
                except Exception as err:  # reported below, with the page
                    problems.append(f"{_rel(page)}:{line}: {err}")
    assert seen >= 8, seen
    assert problems == [], "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# Modules and lessons the docs name


def _layout_paths() -> list[str]:
    """The paths architecture.md's 'Where things live' block names: each line's first column."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    lines = block.strip("\n").splitlines()
    assert lines[0].strip() == "src/poolserve/", "the block starts at src/poolserve/"
    paths = []
    for line in lines[1:]:
        paths += line.strip().split("  ")[0].split()
    return paths


def test_architecture_layout_names_every_package_and_only_real_paths() -> None:
    src = ROOT / "src" / "poolserve"
    named = _layout_paths()
    assert named, "no paths in architecture.md 'Where things live'"
    unreal = [p for p in named if not (src / p).exists() or not p.endswith(("/", ".py"))]
    assert unreal == [], f"architecture.md 'Where things live' names what src/poolserve/ does not have: {unreal}"
    packages = sorted(f"{init.parent.relative_to(src).as_posix()}/" for init in src.rglob("__init__.py")
                      if init.parent != src)
    missing = [p for p in packages if p not in named]
    assert missing == [], f"architecture.md 'Where things live' lacks: {', '.join(missing)}"


_PACKAGES = ("cli", "actions", "bench", "check", "targets", "kserve", "vllm", "config")


def test_every_module_the_docs_name_exists() -> None:
    src = ROOT / "src" / "poolserve"
    problems: list[str] = []
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"src/poolserve/([\w/]+\.py)", text):
            if not (src / m.group(1)).is_file():
                problems.append(f"{_rel(page)}: src/poolserve/{m.group(1)}")
        if page.is_relative_to(LESSONS):
            continue  # lessons cite upstream files (vLLM's config/model.py, ...) by the same shape
        for m in re.finditer(rf"(?<![\w/.-])((?:{'|'.join(_PACKAGES)})/[\w/]*\.py)", text):
            if not (src / m.group(1)).is_file():
                problems.append(f"{_rel(page)}: {m.group(1)}")
        for m in re.finditer(r"python -m (poolserve[\w.]*)", text):
            if importlib.util.find_spec(m.group(1)) is None:
                problems.append(f"{_rel(page)}: python -m {m.group(1)}")
    # architecture.md's per-package bullets name modules without their package: - `config/`: `schema.py` ...
    for m in re.finditer(r"^- `(\w+)/`: (.*?)(?=^- |\Z)", ARCHITECTURE.read_text(), re.M | re.S):
        for module in re.findall(r"`(\w+\.py)`", m.group(2)):
            if not list((src / m.group(1)).rglob(module)):
                problems.append(f"architecture.md: {m.group(1)}/ has no {module}")
    assert problems == [], "\n".join(problems)


def test_every_python_import_in_the_docs_resolves() -> None:
    problems, seen = [], 0
    for page in _pages():
        for lang, text, line in _code_blocks(page):
            if lang != "python":
                continue
            for m in re.finditer(r"^from (poolserve[\w.]*) import ([\w, ]+)", text, re.M):
                seen += 1
                module = importlib.import_module(m.group(1))
                problems += [f"{_rel(page)}:{line}: {m.group(1)}.{n.strip()}" for n in m.group(2).split(",")
                             if not hasattr(module, n.strip())]
    assert seen >= 2 and problems == [], problems


def _slug(text: str) -> str:
    """Python-Markdown's toc slug of a heading (what mkdocs and, for plain headings, GitHub make)."""
    text = re.sub(r"[`*]", "", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def _anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    explicit = set(re.findall(r'<a id="([^"]+)"></a>', text))
    headings = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}
    return explicit | headings


def _citing_files() -> Iterator[Path]:
    for base in ("src", "tests", "scripts", "benchmarks", "docs", "charts"):
        for path in (ROOT / base).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".md", ".sh", ".tpl", ".txt", ".yaml"):
                yield path
    yield from (ROOT / n for n in ("README.md", "LESSONS_LEARNED.md", "Makefile", "pyproject.toml"))


def test_every_cited_lesson_and_anchor_resolves() -> None:
    index = (ROOT / "LESSONS_LEARNED.md").read_text()
    sections = [row.split("|")[1].strip().lower() for row in index.splitlines()
                if row.startswith("| ") and not row.startswith("| section")]
    problems, cited = [], 0
    for path in _citing_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"lessons/([a-z0-9-]+)\.md(?:#([\w-]+))?", text):
            cited += 1
            page = LESSONS / f"{m.group(1)}.md"
            if not page.is_file():
                problems.append(f"{_rel(path)}: {m.group(0)}: no such page")
            elif m.group(2) and m.group(2) not in _anchors(page):
                problems.append(f"{_rel(path)}: {m.group(0)}: no such anchor")
        for m in re.finditer(r"LESSONS_LEARNED(?:\.md)?,? \(?[\"'“]([^\"'”]+)[\"'”]", text):
            cited += 1
            if not any(s.startswith(m.group(1).lower()) or m.group(1).lower().startswith(s) for s in sections):
                problems.append(f"{_rel(path)}: LESSONS_LEARNED section {m.group(1)!r} is not in its index")
    assert cited >= 10, cited
    assert problems == [], "\n".join(problems)


def test_lesson_anchors_are_unique_and_every_lesson_has_one() -> None:
    seen: dict[str, str] = {}
    for page in sorted(LESSONS.glob("*.md")):
        text = page.read_text()
        for anchor in re.findall(r'<a id="([^"]+)"></a>', text):
            assert anchor not in seen, f"{anchor} in {page.name} and {seen[anchor]}"
            seen[anchor] = page.name
        unanchored = [ln for ln in text.splitlines() if ln.startswith("- **")]
        assert unanchored == [], f"{page.name}: lessons without an anchor: {unanchored}"
    assert len(seen) > 100


# --------------------------------------------------------------------------------------------------
# The tutorials' commands run


def _tutorial_commands(page: Path) -> list[list[str]]:
    return [argv for lang, text, _ in _code_blocks(page) for argv in _poolserve_invocations(lang, text)]


def _run(argv: list[str], *extra: str) -> Any:
    from poolserve.cli.app import app as cli_app

    return CliRunner().invoke(cli_app, [*argv, *extra])


def test_local_tutorial_runs_on_a_stub_vllm(tmp_path: Path, stub_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every poolserve command of the local tutorial, in order, on a stand-in for vLLM (``test`` aside)."""
    from support.models import minilm_dir

    (tmp_path / "poolserve.yaml").write_text((ROOT / "poolserve.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POOLSERVE_TARGET", "local")
    local = ["--set", f"local.python={stub_python}"]
    ran: list[str] = []
    try:
        for argv in _tutorial_commands(LOCAL_TUTORIAL):
            argv = [str(minilm_dir()) if a == "$MODEL_DIR" else a for a in argv]
            if argv[0] == "test":
                continue  # the stub serves no embeddings: test_local_tutorial_test_command_on_real_vllm runs it
            if argv[0] == "logs" and ("-f" in argv or "--follow" in argv):
                continue
            extra = local if argv[0] in ("deploy", "start") else []
            result = _run(argv, *extra)
            assert result.exit_code == 0, f"poolserve {' '.join(argv)}: {result.output}"
            ran.append(" ".join(argv[:2]))
    finally:
        _run(["delete", "--target", "local"])
    assert {"cache import", "cache list", "deploy --target", "status --target", "stop --target", "start --target",
            "delete --target"} <= set(ran), ran


@pytest.mark.vllm
def test_local_tutorial_test_command_on_real_vllm(minilm_server: Any, local_work_dir: Path,
                                                   model_cache_dir: Path) -> None:
    """The tutorial's deploy (a no-op on the running server), status and test --reference, on real vLLM."""
    sets = ["-c", str(ROOT / "poolserve.yaml"), "--set", f"local.cache_dir={model_cache_dir}",
            "--set", f"local.state_dir={local_work_dir / 'state'}"]
    wanted = {"deploy", "status", "test"}
    commands = [a for a in _tutorial_commands(LOCAL_TUTORIAL) if a[0] in wanted and "minilm-embedding" in a]
    assert {a[0] for a in commands} == wanted
    for argv in commands:
        result = _run(argv, *sets)
        assert result.exit_code == 0, f"poolserve {' '.join(argv)}: {result.output}"
        if argv[0] == "deploy":
            assert "started" not in result.output  # the session's server kept running


def _openshift_tutorial_files() -> tuple[str, dict[str, Any]]:
    config = next(data for _, data in _config_blocks(OPENSHIFT_TUTORIAL) if "models" in data)
    pvc = next(yaml.safe_load(text) for lang, text, _ in _code_blocks(OPENSHIFT_TUTORIAL)
               if lang == "yaml" and "PersistentVolumeClaim" in text)
    return yaml.safe_dump(config, sort_keys=False), pvc


def test_openshift_tutorial_runs_against_a_fake_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tutorial's config, its PVC manifest and every poolserve command it runs, on FakeCluster."""
    from poolserve.cli.app import create_app
    from poolserve.config.load import parse_spec
    from poolserve.kserve.objects import project_namespace
    from poolserve.targets.cluster.fake.cluster import FakeCluster
    from poolserve.targets.cluster.fake.kserve import ready_controller
    from poolserve.targets.cluster.fake.objects import kserve_crds, namespace_obj, node
    from poolserve.targets.cluster.target import ClusterTarget

    config_text, pvc = _openshift_tutorial_files()
    spec = parse_spec(config_text, "search.yaml")
    assert pvc["metadata"] == {"name": spec.cache.pvc, "namespace": spec.namespace}
    assert spec.cache.access_mode in pvc["spec"]["accessModes"]
    assert {m.model_id for m in spec.models} == {"BAAI/bge-m3", "BAAI/bge-reranker-v2-m3"}

    fake = FakeCluster(controller=ready_controller)
    fake.seed_all([*kserve_crds(), namespace_obj(spec.namespace, project_namespace(spec)["metadata"]["labels"]),
                   {**pvc, "status": {"phase": "Bound", "accessModes": pvc["spec"]["accessModes"]}},
                   node("gpu-node-1", gpus=2)])
    fake.seed({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default",
                                                                          "namespace": spec.namespace}})
    clock = [0.0]

    def sleep(s: float) -> None:
        clock[0] += s

    def factory(name: str, options: Any) -> ClusterTarget:
        return ClusterTarget(fake, sleep=sleep, now=lambda: clock[0], poll_s=5)

    cli = create_app(target_factory=factory)
    (tmp_path / "search.yaml").write_text(config_text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POOLSERVE_TARGET", raising=False)
    crd_dir = os.environ.get("POOLSERVE_CRD_DIR")
    ran = []
    for argv in _tutorial_commands(OPENSHIFT_TUTORIAL):
        if argv[0] in ("cache", "test"):
            continue  # download Jobs and HTTP checks: test_cli_ops.py and test_verify.py cover them on fakes
        if argv[0] == "lint" and crd_dir:
            argv = [*argv, "--crd-dir", crd_dir]
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 0, f"poolserve {' '.join(argv)}:\n{result.output}"
        ran.append(argv[0])
        if argv[0] == "deploy" and "--dry-run" not in argv:
            assert "2/2 ready" in result.output or "ready" in result.output, result.output
    assert {"catalog", "lint", "plan", "render", "deploy", "status", "diff", "stop", "start", "delete"} <= set(ran)
    assert (tmp_path / "manifests" / "search" / "kustomization.yaml").is_file()
    assert json.loads(CliRunner().invoke(cli, ["status", "-c", "search.yaml", "-o", "json"]).stdout) is not None
