"""Config texts the unit tests build on."""

ONE_MODEL = """\
runtimes:
  - {name: vllm-embedding-runtime, task: embed}
defaults:
  resources: {limits: {memory: 8Gi}}
models:
  - name: minilm-embedding
    model_id: sentence-transformers/all-MiniLM-L6-v2
"""
"""One embedding runtime and all-MiniLM-L6-v2 with a memory limit: line 8 is the model's last key."""
