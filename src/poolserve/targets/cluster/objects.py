"""Reading and comparing live objects (pure): lookups, identity after apply, and diffs.

Objects are unstructured dicts (:data:`~poolserve.kserve.compose.Manifest`), as the
:class:`~poolserve.targets.cluster.base.Cluster` returns them. This module owns how poolserve reads them
(:func:`dig`, metadata, labels, owners, timestamps) and how it compares what it applies with what the
server holds: :func:`strip_server_fields` drops what the server owns or defaults, :func:`same_object`
decides whether an apply changed anything, :func:`object_diff` shows what it would change.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from poolserve.config import yamlio
from poolserve.kserve.names import DEPLOYMENT_MODE, ISVC_KIND, Manifest
from poolserve.targets.base import ObjectDiff
from poolserve.targets.cluster import ssa
from poolserve.targets.cluster.base import FIELD_MANAGER

SERVER_META = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")
MODEL_FORMAT_ANNOTATION = "modelFormat"


def dig(obj: Any, *path: str | int, default: Any = None) -> Any:
    """``dig(pod, "status", "phase")``: nested lookup through dicts and lists, ``default`` when absent."""
    cur = obj
    for key in path:
        if isinstance(key, int):
            if not isinstance(cur, list) or not -len(cur) <= key < len(cur):
                return default
            cur = cur[key]
        else:
            if not isinstance(cur, dict) or key not in cur:
                return default
            cur = cur[key]
    return cur


def meta(obj: Manifest | None) -> dict[str, Any]:
    """The object's ``metadata`` (empty for None or when absent)."""
    return (obj or {}).get("metadata") or {}


def labels(obj: Manifest | None) -> dict[str, str]:
    """The object's ``metadata.labels`` (empty when absent)."""
    return meta(obj).get("labels") or {}


def labelled(objs: Sequence[Manifest], key: str, value: str) -> list[Manifest]:
    """The objects whose label ``key`` is ``value``."""
    return [o for o in objs if labels(o).get(key) == value]


def owned_by(obj: Manifest | None, kind: str, name: str) -> bool:
    """An ``ownerReferences`` entry of the object names ``kind``/``name``."""
    owners = dig(obj, "metadata", "ownerReferences", default=None) or []
    return any(o.get("kind") == kind and o.get("name") == name for o in owners)


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 (``2026-01-01T00:00:00Z``) -> aware datetime, or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def covers(live: Any, wanted: Any) -> bool:
    """Every field of ``wanted`` has the same value in ``live`` (lists compared whole)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(k in live and covers(live[k], v) for k, v in wanted.items())
    return bool(live == wanted)


def strip_server_fields(obj: Manifest) -> Manifest:
    """A copy without what the server owns or defaults, for comparing with what we apply.

    Drops status and system metadata; KServe >= 0.17's defaulter adds the ``modelFormat`` annotation
    and rewrites ``deploymentMode: RawDeployment`` to ``Standard`` (treated as equal).
    """
    out = copy.deepcopy(obj)
    out.pop("status", None)
    md = out.get("metadata") or {}
    for key in SERVER_META:
        md.pop(key, None)
    ann = md.get("annotations")
    if isinstance(ann, dict):
        if out.get("kind") == ISVC_KIND:
            ann.pop(MODEL_FORMAT_ANNOTATION, None)
        if ann.get(DEPLOYMENT_MODE) == "Standard":
            ann[DEPLOYMENT_MODE] = "RawDeployment"
        if not ann:
            md.pop("annotations", None)
    return out


def applied_fields(obj: Manifest) -> Mapping[str, Any] | None:
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
    ours = applied_fields(before)
    return (ours is not None and ours == applied_fields(after)
            and dig(before, "metadata", "generation") == dig(after, "metadata", "generation")
            and covers(strip_server_fields(before), strip_server_fields(applied)))


def object_diff(live: Manifest | None, desired: Manifest) -> ObjectDiff:
    """Unified YAML diff of the live object and what it becomes after apply (server fields ignored)."""
    md = meta(desired)
    ns = f"{md['namespace']}/" if md.get("namespace") else ""
    label = f"{desired.get('kind')}/{ns}{md.get('name')}"
    new_text = yamlio.dump(strip_server_fields(desired))
    old_text = yamlio.dump(strip_server_fields(live)) if live is not None else ""
    text = "".join(difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=f"live/{label}" if live is not None else "/dev/null",
                                        tofile=f"poolserve/{label}"))
    action: Literal["create", "update", "none"] = "create" if live is None else ("update" if text else "none")
    return ObjectDiff(str(desired.get("kind")), str(md.get("name")), md.get("namespace"), action, text)
