"""KServe's composition of a ServingRuntime and an InferenceService into the container it runs (pure).

:func:`compose` does what the KServe controller does with the manifests of :mod:`poolserve.kserve.objects`
(runtime container + InferenceService overlay, ``{{.Name}}`` templating, pod-level volumes, the pod
webhook's model storage), so ``lint``/``explain`` and the local target see exactly the container a
cluster would run. Merge rules: kserve v0.20
``pkg/controller/v1beta1/inferenceservice/utils/utils.go`` (MergeServingRuntimeAndInferenceServiceSpecs,
ReplacePlaceholders) and ``pkg/utils/container_merge.go``; summarised in
docs/explanation/lessons/kserve.md#args-concatenated-runtime-first. Also what the
kubelet gives an env ``resourceFieldRef`` (:func:`resource_field`).
"""

from __future__ import annotations

import copy
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from poolserve.config import storage
from poolserve.errors import LintError
from poolserve.kserve.names import CONTAINER_NAME, Manifest


@dataclass(frozen=True)
class Composed:
    """The predictor pod KServe would build for one InferenceService: its main container and volumes."""

    isvc: str
    namespace: str
    runtime: str
    container: dict[str, Any]
    volumes: list[dict[str, Any]]

    @property
    def argv(self) -> list[str]:
        """``command + args`` of the composed container."""
        return [*self.container.get("command", []), *self.container.get("args", [])]

    @property
    def env(self) -> dict[str, str]:
        """Plain-value env of the container (``valueFrom`` entries are left out)."""
        return {e["name"]: e["value"] for e in self.container.get("env", []) if "value" in e}


def _merge_by_key(base: Sequence[Mapping[str, Any]], overlay: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    out = [copy.deepcopy(dict(b)) for b in base]
    for item in overlay:
        for existing in out:
            if existing.get(key) == item.get(key):
                merged = _deep_merge(existing, dict(item))
                existing.clear()
                existing.update(merged)
                break
        else:
            out.append(copy.deepcopy(dict(item)))
    return out


def merge_env(base: Sequence[Mapping[str, Any]], overlay: Sequence[Mapping[str, Any]]) -> list[Any]:
    """KServe's env merge: ``overlay`` entries replace ``base`` entries of the same name, in place; new ones follow."""
    out = [copy.deepcopy(dict(b)) for b in base]
    for item in overlay:
        for existing in out:
            if existing["name"] == item["name"]:
                # v0.20 reconcileEnvValueConflicts: the overlay's kind (value or valueFrom) wins.
                existing.pop("value", None)
                existing.pop("valueFrom", None)
                existing.update(copy.deepcopy(dict(item)))
                break
        else:
            out.append(copy.deepcopy(dict(item)))
    return out


def _deep_merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for k, v in overlay.items():
            out[k] = _deep_merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(overlay)


def merge_containers(runtime_container: Mapping[str, Any], isvc_container: Mapping[str, Any]) -> dict[str, Any]:
    """KServe's MergeRuntimeContainers: the runtime container patched by the InferenceService's.

    args are concatenated (runtime first); command is replaced when the overlay sets one; env,
    ports and volumeMounts merge by name/containerPort/mountPath with the overlay winning;
    resources merge key by key; other objects merge field by field; scalars are replaced.
    """
    out = copy.deepcopy(dict(runtime_container))
    for key, value in isvc_container.items():
        if value in (None, [], {}, ""):
            continue  # omitempty: an unset overlay field keeps the runtime's value
        if key == "args":
            out["args"] = [*runtime_container.get("args", []), *value]
        elif key == "env":
            out["env"] = merge_env(runtime_container.get("env", []), value)
        elif key == "ports":
            out["ports"] = _merge_by_key(runtime_container.get("ports", []), value, "containerPort")
        elif key == "volumeMounts":
            out["volumeMounts"] = _merge_by_key(runtime_container.get("volumeMounts", []), value, "mountPath")
        elif isinstance(value, dict):
            out[key] = _deep_merge(runtime_container.get(key) or {}, value)
        else:
            out[key] = copy.deepcopy(value)
    out["name"] = runtime_container.get("name", CONTAINER_NAME)
    return out


_PLACEHOLDER = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_INDEX = re.compile(r'^index\s+\.(Labels|Annotations)\s+"([^"]*)"$')


def _eval_placeholder(expr: str, meta: Mapping[str, Any], where: str) -> str:
    simple = {"Name": meta.get("name"), "Namespace": meta.get("namespace"), "UID": meta.get("uid"),
              "Generation": meta.get("generation"), "GenerateName": meta.get("generateName")}
    if expr.startswith(".") and expr[1:] in simple:
        value = simple[expr[1:]]
        return "" if value is None else str(value)
    m = _INDEX.match(expr)
    parts = expr.split(".", 2)
    if m:
        field, key = m.group(1), m.group(2)
    elif len(parts) == 3 and parts[0] == "" and parts[1] in ("Labels", "Annotations"):
        field, key = parts[1], parts[2]
    else:
        raise LintError(f"{where}: failed to replace placeholder {{{{{expr}}}}}: KServe templates only "
                        "ObjectMeta fields ({{.Name}}, {{.Namespace}}, {{.Labels.x}}, {{index .Annotations \"a/b\"}})")
    source = meta.get("labels" if field == "Labels" else "annotations") or {}
    return str(source.get(key, ""))


def substitute(text: str, meta: Mapping[str, Any], where: str = "container") -> str:
    """KServe's ReplacePlaceholders on one string.

    Go ``html/template`` over the InferenceService's ObjectMeta, so substituted values are HTML-escaped.

    Raises:
        LintError: for an expression KServe could not evaluate (the controller reports InvalidSpec).
    """
    return _PLACEHOLDER.sub(lambda m: html.escape(_eval_placeholder(m.group(1), meta, where), quote=True)
                            .replace("&#x27;", "&#39;").replace("&quot;", "&#34;").replace("+", "&#43;"), text)


def _substitute_all(value: Any, meta: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, str):
        return substitute(value, meta, where)
    if isinstance(value, list):
        return [_substitute_all(v, meta, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute_all(v, meta, where) for k, v in value.items()}
    return value


_SUFFIXES = {"m": 10**-3, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``4Gi``) as a number.

    Raises:
        ValueError: for a value that is not a quantity.
    """
    m = _QUANTITY.match(str(value).strip())
    if not m or (m.group(2) and m.group(2) not in _SUFFIXES):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(m.group(1)) * _SUFFIXES.get(m.group(2), 1)


def resource_field(container: Mapping[str, Any], ref: Mapping[str, Any], *, node_cpus: float,
                   node_memory_bytes: float) -> str:
    """The value the kubelet gives an env ``resourceFieldRef`` of ``container``.

    The resource divided by ``divisor`` and rounded up; an unset limit is the node's allocatable
    (Kubernetes ``pkg/api/v1/resource/helpers.go ExtractContainerResourceValue``, and the Downward API
    docs: "If CPU and memory limits are not specified for a container, the kubelet uses the node's
    allocatable").
    """
    kind, _, name = str(ref.get("resource", "")).partition(".")
    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    if kind == "limits":
        value = parse_quantity(limits[name]) if name in limits else (node_cpus if name == "cpu" else node_memory_bytes)
    else:  # an unset request defaults to the limit (API server defaulting), else 0
        value = parse_quantity(requests.get(name, limits.get(name, 0)))
    divisor = parse_quantity(ref.get("divisor", "1") or "1")
    return str(math.ceil(value / divisor - 1e-9))


def compose(sr: Manifest, isvc: Manifest) -> Composed:
    """What KServe runs for ``isvc`` on runtime ``sr``: merged, templated kserve-container and volumes.

    Raises:
        LintError: when the runtime has no ``kserve-container`` or a placeholder cannot be evaluated.
    """
    name = isvc["metadata"]["name"]
    where = f"{isvc['metadata'].get('namespace', '')}/{name}"
    containers = sr["spec"].get("containers", [])
    base = next((c for c in containers if c.get("name") == CONTAINER_NAME), None)
    if base is None:
        raise LintError(f"ServingRuntime {sr['metadata']['name']}: no container named {CONTAINER_NAME} "
                        "(KServe: 'failed to find kserve-container in ServingRuntime containers')")
    predictor = isvc["spec"]["predictor"]
    overlay = {k: v for k, v in predictor.get("model", {}).items()
               if k not in ("modelFormat", "runtime", "storageUri", "storage", "protocolVersion", "runtimeVersion")}
    merged = merge_containers(base, overlay)
    # v0.17+ injects INFERENCE_SERVICE_NAME into every container.
    merged["env"] = merge_env(merged.get("env", []), [{"name": "INFERENCE_SERVICE_NAME", "value": name}])
    merged = _substitute_all(merged, isvc["metadata"], where)
    volumes = _merge_by_key(sr["spec"].get("volumes", []), predictor.get("volumes", []), "name")
    _inject_model_storage(isvc, merged, volumes)
    return Composed(isvc=name, namespace=isvc["metadata"].get("namespace", ""), runtime=sr["metadata"]["name"],
                    container=merged, volumes=volumes)


def _inject_model_storage(isvc: Manifest, container: dict[str, Any], volumes: list[dict[str, Any]]) -> None:
    """What KServe's pod mutating webhook adds to ``kserve-container`` for ``storageUri`` (v0.20).

    pvc://: the claim itself at /mnt/models, read-only, ``subPath`` = the path (``CommonStorageInitialization``);
    hf://, s3://: an emptyDir there, filled by the storage-initializer init container; oci://: an emptyDir
    at /mnt for the modelcar's symlink and ``MODEL_INIT_MODE=async`` (``ConfigureModelcarToContainer``).
    Like ``AddModelMount``, a mount is skipped only when one with the same volume *name* exists: a
    runtime volume at the same path stays, and the API server refuses the pod (lint reports it).
    """
    model = isvc["spec"]["predictor"].get("model", {})
    uri = model.get("storageUri")
    if not uri:
        return
    try:
        parsed = storage.parse(uri)
    except ValueError as err:
        raise LintError(f"{isvc['metadata'].get('namespace', '')}/{isvc['metadata']['name']}: storageUri: {err}") \
            from None
    annotations = isvc["metadata"].get("annotations") or {}
    read_only = annotations.get("storage.kserve.io/readonly") != "false"  # GetStorageInitializerReadOnlyFlag
    mount: dict[str, Any]
    if parsed.scheme == "oci":
        volume: dict[str, Any] = {"name": storage.MODELCAR_VOLUME, "emptyDir": {}}
        mount = {"name": storage.MODELCAR_VOLUME, "mountPath": storage.MODELCAR_DIR}
        container["env"] = merge_env(container.get("env", []), [{"name": "MODEL_INIT_MODE", "value": "async"}])
    elif parsed.scheme == "pvc":
        volume = {"name": storage.PVC_VOLUME, "persistentVolumeClaim": {"claimName": parsed.location}}
        mount = {"name": storage.PVC_VOLUME, "mountPath": storage.MODEL_DIR}
        if parsed.path:
            mount["subPath"] = parsed.path
    else:
        volume = {"name": storage.DOWNLOAD_VOLUME, "emptyDir": {}}
        mount = {"name": storage.DOWNLOAD_VOLUME, "mountPath": storage.MODEL_DIR}
    if read_only and parsed.scheme != "oci":
        mount["readOnly"] = True
    mounts = container.setdefault("volumeMounts", [])
    if any(m.get("name") == mount["name"] for m in mounts):
        return
    mounts.append(mount)
    if not any(v.get("name") == volume["name"] for v in volumes):
        volumes.append(volume)
