"""Server-side apply in memory: field ownership per manager, conflicts, removal, ``managedFields``.

What :class:`~poolserve.targets.cluster.fake.cluster.FakeCluster` stores beside each object is who owns which
leaf field (``{path: {manager, ...}}``). :func:`apply_fields` computes an apply as the API server does, close
enough to report created/configured/unchanged: a field another manager set to a different value is a
conflict unless ``force``; a field poolserve alone owned and no longer applies is removed; lists are
atomic (``+listType=atomic``). :func:`managed_fields` renders the ownership back as ``managedFields``;
:func:`kserve_defaulter` is KServe's mutating webhook.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from poolserve.kserve.names import DEPLOYMENT_MODE, ISVC_KIND, Manifest
from poolserve.targets.cluster.base import FIELD_MANAGER, Kind, conflict

Path_ = tuple[str, ...]
Owners = dict[Path_, set[str]]
"""Leaf field path -> the field managers that own it."""
Defaulter = Callable[[Manifest], None]

_SYSTEM_META = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")
_IDENTITY: set[Path_] = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def kserve_defaulter(obj: Manifest) -> None:
    """KServe >= 0.17's InferenceService defaulter: ``RawDeployment`` -> ``Standard``, ``modelFormat`` annotation."""
    if obj.get("kind") != ISVC_KIND:
        return
    ann = obj.setdefault("metadata", {}).setdefault("annotations", {})
    if ann.get(DEPLOYMENT_MODE) == "RawDeployment":
        ann[DEPLOYMENT_MODE] = "Standard"
    fmt = obj.get("spec", {}).get("predictor", {}).get("model", {}).get("modelFormat", {}).get("name")
    if fmt:
        ann["modelFormat"] = fmt


def leaves(value: Any, prefix: Path_ = ()) -> dict[Path_, Any]:
    """Leaf paths of a manifest (lists are atomic, as with ``+listType=atomic``)."""
    if isinstance(value, dict) and value:
        out: dict[Path_, Any] = {}
        for k, v in value.items():
            out.update(leaves(v, (*prefix, str(k))))
        return out
    return {prefix: value}


def applied_leaves(obj: Manifest) -> dict[Path_, Any]:
    """The leaf fields an apply of ``obj`` sets: neither its identity, nor status, nor system metadata."""
    return {p: v for p, v in leaves(obj).items()
            if p not in _IDENTITY and p[:1] != ("status",) and not (p[:1] == ("metadata",) and p[1] in _SYSTEM_META)}


def get_path(obj: Any, path: Path_) -> tuple[bool, Any]:
    """``(found, value)`` at ``path`` through nested dicts."""
    cur = obj
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return False, None
        cur = cur[key]
    return True, cur


def set_path(obj: dict[str, Any], path: Path_, value: Any) -> None:
    """Set (a copy of) ``value`` at ``path``, creating the dicts on the way."""
    cur = obj
    for key in path[:-1]:
        nxt = cur.get(key)
        if not isinstance(nxt, dict):
            nxt = cur[key] = {}
        cur = nxt
    cur[path[-1]] = copy.deepcopy(value)


def remove_path(obj: dict[str, Any], path: Path_) -> None:
    """Remove the field at ``path``, and the dicts this leaves empty."""
    parents: list[tuple[dict[str, Any], str]] = []
    cur: Any = obj
    for key in path[:-1]:
        if not isinstance(cur, dict) or key not in cur:
            return
        parents.append((cur, key))
        cur = cur[key]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)
    for parent, key in reversed(parents):  # prune the dicts this left empty
        if parent[key] == {}:
            del parent[key]
        else:
            break


def comparable(obj: Manifest) -> Manifest:
    """A copy without resourceVersion and managedFields: equal to another when an apply changed nothing."""
    out = copy.deepcopy(obj)
    meta = out.get("metadata", {})
    for k in ("resourceVersion", "managedFields"):
        meta.pop(k, None)
    return out


def apply_fields(k: Kind, name: str, namespace: str | None, live: Manifest | None, owners: Mapping[Path_, set[str]],
                 obj: Manifest, *, force: bool) -> tuple[Manifest, Owners]:
    """The object after :data:`~poolserve.targets.cluster.base.FIELD_MANAGER` applies ``obj``, and its new owners.

    Without ``live`` the object is created from ``obj`` (identity and applied fields only; the caller adds
    the server's metadata). Otherwise the applied fields are set on a copy of ``live``, and the fields
    poolserve alone owned but no longer applies are removed; ``force`` takes over clashing fields.

    Args:
        k: the object's kind.
        name: its name.
        namespace: its namespace (None when cluster-scoped).
        live: the stored object, or None.
        owners: who owns which field of ``live``.
        obj: what is applied.
        force: take over fields other managers own instead of failing.

    Raises:
        Conflict: another manager owns a field ``obj`` sets to a different value (without ``force``).
    """
    applied = applied_leaves(obj)
    if live is None:
        new: Manifest = {"apiVersion": k.api_version, "kind": k.kind,
                         "metadata": {"name": name, **({"namespace": namespace} if namespace else {})}}
        for path, value in applied.items():
            set_path(new, path, value)
        return new, {p: {FIELD_MANAGER} for p in applied}
    mine = {p: set(m) for p, m in owners.items()}
    clashes = sorted(
        (p, m) for p, ms in mine.items() if p in applied for m in ms
        if m != FIELD_MANAGER and get_path(live, p)[1] != applied[p]
    )
    if clashes and not force:
        managers = sorted({m for _, m in clashes})
        fields = ", ".join("." + ".".join(p) for p, _ in clashes)
        raise conflict(k.kind, name, namespace,
                       f"Apply failed with {len(clashes)} conflict{'s' if len(clashes) > 1 else ''}: "
                       f"conflict with {', '.join(f'{chr(34)}{m}{chr(34)}' for m in managers)} using "
                       f"{k.api_version}: "
                       f"{fields}")
    new = copy.deepcopy(live)
    for path, ms in list(mine.items()):
        if ms == {FIELD_MANAGER} and path not in applied:  # we stopped applying it: remove
            remove_path(new, path)
            del mine[path]
    for path, value in applied.items():
        set_path(new, path, value)
        holders = mine.setdefault(path, set())
        if force:
            holders.clear()
        holders.add(FIELD_MANAGER)
    return new, mine


def managed_fields(owners: Mapping[Path_, set[str]]) -> list[dict[str, Any]]:
    """``metadata.managedFields``: one entry per manager (poolserve's an Apply, the others Updates)."""
    managers = sorted({m for ms in owners.values() for m in ms})
    return [
        {"manager": m, "operation": "Apply" if m == FIELD_MANAGER else "Update", "fieldsType": "FieldsV1",
         "fieldsV1": fields_v1(p for p, ms in owners.items() if m in ms)}
        for m in managers
    ]


def fields_v1(paths: Iterable[Path_]) -> dict[str, Any]:
    """The ``fieldsV1`` set of owned leaf paths (``{"f:spec": {"f:replicas": {}}}``; lists are atomic here)."""
    out: dict[str, Any] = {}
    for path in sorted(paths):
        cur = out
        for key in path:
            cur = cur.setdefault(f"f:{key}", {})
    return out
