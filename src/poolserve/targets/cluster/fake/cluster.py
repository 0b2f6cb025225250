"""An in-memory :class:`~poolserve.targets.cluster.base.Cluster` for tests (shipped, like Helm's ``pkg/kube/fake``).

- Seeded objects and statuses (:meth:`FakeCluster.seed`, :meth:`FakeCluster.set_status`); realistic
  objects to seed come from :mod:`poolserve.targets.cluster.fake.objects`
  (:func:`~poolserve.targets.cluster.fake.objects.pod`, ...).
- Every call is recorded in :attr:`FakeCluster.calls` (verb, kind, namespace, name, flags).
- Injectable errors per verb: ``fake.errors["apply"] = Conflict(...)``; also ``"apply:InferenceService"``
  and ``"apply:InferenceService/minilm"`` for one kind or object, ``"*"`` for every call.
- Server-side apply semantics close enough to report created/configured/unchanged: field ownership
  per manager, conflicts with other managers (unless ``force``), fields we stopped applying are
  removed (:mod:`poolserve.targets.cluster.fake.fields`), no-op applies keep the resourceVersion, dry runs
  persist nothing, mutating webhooks (:func:`~poolserve.targets.cluster.fake.fields.kserve_defaulter`:
  ``deploymentMode`` -> ``Standard``, the ``modelFormat`` annotation), an optional schema check
  (:attr:`FakeCluster.validator`).
- The API server's other rules poolserve meets, in one step: finalizers hold a deleted object
  (:meth:`FakeCluster.finalize`), dependents go with their owner, a deleted namespace is
  ``Terminating`` (no new content) until empty, unsupported field selectors are refused.
  ``tests/test_cluster_contract.py`` runs the same assertions against a real API server.
- Optional :attr:`FakeCluster.controller`: called after each real apply;
  :func:`poolserve.targets.cluster.fake.kserve.ready_controller` plays KServe and makes every
  InferenceService ready, and :func:`~poolserve.targets.cluster.fake.kserve.cluster_for` seeds a fake for a
  config.
"""

from __future__ import annotations

import builtins
import copy
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from poolserve.errors import NotFound
from poolserve.kserve.names import CONTAINER_NAME, GROUP, Manifest
from poolserve.targets.cluster.base import (
    Access,
    Cluster,
    Kind,
    invalid,
    kind_info,
    kind_missing,
    kind_of,
    namespace_missing,
    namespace_terminating,
    ref,
)
from poolserve.targets.cluster.fake.fields import (
    Defaulter,
    Path_,
    applied_leaves,
    apply_fields,
    comparable,
    get_path,
    kserve_defaulter,
    leaves,
    managed_fields,
    set_path,
)
from poolserve.targets.cluster.fake.objects import (
    EPOCH,
    ts,
)
from poolserve.targets.cluster.objects import dig

Controller = Callable[["FakeCluster", Manifest], None]


@dataclass(frozen=True)
class Call:
    """One recorded call."""

    verb: str
    kind: str
    namespace: str | None = None
    name: str | None = None
    dry_run: bool = False
    force: bool = False
    selector: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()


def _selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            k, v = (s.strip() for s in term.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# Field labels the API server accepts in a fieldSelector, per kind (besides metadata.name/namespace);
# anything else is 400 "field label not supported" (kubernetes pkg/apis/core/v1/conversion.go,
# pkg/apis/batch/v1/conversion.go). Custom resources support only metadata.name/namespace.
_FIELD_LABELS: dict[str, frozenset[str]] = {
    "Event": frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                        "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                        "reason", "reportingComponent", "source", "type"}),
    "Pod": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                      "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
                      "status.nominatedNodeName"}),
    "Namespace": frozenset({"status.phase"}),
    "Node": frozenset({"spec.unschedulable"}),
    "Secret": frozenset({"type"}),
    "Job": frozenset({"status.successful"}),
}
_FIELD_ALIASES = {"source": "source.component"}


def _unsupported_field(kind: str, selector: str | None) -> str | None:
    """The first field label of ``selector`` the API server would refuse for ``kind``, if any."""
    for term in (t.strip() for t in (selector or "").split(",") if t.strip()):
        label = term.partition("=")[0].rstrip("!").strip()
        if label not in ("metadata.name", "metadata.namespace") and label not in _FIELD_LABELS.get(kind, ()):
            return label
    return None


def _fields_match(selector: str | None, obj: Manifest) -> bool:
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",")):
        key, _, want = term.partition("=")
        key = _FIELD_ALIASES.get(key.strip(), key.strip())
        found, value = get_path(obj, tuple(key.split(".")))
        if not found or str(value) != want.strip():
            return False
    return True


_Key = tuple[str, str | None, str]


@dataclass
class FakeCluster:
    """In-memory cluster; see the module docstring."""

    objects: Iterable[Manifest] = ()
    version: str = "v1.31.4"
    kserve: bool = True
    """False: the serving.kserve.io kinds are not served (KServe not installed)."""
    openshift: bool = True
    """False: OpenShift's API groups (``template.openshift.io``, ``route.openshift.io``) are not served."""
    defaulters: tuple[Defaulter, ...] = (kserve_defaulter,)
    controller: Controller | None = None
    clock: Callable[[], datetime] = lambda: EPOCH
    calls: list[Call] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)
    denied: set[tuple[str, ...]] = field(default_factory=set)
    """What the access review refuses: ``(verb, resource)`` everywhere, e.g. ``("create",
    "inferenceservices.serving.kserve.io")``, or ``(verb, resource, namespace)`` in one namespace."""
    pod_logs: dict[tuple[str, str, bool], builtins.list[str]] = field(default_factory=dict)
    """``(pod, container, previous)`` -> lines."""
    validator: Callable[[Manifest], builtins.list[str]] | None = None
    """The API server's schema check on apply (``".spec.x: problem"`` per error; e.g. from the KServe
    CRDs): a rejected object is :class:`~poolserve.errors.Invalid` naming the field. None accepts anything."""

    def __post_init__(self) -> None:
        self._store: dict[_Key, Manifest] = {}
        self._owners: dict[_Key, dict[Path_, set[str]]] = {}
        self._rv = itertools.count(100)
        self._uid = itertools.count(1)
        seeds = list(self.objects)
        self.objects = ()
        for obj in seeds:
            self.seed(obj)

    # ---------------------------------------------------------------------------------------------
    # Seeding and inspection (test helpers; not part of the Cluster protocol).

    def seed(self, obj: Manifest, *, manager: str = "kubectl-client-side-apply") -> Manifest:
        """Store ``obj`` as if ``manager`` had created it (status included); returns the stored copy."""
        k = kind_of(obj)
        meta = obj.get("metadata", {})
        key = self._key(k, meta.get("name", ""), meta.get("namespace"))
        stored = copy.deepcopy(obj)
        smeta = stored.setdefault("metadata", {})
        if not k.namespaced:
            smeta.pop("namespace", None)
        smeta.setdefault("uid", f"uid-{next(self._uid)}")
        smeta.setdefault("creationTimestamp", ts(self.clock()))
        smeta.setdefault("generation", 1)
        smeta["resourceVersion"] = str(next(self._rv))
        self._store[key] = stored
        self._owners[key] = {p: {manager} for p in applied_leaves(stored)}
        return copy.deepcopy(stored)

    def seed_all(self, objs: Iterable[Manifest]) -> None:
        """:meth:`seed` each object."""
        for o in objs:
            self.seed(o)

    def set_status(self, kind: str, name: str, namespace: str | None, status: Mapping[str, Any]) -> None:
        """Replace an object's status (as its controller would)."""
        obj = self._find(kind, name, namespace)
        obj["status"] = copy.deepcopy(dict(status))
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def edit(self, kind: str, name: str, namespace: str | None, changes: Mapping[str, Any], *,
             manager: str = "kubectl-edit") -> None:
        """Another client updates fields (an Update operation): it then owns them."""
        obj = self._find(kind, name, namespace)
        key = self._key(kind_of(obj), name, namespace)
        spec_changed = False
        for path, value in leaves(dict(changes)).items():
            spec_changed |= path[0] not in ("metadata", "status") and get_path(obj, path) != (True, value)
            set_path(obj, path, value)
            self._owners[key][path] = {manager}
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        if spec_changed:  # as the API server: metadata-only changes leave the generation alone
            obj["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1

    def finalize(self, kind: str, name: str, namespace: str | None, finalizer: str) -> None:
        """Remove ``finalizer`` as its controller would; an object being deleted goes when none is left."""
        obj = self._find(kind, name, namespace)
        key = self._key(kind_of(obj), name, namespace)
        left = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        if left:
            obj["metadata"]["finalizers"] = left
        else:
            obj["metadata"].pop("finalizers", None)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        if obj["metadata"].get("deletionTimestamp") and not left:
            self._drop(key)

    def remove(self, kind: str, name: str, namespace: str | None = None) -> None:
        """Delete an object (and its dependents) without recording a call, as a controller would."""
        for key in [k for k in self._store if k[0] == kind and k[2] == name and k[1] == namespace]:
            self._drop(key, hard=True)

    def stored(self, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        """The stored object (a copy) without recording a call."""
        for key, obj in self._store.items():
            k, ns, n = key
            if k == kind and n == name and (ns == namespace or namespace is None):
                return self._render(obj, self._owners.get(key, {}))
        return None

    def all(self, kind: str | None = None) -> builtins.list[Manifest]:
        """Every stored object (of ``kind``), without recording a call."""
        return [self._render(o, self._owners.get(key, {})) for key, o in self._store.items()
                if kind is None or key[0] == kind]

    def verbs(self, verb: str | None = None) -> builtins.list[Call]:
        """Recorded calls, optionally only one verb."""
        return [c for c in self.calls if verb is None or c.verb == verb]

    # ---------------------------------------------------------------------------------------------
    # The Cluster protocol.

    def server_version(self) -> str:
        """See :meth:`Cluster.server_version`."""
        self._enter(Call("server_version", ""))
        return self.version

    def apply(self, obj: Manifest, *, dry_run: bool = False, force: bool = False) -> Manifest:
        """See :meth:`Cluster.apply`."""
        k = kind_of(obj)
        meta = obj.get("metadata", {})
        name, namespace = str(meta.get("name", "")), meta.get("namespace") if k.namespaced else None
        self._enter(Call("apply", k.kind, namespace, name, dry_run=dry_run, force=force), k)
        ns_obj = self._store.get(("Namespace", None, namespace)) if k.namespaced and namespace else None
        if k.namespaced and namespace and ns_obj is None:
            raise namespace_missing(namespace)
        key = self._key(k, name, namespace)
        live = self._store.get(key)
        if live is None and dig(ns_obj, "status", "phase") == "Terminating" and namespace:
            raise namespace_terminating(namespace)  # NamespaceLifecycle admission: no new content
        problems = self.validator(obj) if self.validator is not None else []
        if problems:
            raise invalid(k.kind, name, namespace, problems[0])  # what server-side apply's typed patch reports
        new, owners = apply_fields(k, name, namespace, live, self._owners.get(key, {}), obj, force=force)
        if live is None:
            new["metadata"].update(uid=f"uid-{next(self._uid)}", creationTimestamp=ts(self.clock()), generation=1)
        for defaulter in self.defaulters:
            defaulter(new)
        if live is not None and comparable(new) == comparable(live):
            new = copy.deepcopy(live)  # a no-op apply writes nothing
        else:
            new["metadata"]["resourceVersion"] = str(next(self._rv))
            if live is not None and {k_: v for k_, v in new.items() if k_ not in ("metadata", "status")} != {
                    k_: v for k_, v in live.items() if k_ not in ("metadata", "status")}:
                new["metadata"]["generation"] = int(live["metadata"].get("generation", 1)) + 1
        if dry_run:
            return self._render(new, owners)
        self._store[key] = new
        self._owners[key] = owners
        result = self._render(new, owners)  # the API's answer: before any controller reacts
        if self.controller is not None:
            self.controller(self, copy.deepcopy(new))
        return result

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        """See :meth:`Cluster.get`."""
        k = kind_info(api_version, kind)
        ns = namespace if k.namespaced else None
        self._enter(Call("get", kind, ns, name), k)
        obj = self._store.get(self._key(k, name, ns))
        return None if obj is None else self._render(obj, self._owners.get(self._key(k, name, ns), {}))

    def list(self, api_version: str, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None) -> builtins.list[Manifest]:
        """See :meth:`Cluster.list`."""
        k = kind_info(api_version, kind)
        ns = namespace if k.namespaced else None
        sel = ";".join(s for s in (label_selector, field_selector) if s) or None
        self._enter(Call("list", kind, ns, selector=sel), k)
        bad = _unsupported_field(kind, field_selector)
        if bad is not None:
            raise invalid(kind, k.plural, ns, f"field label not supported: {bad} (HTTP 400)")
        return [
            self._render(o, self._owners.get(key, {}))
            for key, o in sorted(self._store.items(), key=lambda kv: (kv[0][1] or "", kv[0][2]))
            if key[0] == kind and (ns is None or key[1] == ns)
            and _selector_matches(label_selector, o.get("metadata", {}).get("labels") or {})
            and _fields_match(field_selector, o)
        ]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """See :meth:`Cluster.delete`, with the API server's semantics in one step.

        An object with finalizers is only marked (``deletionTimestamp``) until :meth:`finalize` removes
        the last one; dependents (ownerReferences) go with their owner (background propagation); a
        namespace turns ``Terminating``, its contents are deleted, and it goes once it is empty.
        """
        k = kind_info(api_version, kind)
        ns = namespace if k.namespaced else None
        self._enter(Call("delete", kind, ns, name), k)
        key = self._key(k, name, ns)
        if key not in self._store:
            return False
        self._delete(key)
        return True

    def pods(self, namespace: str, *, label_selector: str | None = None) -> builtins.list[Manifest]:
        """See :meth:`Cluster.pods`."""
        return self.list("v1", "Pod", namespace, label_selector=label_selector)

    def events(self, namespace: str, *, field_selector: str | None = None) -> builtins.list[Manifest]:
        """See :meth:`Cluster.events`."""
        return self.list("v1", "Event", namespace, field_selector=field_selector)

    def logs(self, namespace: str, pod: str, *, container: str | None = None, previous: bool = False,
             follow: bool = False, tail_lines: int | None = None) -> Iterator[str]:
        """See :meth:`Cluster.logs` (``follow`` just ends after the stored lines)."""
        self._enter(Call("logs", "Pod", namespace, pod, extra=(("container", container), ("previous", previous),
                                                                 ("follow", follow))))
        if ("Pod", namespace, pod) not in self._store:
            raise NotFound(f"pod {namespace}/{pod} not found")
        lines = self.pod_logs.get((pod, container or CONTAINER_NAME, previous))
        if lines is None:
            if previous:
                raise NotFound(f"no previous log for container {container} in pod {namespace}/{pod}: "
                               "it has not restarted")
            lines = []
        return iter(lines[-tail_lines:] if tail_lines else list(lines))

    def access(self, verb: str, kind: Kind, *, namespace: str | None = None, name: str | None = None) -> Access:
        """See :meth:`Cluster.access`."""
        self._enter(Call("access", kind.kind, namespace, name, extra=(("verb", verb),)))
        if (verb, kind.resource) in self.denied or (verb, kind.resource, namespace) in self.denied:
            return Access(False, f"RBAC: no role grants {verb} on {kind.resource}")
        return Access(True, "")

    # ---------------------------------------------------------------------------------------------

    def _enter(self, call: Call, kind: Kind | None = None) -> None:
        self.calls.append(call)
        for key in ("*", call.verb, f"{call.verb}:{call.kind}", f"{call.verb}:{call.kind}/{call.name}"):
            err = self.errors.get(key)
            if err is not None:
                raise err
        if kind is not None and not self.kserve and kind.group == GROUP:
            raise kind_missing(kind.api_version, kind.kind)
        if kind is not None and not self.openshift and kind.group.endswith(".openshift.io"):
            raise kind_missing(kind.api_version, kind.kind)

    def _key(self, k: Kind, name: str, namespace: str | None) -> _Key:
        return (k.kind, namespace if k.namespaced else None, name)

    def _find(self, kind: str, name: str, namespace: str | None) -> Manifest:
        for (k, ns, n), obj in self._store.items():
            if k == kind and n == name and ns == namespace:
                return obj
        raise KeyError(ref(kind, name, namespace))

    def _render(self, obj: Manifest, owners: Mapping[Path_, set[str]]) -> Manifest:
        out = copy.deepcopy(obj)
        out.setdefault("metadata", {})["managedFields"] = managed_fields(owners)
        return out

    def _delete(self, key: _Key) -> None:
        obj = self._store.get(key)
        if obj is None:
            return
        meta = obj["metadata"]
        if key[0] == "Namespace" or meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = ts(self.clock())
                meta["resourceVersion"] = str(next(self._rv))
            if key[0] != "Namespace":
                return
            obj.setdefault("status", {})["phase"] = "Terminating"
            for other in [k_ for k_ in self._store if k_[1] == key[2]]:
                self._delete(other)
            self._collect_namespace(key[2])
            return
        self._drop(key)

    def _drop(self, key: _Key, *, hard: bool = False) -> None:
        """The object is gone: its dependents are deleted, and a Terminating namespace goes with its last object.

        ``hard`` (:meth:`remove`): dependents, and a namespace's contents, go at once, finalizers or not.
        """
        obj = self._store.pop(key, None)
        self._owners.pop(key, None)
        if obj is None:
            return
        uid = obj["metadata"].get("uid")
        for other_key, other in list(self._store.items()):
            owned = any(r.get("uid") == uid for r in other.get("metadata", {}).get("ownerReferences") or [])
            if hard and (owned or (key[0] == "Namespace" and other_key[1] == key[2])):
                self._drop(other_key, hard=True)
            elif owned:
                self._delete(other_key)
        if key[1] is not None:
            self._collect_namespace(key[1])

    def _collect_namespace(self, namespace: str) -> None:
        ns_key: _Key = ("Namespace", None, namespace)
        ns_obj = self._store.get(ns_key)
        if ns_obj is not None and ns_obj["metadata"].get("deletionTimestamp") and not any(
                k_[1] == namespace for k_ in self._store):
            self._store.pop(ns_key)
            self._owners.pop(ns_key, None)



if TYPE_CHECKING:
    _: Cluster = FakeCluster()
