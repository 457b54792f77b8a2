"""steerwarm.paths.display: how committed reports and cards name a path (never a machine's absolute path), and
display_paths, the same for every path field of a settings or provenance record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from steerwarm.paths import display, display_paths, source_checkout


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    home, shared, cwd, elsewhere = (tmp_path / n for n in ("home", "shared", "cwd", "elsewhere"))
    for d in (home, shared, cwd, elsewhere):
        d.mkdir()
    monkeypatch.setenv("STEERWARM_HOME", str(home))
    monkeypatch.setenv("STEERWARM_SHARED_DATA", str(shared))
    monkeypatch.chdir(cwd)
    return {"home": home, "shared": shared, "cwd": cwd, "elsewhere": elsewhere}


def test_inside_the_source_checkout_relative_to_it(places: dict[str, Path]) -> None:
    checkout = source_checkout()
    if checkout is None:
        pytest.skip("steerwarm is installed, not a source checkout")
    assert display(checkout / "vectors" / "warm.safetensors") == "vectors/warm.safetensors"
    assert display(checkout / "eval" / "items" / "trivia.jsonl") == "eval/items/trivia.jsonl"


def test_inside_the_working_folder_relative_to_it(places: dict[str, Path]) -> None:
    assert display(places["cwd"] / "runs" / "base") == "runs/base"


def test_under_the_home_named_by_its_variable(places: dict[str, Path]) -> None:
    assert display(places["home"] / "runs" / "finetune-cold") == "$STEERWARM_HOME/runs/finetune-cold"
    assert display(places["home"]) == "$STEERWARM_HOME"


def test_under_the_shared_data_named_by_its_variable(places: dict[str, Path]) -> None:
    assert display(places["shared"] / "warm_ai_2025" / "summary_data") == \
        "$STEERWARM_SHARED_DATA/warm_ai_2025/summary_data"


def test_outside_all_of_them_the_bare_name(places: dict[str, Path]) -> None:
    assert display(places["elsewhere"] / "deep" / "model-folder") == "model-folder"
    assert display(str(places["elsewhere"] / "x.json")) == "x.json"


def test_relative_paths_stay_as_given_and_display_is_idempotent(places: dict[str, Path]) -> None:
    assert display("../shared/data/items.jsonl") == "../shared/data/items.jsonl"
    for p in (places["home"] / "a", places["cwd"] / "b" / "c", places["elsewhere"] / "d"):
        assert display(display(p)) == display(p)


def test_display_paths_rewrites_path_fields_only(places: dict[str, Path]) -> None:
    record: dict[str, Any] = {
        "target": {"spec": "warmth=1", "path": str(places["home"] / "models" / "m"),
                   "vectors_dir": str(places["elsewhere"] / "vectors")},
        "items": {"trivia": {"path": str(places["cwd"] / "items.jsonl"), "sha256": "abc"}},
        "params": [{"finetune_path": str(places["home"] / "ft"), "cache": "relative/cache"}],
        "note": str(places["elsewhere"] / "not-a-path-field")}
    out = display_paths(record)
    assert out["target"] == {"spec": "warmth=1", "path": "$STEERWARM_HOME/models/m", "vectors_dir": "vectors"}
    assert out["items"]["trivia"] == {"path": "items.jsonl", "sha256": "abc"}
    assert out["params"] == [{"finetune_path": "$STEERWARM_HOME/ft", "cache": "relative/cache"}]
    assert out["note"] == record["note"]  # only path fields are rewritten
    assert display_paths(out) == out
    assert record["target"]["path"].startswith(str(places["home"]))  # the input is not changed
