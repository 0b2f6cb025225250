"""Names a user meets before any config is read: the config file, and the environment variables for options.

Kept apart from :mod:`poolserve.config.schema` so the CLI can show them without loading the config machinery.
"""

from __future__ import annotations

DEFAULT_CONFIG = "poolserve.yaml"
"""The config file every command reads unless ``-c``/``$POOLSERVE_CONFIG`` names another."""
CONFIG_ENV = "POOLSERVE_CONFIG"
TARGET_ENV = "POOLSERVE_TARGET"
"""``cluster`` or ``local``: the target when ``--target`` is not given (else ``cluster``)."""
TOKEN_ENV = "POOLSERVE_TOKEN"
"""The bearer token ``test`` and ``bench`` send when ``--token`` is not given."""
CRD_DIR_ENV = "POOLSERVE_CRD_DIR"
"""The KServe CRDs ``lint`` validates against when ``--crd-dir`` is not given."""
DEFAULT_INPUT_TOKENS = 128
"""``bench --input-tokens``: tokens per text (the model's own tokenizer counts them)."""
DEFAULT_DOCUMENTS = 8
"""``bench --documents``: documents per rerank query."""
