"""Likelihood mode: judge-free, deterministic scoring by the model's own log-probabilities of two candidate replies.

Definition (the same for in-process models and endpoints):
- The prompt is the conditioned user message in the model's chat template with its generation prompt (the model's
  default system prompt included, none added). Steered targets are steered on every position of prompt and reply.
- Two assistant replies assert the answers with the same sentence: trivia, truthfulqa and medqa
  `The answer is {answer}.` (no second period when the answer ends with one), disinfo the true and the false
  statement themselves. Each reply is followed by the template's end-of-turn marker (for ChatML `<|im_end|>`), so a
  reply must also be a complete answer.
- The scored span of a reply starts at the word where the two replies first differ (its leading space included)
  and runs to the end-of-turn marker; the shared opening (`The answer is`) is identical in both and is left out.
  Tokens are chosen by character offset: every token that starts at or after that point.
- A reply's score is the MEAN log-probability per scored token. The answer is counted as an error when the wrong
  reply's score is strictly higher than the correct reply's.
Why the mean: the two answers differ in length ("Canberra" vs "Sydney" is balanced, "Justinian I" vs "Constantine
the Great" is not); a total log-probability charges every extra token, so it would prefer short answers whatever
the belief, and the error rate would measure answer length. The per-token mean removes most of that bias, keeps the
end-of-turn token as the penalty for a truncated answer, and needs no judge. Sums and token counts are stored too,
so a total-log-probability variant can be recomputed from results.jsonl without rerunning.

Invariants:
- Batched scoring equals scoring each prompt alone (left padding with explicit position ids; padding is never
  steered and never scored). Work is shared through key/value caches without changing any score: the common
  prefix (the chat template's opening and system prompt) runs once per target, each prompt with the replies'
  shared opening runs once for both replies, then only the scored tokens run, with the output projection computed
  only where a prediction is scored. A tokenizer that merges tokens across the scored-span boundary falls back to
  scoring full sequences, with the same result.
- Steering specs come from a callable that receives the number of rows of each forward pass, so the prompt pass and
  the reply pass are steered alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steerwarm.bench.items import Item

if TYPE_CHECKING:
    import torch

    from steerwarm.models import LoadedModel
    from steerwarm.steering import SteerSpec

SpecsFor = Callable[[int], "list[SteerSpec]"]
MIN_SHARED_PREFIX = 8  # tokens; below this a batch's common prefix is not worth a pass of its own
PREFIX_MEMO_SIZE = 8  # distinct shared prefixes kept per target


@dataclass(frozen=True)
class ReplyScore:
    logprob_sum: float
    n_tokens: int

    @property
    def mean(self) -> float:
        return self.logprob_sum / self.n_tokens


@dataclass(frozen=True)
class PairScore:
    correct: ReplyScore
    wrong: ReplyScore

    @property
    def is_incorrect(self) -> bool:
        return self.wrong.mean > self.correct.mean

    def record(self) -> dict[str, Any]:
        return {"lp_correct": self.correct.mean, "lp_wrong": self.wrong.mean,
                "lp_correct_sum": self.correct.logprob_sum, "lp_wrong_sum": self.wrong.logprob_sum,
                "n_tok_correct": self.correct.n_tokens, "n_tok_wrong": self.wrong.n_tokens}


def answer_reply(answer: str) -> str:
    return f"The answer is {answer}" + ("" if answer.endswith(".") else ".")


def replies(item: Item) -> tuple[str, str]:
    """(correct reply, wrong reply) for an item, as defined in the module doc."""
    if item.task == "disinfo":
        return item.correct, item.wrong
    return answer_reply(item.correct), answer_reply(item.wrong)


def divergence_start(a: str, b: str) -> int:
    """Character index where the scored span starts in both replies: the first differing character, moved back to
    the start of its word and onto the whitespace before it (0 when the replies differ in their first word)."""
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    if n == len(a) == len(b):
        raise ValueError(f"the two replies are identical: {a!r}")
    while n > 0 and not a[n - 1].isspace():
        n -= 1
    if n > 0:
        n -= 1
    return n


@dataclass(frozen=True)
class _Row:
    """One reply of one prompt, tokenized."""

    prompt_ids: list[int]
    cont_ids: list[int]
    scored: list[bool]  # per continuation token
    aligned: bool


def _encode(loaded: LoadedModel, prompt_texts: Sequence[str], conts: Sequence[tuple[str, str]],
            starts: Sequence[int]) -> list[tuple[_Row, _Row]]:
    """Tokenize each prompt + reply in full and split it where the scored span starts: `prompt_ids` are the tokens
    that end before it (the chat prompt and the replies' shared opening), `cont_ids` the rest. A pair is `aligned`
    when both replies share those tokens exactly and no token straddles the split (then every continuation token is
    scored and the shared part can be run once)."""
    tok = loaded.tokenizer
    fulls = [p + c for p, pair in zip(prompt_texts, conts, strict=True) for c in pair]
    enc = tok(fulls, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for i, p_text in enumerate(prompt_texts):
        boundary = len(p_text) + starts[i]
        parts = []
        for j in range(2):
            ids, offs = list(enc["input_ids"][2 * i + j]), enc["offset_mapping"][2 * i + j]
            split = next((k for k, o in enumerate(offs) if o[1] > boundary), len(ids))
            scored = [o[0] >= boundary for o in offs[split:]]
            if not any(scored):
                raise ValueError(f"no token of reply {conts[i][j]!r} starts at or after its scored span")
            parts.append((ids, split, scored))
        (ia, sa, fa), (ib, sb, fb) = parts
        aligned = sa == sb and ia[:sa] == ib[:sb] and all(fa) and all(fb)
        out.append(tuple(_Row(ids[:sp], ids[sp:], sc, aligned) for ids, sp, sc in parts))
    return out  # type: ignore[return-value]


def _steering(model: torch.nn.Module, specs_for: SpecsFor | None, n: int) -> Any:
    from steerwarm.steering import steer

    return steer(model, specs_for(n)) if specs_for is not None else nullcontext()


def _forward(model: torch.nn.Module, **kwargs: Any) -> Any:
    try:
        return model(**kwargs)
    except TypeError:  # architectures without logits_to_keep
        kwargs.pop("logits_to_keep", None)
        return model(**kwargs)


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    import torch

    logits = logits.float()
    return torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _score_full(loaded: LoadedModel, rows: Sequence[_Row], specs_for: SpecsFor | None) -> list[ReplyScore]:
    """Reference path: each reply as one left-padded full sequence."""
    import torch

    pad = int(loaded.tokenizer.pad_token_id or 0)
    seqs = [r.prompt_ids + r.cont_ids for r in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, width - len(s):] = torch.tensor(s)
        mask[b, width - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode(), _steering(loaded.model, specs_for, len(seqs)):
        logits = loaded.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
    out = []
    for b, r in enumerate(rows):
        n_cont = len(r.cont_ids)
        lp = _token_logprobs(logits[b, width - n_cont - 1: width - 1], ids[b, width - n_cont:])
        keep = torch.tensor(r.scored)
        out.append(ReplyScore(float(lp[keep].sum()), int(keep.sum())))
    return out


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(x) for x in seqs)
    first = seqs[0]
    for k in range(n):
        if any(x[k] != first[k] for x in seqs):
            return k
    return n


def _prefix_cache(model: torch.nn.Module, prefix: list[int], specs_for: SpecsFor | None,
                  memo: dict[tuple[int, ...], Any] | None) -> Any:
    """Key/value cache of a token prefix (batch 1), computed once per distinct prefix when a memo is given."""
    import copy

    import torch

    key = tuple(prefix)
    if memo is not None and key in memo:
        return copy.deepcopy(memo[key])
    k = len(prefix)
    with _steering(model, specs_for, 1):
        out = _forward(model, input_ids=torch.tensor([prefix]), attention_mask=torch.ones((1, k), dtype=torch.long),
                       position_ids=torch.arange(k)[None, :], use_cache=True, logits_to_keep=1)
    if memo is not None:
        if len(memo) >= PREFIX_MEMO_SIZE:
            memo.clear()
        memo[key] = copy.deepcopy(out.past_key_values)
    return out.past_key_values


def _reply_logprobs(model: torch.nn.Module, cids: torch.Tensor, clen: Sequence[int], full_mask: torch.Tensor,
                    cpos: torch.Tensor, cache: Any) -> list[torch.Tensor]:
    """Log-probabilities of reply tokens 1..len-1 of each row (token 0 is predicted by the prompt pass). The
    last token of the longest rows is not fed (nothing is predicted from it), and the output projection runs only
    on positions whose prediction is scored, not on padding."""
    import torch

    width = cids.shape[1] - 1
    if width == 0:
        return [torch.zeros(0) for _ in clen]
    get_decoder, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    decoder: Any = get_decoder() if callable(get_decoder) else None
    head: Any = get_head() if callable(get_head) else None
    kwargs = {"input_ids": cids[:, :width], "attention_mask": full_mask[:, : full_mask.shape[1] - 1],
              "position_ids": cpos[:, :width], "past_key_values": cache, "use_cache": True}
    rows = [b for b, n in enumerate(clen) for _ in range(n - 1)]
    cols = [j for n in clen for j in range(n - 1)]
    targets = cids[rows, [c + 1 for c in cols]]
    if decoder is not None and isinstance(head, torch.nn.Linear):
        hidden = decoder(**kwargs).last_hidden_state
        logits = head(hidden[rows, cols])
    else:  # models without a plain decoder + linear head: full logits
        logits = model(**kwargs).logits[rows, cols]
    lps = _token_logprobs(logits, targets)
    out, at = [], 0
    for n in clen:
        out.append(lps[at: at + n - 1])
        at += n - 1
    return out


def _score_cached(loaded: LoadedModel, pairs: Sequence[tuple[_Row, _Row]], specs_for: SpecsFor | None,
                  prefix_memo: dict[tuple[int, ...], Any] | None = None) -> list[tuple[ReplyScore, ReplyScore]]:
    """Fast path. The batch's common token prefix (the chat template's opening) is run once (once per run with a
    memo) and its cache shared by every row; each row's own prompt tokens (and the replies' shared opening) run once
    more and their cache is repeated for the two replies; one pass over the scored reply tokens follows."""
    import torch

    pad = int(loaded.tokenizer.pad_token_id or 0)
    model = loaded.model
    n = len(pairs)
    shared = [p[0].prompt_ids for p in pairs]
    k = min(_common_prefix(shared), min(len(x) for x in shared) - 1)
    if k < MIN_SHARED_PREFIX:
        k = 0
    own = [x[k:] for x in shared]
    plen = [len(x) for x in shared]
    width = max(len(x) for x in own)
    ids = torch.full((n, width), pad, dtype=torch.long)
    own_mask = torch.zeros((n, width), dtype=torch.long)
    for b, x in enumerate(own):
        ids[b, width - len(x):] = torch.tensor(x)
        own_mask[b, width - len(x):] = 1
    rows = [r for p in pairs for r in p]
    clen = [len(r.cont_ids) for r in rows]
    cw = max(clen)
    cids = torch.full((2 * n, cw), pad, dtype=torch.long)
    cmask = torch.zeros((2 * n, cw), dtype=torch.long)
    for b, r in enumerate(rows):
        cids[b, : clen[b]] = torch.tensor(r.cont_ids)
        cmask[b, : clen[b]] = 1
    cpos = torch.tensor(plen).repeat_interleave(2)[:, None] + torch.arange(cw)[None, :]
    with torch.inference_mode():
        cache = None
        mask = own_mask
        if k:
            cache = _prefix_cache(model, shared[0][:k], specs_for, prefix_memo)
            cache.batch_repeat_interleave(n)
            mask = torch.cat([torch.ones((n, k), dtype=torch.long), own_mask], dim=1)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -width:]
        with _steering(model, specs_for, n):
            first = _forward(model, input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
        cache = first.past_key_values
        cache.batch_repeat_interleave(2)
        full_mask = torch.cat([mask.repeat_interleave(2, dim=0), cmask], dim=1)
        first_lp = _token_logprobs(first.logits[:, -1, :].repeat_interleave(2, dim=0), cids[:, 0])
        with _steering(model, specs_for, 2 * n):
            rest = _reply_logprobs(model, cids, clen, full_mask, cpos, cache)
    scores = [ReplyScore(float(first_lp[b]) + float(rest[b].sum()), clen[b]) for b in range(2 * n)]
    return [(scores[2 * i], scores[2 * i + 1]) for i in range(n)]


def continuation(loaded: LoadedModel, prompt_text: str, user: str, reply: str) -> str:
    """The text that follows the chat prompt when the assistant says `reply`: the reply and its end-of-turn marker
    as the chat template writes them (trailing whitespace after the marker dropped)."""
    from steerwarm.generation import chat_text

    full = chat_text(loaded, [{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
                     add_generation_prompt=False)
    if not full.startswith(prompt_text):
        raise ValueError("the chat template does not extend the generation prompt with the assistant turn; "
                         "likelihood mode needs a template where it does")
    return full[len(prompt_text):].rstrip()


def pair_texts(loaded: LoadedModel, user: str, item: Item) -> tuple[str, tuple[str, str], int]:
    """(chat prompt, (correct continuation, wrong continuation), start of the scored span in the continuations)."""
    from steerwarm.generation import chat_text

    prompt = chat_text(loaded, [{"role": "user", "content": user}])
    right, wrong = replies(item)
    conts = (continuation(loaded, prompt, user, right), continuation(loaded, prompt, user, wrong))
    return prompt, conts, divergence_start(*conts)


def score_items(loaded: LoadedModel, users: Sequence[str], items: Sequence[Item],
                specs_for: SpecsFor | None = None,
                prefix_memo: dict[tuple[int, ...], Any] | None = None) -> list[PairScore]:
    """Likelihood-mode scores for a batch of conditioned user messages (one item each). `prefix_memo` (owned by a
    caller whose model and steering never change, e.g. a target) keeps the shared chat prefix's cache across
    batches."""
    texts = [pair_texts(loaded, u, item) for u, item in zip(users, items, strict=True)]
    encoded = _encode(loaded, [t[0] for t in texts], [t[1] for t in texts], [t[2] for t in texts])
    results: list[PairScore | None] = [None] * len(encoded)
    fast = [i for i, (a, b) in enumerate(encoded) if a.aligned and b.aligned]
    slow = [i for i in range(len(encoded)) if i not in set(fast)]
    if fast:
        cached = _score_cached(loaded, [encoded[i] for i in fast], specs_for, prefix_memo)
        for i, (sa, sb) in zip(fast, cached, strict=True):
            results[i] = PairScore(sa, sb)
    if slow:
        flat = _score_full(loaded, [r for i in slow for r in encoded[i]], specs_for)
        for k, i in enumerate(slow):
            results[i] = PairScore(flat[2 * k], flat[2 * k + 1])
    return [r for r in results if r is not None]


def score_full_reference(loaded: LoadedModel, users: Sequence[str], items: Sequence[Item],
                         specs_for: SpecsFor | None = None) -> list[PairScore]:
    """The same scores computed the slow way, one full sequence per reply (for tests and audits)."""
    out = []
    for u, item in zip(users, items, strict=True):
        prompt, pair, start = pair_texts(loaded, u, item)
        (ra, rb), = _encode(loaded, [prompt], [pair], [start])
        sa, = _score_full(loaded, [ra], specs_for)
        sb, = _score_full(loaded, [rb], specs_for)
        out.append(PairScore(sa, sb))
    return out


def score_from_token_logprobs(offsets: Sequence[int], logprobs: Sequence[float | None], span_start: int
                              ) -> ReplyScore:
    """A reply's score from per-token (character offset, log-probability) of the full text, e.g. an endpoint's
    echo: every token starting at or after `span_start` (offset into the full text) is scored."""
    picked = [lp for o, lp in zip(offsets, logprobs, strict=True) if o >= span_start]
    if not picked or any(lp is None for lp in picked):
        raise ValueError("the scored span has no tokens or tokens without log-probabilities")
    return ReplyScore(float(sum(lp for lp in picked if lp is not None)), len(picked))


def raw_forward_seconds(loaded: LoadedModel, users: Sequence[str]) -> float:
    """Seconds of one bare forward pass over these chat prompts at this batch size (last-position logits only, no
    reply pass, no scoring; tokenization not timed): the yardstick that scoring throughput is compared with."""
    import time

    import torch

    from steerwarm.generation import chat_text

    texts = [chat_text(loaded, [{"role": "user", "content": u}]) for u in users]
    enc = loaded.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        start = time.perf_counter()
        _forward(loaded.model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], position_ids=pos,
                 use_cache=False, logits_to_keep=1)
        return time.perf_counter() - start
