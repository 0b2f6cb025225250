"""KServe and OpenShift AI vocabulary (pure): API versions and kinds, derived names, label and annotation keys.

Every module that writes or reads a KServe object spells these keys from here. Name-length limits of
models belong to the config, which refuses a bad name before anything is rendered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Manifest = dict[str, Any]
"""One Kubernetes object as plain data, as rendered, applied and read back."""

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
MONITORING_API_VERSION = "monitoring.coreos.com/v1"

# OpenShift AI dashboard keys (odh-dashboard; see docs/explanation/lessons/openshift-ai.md).
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
MANAGED_BY = "app.kubernetes.io/managed-by"


def is_stopped(obj: Mapping[str, Any] | None) -> bool:
    """KServe's ``GetForceStopRuntime``: the stop annotation is ``true``, in any case (v0.20 pkg/utils/utils.go)."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(STOP_ANNOTATION, "")).lower() == "true"


def dashboard_labels() -> dict[str, str]:
    """Labels of an object the dashboard lists and poolserve manages."""
    return {DASHBOARD_LABEL: "true", MANAGED_BY: "poolserve"}


def managed_labels() -> dict[str, str]:
    """Labels of an object poolserve manages that the dashboard does not list."""
    return {MANAGED_BY: "poolserve"}


def predictor_name(isvc: str) -> str:
    """``<isvc>-predictor``: the Deployment and Service KServe's raw mode creates for an InferenceService."""
    return f"{isvc}-predictor"


def token_secret_name(model_name: str) -> str:
    """``default-<model>-sa``: the token Secret of a model with ``auth`` (named as the dashboard names it)."""
    return f"default-{model_name}-sa"
