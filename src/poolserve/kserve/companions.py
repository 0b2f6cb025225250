"""What is rendered beside a model's InferenceService (pure): token-auth objects, PodDisruptionBudget, PodMonitor.

Each selects or serves the predictor pods KServe creates for the model; :mod:`poolserve.kserve.render`
puts them in the model's file after its InferenceService.
"""

from __future__ import annotations

from typing import Any

from poolserve.config.resolve import Model
from poolserve.kserve.names import (
    DISPLAY_NAME,
    GROUP,
    ISVC_LABEL,
    ISVC_PLURAL,
    MONITORING_API_VERSION,
    Manifest,
    dashboard_labels,
    managed_labels,
    predictor_name,
    token_secret_name,
)


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
        "metadata": {"name": f"{model.name}-vllm", "namespace": model.namespace, "labels": managed_labels()},
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
        "metadata": {"name": predictor_name(model.name), "namespace": model.namespace, "labels": managed_labels()},
        "spec": spec,
    }


def auth_objects(model: Model) -> list[Manifest]:
    """What the dashboard creates for token auth.

    A ServiceAccount, a Role to get the model, its binding, and a token Secret that Kubernetes fills
    in (no secret value is ever rendered).
    """
    sa = f"{model.name}-sa"
    ns = model.namespace
    labels = dashboard_labels()
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
