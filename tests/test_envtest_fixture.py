"""The control-plane fixture's promises: one-line skips, optional controllers, dead processes, loopback, cleanup."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import assets
from support.controlplane import ControlPlaneError, Process, wait_for
from support.envcluster import EnvCluster

# --------------------------------------------------------------------------------------------------
# Missing assets: one line naming what and how. Binaries skip everywhere (CI cannot get them); CRDs fail in CI.


@pytest.mark.parametrize("ci", ["", "true"])
def test_unset_kubebuilder_assets_skips_with_one_line_in_and_out_of_ci(monkeypatch: pytest.MonkeyPatch,
                                                                       ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    with pytest.raises(pytest.skip.Exception) as exc:
        assets.envtest_dir()
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg == ("real control plane: KUBEBUILDER_ASSETS is not set "
                   "(export KUBEBUILDER_ASSETS=$(setup-envtest use 1.36 -p path))")


def test_a_directory_without_the_api_server_skips_naming_what_it_lacks(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    _binary(tmp_path, "etcd")
    (tmp_path / "kube-apiserver").write_text("not executable")
    with pytest.raises(pytest.skip.Exception) as exc:
        assets.envtest_dir()
    assert str(exc.value).startswith(f"real control plane: KUBEBUILDER_ASSETS={tmp_path} lacks kube-apiserver (")
    assert "setup-envtest use 1.36 -p path" in str(exc.value)


def test_etcd_and_the_api_server_are_enough_and_the_controllers_are_optional(monkeypatch: pytest.MonkeyPatch,
                                                                             tmp_path: Path) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    for b in assets.API_BINARIES:
        _binary(tmp_path, b)
    assert assets.envtest_dir() == tmp_path
    reason = assets.controllers_skip_reason(tmp_path)
    assert reason is not None and "\n" not in reason
    assert reason.startswith(f"real control plane without controllers: KUBEBUILDER_ASSETS={tmp_path} lacks "
                             "kube-controller-manager, kube-scheduler (setup-envtest ships etcd and kube-apiserver")
    for b in assets.CONTROLLER_BINARIES:
        _binary(tmp_path, b)
    assert assets.controllers_skip_reason(tmp_path) is None


def test_missing_crds_fail_under_ci_and_skip_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POOLSERVE_CRD_DIR", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^CI=true and KServe CRDs not found .* set POOLSERVE_CRD_DIR"):
        assets.crd_dir()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"^KServe CRDs not found"):
        assets.crd_dir()


def test_nothing_points_at_a_binary_drop_beside_the_checkout() -> None:
    """KUBEBUILDER_ASSETS is the one source of control-plane binaries: no script, test or doc names another."""
    root = Path(__file__).resolve().parents[1]
    needle = "shared/" + "envtest"
    files = [p for d in ("scripts", "tests", "src", "docs", "benchmarks", ".ci") if (root / d).is_dir()
             for p in (root / d).rglob("*") if p.is_file() and p.suffix in ("", ".py", ".sh", ".md", ".yaml", ".toml")]
    files += [root / f for f in ("README.md", "LESSONS_LEARNED.md", "Makefile", "pyproject.toml")]
    offenders = [str(p.relative_to(root)) for p in files if needle in p.read_text(errors="replace")]
    assert offenders == []


def _binary(directory: Path, name: str) -> None:
    (directory / name).write_text("#!/bin/sh\n")
    (directory / name).chmod(0o755)


# --------------------------------------------------------------------------------------------------
# Processes: a dead one fails the wait with its log tail; every wait has a deadline; stop by PID.


def test_a_process_that_dies_fails_the_wait_at_once_with_its_log_tail(tmp_path: Path) -> None:
    proc = Process("etcd", ["sh", "-c", "echo starting; echo 'listen tcp 127.0.0.1:2379: bind: address already in "
                            "use' >&2; exit 3"], tmp_path / "etcd.log")
    proc.start()
    start = time.monotonic()
    with pytest.raises(ControlPlaneError) as exc:
        wait_for("etcd /health", lambda: None, [proc], timeout_s=60)
    assert time.monotonic() - start < 30  # failed on the exit, not at the deadline
    msg = str(exc.value)
    assert msg.startswith(f"while waiting for etcd /health: etcd (pid {proc.pid}) exited with code 3")
    assert "address already in use" in msg


def test_a_wait_that_never_succeeds_times_out_with_every_log_tail(tmp_path: Path) -> None:
    proc = Process("kube-apiserver", ["sh", "-c", "echo serving; sleep 30"], tmp_path / "apiserver.log")
    proc.start()
    try:
        with pytest.raises(ControlPlaneError) as exc:
            wait_for("kube-apiserver /readyz", lambda: None, [proc], timeout_s=0.5)
        assert "timed out after 0 s waiting for kube-apiserver /readyz" in str(exc.value)
        assert "serving" in str(exc.value)
    finally:
        proc.stop()
    assert not proc.alive()


def test_stop_escalates_to_sigkill_for_a_process_ignoring_sigterm(tmp_path: Path) -> None:
    proc = Process("stubborn", ["sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.1; done"],
                   tmp_path / "stubborn.log")
    proc.start()
    wait_for("the trap installed", lambda: "up" in proc.tail(), [proc], timeout_s=10)
    proc.stop(grace_s=0.5)
    assert proc.popen is not None and proc.popen.returncode == -signal.SIGKILL


def test_processes_die_with_the_test_process(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: even a test run killed with SIGKILL leaves no control-plane process behind."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from pathlib import Path\nfrom support.controlplane import Process\n"
            f"p = Process('sleeper', ['sleep', '60'], Path({str(tmp_path / 'sleeper.log')!r})); p.start()\n"
            "print(p.pid, flush=True)\nimport time; time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------------------------------
# The running control plane.


def _listening(pid: int) -> list[tuple[str, int]]:
    """``(ip, port)`` of each TCP socket ``pid`` listens on (from /proc: no ss/lsof needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)  # little-endian 32-bit words
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out.append((socket.inet_ntop(family, raw), int(hex_port, 16)))
    return out


@pytest.mark.apiserver_only
def test_every_process_listens_on_127_0_0_1_only_on_the_ports_it_was_given(kube: EnvCluster) -> None:
    given = set(kube.cp.ports.values())
    for proc in kube.cp.processes:
        assert proc.alive() and proc.pid is not None
        sockets = _listening(proc.pid)
        assert sockets, proc.name
        assert {ip for ip, _ in sockets} == {"127.0.0.1"}, (proc.name, sockets)
        assert {port for _, port in sockets} <= given, (proc.name, sockets)
    for server in (kube.kubelet.server, kube.kserve.webhook):
        assert server.httpd.server_address[0] == "127.0.0.1"


def test_the_real_controllers_and_scheduler_are_at_work(kube: EnvCluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in kube.api.list("/api/v1/nodes")}
    for name, node in nodes.items():
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8", name
        assert not node["spec"].get("taints"), name
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    for name in ("inferenceservices.serving.kserve.io", "servingruntimes.serving.kserve.io"):
        crd = kube.api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") or {}
        assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
    assert kube.api.get("/api/v1/namespaces/kube-system/serviceaccounts/default") is not None
