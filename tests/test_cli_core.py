"""CLI: render/lint/explain/catalog behaviour, exit codes and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import poolserve
from poolserve.cli.app import app
from poolserve.config import yamlio
from support.assets import crd_dir

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "poolserve.yaml", tmp_path / "poolserve.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_render_writes_the_plan_files_then_check_passes(project: Path) -> None:
    r = runner.invoke(app, ["render"])
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in (project / "manifests" / "kserve").iterdir())
    assert "serving-runtime-embedding.yaml" in files and "msmarco-reranker-isvc.yaml" in files
    assert runner.invoke(app, ["render", "--check"]).exit_code == 0


def test_check_reports_drift_with_a_diff(project: Path) -> None:
    runner.invoke(app, ["render"])
    isvc = project / "manifests" / "kserve" / "minilm-embedding-isvc.yaml"
    isvc.write_text(isvc.read_text().replace("--max-model-len=256", "--max-model-len=128"))
    r = runner.invoke(app, ["render", "--check"])
    assert r.exit_code == 1
    assert "-        - --max-model-len=128" in r.stdout and "+        - --max-model-len=256" in r.stdout
    assert "differs from a fresh render" in r.stderr
    assert isvc.read_text().count("--max-model-len=128") == 1  # --check wrote nothing


def test_removed_model_file_is_deleted_only_if_generated(project: Path) -> None:
    out = project / "manifests" / "kserve"
    runner.invoke(app, ["render"])
    (out / "mine.yaml").write_text("kind: ConfigMap\n")
    cfg = project / "poolserve.yaml"
    text = cfg.read_text()
    cfg.write_text(text[: text.index("  - name: granite-embedding")] + text[text.index("  - name: msmarco-reranker"):])
    r = runner.invoke(app, ["render"])
    assert r.exit_code == 0
    assert not (out / "granite-embedding-isvc.yaml").exists()
    assert (out / "mine.yaml").exists()
    assert "granite" not in (out / "kustomization.yaml").read_text()


def test_render_to_stdout_is_one_yaml_stream(project: Path) -> None:
    r = runner.invoke(app, ["render", "-o", "-"])
    assert r.exit_code == 0
    docs = yamlio.load_all(r.stdout)
    assert [d["kind"] for d in docs].count("InferenceService") == 3
    assert not (project / "manifests").exists()


@pytest.mark.parametrize(
    ("config_text", "fragment"),
    [
        ("", "poolserve.yaml: the file is empty"),
        ("models: [\n", "poolserve.yaml:2: YAML syntax error"),
        ("nmespace: x\n", "poolserve.yaml:1: nmespace: unknown key"),
    ],
)
def test_bad_config_one_line_exit_2_nothing_written(project: Path, config_text: str, fragment: str) -> None:
    (project / "poolserve.yaml").write_text(config_text)
    r = runner.invoke(app, ["render"])
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and fragment in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output
    assert not (project / "manifests").exists()


def test_set_override_and_bad_set(project: Path) -> None:
    r = runner.invoke(app, ["render", "-o", "-", "--set", "namespace=dev"])
    assert "namespace: dev" in r.stdout
    r = runner.invoke(app, ["render", "--set", "novalue"])
    assert r.exit_code == 2 and "expected KEY=VALUE" in r.stderr


def test_lint_ok_and_json(project: Path) -> None:
    r = runner.invoke(app, ["lint", "--crd-dir", str(crd_dir()), "-o", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["schemas_checked"] is True
    assert all(f["severity"] == "note" for f in data["findings"])


def test_lint_error_exits_1(project: Path) -> None:
    r = runner.invoke(app, ["lint", "--set", "runtimes.0.extra_args=[--task=embed]"])
    assert r.exit_code == 1
    assert "--task was removed in vLLM 0.13.0" in r.stdout
    assert "error: poolserve.yaml: 2 error(s)" in r.stderr  # one per model on that runtime


def test_explain_shows_the_composed_command(project: Path) -> None:
    r = runner.invoke(app, ["explain", "minilm-embedding", "-o", "json"])
    assert r.exit_code == 0
    (row,) = json.loads(r.stdout)
    assert row["argv"][:5] == ["vllm", "serve", "sentence-transformers/all-MiniLM-L6-v2", "--port=8080",
                               "--runner=pooling"]
    assert "minilm-embedding" in row["argv"]  # {{.Name}} substituted
    r = runner.invoke(app, ["explain", "nope"])
    assert r.exit_code == 2 and "no model named 'nope'" in r.stderr


def test_catalog_list_and_entry() -> None:
    r = runner.invoke(app, ["catalog", "-o", "json"])
    ids = {e["model_id"] for e in json.loads(r.stdout)}
    assert {"BAAI/bge-m3", "Qwen/Qwen3-Reranker-0.6B", "nomic-ai/nomic-embed-text-v1.5",
            "ibm-granite/granite-embedding-english-r2", "intfloat/e5-large-v2"} <= ids
    r = runner.invoke(app, ["catalog", "sentence-transformers/all-MiniLM-L6-v2"])
    assert r.exit_code == 0 and "256" in r.stdout
    r = runner.invoke(app, ["catalog", "acme/nothing"])
    assert r.exit_code == 2 and "not in the catalog" in r.stderr


def test_unknown_target_is_a_one_line_error(project: Path) -> None:
    r = runner.invoke(app, ["status", "--target", "moon"])
    assert r.exit_code == 2 and "unknown target 'moon'" in r.stderr


def test_render_never_replaces_a_hand_written_file_without_force(project: Path) -> None:
    out = project / "manifests" / "kserve"
    out.mkdir(parents=True)
    (out / "kustomization.yaml").write_text("resources: [mine.yaml]\n")
    r = runner.invoke(app, ["render"])
    assert r.exit_code == 2 and "kustomization.yaml was not written by poolserve" in r.stderr
    assert (out / "kustomization.yaml").read_text() == "resources: [mine.yaml]\n"
    assert sorted(p.name for p in out.iterdir()) == ["kustomization.yaml"]  # nothing half-written
    assert runner.invoke(app, ["render", "--force"]).exit_code == 0
    assert "namespace.yaml" in (out / "kustomization.yaml").read_text()


def test_rendered_files_are_world_readable(project: Path) -> None:
    runner.invoke(app, ["render"])
    modes = {p.stat().st_mode & 0o777 for p in (project / "manifests" / "kserve").iterdir()}
    assert modes == {0o666 & ~_umask()}


def _umask() -> int:
    import os

    current = os.umask(0)
    os.umask(current)
    return current


def test_two_runtimes_for_one_file_is_an_error(project: Path) -> None:
    cfg = project / "poolserve.yaml"
    cfg.write_text(cfg.read_text().replace("name: vllm-reranker-runtime", "name: embedding"))
    r = runner.invoke(app, ["render"])
    assert r.exit_code == 2
    assert "would both be written to serving-runtime-embedding.yaml" in r.stderr


def test_version_flag_alone() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == poolserve.__version__


def test_output_format_is_validated(project: Path) -> None:
    r = runner.invoke(app, ["lint", "-o", "yaml"])
    assert r.exit_code == 2 and "yaml" in r.output
    r = runner.invoke(app, ["status", "--watch", "-o", "json"])
    assert r.exit_code == 2 and "--watch redraws a table" in r.stderr


def test_bad_yaml_in_set_is_one_line(project: Path) -> None:
    r = runner.invoke(app, ["render", "-o", "-", "--set", "namespace=[a"])
    assert r.exit_code == 2 and r.stderr.startswith("error: --set namespace: the value '[a' is not valid YAML")


def test_check_does_not_depend_on_how_the_config_path_is_spelled(project: Path) -> None:
    runner.invoke(app, ["render"])
    assert runner.invoke(app, ["render", "--check", "-c", str(project / "poolserve.yaml")]).exit_code == 0


def test_wait_timeout_defaults_per_target() -> None:
    from types import SimpleNamespace

    from poolserve.actions.common import CLUSTER_TIMEOUT_S, wait_timeout
    from poolserve.config.load import parse_spec

    spec = parse_spec((ROOT / "poolserve.yaml").read_text(), overrides={"local.startup_timeout_s": 42})
    local, cluster = SimpleNamespace(name="local"), SimpleNamespace(name="cluster")
    assert wait_timeout(None, spec, local) == 42  # type: ignore[arg-type]
    assert wait_timeout(None, spec, cluster) == CLUSTER_TIMEOUT_S  # type: ignore[arg-type]
    assert wait_timeout("2m", spec, local) == 120  # type: ignore[arg-type]


def _all_commands() -> list[list[str]]:
    import typer.main

    group = typer.main.get_group(app)
    out: list[list[str]] = [[]]
    for name, cmd in group.commands.items():
        sub = getattr(cmd, "commands", None)
        out += [[name, s] for s in sub] if sub else [[name]]
    return out


@pytest.mark.parametrize("command", _all_commands(), ids=lambda c: " ".join(c) or "poolserve")
def test_help_fits_80_columns_and_flags_take_no_value(command: list[str]) -> None:
    r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert r.exit_code == 0, r.output
    assert "<bool>" not in r.output  # --debug, --wait, --help take no value
    assert "…" not in r.output  # nothing cut off at 80 columns (was: "local.startup_timeou…")
    assert max(len(line) for line in r.output.splitlines()) <= 80


def test_explain_piped_has_whole_lines_without_trailing_spaces(project: Path) -> None:
    r = runner.invoke(app, ["explain", "minilm-embedding"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "minilm-embedding (runtime vllm-embedding-runtime)"
    assert all(line == line.rstrip() for line in lines), [line for line in lines if line != line.rstrip()]
    argv = next(line for line in lines if line.startswith(" argv"))
    assert argv.startswith(" argv       vllm serve sentence-transformers/all-MiniLM-L6-v2 --port=8080 ")
    assert argv.endswith("--max-model-len=256")  # one line, however long
    assert " mounts     /models <- model-cache" in lines


def test_plan_says_what_the_gpu_settings_do(project: Path) -> None:
    r = runner.invoke(app, ["plan", "minilm-embedding"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "minilm-embedding  sentence-transformers/all-MiniLM-L6-v2  22.7M params"
    assert "no KV cache (encoder-only)" in r.stdout
    assert "--gpu-memory-utilization=0.3 on a whole, unshared GPU shares nothing" in r.stdout
    assert "1g.5gb (A100 40GB)" in r.stdout
    assert r.stderr.startswith("Estimates, not measurements")
    rows = json.loads(runner.invoke(app, ["plan", "-o", "json"]).stdout)
    assert [row["name"] for row in rows] == ["minilm-embedding", "granite-embedding", "msmarco-reranker"]
    assert rows[1]["estimate"]["weights_gib"] == pytest.approx(278_043_648 * 2 / 2**30)
    assert 0.5 < rows[0]["estimate"]["need_gib"] < 1.5 and rows[0]["fits"] is None
    r = runner.invoke(app, ["plan", "nope"])
    assert r.exit_code == 2 and "no model named 'nope'" in r.stderr


def test_plan_on_shared_gpus(tmp_path: Path) -> None:
    r = runner.invoke(app, ["plan", "-c", str(ROOT / "tests" / "specs" / "gpu-sharing.yaml"), "-o", "json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["qwen3-embedding"]["device"] == "time-sliced GPU"
    assert rows["qwen3-embedding"]["recommended_utilization"] == rows["qwen3-embedding"]["utilization"] == 0.17
    assert rows["bge-m3"]["device"] == "MIG 1g.10gb" and rows["bge-m3"]["fits"] is True


def test_tables_fit_the_width_and_cut_no_value() -> None:
    import io

    from rich.console import Console

    from poolserve.cli.output import fit_table

    table = fit_table("NAME", "PER SECOND", "DETAIL", wrap=("DETAIL",))
    table.add_row("a-rather-long-name", "12,345.6", " ".join(f"word{i}" for i in range(40)))
    for width in (100, 60, 30, 10, 400):  # one table printed at each width, as `status --watch` redraws
        console = Console(width=width, soft_wrap=True, record=True, file=io.StringIO())
        console.print(table)
        text = console.export_text()
        lines = text.splitlines()
        row = next(line for line in lines if line.startswith("a-rather-long-name  "))
        assert "  12,345.6  " in row, text  # the header may wrap between words; a value never does
        assert all(f"word{i}" in text.split() for i in range(40)), text  # the long column wraps between words
        if width >= 60:
            assert max(len(line) for line in lines) <= width, text
        else:  # the one-line columns alone are wider: the lines run long, nothing is cut
            assert max(len(line) for line in lines) == len("a-rather-long-name  12,345.6  ") + 10, text
    assert len(lines) == 2 and lines[0].startswith("NAME                PER SECOND  DETAIL")


def test_ctrl_c_while_the_cli_still_loads_exits_130_without_a_traceback() -> None:
    # A Ctrl-C that lands while the command modules import (seen under load: 0.4 s after start) must end
    # like one later on. An import hook raises KeyboardInterrupt where the signal would.
    code = ("import sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'poolserve.cli.app':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "from poolserve.cli import main\n"
            "main(['--version'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in proc.stderr
