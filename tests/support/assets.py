"""Test assets that live outside the repository: the KServe CRDs and the control-plane binaries.

Both are found the same way and fail the same way:

- the KServe v0.20.0 CRDs: ``$POOLSERVE_CRD_DIR``, else ``../shared/crds/kserve-v0.20.0`` beside the
  checkout (read in place, never copied into the repository);
- kube-apiserver, etcd, kube-controller-manager and kube-scheduler: ``$KUBEBUILDER_ASSETS``
  (controller-runtime envtest's convention), else the xz-compressed binaries of
  ``../shared/envtest`` unpacked once into ``~/.cache/poolserve/envtest/<key>``.

Missing assets fail the test under ``CI=true`` (CI must run everything) and skip it elsewhere, with
one line naming what is missing and how to get it. ``scripts/test.sh`` runs this file as a script
to unpack the binaries and export ``KUBEBUILDER_ASSETS`` (``python tests/support/assets.py DIR``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import lzma
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
CRD_FILES = ("serving.kserve.io_inferenceservices.yaml", "serving.kserve.io_servingruntimes.yaml")

CRD_HOW = ("set POOLSERVE_CRD_DIR to a directory holding the KServe v0.20.0 CRDs "
           "(config/crd/full/serving.kserve.io_{inferenceservices,servingruntimes}.yaml of kserve/kserve v0.20.0)")
ENVTEST_HOW = ("set KUBEBUILDER_ASSETS to a directory with etcd, kube-apiserver, kube-controller-manager and "
               "kube-scheduler (`setup-envtest use 1.36 -p path`), or run scripts/test.sh beside ../shared/envtest")


def in_ci() -> bool:
    """CI sets ``CI=true`` (``.ci/run``): a missing asset is then a failure, never a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, how: str) -> NoReturn:
    """Skip (or, in CI, fail) the current test with one line: what is missing and how to get it."""
    import pytest

    line = f"{what}: {how}"
    if in_ci():
        pytest.fail(f"CI=true and {line}", pytrace=False)
    pytest.skip(line)


def crd_dir() -> Path:
    """The KServe v0.20.0 CRD directory (skips or fails when it is missing)."""
    env = os.environ.get("POOLSERVE_CRD_DIR")
    path = Path(env) if env else SHARED / "crds" / "kserve-v0.20.0"
    absent = [f for f in CRD_FILES if not (path / f).is_file()]
    if absent:
        where = f"POOLSERVE_CRD_DIR={env}" if env else str(path)
        missing(f"KServe CRDs not found ({where} lacks {', '.join(absent)})", CRD_HOW)
    return path


def envtest_dir() -> Path:
    """The directory of the four control-plane binaries (skips or fails when they are missing)."""
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if env:
        path = Path(env)
        absent = [b for b in BINARIES if not os.access(path / b, os.X_OK)]
        if absent:
            missing(f"control-plane binaries not found (KUBEBUILDER_ASSETS={env} lacks {', '.join(absent)})",
                    ENVTEST_HOW)
        return path
    src = SHARED / "envtest"
    if all((src / f"{b}.xz").is_file() for b in BINARIES):
        return unpack(src)
    missing("control-plane binaries not found (KUBEBUILDER_ASSETS is not set and ../shared/envtest is absent)",
            ENVTEST_HOW)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/poolserve/envtest`` (``~/.cache/...``): outside the repository."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "poolserve" / "envtest"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # two test runs unpacking at once: one waits for the other
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def unpack(src: Path, cache: Path | None = None) -> Path:
    """Unpack ``src/<binary>.xz`` once into the cache; returns the directory (the KUBEBUILDER_ASSETS value).

    The directory is named by a digest of the archives' names and sizes, so new binaries get a new
    directory and an interrupted unpack is redone (the stamp is written last).
    """
    digest = hashlib.sha256()
    for b in BINARIES:
        st = (src / f"{b}.xz").stat()
        digest.update(f"{b}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    dest = (cache or cache_root()) / digest.hexdigest()[:16]
    stamp = dest / ".unpacked"
    if stamp.is_file():
        return dest
    with _locked(dest.parent / f".{dest.name}.lock"):
        if stamp.is_file():
            return dest
        dest.mkdir(parents=True, exist_ok=True)
        for b in BINARIES:
            tmp = dest / f".{b}.tmp"
            with lzma.open(src / f"{b}.xz") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            tmp.chmod(0o755)
            tmp.replace(dest / b)
        stamp.write_text(str(src) + "\n")
    return dest


if __name__ == "__main__":
    # scripts/test.sh: `KUBEBUILDER_ASSETS=$(python tests/support/assets.py ../shared/envtest)`
    if len(sys.argv) != 2:
        sys.exit("usage: assets.py DIR_WITH_XZ_BINARIES")
    print(unpack(Path(sys.argv[1]).resolve()))
