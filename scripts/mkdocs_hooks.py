"""MkDocs hooks (mkdocs.yml ``hooks:``): links from the docs to files outside ``docs/``.

The Markdown keeps relative links to the repository's other files (``../../benchmarks/README.md``), so a
page reads right on a code host. On the site such a link would point nowhere: this hook checks that the file
exists (a missing one fails the build, as a broken link inside ``docs/`` does under ``--strict``) and
points the link at the repository, ``project.urls.Source`` in pyproject.toml. Pages that another branch
adds (``PENDING``) are linked the same way until they exist.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
PENDING = {"reference/rules.md"}
"""Docs pages generated on another branch (scripts/gen_chart.py writes docs/reference/rules.md)."""
_LINK = re.compile(r"\]\(([^)\s#]+)(#[^)\s]*)?\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def repo_url() -> str:
    """The repository's URL (pyproject.toml ``[project.urls] Source``)."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("urls", {})
    return str(urls.get("Source", "")).rstrip("/")


def on_config(config: Any) -> Any:
    """Show the repository link in the header."""
    if not config.get("repo_url"):
        config["repo_url"] = repo_url() or None
    return config


def _target(page_src: str, link: str, docs: Path) -> tuple[str, Path] | None:
    """``(repository path, file)`` for a relative link that leaves docs/ or names a pending page, else None."""
    if "://" in link or link.startswith(("/", "mailto:")):
        return None
    rel = PurePosixPath(page_src).parent / link
    parts: list[str] = []
    for part in rel.parts:
        if part == "..":
            if parts:
                parts.pop()
            else:
                parts.append("..")
        elif part != ".":
            parts.append(part)
    inside = "/".join(parts)
    if parts and parts[0] == "..":
        repo_path = str((docs / inside).resolve().relative_to(ROOT))
        return repo_path, ROOT / repo_path
    if inside in PENDING and not (docs / inside).exists():
        return f"docs/{inside}", docs / inside
    return None


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Point links to files outside docs/ at the repository; fail on one to a file that does not exist."""
    docs = Path(config["docs_dir"]).resolve()
    base = repo_url()
    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        if not fenced:
            def repl(m: re.Match[str]) -> str:
                found = _target(page.file.src_uri, m.group(1), docs)
                if found is None:
                    return m.group(0)
                repo_path, path = found
                if not path.exists() and repo_path.removeprefix("docs/") not in PENDING:
                    raise PluginError(f"{page.file.src_uri}: link to {m.group(1)}: {repo_path} does not exist")
                kind = "tree" if path.is_dir() else "blob"
                return f"]({base}/{kind}/main/{repo_path}{m.group(2) or ''})"
            line = _LINK.sub(repl, line)
        out.append(line)
    return "".join(out)
