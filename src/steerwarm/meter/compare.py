"""Compare how warm several targets answer the corpus's validation prompts, and what it costs in coherence.

For each target (anything `steerwarm bench` accepts: base, warmth=W, finetune=V, prompt=warm|cold|FILE, a model
folder, an endpoint), answer every validation prompt (first user turn, greedy, the same token budget for all), then
score each answer with SocioT (base model as scorer), p_warm, and the base model's mean negative log-likelihood of
the answer given the prompt (a coherence cost: steering that breaks text raises it). When the comparison holds at
least two dial targets (`base` is warmth 0, `warmth=W`), every other target is placed on the dial scale by its mean
p_warm (`meter.placement`: the matched dial position, or why there is none), in summary.md.

Invariants:
- Every target answers the same prompts in the same order with the same settings; answers are appended to
  `responses.jsonl` (a `records` JSONL log) batch by batch, flushed and fsync'ed, and a rerun skips (target, id)
  pairs already there; a torn last line (a kill mid-write) is dropped and its answer redone. A prompt target's rows
  carry its prompt's hash: after the prompt text changed they are answered again (the newest row counts).
- Meters are computed by the same scorer for every target, so the numbers are comparable across targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steerwarm.corpus.validation import validation_prompts
from steerwarm.meter.classifier import WarmthClassifier
from steerwarm.meter.placement import DialMatch, dial_match
from steerwarm.meter.sociot import socio_t
from steerwarm.meter.summary import Summary, summarize
from steerwarm.model.chat import chat_text
from steerwarm.model.load import LoadedModel
from steerwarm.model.logprobs import mean_logprob
from steerwarm.records import append_records, read_records
from steerwarm.targets.prompt import load_prompt
from steerwarm.targets.registry import check_target_spec, split_prompt_spec


def base_nll(scorer: LoadedModel, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
    """Mean per-token negative log-likelihood of each answer after its chat-templated prompt, under `scorer`."""
    prefixes = [chat_text(scorer, [{"role": "user", "content": p}]) for p in prompts]
    safe = [a if a.strip() else "." for a in answers]
    return [-x for x in mean_logprob(scorer, prefixes, safe)]


def prompt_sha256(spec: str) -> str | None:
    """The hash of a prompt target's system prompt text (None for any other target)."""
    if check_target_spec(spec) != "prompt":
        return None
    return load_prompt(split_prompt_spec(spec)[0]).sha256


def dial_warmth(spec: str) -> float | None:
    """The dial value a target spec names: 0 for `base`, W for `warmth=W`, None for any other target."""
    s = spec.strip()
    if s == "base":
        return 0.0
    if s.startswith("warmth="):
        try:
            return float(s.split("=", 1)[1])
        except ValueError:
            return None
    return None


def placements(table: dict[str, dict[str, Summary]]) -> dict[str, DialMatch]:
    """Each non-dial target's matched dial position by mean p_warm, against the dial targets of the same table
    (empty when it has fewer than two dial targets)."""
    curve = [(w, t["p_warm"].mean) for spec, t in table.items() if (w := dial_warmth(spec)) is not None]
    if len(curve) < 2:
        return {}
    return {spec: dial_match(curve, t["p_warm"].mean) for spec, t in table.items() if dial_warmth(spec) is None}


def score_rows(rows: list[dict[str, Any]], scorer: LoadedModel, clf: WarmthClassifier) -> None:
    """Add socio_t, p_warm and base_nll to rows that have `prompt` and `text` (in place)."""
    todo = [r for r in rows if "socio_t" not in r]
    if not todo:
        return
    texts = [r["text"] for r in todo]
    for r, s, p, n in zip(todo, socio_t(scorer, texts), clf.p_warm(texts),
                          base_nll(scorer, [r["prompt"] for r in todo], texts), strict=True):
        r.update(socio_t=s, p_warm=p, base_nll=n)


def compare(targets: Sequence[str], out_dir: Path, *, limit: int | None = None, max_tokens: int = 96,
            vectors_dir: Path | None = None, scorer: LoadedModel | None = None, model: str = "smollm2-135m",
            dtype: str = "float32", device: str | None = None) -> dict[str, dict[str, Summary]]:
    """Answers of each target to the validation prompts, scored for warmth and for coherence under `scorer` (default:
    the base `model`, which is also the model of base and warmth=W targets)."""
    from steerwarm.model.load import load
    from steerwarm.targets.registry import GenSettings, parse_target

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "responses.jsonl"
    shas = {spec: prompt_sha256(spec) for spec in targets}
    done = {(r["target"], r["id"]): r for r in read_records(path)
            if r.get("prompt_sha256") == shas.get(r["target"])}
    prompts = validation_prompts(limit)
    scorer = scorer or load(model, dtype, device)
    clf = WarmthClassifier.default()
    settings = GenSettings(max_tokens=max_tokens, temperature=0.0)
    for spec in targets:
        todo = [p for p in prompts if (spec, p.id) not in done]
        if not todo:
            continue
        target = parse_target(spec, model=model, dtype=dtype, device=device, vectors_dir=vectors_dir)
        for start in range(0, len(todo), 8):
            chunk = todo[start:start + 8]
            answers = target.generate([p.text for p in chunk], settings, seed=0)
            rows = [{"target": spec, "id": p.id, "query_type": p.query_type, "prompt": p.text, "text": a,
                     **({"prompt_sha256": shas[spec]} if shas[spec] is not None else {})}
                    for p, a in zip(chunk, answers, strict=True)]
            score_rows(rows, scorer, clf)
            append_records(path, rows)
            done.update(((spec, r["id"]), r) for r in rows)
    table = {spec: {m: summarize([done[(spec, p.id)][m] for p in prompts]) for m in ("socio_t", "p_warm", "base_nll")}
             for spec in targets}
    placed = placements(table)
    lines = ["| target | SocioT | p_warm | base NLL (coherence) | n |" + (" matched dial |" if placed else ""),
             "|---|---|---|---|---|" + ("---|" if placed else "")]
    for spec, t in table.items():
        line = f"| {spec} | {t['socio_t']} | {t['p_warm']} | {t['base_nll']} | {t['p_warm'].n} |"
        if placed:
            m = placed.get(spec)
            line += (" (dial) |" if m is None else f" {m.warmth:+.2f} |" if m.warmth is not None
                     else f" none ({m.status}) |")
        lines.append(line)
    note = ("\n\nmatched dial: the dial value whose answers have the same mean p_warm, interpolated linearly "
            "between the dial targets' readings; none outside their range or where the curve is not monotone."
            if placed else "")
    (out_dir / "summary.md").write_text(
        "# Warmth of answers to the validation prompts\n\nMean ± bootstrap SE. SocioT and base NLL scored by the base "
        "model; p_warm by the corpus-trained embedding classifier. Greedy answers, "
        f"{max_tokens} new tokens at most.\n\n" + "\n".join(lines) + note + "\n")
    return table
