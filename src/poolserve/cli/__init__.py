"""Command-line interface: ``poolserve <command>``. Each command lives in its own module."""

from __future__ import annotations

from poolserve.cli import bench as _bench  # noqa: F401
from poolserve.cli import cache as _cache  # noqa: F401
from poolserve.cli import catalog as _catalog  # noqa: F401
from poolserve.cli import cluster as _cluster  # noqa: F401
from poolserve.cli import lint as _lint  # noqa: F401
from poolserve.cli import ops as _ops  # noqa: F401
from poolserve.cli import render as _render  # noqa: F401
from poolserve.cli import test as _test  # noqa: F401
from poolserve.cli.app import app, main

__all__ = ["app", "main"]
