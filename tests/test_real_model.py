"""End-to-end checks on the real embedded default model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from steerwarm.generation import GenerationConfig, chat_text, generate_texts
from steerwarm.models import LoadedModel, prepare
from steerwarm.steering import active_hooks
from steerwarm.vectors import SteeringVector

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
    from steerwarm.models import load

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
