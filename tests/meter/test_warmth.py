"""Warmth meters: SocioT arithmetic on the tiny model; real orderings on the validation triples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from steerwarm.meter.classifier import WarmthClassifier
from steerwarm.meter.sociot import COLD_FRAMES, WARM_FRAMES, socio_t
from steerwarm.meter.summary import bootstrap_se, summarize
from steerwarm.model.load import LoadedModel
from steerwarm.model.logprobs import mean_logprob


def test_socio_t_is_warm_frames_minus_cold_frames(tiny: LoadedModel) -> None:
    texts = ["you are kind and good", "no . bad"]
    got = socio_t(tiny, texts)
    for t, g in zip(texts, got, strict=True):
        warm = mean_logprob(tiny, list(WARM_FRAMES), [t] * 4)
        cold = mean_logprob(tiny, list(COLD_FRAMES), [t] * 4)
        assert g == pytest.approx(np.mean(warm) - np.mean(cold), abs=1e-5)


def test_bootstrap_se_is_seeded_and_sane() -> None:
    vals = list(np.random.default_rng(1).normal(size=400))
    se = bootstrap_se(vals)
    assert se == bootstrap_se(vals)
    assert se == pytest.approx(np.std(vals, ddof=1) / np.sqrt(len(vals)), rel=0.15)
    assert np.isnan(bootstrap_se([1.0]))
    assert summarize([1.0, 2.0, 3.0]).n == 3


@pytest.mark.slow
def test_p_warm_orders_validation_triples() -> None:
    from steerwarm.corpus.schema import load_corpus

    turns = [c.assistant_turns[0] for c in load_corpus("validation")]
    clf = WarmthClassifier.default()
    p = {v: clf.p_warm([getattr(t, v) for t in turns]) for v in ("warm", "neutral", "cold")}
    ordered = sum(w > n > c for w, n, c in zip(p["warm"], p["neutral"], p["cold"], strict=True))
    assert ordered / len(turns) >= 0.90


@pytest.mark.slow
def test_socio_t_means_order_validation_triples(real: LoadedModel) -> None:
    """Every fourth validation triple (39): mean SocioT warm > neutral > cold (frames chosen on the train split;
    measured on these: -0.0207 neutral, 0.0027 warm, -0.0291 cold)."""
    from steerwarm.corpus.schema import load_corpus

    turns = [c.assistant_turns[0] for c in load_corpus("validation")][::4]
    mean = {v: sum(socio_t(real, [getattr(t, v) for t in turns], batch_size=32)) / len(turns)
            for v in ("warm", "neutral", "cold")}
    assert mean["warm"] > mean["neutral"] > mean["cold"], mean


@pytest.mark.slow
def test_score_cli_writes_fields_and_rejects_bad_lines(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"text": "I'm so sorry, that sounds really hard. We'll get through it.", "k": 1}) + "\n"
                   + json.dumps({"text": "Incorrect. Resubmit the form."}) + "\n")
    out = tmp_path / "out.jsonl"
    res = subprocess.run([sys.executable, "-m", "steerwarm.cli", "meter", "score", str(inp), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[0]["k"] == 1 and rows[0]["p_warm"] > rows[1]["p_warm"] and rows[0]["socio_t"] > rows[1]["socio_t"]
    assert "socio_t" in res.stdout and "±" in res.stdout
    inp.write_text('{"nope": 1}\n')
    bad = subprocess.run([sys.executable, "-m", "steerwarm.cli", "meter", "score", str(inp), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "in.jsonl:1" in bad.stdout
