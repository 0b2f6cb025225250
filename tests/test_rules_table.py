"""The rules table (docs/reference/rules.md): every rule of the config and of lint is in it, and what it says holds.

scripts/rules_table.py finds the rules in the source by what they are; test_chart.py checks the committed
table is current (gen_chart.py --check), test_chart_values.py that the chart enforces each rule where the
table says.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gen_chart
import rules_table


def test_every_rule_in_the_source_is_in_the_table() -> None:
    rows = {key for key, _ in rules_table.read_table(rules_table.TABLE.read_text(encoding="utf-8"))}
    missing = [f"{r.source}: {r.message}" for r in rules_table.discover() if r.message not in rows]
    assert not missing, "rules missing from docs/reference/rules.md (run `make chart`):\n" + "\n".join(missing)


def test_rules_are_found_by_what_they_are() -> None:
    found = {(r.message, r.config) for r in rules_table.discover()}
    assert {
        ("duplicate model name …", True),  # a (key path, message) pair of the config's checks
        ("… looks like a secret, and its value would be written into the rendered manifests: use "
         "cache.hf_token_secret for the HF token (a Secret reference, rendered as secretKeyRef), or local.env for the "
         "local target (never rendered)", True),  # from a comprehension
        ("…: '..' is not allowed in the path (it becomes the mount's subPath)", True),  # a parser's ValueError
        ("no memory limit: vLLM sizes its cache from the node's memory", False),  # a lint Finding
        ("--convert=reward was removed in vLLM 0.16.0", False),  # a vLLM FlagProblem
        ("KServe >= 0.18 webhooks reject a PYTHONPATH env", False),
        ("'MinReplicas' cannot be greater than MaxReplicas (KServe webhook validateReplicas)", False),
        ("max_replicas … with a … cache (…): only one pod can ever mount it", False),  # one branch of a choice
    } <= found
    assert any(m.startswith("the runtime mounts a volume at …") for m, _ in found)  # storage.mount_conflict's "why"
    assert any("failed to replace placeholder" in m for m, _ in found)  # a LintError composing the pod
    # Key paths alone are no rules.
    assert not any(m in ("model_id", "max_replicas", "storage_uri") for m, _ in found)


def test_a_new_rule_is_missing_from_the_table_until_it_is_regenerated(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "poolserve"
    for layer in ("config", "kserve", "vllm"):
        shutil.copytree(rules_table.SRC / layer, src / layer)
    (src / "config" / "extra.py").write_text(
        'def check(spec):\n    """A new rule, in a module of its own."""\n'
        '    return [(("models", 0, "name"), f"{spec.x!r} is a brand new rule")]\n')
    monkeypatch.setattr(rules_table, "SRC", src)
    rows = {key for key, _ in rules_table.read_table(rules_table.TABLE.read_text(encoding="utf-8"))}
    new = [r for r in rules_table.discover() if r.message not in rows]
    assert [(r.message, r.source, r.config) for r in new] == [("… is a brand new rule", "config/extra.py: check", True)]


def test_the_chart_checks_every_rule_of_the_config_before_it_renders() -> None:
    # What poolserve refuses to read, `helm install` refuses too: in the schema, or in templates/_validate.tpl.
    rules = rules_table.discover()
    where = rules_table.enforcement(rules, gen_chart.schema_data(), rules_table.VALIDATE_TPL.read_text())
    assert {where[r] for r in rules if r.config} == {"schema", "chart"}
    assert {where[r] for r in rules if not r.config} == {"poolserve"}


def test_a_schema_fragment_must_name_a_rule_of_the_config() -> None:
    rules = rules_table.discover()
    schema = {"properties": {"x": {"$comment": rules_table.RULE_TAG + "duplicate model name"}}}
    assert rules_table.enforcement(rules, schema, "")  # a part of a rule's message
    schema["properties"]["x"]["$comment"] = rules_table.RULE_TAG + "a rule nobody wrote"
    with pytest.raises(SystemExit, match="a rule nobody wrote"):
        rules_table.enforcement(rules, schema, "")


def test_the_table_finds_the_rule_of_a_message() -> None:
    rows = rules_table.read_table(rules_table.TABLE.read_text(encoding="utf-8"))
    assert rules_table.helm_for("models[1].name: duplicate model name 'minilm' (and 2 more)", rows) == {"chart"}
    assert rules_table.helm_for("models[0].name: 'MiniLM' must be lowercase letters, digits and '-', starting with "
                                "a letter", rows) == {"schema"}
    # lint's "vLLM …: …" wraps vLLM's own message: the more specific rule is the one.
    assert rules_table.helm_for("vLLM 0.9.2: --pooler-config needs vLLM >= 0.11.0 (image has 0.9.2)",
                                rows) == {"poolserve"}
    assert rules_table.helm_for("nothing poolserve says", rows) == set()
