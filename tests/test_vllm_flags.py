"""vLLM flags per version: what the renderer emits and what lint rejects (offline)."""

from __future__ import annotations

import pytest

from poolserve import vllm
from poolserve.spec import parse_spec, resolve_models

BASE = """\
image: vllm/vllm-openai:{tag}
runtimes:
  - {{name: vllm-embedding-runtime, task: embed}}
  - {{name: vllm-reranker-runtime, task: score}}
models:
  - {{name: emb, model_id: sentence-transformers/all-MiniLM-L6-v2}}
  - {{name: rr, model_id: cross-encoder/ms-marco-MiniLM-L12-v2, pooler_config: {{use_activation: false}}}}
"""


def _models(tag: str):
    return {m.name: m for m in resolve_models(parse_spec(BASE.format(tag=tag)))}


@pytest.mark.parametrize(
    ("tag", "embed_flag", "score_flag"),
    [
        ("v0.6.4", "--task=embedding", "--task=embedding"),
        ("v0.6.5", "--task=embed", "--task=score"),
        ("v0.9.2", "--task=embed", "--task=score"),
        ("v0.10.0", "--task=embed", "--task=score"),
        ("v0.10.1", "--runner=pooling", "--runner=pooling"),
        ("v0.12.0", "--runner=pooling", "--runner=pooling"),
        ("v0.13.0", "--runner=pooling", "--runner=pooling"),
        ("v0.32.0", "--runner=pooling", "--runner=pooling"),
    ],
)
def test_runner_flag_per_version(tag: str, embed_flag: str, score_flag: str) -> None:
    models = _models(tag)
    assert embed_flag in vllm.runtime_args(models["emb"].runtime)
    assert score_flag in vllm.runtime_args(models["rr"].runtime)
    # Never --task where vLLM removed it (argparse exits 2 from 0.13 on).
    if tuple(int(p) for p in tag[1:].split(".")) >= (0, 13, 0):
        assert not any(a.startswith("--task") for a in vllm.runtime_args(models["emb"].runtime))


@pytest.mark.parametrize(
    ("tag", "flag"),
    [("v0.10.2", "--override-pooler-config"), ("v0.11.0", "--pooler-config"), ("v0.32.0", "--pooler-config")],
)
def test_pooler_config_flag_per_version(tag: str, flag: str) -> None:
    args = vllm.model_args(_models(tag)["rr"])
    assert f'{flag}={{"use_activation":false}}' in args


def test_model_args_serve_under_hf_id_and_isvc_name() -> None:
    args = vllm.model_args(_models("v0.32.0")["emb"])
    assert args[:4] == ["--model=sentence-transformers/all-MiniLM-L6-v2", "--served-model-name",
                        "sentence-transformers/all-MiniLM-L6-v2", "{{.Name}}"]
    assert "--max-model-len=256" in args


def test_catalog_flags_are_rendered() -> None:
    spec = parse_spec(BASE.format(tag="v0.32.0").replace(
        "  - {name: emb, model_id: sentence-transformers/all-MiniLM-L6-v2}",
        "  - {name: emb, model_id: nomic-ai/nomic-embed-text-v1.5}\n"
        "  - {name: qwen, model_id: Qwen/Qwen3-Reranker-0.6B, runtime: vllm-reranker-runtime}"))
    models = {m.name: m for m in resolve_models(spec)}
    assert "--trust-remote-code" in vllm.model_args(models["emb"])
    qwen = vllm.model_args(models["qwen"])
    assert any(a.startswith("--hf-overrides=") and "Qwen3ForSequenceClassification" in a for a in qwen)


@pytest.mark.parametrize(
    ("args", "version", "severity", "fragment"),
    [
        (["--task=embed"], (0, 13, 0), "error", "--task was removed in vLLM 0.13.0"),
        (["--task", "score"], (0, 32, 0), "error", "--task was removed"),
        (["--task=embed"], (0, 11, 2), "warning", "deprecated"),
        (["--runner=pooling"], (0, 9, 2), "error", "does not exist before vLLM 0.10.1"),
        (["--convert=reward"], (0, 16, 0), "error", "--convert=reward was removed"),
        (["--override-pooler-config={}"], (0, 12, 0), "error", "removed in vLLM 0.12.0"),
        (["--pooler-config={}"], (0, 10, 2), "error", "needs vLLM >= 0.11.0"),
        (['--pooler-config={"normalize":true}'], (0, 16, 0), "error", "normalize were removed"),
        (["--gpu-memory-utilization=1.5"], (0, 32, 0), "error", "must be in (0, 1]"),
        (["--model=x"], (0, 6, 3), "error", "cannot serve BERT-style pooling models"),
    ],
)
def test_check_args(args: list[str], version: tuple[int, int, int], severity: str, fragment: str) -> None:
    problems = vllm.check_args(args, version)
    assert any(p.severity == severity and fragment in p.message for p in problems), problems


@pytest.mark.parametrize("version", [(0, 10, 1), (0, 13, 0), (0, 32, 0)])
def test_rendered_args_pass_their_own_check(version: tuple[int, int, int]) -> None:
    tag = "v" + ".".join(map(str, version))
    for m in _models(tag).values():
        args = vllm.runtime_args(m.runtime) + vllm.model_args(m)
        assert [p for p in vllm.check_args(args, version) if p.severity == "error"] == []


def test_env_problems() -> None:
    found = vllm.env_problems({"VLLM_USAGE_STATS": "0", "PYTHONPATH": "/x"})
    assert {p.flag for p in found} == {"VLLM_USAGE_STATS", "PYTHONPATH"}


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ([], []),
        (["--served-model-name", "a", "b", "--port=1"], ["a", "b"]),
        (["--served-model-name=a", "b"], ["a"]),
        (["--served-model-name", "a", "--served-model-name", "c"], ["c"]),  # the last occurrence wins
        (["--served-model-name", "org/m", "{{.Name}}"], ["org/m", "{{.Name}}"]),
    ],
)
def test_served_model_names_like_argparse(args: list[str], names: list[str]) -> None:
    assert vllm.served_model_names(args) == names
