"""The envtest cluster of the test session: control plane + KServe CRDs + GPU nodes + simulated KServe and kubelet.

OpenShift's Template API is there too, as a CRD standing in for the built-in API (:mod:`support.openshift_api`).

Fixtures (registered by ``tests/conftest.py``; any test using them is marked ``envtest``):

- ``envtest`` (session): :class:`EnvCluster`, started once (about 15 s: 4 s for the processes, most of
  the rest for the InferenceService CRD to be Established) and stopped at the end of the session,
  whatever happened: processes by PID, the simulated components' threads and HTTPS servers.
- ``kube``: the same object, checked before and after each test: a control-plane process that
  exited, or an exception inside the simulated KServe or kubelet, fails the test with its log tail
  or traceback instead of leaving it hanging. A test needs kube-controller-manager and kube-scheduler
  unless it is marked ``apiserver_only``; without them (``setup-envtest`` ships neither) it skips
  with one line.
- ``ns``: a fresh namespace with the cache PVC ``vllm-model-cache`` (ReadWriteMany, Bound to a
  PersistentVolume, as a provisioner would leave it) and its ``default`` ServiceAccount; deleted at
  teardown without waiting (the namespace controller needs about 5 s to remove the pods; the nodes
  have GPUs enough for a few tests' pods lingering meanwhile).

Everything here talks to the API server through :mod:`support.kubeapi`, never through poolserve.
"""

from __future__ import annotations

import atexit
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import assets, openshift_api
from support.controlplane import ControlPlane, ControlPlaneError
from support.controlplane import start as start_control_plane
from support.kserve_sim import KServe
from support.kubeapi import Api, ApiError, Obj, path
from support.kubelet_sim import Kubelet

GPU_NODES = ("gpu-node-1", "gpu-node-2")
GPUS_PER_NODE = 8
PVC = "vllm-model-cache"
CRDS = ("inferenceservices.serving.kserve.io", "servingruntimes.serving.kserve.io")
_counter = itertools.count(1)


@dataclass
class EnvCluster:
    """A running envtest cluster; see the module docstring."""

    cp: ControlPlane
    kubelet: Kubelet
    kserve: KServe
    crd_dir: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def api(self) -> Api:
        """Admin REST client (for set-up and inspection, never the code under test)."""
        return self.cp.api()

    @property
    def kubeconfig(self) -> Path:
        return self.cp.kubeconfig

    def check(self) -> None:
        """Fail with the evidence if a process died or a simulated controller raised."""
        self.cp.check()
        for sim in (self.kserve, self.kubelet):
            if sim.errors:
                errors, sim.errors[:] = list(sim.errors), []
                raise ControlPlaneError(f"the simulated {type(sim).__name__} failed:\n{errors[-1]}")

    def wait(self, what: str, check: Any, *, timeout_s: float = 30.0, interval_s: float = 0.2) -> Any:
        """Poll ``check`` (fails fast if a control-plane process dies)."""
        return self.cp.wait(what, check, timeout_s=timeout_s, interval_s=interval_s)

    # ---------------------------------------------------------------------------------------------

    def namespace(self, name: str | None = None, *, labels: dict[str, str] | None = None,
                  pvc: str | None = PVC, access_modes: tuple[str, ...] = ("ReadWriteMany",)) -> str:
        """A new namespace (with ``default`` ServiceAccount) and, unless ``pvc`` is None, a Bound cache PVC."""
        name = name or f"t{os.getpid() % 1000}-{next(_counter)}"
        self.api.create("/api/v1/namespaces", {"metadata": {"name": name, "labels": dict(labels or {})}})
        if pvc:
            self.bound_pvc(name, pvc, access_modes)
        if not self.cp.controllers:  # no ServiceAccount controller: make `default` as it would
            self.api.create(path("v1", "serviceaccounts", name), {"metadata": {"name": "default"}})
        # Pods are refused until the ServiceAccount controller made `default` (ServiceAccount admission).
        self.wait(f"ServiceAccount {name}/default", lambda: self.api.get(path("v1", "serviceaccounts", name,
                                                                              "default")))
        return name

    def bound_pvc(self, namespace: str, name: str, access_modes: tuple[str, ...], *, csi: bool = False) -> Obj:
        """A PVC Bound to its own PV, as the (disabled) PV binder would leave them."""
        claim = self.api.create(path("v1", "persistentvolumeclaims", namespace), {
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                                       "pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"accessModes": list(access_modes), "resources": {"requests": {"storage": "50Gi"}},
                     "storageClassName": "", "volumeName": f"pv-{namespace}-{name}"}})
        source: Obj = ({"csi": {"driver": "csi.poolserve.test", "volumeHandle": f"vol-{namespace}-{name}"}}
                       if csi else {"hostPath": {"path": f"/tmp/poolserve-envtest/{namespace}/{name}"}})
        self.api.create("/api/v1/persistentvolumes", {
            "metadata": {"name": f"pv-{namespace}-{name}"},
            "spec": {"capacity": {"storage": "50Gi"}, "accessModes": list(access_modes),
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace,
                                  "name": name, "uid": claim["metadata"]["uid"]}, **source}})
        self.api.merge_patch(f"/api/v1/persistentvolumes/pv-{namespace}-{name}/status",
                             {"status": {"phase": "Bound"}})
        return self.api.merge_patch(path("v1", "persistentvolumeclaims", namespace, name, "status"), {
            "status": {"phase": "Bound", "accessModes": list(access_modes), "capacity": {"storage": "50Gi"}}})

    def delete_namespace(self, name: str, *, wait: bool = False, timeout_s: float = 60.0) -> None:
        """Delete a namespace; with ``wait``, until the namespace controller finalized it."""
        self.api.delete(f"/api/v1/namespaces/{name}")
        if wait:
            self.wait(f"namespace {name} finalized", lambda: self.api.get(f"/api/v1/namespaces/{name}") is None,
                      timeout_s=timeout_s)

    def stop(self) -> None:
        for part in (self.kserve, self.kubelet):
            try:
                part.stop()
            except Exception as err:
                print(f"stopping {type(part).__name__}: {err}")
        self.cp.stop()


def install_crds(api: Api, crd_dir: Path) -> None:
    """Create the KServe CRDs read in place from ``crd_dir`` (never copied)."""
    for f in assets.CRD_FILES:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for doc in yaml.load_all((crd_dir / f).read_text(), Loader=loader):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                try:
                    api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
                except ApiError as err:
                    if err.status != 409:
                        raise


# Operators an OpenShift AI cluster has next to KServe, whose kinds poolserve's objects involve: KEDA
# (KServe makes a ScaledObject for autoscalerClass keda) and the Prometheus operator (PodMonitor). Their
# schemas are not needed here, so these CRDs are written here, open (x-kubernetes-preserve-unknown-fields).
EXTRA_CRDS = (("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
              ("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors"))


def install_extra_crds(api: Api) -> None:
    """Create :data:`EXTRA_CRDS` (names and served versions only)."""
    for group, version, kind, plural in EXTRA_CRDS:
        try:
            api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {"group": group, "scope": "Namespaced",
                         "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                         "versions": [{"name": version, "served": True, "storage": True,
                                       "subresources": {"status": {}},
                                       "schema": {"openAPIV3Schema": {
                                           "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
        except ApiError as err:
            if err.status != 409:
                raise


def crds_served(api: Api) -> bool:
    """Both CRDs Established, and their group versions in discovery (``status.conditions`` starts empty)."""
    for name in CRDS:
        crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") or {}
        conds = (crd.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
            return False
    for gv in ("serving.kserve.io/v1beta1", "serving.kserve.io/v1alpha1",
               *(f"{group}/{version}" for group, version, _, _ in EXTRA_CRDS)):
        found = api.get(f"/apis/{gv}") or {}
        if not found.get("resources"):
            return False
    return True


def add_gpu_node(api: Api, name: str, *, gpus: int, kubelet_port: int, extra: dict[str, str] | None = None) -> Obj:
    """A Node as a kubelet registers it: Ready, ``nvidia.com/gpu`` allocatable, kubelet endpoint on 127.0.0.1.

    ``extra``: more allocatable resources (e.g. ``nvidia.com/mig-1g.10gb`` slices of a MIG node).

    Admission gives new nodes the ``node.kubernetes.io/not-ready:NoSchedule`` taint; the node
    lifecycle controller is off here, so it is removed as that controller would once the node is Ready.
    """
    api.create("/api/v1/nodes", {"metadata": {
        "name": name,
        "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                   "nvidia.com/gpu.present": "true"},
        "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}}})
    resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi",
                 "nvidia.com/gpu": str(gpus), **(extra or {})}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    api.merge_patch(f"/api/v1/nodes/{name}/status", {"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status (simulated)", "lastHeartbeatTime": now,
                        "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {"kubeletVersion": "v1.36.2", "containerRuntimeVersion": "cri-o://1.36.0",
                     "operatingSystem": "linux", "architecture": "amd64", "osImage": "simulated",
                     "kernelVersion": "", "machineID": name, "systemUUID": name, "bootID": name,
                     "kubeProxyVersion": "", }}})
    return api.merge_patch(f"/api/v1/nodes/{name}", {"spec": {"taints": None}})


def start(workdir: Path, assets_dir: Path, crd_dir: Path) -> EnvCluster:
    """Start everything; on failure, stop what was started and re-raise."""
    t0 = time.monotonic()
    cp = start_control_plane(workdir, assets_dir)
    timings = {"processes_s": time.monotonic() - t0}
    kubelet = kserve = None
    try:
        api = cp.api()
        t1 = time.monotonic()
        install_crds(api, crd_dir)
        install_extra_crds(api)
        openshift_api.install(api)  # OpenShift's Template API, for the dashboard Templates
        kubelet = Kubelet(cp.api("kubelet", agent="kubelet/v1.36.2"), cert=cp.pki.issue(workdir, "kubelet")[0],
                          key=workdir / "kubelet.key")
        kubelet.start()
        for name in GPU_NODES:
            add_gpu_node(api, name, gpus=GPUS_PER_NODE, kubelet_port=kubelet.port)
            kubelet.nodes.add(name)
        cert, key = cp.pki.issue(workdir, "kserve-webhook")
        kserve = KServe(cp.api("kserve", agent="manager/v0.20.0"), cert=cert, key=key, ca_file=cp.pki.ca_cert)
        cp.wait("the KServe CRDs Established and discoverable", lambda: crds_served(api), timeout_s=90)
        cp.wait("the Template CRD Established and discoverable", lambda: openshift_api.served(api), timeout_s=60)
        kserve.start()
        timings["crds_nodes_s"] = time.monotonic() - t1
    except BaseException:
        for part in (kserve, kubelet):
            if part is not None:
                part.stop()
        cp.stop()
        raise
    env = EnvCluster(cp, kubelet, kserve, crd_dir, timings)
    atexit.register(env.cp.stop)  # belt and braces: the fixture's finalizer normally ran already
    return env


# --------------------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(scope="session")
def envtest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvCluster]:
    """The session's envtest cluster (skipped when the binaries are missing, CI included; see :mod:`support.assets`)."""
    pytest.importorskip("kubernetes")
    bins = assets.envtest_dir()
    crds = assets.crd_dir()
    env = start(tmp_path_factory.mktemp("envtest"), bins, crds)
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture
def kube(envtest: EnvCluster, request: pytest.FixtureRequest) -> Iterator[EnvCluster]:
    """:func:`envtest`, health-checked around the test; without controllers it skips unless ``apiserver_only``."""
    if not envtest.cp.controllers and request.node.get_closest_marker("apiserver_only") is None:
        pytest.skip(assets.controllers_skip_reason(envtest.cp.assets) or "no controllers")
    envtest.check()
    yield envtest
    envtest.check()


@pytest.fixture
def ns(kube: EnvCluster) -> Iterator[str]:
    """A fresh namespace with a Bound ReadWriteMany PVC ``vllm-model-cache``; deleted afterwards."""
    name = kube.namespace()
    yield name
    try:
        kube.delete_namespace(name)
    except (ApiError, OSError) as err:
        print(f"could not delete namespace {name}: {err}")
