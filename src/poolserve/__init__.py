"""poolserve: deploy vLLM pooling models on KServe / OpenShift AI, run them locally, prove they work.

The public API is imported lazily so ``import poolserve`` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_spec", "render"]


def __getattr__(name: str) -> object:
    if name == "load_spec":
        from poolserve.config.load import load_spec

        return load_spec
    if name == "render":
        from poolserve.kserve.render import render

        return render
    raise AttributeError(name)
