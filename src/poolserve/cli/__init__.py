"""Command-line interface: ``poolserve <command>``; :mod:`poolserve.cli.app` builds it.

Command modules parse options, call one action (:mod:`poolserve.actions`) and print its result;
:func:`~poolserve.cli.app.create_app` wires them to their edges. This module loads them only when
:func:`main` runs, so a Ctrl-C while the CLI is still starting ends it like one later on: exit 130,
no traceback.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``poolserve`` script and of ``python -m poolserve``."""
    try:
        from poolserve.cli.app import main as run
    except KeyboardInterrupt:  # Ctrl-C while the command modules load: nothing ran yet
        raise SystemExit(130) from None
    run(argv)

