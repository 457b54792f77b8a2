"""Model-diff extraction with cached answers and activation shards; corpus and system-prompt contrasts; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from steerwarm.cli.app import app
from steerwarm.corpus.validation import ValidationPrompt
from steerwarm.directions.activations import response_activations
from steerwarm.directions.aggregate import contrast_vector
from steerwarm.directions.shards import ShardMismatchError, open_shards, read_layer, shard_path
from steerwarm.directions.sources import (
    COLD_SYSTEM,
    WARM_SYSTEM,
    corpus_contrast_items,
    difference_vector,
    extract_finetune,
    finetune_acts,
    finetune_items,
    system_prompt_items,
)
from steerwarm.model.load import LoadedModel
from steerwarm.steer.answers import AnswerLog, answer_key
from steerwarm.steer.vector import SteeringVector
from tests.tiny_pairs import PROMPTS, as_loaded, bias_model, planted, save, shifted

LAYER = 1


@pytest.fixture()
def pair() -> tuple[LoadedModel, LoadedModel, torch.Tensor]:
    base = bias_model()
    delta = 0.5 * planted()
    return as_loaded(base, "base"), as_loaded(shifted(base, LAYER, delta), "finetuned"), delta


@pytest.mark.parametrize("method", ["mean", "pca"])
def test_extract_finetune_recovers_the_planted_vector(pair: tuple[LoadedModel, LoadedModel, torch.Tensor],
                                                 tmp_path: Path, method: str) -> None:
    base, finetuned, delta = pair
    vec = extract_finetune(base, finetuned, PROMPTS, tmp_path, method=method, layers=[1, 2], max_new_tokens=6,
                           shard_size=4, default_layers=[1])
    truth = delta / delta.norm()
    assert float(vec.directions[1] @ truth) > 0.99
    if method == "mean":  # the mean difference at the shifted layer is the planted vector itself
        assert vec.extra["raw_diff_norm"]["1"] == pytest.approx(float(delta.norm()), rel=1e-4)
    p = vec.provenance.params
    assert p["finetune_fingerprint"] == finetuned.fingerprint and vec.model_fingerprint == base.fingerprint
    assert p["n_items"] == p["n_base_answers"] + p["n_finetune_answers"] and p["n_prompts"] == len(PROMPTS)
    spec = open_shards(tmp_path / "acts" / "base")
    base_acts = read_layer(tmp_path / "acts" / "base", spec, 1)
    assert p["n_tokens"] == base_acts.shape[0]
    assert vec.norms[1] == pytest.approx(float(base_acts.norm(dim=-1).median()))
    with pytest.raises(ValueError, match="layer 0"):  # nothing differs before the shifted layer
        extract_finetune(base, finetuned, PROMPTS, tmp_path / "l0", layers=[0], max_new_tokens=6)


def test_shards_are_the_activations_and_line_up(pair: tuple[LoadedModel, LoadedModel, torch.Tensor],
                                                tmp_path: Path) -> None:
    base, finetuned, delta = pair
    extract_finetune(base, finetuned, PROMPTS, tmp_path, layers=[1], max_new_tokens=6, shard_size=4)
    log = AnswerLog(tmp_path / "responses.jsonl")
    assert len(log.rows) == 2 * len(PROMPTS)
    bdir, tdir = tmp_path / "acts" / "base", tmp_path / "acts" / "finetune"
    b, t = read_layer(bdir, open_shards(bdir), 1), read_layer(tdir, open_shards(tdir), 1)
    assert torch.allclose(t - b, delta.expand_as(b), atol=1e-5)  # token by token: exactly the planted shift
    ba = [log.rows[(answer_key(model=base.fingerprint, max_new_tokens=6), p.id)] for p in PROMPTS]
    ta = [log.rows[(answer_key(model=finetuned.fingerprint, max_new_tokens=6), p.id)] for p in PROMPTS]
    direct = torch.cat([a[1] for a in response_activations(base, finetune_items(PROMPTS, ba, ta), [1], batch_size=3)])
    assert torch.allclose(direct, b, atol=1e-5)  # the shards hold the response-token activations, in item order


def test_rerun_resumes_missing_shards_and_refuses_foreign_ones(pair: tuple[LoadedModel, LoadedModel, torch.Tensor],
                                                               tmp_path: Path) -> None:
    base, finetuned, _ = pair
    first = extract_finetune(base, finetuned, PROMPTS, tmp_path, layers=[1, 2], max_new_tokens=6, shard_size=4)
    bdir = tmp_path / "acts" / "base"
    kept, lost = shard_path(bdir, 0), shard_path(bdir, 1)
    kept_mtime = kept.stat().st_mtime_ns
    lost.unlink()  # as if the run had been killed before writing it
    n_lines = len((tmp_path / "responses.jsonl").read_text().splitlines())
    again = extract_finetune(base, finetuned, PROMPTS, tmp_path, layers=[1, 2], max_new_tokens=6, shard_size=4)
    assert lost.is_file() and kept.stat().st_mtime_ns == kept_mtime
    assert len((tmp_path / "responses.jsonl").read_text().splitlines()) == n_lines  # answers were not regenerated
    for layer in (1, 2):
        assert torch.equal(first.directions[layer], again.directions[layer])
    other = as_loaded(shifted(base.model, LAYER, planted(seed=9)), "other")
    with pytest.raises(ShardMismatchError, match="items_hash"):
        extract_finetune(base, other, PROMPTS, tmp_path, layers=[1, 2], max_new_tokens=6, shard_size=4)
    with pytest.raises(ShardMismatchError, match="layers"):
        extract_finetune(base, finetuned, PROMPTS, tmp_path, layers=[1], max_new_tokens=6, shard_size=4)


def test_answer_log_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    calls: list[list[str]] = []

    def gen(users: list[str]) -> list[str]:
        calls.append(users)
        return [u.upper() for u in users]

    prompts = [ValidationPrompt("a", "x", "one"), ValidationPrompt("b", "x", "two"),
               ValidationPrompt("c", "x", "three")]
    assert AnswerLog(path).answers("k", prompts, gen, batch_size=2) == ["ONE", "TWO", "THREE"]
    path.write_text(path.read_text().rstrip("\n")[:-5])  # a kill mid-write tears the last line
    assert AnswerLog(path).answers("k", prompts, gen) == ["ONE", "TWO", "THREE"]
    assert calls == [["one", "two"], ["three"], ["three"]]
    assert AnswerLog(path).answers("k2", prompts[:1], gen) == ["ONE"] and len(calls) == 4


def test_system_prompt_and_corpus_contrasts(tiny: LoadedModel) -> None:
    warm, cold = system_prompt_items(limit=3)
    assert [w.text for w in warm] == [c.text for c in cold] and {w.system for w in warm} == {WARM_SYSTEM}
    assert {c.system for c in cold} == {COLD_SYSTEM}
    vec = contrast_vector(tiny, warm, cold, layers=[1], method="system-prompt-contrast")
    assert vec.provenance.method == "system-prompt-contrast" and vec.provenance.params["n_pos"] == 3
    cw, cc = corpus_contrast_items(limit=6)
    assert [w.prompt for w in cw] == [c.prompt for c in cc]
    assert all(w.text != c.text for w, c in zip(cw, cc, strict=True))
    assert len({w.prompt for w in cw}) == 6


def test_cli_extract_finetune_on_saved_models(tmp_path: Path) -> None:
    base = bias_model()
    delta = 0.5 * planted()
    base_dir = save(base, tmp_path / "base")
    finetune_dir = save(shifted(base, LAYER, delta), tmp_path / "finetuned")
    out = tmp_path / "v.safetensors"
    args = ["vector", "extract", "finetune", "--finetune", str(finetune_dir), "--model", str(base_dir),
            "--cache", str(tmp_path / "c"), "--out", str(out), "--layers", "1-2", "--steer-layers", "1",
            "--limit", "3", "--max-tokens", "5"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    vec = SteeringVector.load(out)
    assert float(vec.directions[1] @ (delta / delta.norm())) > 0.99 and vec.layers == [1]
    assert vec.provenance.params["finetune"] == str(finetune_dir)
    res = CliRunner().invoke(app, [*args[:-4], "--limit", "2", "--max-tokens", "5"])  # another item list
    assert res.exit_code == 2 and "another run" in res.output
    meta = json.loads(json.dumps(vec.metadata()))
    assert meta["provenance"]["method"] == "finetune-diff-mean"


def test_difference_cancels_the_shared_shift(pair: tuple[LoadedModel, LoadedModel, torch.Tensor],
                                             tmp_path: Path) -> None:
    """Two 'fine-tunes' = one shared shift plus opposite specific shifts: their raw directions are close, their
    difference is the specific shift alone, recovered from the raw norms the vectors keep."""
    base, _, shared = pair
    specific = torch.zeros_like(shared)
    specific[0] = 0.2 * float(shared.norm())  # small, and orthogonal enough to the shared shift to be told apart
    specific -= (specific @ shared) / (shared @ shared) * shared
    warm = as_loaded(shifted(base.model, LAYER, shared + specific), "warm")
    cold = as_loaded(shifted(base.model, LAYER, shared - specific), "cold")
    vw = extract_finetune(base, warm, PROMPTS, tmp_path / "w", layers=[1, 2], max_new_tokens=6, name="w")
    vc = extract_finetune(base, cold, PROMPTS, tmp_path / "c", layers=[1, 2], max_new_tokens=6, name="c")
    assert float(vw.directions[1] @ vc.directions[1]) > 0.9  # dominated by the shared shift
    diff = difference_vector(vw, vc, name="w-minus-c")
    assert float(diff.directions[1] @ (specific / specific.norm())) > 0.99
    assert diff.extra["raw_diff_norm"]["1"] == pytest.approx(2 * float(specific.norm()), rel=1e-3)
    assert diff.provenance.method == "model-diff-difference" and diff.model_fingerprint == base.fingerprint
    vw.extra.pop("raw_diff_norm")
    with pytest.raises(ValueError, match="raw difference norms"):
        difference_vector(vw, vc, name="x")


def test_finetune_acts_also_reads_a_cache_written_before_the_rename(tmp_path: Path) -> None:
    assert finetune_acts(tmp_path) == tmp_path / "acts" / "finetune"
    (tmp_path / "acts" / "tuned").mkdir(parents=True)
    assert finetune_acts(tmp_path) == tmp_path / "acts" / "tuned"
    (tmp_path / "acts" / "finetune").mkdir()
    assert finetune_acts(tmp_path) == tmp_path / "acts" / "finetune"
