"""The real helm binary for the chart tests, and how to compare its objects with ``poolserve render``'s.

helm comes from ``scripts/install-helm.sh`` (run by ``scripts/setup-venv.sh``) in the venv's ``bin``,
else ``$POOLSERVE_HELM``, else ``helm`` on PATH. Missing, it skips the test (fails it under CI=true),
like the KServe CRDs (:mod:`support.assets`).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from support.assets import ROOT, missing

CHART = ROOT / "charts" / "poolserve"
HOW = "run scripts/setup-venv.sh (it installs helm into .venv/bin from npm), or set POOLSERVE_HELM"

# Labels and annotations that are Helm's own: the only metadata a chart's object may add to render's.
HELM_LABELS = frozenset({"app.kubernetes.io/managed-by", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                         "app.kubernetes.io/version", "helm.sh/chart"})
HELM_ANNOTATION_PREFIXES = ("helm.sh/", "meta.helm.sh/")


def helm_binary() -> Path:
    env = os.environ.get("POOLSERVE_HELM")
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.executable).parent / "helm")
    found = shutil.which("helm")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    missing("helm not found", HOW, fail_in_ci=True)


def helm(*args: str | Path, check: bool = True, env: dict[str, str] | None = None,
         timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``helm ARGS``; with ``check``, fail the test with helm's stderr when it exits non-zero."""
    # Helm keeps its cache, config and data under $HOME by default: a temporary one per run keeps tests apart.
    run_env = {**os.environ, **(env or {})}
    proc = subprocess.run([str(helm_binary()), *map(str, args)], capture_output=True, text=True,
                          env=run_env, timeout=timeout_s, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def template(*args: str | Path, namespace: str, release: str = "poolserve",
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """``helm template RELEASE charts/poolserve -n NAMESPACE ARGS``."""
    return helm("template", release, CHART, "--namespace", namespace, *args, check=check)


def load_objects(text: str) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(text, Loader=loader) if d]


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def without_helm_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy without Helm's own labels and annotations (also on a Template's objects), and without
    poolserve's ``app.kubernetes.io/managed-by`` (poolserve on one side, Helm on the other)."""
    out = copy.deepcopy(obj)
    for o in [out, *out.get("objects", [])]:
        meta = o.get("metadata", {})
        for field, drop in (("labels", lambda k: k in HELM_LABELS),
                            ("annotations", lambda k: k.startswith(HELM_ANNOTATION_PREFIXES))):
            values = meta.get(field)
            if values is None:
                continue
            kept = {k: v for k, v in values.items() if not drop(k)}
            if kept:
                meta[field] = kept
            else:
                del meta[field]
    return out


def by_key(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for o in objects:
        assert key(o) not in out, f"two objects {key(o)}"
        out[key(o)] = o
    return out


def differences(chart: Sequence[dict[str, Any]], rendered: Sequence[dict[str, Any]]) -> list[str]:
    """What differs between the chart's objects and render's, Helm's own metadata aside (empty: identical)."""
    ours, theirs = by_key(without_helm_metadata(o) for o in chart), by_key(without_helm_metadata(o) for o in rendered)
    problems = [f"only in the chart: {k}" for k in sorted(set(ours) - set(theirs))]
    problems += [f"only in poolserve render: {k}" for k in sorted(set(theirs) - set(ours))]
    for k in sorted(set(ours) & set(theirs)):
        if ours[k] != theirs[k]:
            a = yaml.safe_dump(theirs[k], sort_keys=True).splitlines()
            b = yaml.safe_dump(ours[k], sort_keys=True).splitlines()
            import difflib

            diff = "\n".join(difflib.unified_diff(a, b, "poolserve render", "helm template", lineterm="", n=2))
            problems.append(f"{k} differs:\n{diff}")
    return problems
