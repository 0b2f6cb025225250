"""Realistic Kubernetes and KServe objects for tests: what the controllers write (raw mode, KServe v0.20 shapes).

Pure builders (manifests in, manifests out) for seeding :class:`~poolserve.targets.cluster.fake.cluster.FakeCluster`
or a real API server: predictor Deployments, pods in every failure state, events, Services, PVCs,
nodes, namespaces, the KServe CRDs and InferenceService statuses. Timestamps count from
:data:`EPOCH`, so output is deterministic.
"""

from __future__ import annotations

import builtins
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from poolserve.kserve.names import CONTAINER_NAME, GROUP, ISVC_KIND, ISVC_LABEL, SR_KIND, Manifest, predictor_name

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def ts(when: datetime) -> str:
    """RFC 3339 timestamp as the API server writes it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")




def later(seconds: float) -> datetime:
    """``EPOCH + seconds`` (for ages and event times in tests)."""
    return EPOCH + timedelta(seconds=seconds)




def condition(type_: str, status: str, reason: str | None = None, message: str | None = None,
              *, when: datetime = EPOCH) -> dict[str, Any]:
    """A status condition."""
    out: dict[str, Any] = {"type": type_, "status": status, "lastTransitionTime": ts(when)}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def owner_ref(owner: Manifest) -> dict[str, Any]:
    """An ownerReference to ``owner`` (controller=true)."""
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"].get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def stopped_isvc_status() -> dict[str, Any]:
    """A stopped InferenceService's status, as KServe v0.20 leaves it (``serving.kserve.io/stop: "true"``).

    ``components/predictor.go`` clears the whole status but ``deploymentMode`` and sets PredictorReady
    False/Stopped; the ingress reconciler sets IngressReady False/Stopped (no URL); ``controller.go``
    sets the Stopped condition True. Ready follows PredictorReady.
    """
    return {
        "conditions": [condition("IngressReady", "False", "Stopped"), condition("PredictorReady", "False", "Stopped"),
                       condition("Ready", "False", "Stopped"), condition("Stopped", "True")],
        "deploymentMode": "Standard",
    }


def isvc_status(name: str, namespace: str, *, ready: bool = True, route: str | None = None,
                runtime: str | None = None, predictor: dict[str, Any] | None = None,
                transition: str | None = None, active: str | None = None, target: str | None = None,
                failure: dict[str, Any] | None = None, copies: int | None = None) -> dict[str, Any]:
    """An InferenceService status as the raw-mode controller writes it (ODH URL rules).

    Args:
        name: InferenceService name.
        namespace: its namespace.
        ready: Ready/PredictorReady/IngressReady all True (else PredictorReady False, MinimumReplicasUnavailable).
        route: external URL (``visibility: exposed``) for ``status.url``; else the internal one.
        runtime: ``status.servingRuntimeName``.
        predictor: overrides the PredictorReady condition.
        transition: ``modelStatus.transitionStatus`` (default UpToDate when ready, InProgress otherwise).
        active: ``modelStatus.states.activeModelState``.
        target: ``modelStatus.states.targetModelState``.
        failure: ``modelStatus.lastFailureInfo``.
        copies: ``modelStatus.copies.totalCopies``.
    """
    internal = f"http://{predictor_name(name)}.{namespace}.svc.cluster.local"
    pred = predictor or (condition("PredictorReady", "True") if ready else condition(
        "PredictorReady", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."))
    ready_cond = condition("Ready", "True") if pred["status"] == "True" else condition(
        "Ready", pred["status"], pred.get("reason"), pred.get("message"))
    states = {"activeModelState": active or ("Loaded" if ready else "Pending"),
              "targetModelState": target or ("Loaded" if ready else "Loading")}
    model_status: dict[str, Any] = {
        "transitionStatus": transition or ("UpToDate" if ready else "InProgress"),
        "states": states,
        "copies": {"totalCopies": copies if copies is not None else (1 if ready else 0)},
    }
    if failure:
        model_status["lastFailureInfo"] = failure
    out: dict[str, Any] = {
        "url": route or internal,
        "address": {"url": internal},
        "conditions": [condition("IngressReady", "True"), pred, ready_cond],
        "modelStatus": model_status,
        "observedGeneration": 1,
        "deploymentMode": "Standard",
        "components": {"predictor": {"latestCreatedRevision": "1"}},
    }
    if runtime:
        out["servingRuntimeName"] = runtime
    return out


def deployment(isvc: str, namespace: str, *, replicas: int = 1, ready: int | None = None,
               updated: int | None = None, available: int | None = None, generation: int = 1,
               observed: int | None = None, conditions: builtins.list[dict[str, Any]] | None = None,
               owner: Manifest | None = None, containers: builtins.list[dict[str, Any]] | None = None,
               created: datetime = EPOCH) -> Manifest:
    """The predictor Deployment ``<isvc>-predictor`` (ready by default)."""
    ready_n = replicas if ready is None else ready
    avail = ready_n if available is None else available
    conds = conditions if conditions is not None else [
        condition("Available", "True" if avail >= replicas else "False",
                  "MinimumReplicasAvailable" if avail >= replicas else "MinimumReplicasUnavailable"),
        condition("Progressing", "True", "NewReplicaSetAvailable" if ready_n >= replicas else "ReplicaSetUpdated"),
    ]
    labels = {ISVC_LABEL: isvc, "component": "predictor", "app": f"isvc.{predictor_name(isvc)}"}
    meta: dict[str, Any] = {"name": predictor_name(isvc), "namespace": namespace, "labels": labels,
                            "generation": generation, "creationTimestamp": ts(created)}
    if owner is not None:
        meta["ownerReferences"] = [owner_ref(owner)]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                 "selector": {"matchLabels": {"app": labels["app"]}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": containers or [{"name": CONTAINER_NAME}]}}},
        "status": {"observedGeneration": generation if observed is None else observed, "replicas": replicas,
                   "updatedReplicas": replicas if updated is None else updated, "readyReplicas": ready_n,
                   "availableReplicas": avail, "conditions": conds},
    }


def pod(isvc: str, namespace: str, *, name: str | None = None, ready: bool = True, phase: str | None = None,
        waiting: tuple[str, str] | None = None, terminated: tuple[str, str, int] | None = None,
        last_terminated: tuple[str, str, int] | None = None, restarts: int = 0,
        unschedulable: str | None = None, node: str | None = "gpu-node-1", created: datetime = EPOCH,
        owner: Manifest | None = None, container: str = CONTAINER_NAME,
        labels: Mapping[str, str] | None = None) -> Manifest:
    """A predictor pod.

    Args:
        isvc: InferenceService name (labels ``serving.kserve.io/inferenceservice`` and ``app``).
        namespace: its namespace.
        name: pod name (default ``<isvc>-predictor-5d9f7c8b6d-x7k2p``).
        ready: container ready.
        phase: pod phase (default Running, or Pending when waiting on ContainerCreating/unschedulable).
        waiting: ``(reason, message)`` of kserve-container's waiting state (CrashLoopBackOff, ImagePullBackOff, ...).
        terminated: ``(reason, message, exitCode)`` of its current terminated state.
        last_terminated: ``(reason, message, exitCode)`` of ``lastState.terminated`` (OOMKilled, Error).
        restarts: restartCount.
        unschedulable: PodScheduled=False/Unschedulable with this scheduler message.
        node: spec.nodeName (None when unscheduled).
        created: creationTimestamp.
        owner: the owning object for ownerReferences (cascade delete in the fake).
        container: the container's name.
        labels: pod labels (default: the predictor labels of ``isvc``).
    """
    state: dict[str, Any]
    if waiting:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    elif terminated:
        state = {"terminated": {"reason": terminated[0], "message": terminated[1], "exitCode": terminated[2]}}
    else:
        state = {"running": {"startedAt": ts(created)}}
    cstatus: dict[str, Any] = {"name": container, "ready": ready and not (waiting or terminated),
                               "restartCount": restarts, "state": state, "image": "vllm/vllm-openai:v0.32.0"}
    if last_terminated:
        cstatus["lastState"] = {"terminated": {"reason": last_terminated[0], "message": last_terminated[1],
                                               "exitCode": last_terminated[2]}}
    conditions = [condition("PodScheduled", "True")]
    is_ready = bool(cstatus["ready"])
    if unschedulable:
        conditions = [condition("PodScheduled", "False", "Unschedulable", unschedulable)]
        node = None
        is_ready = False
    conditions.append(condition("Ready", "True" if is_ready else "False",
                                None if is_ready else "ContainersNotReady"))
    if labels is None:
        labels = {ISVC_LABEL: isvc, "component": "predictor", "app": f"isvc.{predictor_name(isvc)}"}
    meta: dict[str, Any] = {"name": name or f"{predictor_name(isvc)}-5d9f7c8b6d-x7k2p", "namespace": namespace,
                            "labels": dict(labels), "creationTimestamp": ts(created)}
    if owner is not None:
        meta["ownerReferences"] = [owner_ref(owner)]
    pending = unschedulable or (waiting and waiting[0] == "ContainerCreating")
    status: dict[str, Any] = {
        "phase": phase or ("Pending" if pending else "Running"),
        "conditions": conditions,
    }
    if not unschedulable:
        status["containerStatuses"] = [cstatus]
    spec: dict[str, Any] = {"containers": [{"name": container}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def event(namespace: str, kind: str, name: str, reason: str, message: str, *, type_: str = "Warning",
          count: int = 1, when: datetime = EPOCH, uid: str | None = None) -> Manifest:
    """An Event about ``kind/name``."""
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{name}.{uid or format(zlib.crc32(f'{reason}{message}'.encode()), 'x')}",
                     "namespace": namespace, "creationTimestamp": ts(when)},
        "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
        "reason": reason, "message": message, "type": type_, "count": count,
        "firstTimestamp": ts(when), "lastTimestamp": ts(when),
    }


def service(isvc: str, namespace: str, *, headless: bool = False, owner: Manifest | None = None) -> Manifest:
    """The predictor Service ``<isvc>-predictor`` (port 80 -> 8080; headless: clusterIP None)."""
    meta: dict[str, Any] = {"name": predictor_name(isvc), "namespace": namespace,
                            "labels": {ISVC_LABEL: isvc}}
    if owner is not None:
        meta["ownerReferences"] = [owner_ref(owner)]
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"clusterIP": "None" if headless else "172.30.12.34",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                     "selector": {"app": f"isvc.{predictor_name(isvc)}"}}}


def pvc(name: str, namespace: str, *, phase: str = "Bound", access_modes: tuple[str, ...] = ("ReadWriteMany",),
        size: str = "50Gi") -> Manifest:
    """A PersistentVolumeClaim."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
            "spec": {"accessModes": list(access_modes), "resources": {"requests": {"storage": size}}},
            "status": {"phase": phase, "accessModes": list(access_modes) if phase == "Bound" else []}}


def node(name: str, *, gpus: int = 1, resource: str = "nvidia.com/gpu",
         labels: Mapping[str, str] | None = None) -> Manifest:
    """A Node with ``gpus`` allocatable ``resource`` (and ``labels``, e.g. Node Feature Discovery's)."""
    alloc = {"cpu": "15500m", "memory": "60Gi", "pods": "250"}
    if gpus:
        alloc[resource] = str(gpus)
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {})},
            "status": {"allocatable": alloc}}


def namespace_obj(name: str, labels: Mapping[str, str] | None = None) -> Manifest:
    """A Namespace."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})},
            "status": {"phase": "Active"}}


def crd(plural: str, kind: str, version: str, *, labels: Mapping[str, str] | None = None) -> Manifest:
    """A CustomResourceDefinition of the KServe group."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}", "labels": dict(labels or {})},
            "spec": {"group": GROUP, "names": {"kind": kind, "plural": plural}, "scope": "Namespaced",
                     "versions": [{"name": version, "served": True, "storage": True}]}}


def kserve_crds(labels: Mapping[str, str] | None = None) -> builtins.list[Manifest]:
    """The InferenceService and ServingRuntime CRDs."""
    return [crd("inferenceservices", ISVC_KIND, "v1beta1", labels=labels),
            crd("servingruntimes", SR_KIND, "v1alpha1", labels=labels)]

