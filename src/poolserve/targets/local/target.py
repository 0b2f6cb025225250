"""The local target: each InferenceService becomes a vLLM process on this machine, run like a pod's container.

:class:`LocalTarget` maps each model's composed container onto this machine
(:func:`poolserve.targets.local.plan.plan_launch`) and hands it to a supervisor process
(:mod:`poolserve.targets.local.supervisor`), which runs the server with the rendered probes, restarts it
with Kubernetes' CrashLoopBackOff and records how it ended. ``local-state.json`` holds what is
deployed (:mod:`poolserve.targets.local.state`); ``pods/<model>.json`` what its supervisor sees. So
``status``/``logs``/``delete`` in a later invocation find the servers, and a server keeps its
supervision after the CLI exits.

The verbs are here; the work is beside them: starting (:mod:`~poolserve.targets.local.launch`),
stopping like a pod (:mod:`~poolserve.targets.local.stopping`), what a model's status is
(:mod:`~poolserve.targets.local.status`, pure) and what ``wait`` looks at
(:mod:`~poolserve.targets.local.waiting`, in the loop of :mod:`poolserve.targets.wait`).

No orphans: ``deploy`` records a model (with a fresh uid) before it starts the supervisor, with
Ctrl-C held off until both are done; a supervisor whose entry is gone or replaced stops its server;
``delete`` removes the entry, asks the supervisor to stop (SIGTERM, the grace period, SIGKILL) and
kills what is left itself if the supervisor is gone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from poolserve.config.schema import PoolSpec
from poolserve.errors import Interrupted, NotFound, NotReady, SpecError
from poolserve.kserve.render import Rendered
from poolserve.machine import CpuPreload, HostInfo, pid_alive
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
from poolserve.targets.local import status as local_status
from poolserve.targets.local.launch import Launcher
from poolserve.targets.local.plan import HOST, LaunchPlan, local_cache_dir, local_hf_home, local_state_dir, plan_launch
from poolserve.targets.local.process import free_port, http_healthy, port_free, read_tail
from poolserve.targets.local.running import KIND, Supervisors
from poolserve.targets.local.state import (
    STATE_FILE,
    LocalEntry,
    LocalState,
    fs_error,
    locked,
    read_pod,
    read_state,
    server_pgid,
    write_state,
)
from poolserve.targets.local.stopping import Stopping, ask_to_stop, finish_stop, stop_now, stop_one
from poolserve.targets.local.waiting import LocalWatch
from poolserve.targets.wait import wait_ready
from poolserve.vllm import hfcache

POLL_S = 0.25
"""Seconds between the looks of ``wait``."""


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
        self._supervisors = Supervisors()
        self._launcher = Launcher(self._supervisors, python=python or sys.executable, now=now)

    # -- helpers -------------------------------------------------------------------------------

    def _paths(self, spec: PoolSpec) -> tuple[Path, Path]:
        state_dir = local_state_dir(spec, self.state_dir)
        return state_dir, state_dir / STATE_FILE

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
        python = spec.local.python or sys.executable
        return plan_launch(
            rendered.compose(name), model_id=model.model_id, local=spec.local, cache_pvc=spec.cache.pvc,
            python=python, port=port, cache_dir=local_cache_dir(spec),
            state_dir=state_dir,
            model_cached=lambda hf_home: hfcache.snapshot_path(hf_home, model.model_id) is not None,
            host=self._host, task=model.task, device=model.runtime.device, storage_uri=model.storage_uri,
            hf_snapshot=lambda repo, revision: hfcache.snapshot_path(local_hf_home(spec), repo, revision),
            preload=CpuPreload.detect(python) if spec.local.preload else None,
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
        selected = list(names) or [m.name for m in rendered.models]
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
        state_dir, _ = self._paths(spec)
        changes: list[ObjectChange] = []
        notes: list[str] = []
        to_wait: list[str] = []
        for name in selected:
            if rendered.model(name).stopped and not start_stopped:
                changes.append(stop_one(state_dir, name, spec.local.termination_grace_period_s, self._supervisors,
                                        reason="stopped: true in the config"))
                continue
            change, plan = self._deploy_one(rendered, name, state_dir)
            changes.append(change)
            if plan is not None:
                notes.extend(f"{name}: {o}" for o in plan.overrides)
            to_wait.append(name)
        if wait:
            self._wait_names(state_dir, to_wait, timeout_s, progress)
        return DeployResult(target="local", changes=tuple(changes),
                            statuses=tuple(self.status(rendered, selected)), notes=tuple(notes))

    def _deploy_one(self, rendered: Rendered, name: str, state_dir: Path) -> tuple[ObjectChange, LaunchPlan | None]:
        """Start (or restart) one model unless it runs unchanged; the plan when it was started."""
        spec = rendered.spec
        with locked(state_dir):
            state = read_state(state_dir / STATE_FILE)
            entry = state.models.get(name)
            running = entry is not None and self._supervisors.alive(entry)
            pod = read_pod(state_dir, name) if entry is not None else None
            port_lost = pod is not None and pod.uid == (entry.uid if entry else None) \
                and pod.waiting_reason == "PortInUse"
            taken = [e.port for n, e in state.models.items() if n != name]
            # Keep the port across restarts (a stable URL) unless another program took it.
            keep = entry is not None and not port_lost and (running or port_free(HOST, entry.port))
            port = entry.port if entry is not None and keep else free_port(HOST, avoid=taken)
            plan = self.plan(rendered, name, port=port)
            if entry and running and not port_lost and entry.fingerprint == plan.fingerprint:
                return ObjectChange(KIND, name, None, "unchanged", f"pid {entry.pid}, {entry.url}"), None
            note = None
            if entry is not None:
                # A changed config restarts; a dead entry may have left a server behind.
                stop_now(state_dir, entry, spec.local.termination_grace_period_s, self._supervisors)
                if port_lost:
                    note = f"restarted on a new port: another program took {HOST}:{entry.port}"
                elif running:
                    note = "restarted: the composed command or env changed"
            new = self._launcher.start(plan, state_dir, state, spec.local.python or sys.executable)
        action: Literal["configured", "started"] = "configured" if note else "started"
        return ObjectChange(KIND, name, None, action, note or f"supervisor pid {new.pid}, {new.url}"), plan

    def stop(self, rendered: Rendered, names: Sequence[str], *, force: bool = False) -> DeployResult:
        """Stop each named model's process group; it stays in the state as Stopped until ``start`` (``force``: unused).

        Raises:
            NotFound: a model was never deployed locally.
            LocalRunError: the state cannot be locked, read or written.
        """
        spec = rendered.spec
        _, state_path = self._paths(spec)
        selected = self._names(rendered, names, read_state(state_path)) if names else [m.name for m in rendered.models]
        state = read_state(state_path)
        for name in selected:
            if name not in state.models and not rendered.model(name).stopped:
                raise NotFound(f"{name} is not deployed locally: `poolserve deploy --target local {name}`")
        state_dir = state_path.parent
        grace = spec.local.termination_grace_period_s
        changes = [stop_one(state_dir, name, grace, self._supervisors, reason="stopped") for name in selected]
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
        selected = list(names) or [m.name for m in rendered.models if m.name in state.models]
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
        state_dir, state_path = self._paths(rendered.spec)
        state = read_state(state_path)
        out: list[ModelStatus] = []
        for name in self._names(rendered, names, state):
            entry = state.models.get(name)
            out.append(self._entry_status(state_dir, entry) if entry is not None
                       else local_status.undeployed_status(rendered.model(name)))
        return out

    def _entry_status(self, state_dir: Path, entry: LocalEntry) -> ModelStatus:
        """Gather the evidence of a deployed model (files, processes, ``/health``) and judge it."""
        pod = read_pod(state_dir, entry.name)
        pod = pod if pod is not None and pod.uid == entry.uid else None
        supervised = self._supervisors.alive(entry)
        alive = healthy = False
        if local_status.probes_server(entry, pod, supervised=supervised):
            run = pod.running if pod is not None else None
            alive = run is not None and pid_alive(run.pid, run.ticks)
            healthy = alive and self._healthy(entry.url + "/health")
        return local_status.entry_status(local_status.Evidence(
            entry=entry, pod=pod, supervised=supervised, now=self._now(),
            supervisor_log=state_dir / "logs" / f"{entry.name}.supervisor.log",
            log=tuple(read_tail(Path(entry.log), local_status.LOG_LINES)),
            previous_log=tuple(read_tail(local_status.previous_log(entry), local_status.DETAIL_LINES)),
            server_alive=alive, server_healthy=healthy))

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
        selected = list(names) or [m.name for m in rendered.models if m.name in state.models]
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
            self._wait_names(state_path.parent, waiting, timeout_s, progress)
        except KeyboardInterrupt:
            raise Interrupted("interrupted: the servers keep starting under their supervisors (`poolserve status "
                              "--target local`)") from None
        return self.status(rendered, selected)

    def _wait_names(self, state_dir: Path, names: Sequence[str], timeout_s: float,
                    progress: ProgressFn | None) -> None:
        if not names:
            return
        watch = LocalWatch(state_dir, names, self._supervisors, timeout_s=timeout_s,
                           status_of=lambda entry: self._entry_status(state_dir, entry))
        wait_ready(watch.look, timeout_s=timeout_s, poll_s=POLL_S, failure=watch.failure, timeout=watch.timeout,
                   report=watch.report, progress=progress)

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
        stopping: list[Stopping] = []
        with locked(state_dir):
            state = read_state(state_path)
            selected = self._names(rendered, names, state) if names else list(state.models)
            remaining = dict(state.models)
            for name in selected:
                entry = remaining.pop(name, None)
                if entry is None:
                    changes.append(ObjectChange(KIND, name, None, "absent"))
                else:
                    stopping.append(ask_to_stop(state_dir, entry, grace, self._supervisors))
            # Forgotten first: a supervisor that misses the signal sees its entry gone and stops by itself.
            write_state(state_path, LocalState(remaining))
        for s in stopping:
            changes.append(finish_stop(state_dir, s, self._supervisors))
        order = {n: i for i, n in enumerate(selected)}
        changes.sort(key=lambda c: order.get(c.name, 0))
        notes = [f"nothing runs locally (state: {state_path})"] if not selected else []
        if runtimes:
            notes.append("--runtimes: the local target has no ServingRuntimes")
        return DeleteResult(target="local", changes=tuple(changes), notes=tuple(notes))

    # -- what test, bench and cache ask --------------------------------------------------------

    def deployed(self, rendered: Rendered, names: Sequence[str]) -> list[str]:
        """Which of ``names`` (all configured models when empty) the local state file holds.

        Raises:
            LocalRunError: the state file cannot be read.
        """
        state = read_state(self._paths(rendered.spec)[1])
        return [n for n in (list(names) or [m.name for m in rendered.models]) if n in state.models]

    def hf_homes(self, rendered: Rendered) -> list[Path]:
        """The local model cache: ``cache.hf_home`` mapped into ``local.cache_dir``, as it is inside the PVC.

        Raises:
            SpecError: ``cache.hf_home`` is not under ``cache.mount_path`` (nothing local persists it).
        """
        return [local_hf_home(rendered.spec)]

    def server_pgid(self, rendered: Rendered, name: str) -> int | None:
        """The process group of ``name``'s running server, from its supervisor's status (None: none runs)."""
        return server_pgid(self._paths(rendered.spec)[0], name)

    def server_command(self, rendered: Rendered, name: str) -> tuple[list[str], dict[str, str]]:
        """The launch plan's command line and env: the local dtype, this machine's cache paths."""
        launch = self.plan(rendered, name, port=0)
        return list(launch.argv), dict(launch.env)

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
