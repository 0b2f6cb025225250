"""The ``cluster`` target: deploy, status, wait, logs, delete, endpoint, diff and cache warm on KServe.

:class:`ClusterTarget` implements :class:`poolserve.targets.base.Target` on any
:class:`~poolserve.targets.cluster.base.Cluster` (the real :class:`~poolserve.targets.cluster.kube.KubeCluster` or the
in-memory :class:`~poolserve.targets.cluster.fake.cluster.FakeCluster`); its clock and sleep are injectable, so waits
are tested without waiting.

- ``deploy`` runs :func:`poolserve.targets.cluster.preflight.preflight`, then server-side applies exactly the rendered
  objects of the selected models (their InferenceServices and auth objects, the runtimes they use and
  the namespace), reporting created/configured/unchanged per object. A failure part-way names what
  was applied before it and what was not (:mod:`poolserve.targets.cluster.apply`). Objects Helm manages
  are refused without ``--force`` (:mod:`poolserve.targets.cluster.helm`).
- ``status`` makes one list call per kind for the namespace (not one per model) and derives each
  model's state with :func:`poolserve.targets.cluster.readiness.model_status`; when a runtime names a dashboard
  Template, it lists the Templates of the dashboard namespace and the project (once each) and warns
  when the dashboard would find none (:func:`poolserve.targets.cluster.templates.template_warnings`).
- ``wait`` polls status against a monotonic deadline, checks before it sleeps, and fails fast with the
  diagnosis when a model cannot start (CrashLoopBackOff, ImagePullBackOff, Unschedulable, ...).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poolserve.config.resolve import Model
from poolserve.errors import NotFound, NotReady
from poolserve.kserve.names import (
    CONTAINER_NAME,
    ISVC_API_VERSION,
    ISVC_KIND,
    ISVC_LABEL,
    SR_API_VERSION,
    SR_KIND,
    STOP_ANNOTATION,
    Manifest,
    is_stopped,
    predictor_name,
    token_secret_name,
)
from poolserve.kserve.render import Rendered, select_models
from poolserve.targets.base import (
    CacheWarmResult,
    DeleteResult,
    DeployOptions,
    DeployResult,
    Endpoint,
    ModelStatus,
    ObjectChange,
    ObjectDiff,
    ProgressFn,
    TargetName,
)
from poolserve.targets.cluster import cachejob, readiness, ssa
from poolserve.targets.cluster.apply import apply_objects, deploy_objects, diff_objects, retire_stale_autoscalers
from poolserve.targets.cluster.base import FIELD_MANAGER, LOG_TAIL, Cluster, duration, kind_of
from poolserve.targets.cluster.helm import refuse_helm_delete, refuse_helm_objects, refuse_helm_stop
from poolserve.targets.cluster.objects import dig, labelled
from poolserve.targets.cluster.pods import crash_looping, restarted_unexplained, split_rollout
from poolserve.targets.cluster.preflight import preflight
from poolserve.targets.cluster.templates import delete_templates, template_warnings
from poolserve.targets.wait import Clock, wait_ready

POLL_S = 5.0
ROLLOUT_GRACE_S = 30.0
"""After an InferenceService changed, how long ``status`` waits for KServe to touch its Deployment
before trusting the (still old) Ready condition."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Snapshot:
    """The namespace's live objects, one list call per kind."""

    isvcs: Mapping[str, Manifest]
    runtimes: Mapping[str, Manifest]
    deployments: Sequence[Manifest]
    pods: Sequence[Manifest]
    events: Sequence[Manifest]
    services: Mapping[str, Manifest]


class ClusterTarget:
    """:class:`poolserve.targets.base.Target` on a Kubernetes cluster with KServe."""

    name: TargetName = "cluster"

    def __init__(self, cluster: Cluster, *, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], float] = time.monotonic, clock: Callable[[], datetime] = _utcnow,
                 poll_s: float = POLL_S) -> None:
        """Wrap ``cluster``.

        Args:
            cluster: the cluster access (nothing is called until a method runs).
            sleep: how waits sleep (tests advance a fake clock).
            now: monotonic seconds for deadlines.
            clock: wall-clock time for ages (aware datetime).
            poll_s: seconds between status polls while waiting.
        """
        self.cluster = cluster
        self.sleep = sleep
        self.now = now
        self.clock = clock
        self.poll_s = poll_s
        self._rollouts: dict[str, tuple[int, float]] = {}

    # ---------------------------------------------------------------------------------------------
    # deploy

    def deploy(
        self,
        rendered: Rendered,
        names: Sequence[str],
        *,
        wait: bool,
        timeout_s: float,
        options: DeployOptions = DeployOptions(),  # noqa: B008 - frozen, so a shared default is safe
        progress: ProgressFn | None = None,
    ) -> DeployResult:
        """Preflight, then server-side apply the selected models' objects; optionally wait until ready.

        Raises:
            ClusterUnreachable, Forbidden, NotFound, Conflict, Invalid: from preflight or apply; an apply
                failure's message lists what was applied before it and what was not.
            NotReady: with ``wait``, when a model fails or the timeout passes.
        """
        spec = rendered.spec
        models = select_models(rendered, names)
        objects = deploy_objects(rendered, names, runtimes_only=options.runtimes_only)
        report = preflight(self.cluster, spec, [] if options.runtimes_only else models, objects)
        if not options.force:
            refuse_helm_objects(self.cluster, [o for o in objects if o.get("kind") != "Namespace"], "upgrade")
        notes = [f"cluster {report.server_version}, KServe {report.kserve}", *report.notes]
        # Predictor Deployment generations before anything is applied: a fast controller may roll
        # the change out before we could read them afterwards (see _rollout_pending).
        before = self._generations(spec.namespace) if options.dry_run is None else {}
        changes = apply_objects(self.cluster, objects, report, options)
        if options.dry_run is None:
            self._record_rollouts(spec.namespace, changes, before)
        if options.dry_run != "client":
            changes += retire_stale_autoscalers(self.cluster, objects, dry_run=options.dry_run == "server", notes=notes)
        if changes and all(c.action == "unchanged" for c in changes):
            notes.append(f"no changes: all {len(changes)} objects already match the config")
        statuses: list[ModelStatus] = []
        if wait and options.dry_run is None and not options.runtimes_only and models:
            statuses = self.wait(rendered, [m.name for m in models], timeout_s=timeout_s, progress=progress)
        return DeployResult(target="cluster", changes=tuple(changes), statuses=tuple(statuses),
                            dry_run=options.dry_run, notes=tuple(notes), warnings=report.warnings)

    def _generations(self, namespace: str) -> dict[str, int]:
        """Predictor Deployment name -> metadata.generation, from one list call."""
        deps = self.cluster.list("apps/v1", "Deployment", namespace, label_selector=ISVC_LABEL)
        return {d["metadata"]["name"]: int(dig(d, "metadata", "generation", default=0) or 0) for d in deps}

    def _record_rollouts(self, namespace: str, changes: Sequence[ObjectChange], before: Mapping[str, int]) -> None:
        """Hold back the (old) Ready of every InferenceService KServe will now roll out.

        That is each configured InferenceService, and each live one whose runtime was configured:
        KServe re-renders the Deployment of every InferenceService using a changed ServingRuntime.
        """
        isvcs = {c.name for c in changes if c.kind == ISVC_KIND and c.action == "configured"}
        runtimes = {c.name for c in changes if c.kind == SR_KIND and c.action == "configured"}
        if runtimes:
            for isvc in self.cluster.list(ISVC_API_VERSION, ISVC_KIND, namespace):
                if readiness.runtime_of(isvc) in runtimes and not dig(isvc, "metadata", "deletionTimestamp"):
                    isvcs.add(isvc["metadata"]["name"])
        for name in sorted(isvcs):
            self._rollouts[name] = (before.get(predictor_name(name), 0), self.now())

    # ---------------------------------------------------------------------------------------------
    # status / wait

    def snapshot(self, namespace: str) -> Snapshot:
        """List each kind once: InferenceServices, ServingRuntimes, Deployments, pods, Warning events, Services."""
        c = self.cluster
        isvcs = {o["metadata"]["name"]: o for o in c.list(ISVC_API_VERSION, ISVC_KIND, namespace)}
        runtimes = {o["metadata"]["name"]: o for o in c.list(SR_API_VERSION, SR_KIND, namespace)}
        deployments = c.list("apps/v1", "Deployment", namespace, label_selector=ISVC_LABEL)
        pods = c.pods(namespace, label_selector=ISVC_LABEL)
        events = c.events(namespace, field_selector="type=Warning")
        services = {o["metadata"]["name"]: o for o in c.list("v1", "Service", namespace, label_selector=ISVC_LABEL)}
        return Snapshot(isvcs, runtimes, deployments, pods, events, services)

    def status(self, rendered: Rendered, names: Sequence[str]) -> list[ModelStatus]:
        """State of the named models (all when empty), from one list call per kind."""
        spec = rendered.spec
        models = select_models(rendered, names)
        snap = self.snapshot(spec.namespace)
        statuses = [self._model_status(m.name, spec.namespace, snap) for m in models]
        warnings = template_warnings(self.cluster, rendered, {s.runtime for s in statuses if s.runtime}, snap.runtimes)
        return [replace(s, warnings=(*s.warnings, warnings[s.runtime])) if s.runtime in warnings else s
                for s in statuses]

    def _model_status(self, name: str, namespace: str, snap: Snapshot) -> ModelStatus:
        deployments, pods = labelled(snap.deployments, ISVC_LABEL, name), labelled(snap.pods, ISVC_LABEL, name)
        kwargs: dict[str, Any] = {
            "isvc": snap.isvcs.get(name), "now": self.clock(), "deployments": deployments, "pods": pods,
            "events": snap.events, "service": snap.services.get(predictor_name(name)), "runtimes": snap.runtimes,
            "rollout_pending": self._rollout_pending(name, deployments),
        }
        st = readiness.model_status(name, **kwargs)
        dep = next((d for d in deployments if d["metadata"]["name"] == predictor_name(name)), None)
        current = split_rollout(pods, dep)[0]
        crashed = [p for p in current if crash_looping(p)]
        restarted = [p for p in current if restarted_unexplained(p)]
        unexplained = st.phase == "Failed" and crashed and "CrashLoopBackOff: kserve-container exited" in (
            st.reason or "")
        if unexplained or (restarted and not crashed):
            # The termination message did not explain the crash or the restart (vLLM exits 0 when its engine
            # dies, and FallbackToLogsOnError keeps no log then): read the previous container's log.
            logs: dict[str, list[str]] = {}
            for p in (crashed or restarted)[:1]:
                pname = p["metadata"]["name"]
                try:
                    logs[pname] = list(self.cluster.logs(namespace, pname, container=CONTAINER_NAME,
                                                         previous=True, tail_lines=LOG_TAIL))
                except NotFound:
                    continue
            if logs:
                st = readiness.model_status(name, **kwargs, logs=logs)
        return st

    def _rollout_pending(self, name: str, deployments: Sequence[Manifest]) -> bool:
        pending = self._rollouts.get(name)
        if pending is None:
            return False
        gen_before, since = pending
        dep = next((d for d in deployments if d["metadata"]["name"] == predictor_name(name)), None)
        gen_now = int(dig(dep, "metadata", "generation", default=0) or 0)
        if gen_now != gen_before or self.now() - since >= ROLLOUT_GRACE_S:
            del self._rollouts[name]
            return False
        return True

    def wait(
        self,
        rendered: Rendered,
        names: Sequence[str],
        *,
        timeout_s: float,
        progress: ProgressFn | None = None,
    ) -> list[ModelStatus]:
        """Poll until every named model is Ready.

        A stopped model (``serving.kserve.io/stop``) is not waited for: it is returned as Stopped.

        Raises:
            NotReady: a model failed (with the diagnosis) or ``timeout_s`` passed.
            NotFound: a model is not deployed.
        """
        spec = rendered.spec
        selected = [m.name for m in select_models(rendered, names)]

        def failure(s: ModelStatus) -> Exception:
            if s.phase == "NotDeployed":
                return NotFound(f"InferenceService {spec.namespace}/{s.name} does not exist",
                                hint=f"run `poolserve deploy {s.name}`")
            if s.phase == "Terminating":
                return NotReady(f"InferenceService {spec.namespace}/{s.name} is {s.reason}",
                                hint="wait until it is gone, then deploy again")
            return NotReady(f"{s.name} cannot become ready: {s.reason}",
                            hint=f"`poolserve status {s.name}` shows the evidence; "
                            f"`poolserve logs {s.name} --previous` the crashed log")

        def timeout(waiting: Sequence[ModelStatus]) -> Exception:
            summary = "; ".join(f"{s.name}: {s.phase}{f' ({s.reason})' if s.reason else ''}" for s in waiting)
            return NotReady(f"timed out after {duration(timeout_s)} waiting for {len(waiting)} model"
                            f"{'s' if len(waiting) > 1 else ''}: {summary}",
                            hint="raise --timeout for slow first downloads; `poolserve status` shows why")

        return wait_ready(lambda: self.status(rendered, selected), timeout_s=timeout_s, poll_s=self.poll_s,
                          failure=failure, timeout=timeout, progress=progress, clock=Clock(self.now, self.sleep))

    def deployed(self, rendered: Rendered, names: Sequence[str]) -> list[str]:
        """Which of ``names`` (all configured models when empty) have an InferenceService in the namespace."""
        wanted = list(names) or [m.name for m in rendered.models]
        select_models(rendered, wanted)
        live = {o["metadata"]["name"] for o in self.cluster.list(ISVC_API_VERSION, ISVC_KIND, rendered.spec.namespace)}
        return [n for n in wanted if n in live]

    def hf_homes(self, rendered: Rendered) -> list[Path]:
        """None: the weights are on the cache PVC, not on this machine."""
        return []

    def server_pgid(self, rendered: Rendered, name: str) -> int | None:
        """None: the servers run in pods, not on this machine."""
        return None

    def server_command(self, rendered: Rendered, name: str) -> tuple[list[str], dict[str, str]]:
        """The container KServe composes from the runtime and the InferenceService (env: only plain values)."""
        composed = rendered.compose(name)
        return list(composed.argv), dict(composed.env)

    # ---------------------------------------------------------------------------------------------
    # stop / start

    def stop(self, rendered: Rendered, names: Sequence[str], *, force: bool = False) -> DeployResult:
        """Set ``serving.kserve.io/stop: "true"`` on the InferenceServices; KServe then deletes their pods.

        Raises:
            NotFound: a model is not deployed.
            NotReady: a model is being deleted.
            Conflict: Helm manages a model's InferenceService (unless ``force``).
        """
        models = select_models(rendered, names)
        if not force:
            refuse_helm_stop(self.cluster, rendered, models)
        changes = [self._set_stopped(rendered.spec.namespace, m.name, True) for m in models]
        return DeployResult(target="cluster", changes=tuple(changes),
                            statuses=tuple(self.status(rendered, [c.name for c in changes])))

    def start(self, rendered: Rendered, names: Sequence[str], *, wait: bool, timeout_s: float,
              progress: ProgressFn | None = None, force: bool = False) -> DeployResult:
        """Set ``serving.kserve.io/stop: "false"`` (as the dashboard's Start does); optionally wait until ready.

        Raises:
            NotFound: a model is not deployed.
            NotReady: a model is being deleted, or (``wait``) fails to start or the timeout passes.
            Conflict: Helm manages a model's InferenceService (unless ``force``).
        """
        models = select_models(rendered, names)
        if not force:
            refuse_helm_stop(self.cluster, rendered, models)
        changes = [self._set_stopped(rendered.spec.namespace, m.name, False) for m in models]
        started = [c.name for c in changes]
        statuses = (self.wait(rendered, started, timeout_s=timeout_s, progress=progress) if wait
                    else self.status(rendered, started))
        notes = [f"{m.name}: stopped: true in the config: the next `poolserve deploy` stops it again"
                 for m in models if m.stopped]
        return DeployResult(target="cluster", changes=tuple(changes), statuses=tuple(statuses), notes=tuple(notes))

    def _set_stopped(self, namespace: str, name: str, stopped: bool) -> ObjectChange:
        """Flip the stop annotation with server-side apply, as field manager poolserve, touching nothing else.

        The apply configuration is every field poolserve applied before, at its live value
        (:func:`poolserve.targets.cluster.ssa.extract`), plus the annotation: leaving one out would remove it.
        ``force`` takes the annotation over from whoever set it last (the dashboard's Stop button);
        every other field is applied at the value it has, so nothing else can conflict or change.
        """
        live = self.cluster.get(ISVC_API_VERSION, ISVC_KIND, name, namespace)
        if live is None:
            raise NotFound(f"InferenceService {namespace}/{name} does not exist", hint=f"run `poolserve deploy {name}`")
        if dig(live, "metadata", "deletionTimestamp"):
            raise NotReady(f"InferenceService {namespace}/{name} is {readiness.terminating_reason(live)}",
                           hint="wait until it is gone, then deploy again")
        if is_stopped(live) == stopped:
            return ObjectChange(ISVC_KIND, name, namespace, "unchanged",
                                "already stopped" if stopped else "already running")
        obj = ssa.extract(live, FIELD_MANAGER)
        obj["metadata"].setdefault("annotations", {})[STOP_ANNOTATION] = "true" if stopped else "false"
        self.cluster.apply(obj, force=True)
        return ObjectChange(ISVC_KIND, name, namespace, "stopped" if stopped else "started")

    # ---------------------------------------------------------------------------------------------
    # logs / delete / endpoint

    def logs(self, rendered: Rendered, name: str, *, previous: bool = False, follow: bool = False) -> Iterator[str]:
        """The kserve-container log of the newest predictor pod.

        Raises:
            NotFound: no pod (not deployed, or scaled to zero) or no previous container.
        """
        spec = rendered.spec
        rendered.model(name)
        ns = spec.namespace
        pods = self.cluster.pods(ns, label_selector=f"{ISVC_LABEL}={name}")
        if not pods:
            raise NotFound(f"no predictor pod for InferenceService {ns}/{name}",
                           hint=f"`poolserve status {name}` shows whether it is deployed")
        newest = max(pods, key=lambda p: (dig(p, "metadata", "creationTimestamp", default="") or "",
                                          p["metadata"]["name"]))
        return self.cluster.logs(ns, newest["metadata"]["name"], container=CONTAINER_NAME,
                                 previous=previous, follow=follow)

    def delete(self, rendered: Rendered, names: Sequence[str], *, runtimes: bool = False,
               force: bool = False) -> DeleteResult:
        """Delete the InferenceServices (and what is rendered with them); with ``runtimes`` also unused runtimes.

        A runtime another InferenceService still uses is kept unless ``force``.
        """
        spec = rendered.spec
        models = select_models(rendered, names)
        ns = spec.namespace
        changes: list[ObjectChange] = []
        notes: list[str] = []
        if not force:
            refuse_helm_delete(self.cluster, rendered, models, all_models=not names, runtimes=runtimes)
        for m in models:
            existed = self.cluster.delete(ISVC_API_VERSION, ISVC_KIND, m.name, ns)
            changes.append(ObjectChange(ISVC_KIND, m.name, ns, "deleted" if existed else "absent"))
            for obj in rendered.companions.get(m.name, ()):
                k = kind_of(obj)
                existed = self.cluster.delete(k.api_version, k.kind, obj["metadata"]["name"], ns)
                changes.append(ObjectChange(k.kind, obj["metadata"]["name"], ns, "deleted" if existed else "absent"))
        candidates = list(dict.fromkeys(
            [r.name for r in rendered.runtimes] if not names else [m.runtime.name for m in models]))
        if not runtimes:
            if candidates:
                notes.append(f"runtimes kept: {', '.join(candidates)} (--runtimes deletes those no InferenceService "
                             "uses)")
            return DeleteResult(target="cluster", changes=tuple(changes), notes=tuple(notes))
        deleted = {m.name for m in models}
        users: dict[str, list[str]] = {}
        for isvc in self.cluster.list(ISVC_API_VERSION, ISVC_KIND, ns):
            iname = isvc["metadata"]["name"]
            if iname in deleted or dig(isvc, "metadata", "deletionTimestamp"):
                continue
            rt = readiness.runtime_of(isvc)
            if rt:
                users.setdefault(rt, []).append(iname)
        for rt in candidates:
            using = users.get(rt, [])
            if using and not force:
                changes.append(ObjectChange(SR_KIND, rt, ns, "kept",
                                            note=f"used by {', '.join(using)}; --force deletes it anyway"))
                continue
            existed = self.cluster.delete(SR_API_VERSION, SR_KIND, rt, ns)
            note = f"was used by {', '.join(using)}" if using else None
            changes.append(ObjectChange(SR_KIND, rt, ns, "deleted" if existed else "absent", note=note))
        gone = {c.name for c in changes if c.kind == SR_KIND and c.action in ("deleted", "absent")}
        changes += delete_templates(self.cluster, rendered, gone)
        return DeleteResult(target="cluster", changes=tuple(changes), notes=tuple(notes))

    def endpoint(self, rendered: Rendered, name: str) -> Endpoint:
        """The route URL when exposed, else the internal URL; the SA token when the model has auth.

        Raises:
            NotFound: the InferenceService (or its token Secret) does not exist.
            NotReady: it is not ready, or its token is not filled in yet.
        """
        spec = rendered.spec
        model = rendered.model(name)
        ns = spec.namespace
        isvc = self.cluster.get(ISVC_API_VERSION, ISVC_KIND, name, ns)
        if isvc is None:
            raise NotFound(f"InferenceService {ns}/{name} does not exist", hint=f"run `poolserve deploy {name}`")
        conds = {c.get("type"): c.get("status") for c in dig(isvc, "status", "conditions", default=[]) or []}
        if conds.get("Ready") != "True":
            raise NotReady(f"InferenceService {ns}/{name} is not ready", hint=f"see `poolserve status {name}`")
        internal, route = readiness.urls(isvc, self.cluster.get("v1", "Service", predictor_name(name), ns))
        url = route or internal
        if not url:
            raise NotReady(f"InferenceService {ns}/{name} has no URL in its status yet")
        token = self._token(model) if model.auth else None
        return Endpoint(url=url.rstrip("/"), served_model=readiness.served_model_name(isvc) or model.model_id,
                        token=token)

    def _token(self, model: Model) -> str:
        name = token_secret_name(model.name)
        secret = self.cluster.get("v1", "Secret", name, model.namespace)
        if secret is None:
            raise NotFound(f"token Secret {model.namespace}/{name} of {model.name} (auth: true) does not exist",
                           hint=f"run `poolserve deploy {model.name}`")
        raw = dig(secret, "data", "token")
        if not raw:
            raise NotReady(f"token Secret {model.namespace}/{name} has no token yet",
                           hint="Kubernetes fills service-account-token Secrets within seconds; retry")
        return base64.b64decode(raw).decode()

    # ---------------------------------------------------------------------------------------------
    # diff

    def diff(self, rendered: Rendered, names: Sequence[str]) -> list[ObjectDiff]:
        """What ``deploy`` would change: server-side dry-run apply vs the live object, per object.

        The Namespace is compared locally (project users may not patch namespaces). A field another
        manager owns is diffed with force and flagged, since a real apply needs ``--force-conflicts``.
        """
        return diff_objects(self.cluster, deploy_objects(rendered, names))

    # ---------------------------------------------------------------------------------------------
    # cache warm

    def warm_cache(self, rendered: Rendered, names: Sequence[str], *, timeout_s: float,
                   progress: ProgressFn | None = None) -> CacheWarmResult:
        """Download the models into the cache PVC with a Job each: see :func:`.cachejob.warm`."""
        return cachejob.warm(self.cluster, rendered, names, timeout_s=timeout_s, progress=progress,
                             sleep=self.sleep, now=self.now, poll_s=self.poll_s)

