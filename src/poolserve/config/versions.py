"""vLLM versions as the config names them: version strings, image tags, a runtime's version, the CPU image.

Pure. What vLLM does differently per version (its flags, its command) is :mod:`poolserve.vllm.args`'
business; this module only finds out which version a config means.
"""

from __future__ import annotations

import re

Version = tuple[int, int, int]

# vLLM's official CPU images, per release (docs/getting_started/installation/cpu.x86.inc.md): Docker Hub
# vllm/vllm-openai-cpu:v<ver>-x86_64 from 0.20.0 (vllm#32032, #34882), AWS ECR before. Both ENTRYPOINT
# `vllm serve` from 0.11.1 (docker/Dockerfile.cpu), LD_PRELOAD tcmalloc + Intel OpenMP.
CPU_IMAGE_DOCKERHUB = (0, 20, 0)


def cpu_image(version: Version) -> str:
    """The official x86_64 vLLM CPU image for ``version`` (pinned to that release)."""
    v = ".".join(str(p) for p in version)
    if version >= CPU_IMAGE_DOCKERHUB:
        return f"vllm/vllm-openai-cpu:v{v}-x86_64"
    return f"public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v{v}"


_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> Version | None:
    """Parse ``0.32.0`` / ``v0.9.2`` / ``0.10`` into a tuple, or None."""
    m = _VERSION_RE.fullmatch(text.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def image_version(image: str) -> Version | None:
    """The vLLM version an image tag names (``vllm/vllm-openai:v0.32.0`` -> (0, 32, 0)), or None."""
    if "@" in image:
        return None
    _, _, tag = image.rpartition(":")
    if not tag or "/" in tag:
        return None
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", tag)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def format_version(v: Version) -> str:
    """Format a version tuple as ``0.32.0``."""
    return ".".join(str(p) for p in v)
