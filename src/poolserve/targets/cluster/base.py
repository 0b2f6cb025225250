"""The narrow interface poolserve needs from a Kubernetes cluster, and the errors it raises.

:class:`Cluster` is all the cluster target, preflight and ``cache warm`` use: server-side apply,
get, list, delete, pods, events, logs and SelfSubjectAccessReview, on unstructured dicts
(:data:`~poolserve.kserve.names.Manifest`). :class:`~poolserve.targets.cluster.kube.KubeCluster` implements it
with the official client, :class:`~poolserve.targets.cluster.fake.cluster.FakeCluster` in memory. Both raise the
same :class:`~poolserve.errors.PoolserveError` subclasses, built by the functions below, so a test
against the fake sees the message a user would see.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from poolserve.errors import ClusterUnreachable, Conflict, Forbidden, Invalid, NotFound, NotReady
from poolserve.kserve.names import GROUP, ISVC_KIND, SR_KIND, Manifest

FIELD_MANAGER = "poolserve"
"""Field manager of every server-side apply (``kubectl get -o yaml --show-managed-fields`` shows it)."""

LOG_TAIL = 120
"""Log lines read to diagnose a crashed container (the previous predictor, a failed cache Job)."""

KSERVE_HINT = "KServe is not installed (or not this version): install KServe / enable the OpenShift AI " \
              "single-model serving platform (KServe), then retry"


@dataclass(frozen=True)
class Kind:
    """How the API serves one kind: ``/api[s]/<group>/<version>/[namespaces/<ns>/]<plural>``."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        """API group (``""`` for the core group)."""
        return self.api_version.rpartition("/")[0]

    @property
    def resource(self) -> str:
        """``plural.group`` as kubectl and RBAC name it (``inferenceservices.serving.kserve.io``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_KINDS: tuple[Kind, ...] = (
    Kind("v1", "Namespace", "namespaces", namespaced=False),
    Kind("v1", "Node", "nodes", namespaced=False),
    Kind("v1", "Pod", "pods"),
    Kind("v1", "Event", "events"),
    Kind("v1", "Service", "services"),
    Kind("v1", "Secret", "secrets"),
    Kind("v1", "ServiceAccount", "serviceaccounts"),
    Kind("v1", "ConfigMap", "configmaps"),
    Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("apps/v1", "ReplicaSet", "replicasets"),
    Kind("batch/v1", "Job", "jobs"),
    Kind("rbac.authorization.k8s.io/v1", "Role", "roles"),
    Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False),
    Kind(f"{GROUP}/v1alpha1", SR_KIND, "servingruntimes"),
    Kind(f"{GROUP}/v1beta1", ISVC_KIND, "inferenceservices"),
    Kind("route.openshift.io/v1", "Route", "routes"),
    Kind("template.openshift.io/v1", "Template", "templates"),
)
_BY_KEY = {(k.api_version, k.kind): k for k in _KINDS}


def kind_info(api_version: str, kind: str) -> Kind:
    """The :class:`Kind` for ``api_version``/``kind`` (unknown kinds: lowercase plural, namespaced)."""
    found = _BY_KEY.get((api_version, kind))
    if found is not None:
        return found
    return Kind(api_version, kind, kind.lower() + "s")


def kind_of(obj: Manifest) -> Kind:
    """The :class:`Kind` of a manifest."""
    return kind_info(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))


def ref(kind: str, name: str, namespace: str | None = None) -> str:
    """``InferenceService ns/name``: how messages name an object."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


@dataclass(frozen=True)
class Access:
    """Answer of a SelfSubjectAccessReview."""

    allowed: bool
    reason: str = ""


class Cluster(Protocol):
    """What poolserve asks of a cluster. Objects in and out are plain dicts (``Manifest``)."""

    def server_version(self) -> str:
        """The API server's version (``v1.31.4``); the reachability and credentials check."""
        ...

    def apply(self, obj: Manifest, *, dry_run: bool = False, force: bool = False) -> Manifest:
        """Server-side apply ``obj`` with field manager :data:`FIELD_MANAGER`; return the resulting object.

        ``dry_run`` asks the API server (and its admission webhooks) without persisting; ``force``
        takes over fields another field manager owns instead of failing with a conflict.
        """
        ...

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        """The object, or None when it does not exist (NotFound only when the kind is not served)."""
        ...

    def list(self, api_version: str, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None) -> builtins.list[Manifest]:
        """Objects of one kind in ``namespace`` (all namespaces / cluster-scoped when None)."""
        ...

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (background propagation); False when it did not exist."""
        ...

    def pods(self, namespace: str, *, label_selector: str | None = None) -> builtins.list[Manifest]:
        """Pods in ``namespace`` matching ``label_selector``."""
        ...

    def events(self, namespace: str, *, field_selector: str | None = None) -> builtins.list[Manifest]:
        """Events in ``namespace`` (``field_selector`` e.g. ``involvedObject.name=x``)."""
        ...

    def logs(self, namespace: str, pod: str, *, container: str | None = None, previous: bool = False,
             follow: bool = False, tail_lines: int | None = None) -> Iterator[str]:
        """Lines of a container's log; ``previous`` is the last terminated container."""
        ...

    def access(self, verb: str, kind: Kind, *, namespace: str | None = None, name: str | None = None) -> Access:
        """SelfSubjectAccessReview: may the current user ``verb`` the kind (in ``namespace``)?"""
        ...


# --------------------------------------------------------------------------------------------------
# Errors: one line each, naming the object and what to try next. Both implementations use these.


def unreachable(server: str, detail: str) -> ClusterUnreachable:
    """The API server did not answer."""
    return ClusterUnreachable(f"cannot reach the Kubernetes API at {server}: {detail}",
                              hint="check the kubeconfig context (--context), VPN, and `oc whoami --show-server`")


def unauthorized(server: str, detail: str = "") -> ClusterUnreachable:
    """401: the token expired or is invalid (an ``oc login`` token lasts 24 h by default)."""
    extra = f": {detail}" if detail else ""
    return ClusterUnreachable(f"the Kubernetes API at {server} rejected the credentials (401 Unauthorized){extra}",
                              hint="the token has probably expired: run `oc login` again")


def forbidden(verb: str, kind: Kind, namespace: str | None, name: str | None = None,
              detail: str = "") -> Forbidden:
    """403 (not from a webhook): the user lacks ``verb`` on the resource."""
    where = f" in namespace {namespace}" if namespace and kind.namespaced else ""
    what = f"{kind.resource}/{name}" if name else kind.resource
    extra = f" ({detail})" if detail else ""
    return Forbidden(f"forbidden: you may not {verb} {what}{where}{extra}",
                     hint="ask a cluster/project admin for a role that allows it (e.g. admin or edit on the project)")


def kind_missing(api_version: str, kind: str) -> NotFound:
    """404 for the resource type itself: the CRD is not installed."""
    if api_version.startswith(GROUP + "/"):
        return NotFound(f"the API server has no {kind} ({api_version}) resource: {KSERVE_HINT}")
    return NotFound(f"the API server has no {kind} ({api_version}) resource")


def conflict(obj_kind: str, name: str, namespace: str | None, detail: str) -> Conflict:
    """409 on server-side apply: another field manager owns a field we set."""
    return Conflict(f"conflict applying {ref(obj_kind, name, namespace)}: {detail}",
                    hint="another field manager (kubectl edit, the dashboard) changed these fields; re-run with "
                    "--force-conflicts to take them over, or change the config to match")


def invalid(obj_kind: str, name: str, namespace: str | None, detail: str) -> Invalid:
    """400/422 or an admission webhook's denial; ``detail`` is the server's (or webhook's) message."""
    return Invalid(f"{ref(obj_kind, name, namespace)} rejected: {detail}")


def namespace_missing(namespace: str) -> NotFound:
    """Creating a namespaced object in a namespace that does not exist."""
    return NotFound(f"namespace {namespace} does not exist",
                    hint=f"create it (`oc new-project {namespace}`) or set namespace in the config")


def namespace_terminating(namespace: str) -> NotReady:
    """Creating an object in a namespace that is being deleted (403 ``NamespaceTerminating``)."""
    return NotReady(f"namespace {namespace} is being deleted (Terminating): nothing new can be created in it",
                    hint="wait until it is gone (`oc get namespace " + namespace + "`), then deploy again; "
                    "or use another namespace")


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace so a server message fits the one-line error rule."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``, ``42`` -> ``42s`` (for timeout messages)."""
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
