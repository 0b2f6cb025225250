"""The core stays pure: importing it pulls in no edge library (kubernetes, httpx, subprocess, rich)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ["poolserve.spec", "poolserve.catalog", "poolserve.vllm", "poolserve.kserve", "poolserve.render",
        "poolserve.lint", "poolserve.diagnose", "poolserve.vllm_api", "poolserve.probes", "poolserve.target",
        "poolserve.verify", "poolserve.cluster.readiness", "poolserve.metrics", "poolserve.cluster.cachejob",
        "poolserve.workload", "poolserve.machine", "poolserve.defaults", "poolserve.local.plan",
        "poolserve.local.state", "poolserve.local.lifecycle", "poolserve.actions.common", "poolserve.sizing",
        "poolserve.dashboard",
        "poolserve.storage"]
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
