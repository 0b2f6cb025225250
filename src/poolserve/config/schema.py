"""The config file's format: :class:`PoolSpec` and its parts, pydantic models, frozen, unknown keys refused.

What each key means and its default live here (attribute docstrings become the JSON schema's descriptions,
and so the Helm chart's ``values.schema.json``). Reading a file is :mod:`poolserve.config.load`, the rules
across keys :mod:`poolserve.config.rules`, the precedence that fills every value in
:mod:`poolserve.config.resolve`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

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
