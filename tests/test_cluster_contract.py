"""One behaviour suite, run against FakeCluster and against the real API server (envtest), so the fake cannot drift.

Each test takes a :class:`Backend`: ``fake`` (FakeCluster, in memory) or ``real`` (poolserve's
KubeCluster against the envtest control plane with the simulated KServe webhook and controller, see
:mod:`support.envcluster`). The assertions are the same for both; where the two once differed the
fake was fixed (LESSONS_LEARNED.md lists each difference).

What the real side observes is recorded from the API server itself: its answers, and its audit log
for the requests poolserve sent (``list`` calls per kind).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from conftest import CONFIG
from poolserve.config.load import load_spec
from poolserve.config.schema import PoolSpec
from poolserve.errors import Conflict, Invalid, NotFound, NotReady
from poolserve.kserve.names import ISVC_API_VERSION, ISVC_KIND, SR_API_VERSION, SR_KIND, Manifest
from poolserve.kserve.render import Rendered, render
from poolserve.targets.base import DeployOptions
from poolserve.targets.cluster.base import FIELD_MANAGER, Cluster, kind_info
from poolserve.targets.cluster.fake.kserve import cluster_for
from poolserve.targets.cluster.fake.objects import event
from poolserve.targets.cluster.target import ClusterTarget
from support import schema
from support.assets import crd_dir
from support.kubeapi import path

MODEL = "minilm-embedding"
RUNTIME = "vllm-embedding-runtime"


@dataclass
class Backend:
    """What a contract test needs from either side."""

    name: str
    cluster: Cluster
    ns: str
    spec: PoolSpec
    rendered: Rendered
    edit: Callable[[Manifest, dict[str, Any], str], None]
    """Another client's Update of ``obj`` with ``changes`` as field manager ``manager``."""
    seed: Callable[[Manifest], None]
    """Create an object as another client would (events, finalized objects)."""
    lists: Callable[[], Counter[str]]
    """``list`` requests poolserve sent per resource (plural) since the backend was made."""
    settle: Callable[[Callable[[], bool], str], None]
    """Wait until the condition holds (real: the controllers run; fake: must hold already)."""
    finalize: Callable[[Manifest, str], None]
    """Remove one finalizer from the object (as its controller would)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def obj(self, kind: str, name: str) -> Manifest:
        return copy.deepcopy(next(o for o in self.rendered.manifests if o["kind"] == kind
                                  and o["metadata"]["name"] == name))


def _fake_backend() -> Backend:
    spec = load_spec(CONFIG, {"namespace": "contract"})
    fake = cluster_for(spec, validator=schema.validator(crd_dir()))

    def edit(obj: Manifest, changes: dict[str, Any], manager: str) -> None:
        k = kind_info(obj["apiVersion"], obj["kind"])
        fake.edit(k.kind, obj["metadata"]["name"], obj["metadata"].get("namespace"), changes, manager=manager)

    def lists() -> Counter[str]:
        return Counter(kind_info_by_kind(c.kind).plural for c in fake.calls if c.verb == "list")

    def settle(check: Callable[[], bool], what: str) -> None:
        assert check(), f"fake: {what} does not hold right away"

    def finalize(obj: Manifest, finalizer: str) -> None:
        fake.finalize(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"), finalizer)

    return Backend("fake", fake, spec.namespace, spec, render(spec), edit, fake.seed, lists, settle, finalize,
                   {"fake": fake})


def kind_info_by_kind(kind: str) -> Any:
    from poolserve.targets.cluster.base import _KINDS

    return next(k for k in _KINDS if k.kind == kind)


def _real_backend(request: pytest.FixtureRequest) -> Backend:
    from poolserve.targets.cluster.kube import KubeCluster

    kube = request.getfixturevalue("kube")
    ns = request.getfixturevalue("ns")
    spec = load_spec(CONFIG, {"namespace": ns})
    cluster = KubeCluster(kubeconfig=str(kube.kubeconfig))
    api = kube.api
    mark = kube.cp.audit_mark()

    def edit(obj: Manifest, changes: dict[str, Any], manager: str) -> None:
        k = kind_info(obj["apiVersion"], obj["kind"])
        p = path(k.api_version, k.plural, obj["metadata"].get("namespace") if k.namespaced else None,
                 obj["metadata"]["name"])
        api.merge_patch(p, changes, fieldManager=manager)  # a PATCH is an Update operation: the manager owns them

    def seed(obj: Manifest) -> None:
        k = kind_info(obj["apiVersion"], obj["kind"])
        body = copy.deepcopy(obj)
        body["metadata"].pop("creationTimestamp", None)
        api.create(path(k.api_version, k.plural, obj["metadata"].get("namespace") if k.namespaced else None), body)

    def lists() -> Counter[str]:
        return Counter(e["objectRef"]["resource"] for e in kube.cp.audit(since=mark, user_agent="poolserve")
                       if e["verb"] == "list")

    def settle(check: Callable[[], bool], what: str) -> None:
        kube.wait(what, check, timeout_s=60)

    def finalize(obj: Manifest, finalizer: str) -> None:
        k = kind_info(obj["apiVersion"], obj["kind"])
        p = path(k.api_version, k.plural, obj["metadata"].get("namespace") if k.namespaced else None,
                 obj["metadata"]["name"])
        live = api.get(p) or {}
        left = [f for f in live.get("metadata", {}).get("finalizers") or [] if f != finalizer]
        api.merge_patch(p, {"metadata": {"finalizers": left or None}})

    return Backend("real", cluster, ns, spec, render(spec), edit, seed, lists, settle, finalize, {"kube": kube})


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.envtest)])
def b(request: pytest.FixtureRequest) -> Backend:
    return _fake_backend() if request.param == "fake" else _real_backend(request)


def target(b: Backend) -> ClusterTarget:
    return ClusterTarget(b.cluster, poll_s=0.2)


# --------------------------------------------------------------------------------------------------
# Server-side apply.


@pytest.mark.apiserver_only
def test_apply_creates_then_a_no_op_keeps_the_resource_version_then_a_change_bumps_it(b: Backend) -> None:
    sr = b.obj(SR_KIND, RUNTIME)
    created = b.cluster.apply(sr)
    rv = created["metadata"]["resourceVersion"]
    assert created["metadata"]["generation"] == 1
    assert any(m["manager"] == FIELD_MANAGER and m["operation"] == "Apply"
               for m in created["metadata"]["managedFields"])
    again = b.cluster.apply(sr)
    assert again["metadata"]["resourceVersion"] == rv  # a no-op apply writes nothing
    sr["spec"]["containers"][0]["args"] = [*sr["spec"]["containers"][0]["args"], "--max-num-seqs=64"]
    changed = b.cluster.apply(sr)
    assert changed["metadata"]["resourceVersion"] != rv
    assert changed["metadata"]["generation"] == 2
    # A label is metadata: a new resourceVersion, the same generation.
    sr["metadata"]["labels"]["extra"] = "yes"
    labelled = b.cluster.apply(sr)
    assert labelled["metadata"]["generation"] == 2
    assert labelled["metadata"]["resourceVersion"] != changed["metadata"]["resourceVersion"]


@pytest.mark.apiserver_only
def test_the_kserve_defaulter_runs_on_apply_and_its_defaults_are_not_changes(b: Backend) -> None:
    isvc = b.obj(ISVC_KIND, MODEL)
    first = b.cluster.apply(isvc)
    ann = first["metadata"]["annotations"]
    assert ann["serving.kserve.io/deploymentMode"] == "Standard"  # RawDeployment, normalized by the webhook
    assert ann["modelFormat"] == "huggingface"
    again = b.cluster.apply(isvc)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


@pytest.mark.apiserver_only
def test_deploy_reports_created_then_unchanged_then_configured(b: Backend) -> None:
    tgt = target(b)
    first = tgt.deploy(b.rendered, [MODEL], wait=False, timeout_s=30)
    assert {c.kind: c.action for c in first.changes if c.kind != "Namespace"} == {
        SR_KIND: "created", ISVC_KIND: "created"}
    second = tgt.deploy(b.rendered, [MODEL], wait=False, timeout_s=30)
    assert {c.action for c in second.changes} == {"unchanged"}, second.changes
    spec = load_spec(CONFIG, {"namespace": b.ns, "models.0.max_model_len": 128})
    third = tgt.deploy(render(spec), [MODEL], wait=False, timeout_s=30)
    assert {c.kind: c.action for c in third.changes if c.kind != "Namespace"} == {
        SR_KIND: "unchanged", ISVC_KIND: "configured"}


@pytest.mark.apiserver_only
def test_fields_we_stop_applying_are_removed_and_other_managers_fields_stay(b: Backend) -> None:
    sr = b.obj(SR_KIND, RUNTIME)
    sr["metadata"]["labels"]["temporary"] = "yes"
    b.cluster.apply(sr)
    b.edit(sr, {"metadata": {"labels": {"someone-elses": "label"}}}, "kubectl-label")
    del sr["metadata"]["labels"]["temporary"]
    result = b.cluster.apply(sr)
    labels = result["metadata"]["labels"]
    assert "temporary" not in labels
    assert labels["someone-elses"] == "label"


@pytest.mark.apiserver_only
def test_another_managers_change_conflicts_until_forced(b: Backend) -> None:
    isvc = b.obj(ISVC_KIND, MODEL)
    b.cluster.apply(b.obj(SR_KIND, RUNTIME))
    b.cluster.apply(isvc)
    # maxReplicas: KServe's validating webhook refuses minReplicas above it (validateReplicas).
    b.edit(isvc, {"spec": {"predictor": {"maxReplicas": 3}}}, "kubectl-edit")
    with pytest.raises(Conflict) as exc:
        b.cluster.apply(isvc)
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"conflict applying InferenceService {b.ns}/{MODEL}" in msg
    assert '"kubectl-edit"' in msg and ".spec.predictor.maxReplicas" in msg and "--force-conflicts" in msg
    assert exc.value.exit_code == 6
    # The CLI path: deploy without and with --force-conflicts.
    tgt = target(b)
    with pytest.raises(Conflict):
        tgt.deploy(b.rendered, [MODEL], wait=False, timeout_s=30)
    forced = tgt.deploy(b.rendered, [MODEL], wait=False, timeout_s=30,
                        options=DeployOptions(force_conflicts=True))
    assert {c.name: c.action for c in forced.changes}[MODEL] == "configured"
    live = b.cluster.get(ISVC_API_VERSION, ISVC_KIND, MODEL, b.ns)
    assert live is not None and live["spec"]["predictor"]["maxReplicas"] == 1
    # Applying the same again changes nothing: same generation and spec. (Not resourceVersion here: the
    # simulated KServe may write the status between the two calls; the no-op test above proves it.)
    again = b.cluster.apply(isvc)
    assert again["metadata"]["generation"] == live["metadata"]["generation"]
    assert again["spec"] == live["spec"]


@pytest.mark.apiserver_only
def test_server_dry_run_stores_nothing(b: Backend) -> None:
    tgt = target(b)
    dry = tgt.deploy(b.rendered, [MODEL], wait=False, timeout_s=30, options=DeployOptions(dry_run="server"))
    assert {c.kind: c.action for c in dry.changes if c.kind != "Namespace"} == {SR_KIND: "created",
                                                                                ISVC_KIND: "created"}
    assert b.cluster.get(ISVC_API_VERSION, ISVC_KIND, MODEL, b.ns) is None
    assert b.cluster.get(SR_API_VERSION, SR_KIND, RUNTIME, b.ns) is None
    result = b.cluster.apply(b.obj(ISVC_KIND, MODEL), dry_run=True)
    assert result["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"  # webhooks ran
    assert b.cluster.get(ISVC_API_VERSION, ISVC_KIND, MODEL, b.ns) is None
    # On an existing object: the answer shows the change, the stored object keeps it out.
    live = b.cluster.apply(b.obj(SR_KIND, RUNTIME))
    sr = b.obj(SR_KIND, RUNTIME)
    sr["metadata"]["labels"]["dry"] = "run"
    assert b.cluster.apply(sr, dry_run=True)["metadata"]["labels"]["dry"] == "run"
    stored = b.cluster.get(SR_API_VERSION, SR_KIND, RUNTIME, b.ns)
    assert stored is not None and "dry" not in stored["metadata"]["labels"]
    assert stored["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]


@pytest.mark.apiserver_only
@pytest.mark.parametrize(("value", "field_path"), [("lots", ".spec.predictor.minReplicas"),
                                                   (None, ".spec.predictor.model.notAField")])
def test_a_crd_schema_rejection_is_one_line_naming_the_object_and_field(b: Backend, value: Any,
                                                                         field_path: str) -> None:
    isvc = b.obj(ISVC_KIND, MODEL)
    if value is None:
        isvc["spec"]["predictor"]["model"]["notAField"] = 1
    else:
        isvc["spec"]["predictor"]["minReplicas"] = value
    for dry in (True, False):
        with pytest.raises(Invalid) as exc:
            b.cluster.apply(isvc, dry_run=dry)
        msg = str(exc.value)
        assert "\n" not in msg and exc.value.exit_code == 7
        assert msg.startswith(f"InferenceService {b.ns}/{MODEL} rejected: ")
        assert field_path in msg
    assert b.cluster.get(ISVC_API_VERSION, ISVC_KIND, MODEL, b.ns) is None


# --------------------------------------------------------------------------------------------------
# Reads.


@pytest.mark.apiserver_only
def test_status_lists_each_kind_once(b: Backend) -> None:
    tgt = target(b)
    tgt.deploy(b.rendered, [], wait=False, timeout_s=30)
    before = b.lists()
    statuses = tgt.status(b.rendered, [])
    assert [s.name for s in statuses] == [m.name for m in b.spec.models]
    made = b.lists() - before
    assert made == Counter({"inferenceservices": 1, "servingruntimes": 1, "deployments": 1, "pods": 1, "events": 1,
                            "services": 1}), made


@pytest.mark.apiserver_only
def test_event_field_selectors(b: Backend) -> None:
    b.seed(event(b.ns, "Pod", "p-1", "BackOff", "Back-off restarting failed container"))
    b.seed(event(b.ns, "Pod", "p-2", "Scheduled", "Successfully assigned", type_="Normal"))
    b.seed(event(b.ns, "InferenceService", "p-1", "InternalError", "fails to reconcile"))

    def reasons(selector: str) -> list[str]:
        return sorted(e["reason"] for e in b.cluster.events(b.ns, field_selector=selector))

    assert reasons("type=Warning") == ["BackOff", "InternalError"]
    assert reasons("involvedObject.name=p-1") == ["BackOff", "InternalError"]
    assert reasons("involvedObject.name=p-1,involvedObject.kind=Pod") == ["BackOff"]
    assert reasons("type=Warning,involvedObject.name=p-2") == []
    assert reasons("reason=Scheduled") == ["Scheduled"]
    with pytest.raises(Invalid, match="field label not supported: message"):
        b.cluster.events(b.ns, field_selector="message=x")


@pytest.mark.apiserver_only
def test_label_selectors(b: Backend) -> None:
    target(b).deploy(b.rendered, [], wait=False, timeout_s=30)
    isvcs = b.cluster.list(ISVC_API_VERSION, ISVC_KIND, b.ns, label_selector="app.kubernetes.io/managed-by=poolserve")
    assert len(isvcs) == 3
    assert all(o["apiVersion"] == ISVC_API_VERSION and o["kind"] == ISVC_KIND for o in isvcs)
    assert b.cluster.list(ISVC_API_VERSION, ISVC_KIND, b.ns,
                          label_selector="app.kubernetes.io/managed-by!=poolserve") == []
    assert len(b.cluster.list(SR_API_VERSION, SR_KIND, b.ns, label_selector="opendatahub.io/dashboard")) == 2
    assert b.cluster.list(SR_API_VERSION, SR_KIND, b.ns, label_selector="!opendatahub.io/dashboard") == []


@pytest.mark.apiserver_only
def test_get_and_list_of_missing_things(b: Backend) -> None:
    assert b.cluster.get(ISVC_API_VERSION, ISVC_KIND, "absent", b.ns) is None
    assert b.cluster.list("v1", "Pod", "no-such-namespace") == []
    with pytest.raises(NotFound, match="namespace no-such-namespace does not exist"):
        b.cluster.apply({**b.obj(SR_KIND, RUNTIME), "metadata": {"name": RUNTIME, "namespace": "no-such-namespace"}})
    assert b.cluster.delete(ISVC_API_VERSION, ISVC_KIND, "absent", b.ns) is False


# --------------------------------------------------------------------------------------------------
# Deletion.


def test_delete_waits_for_finalizers_and_cascades_to_owned_objects(b: Backend) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "held", "namespace": b.ns, "finalizers": ["example.com/hold"]}, "data": {"a": "1"}}
    b.seed(cm)
    assert b.cluster.delete("v1", "ConfigMap", "held", b.ns) is True
    held = b.cluster.get("v1", "ConfigMap", "held", b.ns)
    assert held is not None and held["metadata"].get("deletionTimestamp")  # still there, Terminating
    assert b.cluster.delete("v1", "ConfigMap", "held", b.ns) is True  # deleting again is not an error
    b.finalize(held, "example.com/hold")
    b.settle(lambda: b.cluster.get("v1", "ConfigMap", "held", b.ns) is None, "the finalized ConfigMap is gone")
    # An owned object goes with its owner (garbage collection; background propagation).
    owner = b.cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": b.ns}})
    b.seed({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "owned", "namespace": b.ns, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]}})
    assert b.cluster.delete("v1", "ConfigMap", "owner", b.ns) is True
    b.settle(lambda: b.cluster.get("v1", "ConfigMap", "owned", b.ns) is None, "the owned ConfigMap is collected")


def test_a_deleted_namespace_terminates_then_is_finalized(b: Backend) -> None:
    ns = f"{b.ns}-gone"
    b.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    b.seed({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "namespace": ns,
                                                                  "finalizers": ["example.com/hold"]}})
    b.settle(lambda: b.cluster.get("v1", "ServiceAccount", "default", ns) is not None or b.name == "fake",
             "the default ServiceAccount")
    assert b.cluster.delete("v1", "Namespace", ns) is True
    live = b.cluster.get("v1", "Namespace", ns)
    assert live is not None and live["status"]["phase"] == "Terminating"
    # New content is refused while it terminates: one line that says so (not "you may not ... ask an admin").
    with pytest.raises(NotReady) as exc:
        b.cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new", "namespace": ns}})
    assert str(exc.value).startswith(f"namespace {ns} is being deleted")
    held = b.cluster.get("v1", "ConfigMap", "held", ns)
    b.settle(lambda: bool((b.cluster.get("v1", "ConfigMap", "held", ns) or {}).get("metadata", {}).get(
        "deletionTimestamp")), "the namespace controller deleting its content")
    assert held is not None
    b.finalize(held, "example.com/hold")
    b.settle(lambda: b.cluster.get("v1", "Namespace", ns) is None, "the namespace finalized")


def test_deleting_an_inference_service_removes_what_kserve_made_for_it(b: Backend) -> None:
    tgt = target(b)
    if b.name == "fake":
        from poolserve.targets.cluster.fake.kserve import ready_controller

        b.extra["fake"].controller = ready_controller
    tgt.deploy(b.rendered, [MODEL], wait=False, timeout_s=30)
    tgt.wait(b.rendered, [MODEL], timeout_s=30)
    assert b.cluster.get("apps/v1", "Deployment", f"{MODEL}-predictor", b.ns) is not None
    result = tgt.delete(b.rendered, [MODEL], runtimes=True)
    assert {(c.kind, c.action) for c in result.changes} == {(ISVC_KIND, "deleted"), (SR_KIND, "deleted")}
    b.settle(lambda: b.cluster.get(ISVC_API_VERSION, ISVC_KIND, MODEL, b.ns) is None, "the InferenceService gone")
    b.settle(lambda: not b.cluster.list("apps/v1", "Deployment", b.ns) and not b.cluster.pods(b.ns),
             "its Deployment and pods collected")
    again = tgt.delete(b.rendered, [MODEL], runtimes=True)
    assert {(c.kind, c.action) for c in again.changes} == {(ISVC_KIND, "absent"), (SR_KIND, "absent")}


@pytest.mark.apiserver_only
def test_access_review_allows_the_admin(b: Backend) -> None:
    assert b.cluster.access("create", kind_info(ISVC_API_VERSION, ISVC_KIND), namespace=b.ns).allowed
    assert b.cluster.server_version().startswith("v1.")


# --------------------------------------------------------------------------------------------------
# Dashboard Templates (OpenShift's Template API; on envtest a CRD standing in for it, support.openshift_api).


@pytest.mark.apiserver_only
def test_templates_are_applied_found_by_status_missed_when_gone_and_kept_while_named(b: Backend) -> None:
    dash = f"{b.ns}-dash"
    b.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dash}})
    # Runtime names unique to the test: a global Template may be named from any namespace.
    spec = load_spec(CONFIG, {"namespace": b.ns, "runtime_mode": "per-model", "dashboard.templates": True,
                              "dashboard.templates_namespace": dash, "runtimes.0.name": f"{b.ns}-embed",
                              "runtimes.1.name": f"{b.ns}-rerank"})
    rendered = render(spec)
    embed_t, rerank_t = f"{b.ns}-embed-template", f"{b.ns}-rerank-template"
    tgt = target(b)
    result = tgt.deploy(rendered, [], wait=False, timeout_s=30)
    assert [(c.kind, c.namespace, c.name, c.action) for c in result.changes if c.kind == "Template"] == [
        ("Template", dash, embed_t, "created"), ("Template", dash, rerank_t, "created")]
    live = b.cluster.get("template.openshift.io/v1", "Template", embed_t, dash)
    assert live is not None and live["objects"][0]["metadata"]["name"] == f"{b.ns}-embed"
    assert {c.action for c in tgt.deploy(rendered, [], wait=False, timeout_s=30).changes} == {"unchanged"}

    before = b.lists()
    assert [s.warnings for s in tgt.status(rendered, [])] == [(), (), ()]
    assert (b.lists() - before)["templates"] == 2  # the dashboard namespace and the project, once each

    assert b.cluster.delete("template.openshift.io/v1", "Template", embed_t, dash) is True
    warnings = {s.name: s.warnings for s in tgt.status(rendered, [])}
    assert warnings[MODEL] and warnings["granite-embedding"] and warnings["msmarco-reranker"] == ()
    assert warnings[MODEL][0].startswith(f"runtime {MODEL} names Template '{b.ns}-embed' "
                                         f"(opendatahub.io/template-name) but no Template in {dash} or {b.ns}")

    tgt.deploy(rendered, [MODEL], wait=False, timeout_s=30)
    first = tgt.delete(rendered, [MODEL], runtimes=True)
    change = next(c for c in first.changes if c.kind == "Template")
    assert (change.name, change.action, change.note) == (embed_t, "kept", f"named by {b.ns}/granite-embedding")
    rest = tgt.delete(rendered, [], runtimes=True)
    assert {(c.name, c.action) for c in rest.changes if c.kind == "Template"} == {(embed_t, "deleted"),
                                                                                  (rerank_t, "deleted")}
    b.settle(lambda: b.cluster.list("template.openshift.io/v1", "Template", dash) == [], "the Templates gone")
    b.cluster.delete("v1", "Namespace", dash)
