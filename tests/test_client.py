"""PoolClient: request shapes, every failure kind, retry policy, TLS options (real TLS server on 127.0.0.1)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from poolserve.check.client import PoolClient, backoff_delays, check_url
from poolserve.errors import EndpointError, InsecureTransportWarning, SpecError
from poolserve.targets.base import Endpoint
from poolserve.vllm import api as vllm_api
from support.fake_vllm import FakeVllm, not_found_route, vllm_error

URL = "http://vllm.test"


def client_for(handler: object, **kw: object) -> tuple[PoolClient, list[float]]:
    slept: list[float] = []
    transport = handler.transport if isinstance(handler, FakeVllm) else httpx.MockTransport(handler)  # type: ignore[arg-type]
    kw.setdefault("model", "minilm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureTransportWarning)  # token over http to a mock host
        return PoolClient(URL, transport=transport, sleep=slept.append, **kw), slept  # type: ignore[arg-type]


# -- happy paths ----------------------------------------------------------------------------------

def test_embed_sends_model_token_and_parses_in_input_order() -> None:
    fake = FakeVllm(token="s3cret")
    c, _ = client_for(fake, token="s3cret")
    res = c.embed(["a b", "c d e"])
    assert len(res.vectors) == 2 and len(res.vectors[0]) == 384
    assert res.usage == vllm_api.Usage(prompt_tokens=9, total_tokens=9)
    method, path, body = fake.calls[-1]
    assert (method, path) == ("POST", "/v1/embeddings")
    assert body == {"input": ["a b", "c d e"], "model": "minilm"}


def test_embed_truncate_prompt_tokens_is_sent() -> None:
    fake = FakeVllm()
    c, _ = client_for(fake)
    c.embed("x", truncate_prompt_tokens=-1)
    assert fake.calls[-1][2] == {"input": "x", "model": "minilm", "truncate_prompt_tokens": -1}


def test_score_rerank_models_health() -> None:
    fake = FakeVllm(task="score", served=("ce", "org/ce"))
    c, _ = client_for(fake, model="ce")
    s = c.score("q", ["Paris is the capital and most populous city of France.", "x"], path="/v1/score")
    assert s.scores[0] > s.scores[1]
    r = c.rerank("q", ["x", "Paris is the capital and most populous city of France.", "y"], top_n=2, path="/v2/rerank")
    assert [h.index for h in r.results] == [1, 0]
    assert fake.calls[-1][2]["top_n"] == 2
    assert c.models() == ["ce", "org/ce"]
    assert c.served_models()[0].max_model_len == 256
    assert c.health() is True
    assert fake.paths()[:2] == ["/v1/score", "/v2/rerank"]


def test_model_omitted_when_none() -> None:
    fake = FakeVllm()
    c, _ = client_for(fake, model=None)
    c.embed("x")
    assert "model" not in fake.calls[-1][2]


def test_from_endpoint_takes_url_model_token() -> None:
    fake = FakeVllm(served=("m1",), token="tok")
    c = PoolClient.from_endpoint(Endpoint(url="http://127.0.0.1:9/", served_model="m1", token="tok"),
                                 transport=fake.transport)
    assert c.url == "http://127.0.0.1:9" and c.model == "m1"
    c.embed("x")
    assert fake.calls[-1][2]["model"] == "m1"


def test_token_never_in_repr() -> None:
    c = PoolClient("https://h.example", token="very-secret-token")
    assert "very-secret" not in repr(c)


# -- failure kinds --------------------------------------------------------------------------------

def raise_(exc: Exception):  # type: ignore[no-untyped-def]
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc
    return handler


def test_connection_refused_is_named_and_retried_then_given_up() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("[Errno 111] Connection refused")

    c, slept = client_for(handler, retries=3)
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    e = ei.value
    assert e.kind == "connection" and e.status is None and e.url == URL + "/v1/embeddings"
    assert "connection refused: nothing listens on vllm.test" in str(e)
    assert "after 4 attempts" in str(e)
    assert len(calls) == 4 and slept == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("exc", [
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ReadError("[Errno 104] Connection reset by peer"),
    httpx.WriteError("[Errno 32] Broken pipe"),
])
def test_a_disconnect_after_sending_is_reported_once_not_retried(exc: httpx.TransportError) -> None:
    # The POST may have reached the server (and run): repeating it is not the client's call.
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise exc

    c, slept = client_for(handler, retries=3)
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    assert calls == ["/v1/embeddings"] and slept == []
    assert ei.value.kind == "connection"
    assert f"connection lost: {exc}" in str(ei.value) and "not retried" in str(ei.value)
    assert "attempts" not in str(ei.value)


def test_real_connection_refused_on_a_closed_port() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = PoolClient(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(EndpointError) as ei:
        c.health()
    assert ei.value.kind == "connection"
    assert f"connection refused: nothing listens on 127.0.0.1:{port}" in str(ei.value)
    assert "\n" not in str(ei.value)


def test_unknown_host() -> None:
    c, slept = client_for(raise_(httpx.ConnectError("[Errno -2] Name or service not known")), retries=1)
    with pytest.raises(EndpointError, match=r"cannot resolve host vllm\.test") as ei:
        c.models()
    assert ei.value.kind == "connection" and slept == [0.5]


def test_tls_verify_failure_is_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate")

    c, slept = client_for(handler)
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    assert ei.value.kind == "tls" and len(calls) == 1 and slept == []
    assert "--ca-file" in str(ei.value) and "--insecure" in str(ei.value)


def test_read_timeout_not_retried_connect_timeout_retried() -> None:
    c, slept = client_for(raise_(httpx.ReadTimeout("timed out")), timeout_s=7)
    with pytest.raises(EndpointError, match="no reply within 7 s") as ei:
        c.embed("x")
    assert ei.value.kind == "timeout" and slept == []
    c, slept = client_for(raise_(httpx.ConnectTimeout("timed out")), retries=2)
    with pytest.raises(EndpointError, match="could not connect") as ei:
        c.embed("x")
    assert ei.value.kind == "timeout" and slept == [0.5, 1.0]


def test_401_without_and_with_token() -> None:
    fake = FakeVllm(token="right")
    c, slept = client_for(fake)
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    e = ei.value
    assert (e.kind, e.status) == ("auth", 401)
    assert "needs a bearer token" in str(e) and "POOLSERVE_TOKEN" in str(e)
    assert slept == []
    c, _ = client_for(fake, token="wrong-token")
    with pytest.raises(EndpointError, match="token was rejected") as ei:
        c.embed("x")
    assert "wrong-token" not in str(ei.value)


def test_403() -> None:
    c, _ = client_for(lambda r: httpx.Response(403, text="Forbidden"), token="t")
    with pytest.raises(EndpointError, match="forbidden: the token is valid but may not use this model") as ei:
        c.score("q", ["d"])
    assert (ei.value.kind, ei.value.status) == ("auth", 403)


def test_404_embeddings_on_a_cross_encoder_names_the_task() -> None:
    c, _ = client_for(FakeVllm(task="score"))
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    e = ei.value
    assert (e.kind, e.status, e.server_message) == ("wrong_task", 404, "Not Found")
    assert "cross-encoder" in str(e) and "no /v1/embeddings" in str(e) and "0.16" in str(e)


def test_404_score_route_missing_names_the_task() -> None:
    c, _ = client_for(lambda r: not_found_route())
    with pytest.raises(EndpointError, match="no score/rerank API") as ei:
        c.rerank("q", ["d"])
    assert ei.value.kind == "wrong_task"


def test_400_does_not_support_api_before_0_16_is_wrong_task() -> None:
    flat = {"object": "error", "message": "The model does not support Embeddings API", "type": "BadRequestError",
            "param": None, "code": 400}
    c, _ = client_for(lambda r: httpx.Response(400, json=flat))
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    assert ei.value.kind == "wrong_task" and ei.value.server_message == "The model does not support Embeddings API"


def test_404_wrong_served_model_name_keeps_vllm_message() -> None:
    c, _ = client_for(FakeVllm(served=("minilm",)), model="nope")
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    e = ei.value
    assert (e.kind, e.status) == ("model_not_found", 404)
    assert e.server_message == "The model `nope` does not exist."
    assert "The model `nope` does not exist." in str(e) and "/v1/models" in str(e)


def test_404_html_from_a_router_is_not_found() -> None:
    page = "<html><body><h1>Application is not available</h1></body></html>"
    c, _ = client_for(lambda r: httpx.Response(404, text=page, headers={"content-type": "text/html"}))
    with pytest.raises(EndpointError, match="an HTML page") as ei:
        c.embed("x")
    assert ei.value.kind == "not_found" and ei.value.server_message is None


def test_400_input_too_long() -> None:
    fake = FakeVllm(max_model_len=8)
    c, slept = client_for(fake)
    with pytest.raises(EndpointError) as ei:
        c.embed("one two three four five six seven eight")
    e = ei.value
    assert (e.kind, e.status) == ("input_too_long", 400)
    assert e.server_message and e.server_message.startswith("This model's maximum context length is 8 tokens")
    assert "truncate_prompt_tokens=-1" in str(e)
    assert slept == []


def test_400_other_is_bad_request() -> None:
    c, _ = client_for(lambda r: vllm_error(400, "Model 'm' does not support Matryoshka embeddings"))
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    assert ei.value.kind == "bad_request" and "Matryoshka" in str(ei.value)


def test_503_retried_then_unavailable() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503, text="Service Unavailable")

    c, slept = client_for(handler, retries=2, backoff_s=0.25)
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    assert (ei.value.kind, ei.value.status) == ("unavailable", 503)
    assert len(calls) == 3 and slept == [0.25, 0.5]


def test_503_then_success() -> None:
    answers = [httpx.Response(503), httpx.Response(503)]
    fake = FakeVllm()

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else fake(request)

    c, slept = client_for(handler, retries=3)
    assert len(c.embed("x").vectors) == 1
    assert slept == [0.5, 1.0]


def test_connect_error_then_success() -> None:
    fake = FakeVllm()
    failures = [httpx.ConnectError("[Errno 111] Connection refused")]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop()
        return fake(request)

    c, slept = client_for(handler)
    assert c.models() == ["minilm"]
    assert slept == [0.5]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 500, 502])
def test_no_retry_on_4xx_and_other_5xx(status: int) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"error": {"message": "boom", "type": "X", "param": None, "code": status}})

    c, slept = client_for(handler, retries=5)
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    assert len(calls) == 1 and slept == []
    assert ei.value.status == status and ei.value.server_message == "boom"


def test_500_is_server_error_with_body_snippet() -> None:
    c, _ = client_for(lambda r: httpx.Response(500, text="Internal Server Error"))
    with pytest.raises(EndpointError, match=r"HTTP 500: server error \(Internal Server Error\)") as ei:
        c.embed("x")
    assert ei.value.kind == "server_error"


def test_retries_zero_means_one_attempt() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    c, slept = client_for(handler, retries=0)
    with pytest.raises(EndpointError):
        c.embed("x")
    assert len(calls) == 1 and slept == []


def test_backoff_is_exponential_and_capped() -> None:
    assert backoff_delays(6, 0.5, 8.0) == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_delays(0) == []


def test_bad_json_and_bad_shape() -> None:
    c, _ = client_for(lambda r: httpx.Response(200, text="hello"))
    with pytest.raises(EndpointError, match="not JSON") as ei:
        c.embed("x")
    assert ei.value.kind == "bad_response"
    c, _ = client_for(lambda r: httpx.Response(200, text="<!DOCTYPE html><title>Log in</title>"))
    with pytest.raises(EndpointError, match="HTML page"):
        c.models()
    c, _ = client_for(lambda r: httpx.Response(200, json={"data": [{"index": 0}]}))
    with pytest.raises(EndpointError, match="embeddings response is malformed") as ei:
        c.embed("x")
    assert ei.value.kind == "bad_response"


def test_redirect_to_login_page() -> None:
    c, _ = client_for(lambda r: httpx.Response(302, headers={"location": "https://oauth.example/login"}))
    with pytest.raises(EndpointError, match=r"redirected to https://oauth\.example/login") as ei:
        c.embed("x")
    assert ei.value.kind == "redirect"


def test_health_false_on_503_without_retry_and_raises_on_401() -> None:
    fake = FakeVllm()
    fake.healthy = False
    c, slept = client_for(fake)
    assert c.health() is False and slept == [] and fake.paths() == ["/health"]
    c, _ = client_for(FakeVllm(token="t"))
    with pytest.raises(EndpointError) as ei:
        c.health()
    assert ei.value.kind == "auth"


def test_errors_are_one_line() -> None:
    body = {"error": {"message": "line one\nline two", "type": "BadRequestError", "param": None, "code": 400}}
    c, _ = client_for(lambda r: httpx.Response(400, json=body))
    with pytest.raises(EndpointError) as ei:
        c.embed("x")
    assert "\n" not in str(ei.value) and "line one line two" in str(ei.value)
    assert ei.value.server_message == "line one\nline two"


# -- TLS options ----------------------------------------------------------------------------------

def test_insecure_warns_for_https_only_and_excludes_ca_file(tmp_path: Path) -> None:
    with pytest.warns(InsecureTransportWarning, match="verification is off"):
        PoolClient("https://h.example", insecure=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PoolClient("http://127.0.0.1:1", insecure=True, token="t")
    with pytest.raises(ValueError, match="mutually exclusive"):
        PoolClient("https://h.example", insecure=True, ca_file=str(tmp_path / "ca.pem"))


def test_token_over_plain_http_to_another_host_warns() -> None:
    with pytest.warns(InsecureTransportWarning, match="over plain http"):
        PoolClient("http://model.apps.example.com", token="t")


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "localhost", "ftp://host", "http://", "file:///tmp/x"])
def test_check_url_rejects_urls_without_http_scheme_or_host(url: str) -> None:
    with pytest.raises(SpecError, match=f"--url '{url}': expected an http:// or https:// URL"):
        check_url(url)


def test_check_url_accepts_http_and_https() -> None:
    for url in ("http://127.0.0.1:8000", "https://m-ns.apps.example.com/", "http://[::1]:8000"):
        assert check_url(url) == url


def test_missing_ca_file_is_a_tls_error(tmp_path: Path) -> None:
    with pytest.raises(EndpointError, match="cannot load CA file") as ei:
        PoolClient("https://h.example", ca_file=str(tmp_path / "nope.pem"))
    assert ei.value.kind == "tls"


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "poolserve-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "m", "max_model_len": 16}]}).encode()
        if self.path == "/health":
            body = b""
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """(https URL, CA file, plain-http URL) of two tiny servers on 127.0.0.1."""
    pytest.importorskip("cryptography")  # present via vllm/kubernetes deps; only builds the test cert
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    https = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    https.socket = ctx.wrap_socket(https.socket, server_side=True)
    plain = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (https, plain)]
    for t in threads:
        t.start()
    yield (f"https://127.0.0.1:{https.server_address[1]}", cert, f"127.0.0.1:{plain.server_address[1]}")
    for s in (https, plain):
        s.shutdown()
        s.server_close()


def test_real_tls_untrusted_then_ca_file_then_insecure(tls_server: tuple[str, Path, str]) -> None:
    url, ca, _ = tls_server
    with pytest.raises(EndpointError) as ei:
        PoolClient(url, retries=0).health()
    e = ei.value
    assert e.kind == "tls" and "is not trusted" in str(e) and "self-signed" in str(e)
    assert "default-ingress-cert" in str(e)
    assert PoolClient(url, ca_file=str(ca)).models() == ["m"]
    with pytest.warns(InsecureTransportWarning):
        insecure = PoolClient(url, insecure=True)
    assert insecure.health() is True


def test_real_https_to_a_plain_http_port(tls_server: tuple[str, Path, str]) -> None:
    _, _, plain = tls_server
    with pytest.raises(EndpointError) as ei:
        PoolClient(f"https://{plain}", retries=0).health()
    assert ei.value.kind == "tls" and "does not speak TLS" in str(ei.value)
