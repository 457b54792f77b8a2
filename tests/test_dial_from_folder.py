"""scripts/dial_from_folder end to end on a tiny random model saved to a folder (mechanics only).

What is real: every step is the real `steerwarm` command on a real model folder, from `model info` through
`finetune train`, model-diff extraction, differences, the corpus contrast, layer choice, calibration and cards, then
`steerwarm serve` on the result answering a request with warmth 1. What stands in, and why:
- A random model's fine-tunes write no warmer text for the real warmth meter to read, so layer choice and calibration
  would (rightly) refuse them. The calibration run therefore gets planted "fine-tunes" (the base plus +/- a known
  shift at layer 1, `tests.tiny_pairs`), placed where the script's training step would write them (it skips complete
  steps), and a stand-in meter (as in tests/calibrate): warmth is how often an answer says the word that steering
  along the planted direction makes the model say, minus the word that steering against it does. The real training
  step runs separately (`--stop-after`).
- Six short validation prompts instead of 156, so the tiny model's answers take seconds.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest
import torch
from openai import OpenAI

from steerwarm.directions.sources import extract_finetune
from steerwarm.meter.compare import base_nll
from steerwarm.meter.measure import Meter
from steerwarm.model.chat import chat_text
from steerwarm.steer.dial import Dial
from steerwarm.steer.generate import GenerationConfig, generate_texts
from steerwarm.steer.hooks import SteerSpec, steer
from steerwarm.steer.vector import SteeringVector
from tests.conftest import make_tiny_model, make_tokenizer
from tests.serve.conftest import serve
from tests.tiny_pairs import PROMPTS, as_loaded, bias_model, planted, save, shifted

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "dial_from_folder"
C_TRUE = 1.0  # the planted fine-tunes are the base steered at +/- this raw coefficient at layer 1
OVERRIDES = ["layer_fractions=0.4", "extract_limit=6", "extract_tokens=8", "layer_limit=6", "layer_tokens=12",
             "layer_rel_coef=1.5", "layer_nll_cap=100", "cal_limit_warm=6", "cal_limit_cold=6", "cal_tokens=12",
             "cal_coefs_warm=0.5,1.0,1.5,2.0", "cal_coefs_cold=0.5,1.0,1.5,2.0", "contrast_limit=8"]


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("dial_from_folder", str(SCRIPT))
    spec = importlib.util.spec_from_loader("dial_from_folder", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dial_from_folder"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text)


def marker_meter(base_dir: Path, probe: SteeringVector) -> Meter:
    """Stand-in warmth: 0.5 + (share of the marker of +direction - share of the marker of -direction) / 2, where a
    direction's marker is the word the base model says most when steered hard along it at layer 1 and never says
    unsteered (on the tiny model steering harder says it more, up to every word)."""
    from steerwarm.model.load import load

    base = load(str(base_dir))
    texts = [chat_text(base, [{"role": "user", "content": p.text}]) for p in PROMPTS]
    plain = {w for t in generate_texts(base, texts, config=GenerationConfig(max_new_tokens=12)) for w in words(t)}

    def marker(coef: float) -> str:
        with steer(base.model, [SteerSpec(probe, [coef] * len(texts), layers=[1])]):
            said = generate_texts(base, texts, config=GenerationConfig(max_new_tokens=12))
        counts = Counter(w for t in said for w in words(t) if w not in plain)
        return counts.most_common(1)[0][0]

    up, down = marker(1.5 * C_TRUE), marker(-1.5 * C_TRUE)
    assert up != down

    def share(text: str, word: str) -> float:
        found = words(text)
        return found.count(word) / max(1, len(found))

    def p_warm(answers: Sequence[str]) -> list[float]:
        return [0.5 + (share(t, up) - share(t, down)) / 2 for t in answers]

    return Meter(p_warm, lambda prompts, answers: base_nll(base, prompts, answers))


def plant(tmp_path: Path, out: Path, epochs: str) -> tuple[Path, SteeringVector]:
    """A base model folder and, where the script's training steps would put them, warm/cold 'fine-tunes' that are
    the base steered at +/-C_TRUE along a planted direction at layer 1."""
    base_m = bias_model()
    base_dir = save(base_m, tmp_path / "base")
    probe = extract_finetune(as_loaded(base_m, "base"), as_loaded(shifted(base_m, 1, 0.5 * planted()), "probe"),
                             PROMPTS, tmp_path / "probe", layers=[1, 2], max_new_tokens=6, default_layers=[1])
    shift = C_TRUE * probe.norms[1] * probe.directions[1]
    for variant, sign in (("warm", 1.0), ("cold", -1.0)):
        folder = save(shifted(base_m, 1, sign * shift), out / "finetunes" / variant / f"epoch-{epochs}")
        (folder / "card.json").write_text(json.dumps({"variant": variant, "planted": True}))
    return base_dir, probe


@pytest.mark.slow  # 20-110 s on 2 shared cores: every pipeline step, a rerun, and a real server start
def test_dial_from_folder_end_to_end(script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    small = script.BUDGETS["small"]
    base_dir, probe = plant(tmp_path, out, f"{small.ft_epochs:g}")
    meter = marker_meter(base_dir, probe)
    monkeypatch.setattr("steerwarm.meter.measure.Meter.default",
                        classmethod(lambda cls, scorer: meter))
    monkeypatch.setattr("steerwarm.corpus.validation.validation_prompts", lambda limit=None: PROMPTS[:limit])
    sets = [arg for kv in OVERRIDES for arg in ("--set", kv)]

    assert script.main([str(base_dir), str(out), "--budget", "small", *sets]) == 0
    printed = capsys.readouterr().out
    assert "[skip] finetune warm" in printed and "[skip] finetune cold" in printed  # planted, complete
    for name in ("model.json", "raw/finetune-warm.safetensors", "raw/finetune-cold.safetensors",
                 "raw/finetune-warm-minus-cold.safetensors", "raw/finetune-cold-minus-warm.safetensors",
                 "raw/corpus-contrast.safetensors", "raw/warm-layer.safetensors", "raw/cold-layer.safetensors",
                 "vectors/warm.safetensors", "vectors/cold.safetensors", "vectors/warm.md", "vectors/cold.md"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "vectors").iterdir()) == ["cold.md", "cold.safetensors", "warm.md",
                                                                  "warm.safetensors"]
    dial = Dial.from_dir(out / "vectors")
    assert dial.cold is not None and dial.warm.layers == [1] and dial.cold.layers == [1]
    assert dial.warm.extra["layer_table"]["chosen"] == 1
    # the fine-tunes are the base steered at +/-C_TRUE; extraction's norms differ from the probe's by the tokens seen
    assert dial.warm.calibration is not None and dial.warm.calibration.coef_for(1.0) == pytest.approx(C_TRUE, rel=0.2)
    assert torch.dot(dial.warm.directions[1], probe.directions[1]) > 0.99
    assert torch.dot(dial.cold.directions[1], probe.directions[1]) < -0.99
    assert "## " in (out / "vectors" / "warm.md").read_text()
    steps = [json.loads(line)["step"] for line in (out / "timings.jsonl").read_text().splitlines()]
    assert steps[0] == "model info" and steps[-1] == "card cold" and "finetune warm" not in steps
    serve_cmd = f"steerwarm serve --model {base_dir} --vectors {out / 'vectors'}"
    assert serve_cmd in printed and "steerwarm sweep run --warmth=-1,1" in printed

    # a rerun resumes: every step is complete, nothing runs, the same commands are printed
    assert script.main([str(base_dir), str(out), "--budget", "small", *sets]) == 0
    again = capsys.readouterr().out
    assert "[run ]" not in again and again.count("[skip]") == len(steps) + 2 and serve_cmd in again

    # the printed serve command serves the dial: warmth 1 is steered at the calibrated coefficient
    with serve(["--model", str(base_dir), "--vectors", str(out / "vectors"), "--threads", "1"],
               tmp_path / "server.log") as running:
        client = OpenAI(base_url=running.v1, api_key="unused", max_retries=0, timeout=120)
        reply = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "i feel sad"}],
                                               max_tokens=4, temperature=0, extra_body={"warmth": 1.0})
    applied = (reply.model_extra or {})["steering"]
    assert applied["vectors"][0]["name"] == "warm" and applied["vectors"][0]["coef"] == pytest.approx(
        dial.warm.calibration.coef_for(1.0))


def test_training_steps_run_and_resume(script: ModuleType, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "tiny"
    make_tiny_model().save_pretrained(str(folder))
    make_tokenizer().save_pretrained(str(folder))
    args = [str(folder), str(tmp_path / "out"), "--set", "ft_epochs=0.02", "--stop-after", "finetune cold"]
    assert script.main(args) == 0
    first = capsys.readouterr().out
    assert "$ steerwarm finetune train --variant warm" in first and "stopped after 'finetune cold'" in first
    for variant in ("warm", "cold"):
        ckpt = tmp_path / "out" / "finetunes" / variant / "epoch-0.02"
        assert (ckpt / "config.json").is_file() and json.loads((ckpt / "card.json").read_text())["variant"] == variant
    assert script.main(args) == 0
    assert "[run ]" not in capsys.readouterr().out


def test_dry_run_prints_every_command_and_the_budget_is_overridable(script: ModuleType, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert script.main(["some-model", str(out), "--budget", "full", "--dry-run", "--set", "ft_epochs=2",
                        "--dtype", "bfloat16"]) == 0
    printed = capsys.readouterr().out
    commands = [line for line in printed.splitlines() if line.startswith("$ steerwarm ")]
    assert all("--dtype bfloat16" in c for c in commands if c.startswith("$ steerwarm vector calibrate"))
    assert not any("--dtype" in c for c in commands if c.startswith("$ steerwarm vector card"))  # loads no model
    assert commands[0] == "$ steerwarm model info some-model --json --dtype bfloat16"
    assert any("--epochs 2 --checkpoints 2" in c for c in commands)
    assert any(c.startswith("$ steerwarm sweep report") for c in commands)  # full mode measures too
    assert any("--layers 6,9,12,15,18,21,24" in c for c in commands)  # the shipped dial's candidates for 30 layers
    assert script.candidate_layers(30, (0.3, 0.5, 0.7)) == [9, 15, 21]
    assert script.candidate_layers(3, (0.3, 0.5, 0.7)) == [0, 1, 2]
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        script.main(["m", str(out), "--set", "no_such=1"])
