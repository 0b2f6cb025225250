"""An HTTPS front for the envtest API server that injects faults, request by request.

The real API server keeps running for the other tests of the session; the client (poolserve, through
a kubeconfig pointing here) sees what it would see of a failing one:

- :meth:`FaultProxy.go_down` closes the listening socket: new connections are refused, exactly what a
  stopped API server gives. Every answer carries ``Connection: close``, so no kept-alive connection
  outlives it. :meth:`FaultProxy.come_back` listens again on the same port.
- :attr:`FaultProxy.rule` answers a request itself (e.g. 429 with ``Retry-After``, or 503) instead of
  forwarding it, or takes the proxy down once an answer is sent (``"down after"``).

Certificates come from the control plane's CA (SAN 127.0.0.1), so the client verifies TLS as usual.
:attr:`FaultProxy.log` records ``(method, path, status)`` of every answer the client got.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from support.controlplane import ControlPlane, write_kubeconfig


@dataclass(frozen=True)
class Fault:
    """What the proxy does with one request: answer ``status`` itself, or forward it and then go down."""

    status: int | None = None
    reason: str = ""
    retry_after: str | None = None
    down_after: bool = False


Rule = Callable[[str, str, int], Fault | None]
"""``rule(method, path, n)`` with ``n`` the 1-based count of (method, path) requests so far."""


def status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "reason": reason, "code": code}).encode()


class FaultProxy:
    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        self.cp = cp
        self.workdir = workdir
        self.tls = cp.pki.issue(workdir, "fault-proxy")
        self.upstream = httpx.Client(base_url=cp.server, verify=ssl.create_default_context(cafile=str(cp.pki.ca_cert)),
                                     timeout=30)
        self.rule: Rule = lambda method, path, n: None
        self.log: list[tuple[str, str, int]] = []
        self.counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self.port = 0
        self._httpd: ThreadingHTTPServer | None = None
        self.come_back()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubeconfig(self, user: str = "admin", token: str | None = None) -> Path:
        """A kubeconfig for ``user`` (or any ``token``) that talks to the API server through this proxy."""
        return write_kubeconfig(self.workdir / f"kubeconfig-proxy-{user}", self.url, self.cp.pki.ca_cert, user,
                                token if token is not None else self.cp.tokens[user])

    def seen(self, method: str | None = None) -> list[tuple[str, str, int]]:
        return [e for e in self.log if method is None or e[0] == method]

    # -- serving ------------------------------------------------------------------------------------

    def come_back(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = urlsplit(self.path).path
                with proxy._lock:
                    n = proxy.counts.get((self.command, path), 0) + 1
                    proxy.counts[(self.command, path)] = n
                fault = proxy.rule(self.command, path, n)
                if fault is not None and fault.status is not None:
                    data = status_body(fault.status, fault.reason or "Injected", f"injected {fault.status}")
                    headers = {"Content-Type": "application/json"}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = fault.retry_after
                    self._reply(fault.status, data, headers, path)
                    return
                fwd = {k: v for k, v in self.headers.items()
                       if k.lower() in ("authorization", "content-type", "accept", "user-agent")}
                resp = proxy.upstream.request(self.command, self.path, content=body, headers=fwd)
                if fault is not None and fault.down_after:
                    proxy.go_down()  # before the answer: the client's next connection is refused
                self._reply(resp.status_code, resp.content,
                            {"Content-Type": resp.headers.get("content-type", "application/json")}, path)

            def _reply(self, code: int, data: bytes, headers: dict[str, str], path: str) -> None:
                proxy.log.append((self.command, path, code))
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        httpd = Server(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="fault-proxy").start()

    def go_down(self) -> None:
        """Stop listening (connection refused from now on); requests already read still get their answer."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def stop(self) -> None:
        self.go_down()
        self.upstream.close()
