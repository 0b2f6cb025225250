"""The core stays pure: importing it pulls in no edge library (kubernetes, httpx, subprocess, rich)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = [
    "poolserve.config.schema",
    "poolserve.config.load",
    "poolserve.config.rules",
    "poolserve.config.resolve",
    "poolserve.config.versions",
    "poolserve.config.catalog",
    "poolserve.vllm.args",
    "poolserve.kserve.compose",
    "poolserve.kserve.render",
    "poolserve.kserve.lint",
    "poolserve.vllm.diagnose",
    "poolserve.vllm.api",
    "poolserve.check.probes",
    "poolserve.targets.base",
    "poolserve.check.verify",
    "poolserve.targets.cluster.readiness",
    "poolserve.bench.metrics",
    "poolserve.targets.cluster.cachejob",
    "poolserve.bench.workload",
    "poolserve.machine",
    "poolserve.config.defaults",
    "poolserve.targets.local.plan",
    "poolserve.targets.local.state",
    "poolserve.targets.local.lifecycle",
    "poolserve.actions.common",
    "poolserve.vllm.sizing",
    "poolserve.kserve.dashboard",
    "poolserve.config.storage",
]
EDGES = ["kubernetes", "httpx", "rich", "vllm", "torch", "sentence_transformers"]


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_edge_library(module: str) -> None:
    code = (f"import sys, {module}\n"
            f"bad = [m for m in {EDGES!r} if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_cli_start_does_not_import_heavy_libraries() -> None:
    code = ("import sys\nfrom poolserve.cli import app\n"
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
