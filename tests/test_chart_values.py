"""Bad values: what poolserve refuses to read, `helm template` rejects too, naming the key, with the real helm binary.

Two layers: the config's schema (values.schema.json, generated from the pydantic model and poolserve's
rules that JSON Schema can say: Helm's own error, naming the key path), and the rules across items the
schema cannot say (templates/_validate.tpl: the very same message as poolserve's, without its file:line).
Nothing half-rendered comes out: helm exits non-zero before printing objects. poolserve lint's errors are
left to `poolserve lint -c values.yaml`; docs/reference/rules.md says which rule is where, and these tests
check that it says true.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from poolserve.config.load import parse_spec
from poolserve.errors import SpecError
from poolserve.kserve.lint import lint
from poolserve.kserve.render import render
from support.helm import template

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import rules_table

RULES = rules_table.read_table(rules_table.TABLE.read_text(encoding="utf-8"))

RT = "runtimes:\n  - {name: vllm-embedding-runtime, task: embed}\n  - {name: vllm-reranker-runtime, task: score}\n"
MINILM = "{name: minilm, model_id: sentence-transformers/all-MiniLM-L6-v2"


def config(models: str, runtimes: str = RT, top: str = "") -> str:
    return f"{top}{runtimes}models:\n{models}"


def helm_error(text: str, tmp_path: Path, namespace: str = "vllm-embeddings") -> str:
    values = tmp_path / "values.yaml"
    values.write_text(text)
    out = template("-f", values, namespace=namespace, check=False)
    assert out.returncode != 0, f"helm accepted it:\n{out.stdout[:2000]}"
    assert out.stdout == ""  # nothing half-rendered
    return out.stderr


# --------------------------------------------------------------------------------------------------
# The schema: (config, what poolserve says, what helm says).

SCHEMA_CASES = {
    "misspelt-model-key": (config(f"  - {MINILM}, maxmodel_len: 256}}\n"), "models[0].maxmodel_len: unknown key",
                           "at '/models/0': additional properties 'maxmodel_len'"),
    "misspelt-top-level-key": (config(f"  - {MINILM}}}\n", top="namepsace: x\n"),
                               "namepsace: unknown key", "additional properties 'namepsace' not allowed"),
    "misspelt-local-key": (config(f"  - {MINILM}}}\n", top="local: {cache_dirr: x}\n"),
                           "local.cache_dirr: unknown key", "at '/local': additional properties 'cache_dirr'"),
    "wrong-type": (config(f"  - {MINILM}, replicas: two}}\n"), "models[0].replicas:",
                   "at '/models/0/replicas': got string, want null or integer"),
    "negative-max-length": (config(f"  - {MINILM}, max_model_len: -1}}\n"), "models[0].max_model_len:",
                            "at '/models/0/max_model_len': exclusiveMinimum: got -1, want 0"),
    "unknown-task": (config(f"  - {MINILM}}}\n", runtimes="runtimes: [{name: rt, task: embedd}]\n"),
                     "runtimes[0].task: invalid value 'embedd'", "at '/runtimes/0/task': value must be one of"),
    "gpu-memory-above-1": (config(f"  - {MINILM}, gpu_memory_utilization: 1.5}}\n"),
                           "models[0].gpu_memory_utilization:", "at '/models/0/gpu_memory_utilization': maximum"),
    "unknown-device": (config(f"  - {MINILM}}}\n", runtimes="runtimes: [{name: a, task: embed, device: tpu}]\n"),
                       "runtimes[0].device", "at '/runtimes/0/device'"),
    "gpu-memory-gib-zero": (config(f"  - {MINILM}, gpu_memory_gib: 0}}\n"), "models[0].gpu_memory_gib",
                            "at '/models/0/gpu_memory_gib'"),
    "stopped-not-a-boolean": (config(f"  - {MINILM}, stopped: maybe}}\n"), "models[0].stopped",
                              "at '/models/0/stopped'"),
    "probe-period-zero": (config(f"  - {MINILM}}}\n",
                                 runtimes="runtimes: [{name: a, task: embed, probes: {startup: {period_s: 0}}}]\n"),
                          "runtimes[0].probes.startup.period_s", "at '/runtimes/0/probes/startup/period_s'"),
    "unknown-probe": (config(f"  - {MINILM}}}\n", runtimes="runtimes: [{name: a, task: embed, probes: {ready: {}}}]\n"),
                      "runtimes[0].probes.ready", "at '/runtimes/0/probes': additional properties 'ready'"),
    "unknown-runtime-mode": (config(f"  - {MINILM}}}\n", top="runtime_mode: shard\n"), "runtime_mode: invalid value",
                             "at '/runtime_mode': value must be one of 'shared', 'per-model'"),
    "no-models": (config("  []\n"), "models:", "at '/models': minItems: got 0, want 1"),
    "bad-toleration": (config(f"  - {MINILM}, tolerations: [{{operator: Maybe}}]}}\n"),
                       "models[0].tolerations[0].operator", "at '/models/0/tolerations/0/operator'"),
    "string-env-value-expected": (config(f"  - {MINILM}, env: {{NUM: 4}}}}\n"), "models[0].env.NUM",
                                  "at '/models/0/env/NUM': got number, want string"),
    "unknown-autoscaling-metric": (config(f"  - {MINILM}, autoscaling: {{metric: gpu, target: 5}}}}\n"),
                                   "models[0].autoscaling.metric", "at '/models/0/autoscaling/metric'"),
    "autoscaling-target-zero": (config(f"  - {MINILM}, autoscaling: {{metric: queue, target: 0}}}}\n"),
                                "models[0].autoscaling.target", "at '/models/0/autoscaling/target': minimum"),
    "autoscaling-without-target": (config(f"  - {MINILM}, autoscaling: {{metric: cpu}}}}\n"),
                                   "models[0].autoscaling.target",
                                   "at '/models/0/autoscaling': missing property 'target'"),
    "hardware-profile-list": (config(f"  - {MINILM}, hardware_profile: [a]}}\n"), "models[0].hardware_profile",
                              "at '/models/0/hardware_profile'"),
    "unknown-deployment-strategy": (config(f"  - {MINILM}, deployment_strategy: BlueGreen}}\n"),
                                    "models[0].deployment_strategy", "at '/models/0/deployment_strategy'"),
    "fractional-disruption-budget": (config(f"  - {MINILM}, disruption_budget: {{max_unavailable: 1.5}}}}\n"),
                                     "models[0].disruption_budget.max_unavailable",
                                     "at '/models/0/disruption_budget/max_unavailable'"),
    "monitoring-typo": (config(f"  - {MINILM}}}\n", top="monitoring: {enable: true}\n"), "monitoring.enable",
                        "at '/monitoring': additional properties 'enable'"),
}


@pytest.mark.parametrize("case", SCHEMA_CASES, ids=str)
def test_the_schema_rejects_what_poolserve_rejects(case: str, tmp_path: Path) -> None:
    text, poolserve_says, helm_says = SCHEMA_CASES[case]
    with pytest.raises(SpecError) as err:
        parse_spec(text, "values.yaml")
    assert poolserve_says in err.value.message
    stderr = helm_error(text, tmp_path)
    assert "values don't meet the specifications of the schema" in stderr
    assert helm_says in stderr, stderr


# --------------------------------------------------------------------------------------------------
# The rules across keys: the same message, word for word.

CROSS_CASES = {
    "duplicate-model": config(f"  - {MINILM}}}\n  - {MINILM}}}\n"),
    "uppercase-name": config("  - {name: MiniLM, model_id: sentence-transformers/all-MiniLM-L6-v2}\n"),
    "name-too-long": config(f"  - {{name: {'m' * 49}, model_id: org/x, task: embed}}\n"),
    "name-plus-namespace-too-long": config(f"  - {{name: {'m' * 40}, model_id: org/x, task: embed}}\n"),
    "not-in-catalog-without-task": config("  - {name: mine, model_id: org/unknown-model}\n"),
    "runtime-not-defined": config(f"  - {MINILM}, runtime: nope}}\n"),
    "runtime-serves-another-task": config(f"  - {MINILM}, runtime: vllm-reranker-runtime}}\n"),
    "several-runtimes-for-a-task": config(
        f"  - {MINILM}}}\n", runtimes="runtimes: [{name: a, task: embed}, {name: b, task: embedding}]\n"),
    "no-runtime-for-the-task": config(
        "  - {name: rr, model_id: cross-encoder/ms-marco-MiniLM-L12-v2}\n",
        runtimes="runtimes: [{name: a, task: embed}]\n"),
    "max-model-len-above-catalog": config(f"  - {MINILM}, max_model_len: 512}}\n"),
    "model-image-without-version": config(f"  - {MINILM}, image: 'registry.local/vllm:latest'}}\n"),
    "max-replicas-below-replicas": config(f"  - {MINILM}, replicas: 3, max_replicas: 2}}\n"),
    "defaults-replicas-above-max": config(f"  - {MINILM}, max_replicas: 1}}\n", top="defaults: {replicas: 2}\n"),
    "runtime-image-without-version": config(
        f"  - {MINILM}}}\n", runtimes="runtimes: [{name: a, task: embed, image: 'quay.io/me/vllm@sha256:abc'}]\n"),
    "top-image-without-version": config(f"  - {MINILM}}}\n", top="image: vllm/vllm-openai:latest\n"),
    "bad-vllm-version": config(f"  - {MINILM}}}\n", top="vllm_version: latest\n"),
    "duplicate-runtime": config(f"  - {MINILM}}}\n",
                                runtimes="runtimes: [{name: a, task: embed}, {name: a, task: score}]\n"),
    "bad-runtime-name": config(f"  - {MINILM}}}\n", runtimes="runtimes: [{name: A_b, task: embed}]\n"),
    "per-model-clash": config("  - {name: a, model_id: sentence-transformers/all-MiniLM-L6-v2}\n",
                              runtimes="runtimes: [{name: a, task: embed}]\n", top="runtime_mode: per-model\n"),
    "two-problems": config(f"  - {MINILM}, max_model_len: 512}}\n  - {MINILM}}}\n"),
    # Autoscaling, hardware profiles, pull secrets, disruption budgets, storage URIs (spec._check_extras).
    "hpa-target-above-100": config(f"  - {MINILM}, max_replicas: 2, autoscaling: {{metric: memory, target: 120}}}}\n"),
    "prometheus-url-with-cpu": config(
        f"  - {MINILM}, max_replicas: 2, autoscaling: {{metric: cpu, target: 50, prometheus_url: 'http://p:9090'}}}}\n"),
    "authentication-null-with-cpu": config(
        f"  - {MINILM}, max_replicas: 2, autoscaling: {{metric: cpu, target: 50, authentication: null}}}}\n"),
    "prometheus-url-not-http": config(
        f"  - {MINILM}, max_replicas: 2, autoscaling: {{metric: queue, target: 5, prometheus_url: 'thanos:9092'}}}}\n"),
    "bad-trigger-authentication": config(
        f"  - {MINILM}, max_replicas: 2, autoscaling: {{metric: queue, target: 5, authentication: Bad_Name}}}}\n"),
    "defaults-autoscaling-url-with-memory": config(
        f"  - {MINILM}, max_replicas: 2}}\n",
        top="defaults: {autoscaling: {metric: memory, target: 80, prometheus_url: 'http://p'}}\n"),
    "bad-hardware-profile-name": config(f"  - {MINILM}, hardware_profile: GPU_L4}}\n"),
    "bad-hardware-profile-namespace": config(f"  - {MINILM}, hardware_profile: {{name: l4, namespace: a.b}}}}\n"),
    "bad-pull-secret": config(f"  - {MINILM}, image_pull_secrets: [ok, Not_OK]}}\n"),
    "pdb-both": config(f"  - {MINILM}, replicas: 2, disruption_budget: {{max_unavailable: 1, min_available: 1}}}}\n"),
    "pdb-bad-percent": config(f"  - {MINILM}, replicas: 2, disruption_budget: {{max_unavailable: half}}}}\n"),
    "pdb-negative": config(f"  - {MINILM}, replicas: 2}}\n",
                           top="defaults: {disruption_budget: {min_available: -1}}\n"),
    "storage-uri-not-a-uri": config(f"  - {MINILM}, storage_uri: /models/minilm}}\n"),
    "storage-uri-unknown-scheme": config(f"  - {MINILM}, storage_uri: 'gs://bucket/minilm'}}\n"),
    "storage-uri-bad-claim": config(f"  - {MINILM}, storage_uri: 'pvc://Model_Store/minilm'}}\n"),
    "storage-uri-dotdot": config(f"  - {MINILM}, storage_uri: 'pvc://store/a/../b'}}\n"),
    "storage-uri-hf-three-parts": config(f"  - {MINILM}, storage_uri: 'hf://a/b/c'}}\n"),
    "storage-uri-hf-bad-id": config(f"  - {MINILM}, storage_uri: 'hf://-a/b'}}\n"),
    "storage-uri-hf-bad-revision": config(f"  - {MINILM}, storage_uri: 'hf://a/b:..'}}\n"),
    "storage-uri-bad-bucket": config(f"  - {MINILM}, storage_uri: 's3://B/x'}}\n"),
    "storage-uri-bad-oci": config(f"  - {MINILM}, storage_uri: 'oci://quay.io/me/model'}}\n"),
    "storage-uri-oci-non-ascii-tag": config(f"  - {MINILM}, storage_uri: 'oci://quay.io/me/model:v\u00e9'}}\n"),
    "data-connection-without-s3": config(f"  - {MINILM}, storage_uri: 'hf://a/b', data_connection: aws}}\n"),
    "data-connection-without-uri": config(f"  - {MINILM}, data_connection: aws}}\n"),
    "data-connection-bad-name": config(f"  - {MINILM}, storage_uri: 's3://bucket/x', data_connection: AWS}}\n"),
    "node-selector-with-profile": config(f"  - {MINILM}, node_selector: {{gpu: l4}}}}\n",
                                         top="defaults: {hardware_profile: l4}\n"),
    # Env values are rendered into the manifests: a secret-looking name is refused (spec._secret_env).
    "secret-env-on-a-model": config(f"  - {MINILM}, env: {{HF_TOKEN: hf_abc}}}}\n"),
    "secret-env-api-key-pair": config(f"  - {MINILM}}}\n", top="defaults: {env: {vllm-api-key: abc}}\n"),
    "secret-env-on-a-runtime": config(
        f"  - {MINILM}}}\n", runtimes="runtimes: [{name: a, task: embed, env: {DB_PASSWORD: x}}]\n"),
    "tolerations-with-profile": config(f"  - {MINILM}, hardware_profile: l4, tolerations: [{{key: gpu}}]}}\n"),
    # CPU runtimes and MIG slices.
    "cpu-runtime-with-accelerator": config(
        f"  - {MINILM}}}\n", runtimes="runtimes: [{name: a, task: embed, device: cpu, accelerator: nvidia.com/gpu}]\n"),
    "cpu-runtime-model-with-gpus": config(f"  - {MINILM}, gpus: 1}}\n",
                                          runtimes="runtimes: [{name: a, task: embed, device: cpu}]\n"),
    "cpu-runtime-model-with-mig": config(f"  - {MINILM}, mig_profile: 1g.10gb}}\n",
                                         runtimes="runtimes: [{name: a, task: embed, device: cpu}]\n"),
    "bad-mig-profile": config(f"  - {MINILM}, mig_profile: 1g10gb}}\n"),
    "bad-defaults-mig-profile": config(f"  - {MINILM}}}\n", top="defaults: {mig_profile: half}\n"),
    "mig-with-zero-gpus": config(f"  - {MINILM}, mig_profile: 2g.20gb, gpus: 0}}\n"),
}


# The rules above that one item can say, now in the schema: where Helm's error names the key.
IN_THE_SCHEMA = {
    "uppercase-name": "at '/models/0/name'",
    "name-too-long": "at '/models/0/name': maxLength: got 49, want 48",
    "max-model-len-above-catalog": "at '/models/0/max_model_len': maximum: got 512, want 256",
    "model-image-without-version": "at '/models/0/image'",
    "runtime-image-without-version": "at '/runtimes/0/image'",
    "top-image-without-version": "at '/image'",
    "bad-vllm-version": "at '/vllm_version'",
    "bad-runtime-name": "at '/runtimes/0/name'",
    "two-problems": "at '/models/0/max_model_len'",
    "hpa-target-above-100": "at '/models/0/autoscaling/target': maximum: got 120, want 100",
    "prometheus-url-with-cpu": "at '/models/0/autoscaling/prometheus_url'",
    "authentication-null-with-cpu": "at '/models/0/autoscaling/authentication'",
    "prometheus-url-not-http": "at '/models/0/autoscaling/prometheus_url'",
    "bad-trigger-authentication": "at '/models/0/autoscaling/authentication'",
    "defaults-autoscaling-url-with-memory": "at '/defaults/autoscaling/prometheus_url'",
    "bad-hardware-profile-name": "at '/models/0/hardware_profile'",
    "bad-hardware-profile-namespace": "at '/models/0/hardware_profile/namespace'",
    "bad-pull-secret": "at '/models/0/image_pull_secrets/1'",
    "pdb-both": "at '/models/0/disruption_budget'",
    "pdb-bad-percent": "at '/models/0/disruption_budget/max_unavailable'",
    "pdb-negative": "at '/defaults/disruption_budget/min_available'",
    **{case: "at '/models/0/storage_uri'" for case in CROSS_CASES if case.startswith("storage-uri-")},
    "data-connection-without-s3": "at '/models/0/data_connection'",
    "data-connection-without-uri": "at '/models/0/data_connection'",
    "data-connection-bad-name": "at '/models/0/data_connection'",
    "node-selector-with-profile": "at '/models/0/node_selector'",
    "secret-env-on-a-model": "at '/models/0/env/HF_TOKEN'",
    "secret-env-api-key-pair": "at '/defaults/env/vllm-api-key'",
    "secret-env-on-a-runtime": "at '/runtimes/0/env/DB_PASSWORD'",
    "tolerations-with-profile": "at '/models/0/tolerations'",
    "cpu-runtime-with-accelerator": "at '/runtimes/0/accelerator'",
    "bad-mig-profile": "at '/models/0/mig_profile'",
    "bad-defaults-mig-profile": "at '/defaults/mig_profile'",
}


@pytest.mark.parametrize("case", CROSS_CASES, ids=str)
def test_cross_key_rules_fail_with_poolserves_own_message(case: str, tmp_path: Path) -> None:
    text = CROSS_CASES[case]
    with pytest.raises(SpecError) as err:
        parse_spec(text, "values.yaml")
    # poolserve: "values.yaml:LINE: KEY: message"; Helm: "KEY: message" (its values carry no line numbers).
    message = re.sub(r"^values\.yaml(:\d+)?: ", "", err.value.message)
    stderr = helm_error(text, tmp_path)
    # The rules table says where the chart enforces the rule; the install fails there.
    assert rules_table.helm_for(message, RULES) == {"schema" if case in IN_THE_SCHEMA else "chart"}, message
    if case in IN_THE_SCHEMA:
        assert "values don't meet the specifications of the schema" in stderr
        assert IN_THE_SCHEMA[case] in stderr, stderr
    else:
        assert f"): {message}\n" in stderr, f"poolserve: {message}\nhelm: {stderr}"


# --------------------------------------------------------------------------------------------------
# poolserve lint's errors.

OLD = "image: vllm/vllm-openai:v0.9.2\n"
LINT_CASES = {
    "removed-task-flag": config(f"  - {MINILM}, extra_args: ['--task=embed']}}\n"),
    "removed-task-flag-on-the-runtime": config(
        f"  - {MINILM}}}\n", runtimes="runtimes: [{name: a, task: embed, extra_args: ['--task', 'embed']}]\n"),
    "convert-before-0.10.1": config(f"  - {MINILM}, convert: embed}}\n", top=OLD),
    "pooler-config-before-0.11": config(f"  - {MINILM}, extra_args: ['--pooler-config={{}}']}}\n", top=OLD),
    "override-pooler-config-removed": config(f"  - {MINILM}, extra_args: ['--override-pooler-config', '{{}}']}}\n"),
    "pooler-key-removed": config(f"  - {MINILM}, pooler_config: {{normalize: true}}}}\n"),
    "pooler-config-not-json": config(f"  - {MINILM}, extra_args: ['--pooler-config={{oops']}}\n"),
    "gpu-memory-not-a-number": config(f"  - {MINILM}, extra_args: ['--gpu-memory-utilization=lots']}}\n"),
    "gpu-memory-out-of-range": config(f"  - {MINILM}, extra_args: ['--gpu-memory-utilization', '1.5']}}\n"),
    "convert-reward-removed": config(f"  - {MINILM}, convert: embed, extra_args: ['--convert=reward']}}\n"),
    "pythonpath": config(f"  - {MINILM}, env: {{PYTHONPATH: /x}}}}\n"),
    "pythonpath-on-the-runtime": config(
        f"  - {MINILM}}}\n", runtimes="runtimes: [{name: a, task: embed, env: {PYTHONPATH: /x}}]\n"),
    "trust-remote-code-off": config("  - {name: nomic, model_id: nomic-ai/nomic-embed-text-v1.5, "
                                    "trust_remote_code: false}\n"),
    "needs-a-newer-vllm": config("  - {name: qwen, model_id: Qwen/Qwen3-Embedding-0.6B}\n", top=OLD),
    "served-as-the-wrong-task": config(
        "  - {name: rr, model_id: cross-encoder/ms-marco-MiniLM-L12-v2, task: embed}\n"),
    "cross-encoder-on-0.6.4": config(
        "  - {name: rr, model_id: org/some-cross-encoder, task: score}\n", top="image: vllm/vllm-openai:v0.6.4\n"),
    "bert-before-0.6.4": config(f"  - {MINILM}}}\n", top="image: vllm/vllm-openai:v0.6.3\n"),
    "bad-placeholder": config(f"  - {MINILM}, extra_args: ['--served-model-name={{{{.Spec.Name}}}}']}}\n"),
    "readwriteoncepod-shared": config(f"  - {MINILM}, replicas: 2}}\n", top="cache: {access_mode: ReadWriteOncePod}\n"),
    "readwriteoncepod-two-models": config(f"  - {MINILM}}}\n  - {{name: m2, model_id: org/x, task: embed}}\n",
                                          top="cache: {access_mode: ReadWriteOncePod}\n"),
    "readwriteoncepod-rolling-update": config(f"  - {MINILM}, deployment_strategy: RollingUpdate}}\n",
                                              top="cache: {access_mode: ReadWriteOncePod}\n"),
    "autoscaling-without-room": config(f"  - {MINILM}, replicas: 2, autoscaling: {{metric: queue, target: 4}}}}\n"),
    "two-mounts-one-path": config(f"  - {MINILM}}}\n", top="cache: {mount_path: /tmp/home/}\n"),
    "cache-at-the-model-dir": config(f"  - {MINILM}, storage_uri: 'hf://a/b'}}\n",
                                     top="cache: {mount_path: /mnt/models}\n"),
    "cache-inside-the-model-dir": config(f"  - {MINILM}, storage_uri: 'pvc://store/m'}}\n",
                                         top="cache: {mount_path: /mnt/models/cache}\n"),
    "model-flag-with-vllm-serve": config(f"  - {MINILM}, extra_args: ['--model=/models/minilm']}}\n"),
    "model-flag-on-the-runtime-with-vllm-serve": config(
        f"  - {MINILM}}}\n", runtimes="runtimes: [{name: a, task: embed, extra_args: ['--model', 'x']}]\n"),
    "cache-at-the-modelcar-dir": config(f"  - {MINILM}, storage_uri: 'oci://quay.io/me/model:1'}}\n",
                                        top="cache: {mount_path: /mnt}\n"),
}


@pytest.mark.parametrize("case", LINT_CASES, ids=str)
def test_what_poolserve_lint_rejects_is_left_to_poolserve_lint(case: str, tmp_path: Path) -> None:
    # The chart's NOTES and values.yaml name `poolserve lint -c values.yaml` as the check before installing.
    text = LINT_CASES[case]
    spec = parse_spec(text, "values.yaml")
    errors = lint(spec, render(spec)).errors
    assert errors, "poolserve lint accepts it"
    for e in errors:  # the rules table says so, and the chart renders it (a cluster or vLLM refuses it later)
        assert rules_table.helm_for(e.message, RULES) == {"poolserve"}, e.message
    (tmp_path / "values.yaml").write_text(text)
    assert template("-f", tmp_path / "values.yaml", namespace="vllm-embeddings").returncode == 0


def test_lint_warnings_do_not_stop_an_install(tmp_path: Path) -> None:
    # No memory limit, a shared runtime: warnings and notes for poolserve lint, not errors.
    text = config(f"  - {MINILM}}}\n  - {{name: m2, model_id: sentence-transformers/all-MiniLM-L6-v2}}\n")
    spec = parse_spec(text)
    report = lint(spec, render(spec))
    assert report.findings and not report.errors
    (tmp_path / "v.yaml").write_text(text)
    assert template("-f", tmp_path / "v.yaml", namespace="vllm-embeddings").returncode == 0


def test_a_namespace_other_than_the_release_namespace_is_refused(tmp_path: Path) -> None:
    stderr = helm_error(config(f"  - {MINILM}}}\n", top="namespace: rag\n"), tmp_path, namespace="default")
    assert ("namespace: the config says 'rag' but the release namespace is 'default': install with --namespace rag"
            in stderr)


# --------------------------------------------------------------------------------------------------
# poolserve deploy's preflight, where the chart can see the cluster: the kinds from its API list (helm install,
# Argo CD's --api-versions); nothing without KServe's among them (plain `helm template`).

KSERVE_API = "serving.kserve.io/v1beta1/InferenceService"
PREFLIGHT_CASES = {
    "queue-autoscaling-without-keda": (
        config(f"  - {MINILM}, max_replicas: 2, autoscaling: {{metric: queue, target: 4}}}}\n"), [],
        "the API server has no ScaledObject (keda.sh/v1alpha1) resource (autoscaling on the queue (minilm) needs KEDA"),
    "monitoring-without-the-prometheus-operator": (
        config(f"  - {MINILM}}}\n", top="monitoring: {enabled: true}\n"), [],
        "the API server has no PodMonitor (monitoring.coreos.com/v1) resource"),
    "templates-without-openshift": (
        config(f"  - {MINILM}}}\n", top="dashboard: {templates: true}\n"), ["monitoring.coreos.com/v1/PodMonitor"],
        "the API server has no Template (template.openshift.io/v1) resource: dashboard Templates need OpenShift"),
}


@pytest.mark.parametrize("case", PREFLIGHT_CASES, ids=str)
def test_kinds_the_cluster_lacks_fail_the_install(case: str, tmp_path: Path) -> None:
    text, apis, says = PREFLIGHT_CASES[case]
    values = tmp_path / "values.yaml"
    values.write_text(text)
    flags = [f"--api-versions={a}" for a in apis]
    out = template("-f", values, f"--api-versions={KSERVE_API}", *flags, namespace="vllm-embeddings", check=False)
    assert out.returncode != 0 and out.stdout == ""
    assert says in out.stderr, out.stderr
    # Without KServe's API among the versions, Helm knows no cluster: nothing is checked.
    assert template("-f", values, *flags, namespace="vllm-embeddings").returncode == 0
    every = ["keda.sh/v1alpha1/ScaledObject", "monitoring.coreos.com/v1/PodMonitor",
             "template.openshift.io/v1/Template"]
    assert template("-f", values, f"--api-versions={KSERVE_API}", *[f"--api-versions={a}" for a in every],
                    namespace="vllm-embeddings").returncode == 0
