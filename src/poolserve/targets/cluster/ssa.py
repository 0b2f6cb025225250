"""Server-side apply helpers (pure): the fields one field manager applied, read back from ``managedFields``.

``stop``/``start`` change one annotation with server-side apply under poolserve's own field manager.
An apply is the manager's whole intent: a field it applied before and leaves out is removed. So the
apply configuration must hold everything poolserve applied last time, with the values the object has
now, plus the change; then nothing else moves (client-go's ``Extract<Kind>`` functions do the same).
The set of fields comes from the manager's ``fieldsV1`` (Kubernetes ``structured-merge-diff`` field
sets: ``f:<name>`` fields, ``k:{...}`` items of keyed lists, ``v:<json>`` items of sets, ``i:<n>``
indexes, ``.`` the item itself; a field with no sub-fields is owned as a whole).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from poolserve.kserve.names import Manifest


def applied_fields(obj: Manifest, manager: str) -> Mapping[str, Any] | None:
    """The ``fieldsV1`` of ``manager``'s server-side apply entry, or None when it never applied ``obj``."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            fields = entry.get("fieldsV1")
            return fields if isinstance(fields, Mapping) else {}
    return None


def _extract(value: Any, fields: Mapping[str, Any]) -> Any:
    members = {k: v for k, v in fields.items() if k != "."}
    if not members:  # owned as a whole: a scalar, an atomic list or map
        return copy.deepcopy(value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in members.items():
            if key.startswith("f:") and key[2:] in value:
                out[key[2:]] = _extract(value[key[2:]], sub)
        return out
    if isinstance(value, list):
        picked: list[tuple[int, Any]] = []
        for key, sub in members.items():
            if key.startswith("k:"):
                keys = json.loads(key[2:])
                for i, item in enumerate(value):
                    if isinstance(item, dict) and all(item.get(k) == v for k, v in keys.items()):
                        picked.append((i, {**_extract(item, sub), **keys}))
                        break
            elif key.startswith("v:"):
                wanted = json.loads(key[2:])
                if wanted in value:
                    picked.append((value.index(wanted), copy.deepcopy(wanted)))
            elif key.startswith("i:") and int(key[2:]) < len(value):
                picked.append((int(key[2:]), _extract(value[int(key[2:])], sub)))
        return [item for _, item in sorted(picked, key=lambda p: p[0])]
    return copy.deepcopy(value)


def extract(obj: Manifest, manager: str) -> Manifest:
    """An apply configuration of exactly the fields ``manager`` applied to ``obj``, with their live values.

    Always carries ``apiVersion``, ``kind``, ``metadata.name`` and ``metadata.namespace``; when the
    manager never applied the object, that is all it carries.
    """
    fields = applied_fields(obj, manager) or {}
    out = _extract(obj, fields) if fields else {}
    meta = obj.get("metadata") or {}
    head: Manifest = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind")}
    out_meta = {"name": meta.get("name"), **({"namespace": meta["namespace"]} if meta.get("namespace") else {})}
    out_meta.update({k: v for k, v in (out.get("metadata") or {}).items() if k not in ("name", "namespace")})
    return {**head, **{k: v for k, v in out.items() if k not in ("apiVersion", "kind", "metadata")},
            "metadata": out_meta}
