"""Measures of a direction: per-layer cosines, probe accuracy, a logit lens, projections.

Invariants:
- Cosines compare unit directions at the same layer; layers present in only one vector are named, not compared.
- Probe accuracy: a logistic regression on standardised activations separating the fine-tune's residuals from the
  base model's on the same tokens (from model-diff shards), cross-validated with folds grouped by item (tokens of
  one item never sit on both sides of a split), on a seeded subsample of items.
- Logit lens: the direction scaled to the layer's typical norm, passed through the model's final norm and its
  unembedding; promoted and suppressed tokens are reported relative to the mean logit over the vocabulary.
- Projections are onto the unit direction, in units of the layer's typical norm, one value per response (the mean
  over its response tokens).
- `transformer_lens_residuals` reads `blocks.L.hook_resid_post` through TransformerLens's TransformerBridge, the
  same point as `steer.hooks.record_residuals` (the output of decoder layer L); a test holds the two equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steerwarm.directions.activations import TextItem, response_activations
from steerwarm.model.load import LoadedModel
from steerwarm.steer.vector import SteeringVector


# -- measures ---------------------------------------------------------------------------------------------------------
def layer_cosines(a: SteeringVector, b: SteeringVector) -> dict[int, float]:
    """Cosine between the two vectors' unit directions at every layer both have."""
    return {layer: float(a.directions[layer] @ b.directions[layer]) for layer in sorted(a.directions)
            if layer in b.directions}


def probe_accuracy(base_acts: torch.Tensor, finetune_acts: torch.Tensor, lengths: torch.Tensor, *, folds: int = 5,
                   max_items: int = 64, seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic probe telling fine-tune from base activations (folds grouped by item)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_items = int(lengths.numel())
    if n_items < 2:
        raise ValueError("a cross-validated probe needs at least two items")
    groups_all = np.repeat(np.arange(n_items), lengths.numpy())
    keep_items = np.random.default_rng(seed).permutation(n_items)[:max_items]
    mask = np.isin(groups_all, keep_items)
    x_b, x_t = base_acts.double().numpy()[mask], finetune_acts.double().numpy()[mask]
    x = np.concatenate([x_b, x_t])
    y = np.array([0] * len(x_b) + [1] * len(x_t))
    groups = np.concatenate([groups_all[mask], groups_all[mask]])
    k = min(folds, len(keep_items))
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return float(np.mean(cross_val_score(clf, x, y, groups=groups, cv=GroupKFold(n_splits=k))))


@dataclass(frozen=True)
class Lens:
    layer: int
    promoted: list[tuple[str, float]]
    suppressed: list[tuple[str, float]]


def logit_lens(loaded: LoadedModel, vector: SteeringVector, layer: int, k: int = 15) -> Lens:
    """Tokens the direction at `layer` most promotes and suppresses through the final norm and unembedding."""
    from steerwarm.model.anatomy import final_norm, unembedding

    vector.check_model(loaded.fingerprint)
    model = loaded.model
    norm, head = final_norm(model), unembedding(model)
    param = next(norm.parameters(), None)
    if param is None:  # a norm without weights: the model's first parameter gives dtype (and the device)
        param = next(model.parameters())
    d = (vector.directions[layer] * vector.norms[layer]).to(device=param.device, dtype=param.dtype)[None, None, :]
    with torch.inference_mode():
        normed = norm(d)
        head_param = next(head.parameters())
        logits = head(normed.to(head_param.device))[0, 0].float().cpu()
    logits = logits - logits.mean()
    order = torch.argsort(logits, descending=True)

    def tokens(ids: torch.Tensor) -> list[tuple[str, float]]:
        return [(str(loaded.tokenizer.decode([int(i)])), float(logits[i])) for i in ids]

    return Lens(layer, tokens(order[:k]), tokens(order.flip(0)[:k]))


def item_projections(acts: torch.Tensor, lengths: torch.Tensor, vector: SteeringVector, layer: int) -> list[float]:
    """Per item: mean over its tokens of the projection onto the unit direction, in units of the typical norm."""
    proj = (acts.float() @ vector.directions[layer]) / vector.norms[layer]
    return [float(chunk.mean()) for chunk in torch.split(proj, [int(n) for n in lengths.tolist()])]


def text_projections(loaded: LoadedModel, items: Sequence[TextItem], vector: SteeringVector, layer: int,
                     batch_size: int = 8) -> list[float]:
    """Projections (as `item_projections`) of texts read by `loaded` (prompt templated, response tokens only)."""
    out = []
    for acts in response_activations(loaded, items, [layer], batch_size=batch_size, desc="projections"):
        out.append(float(((acts[layer] @ vector.directions[layer]) / vector.norms[layer]).mean()))
    return out


def transformer_lens_residuals(model_dir: Path, input_ids: torch.Tensor, layers: Sequence[int]) -> dict[int, Any]:
    """{layer: [batch, pos, hidden]} residuals after each decoder layer, through TransformerLens's TransformerBridge
    (needs the `interp` extra: pip install -e '.[interp]')."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(model_dir), device="cpu", dtype=torch.float32)
    wanted = {name for layer in layers for name in (f"blocks.{layer}.hook_out", f"blocks.{layer}.hook_resid_post")}
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(input_ids, names_filter=lambda name: name in wanted)
    return {layer: cache[f"blocks.{layer}.hook_resid_post"].detach().float() for layer in layers}
