"""A client for one served vLLM pooling model: embeddings, scores, rerank, models, health.

:class:`PoolClient` is sync, over :class:`httpx.Client` (the transport is injectable, so tests
use :class:`httpx.MockTransport`). Request bodies and response parsing come from
:mod:`poolserve.vllm.api`. It retries with exponential backoff only when no connection could be made
(connection refused, unknown host, connect timeout; not TLS failures) and on HTTP 503, so a request
that may have reached a live server (a disconnect or reset after sending) is never repeated. It
turns every failure into one :class:`~poolserve.errors.EndpointError` whose ``kind`` names what went
wrong and which keeps the HTTP status, the URL and vLLM's own message:

=================  ===========================================================================
kind               meaning
=================  ===========================================================================
connection         nothing listens there (connection refused), unknown host, connection reset or
                   server disconnected (these two after sending: not retried)
tls                certificate not trusted, or TLS spoken to a plain-HTTP port
timeout            no connection or no reply in time
auth               401/403: token missing, rejected or without access
redirect           3xx, usually an OAuth login page in front of the model (send a token)
wrong_task         the route exists on vLLM but not for this model: since vLLM 0.16 a
                   cross-encoder has no ``/v1/embeddings`` (404 ``{"detail":"Not Found"}``);
                   up to 0.15 a 400 "does not support ... API"
not_found          404 from something that is not a vLLM route (wrong base URL, router page)
model_not_found    404 "The model `x` does not exist.": the request names a model the server
                   does not serve (``--served-model-name``)
input_too_long     400: the input is longer than ``--max-model-len`` (truncate, or shorten it)
bad_request        another 400/422
unavailable        503 after the retries: vLLM's engine is not ready or dead, or no ready pod
server_error       another 5xx
bad_response       the reply is not JSON or not the shape vLLM sends
=================  ===========================================================================

Nothing here prints: an explicit ``insecure=True`` (and a bearer token sent over plain HTTP to
another host) is reported with :func:`warnings.warn` (:class:`~poolserve.errors.InsecureTransportWarning`).
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import httpx

from poolserve.errors import EndpointError, InsecureTransportWarning, SpecError
from poolserve.targets.base import Endpoint
from poolserve.vllm import api as vllm_api

Kind = Literal[
    "connection", "tls", "timeout", "auth", "redirect", "wrong_task", "not_found", "model_not_found",
    "input_too_long", "bad_request", "unavailable", "server_error", "bad_response",
]
RETRY_STATUS = 503
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
_MAX_SERVER_MESSAGE = 500
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
# `oc` command that writes the OpenShift ingress CA (which signs the default *.apps Route certs).
INGRESS_CA_HINT = ("pass --ca-file with the CA that signed it (OpenShift default Routes: "
                   "oc -n openshift-config-managed get configmap default-ingress-cert "
                   "-o jsonpath='{.data.ca-bundle\\.crt}' > ingress-ca.crt), or --insecure")


def check_url(url: str, option: str = "--url") -> str:
    """``url`` if it is an absolute http(s) URL with a host; a one-line SpecError naming ``option`` otherwise.

    Without this, ``127.0.0.1:8000`` (no scheme) or ``ftp://host`` only failed per request, as
    connection errors that looked like a dead server.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as err:
        raise SpecError(f"{option} {url!r}: not a URL ({err})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SpecError(f"{option} {url!r}: expected an http:// or https:// URL with a host, "
                        "e.g. http://127.0.0.1:8000")
    if parsed.userinfo:
        # Never echoed: a password in the URL would end up in messages and reports.
        raise SpecError(f"{option}: the URL carries credentials (user:password@); give the token with --token or "
                        "$POOLSERVE_TOKEN instead")
    return url


def backoff_delays(retries: int, base_s: float = DEFAULT_BACKOFF_S, cap_s: float = MAX_BACKOFF_S) -> list[float]:
    """The waits before retry 1..N: ``base * 2**i``, capped (0.5, 1, 2, 4, 8, 8, ...)."""
    return [min(cap_s, base_s * 2**i) for i in range(retries)]


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _one_line(text: str, limit: int = _MAX_SERVER_MESSAGE) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _host(url: str) -> str:
    u = httpx.URL(url)
    return f"{u.host}:{u.port}" if u.port else u.host


def classify_transport_error(err: httpx.TransportError, method: str, url: str, timeout_s: float) -> EndpointError:
    """Name an httpx transport failure (no HTTP response at all)."""
    where = f"{method} {url}"
    text = " ".join(str(e) for e in _chain(err))
    if isinstance(err, httpx.TimeoutException):
        if isinstance(err, httpx.ConnectTimeout):
            return EndpointError(f"{where}: could not connect to {_host(url)} within {timeout_s:g} s",
                                 url=url, kind="timeout", hint="check the host, port and any firewall")
        return EndpointError(f"{where}: no reply within {timeout_s:g} s", url=url, kind="timeout",
                             hint="the model may be overloaded or still warming up; raise --timeout")
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(err)) or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = next((e.verify_message for e in _chain(err)
                       if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message), None)
        return EndpointError(f"{where}: TLS certificate of {_host(url)} is not trusted"
                             + (f" ({reason})" if reason else ""), url=url, kind="tls", hint=INGRESS_CA_HINT)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return EndpointError(f"{where}: TLS handshake failed: {_host(url)} does not speak TLS", url=url, kind="tls",
                             hint="use http:// for this port")
    if any(isinstance(e, ssl.SSLError) for e in _chain(err)) or "[SSL" in text:
        return EndpointError(f"{where}: TLS handshake with {_host(url)} failed: {_one_line(str(err), 200)}",
                             url=url, kind="tls", hint=INGRESS_CA_HINT)
    if any(isinstance(e, ConnectionRefusedError) for e in _chain(err)) or "Connection refused" in text \
            or "Errno 111" in text:
        return EndpointError(f"{where}: connection refused: nothing listens on {_host(url)}", url=url,
                             kind="connection", hint="is the model running? see `poolserve status`")
    if any(isinstance(e, socket.gaierror) for e in _chain(err)) or "Name or service not known" in text \
            or "name resolution" in text or "nodename nor servname" in text:
        return EndpointError(f"{where}: cannot resolve host {httpx.URL(url).host}", url=url, kind="connection",
                             hint="check the URL (oc get route / oc get inferenceservice shows it)")
    detail = _one_line(str(err) or type(err).__name__, 200)
    if isinstance(err, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        return EndpointError(f"{where}: connection lost: {detail}", url=url, kind="connection",
                             hint="not retried: the server may have received the request; see `poolserve logs`")
    return EndpointError(f"{where}: connection failed: {detail}", url=url, kind="connection")


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _is_html(resp: httpx.Response) -> bool:
    head = resp.text.lstrip()[:15].lower()
    return "html" in resp.headers.get("content-type", "") or head.startswith(("<!doctype", "<html"))


_WRONG_TASK = {
    vllm_api.EMBEDDINGS: "the served model has no embeddings API: since vLLM 0.16 a cross-encoder "
                         "(a score/rerank model) has no /v1/embeddings route; call score/rerank instead, "
                         "or point at an embedding model",
}
_WRONG_TASK_SCORE = ("the served model has no score/rerank API: vLLM gives /score and /rerank only to "
                     "cross-encoders (one label) and embedding models (0.16+; /score since 0.6.5, /rerank since "
                     "0.7.0)")


def classify_response(resp: httpx.Response, method: str, path: str, *, token_sent: bool) -> EndpointError:
    """Name an HTTP error response; keeps the status, URL and vLLM's message."""
    status = resp.status_code
    url = str(resp.request.url)
    body = _json_or_none(resp)
    server_msg = vllm_api.error_message(body)
    msg_text = server_msg or ""
    where = f"{method} {url}: HTTP {status}"
    quoted = f' (server said: "{_one_line(msg_text)}")' if msg_text else ""

    def err(explanation: str, kind: Kind, hint: str | None = None, with_server: bool = True) -> EndpointError:
        return EndpointError(f"{where}: {explanation}{quoted if with_server else ''}", status=status, url=url,
                             hint=hint, kind=kind, server_message=server_msg)

    if status in (301, 302, 303, 307, 308):
        location = resp.headers.get("location", "?")
        return err(f"redirected to {location}", "redirect",
                   "a login page (OAuth proxy) wants a bearer token: pass --token; or the URL needs https://")
    if status == 401:
        return err("unauthorized: " + ("the token was rejected (expired, or from another cluster?)" if token_sent
                                       else "the endpoint needs a bearer token"), "auth",
                   "pass --token or set POOLSERVE_TOKEN (OpenShift: a token of a service account allowed "
                   "to get the InferenceService, or `oc whoami -t`)")
    if status == 403:
        return err("forbidden: the token is valid but may not use this model", "auth",
                   "grant the user/service account 'get' on the InferenceService, or use another token")
    if status == 404:
        if "does not exist" in msg_text:
            return err("the request names a model this server does not serve", "model_not_found",
                       "use a name that /v1/models lists, i.e. one of vLLM's --served-model-name")
        if isinstance(body, Mapping) and body.get("detail") == "Not Found" and (
                path == vllm_api.EMBEDDINGS or path in vllm_api.SCORE_PATHS or path in vllm_api.RERANK_PATHS):
            return err(_WRONG_TASK.get(path, _WRONG_TASK_SCORE), "wrong_task")
        what = "an HTML page (a router or proxy, not vLLM)" if _is_html(resp) else "not found"
        return err(f"{what}: nothing at {path} behind this base URL", "not_found",
                   "check the URL (the Route or InferenceService URL, without /v1)")
    if status == 400:
        param = body.get("error", {}).get("param") if isinstance(body, Mapping) and \
            isinstance(body.get("error"), Mapping) else None
        if param in ("input_tokens", "input_text") or "maximum context length" in msg_text:
            return err("input too long for the model's max-model-len", "input_too_long",
                       "shorten it, or send truncate_prompt_tokens=-1 to truncate to max-model-len")
        if "does not support" in msg_text and "API" in msg_text:
            return err("the served model does not support this API (vLLM < 0.16 answers 400 where newer "
                       "versions answer 404)", "wrong_task")
        return err("bad request", "bad_request")
    if status == 422:
        return err("request rejected by validation", "bad_request")
    if status == RETRY_STATUS:
        return err("service unavailable: vLLM is starting or its engine died, or no pod is ready", "unavailable",
                   "see `poolserve status`")
    if status >= 500:
        text = "" if msg_text else f' ({_one_line(resp.text, 200)})' if resp.text.strip() else ""
        return err(f"server error{text}", "server_error", "see `poolserve logs`")
    return err(f"unexpected status {resp.reason_phrase or ''}".rstrip(), "bad_response")


class PoolClient:
    """Talks to one vLLM pooling server (a Route, an InferenceService URL or a local port).

    Args:
        url: base URL without ``/v1`` (``https://minilm-embedding-ns.apps.example.com``).
        model: name sent as ``model`` in request bodies (one of vLLM's ``--served-model-name``);
            None omits it (vLLM >= 0.8 then uses the only model).
        token: bearer token (never logged or shown in ``repr``).
        ca_file: PEM bundle to trust for https (e.g. the OpenShift ingress CA).
        insecure: skip TLS verification (explicit opt-in; warns with
            :class:`~poolserve.errors.InsecureTransportWarning`).
        timeout_s: read/write timeout of one request.
        connect_timeout_s: connect timeout.
        retries: how often to retry after a failed connect (refused, unknown host, timeout) or HTTP 503.
        backoff_s: first wait between retries; doubles each time, capped at 8 s.
        transport: httpx transport (tests pass :class:`httpx.MockTransport`).
        sleep: how to wait between retries (tests record the waits instead of sleeping).

    Raises:
        EndpointError: ``kind="tls"`` when ``ca_file`` cannot be loaded.
        ValueError: both ``ca_file`` and ``insecure``.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        token: str | None = None,
        ca_file: str | None = None,
        insecure: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if ca_file and insecure:
            raise ValueError("ca_file and insecure are mutually exclusive")
        self.url = url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self._token_sent = bool(token)
        self._sleep = sleep
        parsed = httpx.URL(self.url)
        verify: ssl.SSLContext | bool = True
        if insecure:
            verify = False
            if parsed.scheme == "https":
                warnings.warn(f"TLS certificate verification is off for {self.url} (insecure)",
                              InsecureTransportWarning, stacklevel=2)
        elif ca_file:
            try:
                verify = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as err:
                raise EndpointError(f"cannot load CA file {ca_file}: {err}", kind="tls") from err
        if token and parsed.scheme == "http" and parsed.host not in _LOOPBACK:
            warnings.warn(f"sending a bearer token to {parsed.host} over plain http", InsecureTransportWarning,
                          stacklevel=2)
        headers = {"Accept": "application/json", "User-Agent": "poolserve"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, verify=verify, transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s), follow_redirects=False,
        )

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, **kwargs: Any) -> PoolClient:
        """A client for a target's :class:`~poolserve.targets.base.Endpoint`; ``kwargs`` override its fields."""
        opts: dict[str, Any] = {"model": endpoint.served_model, "token": endpoint.token,
                                "ca_file": endpoint.ca_file, "insecure": not endpoint.verify_tls}
        opts.update(kwargs)
        return cls(endpoint.url, **opts)

    def __repr__(self) -> str:
        return f"PoolClient(url={self.url!r}, model={self.model!r})"

    def __enter__(self) -> PoolClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- transport ------------------------------------------------------------------------------

    def send(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
             retry: bool = True) -> httpx.Response:
        """Send one request, retrying failed connects and 503; return any other response as is.

        Raises:
            EndpointError: transport failures (after the retries), and 503 after the retries.
        """
        url = self.url + path
        delays = backoff_delays(self.retries if retry else 0, self.backoff_s)
        attempt = 0
        while True:
            try:
                resp = self._http.request(method, path, json=body)
            except httpx.TransportError as err:
                e = classify_transport_error(err, method, url, self.timeout_s)
                # Only failures before the request could reach the server: a disconnect or reset after
                # sending (RemoteProtocolError, ReadError, WriteError) may have run it already.
                retryable = isinstance(err, httpx.ConnectTimeout) or (
                    isinstance(err, httpx.ConnectError) and e.kind == "connection")
                if retryable and attempt < len(delays):
                    self._sleep(delays[attempt])
                    attempt += 1
                    continue
                if attempt:
                    e = EndpointError(f"{e.message} (after {attempt + 1} attempts)", url=url, kind=e.kind,
                                      hint=e.hint)
                raise e from err
            if resp.status_code == RETRY_STATUS and attempt < len(delays):
                self._sleep(delays[attempt])
                attempt += 1
                continue
            return resp

    def request_json(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
                     retry: bool = True) -> Any:
        """Send and return the decoded JSON of a 2xx reply.

        Raises:
            EndpointError: any failure, named by ``kind``.
        """
        resp = self.send(method, path, body, retry=retry)
        if not 200 <= resp.status_code < 300:
            raise classify_response(resp, method, path, token_sent=self._token_sent)
        data = _json_or_none(resp)
        if data is None:
            what = "an HTML page (a login page or router, not vLLM?)" if _is_html(resp) else \
                f"not JSON ({_one_line(resp.text, 80)!r})"
            raise EndpointError(f"{method} {resp.request.url}: HTTP {resp.status_code} but the reply is {what}",
                                status=resp.status_code, url=str(resp.request.url), kind="bad_response")
        return data

    def _parsed(self, method: str, path: str, body: Mapping[str, Any] | None, parse: Callable[[Any], Any]) -> Any:
        data = self.request_json(method, path, body)
        try:
            return parse(data)
        except vllm_api.ProtocolError as err:
            raise EndpointError(f"{method} {self.url}{path}: {err}", status=200, url=self.url + path,
                                kind="bad_response") from err

    # -- API ------------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str] | str, *, truncate_prompt_tokens: int | None = None) -> vllm_api.Embeddings:
        """``POST /v1/embeddings``: one vector per text, in input order."""
        body = vllm_api.embed_request(texts, self.model, truncate_prompt_tokens=truncate_prompt_tokens)
        return self._parsed("POST", vllm_api.EMBEDDINGS, body, vllm_api.parse_embeddings)  # type: ignore[no-any-return]

    def score(self, query: str, docs: Sequence[str], *, path: str = vllm_api.SCORE_PATHS[0]) -> vllm_api.Scores:
        """``POST /score`` (or ``path="/v1/score"``): one score per document, in document order."""
        body = vllm_api.score_request(query, docs, self.model)
        return self._parsed("POST", path, body, vllm_api.parse_scores)  # type: ignore[no-any-return]

    def rerank(self, query: str, docs: Sequence[str], top_n: int | None = None, *,
               path: str = vllm_api.RERANK_PATHS[0]) -> vllm_api.Reranked:
        """``POST /rerank`` (or ``/v1/rerank``, ``/v2/rerank``): results best first; ``top_n`` limits them."""
        body = vllm_api.rerank_request(query, docs, self.model, top_n)
        return self._parsed("POST", path, body, vllm_api.parse_rerank)  # type: ignore[no-any-return]

    def served_models(self) -> list[vllm_api.ServedModel]:
        """``GET /v1/models`` with each entry's ``max_model_len``."""
        return self._parsed("GET", vllm_api.MODELS, None, vllm_api.served_models)  # type: ignore[no-any-return]

    def models(self) -> list[str]:
        """``GET /v1/models``: the served model names."""
        return [m.id for m in self.served_models()]

    def health(self) -> bool:
        """``GET /health`` once (no retries): True on 200, False on 503 (engine starting or dead).

        Raises:
            EndpointError: connection, TLS, auth and any other unexpected answer.
        """
        resp = self.send("GET", vllm_api.HEALTH, retry=False)
        if resp.status_code == 200:
            return True
        if resp.status_code == RETRY_STATUS:
            return False
        raise classify_response(resp, "GET", vllm_api.HEALTH, token_sent=self._token_sent)
