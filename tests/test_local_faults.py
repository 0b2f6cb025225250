"""Faults on the local target, with the stub server (tests/stub_vllm.py) in place of vLLM: each fault injected
for real (signals, a taken port, Ctrl-C, concurrent CLIs, a killed import, a read-only or full file system), and
what must hold afterwards: a named cause, a restart like a pod's, and no process left behind.

The same faults against real vLLM are in tests/test_vllm_faults.py and benchmarks/reliability.md."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from poolserve.config.load import load_spec
from poolserve.config.schema import PoolSpec
from poolserve.errors import LocalRunError, LocalStartError
from poolserve.kserve.render import Rendered, render
from poolserve.machine import group_members, pid_alive
from poolserve.targets.local import target as local_target
from poolserve.targets.local.state import read_pod, read_state
from poolserve.targets.local.target import LocalTarget
from poolserve.vllm import hfcache

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "poolserve.yaml"
STUB = Path(__file__).with_name("stub_vllm.py")
MINILM = "minilm-embedding"
FAST_PROBES = {"runtimes.0.probes.liveness.period_s": 1, "runtimes.0.probes.liveness.timeout_s": 1,
               "runtimes.0.probes.liveness.failure_threshold": 2, "runtimes.0.probes.readiness.period_s": 1}


def eventually(check: Callable[[], Any], timeout_s: float = 30.0, what: str = "the condition") -> Any:
    # Every wait here is at least 30 s: a process stopped with a grace period can take 10 s to go when
    # the 2 cores are busy (a 10-s wait once failed under load); a wait that holds returns at once.
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``POOLSERVE_TEST_MARK=<mark>`` (supervisors and servers)."""
    needle = f"POOLSERVE_TEST_MARK={mark}".encode()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0") and pid_alive(int(entry.name)):
            out.append(int(entry.name))
    return out


class Local:
    """One test's local deployment: its config overrides, target, and a mark on every process it starts."""

    def __init__(self, tmp_path: Path, stub_python: str) -> None:
        self.tmp = tmp_path
        self.mark = uuid.uuid4().hex
        self.state_dir = tmp_path / "state"
        self.sets: dict[str, Any] = {"local.python": stub_python, "local.cache_dir": str(tmp_path / "cache"),
                                     "local.state_dir": str(self.state_dir)}
        self.env: dict[str, str] = {"POOLSERVE_TEST_MARK": self.mark}

    def spec(self, **overrides: Any) -> PoolSpec:
        env = {**self.env, **overrides.pop("env", {})}
        return load_spec(CONFIG, {**self.sets, "local.env": env, **overrides})

    def rendered(self, **overrides: Any) -> Rendered:
        return render(self.spec(**overrides))

    def cli_args(self, **overrides: Any) -> list[str]:
        env = {**self.env, **overrides.pop("env", {})}
        args = ["-c", str(CONFIG)]
        for k, v in {**self.sets, "local.env": env, **overrides}.items():
            args += ["--set", f"{k}={json.dumps(v)}"]
        return args

    def cli(self, *args: str, **overrides: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "poolserve", *args, *self.cli_args(**overrides)],
                              capture_output=True, text=True, timeout=120, check=False)

    def pod(self) -> Any:
        return read_pod(self.state_dir, MINILM)

    def running(self) -> Any:
        pod = self.pod()
        return pod.running if pod is not None else None


@pytest.fixture
def local(tmp_path: Path, stub_python: str) -> Iterator[Local]:
    loc = Local(tmp_path, stub_python)
    yield loc
    LocalTarget().delete(loc.rendered(), [])
    leftover = marked(loc.mark)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert leftover == [], "processes left behind"


# -- the server dies or hangs ---------------------------------------------------------------------------------


def test_engine_killed_is_named_and_the_server_comes_back(local: Local) -> None:
    rendered = local.rendered(env={"STUB_ENGINE": "1"})
    LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60)
    run = local.running()
    engine = [p for p in group_members(run.pgid) if p != run.pid]
    assert len(engine) == 1
    os.kill(engine[0], signal.SIGKILL)  # what the OOM killer does
    eventually(lambda: local.pod().restarts == 1, what="the restart")
    st = LocalTarget().wait(rendered, [MINILM], timeout_s=60)[0]
    assert st.phase == "Ready" and st.restarts == 1
    # vLLM exits 0 when its engine died: Completed, like a container with exit code 0.
    assert (st.last_termination or "").startswith("Completed (exit 0): vLLM's engine process died (EngineDeadError): "
                                                  "the usual cause is the kernel OOM killer")
    assert not pid_alive(run.pid) and not pid_alive(engine[0])


def test_api_server_killed_takes_its_engine_with_it(local: Local) -> None:
    rendered = local.rendered(env={"STUB_CHILD": "1"})
    LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60)
    run = local.running()
    child = next(p for p in group_members(run.pgid) if p != run.pid)
    os.kill(run.pid, signal.SIGKILL)  # only the API server: its engine would run on, orphaned
    eventually(lambda: local.pod().restarts == 1, what="the restart")
    assert eventually(lambda: not pid_alive(child), 30, "the orphaned engine to be killed")
    st = LocalTarget().wait(rendered, [MINILM], timeout_s=60)[0]
    assert st.phase == "Ready" and (st.last_termination or "").startswith("Error (signal 9, exit 137)")
    # One supervisor, one server and its child: nothing else carries the mark.
    assert len(marked(local.mark)) == 3


def test_a_hung_server_fails_its_liveness_probe_and_is_restarted(local: Local) -> None:
    rendered = local.rendered(**FAST_PROBES, **{"local.termination_grace_period_s": 1})
    LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60)
    run = local.running()
    os.kill(run.pid, signal.SIGSTOP)
    try:
        eventually(lambda: local.pod().restarts == 1, 60, "the liveness restart")
    finally:
        if pid_alive(run.pid):
            os.kill(run.pid, signal.SIGCONT)
    st = LocalTarget().wait(rendered, [MINILM], timeout_s=60)[0]
    assert st.phase == "Ready" and st.restarts == 1
    assert st.last_termination == ("Error (signal 9, exit 137): killed after its liveness probe failed 2 times: "
                                   "GET /health: no answer within 1s")
    assert not pid_alive(run.pid)
    events = [(e.reason, e.message) for e in local.pod().events]
    assert ("Unhealthy", "Liveness probe failed 2 times: GET /health: no answer within 1s") in events
    assert ("Killing", "still running 1s after SIGTERM: SIGKILL") in events  # SIGTERM does not reach a stopped one


# -- the CLI goes away -------------------------------------------------------------------------------------------


def test_supervision_outlives_the_cli(local: Local) -> None:
    deployed = local.cli("deploy", "--target", "local", MINILM)
    assert deployed.returncode == 0, deployed.stderr
    run = local.running()
    os.killpg(run.pgid, signal.SIGKILL)
    eventually(lambda: local.pod().restarts == 1 and local.running() and local.running().ready, 30, "a restart")
    status = local.cli("status", "--target", "local", MINILM, "-o", "json")
    assert json.loads(status.stdout)[0]["restarts"] == 1
    table = local.cli("status", "--target", "local", MINILM)
    assert "RESTARTS" in table.stdout and f"{MINILM}: last termination: Error (signal 9, exit 137)" in table.stdout
    deleted = local.cli("delete", "--target", "local")
    assert deleted.returncode == 0 and "stopped" in deleted.stderr
    assert marked(local.mark) == []


@pytest.mark.parametrize("after_s", [0.0, 0.4, 0.8, 1.5])
def test_ctrl_c_during_deploy_wait_leaves_no_orphan(local: Local, after_s: float) -> None:
    # The CLI is interrupted at some moment of `deploy --wait`: before anything, while the model is recorded
    # and its supervisor started, or while waiting. Whatever runs afterwards is found by status and stopped
    # by delete.
    # A shell without job control starts background commands with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: give the CLI the terminal's default, as a user's Ctrl-C meets it.
    proc = subprocess.Popen([sys.executable, "-m", "poolserve", "deploy", "--target", "local", MINILM,
                             *local.cli_args(env={"STUB_DELAY_S": "30"})], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err
    if "error: interrupted: " in err:  # interrupted inside deploy (earlier, click says nothing)
        assert proc.returncode == 130
    entry = read_state(local.state_dir / "local-state.json").models.get(MINILM)
    running = marked(local.mark)
    if running:  # something was started: it is recorded
        assert entry is not None
        status = local.cli("status", "--target", "local", MINILM, "-o", "json")
        assert json.loads(status.stdout)[0]["phase"] == "Loading"
    deleted = local.cli("delete", "--target", "local")
    assert deleted.returncode == 0, deleted.stderr
    eventually(lambda: marked(local.mark) == [], 30, "every process to be gone")


def test_two_deploys_at_once_start_one_server(local: Local) -> None:
    args = [sys.executable, "-m", "poolserve", "deploy", "--target", "local", MINILM, *local.cli_args()]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    said = sorted("started" if f"process/{MINILM} started" in err else "unchanged" if "unchanged" in err else err
                  for _, err in outs)
    assert said == ["started", "unchanged"]
    pod = local.pod()
    entry = read_state(local.state_dir / "local-state.json").models[MINILM]
    assert pod.uid == entry.uid
    assert sorted(marked(local.mark)) == sorted([entry.pid, pod.running.pid])  # one supervisor, one server


def test_two_different_deploys_at_once_leave_the_last_one(local: Local) -> None:
    base = [sys.executable, "-m", "poolserve", "deploy", "--target", "local", MINILM]
    procs = [subprocess.Popen([*base, *local.cli_args(**{"local.extra_args": [f"--max-num-seqs={n}"]})],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (4, 8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    entry = read_state(local.state_dir / "local-state.json").models[MINILM]
    pod = eventually(lambda: (p := local.pod()) and p.uid == entry.uid and p.running and p)
    # The replaced one was stopped: one supervisor and one server remain.
    eventually(lambda: sorted(marked(local.mark)) == sorted([entry.pid, pod.running.pid]), 30, "one server")


def test_a_deploy_waiting_for_a_server_that_another_deploy_replaces_follows_the_new_one(
        local: Local, monkeypatch: pytest.MonkeyPatch) -> None:
    # The race behind the test above, made deterministic: the first deploy is still waiting when the second one
    # stops its server (SIGTERM, exit 143) to start its own. That stop is no crash: the waiter must not report
    # "vLLM exited while starting", but wait for the server that replaced it.
    monkeypatch.setattr(local_target, "POLL_S", 0.005)  # look often: the stop's traces last a few milliseconds
    slow = local.rendered(env={"STUB_DELAY_S": "3"})
    LocalTarget().deploy(slow, [MINILM], wait=False, timeout_s=60)
    first = read_state(local.state_dir / "local-state.json").models[MINILM]
    outcome: list[Any] = []

    def waiter() -> None:
        try:
            outcome.append(LocalTarget().wait(slow, [MINILM], timeout_s=60)[0])
        except Exception as err:  # the assertion below shows it
            outcome.append(err)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(1.0)
    LocalTarget().deploy(local.rendered(**{"local.extra_args": ["--max-num-seqs=8"]}), [MINILM], wait=False,
                         timeout_s=60)
    t.join(60)
    (result,) = outcome
    assert not isinstance(result, BaseException), result
    assert result.phase == "Ready"
    assert read_state(local.state_dir / "local-state.json").models[MINILM].uid != first.uid


def test_stop_ends_the_supervisor_too_and_start_brings_the_server_back(local: Local) -> None:
    # `poolserve stop` is a stop on purpose: the supervisor must not restart the server (restartPolicy Always is
    # for crashes), and nothing of the model keeps running; `start` supervises it again.
    deployed = local.cli("deploy", "--target", "local", MINILM)
    assert deployed.returncode == 0, deployed.stderr
    entry = read_state(local.state_dir / "local-state.json").models[MINILM]
    assert len(marked(local.mark)) == 2  # the supervisor and the server
    stopped = local.cli("stop", "--target", "local", MINILM)
    assert stopped.returncode == 0, stopped.stderr
    assert f"process/{MINILM} stopped" in stopped.stderr and "SIGTERM" in stopped.stderr
    eventually(lambda: marked(local.mark) == [], 30, "the supervisor and its server to be gone")
    time.sleep(2.0)  # longer than a restart would take
    assert marked(local.mark) == [] and not pid_alive(entry.pid)
    status = json.loads(local.cli("status", "--target", "local", MINILM, "-o", "json").stdout)[0]
    assert status["phase"] == "Stopped" and "poolserve start" in status["reason"]
    started = local.cli("start", "--target", "local", MINILM)
    assert started.returncode == 0, started.stderr
    status = json.loads(local.cli("status", "--target", "local", MINILM, "-o", "json").stdout)[0]
    assert status["phase"] == "Ready" and status["restarts"] == 0
    assert len(marked(local.mark)) == 2
    assert not read_state(local.state_dir / "local-state.json").models[MINILM].stopped


# -- the port ----------------------------------------------------------------------------------------------------


def test_a_port_taken_between_planning_and_start_is_named_and_a_redeploy_moves(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = local.rendered()
    squatter = socket.socket()
    real_free_port = local_target.free_port

    def free_port_then_taken(host: str, *, avoid: Any = ()) -> int:
        port = real_free_port(host, avoid=avoid)
        squatter.bind((host, port))  # another program takes it right after poolserve chose it
        squatter.listen()
        return port

    monkeypatch.setattr(local_target, "free_port", free_port_then_taken)
    with squatter:
        with pytest.raises(LocalRunError) as info:
            LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60)
        port = squatter.getsockname()[1]
        assert str(info.value).startswith(f"{MINILM}: 127.0.0.1:{port} is in use by pid {os.getpid()}: ")
        assert "`poolserve deploy --target local minilm-embedding` picks another port" in str(info.value)
        st = LocalTarget().status(rendered, [MINILM])[0]
        assert st.phase == "Failed" and (st.reason or "").startswith(f"PortInUse: 127.0.0.1:{port} is in use by pid")
        monkeypatch.undo()
        again = LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60)
    assert [(c.action, c.note) for c in again.changes] == [
        ("configured", f"restarted on a new port: another program took 127.0.0.1:{port}")]
    assert again.statuses[0].phase == "Ready" and again.statuses[0].url != f"http://127.0.0.1:{port}"


def test_a_port_taken_while_the_server_starts_is_diagnosed(local: Local) -> None:
    rendered = local.rendered(env={"STUB_DELAY_S": "1.5"})
    LocalTarget().deploy(rendered, [MINILM], wait=False, timeout_s=60)
    port = read_state(local.state_dir / "local-state.json").models[MINILM].port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))  # after the supervisor checked it, before the server binds it
        squatter.listen()
        with pytest.raises((LocalStartError, LocalRunError)) as info:
            LocalTarget().wait(rendered, [MINILM], timeout_s=60)
    text = str(info.value)
    assert "the port is already in use" in text or f"127.0.0.1:{port} is in use by pid {os.getpid()}" in text


# -- stopping ----------------------------------------------------------------------------------------------------


def test_delete_lets_requests_in_flight_finish(local: Local) -> None:
    rendered = local.rendered(env={"STUB_SLOW_S": "2"})
    LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60)
    url = read_state(local.state_dir / "local-state.json").models[MINILM].url
    answers: list[int] = []
    slow = threading.Thread(target=lambda: answers.append(httpx.post(url + "/slow", timeout=30,
                                                                     trust_env=False).status_code))
    slow.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    deleted = LocalTarget().delete(rendered, [MINILM])
    slow.join(10)
    assert answers == [200]  # SIGTERM let the server finish it
    assert deleted.changes[0].action == "stopped" and deleted.changes[0].note.endswith(", SIGTERM")
    assert 1.0 <= time.monotonic() - t0 < 10


def test_delete_kills_a_server_that_ignores_sigterm_after_the_grace_period(local: Local) -> None:
    rendered = local.rendered(env={"STUB_IGNORE_TERM": "1", "STUB_CHILD": "1"},
                              **{"local.termination_grace_period_s": 1.5})
    LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60)
    t0 = time.monotonic()
    deleted = LocalTarget().delete(rendered, [MINILM])
    took = time.monotonic() - t0
    assert deleted.changes[0].note.endswith("SIGKILL after the grace period")
    assert 1.5 <= took < 8
    assert marked(local.mark) == []


def test_the_server_listens_on_127_0_0_1_only(local: Local) -> None:
    LocalTarget().deploy(local.rendered(), [MINILM], wait=True, timeout_s=60)
    pids = marked(local.mark)
    listening = listening_addresses(pids)
    assert listening and all(addr == "127.0.0.1" for addr, _ in listening), listening


def listening_addresses(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on (IPv4 and IPv6)."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:
                continue
            hexaddr, hexport = cols[1].split(":")
            raw = bytes.fromhex(hexaddr)
            if v6:
                addr = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            out.append((addr, int(hexport, 16)))
    return out


# -- the model cache ---------------------------------------------------------------------------------------------


def _model_dir(tmp_path: Path, size_mb: int) -> Path:
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text('{"architectures": ["BertModel"]}')
    with (src / "model.safetensors").open("wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(size_mb):
            f.write(block)
    (src / "tokenizer.json").write_text("{}")
    return src


@pytest.mark.parametrize("kill_after_s", [0.3, 0.6, 0.9, 1.4])
def test_cache_import_killed_half_way_leaves_no_partial_snapshot(tmp_path: Path, kill_after_s: float) -> None:
    src = _model_dir(tmp_path, 400)
    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "poolserve", "cache", "import", "org/big", str(src), "-c", str(CONFIG),
            "--set", f"local.cache_dir={cache}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(kill_after_s)
    proc.kill()
    proc.wait()
    hf_home = cache / "huggingface"
    snap = hfcache.snapshot_path(hf_home, "org/big")
    # Either nothing vLLM would resolve, or the whole model: never a truncated weights file.
    if snap is not None:
        assert (snap / "model.safetensors").stat().st_size == (src / "model.safetensors").stat().st_size
    assert [m.model_id for m in hfcache.list_models(hf_home)] == (["org/big"] if snap else [])
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    snap = hfcache.snapshot_path(hf_home, "org/big")
    assert snap is not None and (snap / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert not list((hfcache.repo_dir(hf_home, "org/big") / "snapshots").glob(".*"))  # no leftover temp dir


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount small tmpfs file systems (root only; skipped elsewhere), unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "4m") -> Path:
        path = tmp_path / name
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                           text=True, check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def test_cache_import_into_a_full_cache_fails_in_one_line_and_leaves_nothing(
    tmp_path: Path, mount_point: Callable[..., Path]
) -> None:
    cache = mount_point("full", "3m")
    src = _model_dir(tmp_path, 5)
    r = subprocess.run([sys.executable, "-m", "poolserve", "cache", "import", "org/big", str(src), "-c", str(CONFIG),
                        "--set", f"local.cache_dir={cache}"], capture_output=True, text=True, check=False)
    assert r.returncode == 10, r.stderr
    assert r.stderr.startswith(f"error: cannot import org/big into {cache / 'huggingface'}: No space left on device")
    assert r.stderr.count("\n") == 1
    assert hfcache.list_models(cache / "huggingface") == []
    assert not list((hfcache.repo_dir(cache / "huggingface", "org/big") / "snapshots").iterdir())


def test_a_read_only_cache(tmp_path: Path, mount_point: Callable[..., Path], local: Local) -> None:
    cache = mount_point("ro", "8m")
    src = _model_dir(tmp_path, 1)
    sets = ["-c", str(CONFIG), "--set", f"local.cache_dir={cache}"]
    subprocess.run([sys.executable, "-m", "poolserve", "cache", "import", "org/small", str(src), *sets], check=True,
                   capture_output=True)
    read_only(cache)
    r = subprocess.run([sys.executable, "-m", "poolserve", "cache", "import", "org/other", str(src), *sets],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 10 and r.stderr.startswith(f"error: cannot import org/other into {cache / 'huggingface'}"
                                                      ": Read-only file system")
    # A server whose model is already cached starts from a read-only cache (a ReadOnlyMany PVC).
    local.sets["local.cache_dir"] = str(cache)
    rendered = local.rendered(**{"models.0.model_id": "org/small", "models.0.task": "embed"})
    st = LocalTarget().deploy(rendered, [MINILM], wait=True, timeout_s=60).statuses[0]
    assert st.phase == "Ready"
    LocalTarget().delete(rendered, [MINILM])
    assert marked(local.mark) == []


def test_a_full_state_dir_is_named(tmp_path: Path, mount_point: Callable[..., Path], stub_python: str) -> None:
    state = mount_point("state", "64k")
    (state / "filler").write_bytes(b"\0" * (60 * 1024))
    loc = Local(tmp_path, stub_python)
    loc.state_dir = state
    loc.sets["local.state_dir"] = str(state)
    with pytest.raises(LocalRunError) as info:
        LocalTarget().deploy(loc.rendered(), [MINILM], wait=True, timeout_s=60)
    assert str(info.value).startswith(str(state)) and ": No space left on device" in str(info.value)
    assert str(info.value).count("\n") == 0
    assert marked(loc.mark) == []
    (state / "filler").unlink()  # space again: nothing was recorded half-way
    assert LocalTarget().status(loc.rendered(), [MINILM])[0].phase == "NotDeployed"
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
