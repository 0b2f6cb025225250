"""`poolserve plan NAME --from BENCH.json`: the maths on recorded curves, bad input, --write, render."""

from __future__ import annotations

import difflib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from poolserve.bench.capacity import (
    Goal,
    Point,
    Subject,
    limit,
    memory_fit,
    parse_headroom,
    parse_latency_ms,
    parse_rate,
    plan_capacity,
)
from poolserve.bench.metrics import BenchReport, MachineInfo, SettingReport, report_from_json, report_to_json
from poolserve.cli.app import create_app
from poolserve.config.load import parse_spec
from poolserve.config.yamledit import set_model_keys
from poolserve.errors import CapacityError, SpecError
from poolserve.kserve.render import render
from poolserve.vllm.facts import ServingFacts
from poolserve.vllm.sizing import plan_model

ROOT = Path(__file__).resolve().parents[1]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
CPU_FACTS = ServingFacts(model=MINILM, dtype="float32", device="cpu (AMD EPYC; avx512_bf16)", target="local")
GPU_FACTS = ServingFacts(model=MINILM, dtype="float16", device="gpu", target="cluster")
runner = CliRunner()


def setting(c: int, b: int, rps: float, p99: float | None, errors: int = 0) -> SettingReport:
    return SettingReport(concurrency=c, batch_size=b, requests=0 if p99 is None else 100, errors=errors,
                         duration_s=10.0, requests_per_s=rps, texts_per_s=rps * b, tokens_per_s=rps * b * 128,
                         latency_p50_ms=None if p99 is None else p99 / 2, latency_p90_ms=None if p99 is None else p99,
                         latency_p99_ms=p99, latency_mean_ms=None if p99 is None else p99 / 2,
                         latency_max_ms=p99, tokens_per_text=128.0)


# A recorded shape of all-MiniLM-L6-v2 on 2 CPU cores: throughput flattens while p99 grows with concurrency.
CURVE = (setting(1, 8, 20.0, 60.0), setting(4, 8, 35.0, 150.0), setting(16, 8, 38.0, 520.0),
         setting(1, 1, 50.0, 25.0), setting(4, 1, 90.0, 60.0))


def report(settings: tuple[SettingReport, ...] = CURVE, **kw: Any) -> BenchReport:
    fields: dict[str, Any] = {"timestamp": "2025-06-01T10:00:00+00:00", "endpoint": "http://127.0.0.1:8001",
                              "model": MINILM, "task": "embed", "input_tokens": 128, "settings": settings,
                              "machine": MachineInfo("AMD EPYC", 2, 8.0, "Linux", "3.11", vllm_version="0.32.0"),
                              "deployment": CPU_FACTS, "replicas": 1}
    return BenchReport(**{**fields, **kw})


def subject(**kw: Any) -> Subject:
    return Subject(**{"name": "minilm-cpu", "model_id": MINILM, "task": "embed", "replicas": 1,
                      "facts": replace(CPU_FACTS, device="cpu", target="cluster"), "target": "local", **kw})


# -- parsing ------------------------------------------------------------------------------------------


def test_rates_latencies_and_headroom_parse() -> None:
    assert parse_rate("500/s") == 500 and parse_rate("30000/min") == 500 and parse_rate("7.2e6/h") == 2000
    assert parse_rate("12") == 12
    assert parse_latency_ms("200ms") == 200 and parse_latency_ms("0.5s") == 500 and parse_latency_ms("80") == 80
    assert parse_headroom("25%") == 0.25 and parse_headroom("0") == 0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: parse_rate("0/s"), "a rate of 0 needs no replicas; give the peak rate"),
    (lambda: parse_rate("fast"), "expected requests per second like 500/s"),
    (lambda: parse_latency_ms("0ms"), "must be above 0"),
    (lambda: parse_latency_ms("soon"), "expected a latency like 200ms"),
    (lambda: parse_headroom("100%"), "below 100%"),
])
def test_bad_goals_are_one_line(call: Any, message: str) -> None:
    with pytest.raises(CapacityError, match=message) as err:
        call()
    assert "\n" not in str(err.value) and err.value.exit_code == 2


# -- the maths ----------------------------------------------------------------------------------------


def test_the_limit_is_interpolated_between_the_points_around_the_goal() -> None:
    plan = plan_capacity(report(), Goal(rate_per_s=500, p99_ms=200, batch=8), subject())
    # p99 150 ms at 4 in flight, 520 ms at 16: the goal is 50/370 of the way -> 5.62 in flight
    assert plan.c_max == pytest.approx(4 + 12 * 50 / 370)
    assert plan.concurrency == 4  # 20 % headroom: 4.49 -> 4 whole requests
    assert (plan.requests_per_s, plan.p99_ms) == (35.0, 150.0)  # a measured point
    assert plan.replicas_exact == pytest.approx(500 / 35) and plan.max_replicas == 15
    assert plan.target == 32  # KEDA counts inputs: 4 requests x 8 texts
    assert plan.ceiling_per_s == pytest.approx(15 * (35 + 3 * (plan.c_max - 4) / 12))
    assert plan.warnings == () and plan.notes == ()


def test_throughput_between_points_is_interpolated_too() -> None:
    plan = plan_capacity(report(), Goal(rate_per_s=100, p99_ms=400, batch=8, headroom=0.0), subject())
    assert plan.c_max == pytest.approx(4 + 12 * 250 / 370)
    assert plan.concurrency == 12 and plan.requests_per_s == pytest.approx(35 + 3 * 8 / 12)
    assert plan.p99_ms == pytest.approx(150 + 370 * 8 / 12)


def test_a_goal_above_every_measured_point_is_not_extrapolated() -> None:
    plan = plan_capacity(report(), Goal(rate_per_s=100, p99_ms=2000, batch=8), subject())
    assert plan.c_max == 16 and plan.concurrency == 12
    assert "every measured point meets the goal" in plan.notes[0]
    assert "`poolserve bench minilm-cpu --target local --concurrency 16,32,64 --batch-size 8" in plan.notes[0]


def test_a_goal_below_every_measured_point_names_the_bench_to_run() -> None:
    with pytest.raises(CapacityError) as err:
        plan_capacity(report(), Goal(rate_per_s=100, p99_ms=40, batch=8), subject())
    msg = str(err.value)
    assert msg.startswith("no measured point meets p99 <= 40 ms at batch 8: the lowest, concurrency 1, has p99 60 ms")
    assert msg.endswith("`poolserve bench minilm-cpu --target local --concurrency 1,2,4 --batch-size 2 "
                        "--duration 30s -o bench.json`")


def test_failed_requests_do_not_meet_the_goal() -> None:
    settings = (setting(1, 8, 20.0, 60.0), setting(4, 8, 35.0, 90.0, errors=3), setting(16, 8, 38.0, 100.0))
    plan = plan_capacity(report(settings), Goal(rate_per_s=40, p99_ms=200, batch=8, headroom=0.0), subject())
    assert plan.c_max == 1 and plan.max_replicas == 2
    assert limit([Point(1, 1, None, 2)], 100) == (0.0, -1)


def test_the_batch_must_be_measured() -> None:
    with pytest.raises(CapacityError, match=r"the report measured batch sizes 1, 8: give the one"):
        plan_capacity(report(), Goal(rate_per_s=1, p99_ms=200), subject())
    with pytest.raises(CapacityError, match=r"no setting at --batch 32 \(it measured 1, 8\): run `poolserve bench "
                                            r"minilm-cpu --target local --concurrency 1,2,4,8,16,32 --batch-size 32"):
        plan_capacity(report(), Goal(rate_per_s=1, p99_ms=200, batch=32), subject())
    only8 = report(CURVE[:3])
    assert plan_capacity(only8, Goal(rate_per_s=1, p99_ms=200), subject()).batch == 8
    rerank = report(CURVE[:3], task="score", model="cross-encoder/ms-marco-MiniLM-L12-v2", deployment=None)
    with pytest.raises(CapacityError, match=r"--documents 4 "):
        plan_capacity(rerank, Goal(rate_per_s=1, p99_ms=200, batch=4),
                      subject(task="score", model_id="cross-encoder/ms-marco-MiniLM-L12-v2"))


def test_a_report_of_another_model_or_task_is_refused() -> None:
    other = report(model="BAAI/bge-small-en-v1.5", deployment=None)
    with pytest.raises(CapacityError, match=r"the report measured BAAI/bge-small-en-v1\.5, not minilm-cpu's"):
        plan_capacity(other, Goal(rate_per_s=1, p99_ms=200, batch=8), subject())
    with pytest.raises(CapacityError, match="the report measured a reranker, minilm-cpu is an embedding model"):
        plan_capacity(report(task="score"), Goal(rate_per_s=1, p99_ms=200, batch=8), subject())


def test_another_device_or_dtype_is_warned_loudly() -> None:
    plan = plan_capacity(report(), Goal(rate_per_s=10, p99_ms=200, batch=8), subject(facts=GPU_FACTS))
    assert plan.warnings == (
        "measured on cpu (AMD EPYC; avx512_bf16), but the config deploys on gpu: the throughput does not transfer",
        "measured in float32, but the config runs float16: speed differs by dtype")
    plan = plan_capacity(report(deployment=None), Goal(rate_per_s=10, p99_ms=200, batch=8), subject())
    assert "does not say which device and dtype it measured" in plan.warnings[0]
    mig = replace(GPU_FACTS, device="gpu MIG 1g.10gb")
    plan = plan_capacity(report(deployment=replace(GPU_FACTS, device="gpu MIG 2g.20gb")),
                         Goal(rate_per_s=10, p99_ms=200, batch=8), subject(facts=mig))
    assert plan.warnings == ("measured on gpu MIG 2g.20gb, but the config deploys on gpu MIG 1g.10gb: the throughput "
                             "does not transfer",)
    plan = plan_capacity(report(deployment=replace(GPU_FACTS, device="gpu 80 GiB")),
                         Goal(rate_per_s=10, p99_ms=200, batch=8), subject(facts=mig))
    assert "measured on gpu 80 GiB, but the config deploys on gpu MIG 1g.10gb" in plan.warnings[0]
    plan = plan_capacity(report(deployment=replace(GPU_FACTS, device="gpu 80 GiB")),
                         Goal(rate_per_s=10, p99_ms=200, batch=8), subject(facts=GPU_FACTS))
    assert plan.warnings == ()  # the same kind of device: its memory alone does not change the speed


def test_a_benchmark_of_several_replicas_is_divided_per_replica() -> None:
    three = report(tuple(replace(s, concurrency=3 * s.concurrency, requests_per_s=3 * s.requests_per_s)
                         for s in CURVE), replicas=3)
    plan = plan_capacity(three, Goal(rate_per_s=500, p99_ms=200, batch=8), subject())
    assert plan.c_max == pytest.approx(4 + 12 * 50 / 370) and plan.max_replicas == 15
    assert "ran against 3 replicas: the figures are divided by 3" in plan.warnings[0]


def test_headroom_limits_and_minimum_replicas() -> None:
    settings = (setting(4, 8, 35.0, 150.0), setting(16, 8, 38.0, 520.0))
    plan = plan_capacity(report(settings), Goal(rate_per_s=10, p99_ms=200, batch=8, headroom=0.5), subject(replicas=3))
    assert plan.concurrency == 4 and plan.notes[0].startswith("only 29% headroom below the limit of 5.62, not 50%: "
                                                              "the lowest measured concurrency is 4")
    assert plan.max_replicas == 3 and plan.min_replicas == 3 and "replicas (the minimum) is 3" in plan.notes[1]
    tight = (setting(1, 32, 2.0, 500.0), setting(2, 32, 2.1, 900.0))
    plan = plan_capacity(report(tight), Goal(rate_per_s=10, p99_ms=600, batch=32), subject())
    assert plan.concurrency == 1 and plan.target == 32 and plan.notes == ()  # 1 of 1.25: the 20 % asked
    plan = plan_capacity(report(tight), Goal(rate_per_s=10, p99_ms=520, batch=32), subject())
    assert plan.concurrency == 1 and plan.notes[0].startswith("only 5% headroom below the limit of 1.05, not 20%: "
                                                              "a replica runs at least 1 request")


def test_memory_fit_for_gpu_models() -> None:
    spec = parse_spec((ROOT / "poolserve.yaml").read_text())
    minilm = render(spec).model("minilm-embedding")
    lines = memory_fit(plan_model(minilm), 32, 128)
    assert lines[0].startswith("0.87 GiB estimate; the memory of the whole GPU is unknown")
    assert "encoder-only" in lines[1]
    lines = memory_fit(plan_model(replace(minilm, mig_profile="1g.10gb")), 32, 128)
    assert lines[0] == "0.87 GiB estimate fits the MIG 1g.10gb (9.3 GiB)"
    qwen = render(parse_spec((ROOT / "poolserve.yaml").read_text(), overrides={
        "models.0.model_id": "Qwen/Qwen3-Embedding-0.6B", "models.0.max_model_len": 8192,
        "models.0.gpu_memory_gib": 24})).model("minilm-embedding")
    lines = memory_fit(plan_model(qwen), 64, 512)
    assert lines[1].startswith("KV cache for 64 inputs x 512 tokens in flight: 3.50 GiB of the") and "fits" in lines[1]
    cpu = parse_spec((ROOT / "poolserve.yaml").read_text(), overrides={"runtimes.0.device": "cpu"})
    assert memory_fit(plan_model(render(cpu).model("minilm-embedding")), 8, 128) == []


def test_the_report_keeps_the_deployment_and_replicas() -> None:
    r = report()
    assert report_from_json(report_to_json(r)) == r
    old = json.loads(report_to_json(r))
    del old["deployment"], old["replicas"]  # a report of an earlier poolserve
    assert report_from_json(json.dumps(old)).deployment is None


# -- the config edit ----------------------------------------------------------------------------------

COMMENTED = """\
# the team's config: keep these comments
namespace: vllm-embeddings   # shared namespace
runtimes:
  - name: vllm-cpu-runtime
    task: embed
    device: cpu
defaults:
  autoscaling:
    metric: queue
    target: 99
    prometheus_url: http://prometheus.monitoring:9090   # our Prometheus
    authentication: null
models:
  # the embedder
  - name: minilm-cpu
    model_id: sentence-transformers/all-MiniLM-L6-v2
    replicas: 2        # two always on
    resources: {requests: {cpu: "2", memory: 4Gi}, limits: {cpu: "2", memory: 4Gi}}

  - {name: other, model_id: sentence-transformers/all-MiniLM-L6-v2}
# end
"""


def test_set_model_keys_inserts_and_replaces_keeping_everything_else() -> None:
    out = set_model_keys(COMMENTED, "minilm-cpu", {"max_replicas": 6, "autoscaling": {"metric": "queue",
                                                                                       "target": 32}})
    added = [ln for ln in difflib.ndiff(COMMENTED.splitlines(), out.splitlines()) if ln[:1] in "+-"]
    assert added == ["+     max_replicas: 6", "+     autoscaling: {metric: queue, target: 32}"]
    assert out.index("max_replicas") < out.index("\n\n  - {name: other")  # right after the model, before the blank
    again = set_model_keys(out, "minilm-cpu", {"max_replicas": 8, "autoscaling": {"metric": "queue", "target": 16}})
    assert [ln for ln in difflib.ndiff(out.splitlines(), again.splitlines()) if ln[:1] in "+-"] == [
        "-     max_replicas: 6", "+     max_replicas: 8",
        "-     autoscaling: {metric: queue, target: 32}", "+     autoscaling: {metric: queue, target: 16}"]
    flow = set_model_keys(COMMENTED, "other", {"max_replicas": 2})
    assert "  - {name: other, model_id: sentence-transformers/all-MiniLM-L6-v2, max_replicas: 2}\n" in flow


def test_set_model_keys_edits_a_block_mapping_key_by_key() -> None:
    text = "models:\n  - name: m\n    autoscaling:\n      metric: cpu   # was cpu\n      target: 70\n" \
           "      authentication: null\n    notes: |\n      two\n      lines\n# end\n"
    out = set_model_keys(text, "m", {"max_replicas": 3, "autoscaling": {"metric": "queue", "target": 5,
                                                                         "prometheus_url": "http://p:9090"}})
    assert out == ("models:\n  - name: m\n    autoscaling:\n      metric: queue   # was cpu\n      target: 5\n"
                   "      authentication: null\n      prometheus_url: http://p:9090\n    notes: |\n      two\n"
                   "      lines\n    max_replicas: 3\n# end\n")
    assert yaml.safe_load(out)["models"][0]["notes"] == "two\nlines\n"
    block = "models:\n  - name: m\n    autoscaling:\n      metric: cpu\n      target: 70\n    replicas: 1\n"
    assert set_model_keys(block, "m", {"autoscaling": None}) == "models:\n  - name: m\n    autoscaling: null\n" \
                                                               "    replicas: 1\n"
    with pytest.raises(SpecError, match="no model named 'x' to edit"):
        set_model_keys(block, "x", {"replicas": 2})


def cli(*args: str) -> Result:
    return runner.invoke(create_app(), list(args))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "poolserve.yaml").write_text(COMMENTED)
    (tmp_path / "bench.json").write_text(report_to_json(report()))
    return tmp_path


def test_cli_prints_the_plan_and_writes_it_keeping_the_comments(project: Path) -> None:
    r = cli("plan", "minilm-cpu", "--from", "bench.json", "--rate", "500/s", "--p99", "200ms", "--batch", "8")
    assert r.exit_code == 0, r.output
    assert (project / "poolserve.yaml").read_text() == COMMENTED  # no --write: nothing written
    assert "limit        p99 reaches 200 ms at 5.6 requests in flight per replica (interpolated between c=4 and " \
           "c=16)" in r.stdout
    assert "keda         queue target 32 inputs in flight per replica (4 requests x 8: vLLM counts each text)" \
        in r.stdout
    assert "    autoscaling: {metric: queue, target: 32, prometheus_url: http://prometheus.monitoring:9090, " \
           "authentication: null}" in r.stdout  # the defaults' KEDA settings stay with the model's own block
    r = cli("plan", "minilm-cpu", "--from", "bench.json", "--rate", "500/s", "--p99", "200ms", "--batch", "8",
            "--write", "-o", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["written"] == "poolserve.yaml" and data["plan"]["max_replicas"] == 15
    text = (project / "poolserve.yaml").read_text()
    assert text.startswith(COMMENTED.split("\n  - {name: other")[0].rstrip("\n"))  # comments and order kept
    assert "    max_replicas: 15\n" in text and "# our Prometheus" in text and text.endswith("# end\n")
    r = cli("render", "-o", "-")
    isvc = next(d for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "InferenceService"
                and d["metadata"]["name"] == "minilm-cpu")
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 15)
    ext = predictor["autoScaling"]["metrics"][0]["external"]
    assert ext["target"] == {"type": "Value", "value": "32"}
    assert ext["metric"]["serverAddress"] == "http://prometheus.monitoring:9090"


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "bench.json", "--rate", "0/s", "--p99", "200ms", "--batch", "8"], "a rate of 0 needs no replicas"),
    (["--from", "bench.json", "--rate", "10/s", "--p99", "10ms", "--batch", "8"], "`poolserve bench minilm-cpu"),
    (["--from", "missing.json", "--rate", "10/s", "--p99", "1s"], "--from missing.json: cannot read it"),
    (["--from", "poolserve.yaml", "--rate", "10/s", "--p99", "1s"], "write one with `poolserve bench NAME -o"),
    (["--from", "bench.json", "--rate", "10/s"], "a capacity plan needs one NAME, --from BENCH.json, --rate and --p99"),
    (["--from", "bench.json", "--rate", "10/s", "--p99", "1s", "--batch", "8", "--write", "--set", "namespace=x"],
     "--write edits the config file: drop --set"),
])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(project: Path, args: list[str], message: str) -> None:
    r = cli("plan", "minilm-cpu", *args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.output
    assert (project / "poolserve.yaml").read_text() == COMMENTED


def test_cli_warns_loudly_on_stdout_and_stderr(project: Path) -> None:
    gpu = COMMENTED.replace("    device: cpu\n", "")
    (project / "poolserve.yaml").write_text(gpu)
    r = cli("plan", "minilm-cpu", "--from", "bench.json", "--rate", "10/s", "--p99", "200ms", "--batch", "8")
    assert r.exit_code == 0, r.output
    assert " WARNING 1    measured on cpu (AMD EPYC; avx512_bf16), but the config deploys on gpu" in r.stdout
    assert "WARNING: measured on cpu (AMD EPYC; avx512_bf16), but the config deploys on gpu" in r.stderr

