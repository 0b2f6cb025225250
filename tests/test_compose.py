"""KServe composition: runtime container + InferenceService overlay, exactly as the controller merges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from poolserve.errors import LintError
from poolserve.kserve.compose import compose, merge_containers, substitute

RUNTIME_C: dict[str, Any] = {
    "name": "kserve-container",
    "image": "vllm/vllm-openai:v0.32.0",
    "command": ["python", "-m", "vllm.entrypoints.openai.api_server"],
    "args": ["--port=8080", "--dtype=float16"],
    "env": [{"name": "HOME", "value": "/tmp/home"}, {"name": "HF_HOME", "value": "/models/huggingface"}],
    "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "2"}},
    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
    "volumeMounts": [{"name": "cache", "mountPath": "/models"}],
    "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
}


def _sr(container: dict[str, Any] | None = None, volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "rt"}, "spec": {"containers": [container or RUNTIME_C],
                                                   "volumes": volumes or [{"name": "cache", "emptyDir": {}}]}}


def _isvc(model: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "minilm", "namespace": "ns", **meta},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"}, "runtime": "rt", **model}}}}


def test_args_are_runtime_then_isvc() -> None:
    c = compose(_sr(), _isvc({"args": ["--model=x", "--dtype=bfloat16"]}))
    assert c.container["args"] == ["--port=8080", "--dtype=float16", "--model=x", "--dtype=bfloat16"]
    assert c.argv[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]


def test_command_is_replaced_only_when_set() -> None:
    assert compose(_sr(), _isvc({})).container["command"] == RUNTIME_C["command"]
    assert compose(_sr(), _isvc({"command": ["vllm", "serve"]})).container["command"] == ["vllm", "serve"]


def test_env_merges_by_name_isvc_wins_order_kept() -> None:
    c = compose(_sr(), _isvc({"env": [{"name": "HF_HOME", "value": "/other"}, {"name": "NEW", "value": "1"}]}))
    names = [e["name"] for e in c.container["env"]]
    assert names == ["HOME", "HF_HOME", "NEW", "INFERENCE_SERVICE_NAME"]
    assert c.env["HF_HOME"] == "/other" and c.env["INFERENCE_SERVICE_NAME"] == "minilm"


def test_env_value_from_overlay_replaces_value() -> None:
    ref = {"secretKeyRef": {"name": "s", "key": "k"}}
    c = compose(_sr(), _isvc({"env": [{"name": "HOME", "valueFrom": ref}]}))
    home = next(e for e in c.container["env"] if e["name"] == "HOME")
    assert home == {"name": "HOME", "valueFrom": ref}


def test_resources_merge_key_by_key_runtime_keys_survive() -> None:
    c = compose(_sr(), _isvc({"resources": {"limits": {"cpu": "4", "memory": "8Gi"}, "requests": {"cpu": "1"}}}))
    assert c.container["resources"] == {"limits": {"nvidia.com/gpu": "1", "cpu": "4", "memory": "8Gi"},
                                        "requests": {"cpu": "1"}}


def test_volume_mounts_by_mount_path_and_pod_volumes_by_name() -> None:
    sr = _sr()
    isvc = _isvc({"volumeMounts": [{"name": "other", "mountPath": "/models"}, {"name": "x", "mountPath": "/x"}]})
    isvc["spec"]["predictor"]["volumes"] = [{"name": "cache", "persistentVolumeClaim": {"claimName": "p"}}]
    c = compose(sr, isvc)
    assert c.container["volumeMounts"] == [{"name": "other", "mountPath": "/models"}, {"name": "x", "mountPath": "/x"}]
    # A raw strategic-merge patch has no $retainKeys directive: both sources survive, and the API
    # server would reject the pod. That is KServe's behaviour, so compose reproduces it.
    assert c.volumes == [{"name": "cache", "emptyDir": {}, "persistentVolumeClaim": {"claimName": "p"}}]


def test_probes_merge_field_by_field_and_name_is_kept() -> None:
    c = compose(_sr(), _isvc({"readinessProbe": {"periodSeconds": 5}, "name": ""}))
    assert c.container["readinessProbe"] == {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 5}
    assert c.container["name"] == "kserve-container"


def test_image_from_isvc_wins() -> None:
    assert compose(_sr(), _isvc({"image": "mine:1"})).container["image"] == "mine:1"


def test_placeholders_in_runtime_and_isvc_args() -> None:
    sr = _sr({**RUNTIME_C, "args": ["--served-model-name={{.Name}}", "--ns={{ .Namespace }}"]})
    isvc = _isvc({"args": ['--label={{.Labels.team}}', '--a={{index .Annotations "x/y"}}']},
                 labels={"team": "search"}, annotations={"x/y": "a&b"})
    assert compose(sr, isvc).container["args"] == [
        "--served-model-name=minilm", "--ns=ns", "--label=search", "--a=a&amp;b"]


def test_substitute_escapes_like_go_html_template() -> None:
    meta = {"name": "n", "labels": {"v": "<a href='x'>+\"</a>"}}
    assert substitute("{{.Labels.v}}", meta) == "&lt;a href=&#39;x&#39;&gt;&#43;&#34;&lt;/a&gt;"


def test_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(LintError, match="failed to replace placeholder"):
        compose(_sr(), _isvc({"args": ["--chat-template={{ messages }}"]}))


def test_runtime_without_kserve_container() -> None:
    with pytest.raises(LintError, match="no container named kserve-container"):
        compose(_sr({**RUNTIME_C, "name": "main"}), _isvc({}))


def test_merge_containers_ignores_empty_overlay_fields() -> None:
    merged = merge_containers(RUNTIME_C, {"args": [], "env": None, "command": []})
    assert merged["args"] == RUNTIME_C["args"] and merged["command"] == RUNTIME_C["command"]


def _storage_config(namespace: str, name: str) -> dict[str, object] | None:
    """A ``storage-config`` Secret with the entries the specs' data connections name."""
    return {"data": {"default": "e30=", "aws-models": "e30="}} if name == "storage-config" else None


@pytest.mark.parametrize("spec_path", [Path(__file__).resolve().parents[1] / "poolserve.yaml",
                                       *sorted((Path(__file__).parent / "specs").glob("*.yaml"))],
                         ids=lambda p: p.stem)
def test_compose_agrees_with_kserves_own_merge(spec_path: Path) -> None:
    """compose() against an independent reading of KServe v0.20's MergeRuntimeContainers/MergePodSpec.

    ``support.kserve_sim.predictor_objects`` and the pod mutator ``support.kserve_webhooks.mutate_pod``
    (storageUri: the storage initializer or modelcar) were written from KServe's source for the envtest
    cluster, not from compose(); the Deployment builder's defaults (setDefaultPodSpec) are all that may differ.
    """
    from poolserve.config.load import load_spec
    from poolserve.kserve.render import render
    from support.kserve_sim import predictor_objects
    from support.kserve_webhooks import mutate_pod

    rendered = render(load_spec(spec_path))
    runtimes = {o["metadata"]["name"]: o for o in rendered.manifests if o["kind"] == "ServingRuntime"}
    isvcs = [o for o in rendered.manifests if o["kind"] == "InferenceService"]
    assert isvcs
    for isvc in isvcs:
        sr = runtimes[isvc["spec"]["predictor"]["model"]["runtime"]]
        deployment, _, _ = predictor_objects({**isvc, "metadata": {**isvc["metadata"], "uid": "uid-1"}}, sr)
        template = deployment["spec"]["template"]
        pod = mutate_pod({"metadata": {**template["metadata"], "namespace": "ns"}, "spec": template["spec"]},
                         secret=_storage_config)["spec"]
        composed = compose(sr, isvc)
        defaults = {"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"}
        assert pod["containers"][0] == {**defaults, **composed.container}, isvc["metadata"]["name"]
        assert pod.get("volumes") == composed.volumes, isvc["metadata"]["name"]
