"""Offline checks of a config and its rendered objects (pure, apart from reading CRD files).

Each rule says what would go wrong on a cluster and where the rule comes from: KServe CRD
schemas and webhooks, vLLM's flags per version, the OpenShift AI dashboard's display rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from poolserve import kserve, sizing, vllm
from poolserve.errors import LintError, SpecError
from poolserve.kserve import Manifest
from poolserve.render import Rendered
from poolserve.spec import MAX_NAME_LEN, MAX_NAME_PLUS_NAMESPACE, PoolSpec, format_version

Severity = Literal["error", "warning", "note"]
CRD_FILES = {
    (kserve.SR_API_VERSION, kserve.SR_KIND): "serving.kserve.io_servingruntimes.yaml",
    (kserve.ISVC_API_VERSION, kserve.ISVC_KIND): "serving.kserve.io_inferenceservices.yaml",
}


@dataclass(frozen=True)
class Finding:
    """One lint result."""

    severity: Severity
    subject: str
    """``Kind ns/name``, ``models[0]``, or ``config``."""
    message: str


@dataclass(frozen=True)
class LintReport:
    """All findings for one config."""

    findings: tuple[Finding, ...]
    schemas_checked: bool

    @property
    def errors(self) -> list[Finding]:
        """Findings that fail the lint."""
        return [f for f in self.findings if f.severity == "error"]


def _subject(obj: Manifest) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


@lru_cache(maxsize=8)
def _load_schema(path: str, version: str) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as fh:
            crd = yaml.load(fh, Loader=loader)
    except OSError as err:
        raise SpecError(f"{path}: cannot read CRD: {err}") from None
    for v in crd.get("spec", {}).get("versions", []):
        if v.get("name") == version:
            schema: dict[str, Any] = v["schema"]["openAPIV3Schema"]
            return schema
    raise SpecError(f"{path}: CRD has no version {version}")


def validate_against_crds(objects: Iterable[Manifest], crd_dir: Path) -> list[Finding]:
    """Validate KServe objects against the CRDs' openAPIV3Schema (``x-kubernetes-*`` keywords ignored)."""
    import jsonschema

    findings: list[Finding] = []
    for obj in objects:
        key = (str(obj.get("apiVersion")), str(obj.get("kind")))
        if key not in CRD_FILES:
            continue
        path = crd_dir / CRD_FILES[key]
        if not path.is_file():
            raise SpecError(f"{path}: CRD file not found (--crd-dir should hold the KServe CRDs)")
        schema = _load_schema(str(path), str(key[0]).rsplit("/", 1)[-1])
        validator = jsonschema.Draft7Validator(schema)
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in err.absolute_path) or "(root)"
            findings.append(Finding("error", _subject(obj), f"CRD schema: {where}: {err.message}"))
    return findings


def _dashboard(rendered: Rendered, spec: PoolSpec) -> list[Finding]:
    out: list[Finding] = []
    by_kind: dict[str, dict[str, Manifest]] = {}
    for obj in rendered.manifests:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    runtimes = by_kind.get(kserve.SR_KIND, {})
    for isvc in by_kind.get(kserve.ISVC_KIND, {}).values():
        subj = _subject(isvc)
        meta = isvc["metadata"]
        model = isvc["spec"]["predictor"].get("model", {})
        rt_name = model.get("runtime")
        if not rt_name:
            out.append(Finding("error", subj, "spec.predictor.model.runtime is unset: the dashboard shows the "
                                              "runtime as 'Unknown'"))
        elif rt_name not in runtimes:
            out.append(Finding("error", subj, f"runtime {rt_name!r} is not rendered: the dashboard shows 'Unknown' "
                                              "and KServe reports RuntimeNotRecognized"))
        else:
            sr = runtimes[rt_name]
            sr_ann = sr["metadata"].get("annotations", {})
            if sr["metadata"].get("labels", {}).get(kserve.DASHBOARD_LABEL) != "true":
                out.append(Finding("error", _subject(sr), f"no label {kserve.DASHBOARD_LABEL}=true: the 2.x "
                                                           "dashboard ignores it and shows 'Unknown'"))
            if not (sr_ann.get(kserve.TEMPLATE_DISPLAY_NAME) or sr_ann.get(kserve.TEMPLATE_NAME)):
                out.append(Finding("error", _subject(sr), "no opendatahub.io/template-display-name: the dashboard "
                                                           "shows 'Unknown Serving Runtime'"))
            formats = [f.get("name") for f in sr["spec"].get("supportedModelFormats", [])]
            fmt = model.get("modelFormat", {}).get("name")
            if fmt not in formats:
                out.append(Finding("error", subj, f"modelFormat {fmt!r} is not in runtime {rt_name}'s "
                                                  f"supportedModelFormats {formats}: NoSupportingRuntime"))
            if sr_ann.get(kserve.TEMPLATE_NAME) and not spec.dashboard.templates:
                out.append(Finding("warning", _subject(sr), "template-name without a Template: the 3.x dashboard "
                                                             "labels it 'Template removed'"))
        if meta.get("labels", {}).get(kserve.DASHBOARD_LABEL) != "true":
            out.append(Finding("warning", subj, f"no label {kserve.DASHBOARD_LABEL}=true: hidden in the 2.x dashboard"))
        ann = meta.get("annotations", {})
        if ann.get(kserve.ENABLE_AUTH) not in ("true", "false"):
            out.append(Finding("warning", subj, "security.opendatahub.io/enable-auth is not explicit: the 3.x "
                                                "dashboard shows token auth as on"))
        exposed = meta.get("labels", {}).get(kserve.VISIBILITY) == "exposed"
        if exposed and ann.get(kserve.ENABLE_AUTH) != "true":
            out.append(Finding("warning", subj, "exposed through a Route without token auth: anyone who can reach "
                                                "the route can use the model"))
        if fmt_is_mms(isvc):
            out.append(Finding("note", subj, "no storageUri and a modelFormat other than 'huggingface': KServe "
                                             "injects its model-agent sidecar and a modelconfig ConfigMap "
                                             "(harmless, costs 100m CPU/100Mi); use model_format: huggingface"))
    ns = by_kind.get("Namespace", {}).get(spec.namespace)
    if ns is not None:
        labels = ns["metadata"].get("labels", {})
        if labels.get(kserve.MODELMESH_ENABLED) != "false":
            out.append(Finding("warning", _subject(ns), "modelmesh-enabled must be 'false' for a KServe project"))
    if spec.runtime_mode == "shared":
        users: dict[str, list[str]] = {}
        for m in rendered.models:
            users.setdefault(m.runtime.name, []).append(m.name)
        for rt, models in users.items():
            if len(models) > 1:
                out.append(Finding("note", f"ServingRuntime {spec.namespace}/{rt}",
                                   f"shared by {', '.join(models)}: deleting any of them in the dashboard also "
                                   "deletes this runtime (runtime_mode: per-model avoids that)"))
    return out


def fmt_is_mms(isvc: Manifest) -> bool:
    """KServe's IsMMSPredictor: ``predictor.model`` without storage, format not ``huggingface``."""
    model = isvc["spec"]["predictor"].get("model", {})
    has_storage = any(model.get(k) for k in ("storageUri", "storage", "storageUris"))
    return not has_storage and model.get("modelFormat", {}).get("name") != "huggingface"


def _models(rendered: Rendered, spec: PoolSpec) -> list[Finding]:
    out: list[Finding] = []
    total_pods = 0
    for m in rendered.models:
        subj = f"InferenceService {m.namespace}/{m.name}"
        total_pods += m.max_replicas
        if len(m.name) > MAX_NAME_LEN or len(m.name) + len(m.namespace) > MAX_NAME_PLUS_NAMESPACE:
            out.append(Finding("error", subj, "name too long for KServe raw mode"))
        try:
            composed = rendered.compose(m.name)
        except LintError as err:
            out.append(Finding("error", subj, err.message))
            continue
        ver = format_version(m.vllm_version)
        for p in vllm.check_args(composed.container.get("args", []), m.vllm_version):
            out.append(Finding(p.severity, subj, f"vLLM {ver}: {p.message}"))
        for p in vllm.check_command(composed.container.get("command", []), composed.container.get("args", []),
                                    m.vllm_version):
            out.append(Finding(p.severity, subj, f"vLLM {ver}: {p.message}"))
        for p in vllm.env_problems(composed.env):
            out.append(Finding(p.severity, subj, p.message))
        entry = m.catalog_entry
        if entry is not None:
            if entry.task != m.task:
                out.append(Finding("error", subj, f"{m.model_id} is a {entry.architecture} ({entry.task} model) but "
                                                  f"the config serves it as {m.task!r}"))
            if m.vllm_version < entry.min_vllm:
                out.append(Finding("error", subj, f"{m.model_id} needs vLLM >= {format_version(entry.min_vllm)}, "
                                                  f"image has {ver}"))
            if m.max_model_len and m.max_model_len > entry.max_model_len:
                out.append(Finding("error", subj, f"max_model_len {m.max_model_len} > {entry.max_model_len}, the "
                                                  f"limit vLLM derives for {m.model_id}: it will not start"))
            for flag in entry.required_flags:
                stem = flag.split("=", 1)[0]
                if not any(a.split("=", 1)[0] == stem for a in composed.container.get("args", [])):
                    out.append(Finding("error", subj, f"{m.model_id} needs {flag}"))
        elif m.max_model_len is None:
            out.append(Finding("note", subj, f"{m.model_id} is not in the catalog: vLLM derives max_model_len"))
        if m.task == "score" and m.vllm_version < vllm.TASK_EMBED_SCORE:
            out.append(Finding("error", subj, f"vLLM {ver} cannot serve cross-encoders (needs 0.6.5)"))
        if m.gpus and not m.runtime.accelerator:
            out.append(Finding("warning", subj, "gpus set but the runtime has no accelerator; using nvidia.com/gpu"))
        if m.stopped:
            out.append(Finding("note", subj, f"stopped: true: deployed with {kserve.STOP_ANNOTATION}=\"true\", so "
                                             f"KServe keeps it without pods; `poolserve start {m.name}` starts it "
                                             "until the next deploy"))
        limits = m.resources.limits
        if "memory" not in limits:
            out.append(Finding("warning", subj, "no memory limit: vLLM sizes its cache from the node's memory"))
    mode = spec.cache.access_mode
    if mode in ("ReadWriteOnce", "ReadWriteOncePod") and total_pods > 1:
        sev: Severity = "error" if mode == "ReadWriteOncePod" else "warning"
        out.append(Finding(sev, f"PersistentVolumeClaim {spec.namespace}/{spec.cache.pvc}",
                           f"{mode} but up to {total_pods} pods mount it: "
                           + ("only one pod can ever mount it" if sev == "error" else
                              "all of them must run on one node (Multi-Attach errors otherwise); use ReadWriteMany")))
    return out


BF16_LABELS = ("AMXBF16", "AVX512BF16", "amx_bf16", "avx512_bf16")


def _cpu(rendered: Rendered) -> list[Finding]:
    """Models on ``device: cpu`` runtimes: limits that vLLM's CPU backend sizes itself from, dtype."""
    out: list[Finding] = []
    for m in rendered.models:
        if m.runtime.device != "cpu":
            continue
        subj = f"InferenceService {m.namespace}/{m.name}"
        limits, requests = m.resources.limits, m.resources.requests
        if "cpu" not in limits:
            out.append(Finding("warning", subj, "device: cpu without a CPU limit: OMP_NUM_THREADS (from limits.cpu) "
                                                "becomes the node's CPU count, so vLLM starts a thread per node CPU"))
        elif "cpu" in requests and str(requests["cpu"]) != str(limits["cpu"]):
            out.append(Finding("note", subj, f"CPU request {requests['cpu']} below the limit {limits['cpu']}: vLLM "
                                             f"runs {limits['cpu']} threads but is guaranteed only the request on a "
                                             "busy node"))
        if "memory" not in limits:
            out.append(Finding("warning", subj, "device: cpu without a memory limit: vLLM reads "
                                                "--gpu-memory-utilization as a share of the whole node's RAM"))
        dtype = m.dtype or m.runtime.dtype
        if dtype == "bfloat16":
            selectors = " ".join(k for k, _ in (*m.runtime.node_selector, *m.node_selector))
            if not any(label in selectors for label in BF16_LABELS):
                out.append(Finding("note", subj, "bfloat16 on CPU is fast only with AMX-BF16/AVX512-BF16 (3.2x float32 "
                                                 "measured; see README 'CPU-only runtimes'): pin such nodes, e.g. "
                                                 "node_selector feature.node.kubernetes.io/cpu-cpuid.AMXBF16: 'true'"))
            if m.task == "score":
                out.append(Finding("warning", subj, "a cross-encoder in bfloat16 on CPU: its scores drifted up to 1.5% "
                                                    "from float32 here, beyond vLLM's own 1e-2 tolerance"))
    return out


def _gpu_sharing(rendered: Rendered) -> list[Finding]:
    """GPU settings that waste or overcommit a GPU, from :mod:`poolserve.sizing`'s estimates."""
    out: list[Finding] = []
    for m in rendered.models:
        subj = f"InferenceService {m.namespace}/{m.name}"
        p = sizing.plan_model(m)
        util = p.utilization
        if p.device == "whole GPU" and util is not None and util < sizing.FIT_FRACTION:
            out.append(Finding("note", subj, f"--gpu-memory-utilization={util:g} on a whole, unshared GPU shares "
                                             "nothing: the pod gets the entire GPU (see `poolserve plan`; share with "
                                             "mig_profile or gpu_shared, or use a device: cpu runtime)"))
        if p.estimate is None:
            continue
        if p.fits is False:
            out.append(Finding("warning", subj, f"estimated {p.estimate.need_gib:.2f} GiB does not fit the "
                                                f"{p.device} ({p.gpu_memory_gib:.1f} GiB): see `poolserve plan`"))
        if p.device == "time-sliced GPU" and util is not None and util > 0.5:
            out.append(Finding("warning", subj, f"time-sliced GPU with --gpu-memory-utilization={util:g}: vLLM "
                                                f"needs {util:.0%} of the GPU free at startup, so a second pod on it "
                                                "cannot start; size it with `poolserve plan`"))
        if p.estimate.has_kv_cache and util is not None and p.gpu_memory_gib is not None \
                and util * p.gpu_memory_gib < p.estimate.need_gib:
            out.append(Finding("warning", subj, f"--gpu-memory-utilization={util:g} leaves less than the estimated "
                                                f"{p.estimate.need_gib:.2f} GiB this decoder needs with its KV cache: "
                                                "vLLM stops with 'No available memory for the cache blocks'"))
    return out


def lint(spec: PoolSpec, rendered: Rendered, *, crd_dir: Path | None = None) -> LintReport:
    """Run every offline check. Schema validation runs only when ``crd_dir`` is given."""
    findings: list[Finding] = []
    if crd_dir is not None:
        findings += validate_against_crds(rendered.manifests, crd_dir)
    findings += _dashboard(rendered, spec)
    findings += _models(rendered, spec)
    findings += _gpu_sharing(rendered)
    findings += _cpu(rendered)
    order = {"error": 0, "warning": 1, "note": 2}
    findings.sort(key=lambda f: order[f.severity])
    return LintReport(findings=tuple(findings), schemas_checked=crd_dir is not None)


def explain(rendered: Rendered, names: Sequence[str]) -> list[Mapping[str, Any]]:
    """The effective container per model, as KServe composes it: argv, env, mounts, resources."""
    out: list[Mapping[str, Any]] = []
    for m in rendered.models:
        if names and m.name not in names:
            continue
        c = rendered.compose(m.name)
        out.append({
            "name": m.name,
            "runtime": c.runtime,
            "image": c.container.get("image"),
            "argv": c.argv,
            "env": {e["name"]: e.get("value", json.dumps(e.get("valueFrom"))) for e in c.container.get("env", [])},
            "volumeMounts": {v["mountPath"]: v["name"] for v in c.container.get("volumeMounts", [])},
            "resources": c.container.get("resources", {}),
        })
    return out
