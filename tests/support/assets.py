"""Test assets that live outside the repository: the KServe CRDs and the control-plane binaries.

- The KServe v0.20.0 CRDs: ``$POOLSERVE_CRD_DIR``, else ``../shared/crds/kserve-v0.20.0`` beside the
  checkout (read in place, never copied into the repository). CI has them, so a missing CRD directory
  fails the test under ``CI=true`` and skips it elsewhere.
- The control-plane binaries: ``$KUBEBUILDER_ASSETS`` alone (controller-runtime envtest's layout, the
  directory ``setup-envtest use 1.36 -p path`` prints). ``etcd`` and ``kube-apiserver`` are needed for
  any real-control-plane test; ``kube-controller-manager`` and ``kube-scheduler`` are optional (setup-envtest
  does not ship them): tests that need controllers skip on their own when they are absent. A missing
  binary always skips, CI included: CI machines cannot obtain these binaries.

Every skip is one line naming what is missing and the command that gets it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
API_BINARIES = ("etcd", "kube-apiserver")
"""Needed by every real-control-plane test."""
CONTROLLER_BINARIES = ("kube-controller-manager", "kube-scheduler")
"""Optional: the tests that need Deployments turned into scheduled Pods, namespaces finalized, ServiceAccounts."""
BINARIES = API_BINARIES + CONTROLLER_BINARIES
CRD_FILES = ("serving.kserve.io_inferenceservices.yaml", "serving.kserve.io_servingruntimes.yaml")

CRD_HOW = ("set POOLSERVE_CRD_DIR to a directory holding the KServe v0.20.0 CRDs "
           "(config/crd/full/serving.kserve.io_{inferenceservices,servingruntimes}.yaml of kserve/kserve v0.20.0)")
ENVTEST_HOW = "export KUBEBUILDER_ASSETS=$(setup-envtest use 1.36 -p path)"
CONTROLLERS_HOW = ("setup-envtest ships etcd and kube-apiserver only: add kube-controller-manager and kube-scheduler "
                   "v1.36 (kubernetes-server-linux-amd64.tar.gz of the Kubernetes release) to that directory")


def in_ci() -> bool:
    """CI sets ``CI=true`` (``.ci/run``)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, how: str, *, fail_in_ci: bool) -> NoReturn:
    """Skip the current test with one line (what is missing and how to get it); fail instead in CI if asked."""
    import pytest

    line = f"{what}: {how}"
    if fail_in_ci and in_ci():
        pytest.fail(f"CI=true and {line}", pytrace=False)
    pytest.skip(line)


def crd_dir() -> Path:
    """The KServe v0.20.0 CRD directory (skips, or fails under CI=true, when it is missing)."""
    env = os.environ.get("POOLSERVE_CRD_DIR")
    path = Path(env) if env else SHARED / "crds" / "kserve-v0.20.0"
    absent = [f for f in CRD_FILES if not (path / f).is_file()]
    if absent:
        where = f"POOLSERVE_CRD_DIR={env}" if env else str(path)
        missing(f"KServe CRDs not found ({where} lacks {', '.join(absent)})", CRD_HOW, fail_in_ci=True)
    return path


def absent_binaries(path: Path, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` are not executable files in ``path``."""
    return [b for b in names if not os.access(path / b, os.X_OK)]


def envtest_skip_reason() -> str | None:
    """Why no real-control-plane test can run here (one line), or None when etcd and kube-apiserver are there."""
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if not env:
        return f"real control plane: KUBEBUILDER_ASSETS is not set ({ENVTEST_HOW})"
    absent = absent_binaries(Path(env), API_BINARIES)
    if absent:
        return f"real control plane: KUBEBUILDER_ASSETS={env} lacks {', '.join(absent)} ({ENVTEST_HOW})"
    return None


def controllers_skip_reason(path: Path) -> str | None:
    """Why tests that need controllers cannot run with the binaries of ``path`` (one line), or None."""
    absent = absent_binaries(path, CONTROLLER_BINARIES)
    if absent:
        return f"real control plane without controllers: KUBEBUILDER_ASSETS={path} lacks {', '.join(absent)} " \
               f"({CONTROLLERS_HOW})"
    return None


def envtest_dir() -> Path:
    """The ``$KUBEBUILDER_ASSETS`` directory holding at least etcd and kube-apiserver (skips otherwise, CI too)."""
    import pytest

    reason = envtest_skip_reason()
    if reason:
        pytest.skip(reason)
    return Path(os.environ["KUBEBUILDER_ASSETS"])
