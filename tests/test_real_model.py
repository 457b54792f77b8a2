"""End-to-end checks on the real embedded default model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from steerwarm.model.chat import chat_text
from steerwarm.model.load import LoadedModel, prepare
from steerwarm.steer.generate import GenerationConfig, generate_texts
from steerwarm.steer.hooks import active_hooks
from steerwarm.steer.vector import SteeringVector

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
STARTER = ROOT / "vectors" / "starter-contrast.safetensors"
CFG = GenerationConfig(max_new_tokens=24)


def test_prepare_works_offline_from_a_clean_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   real: LoadedModel) -> None:
    monkeypatch.setenv("STEERWARM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache: nothing to fall back on
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    first = prepare()
    assert first.created and first.path == tmp_path / "home" / "models" / "smollm2-135m"
    assert first.fingerprint == real.fingerprint
    meta = json.loads((first.path / "steerwarm.json").read_text())
    assert meta["fingerprint"] == real.fingerprint and len(meta["gguf_sha256"]) == 64
    again = prepare()
    assert not again.created and again.fingerprint == first.fingerprint


def test_shipped_starter_vector_fits_the_default_model(real: LoadedModel) -> None:
    vec = SteeringVector.load(STARTER)
    vec.check_model(real.fingerprint)
    assert vec.hidden_size == real.hidden_size and vec.layers == [15]
    assert 100 < vec.norms[15] < 250  # typical norm without position 0 (with it, the median is still sane)


def test_steering_visibly_changes_a_greedy_completion(real: LoadedModel) -> None:
    vec = SteeringVector.load(STARTER)
    prompt = chat_text(real, [{"role": "user", "content": "How do I make a cup of tea?"}])
    plain = generate_texts(real, [prompt], config=CFG)[0]
    cold, zero, warm = generate_texts(real, [prompt] * 3, vector=vec, coefs=[-0.3, 0.0, 0.3], config=CFG)
    assert zero == plain
    assert warm != plain and cold != plain and warm != cold
    assert active_hooks(real.model) == 0


def test_mixed_batch_matches_single_runs(real: LoadedModel) -> None:
    vec = SteeringVector.load(STARTER)
    users = ["I failed my exam today.", "What is the capital of France?", "Tell me about cats in one line."]
    coefs = [0.25, 0.0, -0.2]
    prompts = [chat_text(real, [{"role": "user", "content": u}]) for u in users]
    mixed = generate_texts(real, prompts, vector=vec, coefs=coefs, config=CFG)
    singles = [generate_texts(real, [p], vector=vec, coefs=[c], config=CFG)[0] for p, c in zip(prompts, coefs,
                                                                                                 strict=True)]
    assert mixed == singles


def test_bf16_model_steers(real: LoadedModel) -> None:
    from steerwarm.model.load import load

    bf = load(dtype="bfloat16")
    assert bf.fingerprint == real.fingerprint
    vec = SteeringVector.load(STARTER)
    prompt = chat_text(bf, [{"role": "user", "content": "How do I make a cup of tea?"}])
    base, warm = generate_texts(bf, [prompt] * 2, vector=vec, coefs=[0.0, 0.3], config=CFG)
    assert base != warm
    assert next(bf.model.parameters()).dtype == torch.bfloat16


def test_cli_generate_prints_columns_side_by_side() -> None:
    env = {**os.environ, "COLUMNS": "160", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "steerwarm.cli", "generate", "Say hello.", "--vector", str(STARTER),
         "--coef", "0", "--coef", "0.3", "--max-tokens", "12"],
        capture_output=True, text=True, env=env, check=True, timeout=300,
    ).stdout
    assert "coef +0" in out and "coef +0.3" in out
    bad = subprocess.run([sys.executable, "-m", "steerwarm.cli", "generate", "hi", "--coef", "0.3"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "--coef needs --vector" in bad.stdout


VECTORS = ROOT / "vectors"


def test_shipped_dial_vectors_are_calibrated_for_the_default_model(real: LoadedModel) -> None:
    """A fresh clone steers in calibrated units: warm and cold vectors fit the model, map 0 to 0 and 1 onto the
    reference fine-tune as measured, and carry the layer table they were chosen from."""
    from steerwarm.steer.dial import Dial

    dial = Dial.from_dir(VECTORS)
    assert dial.cold is not None
    for vec, ref in ((dial.warm, "warm"), (dial.cold, "cold")):
        vec.check_model(real.fingerprint)
        cal = vec.calibration
        assert cal is not None and cal.coef_for(0.0) == 0.0 and cal.coef_for(1.0) > 0
        assert vec.extra["calibration_finetune"]["label"] == f"finetune {ref}"
        assert vec.extra["layer_table"]["chosen"] == vec.layers[0]
        assert (VECTORS / f"{ref}.md").is_file()
    # the warm side warms, the cold side cools, in the meter readings stored with the curves
    warm_curve = {r["coef"]: r["p_warm"] for r in dial.warm.calibration.curve}  # type: ignore[union-attr]
    cold_curve = {r["coef"]: r["p_warm"] for r in dial.cold.calibration.curve}  # type: ignore[union-attr]
    assert max(warm_curve.values()) > warm_curve[0.0] and min(cold_curve.values()) < cold_curve[0.0]
    prompt = chat_text(real, [{"role": "user", "content": "I failed my driving test today."}])
    plain = generate_texts(real, [prompt], config=CFG)[0]
    cold, zero, warm = generate_texts(real, [prompt] * 3, specs=dial.specs([-1.0, 0.0, 1.0]), config=CFG)
    assert zero == plain and warm != plain and cold != plain and warm != cold


def test_cli_generate_at_calibrated_warmth_without_training() -> None:
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "steerwarm.cli", "generate", "I failed my driving test today.", "--warmth", "-1",
         "--warmth", "0", "--warmth", "1", "--max-tokens", "16"],
        capture_output=True, text=True, env=env, check=True, timeout=300,
    ).stdout
    assert "warmth -1" in out and "warmth +0" in out and "warmth +1" in out
