"""The real :class:`~poolserve.targets.cluster.base.Cluster`: the official ``kubernetes`` client, built lazily.

Only configuration comes from the ``kubernetes`` package (kubeconfig and context, ``oc login``
tokens, exec plugins, client certificates, in-cluster service accounts); requests go through
its configured urllib3 pool to fixed REST paths (:func:`~poolserve.targets.cluster.base.kind_info`), so
no discovery round trips and no discovery cache file are needed, and the code does not depend on
the generated client's internals, which change between releases.

Nothing touches the network, or even imports ``kubernetes``, until the first call. Every HTTP
error and connection error is translated here, at the boundary, into a
:class:`~poolserve.errors.PoolserveError` (``raise X(...) from err``) that keeps the HTTP status
and the API server's (or admission webhook's) message.

Retries (:func:`retryable`), with exponential backoff (0.5 s doubling, capped at 8 s, or the
server's ``Retry-After``), at most :data:`DEFAULT_RETRIES` times:

- a connection that could not be made (refused, unknown host, connect timeout): any call, since
  nothing was sent;
- 429 (API Priority and Fairness, or a busy aggregated API) and 500/502/503/504 (an API server
  restarting behind a load balancer): only idempotent calls. Those are GET (get, list, logs) and the
  server-side apply PATCH: it sends the whole desired state of our field manager, with no
  resourceVersion, so applying it twice leaves the object as applying it once (a first attempt that
  did land makes the second one a no-op). DELETE is not retried (a lost answer followed by a 404
  would report the object as already gone), nor POST (a create is not idempotent; our only POST, the
  access review, is cheap to ask again by re-running the command). A 500 that says the patch does not
  fit the schema is deterministic and not retried either.
"""

from __future__ import annotations

import builtins
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from poolserve.errors import ClusterUnreachable, MissingDependency, NotFound, PoolserveError
from poolserve.kserve.names import Manifest
from poolserve.targets.cluster.base import (
    FIELD_MANAGER,
    Access,
    Kind,
    conflict,
    forbidden,
    invalid,
    kind_info,
    kind_missing,
    kind_of,
    namespace_missing,
    namespace_terminating,
    one_line,
    ref,
    unauthorized,
    unreachable,
)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 4
BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
APPLY_PATCH = "application/apply-patch+yaml"
_TYPED_PATCH = "failed to create typed patch object"
INSTALL_HINT = "install the cluster extra: pip install -e '.[cluster]' in the poolserve checkout"


@dataclass(frozen=True)
class Request:
    """What a request was for, so an error can name the verb and the object."""

    verb: str
    kind: Kind
    name: str | None = None
    namespace: str | None = None


def _status_body(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def translate(status: int, body: str, req: Request, server: str) -> PoolserveError:
    """An HTTP error response -> the PoolserveError a user reads (pure; unit-tested directly).

    - 401: credentials rejected (expired ``oc login`` token) -> ClusterUnreachable.
    - 403 from an admission webhook -> Invalid with the webhook's message; 403 ``NamespaceTerminating``
      (creating in a namespace being deleted) -> NotReady; other 403 -> Forbidden naming the verb and
      resource.
    - 404 without a Status naming the object (``404 page not found``): the kind is not served ->
      NotFound "KServe is not installed"; a missing namespace -> NotFound naming it.
    - 409 -> Conflict explaining ``--force-conflicts``; 400/422 -> Invalid with the server's message.
    - 500 "failed to create typed patch object": server-side apply refused the object against its
      schema (a wrong type, a field not declared in the CRD) -> Invalid naming the field.
    - 500 "failed calling webhook" and other 5xx/429 -> ClusterUnreachable.
    """
    data = _status_body(body)
    message = one_line(str(data.get("message") or body or f"HTTP {status}"))
    k, name, ns = req.kind, req.name, req.namespace
    obj_name = name or k.plural
    if status == 401:
        return unauthorized(server)
    if status == 403:
        if "admission webhook" in message:
            return invalid(k.kind, obj_name, ns, f"{message} (HTTP 403)")
        causes = (data.get("details") or {}).get("causes") or []
        if ns and (any(c.get("reason") == "NamespaceTerminating" for c in causes if isinstance(c, dict))
                   or "because it is being terminated" in message):
            return namespace_terminating(ns)
        return forbidden(req.verb, k, ns, name, message)
    if status == 404:
        details = data.get("details") or {}
        if data.get("kind") != "Status" or not details:
            return kind_missing(k.api_version, k.kind)
        if details.get("kind") == "namespaces" and k.kind != "Namespace" and ns:
            return namespace_missing(ns)
        return NotFound(f"{ref(k.kind, obj_name, ns)} not found ({message})")
    if status == 409:
        return conflict(k.kind, obj_name, ns, f"{message} (HTTP 409)")
    if status in (400, 422):
        return invalid(k.kind, obj_name, ns, f"{message} (HTTP {status})")
    if status == 500 and _TYPED_PATCH in message:
        # "failed to create typed patch object (ns/name; group/version, Kind=K): .spec.x: field not declared
        # in schema": the part after the object is the field and the problem.
        return invalid(k.kind, obj_name, ns, message.split("): ", 1)[-1])
    if status >= 500 and "failed calling webhook" in message:
        return ClusterUnreachable(f"{ref(k.kind, obj_name, ns)}: an admission webhook could not be called: {message}",
                                  hint="is the KServe controller running? ask the cluster admin")
    return unreachable(server, f"HTTP {status} on {req.verb} {k.resource}: {message}")


def idempotent(method: str, content_type: str | None) -> bool:
    """GET, and the server-side apply PATCH (see the module docstring); never POST or DELETE."""
    return method == "GET" or (method == "PATCH" and content_type == APPLY_PATCH)


def retryable(method: str, content_type: str | None, status: int, body: str) -> bool:
    """Whether an HTTP error answer is worth the same request again (pure)."""
    if status not in RETRY_STATUSES or not idempotent(method, content_type):
        return False
    return _TYPED_PATCH not in body


def retry_delay(attempt: int, retry_after: str | None) -> float:
    """Seconds before retry ``attempt`` (0-based): the server's ``Retry-After`` seconds, else the backoff."""
    backoff = min(MAX_BACKOFF_S, BACKOFF_S * 2.0 ** attempt)
    if retry_after and retry_after.strip().isdigit():
        return min(MAX_BACKOFF_S, float(retry_after.strip())) or backoff
    return backoff


def _connection_detail(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or err
    text = one_line(str(reason), 200)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return f"TLS verification failed ({text}): set certificate-authority in the kubeconfig"
    return text


class KubeCluster:
    """:class:`~poolserve.targets.cluster.base.Cluster` over the Kubernetes REST API."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """Remember where to connect; nothing is loaded or contacted yet.

        Args:
            context: kubeconfig context (default: the current one).
            kubeconfig: kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``, else the
                in-cluster service account).
            timeout_s: per-request timeout (not applied to ``logs --follow``).
            retries: how often to repeat a request that may be repeated (see the module docstring).
            sleep: how to wait between attempts (tests record the waits).
        """
        self.context = context
        self.kubeconfig = kubeconfig
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.sleep = sleep
        self._client: Any = None

    # ---------------------------------------------------------------------------------------------
    # Connection (lazy).

    def _api(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            from kubernetes import client as client_mod
            from kubernetes import config as config_mod
        except ImportError:
            raise MissingDependency(f"the kubernetes Python client is not installed: {INSTALL_HINT}") from None
        client: Any = client_mod  # typed differently across releases: treat as untyped
        config: Any = config_mod
        path = self.kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        have_file = any(os.path.exists(p) for p in path.split(os.pathsep) if p)
        if self.kubeconfig and not os.path.exists(self.kubeconfig):
            raise ClusterUnreachable(f"kubeconfig {self.kubeconfig} does not exist",
                                     hint="check --kubeconfig / $KUBECONFIG, or run `oc login`")
        try:
            if have_file or self.context or self.kubeconfig:
                api = config.new_client_from_config(config_file=self.kubeconfig, context=self.context)
            else:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
                api = client.ApiClient(cfg)
        except (config.ConfigException, yaml.YAMLError, OSError) as err:
            # ConfigException: missing context/cluster; YAMLError: a broken file; OSError: unreadable.
            where = f"kubeconfig {path}" + (f" (context {self.context})" if self.context else "")
            if not have_file and not self.kubeconfig:
                raise ClusterUnreachable("no kubeconfig found and not running in a cluster",
                                         hint="run `oc login`, or pass --kubeconfig/--context") from err
            raise ClusterUnreachable(f"cannot use {where}: {one_line(str(err), 200)}",
                                     hint="check `oc config get-contexts`") from err
        self._client = api
        return api

    @property
    def server(self) -> str:
        """The API server URL (loads the configuration)."""
        return str(self._api().configuration.host)

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        cfg = self._api().configuration
        headers = {"Accept": "application/json", "User-Agent": "poolserve"}
        # auth_settings() is the generated client's own source of auth headers (it runs the token
        # refresh hook of exec/OIDC users); its keys changed between releases, its shape did not.
        for setting in (cfg.auth_settings() or {}).values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"]).title()] = str(setting["value"])
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _send(self, method: str, path: str, req: Request, *, query: Mapping[str, Any] | None = None,
              body: Any = None, content_type: str | None = None, stream: bool = False) -> Any:
        """One HTTP request, retried as the module docstring says.

        Returns the urllib3 response (status 2xx), or raises a PoolserveError.
        """
        import urllib3

        api = self._api()
        url = api.configuration.host.rstrip("/") + path
        q = {k: ("true" if v is True else v) for k, v in (query or {}).items() if v is not None and v is not False}
        if q:
            url += "?" + urlencode(q)
        data = json.dumps(body).encode() if body is not None else None
        timeout = None if stream else urllib3.Timeout(total=self.timeout_s)
        # urllib3 itself retries nothing: the loop below decides, with backoff, what may be sent again.
        no_retries = urllib3.Retry(total=0, redirect=False, raise_on_redirect=False, raise_on_status=False)
        attempt = 0
        while True:
            try:
                resp = api.rest_client.pool_manager.request(
                    method, url, body=data, headers=self._headers(content_type if data is not None else None),
                    timeout=timeout, preload_content=not stream, retries=no_retries)
            except (urllib3.exceptions.HTTPError, OSError) as err:
                if _never_sent(err) and attempt < self.retries:
                    self.sleep(retry_delay(attempt, None))
                    attempt += 1
                    continue
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                raise unreachable(str(api.configuration.host), _connection_detail(err) + tries) from err
            if 200 <= resp.status <= 299:
                return resp
            text = resp.data.decode("utf-8", "replace") if not stream else resp.read().decode("utf-8", "replace")
            if retryable(method, content_type, resp.status, text) and attempt < self.retries:
                if stream:
                    resp.release_conn()
                self.sleep(retry_delay(attempt, resp.headers.get("Retry-After")))
                attempt += 1
                continue
            err_out = translate(resp.status, text, req, str(api.configuration.host))
            if attempt:
                err_out = err_out.with_message(f"{err_out.message} (after {attempt + 1} attempts)")
            raise err_out from _HttpError(resp.status, text)

    def _json(self, method: str, path: str, req: Request, **kwargs: Any) -> Any:
        resp = self._send(method, path, req, **kwargs)
        raw = resp.data
        return json.loads(raw) if raw else None

    # ---------------------------------------------------------------------------------------------
    # The Cluster protocol.

    def server_version(self) -> str:
        """See :meth:`Cluster.server_version`."""
        data = self._json("GET", "/version", Request("get", kind_info("v1", "Version")))
        return str((data or {}).get("gitVersion", "unknown"))

    def apply(self, obj: Manifest, *, dry_run: bool = False, force: bool = False) -> Manifest:
        """See :meth:`Cluster.apply`: ``PATCH`` with ``application/apply-patch+yaml`` (JSON is YAML)."""
        k = kind_of(obj)
        meta = obj.get("metadata") or {}
        name, ns = str(meta.get("name", "")), meta.get("namespace") if k.namespaced else None
        req = Request("apply (patch)", k, name, ns)
        result = self._json("PATCH", _path(k, ns, name), req, body=obj, content_type=APPLY_PATCH,
                            query={"fieldManager": FIELD_MANAGER, "force": force, "dryRun": "All" if dry_run else None})
        return dict(result or {})

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        """See :meth:`Cluster.get`."""
        k = kind_info(api_version, kind)
        ns = namespace if k.namespaced else None
        try:
            return dict(self._json("GET", _path(k, ns, name), Request("get", k, name, ns)) or {})
        except NotFound as err:
            if isinstance(err.__cause__, _HttpError) and _is_object_404(err.__cause__.body):
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None) -> builtins.list[Manifest]:
        """See :meth:`Cluster.list` (items get their apiVersion/kind back, as kubectl does)."""
        k = kind_info(api_version, kind)
        ns = namespace if k.namespaced else None
        data = self._json("GET", _path(k, ns), Request("list", k, None, ns),
                          query={"labelSelector": label_selector, "fieldSelector": field_selector}) or {}
        items = data.get("items") or []
        return [{"apiVersion": api_version, "kind": kind, **item} for item in items]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """See :meth:`Cluster.delete`."""
        k = kind_info(api_version, kind)
        ns = namespace if k.namespaced else None
        try:
            self._send("DELETE", _path(k, ns, name), Request("delete", k, name, ns),
                       body={"propagationPolicy": "Background"}, content_type="application/json")
        except NotFound as err:
            if isinstance(err.__cause__, _HttpError) and _is_object_404(err.__cause__.body):
                return False
            raise
        return True

    def pods(self, namespace: str, *, label_selector: str | None = None) -> builtins.list[Manifest]:
        """See :meth:`Cluster.pods`."""
        return self.list("v1", "Pod", namespace, label_selector=label_selector)

    def events(self, namespace: str, *, field_selector: str | None = None) -> builtins.list[Manifest]:
        """See :meth:`Cluster.events`."""
        return self.list("v1", "Event", namespace, field_selector=field_selector)

    def logs(self, namespace: str, pod: str, *, container: str | None = None, previous: bool = False,
             follow: bool = False, tail_lines: int | None = None) -> Iterator[str]:
        """See :meth:`Cluster.logs`; ``follow`` streams until the container stops or the caller stops reading."""
        k = kind_info("v1", "Pod")
        req = Request("get logs of", k, pod, namespace)
        query = {"container": container, "previous": previous, "follow": follow, "tailLines": tail_lines}
        try:
            resp = self._send("GET", _path(k, namespace, pod) + "/log", req, query=query, stream=follow)
        except PoolserveError as err:
            body = err.__cause__.body if isinstance(err.__cause__, _HttpError) else ""
            if "previous terminated container" in body:
                raise NotFound(f"no previous log for container {container} in pod {namespace}/{pod}: "
                               "it has not restarted") from err
            raise
        if not follow:
            return iter(resp.data.decode("utf-8", "replace").splitlines())
        return _stream_lines(resp)

    def access(self, verb: str, kind: Kind, *, namespace: str | None = None, name: str | None = None) -> Access:
        """See :meth:`Cluster.access` (a SelfSubjectAccessReview, which every user may create)."""
        attrs: dict[str, Any] = {"group": kind.group, "resource": kind.plural, "verb": verb}
        if namespace and kind.namespaced:
            attrs["namespace"] = namespace
        if name:
            attrs["name"] = name
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attrs}}
        k = kind_info("authorization.k8s.io/v1", "SelfSubjectAccessReview")
        data = self._json("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                          Request("create", k), body=review, content_type="application/json") or {}
        status = data.get("status") or {}
        return Access(bool(status.get("allowed")), str(status.get("reason") or ""))


class _HttpError(Exception):
    """The raw HTTP error kept as the ``__cause__`` of the translated one."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {one_line(body, 300)}")
        self.status = status
        self.body = body


def _never_sent(err: BaseException) -> bool:
    """A failure to connect: the request cannot have reached the server (safe to send again, any verb)."""
    import urllib3

    reason = getattr(err, "reason", None) or err
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                               ConnectionRefusedError)) and not isinstance(reason, urllib3.exceptions.ReadTimeoutError)


def _is_object_404(body: str) -> bool:
    data = _status_body(body)
    return data.get("kind") == "Status" and bool(data.get("details"))


def _path(k: Kind, namespace: str | None, name: str | None = None) -> str:
    prefix = "/api/v1" if k.api_version == "v1" else f"/apis/{k.api_version}"
    ns = f"/namespaces/{quote(namespace, safe='')}" if namespace and k.namespaced else ""
    tail = f"/{quote(name, safe='')}" if name else ""
    return f"{prefix}{ns}/{k.plural}{tail}"


def _stream_lines(resp: Any) -> Iterator[str]:
    buf = b""
    try:
        for chunk in resp.stream(4096):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.decode("utf-8", "replace")
        if buf:
            yield buf.decode("utf-8", "replace")
    finally:
        resp.release_conn()
