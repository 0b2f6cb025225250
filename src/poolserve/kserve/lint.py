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

from poolserve.config import storage
from poolserve.config.resolve import Model
from poolserve.config.rules import MAX_NAME_LEN, MAX_NAME_PLUS_NAMESPACE
from poolserve.config.schema import PoolSpec
from poolserve.config.versions import format_version
from poolserve.errors import LintError, SpecError
from poolserve.kserve.compose import Composed
from poolserve.kserve.cpu import NFD_BF16_LABELS, guaranteed_whole_cpus, node_affinity
from poolserve.kserve.dashboard import find_template
from poolserve.kserve.names import (
    DASHBOARD_LABEL,
    ENABLE_AUTH,
    ISVC_API_VERSION,
    ISVC_KIND,
    MODELMESH_ENABLED,
    SR_API_VERSION,
    SR_KIND,
    STOP_ANNOTATION,
    TEMPLATE_DISPLAY_NAME,
    TEMPLATE_NAME,
    VISIBILITY,
    Manifest,
)
from poolserve.kserve.objects import template_namespace, template_scope
from poolserve.kserve.render import Rendered
from poolserve.kserve.scaling import kserve_webhook_problems
from poolserve.vllm import args as vllm
from poolserve.vllm import sizing

Severity = Literal["error", "warning", "note"]
CRD_FILES = {
    (SR_API_VERSION, SR_KIND): "serving.kserve.io_servingruntimes.yaml",
    (ISVC_API_VERSION, ISVC_KIND): "serving.kserve.io_inferenceservices.yaml",
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
    runtimes = by_kind.get(SR_KIND, {})
    project = template_scope(spec) == "project"
    rendered_templates = ([], rendered.templates) if project else (rendered.templates, [])
    for isvc in by_kind.get(ISVC_KIND, {}).values():
        subj = _subject(isvc)
        meta = isvc["metadata"]
        out += _runtime_link(isvc, runtimes, rendered_templates)
        if meta.get("labels", {}).get(DASHBOARD_LABEL) != "true":
            out.append(Finding("warning", subj, f"no label {DASHBOARD_LABEL}=true: hidden in the 2.x dashboard"))
        ann = meta.get("annotations", {})
        if ann.get(ENABLE_AUTH) not in ("true", "false"):
            out.append(Finding("warning", subj, "security.opendatahub.io/enable-auth is not explicit: the 3.x "
                                                "dashboard shows token auth as on"))
        exposed = meta.get("labels", {}).get(VISIBILITY) == "exposed"
        if exposed and ann.get(ENABLE_AUTH) != "true":
            out.append(Finding("warning", subj, "exposed through a Route without token auth: anyone who can reach "
                                                "the route can use the model"))
        if fmt_is_mms(isvc):
            out.append(Finding("note", subj, "no storageUri and a modelFormat other than 'huggingface': KServe "
                                             "injects its model-agent sidecar and a modelconfig ConfigMap "
                                             "(harmless, costs 100m CPU/100Mi); use model_format: huggingface"))
    out += _templates(spec)
    ns = by_kind.get("Namespace", {}).get(spec.namespace)
    if ns is not None:
        labels = ns["metadata"].get("labels", {})
        if labels.get(MODELMESH_ENABLED) != "false":
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


def _runtime_link(isvc: Manifest, runtimes: Mapping[str, Manifest],
                  rendered_templates: tuple[Sequence[Manifest], Sequence[Manifest]]) -> list[Finding]:
    """The InferenceService's runtime as the dashboard and KServe find it: named, rendered, serving its format."""
    out: list[Finding] = []
    subj = _subject(isvc)
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
        if sr["metadata"].get("labels", {}).get(DASHBOARD_LABEL) != "true":
            out.append(Finding("error", _subject(sr), f"no label {DASHBOARD_LABEL}=true: the 2.x "
                                                       "dashboard ignores it and shows 'Unknown'"))
        if not (sr_ann.get(TEMPLATE_DISPLAY_NAME) or sr_ann.get(TEMPLATE_NAME)):
            out.append(Finding("error", _subject(sr), "no opendatahub.io/template-display-name: the dashboard "
                                                       "shows 'Unknown Serving Runtime'"))
        formats = [f.get("name") for f in sr["spec"].get("supportedModelFormats", [])]
        fmt = model.get("modelFormat", {}).get("name")
        if fmt not in formats:
            out.append(Finding("error", subj, f"modelFormat {fmt!r} is not in runtime {rt_name}'s "
                                              f"supportedModelFormats {formats}: NoSupportingRuntime"))
        name = sr_ann.get(TEMPLATE_NAME)
        if name and find_template(name, *rendered_templates) is None:
            out.append(Finding("warning", _subject(sr), f"template-name {name!r} matches no rendered Template: "
                                                         "OpenShift AI 3.5+ labels it 'Template removed'"))
    return out


def _templates(spec: PoolSpec) -> list[Finding]:
    """Who may apply the Templates, and the dashboard versions that find them (dashboard.py)."""
    if not spec.dashboard.templates:
        return []
    ns = template_namespace(spec)
    subject = f"dashboard-templates.yaml ({ns})"
    if template_scope(spec) == "project":
        return [Finding("warning", subject, "project-scoped Templates: OpenShift AI 3.6+ finds them; 3.5 looks only "
                        f"in {spec.dashboard.templates_namespace} and labels the runtimes 'Template removed'")]
    return [Finding("note", subject, f"creating Templates in {ns} needs an OpenShift AI admin: `poolserve deploy` "
                    "stops first without that right (unless they are there), a project member's `oc apply -k` "
                    "fails on them; dashboard.templates_scope: project needs no admin")]


def fmt_is_mms(isvc: Manifest) -> bool:
    """KServe's IsMMSPredictor: ``predictor.model`` without storage, format not ``huggingface``."""
    model = isvc["spec"]["predictor"].get("model", {})
    has_storage = any(model.get(k) for k in ("storageUri", "storage", "storageUris"))
    return not has_storage and model.get("modelFormat", {}).get("name") != "huggingface"


def _models(rendered: Rendered, spec: PoolSpec) -> list[Finding]:
    """Each model against what vLLM accepts (args, command, env, the catalog) and KServe's storage rules."""
    out: list[Finding] = []
    for m in rendered.models:
        subj = f"InferenceService {m.namespace}/{m.name}"
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
        out += _catalog(m, composed, subj)
        if m.task == "score" and m.vllm_version < vllm.TASK_EMBED_SCORE:
            out.append(Finding("error", subj, f"vLLM {ver} cannot serve cross-encoders (needs 0.6.5)"))
        if m.gpus and not m.runtime.accelerator:
            out.append(Finding("warning", subj, "gpus set but the runtime has no accelerator; using nvidia.com/gpu"))
        if m.stopped:
            out.append(Finding("note", subj, f"stopped: true: deployed with {STOP_ANNOTATION}=\"true\", so "
                                             f"KServe keeps it without pods; `poolserve start {m.name}` starts it "
                                             "until the next deploy"))
        limits = m.resources.limits
        if "memory" not in limits and m.hardware_profile is None:  # a profile may supply it
            out.append(Finding("warning", subj, "no memory limit: vLLM sizes its cache from the node's memory"))
        out += _storage(m, composed, spec, subj)
    return out


def _catalog(m: Model, composed: Composed, subj: str) -> list[Finding]:
    """The model against its catalog entry: task, minimum vLLM, context length, required flags."""
    out: list[Finding] = []
    ver = format_version(m.vllm_version)
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
    return out


def _cache_access(rendered: Rendered, spec: PoolSpec) -> list[Finding]:
    """The cache PVC's access mode against the pods that mount it: replicas, rollouts on other nodes."""
    out: list[Finding] = []
    total_pods = sum(m.max_replicas for m in rendered.models)
    mode = spec.cache.access_mode
    scaled = [m for m in rendered.models if m.max_replicas > 1]
    if mode in ("ReadWriteOnce", "ReadWriteOncePod"):
        sev: Severity = "error" if mode == "ReadWriteOncePod" else "warning"
        for m in scaled:
            how = "autoscaled" if m.autoscaling else "its"
            out.append(Finding(sev, f"InferenceService {m.namespace}/{m.name}",
                               f"max_replicas {m.max_replicas} with a {mode} cache ({spec.cache.pvc}): "
                               + ("only one pod can ever mount it" if sev == "error" else
                                  f"{how} pods must run on one node (Multi-Attach errors otherwise); "
                                  "use ReadWriteMany")))
        if total_pods > 1 and not scaled:
            out.append(Finding(sev, f"PersistentVolumeClaim {spec.namespace}/{spec.cache.pvc}",
                               f"{mode} but up to {total_pods} pods mount it: "
                               + ("only one pod can ever mount it" if sev == "error" else
                                  "all of them must run on one node (Multi-Attach errors otherwise); "
                                  "use ReadWriteMany")))
        for m in rendered.models:
            if m.deployment_strategy == "RollingUpdate":
                out.append(Finding(sev, f"InferenceService {m.namespace}/{m.name}",
                                   f"deployment_strategy RollingUpdate with a {mode} cache: the surge pod of each "
                                   "rollout cannot attach the volume from another node; leave it unset (Recreate)"))
    return out


def _storage(m: Model, composed: Composed, spec: PoolSpec, subj: str) -> list[Finding]:
    """storage_uri against what KServe's pod webhook and the API server do with it."""
    out: list[Finding] = []
    mounts = composed.container.get("volumeMounts", [])
    kserve_volumes = (storage.PVC_VOLUME, storage.DOWNLOAD_VOLUME, storage.MODELCAR_VOLUME)
    by_path: dict[str, list[str]] = {}
    for mount in mounts:
        by_path.setdefault("/" + str(mount.get("mountPath", "")).strip("/"), []).append(str(mount.get("name")))
    for path, names in by_path.items():
        if len(names) > 1 and not (m.storage_uri and any(n in kserve_volumes for n in names)):
            out.append(Finding("error", subj, f"volumes {', '.join(names)} are all mounted at {path}: the API "
                                              "server refuses the pod (volumeMounts mountPath must be unique)"))
    if m.storage_uri is None:
        return out
    for mount in mounts:
        if mount.get("name") in kserve_volumes:
            continue
        why = storage.mount_conflict(m.storage_uri, str(mount.get("mountPath", "")))
        if why:
            out.append(Finding("error", subj, f"storage_uri {m.storage_uri.uri}: volume {mount.get('name')}: {why}"))
    uri = m.storage_uri
    if uri.scheme == "pvc" and uri.location == spec.cache.pvc:
        out.append(Finding("warning", subj, f"storage_uri names {spec.cache.pvc}, the claim the runtime already "
                                            f"mounts at {spec.cache.mount_path}: KServe adds a second volume for "
                                            "the same claim and the pod can hang in ContainerCreating "
                                            "(kubernetes/kubernetes#127004); load it without storage_uri, or "
                                            "use another claim"))
    if uri.scheme == "hf" and spec.cache.hf_token_secret is not None:
        out.append(Finding("note", subj, "cache.hf_token_secret reaches vLLM, not KServe's storage initializer "
                                         "that downloads hf:// models: a gated repository fails to download"))
    if uri.scheme == "s3" and m.data_connection is None:
        out.append(Finding("note", subj, "s3:// without data_connection: KServe's storage initializer uses the "
                                         "predictor's service account credentials or the storage-config "
                                         "Secret's default entry"))
    return out


def _scaling(spec: PoolSpec, rendered: Rendered) -> list[Finding]:
    """Autoscaling, hardware profiles, disruption budgets and monitoring: what KServe and OpenShift AI do."""
    out: list[Finding] = []
    for m in rendered.models:
        subj = f"InferenceService {m.namespace}/{m.name}"
        a = m.autoscaling
        if a is not None and m.max_replicas <= m.replicas:
            out.append(Finding("error", subj, f"autoscaling on {a.metric} but max_replicas ({m.max_replicas}) <= "
                                              f"replicas ({m.replicas}): the autoscaler can never add a pod; raise "
                                              "max_replicas"))
        elif a is None and m.max_replicas > m.replicas:
            out.append(Finding("warning", subj, f"max_replicas {m.max_replicas} > replicas {m.replicas} without "
                                                "autoscaling: KServe's default HPA scales on CPU at 80 % of the "
                                                "request, which says little about a GPU-bound vLLM server; set "
                                                "autoscaling: {metric: queue, target: N}"))
        if a is not None and a.metric == "queue" and not spec.monitoring.enabled:
            out.append(Finding("note", subj, "autoscaling on the queue: KEDA reads vLLM's metrics from Prometheus, "
                                             "so something must scrape the pods (on OpenShift AI "
                                             "odh-model-controller's ServiceMonitor <isvc>-metrics; elsewhere "
                                             "monitoring: {enabled: true})"))
        if m.hardware_profile is not None:
            name, ns = m.hardware_profile
            out.append(Finding("note", subj, f"hardware profile {ns}/{name}: on OpenShift AI 3.x its webhook adds "
                                             "the profile's node selector and tolerations, and the resources this "
                                             "model leaves unset (set ones win); poolserve renders no node selector "
                                             "or tolerations for it. 2.x has no such webhook"))
        pdb = m.disruption_budget
        if pdb is not None and m.replicas <= 1:
            out.append(Finding("note", subj, "disruption_budget not rendered: with one replica a "
                                             "PodDisruptionBudget either blocks every node drain or protects nothing"))
        elif pdb is not None and (pdb.max_unavailable in (0, "0%") or (
                isinstance(pdb.min_available, int) and pdb.min_available >= m.replicas) or pdb.min_available == "100%"):
            out.append(Finding("warning", subj, "the disruption budget allows no eviction at all: node drains and "
                                                "cluster upgrades wait on these pods forever"))
    if spec.monitoring.enabled:
        out.append(Finding("note", "config", "monitoring: on OpenShift AI odh-model-controller already creates a "
                                             "Service and ServiceMonitor <isvc>-metrics for every InferenceService "
                                             "whose runtime sets prometheus.io/port (poolserve's do): with the "
                                             "PodMonitors too, each pod is scraped twice"))
    for isvc in rendered.manifests:
        if isvc.get("kind") == ISVC_KIND:
            out += [Finding("error", _subject(isvc), msg) for msg in kserve_webhook_problems(isvc)]
    return out


def _cpu(rendered: Rendered) -> list[Finding]:
    """Models on ``device: cpu`` runtimes: limits that vLLM's CPU backend sizes itself from, dtype."""
    out: list[Finding] = []
    for m in rendered.models:
        if m.runtime.device != "cpu":
            continue
        subj = f"InferenceService {m.namespace}/{m.name}"
        limits, requests = m.resources.limits, m.resources.requests
        profiled = m.hardware_profile is not None  # OpenShift AI 3.x's webhook fills unset limits from it
        if "cpu" not in limits and not profiled:
            out.append(Finding("warning", subj, "device: cpu without a CPU limit: OMP_NUM_THREADS (from limits.cpu) "
                                                "becomes the node's CPU count, so vLLM starts a thread per node CPU"))
        elif "cpu" in requests and str(requests["cpu"]) != str(limits["cpu"]):
            out.append(Finding("note", subj, f"CPU request {requests['cpu']} below the limit {limits['cpu']}: vLLM "
                                             f"runs {limits['cpu']} threads but is guaranteed only the request on a "
                                             "busy node"))
        if m.runtime.exclusive_cpus and not profiled and (why := guaranteed_whole_cpus(requests, limits)):
            out.append(Finding("error", subj, f"runtime {m.runtime.name} has exclusive_cpus but {why}: the "
                                              "static CPU manager gives CPUs of its own only to Guaranteed pods "
                                              "with whole CPUs, so vLLM would pin a thread to every CPU of the "
                                              "node (make requests equal limits in whole CPUs, or drop "
                                              "exclusive_cpus)"))
        if "memory" not in limits and not profiled:
            out.append(Finding("warning", subj, "device: cpu without a memory limit: vLLM reads "
                                                "--gpu-memory-utilization as a share of the whole node's RAM"))
        dtype = m.dtype or m.runtime.dtype
        if dtype == "bfloat16":
            if node_affinity(m) is not None:
                out.append(Finding("note", subj, "bfloat16 on CPU: its pods schedule only on nodes labelled "
                                                 f"{' or '.join(label + '=true' for label in NFD_BF16_LABELS)} "
                                                 "(Node Feature Discovery sets them; without NFD, label such nodes "
                                                 "yourself, or the pods stay Pending)"))
            elif m.hardware_profile is not None:
                out.append(Finding("note", subj, "bfloat16 on CPU under a hardware profile: the profile places the "
                                                 "pods, so pick one whose nodes have AMX-BF16 or AVX512-BF16 "
                                                 "(elsewhere bfloat16 has no fast path; float32 runs anywhere)"))
            if m.task == "score":
                out.append(Finding("warning", subj, "a cross-encoder in bfloat16 on CPU: its scores drifted up to 1.5% "
                                                    "from float32 here, beyond vLLM's own 1e-2 tolerance"))
    return out


def _gpu_sharing(rendered: Rendered) -> list[Finding]:
    """GPU settings that waste or overcommit a GPU, from :mod:`poolserve.vllm.sizing`'s estimates."""
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
    findings += _cache_access(rendered, spec)
    findings += _gpu_sharing(rendered)
    findings += _cpu(rendered)
    findings += _scaling(spec, rendered)
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
