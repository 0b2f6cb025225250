"""KServe v0.20's InferenceService validator and pod mutator, for the simulated KServe (pure functions).

Written from KServe v0.20.0's source (kserve/kserve tag v0.20.0), not from poolserve's own rendering or
:func:`poolserve.kserve.compose.compose`, so a test against them is not self-confirming:

- :func:`validate_isvc`: ``inferenceservice.kserve-webhook-server.validator``
  (``pkg/apis/serving/v1beta1/inference_service_validation.go``: ``validateInferenceService`` and the
  checks poolserve's objects can reach: name, autoscaler class, blocked env, multi-node off, predictor
  name, storageUri vs storageUris, replicas (``component.go validateReplicas``), and
  ``validateAutoScalingCompExtension`` with its HPA and KEDA variants, including the operator-precedence
  quirk that rejects a memory ``scaleTarget`` above 100).
- :func:`mutate_pod`: ``inferenceservice.kserve-webhook-server.pod-mutator``
  (``pkg/webhook/admission/pod/mutator.go``): the storage initializer for a single ``storageUri``
  (``storage_initializer_injector.go InjectStorageInitializer``, ``CommonStorageInitialization``;
  ``pkg/utils/storage.go AddModelMount``, ``ParsePvcURI``; credentials from the ``storage-config``
  Secret, ``pkg/credentials/service_account_credentials.go CreateStorageSpecSecretEnvs``), the modelcar
  (``InjectModelcar``, ``ConfigureModelcarToContainer``) and the metrics annotations
  (``metrics_aggregate_injector.go InjectMetricsAggregator``), with OpenDataHub's ``inferenceservice-config``
  (modelcars on, no ``uidModelcar``: ``config/overlays/odh/patches/inferenceservice-config-patch.yaml``).

Not simulated: the model agent (multi-model serving), the logger and batcher, CA bundles, storage
containers (ClusterStorageContainer), ``storageUris``, OCI native mode, the GKE accelerator selector,
Istio CNI.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]

GROUP = "serving.kserve.io"
CONTAINER = "kserve-container"
TRANSFORMER = "transformer-container"
AUTOSCALER_CLASS = f"{GROUP}/autoscalerClass"
DEPLOYMENT_MODE = f"{GROUP}/deploymentMode"
SOURCE_URI = f"internal.{GROUP}/storage-initializer-sourceuri"
STORAGE_SPEC = f"internal.{GROUP}/storage-spec"
STORAGE_SPEC_PARAM = f"internal.{GROUP}/storage-spec-param"
STORAGE_SPEC_KEY = f"internal.{GROUP}/storage-spec-key"
AGENT = f"internal.{GROUP}/agent"
READONLY = "storage.kserve.io/readonly"
ENABLE_METRIC_AGGREGATION = f"{GROUP}/enable-metric-aggregation"
ENABLE_PROMETHEUS_SCRAPING = f"{GROUP}/enable-prometheus-scraping"
MODEL_DIR = "/mnt/models"
PVC_VOLUME = "kserve-pvc-source"
PROVISION_VOLUME = "kserve-provision-location"
STORAGE_CONFIG_SECRET = "storage-config"
# OpenDataHub's storageInitializer config (image placeholder as in the overlay; modelcars on, no fixed UID).
INITIALIZER = {"image": "kserve/storage-initializer:latest", "memoryRequest": "100Mi", "memoryLimit": "24Gi",
               "cpuRequest": "100m", "cpuLimit": "1", "cpuModelcar": "10m", "memoryModelcar": "15Mi"}
# metricsAggregator config: both "false" upstream (config/configmap/inferenceservice.yaml).
METRICS_AGGREGATOR = {"enableMetricAggregation": "false", "enablePrometheusScraping": "false"}
SUPPORTED_PREFIXES = ("gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://", "webhdfs://",
                      "oci://", "oci+native://", "hf://")  # utils.go SupportedStorageURIPrefixList

_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class WebhookDenied(Exception):
    """The webhook refuses the request; the message is what the API server reports."""


# --------------------------------------------------------------------------------------------------
# InferenceService validation.


def validate_isvc(isvc: Obj) -> str | None:
    """``validateInferenceService`` for the predictor: the first error message, or None."""
    meta = isvc.get("metadata") or {}
    name = meta.get("name", "")
    ann = meta.get("annotations") or {}
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model") or {}
    if not _ISVC_NAME.match(name):
        return (f'the InferenceService "{name}" is invalid: a InferenceService name must consist of lower case '
                "alphanumeric characters or '-', and must start with alphabetical character. (e.g. \"my-name\" "
                "or \"abc-123\", regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
    cls = ann.get(AUTOSCALER_CLASS)
    if cls is not None and cls not in ("hpa", "kpa", "external", "keda", "none"):
        return f"[{cls}] is not a supported autoscaler class type"
    for c in [model, *(predictor.get("containers") or []), *(predictor.get("initContainers") or [])]:
        if any(e.get("name") == "PYTHONPATH" for e in c.get("env") or []):
            return (f'the InferenceService "{name}" is invalid: environment variable "PYTHONPATH" is not allowed '
                    f'in container "{c.get("name", "")}"')
    if model.get("name"):
        return "the 'name' field is not allowed in standard predictor"
    if model.get("storageUri") and predictor.get("storageUris"):
        return "storageUri and storageUris cannot be used together"
    problem = _validate_replicas(predictor.get("minReplicas"), predictor.get("maxReplicas") or 0)
    if problem:
        return problem
    if ann.get(DEPLOYMENT_MODE) == "Standard":
        if cls == "hpa":
            return _validate_hpa(predictor)
        if cls == "keda":
            return _validate_keda(predictor)
    return None


def _validate_replicas(lo: Any, hi: int) -> str | None:
    lo = 1 if lo is None else lo
    if lo < 0:
        return "'MinReplicas' cannot be less than 0"
    if hi < 0:
        return "'MaxReplicas' cannot be less than 0"
    if lo > hi and hi != 0:
        return "'MinReplicas' cannot be greater than MaxReplicas"
    return None


def _validate_hpa(predictor: Obj) -> str | None:
    metric = predictor.get("scaleMetric", "cpu")
    if metric not in ("cpu", "memory"):
        return f"[{metric}] is not a supported metric"
    target = predictor.get("scaleTarget")
    if target is not None:
        # `metric == MetricCPU && target < 1 || target > 100`: Go's && binds tighter, so > 100 fails for memory too.
        if (metric == "cpu" and target < 1) or target > 100:
            return "the target utilization percentage should be a [1-100] integer"
        if metric == "memory" and target < 1:
            return "the target memory should be greater than 1 MiB"
    for m in (predictor.get("autoScaling") or {}).get("metrics") or []:
        if m.get("type") != "Resource":
            return (f"invalid HPA metric source type with value [{m.get('type')}],valid metric source types are "
                    "Resource")
        if m.get("resource") is None:
            return "metricSpec.Resource is not set for resource metric source type"
    return None


def _validate_keda(predictor: Obj) -> str | None:
    if predictor.get("scaleMetric") is not None:
        return "ScaleMetric is not supported for KEDA"
    for m in (predictor.get("autoScaling") or {}).get("metrics") or []:
        kind = m.get("type")
        if kind == "External":
            ext = m.get("external")
            if ext is None:
                return "metricSpec.External is not set for external metric source type"
            if not (ext.get("metric") or {}).get("query"):
                return "the query should not be empty"
            target = ext.get("target") or {}
            if target.get("value") is None:
                return "the target threshold value should not be empty"
            if target.get("type") == "AverageValue" and target.get("averageValue") is None:
                return "the AverageValue type should be set"
            if target.get("type") == "Utilization" and target.get("averageUtilization") is None:
                return "the AverageUtilization type should be set"
        elif kind == "Resource":
            res = m.get("resource")
            if res is None:
                return "metricSpec.Resource is not set for resource metric source type"
            if res.get("name") not in ("cpu", "memory"):
                return f"resource type {res.get('name')} is not supported"
        elif kind != "PodMetric":
            return f"unknown KEDA metric type with value [{kind}].Valid types are Resource,External,PodMetric"
    return None


# --------------------------------------------------------------------------------------------------
# Controller side: the annotations the predictor puts on its pods for the pod mutator.


def storage_annotations(model: Obj) -> dict[str, str]:
    """``addStorageSpecAnnotations`` + ``addStorageInitializerAnnotations`` (components/component.go, predictor.go).

    Raises:
        WebhookDenied: reused for the controller's reconcile errors ("StorageURI not supported", both sources).
    """
    out: dict[str, str] = {}
    spec = model.get("storage")
    if spec is not None:
        out[STORAGE_SPEC] = "true"
        if spec.get("parameters") is not None:
            out[STORAGE_SPEC_PARAM] = json.dumps(spec["parameters"], separators=(",", ":"), sort_keys=True)
        if spec.get("key") is not None:
            out[STORAGE_SPEC_KEY] = spec["key"]
        if spec.get("path") is not None:
            out[SOURCE_URI] = "<scheme-placeholder>://" + spec["path"].lstrip("/")
    uri = model.get("storageUri")
    if uri is not None:
        if SOURCE_URI in out:
            raise WebhookDenied("must provide only one of storageUri and storage.path")
        if re.search(r"\w+?://", uri) and not uri.startswith(SUPPORTED_PREFIXES):
            raise WebhookDenied("StorageURI not supported: storageUri, must be one of: "
                                f"[{', '.join(SUPPORTED_PREFIXES)}] or match "
                                "https://{}.blob.core.windows.net/{}/{} or be an absolute or relative "
                                f"local path. StorageUri [{uri}] is not supported")
        out[SOURCE_URI] = uri
    return out


# --------------------------------------------------------------------------------------------------
# The pod mutator.

SecretGetter = Callable[[str, str], "Obj | None"]


def mutate_pod(pod: Obj, *, secret: SecretGetter | None = None) -> Obj:
    """The pod KServe's pod mutator admits: storage initializer or modelcar, then the metrics annotations.

    ``secret(namespace, name)`` reads a Secret (None: absent); without it the ``storage-config``
    lookup behaves as if the Secret were absent.

    Raises:
        WebhookDenied: with the mutator's error (e.g. a storage key missing from ``storage-config``).
    """
    pod = copy.deepcopy(pod)
    _inject_storage_initializer(pod, secret or (lambda ns, name: None))
    _inject_metrics(pod)
    _inject_modelcar(pod)
    return pod


def _container(spec: Obj, name: str) -> Obj | None:
    return next((c for c in spec.get("containers") or [] if c.get("name") == name), None)


def _add_model_mount(spec: Obj, container: Obj, mount: Obj, volume_source: Obj) -> None:
    """``AddModelMount``: skip when the container has a mount of that *name*; add the volume if new."""
    if any(m.get("name") == mount["name"] for m in container.get("volumeMounts") or []):
        return
    container.setdefault("volumeMounts", []).append(mount)
    if not any(v.get("name") == mount["name"] for v in spec.get("volumes") or []):
        spec.setdefault("volumes", []).append({"name": mount["name"], **volume_source})


def _inject_storage_initializer(pod: Obj, secret: SecretGetter) -> None:
    meta = pod.setdefault("metadata", {})
    ann = meta.get("annotations") or {}
    uri = ann.get(SOURCE_URI)
    if uri is None or AGENT in ann:
        return
    spec = pod["spec"]
    if uri.startswith(("oci://", "oci+")):
        return  # InjectModelcar's job
    if any(c.get("name") == "storage-initializer" for c in spec.get("initContainers") or []):
        return
    user = _container(spec, CONTAINER)
    if user is None:
        raise WebhookDenied("Invalid configuration: cannot find container")
    read_only = ann.get(READONLY) != "false"
    if uri.startswith("pvc://"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        mount = {"name": PVC_VOLUME, "mountPath": MODEL_DIR, **({"subPath": path} if path else {}),
                 **({"readOnly": True} if read_only else {})}
        _add_model_mount(spec, user, mount, {"persistentVolumeClaim": {"claimName": claim}})
        return
    init: Obj = {
        "name": "storage-initializer", "image": INITIALIZER["image"], "args": [uri, MODEL_DIR],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"limits": {"cpu": INITIALIZER["cpuLimit"], "memory": INITIALIZER["memoryLimit"]},
                      "requests": {"cpu": INITIALIZER["cpuRequest"], "memory": INITIALIZER["memoryRequest"]}},
    }
    spec.setdefault("initContainers", []).append(init)
    mount = {"name": PROVISION_VOLUME, "mountPath": MODEL_DIR, **({"readOnly": True} if read_only else {})}
    _add_model_mount(spec, user, mount, {"emptyDir": {}})
    init["volumeMounts"] = [{"name": PROVISION_VOLUME, "mountPath": MODEL_DIR}]  # init containers write
    if ann.get(STORAGE_SPEC) == "true":
        key = ann.get(STORAGE_SPEC_KEY, "")
        found = secret(meta.get("namespace", ""), STORAGE_CONFIG_SECRET)
        if found is None:
            if key:
                raise WebhookDenied(f"can't read storage secret {STORAGE_CONFIG_SECRET}: secrets "
                                    f'"{STORAGE_CONFIG_SECRET}" not found')
            return
        data = found.get("data") or {}
        if key and key not in data:
            raise WebhookDenied(f"specified storage key {key} not found in storage secret {STORAGE_CONFIG_SECRET}")
        entry = key or "default"
        if entry in data:
            init.setdefault("env", []).append({"name": "STORAGE_CONFIG", "valueFrom": {"secretKeyRef": {
                "name": STORAGE_CONFIG_SECRET, "key": entry}}})


def _inject_modelcar(pod: Obj) -> None:
    ann = pod["metadata"].get("annotations") or {}
    uri = ann.get(SOURCE_URI, "")
    if not uri.startswith("oci://"):
        return
    spec = pod["spec"]
    image = uri.removeprefix("oci://")
    user = _container(spec, CONTAINER)
    if user is None:
        raise WebhookDenied(f"Invalid configuration: cannot find container: {CONTAINER}")
    targets = [user, *([t] if (t := _container(spec, TRANSFORMER)) else [])]
    res = {"limits": {"cpu": INITIALIZER["cpuModelcar"], "memory": INITIALIZER["memoryModelcar"]},
           "requests": {"cpu": INITIALIZER["cpuModelcar"], "memory": INITIALIZER["memoryModelcar"]}}
    for target in targets:  # ConfigureModelcarToContainer per container
        env = target.setdefault("env", [])
        found = next((e for e in env if e.get("name") == "MODEL_INIT_MODE"), None)
        if found is None:
            env.append({"name": "MODEL_INIT_MODE", "value": "async"})  # AddOrReplaceEnv
        else:
            found["value"] = "async"
        if not any(v.get("name") == PROVISION_VOLUME for v in spec.get("volumes") or []):
            spec.setdefault("volumes", []).append({"name": PROVISION_VOLUME, "emptyDir": {}})
        if not any(m.get("name") == PROVISION_VOLUME for m in target.get("volumeMounts") or []):
            target.setdefault("volumeMounts", []).append({"name": PROVISION_VOLUME, "mountPath": "/mnt"})
        if _container(spec, "modelcar") is None:
            spec["containers"].append({
                "name": "modelcar", "image": image,
                "args": ["sh", "-c", f"ln -sf /proc/$$$$/root/models {MODEL_DIR} && sleep infinity"],
                "volumeMounts": [{"name": PROVISION_VOLUME, "mountPath": "/mnt"}], "resources": res,
                "terminationMessagePolicy": "FallbackToLogsOnError"})
            spec.setdefault("initContainers", []).append({
                "name": "modelcar-init", "image": image,
                "args": ["sh", "-c", f"echo 'Pre-fetching modelcar {image}: ' && [ -d /models ] && "
                         "[ \"$$(ls -A /models)\" ] && echo 'OK ... Prefetched and valid (/models exists)' || "
                         "(echo 'NOK ... Prefetched but modelcar is invalid (/models does not exist or is empty)' "
                         "&& exit 1)"],
                "resources": res, "terminationMessagePolicy": "FallbackToLogsOnError"})
        spec["shareProcessNamespace"] = True


def _inject_metrics(pod: Obj) -> None:
    ann = pod["metadata"].setdefault("annotations", {})
    aggregate = ann.setdefault(ENABLE_METRIC_AGGREGATION, METRICS_AGGREGATOR["enableMetricAggregation"])
    scrape = ann.setdefault(ENABLE_PROMETHEUS_SCRAPING, METRICS_AGGREGATOR["enablePrometheusScraping"])
    if scrape == "true":
        # queue-proxy's ports (DefaultPodPrometheusPort / QueueProxyAggregatePrometheusMetricsPort): Knative's
        # sidecar, which a raw-mode pod does not have.
        ann["prometheus.io/port"] = "9088" if aggregate == "true" else "9091"
        ann["prometheus.io/path"] = "/metrics"
