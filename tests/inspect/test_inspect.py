"""Inspection: cosines, probe accuracy, logit lens, projections, the report, and TransformerLens agreement."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from steerwarm.cli.app import app
from steerwarm.directions.activations import TextItem
from steerwarm.directions.shards import open_shards, read_layer, read_lengths
from steerwarm.directions.sources import extract_finetune
from steerwarm.inspect.measures import item_projections, layer_cosines, logit_lens, probe_accuracy, text_projections
from steerwarm.inspect.report import InspectInputs, inspect_vector
from steerwarm.model.load import LoadedModel
from steerwarm.steer.hooks import record_residuals
from steerwarm.steer.vector import SteeringVector
from tests.conftest import make_tiny_model, random_vector
from tests.tiny_pairs import PROMPTS, as_loaded, bias_model, planted, save, shifted


@pytest.fixture()
def extracted(tmp_path: Path) -> tuple[LoadedModel, SteeringVector, Path]:
    base_m = bias_model()
    base = as_loaded(base_m, "base")
    cache = tmp_path / "cache"
    vec = extract_finetune(base, as_loaded(shifted(base_m, 1, 0.5 * planted()), "finetuned"), PROMPTS, cache,
                      layers=[1, 2], max_new_tokens=6, default_layers=[1])
    return base, vec, cache


def test_layer_cosines(tiny: LoadedModel) -> None:
    a, b = random_vector(tiny, seed=1), random_vector(tiny, [1], seed=2)
    cos = layer_cosines(a, a)
    assert list(cos) == [0, 1, 2] and all(v == pytest.approx(1.0) for v in cos.values())
    b.directions = {1: b.directions[1]}
    b.norms = {1: b.norms[1]}
    assert list(layer_cosines(a, b)) == [1]
    assert layer_cosines(a, b)[1] == pytest.approx(float(a.directions[1] @ b.directions[1]))


def test_probe_accuracy_is_chance_for_identical_and_perfect_for_shifted() -> None:
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(60, 8, generator=g)
    lengths = torch.tensor([6] * 10)
    assert probe_accuracy(acts, acts.clone(), lengths) == pytest.approx(0.5)
    assert probe_accuracy(acts, acts + 3.0 * torch.ones(8), lengths) == pytest.approx(1.0)


def test_logit_lens_is_the_direction_through_norm_and_unembedding(tiny: LoadedModel) -> None:
    vec = random_vector(tiny, [1])
    lens = logit_lens(tiny, vec, 1, k=5)
    model = tiny.model
    with torch.no_grad():
        logits = model.lm_head(model.model.norm(vec.directions[1] * vec.norms[1]))
    top = torch.topk(logits, 5).indices
    bottom = torch.topk(-logits, 5).indices
    assert [t for t, _ in lens.promoted] == [tiny.tokenizer.decode([int(i)]) for i in top]
    assert [t for t, _ in lens.suppressed] == [tiny.tokenizer.decode([int(i)]) for i in bottom]
    assert lens.promoted[0][1] == pytest.approx(float(logits.max() - logits.mean()), rel=1e-5)


def test_projections_separate_the_models_along_the_planted_shift(
        extracted: tuple[LoadedModel, SteeringVector, Path]) -> None:
    base, vec, cache = extracted
    bdir, tdir = cache / "acts" / "base", cache / "acts" / "finetune"
    bspec, tspec = open_shards(bdir), open_shards(tdir)
    lengths = read_lengths(bdir, bspec)
    pb = item_projections(read_layer(bdir, bspec, 1), lengths, vec, 1)
    pt = item_projections(read_layer(tdir, tspec, 1), lengths, vec, 1)
    shift = vec.extra["raw_diff_norm"]["1"] / vec.norms[1]  # the planted vector's length, in typical norms
    assert all(t - b == pytest.approx(shift, rel=1e-3) for b, t in zip(pb, pt, strict=True))
    items = [TextItem("you are kind", prompt="i feel sad")]
    assert len(text_projections(base, items, vec, 1)) == 1


def test_inspect_writes_the_report_and_plots(extracted: tuple[LoadedModel, SteeringVector, Path],
                                             tmp_path: Path) -> None:
    base, vec, cache = extracted
    other = SteeringVector.from_differences({1: planted(), 2: -planted()}, {1: 1.0, 2: 1.0},
                                            model_fingerprint=vec.model_fingerprint, model_name="base",
                                            provenance=vec.provenance, name="planted")
    inputs = InspectInputs(vec, against={"planted": other}, caches=[cache], model=base,
                           texts={"hand-written": [TextItem("you are kind and good", prompt="i feel sad"),
                                                   TextItem("no .", prompt="help")]})
    report = inspect_vector(inputs, tmp_path / "out")
    text = report.read_text()
    for png in ("norms.png", "cosines.png", "probe.png", "projections.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000 and f"({png})" in text
    for heading in ("## Per-layer norms", "## Cosines", "## Probe accuracy", "## Logit lens at layer 1",
                    "## Projections", "## Layer choice", "## Calibration"):
        assert heading in text
    assert "| 1 | 1.0000 |" in text  # probe: perfect separation at the shifted layer
    assert "hand-written (read by the base model)" in text and "Not calibrated" in text
    bare = inspect_vector(InspectInputs(vec, model_error="(no model)"), tmp_path / "bare")
    bare_text = bare.read_text()
    assert "no cosines" in bare_text and "probe accuracy not computed" in bare_text
    assert "logit lens not computed. (no model)" in bare_text and "no projections" in bare_text
    assert sorted(p.name for p in (tmp_path / "bare").glob("*.png")) == ["norms.png"]


def test_cli_inspect(extracted: tuple[LoadedModel, SteeringVector, Path], tmp_path: Path) -> None:
    base, vec, cache = extracted
    model_dir = save(base.model, tmp_path / "base")
    vec.save(tmp_path / "v.safetensors")
    random_vector(base, [1, 2], name="r").save(tmp_path / "r.safetensors")
    (tmp_path / "t.jsonl").write_text('{"prompt": "i feel sad", "text": "you are kind"}\n')
    res = CliRunner().invoke(app, ["vector", "inspect", str(tmp_path / "v.safetensors"), "--against",
                                   str(tmp_path / "r.safetensors"), "--cache", str(cache), "--texts",
                                   f"mine={tmp_path / 't.jsonl'}", "--model", str(model_dir), "--out",
                                   str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| layer | r |" in text
    assert "mine (read by the base model)" in text and "## Logit lens at layer 1" in text
    (tmp_path / "bad.jsonl").write_text("not json\n")
    bad = CliRunner().invoke(app, ["vector", "inspect", str(tmp_path / "v.safetensors"), "--no-model", "--texts",
                                   f"bad={tmp_path / 'bad.jsonl'}", "--out", str(tmp_path / "rep2")])
    assert bad.exit_code == 2 and "--texts bad:" in bad.output and "bad.jsonl:1" in bad.output


@pytest.mark.skipif(importlib.util.find_spec("transformer_lens") is None,
                    reason="TransformerLens is an optional extra: pip install -e '.[interp]'")
def test_transformer_lens_residuals_equal_the_hf_route(tmp_path: Path) -> None:
    from steerwarm.inspect.measures import transformer_lens_residuals

    model = make_tiny_model()
    folder = save(model, tmp_path / "tiny")
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15]])
    layers = list(range(model.config.num_hidden_layers))
    with torch.no_grad(), record_residuals(model, layers) as rec:
        model(input_ids=ids)
    got = transformer_lens_residuals(folder, ids, layers)
    for layer in layers:
        assert torch.allclose(got[layer], rec[layer][0], atol=1e-5), layer


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("transformer_lens") is None,
                    reason="TransformerLens is an optional extra: pip install -e '.[interp]'")
def test_transformer_lens_residuals_equal_the_hf_route_on_the_default_model(real: LoadedModel) -> None:
    from steerwarm.inspect.measures import transformer_lens_residuals

    ids = real.tokenizer("I failed my exam today and I feel stupid.", return_tensors="pt")["input_ids"]
    layers = [0, 15, real.num_layers - 1]
    with torch.no_grad(), record_residuals(real.model, layers) as rec:
        real.model(input_ids=ids)
    got = transformer_lens_residuals(real.path, ids, layers)
    for layer in layers:
        want = rec[layer][0]
        # position 0 carries norms in the thousands here: compare relative to the largest entry
        assert float((got[layer] - want).abs().max()) <= 1e-6 * float(want.abs().max()), layer


def test_card_lists_provenance_cosines_and_calibration(tiny: LoadedModel, tmp_path: Path) -> None:
    from steerwarm.steer.vector import Calibration

    vec = random_vector(tiny, [1], seed=1, name="warmish")
    vec.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 0.25],
                                  curve=[{"coef": 0.0, "dial": 0.0, "p_warm": 0.4}, {"coef": 0.25, "dial": 1.0,
                                                                                     "p_warm": 0.6}], note="fit")
    vec.extra["calibration_finetune"] = {"label": "finetune warm", "p_warm": 0.6, "p_warm_se": 0.01, "n": 48}
    other = random_vector(tiny, seed=2, name="other")
    vec.save(tmp_path / "v.safetensors")
    other.save(tmp_path / "o.safetensors")
    res = CliRunner().invoke(app, ["vector", "card", str(tmp_path / "v.safetensors"), "--against",
                                   f"corpus={tmp_path / 'o.safetensors'}", "--made-by", "`steerwarm vector calibrate`",
                                   "--out", str(tmp_path / "card.md")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "card.md").read_text()
    cos = layer_cosines(vec, other)
    assert "| layer | corpus |" in text and f"| 1 | {cos[1]:.4f} |" in text
    assert "1 = the fine-tune `finetune warm` (p_warm 0.6000 ± 0.0100, n 48)" in text
    assert "| 1.0000 | 0.2500 |" in text  # the dial -> coef table
    assert "made with: `steerwarm vector calibrate`" in text and "## Layer choice" in text
    bad = CliRunner().invoke(app, ["vector", "card", str(tmp_path / "v.safetensors"), "--against", "nolabel",
                                   "--out", str(tmp_path / "c2.md")])
    assert bad.exit_code == 2 and "LABEL=VECTOR" in bad.output
