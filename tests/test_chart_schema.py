"""values.schema.json's patterns say what poolserve's own checks say, value by value (no helm needed).

scripts/gen_chart.py writes poolserve's rules that JSON Schema can say as patterns: the image tag a version
is read from, a version, a storage_uri, a secret-looking env name. Each pattern here must accept exactly the
values poolserve's function accepts (a JSON Schema pattern matches anywhere, like re.search). Go's regexp,
which Helm runs, reads these patterns as Python's re does (test_chart_values.py runs helm on bad values).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jsonschema
import pytest

from poolserve.config import storage
from poolserve.config.rules import secret_like
from poolserve.config.versions import image_version, parse_version

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gen_chart

IMAGES = ["vllm/vllm-openai:v0.32.0", "vllm/vllm-openai:0.9.2", "vllm/vllm-openai:v0.10.1.1", "0.32.0",
          "registry.local:5000/vllm:v0.11.0-cu128", "vllm/vllm-openai:latest", "vllm/vllm-openai",
          "registry.local:5000/vllm", "quay.io/me/vllm@sha256:abc", "quay.io/me/vllm:v0.32.0@sha256:abc",
          "vllm:v0.32", "vllm:x0.32.0", "vllm:v0.32.0/x", "vllm:", "a:b:v1.2.3", "vllm:V0.32.0", "vllm:vv0.1.2"]
VERSIONS = ["0.32.0", "v0.9.2", "0.10", " 0.11.0 ", "latest", "0.32.0.1", "v", "0", "1.2.3-rc1", "V1.2", ""]
URIS = [
    "pvc://store/models/minilm", "pvc://store", "pvc://store/", "pvc://a.b-c/x/../y", "pvc://store/..",
    "pvc://store/a/..b", "pvc://Model_Store/x", "pvc://-a/x", f"pvc://{'a' * 253}/x", f"pvc://{'a' * 254}/x",
    "hf://org/model", "hf://org/model:main", "hf://org/model:", "hf://org/model:..", "hf://org/model:a:b",
    "hf://a/b/c", "hf://-a/b", "hf://a.b/c_d-e", "hf://org/", "hf:///model",
    "s3://bucket-1/models/", "s3://bucket-1", "s3://B/x", "s3://ab/x", "s3://abc", "s3://a..b/x",
    "oci://quay.io/me/model:1", "oci://registry.local:5000/models/minilm@sha256:" + "0" * 64,
    "oci://quay.io/me/model", "oci://quay.io/me/model:v\u00e9", "oci://Quay.io/me/model:1", "oci://quay.io/me/model:-1",
    "gs://bucket/minilm", "/models/minilm", "pvc:/store", "PVC://store", "",
]
ENV_NAMES = ["HF_TOKEN", "VLLM_API_KEY", "vllm-api-key", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "TOKEN",
             "TOKENIZERS_PARALLELISM", "KEYWORDS", "PASS_THROUGH", "API", "KEY_API", "my_apikey", "CREDENTIALS_FILE",
             "PRIVATE-KEY", "TOKENIZER_MODE", "SECRETS", "OMP_NUM_THREADS"]


def _accepts(pattern: str, value: str, never: list[str] | None = None) -> bool:
    # re.ASCII: \w and \d are ASCII in Go's regexp, as in storage.py's OCI pattern.
    return bool(re.search(pattern, value, re.ASCII)) and not any(re.search(p, value, re.ASCII) for p in never or [])


@pytest.mark.parametrize("image", IMAGES)
def test_the_image_pattern_is_image_version(image: str) -> None:
    assert _accepts(gen_chart.IMAGE_VERSION_RE, image) == (image_version(image) is not None)


@pytest.mark.parametrize("text", VERSIONS)
def test_the_version_pattern_is_parse_version(text: str) -> None:
    assert _accepts(gen_chart.VERSION_RE, text) == (parse_version(text) is not None)


def _parses(uri: str) -> bool:
    try:
        storage.parse(uri)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("uri", URIS)
def test_the_storage_uri_pattern_is_storage_parse(uri: str) -> None:
    pattern, never = gen_chart.storage_uri_re()
    assert _accepts(pattern, uri, never) == _parses(uri)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_the_secret_name_pattern_is_secret_like(name: str) -> None:
    assert _accepts(gen_chart.secret_name_re(), name) == secret_like(name)


def test_the_schema_is_valid_json_schema_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(gen_chart.schema_data())
