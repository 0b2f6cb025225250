"""The local HF hub cache layout (poolserve.vllm.hfcache)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from poolserve.errors import LocalRunError, SpecError
from poolserve.vllm.hfcache import import_model, list_models, snapshot_path


def _model(tmp_path: Path) -> Path:
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "1_Pooling").mkdir()
    (src / "1_Pooling" / "config.json").write_text("{}")
    return src


def test_import_lays_out_the_hub_cache(tmp_path: Path) -> None:
    cached = import_model(tmp_path / "hf", "org/m", _model(tmp_path))
    assert cached.path.parent.name == "snapshots" and (cached.path / "1_Pooling" / "config.json").is_file()
    assert (tmp_path / "hf" / "hub" / "models--org--m" / "refs" / "main").read_text() == cached.revision
    assert snapshot_path(tmp_path / "hf", "org/m") == cached.path
    assert [c.model_id for c in list_models(tmp_path / "hf")] == ["org/m"]


def test_import_that_cannot_write_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _model(tmp_path)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / "hf" / "blocked"))

    monkeypatch.setattr(shutil, "copy2", denied)  # the filesystem edge beneath import_model
    with pytest.raises(LocalRunError, match=r"cannot import org/m into .*: Permission denied \(.*/hf/blocked\)"):
        import_model(tmp_path / "hf", "org/m", src)
    assert not list((tmp_path / "hf").rglob("*.tmp"))  # nothing half-written left behind


@pytest.mark.parametrize("bad_id", ["nameonly", "a/b/c", "/x"])
def test_bad_model_id(tmp_path: Path, bad_id: str) -> None:
    with pytest.raises(SpecError, match="expected org/name"):
        import_model(tmp_path / "hf", bad_id, _model(tmp_path))
