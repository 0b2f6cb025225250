"""Model storage URIs: parsing, the rendered storageUri and vLLM args, KServe's mount, and the lint rules.

The mount KServe adds is checked against an independent reading of its pod mutator
(``support.kserve_webhooks.mutate_pod``); the "must be unique" rule is the API server's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from poolserve.config import storage
from poolserve.config.load import load_spec, parse_spec
from poolserve.errors import SpecError
from poolserve.kserve.lint import Finding, lint
from poolserve.kserve.render import render
from poolserve.vllm.args import served_model_names
from support.configs import ONE_MODEL

ROOT = Path(__file__).resolve().parents[1]
BASE = ONE_MODEL


def _findings(text: str) -> list[Finding]:
    spec = parse_spec(text)
    return list(lint(spec, render(spec)).findings)


def _has(findings: list[Finding], severity: str, fragment: str) -> bool:
    return any(f.severity == severity and fragment in f.message for f in findings)


@pytest.mark.parametrize(
    ("uri", "scheme", "location", "path"),
    [
        ("pvc://model-store/org/model", "pvc", "model-store", "org/model"),
        ("pvc://model-store", "pvc", "model-store", ""),
        ("oci://quay.io/org/modelcar:1.0", "oci", "quay.io/org/modelcar:1.0", ""),
        ("oci://registry.local:5000/m@sha256:" + "a" * 64, "oci", "registry.local:5000/m@sha256:" + "a" * 64, ""),
        ("hf://BAAI/bge-m3", "hf", "BAAI/bge-m3", ""),
        ("hf://BAAI/bge-m3:5617a9f", "hf", "BAAI/bge-m3", "5617a9f"),
        ("s3://my-bucket/models/minilm/", "s3", "my-bucket", "models/minilm"),
    ],
)
def test_parse(uri: str, scheme: str, location: str, path: str) -> None:
    parsed = storage.parse(uri)
    assert (parsed.scheme, parsed.location, parsed.path) == (scheme, location, path)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("gs://bucket/model", "unknown URI scheme 'gs://': poolserve supports pvc://, oci://, hf:// and s3://"),
        ("/models/minilm", "is not a URI"),
        ("pvc://Model_Store/x", "'Model_Store' is not a PVC name"),
        ("pvc://store/../etc", "'..' is not allowed"),
        ("hf://sentence-transformers", "expected hf://OWNER/MODEL[:REVISION]"),
        ("hf://a/b/c", "expected hf://OWNER/MODEL[:REVISION]"),
        ("s3://B/x", "is not an S3 bucket name"),
        ("oci://modelcar", "expected oci://REGISTRY/REPOSITORY:TAG"),
    ],
)
def test_bad_uris(uri: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as exc:
        storage.parse(uri)
    assert fragment in str(exc.value)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("    storage_uri: gs://bucket/minilm\n",
         "poolserve.yaml:8: models[0].storage_uri: unknown URI scheme 'gs://'"),
        ("    storage_uri: hf://minilm\n", "poolserve.yaml:8: models[0].storage_uri: 'hf://minilm': expected hf://"),
        ("    storage_uri: pvc://store/m\n    data_connection: aws\n",
         "poolserve.yaml:9: models[0].data_connection: only used with s3:// (storage_uri is pvc://)"),
        ("    data_connection: aws\n", "poolserve.yaml:8: models[0].data_connection: needs storage_uri: s3://"),
        ("    storage_uri: 42\n", "poolserve.yaml:8: models[0].storage_uri: Input should be a valid string"),
    ],
)
def test_bad_storage_keys_are_one_line_errors(extra: str, expected: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(BASE + extra)
    assert str(exc.value).startswith(expected), str(exc.value)


@pytest.mark.parametrize("uri", ["pvc://model-store/minilm", "oci://quay.io/org/minilm:1", "hf://org/minilm",
                                 "s3://models/minilm"])
def test_vllm_loads_from_mnt_models_and_keeps_its_served_names(uri: str) -> None:
    spec = parse_spec(BASE + f"    storage_uri: {uri}\n")
    rendered = render(spec)
    isvc = next(o for o in rendered.manifests if o["kind"] == "InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"] == uri
    c = rendered.compose("minilm-embedding")
    # `vllm serve` (the default image's entrypoint) takes the model first; no --model is left to disagree.
    assert c.argv[:3] == ["vllm", "serve", "/mnt/models"] and not any(a.startswith("--model") for a in c.argv)
    assert served_model_names(c.argv) == ["sentence-transformers/all-MiniLM-L6-v2", "minilm-embedding"]
    # A storageUri also keeps KServe's model agent away, whatever the format (IsMMSPredictor).
    assert not _has(_findings(BASE + f"    storage_uri: {uri}\n"), "note", "model-agent")


@pytest.mark.parametrize(("image", "command", "model_args"), [
    # vllm serve from 0.11.1: the model is the command's positional argument, no --model.
    ("vllm/vllm-openai:v0.11.1", ["vllm", "serve", "/mnt/models"], []),
    # The api_server module before: it takes the model only as --model (a positional one is ignored).
    ("vllm/vllm-openai:v0.10.2", ["python", "-m", "vllm.entrypoints.openai.api_server"], ["--model=/mnt/models"]),
])
def test_mnt_models_is_where_each_versions_entrypoint_takes_the_model(
        image: str, command: list[str], model_args: list[str]) -> None:
    spec = parse_spec(f"image: {image}\n" + BASE + "    storage_uri: pvc://model-store/minilm\n")
    c = render(spec).compose("minilm-embedding")
    assert c.argv[:len(command)] == command
    assert [a for a in c.argv if a.startswith("--model")] == model_args
    assert served_model_names(c.argv) == ["sentence-transformers/all-MiniLM-L6-v2", "minilm-embedding"]


def test_the_hf_cache_on_the_pvc_stays_the_default() -> None:
    rendered = render(load_spec(ROOT / "poolserve.yaml"))
    for isvc in (o for o in rendered.manifests if o["kind"] == "InferenceService"):
        assert "storageUri" not in isvc["spec"]["predictor"]["model"]
        model = isvc["spec"]["predictor"]["model"]
        assert "/mnt/models" not in [*model.get("command", []), *model["args"]]


def test_s3_credentials_are_a_data_connection_reference_never_a_value() -> None:
    text = BASE + "    storage_uri: s3://models/minilm\n    data_connection: aws-models\n"
    rendered = render(parse_spec(text))
    isvc = next(o for o in rendered.manifests if o["kind"] == "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["storage"] == {"key": "aws-models"}
    assert all(o["kind"] != "Secret" for o in rendered.manifests)
    dumped = repr(rendered.manifests)
    assert "AWS_SECRET_ACCESS_KEY" not in dumped and "stringData" not in dumped


@pytest.mark.parametrize(
    ("uri", "mount"),
    [
        ("pvc://model-store/org/m", {"name": "kserve-pvc-source", "mountPath": "/mnt/models", "subPath": "org/m",
                                     "readOnly": True}),
        ("hf://org/m", {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}),
        ("s3://models/m", {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}),
        ("oci://quay.io/org/m:1", {"name": "kserve-provision-location", "mountPath": "/mnt"}),
    ],
)
def test_compose_has_the_mount_kserves_pod_mutator_adds(uri: str, mount: dict) -> None:
    from support.kserve_sim import predictor_objects
    from support.kserve_webhooks import mutate_pod

    rendered = render(parse_spec(BASE + f"    storage_uri: {uri}\n"))
    sr, isvc = rendered.objects_by_model["minilm-embedding"]
    composed = rendered.compose("minilm-embedding")
    assert mount in composed.container["volumeMounts"]
    deployment, _, _ = predictor_objects({**isvc, "metadata": {**isvc["metadata"], "uid": "u"}}, sr)
    tmpl = deployment["spec"]["template"]
    pod = mutate_pod({"metadata": {**tmpl["metadata"], "namespace": "ns"}, "spec": tmpl["spec"]})
    main = pod["spec"]["containers"][0]
    assert main["volumeMounts"] == composed.container["volumeMounts"]
    assert pod["spec"]["volumes"] == composed.volumes
    if uri.startswith("oci://"):
        assert {"name": "MODEL_INIT_MODE", "value": "async"} in composed.container["env"]
        assert pod["spec"]["shareProcessNamespace"] is True
        assert [c["name"] for c in pod["spec"]["containers"]] == ["kserve-container", "modelcar"]
    elif not uri.startswith("pvc://"):
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["storage-initializer"]


def test_runtime_volume_at_mnt_models_is_what_the_api_server_refuses() -> None:
    text = "cache: {mount_path: /mnt/models, hf_home: /mnt/models/hf}\n" + BASE + "    storage_uri: hf://org/m\n"
    findings = _findings(text)
    assert _has(findings, "error", "volume model-cache: the runtime mounts a volume at /mnt/models, where KServe "
                                   "mounts the model for hf://")
    assert _has(findings, "error", "mountPath must be unique")
    # Without storage_uri the same cache path is fine: nothing else is mounted there.
    assert not _has(_findings(text.replace("    storage_uri: hf://org/m\n", "")), "error", "mountPath")


def test_modelcar_needs_mnt_free() -> None:
    base = BASE + "    storage_uri: oci://quay.io/org/m:1\n"
    assert _has(_findings("cache: {mount_path: /mnt, hf_home: /mnt/hf}\n" + base), "error",
                "the runtime mounts a volume at /mnt, where KServe mounts the model for oci://")
    assert _has(_findings("cache: {mount_path: /mnt/models/cache, hf_home: /mnt/models/cache/hf}\n" + base),
                "error", "inside /mnt/models where KServe puts the model")


def test_storage_uri_on_the_runtimes_own_cache_claim_warns() -> None:
    text = BASE + "    storage_uri: pvc://vllm-model-cache/models/minilm\n"
    assert _has(_findings(text), "warning", "kubernetes/kubernetes#127004")
    assert not _has(_findings(BASE + "    storage_uri: pvc://other/minilm\n"), "warning", "#127004")


def test_storage_uris_spec_is_clean_and_valid() -> None:
    spec = load_spec(ROOT / "tests" / "specs" / "storage-uris.yaml")
    from support.assets import crd_dir

    report = lint(spec, render(spec), crd_dir=crd_dir())
    assert report.errors == [] and not [f for f in report.findings if f.severity == "warning"]
