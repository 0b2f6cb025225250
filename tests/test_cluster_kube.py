"""KubeCluster against a stub API server on 127.0.0.1: requests sent, and every error translated at the boundary."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

pytest.importorskip("kubernetes")

from poolserve.errors import ClusterUnreachable, Conflict, Forbidden, Invalid, NotFound, NotReady
from poolserve.targets.cluster.base import kind_info
from poolserve.targets.cluster.kube import KubeCluster, Request, translate

Reply = tuple[int, Any]


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> Reply:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                            "reason": reason, "code": code}
    if details is not None:
        body["details"] = details
    return code, body


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Stub:
    routes: dict[tuple[str, str], Callable[[Seen], Reply] | Reply] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            u = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen = Seen(self.command, u.path, parse_qs(u.query), dict(self.headers),
                        json.loads(raw) if raw else None)
            state.seen.append(seen)
            route = state.routes.get((self.command, u.path))
            if route is None:
                code, body = 404, "404 page not found"
            else:
                code, body = route(seen) if callable(route) else route
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def kubeconfig(path: Path, server: str, token: str = "sha256~test-token") -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "ns"}},
                     {"name": "other", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


WAITS: list[float] = []


@pytest.fixture
def kube(stub: Stub, tmp_path: Path) -> KubeCluster:
    WAITS.clear()
    return KubeCluster(kubeconfig=str(kubeconfig(tmp_path / "config", stub.url)), sleep=WAITS.append)


ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/ns/inferenceservices"
ISVC = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "ns"}, "spec": {"predictor": {}}}


def test_nothing_happens_at_construction(tmp_path: Path) -> None:
    KubeCluster(kubeconfig=str(tmp_path / "missing"), context="nope")  # no error, no I/O
    code = "import sys, poolserve.targets.cluster.kube\nprint('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_server_version_sends_the_token(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("GET", "/version")] = (200, {"gitVersion": "v1.31.4+openshift"})
    assert kube.server_version() == "v1.31.4+openshift"
    assert stub.seen[0].headers["Authorization"] == "Bearer sha256~test-token"


def test_apply_is_a_server_side_apply_with_our_field_manager(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("PATCH", f"{ISVC_PATH}/m")] = lambda seen: (200, {**seen.body, "metadata": {
        **seen.body["metadata"], "resourceVersion": "7"}})
    result = kube.apply(ISVC, dry_run=True, force=True)
    assert result["metadata"]["resourceVersion"] == "7"
    sent = stub.seen[-1]
    assert sent.headers["Content-Type"] == "application/apply-patch+yaml"
    assert sent.query == {"fieldManager": ["poolserve"], "force": ["true"], "dryRun": ["All"]}
    assert sent.body == ISVC
    kube.apply(ISVC)
    assert stub.seen[-1].query == {"fieldManager": ["poolserve"]}


def test_get_list_delete(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("GET", f"{ISVC_PATH}/m")] = (200, ISVC)
    stub.routes[("GET", f"{ISVC_PATH}/gone")] = status(404, "NotFound", 'inferenceservices.serving.kserve.io "gone" '
                                                       "not found", {"name": "gone", "kind": "inferenceservices"})
    stub.routes[("GET", ISVC_PATH)] = (200, {"kind": "InferenceServiceList", "items": [
        {"metadata": {"name": "m"}}]})
    stub.routes[("DELETE", f"{ISVC_PATH}/m")] = (200, {"kind": "Status", "status": "Success"})
    stub.routes[("DELETE", f"{ISVC_PATH}/gone")] = stub.routes[("GET", f"{ISVC_PATH}/gone")]
    assert kube.get("serving.kserve.io/v1beta1", "InferenceService", "m", "ns") == ISVC
    assert kube.get("serving.kserve.io/v1beta1", "InferenceService", "gone", "ns") is None
    items = kube.list("serving.kserve.io/v1beta1", "InferenceService", "ns", label_selector="a=b")
    assert items == [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                      "metadata": {"name": "m"}}]
    assert stub.seen[-1].query == {"labelSelector": ["a=b"]}
    assert kube.delete("serving.kserve.io/v1beta1", "InferenceService", "m", "ns") is True
    assert stub.seen[-1].body == {"propagationPolicy": "Background"}
    assert kube.delete("serving.kserve.io/v1beta1", "InferenceService", "gone", "ns") is False


def test_kserve_not_installed_is_a_404_without_a_status(stub: Stub, kube: KubeCluster) -> None:
    with pytest.raises(NotFound) as exc:
        kube.list("serving.kserve.io/v1beta1", "InferenceService", "ns")
    assert "KServe is not installed" in str(exc.value)
    with pytest.raises(NotFound, match="KServe is not installed"):
        kube.get("serving.kserve.io/v1beta1", "InferenceService", "m", "ns")


def test_expired_token(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("GET", "/version")] = status(401, "Unauthorized", "Unauthorized")
    with pytest.raises(ClusterUnreachable) as exc:
        kube.server_version()
    assert f"the Kubernetes API at {stub.url} rejected the credentials (401 Unauthorized)" in str(exc.value)
    assert "oc login" in str(exc.value)
    assert exc.value.exit_code == 3


def test_forbidden_names_verb_and_resource(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("PATCH", f"{ISVC_PATH}/m")] = status(
        403, "Forbidden", 'inferenceservices.serving.kserve.io "m" is forbidden: User "dev" cannot patch resource '
        '"inferenceservices" in API group "serving.kserve.io" in the namespace "ns"',
        {"name": "m", "group": "serving.kserve.io", "kind": "inferenceservices"})
    with pytest.raises(Forbidden) as exc:
        kube.apply(ISVC)
    msg = str(exc.value)
    assert msg.startswith("forbidden: you may not apply (patch) inferenceservices.serving.kserve.io/m in namespace ns")
    assert 'User "dev" cannot patch resource' in msg
    assert isinstance(exc.value.__cause__, Exception) and "HTTP 403" in str(exc.value.__cause__)


def test_webhook_denial_is_invalid_with_the_webhook_message(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("PATCH", f"{ISVC_PATH}/m")] = status(
        403, "Forbidden", 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: '
        "the 'name' field is not allowed in standard predictor")
    with pytest.raises(Invalid) as exc:
        kube.apply(ISVC)
    assert str(exc.value) == ("InferenceService ns/m rejected: admission webhook \"inferenceservice.kserve-webhook-"
                              "server.validator\" denied the request: the 'name' field is not allowed in standard "
                              "predictor (HTTP 403)")


def test_conflict_and_unprocessable(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("PATCH", f"{ISVC_PATH}/m")] = status(
        409, "Conflict", 'Apply failed with 1 conflict: conflict with "kubectl-edit" using serving.kserve.io/v1beta1: '
        ".spec.predictor.minReplicas")
    with pytest.raises(Conflict) as exc:
        kube.apply(ISVC)
    assert "--force-conflicts" in str(exc.value) and '"kubectl-edit"' in str(exc.value)
    stub.routes[("PATCH", f"{ISVC_PATH}/m")] = status(
        422, "Invalid", 'InferenceService.serving.kserve.io "m" is invalid: spec.predictor.minReplicas: Invalid value: '
        "-1: spec.predictor.minReplicas in body should be greater than or equal to 0")
    with pytest.raises(Invalid, match=r"minReplicas in body should be greater than or equal to 0 \(HTTP 422\)"):
        kube.apply(ISVC)


def test_namespace_missing_on_apply(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("PATCH", f"{ISVC_PATH}/m")] = status(404, "NotFound", 'namespaces "ns" not found',
                                                      {"name": "ns", "kind": "namespaces"})
    with pytest.raises(NotFound, match="namespace ns does not exist"):
        kube.apply(ISVC)


def test_webhook_unreachable(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("PATCH", f"{ISVC_PATH}/m")] = status(
        500, "InternalError", 'Internal error occurred: failed calling webhook "inferenceservice.kserve-webhook-server.'
        'defaulter": Post "https://kserve-webhook-server-service.kserve.svc:443/mutate": connection refused')
    with pytest.raises(ClusterUnreachable, match="an admission webhook could not be called"):
        kube.apply(ISVC)


def test_connection_refused(tmp_path: Path) -> None:
    waits: list[float] = []
    kube = KubeCluster(kubeconfig=str(kubeconfig(tmp_path / "config", "http://127.0.0.1:9")), timeout_s=2,
                       sleep=waits.append)
    with pytest.raises(ClusterUnreachable) as exc:
        kube.server_version()
    assert str(exc.value).startswith("cannot reach the Kubernetes API at http://127.0.0.1:9: ")
    assert "(after 5 attempts)" in str(exc.value) and "\n" not in str(exc.value)
    assert waits == [0.5, 1.0, 2.0, 4.0]  # nothing was sent: even a POST could be retried


def test_bad_kubeconfig_context(stub: Stub, tmp_path: Path) -> None:
    kube = KubeCluster(kubeconfig=str(kubeconfig(tmp_path / "config", stub.url)), context="missing")
    with pytest.raises(ClusterUnreachable, match=r"cannot use kubeconfig .* \(context missing\)"):
        kube.server_version()


def test_no_kubeconfig_and_not_in_a_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterUnreachable, match="no kubeconfig found and not running in a cluster"):
        KubeCluster().server_version()


def test_logs_and_previous_logs(stub: Stub, kube: KubeCluster) -> None:
    path = "/api/v1/namespaces/ns/pods/p/log"
    stub.routes[("GET", path)] = lambda seen: (
        (400, {"kind": "Status", "code": 400, "reason": "BadRequest",
               "message": 'previous terminated container "kserve-container" in pod "p" not found'})
        if seen.query.get("previous") else (200, "line 1\nline 2\n"))
    assert list(kube.logs("ns", "p", container="kserve-container", tail_lines=5)) == ["line 1", "line 2"]
    assert stub.seen[-1].query == {"container": ["kserve-container"], "tailLines": ["5"]}
    with pytest.raises(NotFound, match="has not restarted"):
        list(kube.logs("ns", "p", container="kserve-container", previous=True))
    assert list(kube.logs("ns", "p", follow=True)) == ["line 1", "line 2"]


def test_access_review(stub: Stub, kube: KubeCluster) -> None:
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    stub.routes[("POST", path)] = lambda seen: (201, {**seen.body, "status": {
        "allowed": seen.body["spec"]["resourceAttributes"]["verb"] == "get", "reason": "RBAC"}})
    role = kind_info("rbac.authorization.k8s.io/v1", "Role")
    assert kube.access("get", role, namespace="ns").allowed
    denied = kube.access("create", role, namespace="ns")
    assert not denied.allowed
    assert stub.seen[-1].body["spec"]["resourceAttributes"] == {
        "group": "rbac.authorization.k8s.io", "resource": "roles", "verb": "create", "namespace": "ns"}


@pytest.mark.parametrize(("code", "body", "cls", "text"), [
    (429, "Too many requests", ClusterUnreachable, "HTTP 429 on list pods: Too many requests"),
    (503, '{"kind":"Status","message":"etcdserver: leader changed"}', ClusterUnreachable, "leader changed"),
    (400, '{"kind":"Status","message":"bad selector"}', Invalid, "Pod ns/pods rejected: bad selector (HTTP 400)"),
    # Bodies as kube-apiserver v1.36 sent them (tests/test_cluster_contract.py observes them live).
    (500, '{"kind":"Status","status":"Failure","message":"failed to create typed patch object (ns/p; /v1, '
     'Kind=Pod): .spec.bogus: field not declared in schema","code":500}', Invalid,
     "Pod ns/p rejected: .spec.bogus: field not declared in schema"),
    (403, '{"kind":"Status","status":"Failure","message":"pods \\"p\\" is forbidden: unable to create new content '
     'in namespace ns because it is being terminated","reason":"Forbidden","details":{"name":"p","kind":"pods",'
     '"causes":[{"reason":"NamespaceTerminating","message":"namespace ns is being terminated","field":'
     '"metadata.namespace"}]},"code":403}', NotReady, "namespace ns is being deleted (Terminating)"),
])
def test_translate_other_statuses(code: int, body: str, cls: type, text: str) -> None:
    name = "p" if code in (403, 500) else None
    err = translate(code, body, Request("list", kind_info("v1", "Pod"), name, "ns"), "https://api:6443")
    assert isinstance(err, cls)
    assert text in str(err)


def test_broken_or_missing_kubeconfig_is_one_line(tmp_path: Path) -> None:
    from poolserve.errors import ClusterUnreachable
    from poolserve.targets.cluster.kube import KubeCluster

    bad = tmp_path / "kubeconfig"
    bad.write_text("garbage: [\n")
    with pytest.raises(ClusterUnreachable, match=f"cannot use kubeconfig {bad}"):
        KubeCluster(kubeconfig=str(bad)).server_version()
    with pytest.raises(ClusterUnreachable, match="does not exist"):
        KubeCluster(kubeconfig=str(tmp_path / "nope")).server_version()


# -- retries: 429/5xx only for idempotent calls ---------------------------------------------------

def flaky(replies: list[Reply], then: Reply) -> Callable[[Seen], Reply]:
    """Answer ``replies`` in turn, then ``then`` for ever."""
    left = list(replies)
    return lambda seen: left.pop(0) if left else then


BUSY = status(429, "TooManyRequests", "Too many requests, please try again later.")
DOWN = status(503, "ServiceUnavailable", "the server is currently unable to handle the request")


def test_get_and_list_are_retried_on_429_and_5xx_with_backoff(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("GET", "/version")] = flaky([BUSY, DOWN, status(502, "BadGateway", "bad gateway")],
                                             (200, {"gitVersion": "v1.36.2"}))
    assert kube.server_version() == "v1.36.2"
    assert WAITS == [0.5, 1.0, 2.0] and len(stub.seen) == 4
    stub.routes[("GET", ISVC_PATH)] = flaky([DOWN], (200, {"items": []}))
    assert kube.list("serving.kserve.io/v1beta1", "InferenceService", "ns") == []


def test_server_side_apply_is_retried_it_is_idempotent(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("PATCH", f"{ISVC_PATH}/m")] = flaky([DOWN, status(504, "Timeout", "request timed out")], (200, ISVC))
    assert kube.apply(ISVC)["metadata"]["name"] == "m"
    patches = [s for s in stub.seen if s.method == "PATCH"]
    assert len(patches) == 3 and all(p.body == patches[0].body for p in patches)  # the very same apply


def test_post_and_delete_are_never_retried_on_an_answer(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")] = DOWN
    with pytest.raises(ClusterUnreachable, match="HTTP 503 on create selfsubjectaccessreviews"):
        kube.access("get", kind_info("serving.kserve.io/v1beta1", "InferenceService"), namespace="ns")
    stub.routes[("DELETE", f"{ISVC_PATH}/m")] = BUSY
    with pytest.raises(ClusterUnreachable, match="HTTP 429"):
        kube.delete("serving.kserve.io/v1beta1", "InferenceService", "m", "ns")
    assert WAITS == [] and [s.method for s in stub.seen] == ["POST", "DELETE"]


def test_retries_give_up_in_one_line_naming_the_attempts(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("GET", "/version")] = DOWN
    with pytest.raises(ClusterUnreachable) as exc:
        kube.server_version()
    text = str(exc.value)
    assert "HTTP 503" in text and "(after 5 attempts)" in text and "\n" not in text
    assert WAITS == [0.5, 1.0, 2.0, 4.0]


def test_retry_after_is_honoured_and_capped() -> None:
    from poolserve.targets.cluster.kube import retry_delay

    assert retry_delay(0, "3") == 3.0 and retry_delay(0, "120") == 8.0 and retry_delay(2, None) == 2.0
    assert retry_delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 1.0  # an HTTP date: the backoff


def test_a_schema_refusal_is_not_retried(stub: Stub, kube: KubeCluster) -> None:
    stub.routes[("PATCH", f"{ISVC_PATH}/m")] = status(
        500, "InternalError", "failed to create typed patch object (ns/m; serving.kserve.io/v1beta1, "
        "Kind=InferenceService): .spec.x: field not declared in schema")
    with pytest.raises(Invalid):
        kube.apply(ISVC)
    assert WAITS == []
