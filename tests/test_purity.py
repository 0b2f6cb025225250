"""The core stays pure and the layers point down: pyproject.toml's import contracts hold; the CLI starts light.

The contracts ([tool.importlinter]: the layers, and "the pure core imports no edge library") replace a
hand-kept list of core modules; ``lint-imports`` checks them in scripts/test.sh, and here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.is_file():
        pytest.skip("lint-imports is not installed (the dev extra: import-linter)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_cli_start_does_not_import_heavy_libraries() -> None:
    code = ("import sys\nfrom poolserve.cli.app import app\n"
            "print(','.join(m for m in ('kubernetes', 'vllm', 'torch', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_app_imports_no_command_dependencies() -> None:
    # `poolserve --version` and `render` must not pay for httpx, asyncio, the cluster client or torch:
    # a command imports them when it runs.
    code = ("import sys, poolserve.cli.app\n"
            "print(','.join(m for m in ('httpx', 'asyncio', 'kubernetes', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
