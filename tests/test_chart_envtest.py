"""The chart on a real API server (the envtest cluster: kube-apiserver with the KServe CRDs, controller-manager,
scheduler, the simulated KServe and kubelet), with the real helm binary.

- `helm install --dry-run=server` for every config in tests/specs/ and poolserve.yaml: the API server
  (CRD schemas, admission, KServe's defaulting webhook) accepts every object the chart makes.
- A real `helm install`, then poolserve's own commands on the Helm release: wait, status, test, logs,
  bench; `helm test` (its hook Pods, and their script through the Service URL); `helm upgrade`;
  `helm uninstall`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from poolserve.config.load import load_spec
from support.envcluster import EnvCluster
from support.fake_vllm import FakeVllm
from support.helm import CHART, helm, load_objects
from support.kubeapi import path
from support.kubelet_sim import Completes
from support.network import PodServers, ServiceProxy
from support.poolcli import cli, error_line

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "poolserve.yaml", *sorted((ROOT / "tests" / "specs").glob("*.yaml"))]
ISVC = "serving.kserve.io/inferenceservice"
MINILM, GRANITE, RERANKER = "minilm-embedding", "granite-embedding", "msmarco-reranker"


def kube_helm(kube: EnvCluster, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return helm(*args, "--kubeconfig", kube.kubeconfig, check=check, timeout_s=180)


PLURALS = {"ServingRuntime": "servingruntimes", "InferenceService": "inferenceservices", "Pod": "pods",
           "ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings", "Secret": "secrets",
           "Template": "templates", "PodDisruptionBudget": "poddisruptionbudgets", "PodMonitor": "podmonitors"}


@pytest.mark.apiserver_only
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_install_dry_run_server_is_accepted(kube: EnvCluster, config: Path) -> None:
    spec = load_spec(config)
    ns = kube.namespace(pvc=spec.cache.pvc)
    dash = None
    args: list[str | Path] = ["install", "poolserve", CHART, "-f", config, "--namespace", ns, "--set",
                              f"namespace={ns}", "--dry-run=server"]
    for m in spec.models:  # the claims pvc:// storage URIs name (the chart checks that they exist)
        if m.storage_uri and m.storage_uri.startswith("pvc://"):
            kube.bound_pvc(ns, m.storage_uri.removeprefix("pvc://").partition("/")[0], ("ReadWriteMany",))
    if spec.dashboard.templates and spec.dashboard.templates_scope == "global":
        # Global Templates go to the dashboard's namespace: one of this test's own.
        dash = kube.namespace(f"{ns}-dash", pvc=None)
        args += ["--set", f"dashboard.templates_namespace={dash}"]
    out = kube_helm(kube, *args)
    assert "STATUS: pending-install" in out.stdout, out.stdout[:500]
    # lookup reached the API server: the namespace exists, without the dashboard's labels.
    assert f"WARNING: namespace {ns} lacks the OpenShift AI dashboard's labels" in out.stdout
    hooks, manifest = out.stdout.split("HOOKS:", 1)[1].split("MANIFEST:", 1)
    objects = load_objects(manifest.split("NOTES:", 1)[0])
    assert {o["kind"] for o in objects} >= {"ServingRuntime", "InferenceService"}
    assert kube.api.list(path("serving.kserve.io/v1beta1", "inferenceservices", ns)) == []  # nothing created
    # helm's --dry-run=server only lets lookup read the cluster; it sends no object (helm/helm#12510). So each
    # object goes to the API server here, as a server-side dry run: CRD schemas, admission, KServe's webhook.
    for obj in [*objects, *(p for p in load_objects(hooks) if not p["spec"].get("serviceAccountName"))]:
        kube.api.create(path(obj["apiVersion"], PLURALS[obj["kind"]], obj["metadata"].get("namespace", ns)), obj,
                        dryRun="All")
    if spec.dashboard.templates:
        assert "Template" in {o["kind"] for o in objects}
    if dash:
        kube.delete_namespace(dash)


@pytest.mark.apiserver_only
def test_missing_claims_fail_the_install_before_anything_is_created(kube: EnvCluster, tmp_path: Path) -> None:
    # What poolserve deploy's preflight refuses: a pvc:// storage_uri naming no claim (the pod would wait forever).
    ns = kube.namespace()
    values = tmp_path / "values.yaml"
    values.write_text("models:\n  - name: m\n    model_id: sentence-transformers/all-MiniLM-L6-v2\n"
                      "    storage_uri: pvc://model-store/minilm\n")
    for dry_run in (["--dry-run=server"], []):
        out = kube_helm(kube, "install", "poolserve", CHART, "-f", values, "-n", ns, *dry_run, check=False)
        assert out.returncode != 0
        assert f"PersistentVolumeClaim {ns}/model-store (m's storage_uri) does not exist" in out.stderr, out.stderr
    assert kube.api.list(path("serving.kserve.io/v1beta1", "inferenceservices", ns)) == []
    assert kube_helm(kube, "list", "-n", ns, "-q").stdout.strip() == ""
    kube.bound_pvc(ns, "model-store", ("ReadWriteMany",))
    assert kube_helm(kube, "install", "poolserve", CHART, "-f", values, "-n", ns, "--dry-run=server").returncode == 0
    # The cache PVC too, and its access mode against the pods that mount it.
    other = kube.namespace(pvc=None)
    out = kube_helm(kube, "install", "poolserve", CHART, "-f", values, "-n", other, "--dry-run=server", check=False)
    assert f"PersistentVolumeClaim {other}/vllm-model-cache (cache.pvc) does not exist" in out.stderr, out.stderr
    kube.bound_pvc(other, "vllm-model-cache", ("ReadWriteOncePod",))
    out = kube_helm(kube, "install", "poolserve", CHART, "-f", values, "-n", other, "--dry-run=server",
                    "--set-json", 'models=[{"name": "m", "model_id": "sentence-transformers/all-MiniLM-L6-v2", '
                    '"max_replicas": 2}]', check=False)
    assert (f"PersistentVolumeClaim {other}/vllm-model-cache is ReadWriteOncePod but up to 2 pods mount it"
            in out.stderr), out.stderr


@pytest.mark.apiserver_only
def test_what_only_the_api_server_rejects_fails_the_install_not_the_dry_run(kube: EnvCluster, tmp_path: Path) -> None:
    # A quantity the config's schema takes (any string) but the InferenceService CRD's pattern refuses: the chart
    # cannot check CRD schemas (poolserve lint --crd-dir does). helm's --dry-run=server passes it; the install fails,
    # naming the field, and leaves a failed release that `helm uninstall` removes.
    ns = kube.namespace()
    values = tmp_path / "values.yaml"
    values.write_text("models:\n  - name: m\n    model_id: sentence-transformers/all-MiniLM-L6-v2\n"
                      "    resources: {requests: {cpu: lots}}\n")
    args = ("install", "poolserve", CHART, "-f", values, "-n", ns)
    assert kube_helm(kube, *args, "--dry-run=server").returncode == 0
    out = kube_helm(kube, *args, check=False)
    assert out.returncode != 0
    assert 'InferenceService.serving.kserve.io \\"m\\" is invalid' in out.stderr or \
        'InferenceService.serving.kserve.io "m" is invalid' in out.stderr, out.stderr
    assert "spec.predictor.model.resources.requests.cpu" in out.stderr, out.stderr
    kube_helm(kube, "uninstall", "poolserve", "-n", ns)


# --------------------------------------------------------------------------------------------------


@pytest.fixture
def network(kube: EnvCluster, monkeypatch: pytest.MonkeyPatch) -> Any:
    pods = PodServers()
    proxy = ServiceProxy(kube.api, pods)
    for var in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, proxy.url)
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    yield pods, proxy
    proxy.stop()
    pods.stop()


def test_a_helm_release_works_with_poolserves_commands_and_helm_test(kube: EnvCluster, ns: str, network: Any,
                                                                     tmp_path: Path) -> None:
    pods_net, proxy = network
    # The user's values file is the poolserve config they run poolserve with.
    config = tmp_path / "poolserve.yaml"
    config.write_text((ROOT / "poolserve.yaml").read_text().replace("namespace: vllm-embeddings\n",
                                                                     f"namespace: {ns}\n"))

    def run(*args: str) -> Any:
        return cli(*args, kubeconfig=kube.kubeconfig, config=config)

    out = kube_helm(kube, "install", "poolserve", CHART, "-f", config, "-n", ns)
    assert "STATUS: deployed" in out.stdout
    isvc = kube.api.get(path("serving.kserve.io/v1beta1", "inferenceservices", ns, MINILM))
    assert isvc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert isvc["metadata"]["annotations"]["meta.helm.sh/release-name"] == "poolserve"

    r = run("wait", "--timeout", "90s")
    assert r.exit_code == 0, r.stderr
    st = {s["name"]: s for s in json.loads(run("status", "-o", "json").stdout)}
    assert {s["phase"] for s in st.values()} == {"Ready"}
    assert st[MINILM]["url"] == f"http://{MINILM}-predictor.{ns}.svc.cluster.local"

    def pod_ip(model: str) -> str:
        (pod,) = kube.api.list(path("v1", "pods", ns), labelSelector=f"{ISVC}={model}")
        return str(pod["status"]["podIP"])

    embed = FakeVllm("embed", ("sentence-transformers/all-MiniLM-L6-v2", MINILM), 384, 256)
    pods_net.serve(pod_ip(MINILM), embed)
    pods_net.serve(pod_ip(GRANITE), FakeVllm("embed", ("ibm-granite/granite-embedding-278m-multilingual", GRANITE),
                                             768, 512))
    pods_net.serve(pod_ip(RERANKER), FakeVllm("score", ("cross-encoder/ms-marco-MiniLM-L12-v2", RERANKER),
                                              max_model_len=512))
    for model in (MINILM, RERANKER):
        r = run("test", model)
        assert r.exit_code == 0, r.stdout + r.stderr
    logs = run("logs", MINILM)
    assert logs.exit_code == 0 and "Application startup complete." in logs.stdout
    bench = run("bench", MINILM, "-n", "10", "--warmup", "1", "--concurrency", "2", "--batch-size", "2", "-o", "-")
    assert bench.exit_code == 0, bench.stderr
    assert json.loads(bench.stdout)["settings"][0]["errors"] == 0

    # helm test: the hook Pods, run by the (simulated) kubelet...
    kube.kubelet.behave(ns, Completes(logs=("ok",)), selector={"app.kubernetes.io/component": "test"})
    out = kube_helm(kube, "test", "poolserve", "-n", ns, "--timeout", "60s")
    assert out.returncode == 0
    for model in (MINILM, GRANITE, RERANKER):
        assert f"poolserve-test-{model}" in out.stdout
    # ...and what each one runs, here through the Service URL, as in the cluster.
    for model in (MINILM, GRANITE, RERANKER):
        pod = kube.api.get(path("v1", "pods", ns, f"poolserve-test-{model}"))
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        proc = subprocess.run([sys.executable, *container["command"][1:]], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"ok: {model} at http://{model}-predictor.{ns}.svc.cluster.local:")
    assert (f"{MINILM}-predictor.{ns}.svc.cluster.local:80", f"{pod_ip(MINILM)}:8080") in proxy.routes

    # poolserve deploy and delete leave Helm's objects to Helm: one line, nothing changed.
    r = run("deploy", "--no-wait")
    assert r.exit_code == 6
    assert error_line(r) == (f"error: ServingRuntime {ns}/vllm-embedding-runtime (and 4 more) is managed by Helm "
                             f"(release poolserve): use `helm upgrade poolserve -n {ns}`, or --force to take it over")
    r = run("delete", MINILM)
    assert r.exit_code == 6
    assert f"use `helm uninstall poolserve -n {ns}`, or --force" in error_line(r)
    assert kube.api.get(path("serving.kserve.io/v1beta1", "inferenceservices", ns, MINILM)) is not None

    # helm upgrade with a changed config; poolserve still reads the release.
    config.write_text(config.read_text().replace("max_model_len: 256", "max_model_len: 128"))
    kube_helm(kube, "upgrade", "poolserve", CHART, "-f", config, "-n", ns)
    isvc = kube.api.get(path("serving.kserve.io/v1beta1", "inferenceservices", ns, MINILM))
    assert "--max-model-len=128" in isvc["spec"]["predictor"]["model"]["args"]
    assert run("wait", "--timeout", "90s").exit_code == 0

    kube_helm(kube, "uninstall", "poolserve", "-n", ns, "--wait", "--timeout", "60s")
    assert kube.api.list(path("serving.kserve.io/v1alpha1", "servingruntimes", ns)) == []
    r = run("status", "-o", "json")
    assert {s["phase"] for s in json.loads(r.stdout)} == {"NotDeployed"}, r.stdout


@pytest.mark.apiserver_only
def test_create_namespace_keeps_the_namespace_on_uninstall(kube: EnvCluster) -> None:
    ns = f"helm-ns-{os.getpid() % 1000}"
    kube_helm(kube, "install", "poolserve", CHART, "-n", ns, "--create-namespace", "--set",
              "helm.create_namespace=true", "--set", "dashboard.namespace_display_name=Search", "--no-hooks")
    try:
        live = kube.api.get(f"/api/v1/namespaces/{ns}")
        assert live["metadata"]["labels"]["opendatahub.io/dashboard"] == "true"
        assert live["metadata"]["labels"]["modelmesh-enabled"] == "false"
        assert live["metadata"]["annotations"]["openshift.io/display-name"] == "Search"
        kube_helm(kube, "uninstall", "poolserve", "-n", ns)
        live = kube.api.get(f"/api/v1/namespaces/{ns}")
        assert live is not None and not live["metadata"].get("deletionTimestamp")  # helm.sh/resource-policy: keep
    finally:
        kube.delete_namespace(ns)



def test_wait_after_an_inference_service_that_came_before_its_runtime(kube: EnvCluster, ns: str,
                                                                    tmp_path: Path) -> None:
    # helm install creates the InferenceServices before the ServingRuntimes (kinds Helm does not know are
    # installed alphabetically). KServe may reconcile in between: InvalidSpec, RuntimeNotRecognized and an
    # InternalError event, then it retries. `poolserve wait` must not call that a failure once the runtime is there.
    config = tmp_path / "poolserve.yaml"
    config.write_text("runtimes: [{name: vllm-embedding-runtime, task: embed}]\n"
                      f"namespace: {ns}\nmodels: [{{name: m, model_id: sentence-transformers/all-MiniLM-L6-v2}}]\n")
    objects = load_objects(helm("template", "poolserve", CHART, "-f", config, "-n", ns, "--skip-tests").stdout)
    by_kind = {o["kind"]: o for o in objects}
    isvc_path = path("serving.kserve.io/v1beta1", "inferenceservices", ns)
    kube.api.create(isvc_path, by_kind["InferenceService"])
    kube.wait("KServe's RuntimeNotRecognized", lambda: (kube.api.get(f"{isvc_path}/m").get("status") or {}).get(
        "modelStatus", {}).get("lastFailureInfo", {}).get("reason") == "RuntimeNotRecognized", timeout_s=30)
    kube.api.create(path("serving.kserve.io/v1alpha1", "servingruntimes", ns), by_kind["ServingRuntime"])
    r = cli("wait", "--timeout", "90s", kubeconfig=kube.kubeconfig, config=config)
    assert r.exit_code == 0, r.stdout + r.stderr


@pytest.mark.apiserver_only
def test_stop_and_start_leave_helms_inferenceservices_to_helm(kube: EnvCluster, ns: str, tmp_path: Path) -> None:
    # poolserve start would take the stop annotation over from Helm (server-side apply, forced), and the next
    # helm upgrade of a model the values mark stopped then fails: "conflict with \"poolserve\"". So stop and
    # start refuse, naming the values key; the values and helm upgrade stop and start a Helm release.
    config = tmp_path / "poolserve.yaml"
    config.write_text((ROOT / "tests" / "specs" / "stopped.yaml").read_text().replace(
        "namespace: stopped-models\n", f"namespace: {ns}\n"))

    def run(*args: str) -> Any:
        return cli(*args, kubeconfig=kube.kubeconfig, config=config)

    def stop_annotation(model: str) -> str | None:
        isvc = kube.api.get(path("serving.kserve.io/v1beta1", "inferenceservices", ns, model))
        return (isvc["metadata"].get("annotations") or {}).get("serving.kserve.io/stop")

    kube_helm(kube, "install", "poolserve", CHART, "-f", config, "-n", ns)
    assert stop_annotation("reranker") == "true" and stop_annotation("minilm") is None
    for verb, model in (("start", "reranker"), ("stop", "minilm")):
        r = run(verb, model, *(["--no-wait"] if verb == "start" else []))
        assert r.exit_code == 6, r.stdout + r.stderr
        assert error_line(r) == (f"error: InferenceService {ns}/{model} is managed by Helm (release poolserve): set "
                                 f"models[].stopped in the values and use `helm upgrade poolserve -n {ns}`, or "
                                 "--force to take it over")
    assert stop_annotation("reranker") == "true" and stop_annotation("minilm") is None
    # The values say it: Helm drops the annotation it applied, and KServe starts the model.
    config.write_text(config.read_text().replace("    stopped: true\n", ""))
    kube_helm(kube, "upgrade", "poolserve", CHART, "-f", config, "-n", ns)
    assert stop_annotation("reranker") is None
    # --force flips it anyway, like the dashboard's Stop; Helm leaves an annotation it never applied.
    assert run("stop", "minilm", "--force").exit_code == 0
    assert stop_annotation("minilm") == "true"
    kube_helm(kube, "upgrade", "poolserve", CHART, "-f", config, "-n", ns)
    assert stop_annotation("minilm") == "true"
    kube_helm(kube, "uninstall", "poolserve", "-n", ns)
