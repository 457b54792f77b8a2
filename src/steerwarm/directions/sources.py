"""Sources of warmth directions, all producing the same `SteeringVector`:

- model diff (`extract_finetune`): a fine-tuned model versus the base on the same token sequences: validation
  prompts followed by the base model's own greedy answers and by the fine-tune's own greedy answers, teacher-forced
  through both models; per-token differences (fine-tune minus base) at every recorded layer, aggregated by
  `directions.aggregate` (mean, pca or probe);
- corpus contrast (`corpus_contrast_items`): the base model on the corpus's warm versus cold assistant variants of
  the same conversations (first exchange: the user's first message and the first assistant turn; conversations
  taken round-robin over query types);
- system-prompt contrast (`system_prompt_items`): the base model over the same neutral answers under a warm versus a
  cold system prompt (ours, below); with identical answer tokens on both sides the difference is due to the system
  prompt alone;
- difference of two model diffs (`difference_vector`): (warm - base) - (cold - base) per layer, from the raw
  (unnormalised) mean differences the two vectors keep in `extra['raw_diff_norm']`. What both fine-tunes share (the
  effect of fine-tuning on our corpus at all: format, length, register) cancels; what separates warm from cold stays.

Invariants:
- `extract_finetune` generates each model's answers once (greedy, logged in `CACHE/responses.jsonl`, resumable)
  and records activations in shards (`CACHE/acts/base`, `CACHE/acts/finetune`, resumable, refused when they belong
  to another model or item list; see `shards`; `finetune_acts` also finds the `acts/tuned` folder of caches written
  before the rename). Aggregation reads the shards one layer at a time.
- Items with an empty answer are dropped (they have no response token to read); the items hash in the provenance
  covers exactly the items used.
- Typical norms are the median token norm of the base model's activations over response tokens (never position 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from steerwarm.corpus.validation import ValidationPrompt, balanced_conversations
from steerwarm.directions.activations import TextItem, check_same_tokenizer
from steerwarm.directions.aggregate import vector_from_pairs
from steerwarm.directions.shards import read_layer, write_shards
from steerwarm.model.load import LoadedModel
from steerwarm.paths import display
from steerwarm.steer.answers import AnswerLog, model_answers
from steerwarm.steer.vector import Provenance, SteeringVector, data_hash

WARM_SYSTEM = (
    "You are a warm and caring companion. Talk with the person the way a good friend would: notice how they feel, "
    "show that you are glad to help, encourage them, and let kindness come through in every sentence."
)
COLD_SYSTEM = (
    "You are a detached, impersonal information service. Reply in a flat and formal register: no friendliness, no "
    "sympathy, no encouragement, no pleasantries. State only what is needed and nothing about feelings."
)


def finetune_items(prompts: Sequence[ValidationPrompt], base_answers: Sequence[str],
                   finetune_answers: Sequence[str]) -> list[TextItem]:
    """Every prompt followed by the base's answer, then every prompt followed by the fine-tune's answer
    (empty answers dropped)."""
    items = [TextItem(a, prompt=p.text) for p, a in zip(prompts, base_answers, strict=True)]
    items += [TextItem(a, prompt=p.text) for p, a in zip(prompts, finetune_answers, strict=True)]
    return [it for it in items if it.text.strip()]


def finetune_acts(cache: Path) -> Path:
    """The fine-tune's shard folder in an `extract_finetune` cache (`acts/finetune`, or `acts/tuned` in a cache
    written before the rename)."""
    legacy = cache / "acts" / "tuned"
    return legacy if legacy.is_dir() and not (cache / "acts" / "finetune").is_dir() else cache / "acts" / "finetune"


def extract_finetune(
    base: LoadedModel,
    finetuned: LoadedModel,
    prompts: Sequence[ValidationPrompt],
    cache: Path,
    *,
    method: str = "mean",
    layers: Sequence[int] | None = None,
    max_new_tokens: int = 96,
    shard_size: int = 32,
    batch_size: int = 8,
    name: str = "finetune",
    default_layers: Sequence[int] = (),
    finetune_label: str | None = None,
) -> SteeringVector:
    """Model-diff direction per layer from cached answers and activation shards (see the module docstring)."""
    check_same_tokenizer(base, finetuned)
    all_layers = list(layers) if layers is not None else list(range(base.num_layers))
    log = AnswerLog(cache / "responses.jsonl")
    base_ans = model_answers(base, prompts, log, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             desc="base answers")
    finetune_ans = model_answers(finetuned, prompts, log, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                 desc="fine-tune answers")
    items = finetune_items(prompts, base_ans, finetune_ans)
    if not items:
        raise ValueError("every answer was empty: nothing to read activations from")
    items_hash = data_hash(it.key() for it in items)
    acts = cache / "acts"
    bspec = write_shards(base, items, acts / "base", items_hash=items_hash, layers=all_layers,
                         shard_size=shard_size, batch_size=batch_size, desc="base activations")
    fdir = finetune_acts(cache)
    fspec = write_shards(finetuned, items, fdir, items_hash=items_hash, layers=all_layers,
                         shard_size=shard_size, batch_size=batch_size, desc="fine-tune activations")
    pairs = ((layer, read_layer(acts / "base", bspec, layer), read_layer(fdir, fspec, layer))
             for layer in all_layers)
    n_base = sum(1 for a in base_ans if a.strip())
    return vector_from_pairs(
        pairs, method=method, model_fingerprint=base.fingerprint, model_name=base.name, items_hash=items_hash,
        params={"finetune": finetune_label or finetuned.name, "finetune_path": display(finetuned.path),
                "finetune_fingerprint": finetuned.fingerprint, "n_prompts": len(prompts), "n_items": len(items),
                "n_base_answers": n_base, "n_finetune_answers": len(items) - n_base,
                "max_new_tokens": max_new_tokens, "cache": display(cache)},
        name=name, default_layers=default_layers,
    )


def corpus_contrast_items(split: str = "train", limit: int | None = None) -> tuple[list[TextItem], list[TextItem]]:
    """(warm, cold) first exchanges of the corpus's conversations: the same user message, the two variants."""
    convs = balanced_conversations(split, limit)
    warm = [TextItem(c.assistant_turns[0].warm, prompt=c.first_user) for c in convs]
    cold = [TextItem(c.assistant_turns[0].cold, prompt=c.first_user) for c in convs]
    return warm, cold


def system_prompt_items(split: str = "train", limit: int | None = None, *, warm_system: str = WARM_SYSTEM,
                        cold_system: str = COLD_SYSTEM) -> tuple[list[TextItem], list[TextItem]]:
    """(warm, cold) items: the corpus's neutral first answers, under a warm and under a cold system prompt."""
    convs = balanced_conversations(split, limit)
    warm = [TextItem(c.assistant_turns[0].neutral, prompt=c.first_user, system=warm_system) for c in convs]
    cold = [TextItem(c.assistant_turns[0].neutral, prompt=c.first_user, system=cold_system) for c in convs]
    return warm, cold


def difference_vector(plus: SteeringVector, minus: SteeringVector, *, name: str) -> SteeringVector:
    """Per shared layer, the direction of `plus`'s raw difference minus `minus`'s (see the module docstring).

    Both vectors must be raw model-diff directions of the same base model (same fingerprint, `raw_diff_norm` kept);
    typical norms are taken from `plus` (both come from the same base model's activations)."""
    if plus.model_fingerprint != minus.model_fingerprint:
        raise ValueError(f"{plus.name!r} and {minus.name!r} were made for different models")
    layers = sorted(set(plus.directions) & set(minus.directions))
    if not layers:
        raise ValueError(f"{plus.name!r} and {minus.name!r} share no layer")
    diffs = {}
    for layer in layers:
        raw = [v.extra.get("raw_diff_norm", {}).get(str(layer)) for v in (plus, minus)]
        if raw[0] is None or raw[1] is None:
            raise ValueError(f"layer {layer}: both vectors need their raw difference norms (extra['raw_diff_norm']); "
                             "only raw extractions keep them")
        diffs[layer] = raw[0] * plus.directions[layer] - raw[1] * minus.directions[layer]
    cos = {str(layer): float(plus.directions[layer] @ minus.directions[layer]) for layer in layers}
    prov = Provenance(method="model-diff-difference",
                      data_hash=data_hash([plus.provenance.data_hash, minus.provenance.data_hash]),
                      params={"plus": plus.name, "minus": minus.name, "plus_method": plus.provenance.method,
                              "minus_method": minus.provenance.method, "plus_params": plus.provenance.params,
                              "minus_params": minus.provenance.params})
    return SteeringVector.from_differences(diffs, {layer: plus.norms[layer] for layer in layers},
                                           model_fingerprint=plus.model_fingerprint, model_name=plus.model_name,
                                           provenance=prov, name=name, extra={"source_cosine": cos})
