"""KServe objects for vLLM pooling models, and KServe's own composition of them (pure).

:func:`serving_runtime` and :func:`inference_service` build the manifests; :func:`compose` does
what the KServe controller does with them (runtime container + InferenceService overlay,
``{{.Name}}`` templating, pod-level volumes), so ``lint``/``explain`` and the local target see
exactly the container a cluster would run. Merge rules: kserve v0.20
``pkg/controller/v1beta1/inferenceservice/utils/utils.go`` (MergeServingRuntimeAndInferenceServiceSpecs,
ReplacePlaceholders) and ``pkg/utils/container_merge.go``; summarised in LESSONS_LEARNED.md.
"""

from __future__ import annotations

import copy
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from poolserve.config import storage
from poolserve.config.resolve import Model, Runtime
from poolserve.config.schema import HPA_METRICS, PoolSpec, Toleration
from poolserve.config.versions import format_version
from poolserve.errors import LintError
from poolserve.vllm import args as vllm

Manifest = dict[str, Any]

GROUP = "serving.kserve.io"
SR_API_VERSION = f"{GROUP}/v1alpha1"
ISVC_API_VERSION = f"{GROUP}/v1beta1"
SR_KIND = "ServingRuntime"
ISVC_KIND = "InferenceService"
SR_PLURAL = "servingruntimes"
ISVC_PLURAL = "inferenceservices"
CONTAINER_NAME = "kserve-container"  # the controller fails with InvalidSpec without it
TEMPLATE_API_VERSION = "template.openshift.io/v1"
TEMPLATE_KIND = "Template"

# OpenShift AI dashboard keys (odh-dashboard; see LESSONS_LEARNED.md "Dashboard").
DASHBOARD_LABEL = "opendatahub.io/dashboard"
DISPLAY_NAME = "openshift.io/display-name"
TEMPLATE_DISPLAY_NAME = "opendatahub.io/template-display-name"
TEMPLATE_NAME = "opendatahub.io/template-name"
RUNTIME_SCOPE = "opendatahub.io/serving-runtime-scope"
API_PROTOCOL = "opendatahub.io/apiProtocol"
RUNTIME_VERSION = "opendatahub.io/runtime-version"
RECOMMENDED_ACCELERATORS = "opendatahub.io/recommended-accelerators"
KSERVE_RUNTIME = "opendatahub.io/kserve-runtime"
ENABLE_AUTH = "security.opendatahub.io/enable-auth"
VISIBILITY = "networking.kserve.io/visibility"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
STOP_ANNOTATION = "serving.kserve.io/stop"
"""KServe deletes a stopped InferenceService's workload (constants.StopAnnotationKey); the dashboard's
Stop/Start buttons set it to "true"/"false" (odh-dashboard ``patchDeploymentStoppedStatus``)."""
MODELMESH_ENABLED = "modelmesh-enabled"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
"""Set by KServe on an InferenceService's predictor Deployment, pods and Service; the value is its name."""
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"  # hpa (default) | keda | external | none
HARDWARE_PROFILE_NAME = "opendatahub.io/hardware-profile-name"
HARDWARE_PROFILE_NAMESPACE = "opendatahub.io/hardware-profile-namespace"
# KServe's metrics annotations (pkg/constants): where kserve-container serves Prometheus metrics, and the
# pod mutator's switch that, when "true", rewrites prometheus.io/port to queue-proxy's 9091: a port raw
# mode's pods do not have (metrics_aggregate_injector.go InjectMetricsAggregator).
KSERVE_PROMETHEUS_PORT = "prometheus.kserve.io/port"
KSERVE_PROMETHEUS_PATH = "prometheus.kserve.io/path"
ENABLE_PROMETHEUS_SCRAPING = "serving.kserve.io/enable-prometheus-scraping"
MONITORING_API_VERSION = "monitoring.coreos.com/v1"

TMP_HOME = "/tmp/home"
TMP_CACHE = "/tmp/cache"
SHM_SIZE = "2Gi"


def is_stopped(obj: Mapping[str, Any] | None) -> bool:
    """KServe's ``GetForceStopRuntime``: the stop annotation is ``true``, in any case (v0.20 pkg/utils/utils.go)."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(STOP_ANNOTATION, "")).lower() == "true"


def _labels() -> dict[str, str]:
    return {DASHBOARD_LABEL: "true", "app.kubernetes.io/managed-by": "poolserve"}


def _managed() -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "poolserve"}


def runtime_env(spec: PoolSpec, runtime: Runtime) -> list[dict[str, Any]]:
    """Env of the runtime container: writable caches for OpenShift's arbitrary UIDs, the HF cache, no telemetry."""
    env: list[dict[str, Any]] = [
        # OpenShift runs the pod as a random UID with no writable HOME: point every cache at emptyDirs.
        {"name": "HOME", "value": TMP_HOME},
        # torch inductor calls getpass.getuser(); without USER it raises KeyError for UIDs missing
        # from /etc/passwd (vLLM >= 0.20, vllm-project/vllm#44548).
        {"name": "USER", "value": "vllm"},
        {"name": "XDG_CACHE_HOME", "value": TMP_CACHE},
        {"name": "XDG_CONFIG_HOME", "value": f"{TMP_HOME}/.config"},
        {"name": "VLLM_CACHE_ROOT", "value": f"{TMP_CACHE}/vllm"},
        {"name": "VLLM_CONFIG_ROOT", "value": f"{TMP_HOME}/.config/vllm"},
        {"name": "TRITON_CACHE_DIR", "value": f"{TMP_CACHE}/triton"},
        {"name": "TORCHINDUCTOR_CACHE_DIR", "value": f"{TMP_CACHE}/torchinductor"},
        {"name": "HF_HOME", "value": spec.cache.hf_home},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
    ]
    if spec.cache.offline:
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    if spec.cache.hf_token_secret is not None:
        ref = spec.cache.hf_token_secret
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    if runtime.device == "cpu":
        env.extend(cpu_env())
    # The runtime's own env wins over these defaults: merged by name like KServe merges env.
    return _merge_env(env, [{"name": name, "value": value} for name, value in runtime.env])


def cpu_env() -> list[dict[str, Any]]:
    """Threads for vLLM's CPU backend: as many as the container's CPU limit, not pinned.

    vLLM's default (``VLLM_CPU_OMP_THREADS_BIND=auto``) starts one OpenMP thread per physical core the
    process may run on and pins them there (``utils/ompmultiprocessing.py``). A pod without the static
    CPU manager policy may run on every core of the node while its CFS quota allows only its CPU limit,
    so that would be dozens of pinned threads sharing a few CPUs' time. ``nobind`` leaves the threads
    to the scheduler, and ``OMP_NUM_THREADS`` comes from the container's own ``limits.cpu`` (Downward
    API, rounded up to whole CPUs), so the thread count follows the pod's size.
    """
    return [
        {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"},
        {"name": "OMP_NUM_THREADS", "valueFrom": {"resourceFieldRef": {
            "containerName": CONTAINER_NAME, "resource": "limits.cpu", "divisor": "1"}}},
    ]


PROBE_DEFAULTS: Mapping[str, tuple[int, int, int]] = {
    # kind: (periodSeconds, timeoutSeconds, failureThreshold). Model loads (and first-time downloads) are
    # slow: the startup probe allows 30 minutes, and liveness/readiness only start once it has passed.
    "startup": (10, 5, 180),
    "readiness": (10, 5, 3),
    "liveness": (30, 10, 5),
}


def _probe(runtime: Runtime, kind: str) -> dict[str, Any]:
    cfg = getattr(runtime.probes, kind)
    period, timeout, failures = PROBE_DEFAULTS[kind]
    probe: dict[str, Any] = {
        "httpGet": {"path": "/health", "port": vllm.PORT, "scheme": "HTTP"},
        "periodSeconds": cfg.period_s or period,
        "timeoutSeconds": cfg.timeout_s or timeout,
        "failureThreshold": cfg.failure_threshold or failures,
    }
    if cfg.initial_delay_s:
        probe["initialDelaySeconds"] = cfg.initial_delay_s
    return probe


def serving_runtime(spec: PoolSpec, runtime: Runtime, *, hardware_profile: tuple[str, str] | None = None) -> Manifest:
    """The ServingRuntime for ``runtime``: vLLM's OpenAI server on 8080 with the shared cache PVC.

    ``hardware_profile`` (name, namespace): the profile every model on this runtime uses; the 2.x
    dashboard reads it from the runtime (3.x from the InferenceService).
    """
    annotations = {
        DISPLAY_NAME: runtime.display_name,
        # What the dashboard's "Serving runtime" column shows; without it: "Unknown Serving Runtime".
        TEMPLATE_DISPLAY_NAME: runtime.display_name,
        API_PROTOCOL: "REST",
        RUNTIME_VERSION: f"v{format_version(runtime.vllm_version)}",
    }
    if spec.dashboard.templates:
        # Only with a Template behind it: a dangling template-name shows "Template removed" (3.5+).
        # objects[0].metadata.name: the one name every dashboard version matches (see template()).
        annotations[TEMPLATE_NAME] = runtime.pattern
        # "global": the Template lives in the dashboard namespace; "project": in the model's own.
        annotations[RUNTIME_SCOPE] = template_scope(spec)
    if runtime.accelerator:
        annotations[RECOMMENDED_ACCELERATORS] = json.dumps([runtime.accelerator])
    if hardware_profile is not None:
        annotations[HARDWARE_PROFILE_NAME], annotations[HARDWARE_PROFILE_NAMESPACE] = hardware_profile
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": runtime.image,
        "command": vllm.command(runtime.vllm_version),
        "args": vllm.runtime_args(runtime),
        "env": runtime_env(spec, runtime),
        "ports": [{"containerPort": vllm.PORT, "name": "http", "protocol": "TCP"}],
        "startupProbe": _probe(runtime, "startup"),
        "readinessProbe": _probe(runtime, "readiness"),
        "livenessProbe": _probe(runtime, "liveness"),
        # KServe copies the termination message into modelStatus.lastFailureInfo: with this policy
        # a crash shows vLLM's last log lines there (and in `poolserve status`).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "model-cache", "mountPath": spec.cache.mount_path},
            {"name": "tmp-home", "mountPath": TMP_HOME},
            {"name": "tmp-cache", "mountPath": TMP_CACHE},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }
    pod: dict[str, Any] = {}
    if runtime.node_selector:
        pod["nodeSelector"] = dict(runtime.node_selector)
    if runtime.tolerations:
        pod["tolerations"] = tolerations(runtime.tolerations)
    return {
        "apiVersion": SR_API_VERSION,
        "kind": SR_KIND,
        "metadata": {
            "name": runtime.name,
            "namespace": spec.namespace,
            "labels": _labels(),
            "annotations": annotations,
        },
        "spec": {
            **pod,
            # spec.annotations reach the pods: metrics scraping and the dashboard's vLLM metrics page.
            "annotations": {
                KSERVE_RUNTIME: "vllm",
                "prometheus.io/port": str(vllm.PORT),
                "prometheus.io/path": "/metrics",
            },
            "multiModel": False,
            # autoSelect is off: every InferenceService names its runtime (the dashboard needs that
            # anyway), and two auto-selectable runtimes with one format would clash in the webhook.
            "supportedModelFormats": [{"name": runtime.model_format, "autoSelect": False}],
            "containers": [container],
            "volumes": [
                {"name": "model-cache", "persistentVolumeClaim": {"claimName": spec.cache.pvc}},
                {"name": "tmp-home", "emptyDir": {}},
                {"name": "tmp-cache", "emptyDir": {}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
            ],
        },
    }


def _quantity(v: str | int | float) -> str:
    # A whole float is written as an integer (2.0 -> "2"): Helm reads every number as a float and cannot
    # tell them apart, and Kubernetes takes both to mean the same quantity.
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def model_resources(model: Model) -> dict[str, Any]:
    """Container resources of the model, with ``gpus`` as ``nvidia.com/gpu`` (or the runtime's accelerator)."""
    requests = {k: _quantity(v) for k, v in model.resources.requests.items()}
    limits = {k: _quantity(v) for k, v in model.resources.limits.items()}
    key = model.gpu_resource
    if key is not None:
        requests[key] = str(model.gpu_count)
        limits[key] = str(model.gpu_count)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def inference_service(spec: PoolSpec, model: Model) -> Manifest:
    """The InferenceService for ``model`` (RawDeployment, runtime named, dashboard-visible)."""
    labels = _labels()
    if model.expose:
        labels[VISIBILITY] = "exposed"  # odh-model-controller then creates a Route
    predictor: dict[str, Any] = {"minReplicas": model.replicas, "maxReplicas": model.max_replicas}
    scaling = _scaling(model, predictor)
    if model.deployment_strategy:
        predictor["deploymentStrategy"] = {"type": model.deployment_strategy}
    if model.image_pull_secrets:
        predictor["imagePullSecrets"] = [{"name": n} for n in model.image_pull_secrets]
    if model.node_selector:
        predictor["nodeSelector"] = dict(model.node_selector)
    if model.tolerations:
        predictor["tolerations"] = tolerations(model.tolerations)
    model_spec: dict[str, Any] = {
        "modelFormat": {"name": model.runtime.model_format},
        # Mandatory for the dashboard: without it the runtime column says "Unknown".
        "runtime": model.runtime.name,
    }
    command = vllm.model_command(model)
    if command is not None:
        # `vllm serve` takes the model first: the InferenceService's command replaces the runtime's.
        model_spec["command"] = command
    model_spec["args"] = vllm.model_args(model)
    if model.image:
        model_spec["image"] = model.image
    if model.env:
        model_spec["env"] = [{"name": k, "value": v} for k, v in model.env]
    resources = model_resources(model)
    if resources:
        model_spec["resources"] = resources
    if model.storage_uri is not None:
        # KServe mounts or downloads the model to /mnt/models (vllm.model_args points --model there).
        model_spec["storageUri"] = model.storage_uri.uri
        if model.data_connection:
            # The storage initializer reads this entry of the `storage-config` Secret, which
            # odh-model-controller builds from the namespace's data connections (secret_controller.go):
            # a reference, never a credential.
            model_spec["storage"] = {"key": model.data_connection}
    predictor["model"] = model_spec
    annotations = {
        DISPLAY_NAME: model.display_name,
        # RawDeployment works on every KServe; >= 0.17 rewrites it to its new name "Standard".
        DEPLOYMENT_MODE: "RawDeployment",
        # Always explicit: the 3.x dashboard treats a missing value as "auth on".
        ENABLE_AUTH: "true" if model.auth else "false",
    }
    if model.stopped:
        # Only when stopped: a running model's manifest stays as it was before stop/start existed.
        annotations[STOP_ANNOTATION] = "true"
    annotations.update(scaling)
    if model.hardware_profile is not None:
        # OpenShift AI 3.x: the dashboard shows and edits the profile from these; its webhook fills in the
        # profile's node selector and tolerations, and resources the model leaves unset.
        annotations[HARDWARE_PROFILE_NAME], annotations[HARDWARE_PROFILE_NAMESPACE] = model.hardware_profile
    if spec.monitoring.enabled:
        annotations.update(monitoring_annotations())
    return {
        "apiVersion": ISVC_API_VERSION,
        "kind": ISVC_KIND,
        "metadata": {
            "name": model.name,
            "namespace": model.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def tolerations(items: Sequence[Toleration]) -> list[dict[str, Any]]:
    """Tolerations as the PodSpec spells them (camelCase keys)."""
    return [{_camel(k): v for k, v in t.model_dump(exclude_none=True).items()} for t in items]


def queue_query(model: Model) -> str:
    """PromQL for the requests in flight (running + waiting) on the model's predictor pods.

    For a pooling model vLLM schedules and finishes a request within one engine step, so right after each
    step, when the gauges are set, ``running`` is about 0 and ``waiting`` holds the load (measured on vLLM
    0.32: 0 running and up to 999 waiting under 1024 queued texts; each text of a batched request counts).
    The sum still counts a request that spans steps (a chunked long input), which ``waiting`` alone would
    drop while the server is busy. ``max by (pod, engine)`` before the sum: on OpenShift AI
    odh-model-controller's ServiceMonitor ``<isvc>-metrics`` may scrape the same pods as poolserve's
    PodMonitor; duplicated series must not double the count. Pod names are
    ``<isvc>-predictor-<replicaset hash>-<suffix>``.
    """
    sel = f'namespace="{model.namespace}",pod=~"{model.name}-predictor-[a-z0-9]+-[a-z0-9]+"'
    return (f"sum(max by (pod, engine) (vllm:num_requests_running{{{sel}}} + "
            f"vllm:num_requests_waiting{{{sel}}}))")


def _scaling(model: Model, predictor: dict[str, Any]) -> dict[str, str]:
    """Autoscaler fields on ``predictor``; returns the annotations they need.

    Without ``autoscaling`` nothing is rendered and KServe's default applies: class ``hpa``, CPU at 80 %
    between minReplicas and maxReplicas (pinned, so inert, when they are equal).
    """
    a = model.autoscaling
    if a is None:
        return {}
    if a.metric in HPA_METRICS:
        # KServe's raw-mode HPA (hpa_reconciler.go getHPAMetrics): utilisation of the container's request.
        predictor["scaleMetric"] = a.metric
        predictor["scaleTarget"] = a.target
        return {AUTOSCALER_CLASS: "hpa"}
    external: dict[str, Any] = {
        "metric": {"backend": "prometheus", "serverAddress": a.prometheus_url, "query": queue_query(model),
                   # The Thanos querier's tenancy port only answers queries scoped to a namespace.
                   "namespace": model.namespace},
        # KServe passes `value` to KEDA as the trigger's threshold; KEDA's default metricType AverageValue
        # divides the query's total by it: the target is requests in flight per replica.
        "target": {"type": "Value", "value": str(a.target)},
    }
    if a.authentication:
        external["authenticationRef"] = {"authModes": "bearer", "authenticationRef": {"name": a.authentication}}
    predictor["autoScaling"] = {"metrics": [{"type": "External", "external": external}]}
    return {AUTOSCALER_CLASS: "keda"}


HPA_API_VERSION = "autoscaling/v2"
KEDA_API_VERSION = "keda.sh/v1alpha1"


def stale_autoscaler(isvc: Manifest) -> tuple[str, str, str]:
    """(apiVersion, kind, name) of the autoscaler KServe leaves behind when ``isvc``'s class changes.

    KServe v0.20 names both ``<isvc>-predictor``. Its KEDA reconciler never removes the HPA an earlier
    class made, and nothing removes a ScaledObject once the class leaves ``keda``
    (``reconcilers/keda/keda_reconciler.go``, ``reconcilers/hpa/hpa_reconciler.go shouldDeleteHPA``): two
    autoscalers then fight over the Deployment's replicas (KEDA's admission webhook also refuses a
    ScaledObject for a Deployment an HPA already scales).
    """
    name = f"{isvc['metadata']['name']}-predictor"
    if (isvc["metadata"].get("annotations") or {}).get(AUTOSCALER_CLASS) == "keda":
        return HPA_API_VERSION, "HorizontalPodAutoscaler", name
    return KEDA_API_VERSION, "ScaledObject", name


def monitoring_annotations() -> dict[str, str]:
    """Prometheus annotations for the predictor pods (they reach the pods through KServe's buildObjectMeta)."""
    return {
        "prometheus.io/scrape": "true",
        KSERVE_PROMETHEUS_PORT: str(vllm.PORT),
        KSERVE_PROMETHEUS_PATH: "/metrics",
        # Keep the runtime's prometheus.io/port 8080: "true" here points it at queue-proxy, absent in raw mode.
        ENABLE_PROMETHEUS_SCRAPING: "false",
    }


def _predictor_selector(model: Model) -> dict[str, Any]:
    # KServe's labels on every predictor pod (components/predictor.go buildObjectMeta).
    return {"matchLabels": {ISVC_LABEL: model.name, "component": "predictor"}}


def pod_monitor(model: Model) -> Manifest:
    """A PodMonitor scraping vLLM's ``/metrics`` on the model's predictor pods.

    A PodMonitor rather than a ServiceMonitor: OpenShift AI replaces the predictor Service's port with
    kube-rbac-proxy's 8443 when token auth is on, while the pods always serve metrics on the
    container port ``http`` (8080).
    """
    return {
        "apiVersion": MONITORING_API_VERSION,
        "kind": "PodMonitor",
        "metadata": {"name": f"{model.name}-vllm", "namespace": model.namespace, "labels": _managed()},
        "spec": {
            "selector": _predictor_selector(model),
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "scheme": "http"}],
        },
    }


def disruption_budget(model: Model) -> Manifest | None:
    """The model's PodDisruptionBudget, or None when none is configured or it has one replica."""
    pdb = model.disruption_budget
    if pdb is None or model.replicas <= 1:
        return None
    spec: dict[str, Any] = {"selector": _predictor_selector(model)}
    if pdb.min_available is not None:
        spec["minAvailable"] = pdb.min_available
    else:
        spec["maxUnavailable"] = 1 if pdb.max_unavailable is None else pdb.max_unavailable
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": f"{model.name}-predictor", "namespace": model.namespace, "labels": _managed()},
        "spec": spec,
    }


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


def namespace(spec: PoolSpec) -> Manifest:
    """The namespace's labels: a KServe (single-model) project the dashboard lists."""
    meta: dict[str, Any] = {
        "name": spec.namespace,
        "labels": {DASHBOARD_LABEL: "true", MODELMESH_ENABLED: "false"},
    }
    if spec.dashboard.namespace_display_name:
        meta["annotations"] = {DISPLAY_NAME: spec.dashboard.namespace_display_name}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def predictor_name(isvc: str) -> str:
    """``<isvc>-predictor``: the Deployment and Service KServe's raw mode creates for an InferenceService."""
    return f"{isvc}-predictor"


def token_secret_name(model_name: str) -> str:
    """``default-<model>-sa``: the token Secret of a model with ``auth`` (named as the dashboard names it)."""
    return f"default-{model_name}-sa"


def auth_objects(model: Model) -> list[Manifest]:
    """What the dashboard creates for token auth.

    A ServiceAccount, a Role to get the model, its binding, and a token Secret that Kubernetes fills
    in (no secret value is ever rendered).
    """
    sa = f"{model.name}-sa"
    ns = model.namespace
    labels = {DASHBOARD_LABEL: "true", "app.kubernetes.io/managed-by": "poolserve"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns, "labels": labels}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": f"{model.name}-view-role", "namespace": ns, "labels": labels},
            "rules": [{"apiGroups": [GROUP], "resources": [ISVC_PLURAL], "resourceNames": [model.name],
                       "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{model.name}-view", "namespace": ns, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{model.name}-view-role"},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": token_secret_name(model.name),
                "namespace": ns,
                "labels": labels,
                "annotations": {"kubernetes.io/service-account.name": sa, DISPLAY_NAME: "default"},
            },
        },
    ]


def template_scope(spec: PoolSpec) -> Literal["global", "project"]:
    """``project`` when the Templates go to the models' own namespace, else ``global`` (the dashboard's)."""
    if spec.dashboard.templates_scope == "project" or spec.dashboard.templates_namespace == spec.namespace:
        return "project"
    return "global"


def template_namespace(spec: PoolSpec) -> str:
    """Where the Templates go: the dashboard namespace (global scope) or the models' namespace (project)."""
    return spec.namespace if template_scope(spec) == "project" else spec.dashboard.templates_namespace


def template_name(spec: PoolSpec, runtime: Runtime) -> str:
    """The Template's own ``metadata.name`` for ``runtime``.

    The runtimes' ``opendatahub.io/template-name`` is the Template's ``objects[0].metadata.name``
    (``runtime.pattern``), the only name odh-dashboard <= 3.3 matches in the dashboard namespace. In the
    project the dashboard (3.6+, odh-dashboard#9322 ``useFetchTemplate``) GETs the Template *named*
    template-name, so a project-scoped Template is named exactly that.
    """
    return runtime.pattern if template_scope(spec) == "project" else f"{runtime.pattern}-template"


def template(spec: PoolSpec, runtime: Runtime, sr: Manifest) -> Manifest:
    """An OpenShift Template listing ``runtime`` under Settings -> Serving runtimes (and in the deploy wizard)."""
    obj = copy.deepcopy(sr)
    obj["metadata"].pop("namespace", None)
    obj["metadata"]["name"] = runtime.pattern
    # A model's hardware profile is no part of the runtime the dashboard offers for new deployments.
    for key in (TEMPLATE_NAME, TEMPLATE_DISPLAY_NAME, RUNTIME_SCOPE, HARDWARE_PROFILE_NAME, HARDWARE_PROFILE_NAMESPACE):
        obj["metadata"]["annotations"].pop(key, None)
    return {
        "apiVersion": TEMPLATE_API_VERSION,
        "kind": TEMPLATE_KIND,
        "metadata": {
            "name": template_name(spec, runtime),
            "namespace": template_namespace(spec),
            "labels": {DASHBOARD_LABEL: "true"},
            "annotations": {
                DISPLAY_NAME: runtime.display_name,
                "opendatahub.io/modelServingSupport": '["single"]',
                API_PROTOCOL: "REST",
            },
        },
        "objects": [obj],
        "parameters": [],
    }


# --------------------------------------------------------------------------------------------------
# Composition: what the KServe controller runs.


@dataclass(frozen=True)
class Composed:
    """The predictor pod KServe would build for one InferenceService: its main container and volumes."""

    isvc: str
    namespace: str
    runtime: str
    container: dict[str, Any]
    volumes: list[dict[str, Any]]

    @property
    def argv(self) -> list[str]:
        """``command + args`` of the composed container."""
        return [*self.container.get("command", []), *self.container.get("args", [])]

    @property
    def env(self) -> dict[str, str]:
        """Plain-value env of the container (``valueFrom`` entries are left out)."""
        return {e["name"]: e["value"] for e in self.container.get("env", []) if "value" in e}


def _merge_by_key(base: Sequence[Mapping[str, Any]], overlay: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    out = [copy.deepcopy(dict(b)) for b in base]
    for item in overlay:
        for existing in out:
            if existing.get(key) == item.get(key):
                merged = _deep_merge(existing, dict(item))
                existing.clear()
                existing.update(merged)
                break
        else:
            out.append(copy.deepcopy(dict(item)))
    return out


def _merge_env(base: Sequence[Mapping[str, Any]], overlay: Sequence[Mapping[str, Any]]) -> list[Any]:
    out = [copy.deepcopy(dict(b)) for b in base]
    for item in overlay:
        for existing in out:
            if existing["name"] == item["name"]:
                # v0.20 reconcileEnvValueConflicts: the overlay's kind (value or valueFrom) wins.
                existing.pop("value", None)
                existing.pop("valueFrom", None)
                existing.update(copy.deepcopy(dict(item)))
                break
        else:
            out.append(copy.deepcopy(dict(item)))
    return out


def _deep_merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for k, v in overlay.items():
            out[k] = _deep_merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(overlay)


def merge_containers(runtime_container: Mapping[str, Any], isvc_container: Mapping[str, Any]) -> dict[str, Any]:
    """KServe's MergeRuntimeContainers: the runtime container patched by the InferenceService's.

    args are concatenated (runtime first); command is replaced when the overlay sets one; env,
    ports and volumeMounts merge by name/containerPort/mountPath with the overlay winning;
    resources merge key by key; other objects merge field by field; scalars are replaced.
    """
    out = copy.deepcopy(dict(runtime_container))
    for key, value in isvc_container.items():
        if value in (None, [], {}, ""):
            continue  # omitempty: an unset overlay field keeps the runtime's value
        if key == "args":
            out["args"] = [*runtime_container.get("args", []), *value]
        elif key == "env":
            out["env"] = _merge_env(runtime_container.get("env", []), value)
        elif key == "ports":
            out["ports"] = _merge_by_key(runtime_container.get("ports", []), value, "containerPort")
        elif key == "volumeMounts":
            out["volumeMounts"] = _merge_by_key(runtime_container.get("volumeMounts", []), value, "mountPath")
        elif isinstance(value, dict):
            out[key] = _deep_merge(runtime_container.get(key) or {}, value)
        else:
            out[key] = copy.deepcopy(value)
    out["name"] = runtime_container.get("name", CONTAINER_NAME)
    return out


_PLACEHOLDER = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_INDEX = re.compile(r'^index\s+\.(Labels|Annotations)\s+"([^"]*)"$')


def _eval_placeholder(expr: str, meta: Mapping[str, Any], where: str) -> str:
    simple = {"Name": meta.get("name"), "Namespace": meta.get("namespace"), "UID": meta.get("uid"),
              "Generation": meta.get("generation"), "GenerateName": meta.get("generateName")}
    if expr.startswith(".") and expr[1:] in simple:
        value = simple[expr[1:]]
        return "" if value is None else str(value)
    m = _INDEX.match(expr)
    parts = expr.split(".", 2)
    if m:
        field, key = m.group(1), m.group(2)
    elif len(parts) == 3 and parts[0] == "" and parts[1] in ("Labels", "Annotations"):
        field, key = parts[1], parts[2]
    else:
        raise LintError(f"{where}: failed to replace placeholder {{{{{expr}}}}}: KServe templates only "
                        "ObjectMeta fields ({{.Name}}, {{.Namespace}}, {{.Labels.x}}, {{index .Annotations \"a/b\"}})")
    source = meta.get("labels" if field == "Labels" else "annotations") or {}
    return str(source.get(key, ""))


def substitute(text: str, meta: Mapping[str, Any], where: str = "container") -> str:
    """KServe's ReplacePlaceholders on one string.

    Go ``html/template`` over the InferenceService's ObjectMeta, so substituted values are HTML-escaped.

    Raises:
        LintError: for an expression KServe could not evaluate (the controller reports InvalidSpec).
    """
    return _PLACEHOLDER.sub(lambda m: html.escape(_eval_placeholder(m.group(1), meta, where), quote=True)
                            .replace("&#x27;", "&#39;").replace("&quot;", "&#34;").replace("+", "&#43;"), text)


def _substitute_all(value: Any, meta: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, str):
        return substitute(value, meta, where)
    if isinstance(value, list):
        return [_substitute_all(v, meta, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute_all(v, meta, where) for k, v in value.items()}
    return value


_SUFFIXES = {"m": 10**-3, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``4Gi``) as a number.

    Raises:
        ValueError: for a value that is not a quantity.
    """
    m = _QUANTITY.match(str(value).strip())
    if not m or (m.group(2) and m.group(2) not in _SUFFIXES):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(m.group(1)) * _SUFFIXES.get(m.group(2), 1)


def resource_field(container: Mapping[str, Any], ref: Mapping[str, Any], *, node_cpus: float,
                   node_memory_bytes: float) -> str:
    """The value the kubelet gives an env ``resourceFieldRef`` of ``container``.

    The resource divided by ``divisor`` and rounded up; an unset limit is the node's allocatable
    (Kubernetes ``pkg/api/v1/resource/helpers.go ExtractContainerResourceValue``, and the Downward API
    docs: "If CPU and memory limits are not specified for a container, the kubelet uses the node's
    allocatable").
    """
    kind, _, name = str(ref.get("resource", "")).partition(".")
    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    if kind == "limits":
        value = parse_quantity(limits[name]) if name in limits else (node_cpus if name == "cpu" else node_memory_bytes)
    else:  # an unset request defaults to the limit (API server defaulting), else 0
        value = parse_quantity(requests.get(name, limits.get(name, 0)))
    divisor = parse_quantity(ref.get("divisor", "1") or "1")
    return str(math.ceil(value / divisor - 1e-9))


def compose(sr: Manifest, isvc: Manifest) -> Composed:
    """What KServe runs for ``isvc`` on runtime ``sr``: merged, templated kserve-container and volumes.

    Raises:
        LintError: when the runtime has no ``kserve-container`` or a placeholder cannot be evaluated.
    """
    name = isvc["metadata"]["name"]
    where = f"{isvc['metadata'].get('namespace', '')}/{name}"
    containers = sr["spec"].get("containers", [])
    base = next((c for c in containers if c.get("name") == CONTAINER_NAME), None)
    if base is None:
        raise LintError(f"ServingRuntime {sr['metadata']['name']}: no container named {CONTAINER_NAME} "
                        "(KServe: 'failed to find kserve-container in ServingRuntime containers')")
    predictor = isvc["spec"]["predictor"]
    overlay = {k: v for k, v in predictor.get("model", {}).items()
               if k not in ("modelFormat", "runtime", "storageUri", "storage", "protocolVersion", "runtimeVersion")}
    merged = merge_containers(base, overlay)
    # v0.17+ injects INFERENCE_SERVICE_NAME into every container.
    merged["env"] = _merge_env(merged.get("env", []), [{"name": "INFERENCE_SERVICE_NAME", "value": name}])
    merged = _substitute_all(merged, isvc["metadata"], where)
    volumes = _merge_by_key(sr["spec"].get("volumes", []), predictor.get("volumes", []), "name")
    _inject_model_storage(isvc, merged, volumes)
    return Composed(isvc=name, namespace=isvc["metadata"].get("namespace", ""), runtime=sr["metadata"]["name"],
                    container=merged, volumes=volumes)


def _inject_model_storage(isvc: Manifest, container: dict[str, Any], volumes: list[dict[str, Any]]) -> None:
    """What KServe's pod mutating webhook adds to ``kserve-container`` for ``storageUri`` (v0.20).

    pvc://: the claim itself at /mnt/models, read-only, ``subPath`` = the path (``CommonStorageInitialization``);
    hf://, s3://: an emptyDir there, filled by the storage-initializer init container; oci://: an emptyDir
    at /mnt for the modelcar's symlink and ``MODEL_INIT_MODE=async`` (``ConfigureModelcarToContainer``).
    Like ``AddModelMount``, a mount is skipped only when one with the same volume *name* exists: a
    runtime volume at the same path stays, and the API server refuses the pod (lint reports it).
    """
    model = isvc["spec"]["predictor"].get("model", {})
    uri = model.get("storageUri")
    if not uri:
        return
    try:
        parsed = storage.parse(uri)
    except ValueError as err:
        raise LintError(f"{isvc['metadata'].get('namespace', '')}/{isvc['metadata']['name']}: storageUri: {err}") \
            from None
    annotations = isvc["metadata"].get("annotations") or {}
    read_only = annotations.get("storage.kserve.io/readonly") != "false"  # GetStorageInitializerReadOnlyFlag
    mount: dict[str, Any]
    if parsed.scheme == "oci":
        volume: dict[str, Any] = {"name": storage.MODELCAR_VOLUME, "emptyDir": {}}
        mount = {"name": storage.MODELCAR_VOLUME, "mountPath": storage.MODELCAR_DIR}
        container["env"] = _merge_env(container.get("env", []), [{"name": "MODEL_INIT_MODE", "value": "async"}])
    elif parsed.scheme == "pvc":
        volume = {"name": storage.PVC_VOLUME, "persistentVolumeClaim": {"claimName": parsed.location}}
        mount = {"name": storage.PVC_VOLUME, "mountPath": storage.MODEL_DIR}
        if parsed.path:
            mount["subPath"] = parsed.path
    else:
        volume = {"name": storage.DOWNLOAD_VOLUME, "emptyDir": {}}
        mount = {"name": storage.DOWNLOAD_VOLUME, "mountPath": storage.MODEL_DIR}
    if read_only and parsed.scheme != "oci":
        mount["readOnly"] = True
    mounts = container.setdefault("volumeMounts", [])
    if any(m.get("name") == mount["name"] for m in mounts):
        return
    mounts.append(mount)
    if not any(v.get("name") == volume["name"] for v in volumes):
        volumes.append(volume)
