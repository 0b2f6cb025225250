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
    """What the scheduler reserves per pod, e.g. ``{cpu: "2", memory: 8Gi}``."""
    limits: dict[str, Quantity] = Field(default_factory=dict)
    """The most a pod may use, e.g. ``{memory: 16Gi}`` (a container above its memory limit is OOMKilled)."""


class Toleration(_Strict):
    """A pod toleration."""

    key: str | None = None
    """The taint key it tolerates (none with ``operator: Exists``: every taint)."""
    operator: Literal["Exists", "Equal"] | None = None
    """``Equal`` (Kubernetes' default): the taint's value must be ``value``; ``Exists``: any value."""
    value: str | None = None
    """The taint value, with ``operator: Equal``."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect it tolerates (none: every effect)."""
    toleration_seconds: int | None = None
    """With ``effect: NoExecute``: how long the pod stays on a node after the taint appears (Kubernetes'
    ``tolerationSeconds``)."""


class SecretKeyRef(_Strict):
    """A key in a Secret; only the reference is ever rendered, never the value."""

    name: str
    """The Secret's name, in the config's namespace."""
    key: str = "token"
    """The key inside the Secret that holds the value."""


class CacheSpec(_Strict):
    """The shared model-cache PVC, mounted into every runtime."""

    pvc: str = "vllm-model-cache"
    """The existing PersistentVolumeClaim every runtime mounts (create it first: poolserve never does)."""
    mount_path: str = "/models"
    """Where the cache PVC is mounted in the container."""
    hf_home: str = "/models/huggingface"
    """``HF_HOME`` in the container: where vLLM downloads models to and reads them from (under ``mount_path``)."""
    offline: bool = False
    """Set ``HF_HUB_OFFLINE=1``: serve only what the cache holds (see ``poolserve cache``)."""
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"] | None = None
    """The PVC's access mode, so that lint can check how many pods may share it (ReadWriteOnce: one node;
    ReadWriteOncePod: one pod) and render ``Recreate`` rollouts. null: not checked offline (``deploy`` reads it)."""
    hf_token_secret: SecretKeyRef | None = None
    """``HF_TOKEN`` for gated or private models, from a Secret (``{name, key}``); a token value is never
    rendered. Reaches vLLM and ``cache warm``, not KServe's storage initializer."""


class DashboardSpec(_Strict):
    """OpenShift AI dashboard integration."""

    namespace_display_name: str | None = None
    """The project's display name in the dashboard (``openshift.io/display-name`` on the Namespace); null:
    the namespace's name."""
    templates: bool = False
    """Also render (and ``deploy``) a Template per runtime: listed under Settings -> Serving runtimes and
    offered by the deploy wizard, and without it OpenShift AI 3.5+ labels the runtimes "Template removed"."""
    templates_scope: Literal["global", "project"] = "global"
    """``global``: the Templates go to ``templates_namespace`` (creating them there needs an admin);
    ``project``: to the models' own namespace (a project member may create them; the "Template removed" check
    finds them there from OpenShift AI 3.6 on)."""
    templates_namespace: str = "redhat-ods-applications"
    """The dashboard's namespace (Open Data Hub: ``opendatahub``): where global Templates live, and the default
    namespace of hardware profiles."""


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
    """``VLLM_CPU_NUM_OF_RESERVED_CPU``: cores vLLM keeps for its HTTP front end. null: 0 on machines with
    <= 4 cores (+42..83% texts/s on 2 cores in benchmarks/), vLLM's own default (1) on larger ones."""
    gpu_memory_utilization: float | None = Field(default=0.25, gt=0, le=1)
    """On CPU vLLM reads this as the fraction of RAM it may use: 0.25 lets two servers share 24 GiB."""
    enforce_eager: bool = True
    """``--enforce-eager``: skips torch.compile warm-up, about half the startup time on CPU."""
    preload: bool = True
    """``LD_PRELOAD`` tcmalloc and Intel OpenMP, as vLLM's CPU image does in a pod, when this machine has both
    (``apt-get install libtcmalloc-minimal4``; vllm-cpu brings libiomp5): 0.98-1.22x texts/s in benchmarks/.
    A ``local.env`` ``LD_PRELOAD`` wins."""
    extra_args: tuple[str, ...] = ()
    """More vLLM flags for the local target only, appended after the composed container's (vLLM keeps the last
    value of a repeated flag)."""
    env: dict[str, str] = Field(default_factory=dict)
    """More environment variables for the local server only (a secret such as ``HF_TOKEN`` may go here: it is
    never rendered into manifests)."""
    startup_timeout_s: float = Field(default=600, gt=0)
    """How long ``deploy`` and ``wait`` wait on the local target when ``--timeout`` is not given (seconds)."""
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
    """Seconds between two probes (``periodSeconds``)."""
    timeout_s: int | None = Field(default=None, ge=1)
    """Seconds one probe may take (``timeoutSeconds``)."""
    failure_threshold: int | None = Field(default=None, ge=1)
    """Failed probes in a row before the probe fails (``failureThreshold``)."""
    initial_delay_s: int | None = Field(default=None, ge=0)
    """Seconds after the container starts before the first probe (``initialDelaySeconds``)."""


class ProbesConfig(_Strict):
    """The runtime container's probes.

    Defaults: startup every 10 s x 180 (30 min for a first download), readiness every 10 s x 3, liveness
    every 30 s x 5 (timeout 10 s). The local target runs them too.
    """

    startup: ProbeConfig = Field(default_factory=ProbeConfig)
    """Holds readiness and liveness back until vLLM first answers (default: every 10 s, 180 times: 30 min for a
    first download)."""
    readiness: ProbeConfig = Field(default_factory=ProbeConfig)
    """Takes the pod out of the Service while ``/health`` fails (default: every 10 s, timeout 5 s, 3 failures)."""
    liveness: ProbeConfig = Field(default_factory=ProbeConfig)
    """Restarts a hung server (default: every 30 s, timeout 10 s, 5 failures)."""


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
    """The HardwareProfile's name."""
    namespace: str | None = None
    """Default: ``dashboard.templates_namespace`` (the dashboard namespace, where global profiles live)."""


def _profile_ref(v: Any) -> Any:
    return {"name": v} if isinstance(v, str) else v


class DisruptionBudget(_Strict):
    """A PodDisruptionBudget for the model's pods (rendered when ``replicas`` > 1). Set one of the two."""

    max_unavailable: int | str | None = None
    """Pods a voluntary disruption (a node drain) may take down at once: a count or a percentage such as ``"25%"``."""
    min_available: int | str | None = None
    """Pods that must stay up during a voluntary disruption: a count or a percentage."""


class MonitoringSpec(_Strict):
    """Prometheus scraping of vLLM's ``/metrics`` (OpenShift user-workload monitoring, prometheus-operator)."""

    enabled: bool = False
    """Render a PodMonitor ``<model>-vllm`` per model and KServe's metrics annotations (OpenShift AI's own
    ServiceMonitor already scrapes raw InferenceServices: leave this off there unless you want both)."""


class HelmSpec(_Strict):
    """Settings of the Helm chart (``charts/poolserve``) only: poolserve itself ignores them."""

    create_namespace: bool = False
    """Render the Namespace with the dashboard labels (kept on ``helm uninstall``). Off by default: the
    namespace usually exists already (with the cache PVC in it); ``poolserve render`` always renders it."""
    test_image: str | None = None
    """Image of the ``helm test`` pods (they run its ``python``); default: the model's vLLM image, which the
    nodes serving the model have pulled already."""


class RuntimeConfig(_Strict):
    """One ServingRuntime (in ``per-model`` mode: the pattern each model's runtime is made from).

    ``dtype``, ``gpu_memory_utilization``, ``accelerator`` and ``enforce_eager`` default per
    ``device`` (:data:`GPU_DEFAULTS`, :data:`CPU_DEFAULTS`); a key set in the config always wins.
    """

    name: str
    """The ServingRuntime's name (in ``per-model`` mode each model's runtime is named like the model)."""
    display_name: str | None = None
    """What the dashboard's runtime column shows; null: "vLLM Embedding Runtime", "vLLM Reranker Runtime" (with
    "CPU" for ``device: cpu``)."""
    task: TaskKey
    """``embed`` (embedding models) or ``score`` (cross-encoders, rerankers): models without ``runtime:`` use the
    runtime of their task."""
    device: Device = "gpu"
    """``gpu``, or ``cpu``: vLLM's CPU image for the same release, no GPUs, and CPU defaults for ``dtype``,
    ``gpu_memory_utilization``, ``accelerator`` and ``enforce_eager``."""
    image: str | None = None
    """The runtime's image; null: the top-level ``image`` (for ``device: cpu``:
    ``vllm/vllm-openai-cpu:v<version>-x86_64``)."""
    vllm_version: str | None = None
    """The vLLM version of ``image`` when its tag does not say; null: read from the tag (else the top-level
    ``vllm_version``)."""
    model_format: str = "huggingface"
    """The ``modelFormat`` of the runtime and its InferenceServices. ``huggingface`` keeps KServe's model-agent
    sidecar away from models without a storage URI."""
    dtype: str | None = "float16"
    """vLLM's ``--dtype`` (default float16 on GPUs, float32 with ``device: cpu``; null: vLLM's own default).
    ``bfloat16`` with ``device: cpu`` schedules the pods only on nodes Node Feature Discovery labels with
    AMX-BF16 or AVX512-BF16 (a required node affinity), where it is the faster choice."""
    gpu_memory_utilization: float | None = Field(default=0.3, gt=0, le=1)
    """vLLM's ``--gpu-memory-utilization`` (default 0.3 on GPUs; 0.5 with ``device: cpu``, where it is a share of
    the pod's memory limit). A startup check, not a share of the GPU: see ``poolserve plan``."""
    accelerator: str | None = "nvidia.com/gpu"
    """The resource name a model's ``gpus`` are requested as, and the dashboard's recommended accelerator
    (``device: cpu``: none)."""
    enforce_eager: bool = False
    """vLLM's ``--enforce-eager``: no CUDA graphs or torch.compile (default on with ``device: cpu``)."""
    exclusive_cpus: bool = False
    """``device: cpu`` on nodes that give Guaranteed pods whole CPUs of their own (kubelet ``cpuManagerPolicy:
    static``, e.g. an OpenShift performance profile): vLLM then pins one thread to each of the pod's CPUs
    (``VLLM_CPU_OMP_THREADS_BIND=auto``, no CPU reserved): 1.01-1.20x the default's texts/s on 2 CPUs in
    benchmarks/results/cpu-sweep, and no multi-second stalls. Its models need CPU requests equal to limits in
    whole CPUs, and memory requests equal to limits (lint): elsewhere the pod's CPU set is the whole node's,
    and vLLM would pin a thread to every node CPU."""
    node_selector: dict[str, str] | None = None
    """Pod node selector on the ServingRuntime (KServe merges it into every model's pod; a model's own
    ``node_selector`` keys win). null: ``kubernetes.io/arch: amd64`` for ``device: cpu``, none for GPUs."""
    tolerations: tuple[Toleration, ...] = ()
    """Pod tolerations for every model on this runtime, e.g. for a tainted CPU pool."""
    extra_args: tuple[str, ...] = ()
    """More vLLM flags for every model on this runtime; lint checks them against the image's vLLM version."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables of the runtime container. A secret-looking name (``HF_TOKEN``, ``*_API_KEY``,
    ``*PASSWORD*``) is refused, since its value would be rendered: use ``cache.hf_token_secret``, or
    ``local.env`` for the local target."""
    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    """The container's HTTP ``/health`` probes (the local target runs them too)."""

    def setting(self, key: str) -> Any:
        """A device-dependent setting: the config's value when set, else the device's default."""
        if key in self.model_fields_set:
            return getattr(self, key)
        return (CPU_DEFAULTS if self.device == "cpu" else GPU_DEFAULTS)[key]


class ModelDefaults(_Strict):
    """Per-model settings that a ``defaults:`` block may set for every model."""

    resources: Resources | None = None
    """Container requests and limits; a model's are merged key by key over ``defaults:``."""
    gpus: int | None = Field(default=None, ge=0)
    """GPUs per pod, requested and limited as the runtime's ``accelerator`` (default 0; models on a
    ``device: cpu`` runtime take none)."""
    replicas: int | None = Field(default=None, ge=1)
    """Pods (KServe's ``minReplicas``; default 1)."""
    max_replicas: int | None = Field(default=None, ge=1)
    """The most pods autoscaling may run (``maxReplicas``); default: ``replicas`` (a fixed count)."""
    node_selector: dict[str, str] | None = None
    """Pod node selector; a model's replaces ``defaults:``'s (``{}`` clears it). Not with a hardware profile."""
    tolerations: tuple[Toleration, ...] | None = None
    """Pod tolerations (``[{key, operator, value, effect, toleration_seconds}]``); a model's replace
    ``defaults:``'s (``[]`` clears them). Not with a hardware profile."""
    expose: bool | None = None
    """Expose the model outside the cluster: an OpenShift Route (label ``networking.kserve.io/visibility:
    exposed``), token auth on by default (default false)."""
    auth: bool | None = None
    """Token auth through kube-rbac-proxy, with the ServiceAccount, Role, RoleBinding and token Secret the
    dashboard would create; default: on when exposed."""
    env: dict[str, str] | None = None
    """Environment variables of the model's container; a model's are merged key by key over ``defaults:``.
    Secret-looking names are refused (see ``runtimes[].env``)."""
    extra_args: tuple[str, ...] | None = None
    """More vLLM flags for the model (after the runtime's); a model's replace ``defaults:``'s."""
    mig_profile: str | None = None
    """A MIG slice instead of whole GPUs, e.g. ``1g.10gb``: requests ``nvidia.com/mig-<profile>`` (the GPU
    operator's ``mixed`` strategy) ``gpus`` times (once when ``gpus`` is unset)."""
    gpu_memory_gib: float | None = Field(default=None, gt=0, le=4096)
    """Memory of the GPU model the pods get (for ``poolserve plan`` and lint; a MIG slice's comes from
    its profile name)."""
    gpu_shared: bool | None = None
    """The GPU is time-sliced between pods (the device plugin's ``replicas``): memory is not isolated."""
    autoscaling: AutoscalingSpec | None = None
    """``{metric: cpu|memory|queue, target: N}``: let KServe scale between ``replicas`` and ``max_replicas``
    (null on a model opts out of ``defaults:``)."""
    # A bare name is the short form of {name: NAME}; the JSON schema (the Helm chart's) says both are accepted.
    hardware_profile: Annotated[HardwareProfileRef | None, BeforeValidator(
        _profile_ref, json_schema_input_type=str | HardwareProfileRef | None)] = None
    """An OpenShift AI hardware profile, ``NAME`` or ``{name, namespace}``: written as annotations, and it then
    owns the node selector and tolerations (null on a model opts out of ``defaults:``)."""
    image_pull_secrets: tuple[str, ...] | None = None
    """Secret names for pulling a private runtime image or ``oci://`` modelcar."""
    disruption_budget: DisruptionBudget | None = None
    """A PodDisruptionBudget ``<model>-predictor``, rendered when ``replicas`` > 1 (null on a model opts out of
    ``defaults:``)."""
    deployment_strategy: Literal["Recreate", "RollingUpdate"] | None = None
    """How the predictor rolls out; null: ``Recreate`` with a ReadWriteOnce(Pod) cache (a rolling update's surge
    pod cannot attach it on another node), else KServe's ``RollingUpdate``."""


class ModelConfig(ModelDefaults):
    """One InferenceService."""

    name: str
    """The InferenceService's name (lowercase letters, digits and '-'; at most 48 characters, and name +
    namespace at most 52, for KServe's raw mode). Also the model's second served name."""
    model_id: str
    """The Hugging Face model id vLLM serves (its first served name); the catalog's defaults apply when known."""
    display_name: str | None = None
    """The name the dashboard shows; null: ``<model> (vLLM)``."""
    task: TaskKey | None = None
    """``embed`` or ``score``; null: the catalog's (else ``embed``)."""
    runtime: str | None = None
    """The runtime's name; null: the runtime of the model's task."""
    max_model_len: int | None = Field(default=None, gt=0, le=1_048_576)
    """vLLM's ``--max-model-len``; null: the catalog's limit. Above the model's real limit vLLM refuses to
    start, so a larger value is a config error."""
    dtype: str | None = None
    """Overrides the runtime's ``dtype`` for this model (appended to the model's args)."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    """Overrides the runtime's ``gpu_memory_utilization`` for this model."""
    image: str | None = None
    """The model container's image, overriding the runtime's (its tag must name the vLLM version)."""
    trust_remote_code: bool | None = None
    """vLLM's ``--trust-remote-code``, for models with custom code; null: the catalog's."""
    hf_overrides: dict[str, Any] | None = None
    """vLLM's ``--hf-overrides`` JSON object (e.g. Qwen3-Reranker's); null: the catalog's."""
    pooler_config: dict[str, Any] | None = None
    """vLLM's pooler config (``--pooler-config``, ``--override-pooler-config`` before 0.11), e.g.
    ``{pooling_type: MEAN, use_activation: true}``."""
    convert: Literal["embed", "classify"] | None = None
    """vLLM's ``--convert`` (vLLM >= 0.10.1): serve a model of another architecture as an embedder or
    classifier; null: the catalog's."""
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
    """The existing namespace (OpenShift AI project) the models run in. The Helm chart uses the release
    namespace instead."""
    image: str = DEFAULT_IMAGE
    """The vLLM image of every runtime, pinned: the flags are rendered for its vLLM version (read from the tag)."""
    vllm_version: str | None = None
    """The version of ``image`` when its tag does not name one (a digest, ``latest``)."""
    runtime_mode: Literal["shared", "per-model"] = "shared"
    """``shared``: the runtimes listed here, shared by their models; ``per-model``: one runtime per model, named
    like it, as the dashboard makes them (its Delete then removes only that model's runtime)."""
    cache: CacheSpec = Field(default_factory=CacheSpec)
    """The model-cache PVC every runtime mounts."""
    dashboard: DashboardSpec = Field(default_factory=DashboardSpec)
    """How the models appear in the OpenShift AI dashboard."""
    local: LocalSpec = Field(default_factory=LocalSpec)
    """The local target's settings; never rendered for the cluster."""
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    """Prometheus scraping of vLLM's metrics."""
    helm: HelmSpec = Field(default_factory=HelmSpec)
    """The Helm chart's own settings; poolserve ignores them."""
    defaults: ModelDefaults = Field(default_factory=ModelDefaults)
    """Settings for every model, below each model's own keys."""
    runtimes: tuple[RuntimeConfig, ...] = Field(min_length=1)
    """The ServingRuntimes, one per task (embed, score) or more; required."""
    models: tuple[ModelConfig, ...] = Field(min_length=1)
    """The InferenceServices; required."""
