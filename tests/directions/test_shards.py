"""Activation shards after a real kill mid-write: the rerun writes only the missing shards, each shard exists once
and the folder equals an uninterrupted run's; a shard of other settings is refused naming every differing field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from steerwarm.directions.activations import TextItem
from steerwarm.directions.shards import ShardMismatchError, open_shards, read_layer, read_lengths, write_shards
from steerwarm.model.load import LoadedModel
from tests.killing import run_snippet

ITEMS = [TextItem(f"you are kind and good {i}", prompt="i feel sad") for i in range(5)]
SETTINGS = {"items_hash": "h", "layers": [1, 2], "shard_size": 2, "max_tokens": 16}

SCRIPT = f"""
import sys
from pathlib import Path
from steerwarm.directions.shards import write_shards
from steerwarm.model.load import LoadedModel, fingerprint
from tests.conftest import make_tiny_model, make_tokenizer
from tests.directions.test_shards import ITEMS
model = make_tiny_model()
tiny = LoadedModel(model=model, tokenizer=make_tokenizer(), name="tiny", path=Path("."),
                   fingerprint=fingerprint(model))
write_shards(tiny, ITEMS, Path(sys.argv[1]), **{SETTINGS!r})
"""


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_shards_resume_after_a_kill_mid_write(tiny: LoadedModel, tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    run_snippet(SCRIPT, str(folder), kill_after=2)  # dies committing the second shard: it stays a temporary file
    names = _files(folder)
    assert names[-1] == "shard-00000.safetensors" and len(names) == 2 and names[0].startswith(".shard-00001")
    spec = write_shards(tiny, ITEMS, folder, **SETTINGS)  # type: ignore[arg-type]
    assert _files(folder) == [f"shard-0000{i}.safetensors" for i in range(3)]  # the stray temporary file is gone
    ref = tmp_path / "ref"
    write_shards(tiny, ITEMS, ref, **SETTINGS)  # type: ignore[arg-type]
    assert open_shards(folder) == spec == open_shards(ref)
    assert torch.equal(read_lengths(folder, spec), read_lengths(ref, spec)) and len(read_lengths(folder, spec)) == 5
    for layer in (1, 2):
        assert torch.equal(read_layer(folder, spec, layer), read_layer(ref, spec, layer))
    with pytest.raises(ShardMismatchError, match=r"field 'items_hash' was 'h' in this shard, now 'x'; .*field "
                                                 r"'max_tokens' was 16 in this shard, now 8; it belongs to another"):
        write_shards(tiny, ITEMS, folder, **{**SETTINGS, "items_hash": "x", "max_tokens": 8})  # type: ignore[arg-type]
