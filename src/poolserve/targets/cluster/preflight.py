"""Checks before ``deploy`` touches anything: each failure is one line that says what to do.

In order: the API answers (and accepts the credentials); the KServe CRDs are installed (and which
versions they serve); the namespace exists, is not being deleted, and carries the dashboard labels
(or the user may add them); the cache PVC exists, is Bound and its access mode fits the pods that
mount it; the nodes have enough allocatable GPUs for what the models ask, and a bf16 node for bfloat16
on CPU; the dashboard Templates
can be applied (OpenShift's Template API is served, the dashboard namespace exists, and a
SelfSubjectAccessReview allows creating Templates there, else they are already there); and a
SelfSubjectAccessReview allows create and patch on every kind deploy applies. A check that cannot
run for lack of permission (regular OpenShift users may not read CRDs or list nodes) becomes a note,
not a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from poolserve.config.resolve import Model, resolve_models
from poolserve.config.schema import PoolSpec
from poolserve.errors import Forbidden, NotFound, NotReady
from poolserve.kserve.cpu import NFD_BF16_LABELS, node_affinity
from poolserve.kserve.dashboard import TEMPLATES_PATH, find_template
from poolserve.kserve.names import (
    GROUP,
    ISVC_API_VERSION,
    ISVC_KIND,
    SR_API_VERSION,
    SR_KIND,
    TEMPLATE_API_VERSION,
    TEMPLATE_KIND,
    Manifest,
)
from poolserve.kserve.objects import template_namespace, template_scope
from poolserve.targets.cluster.base import (
    Cluster,
    Kind,
    forbidden,
    kind_info,
    kind_missing,
    kind_of,
    namespace_terminating,
)
from poolserve.targets.cluster.objects import covers, dig

ISVC_CRD = f"inferenceservices.{GROUP}"
SR_CRD = f"servingruntimes.{GROUP}"
VERSION_LABELS = ("app.kubernetes.io/version", "platform.opendatahub.io/version", "serving.kserve.io/version")


@dataclass(frozen=True)
class PreflightReport:
    """What preflight found; failures raise instead of landing here."""

    server_version: str
    kserve: str
    """``InferenceService v1beta1, ServingRuntime v1alpha1`` (+ a version label when the CRD has one)."""
    namespace_exists: bool
    namespace_needs_apply: bool
    """The rendered Namespace labels/annotations differ from the live ones (so it must be applied)."""
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    templates_left: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Template name -> (action, note) for the Templates deploy must not apply: the user may not
    create them in the dashboard namespace, but an admin already did (``unchanged`` or ``kept``)."""


def crd_versions(crd: Manifest) -> str:
    """``InferenceService v1beta1`` (the served versions, storage first) plus a version label if any."""
    kind = dig(crd, "spec", "names", "kind", default="?")
    versions = sorted((v for v in dig(crd, "spec", "versions", default=[]) or [] if v.get("served", True)),
                      key=lambda v: not v.get("storage", False))
    text = f"{kind} {'/'.join(str(v.get('name')) for v in versions) or '?'}"
    labels = dig(crd, "metadata", "labels", default={}) or {}
    for key in VERSION_LABELS:
        if labels.get(key):
            return f"{text} ({key}={labels[key]})"
    return text


def check_kserve(cluster: Cluster, namespace: str) -> tuple[str, tuple[str, ...]]:
    """KServe's CRDs: ``(description, notes)``.

    Raises:
        NotFound: when a CRD is missing ("KServe not installed").
    """
    found: list[str] = []
    try:
        for name, api_version, kind in ((ISVC_CRD, ISVC_API_VERSION, ISVC_KIND), (SR_CRD, SR_API_VERSION, SR_KIND)):
            crd = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            if crd is None:
                raise kind_missing(api_version, kind)
            found.append(crd_versions(crd))
    except Forbidden:
        # Regular users may not read CRDs: ask for the kinds directly (404 when not served).
        cluster.list(ISVC_API_VERSION, ISVC_KIND, namespace)
        cluster.list(SR_API_VERSION, SR_KIND, namespace)
        return "installed (versions unknown: you may not read CRDs)", ()
    return ", ".join(found), ()


def check_operators(cluster: Cluster, models: Sequence[Model], objects: Sequence[Manifest],
                    namespace: str) -> list[str]:
    """The operators the config relies on besides KServe (KEDA, the Prometheus operator); returns notes.

    KEDA for ``autoscaling: queue``, the Prometheus operator for PodMonitors.

    KServe's KEDA reconciler fails every reconcile of such an InferenceService when KEDA's
    ScaledObject kind is not served (``keda_reconciler.go``); a PodMonitor cannot be applied without its CRD.

    Raises:
        NotFound: a kind they need is not served.
    """
    notes: list[str] = []
    needs: list[tuple[str, str, str]] = []
    queue = [m.name for m in models if m.autoscaling is not None and m.autoscaling.metric == "queue"]
    if queue:
        needs.append(("keda.sh/v1alpha1", "ScaledObject",
                      f"autoscaling on the queue ({', '.join(queue)}) needs KEDA: install the Custom Metrics "
                      "Autoscaler operator and its KedaController (OpenShift), or use metric: cpu"))
    if any(o.get("kind") == "PodMonitor" for o in objects):
        needs.append(("monitoring.coreos.com/v1", "PodMonitor",
                      "monitoring.enabled needs the Prometheus operator's PodMonitor kind (OpenShift: enable "
                      "user-workload monitoring), or set monitoring.enabled: false"))
    for api_version, kind, hint in needs:
        try:
            cluster.list(api_version, kind, namespace)
        except NotFound as err:
            raise NotFound(f"the API server has no {kind} ({api_version}) resource", hint=hint) from err
        except Forbidden:
            notes.append(f"cannot check that {kind} ({api_version}) is served: you may not list it here")
    return notes


def check_storage_claims(cluster: Cluster, models: Sequence[Model], namespace: str) -> list[str]:
    """Each ``pvc://`` storage_uri names a claim that exists (KServe mounts it as is; the pod waits forever).

    Raises:
        NotFound: naming the model and the claim.
    """
    notes: list[str] = []
    for m in models:
        uri = m.storage_uri
        if uri is None or uri.scheme != "pvc":
            continue
        try:
            found = cluster.get("v1", "PersistentVolumeClaim", uri.location, namespace)
        except Forbidden:
            notes.append(f"cannot check PersistentVolumeClaim {namespace}/{uri.location} ({m.name}'s storage_uri)")
            continue
        if found is None:
            raise NotFound(f"PersistentVolumeClaim {namespace}/{uri.location} ({m.name}'s storage_uri) does not exist",
                           hint="create it and copy the model in, or fix storage_uri")
    return notes


def namespace_state(cluster: Cluster, spec: PoolSpec, rendered_ns: Manifest | None) -> tuple[bool, bool, list[str]]:
    """``(exists, needs_apply, notes)`` for the target namespace.

    Raises:
        NotFound: the namespace does not exist and the user may not create it.
        Forbidden: its dashboard labels are missing and the user may not patch namespaces.
    """
    ns = spec.namespace
    notes: list[str] = []
    ns_kind = kind_info("v1", "Namespace")
    try:
        live = cluster.get("v1", "Namespace", ns)
        exists = live is not None
    except Forbidden:
        # Project users often may not read Namespace objects; every namespace has a "default" SA.
        live = None
        exists = cluster.get("v1", "ServiceAccount", "default", ns) is not None
        if exists:
            notes.append(f"cannot read namespace {ns} (forbidden): its dashboard labels were not checked")
            return True, False, notes
    if dig(live, "status", "phase") == "Terminating":
        # The API server refuses new objects in it (403 NamespaceTerminating): say so before applying anything.
        raise namespace_terminating(ns)
    if not exists:
        if rendered_ns is None or not cluster.access("create", ns_kind, name=ns).allowed:
            raise NotFound(f"namespace {ns} does not exist",
                           hint=f"create it with `oc new-project {ns}` (or ask an admin), or set namespace "
                           "in the config")
        return False, True, notes
    if rendered_ns is None:
        return True, False, notes
    want_labels = dig(rendered_ns, "metadata", "labels", default={}) or {}
    want_ann = dig(rendered_ns, "metadata", "annotations", default={}) or {}
    have_labels = dig(live, "metadata", "labels", default={}) or {}
    have_ann = dig(live, "metadata", "annotations", default={}) or {}
    missing = {k: v for k, v in want_labels.items() if have_labels.get(k) != v}
    missing_ann = {k: v for k, v in want_ann.items() if have_ann.get(k) != v}
    if not missing and not missing_ann:
        return True, False, notes
    if not cluster.access("patch", ns_kind, name=ns).allowed:
        if missing:
            labels = " ".join(f"{k}={v}" for k, v in missing.items())
            raise Forbidden(f"namespace {ns} lacks the labels {labels} and you may not patch namespaces",
                            hint=f"ask an admin to run `oc label namespace {ns} {labels}`")
        notes.append(f"namespace {ns}: annotations {', '.join(missing_ann)} differ, and you may not patch "
                     "namespaces: left as they are")
        return True, False, notes
    return True, True, notes


def pvc_pods(spec: PoolSpec) -> int:
    """How many pods may mount the cache PVC at once: ``max_replicas`` of every model in the config.

    All of them, not just the ones being deployed: every predictor mounts the same PVC, so
    ``deploy a`` then ``deploy b`` shares it as much as ``deploy`` does.
    """
    return sum(m.max_replicas for m in resolve_models(spec))


def check_pvc(cluster: Cluster, spec: PoolSpec, pods: int) -> list[str]:
    """The cache PVC exists, is usable and its access mode fits up to ``pods`` mounting it; returns notes.

    Raises:
        NotFound: the PVC does not exist.
        NotReady: it is Lost, or ReadWriteOncePod while several pods need it.
    """
    ns, name = spec.namespace, spec.cache.pvc
    pvc = cluster.get("v1", "PersistentVolumeClaim", name, ns)
    if pvc is None:
        raise NotFound(f"PersistentVolumeClaim {ns}/{name} (cache.pvc) does not exist",
                       hint="create it (ReadWriteMany, large enough for the models) or set cache.pvc")
    notes: list[str] = []
    phase = dig(pvc, "status", "phase", default="Pending")
    if phase == "Lost":
        raise NotReady(f"PersistentVolumeClaim {ns}/{name} is Lost (its volume is gone)",
                       hint="recreate the PVC; the cached models must be downloaded again")
    if phase != "Bound":
        notes.append(f"PVC {name} is {phase}: fine for WaitForFirstConsumer storage classes, otherwise pods stay "
                     "Pending until it binds")
    modes = set(dig(pvc, "status", "accessModes", default=None) or dig(pvc, "spec", "accessModes", default=[]) or [])
    shared = modes & {"ReadWriteMany", "ReadOnlyMany"}
    if not shared and "ReadWriteOncePod" in modes and pods > 1:
        raise NotReady(f"PersistentVolumeClaim {ns}/{name} is ReadWriteOncePod but up to {pods} pods mount it "
                       "(max_replicas of all the config's models)",
                       hint="use a ReadWriteMany PVC (or one PVC per model)")
    if not shared and "ReadWriteOnce" in modes and pods > 1:
        notes.append(f"PVC {name} is ReadWriteOnce and up to {pods} pods mount it: they must all run on one node, "
                     "otherwise pods fail with Multi-Attach errors (use ReadWriteMany)")
    return notes


def gpu_requests(models: Sequence[Model]) -> dict[str, tuple[int, list[str]]]:
    """Accelerator resource -> (total asked, ``name: n`` per model): gpus x replicas."""
    out: dict[str, tuple[int, list[str]]] = {}
    for m in models:
        key = m.gpu_resource
        if key is not None:
            total, who = out.get(key, (0, []))
            out[key] = (total + m.gpu_count * m.replicas, [*who, f"{m.name}: {m.gpu_count * m.replicas}"])
    return out


def node_lister(cluster: Cluster) -> Callable[[], Sequence[Manifest]]:
    """The cluster's Nodes, listed at most once however many checks ask (a refusal is raised each time)."""
    listed: list[Sequence[Manifest]] = []

    def nodes() -> Sequence[Manifest]:
        if not listed:
            listed.append(cluster.list("v1", "Node"))
        return listed[0]

    return nodes


def check_gpus(nodes_of: Callable[[], Sequence[Manifest]], models: Sequence[Model]) -> list[str]:
    """Allocatable accelerators across nodes cover what the models ask (total, not free); returns notes.

    Raises:
        NotReady: the nodes do not have that many (the pods would stay Pending: Unschedulable).
    """
    asked = gpu_requests(models)
    if not asked:
        return []
    try:
        nodes = nodes_of()
    except Forbidden:
        return [f"you may not list nodes: GPU capacity not checked ({', '.join(asked)})"]
    notes: list[str] = []
    for key, (need, who) in asked.items():
        have = 0
        for n in nodes:
            raw = str(dig(n, "status", "allocatable", key, default="0") or "0")
            have += int(raw) if raw.isdigit() else 0
        if have < need:
            raise NotReady(f"the nodes have {have} allocatable {key} in total but the models ask for {need} "
                           f"({', '.join(who)})",
                           hint="lower gpus or replicas, or add GPU nodes; pods would stay Pending (Unschedulable)")
        notes.append(f"{key}: {need} asked, {have} allocatable on {len(nodes)} nodes (in use by others not counted)")
    return notes


def check_bf16_nodes(nodes_of: Callable[[], Sequence[Manifest]], models: Sequence[Model]) -> list[str]:
    """Some node carries a bf16 label that a model's node affinity requires (kserve.cpu); returns notes.

    Raises:
        NotReady: no node does (the pods would stay Pending: Unschedulable).
    """
    need = [m.name for m in models if node_affinity(m) is not None]
    if not need:
        return []
    try:
        nodes = nodes_of()
    except Forbidden:
        return [f"you may not list nodes: not checked that a node has bf16 for {', '.join(need)}"]
    have = [dig(n, "metadata", "name") for n in nodes
            if any(str(dig(n, "metadata", "labels", label, default="")) == "true" for label in NFD_BF16_LABELS)]
    if not have:
        raise NotReady(f"no node is labelled {' or '.join(f'{x}=true' for x in NFD_BF16_LABELS)}, which "
                       f"bfloat16 on CPU requires ({', '.join(need)})",
                       hint="install Node Feature Discovery (or label the nodes whose CPUs have AMX-BF16 or "
                            "AVX512-BF16), or set dtype: float32; pods would stay Pending (Unschedulable)")
    return [f"bfloat16 on CPU ({', '.join(need)}): {len(have)} of {len(nodes)} nodes have bf16 ({', '.join(have)})"]


@dataclass(frozen=True)
class TemplateCheck:
    """What :func:`check_templates` found: Templates to leave alone, notes and warnings."""

    left: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def check_templates(cluster: Cluster, spec: PoolSpec, templates: Sequence[Manifest]) -> TemplateCheck:
    """The dashboard Templates deploy would apply can be applied, or are there already.

    Project scope: the Template API is served (the access review runs with the project's other
    kinds); a warning says OpenShift AI 3.5 does not look in the project. Global scope: the API is
    served, the dashboard namespace exists, and a SelfSubjectAccessReview allows create and patch on
    Templates there; if not, every Template must already be there (an admin applied it), found as the
    dashboard finds it, and deploy leaves them alone.

    Raises:
        NotFound: the Template API is not served (not OpenShift), or the dashboard namespace is missing.
        Forbidden: the user may not create Templates in the dashboard namespace and some are missing:
            one line naming the admin command and the project-scoped alternative.
    """
    if not templates:
        return TemplateCheck()
    ns = template_namespace(spec)
    kind = kind_info(TEMPLATE_API_VERSION, TEMPLATE_KIND)
    live: list[Manifest] | None
    try:
        live = cluster.list(TEMPLATE_API_VERSION, TEMPLATE_KIND, ns)
    except NotFound as err:
        raise NotFound(f"the API server has no {TEMPLATE_KIND} ({TEMPLATE_API_VERSION}) resource: dashboard "
                       "Templates need OpenShift", hint="set dashboard.templates: false on a cluster without "
                       "OpenShift AI") from err
    except Forbidden:
        live = None
    dash = spec.dashboard.templates_namespace
    warnings = [w for w in (custom_runtimes_disabled(cluster, dash),) if w]
    if template_scope(spec) == "project":
        return TemplateCheck(warnings=(
            f"project-scoped Templates (in {ns}): OpenShift AI 3.6+ finds them; 3.5 looks only in {dash} and "
            "labels these runtimes 'Template removed' (there, use dashboard.templates_scope: global and an "
            "admin)", *warnings))
    try:
        if cluster.get("v1", "Namespace", ns) is None:
            raise NotFound(f"namespace {ns} (dashboard.templates_namespace) does not exist: is OpenShift AI "
                           "installed?", hint="set dashboard.templates_namespace to the dashboard's namespace "
                           "(Open Data Hub: opendatahub)")
    except Forbidden:
        pass  # project users may not read namespaces; the Templates' apply would say it
    if all(cluster.access(verb, kind, namespace=ns).allowed for verb in ("create", "patch")):
        return TemplateCheck(warnings=tuple(warnings))
    left: dict[str, tuple[str, str]] = {}
    missing: list[str] = []
    for t in templates:
        name = t["metadata"]["name"]
        runtime = t["objects"][0]["metadata"]["name"]
        try:
            found = (find_template(runtime, live, []) if live is not None
                     else cluster.get(TEMPLATE_API_VERSION, TEMPLATE_KIND, name, ns))
        except Forbidden:
            found = None
        if found is None:
            missing.append(name)
        elif found["metadata"]["name"] != name:
            left[name] = ("kept", f"found as Template {found['metadata']['name']}, which the dashboard matches; "
                          "you may not create Templates here")
        elif covers(found, t):
            left[name] = ("unchanged", "matches the config; you may not update Templates here (an admin applied it)")
        else:
            left[name] = ("kept", f"differs from the config and you may not update it: ask an admin to run "
                          f"`oc apply -f {TEMPLATES_PATH}`")
    if missing:
        what = (f"the dashboard Template {missing[0]} is" if len(missing) == 1
                else f"the dashboard Templates {', '.join(missing)} are")
        raise Forbidden(f"forbidden: you may not create templates.template.openshift.io in namespace {ns} "
                        f"(SelfSubjectAccessReview), and {what} not there: OpenShift AI 3.5+ would label the "
                        "runtimes 'Template removed'",
                        hint=f"ask an admin to run `oc apply -f {TEMPLATES_PATH}`, or set "
                        f"dashboard.templates_scope: project to keep the Templates in {spec.namespace}")
    return TemplateCheck(left=left, notes=(f"the dashboard Templates in {ns} are there already (an admin applied "
                                           "them): left as they are",), warnings=tuple(warnings))


ODH_CONFIG = ("opendatahub.io/v1alpha", "OdhDashboardConfig", "odh-dashboard-config")
"""The dashboard's settings object, in its namespace (every user may read it: odh-dashboard
``manifests/base/rbac/all-users/model-serving-role.yaml``)."""


def custom_runtimes_disabled(cluster: Cluster, dashboard_namespace: str) -> str | None:
    """A warning when the dashboard's ``disableCustomServingRuntimes`` flag is set, else None.

    With it, 3.5's ``useTemplates`` keeps only Templates labelled ``opendatahub.io/ootb``: the wizard
    does not offer poolserve's, and the "Template removed" check does not find them. Unreadable or
    absent (Open Data Hub without the object, a plain cluster): no warning.
    """
    api_version, kind, name = ODH_CONFIG
    try:
        config = cluster.get(api_version, kind, name, dashboard_namespace)
    except (NotFound, Forbidden):
        return None
    if dig(config, "spec", "dashboardConfig", "disableCustomServingRuntimes") is not True:
        return None
    return (f"{kind} {dashboard_namespace}/{name} sets disableCustomServingRuntimes: the dashboard ignores custom "
            "Templates (OpenShift AI 3.5 then labels the runtimes 'Template removed'); an admin can unset it")


def check_access(cluster: Cluster, objects: Sequence[Manifest], namespace: str) -> None:
    """SelfSubjectAccessReview: create and patch (server-side apply needs both) for each kind applied.

    Raises:
        Forbidden: naming every verb/resource refused.
    """
    kinds: dict[str, Kind] = {}
    for obj in objects:
        k = kind_of(obj)
        if k.namespaced:
            kinds.setdefault(k.resource, k)
    denied: list[tuple[str, Kind]] = []
    for k in kinds.values():
        for verb in ("create", "patch"):
            if not cluster.access(verb, k, namespace=namespace).allowed:
                denied.append((verb, k))
    if denied:
        if len(denied) == 1:
            raise forbidden(denied[0][0], denied[0][1], namespace, detail="SelfSubjectAccessReview")
        what = ", ".join(f"{v} {k.resource}" for v, k in denied)
        raise Forbidden(f"forbidden: you may not {what} in namespace {namespace} (SelfSubjectAccessReview)",
                        hint="ask a project admin for the admin or edit role on the namespace")


def preflight(cluster: Cluster, spec: PoolSpec, models: Sequence[Model],
              objects: Sequence[Manifest]) -> PreflightReport:
    """Run every check for deploying ``objects`` (for ``models``; empty with ``--runtimes-only``).

    Raises:
        ClusterUnreachable: the API does not answer or rejects the credentials.
        NotFound: KServe, the namespace or the PVC is missing.
        Forbidden: the user may not create/patch a kind (or label the namespace).
        NotReady: the PVC or the GPUs cannot serve what is asked.
    """
    version = cluster.server_version()
    kserve_desc, notes = check_kserve(cluster, spec.namespace)
    all_notes = list(notes)
    rendered_ns = next((o for o in objects if o.get("kind") == "Namespace"), None)
    exists, needs_apply, ns_notes = namespace_state(cluster, spec, rendered_ns)
    all_notes += ns_notes
    if models and exists:
        all_notes += check_pvc(cluster, spec, pvc_pods(spec))
    elif models:
        raise NotFound(f"PersistentVolumeClaim {spec.namespace}/{spec.cache.pvc} (cache.pvc) does not exist: "
                       f"namespace {spec.namespace} is new",
                       hint=f"create the namespace (`oc new-project {spec.namespace}`) and the PVC first")
    nodes = node_lister(cluster)
    all_notes += check_gpus(nodes, models)
    all_notes += check_bf16_nodes(nodes, models)
    all_notes += check_operators(cluster, models, objects, spec.namespace)
    if exists:
        all_notes += check_storage_claims(cluster, models, spec.namespace)
    templates = check_templates(cluster, spec, [o for o in objects if o.get("kind") == TEMPLATE_KIND])
    all_notes += templates.notes
    check_access(cluster, [o for o in objects if o.get("kind") != "Namespace"
                           and (o["metadata"].get("namespace") or spec.namespace) == spec.namespace], spec.namespace)
    return PreflightReport(server_version=version, kserve=kserve_desc, namespace_exists=exists,
                           namespace_needs_apply=needs_apply, notes=tuple(all_notes), warnings=templates.warnings,
                           templates_left=templates.left)
