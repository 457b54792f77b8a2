"""Activation shards: one model's response-token residuals over a fixed list of items, on disk and resumable.

Layout of a shard folder: `shard-00000.safetensors`, `shard-00001.safetensors`, ... Shard i holds items
[i * shard_size, (i + 1) * shard_size) of the list: tensor `layer.L` ([tokens, hidden], float32, the items' response
tokens concatenated in item order) for every recorded layer, and `lengths` ([items], int64: tokens per item).

Invariants:
- A shard is written under a temporary name, fsync'ed and renamed into place (`records.commit_file`), so a shard
  file that exists is complete; a killed run leaves at most a stray temporary file, which the next run removes.
- A rerun computes only the missing shards. A shard's metadata is its settings lock: one whose metadata (model
  fingerprint, items hash, item count, layers, shard size, token limit) differs from the request is refused
  (`records.SettingsMismatchError`), naming every differing field with both values: shards of different models or
  item lists are never mixed.
- Rows line up across models: for the same items and tokenizer, shard i of two models holds the same tokens in the
  same order, so fine-tune minus base is a per-token difference.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from steerwarm.directions.activations import TextItem, response_activations
from steerwarm.model.load import LoadedModel
from steerwarm.records import Difference, SettingsMismatchError, commit_file, differences

SHARD_FORMAT = "steerwarm.shard/1"


class ShardMismatchError(SettingsMismatchError):
    """A shard on disk was made for another model, item list or setting than the one asked for."""


@dataclass(frozen=True)
class ShardSpec:
    """What a shard folder holds; every shard's metadata must equal it."""

    model_fingerprint: str
    model_name: str
    items_hash: str
    n_items: int
    layers: tuple[int, ...]
    shard_size: int
    max_tokens: int

    @property
    def n_shards(self) -> int:
        return (self.n_items + self.shard_size - 1) // self.shard_size

    def metadata(self) -> dict[str, str]:
        body = asdict(self)
        body["layers"] = list(self.layers)
        return {"format": SHARD_FORMAT, "spec": json.dumps(body, sort_keys=True)}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], where: Path) -> ShardSpec:
        if meta.get("format") != SHARD_FORMAT:
            raise ShardMismatchError(where, [Difference("format", meta.get("format"), SHARD_FORMAT)], what="file",
                                     hint="it is not a steerwarm activation shard")
        body = json.loads(meta["spec"])
        body["layers"] = tuple(int(x) for x in body["layers"])
        return cls(**body)


def shard_path(directory: Path, index: int) -> Path:
    return directory / f"shard-{index:05d}.safetensors"


def _read_spec(path: Path) -> ShardSpec:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return ShardSpec.from_metadata(dict(fh.metadata() or {}), path)


def _check(path: Path, want: ShardSpec) -> None:
    diffs = differences(asdict(_read_spec(path)), asdict(want))
    if diffs:
        raise ShardMismatchError(path, diffs, what="shard",
                                 hint=f"it belongs to another run: delete {path.parent} or use another cache folder")


def write_shards(loaded: LoadedModel, items: Sequence[TextItem], directory: Path, *, items_hash: str,
                 layers: Sequence[int], shard_size: int = 32, max_tokens: int = 512, batch_size: int = 8,
                 desc: str = "shards") -> ShardSpec:
    """Record `loaded`'s residuals at `layers` over the items' response tokens into shards (missing ones only)."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    spec = ShardSpec(loaded.fingerprint, loaded.name, items_hash, len(items), tuple(int(x) for x in layers),
                     shard_size, max_tokens)
    directory.mkdir(parents=True, exist_ok=True)
    for stray in directory.glob(".shard-*.tmp-*"):  # left by a killed run
        stray.unlink(missing_ok=True)
    todo = []
    for index in range(spec.n_shards):
        path = shard_path(directory, index)
        if path.is_file():
            _check(path, spec)
        else:
            todo.append(index)
    for index in tqdm(todo, desc=desc):
        _write_one(loaded, items, directory, spec, index, batch_size)
    return spec


def _write_one(loaded: LoadedModel, items: Sequence[TextItem], directory: Path, spec: ShardSpec, index: int,
               batch_size: int) -> None:
    from safetensors.torch import save_file

    chunk = items[index * spec.shard_size:(index + 1) * spec.shard_size]
    rows: dict[int, list[torch.Tensor]] = {layer: [] for layer in spec.layers}
    lengths = []
    for acts in response_activations(loaded, chunk, spec.layers, batch_size=batch_size, max_tokens=spec.max_tokens,
                                     desc=f"shard {index}"):
        lengths.append(int(next(iter(acts.values())).shape[0]))
        for layer in spec.layers:
            rows[layer].append(acts[layer])
    tensors = {f"layer.{layer}": torch.cat(rows[layer]).contiguous() for layer in spec.layers}
    tensors["lengths"] = torch.tensor(lengths, dtype=torch.int64)
    final = shard_path(directory, index)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata=spec.metadata())
    commit_file(tmp, final)


def open_shards(directory: Path) -> ShardSpec:
    """The spec of a complete shard folder (every shard present and consistent)."""
    first = shard_path(directory, 0)
    if not first.is_file():
        raise FileNotFoundError(f"no activation shards in {directory} (expected {first.name}); run `steerwarm "
                                "vector extract finetune` with this cache folder first")
    spec = _read_spec(first)
    for index in range(spec.n_shards):
        path = shard_path(directory, index)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the run that wrote {directory} did not finish; rerun it")
        _check(path, spec)
    return spec


def read_layer(directory: Path, spec: ShardSpec, layer: int) -> torch.Tensor:
    """[tokens, hidden] activations at `layer` over every item, in item order."""
    from safetensors import safe_open

    if layer not in spec.layers:
        raise ValueError(f"layer {layer} was not recorded in {directory} (recorded: {list(spec.layers)})")
    parts = []
    for index in range(spec.n_shards):
        path = shard_path(directory, index)
        _check(path, spec)
        with safe_open(str(path), framework="pt") as fh:
            parts.append(fh.get_tensor(f"layer.{layer}"))
    return torch.cat(parts)


def read_lengths(directory: Path, spec: ShardSpec) -> torch.Tensor:
    """[items] number of response tokens per item, in item order."""
    from safetensors import safe_open

    parts = []
    for index in range(spec.n_shards):
        with safe_open(str(shard_path(directory, index)), framework="pt") as fh:
            parts.append(fh.get_tensor("lengths"))
    return torch.cat(parts)
