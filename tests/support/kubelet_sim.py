"""A simulated kubelet for the envtest control plane: pod status, events, logs and graceful deletion.

There is no kubelet binary here, so this plays the kubelet's part for the simulated GPU nodes:

- It watches (polls) pods the real scheduler bound to one of its nodes and writes their status the
  way the kubelet's status manager does (``PATCH pods/<name>/status``, strategic merge): Running and
  Ready by default, or what a test asked for with :meth:`Kubelet.behave`: CrashLoopBackOff with a
  termination message, ImagePullBackOff, OOMKilled, still loading, or (for Job pods) Succeeded /
  Failed with a message. It records the Warning events the kubelet records (``BackOff``, ``Failed``).
- It finishes graceful deletion: a pod with ``deletionTimestamp`` is deleted with grace period 0,
  as the kubelet does once its containers stopped (without this, nothing bound to a node ever goes
  away and namespaces are never finalized).
- It serves ``/containerLogs/<ns>/<pod>/<container>`` over HTTPS on 127.0.0.1 (the nodes' kubelet
  endpoint), so ``GET pods/<name>/log`` through the real API server works, ``previous=true`` too.
- Volumes: a pod using a CSI PersistentVolume stays ContainerCreating until the real attach/detach
  controller's VolumeAttachment for its node is attached (the kubelet's volume manager waits for it).
  The CSI driver's external-attacher is played here too: it marks VolumeAttachments of
  :data:`CSI_DRIVER` attached. So a ReadWriteOnce volume wanted on a second node gets the real
  controller's ``Multi-Attach error`` event.

Sources for the shapes written (Kubernetes v1.36): ``pkg/kubelet/kubelet_pods.go`` (``convertToAPIContainerStatuses``,
``getPhase``, the "previous terminated container ... not found" log error), ``pkg/kubelet/status/generate.go``
(``GeneratePodReadyCondition``: reason ``ContainersNotReady``, "containers with unready status: [...]"),
``pkg/kubelet/images/image_manager.go`` (``ImagePullBackOff``: 'Back-off pulling image "..."'),
``pkg/kubelet/kuberuntime/kuberuntime_manager.go`` (``CrashLoopBackOff``: "back-off 10s restarting failed
container=... pod=...", event ``BackOff`` "Back-off restarting failed container ... in pod ...").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import ipaddress
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from support.kubeapi import Api, ApiError, Obj, PollingController, expected
from support.network import LoopbackServer, reply

SMP = "application/strategic-merge-patch+json"
CSI_DRIVER = "csi.poolserve.test"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------
# What a pod does. A test picks one per pod with Kubelet.behave(namespace, selector, behaviour).


@dataclass(frozen=True)
class Ready:
    """Containers start and pass their probes (after ``after_s``); ``logs``: the container's log."""

    after_s: float = 0.0
    logs: tuple[str, ...] = ("INFO:     Started server process", "INFO:     Application startup complete.",
                             "INFO:     Uvicorn running on http://0.0.0.0:8080 (Press CTRL+C to quit)")


@dataclass(frozen=True)
class Loading:
    """Containers run but never pass readiness (a model still loading)."""

    logs: tuple[str, ...] = ("INFO: loading weights",)


@dataclass(frozen=True)
class Crash:
    """The main container exits with ``exit_code`` after printing ``logs`` (its termination message), repeatedly."""

    logs: tuple[str, ...]
    exit_code: int = 1
    container: str | None = None
    """Which container crashes (default: the first)."""


@dataclass(frozen=True)
class OOMKilled:
    """The main container is killed by the kernel OOM killer (exit code 137), then crash-loops."""

    logs: tuple[str, ...] = ("INFO: loading weights",)


@dataclass(frozen=True)
class ImagePullBackOff:
    """The image cannot be pulled (``reason`` is the registry's answer)."""

    reason: str = "manifest unknown"


@dataclass(frozen=True)
class Creating:
    """The containers are never started (stuck in ContainerCreating, e.g. waiting for a volume)."""


@dataclass(frozen=True)
class Completes:
    """Run-to-completion pods (Jobs): exit 0 after ``after_s`` with ``logs`` as the termination message."""

    logs: tuple[str, ...] = ()
    after_s: float = 0.5


@dataclass(frozen=True)
class Fails:
    """Run-to-completion pods (Jobs): exit ``exit_code`` with ``logs`` as the termination message."""

    logs: tuple[str, ...] = ()
    exit_code: int = 1
    after_s: float = 0.3


Behaviour = Ready | Loading | Crash | OOMKilled | ImagePullBackOff | Creating | Completes | Fails


@dataclass
class Rule:
    namespace: str
    selector: dict[str, str]
    name: str
    behaviour: Behaviour

    def matches(self, pod: Obj) -> bool:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        return (fnmatch.fnmatch(meta.get("namespace", ""), self.namespace)
                and fnmatch.fnmatch(meta.get("name", ""), self.name)
                and all(labels.get(k) == v for k, v in self.selector.items()))


@dataclass
class PodRecord:
    """What this kubelet remembers of a pod it runs (the container runtime's state)."""

    uid: str
    namespace: str
    name: str
    first_seen: float
    ip: str
    behaviour: Behaviour
    logs: dict[str, list[str]] = field(default_factory=dict)
    previous: dict[str, list[str]] = field(default_factory=dict)
    events: set[str] = field(default_factory=set)
    attached: bool = False
    """Every CSI volume it uses is attached to its node (until then it stays ContainerCreating)."""
    written: Obj | None = None
    """The last status written (without timestamps): unchanged statuses are not written again."""


class Kubelet(PollingController):
    """The simulated kubelet of ``nodes``; :meth:`start` runs its loop in a daemon thread."""

    thread_name = "simulated-kubelet"

    def __init__(self, api: Api, *, cert: Path, key: Path, interval_s: float = 0.2) -> None:
        super().__init__(api, interval_s)
        self.nodes: set[str] = set()
        self.rules: list[Rule] = []
        self.pods: dict[str, PodRecord] = {}
        self._lock = threading.RLock()
        self._ips = (str(ipaddress.ip_address("10.128.0.0") + i) for i in range(10, 60000))
        self.server = _LogServer(self, cert, key)

    @property
    def port(self) -> int:
        """The kubelet endpoint port every simulated node advertises (``status.daemonEndpoints``)."""
        return self.server.port

    # ---------------------------------------------------------------------------------------------
    # Test API.

    def behave(self, namespace: str, behaviour: Behaviour, *, selector: dict[str, str] | None = None,
               name: str = "*") -> None:
        """Pods in ``namespace`` matching ``selector`` (labels) and ``name`` (glob) do ``behaviour`` from now on."""
        with self._lock:
            self.rules.insert(0, Rule(namespace, dict(selector or {}), name, behaviour))

    # ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        self.start_loop()

    def stop(self) -> None:
        self.stop_loop()
        self.server.stop()

    def sync(self) -> bool:
        """One pass over every pod bound to our nodes; False when there was none."""
        self._attach()
        pods = self.api.list("/api/v1/pods")
        live = set()
        for pod in pods:
            if pod["spec"].get("nodeName") not in self.nodes:
                continue
            uid = pod["metadata"]["uid"]
            live.add(uid)
            try:
                if pod["metadata"].get("deletionTimestamp"):
                    self._finish_deletion(pod)
                    continue
                self._sync_pod(pod)
            except ApiError as err:
                if not expected(err):  # gone, changed meanwhile, namespace terminating: next pass
                    raise
        with self._lock:
            for uid in [u for u in self.pods if u not in live]:
                del self.pods[uid]
        return bool(live)

    def _attach(self) -> None:
        """The CSI external-attacher: report our driver's VolumeAttachments attached."""
        for va in self.api.list("/apis/storage.k8s.io/v1/volumeattachments"):
            if va["spec"].get("attacher") == CSI_DRIVER and not (va.get("status") or {}).get("attached"):
                try:
                    self.api.merge_patch(f"/apis/storage.k8s.io/v1/volumeattachments/{va['metadata']['name']}/status",
                                         {"status": {"attached": True}})
                except ApiError as err:
                    if not expected(err):
                        raise

    def _volumes_attached(self, pod: Obj) -> bool:
        """Whether each CSI PersistentVolume the pod mounts has an attached VolumeAttachment on its node."""
        ns, node = pod["metadata"]["namespace"], pod["spec"]["nodeName"]
        for vol in pod["spec"].get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = self.api.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}") or {}
            pv_name = (pvc.get("spec") or {}).get("volumeName")
            pv = self.api.get(f"/api/v1/persistentvolumes/{pv_name}") if pv_name else None
            if not pv or "csi" not in pv["spec"]:
                continue
            if not any(va["spec"].get("nodeName") == node and (va["spec"].get("source") or {}).get(
                    "persistentVolumeName") == pv_name and (va.get("status") or {}).get("attached")
                       for va in self.api.list("/apis/storage.k8s.io/v1/volumeattachments")):
                return False
        return True

    def _behaviour(self, pod: Obj) -> Behaviour:
        with self._lock:
            for rule in self.rules:
                if rule.matches(pod):
                    return rule.behaviour
        return Ready()

    def _finish_deletion(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self.api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                         body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})

    def _record(self, pod: Obj) -> PodRecord:
        uid = pod["metadata"]["uid"]
        with self._lock:
            rec = self.pods.get(uid)
            if rec is None:
                meta = pod["metadata"]
                rec = self.pods[uid] = PodRecord(uid, meta["namespace"], meta["name"], time.monotonic(),
                                                 next(self._ips), self._behaviour(pod))
            return rec

    def _sync_pod(self, pod: Obj) -> None:
        rec = self._record(pod)
        if not rec.attached:
            rec.attached = self._volumes_attached(pod)
        status = self._status(pod, rec)
        key = _without_times(status)
        if key == rec.written:
            return
        meta = pod["metadata"]
        self.api.request("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                         body={"status": status}, content_type=SMP)
        rec.written = key

    # ---------------------------------------------------------------------------------------------
    # Status as the kubelet computes it.

    def _status(self, pod: Obj, rec: PodRecord) -> Obj:
        b: Behaviour = rec.behaviour if rec.attached else Creating()
        spec = pod["spec"]
        containers = [c["name"] for c in spec.get("containers") or []]
        main = containers[0] if containers else ""
        age = time.monotonic() - rec.first_seen
        started = pod.get("status", {}).get("startTime") or now()
        images = {c["name"]: c.get("image", "") for c in spec.get("containers") or []}
        state: dict[str, Obj] = {}
        last: dict[str, Obj] = {}
        ready: dict[str, bool] = {}
        restarts: dict[str, int] = {}
        phase = "Running"
        for c in containers:
            state[c], ready[c], restarts[c] = {"running": {"startedAt": started}}, True, 0
            rec.logs.setdefault(c, [])
        if isinstance(b, Ready):
            if age < b.after_s:
                for c in containers:
                    ready[c] = False
            for c in containers:
                rec.logs[c] = list(b.logs)
        elif isinstance(b, Loading):
            for c in containers:
                ready[c] = False
                rec.logs[c] = list(b.logs)
        elif isinstance(b, Creating):
            phase = "Pending"
            for c in containers:
                state[c], ready[c] = {"waiting": {"reason": "ContainerCreating"}}, False
        elif isinstance(b, ImagePullBackOff):
            phase = "Pending"
            for c in containers:
                msg = f'Back-off pulling image "{images[c]}": ErrImagePull: {b.reason}'
                state[c], ready[c] = {"waiting": {"reason": "ImagePullBackOff", "message": msg}}, False
            self._event(pod, rec, "Failed", f'Failed to pull image "{images[main]}": {b.reason}', container=main)
            self._event(pod, rec, "Failed", "Error: ImagePullBackOff", container=main)
            self._event(pod, rec, "BackOff", f'Back-off pulling image "{images[main]}"', type_="Normal",
                        container=main)
        elif isinstance(b, Crash | OOMKilled):
            c = (b.container if isinstance(b, Crash) else None) or main
            code = b.exit_code if isinstance(b, Crash) else 137
            reason = "Error" if isinstance(b, Crash) else "OOMKilled"
            n = 1 + int(age // 2)  # one more restart every 2 s
            term: Obj = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now(),
                         "containerID": f"cri-o://{rec.uid[:12]}{n - 1:04d}"}
            if isinstance(b, Crash):
                term["message"] = "\n".join(b.logs) + "\n"  # FallbackToLogsOnError: the log tail
            state[c], ready[c], restarts[c] = {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {min(10 * 2 ** (n - 1), 300)}s restarting failed container={c} "
                           f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}({rec.uid})"}}, False, n
            last[c] = {"terminated": term}
            rec.previous[c] = list(b.logs)
            rec.logs[c] = []
            self._event(pod, rec, "BackOff", f"Back-off restarting failed container {c} in pod "
                        f"{pod['metadata']['name']}_{pod['metadata']['namespace']}({rec.uid})", container=c)
        elif isinstance(b, Completes | Fails):
            if age >= b.after_s:
                ok = isinstance(b, Completes)
                code = 0 if ok else b.exit_code  # type: ignore[union-attr]
                phase = "Succeeded" if ok else "Failed"
                for c in containers:
                    state[c] = {"terminated": {"exitCode": code, "reason": "Completed" if ok else "Error",
                                               "message": "\n".join(b.logs) + ("\n" if b.logs else ""),
                                               "startedAt": started, "finishedAt": now()}}
                    ready[c] = False
                    rec.logs[c] = list(b.logs)
            else:
                for c in containers:
                    rec.logs[c] = list(b.logs[:1])
        all_ready = bool(containers) and all(ready.values())
        unready = [c for c in containers if not ready[c]]
        done = phase in ("Succeeded", "Failed")
        conditions = [
            _cond("PodReadyToStartContainers", "True" if phase != "Pending" or isinstance(b, ImagePullBackOff)
                  else "False"),
            _cond("Initialized", "True"),
            _cond("Ready", "True" if all_ready else "False",
                  None if all_ready else ("PodCompleted" if done else "ContainersNotReady"),
                  None if all_ready or done else f"containers with unready status: [{' '.join(unready)}]"),
            _cond("ContainersReady", "True" if all_ready else "False",
                  None if all_ready else ("PodCompleted" if done else "ContainersNotReady"),
                  None if all_ready or done else f"containers with unready status: [{' '.join(unready)}]"),
        ]
        statuses = []
        for c in containers:
            cs: Obj = {"name": c, "image": images[c], "imageID": "", "ready": ready[c],
                       "started": "running" in state[c], "restartCount": restarts[c], "state": state[c],
                       "lastState": last.get(c) or {}}
            if "waiting" not in state[c]:
                cs["containerID"] = f"cri-o://{rec.uid[:12]}"
                cs["imageID"] = f"{images[c]}@sha256:{'0' * 64}"
            statuses.append(cs)
        out: Obj = {"phase": phase, "conditions": conditions, "hostIP": "127.0.0.1",
                    "hostIPs": [{"ip": "127.0.0.1"}], "startTime": started, "containerStatuses": statuses}
        if phase != "Pending":
            out["podIP"] = rec.ip
            out["podIPs"] = [{"ip": rec.ip}]
        return out

    def _event(self, pod: Obj, rec: PodRecord, reason: str, message: str, *, type_: str = "Warning",
               container: str = "") -> None:
        """Record an Event about the pod (once per reason and message, as the recorder aggregates)."""
        key = f"{reason}:{message}"
        if key in rec.events:
            return
        rec.events.add(key)
        meta = pod["metadata"]
        ts = now()
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                               "uid": meta["uid"], "apiVersion": "v1", "resourceVersion": meta["resourceVersion"],
                               **({"fieldPath": f"spec.containers{{{container}}}"} if container else {})},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": ts, "lastTimestamp": ts,
            "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
            "reportingComponent": "kubelet", "reportingInstance": pod["spec"].get("nodeName", ""),
        }
        with contextlib.suppress(ApiError):
            self.api.create(f"/api/v1/namespaces/{meta['namespace']}/events", event)

    # ---------------------------------------------------------------------------------------------
    # The kubelet's log endpoint (the API server proxies GET pods/<name>/log here).

    def container_log(self, namespace: str, pod: str, container: str, previous: bool) -> list[str] | str:
        with self._lock:
            for rec in self.pods.values():
                if (rec.namespace, rec.name) != (namespace, pod):
                    continue
                if previous:
                    if container not in rec.previous:
                        return f'previous terminated container "{container}" in pod "{pod}" not found'
                    return list(rec.previous[container])
                return list(rec.logs.get(container) or [])
        return f'pod "{pod}" not found on this node'


def _cond(type_: str, status: str, reason: str | None = None, message: str | None = None) -> Obj:
    c: Obj = {"type": type_, "status": status, "lastProbeTime": None}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in ("finishedAt", "lastTransitionTime")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


class _LogServer:
    """HTTPS on 127.0.0.1: ``GET /containerLogs/<ns>/<pod>/<container>?previous=&tailLines=&follow=``."""

    def __init__(self, kubelet: Kubelet, cert: Path, key: Path) -> None:
        owner = kubelet

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                u = urlparse(self.path)
                parts = u.path.strip("/").split("/")
                q = parse_qs(u.query)
                if len(parts) != 4 or parts[0] != "containerLogs":
                    return self._send(404, "not found")
                previous = (q.get("previous") or ["false"])[0] == "true"
                result = owner.container_log(parts[1], parts[2], parts[3], previous)
                if isinstance(result, str):
                    return self._send(400 if "previous" in result else 404, result)
                tail = (q.get("tailLines") or [None])[0]
                if tail is not None:
                    result = result[-int(tail):] if int(tail) else []
                self._send(200, "".join(line + "\n" for line in result))

            def _send(self, code: int, text: str) -> None:
                reply(self, code, text.encode(), {"Content-Type": "text/plain"})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.handler = Handler
        self.tls = (cert, key)
        self.server: LoopbackServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None, "not started"
        return self.server.port

    @property
    def httpd(self) -> ThreadingHTTPServer:
        assert self.server is not None, "not started"
        return self.server.httpd

    def start(self) -> None:
        self.server = LoopbackServer(self.handler, tls=self.tls, name="kubelet-logs")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

