"""The resolved config: :class:`Runtime` and :class:`Model` with every value filled in (pure).

Precedence lives in one place, :func:`resolve_models`: built-in defaults < catalog entry < ``defaults:``
block < the model's own keys. :func:`first` and :func:`own_or_default` are its two ways of choosing;
the rules (:mod:`poolserve.config.rules`) use the same two, so they judge the value that is rendered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from poolserve.config import catalog, storage
from poolserve.config.schema import (
    CPU_ARCH_SELECTOR,
    AutoscalingSpec,
    Device,
    DisruptionBudget,
    HardwareProfileRef,
    ModelConfig,
    ModelDefaults,
    PoolSpec,
    ProbesConfig,
    Quantity,
    Resources,
    RuntimeConfig,
    Task,
    Toleration,
)
from poolserve.config.versions import Version, cpu_image, image_version, parse_version
from poolserve.errors import SpecError


def unknown_model(name: str, known: Sequence[str]) -> SpecError:
    """The one error for a model name the config does not have."""
    return SpecError(f"no model named {name!r} in the config (models: {', '.join(known)})")


@dataclass(frozen=True)
class Runtime:
    """A resolved ServingRuntime."""

    name: str
    display_name: str
    task: Task
    image: str
    vllm_version: Version
    model_format: str
    dtype: str | None
    gpu_memory_utilization: float | None
    accelerator: str | None
    extra_args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    pattern: str
    """The ``runtimes[].name`` this runtime was made from (equal to ``name`` in shared mode)."""
    probes: ProbesConfig = ProbesConfig()  # noqa: RUF009 - frozen pydantic model, shared safely
    device: Device = "gpu"
    enforce_eager: bool = False
    exclusive_cpus: bool = False
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()


@dataclass(frozen=True)
class Model:
    """A resolved InferenceService: every value filled in, precedence applied."""

    name: str
    namespace: str
    model_id: str
    display_name: str
    task: Task
    runtime: Runtime
    max_model_len: int | None
    dtype: str | None
    """Only set when it differs from the runtime's (then it is appended to the model args)."""
    gpu_memory_utilization: float | None
    image: str | None
    vllm_version: Version
    trust_remote_code: bool
    hf_overrides: Mapping[str, Any] | None
    pooler_config: Mapping[str, Any] | None
    convert: str | None
    resources: Resources
    gpus: int
    replicas: int
    max_replicas: int
    node_selector: tuple[tuple[str, str], ...]
    tolerations: tuple[Toleration, ...]
    expose: bool
    auth: bool
    env: tuple[tuple[str, str], ...]
    extra_args: tuple[str, ...]
    catalog_entry: catalog.CatalogEntry | None
    mig_profile: str | None = None
    gpu_memory_gib: float | None = None
    gpu_shared: bool = False
    stopped: bool = False

    @property
    def gpu_resource(self) -> str | None:
        """The extended resource the model's GPUs are requested as, or None when it uses none."""
        if self.mig_profile:
            return f"nvidia.com/mig-{self.mig_profile}"
        if self.gpus:
            return self.runtime.accelerator or "nvidia.com/gpu"
        return None

    @property
    def gpu_count(self) -> int:
        """How many of :attr:`gpu_resource` each pod requests."""
        if self.mig_profile:
            return self.gpus or 1
        return self.gpus
    autoscaling: AutoscalingSpec | None = None
    hardware_profile: tuple[str, str] | None = None
    """(name, namespace) of the OpenShift AI hardware profile; it then supplies node selector and tolerations."""
    storage_uri: storage.StorageURI | None = None
    data_connection: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    disruption_budget: DisruptionBudget | None = None
    deployment_strategy: str | None = None
    """``Recreate`` / ``RollingUpdate``; None leaves KServe's default (RollingUpdate 25%/25%)."""


def _merge_resources(*layers: Resources | None) -> Resources:
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    for layer in layers:
        if layer is not None:
            requests.update(layer.requests)
            limits.update(layer.limits)
    return Resources(requests=requests, limits=limits)


def first(*values: Any) -> Any:
    """The first of ``values`` that is not None (None when all are): the earlier layer wins."""
    for v in values:
        if v is not None:
            return v
    return None


def _resolve_runtime(spec: PoolSpec, rt: RuntimeConfig, name: str | None = None) -> Runtime:
    image = rt.image or spec.image
    version = runtime_version(spec, rt)
    if version is None:  # parse_spec's cross_check reports this with its line; this guards direct callers
        raise SpecError(f"runtime {rt.name}: cannot tell the vLLM version of image {image!r}")
    cpu = rt.device == "cpu"
    if cpu and rt.image is None:
        image = cpu_image(version)
    kind = "Embedding" if rt.task == "embed" else "Reranker"
    display = rt.display_name or (f"vLLM CPU {kind} Runtime" if cpu else f"vLLM {kind} Runtime")
    node_selector = rt.node_selector if rt.node_selector is not None else (CPU_ARCH_SELECTOR if cpu else {})
    return Runtime(
        name=name or rt.name,
        display_name=display,
        task=rt.task,
        image=image,
        vllm_version=version,
        model_format=rt.model_format,
        dtype=rt.setting("dtype"),
        gpu_memory_utilization=rt.setting("gpu_memory_utilization"),
        accelerator=rt.setting("accelerator"),
        extra_args=tuple(rt.extra_args),
        # Sorted: a config's mappings carry no order (YAML's, and Helm's Go maps), so the rendered env cannot.
        env=tuple(sorted(rt.env.items())),
        pattern=rt.name,
        probes=rt.probes,
        device=rt.device,
        enforce_eager=bool(rt.setting("enforce_eager")),
        exclusive_cpus=rt.exclusive_cpus,
        node_selector=tuple(sorted(node_selector.items())),
        tolerations=tuple(rt.tolerations),
    )


def runtime_version(spec: PoolSpec, rt: RuntimeConfig) -> Version | None:
    """The vLLM version of a runtime's image.

    The runtime's own ``vllm_version`` wins; a runtime with its own image is read from that image's
    tag (the top-level ``vllm_version`` describes the top-level ``image`` only); otherwise the
    top-level ``vllm_version``, else the top-level image's tag.
    """
    if rt.vllm_version is not None:
        return parse_version(rt.vllm_version)
    if rt.image is not None:
        return image_version(rt.image)
    if spec.vllm_version is not None:
        return parse_version(spec.vllm_version)
    return image_version(spec.image)


def resolve_models(spec: PoolSpec) -> list[Model]:
    """Resolve every model: built-in defaults < catalog < ``defaults:`` < the model's keys (pure)."""
    d = spec.defaults
    out: list[Model] = []
    for m in spec.models:
        entry = catalog.lookup(m.model_id)
        task: Task = m.task or (entry.task if entry else "embed")
        rt_cfg = next((rt for rt in spec.runtimes if (rt.name == m.runtime if m.runtime else rt.task == task)), None)
        if rt_cfg is None:
            raise SpecError(f"model {m.name}: no runtime for task {task!r} (run the config through load_spec)")
        runtime = _resolve_runtime(spec, rt_cfg, m.name if spec.runtime_mode == "per-model" else None)
        image = m.image
        version = image_version(image) if image else runtime.vllm_version
        if version is None:
            raise SpecError(f"model {m.name}: cannot tell the vLLM version of image {image!r}")
        replicas = first(m.replicas, d.replicas, 1)
        expose = bool(first(m.expose, d.expose, False))
        extras = _resolve_extras(spec, m)
        env = dict(d.env or {})
        env.update(m.env or {})
        out.append(
            Model(
                name=m.name,
                namespace=spec.namespace,
                model_id=m.model_id,
                display_name=m.display_name or f"{m.model_id.rsplit('/', 1)[-1]} (vLLM)",
                task=task,
                runtime=runtime,
                max_model_len=first(m.max_model_len, entry.max_model_len if entry else None),
                dtype=m.dtype if m.dtype != runtime.dtype else None,
                gpu_memory_utilization=(
                    m.gpu_memory_utilization if m.gpu_memory_utilization != runtime.gpu_memory_utilization else None
                ),
                image=image,
                vllm_version=version,
                trust_remote_code=bool(first(m.trust_remote_code, entry.trust_remote_code if entry else None, False)),
                hf_overrides=first(m.hf_overrides, entry.hf_overrides if entry else None),
                pooler_config=m.pooler_config,
                convert=first(m.convert, entry.convert if entry else None),
                resources=_merge_resources(d.resources, m.resources),
                # defaults.gpus is for the GPU models: a model on a CPU runtime takes none.
                gpus=0 if runtime.device == "cpu" else first(m.gpus, d.gpus, 0),
                replicas=replicas,
                max_replicas=first(m.max_replicas, d.max_replicas, replicas),
                # None means "not set": a model's {} / [] clears what defaults: sets.
                # A hardware profile supplies scheduling (see rules.scheduling_from_profile): defaults: are left out.
                node_selector=() if extras["hardware_profile"] else tuple(
                    sorted(first(m.node_selector, d.node_selector, {}).items())),
                tolerations=() if extras["hardware_profile"] else tuple(first(m.tolerations, d.tolerations, ())),
                expose=expose,
                # Exposed routes get token auth unless the config says otherwise.
                auth=bool(first(m.auth, d.auth, expose)),
                env=tuple(sorted(env.items())),
                extra_args=tuple(first(m.extra_args, d.extra_args, ())),
                catalog_entry=entry,
                mig_profile=None if runtime.device == "cpu" else first(m.mig_profile, d.mig_profile),
                gpu_memory_gib=first(m.gpu_memory_gib, d.gpu_memory_gib),
                gpu_shared=bool(first(m.gpu_shared, d.gpu_shared, False)),
                stopped=m.stopped,
                **extras,
            )
        )
    return out


def own_or_default(m: ModelConfig, d: ModelDefaults, key: str) -> Any:
    """The model's value when it sets the key, even to null (which opts out of ``defaults:``), else the default."""
    return getattr(m, key) if key in m.model_fields_set else getattr(d, key)


def _resolve_extras(spec: PoolSpec, m: ModelConfig) -> dict[str, Any]:
    d = spec.defaults
    profile: HardwareProfileRef | None = own_or_default(m, d, "hardware_profile")
    strategy = first(m.deployment_strategy, d.deployment_strategy)
    if strategy is None and spec.cache.access_mode in ("ReadWriteOnce", "ReadWriteOncePod"):
        strategy = "Recreate"  # a rolling update's surge pod cannot attach the volume on another node
    try:
        uri = storage.parse(m.storage_uri) if m.storage_uri else None
    except ValueError as err:  # parse_spec's cross_check reports this with its line; this guards direct callers
        raise SpecError(f"model {m.name}: storage_uri: {err}") from None
    extras: dict[str, Any] = {
        "autoscaling": own_or_default(m, d, "autoscaling"),
        "hardware_profile": (profile.name, profile.namespace or spec.dashboard.templates_namespace)
        if profile else None,
        "storage_uri": uri,
        "data_connection": m.data_connection,
        "image_pull_secrets": tuple(first(m.image_pull_secrets, d.image_pull_secrets, ())),
        "disruption_budget": own_or_default(m, d, "disruption_budget"),
        "deployment_strategy": strategy,
    }
    return extras


def runtimes_in_use(models: Sequence[Model]) -> list[Runtime]:
    """The distinct runtimes the given models need, in first-use order."""
    seen: dict[str, Runtime] = {}
    for m in models:
        seen.setdefault(m.runtime.name, m.runtime)
    return list(seen.values())


def all_runtimes(spec: PoolSpec) -> list[Runtime]:
    """Every runtime the config renders: in shared mode all of ``runtimes``, else one per model."""
    models = resolve_models(spec)
    if spec.runtime_mode == "per-model":
        return runtimes_in_use(models)
    return [_resolve_runtime(spec, rt) for rt in spec.runtimes]
