"""A minimal Kubernetes REST client for test support (fixture set-up, simulated controllers).

Deliberately not poolserve's :class:`~poolserve.targets.cluster.kube.KubeCluster`: the code under test must
not also be the code that prepares and inspects the cluster it is tested against. Paths are built
from ``(apiVersion, plural)``; errors keep the status code and the API's Status body.
"""

from __future__ import annotations

import json
import ssl
import threading
import traceback
from collections.abc import Mapping
from typing import Any

import httpx

Obj = dict[str, Any]
TRANSIENT = (429, 503, 504)
"""Statuses a controller retries on its next pass (e.g. 429 "storage is (re)initializing" right after a CRD
is Established)."""


def expected(err: ApiError) -> bool:
    """An answer a controller meets in normal operation and retries or drops (not a bug in the simulation).

    Gone (404), changed meanwhile (409), busy (:data:`TRANSIENT`), or new content in a namespace being
    deleted (403 NamespaceTerminating).
    """
    message = err.body.get("message", "") if isinstance(err.body, dict) else str(err.body)
    return err.status in (404, 409, *TRANSIENT) or (err.status == 403 and "being terminated" in message)


class ApiError(Exception):
    """A non-2xx answer: ``status`` and the decoded body (a ``Status`` object, usually)."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        msg = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: HTTP {status}: {msg}")
        self.status = status
        self.body = body


def path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None,
         sub: str | None = None) -> str:
    """``/api/v1/namespaces/ns/pods/name/status`` from its parts."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    out = prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    if name:
        out += f"/{name}"
    if sub:
        out += f"/{sub}"
    return out


class Api:
    """Synchronous REST calls with a bearer token, verified against the cluster CA. Thread-safe."""

    def __init__(self, server: str, token: str, ca_file: str, *, user: str = "", agent: str = "",
                 timeout_s: float = 30.0) -> None:
        """``agent``: the User-Agent, whose first word the API server records as the field manager of
        writes without ``fieldManager`` (``kubelet/v1.36.2`` -> ``kubelet``, as a real kubelet's writes show)."""
        self.server = server
        self.user = user
        self._local = threading.local()
        self._args = {"base_url": server, "verify": ssl.create_default_context(cafile=ca_file), "timeout": timeout_s,
                      "headers": {"Authorization": f"Bearer {token}", "Accept": "application/json",
                                  "User-Agent": agent or f"poolserve-test-support/{user or 'admin'}"}}

    @property
    def http(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(**self._args)  # one connection pool per thread
        return client

    def request(self, method: str, p: str, *, body: Any = None, params: Mapping[str, Any] | None = None,
                content_type: str = "application/json") -> Any:
        """One call; returns the decoded JSON (or text); raises :class:`ApiError` on non-2xx."""
        data = None if body is None else (body if isinstance(body, str | bytes) else json.dumps(body))
        headers = {"Content-Type": content_type} if data is not None else {}
        resp = self.http.request(method, p, content=data, params={k: v for k, v in (params or {}).items()
                                                                   if v is not None}, headers=headers)
        try:
            decoded: Any = resp.json()
        except ValueError:
            decoded = resp.text
        if not 200 <= resp.status_code < 300:
            raise ApiError(method, p, resp.status_code, decoded)
        return decoded

    def get(self, p: str, **params: Any) -> Obj | None:
        """The object, or None on 404."""
        try:
            return dict(self.request("GET", p, params=params))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(self, p: str, **params: Any) -> list[Obj]:
        """``items`` of a list call (``labelSelector=...``, ``fieldSelector=...``)."""
        return list(self.request("GET", p, params=params).get("items") or [])

    def create(self, p: str, obj: Obj, **params: Any) -> Obj:
        """POST."""
        return dict(self.request("POST", p, body=obj, params=params))

    def replace(self, p: str, obj: Obj, **params: Any) -> Obj:
        """PUT (an Update, as controllers write)."""
        return dict(self.request("PUT", p, body=obj, params=params))

    def merge_patch(self, p: str, patch: Obj, **params: Any) -> Obj:
        """JSON merge patch (``sub="status"`` paths write status, as a controller or kubelet does)."""
        return dict(self.request("PATCH", p, body=patch, params=params,
                                 content_type="application/merge-patch+json"))

    def apply(self, p: str, obj: Obj, *, manager: str, force: bool = False, **params: Any) -> Obj:
        """Server-side apply as ``manager``."""
        q = {"fieldManager": manager, "force": "true" if force else None, **params}
        return dict(self.request("PATCH", p, body=obj, params=q, content_type="application/apply-patch+yaml"))

    def delete(self, p: str, **params: Any) -> bool:
        """DELETE; False when it did not exist."""
        try:
            self.request("DELETE", p, params=params)
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    def close(self) -> None:
        """Close this thread's connection pool."""
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None


class PollingController:
    """A simulated controller: :meth:`sync` in a daemon thread every ``interval_s``, less often while idle.

    An answer a controller meets in normal operation (:func:`expected`) is retried on the next pass;
    any other exception is kept in :attr:`errors`, and the envtest fixture fails the running test with it.
    """

    thread_name = "simulated-controller"

    def __init__(self, api: Api, interval_s: float) -> None:
        self.api = api
        self.interval_s = interval_s
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> bool:
        """One pass; False when there was nothing to do."""
        raise NotImplementedError

    def start_loop(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop_loop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        idle = 0  # passes with nothing to do: poll less often (down to once a second) while the cluster is empty
        while not self._stop.is_set():
            busy = True
            try:
                busy = self.sync()
            except ApiError as err:
                if not expected(err):
                    self.errors.append(traceback.format_exc())
            except Exception:  # kept and reported: a simulated controller must keep running
                self.errors.append(traceback.format_exc())
            idle = 0 if busy else idle + 1
            self._stop.wait(min(1.0, self.interval_s * 2 ** min(idle, 3)))
