"""The ``cluster`` target: deploy, status, wait, logs, delete, endpoint, diff and cache warm on KServe.

:class:`ClusterTarget` implements :class:`poolserve.targets.base.Target` on any
:class:`~poolserve.targets.cluster.base.Cluster` (the real :class:`~poolserve.targets.cluster.kube.KubeCluster` or the
in-memory :class:`~poolserve.targets.cluster.fake.cluster.FakeCluster`); its clock and sleep are injectable, so waits
are tested without waiting.

- ``deploy`` runs :func:`poolserve.targets.cluster.preflight.preflight`, then server-side applies exactly the rendered
  objects of the selected models (their InferenceServices and auth objects, the runtimes they use and
  the namespace), reporting created/configured/unchanged per object. A failure part-way names what
  was applied before it and what was not.
- ``status`` makes one list call per kind for the namespace (not one per model) and derives each
  model's state with :func:`poolserve.targets.cluster.readiness.model_status`; when a runtime names a dashboard
  Template, it lists the Templates of the dashboard namespace and the project (once each) and warns
  when the dashboard would find none (:func:`poolserve.kserve.dashboard.template_warning`).
- ``wait`` polls status against a monotonic deadline, checks before it sleeps, and fails fast with the
  diagnosis when a model cannot start (CrashLoopBackOff, ImagePullBackOff, Unschedulable, ...).
"""

from __future__ import annotations

import base64
import copy
import difflib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from poolserve.config import yamlio
from poolserve.config.schema import Model
from poolserve.errors import Conflict, Forbidden, NotFound, NotReady, PoolserveError
from poolserve.kserve import compose as kserve
from poolserve.kserve.compose import (
    ISVC_API_VERSION,
    ISVC_KIND,
    ISVC_LABEL,
    SR_API_VERSION,
    SR_KIND,
    TEMPLATE_API_VERSION,
    TEMPLATE_KIND,
    Manifest,
    predictor_name,
    template_namespace,
    template_scope,
    token_secret_name,
)
from poolserve.kserve.dashboard import TEMPLATES_PATH, matches, template_name_of, template_warning
from poolserve.kserve.render import Rendered, select_models
from poolserve.targets.base import (
    DeleteResult,
    DeployOptions,
    DeployResult,
    Endpoint,
    ModelStatus,
    ObjectChange,
    ProgressFn,
    TargetName,
)
from poolserve.targets.cluster import cachejob, readiness, ssa
from poolserve.targets.cluster.base import FIELD_MANAGER, LOG_TAIL, Cluster, covers, dig, duration, kind_of, ref
from poolserve.targets.cluster.preflight import preflight
from poolserve.targets.wait import Clock, wait_ready

POLL_S = 5.0
ROLLOUT_GRACE_S = 30.0
"""After an InferenceService changed, how long ``status`` waits for KServe to touch its Deployment
before trusting the (still old) Ready condition."""
SERVER_META = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")
MODEL_FORMAT_ANNOTATION = "modelFormat"
MANAGED_BY = "app.kubernetes.io/managed-by"
HELM_RELEASE = "meta.helm.sh/release-name"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------------
# Pure helpers: selection, comparison, diff.


def deploy_objects(rendered: Rendered, names: Sequence[str], *, runtimes_only: bool = False) -> list[Manifest]:
    """Exactly the rendered objects ``deploy`` applies, in render order.

    All manifests when no names are given; otherwise the namespace, the dashboard Templates and the
    runtimes the named models use, their InferenceServices and what is rendered with them (auth objects,
    disruption budgets, PodMonitors). ``runtimes_only``: just the Templates and the ServingRuntimes.
    """
    models = select_models(rendered, names)
    runtimes = {m.runtime.name for m in models}
    patterns = {m.runtime.pattern for m in models}
    isvcs = {m.name for m in models}
    auth = {(o["kind"], o["metadata"]["name"]) for m in models for o in rendered.companions.get(m.name, ())}
    out: list[Manifest] = []
    for obj in rendered.manifests:
        kind, name = obj.get("kind"), obj.get("metadata", {}).get("name")
        if kind == SR_KIND:
            if not names or name in runtimes:
                out.append(obj)
        elif kind == TEMPLATE_KIND:
            if not names or obj["objects"][0]["metadata"]["name"] in patterns:
                out.append(obj)
        elif runtimes_only:
            continue
        elif not names or kind == "Namespace" or (kind == ISVC_KIND and name in isvcs) or (kind, name) in auth:
            out.append(obj)
    return out


def helm_managed(live: Manifest | None) -> str | None:
    """How Helm manages a live object (label ``app.kubernetes.io/managed-by: Helm``), else None.

    ``release NAME``, or ``a chart`` for objects Helm rendered but did not install (Argo CD, ``helm template``).
    """
    meta = (live or {}).get("metadata") or {}
    if (meta.get("labels") or {}).get(MANAGED_BY) != "Helm":
        return None
    release = (meta.get("annotations") or {}).get(HELM_RELEASE)
    return f"release {release}" if release else "a chart"


def strip_server_fields(obj: Manifest) -> Manifest:
    """A copy without what the server owns or defaults, for comparing with what we apply.

    Drops status and system metadata; KServe >= 0.17's defaulter adds the ``modelFormat`` annotation
    and rewrites ``deploymentMode: RawDeployment`` to ``Standard`` (treated as equal).
    """
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in SERVER_META:
        meta.pop(key, None)
    ann = meta.get("annotations")
    if isinstance(ann, dict):
        if out.get("kind") == ISVC_KIND:
            ann.pop(MODEL_FORMAT_ANNOTATION, None)
        if ann.get(kserve.DEPLOYMENT_MODE) == "Standard":
            ann[kserve.DEPLOYMENT_MODE] = "RawDeployment"
        if not ann:
            meta.pop("annotations", None)
    return out


def _applied_fields(obj: Manifest) -> Any:
    """The ``fieldsV1`` of our server-side apply entry in ``managedFields`` (None when absent)."""
    return ssa.applied_fields(obj, FIELD_MANAGER)


def same_object(before: Manifest, after: Manifest, applied: Manifest, *, dry_run: bool) -> bool:
    """Did applying ``applied`` leave the object as it was (``before`` read just before, ``after`` the answer)?

    The same resourceVersion says so at once. A different one may come from another writer in
    between: KServe updates an InferenceService's status (and adds its finalizer) while poolserve reads
    and applies. So it is also unchanged when only server-owned fields moved, or when everything we
    apply was already there, our set of fields is the same and the generation did not move.
    """
    rv_before = dig(before, "metadata", "resourceVersion")
    rv_after = dig(after, "metadata", "resourceVersion")
    if not dry_run and rv_before and rv_before == rv_after:
        return True
    if strip_server_fields(before) == strip_server_fields(after):
        return True
    ours = _applied_fields(before)
    return (ours is not None and ours == _applied_fields(after)
            and dig(before, "metadata", "generation") == dig(after, "metadata", "generation")
            and covers(strip_server_fields(before), strip_server_fields(applied)))


@dataclass(frozen=True)
class ObjectDiff:
    """What ``apply`` would change on one object."""

    kind: str
    name: str
    namespace: str | None
    action: Literal["create", "update", "none"]
    diff: str
    note: str | None = None


def object_diff(live: Manifest | None, desired: Manifest) -> ObjectDiff:
    """Unified YAML diff of the live object and what it becomes after apply (server fields ignored)."""
    meta = desired.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    label = f"{desired.get('kind')}/{ns}{meta.get('name')}"
    new_text = yamlio.dump(strip_server_fields(desired))
    old_text = yamlio.dump(strip_server_fields(live)) if live is not None else ""
    text = "".join(difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=f"live/{label}" if live is not None else "/dev/null",
                                        tofile=f"poolserve/{label}"))
    action: Literal["create", "update", "none"] = "create" if live is None else ("update" if text else "none")
    return ObjectDiff(str(desired.get("kind")), str(meta.get("name")), meta.get("namespace"), action, text)


def _partial_failure(err: PoolserveError, done: Sequence[ObjectChange], failed: Manifest,
                     pending: Sequence[Manifest]) -> PoolserveError:
    """The same error class (same exit code), its message extended by what was and was not applied."""
    applied = ", ".join(f"{c.kind.lower()}/{c.name} {c.action}" for c in done)
    rest = ", ".join(f"{o['kind'].lower()}/{o['metadata']['name']}" for o in (failed, *pending))
    what = f"applied before the failure: {applied}" if done else "nothing was applied"
    return err.with_message(f"{err.message}; {what}; not applied: {rest}")


# --------------------------------------------------------------------------------------------------


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
            self._refuse_helm_objects([o for o in objects if o.get("kind") != "Namespace"], "upgrade")
        notes = [f"cluster {report.server_version}, KServe {report.kserve}", *report.notes]
        changes: list[ObjectChange] = []
        # Predictor Deployment generations before anything is applied: a fast controller may roll
        # the change out before we could read them afterwards (see _rollout_pending).
        before = self._generations(spec.namespace) if options.dry_run is None else {}
        for i, obj in enumerate(objects):
            if obj.get("kind") == "Namespace" and not report.namespace_needs_apply:
                changes.append(ObjectChange("Namespace", obj["metadata"]["name"], None, "unchanged"))
                continue
            left = report.templates_left.get(obj["metadata"]["name"]) if obj.get("kind") == TEMPLATE_KIND else None
            if left is not None:  # an admin applied it; this user may not touch it
                changes.append(ObjectChange(TEMPLATE_KIND, obj["metadata"]["name"], obj["metadata"]["namespace"],
                                            left[0], note=left[1]))  # type: ignore[arg-type]
                continue
            try:
                changes.append(self._apply(obj, options))
            except PoolserveError as err:
                raise _partial_failure(err, changes, obj, objects[i + 1:]) from err
        if options.dry_run is None:
            self._record_rollouts(spec.namespace, changes, before)
        if options.dry_run != "client":
            changes += self._retire_stale_autoscalers(objects, dry_run=options.dry_run == "server", notes=notes)
        if changes and all(c.action == "unchanged" for c in changes):
            notes.append(f"no changes: all {len(changes)} objects already match the config")
        statuses: list[ModelStatus] = []
        if wait and options.dry_run is None and not options.runtimes_only and models:
            statuses = self.wait(rendered, [m.name for m in models], timeout_s=timeout_s, progress=progress)
        return DeployResult(target="cluster", changes=tuple(changes), statuses=tuple(statuses),
                            dry_run=options.dry_run, notes=tuple(notes), warnings=report.warnings)

    def _refuse_helm_objects(self, objects: Sequence[Manifest], verb: str, *, advice: str = "") -> None:
        """Change nothing when Helm manages any of ``objects``: two tools must never fight over one object.

        Raises:
            Conflict: naming the first such object and the ``helm`` command to use instead.
        """
        owned: list[tuple[str, str, str | None]] = []
        for obj in objects:
            k = kind_of(obj)
            name = obj["metadata"]["name"]
            ns = obj["metadata"].get("namespace") if k.namespaced else None
            how = helm_managed(self.cluster.get(k.api_version, k.kind, name, ns))
            if how is not None:
                owned.append((ref(k.kind, name, ns), how, ns))
        if owned:
            what, how, ns = owned[0]
            more = f" (and {len(owned) - 1} more)" if len(owned) > 1 else ""
            release = how.removeprefix("release ") if how.startswith("release ") else "RELEASE"
            raise Conflict(f"{what}{more} is managed by Helm ({how}): {advice}use `helm {verb} {release}"
                           f"{f' -n {ns}' if ns else ''}`, or --force to take it over")

    def _apply(self, obj: Manifest, options: DeployOptions) -> ObjectChange:
        k = kind_of(obj)
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace") if k.namespaced else None
        live = self.cluster.get(k.api_version, k.kind, name, ns)
        if live is not None and dig(live, "metadata", "deletionTimestamp"):
            # Applying to it succeeds and changes nothing: it would still disappear a moment later.
            raise NotReady(f"{ref(k.kind, name, ns)} is still {readiness.terminating_reason(live)}",
                           hint="wait until it is gone (a `poolserve delete` moments ago?), then deploy again")
        if options.dry_run == "client":
            same = live is not None and covers(strip_server_fields(live), strip_server_fields(obj))
            action = "created" if live is None else ("unchanged" if same else "configured")
            return ObjectChange(k.kind, name, ns, action)  # type: ignore[arg-type]
        dry = options.dry_run == "server"
        # Taking over from Helm (--force) means taking over the fields its field manager owns too.
        result = self.cluster.apply(obj, dry_run=dry, force=options.force_conflicts or options.force)
        if live is None:
            return ObjectChange(k.kind, name, ns, "created")
        if same_object(live, result, obj, dry_run=dry):
            return ObjectChange(k.kind, name, ns, "unchanged")
        return ObjectChange(k.kind, name, ns, "configured")

    def _retire_stale_autoscalers(self, objects: Sequence[Manifest], *, dry_run: bool,
                                  notes: list[str]) -> list[ObjectChange]:
        """Delete the HPA or ScaledObject KServe left from an InferenceService's previous autoscaler class."""
        out: list[ObjectChange] = []
        for isvc in objects:
            if isvc.get("kind") != ISVC_KIND:
                continue
            api_version, kind, name = kserve.stale_autoscaler(isvc)
            ns = isvc["metadata"].get("namespace")
            try:
                live = self.cluster.get(api_version, kind, name, ns)
            except NotFound:  # KEDA not installed: there is no ScaledObject to leave behind
                continue
            except Forbidden:
                # Project members often may not read KEDA's kinds; a stale HPA matters only for a keda model.
                if kind == "HorizontalPodAutoscaler":
                    notes.append(f"cannot check for {ref(kind, name, ns)} left by a previous autoscaler: you may "
                                 "not read HorizontalPodAutoscalers")
                continue
            owners = dig(live, "metadata", "ownerReferences", default=None) or []
            if not any(o.get("kind") == ISVC_KIND and o.get("name") == isvc["metadata"]["name"] for o in owners):
                continue
            why = (f"{ref(kind, name, ns)} is left from {isvc['metadata']['name']}'s previous autoscaler; KServe "
                   "does not remove it and two autoscalers would fight over the replicas")
            if dry_run:
                notes.append(f"{why}: deploy removes it")
                continue
            try:
                self.cluster.delete(api_version, kind, name, ns)
            except Forbidden:
                notes.append(f"{why}: you may not delete it; ask an admin to `oc delete {kind.lower()} -n {ns} "
                             f"{name}`")
                continue
            out.append(ObjectChange(kind, name, ns, "deleted", note="left by the previous autoscaler class"))
        return out

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
        warnings = self._template_warnings(rendered, {s.runtime for s in statuses if s.runtime}, snap)
        return [replace(s, warnings=(*s.warnings, warnings[s.runtime])) if s.runtime in warnings else s
                for s in statuses]

    def _template_warnings(self, rendered: Rendered, used: set[str], snap: Snapshot) -> dict[str, str]:
        """Runtime name -> the "Template removed" warning, for the used runtimes that name a Template.

        Lists the Templates of the dashboard namespace and of the project once each, and only when some
        runtime names one. No Template API (not OpenShift): no dashboard, no warning.
        """
        spec = rendered.spec
        named = {n: sr for n, sr in snap.runtimes.items() if n in used and template_name_of(sr)}
        if not named:
            return {}
        dash_ns = spec.dashboard.templates_namespace
        listed = True
        try:
            dash = self.cluster.list(TEMPLATE_API_VERSION, TEMPLATE_KIND, dash_ns)
        except NotFound:
            return {}
        except Forbidden:
            dash, listed = [], False
        try:
            project = dash if dash_ns == spec.namespace else self.cluster.list(
                TEMPLATE_API_VERSION, TEMPLATE_KIND, spec.namespace)
        except Forbidden:
            project = []
        out: dict[str, str] = {}
        for name, sr in named.items():
            warning = template_warning(spec, sr, dashboard_templates=dash, project_templates=project,
                                       dashboard_listed=listed)
            if warning is not None:
                out[name] = warning
        return out

    def _model_status(self, name: str, namespace: str, snap: Snapshot) -> ModelStatus:
        def of(objs: Sequence[Manifest]) -> list[Manifest]:
            return [o for o in objs if (dig(o, "metadata", "labels", default={}) or {}).get(ISVC_LABEL) == name]

        deployments, pods = of(snap.deployments), of(snap.pods)
        kwargs: dict[str, Any] = {
            "isvc": snap.isvcs.get(name), "now": self.clock(), "deployments": deployments, "pods": pods,
            "events": snap.events, "service": snap.services.get(predictor_name(name)), "runtimes": snap.runtimes,
            "rollout_pending": self._rollout_pending(name, deployments),
        }
        st = readiness.model_status(name, **kwargs)
        dep = next((d for d in deployments if d["metadata"]["name"] == predictor_name(name)), None)
        current = readiness.split_rollout(pods, dep)[0]
        crashed = [p for p in current if _crashing(p)]
        restarted = [p for p in current if readiness.restarted_unexplained(p)]
        unexplained = st.phase == "Failed" and crashed and "CrashLoopBackOff: kserve-container exited" in (
            st.reason or "")
        if unexplained or (restarted and not crashed):
            # The termination message did not explain the crash or the restart (vLLM exits 0 when its engine
            # dies, and FallbackToLogsOnError keeps no log then): read the previous container's log.
            logs: dict[str, list[str]] = {}
            for p in (crashed or restarted)[:1]:
                pname = p["metadata"]["name"]
                try:
                    logs[pname] = list(self.cluster.logs(namespace, pname, container=kserve.CONTAINER_NAME,
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
            self._refuse_helm_stop(rendered, models)
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
            self._refuse_helm_stop(rendered, models)
        changes = [self._set_stopped(rendered.spec.namespace, m.name, False) for m in models]
        started = [c.name for c in changes]
        statuses = (self.wait(rendered, started, timeout_s=timeout_s, progress=progress) if wait
                    else self.status(rendered, started))
        notes = [f"{m.name}: stopped: true in the config: the next `poolserve deploy` stops it again"
                 for m in models if m.stopped]
        return DeployResult(target="cluster", changes=tuple(changes), statuses=tuple(statuses), notes=tuple(notes))

    def _refuse_helm_stop(self, rendered: Rendered, models: Sequence[Model]) -> None:
        """Flip nothing on InferenceServices Helm manages.

        poolserve would own the stop annotation, and the next ``helm upgrade`` of a model the values
        mark ``stopped`` would fail on the conflict.

        Raises:
            Conflict: naming the first such InferenceService, the ``stopped`` key and the helm command.
        """
        wanted = {m.name for m in models}
        self._refuse_helm_objects([isvc for _, isvc in rendered.objects_by_model.values()
                                   if isvc["metadata"]["name"] in wanted], "upgrade",
                                  advice="set models[].stopped in the values and ")

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
        if kserve.is_stopped(live) == stopped:
            return ObjectChange(ISVC_KIND, name, namespace, "unchanged",
                                "already stopped" if stopped else "already running")
        obj = ssa.extract(live, FIELD_MANAGER)
        obj["metadata"].setdefault("annotations", {})[kserve.STOP_ANNOTATION] = "true" if stopped else "false"
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
        spec.model(name)
        ns = spec.namespace
        pods = self.cluster.pods(ns, label_selector=f"{ISVC_LABEL}={name}")
        if not pods:
            raise NotFound(f"no predictor pod for InferenceService {ns}/{name}",
                           hint=f"`poolserve status {name}` shows whether it is deployed")
        newest = max(pods, key=lambda p: (dig(p, "metadata", "creationTimestamp", default="") or "",
                                          p["metadata"]["name"]))
        return self.cluster.logs(ns, newest["metadata"]["name"], container=kserve.CONTAINER_NAME,
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
            # What this delete would remove: the InferenceServices and what goes with them (auth objects, budget,
            # PodMonitor), maybe their runtimes and those runtimes' Templates.
            doomed = {(ISVC_KIND, m.name) for m in models}
            doomed |= {(o["kind"], o["metadata"]["name"]) for m in models for o in rendered.companions.get(m.name, ())}
            if runtimes:
                chosen = rendered.runtimes if not names else [m.runtime for m in models]
                doomed |= {(SR_KIND, r.name) for r in chosen}
                doomed |= {(TEMPLATE_KIND, t["metadata"]["name"]) for t in rendered.templates
                           if t["objects"][0]["metadata"]["name"] in {r.pattern for r in chosen}}
            self._refuse_helm_objects([o for o in rendered.manifests
                                       if (o["kind"], o["metadata"]["name"]) in doomed], "uninstall")
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
        patterns = {r.pattern for r in rendered.runtimes if r.name in gone}
        for template in rendered.templates:
            if template["objects"][0]["metadata"]["name"] in patterns:
                changes.append(self._delete_template(rendered, template, gone))
        return DeleteResult(target="cluster", changes=tuple(changes), notes=tuple(notes))

    def _delete_template(self, rendered: Rendered, template: Manifest, gone: set[str]) -> ObjectChange:
        """Delete a dashboard Template poolserve applied, unless a ServingRuntime still names it.

        A runtime names it when its ``opendatahub.io/template-name`` is the Template's
        ``metadata.name`` or ``objects[0].metadata.name`` (the dashboard's match). A global Template
        may be named from any project, so the runtimes of every namespace are read; when the user
        may not list them, it is kept.
        """
        spec = rendered.spec
        name = template["metadata"]["name"]
        tns = template_namespace(spec)
        scope_ns = spec.namespace if template_scope(spec) == "project" else None
        try:
            runtimes = self.cluster.list(SR_API_VERSION, SR_KIND, scope_ns)
        except Forbidden:
            return ObjectChange(TEMPLATE_KIND, name, tns, "kept", note="you may not list ServingRuntimes in all "
                                "namespaces, so runtimes of other projects may still name it")
        users = sorted(f"{dig(sr, 'metadata', 'namespace')}/{sr['metadata']['name']}" for sr in runtimes
                       if matches(template, template_name_of(sr) or "")
                       and not dig(sr, "metadata", "deletionTimestamp")
                       and not (dig(sr, "metadata", "namespace") == spec.namespace and sr["metadata"]["name"] in gone))
        if users:
            return ObjectChange(TEMPLATE_KIND, name, tns, "kept", note=f"named by {', '.join(users)}")
        live = self.cluster.get(TEMPLATE_API_VERSION, TEMPLATE_KIND, name, tns)
        if live is None:
            return ObjectChange(TEMPLATE_KIND, name, tns, "absent")
        if _applied_fields(live) is None:
            return ObjectChange(TEMPLATE_KIND, name, tns, "kept", note="not applied by poolserve")
        try:
            existed = self.cluster.delete(TEMPLATE_API_VERSION, TEMPLATE_KIND, name, tns)
        except Forbidden:
            return ObjectChange(TEMPLATE_KIND, name, tns, "kept", note=f"you may not delete Templates in {tns}: "
                                f"an admin can (`oc delete template {name} -n {tns}`)")
        return ObjectChange(TEMPLATE_KIND, name, tns, "deleted" if existed else "absent")

    def endpoint(self, rendered: Rendered, name: str) -> Endpoint:
        """The route URL when exposed, else the internal URL; the SA token when the model has auth.

        Raises:
            NotFound: the InferenceService (or its token Secret) does not exist.
            NotReady: it is not ready, or its token is not filled in yet.
        """
        spec = rendered.spec
        model = spec.model(name)
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
        out: list[ObjectDiff] = []
        for obj in deploy_objects(rendered, names):
            k = kind_of(obj)
            name = obj["metadata"]["name"]
            ns = obj["metadata"].get("namespace") if k.namespaced else None
            live = self.cluster.get(k.api_version, k.kind, name, ns)
            note = None
            if k.kind == "Namespace":
                desired = copy.deepcopy(live) if live is not None else copy.deepcopy(obj)
                for key in ("labels", "annotations"):
                    wanted = obj["metadata"].get(key) or {}
                    if wanted:
                        desired.setdefault("metadata", {}).setdefault(key, {}).update(wanted)
            else:
                try:
                    desired = self.cluster.apply(obj, dry_run=True)
                except Conflict as err:
                    desired = self.cluster.apply(obj, dry_run=True, force=True)
                    note = f"apply needs --force-conflicts ({err.message})"
                except Forbidden as err:
                    if k.kind != TEMPLATE_KIND:
                        raise
                    # A project member may read the dashboard's Templates but not write them: compare locally.
                    desired = copy.deepcopy(obj)
                    note = f"you may not apply it ({err.message}): an admin runs `oc apply -f {TEMPLATES_PATH}`"
            d = object_diff(live, desired)
            out.append(ObjectDiff(d.kind, d.name, d.namespace, d.action, d.diff, note))
        return out

    # ---------------------------------------------------------------------------------------------
    # cache warm

    def warm_cache(self, rendered: Rendered, names: Sequence[str], *, timeout_s: float,
                   progress: ProgressFn | None = None) -> cachejob.CacheWarmResult:
        """Download the models into the cache PVC with a Job each: see :func:`.cachejob.warm`."""
        return cachejob.warm(self.cluster, rendered, names, timeout_s=timeout_s, progress=progress,
                             sleep=self.sleep, now=self.now, poll_s=self.poll_s)


def _crashing(p: Manifest) -> bool:
    for cs in dig(p, "status", "containerStatuses", default=[]) or []:
        if cs.get("name") == kserve.CONTAINER_NAME and dig(cs, "state", "waiting", "reason") == "CrashLoopBackOff":
            return True
    return False
