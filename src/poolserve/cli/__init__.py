"""Command-line interface: ``poolserve <command>``; :mod:`poolserve.cli.app` builds it.

Command modules parse options, call one action (:mod:`poolserve.actions`) and print its result;
:func:`~poolserve.cli.app.create_app` wires them to their edges.
"""

from __future__ import annotations

from poolserve.cli.app import app, create_app, main

__all__ = ["app", "create_app", "main"]
