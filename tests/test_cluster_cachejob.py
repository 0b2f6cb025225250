"""cachejob: the download Job's manifest, and its script run here against a stub huggingface_hub."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from poolserve.config.load import parse_spec
from poolserve.kserve.render import render
from poolserve.targets.cluster import cachejob

SPEC = """\
namespace: emb
image: vllm/vllm-openai:v0.32.0
cache: {pvc: model-cache, mount_path: /models, hf_home: /models/huggingface, hf_token_secret: {name: hf-token}}
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
models:
  - name: model-with-a-rather-long-name-that-goes-on-a-bit
    model_id: sentence-transformers/all-MiniLM-L6-v2
    node_selector: {nvidia.com/gpu.product: NVIDIA-L4}
"""


def test_job_downloads_into_the_pvc_at_hf_home_with_the_token_from_a_secret() -> None:
    spec = parse_spec(SPEC, "t.yaml")
    model = render(spec).model("model-with-a-rather-long-name-that-goes-on-a-bit")
    job = cachejob.cache_job(spec, model)
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "emb"
    assert len(job["metadata"]["name"]) <= 63 and not job["metadata"]["name"].endswith("-")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "model-cache"}} in pod["volumes"]
    (c,) = pod["containers"]
    assert c["image"] == "vllm/vllm-openai:v0.32.0"
    assert c["command"][:2] == ["python", "-c"] and c["command"][3:] == ["sentence-transformers/all-MiniLM-L6-v2", ""]
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_HOME"]["value"] == "/models/huggingface"
    assert env["HF_HUB_OFFLINE"]["value"] == "0"
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    assert all("value" not in e or "token" not in e["value"].lower() for e in c["env"])
    assert {"name": "model-cache", "mountPath": "/models"} in c["volumeMounts"]


def test_spec_hash_detects_a_changed_job() -> None:
    spec = parse_spec(SPEC, "t.yaml")
    model = spec.models[0].name
    a = cachejob.cache_job(spec, render(spec).model(model))
    assert cachejob.same_job(a, cachejob.cache_job(spec, render(spec).model(model)))
    other = parse_spec(SPEC.replace("vllm-openai:v0.32.0", "vllm-openai:v0.31.0"), "t.yaml")
    assert not cachejob.same_job(a, cachejob.cache_job(other, render(other).model(model)))


def test_job_state() -> None:
    assert cachejob.job_state({}) == "Pending"
    assert cachejob.job_state({"status": {"active": 1}}) == "Running"
    assert cachejob.job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "Succeeded"
    assert cachejob.job_state({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "Failed"


def test_script_skips_formats_vllm_does_not_read(tmp_path: Path) -> None:
    stub = tmp_path / "stub" / "huggingface_hub"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(textwrap.dedent("""
        import json, os
        class HfApi:
            def list_repo_files(self, repo, revision=None):
                return ["config.json", "model.safetensors", "pytorch_model.bin", "onnx/model.onnx"]
        def snapshot_download(repo, revision=None, ignore_patterns=None):
            path = os.path.join(os.environ["HF_HOME"], "hub", "snap")
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "config.json"), "w") as f:
                json.dump({"repo": repo, "revision": revision, "ignore": ignore_patterns}, f)
            return path
    """))
    env = {"PYTHONPATH": str(tmp_path / "stub"), "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", cachejob.SCRIPT, "org/model", ""], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith(f"{cachejob.DONE_MARKER} org/model to {tmp_path / 'hf' / 'hub' / 'snap'} (")
    import json

    written = json.loads((tmp_path / "hf" / "hub" / "snap" / "config.json").read_text())
    assert written["revision"] is None
    assert "*.bin" in written["ignore"] and "*.onnx" in written["ignore"]
    assert (tmp_path / "hf" / "hub" / "snap" / "config.json").stat().st_mode & 0o020  # group-writable (umask 002)
