"""A simulated KServe v0.20 (RawDeployment / ``Standard`` mode) for the envtest control plane.

No KServe controller runs here, so this test-support reconciler plays its part, written from
KServe v0.20.0's source (kserve/kserve tag v0.20.0), NOT from poolserve's own
:func:`poolserve.kserve.compose.compose`, so a test against it is not self-confirming:

- The mutating webhook ``inferenceservice.kserve-webhook-server.defaulter``, registered with the
  real API server (``MutatingWebhookConfiguration``, HTTPS on 127.0.0.1): ``RawDeployment`` ->
  ``Standard`` and the ``modelFormat`` annotation
  (``pkg/apis/serving/v1beta1/inference_service_defaults.go``: ``DefaultInferenceService``,
  ``setPredictorModelDefaults``).
- The validating webhook ``inferenceservice.kserve-webhook-server.validator`` and the pod mutator
  ``inferenceservice.kserve-webhook-server.pod-mutator`` (storageUri: storage initializer, PVC mount,
  modelcar; metrics annotations), from :mod:`support.kserve_webhooks`.
- The InferenceService reconciler (``pkg/controller/v1beta1/inferenceservice/controller.go``): the
  ``inferenceservice.finalizers`` finalizer, the predictor, the ingress status, ``updateStatus``
  with its ``InferenceServiceReady`` / ``InternalError`` events.
- The predictor (``.../components/predictor.go``: ``reconcileModel``, ``buildPodSpec``,
  ``buildObjectMeta``), the container and pod-spec merge (``.../inferenceservice/utils/utils.go``:
  ``MergeRuntimeContainers``, ``MergePodSpec``, ``ReplacePlaceholders``; ``pkg/utils/container_merge.go``),
  the Deployment (``.../reconcilers/deployment/deployment_reconciler.go``: ``createRawDefaultDeployment``,
  ``setDefaultPodSpec``, ``setDefaultDeploymentSpec``), the Service
  (``.../reconcilers/service/service_reconciler.go``: ``createDefaultSvc``), the autoscaler by class
  (``.../reconcilers/autoscaler/autoscaler_reconciler.go``; HPA: ``hpa/hpa_reconciler.go createHPA``,
  deleted for none/external; KEDA ScaledObject: ``keda/keda_reconciler.go createKedaScaledObject``, which
  leaves an earlier HPA alone), the URL and address
  (``.../reconcilers/ingress/kube_ingress_reconciler.go``, ``httproute_reconciler.go``: ``createRawURL``,
  ``createAddress``) with upstream's default ingress config (``example.com``,
  ``{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}``, ingress creation disabled: there is no
  ingress controller here).
- The status (``pkg/apis/serving/v1beta1/inference_service_status.go``: ``PropagateRawStatus``,
  ``PropagateModelStatus``, ``UpdateModelTransitionStatus``) with knative's living condition set
  (Ready = PredictorReady and IngressReady; ``knative.dev/pkg/apis/condition_set.go``).
- The ``serving.kserve.io/stop`` annotation (``utils.GetForceStopRuntime``: case-insensitive "true"):
  the Deployment, Service and HPA the InferenceService controls are deleted and not recreated
  (``reconcilers/deployment/deployment_reconciler.go`` and ``service/service_reconciler.go``
  ``check*Exist`` -> ``CheckResultDelete``/``Skipped``, ``hpa/hpa_reconciler.go shouldDeleteHPA``); the
  predictor clears the status but ``deploymentMode`` and sets PredictorReady False/Stopped
  (``components/predictor.go``); the ingress reconciler sets IngressReady False/Stopped and no URL
  (``ingress/kube_ingress_reconciler.go``); the controller keeps a ``Stopped`` condition, True while
  stopped (``controller.go``). Without the annotation, or ``"false"``, it all comes back.

Not simulated: Knative/Serverless and ModelMesh modes, multi-node (workerSpec), transformers and
explainers, canary rollouts, KEDA's own operator (nothing acts on a ScaledObject), ClusterServingRuntimes
and runtime auto-selection. The simulated kubelet runs no init containers (a storage initializer or
modelcar-init "succeeds" at once). The real controller-manager does
the rest: ReplicaSets and pods from the Deployment, HPA scaling, garbage collection.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from support.kserve_webhooks import WebhookDenied, mutate_pod, storage_annotations, validate_isvc
from support.kubeapi import Api, ApiError, Obj, PollingController, expected, path
from support.network import LoopbackServer, reply

GROUP = "serving.kserve.io"
ISVC_LABEL = f"{GROUP}/inferenceservice"
FINALIZER = "inferenceservice.finalizers"
CONTAINER = "kserve-container"
TRANSFORMER = "transformer-container"
DEPLOYMENT_MODE = f"{GROUP}/deploymentMode"
AUTOSCALER_CLASS = f"{GROUP}/autoscalerClass"
STOP = f"{GROUP}/stop"
MODEL_FORMAT = "modelFormat"
# constants.ServiceAnnotationDisallowedList (pkg/constants/constants.go)
DISALLOWED_ANNOTATIONS = ("autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale",
                          "internal.serving.kserve.io/storage-initializer-sourceuri",
                          "kubectl.kubernetes.io/last-applied-configuration", MODEL_FORMAT)
INGRESS_DOMAIN = "example.com"
# ComponentExtensionSpec and the predictor implementations: the rest of PredictorSpec is its inline PodSpec.
_NOT_POD_SPEC = {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType", "autoScaling",
                 "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher", "labels",
                 "annotations", "deploymentStrategy", "storageUris", "model", "workerSpec", "sklearn", "xgboost",
                 "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml", "lightgbm", "paddle",
                 "name", "storageContainerName"}
# Strategic-merge keys of corev1.Container / corev1.PodSpec lists (k8s.io/api/core/v1/types.go patchMergeKey).
_CONTAINER_MERGE_KEYS = {"env": "name", "ports": "containerPort", "volumeMounts": "mountPath",
                         "volumeDevices": "devicePath", "resizePolicy": "resourceName"}
_POD_MERGE_KEYS = {"volumes": "name", "containers": "name", "initContainers": "name", "imagePullSecrets": "name",
                   "ephemeralContainers": "name"}


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class InvalidSpec(Exception):
    """``UpdateModelTransitionStatus(InvalidSpec, FailureInfo{reason, message})`` plus the reconcile error."""

    def __init__(self, reason: str, message: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.message = message


# --------------------------------------------------------------------------------------------------
# Merging (pure).


def strategic_merge(base: Any, overlay: Any, keys: dict[str, str]) -> Any:
    """``strategicpatch.StrategicMergePatch`` for the shapes involved: maps merge, keyed lists merge by key."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = copy.deepcopy(base)
        for k, v in overlay.items():
            if v is None:
                out.pop(k, None)
            elif k in keys and isinstance(v, list) and isinstance(out.get(k), list):
                merged = {item.get(keys[k]): copy.deepcopy(item) for item in out[k]}
                order = [item.get(keys[k]) for item in out[k]]
                for item in v:
                    key = item.get(keys[k])
                    if key in merged:
                        merged[key] = strategic_merge(merged[key], item, {})
                    else:
                        merged[key] = copy.deepcopy(item)
                        order.append(key)
                out[k] = [merged[key] for key in order]
            elif isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = strategic_merge(out[k], v, {})
            else:
                out[k] = copy.deepcopy(v)
        return out
    return copy.deepcopy(overlay)


def merge_runtime_containers(runtime: Obj, isvc: Obj) -> Obj:
    """``MergeRuntimeContainers``: strategic merge of the ISVC's container onto the runtime's, args concatenated."""
    overlay = {k: v for k, v in isvc.items() if v not in (None, [], {}, "")}
    overlay.pop("name", None)  # Name is restored from the runtime container (MergeContainerWithPatch)
    merged = strategic_merge(runtime, overlay, _CONTAINER_MERGE_KEYS)
    for env in merged.get("env") or []:  # reconcileEnvValueConflicts: the overlay's intent wins
        mine = next((e for e in overlay.get("env") or [] if e.get("name") == env.get("name")), None)
        if mine and "value" in env and "valueFrom" in env:
            env.pop("value" if "valueFrom" in mine else "valueFrom")
    merged["args"] = [*(runtime.get("args") or []), *(isvc.get("args") or [])]
    if not merged["args"]:
        del merged["args"]
    merged["name"] = runtime.get("name")
    return merged


def merge_pod_spec(runtime_spec: Obj, predictor: Obj) -> Obj:
    """``MergePodSpec``: the runtime's nodeSelector/affinity/tolerations/volumes/imagePullSecrets/schedulerName,
    overridden by the ISVC predictor's inline PodSpec."""
    base = {k: runtime_spec[k] for k in ("nodeSelector", "affinity", "tolerations", "volumes", "imagePullSecrets",
                                         "schedulerName") if runtime_spec.get(k)}
    overlay = {k: v for k, v in predictor.items() if k not in _NOT_POD_SPEC}
    return dict(strategic_merge(base, overlay, _POD_MERGE_KEYS))


_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_INDEX = re.compile(r'^index \.(Labels|Annotations) "([^"]*)"$')


def replace_placeholders(container: Obj, meta: Obj) -> Obj:
    """``ReplacePlaceholders``: the container's JSON run through Go's text/template with the ISVC's ObjectMeta.

    Supports the fields of ObjectMeta and ``index .Labels/.Annotations "key"``; anything else fails as
    KServe's template would (InvalidPredictorSpec).
    """
    def value(m: re.Match[str]) -> str:
        expr = m.group(1)
        if expr in (".Name", ".Namespace", ".UID", ".GenerateName"):
            return str(meta.get(expr[1].lower() + expr[2:], ""))
        idx = _INDEX.match(expr)
        if idx:
            return str((meta.get(idx.group(1).lower()) or {}).get(idx.group(2), "<no value>"))
        raise ValueError(f'template: container-tmpl: cannot evaluate "{expr}"')

    return dict(json.loads(_PLACEHOLDER.sub(value, json.dumps(container))))


def _union(*maps: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in maps:
        out.update(m or {})
    return out


def _filtered(annotations: Any) -> dict[str, str]:
    return {k: v for k, v in (annotations or {}).items() if k not in DISALLOWED_ANNOTATIONS}


def force_stop(obj: Obj) -> bool:
    """``utils.GetForceStopRuntime`` (pkg/utils/utils.go): the stop annotation equals "true", any case."""
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(STOP, "")).lower() == "true"


def supports(runtime: Obj, model: Obj) -> bool:
    """``RuntimeSupportsModel`` with an explicit runtime: the model's format (and version) is listed."""
    fmt = model.get("modelFormat") or {}
    want = f"mt:{fmt.get('name')}" + (f":{fmt['version']}" if fmt.get("version") else "")
    have = set()
    for f in runtime.get("spec", {}).get("supportedModelFormats") or []:
        have.add(f"mt:{f.get('name')}")
        if f.get("version"):
            have.add(f"mt:{f.get('name')}:{f['version']}")
    return want in have


def predictor_objects(isvc: Obj, runtime: Obj) -> tuple[Obj, Obj, Obj]:
    """``(deployment, service, hpa)`` as the raw reconciler builds them for ``isvc`` on ``runtime``.

    Raises:
        InvalidSpec: the runtime has no kserve-container, or a placeholder cannot be evaluated.
    """
    meta = isvc["metadata"]
    name, ns = meta["name"], meta["namespace"]
    predictor = isvc["spec"]["predictor"]
    model = predictor.get("model") or {}
    sr = runtime["spec"]
    containers = sr.get("containers") or []
    if not containers:
        raise InvalidSpec("InvalidPredictorSpec", "no container configuration found in selected serving runtime",
                          "no container configuration found in selected serving runtime")
    base = next((c for c in containers if c.get("name") == CONTAINER), None)
    if base is None:
        msg = f"failed to find {CONTAINER} in ServingRuntime containers"
        raise InvalidSpec("InvalidPredictorSpec", msg, msg)
    isvc_container = {k: v for k, v in model.items() if k not in (
        "modelFormat", "runtime", "storageUri", "storage", "protocolVersion", "runtimeVersion")}
    main = merge_runtime_containers(base, isvc_container)
    pod = merge_pod_spec(sr, predictor)
    try:
        main = replace_placeholders(main, meta)
    except ValueError as err:
        msg = f"failed to replace placeholders in serving runtime {model.get('runtime')} Container {CONTAINER}"
        raise InvalidSpec("InvalidPredictorSpec", msg, f"{msg}: {err}") from err
    pod["containers"] = [main]
    pod["containers"] += [c for c in containers if c.get("name") not in (CONTAINER, TRANSFORMER)]
    pod["containers"] += [c for c in predictor.get("containers") or [] if c.get("name") != TRANSFORMER]
    for c in pod["containers"]:  # AddEnvVarToPodSpec(INFERENCE_SERVICE_NAME): overwrite the value, or append
        env = c.setdefault("env", [])
        found = next((e for e in env if e.get("name") == "INFERENCE_SERVICE_NAME"), None)
        if found is None:
            env.append({"name": "INFERENCE_SERVICE_NAME", "value": name})
        else:
            found["value"] = name
    predictor_name = f"{name}-predictor"
    app = f"isvc.{predictor_name}"
    # buildObjectMeta: runtime (spec) labels < isvc labels < predictor labels < KServe's; the Deployment
    # builder then adds app to the same map, so the Service carries it too (createRawDefaultDeployment).
    labels = _union(sr.get("labels"), meta.get("labels"), predictor.get("labels"),
                    {ISVC_LABEL: name, "component": "predictor"}, {"app": app})
    # buildPredictorResources: the ISVC's annotations (filtered), then the storage annotations the pod
    # mutator reads; buildObjectMeta: runtime < those < predictor's.
    try:
        storage = storage_annotations(model)
    except WebhookDenied as err:
        raise InvalidSpec("InvalidPredictorSpec", str(err), str(err)) from err
    annotations = _union(_filtered(sr.get("annotations")), {**_filtered(meta.get("annotations")), **storage},
                         _filtered(predictor.get("annotations")))
    _default_pod_spec(pod)
    owner = {"apiVersion": isvc["apiVersion"], "kind": isvc["kind"], "name": name, "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": True}
    obj_meta = {"name": predictor_name, "namespace": ns, "labels": labels, "annotations": annotations,
                "ownerReferences": [owner]}
    dep_spec: Obj = {
        "selector": {"matchLabels": {"app": app}},
        "template": {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}, "spec": pod},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
    }
    if predictor.get("deploymentStrategy"):
        dep_spec["strategy"] = predictor["deploymentStrategy"]
    if annotations.get(AUTOSCALER_CLASS) == "none" and predictor.get("minReplicas") is not None:
        dep_spec["replicas"] = predictor["minReplicas"]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": copy.deepcopy(obj_meta),
                  "spec": dep_spec}
    first = pod["containers"][0]
    ports = []
    if first.get("ports"):
        p0 = first["ports"][0]
        ports.append({"name": p0.get("name"), "port": 80, "targetPort": p0["containerPort"],
                      "protocol": p0.get("protocol", "TCP")})
        ports += [{"name": p.get("name"), "port": p["containerPort"], "targetPort": p["containerPort"],
                   "protocol": p.get("protocol") or "TCP"} for p in first["ports"][1:]]
    else:
        ports.append({"name": predictor_name, "port": 80, "targetPort": 8080, "protocol": "TCP"})
    service = {"apiVersion": "v1", "kind": "Service", "metadata": copy.deepcopy(obj_meta),
               "spec": {"selector": {"app": app}, "ports": [{k: v for k, v in p.items() if v is not None}
                                                             for p in ports]}}
    return deployment, service, autoscaler(predictor, obj_meta, annotations.get(AUTOSCALER_CLASS, "hpa"))


def autoscaler(predictor: Obj, obj_meta: Obj, cls: str) -> Obj | None:
    """The autoscaler object for ``cls`` (``autoscaler_reconciler.go createAutoscaler``), None for none/external.

    hpa: ``hpa_reconciler.go createHPA`` / ``getHPAMetrics``; keda: ``keda_reconciler.go createKedaScaledObject`` /
    ``getKedaMetrics`` (no stabilization windows: the upstream autoscaler config sets none).
    """
    min_r = max(int(predictor.get("minReplicas") or 1), 1)
    if cls == "keda":
        triggers = []
        for m in (predictor.get("autoScaling") or {}).get("metrics") or []:
            if m.get("type") == "External":
                ext = m["external"]
                trigger: Obj = {"type": ext["metric"].get("backend", ""), "metadata": {
                    "serverAddress": ext["metric"].get("serverAddress", ""), "query": ext["metric"].get("query", ""),
                    "threshold": str(ext.get("target", {}).get("value", "0"))}}
                if trigger["type"] == "prometheus" and ext["metric"].get("namespace"):
                    trigger["metadata"]["namespace"] = ext["metric"]["namespace"]
                auth = ext.get("authenticationRef")
                if auth:
                    if auth.get("authModes"):
                        trigger["metadata"]["authModes"] = auth["authModes"]
                    if (auth.get("authenticationRef") or {}).get("name"):
                        trigger["authenticationRef"] = {"name": auth["authenticationRef"]["name"]}
                triggers.append(trigger)
            elif m.get("type") == "Resource":
                res = m["resource"]
                target = res.get("target") or {}
                value = str(target.get("averageUtilization") or (80 if res["name"] == "cpu" else 0))
                triggers.append({"type": res["name"], "metadata": {"value": value},
                                 "metricType": target.get("type", "Utilization")})
        return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "metadata": {k: copy.deepcopy(obj_meta[k]) for k in ("name", "namespace", "labels", "annotations",
                                                                    "ownerReferences")},
                "spec": {"scaleTargetRef": {"name": obj_meta["name"]}, "triggers": triggers, "minReplicaCount": min_r,
                         "maxReplicaCount": max(int(predictor.get("maxReplicas") or 0), min_r)}}
    if cls in ("none", "external"):
        return None
    max_r = max(int(predictor.get("maxReplicas") or 0), min_r)
    metric = predictor.get("scaleMetric", "cpu")
    metrics: list[Obj] = []
    if metric == "cpu":
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": int(predictor.get("scaleTarget") or 80)}}})
    elif metric == "memory" and predictor.get("scaleTarget") is not None:  # no default target for memory
        metrics.append({"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "Utilization", "averageUtilization": int(predictor["scaleTarget"])}}})
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": copy.deepcopy(obj_meta),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": obj_meta["name"]},
                     "minReplicas": min_r, "maxReplicas": max_r, "metrics": metrics, "behavior": {}}}


def _default_pod_spec(pod: Obj) -> None:
    """``setDefaultPodSpec``."""
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    for c in pod["containers"]:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("imagePullPolicy", "IfNotPresent")
        if c.get("name") in (CONTAINER, TRANSFORMER) and not c.get("readinessProbe"):
            port = (c.get("ports") or [{"containerPort": 8080}])[0]["containerPort"]
            c["readinessProbe"] = {"tcpSocket": {"port": port}, "timeoutSeconds": 1, "periodSeconds": 10,
                                   "successThreshold": 1, "failureThreshold": 3}


# --------------------------------------------------------------------------------------------------
# Status (pure): knative's living condition set over PredictorReady and IngressReady.

DEPENDENTS = ("PredictorReady", "IngressReady")


class Conditions:
    """``apis.NewLivingConditionSet(PredictorReady, IngressReady)`` managing ``status.conditions``."""

    def __init__(self, status: Obj) -> None:
        self.status = status

    def get(self, type_: str) -> Obj | None:
        return next((c for c in self.status.get("conditions") or [] if c.get("type") == type_), None)

    def _set(self, cond: Obj) -> None:
        conds = [c for c in self.status.get("conditions") or [] if c.get("type") != cond["type"]]
        old = self.get(cond["type"])
        cond = {k: v for k, v in cond.items() if v not in (None, "")}
        if old is not None:
            same = {k: v for k, v in old.items() if k != "lastTransitionTime"} == cond
            cond["lastTransitionTime"] = old.get("lastTransitionTime") if same else now()
        else:
            cond["lastTransitionTime"] = now()
        conds.append(cond)
        self.status["conditions"] = sorted(conds, key=lambda c: c["type"])

    def initialize(self) -> None:
        if self.get("Ready") is None:
            self._set({"type": "Ready", "status": "Unknown"})
        happy = (self.get("Ready") or {}).get("status")
        for t in DEPENDENTS:
            if self.get(t) is None:
                self._set({"type": t, "status": "True" if happy == "True" else "Unknown"})

    def mark(self, type_: str, status: str, reason: str = "", message: str = "") -> None:
        severity = None if type_ in (*DEPENDENTS, "Ready") else "Info"
        self._set({"type": type_, "status": status, "reason": reason, "message": message, "severity": severity})
        if type_ not in DEPENDENTS:
            return
        if status == "False":
            self._set({"type": "Ready", "status": "False", "reason": reason, "message": message})
        elif status == "Unknown":
            if (self.get("Ready") or {}).get("status") != "False" or all(
                    (self.get(t) or {}).get("status") != "False" for t in DEPENDENTS):
                self._set({"type": "Ready", "status": "Unknown", "reason": reason, "message": message})
        elif all((self.get(t) or {}).get("status") == "True" for t in DEPENDENTS):
            self._set({"type": "Ready", "status": "True"})

    def ready(self) -> bool:
        return (self.get("Ready") or {}).get("status") == "True"


def _dep_condition(dep: Obj | None, type_: str) -> Obj:
    for c in (dep or {}).get("status", {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


def propagate_raw_status(status: Obj, dep: Obj | None, component_url: str) -> None:
    """``PropagateRawStatus`` for one predictor Deployment."""
    conds = Conditions(status)
    ready: Obj = {"status": "False", "reason": "", "message": ""}
    avail = _dep_condition(dep, "Available")
    if avail.get("status") == "True":
        ready = {"status": "True", "reason": avail.get("reason", ""), "message": avail.get("message", "")}
    prog = _dep_condition(dep, "Progressing")
    if prog.get("status") == "False":
        if prog.get("message"):
            ready = {"status": "False", "reason": prog.get("reason", ""), "message": prog["message"]}
    elif prog.get("status") == "True":
        if prog.get("reason") == "NewReplicaSetAvailable":
            ready = {"status": "True", "reason": prog["reason"], "message": prog.get("message", "")}
        elif avail.get("status") != "True":
            ready = {"status": "Unknown", "reason": prog.get("reason", ""), "message": prog.get("message", "")}
    if avail.get("status") == "False":
        ready = {"status": "False", "reason": avail.get("reason", ""), "message": avail.get("message", "")}
    failure = _dep_condition(dep, "ReplicaFailure")
    if failure.get("status") == "True":
        ready = {"status": "False", "reason": failure.get("reason", ""), "message": failure.get("message", "")}
    component = status.setdefault("components", {}).setdefault("predictor", {})
    if ready["status"] == "True":
        component["url"] = component_url
    conds.mark("PredictorReady", ready["status"], ready["reason"], ready["message"])
    if dep is not None:
        status["observedGeneration"] = int((dep.get("status") or {}).get("observedGeneration") or 0)


def _revision_states(status: Obj, state: str, failure: Obj | None = None) -> None:
    """``UpdateModelRevisionStates``."""
    ms = status.setdefault("modelStatus", {})
    states = ms.setdefault("states", {"activeModelState": ""})
    states["targetModelState"] = state
    if state in ("Pending", "Loading"):
        ms["transitionStatus"] = "InProgress"
    elif state == "Loaded":
        ms["transitionStatus"] = "UpToDate"
        states["activeModelState"] = "Loaded"
    elif state == "FailedToLoad":
        ms["transitionStatus"] = "BlockedByFailedLoad"
    if failure:
        ms["lastFailureInfo"] = failure


def invalid_spec(status: Obj, reason: str, message: str) -> None:
    """``UpdateModelTransitionStatus(InvalidSpec, &FailureInfo{Reason, Message})``."""
    ms = status.setdefault("modelStatus", {})
    ms["transitionStatus"] = "InvalidSpec"
    ms.setdefault("states", {"activeModelState": ""})["targetModelState"] = "FailedToLoad"
    ms["lastFailureInfo"] = {"reason": reason, "message": message}


def propagate_model_status(status: Obj, pods: list[Obj]) -> None:
    """``PropagateModelStatus`` (raw deployment): ``pods`` newest first."""
    ready = sum(1 for p in pods if p.get("status", {}).get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in p["status"].get("conditions") or []))
    copies = status.setdefault("modelStatus", {}).setdefault("copies", {"failedCopies": 0})
    if ready:
        copies["totalCopies"] = ready
    else:
        copies.pop("totalCopies", None)
    if not pods:
        _revision_states(status, "Pending")
        return
    if Conditions(status).ready():
        _revision_states(status, "Loaded")
        return
    for cs in pods[0].get("status", {}).get("containerStatuses") or []:
        if cs.get("name") != CONTAINER:
            continue
        state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated") or {}
        term = state.get("terminated") or {}
        if term.get("reason") == "Error":
            _revision_states(status, "FailedToLoad", _failure(term))
        elif (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
            _revision_states(status, "FailedToLoad", _failure(last))
        else:
            _revision_states(status, "Pending")


def _failure(term: Obj) -> Obj:
    out: Obj = {"reason": "ModelLoadFailed"}
    if term.get("message"):
        out["message"] = term["message"]
    if term.get("exitCode"):
        out["exitCode"] = term["exitCode"]
    return out


# --------------------------------------------------------------------------------------------------
# The controller.


@dataclass
class _Listed:
    runtimes: dict[tuple[str, str], Obj]
    pods: dict[tuple[str, str], list[Obj]]


class KServe(PollingController):
    """The simulated KServe controller and defaulting webhook; :meth:`start` runs the loop in a thread."""

    thread_name = "simulated-kserve"

    def __init__(self, api: Api, *, cert: Path, key: Path, ca_file: Path, interval_s: float = 0.25) -> None:
        super().__init__(api, interval_s)
        self.reconciles = 0
        self._events: dict[tuple[str, str, str, str], Obj] = {}
        self.webhook = _Defaulter(cert, key, secret=lambda ns, name: self.api.get(path("v1", "secrets", ns, name)),
                                  errors=self.errors)
        self.ca_file = ca_file

    def start(self) -> None:
        self.webhook.start()
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "inferenceservice.serving.kserve.io"},
            "webhooks": [{
                "name": "inferenceservice.kserve-webhook-server.defaulter",
                "clientConfig": {"url": f"https://127.0.0.1:{self.webhook.port}/mutate-serving-kserve-io-v1beta1"
                                        "-inferenceservice", "caBundle": ca},
                "rules": [{"apiGroups": [GROUP], "apiVersions": ["v1beta1"], "operations": ["CREATE", "UPDATE"],
                           "resources": ["inferenceservices"]}],
                "sideEffects": "None", "admissionReviewVersions": ["v1", "v1beta1"], "failurePolicy": "Fail",
                "timeoutSeconds": 10,
            }, {
                # config/webhook/manifests.yaml: every pod labelled with an InferenceService, at creation.
                "name": "inferenceservice.kserve-webhook-server.pod-mutator",
                "clientConfig": {"url": f"https://127.0.0.1:{self.webhook.port}/mutate-pods", "caBundle": ca},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
                "objectSelector": {"matchExpressions": [{"key": ISVC_LABEL, "operator": "Exists"}]},
                "namespaceSelector": {"matchExpressions": [{"key": "control-plane", "operator": "DoesNotExist"}]},
                "reinvocationPolicy": "IfNeeded", "sideEffects": "None", "admissionReviewVersions": ["v1", "v1beta1"],
                "failurePolicy": "Fail", "timeoutSeconds": 10,
            }],
        }
        self.api.create("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", config)
        self.api.create("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "inferenceservice.serving.kserve.io"},
            "webhooks": [{
                "name": "inferenceservice.kserve-webhook-server.validator",
                "clientConfig": {"url": f"https://127.0.0.1:{self.webhook.port}/validate-inferenceservices",
                                 "caBundle": ca},
                "rules": [{"apiGroups": [GROUP], "apiVersions": ["v1beta1"], "operations": ["CREATE", "UPDATE"],
                           "resources": ["inferenceservices"]}],
                "sideEffects": "None", "admissionReviewVersions": ["v1", "v1beta1"], "failurePolicy": "Fail",
                "timeoutSeconds": 10,
            }],
        })
        self.start_loop()

    def stop(self) -> None:
        self.stop_loop()
        self.webhook.stop()

    def sync(self) -> bool:
        """One pass: reconcile every InferenceService (a real controller reacts to watch events instead).

        Returns False when there was none.
        """
        isvcs = self.api.list(path(f"{GROUP}/v1beta1", "inferenceservices"))
        if not isvcs:
            return False
        listed = _Listed(
            runtimes={(r["metadata"]["namespace"], r["metadata"]["name"]): r
                      for r in self.api.list(path(f"{GROUP}/v1alpha1", "servingruntimes"))},
            pods={})
        for p in self.api.list("/api/v1/pods", labelSelector="component=predictor"):
            app = (p["metadata"].get("labels") or {}).get("app", "")
            listed.pods.setdefault((p["metadata"]["namespace"], app), []).append(p)
        for isvc in isvcs:
            try:
                self.reconcile(isvc, listed)
            except ApiError as err:
                if not expected(err):  # deleted, changed meanwhile, namespace terminating: next pass
                    raise
        return True

    def reconcile(self, isvc: Obj, listed: _Listed) -> None:
        self.reconciles += 1
        meta = isvc["metadata"]
        name, ns = meta["name"], meta["namespace"]
        isvc_path = path(f"{GROUP}/v1beta1", "inferenceservices", ns, name)
        annotations = meta.get("annotations") or {}
        mode = annotations.get(DEPLOYMENT_MODE, "Serverless")
        if mode not in ("Standard", "RawDeployment"):
            self._event(isvc, "Warning", "ServerlessModeRejected", "It is not possible to use Knative deployment "
                        "mode when Knative Services are not available")
            return
        finalizers = list(meta.get("finalizers") or [])
        if not meta.get("deletionTimestamp"):
            if FINALIZER not in finalizers:
                isvc = self.api.merge_patch(isvc_path, {"metadata": {"finalizers": [*finalizers, FINALIZER]}},
                                            fieldManager="manager")
                meta = isvc["metadata"]
        else:
            if FINALIZER in finalizers:
                self.api.merge_patch(isvc_path, {"metadata": {"finalizers": [
                    f for f in finalizers if f != FINALIZER]}}, fieldManager="manager")
            return
        old_status = copy.deepcopy(isvc.get("status") or {})
        status = copy.deepcopy(old_status)
        Conditions(status).initialize()
        try:
            self._predictor(isvc, status, listed)
        except InvalidSpec as err:
            invalid_spec(status, err.reason, err.message)
            self._event(isvc, "Warning", "InternalError", str(err))
            self._update_status(isvc, old_status, status)
            return
        conds = Conditions(status)
        stopped = force_stop(isvc)
        if conds.get("Stopped") is None:
            conds.mark("Stopped", "False")
        stopped_cond = conds.get("Stopped") or {}
        if stopped and stopped_cond.get("status") == "False":
            conds.mark("Stopped", "True")
        elif not stopped and stopped_cond.get("status") == "True":
            conds.mark("Stopped", "False")
        if stopped:  # kube_ingress_reconciler.go: no ingress, no URL
            conds.mark("IngressReady", "False", "Stopped")
            self._update_status(isvc, old_status, status)
            return
        # Ingress (kube_ingress_reconciler.go): URL from the domain template, address from the Service.
        status["url"] = f"http://{name}-{ns}.{INGRESS_DOMAIN}"
        svc = self.api.get(path("v1", "services", ns, f"{name}-predictor"))
        if svc is None:
            self._event(isvc, "Warning", "InternalError", f"fails to reconcile ingress: failed to get entry point "
                        f"service {name}-predictor: services \"{name}-predictor\" not found")
            self._update_status(isvc, old_status, status)
            return
        host = f"{name}-predictor.{ns}.svc.cluster.local"
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            host += ":8080"
        status["address"] = {"url": f"http://{host}"}
        conds.mark("IngressReady", "True")
        self._update_status(isvc, old_status, status)

    def _predictor(self, isvc: Obj, status: Obj, listed: _Listed) -> None:
        meta = isvc["metadata"]
        name, ns = meta["name"], meta["namespace"]
        model = isvc["spec"]["predictor"].get("model") or {}
        rt_name = model.get("runtime")
        runtime = listed.runtimes.get((ns, rt_name)) if rt_name else None
        if runtime is None:
            # reconcileModel: GetServingRuntime failed (no ClusterServingRuntimes here).
            raise InvalidSpec("RuntimeNotRecognized", "Waiting for runtime to become available",
                              f"fails to reconcile component: No ServingRuntimes or ClusterServingRuntimes with the "
                              f"name: {rt_name}")
        if runtime["spec"].get("disabled"):
            raise InvalidSpec("RuntimeDisabled", "Specified runtime is disabled",
                              f"specified runtime {rt_name} is disabled")
        if not supports(runtime, model):
            raise InvalidSpec("NoSupportingRuntime", "Specified runtime does not support specified framework/version",
                              f"specified runtime {rt_name} does not support specified framework/version")
        status["servingRuntimeName"] = rt_name
        status.pop("clusterServingRuntimeName", None)
        deployment, service, scaler = predictor_objects(isvc, runtime)
        if force_stop(isvc):
            # The HPA and the KEDA reconciler both delete their autoscaler while stopped
            # (hpa_reconciler.go shouldDeleteHPA, keda_reconciler.go Reconcile: forceStopRuntime).
            stopped = [(path("v1", "services", ns), service), (path("apps/v1", "deployments", ns), deployment)]
            if scaler is not None and scaler["kind"] == "ScaledObject":
                stopped.append((path("keda.sh/v1alpha1", "scaledobjects", ns), scaler))
            elif scaler is not None:
                stopped.append((path("autoscaling/v2", "horizontalpodautoscalers", ns), scaler))
            for collection, obj in stopped:
                self._delete_controlled(collection, obj, meta["uid"])
            pred = Conditions(status).get("PredictorReady") or {}
            if pred.get("status") == "False" and pred.get("reason") == "Stopped":
                return
            mode = status.get("deploymentMode")
            status.clear()  # "Clear all statuses" (components/predictor.go), deploymentMode preserved
            if mode:
                status["deploymentMode"] = mode
            Conditions(status).mark("PredictorReady", "False", "Stopped")
            return
        self._ensure(path("v1", "services", ns), service, ("spec",))
        dep = self._ensure(path("apps/v1", "deployments", ns), deployment, ("spec",), keep=("replicas",))
        hpa_path = path("autoscaling/v2", "horizontalpodautoscalers", ns)
        if scaler is not None and scaler["kind"] == "ScaledObject":
            # keda_reconciler.go: fails the reconcile when KEDA's CRD is not installed.
            self._ensure(path("keda.sh/v1alpha1", "scaledobjects", ns), scaler, ("spec",))
        elif scaler is not None:
            self._ensure(hpa_path, scaler, ("spec",))
        if scaler is None:
            # shouldDeleteHPA: an HPA KServe made goes when the class becomes none/external. Not for keda: the
            # KEDA reconciler leaves an earlier HPA alone (keda_reconciler.go), and nothing removes a
            # ScaledObject when the class leaves keda.
            live = self.api.get(f"{hpa_path}/{name}-predictor")
            if live is not None and any(o.get("kind") == "InferenceService"
                                        for o in live["metadata"].get("ownerReferences") or []):
                self.api.delete(f"{hpa_path}/{name}-predictor")
        propagate_raw_status(status, dep, f"http://{name}-predictor-{ns}.{INGRESS_DOMAIN}")
        pods = sorted(listed.pods.get((ns, f"isvc.{name}-predictor"), []),
                      key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
        propagate_model_status(status, pods)

    def _delete_controlled(self, collection: str, desired: Obj, uid: str) -> None:
        """``CheckResultDelete``: delete the live object when this InferenceService is its controller."""
        live = self.api.get(f"{collection}/{desired['metadata']['name']}")
        owners = (live or {}).get("metadata", {}).get("ownerReferences") or []
        if live is not None and any(o.get("controller") and o.get("uid") == uid for o in owners):
            self.api.delete(f"{collection}/{desired['metadata']['name']}")

    def _ensure(self, collection: str, desired: Obj, compare: tuple[str, ...], keep: tuple[str, ...] = ()) -> Obj:
        """Create, or update when the server-defaulted desired spec differs (the reconcilers' dry-run compare)."""
        name = desired["metadata"]["name"]
        live = self.api.get(f"{collection}/{name}")
        if live is None:
            return self.api.create(collection, desired, fieldManager="manager")
        candidate = copy.deepcopy(desired)
        candidate["metadata"] = {**live["metadata"], "labels": desired["metadata"]["labels"],
                                 "annotations": {**(live["metadata"].get("annotations") or {}),
                                                 **desired["metadata"]["annotations"]},
                                 "ownerReferences": desired["metadata"]["ownerReferences"]}
        for k in keep:  # the HPA owns replicas
            if k in live["spec"]:
                candidate["spec"][k] = live["spec"][k]
        if desired["kind"] == "Service":  # allocated by the API server
            for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "type", "sessionAffinity",
                      "internalTrafficPolicy"):
                if k in live["spec"] and k not in candidate["spec"]:
                    candidate["spec"][k] = live["spec"][k]
        dry = self.api.replace(f"{collection}/{name}", candidate, dryRun="All", fieldManager="manager")
        if all(dry.get(k) == live.get(k) for k in compare) and dry["metadata"].get("labels") == live["metadata"].get(
                "labels"):
            return live
        return self.api.replace(f"{collection}/{name}", candidate, fieldManager="manager")

    def _update_status(self, isvc: Obj, old: Obj, status: Obj) -> None:
        """``updateStatus``: write only when it changed; ``InferenceServiceReady`` / ``...NotReady`` events."""
        status["deploymentMode"] = "Standard"
        if status == old:
            return
        meta = isvc["metadata"]
        body = {**isvc, "status": status}
        self.api.replace(path(f"{GROUP}/v1beta1", "inferenceservices", meta["namespace"], meta["name"], "status"),
                         body, fieldManager="manager")
        was = Conditions(old).ready()
        now_ready = Conditions(status).ready()
        ready_cond = Conditions(status).get("Ready") or {}
        if was and ready_cond.get("status") == "False":
            failed = ", ".join(f"{c['type']}: {c.get('message') or c.get('reason', '')}"
                               for c in status.get("conditions") or [] if c.get("status") == "False")
            self._event(isvc, "Warning", "InferenceServiceNotReady",
                        f"InferenceService [{meta['name']}] is no longer Ready because of: {failed}")
        elif not was and now_ready:
            self._event(isvc, "Normal", "InferenceServiceReady", f"InferenceService [{meta['name']}] is Ready")

    def _event(self, isvc: Obj, type_: str, reason: str, message: str) -> None:
        """The controller's EventRecorder: one Event per (object, reason, message), counted when repeated."""
        meta = isvc["metadata"]
        key = (meta["namespace"], meta["uid"], reason, message)
        ts = now()
        existing = self._events.get(key)
        ev_path = path("v1", "events", meta["namespace"])
        if existing is not None:
            existing["count"] += 1
            existing["lastTimestamp"] = ts
            try:
                self._events[key] = self.api.replace(f"{ev_path}/{existing['metadata']['name']}", existing)
            except ApiError:
                self._events.pop(key, None)
            return
        event = {"metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                 "involvedObject": {"kind": "InferenceService", "namespace": meta["namespace"], "name": meta["name"],
                                    "uid": meta["uid"], "apiVersion": f"{GROUP}/v1beta1",
                                    "resourceVersion": meta.get("resourceVersion", "")},
                 "reason": reason, "message": message, "type": type_, "count": 1, "firstTimestamp": ts,
                 "lastTimestamp": ts, "source": {"component": "v1beta1Controllers"},
                 "reportingComponent": "v1beta1Controllers"}
        self._events[key] = self.api.create(ev_path, event)


# --------------------------------------------------------------------------------------------------
# The defaulting webhook.


def default_isvc(isvc: Obj) -> list[Obj]:
    """JSON patch of ``DefaultInferenceService`` for what poolserve renders (upstream defaults config)."""
    ops: list[Obj] = []
    ann = dict((isvc.get("metadata") or {}).get("annotations") or {})
    changed = False
    if ann.get(DEPLOYMENT_MODE) == "RawDeployment":  # normalize the deprecated value
        ann[DEPLOYMENT_MODE] = "Standard"
        changed = True
    model = (isvc.get("spec") or {}).get("predictor", {}).get("model")
    if model is not None:
        fmt = (model.get("modelFormat") or {}).get("name", "")
        if fmt in ("triton", "vllm") and model.get("protocolVersion") is None:
            ops.append({"op": "add", "path": "/spec/predictor/model/protocolVersion", "value": "v2"})
        if fmt and MODEL_FORMAT not in ann:
            ann[MODEL_FORMAT] = fmt
            changed = True
    if changed:
        ops.insert(0, {"op": "add", "path": "/metadata/annotations", "value": ann})
    return ops


class _Defaulter:
    """HTTPS on 127.0.0.1 answering AdmissionReview v1 for KServe's webhooks, by path.

    ``/mutate-serving-kserve-io-v1beta1-inferenceservice`` (defaulter), ``/validate-inferenceservices``
    (validator), ``/mutate-pods`` (pod mutator; ``secret(namespace, name)`` reads Secrets for it).
    A simulation bug is kept in ``errors`` and answered with HTTP 500.
    """

    def __init__(self, cert: Path, key: Path, *, secret: Any = None, errors: list[str] | None = None) -> None:
        self.calls: list[Obj] = []
        self.secret = secret
        self.errors = errors if errors is not None else []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                req = review["request"]
                owner.calls.append({"operation": req.get("operation"), "dryRun": req.get("dryRun"),
                                    "name": req.get("name"), "path": self.path,
                                    "kind": (req.get("kind") or {}).get("kind")})
                try:
                    resp = owner.answer(self.path, req)
                except Exception:  # a bug in the simulation, not an admission decision
                    import traceback

                    owner.errors.append(traceback.format_exc())
                    reply(self, 500, b"simulated webhook failed", {"Content-Type": "text/plain"})
                    return
                data = json.dumps({"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
                                   "kind": "AdmissionReview", "response": resp}).encode()
                reply(self, 200, data, {"Content-Type": "application/json"})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = LoopbackServer(Handler, tls=(cert, key), name="kserve-webhook")
        self.port = self.server.port
        self.httpd = self.server.httpd

    def answer(self, url_path: str, req: Obj) -> Obj:
        obj = req.get("object") or {}
        resp: Obj = {"uid": req["uid"], "allowed": True}
        ops: list[Obj] = []
        if url_path.startswith("/validate-inferenceservices"):
            problem = validate_isvc(obj)
            if problem:
                return {**resp, "allowed": False, "status": {"code": 403, "reason": "Forbidden", "message": problem}}
        elif url_path.startswith("/mutate-pods"):
            if not obj.get("metadata", {}).get("namespace"):
                obj = {**obj, "metadata": {**obj.get("metadata", {}), "namespace": req.get("namespace", "")}}
            try:
                mutated = mutate_pod(obj, secret=self.secret)
            except WebhookDenied as err:  # admission.Errored(500, err) in the pod mutator
                return {**resp, "allowed": False, "status": {"code": 500, "message": str(err)}}
            ops = [{"op": "replace", "path": "/spec", "value": mutated["spec"]},
                   {"op": "add", "path": "/metadata/annotations", "value": mutated["metadata"]["annotations"]}]
        else:
            ops = default_isvc(obj)
        if ops:
            resp["patchType"] = "JSONPatch"
            resp["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        return resp

    def start(self) -> None:
        """Serving since construction: the webhook's URL needs the port first."""

    def stop(self) -> None:
        self.server.stop()
