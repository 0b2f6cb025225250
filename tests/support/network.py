"""Cluster networking for the envtest cluster: model servers "in" pods, reached through their Service URL.

There is no container runtime, cluster DNS or kube-proxy here. Two small stand-ins make a Service
URL such as ``http://m-predictor.ns.svc.cluster.local`` usable from the test process:

- :class:`PodServers` runs an HTTP server on 127.0.0.1 for a pod IP (the simulated kubelet gives
  each pod one), answering as vLLM does (:class:`support.fake_vllm.FakeVllm`).
- :class:`ServiceProxy` is an HTTP proxy (``HTTP_PROXY``) that resolves ``<svc>.<ns>.svc[.cluster.local]``
  the way DNS and kube-proxy would, from the real objects: the Service's port -> targetPort, and a
  ready endpoint of the EndpointSlices the real controller-manager built from the ready pods.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from support.fake_vllm import FakeVllm
from support.kubeapi import Api, path

_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "host", "content-length"}


def reply(handler: BaseHTTPRequestHandler, code: int, data: bytes, headers: dict[str, str]) -> None:
    """Send a whole response (hop-by-hop headers dropped, Content-Length set)."""
    handler.send_response(code)
    for k, v in headers.items():
        if k.lower() not in _HOP:
            handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class LoopbackServer:
    """A ThreadingHTTPServer on a free 127.0.0.1 port, serving in a daemon thread; HTTPS with ``tls=(cert, key)``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, tls: tuple[Path, Path] | None = None,
                 name: str = "http") -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=name,
                         daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def vllm_server(fake: FakeVllm) -> LoopbackServer:
    """An HTTP server answering with ``fake`` (an httpx handler) on 127.0.0.1."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            req = httpx.Request(self.command, f"http://pod{self.path}", headers=dict(self.headers.items()),
                                content=body)
            resp = fake(req)
            reply(self, resp.status_code, resp.content, dict(resp.headers.items()))

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return LoopbackServer(Handler)


class PodServers:
    """Pod IP -> the local server its "container" runs."""

    def __init__(self) -> None:
        self.by_ip: dict[str, LoopbackServer] = {}
        self.fakes: dict[str, FakeVllm] = {}

    def serve(self, pod_ip: str, fake: FakeVllm) -> None:
        self.by_ip[pod_ip] = vllm_server(fake)
        self.fakes[pod_ip] = fake

    def stop(self) -> None:
        for s in self.by_ip.values():
            s.stop()
        self.by_ip.clear()


class ServiceProxy:
    """An HTTP forward proxy resolving cluster Service hosts through the real Service and EndpointSlices."""

    def __init__(self, api: Api, pods: PodServers) -> None:
        self.api = api
        self.pods = pods
        self.routes: list[tuple[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = urlsplit(self.path)
                try:
                    local = owner.resolve(url.hostname or "", url.port or 80)
                except LookupError as err:
                    return reply(self, 502, str(err).encode(), {"Content-Type": "text/plain"})
                conn = http.client.HTTPConnection("127.0.0.1", local, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, url.path + (f"?{url.query}" if url.query else ""), body=body or None,
                             headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                reply(self, resp.status, data, dict(resp.getheaders()))
                conn.close()

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = LoopbackServer(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def resolve(self, host: str, port: int) -> int:
        """``<svc>.<ns>.svc[.cluster.local]:port`` -> the local port of a ready endpoint's server."""
        parts = host.split(".")
        if len(parts) < 3 or parts[2] != "svc":
            raise LookupError(f"{host}: not a cluster Service host")
        svc_name, ns = parts[0], parts[1]
        svc = self.api.get(path("v1", "services", ns, svc_name))
        if svc is None:
            raise LookupError(f"{host}: no such Service (NXDOMAIN)")
        sport = next((p for p in svc["spec"].get("ports") or [] if p.get("port") == port), None)
        if sport is None:
            raise LookupError(f"{host}:{port}: the Service has no such port (connection refused)")
        for ip, target in self._endpoints(ns, svc_name, sport.get("name")):
            server = self.pods.by_ip.get(ip)
            if server is not None:
                self.routes.append((f"{host}:{port}", f"{ip}:{target}"))
                return server.port
        raise LookupError(f"{host}:{port}: no ready endpoint (connection refused)")

    def _endpoints(self, ns: str, svc: str, port_name: str | None) -> Iterator[tuple[str, int]]:
        slices = self.api.list(path("discovery.k8s.io/v1", "endpointslices", ns),
                               labelSelector=f"kubernetes.io/service-name={svc}")
        for s in slices:
            port = next((p.get("port") for p in s.get("ports") or [] if p.get("name") == port_name), None)
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") and port is not None:
                    for ip in ep.get("addresses") or []:
                        yield ip, int(port)

    def stop(self) -> None:
        self.server.stop()
