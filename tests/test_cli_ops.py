"""CLI on the cluster target with FakeCluster injected: deploy/status/wait/logs/delete/diff/cache warm.

Each PoolserveError subclass ends in its own exit code and one ``error:`` line; ``status`` is
compared with golden text (tests/golden/status_*.txt; ``pytest --update-goldens`` rewrites them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from poolserve.cli.app import create_app
from poolserve.config.load import parse_spec
from poolserve.errors import LocalRunError
from poolserve.targets.cluster.base import conflict, invalid, unauthorized
from poolserve.targets.cluster.fake.cluster import FakeCluster
from poolserve.targets.cluster.fake.kserve import cluster_for, ready_controller
from poolserve.targets.cluster.fake.objects import condition, deployment, isvc_status, later, pod
from poolserve.targets.cluster.target import ClusterTarget
from test_cluster_target import NS, SPEC  # one cluster fixture config for target and CLI tests

GOLDEN = Path(__file__).parent / "golden"
TASK_CRASH = ("INFO 01-01 00:00:03 api_server.py:1] vLLM API server version 0.32.0\n"
              "api_server.py: error: unrecognized arguments: --task=embed")

runner = CliRunner()


class Env:
    """A project dir with the config, and the fake cluster every command talks to."""

    def __init__(self, path: Path, fake: FakeCluster) -> None:
        self.path = path
        self.fake = fake
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None
        self.t = 0.0
        self.app: Any = None

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s
        if self.on_sleep:
            self.on_sleep(self.t)

    def run(self, *args: str) -> Any:
        return runner.invoke(self.app, [*args, "-c", str(self.path / "poolserve.yaml")])


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    (tmp_path / "poolserve.yaml").write_text(SPEC)
    spec = parse_spec(SPEC, "poolserve.yaml")
    e = Env(tmp_path, cluster_for(spec, controller=ready_controller))

    def factory(name: str, options: Any) -> ClusterTarget:
        if name != "cluster":  # the local target's hint asks; these tests have no local target
            raise LocalRunError("no local target in this test")
        return ClusterTarget(e.fake, sleep=e.sleep, now=lambda: e.t, clock=lambda: later(420), poll_s=5)

    # A fixed-width console: the golden text must not depend on the terminal running pytest.
    e.app = create_app(target_factory=factory,
                       out=Console(width=200, soft_wrap=True, color_system=None, force_terminal=False))
    monkeypatch.delenv("POOLSERVE_TARGET", raising=False)
    return e


def golden(request: pytest.FixtureRequest, name: str, text: str) -> None:
    path = GOLDEN / f"status_{name}.txt"
    if request.config.getoption("--update-goldens", default=False):
        path.write_text(text)
    assert path.is_file(), f"missing {path}: run pytest --update-goldens"
    assert text == path.read_text(), f"{path} differs: run pytest --update-goldens and review the diff"


def one_error_line(r: Any) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    return errors[0]


# --------------------------------------------------------------------------------------------------


def test_deploy_then_deploy_again_says_nothing_changed(env: Env) -> None:
    r = env.run("deploy")
    assert r.exit_code == 0, r.stderr
    assert "inferenceservice/embeddings/minilm created" in r.stderr
    assert "servingruntime/embeddings/vllm-reranker-runtime created" in r.stderr
    assert "3/3 ready" in r.stderr
    again = env.run("deploy")
    assert again.exit_code == 0
    assert "created" not in again.stderr and "configured" not in again.stderr
    assert "note: no changes: all 10 objects already match the config" in again.stderr


def test_status_ready_golden(env: Env, request: pytest.FixtureRequest) -> None:
    assert env.run("deploy", "--no-wait").exit_code == 0
    r = env.run("status")
    assert r.exit_code == 0, r.stderr
    golden(request, "ready", r.stdout)


def test_status_failures_golden(env: Env, request: pytest.FixtureRequest) -> None:
    env.fake.controller = None
    assert env.run("deploy", "--no-wait").exit_code == 0
    f = env.fake
    f.set_status("InferenceService", "minilm", NS, isvc_status(
        "minilm", NS, ready=False, transition="BlockedByFailedLoad", target="FailedToLoad",
        failure={"reason": "ModelLoadFailed", "message": TASK_CRASH, "exitCode": 2}))
    f.seed(deployment("minilm", NS, ready=0))
    f.seed(pod("minilm", NS, ready=False, restarts=4, waiting=("CrashLoopBackOff", "back-off 1m20s restarting"),
               last_terminated=("Error", TASK_CRASH, 2)))
    f.set_status("InferenceService", "granite", NS, isvc_status("granite", NS, ready=False))
    f.seed(deployment("granite", NS, ready=0))
    f.seed(pod("granite", NS, ready=False, unschedulable="0/3 nodes are available: 1 Insufficient nvidia.com/gpu, "
               "2 node(s) had untolerated taint {node-role.kubernetes.io/master: }."))
    f.remove("ServingRuntime", "vllm-reranker-runtime", NS)
    f.set_status("InferenceService", "reranker", NS, isvc_status(
        "reranker", NS, ready=False, predictor=condition("PredictorReady", "False", "RuntimeNotRecognized",
                                                         "Waiting for runtime to become available")))
    r = env.run("status")
    assert r.exit_code == 0, r.stderr
    golden(request, "failures", r.stdout)


def test_status_json_and_not_deployed(env: Env) -> None:
    r = env.run("status", "minilm", "-o", "json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data[0]["name"] == "minilm" and data[0]["phase"] == "NotDeployed"
    assert data[0]["reason"] == "not deployed (run `poolserve deploy minilm`)"


def test_wait_prints_progress_and_the_table(env: Env) -> None:
    env.run("deploy", "--no-wait")
    r = env.run("wait", "minilm")
    assert r.exit_code == 0
    assert "1/1 ready" in r.stderr and "Ready" in r.stdout


def test_logs(env: Env) -> None:
    env.run("deploy", "--no-wait")
    p = env.fake.all("Pod")[0]["metadata"]["name"]
    env.fake.pod_logs[(p, "kserve-container", False)] = ["INFO:     Started server process [1]",
                                                         "INFO:     Uvicorn running on http://0.0.0.0:8080"]
    r = env.run("logs", p.split("-predictor")[0])
    assert r.exit_code == 0
    assert r.stdout.splitlines()[-1] == "INFO:     Uvicorn running on http://0.0.0.0:8080"


def test_delete_with_runtimes(env: Env) -> None:
    env.run("deploy", "--no-wait")
    r = env.run("delete", "minilm", "--runtimes")
    assert r.exit_code == 0
    assert "inferenceservice/embeddings/minilm deleted" in r.stderr
    assert "servingruntime/embeddings/vllm-embedding-runtime kept  [used by granite; --force deletes it anyway]" \
        in r.stderr


def test_diff_exit_codes(env: Env) -> None:
    r = env.run("diff")
    assert r.exit_code == 1
    assert "+++ poolserve/InferenceService/embeddings/minilm" in r.stdout
    assert "inferenceservice/embeddings/minilm would be created" in r.stderr
    env.run("deploy", "--no-wait")
    r = env.run("diff")
    assert r.exit_code == 0, r.stdout
    assert r.stdout == ""
    assert "no differences: all 10 objects match the config" in r.stderr
    (env.path / "poolserve.yaml").write_text(SPEC.replace("max_model_len: 256", "max_model_len: 128"))
    r = env.run("diff", "minilm")
    assert r.exit_code == 1
    assert "-        - --max-model-len=256" in r.stdout and "+        - --max-model-len=128" in r.stdout
    assert "1 of 3 objects differ" in r.stderr


def test_diff_shows_the_conflict_note(env: Env) -> None:
    env.run("deploy", "--no-wait")
    env.fake.edit("InferenceService", "minilm", NS, {"spec": {"predictor": {"minReplicas": 2}}})
    r = env.run("diff", "minilm")
    assert r.exit_code == 1
    # Printed literally: rich used to take the bracketed note for markup and drop it.
    assert ("inferenceservice/embeddings/minilm would be configured [apply needs --force-conflicts (conflict "
            'applying InferenceService embeddings/minilm: Apply failed with 1 conflict: conflict with "kubectl-edit"'
            ) in r.stderr


def test_cache_warm(env: Env) -> None:
    def finish(t: float) -> None:
        for job in env.fake.all("Job"):
            name = job["metadata"]["name"]
            env.fake.set_status("Job", name, NS, {"succeeded": 1, "conditions": [condition("Complete", "True")]})
            env.fake.seed(pod("x", NS, name=f"{name}-x", container="download", labels={"job-name": name},
                              ready=False, terminated=("Completed", f"poolserve-cache: downloaded "
                                                       f"{job['metadata']['annotations']['poolserve.io/model-id']} "
                                                       "to /models/huggingface/hub/x (90.9 MB in 9 s)", 0)))

    env.on_sleep = finish
    r = env.run("cache", "warm", "minilm")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "MODEL   MODEL ID                                RESULT      DETAIL",
        "minilm  sentence-transformers/all-MiniLM-L6-v2  downloaded  to /models/huggingface/hub/x (90.9 MB in 9 s)"]
    assert "set cache.offline: true" in r.stderr
    r = env.run("cache", "warm", "minilm")
    assert r.stdout.splitlines()[1] == ("minilm  sentence-transformers/all-MiniLM-L6-v2  cached  "
                                        "already downloaded by an earlier job")


@pytest.mark.parametrize(("setup", "args", "code", "text"), [
    (lambda f: None, ["deploy", "nope"], 2, "error: no model named 'nope' in the config"),
    (lambda f: f.errors.__setitem__("server_version", unauthorized("https://api.ocp:6443")), ["deploy"], 3,
     "error: the Kubernetes API at https://api.ocp:6443 rejected the credentials (401 Unauthorized)"),
    (lambda f: f.denied.add(("patch", "inferenceservices.serving.kserve.io")), ["deploy"], 4,
     "error: forbidden: you may not patch inferenceservices.serving.kserve.io in namespace embeddings"),
    (lambda f: setattr(f, "kserve", False), ["status"], 5,
     "error: the API server has no InferenceService (serving.kserve.io/v1beta1) resource: KServe is not installed"),
    (lambda f: f.errors.__setitem__("apply:InferenceService", conflict(
        "InferenceService", "minilm", NS, 'Apply failed with 1 conflict: conflict with "kubectl-edit"')),
     ["deploy", "minilm"], 6, "--force-conflicts"),
    (lambda f: f.errors.__setitem__("apply:InferenceService", invalid(
        "InferenceService", "minilm", NS, 'admission webhook "inferenceservice.kserve-webhook-server.validator" '
        "denied the request: PYTHONPATH is not allowed")), ["deploy", "minilm"], 7,
     "error: InferenceService embeddings/minilm rejected: admission webhook"),
])
def test_each_error_class_has_its_exit_code_and_one_line(env: Env, setup: Callable[[FakeCluster], None],
                                                         args: list[str], code: int, text: str) -> None:
    setup(env.fake)
    r = env.run(*args)
    assert r.exit_code == code, r.output
    assert text in one_error_line(r)


def test_wait_failure_is_not_ready_exit_8(env: Env) -> None:
    env.fake.controller = None
    env.run("deploy", "minilm", "--no-wait")
    env.fake.set_status("InferenceService", "minilm", NS, isvc_status("minilm", NS, ready=False))
    env.fake.seed(pod("minilm", NS, ready=False, restarts=2, waiting=("CrashLoopBackOff", "back-off"),
                      last_terminated=("Error", TASK_CRASH, 2)))
    r = env.run("wait", "minilm")
    assert r.exit_code == 8
    line = one_error_line(r)
    assert line.startswith("error: minilm cannot become ready: CrashLoopBackOff: vLLM rejected a flag (--task=embed)")


def test_timeout_is_not_ready_exit_8(env: Env) -> None:
    env.fake.controller = None
    r = env.run("deploy", "minilm", "--timeout", "20s")
    assert r.exit_code == 8
    assert one_error_line(r).startswith("error: timed out after 20s waiting for 1 model: minilm: Unknown (the KServe "
                                      "controller has not reported any status")
    assert sum(env.sleeps) == 20


def test_stop_and_start_through_the_cli(env: Env) -> None:
    assert env.run("deploy", "--no-wait").exit_code == 0
    r = env.run("stop", "minilm")
    assert r.exit_code == 0, r.output
    assert f"inferenceservice/{NS}/minilm stopped" in r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("minilm "))
    assert "Stopped" in row and "0/0" in row
    rows = {s["name"]: s["phase"] for s in json.loads(env.run("status", "-o", "json").stdout)}
    assert rows["minilm"] == "Stopped"
    w = env.run("wait", "minilm")  # nothing to wait for
    assert w.exit_code == 0 and "Stopped" in w.stdout and env.sleeps == []
    r = env.run("start", "minilm")
    assert r.exit_code == 0, r.output
    assert f"inferenceservice/{NS}/minilm started" in r.stderr and "Ready" in r.stdout
    assert env.run("stop").exit_code == 2  # names are required
    r = env.run("stop", "nope")
    assert r.exit_code == 2 and "no model named 'nope'" in one_error_line(r)


def test_stop_of_an_undeployed_model_exits_5(env: Env) -> None:
    r = env.run("stop", "minilm")
    assert r.exit_code == 5 and one_error_line(r).startswith(f"error: InferenceService {NS}/minilm does not exist")
