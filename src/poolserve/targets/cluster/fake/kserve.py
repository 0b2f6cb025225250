"""A KServe that plays along with :class:`~poolserve.targets.cluster.fake.cluster.FakeCluster`, and fakes for a config.

:func:`ready_controller` (a :data:`~poolserve.targets.cluster.fake.cluster.Controller`) makes every applied
InferenceService ready the way KServe's raw-mode reconciler would: the predictor Deployment, its
pods and Service, the status with its URLs, and the token of an auth model's Secret.
:func:`cluster_for` gives a fake with what a config needs to deploy: the KServe CRDs, the
namespace, its cache PVC and a GPU node.
"""

from __future__ import annotations

from typing import Any

from poolserve.config.schema import PoolSpec
from poolserve.kserve.compose import compose
from poolserve.kserve.names import (
    DISPLAY_NAME,
    ENABLE_AUTH,
    ISVC_KIND,
    ISVC_LABEL,
    SR_KIND,
    VISIBILITY,
    Manifest,
    is_stopped,
    predictor_name,
)
from poolserve.kserve.objects import project_namespace, template_scope
from poolserve.targets.cluster.fake.cluster import Controller, FakeCluster
from poolserve.targets.cluster.fake.objects import (
    condition,
    deployment,
    isvc_status,
    kserve_crds,
    namespace_obj,
    node,
    pod,
    pvc,
    service,
    stopped_isvc_status,
)


def ready_objects(fake: FakeCluster, isvc: Manifest, *, headless: bool = False) -> None:
    """Make ``isvc`` (already stored) ready the way KServe's raw reconciler would (or stopped, when it is)."""
    meta = isvc["metadata"]
    name, ns = meta["name"], meta["namespace"]
    if is_stopped(isvc):  # v0.20: the Deployment (with its pods) and Service go, the status says Stopped
        fake.remove("Deployment", predictor_name(name), ns)
        for p in fake.all("Pod"):
            pmeta = p["metadata"]
            if (pmeta.get("labels") or {}).get(ISVC_LABEL) == name and pmeta.get("namespace") == ns:
                fake.remove("Pod", pmeta["name"], ns)
        fake.remove("Service", predictor_name(name), ns)
        fake.set_status(ISVC_KIND, name, ns, stopped_isvc_status())
        return
    runtime = isvc["spec"]["predictor"]["model"].get("runtime")
    replicas = int(isvc["spec"]["predictor"].get("minReplicas") or 1)
    sr = fake.stored(SR_KIND, runtime, ns) if runtime else None
    if runtime and sr is None:
        fake.set_status(ISVC_KIND, name, ns, isvc_status(
            name, ns, ready=False, transition="InvalidSpec", active="", target="FailedToLoad",
            predictor=condition("PredictorReady", "False", "RuntimeNotRecognized",
                                "Waiting for runtime to become available"),
            failure={"reason": "RuntimeNotRecognized", "message": "Waiting for runtime to become available"}))
        return
    containers = [compose(sr, isvc).container] if sr is not None else None
    live = fake.stored(ISVC_KIND, name, ns) or isvc
    dep = deployment(name, ns, replicas=replicas, owner=live, containers=containers, created=fake.clock())
    prev = fake.stored("Deployment", predictor_name(name), ns)
    if prev is not None:
        gen = int(prev["metadata"].get("generation", 1)) + (prev["spec"] != dep["spec"])
        dep["metadata"]["generation"] = gen
        dep["status"]["observedGeneration"] = gen
        fake.remove("Deployment", predictor_name(name), ns)
    stored_dep = fake.seed(dep, manager="manager")  # the pods' ownerReference needs its uid
    for i in range(replicas):
        fake.seed(pod(name, ns, name=f"{predictor_name(name)}-5d9f7c8b6d-{i:05d}", owner=stored_dep,
                      created=fake.clock()),
                  manager="kubelet")
    if fake.stored("Service", predictor_name(name), ns) is None:
        fake.seed(service(name, ns, headless=headless, owner=live), manager="manager")
    route = None
    if (meta.get("labels") or {}).get(VISIBILITY) == "exposed":
        route = f"https://{name}-{ns}.apps.example.com"
    fake.set_status(ISVC_KIND, name, ns, isvc_status(name, ns, route=route, runtime=runtime, copies=replicas))
    if (meta.get("annotations") or {}).get(ENABLE_AUTH) == "true":
        secret = fake.stored("Secret", f"default-{name}-sa", ns)
        if secret is not None and "data" not in secret:
            fake.seed({**secret, "data": {"token": "ZmFrZS10b2tlbg=="}}, manager="kube-controller-manager")


def ready_controller(fake: FakeCluster, obj: Manifest) -> None:
    """A :data:`Controller` that makes every applied InferenceService ready (and fills token Secrets)."""
    if obj.get("kind") == ISVC_KIND:
        ready_objects(fake, obj)
    elif obj.get("kind") == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
        stored = fake.stored("Secret", obj["metadata"]["name"], obj["metadata"].get("namespace"))
        if stored is not None and "data" not in stored:
            fake.seed({**stored, "data": {"token": "ZmFrZS10b2tlbg=="}}, manager="kube-controller-manager")


def cluster_for(spec: PoolSpec, *, gpus: int = 8, pvc_modes: tuple[str, ...] = ("ReadWriteMany",),
                pvc_phase: str = "Bound", labelled: bool = True, controller: Controller | None = None,
                **kwargs: Any) -> FakeCluster:
    """A FakeCluster ready for ``spec``: KServe CRDs, the namespace, its cache PVC and one GPU node.

    With global dashboard Templates, the dashboard namespace (``dashboard.templates_namespace``) too.

    Args:
        spec: the config whose namespace and PVC to create.
        gpus: allocatable ``nvidia.com/gpu`` on the node (0: no GPU node).
        pvc_modes: the PVC's access modes.
        pvc_phase: the PVC's phase.
        labelled: the namespace already carries the dashboard labels poolserve renders.
        controller: see :attr:`FakeCluster.controller` (e.g. :func:`ready_controller`).
        **kwargs: passed to :class:`FakeCluster`.
    """
    fake = FakeCluster(controller=controller, **kwargs)
    labels = (project_namespace(spec)["metadata"]["labels"] if labelled else {})
    ns = namespace_obj(spec.namespace, labels)
    if labelled and spec.dashboard.namespace_display_name:
        ns["metadata"]["annotations"] = {DISPLAY_NAME: spec.dashboard.namespace_display_name}
    fake.seed_all([*kserve_crds(), ns, pvc(spec.cache.pvc, spec.namespace, phase=pvc_phase, access_modes=pvc_modes),
                   node("gpu-node-1", gpus=gpus)])
    fake.seed({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "default", "namespace": spec.namespace}})
    if spec.dashboard.templates and template_scope(spec) == "global":
        fake.seed(namespace_obj(spec.dashboard.templates_namespace, {}))
    return fake
