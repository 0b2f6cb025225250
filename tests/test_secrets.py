"""A canary secret enters every way a secret can: the HF token (cache.hf_token_secret; locally $HF_TOKEN),
--token, $POOLSERVE_TOKEN, env in the config (local.env; a secret-looking name in a rendered env is refused).
It must reach the server, and never appear in rendered files, the local state, the logs poolserve writes,
error messages, explain, status -o json, or the test and bench reports. The state directory and logs are the
user's alone."""

from __future__ import annotations

import base64
import http.server
import json
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from poolserve.bench.stub import StubServer
from poolserve.cli.app import create_app
from poolserve.targets.local.state import read_pod, read_state

ROOT = Path(__file__).resolve().parents[1]
CANARY = f"hf_canary{uuid.uuid4().hex}"
runner = CliRunner()


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._deny()

    def do_POST(self) -> None:
        self._deny()

    def _deny(self) -> None:
        body = b'{"error": "Unauthorized"}'
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def unauthorized() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _config(tmp_path: Path, stub_python: str, **extra: Any) -> Path:
    data = yaml.safe_load((ROOT / "poolserve.yaml").read_text())
    data["cache"]["hf_token_secret"] = {"name": "hf-token", "key": "token"}
    data["local"].update({"python": stub_python, "cache_dir": str(tmp_path / "cache"),
                          "state_dir": str(tmp_path / "state"),
                          "env": {"HUGGING_FACE_HUB_TOKEN": CANARY, "STUB_CHILD": "1"}})
    data.update(extra)
    path = tmp_path / "poolserve.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _files(root: Path) -> Iterator[Path]:
    yield from (p for p in root.rglob("*") if p.is_file())


def test_the_canary_never_leaks_locally(tmp_path: Path, stub_python: str, unauthorized: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", CANARY)  # locally, cache.hf_token_secret's value comes from the environment
    monkeypatch.delenv("POOLSERVE_TARGET", raising=False)
    config = _config(tmp_path, stub_python)
    app = create_app()
    seen: list[str] = []

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        r = runner.invoke(app, [*args, "-c", str(config)], env=env)
        seen.append(f"$ poolserve {args[0]}\n{r.stdout}{r.stderr}")  # not the args: they hold the canary
        return r

    assert run("render", "-o", str(tmp_path / "manifests")).exit_code == 0
    assert run("render", "-o", "-").exit_code == 0
    run("lint")
    assert run("explain", "minilm-embedding").exit_code == 0
    try:
        deployed = run("deploy", "--target", "local", "minilm-embedding")
        assert deployed.exit_code == 0, deployed.output
        assert run("status", "--target", "local", "-o", "json").exit_code == 0
        assert run("status", "--target", "local").exit_code == 0
        assert run("logs", "--target", "local", "minilm-embedding").exit_code == 0
        # The token reached the server, as HF_TOKEN and as the config's env.
        pod = read_pod(tmp_path / "state", "minilm-embedding")
        assert pod is not None and pod.running is not None
        server_env = Path(f"/proc/{pod.running.pid}/environ").read_bytes().split(b"\0")
        assert f"HF_TOKEN={CANARY}".encode() in server_env
        assert f"HUGGING_FACE_HUB_TOKEN={CANARY}".encode() in server_env
    finally:
        assert run("delete", "--target", "local").exit_code == 0

    with StubServer() as stub:
        # --token and $POOLSERVE_TOKEN, against a server that accepts them ...
        run("test", "--url", stub.url, "--task", "embed", "--token", CANARY, "-o", "json")
        run("test", "--url", stub.url, "--task", "embed", env={"POOLSERVE_TOKEN": CANARY})
        report = tmp_path / "bench.json"
        r = run("bench", "--url", stub.url, "--task", "embed", "--token", CANARY, "-n", "3", "--warmup", "0",
                "--concurrency", "1", "--batch-size", "1", "-o", str(report))
        assert r.exit_code == 0, r.output
    # ... and one that refuses them: the error says so without the token.
    refused = run("test", "--url", unauthorized, "--task", "embed", "--token", CANARY)
    assert refused.exit_code == 9 and "401" in refused.stderr
    refused = run("bench", "--url", unauthorized, "--task", "embed", "-n", "1", env={"POOLSERVE_TOKEN": CANARY})
    assert refused.exit_code == 9
    in_url = run("test", "--url", f"http://user:{CANARY}@127.0.0.1:1", "--task", "embed")
    assert in_url.exit_code == 2 and "carries credentials" in in_url.stderr

    # A secret-looking env with a plain value would be rendered: refused, without echoing the value.
    leaky = _config(tmp_path, stub_python, defaults={"gpus": 1, "env": {"HF_TOKEN": CANARY}})
    r = runner.invoke(app, ["render", "-o", "-", "-c", str(leaky)])
    seen.append(r.stdout + r.stderr)
    assert r.exit_code == 2 and "defaults.env.HF_TOKEN: HF_TOKEN looks like a secret" in r.stderr

    for text in seen:
        assert CANARY not in text, text
    written = [*_files(tmp_path / "state"), *_files(tmp_path / "manifests"), report]
    assert any(p.name == "minilm-embedding.log" for p in written)
    for path in written:
        assert CANARY.encode() not in path.read_bytes(), path
    assert any("secretKeyRef" in p.read_text() for p in _files(tmp_path / "manifests"))  # by reference only


def test_the_local_state_and_logs_are_the_users_alone(tmp_path: Path, stub_python: str) -> None:
    config = _config(tmp_path, stub_python)
    app = create_app()
    try:
        r = runner.invoke(app, ["deploy", "--target", "local", "minilm-embedding", "-c", str(config)])
        assert r.exit_code == 0, r.output
    finally:
        runner.invoke(app, ["delete", "--target", "local", "-c", str(config)])
    state = tmp_path / "state"
    for d in (state, state / "logs", state / "pods"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    files = [state / "local-state.json", state / ".local-state.lock", *(state / "logs").iterdir()]
    assert any(p.name == "minilm-embedding.log" for p in files)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert read_state(state / "local-state.json").models == {}


def test_the_canary_never_leaks_on_the_cluster(tmp_path: Path) -> None:
    from rich.console import Console

    from poolserve.config.load import parse_spec
    from poolserve.targets.cluster.fake.kserve import cluster_for, ready_controller
    from poolserve.targets.cluster.fake.objects import later
    from poolserve.targets.cluster.target import ClusterTarget
    from test_cluster_target import SPEC

    data = yaml.safe_load(SPEC)
    data.setdefault("cache", {})["hf_token_secret"] = {"name": "hf-token"}
    text = yaml.safe_dump(data)
    (tmp_path / "poolserve.yaml").write_text(text)
    spec = parse_spec(text, "poolserve.yaml")
    fake = cluster_for(spec, controller=ready_controller)
    fake.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": spec.namespace},
                "data": {"token": base64.b64encode(CANARY.encode()).decode()}})
    app = create_app(target_factory=lambda name, options: ClusterTarget(fake, sleep=lambda s: None,
                                                                         clock=lambda: later(420), poll_s=0),
                     out=Console(width=200, color_system=None))
    outputs = []
    for args in (["deploy"], ["status", "-o", "json"], ["status"], ["diff"], ["explain", spec.models[0].name],
                 ["cache", "warm", "--timeout", "1s"]):
        r = runner.invoke(app, [*args, "-c", str(tmp_path / "poolserve.yaml")])
        outputs.append(r.stdout + r.stderr)
    for out in outputs:
        assert CANARY not in out and base64.b64encode(CANARY.encode()).decode() not in out
    jobs = fake.list("batch/v1", "Job", spec.namespace)
    assert jobs and all(CANARY not in json.dumps(j) for j in jobs)
    assert all("secretKeyRef" in json.dumps(j) for j in jobs)  # the token reaches the Job by reference
