"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

:func:`start` runs the binaries of ``$KUBEBUILDER_ASSETS`` (see :mod:`support.assets`) on free
127.0.0.1 ports: etcd and kube-apiserver always, kube-controller-manager and kube-scheduler when the
directory has them (:attr:`ControlPlane.controllers`; controller-runtime's envtest itself runs only
the first two, which is all ``setup-envtest`` downloads):

- certificates are generated here with ``cryptography`` (a CA, the API server's serving certificate
  with SAN ``IP:127.0.0.1``, the service-account RSA key pair);
- authentication is a static token file (an admin in ``system:masters``, the controller-manager and
  scheduler, and unprivileged test users); authorization is RBAC;
- a kubeconfig is written for the admin and one per test user (:meth:`ControlPlane.kubeconfig_for`).

Every process is started in its own session with ``PR_SET_PDEATHSIG`` (it dies with the test
process, even on ``kill -9``) and stopped by PID in :meth:`ControlPlane.stop`, newest first (the
scheduler and controller-manager before the API server, the API server before etcd). Every wait has a
deadline; a process that exits fails the wait at once with the tail of its log
(:class:`ControlPlaneError`), as does :meth:`ControlPlane.check` between tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support.assets import controllers_skip_reason
from support.kubeapi import Api

T = TypeVar("T")
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
LOG_TAIL = 25

ADMIN = "admin"
USERS = {
    # name: groups (token-auth-file); every user is also system:authenticated.
    ADMIN: ("system:masters",),
    "controller-manager": ("system:masters",),
    "scheduler": ("system:masters",),
    "deployer": ("poolserve-test",),
    "viewer": ("poolserve-test",),
    "kubelet": ("system:masters",),
    "kserve": ("system:masters",),
}
AUDITED = (ADMIN, "deployer", "viewer")
"""Users whose requests the API server's audit log records (the ones poolserve runs as in tests)."""
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                "rules": [{"level": "Metadata", "users": list(AUDITED)}, {"level": "None"}]}


class ControlPlaneError(RuntimeError):
    """A control-plane process died or did not become ready in time (message carries its log tail)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGKILL it when the test process dies (prctl 1 =
    # PR_SET_PDEATHSIG). SIGKILL, not SIGTERM: etcd and kube-apiserver terminated together wait on each
    # other's graceful shutdown for minutes, and nobody is left to escalate.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class Process:
    """One control-plane binary: its argv, log file and Popen."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, preexec_fn=_die_with_parent,
                                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(
                                              self.log.parent)})

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, n: int = LOG_TAIL) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def death(self) -> str:
        code = self.popen.returncode if self.popen is not None else None
        return f"{self.name} (pid {self.pid}) exited with code {code}; last lines of {self.log}:\n{self.tail()}"

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM by PID, then SIGKILL after ``grace_s``; always reaps."""
        p = self.popen
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait(grace_s)


def wait_for(what: str, check: Callable[[], T | None], procs: Sequence[Process], *,
             timeout_s: float = START_TIMEOUT_S, interval_s: float = 0.1) -> T:
    """Poll ``check`` until it returns a truthy value; fail fast if a process dies, or at the deadline.

    ``check`` may raise ``httpx.HTTPError``/``OSError`` (not up yet): that counts as not ready.
    """
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        for p in procs:
            if not p.alive():
                raise ControlPlaneError(f"while waiting for {what}: {p.death()}")
        try:
            result = check()
        except (httpx.HTTPError, OSError) as err:
            result, last = None, f"{type(err).__name__}: {err}"
        if result:
            return result
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- {p.name} (pid {p.pid}) {p.log}:\n{p.tail(10)}" for p in procs)
            raise ControlPlaneError(f"timed out after {timeout_s:.0f} s waiting for {what}"
                                    + (f" (last error: {last})" if last else "") + f"\n{tails}")
        time.sleep(interval_s)


# --------------------------------------------------------------------------------------------------
# Certificates (cryptography, no openssl CLI).


def _pem_key(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def _cert(subject: str, issuer: x509.Name | None, issuer_key: Any, key: Any, *, ca: bool,
          sans: Sequence[x509.GeneralName] = ()) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    """Paths of the generated PEM files."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path

    def issue(self, dest: Path, name: str) -> tuple[Path, Path]:
        """Another serving certificate for 127.0.0.1 signed by the CA (webhook, kubelet): ``(cert, key)``."""
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(name, ca.subject, ca_key, key, ca=False,
                     sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
        cert_path, key_path = dest / f"{name}.crt", dest / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        return cert_path, key_path


def make_pki(dest: Path) -> Pki:
    """CA, API server serving certificate (SAN 127.0.0.1, localhost, kubernetes.default...), SA RSA key pair."""
    dest.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("poolserve-test-ca", None, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")), x509.DNSName("localhost"),
                                    x509.DNSName("kubernetes.default.svc")]
    serving = _cert("kube-apiserver", ca.subject, ca_key, key, ca=False, sans=sans)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM), "ca.key": _pem_key(ca_key),
        "apiserver.crt": serving.public_bytes(serialization.Encoding.PEM), "apiserver.key": _pem_key(key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    for name, data in files.items():
        (dest / name).write_bytes(data)
        (dest / name).chmod(0o600)
    return Pki(dest / "ca.crt", dest / "ca.key", dest / "apiserver.crt", dest / "apiserver.key",
               dest / "sa.key", dest / "sa.pub")


def write_kubeconfig(dest: Path, server: str, ca_file: Path, user: str, token: str) -> Path:
    """A kubeconfig with one cluster, one token user and one current context."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": user,
        "clusters": [{"name": "envtest", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "envtest", "user": user}}],
    }
    dest.write_text(yaml.safe_dump(config, sort_keys=False))
    dest.chmod(0o600)
    return dest


# --------------------------------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """A running control plane; see the module docstring."""

    workdir: Path
    assets: Path
    pki: Pki
    server: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    _apis: dict[str, Api] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (``system:masters``)."""
        return self.kubeconfig_for(ADMIN)

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig authenticating as ``user`` (a key of :data:`USERS`)."""
        dest = self.workdir / f"kubeconfig-{user}"
        if not dest.exists():
            write_kubeconfig(dest, self.server, self.pki.ca_cert, user, self.tokens[user])
        return dest

    def api(self, user: str = ADMIN, *, agent: str = "") -> Api:
        """A REST client authenticating as ``user`` (``agent``: its User-Agent, see :class:`Api`)."""
        key = f"{user}/{agent}"
        if key not in self._apis:
            self._apis[key] = Api(self.server, self.tokens[user], str(self.pki.ca_cert), user=user, agent=agent)
        return self._apis[key]

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    @property
    def controllers(self) -> bool:
        """kube-controller-manager and kube-scheduler run (Deployments become scheduled Pods, namespaces finalize)."""
        return {p.name for p in self.processes} >= {"kube-controller-manager", "kube-scheduler"}

    def check(self) -> None:
        """Raise :class:`ControlPlaneError` with the log tail if any process has exited."""
        for p in self.processes:
            if not p.alive():
                raise ControlPlaneError(p.death())

    def wait(self, what: str, check: Callable[[], T | None], *, timeout_s: float = 30.0,
             interval_s: float = 0.2) -> T:
        """:func:`wait_for` over all of this control plane's processes."""
        return wait_for(what, check, self.processes, timeout_s=timeout_s, interval_s=interval_s)

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def audit(self, *, since: int = 0, user_agent: str | None = None) -> list[dict[str, Any]]:
        """Requests the API server received (its audit log, written before each response: blocking mode).

        Only the test users' requests are logged (:data:`AUDITED`); ``since`` is a byte offset from
        :meth:`audit_mark`, ``user_agent`` a prefix to keep (``poolserve``).
        """
        with open(self.audit_log, "rb") as f:
            f.seek(since)
            events = [json.loads(line) for line in f.read().splitlines() if line.strip()]
        return [e for e in events if user_agent is None or str(e.get("userAgent", "")).startswith(user_agent)]

    def audit_mark(self) -> int:
        """The audit log's current end, for :meth:`audit` ``since``."""
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def stop(self) -> None:
        """Stop every process by PID, newest first (each waits at most :data:`STOP_GRACE_S`)."""
        for p in reversed(self.processes):
            p.stop()
        for a in self._apis.values():
            a.close()


def _start(cp: ControlPlane, name: str, argv: list[str], ready: Callable[[], Any], what: str,
           *, attempts: int = 3, ports: Callable[[], list[str]] | None = None) -> Process:
    """Start one binary and wait until ``ready``; a port taken by someone else in between is retried."""
    for attempt in range(1, attempts + 1):
        extra = ports() if ports is not None else []
        proc = Process(name, [str(cp.assets / name), *argv, *extra], cp.workdir / f"{name}.log")
        cp.processes.append(proc)
        proc.start()
        try:
            wait_for(what, ready, cp.processes)
            return proc
        except ControlPlaneError:
            if attempt < attempts and not proc.alive() and "address already in use" in proc.tail(50):
                cp.processes.remove(proc)
                continue
            raise
    raise AssertionError("unreachable")


def start(workdir: Path, assets: Path) -> ControlPlane:
    """Start etcd and kube-apiserver, then kube-controller-manager and kube-scheduler if ``assets`` has them.

    Returns when every started process serves.

    On any failure everything started so far is stopped before the error propagates.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cp = ControlPlane(workdir=workdir, assets=assets, pki=make_pki(workdir / "pki"))
    cp.tokens = {u: secrets.token_hex(16) for u in USERS}
    token_file = workdir / "tokens.csv"
    token_file.write_text("".join(f'{cp.tokens[u]},{u},uid-{u},"{",".join(g)}"\n' for u, g in USERS.items()))
    token_file.chmod(0o600)
    try:
        _start_all(cp, token_file)
    except BaseException:
        cp.stop()
        raise
    return cp


def _start_all(cp: ControlPlane, token_file: Path) -> None:
    etcd_dir = cp.workdir / "etcd"

    def etcd_ports() -> list[str]:
        cp.ports["etcd"], cp.ports["etcd-peer"] = free_port(), free_port()
        # etcd 3.5+ refuses an explicit --listen-client-urls without --advertise-client-urls.
        client = f"http://127.0.0.1:{cp.ports['etcd']}"
        return [f"--data-dir={etcd_dir}", f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls=http://127.0.0.1:{cp.ports['etcd-peer']}"]

    def etcd_ready() -> bool:
        r = httpx.get(f"http://127.0.0.1:{cp.ports['etcd']}/health", timeout=2)
        return r.status_code == 200 and r.json().get("health") == "true"

    _start(cp, "etcd", [], etcd_ready, "etcd /health", ports=etcd_ports)

    def apiserver_ports() -> list[str]:
        cp.ports["apiserver"] = free_port()
        cp.server = f"https://127.0.0.1:{cp.ports['apiserver']}"
        return [f"--secure-port={cp.ports['apiserver']}"]

    def apiserver_ready() -> bool:
        r = httpx.get(f"{cp.server}/readyz", verify=ssl.create_default_context(cafile=str(cp.pki.ca_cert)), timeout=2,
                      headers={"Authorization": f"Bearer {cp.tokens[ADMIN]}"})
        return r.status_code == 200

    pki = cp.pki
    policy = cp.workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    _start(cp, "kube-apiserver", [
        f"--etcd-servers=http://127.0.0.1:{cp.ports['etcd']}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}", f"--token-auth-file={token_file}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
        "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
        "--enable-priority-and-fairness=false", "--profiling=false",
        f"--cert-dir={cp.workdir / 'apiserver-certs'}",
        f"--audit-policy-file={policy}", f"--audit-log-path={cp.audit_log}", "--audit-log-format=json",
        "--audit-log-mode=blocking",
    ], apiserver_ready, "kube-apiserver /readyz", ports=apiserver_ports)

    for user in ("controller-manager", "scheduler"):
        write_kubeconfig(cp.workdir / f"kubeconfig-{user}", cp.server, pki.ca_cert, user, cp.tokens[user])

    def secure_ready(component: str) -> Callable[[], bool]:
        def ready() -> bool:
            r = httpx.get(f"https://127.0.0.1:{cp.ports[component]}/healthz", verify=False, timeout=2)
            return r.status_code == 200
        return ready

    def port_flag(component: str) -> Callable[[], list[str]]:
        def flags() -> list[str]:
            cp.ports[component] = free_port()
            return ["--bind-address=127.0.0.1", f"--secure-port={cp.ports[component]}"]
        return flags

    if controllers_skip_reason(cp.assets) is not None:
        return  # API server only: tests that need controllers skip (support.envcluster)

    cm_kube = cp.workdir / "kubeconfig-controller-manager"
    _start(cp, "kube-controller-manager", [
        f"--kubeconfig={cm_kube}", f"--authentication-kubeconfig={cm_kube}", f"--authorization-kubeconfig={cm_kube}",
        "--leader-elect=false", f"--service-account-private-key-file={pki.sa_key}", f"--root-ca-file={pki.ca_cert}",
        # No cloud, no node lifecycle, no PV binder (the fixtures bind PVCs themselves); the attach/detach
        # controller stays: it reports Multi-Attach for ReadWriteOnce volumes.
        "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-persistentvolume-binder",
        f"--cert-dir={cp.workdir / 'controller-manager-certs'}",
    ], secure_ready("kube-controller-manager"), "kube-controller-manager /healthz",
        ports=port_flag("kube-controller-manager"))

    sched_kube = cp.workdir / "kubeconfig-scheduler"
    _start(cp, "kube-scheduler", [
        f"--kubeconfig={sched_kube}", f"--authentication-kubeconfig={sched_kube}",
        f"--authorization-kubeconfig={sched_kube}", "--leader-elect=false",
        f"--cert-dir={cp.workdir / 'scheduler-certs'}",
    ], secure_ready("kube-scheduler"), "kube-scheduler /healthz", ports=port_flag("kube-scheduler"))

    # The controller-manager is really working once its ServiceAccount controller made `default/default`.
    api = cp.api()
    cp.wait("the default ServiceAccount (controller-manager running)",
            lambda: api.get("/api/v1/namespaces/default/serviceaccounts/default"), timeout_s=START_TIMEOUT_S)
