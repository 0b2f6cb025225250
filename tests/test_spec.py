"""Config loading: precedence, strictness, and one-line errors naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolserve.config.load import load_spec, parse_spec
from poolserve.config.resolve import resolve_models
from poolserve.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """\
runtimes:
  - name: vllm-embedding-runtime
    task: embed
models:
  - name: minilm-embedding
    model_id: sentence-transformers/all-MiniLM-L6-v2
"""


def test_committed_config_reproduces_the_plan() -> None:
    spec = load_spec(ROOT / "poolserve.yaml")
    models = {m.name: m for m in resolve_models(spec)}
    assert spec.namespace == "vllm-embeddings"
    assert spec.cache.pvc == "vllm-model-cache" and spec.cache.hf_home == "/models/huggingface"
    assert set(models) == {"minilm-embedding", "granite-embedding", "msmarco-reranker"}
    minilm = models["minilm-embedding"]
    assert minilm.runtime.name == "vllm-embedding-runtime"
    assert minilm.runtime.display_name == "vLLM Embedding Runtime"
    assert minilm.max_model_len == 256 and minilm.gpus == 1
    assert minilm.resources.requests == {"cpu": "2", "memory": "4Gi"}
    assert minilm.resources.limits == {"cpu": "4", "memory": "8Gi"}
    granite = models["granite-embedding"]
    assert granite.model_id == "ibm-granite/granite-embedding-278m-multilingual"
    assert granite.max_model_len == 512
    assert granite.resources.requests == {"cpu": "2", "memory": "8Gi"}
    assert granite.resources.limits == {"cpu": "4", "memory": "16Gi"}
    reranker = models["msmarco-reranker"]
    assert reranker.task == "score" and reranker.runtime.name == "vllm-reranker-runtime"
    assert minilm.runtime.dtype == "float16" and minilm.runtime.gpu_memory_utilization == 0.3


def test_defaults_come_from_the_catalog() -> None:
    spec = parse_spec(MINIMAL)
    (m,) = resolve_models(spec)
    assert m.task == "embed" and m.max_model_len == 256  # catalog, not vLLM's 512
    assert m.display_name == "all-MiniLM-L6-v2 (vLLM)"
    assert m.auth is False and m.expose is False


def test_model_keys_win_over_defaults_block() -> None:
    text = MINIMAL.replace("models:", "defaults:\n  gpus: 2\n  replicas: 2\nmodels:") + "    gpus: 0\n"
    (m,) = resolve_models(parse_spec(text))
    assert m.gpus == 0 and m.replicas == 2 and m.max_replicas == 2


def test_exposed_models_get_token_auth_unless_disabled() -> None:
    (m,) = resolve_models(parse_spec(MINIMAL + "    expose: true\n"))
    assert m.auth is True
    (m,) = resolve_models(parse_spec(MINIMAL + "    expose: true\n    auth: false\n"))
    assert m.auth is False


def test_cli_overrides_win_over_the_file() -> None:
    spec = parse_spec(MINIMAL, overrides={"namespace": "dev", "models.0.max_model_len": 128})
    assert spec.namespace == "dev"
    assert resolve_models(spec)[0].max_model_len == 128


def test_task_aliases() -> None:
    text = MINIMAL.replace("task: embed", "task: embedding")
    assert parse_spec(text).runtimes[0].task == "embed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "f.yaml: the file is empty"),
        ("runtimes: [\n", "f.yaml:2: YAML syntax error"),
        ("- a\n- b\n", "f.yaml:1: expected a mapping"),
        (MINIMAL + "    max_modle_len: 12\n", "f.yaml:7: models[0].max_modle_len: unknown key"),
        (MINIMAL + "    max_model_len: -1\n", "f.yaml:7: models[0].max_model_len: Input should be greater than 0"),
        (MINIMAL + "    max_model_len: 512\n", "f.yaml:7: models[0].max_model_len: 512 is above "
                                                "sentence-transformers/all-MiniLM-L6-v2's limit of 256"),
        (MINIMAL + "    max_model_len: lots\n", "f.yaml:7: models[0].max_model_len: Input should be a valid integer"),
        (MINIMAL + "  - name: minilm-embedding\n    model_id: sentence-transformers/all-MiniLM-L6-v2\n",
         "f.yaml:7: models[1].name: duplicate model name 'minilm-embedding'"),
        (MINIMAL.replace("name: minilm-embedding", "name: " + "m" * 49), "is 49 characters; KServe raw mode allows 48"),
        (MINIMAL.replace("name: minilm-embedding", "name: " + "m" * 40),
         "+ namespace 'vllm-embeddings' is 55 characters; KServe allows 52"),
        (MINIMAL.replace("name: minilm-embedding", "name: MiniLM"), "must be lowercase letters"),
        (MINIMAL.replace("task: embed", "task: generate"), "f.yaml:3: runtimes[0].task: invalid value 'generate'"),
        (MINIMAL.replace("sentence-transformers/all-MiniLM-L6-v2", "cross-encoder/ms-marco-MiniLM-L12-v2"),
         "f.yaml:5: models[0].task: minilm-embedding: task 'score' needs a runtime with task: score"),
        (MINIMAL + "    runtime: nope\n", "f.yaml:7: models[0].runtime: runtime 'nope' is not defined"),
        (MINIMAL.replace("sentence-transformers/all-MiniLM-L6-v2", "acme/unknown"),
         "f.yaml:6: models[0].model_id: 'acme/unknown' is not in the catalog: set task"),
        ("image: vllm/vllm-openai:latest\n" + MINIMAL,
         "cannot tell the vLLM version of image 'vllm/vllm-openai:latest'"),
        ("runtimes: []\nmodels: []\n", "f.yaml:1: runtimes: Tuple should have at least 1 item"),
        ("namespace: vllm-embeddings\nnamespace: x\n" + MINIMAL,
         "f.yaml:2: YAML syntax error: duplicate key 'namespace'"),
        (MINIMAL + "    mig_profile: 10gb\n",
         "f.yaml:7: models[0].mig_profile: '10gb' is not a MIG profile like 1g.10gb"),
        ("defaults:\n  mig_profile: huge\n" + MINIMAL, "f.yaml:2: defaults.mig_profile: 'huge' is not a MIG profile"),
        (MINIMAL + "    gpus: 0\n    mig_profile: 1g.10gb\n",
         "f.yaml:7: models[0].gpus: gpus: 0 with mig_profile '1g.10gb': a MIG slice is a GPU"),
        (MINIMAL + "    gpu_memory_gib: -8\n", "f.yaml:7: models[0].gpu_memory_gib: Input should be greater than 0"),
        (MINIMAL + "    stopped: maybe\n", "f.yaml:7: models[0].stopped: Input should be a valid boolean"),
        (MINIMAL + "    gpu_shared: 2\n", "f.yaml:7: models[0].gpu_shared: Input should be a valid boolean"),
        (MINIMAL.replace("task: embed", "task: embed\n    enforce_eager: sometimes"),
         "f.yaml:4: runtimes[0].enforce_eager: Input should be a valid boolean"),
    ],
)
def test_bad_config_is_one_line_naming_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "f.yaml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="config file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_vllm_version_from_image_or_explicit() -> None:
    spec = parse_spec("image: quay.io/x/vllm@sha256:abc\nvllm_version: 0.9.2\n" + MINIMAL)
    assert resolve_models(spec)[0].vllm_version == (0, 9, 2)
    spec = parse_spec("image: vllm/vllm-openai:v0.12.0\n" + MINIMAL)
    assert resolve_models(spec)[0].vllm_version == (0, 12, 0)


def test_per_model_runtime_mode_names_runtimes_like_models() -> None:
    text = "runtime_mode: per-model\n" + MINIMAL
    (m,) = resolve_models(parse_spec(text))
    assert m.runtime.name == "minilm-embedding" and m.runtime.pattern == "vllm-embedding-runtime"


def test_each_image_is_read_for_its_own_version() -> None:
    text = ("vllm_version: 0.32.0\n" + MINIMAL.replace("task: embed", "task: embed\n    image: vllm/vllm-openai:v0.9.2")
            + "  - name: other\n    model_id: intfloat/e5-base-v2\n    image: vllm/vllm-openai:v0.10.1\n")
    models = {m.name: m for m in resolve_models(parse_spec(text))}
    assert models["minilm-embedding"].runtime.vllm_version == (0, 9, 2)  # not the top-level 0.32.0
    assert models["other"].vllm_version == (0, 10, 1)


def test_model_can_clear_defaults_node_selector_and_tolerations() -> None:
    text = MINIMAL.replace("models:", "defaults:\n  node_selector: {gpu: a100}\n"
                           "  tolerations: [{key: gpu, operator: Exists}]\nmodels:")
    (m,) = resolve_models(parse_spec(text + "    node_selector: {}\n    tolerations: []\n"))
    assert m.node_selector == () and m.tolerations == ()
    (m,) = resolve_models(parse_spec(text))
    assert m.node_selector == (("gpu", "a100"),) and len(m.tolerations) == 1


def test_resolving_an_unchecked_spec_raises_spec_error_not_assertion() -> None:
    from poolserve.config.schema import PoolSpec

    raw = PoolSpec.model_validate({"image": "vllm/vllm-openai:latest", "runtimes": [{"name": "r", "task": "embed"}],
                                   "models": [{"name": "m", "model_id": "sentence-transformers/all-MiniLM-L6-v2"}]})
    with pytest.raises(SpecError, match="cannot tell the vLLM version"):
        resolve_models(raw)
    raw = PoolSpec.model_validate({"runtimes": [{"name": "r", "task": "embed"}],
                                   "models": [{"name": "m", "model_id": "cross-encoder/ms-marco-MiniLM-L12-v2"}]})
    with pytest.raises(SpecError, match="no runtime for task 'score'"):
        resolve_models(raw)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"models.9.name": "x"}, "--set models.9.name: models has 1 item(s); index 9 is out of range"),
        ({"models.x.name": "x"}, "--set models.x.name: models is a list: use an index 0..0, not 'x'"),
        ({"models.-1.name": "x"}, "not '-1'"),
        ({"namespace.x": 1}, "--set namespace.x: namespace is a str, not a mapping or list"),
        ({"models.0.max_model_len": 512}, "--set models.0.max_model_len: models[0].max_model_len: 512 is above"),
        ({"a.b.c": 1}, "--set a.b.c: a: unknown key"),
        ({"models": 5}, "--set models: models: expected a list, got int"),
        ({"models.0": 5}, "--set models.0: models[0]: expected a mapping, got int"),
    ],
)
def test_set_errors_name_the_override(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("namespace: search\n" + MINIMAL, "f.yaml", overrides)
    assert expected in str(info.value)


def test_set_descends_into_null() -> None:
    spec = parse_spec("cache: {hf_token_secret: null}\n" + MINIMAL, overrides={"cache.hf_token_secret.name": "hf"})
    assert spec.cache.hf_token_secret is not None and spec.cache.hf_token_secret.name == "hf"


def test_env_is_ordered_by_name_whatever_the_file_order() -> None:
    # A mapping has no order (in YAML, and in the Helm chart's Go maps): the rendered env cannot depend on it.
    text = MINIMAL.replace("    task: embed\n", "    task: embed\n    env: {ZED: '1', ALPHA: '2'}\n", 1)
    text = text.replace("models:", "defaults:\n  env: {B_DEFAULT: '1', A_DEFAULT: '2'}\nmodels:")
    text += "    env: {Z: '1', A_DEFAULT: '3'}\n"
    (m,) = resolve_models(parse_spec(text))
    assert m.env == (("A_DEFAULT", "3"), ("B_DEFAULT", "1"), ("Z", "1"))
    assert m.runtime.env == (("ALPHA", "2"), ("ZED", "1"))


def test_helm_settings_are_accepted_and_change_nothing_poolserve_renders() -> None:
    from poolserve.kserve.render import render, to_yaml

    with_helm = parse_spec(MINIMAL + "helm:\n  create_namespace: true\n  test_image: registry.example/python:3\n")
    assert with_helm.helm.create_namespace is True
    assert to_yaml(render(with_helm).manifests) == to_yaml(render(parse_spec(MINIMAL)).manifests)
    with pytest.raises(SpecError, match=r"helm\.create_namespce: unknown key"):
        parse_spec(MINIMAL + "helm:\n  create_namespce: true\n")
