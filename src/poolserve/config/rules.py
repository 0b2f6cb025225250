"""The rules across keys: what pydantic cannot check one field at a time (pure).

Each rule is a small function returning ``[(key_path, message)]``, empty when it holds; the tables below
run them in a fixed order, and :func:`cross_check` returns every problem in that order (``load`` reports
the first one with its file and line, and how many more there are). Rules judge the value that is
rendered: they choose between a model's keys and ``defaults:`` the way :mod:`poolserve.config.resolve`
does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

from poolserve.config import catalog, storage
from poolserve.config.resolve import first, own_or_default, runtime_version
from poolserve.config.schema import HPA_METRICS, ModelConfig, ModelDefaults, PoolSpec, RuntimeConfig, Task
from poolserve.config.versions import image_version, parse_version

KeyPath = tuple[str | int, ...]
Problem = tuple[KeyPath, str]

# KServe raw mode: the selector label ``app=isvc.<name>-predictor`` must fit 63 chars (<= 48) and the
# default domain template's first host label ``<name>-predictor-<ns>`` must too (name + ns <= 52).
# Source: kserve v0.20 constants.GetRawServiceLabel, ingress/domain.go GenerateDomainName (kserve#4807).
MAX_NAME_LEN = 48
MAX_NAME_PLUS_NAMESPACE = 52
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MIG_PROFILE_RE = re.compile(r"^(\d+)g\.(\d+)gb(\+me)?$")
_PERCENT = re.compile(r"^[0-9]+%$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # object names: Secret, HardwareProfile, ...
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # namespaces

_SECRET_WORDS = frozenset({"TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "APIKEY"})
_SECRET_PAIRS = frozenset({("API", "KEY"), ("ACCESS", "KEY"), ("PRIVATE", "KEY"), ("SECRET", "KEY")})


def secret_like(name: str) -> bool:
    """An env var name that usually holds a secret (``HF_TOKEN``, ``VLLM_API_KEY``), not ``TOKENIZERS_PARALLELISM``."""
    words = name.upper().replace("-", "_").split("_")
    return bool(_SECRET_WORDS & set(words)) or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def cross_check(spec: PoolSpec) -> list[Problem]:
    """Rules that span several keys. Returns ``[(key_path, message)]``; empty when valid."""
    return [problem for rule in SPEC_RULES for problem in rule(spec)]


# -------------------------------------------------------------------------------------------------
# The whole config


def _secret_env(env: Mapping[str, str] | None, base: KeyPath) -> list[Problem]:
    # Rendered env values land in manifests/kserve/ (committed, readable by anyone with `get` on the objects).
    return [((*base, "env", k), f"{k} looks like a secret, and its value would be written into the rendered "
             "manifests: use cache.hf_token_secret for the HF token (a Secret reference, rendered as secretKeyRef), "
             "or local.env for the local target (never rendered)") for k in (env or {}) if secret_like(k)]


def no_secret_env(spec: PoolSpec) -> list[Problem]:
    """No rendered ``env`` (``defaults:``, runtimes, models) has a name that looks like a secret's."""
    out = _secret_env(spec.defaults.env, ("defaults",))
    for i, rt in enumerate(spec.runtimes):
        out += _secret_env(rt.env, ("runtimes", i))
    for i, m in enumerate(spec.models):
        out += _secret_env(m.env, ("models", i))
    return out


def namespace_valid(spec: PoolSpec) -> list[Problem]:
    """The namespace is a DNS-1123 label."""
    if not NAME_RE.match(spec.namespace) or len(spec.namespace) > 63:
        return [(("namespace",), f"{spec.namespace!r} is not a valid namespace name (DNS-1123 label)")]
    return []


def vllm_version_valid(spec: PoolSpec) -> list[Problem]:
    """The top-level ``vllm_version``, when set, is a version."""
    if spec.vllm_version is not None and parse_version(spec.vllm_version) is None:
        return [(("vllm_version",), f"{spec.vllm_version!r} is not a version like 0.32.0")]
    return []


def runtimes_valid(spec: PoolSpec) -> list[Problem]:
    """Every runtime passes :data:`RUNTIME_RULES`."""
    return [problem for i, rt in enumerate(spec.runtimes) for rule in RUNTIME_RULES for problem in rule(spec, i, rt)]


def models_valid(spec: PoolSpec) -> list[Problem]:
    """Every model passes :data:`MODEL_NAME_RULES`, and when its task is known :data:`MODEL_RULES`."""
    runtimes = _runtime_index(spec)
    out: list[Problem] = []
    for i in range(len(spec.models)):
        site = ModelSite(spec, i, runtimes)
        out += [problem for rule in MODEL_NAME_RULES for problem in rule(site)]
        if site.task is not None:
            out += [problem for rule in MODEL_RULES for problem in rule(site)]
    return out


def defaults_valid(spec: PoolSpec) -> list[Problem]:
    """The ``defaults:`` block passes :data:`EXTRAS_RULES`."""
    return [problem for rule in EXTRAS_RULES for problem in rule(spec.defaults, ("defaults",))]


# -------------------------------------------------------------------------------------------------
# Runtimes


def runtime_name_unique(spec: PoolSpec, i: int, rt: RuntimeConfig) -> list[Problem]:
    """No earlier runtime has the same name."""
    if any(other.name == rt.name for other in spec.runtimes[:i]):
        return [(("runtimes", i, "name"), f"duplicate runtime name {rt.name!r}")]
    return []


def runtime_name_valid(spec: PoolSpec, i: int, rt: RuntimeConfig) -> list[Problem]:
    """The runtime's name is a Kubernetes object name."""
    if not NAME_RE.match(rt.name) or len(rt.name) > 63:
        return [(("runtimes", i, "name"), f"{rt.name!r} is not a valid Kubernetes name")]
    return []


def exclusive_cpus_only_on_cpu(spec: PoolSpec, i: int, rt: RuntimeConfig) -> list[Problem]:
    """``exclusive_cpus`` pins vLLM's CPU threads: it means nothing for a GPU runtime."""
    if rt.exclusive_cpus and rt.device != "cpu":
        return [(("runtimes", i, "exclusive_cpus"), f"runtime {rt.name!r} sets exclusive_cpus, which is for "
                 "device: cpu runtimes (remove it, or set device: cpu)")]
    return []


def cpu_runtime_has_no_accelerator(spec: PoolSpec, i: int, rt: RuntimeConfig) -> list[Problem]:
    """A ``device: cpu`` runtime sets no accelerator."""
    if rt.device == "cpu" and "accelerator" in rt.model_fields_set and rt.accelerator:
        return [(("runtimes", i, "accelerator"), f"runtime {rt.name!r} has device: cpu: it has no accelerator "
                 "(remove accelerator, or use device: gpu)")]
    return []


def runtime_version_known(spec: PoolSpec, i: int, rt: RuntimeConfig) -> list[Problem]:
    """The runtime's vLLM version is known: from its ``vllm_version`` or its image's tag."""
    if runtime_version(spec, rt) is not None:
        return []
    image = rt.image or spec.image
    key = "vllm_version" if rt.vllm_version else "image"
    return [(("runtimes", i, key) if rt.image or rt.vllm_version else ("image",),
             f"cannot tell the vLLM version of image {image!r}: pin a tag like v0.32.0 or set vllm_version")]


# -------------------------------------------------------------------------------------------------
# Models


def _runtime_index(spec: PoolSpec) -> dict[str, int]:
    """Runtime name -> index (the last runtime of that name, when names repeat)."""
    return {rt.name: i for i, rt in enumerate(spec.runtimes)}


@dataclass(frozen=True)
class ModelSite:
    """One model as the model rules see it: its config, catalog entry, task and runtime."""

    spec: PoolSpec
    index: int
    runtime_names: Mapping[str, int]
    """Runtime name -> index (:func:`_runtime_index`)."""

    @property
    def model(self) -> ModelConfig:
        """The model's config."""
        return self.spec.models[self.index]

    @property
    def base(self) -> KeyPath:
        """The model's key path, ``("models", index)``."""
        return ("models", self.index)

    @cached_property
    def entry(self) -> catalog.CatalogEntry | None:
        """The model's catalog entry, if the catalog knows it."""
        return catalog.lookup(self.model.model_id)

    @property
    def task(self) -> Task | None:
        """The model's task: its own, else the catalog's; None when neither says."""
        return self.model.task or (self.entry.task if self.entry else None)

    @property
    def runtime(self) -> RuntimeConfig | None:
        """The runtime the model names, else the first that serves its task; None when there is none."""
        m = self.model
        index = self.runtime_names.get(m.runtime) if m.runtime else next(
            (j for j, rt in enumerate(self.spec.runtimes) if rt.task == self.task), None)
        return None if index is None else self.spec.runtimes[index]


def model_name_unique(site: ModelSite) -> list[Problem]:
    """No earlier model has the same name."""
    m = site.model
    if any(other.name == m.name for other in site.spec.models[: site.index]):
        return [((*site.base, "name"), f"duplicate model name {m.name!r}")]
    return []


def model_name_valid(site: ModelSite) -> list[Problem]:
    """The model's name is a DNS label short enough for KServe raw mode's label and host names."""
    m, spec = site.model, site.spec
    if not NAME_RE.match(m.name):
        return [((*site.base, "name"), f"{m.name!r} must be lowercase letters, digits and '-', starting with a letter")]
    if len(m.name) > MAX_NAME_LEN:
        return [((*site.base, "name"), f"{m.name!r} is {len(m.name)} characters; KServe raw mode allows "
                 f"{MAX_NAME_LEN} (label app=isvc.<name>-predictor must fit 63)")]
    if len(m.name) + len(spec.namespace) > MAX_NAME_PLUS_NAMESPACE:
        return [((*site.base, "name"), f"{m.name!r} + namespace {spec.namespace!r} is "
                 f"{len(m.name) + len(spec.namespace)} characters; KServe allows {MAX_NAME_PLUS_NAMESPACE} "
                 "(host label <name>-predictor-<namespace> must fit 63)")]
    return []


def model_name_free_per_model(site: ModelSite) -> list[Problem]:
    """In ``per-model`` mode a model's runtime takes its name: no runtime may have it already."""
    if site.spec.runtime_mode == "per-model" and site.model.name in site.runtime_names:
        return [((*site.base, "name"),
                 f"{site.model.name!r} clashes with a runtime of the same name in per-model mode")]
    return []


def model_task_known(site: ModelSite) -> list[Problem]:
    """The model's task is known: set, or from the catalog (the rules of :data:`MODEL_RULES` need it)."""
    if site.task is None:
        return [((*site.base, "model_id"),
                 f"{site.model.model_id!r} is not in the catalog: set task: embed or task: score")]
    return []


def model_runtime_matches(site: ModelSite) -> list[Problem]:
    """The model's runtime exists and serves its task; without ``runtime:`` exactly one runtime does."""
    m, spec, task = site.model, site.spec, site.task
    if m.runtime is not None:
        if m.runtime not in site.runtime_names:
            return [((*site.base, "runtime"), f"runtime {m.runtime!r} is not defined under runtimes "
                     f"(defined: {', '.join(site.runtime_names) or 'none'})")]
        rt_task = spec.runtimes[site.runtime_names[m.runtime]].task
        if rt_task != task:
            return [((*site.base, "runtime"), f"model task is {task!r} but runtime {m.runtime!r} serves {rt_task!r}")]
        return []
    candidates = [rt.name for rt in spec.runtimes if rt.task == task]
    if not candidates:
        return [((*site.base, "task"), f"{m.name}: task {task!r} needs a runtime with task: {task}; "
                 f"none under runtimes")]
    if len(candidates) > 1:
        return [((*site.base, "runtime"), f"{m.name}: several runtimes serve {task!r} "
                 f"({', '.join(candidates)}): name one with runtime:")]
    return []


def mig_profile_valid(site: ModelSite) -> list[Problem]:
    """The model's MIG profile (its own, else ``defaults:``') names a slice like ``1g.10gb``."""
    m = site.model
    mig = first(m.mig_profile, site.spec.defaults.mig_profile)
    if mig is None or MIG_PROFILE_RE.match(mig):
        return []
    where: KeyPath = (*site.base, "mig_profile") if m.mig_profile is not None else ("defaults", "mig_profile")
    return [(where, f"{mig!r} is not a MIG profile like 1g.10gb or 3g.40gb (nvidia-smi mig -lgip)")]


def model_device_fits(site: ModelSite) -> list[Problem]:
    """A model on a CPU runtime asks for no GPU and no MIG slice; a MIG slice is not ``gpus: 0``."""
    m, d, rt = site.model, site.spec.defaults, site.runtime
    out: list[Problem] = []
    if rt is not None and rt.device == "cpu":
        if m.gpus:
            out.append(((*site.base, "gpus"), f"runtime {rt.name!r} has device: cpu: its models cannot use GPUs "
                        "(set gpus: 0, or use a device: gpu runtime)"))
        if m.mig_profile:
            out.append(((*site.base, "mig_profile"), f"runtime {rt.name!r} has device: cpu: no MIG slice"))
    elif (mig := first(m.mig_profile, d.mig_profile)) is not None and first(m.gpus, d.gpus) == 0:
        out.append(((*site.base, "gpus"), f"gpus: 0 with mig_profile {mig!r}: a MIG slice is a GPU (unset gpus, "
                    "or set it to the number of slices)"))
    return out


def max_model_len_within_catalog(site: ModelSite) -> list[Problem]:
    """``max_model_len`` is not above the limit the catalog records for the model (vLLM refuses to start)."""
    m, entry = site.model, site.entry
    if entry and m.max_model_len and m.max_model_len > entry.max_model_len:
        return [((*site.base, "max_model_len"), f"{m.max_model_len} is above {m.model_id}'s limit of "
                 f"{entry.max_model_len}; vLLM refuses to start (see `poolserve catalog {m.model_id}`)")]
    return []


def model_image_version_known(site: ModelSite) -> list[Problem]:
    """A model's own image names its vLLM version in its tag."""
    m = site.model
    if m.image and image_version(m.image) is None:
        return [((*site.base, "image"), f"cannot tell the vLLM version of image {m.image!r}: pin a tag like v0.32.0")]
    return []


def replicas_ordered(site: ModelSite) -> list[Problem]:
    """``max_replicas`` (the model's, else ``defaults:``') is not below ``replicas``."""
    m, d = site.model, site.spec.defaults
    replicas = first(m.replicas, d.replicas, 1)
    max_replicas = first(m.max_replicas, d.max_replicas, replicas)
    if max_replicas < replicas:
        return [((*site.base, "max_replicas"), f"max_replicas {max_replicas} is below replicas {replicas}")]
    return []


def model_extras_valid(site: ModelSite) -> list[Problem]:
    """The keys a model shares with ``defaults:`` pass :data:`EXTRAS_RULES`."""
    return [problem for rule in EXTRAS_RULES for problem in rule(site.model, site.base)]


def storage_uri_valid(site: ModelSite) -> list[Problem]:
    """``storage_uri`` parses; ``data_connection`` goes with an ``s3://`` one only and names a Secret."""
    m, base = site.model, site.base
    out: list[Problem] = []
    if m.storage_uri is not None:
        try:
            parsed = storage.parse(m.storage_uri)
        except ValueError as err:
            out.append(((*base, "storage_uri"), str(err)))
        else:
            if m.data_connection is not None and parsed.scheme != "s3":
                out.append(((*base, "data_connection"), f"only used with s3:// (storage_uri is {parsed.scheme}://)"))
    elif m.data_connection is not None:
        out.append(((*base, "data_connection"), "needs storage_uri: s3://BUCKET/PATH"))
    if m.data_connection is not None and not _SUBDOMAIN.match(m.data_connection):
        out.append(((*base, "data_connection"), f"{m.data_connection!r} is not a Secret name"))
    return out


def scheduling_from_profile(site: ModelSite) -> list[Problem]:
    """A model with a hardware profile sets no ``node_selector`` or ``tolerations`` of its own."""
    m = site.model
    if own_or_default(m, site.spec.defaults, "hardware_profile") is None:
        return []
    # The profile owns scheduling: its webhook (OpenShift AI 3.x) overwrites node selector keys and, when
    # the profile changes, replaces both. Values from defaults: are left out for this model instead.
    return [((*site.base, field), f"{field} comes from the hardware profile (its webhook overwrites "
             f"it); remove {field} or hardware_profile") for field in ("node_selector", "tolerations")
            if getattr(m, field)]


# -------------------------------------------------------------------------------------------------
# Keys a ``defaults:`` block and a model share: autoscaling, hardware profile, pull secrets, PDB


def autoscaling_valid(d: ModelDefaults, base: KeyPath) -> list[Problem]:
    """``autoscaling``: a percentage target for cpu / memory, the KEDA keys only with ``queue``, valid names."""
    a = d.autoscaling
    if a is None:
        return []
    out: list[Problem] = []
    key = (*base, "autoscaling")
    if a.metric in HPA_METRICS and a.target > 100:
        # validateScalingHPACompExtension (inference_service_validation.go): 1-100 for both metrics.
        out.append(((*key, "target"), f"{a.target} is out of KServe's range for metric {a.metric}: a "
                    "utilisation percentage 1-100 (the InferenceService webhook rejects it)"))
    if a.metric in HPA_METRICS:
        for field in ("prometheus_url", "authentication"):
            if field in a.model_fields_set:
                out.append(((*key, field), f"only used with metric: queue (KEDA), not {a.metric}"))
    elif not re.match(r"^https?://[^/\s]+", a.prometheus_url):
        out.append(((*key, "prometheus_url"), f"{a.prometheus_url!r} is not an http(s) URL"))
    if a.authentication is not None and not _SUBDOMAIN.match(a.authentication):
        out.append(((*key, "authentication"), f"{a.authentication!r} is not a TriggerAuthentication name"))
    return out


def hardware_profile_names(d: ModelDefaults, base: KeyPath) -> list[Problem]:
    """``hardware_profile``: its name and namespace are Kubernetes names."""
    hp = d.hardware_profile
    if hp is None:
        return []
    checks = (("name", hp.name, _SUBDOMAIN, 253), ("namespace", hp.namespace, _LABEL, 63))
    return [((*base, "hardware_profile", field), f"{value!r} is not a valid Kubernetes name")
            for field, value, pattern, limit in checks
            if value is not None and (not pattern.match(value) or len(value) > limit)]


def pull_secret_names(d: ModelDefaults, base: KeyPath) -> list[Problem]:
    """``image_pull_secrets``: each a Secret name."""
    return [((*base, "image_pull_secrets", i), f"{secret!r} is not a Secret name")
            for i, secret in enumerate(d.image_pull_secrets or ()) if not _SUBDOMAIN.match(secret)]


def disruption_budget_valid(d: ModelDefaults, base: KeyPath) -> list[Problem]:
    """``disruption_budget``: one of the two keys, each a number of pods or a percentage."""
    pdb = d.disruption_budget
    if pdb is None:
        return []
    out: list[Problem] = []
    key = (*base, "disruption_budget")
    if pdb.max_unavailable is not None and pdb.min_available is not None:
        out.append((key, "set max_unavailable or min_available, not both (a PodDisruptionBudget takes one)"))
    for field in ("max_unavailable", "min_available"):
        value = getattr(pdb, field)
        if isinstance(value, str) and not _PERCENT.match(value):
            out.append(((*key, field), f"{value!r} is neither a number of pods nor a percentage like '25%'"))
        elif isinstance(value, int) and value < 0:
            out.append(((*key, field), f"{value} is negative"))
    return out


# -------------------------------------------------------------------------------------------------
# The tables, in the order the problems are reported

EXTRAS_RULES: tuple[Callable[[ModelDefaults, KeyPath], list[Problem]], ...] = (
    autoscaling_valid, hardware_profile_names, pull_secret_names, disruption_budget_valid,
)
RUNTIME_RULES: tuple[Callable[[PoolSpec, int, RuntimeConfig], list[Problem]], ...] = (
    runtime_name_unique, runtime_name_valid, cpu_runtime_has_no_accelerator, exclusive_cpus_only_on_cpu,
    runtime_version_known,
)
MODEL_NAME_RULES: tuple[Callable[[ModelSite], list[Problem]], ...] = (
    model_name_unique, model_name_valid, model_name_free_per_model, model_task_known,
)
MODEL_RULES: tuple[Callable[[ModelSite], list[Problem]], ...] = (
    model_runtime_matches, mig_profile_valid, model_device_fits, max_model_len_within_catalog,
    model_image_version_known, replicas_ordered, model_extras_valid, storage_uri_valid, scheduling_from_profile,
)
"""Run only for a model whose task is known (:func:`model_task_known` reports the others)."""
SPEC_RULES: tuple[Callable[[PoolSpec], list[Problem]], ...] = (
    no_secret_env, namespace_valid, vllm_version_valid, runtimes_valid, models_valid, defaults_valid,
)
