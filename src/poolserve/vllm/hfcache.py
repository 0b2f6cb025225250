"""The Hugging Face hub cache layout, so a local model directory resolves like a downloaded one.

``import_model`` lays ``<src>`` out as ``<HF_HOME>/hub/models--org--name/snapshots/<rev>/`` with
``refs/main`` pointing at it: the same layout the cluster PVC has after vLLM downloaded a model,
so ``--model=org/name`` with ``HF_HUB_OFFLINE=1`` resolves exactly as it does in the cluster.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from poolserve.errors import LocalRunError, SpecError


@dataclass(frozen=True)
class CachedModel:
    """One model in a hub cache."""

    model_id: str
    revision: str
    path: Path
    size_bytes: int


def repo_dir(hf_home: Path, model_id: str) -> Path:
    """``<hf_home>/hub/models--org--name``."""
    return hf_home / "hub" / ("models--" + model_id.replace("/", "--"))


def _revision(src: Path) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    for p in sorted(src.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(src)).encode())
            h.update(str(p.stat().st_size).encode())
    return h.hexdigest()


def import_model(hf_home: Path, model_id: str, src: Path, *, link: bool = False) -> CachedModel:
    """Copy (or symlink) the files of ``src`` into the hub cache under ``model_id``.

    Raises:
        SpecError: if ``src`` is not a model directory or ``model_id`` is not ``org/name``.
        LocalRunError: the cache cannot be written (full, read-only, another user's); nothing is left half-written.
    """
    if model_id.count("/") != 1 or not all(model_id.split("/")):
        raise SpecError(f"model id {model_id!r}: expected org/name, e.g. sentence-transformers/all-MiniLM-L6-v2")
    if not (src / "config.json").is_file():
        raise SpecError(f"{src}: not a model directory (no config.json)")
    rev = _revision(src)
    repo = repo_dir(hf_home, model_id)
    try:
        return _import(src, repo, rev, model_id, link=link)
    except OSError as err:
        shutil.rmtree(repo / "snapshots" / f".{rev}.tmp", ignore_errors=True)
        # The cache is the problem (full, read-only, another user's): exit 10 like the other local-dir failures.
        # err.filename is often the source file copy2 was reading from, which would point the user the wrong way.
        where = f" ({err.filename})" if err.filename and str(err.filename).startswith(str(hf_home)) else ""
        raise LocalRunError(f"cannot import {model_id} into {hf_home}: {err.strerror or err}{where}",
                            hint="free space there, or point local.cache_dir at a writable directory") from None


def _import(src: Path, repo: Path, rev: str, model_id: str, *, link: bool) -> CachedModel:
    snap = repo / "snapshots" / rev
    tmp = repo / "snapshots" / f".{rev}.tmp"
    if not snap.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        for f in sorted(src.rglob("*")):
            if f.is_dir() or f.name.startswith(".") or "__pycache__" in f.parts:
                continue
            dest = tmp / f.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if link:
                dest.symlink_to(f.resolve())
            else:
                shutil.copy2(f, dest)
                _fsync(dest)
        _fsync(tmp)
        # Atomic: vLLM resolves refs/main -> snapshots/<rev>; a copy cut short stays in the hidden temp dir.
        os.replace(tmp, snap)
        _fsync(snap.parent)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    ref_tmp = repo / "refs" / f".main.{os.getpid()}.tmp"
    ref_tmp.write_text(rev)
    os.replace(ref_tmp, repo / "refs" / "main")
    return CachedModel(model_id, rev, snap, _size(snap))


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk, so a crash after the rename cannot expose a half-written snapshot."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_models(hf_home: Path) -> list[CachedModel]:
    """Models in the cache with the revision ``refs/main`` points at."""
    hub = hf_home / "hub"
    out: list[CachedModel] = []
    if not hub.is_dir():
        return out
    for repo in sorted(hub.glob("models--*")):
        ref = repo / "refs" / "main"
        if not ref.is_file():
            continue
        rev = ref.read_text().strip()
        snap = repo / "snapshots" / rev
        if snap.is_dir():
            model_id = repo.name.removeprefix("models--").replace("--", "/", 1)
            out.append(CachedModel(model_id, rev, snap, _size(snap)))
    return out


def snapshot_path(hf_home: Path, model_id: str, revision: str = "") -> Path | None:
    """The snapshot of ``revision`` (a branch, tag or commit; ``""``: ``main``), or None when not cached."""
    repo = repo_dir(hf_home, model_id)
    ref = repo / "refs" / (revision or "main")
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
    elif revision and "/" not in revision:
        snap = repo / "snapshots" / revision  # a commit hash names its snapshot directly
    else:
        return None
    return snap if snap.is_dir() else None
