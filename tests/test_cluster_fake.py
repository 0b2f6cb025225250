"""FakeCluster behaves like an API server where poolserve depends on it (server-side apply, errors, selectors)."""

from __future__ import annotations

import pytest

from poolserve.errors import ClusterUnreachable, Conflict, NotFound
from poolserve.targets.cluster.base import FIELD_MANAGER, kind_info, unreachable
from poolserve.targets.cluster.fake.cluster import FakeCluster
from poolserve.targets.cluster.fake.objects import event, namespace_obj, pod

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ns"},
      "data": {"a": "1", "b": "2"}}


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster([namespace_obj("ns")])


def test_apply_creates_then_is_a_no_op(fake: FakeCluster) -> None:
    created = fake.apply(CM)
    assert created["data"] == {"a": "1", "b": "2"}
    assert created["metadata"]["managedFields"] == [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}}]
    again = fake.apply(CM)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    changed = fake.apply({**CM, "data": {"a": "1", "b": "3"}})
    assert changed["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    assert changed["metadata"]["generation"] == 2


def test_fields_we_stop_applying_are_removed_but_others_fields_stay(fake: FakeCluster) -> None:
    fake.apply(CM)
    fake.edit("ConfigMap", "cfg", "ns", {"data": {"c": "mine"}}, manager="someone")
    result = fake.apply({**CM, "data": {"a": "1"}})
    assert result["data"] == {"a": "1", "c": "mine"}


def test_another_managers_field_conflicts_unless_forced(fake: FakeCluster) -> None:
    fake.apply(CM)
    fake.edit("ConfigMap", "cfg", "ns", {"data": {"a": "edited"}}, manager="kubectl-edit")
    with pytest.raises(Conflict) as exc:
        fake.apply(CM)
    assert 'conflict with "kubectl-edit" using v1: .data.a' in str(exc.value)
    assert "--force-conflicts" in str(exc.value)
    # Same value: shared ownership, no conflict.
    fake.edit("ConfigMap", "cfg", "ns", {"data": {"b": "2"}}, manager="other")
    forced = fake.apply(CM, force=True)
    assert forced["data"]["a"] == "1"
    fake.apply(CM)  # we own it now


def test_dry_run_stores_nothing(fake: FakeCluster) -> None:
    result = fake.apply(CM, dry_run=True)
    assert result["data"]["a"] == "1"
    assert fake.stored("ConfigMap", "cfg", "ns") is None
    assert fake.calls[-1].dry_run


def test_namespaced_object_needs_its_namespace() -> None:
    with pytest.raises(NotFound, match="namespace ns does not exist"):
        FakeCluster().apply(CM)


def test_kserve_defaulter_runs_on_apply(fake: FakeCluster) -> None:
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": "ns",
                         "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"}}}}}
    live = fake.apply(isvc)
    assert live["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard",
                                               "modelFormat": "huggingface"}
    rv = live["metadata"]["resourceVersion"]
    assert fake.apply(isvc)["metadata"]["resourceVersion"] == rv


def test_injected_errors_by_verb_kind_and_object(fake: FakeCluster) -> None:
    err = unreachable("https://api:6443", "timed out")
    fake.errors["get:ConfigMap/cfg"] = err
    assert fake.get("v1", "ConfigMap", "other", "ns") is None
    with pytest.raises(ClusterUnreachable):
        fake.get("v1", "ConfigMap", "cfg", "ns")
    fake.errors.clear()
    fake.errors["*"] = err
    with pytest.raises(ClusterUnreachable):
        fake.server_version()


def test_kserve_kinds_missing() -> None:
    fake = FakeCluster(kserve=False)
    with pytest.raises(NotFound, match="KServe is not installed"):
        fake.list("serving.kserve.io/v1beta1", "InferenceService", "ns")


def test_selectors_and_cascading_delete(fake: FakeCluster) -> None:
    owner = fake.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"}})
    fake.seed(pod("m", "ns", name="p1", owner=owner))
    fake.seed(pod("other", "ns", name="p2"))
    fake.seed(event("ns", "Pod", "p1", "BackOff", "back-off"))
    assert [p["metadata"]["name"] for p in fake.pods("ns", label_selector="serving.kserve.io/inferenceservice=m")] \
        == ["p1"]
    assert len(fake.pods("ns", label_selector="serving.kserve.io/inferenceservice")) == 2
    assert len(fake.pods("ns", label_selector="!serving.kserve.io/inferenceservice")) == 0
    assert len(fake.events("ns", field_selector="involvedObject.name=p1,type=Warning")) == 1
    assert fake.delete("apps/v1", "Deployment", "d", "ns")
    assert fake.stored("Pod", "p1", "ns") is None and fake.stored("Pod", "p2", "ns") is not None
    assert not fake.delete("apps/v1", "Deployment", "d", "ns")
    assert fake.delete("v1", "Namespace", "ns")
    assert fake.all("Pod") == []


def test_access_review_and_logs(fake: FakeCluster) -> None:
    fake.denied.add(("create", "roles.rbac.authorization.k8s.io"))
    assert not fake.access("create", kind_info("rbac.authorization.k8s.io/v1", "Role"), namespace="ns").allowed
    assert fake.access("patch", kind_info("rbac.authorization.k8s.io/v1", "Role"), namespace="ns").allowed
    fake.seed(pod("m", "ns", name="p1"))
    fake.pod_logs[("p1", "kserve-container", False)] = ["a", "b", "c"]
    assert list(fake.logs("ns", "p1", container="kserve-container", tail_lines=2)) == ["b", "c"]
    with pytest.raises(NotFound, match="pod ns/nope not found"):
        fake.logs("ns", "nope")
