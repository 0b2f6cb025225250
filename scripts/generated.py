"""Write generated files, or with ``--check`` show how they differ: the one loop of gen_chart.py and gen_docs.py."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path


def main(argv: list[str] | None, *, doc: str, root: Path, outputs: Callable[[], Mapping[Path, str]],
         what: str, remake: str) -> int:
    """Write ``outputs()`` (or, with ``--check``, print a diff of each stale one); the exit code.

    ``what`` names the files in the stale message ("chart", "doc"), ``remake`` the command that rewrites them.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in outputs().items():
        old = path.read_text(encoding="utf-8") if path.is_file() else None
        if old == text:
            continue
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        if args.check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff((old or "").splitlines(keepends=True),
                                                       text.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}", file=sys.stderr)
    if stale:
        print(f"{stale} generated {what} file(s) are stale: run {remake}", file=sys.stderr)
        return 1
    return 0
