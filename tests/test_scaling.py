"""Autoscaling, rollout safety and disruption budgets: config errors, rendered objects, lint rules.

The rendered InferenceServices are also checked against an independent reading of KServe v0.20's
validating webhook (``support.kserve_webhooks.validate_isvc``) and its autoscaler builders
(``support.kserve_sim.autoscaler``), so a rule here cannot only agree with itself.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from poolserve.config.load import load_spec, parse_spec
from poolserve.config.resolve import resolve_models
from poolserve.errors import SpecError
from poolserve.kserve.lint import Finding, lint
from poolserve.kserve.names import AUTOSCALER_CLASS
from poolserve.kserve.render import render
from poolserve.kserve.scaling import kserve_webhook_problems
from support.configs import ONE_MODEL
from support.kserve_sim import autoscaler
from support.kserve_webhooks import validate_isvc

ROOT = Path(__file__).resolve().parents[1]
BASE = ONE_MODEL


def _isvc(text: str, name: str = "minilm-embedding") -> dict:
    return next(o for o in render(parse_spec(text)).manifests
                if o["kind"] == "InferenceService" and o["metadata"]["name"] == name)


def _findings(text: str) -> list[Finding]:
    spec = parse_spec(text)
    return list(lint(spec, render(spec)).findings)


def _has(findings: list[Finding], severity: str, fragment: str) -> bool:
    return any(f.severity == severity and fragment in f.message for f in findings)


def _standard(isvc: dict) -> dict:
    """The object KServe's validator sees: its defaulter has rewritten RawDeployment to Standard."""
    out = copy.deepcopy(isvc)
    out["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "Standard"
    return out


# --- config errors: one line naming file, line and key ------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("    autoscaling: {metric: gpu, target: 3}\n",
         "poolserve.yaml:8: models[0].autoscaling.metric: invalid value 'gpu': input should be 'cpu', 'memory' or "
         "'queue'"),
        ("    max_replicas: 3\n    autoscaling:\n      metric: cpu\n      target: 150\n",
         "poolserve.yaml:11: models[0].autoscaling.target: 150 is out of KServe's range for metric cpu"),
        ("    autoscaling: {metric: memory, target: 101}\n",
         "poolserve.yaml:8: models[0].autoscaling.target: 101 is out of KServe's range for metric memory"),
        ("    autoscaling:\n      metric: queue\n      target: 0\n",
         "poolserve.yaml:10: models[0].autoscaling.target: Input should be greater than or equal to 1"),
        ("    autoscaling: {metric: queue}\n", "poolserve.yaml:8: models[0].autoscaling.target: Field required"),
        ("    autoscaling:\n      metric: cpu\n      target: 70\n      prometheus_url: http://p:9090\n",
         "poolserve.yaml:11: models[0].autoscaling.prometheus_url: only used with metric: queue (KEDA), not cpu"),
        ("    autoscaling:\n      metric: queue\n      target: 8\n      prometheus_url: thanos:9092\n",
         "poolserve.yaml:11: models[0].autoscaling.prometheus_url: 'thanos:9092' is not an http(s) URL"),
        ("    autoscaling: {metric: queue, target: 8, thresold: 3}\n",
         "poolserve.yaml:8: models[0].autoscaling.thresold: unknown key"),
        ("    disruption_budget: {max_unavailable: 1, min_available: 1}\n",
         "poolserve.yaml:8: models[0].disruption_budget: set max_unavailable or min_available, not both"),
        ("    disruption_budget: {max_unavailable: half}\n",
         "poolserve.yaml:8: models[0].disruption_budget.max_unavailable: 'half' is neither a number of pods nor a "
         "percentage"),
        ("    deployment_strategy: BlueGreen\n",
         "poolserve.yaml:8: models[0].deployment_strategy: invalid value 'BlueGreen'"),
        ("    image_pull_secrets: [Quay_Creds]\n",
         "poolserve.yaml:8: models[0].image_pull_secrets[0]: 'Quay_Creds' is not a Secret name"),
    ],
)
def test_bad_scaling_keys_are_one_line_errors(extra: str, expected: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(BASE + extra)
    msg = str(exc.value)
    assert msg.startswith(expected), msg
    assert "\n" not in msg


def test_defaults_block_errors_name_defaults() -> None:
    text = BASE.replace("defaults:\n", "defaults:\n  autoscaling: {metric: cpu, target: 0}\n")
    with pytest.raises(SpecError, match=r"^poolserve.yaml:4: defaults.autoscaling.target: Input should be greater"):
        parse_spec(text)


# --- what renders ----------------------------------------------------------------------------------


def test_no_autoscaling_renders_nothing_and_keeps_kserves_default() -> None:
    isvc = _isvc(BASE)
    predictor = isvc["spec"]["predictor"]
    assert AUTOSCALER_CLASS not in isvc["metadata"]["annotations"]
    assert not {"scaleMetric", "scaleTarget", "autoScaling"} & set(predictor)
    assert predictor["minReplicas"] == predictor["maxReplicas"] == 1
    # KServe then makes its default CPU HPA (80 %), pinned at one replica.
    hpa = autoscaler(predictor, {"name": "minilm-embedding-predictor"}, "hpa")
    assert hpa is not None and hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 1
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80


@pytest.mark.parametrize("metric", ["cpu", "memory"])
def test_cpu_and_memory_render_kserves_hpa_fields(metric: str) -> None:
    isvc = _isvc(BASE + f"    replicas: 2\n    max_replicas: 5\n    autoscaling: {{metric: {metric}, target: 70}}\n")
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"][AUTOSCALER_CLASS] == "hpa"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 5)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == (metric, 70)
    assert "autoScaling" not in predictor
    assert validate_isvc(_standard(isvc)) is None
    hpa = autoscaler(predictor, {"name": "minilm-embedding-predictor"}, "hpa")
    assert hpa is not None
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": metric, "target": {
        "type": "Utilization", "averageUtilization": 70}}}]


def test_queue_renders_keda_on_vllms_in_flight_requests() -> None:
    isvc = _isvc(BASE + "    max_replicas: 4\n    autoscaling: {metric: queue, target: 16}\n")
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"][AUTOSCALER_CLASS] == "keda"
    assert "scaleMetric" not in predictor and "scaleTarget" not in predictor
    (metric,) = predictor["autoScaling"]["metrics"]
    ext = metric["external"]
    assert metric["type"] == "External" and ext["metric"]["backend"] == "prometheus"
    assert ext["metric"]["serverAddress"] == "https://thanos-querier.openshift-monitoring.svc.cluster.local:9092"
    assert ext["metric"]["namespace"] == "vllm-embeddings"
    query = ext["metric"]["query"]
    sel = 'namespace="vllm-embeddings",pod=~"minilm-embedding-predictor-[a-z0-9]+-[a-z0-9]+"'
    assert f"vllm:num_requests_running{{{sel}}}" in query and f"vllm:num_requests_waiting{{{sel}}}" in query
    assert query.startswith("sum(max by (pod, engine) (")
    assert ext["target"] == {"type": "Value", "value": "16"}
    assert ext["authenticationRef"] == {"authModes": "bearer",
                                        "authenticationRef": {"name": "inference-prometheus-auth"}}
    assert validate_isvc(_standard(isvc)) is None
    # KServe turns it into this ScaledObject trigger (keda_reconciler.go getKedaMetrics).
    so = autoscaler(predictor, {"name": "minilm-embedding-predictor", "namespace": "vllm-embeddings", "labels": {},
                                "annotations": {}, "ownerReferences": []}, "keda")
    assert so is not None and so["kind"] == "ScaledObject"
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 4)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "16"
    assert trigger["metadata"]["query"] == query and trigger["metadata"]["authModes"] == "bearer"
    assert trigger["authenticationRef"] == {"name": "inference-prometheus-auth"}


def test_queue_without_authentication_and_a_custom_prometheus() -> None:
    text = BASE + ("    max_replicas: 2\n    autoscaling:\n      metric: queue\n      target: 4\n"
                   "      prometheus_url: http://prometheus-operated.monitoring.svc:9090\n      authentication: null\n")
    ext = _isvc(text)["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]
    assert ext["metric"]["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    assert "authenticationRef" not in ext


def test_defaults_autoscaling_applies_to_every_model_and_a_model_replaces_it() -> None:
    text = (BASE.replace("defaults:\n", "defaults:\n  max_replicas: 3\n  autoscaling: {metric: queue, target: 8}\n")
            + "  - name: other\n    model_id: intfloat/e5-base-v2\n    autoscaling: {metric: cpu, target: 60}\n")
    a, b = resolve_models(parse_spec(text))
    assert a.autoscaling is not None and a.autoscaling.metric == "queue" and a.max_replicas == 3
    assert b.autoscaling is not None and b.autoscaling.metric == "cpu"


def test_rwo_cache_rolls_out_with_recreate() -> None:
    rwo = "cache: {access_mode: ReadWriteOnce}\n" + BASE
    assert _isvc(rwo)["spec"]["predictor"]["deploymentStrategy"] == {"type": "Recreate"}
    rwop = "cache: {access_mode: ReadWriteOncePod}\n" + BASE
    assert _isvc(rwop)["spec"]["predictor"]["deploymentStrategy"] == {"type": "Recreate"}
    for mode in ("ReadWriteMany", "null"):
        assert "deploymentStrategy" not in _isvc(f"cache: {{access_mode: {mode}}}\n" + BASE)["spec"]["predictor"]
    forced = rwo + "    deployment_strategy: RollingUpdate\n"
    assert _isvc(forced)["spec"]["predictor"]["deploymentStrategy"] == {"type": "RollingUpdate"}
    assert _has(_findings(forced), "warning", "the surge pod of each rollout cannot attach the volume")


def test_default_config_is_unchanged_by_the_new_keys() -> None:
    """poolserve.yaml sets no access mode: no Recreate, no autoscaler fields, nothing new."""
    for isvc in (o for o in render(load_spec(ROOT / "poolserve.yaml")).manifests if o["kind"] == "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        assert not {"deploymentStrategy", "imagePullSecrets", "scaleMetric", "autoScaling"} & set(predictor)
        assert AUTOSCALER_CLASS not in isvc["metadata"]["annotations"]


def test_image_pull_secrets_are_references() -> None:
    text = BASE.replace("defaults:\n", "defaults:\n  image_pull_secrets: [registry-creds]\n")
    assert _isvc(text)["spec"]["predictor"]["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert all(o["kind"] != "Secret" for o in render(parse_spec(text)).manifests)


def test_disruption_budget_only_with_several_replicas() -> None:
    text = BASE + "    replicas: 3\n    disruption_budget: {}\n"
    pdbs = [o for o in render(parse_spec(text)).manifests if o["kind"] == "PodDisruptionBudget"]
    assert len(pdbs) == 1
    pdb = pdbs[0]
    assert pdb["apiVersion"] == "policy/v1" and pdb["metadata"]["name"] == "minilm-embedding-predictor"
    assert pdb["spec"] == {"selector": {"matchLabels": {"serving.kserve.io/inferenceservice": "minilm-embedding",
                                                        "component": "predictor"}}, "maxUnavailable": 1}
    pct = BASE + "    replicas: 4\n    disruption_budget: {min_available: '50%'}\n"
    (pdb,) = [o for o in render(parse_spec(pct)).manifests if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdb["spec"]
    one = BASE + "    disruption_budget: {max_unavailable: 1}\n"
    assert all(o["kind"] != "PodDisruptionBudget" for o in render(parse_spec(one)).manifests)
    assert _has(_findings(one), "note", "disruption_budget not rendered")
    stuck = BASE + "    replicas: 2\n    disruption_budget: {max_unavailable: 0}\n"
    assert _has(_findings(stuck), "warning", "allows no eviction at all")


def test_pdb_and_pod_monitor_select_the_pods_kserve_labels() -> None:
    """Their selectors match the labels KServe's buildObjectMeta puts on predictor pods (the simulation's)."""
    from support.kserve_sim import predictor_objects

    spec = load_spec(ROOT / "tests" / "specs" / "autoscaling.yaml")
    rendered = render(spec)
    for name, (sr, isvc) in rendered.objects_by_model.items():
        deployment, _, _ = predictor_objects({**isvc, "metadata": {**isvc["metadata"], "uid": "u"}}, sr)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selectors = [o["spec"]["selector"]["matchLabels"] for o in rendered.manifests
                     if o["kind"] in ("PodDisruptionBudget", "PodMonitor") and o["metadata"]["name"].startswith(name)]
        assert selectors, name
        for sel in selectors:
            assert sel.items() <= pod_labels.items(), (name, sel, pod_labels)


# --- lint ------------------------------------------------------------------------------------------


def test_autoscaling_with_nothing_to_scale_is_an_error() -> None:
    text = BASE + "    replicas: 2\n    max_replicas: 2\n    autoscaling: {metric: queue, target: 8}\n"
    assert _has(_findings(text), "error", "max_replicas (2) <= replicas (2): the autoscaler can never add a pod")


def test_max_replicas_without_autoscaling_warns_about_kserves_cpu_default() -> None:
    assert _has(_findings(BASE + "    max_replicas: 3\n"), "warning", "KServe's default HPA scales on CPU at 80 %")


def test_rwo_cache_with_several_replicas() -> None:
    text = "cache: {access_mode: ReadWriteOnce}\n" + BASE + (
        "    max_replicas: 4\n    autoscaling: {metric: queue, target: 8}\n")
    assert _has(_findings(text), "warning", "max_replicas 4 with a ReadWriteOnce cache (vllm-model-cache): "
                                            "autoscaled pods must run on one node (Multi-Attach")
    rwop = text.replace("ReadWriteOnce}", "ReadWriteOncePod}")
    assert _has(_findings(rwop), "error", "only one pod can ever mount it")


def test_queue_autoscaling_needs_something_to_scrape_vllm() -> None:
    text = BASE + "    max_replicas: 2\n    autoscaling: {metric: queue, target: 8}\n"
    assert _has(_findings(text), "note", "KEDA reads vLLM's metrics from Prometheus")
    assert not _has(_findings("monitoring: {enabled: true}\n" + text), "note", "KEDA reads vLLM's metrics")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda i: i["spec"]["predictor"].update(scaleMetric="cpu"), "ScaleMetric is not supported for KEDA"),
        (lambda i: i["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]["metric"].pop("query"),
         "the query should not be empty"),
        (lambda i: i["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]["target"].pop("value"),
         "the target threshold value should not be empty"),
        (lambda i: i["metadata"]["annotations"].update({AUTOSCALER_CLASS: "kedaa"}),
         "is not a supported autoscaler class type"),
        (lambda i: i["spec"]["predictor"].update(minReplicas=5), "'MinReplicas' cannot be greater than MaxReplicas"),
    ],
)
def test_lint_reports_what_kserves_validating_webhook_rejects(edit: object, fragment: str) -> None:
    """lint's webhook rules and the independent reading of KServe's validator refuse the same objects."""
    isvc = _isvc(BASE + "    max_replicas: 4\n    autoscaling: {metric: queue, target: 16}\n")
    assert kserve_webhook_problems(isvc) == [] and validate_isvc(_standard(isvc)) is None
    bad = copy.deepcopy(isvc)
    edit(bad)  # type: ignore[operator]
    problems = kserve_webhook_problems(bad)
    assert any(fragment in p for p in problems), problems
    webhook = validate_isvc(_standard(bad))
    assert webhook is not None and fragment.split(" (")[0] in webhook


def test_lint_hpa_target_range_matches_the_webhook() -> None:
    isvc = _isvc(BASE + "    max_replicas: 4\n    autoscaling: {metric: memory, target: 90}\n")
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["scaleTarget"] = 150  # memory too: Go's && binds tighter than ||
    assert any("[1-100] integer" in p for p in kserve_webhook_problems(bad))
    assert validate_isvc(_standard(bad)) == "the target utilization percentage should be a [1-100] integer"


# --- status ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "annotations_only", "expected"),
    [
        ("", False, None),  # pinned: KServe's default HPA has min == max
        ("    max_replicas: 3\n", False, (1, 3, "cpu 80%")),  # KServe's default CPU HPA
        ("    replicas: 2\n    max_replicas: 5\n    autoscaling: {metric: memory, target: 85}\n", False,
         (2, 5, "memory 85%")),
        ("    max_replicas: 4\n    autoscaling: {metric: queue, target: 16}\n", False, (1, 4, "queue 16/replica")),
        ("    max_replicas: 4\n", True, None),  # autoscalerClass none: fixed at minReplicas
    ],
)
def test_status_says_how_the_replica_count_can_move(extra: str, annotations_only: bool, expected: object) -> None:
    from poolserve.targets.cluster.readiness import autoscaler_of

    isvc = _isvc(BASE + extra)
    if annotations_only:
        isvc["metadata"]["annotations"][AUTOSCALER_CLASS] = "none"
    assert autoscaler_of(isvc) == expected


def test_status_table_shows_the_range_and_metric() -> None:
    from rich.console import Console

    from poolserve.cli.output import status_table
    from poolserve.targets.base import ModelStatus

    rows = [ModelStatus(name="minilm", target="cluster", phase="Ready", ready=True, replicas_ready=2,
                        replicas_desired=3, replicas_current=3, replicas_min=1, replicas_max=4,
                        autoscaler="queue 16/replica"),
            ModelStatus(name="granite", target="cluster", phase="Ready", ready=True, replicas_ready=1,
                        replicas_desired=1, replicas_current=1)]
    console = Console(width=200, record=True)
    console.print(status_table(rows))
    text = console.export_text()
    assert "2/3 (1-4 queue 16/replica)" in text
    granite = next(ln for ln in text.splitlines() if ln.startswith("granite"))
    assert " 1/1 " in granite and "(" not in granite


def test_a_model_opts_out_of_defaults_with_null() -> None:
    text = (BASE.replace("defaults:\n", "defaults:\n  max_replicas: 3\n  autoscaling: {metric: queue, target: 8}\n"
                         "  disruption_budget: {max_unavailable: 1}\n  hardware_profile: nvidia-l4\n")
            + "    autoscaling: null\n    disruption_budget: null\n    hardware_profile: null\n"
            + "  - {name: other, model_id: intfloat/e5-base-v2}\n")
    mine, other = resolve_models(parse_spec(text))
    assert mine.autoscaling is None and mine.disruption_budget is None and mine.hardware_profile is None
    assert other.autoscaling is not None and other.disruption_budget is not None and other.hardware_profile
