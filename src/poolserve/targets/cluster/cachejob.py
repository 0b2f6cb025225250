"""``poolserve cache warm``: a Kubernetes Job per model that downloads it into the cache PVC.

:func:`cache_job` builds the Job (pure); :func:`warm` runs one per model on a
:class:`~poolserve.targets.cluster.base.Cluster` and waits for them, failing fast on what retries cannot fix.

The Job runs the runtime's own image (it ships ``huggingface_hub``) with ``HF_HOME`` set to the
path the serving pods use, so the files land in the hub-cache layout vLLM resolves
(``<HF_HOME>/hub/models--org--name/snapshots/<rev>``); afterwards the serving pods can run with
``cache.offline: true`` (``HF_HUB_OFFLINE=1``). The Hugging Face token, for gated models, comes
from the Secret the config names (``cache.hf_token_secret``) through ``secretKeyRef``; its value
never passes through poolserve. Weights in other formats (ONNX, OpenVINO, TF, Flax, and ``*.bin``
when safetensors exist) are skipped, since vLLM does not read them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from poolserve.config.resolve import Model
from poolserve.config.schema import PoolSpec
from poolserve.errors import NotFound, NotReady
from poolserve.kserve.names import Manifest
from poolserve.kserve.objects import TMP_CACHE, TMP_HOME
from poolserve.kserve.render import Rendered, select_models
from poolserve.targets.base import CacheJobStatus, CacheWarmResult, ProgressFn
from poolserve.targets.cluster.base import LOG_TAIL, Cluster, duration
from poolserve.targets.cluster.findings import RANK_IMAGE_OR_CONFIG, RANK_UNSCHEDULABLE, Finding, multi_attach
from poolserve.targets.cluster.objects import dig
from poolserve.targets.cluster.pods import pod_problems
from poolserve.targets.cluster.preflight import check_pvc

COMPONENT_LABEL = "poolserve.io/component"
MODEL_LABEL = "poolserve.io/model"
MODEL_ID_ANNOTATION = "poolserve.io/model-id"
SPEC_HASH_ANNOTATION = "poolserve.io/spec-hash"
CONTAINER = "download"
DONE_MARKER = "poolserve-cache: downloaded"

# Run by `python -c`: list the repo, skip formats vLLM never reads, download into HF_HOME.
# umask 002: OpenShift runs the serving pods under another UID of the same group, so files must be
# group-writable (the lock files HF writes next to the blobs).
SCRIPT = """\
import os, sys, time
os.umask(0o002)
from huggingface_hub import HfApi, snapshot_download
repo, revision = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None)
ignore = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "coreml/*", "*.tflite"]
files = HfApi().list_repo_files(repo, revision=revision)
if any(f.endswith(".safetensors") for f in files):
    ignore += ["*.bin", "*.pt", "*.pth"]
start = time.monotonic()
path = snapshot_download(repo, revision=revision, ignore_patterns=ignore)
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
print(f"poolserve-cache: downloaded {repo} to {path} ({size / 1e6:.1f} MB in {time.monotonic() - start:.0f} s)",
      flush=True)
"""

JobState = Literal["Pending", "Running", "Succeeded", "Failed"]


def job_name(model: Model) -> str:
    """``poolserve-cache-<model>``; a DNS label, so long names are cut and given a hash suffix (unique)."""
    name = f"poolserve-cache-{model.name}"
    if len(name) <= 63:
        return name
    return f"{name[:56].rstrip('-')}-{hashlib.sha256(model.name.encode()).hexdigest()[:6]}"


def cache_job(spec: PoolSpec, model: Model, *, revision: str | None = None) -> Manifest:
    """The Job that downloads ``model`` into the cache PVC at ``spec.cache.hf_home``."""
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": spec.cache.hf_home},
        {"name": "HF_HUB_OFFLINE", "value": "0"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "0"},
        # The image's default HOME may not be writable under OpenShift's random UID.
        {"name": "HOME", "value": TMP_HOME},
        {"name": "XDG_CACHE_HOME", "value": TMP_CACHE},
    ]
    if spec.cache.hf_token_secret is not None:
        ref = spec.cache.hf_token_secret
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": model.image or model.runtime.image,
        "command": ["python", "-c", SCRIPT, model.model_id, revision or ""],
        "env": env,
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "model-cache", "mountPath": spec.cache.mount_path},
            {"name": "tmp-home", "mountPath": TMP_HOME},
            {"name": "tmp-cache", "mountPath": TMP_CACHE},
        ],
    }
    labels = {"app.kubernetes.io/managed-by": "poolserve", COMPONENT_LABEL: "cache", MODEL_LABEL: model.name}
    job_spec: dict[str, Any] = {
        "backoffLimit": 2,
        "ttlSecondsAfterFinished": 86400,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "containers": [container],
                "volumes": [
                    {"name": "model-cache", "persistentVolumeClaim": {"claimName": spec.cache.pvc}},
                    {"name": "tmp-home", "emptyDir": {}},
                    {"name": "tmp-cache", "emptyDir": {}},
                ],
            },
        },
    }
    if model.node_selector:
        job_spec["template"]["spec"]["nodeSelector"] = dict(model.node_selector)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(model),
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": {MODEL_ID_ANNOTATION: model.model_id, SPEC_HASH_ANNOTATION: spec_hash(job_spec)},
        },
        "spec": job_spec,
    }


def spec_hash(job_spec: Mapping[str, Any]) -> str:
    """A short stable hash of a Job spec: a Job's template is immutable, so a changed one is recreated."""
    return hashlib.sha256(json.dumps(job_spec, sort_keys=True).encode()).hexdigest()[:12]


def job_state(job: Manifest) -> JobState:
    """Succeeded/Failed from the Job's conditions (Complete/Failed), else Running when a pod is active."""
    status = job.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded"
        if c.get("status") == "True" and c.get("type") in ("Failed", "FailureTarget"):
            return "Failed"
    if int(status.get("succeeded") or 0) > 0:
        return "Succeeded"
    if int(status.get("active") or 0) > 0:
        return "Running"
    return "Pending"


def same_job(live: Manifest, wanted: Manifest) -> bool:
    """The live Job was made from the same spec (model id and template) as ``wanted``."""
    live_ann = (live.get("metadata") or {}).get("annotations") or {}
    want_ann = wanted["metadata"]["annotations"]
    return all(live_ann.get(k) == want_ann[k] for k in (MODEL_ID_ANNOTATION, SPEC_HASH_ANNOTATION))


def warm(cluster: Cluster, rendered: Rendered, names: Sequence[str], *, timeout_s: float,
         progress: ProgressFn | None = None, sleep: Callable[[float], None] = time.sleep,
         now: Callable[[], float] = time.monotonic, poll_s: float = 5.0) -> CacheWarmResult:
    """Run one download Job per model into the cache PVC; wait for them; report each result.

    A Job that already succeeded with the same spec is not run again. A failed or changed Job is
    deleted and recreated (a Job's template is immutable).

    Raises:
        NotFound: the namespace or PVC is missing.
        NotReady: a Job failed (with the diagnosed cause: gated model, no such repo, ...) or timed out.
    """
    spec = rendered.spec
    models = select_models(rendered, names)
    ns = spec.namespace
    cluster.server_version()
    check_pvc(cluster, spec, 1)  # raises when the PVC is missing or Lost; its notes are for deploy
    deadline = now() + timeout_s
    by_id: dict[str, Model] = {}
    for m in models:
        by_id.setdefault(m.model_id, m)  # two models on one HF id download once
    jobs = {m.model_id: cache_job(spec, m) for m in by_id.values()}
    results: dict[str, CacheJobStatus] = {}
    for model_id, job in jobs.items():
        m = by_id[model_id]
        jname = job["metadata"]["name"]
        live = cluster.get("batch/v1", "Job", jname, ns)
        if live is not None and same_job(live, job) and job_state(live) == "Succeeded":
            results[model_id] = CacheJobStatus(m.name, model_id, jname, "cached",
                                                        "already downloaded by an earlier job")
            continue
        if live is not None:
            cluster.delete("batch/v1", "Job", jname, ns)
            while cluster.get("batch/v1", "Job", jname, ns) is not None:
                if now() >= deadline:
                    raise NotReady(f"Job {ns}/{jname} is still being deleted", hint="retry in a moment")
                sleep(min(1.0, poll_s))
        cluster.apply(job)
    running = [mid for mid in jobs if mid not in results]
    while running:
        for model_id in list(running):
            m, jname = by_id[model_id], jobs[model_id]["metadata"]["name"]
            live = cluster.get("batch/v1", "Job", jname, ns)
            state = job_state(live) if live is not None else "Pending"
            pods = cluster.pods(ns, label_selector=f"job-name={jname}")
            if state == "Succeeded":
                results[model_id] = CacheJobStatus(m.name, model_id, jname, "downloaded",
                                                            _job_message(ns, pods))
                running.remove(model_id)
                continue
            # Fail fast on what retries cannot fix (image, missing Secret, no node); a crashed
            # download is retried by the Job (backoffLimit) and judged when the Job fails.
            problems = [f for p in pods for f in pod_problems(p, container=CONTAINER)
                        if f.fatal and f.rank in (RANK_IMAGE_OR_CONFIG, RANK_UNSCHEDULABLE)]
            problems += _attach_problems(cluster, ns, pods)
            if state == "Failed" or problems:
                cause = min(problems, key=lambda f: f.rank).text if problems else _job_failure(cluster, ns, pods)
                raise NotReady(f"cache Job {ns}/{jname} for {model_id} failed: {cause}",
                               hint=f"`oc logs job/{jname} -n {ns}`")
        if progress is not None:
            done = len(jobs) - len(running)
            progress(f"cache: {done}/{len(jobs)} downloaded" + (f"; downloading {running[0]}" if running else ""),
                     done / len(jobs) if jobs else 1.0)
        if not running:
            break
        remaining = deadline - now()
        if remaining <= 0:
            raise NotReady(f"timed out after {duration(timeout_s)} downloading {', '.join(running)}",
                           hint="large models take long: raise --timeout; the Jobs keep running")
        sleep(min(poll_s, remaining))
    ordered = tuple(results[mid] for mid in jobs)
    return CacheWarmResult(namespace=ns, pvc=spec.cache.pvc, hf_home=spec.cache.hf_home, jobs=ordered,
                           offline=spec.cache.offline)

def _attach_problems(cluster: Cluster, ns: str, pods: Sequence[Manifest]) -> list[Finding]:
    """Multi-Attach events of pods still creating (a ReadWriteOnce PVC held by pods on another node)."""
    out: list[Finding] = []
    for p in pods:
        creating = any(dig(cs, "state", "waiting", "reason") == "ContainerCreating"
                       for cs in dig(p, "status", "containerStatuses", default=[]) or [])
        if not creating:
            continue
        for e in cluster.events(ns, field_selector=f"involvedObject.name={p['metadata']['name']}"):
            attach = multi_attach(e, fix="stop the predictors (or warm the cache before deploying), "
                                  "or use a ReadWriteMany PVC")
            if attach is not None:
                out.append(attach)
    return out

def _job_message(ns: str, pods: Sequence[Manifest]) -> str:
    for p in pods:
        for cs in dig(p, "status", "containerStatuses", default=[]) or []:
            msg = dig(cs, "state", "terminated", "message", default="") or ""
            for line in reversed(str(msg).splitlines()):
                if DONE_MARKER in line:
                    # "poolserve-cache: downloaded <repo> to <path> (<size> in <s>)" -> "to <path> (...)"
                    _, _, rest = line.partition(DONE_MARKER)
                    return rest.strip().partition(" ")[2] or rest.strip()
    return ""

def _job_failure(cluster: Cluster, ns: str, pods: Sequence[Manifest]) -> str:
    from poolserve.vllm.diagnose import diagnose

    for p in sorted(pods, key=lambda p: dig(p, "metadata", "creationTimestamp", default="") or "", reverse=True):
        lines: list[str] = []
        for cs in dig(p, "status", "containerStatuses", default=[]) or []:
            msg = dig(cs, "state", "terminated", "message", default="") or ""
            lines += str(msg).splitlines()
        if not lines:
            try:
                lines = list(cluster.logs(ns, p["metadata"]["name"], container=CONTAINER,
                                               tail_lines=LOG_TAIL))
            except NotFound:
                lines = []
        diag = diagnose(lines)
        if diag is not None:
            return str(diag)
        if lines:
            return lines[-1].strip()
    return "the Job failed (backoffLimit reached)"
