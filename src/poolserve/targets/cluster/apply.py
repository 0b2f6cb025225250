"""Server-side applying the rendered objects: which ones ``deploy`` applies, how, and what it would change.

- :func:`deploy_objects` selects exactly the rendered objects of the chosen models.
- :func:`apply_objects` applies them in render order as field manager poolserve, reporting
  created/configured/unchanged per object; a failure part-way names what was applied before it and
  what was not.
- :func:`retire_stale_autoscalers` deletes the autoscaler KServe leaves behind when a model's
  autoscaler class changes.
- :func:`diff_objects` is ``diff``: a server-side dry-run apply per object against the live one.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from poolserve.errors import Conflict, Forbidden, NotFound, NotReady, PoolserveError
from poolserve.kserve.dashboard import TEMPLATES_PATH
from poolserve.kserve.names import ISVC_KIND, SR_KIND, TEMPLATE_KIND, Manifest
from poolserve.kserve.render import Rendered, select_models
from poolserve.kserve.scaling import stale_autoscaler
from poolserve.targets.base import DeployOptions, ObjectChange, ObjectDiff
from poolserve.targets.cluster import readiness
from poolserve.targets.cluster.base import Cluster, kind_of, ref
from poolserve.targets.cluster.objects import (
    covers,
    dig,
    object_diff,
    owned_by,
    same_object,
    strip_server_fields,
)
from poolserve.targets.cluster.preflight import PreflightReport


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


def apply_objects(cluster: Cluster, objects: Sequence[Manifest], report: PreflightReport,
                  options: DeployOptions) -> list[ObjectChange]:
    """Server-side apply ``objects`` in order; what happened to each.

    The Namespace is applied only when preflight found its labels or annotations differ, and a
    Template an admin applied (preflight's ``templates_left``) is left as it is.

    Args:
        cluster: where to apply.
        objects: what :func:`deploy_objects` selected.
        report: what preflight found.
        options: dry run and forcing.

    Raises:
        PoolserveError: the apply's own error (same class, same exit code), its message extended by
            what was applied before the failure and what was not.
    """
    changes: list[ObjectChange] = []
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
            changes.append(_apply(cluster, obj, options))
        except PoolserveError as err:
            raise _partial_failure(err, changes, obj, objects[i + 1:]) from err
    return changes


def _apply(cluster: Cluster, obj: Manifest, options: DeployOptions) -> ObjectChange:
    k = kind_of(obj)
    name = obj["metadata"]["name"]
    ns = obj["metadata"].get("namespace") if k.namespaced else None
    live = cluster.get(k.api_version, k.kind, name, ns)
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
    result = cluster.apply(obj, dry_run=dry, force=options.force_conflicts or options.force)
    if live is None:
        return ObjectChange(k.kind, name, ns, "created")
    if same_object(live, result, obj, dry_run=dry):
        return ObjectChange(k.kind, name, ns, "unchanged")
    return ObjectChange(k.kind, name, ns, "configured")


def _partial_failure(err: PoolserveError, done: Sequence[ObjectChange], failed: Manifest,
                     pending: Sequence[Manifest]) -> PoolserveError:
    """The same error class (same exit code), its message extended by what was and was not applied."""
    applied = ", ".join(f"{c.kind.lower()}/{c.name} {c.action}" for c in done)
    rest = ", ".join(f"{o['kind'].lower()}/{o['metadata']['name']}" for o in (failed, *pending))
    what = f"applied before the failure: {applied}" if done else "nothing was applied"
    return err.with_message(f"{err.message}; {what}; not applied: {rest}")


def retire_stale_autoscalers(cluster: Cluster, objects: Sequence[Manifest], *, dry_run: bool,
                             notes: list[str]) -> list[ObjectChange]:
    """Delete the HPA or ScaledObject KServe left from an InferenceService's previous autoscaler class.

    Args:
        cluster: where to look and delete.
        objects: the applied objects (their InferenceServices are checked).
        dry_run: only say (in ``notes``) what deploy would remove.
        notes: where what cannot be checked or deleted is told.
    """
    out: list[ObjectChange] = []
    for isvc in objects:
        if isvc.get("kind") != ISVC_KIND:
            continue
        api_version, kind, name = stale_autoscaler(isvc)
        ns = isvc["metadata"].get("namespace")
        try:
            live = cluster.get(api_version, kind, name, ns)
        except NotFound:  # KEDA not installed: there is no ScaledObject to leave behind
            continue
        except Forbidden:
            # Project members often may not read KEDA's kinds; a stale HPA matters only for a keda model.
            if kind == "HorizontalPodAutoscaler":
                notes.append(f"cannot check for {ref(kind, name, ns)} left by a previous autoscaler: you may "
                             "not read HorizontalPodAutoscalers")
            continue
        if not owned_by(live, ISVC_KIND, isvc["metadata"]["name"]):
            continue
        why = (f"{ref(kind, name, ns)} is left from {isvc['metadata']['name']}'s previous autoscaler; KServe "
               "does not remove it and two autoscalers would fight over the replicas")
        if dry_run:
            notes.append(f"{why}: deploy removes it")
            continue
        try:
            cluster.delete(api_version, kind, name, ns)
        except Forbidden:
            notes.append(f"{why}: you may not delete it; ask an admin to `oc delete {kind.lower()} -n {ns} "
                         f"{name}`")
            continue
        out.append(ObjectChange(kind, name, ns, "deleted", note="left by the previous autoscaler class"))
    return out


def diff_objects(cluster: Cluster, objects: Sequence[Manifest]) -> list[ObjectDiff]:
    """What applying ``objects`` would change: server-side dry-run apply vs the live object, per object.

    The Namespace is compared locally (project users may not patch namespaces). A field another
    manager owns is diffed with force and flagged, since a real apply needs ``--force-conflicts``.
    """
    out: list[ObjectDiff] = []
    for obj in objects:
        k = kind_of(obj)
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace") if k.namespaced else None
        live = cluster.get(k.api_version, k.kind, name, ns)
        note = None
        if k.kind == "Namespace":
            desired = copy.deepcopy(live) if live is not None else copy.deepcopy(obj)
            for key in ("labels", "annotations"):
                wanted = obj["metadata"].get(key) or {}
                if wanted:
                    desired.setdefault("metadata", {}).setdefault(key, {}).update(wanted)
        else:
            try:
                desired = cluster.apply(obj, dry_run=True)
            except Conflict as err:
                desired = cluster.apply(obj, dry_run=True, force=True)
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
