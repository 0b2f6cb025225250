"""The KServe and OpenShift AI objects of a config (pure): Namespace, ServingRuntime, InferenceService, Template.

:func:`serving_runtime` is vLLM's OpenAI server as the runtime container; :func:`inference_service`
names the runtime and overlays the model's own args, resources and scheduling; :func:`template`
lists a runtime in the OpenShift AI dashboard. What is rendered beside an InferenceService is in
:mod:`poolserve.kserve.companions`, its replicas and autoscaler in :mod:`poolserve.kserve.scaling`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from poolserve.config.resolve import Model, Runtime
from poolserve.config.schema import PoolSpec, Toleration
from poolserve.config.versions import format_version
from poolserve.kserve.compose import merge_env
from poolserve.kserve.cpu import cpu_env, node_affinity
from poolserve.kserve.names import (
    API_PROTOCOL,
    CONTAINER_NAME,
    DASHBOARD_LABEL,
    DEPLOYMENT_MODE,
    DISPLAY_NAME,
    ENABLE_AUTH,
    ENABLE_PROMETHEUS_SCRAPING,
    HARDWARE_PROFILE_NAME,
    HARDWARE_PROFILE_NAMESPACE,
    ISVC_API_VERSION,
    ISVC_KIND,
    KSERVE_PROMETHEUS_PATH,
    KSERVE_PROMETHEUS_PORT,
    KSERVE_RUNTIME,
    MODELMESH_ENABLED,
    RECOMMENDED_ACCELERATORS,
    RUNTIME_SCOPE,
    RUNTIME_VERSION,
    SR_API_VERSION,
    SR_KIND,
    STOP_ANNOTATION,
    TEMPLATE_API_VERSION,
    TEMPLATE_DISPLAY_NAME,
    TEMPLATE_KIND,
    TEMPLATE_NAME,
    VISIBILITY,
    Manifest,
    dashboard_labels,
)
from poolserve.kserve.scaling import predictor_scaling
from poolserve.vllm import args as vllm

TMP_HOME = "/tmp/home"
TMP_CACHE = "/tmp/cache"
SHM_SIZE = "2Gi"


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
        env.extend(cpu_env(exclusive_cpus=runtime.exclusive_cpus))
    # The runtime's own env wins over these defaults: merged by name like KServe merges env.
    return merge_env(env, [{"name": name, "value": value} for name, value in runtime.env])


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


def _runtime_annotations(spec: PoolSpec, runtime: Runtime, hardware_profile: tuple[str, str] | None) -> dict[str, str]:
    """The ServingRuntime's own annotations: what the dashboard shows for it and which Template it comes from."""
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
    return annotations


def _runtime_container(spec: PoolSpec, runtime: Runtime) -> dict[str, Any]:
    """``kserve-container``: vLLM's OpenAI server on 8080, probed on /health, with the cache and scratch mounts."""
    return {
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


def serving_runtime(spec: PoolSpec, runtime: Runtime, *, hardware_profile: tuple[str, str] | None = None) -> Manifest:
    """The ServingRuntime for ``runtime``: vLLM's OpenAI server on 8080 with the shared cache PVC.

    ``hardware_profile`` (name, namespace): the profile every model on this runtime uses; the 2.x
    dashboard reads it from the runtime (3.x from the InferenceService).
    """
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
            "labels": dashboard_labels(),
            "annotations": _runtime_annotations(spec, runtime, hardware_profile),
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
            "containers": [_runtime_container(spec, runtime)],
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


def _model_spec(model: Model) -> dict[str, Any]:
    """``predictor.model``: the runtime it names, and what KServe overlays on the runtime's container."""
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
    return model_spec


def inference_service(spec: PoolSpec, model: Model) -> Manifest:
    """The InferenceService for ``model`` (RawDeployment, runtime named, dashboard-visible)."""
    labels = dashboard_labels()
    if model.expose:
        labels[VISIBILITY] = "exposed"  # odh-model-controller then creates a Route
    predictor, scaling = predictor_scaling(model)
    if model.image_pull_secrets:
        predictor["imagePullSecrets"] = [{"name": n} for n in model.image_pull_secrets]
    if model.node_selector:
        predictor["nodeSelector"] = dict(model.node_selector)
    if model.tolerations:
        predictor["tolerations"] = tolerations(model.tolerations)
    affinity = node_affinity(model)
    if affinity is not None:
        predictor["affinity"] = affinity
    predictor["model"] = _model_spec(model)
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


def monitoring_annotations() -> dict[str, str]:
    """Prometheus annotations for the predictor pods (they reach the pods through KServe's buildObjectMeta)."""
    return {
        "prometheus.io/scrape": "true",
        KSERVE_PROMETHEUS_PORT: str(vllm.PORT),
        KSERVE_PROMETHEUS_PATH: "/metrics",
        # Keep the runtime's prometheus.io/port 8080: "true" here points it at queue-proxy, absent in raw mode.
        ENABLE_PROMETHEUS_SCRAPING: "false",
    }


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


def project_namespace(spec: PoolSpec) -> Manifest:
    """The namespace's labels: a KServe (single-model) project the dashboard lists."""
    meta: dict[str, Any] = {
        "name": spec.namespace,
        "labels": {DASHBOARD_LABEL: "true", MODELMESH_ENABLED: "false"},
    }
    if spec.dashboard.namespace_display_name:
        meta["annotations"] = {DISPLAY_NAME: spec.dashboard.namespace_display_name}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


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
