"""The deployment config: :class:`PoolSpec` (typed, validated, frozen) and :func:`load_spec`.

``load_spec`` reads one YAML file; everything after that is pure. Precedence lives in one place,
:func:`resolve_models`: built-in defaults < catalog entry < ``defaults:`` block < the model's own
keys. Errors name the file, the line and the key (``poolserve.yaml:14: models[0].max_model_len``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from poolserve.config import catalog, storage
from poolserve.config.versions import Version, cpu_image, image_version, parse_version, runtime_version
from poolserve.errors import SpecError

Task = Literal["embed", "score"]

DEFAULT_IMAGE = "vllm/vllm-openai:v0.32.0"
Device = Literal["gpu", "cpu"]

CPU_ARCH_SELECTOR = {"kubernetes.io/arch": "amd64"}
"""The CPU images are x86_64 builds: keep their pods on x86 nodes (a label every kubelet sets)."""
# Runtime settings whose default depends on the device (a key set in the config always wins).
GPU_DEFAULTS: dict[str, Any] = {"dtype": "float16", "gpu_memory_utilization": 0.3, "accelerator": "nvidia.com/gpu",
                                "enforce_eager": False}
CPU_DEFAULTS: dict[str, Any] = {"dtype": "float32", "gpu_memory_utilization": 0.5, "accelerator": None,
                                "enforce_eager": True}
MIG_PROFILE_RE = re.compile(r"^(\d+)g\.(\d+)gb(\+me)?$")


# KServe raw mode: the selector label ``app=isvc.<name>-predictor`` must fit 63 chars (<= 48) and the
# default domain template's first host label ``<name>-predictor-<ns>`` must too (name + ns <= 52).
# Source: kserve v0.20 constants.GetRawServiceLabel, ingress/domain.go GenerateDomainName (kserve#4807).
MAX_NAME_LEN = 48
MAX_NAME_PLUS_NAMESPACE = 52
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_TASK_ALIASES = {"embed": "embed", "embedding": "embed", "embeddings": "embed",
                 "score": "score", "rerank": "score", "reranker": "score"}


def _task_alias(v: Any) -> Any:
    return _TASK_ALIASES.get(v, v) if isinstance(v, str) else v


# ``embedding``/``rerank``/``reranker`` are accepted as spellings of the two tasks (the JSON schema, and
# so the Helm chart's values.schema.json, lists them too).
TaskKey = Annotated[
    Task,
    BeforeValidator(_task_alias, json_schema_input_type=Literal[tuple(_TASK_ALIASES)]),
]


class _Strict(BaseModel):
    # Attribute docstrings become the JSON schema's descriptions (the Helm chart's values.schema.json).
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


Quantity = str | int | float


class Resources(_Strict):
    """Container resources, as in Kubernetes (``cpu: "2"``, ``memory: 4Gi``)."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class Toleration(_Strict):
    """A pod toleration."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class SecretKeyRef(_Strict):
    """A key in a Secret; only the reference is ever rendered, never the value."""

    name: str
    key: str = "token"


class CacheSpec(_Strict):
    """The shared model-cache PVC, mounted into every runtime."""

    pvc: str = "vllm-model-cache"
    mount_path: str = "/models"
    hf_home: str = "/models/huggingface"
    offline: bool = False
    """Set ``HF_HUB_OFFLINE=1``: serve only what the cache holds (see ``poolserve cache``)."""
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"] | None = None
    hf_token_secret: SecretKeyRef | None = None


class DashboardSpec(_Strict):
    """OpenShift AI dashboard integration."""

    namespace_display_name: str | None = None
    templates: bool = False
    """Also render (and ``deploy``) a Template per runtime: listed under Settings -> Serving runtimes and
    offered by the deploy wizard, and without it OpenShift AI 3.5+ labels the runtimes "Template removed"."""
    templates_scope: Literal["global", "project"] = "global"
    """``global``: the Templates go to ``templates_namespace`` (creating them there needs an admin);
    ``project``: to the models' own namespace (a project member may create them; see README)."""
    templates_namespace: str = "redhat-ods-applications"
    """The dashboard's namespace (Open Data Hub: ``opendatahub``): where global Templates live."""


class LocalSpec(_Strict):
    """Adjustments for the local target only; they never change the cluster manifests."""

    cache_dir: str = ".poolserve/cache"
    """Stands in for the cache PVC (persistent; relative paths are relative to the working directory)."""
    state_dir: str = ".poolserve"
    """Holds ``local-state.json``, the server logs and the per-run emptyDir directories."""
    python: str | None = None
    """Interpreter that has vLLM installed; default: the one running poolserve."""
    # CPU defaults (set a key to null to keep the config's value, e.g. on a GPU workstation).
    dtype: str | None = "auto"
    """``auto``: bfloat16 for embedding models on CPUs with AVX512-BF16 or AMX-BF16 (3.2x float32 in
    benchmarks/), else float32 (exact vs. sentence-transformers; cross-encoder logits drift in bf16)."""
    reserved_cpus: int | None = Field(default=None, ge=0)
    """``VLLM_CPU_NUM_OF_RESERVED_CPU``: cores vLLM keeps for its HTTP front end. None: 0 on machines with
    <= 4 cores (+42..83% texts/s on 2 cores in benchmarks/), vLLM's own default (1) on larger ones."""
    gpu_memory_utilization: float | None = Field(default=0.25, gt=0, le=1)
    """On CPU vLLM reads this as the fraction of RAM it may use: 0.25 lets two servers share 24 GiB."""
    enforce_eager: bool = True
    """``--enforce-eager``: skips torch.compile warm-up, about half the startup time on CPU."""
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    startup_timeout_s: float = Field(default=600, gt=0)
    pvc_dirs: dict[str, str] = Field(default_factory=dict)
    """PVC name -> local directory standing in for it (a ``pvc://`` storage_uri's claim, say). Unlisted
    claims: ``cache_dir`` for the cache PVC, ``<state_dir>/pvc/<claim>`` for others."""
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    """Like a pod's ``restartPolicy``: ``Always`` restarts a server that exits or fails its liveness probe,
    with Kubernetes' CrashLoopBackOff delays; ``Never`` leaves it down (for debugging a crash)."""
    termination_grace_period_s: float = Field(default=30, ge=0)
    """Like ``terminationGracePeriodSeconds``: how long ``delete`` (and a restart) waits after SIGTERM
    before it kills the server's process group."""


class ProbeConfig(_Strict):
    """One HTTP probe of ``/health`` (Kubernetes' names in snake case; unset keys keep poolserve's defaults)."""

    period_s: int | None = Field(default=None, ge=1)
    timeout_s: int | None = Field(default=None, ge=1)
    failure_threshold: int | None = Field(default=None, ge=1)
    initial_delay_s: int | None = Field(default=None, ge=0)


class ProbesConfig(_Strict):
    """The runtime container's probes.

    Defaults: startup every 10 s x 180 (30 min for a first download), readiness every 10 s x 3, liveness
    every 30 s x 5 (timeout 10 s). The local target runs them too.
    """

    startup: ProbeConfig = Field(default_factory=ProbeConfig)
    readiness: ProbeConfig = Field(default_factory=ProbeConfig)
    liveness: ProbeConfig = Field(default_factory=ProbeConfig)


# KEDA's Prometheus scaler on OpenShift: the Thanos querier's tenancy port (needs the namespace parameter,
# which poolserve renders) and the TriggerAuthentication odh-model-controller creates in each namespace
# with an InferenceService that scales on an external Prometheus metric (kserve_keda_reconciler.go).
DEFAULT_PROMETHEUS_URL = "https://thanos-querier.openshift-monitoring.svc.cluster.local:9092"
ODH_KEDA_AUTH = "inference-prometheus-auth"
HPA_METRICS = ("cpu", "memory")


class AutoscalingSpec(_Strict):
    """How KServe scales a model between ``replicas`` and ``max_replicas``."""

    metric: Literal["cpu", "memory", "queue"]
    """cpu / memory: KServe's HPA on utilisation (percent of the request); queue: KEDA on vLLM's in-flight requests."""
    target: int = Field(ge=1)
    """cpu / memory: utilisation percent (1-100, KServe's webhook range); queue: inputs in flight per replica
    (vLLM counts each text of a batched request as one request)."""
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    """queue only: the Prometheus KEDA queries (default: OpenShift's Thanos querier, tenancy port)."""
    authentication: str | None = ODH_KEDA_AUTH
    """queue only: KEDA TriggerAuthentication name (bearer token); null for an unauthenticated Prometheus."""


class HardwareProfileRef(_Strict):
    """An OpenShift AI hardware profile (``infrastructure.opendatahub.io`` HardwareProfile)."""

    name: str
    namespace: str | None = None
    """Default: ``dashboard.templates_namespace`` (the dashboard namespace, where global profiles live)."""


def _profile_ref(v: Any) -> Any:
    return {"name": v} if isinstance(v, str) else v


class DisruptionBudget(_Strict):
    """A PodDisruptionBudget for the model's pods (rendered when ``replicas`` > 1). Set one of the two."""

    max_unavailable: int | str | None = None
    min_available: int | str | None = None


class MonitoringSpec(_Strict):
    """Prometheus scraping of vLLM's ``/metrics`` (OpenShift user-workload monitoring, prometheus-operator)."""

    enabled: bool = False


class HelmSpec(_Strict):
    """Settings of the Helm chart (``charts/poolserve``) only: poolserve itself ignores them."""

    create_namespace: bool = False
    """Render the Namespace with the dashboard labels (kept on ``helm uninstall``). Off by default: the plan's
    namespace exists already; ``poolserve render`` always renders it."""
    test_image: str | None = None
    """Image of the ``helm test`` pods (they run its ``python``); default: the model's vLLM image, which the
    nodes serving the model have pulled already."""


class RuntimeConfig(_Strict):
    """One ServingRuntime (in ``per-model`` mode: the pattern each model's runtime is made from).

    ``dtype``, ``gpu_memory_utilization``, ``accelerator`` and ``enforce_eager`` default per
    ``device`` (:data:`GPU_DEFAULTS`, :data:`CPU_DEFAULTS`); a key set in the config always wins.
    """

    name: str
    display_name: str | None = None
    task: TaskKey
    device: Device = "gpu"
    image: str | None = None
    vllm_version: str | None = None
    model_format: str = "huggingface"
    dtype: str | None = "float16"
    gpu_memory_utilization: float | None = Field(default=0.3, gt=0, le=1)
    accelerator: str | None = "nvidia.com/gpu"
    enforce_eager: bool = False
    node_selector: dict[str, str] | None = None
    """Pod node selector on the ServingRuntime (KServe merges it into every model's pod; a model's own
    ``node_selector`` keys win). None: ``kubernetes.io/arch: amd64`` for ``device: cpu``, none for GPUs."""
    tolerations: tuple[Toleration, ...] = ()
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)

    def setting(self, key: str) -> Any:
        """A device-dependent setting: the config's value when set, else the device's default."""
        if key in self.model_fields_set:
            return getattr(self, key)
        return (CPU_DEFAULTS if self.device == "cpu" else GPU_DEFAULTS)[key]


class ModelDefaults(_Strict):
    """Per-model settings that a ``defaults:`` block may set for every model."""

    resources: Resources | None = None
    gpus: int | None = Field(default=None, ge=0)
    replicas: int | None = Field(default=None, ge=1)
    max_replicas: int | None = Field(default=None, ge=1)
    node_selector: dict[str, str] | None = None
    tolerations: tuple[Toleration, ...] | None = None
    expose: bool | None = None
    auth: bool | None = None
    env: dict[str, str] | None = None
    extra_args: tuple[str, ...] | None = None
    mig_profile: str | None = None
    """A MIG slice instead of whole GPUs, e.g. ``1g.10gb``: requests ``nvidia.com/mig-<profile>`` (the GPU
    operator's ``mixed`` strategy) ``gpus`` times (once when ``gpus`` is unset)."""
    gpu_memory_gib: float | None = Field(default=None, gt=0, le=4096)
    """Memory of the GPU model the pods get (for ``poolserve plan`` and lint; a MIG slice's comes from
    its profile name)."""
    gpu_shared: bool | None = None
    """The GPU is time-sliced between pods (the device plugin's ``replicas``): memory is not isolated."""
    autoscaling: AutoscalingSpec | None = None
    # A bare name is the short form of {name: NAME}; the JSON schema (the Helm chart's) says both are accepted.
    hardware_profile: Annotated[HardwareProfileRef | None, BeforeValidator(
        _profile_ref, json_schema_input_type=str | HardwareProfileRef | None)] = None
    image_pull_secrets: tuple[str, ...] | None = None
    disruption_budget: DisruptionBudget | None = None
    deployment_strategy: Literal["Recreate", "RollingUpdate"] | None = None
    """None: Recreate with a ReadWriteOnce(Pod) cache (a rolling update's surge pod cannot attach it), else
    KServe's RollingUpdate."""


class ModelConfig(ModelDefaults):
    """One InferenceService."""

    name: str
    model_id: str
    display_name: str | None = None
    task: TaskKey | None = None
    runtime: str | None = None
    max_model_len: int | None = Field(default=None, gt=0, le=1_048_576)
    dtype: str | None = None
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    image: str | None = None
    trust_remote_code: bool | None = None
    hf_overrides: dict[str, Any] | None = None
    pooler_config: dict[str, Any] | None = None
    convert: Literal["embed", "classify"] | None = None
    stopped: bool = False
    """Deploy it stopped: ``serving.kserve.io/stop: "true"`` (the dashboard's Stop), no pods; locally no process."""
    storage_uri: str | None = None
    """pvc://, oci://, hf:// or s3://: KServe puts the model at /mnt/models and vLLM loads it from there."""
    data_connection: str | None = None
    """s3:// only: the data-connection Secret whose credential KServe's storage initializer uses (a name,
    never a value)."""


class PoolSpec(_Strict):
    """The whole deployment: namespace, cache, runtimes and models."""

    namespace: str = "vllm-embeddings"
    image: str = DEFAULT_IMAGE
    vllm_version: str | None = None
    runtime_mode: Literal["shared", "per-model"] = "shared"
    cache: CacheSpec = Field(default_factory=CacheSpec)
    dashboard: DashboardSpec = Field(default_factory=DashboardSpec)
    local: LocalSpec = Field(default_factory=LocalSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    helm: HelmSpec = Field(default_factory=HelmSpec)
    defaults: ModelDefaults = Field(default_factory=ModelDefaults)
    runtimes: tuple[RuntimeConfig, ...] = Field(min_length=1)
    models: tuple[ModelConfig, ...] = Field(min_length=1)

    def model(self, name: str) -> Model:
        """Return the resolved model called ``name``.

        Raises:
            SpecError: if no model has that name.
        """
        for m in resolve_models(self):
            if m.name == name:
                return m
        raise unknown_model(name, [m.name for m in self.models])


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


_SECRET_WORDS = frozenset({"TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "APIKEY"})
_SECRET_PAIRS = frozenset({("API", "KEY"), ("ACCESS", "KEY"), ("PRIVATE", "KEY"), ("SECRET", "KEY")})


def secret_like(name: str) -> bool:
    """An env var name that usually holds a secret (``HF_TOKEN``, ``VLLM_API_KEY``), not ``TOKENIZERS_PARALLELISM``."""
    words = name.upper().replace("-", "_").split("_")
    return bool(_SECRET_WORDS & set(words)) or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def _secret_env(env: Mapping[str, str] | None, base: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    # Rendered env values land in manifests/kserve/ (committed, readable by anyone with `get` on the objects).
    return [((*base, "env", k), f"{k} looks like a secret, and its value would be written into the rendered "
             "manifests: use cache.hf_token_secret for the HF token (a Secret reference, rendered as secretKeyRef), "
             "or local.env for the local target (never rendered)") for k in (env or {}) if secret_like(k)]


def cross_check(spec: PoolSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules that span several keys. Returns ``[(key_path, message)]``; empty when valid."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    out += _secret_env(spec.defaults.env, ("defaults",))
    for i, rt in enumerate(spec.runtimes):
        out += _secret_env(rt.env, ("runtimes", i))
    for i, m in enumerate(spec.models):
        out += _secret_env(m.env, ("models", i))
    if not NAME_RE.match(spec.namespace) or len(spec.namespace) > 63:
        out.append((("namespace",), f"{spec.namespace!r} is not a valid namespace name (DNS-1123 label)"))
    if spec.vllm_version is not None and parse_version(spec.vllm_version) is None:
        out.append((("vllm_version",), f"{spec.vllm_version!r} is not a version like 0.32.0"))
    runtime_names: dict[str, int] = {}
    for i, rt in enumerate(spec.runtimes):
        if rt.name in runtime_names:
            out.append((("runtimes", i, "name"), f"duplicate runtime name {rt.name!r}"))
        runtime_names[rt.name] = i
        if not NAME_RE.match(rt.name) or len(rt.name) > 63:
            out.append((("runtimes", i, "name"), f"{rt.name!r} is not a valid Kubernetes name"))
        if rt.device == "cpu" and "accelerator" in rt.model_fields_set and rt.accelerator:
            out.append((("runtimes", i, "accelerator"), f"runtime {rt.name!r} has device: cpu: it has no accelerator "
                        "(remove accelerator, or use device: gpu)"))
        image = rt.image or spec.image
        if runtime_version(spec, rt) is None:
            key = "vllm_version" if rt.vllm_version else "image"
            out.append(
                (("runtimes", i, key) if rt.image or rt.vllm_version else ("image",),
                 f"cannot tell the vLLM version of image {image!r}: pin a tag like v0.32.0 or set vllm_version")
            )
    model_names: set[str] = set()
    for i, m in enumerate(spec.models):
        base = ("models", i)
        if m.name in model_names:
            out.append(((*base, "name"), f"duplicate model name {m.name!r}"))
        model_names.add(m.name)
        if not NAME_RE.match(m.name):
            out.append(((*base, "name"),
                        f"{m.name!r} must be lowercase letters, digits and '-', starting with a letter"))
        elif len(m.name) > MAX_NAME_LEN:
            out.append(((*base, "name"), f"{m.name!r} is {len(m.name)} characters; KServe raw mode allows "
                        f"{MAX_NAME_LEN} (label app=isvc.<name>-predictor must fit 63)"))
        elif len(m.name) + len(spec.namespace) > MAX_NAME_PLUS_NAMESPACE:
            out.append(((*base, "name"), f"{m.name!r} + namespace {spec.namespace!r} is "
                        f"{len(m.name) + len(spec.namespace)} characters; KServe allows {MAX_NAME_PLUS_NAMESPACE} "
                        "(host label <name>-predictor-<namespace> must fit 63)"))
        if spec.runtime_mode == "per-model" and m.name in runtime_names:
            out.append(((*base, "name"), f"{m.name!r} clashes with a runtime of the same name in per-model mode"))
        entry = catalog.lookup(m.model_id)
        task = m.task or (entry.task if entry else None)
        if task is None:
            out.append(((*base, "model_id"), f"{m.model_id!r} is not in the catalog: set task: embed or task: score"))
            continue
        if m.runtime is not None:
            if m.runtime not in runtime_names:
                out.append(((*base, "runtime"), f"runtime {m.runtime!r} is not defined under runtimes "
                            f"(defined: {', '.join(runtime_names) or 'none'})"))
            elif spec.runtimes[runtime_names[m.runtime]].task != task:
                rt_task = spec.runtimes[runtime_names[m.runtime]].task
                out.append(((*base, "runtime"), f"model task is {task!r} but runtime {m.runtime!r} serves {rt_task!r}"))
        else:
            candidates = [rt.name for rt in spec.runtimes if rt.task == task]
            if not candidates:
                out.append(((*base, "task"), f"{m.name}: task {task!r} needs a runtime with task: {task}; "
                            f"none under runtimes"))
            elif len(candidates) > 1:
                out.append(((*base, "runtime"), f"{m.name}: several runtimes serve {task!r} "
                            f"({', '.join(candidates)}): name one with runtime:"))
        rt_index = runtime_names.get(m.runtime) if m.runtime else next(
            (j for j, rt in enumerate(spec.runtimes) if rt.task == task), None)
        on_cpu = rt_index is not None and spec.runtimes[rt_index].device == "cpu"
        mig = _first(m.mig_profile, spec.defaults.mig_profile)
        if mig is not None and not MIG_PROFILE_RE.match(mig):
            where: tuple[str | int, ...] = (*base, "mig_profile") if m.mig_profile is not None else (
                "defaults", "mig_profile")
            out.append((where, f"{mig!r} is not a MIG profile like 1g.10gb or 3g.40gb (nvidia-smi mig -lgip)"))
        if on_cpu:
            rt_name = spec.runtimes[rt_index].name if rt_index is not None else "?"
            if m.gpus:
                out.append(((*base, "gpus"), f"runtime {rt_name!r} has device: cpu: its models cannot use GPUs "
                            "(set gpus: 0, or use a device: gpu runtime)"))
            if m.mig_profile:
                out.append(((*base, "mig_profile"), f"runtime {rt_name!r} has device: cpu: no MIG slice"))
        elif mig is not None and _first(m.gpus, spec.defaults.gpus) == 0:
            out.append(((*base, "gpus"), f"gpus: 0 with mig_profile {mig!r}: a MIG slice is a GPU (unset gpus, "
                        "or set it to the number of slices)"))
        if entry and m.max_model_len and m.max_model_len > entry.max_model_len:
            out.append(((*base, "max_model_len"), f"{m.max_model_len} is above {m.model_id}'s limit of "
                        f"{entry.max_model_len}; vLLM refuses to start (see `poolserve catalog {m.model_id}`)"))
        if m.image and image_version(m.image) is None:
            out.append(((*base, "image"), f"cannot tell the vLLM version of image {m.image!r}: pin a tag like v0.32.0"))
        replicas = _first(m.replicas, spec.defaults.replicas, 1)
        max_replicas = _first(m.max_replicas, spec.defaults.max_replicas, replicas)
        if max_replicas < replicas:
            out.append(((*base, "max_replicas"), f"max_replicas {max_replicas} is below replicas {replicas}"))
        out += _check_model_extras(spec, m, base)
    out += _check_extras(spec.defaults, ("defaults",))
    return out


_PERCENT = re.compile(r"^[0-9]+%$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # object names: Secret, HardwareProfile, ...
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # namespaces


def _check_extras(d: ModelDefaults, base: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    """Keys a ``defaults:`` block and a model share: autoscaling, hardware profile, pull secrets, PDB."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    a = d.autoscaling
    if a is not None:
        key = (*base, "autoscaling")
        if a.metric in HPA_METRICS and a.target > 100:
            # validateScalingHPACompExtension (inference_service_validation.go): 1-100 for both metrics.
            out.append(((*key, "target"), f"{a.target} is out of KServe's range for metric {a.metric}: a "
                        "utilisation percentage 1-100 (the InferenceService webhook rejects it)"))
        if a.metric in HPA_METRICS:
            for field in ("prometheus_url", "authentication"):
                if field in a.model_fields_set:
                    out.append(((*key, field), f"only used with metric: queue (KEDA), not {a.metric}"))
        elif not re.match(r"^https?://[^/\s]+", a.prometheus_url):
            out.append(((*key, "prometheus_url"), f"{a.prometheus_url!r} is not an http(s) URL"))
        if a.authentication is not None and not _SUBDOMAIN.match(a.authentication):
            out.append(((*key, "authentication"), f"{a.authentication!r} is not a TriggerAuthentication name"))
    hp = d.hardware_profile
    if hp is not None:
        checks = (("name", hp.name, _SUBDOMAIN, 253), ("namespace", hp.namespace, _LABEL, 63))
        for field, value, pattern, limit in checks:
            if value is not None and (not pattern.match(value) or len(value) > limit):
                out.append(((*base, "hardware_profile", field), f"{value!r} is not a valid Kubernetes name"))
    for i, secret in enumerate(d.image_pull_secrets or ()):
        if not _SUBDOMAIN.match(secret):
            out.append(((*base, "image_pull_secrets", i), f"{secret!r} is not a Secret name"))
    pdb = d.disruption_budget
    if pdb is not None:
        key = (*base, "disruption_budget")
        if pdb.max_unavailable is not None and pdb.min_available is not None:
            out.append((key, "set max_unavailable or min_available, not both (a PodDisruptionBudget takes one)"))
        for field in ("max_unavailable", "min_available"):
            value = getattr(pdb, field)
            if isinstance(value, str) and not _PERCENT.match(value):
                out.append(((*key, field), f"{value!r} is neither a number of pods nor a percentage like '25%'"))
            elif isinstance(value, int) and value < 0:
                out.append(((*key, field), f"{value} is negative"))
    return out


def _check_model_extras(spec: PoolSpec, m: ModelConfig,
                        base: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    out = _check_extras(m, base)
    if m.storage_uri is not None:
        try:
            parsed = storage.parse(m.storage_uri)
        except ValueError as err:
            out.append(((*base, "storage_uri"), str(err)))
        else:
            if m.data_connection is not None and parsed.scheme != "s3":
                out.append(((*base, "data_connection"), f"only used with s3:// (storage_uri is {parsed.scheme}://)"))
    elif m.data_connection is not None:
        out.append(((*base, "data_connection"), "needs storage_uri: s3://BUCKET/PATH"))
    if m.data_connection is not None and not _SUBDOMAIN.match(m.data_connection):
        out.append(((*base, "data_connection"), f"{m.data_connection!r} is not a Secret name"))
    if _own_or_default(m, spec.defaults, "hardware_profile") is not None:
        # The profile owns scheduling: its webhook (OpenShift AI 3.x) overwrites node selector keys and, when
        # the profile changes, replaces both. Values from defaults: are left out for this model instead.
        for field in ("node_selector", "tolerations"):
            if getattr(m, field):
                out.append(((*base, field), f"{field} comes from the hardware profile (its webhook overwrites "
                            f"it); remove {field} or hardware_profile"))
    return out


def _merge_resources(*layers: Resources | None) -> Resources:
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    for layer in layers:
        if layer is not None:
            requests.update(layer.requests)
            limits.update(layer.limits)
    return Resources(requests=requests, limits=limits)


def _first(*values: Any) -> Any:
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
        node_selector=tuple(sorted(node_selector.items())),
        tolerations=tuple(rt.tolerations),
    )


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
        replicas = _first(m.replicas, d.replicas, 1)
        expose = bool(_first(m.expose, d.expose, False))
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
                max_model_len=_first(m.max_model_len, entry.max_model_len if entry else None),
                dtype=m.dtype if m.dtype != runtime.dtype else None,
                gpu_memory_utilization=(
                    m.gpu_memory_utilization if m.gpu_memory_utilization != runtime.gpu_memory_utilization else None
                ),
                image=image,
                vllm_version=version,
                trust_remote_code=bool(_first(m.trust_remote_code, entry.trust_remote_code if entry else None, False)),
                hf_overrides=_first(m.hf_overrides, entry.hf_overrides if entry else None),
                pooler_config=m.pooler_config,
                convert=_first(m.convert, entry.convert if entry else None),
                resources=_merge_resources(d.resources, m.resources),
                # defaults.gpus is for the GPU models: a model on a CPU runtime takes none.
                gpus=0 if runtime.device == "cpu" else _first(m.gpus, d.gpus, 0),
                replicas=replicas,
                max_replicas=_first(m.max_replicas, d.max_replicas, replicas),
                # None means "not set": a model's {} / [] clears what defaults: sets.
                # A hardware profile supplies scheduling (see _check_model_extras): defaults: are left out.
                node_selector=() if extras["hardware_profile"] else tuple(
                    sorted(_first(m.node_selector, d.node_selector, {}).items())),
                tolerations=() if extras["hardware_profile"] else tuple(_first(m.tolerations, d.tolerations, ())),
                expose=expose,
                # Exposed routes get token auth unless the config says otherwise.
                auth=bool(_first(m.auth, d.auth, expose)),
                env=tuple(sorted(env.items())),
                extra_args=tuple(_first(m.extra_args, d.extra_args, ())),
                catalog_entry=entry,
                mig_profile=None if runtime.device == "cpu" else _first(m.mig_profile, d.mig_profile),
                gpu_memory_gib=_first(m.gpu_memory_gib, d.gpu_memory_gib),
                gpu_shared=bool(_first(m.gpu_shared, d.gpu_shared, False)),
                stopped=m.stopped,
                **extras,
            )
        )
    return out


def _own_or_default(m: ModelConfig, d: ModelDefaults, key: str) -> Any:
    """The model's value when it sets the key, even to null (which opts out of ``defaults:``), else the default."""
    return getattr(m, key) if key in m.model_fields_set else getattr(d, key)


def _resolve_extras(spec: PoolSpec, m: ModelConfig) -> dict[str, Any]:
    d = spec.defaults
    profile: HardwareProfileRef | None = _own_or_default(m, d, "hardware_profile")
    strategy = _first(m.deployment_strategy, d.deployment_strategy)
    if strategy is None and spec.cache.access_mode in ("ReadWriteOnce", "ReadWriteOncePod"):
        strategy = "Recreate"  # a rolling update's surge pod cannot attach the volume on another node
    try:
        uri = storage.parse(m.storage_uri) if m.storage_uri else None
    except ValueError as err:  # parse_spec's cross_check reports this with its line; this guards direct callers
        raise SpecError(f"model {m.name}: storage_uri: {err}") from None
    extras: dict[str, Any] = {
        "autoscaling": _own_or_default(m, d, "autoscaling"),
        "hardware_profile": (profile.name, profile.namespace or spec.dashboard.templates_namespace)
        if profile else None,
        "storage_uri": uri,
        "data_connection": m.data_connection,
        "image_pull_secrets": tuple(_first(m.image_pull_secrets, d.image_pull_secrets, ())),
        "disruption_budget": _own_or_default(m, d, "disruption_budget"),
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
