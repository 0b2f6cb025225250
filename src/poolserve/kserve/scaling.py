"""Replicas, autoscaling and rollout of a model's predictor (pure): KServe's HPA or KEDA, and what they leave behind.

:func:`predictor_scaling` gives the predictor fields and InferenceService annotations that
:func:`poolserve.kserve.objects.inference_service` renders; :func:`queue_query` is the PromQL KEDA
scales on; :func:`stale_autoscaler` names the autoscaler KServe leaves when the class changes;
:func:`kserve_webhook_problems` is what KServe's validating webhook refuses of these fields.
"""

from __future__ import annotations

from typing import Any

from poolserve.config.resolve import Model
from poolserve.config.schema import HPA_METRICS
from poolserve.kserve.names import AUTOSCALER_CLASS, Manifest, predictor_name

HPA_API_VERSION = "autoscaling/v2"
KEDA_API_VERSION = "keda.sh/v1alpha1"


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


def predictor_scaling(model: Model) -> tuple[dict[str, Any], dict[str, str]]:
    """The predictor's replicas, autoscaler and rollout fields, and the InferenceService annotations they need.

    The fields come first in the predictor, in this order: minReplicas, maxReplicas, the autoscaler's,
    deploymentStrategy.
    """
    predictor: dict[str, Any] = {"minReplicas": model.replicas, "maxReplicas": model.max_replicas}
    annotations = _autoscaler(model, predictor)
    if model.deployment_strategy:
        predictor["deploymentStrategy"] = {"type": model.deployment_strategy}
    return predictor, annotations


def _autoscaler(model: Model, predictor: dict[str, Any]) -> dict[str, str]:
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


def stale_autoscaler(isvc: Manifest) -> tuple[str, str, str]:
    """(apiVersion, kind, name) of the autoscaler KServe leaves behind when ``isvc``'s class changes.

    KServe v0.20 names both ``<isvc>-predictor``. Its KEDA reconciler never removes the HPA an earlier
    class made, and nothing removes a ScaledObject once the class leaves ``keda``
    (``reconcilers/keda/keda_reconciler.go``, ``reconcilers/hpa/hpa_reconciler.go shouldDeleteHPA``): two
    autoscalers then fight over the Deployment's replicas (KEDA's admission webhook also refuses a
    ScaledObject for a Deployment an HPA already scales).
    """
    name = predictor_name(isvc["metadata"]["name"])
    if (isvc["metadata"].get("annotations") or {}).get(AUTOSCALER_CLASS) == "keda":
        return HPA_API_VERSION, "HorizontalPodAutoscaler", name
    return KEDA_API_VERSION, "ScaledObject", name


def kserve_webhook_problems(isvc: Manifest) -> list[str]:
    """What KServe v0.20's InferenceService validating webhook would refuse in ``isvc`` (scaling rules).

    Source: ``pkg/apis/serving/v1beta1/inference_service_validation.go`` (validateInferenceServiceAutoscaler,
    validateAutoScalingCompExtension and its HPA / KEDA variants) and ``component.go`` validateReplicas.
    """
    out: list[str] = []
    ann = isvc.get("metadata", {}).get("annotations") or {}
    predictor = isvc.get("spec", {}).get("predictor", {})
    cls = ann.get(AUTOSCALER_CLASS)
    if cls is not None and cls not in ("hpa", "keda", "external", "none"):
        out.append(f"[{cls}] is not a supported autoscaler class type (KServe webhook "
                   "validateInferenceServiceAutoscaler)")
    lo, hi = predictor.get("minReplicas"), predictor.get("maxReplicas", 0)
    if isinstance(lo, int) and isinstance(hi, int) and hi and lo > hi:
        out.append("'MinReplicas' cannot be greater than MaxReplicas (KServe webhook validateReplicas)")
    metric = predictor.get("scaleMetric", "cpu")
    target = predictor.get("scaleTarget")
    metrics = (predictor.get("autoScaling") or {}).get("metrics") or []
    if cls == "hpa":
        if metric not in ("cpu", "memory"):
            out.append(f"[{metric}] is not a supported metric (KServe webhook validateScalingHPACompExtension)")
        if isinstance(target, int) and not 1 <= target <= 100:
            out.append("the target utilization percentage should be a [1-100] integer (KServe webhook "
                       "validateScalingHPACompExtension)")
        if any(x.get("type") != "Resource" for x in metrics):
            out.append("invalid HPA metric source type: valid metric source types are Resource (KServe webhook "
                       "validateScalingHPACompExtension)")
    elif cls == "keda":
        if "scaleMetric" in predictor:
            out.append("ScaleMetric is not supported for KEDA (KServe webhook validateScalingKedaCompExtension)")
        for x in metrics:
            ext = x.get("external") if x.get("type") == "External" else None
            if ext is not None and not (ext.get("metric") or {}).get("query"):
                out.append("the query should not be empty (KServe webhook validateScalingKedaCompExtension)")
            if ext is not None and (ext.get("target") or {}).get("value") is None:
                out.append("the target threshold value should not be empty (KServe webhook "
                           "validateScalingKedaCompExtension)")
    return out
