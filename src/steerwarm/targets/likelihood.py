"""Likelihood mode: judge-free, deterministic scoring by the model's own log-probabilities of two candidate replies.

Definition (the same for in-process models and endpoints):
- The prompt is the conditioned user message in the model's chat template with its generation prompt (the model's
  default system prompt included; a prompt target's `system` message as `targets.prompt` builds it, else none
  added). Steered targets are steered on every position of prompt and reply.
- Two assistant replies, given by the caller (the benchmark makes them from an item: `bench.replies`). Each reply
  is followed by the template's end-of-turn marker (for ChatML `<|im_end|>`), so a reply must also be a complete
  answer.
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
- Batched scoring equals scoring each reply alone as one full sequence (tests/bench/test_likelihood.py keeps that
  arithmetic as the reference): padding is never attended to and never scored, and a token's log-probability is
  computed from exactly the tokens before it in its own sequence, with their own positions.
- One code path, one forward pass per batch, no duplicated work: every prompt + reply sequence of the batch is put
  into prefix trees, so a token shared by several sequences (the chat template and system prompt, a context
  statement or preamble that several prompts open with, a prompt shared by its two replies, the replies' shared
  opening) runs once per row. The prefix common to the whole batch (at least MIN_SHARED_PREFIX tokens) runs once
  per target (a memo) into a key/value cache; the rest of the trees is flattened into rows (a node's position id is
  its depth, a 4-D attention mask lets it see the shared prefix, its ancestors and itself), rows split to balance
  attention over masked pairs against padding. A reply's last token is never fed (nothing is predicted from it),
  and the output projection runs only where a scored token is predicted.
- Steering specs come from a callable that receives the number of rows of each forward pass (1 for the shared
  prefix, the number of rows for the trees), so every position of prompt and reply is steered alike.
- Forked scoring (`score_pairs_forked`, one code path with `score_pairs`: a single stream is the plain case): S
  steering streams (e.g. dial values) score one batch together. Steering adds at the output of a decoder layer, so
  below a stream's first steered layer it computes what the unsteered model does: those layers run once for all
  streams not yet steered, on the same rows and shared prefix as a single stream would, and at each stream's first
  steered layer its own stacked copy of the rows forks off (`steer.fork.ForkPlan`: with the shipped dial, layers
  0-15 once, 16-18 for the warm values and one shared copy, 19-29 per dial value). This holds in the shared prefix
  pass (whose cache then holds each layer's copies) and in the trees alike; the final norm and the output
  projection at the scored positions run per stream. Stream s's scores equal `score_pairs` with its steering alone
  up to float rounding of the larger matrix products (bit-identical in the tests and on the default model so
  far); a stream set that steers nothing runs once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steerwarm.model.device import input_device
from steerwarm.model.masks import layer_masks

if TYPE_CHECKING:
    import torch

    from steerwarm.model.load import LoadedModel
    from steerwarm.steer.fork import ForkPlan, RowSpecs
    from steerwarm.steer.hooks import SteerSpec

SpecsFor = Callable[[int], "list[SteerSpec]"]
MIN_SHARED_PREFIX = 8  # tokens; below this a batch's common prefix is not worth a cached pass of its own
PREFIX_MEMO_SIZE = 8  # distinct shared prefixes kept per target
# Masked attention does a flop at about half the speed of the decoder's matrix products (measured on this CPU:
# scaled_dot_product_attention with a 4-D mask 75-95 GFLOP/s, the layers' linear maps 140-150, one thread).
ATTENTION_SLOWDOWN = 2.0


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
class _Reply:
    """One reply of one prompt: the chat prompt and the reply tokenized as one text, and which tokens are scored."""

    ids: list[int]
    scored: list[int]  # ascending indices into ids, never 0: a scored token always has a token before it


def _encode(loaded: LoadedModel, prompt_texts: Sequence[str], conts: Sequence[tuple[str, str]],
            starts: Sequence[int]) -> list[tuple[_Reply, _Reply]]:
    """Tokenize each prompt + reply as one text; the scored tokens are those that start at or after the scored
    span (character offset len(prompt) + start)."""
    tok = loaded.tokenizer
    fulls = [p + c for p, pair in zip(prompt_texts, conts, strict=True) for c in pair]
    enc = tok(fulls, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for i, p_text in enumerate(prompt_texts):
        boundary = len(p_text) + starts[i]
        parts = []
        for j in range(2):
            ids, offs = [int(x) for x in enc["input_ids"][2 * i + j]], enc["offset_mapping"][2 * i + j]
            scored = [k for k, o in enumerate(offs) if o[0] >= boundary]
            if not scored:
                raise ValueError(f"no token of reply {conts[i][j]!r} starts at or after its scored span")
            if scored[0] == 0:
                raise ValueError(f"reply {conts[i][j]!r}: the scored span starts at the text's first token")
            parts.append(_Reply(ids, scored))
        out.append((parts[0], parts[1]))
    return out


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


class _Tree:
    """A prefix tree of token sequences, flattened in insertion order into one row of the forward pass: node i holds
    one token, its parent (-1: the batch's shared prefix, held in the key/value cache) and its depth below that
    prefix. A parent always comes before its children."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.depths: list[int] = []
        self._child: dict[tuple[int, int], int] = {}
        self.units: list[int] = []  # the units packed into this row (see _pack)
        self.paths: list[list[list[int]]] = []  # per unit, per sequence: the node of each token

    def __len__(self) -> int:
        return len(self.tokens)

    def _present(self, seq: Sequence[int]) -> int:
        node, k = -1, 0
        while k < len(seq) and (node, seq[k]) in self._child:
            node = self._child[(node, seq[k])]
            k += 1
        return k

    def new_nodes(self, seqs: Sequence[Sequence[int]]) -> int:
        """How many nodes inserting `seqs` would add (nothing is inserted)."""
        added = 0
        for i, seq in enumerate(seqs):
            known = max([self._present(seq), *(_lcp(seq, seqs[j]) for j in range(i))])
            added += len(seq) - known
        return added

    def insert(self, seq: Sequence[int]) -> list[int]:
        """Insert a token sequence; returns the node of each of its tokens."""
        path, node = [], -1
        for depth, token in enumerate(seq):
            nxt = self._child.get((node, token))
            if nxt is None:
                nxt = len(self.tokens)
                self._child[(node, token)] = nxt
                self.tokens.append(token)
                self.parents.append(node)
                self.depths.append(depth)
            path.append(nxt)
            node = nxt
        return path


def _pack(units: Sequence[Sequence[Sequence[int]]], rows: Sequence[Sequence[int]] | None) -> list[_Tree]:
    """One tree per row from the unit indices of each row (None: all units in one row); a unit's sequences always
    share a row. Each tree records its units and, per unit and sequence, the node of each token."""
    trees = []
    for row in rows if rows is not None else [range(len(units))]:
        tree = _Tree()
        for u in row:
            tree.units.append(u)
            tree.paths.append([tree.insert(s) for s in units[u]])
        trees.append(tree)
    return trees


def _groups(units: Sequence[Sequence[Sequence[int]]], cap: int) -> list[list[int]]:
    """Split units (sorted, so that units with a common opening are neighbours) into runs of at most `cap` tree
    nodes (or single units), cutting where neighbours share the fewest tokens, so that little is run twice."""
    out: list[list[int]] = []

    def split(lo: int, hi: int) -> None:
        if hi - lo == 1 or len(_pack(units, [range(lo, hi)])[0]) <= cap:
            out.append(list(range(lo, hi)))
            return
        cut = min(range(lo + 1, hi), key=lambda j: (_lcp(units[j - 1][0], units[j][0]), abs(2 * j - lo - hi)))
        split(lo, cut)
        split(cut, hi)

    split(0, len(units))
    return out


def _rows(units: Sequence[Sequence[Sequence[int]]], cap: int) -> list[list[int]]:
    """Groups of at most `cap` nodes, packed first-fit decreasing into rows of at most `cap` nodes."""
    groups = [(len(_pack(units, [g])[0]), g) for g in _groups(units, cap)]
    rows: list[tuple[int, list[int]]] = []
    for size, g in sorted(groups, key=lambda x: -x[0]):
        at = next((i for i, (fill, _) in enumerate(rows) if fill + size <= cap), None)
        if at is None:
            rows.append((size, list(g)))
        else:
            rows[at] = (rows[at][0] + size, rows[at][1] + g)
    return [sorted(r) for _, r in rows]


def _attention_weight(model: torch.nn.Module) -> float:
    """Cost of one attended (query, key) pair relative to one token through a decoder layer's weights: 4 x hidden
    flops against 2 x the layer's parameter count, times ATTENTION_SLOWDOWN."""
    from steerwarm.model.anatomy import decoder_layers

    config: Any = model.config
    hidden = int(config.hidden_size)
    layer_params = sum(p.numel() for p in decoder_layers(model)[0].parameters())
    return ATTENTION_SLOWDOWN * 2 * hidden / layer_params


def _layout(units: Sequence[Sequence[Sequence[int]]], prefix_len: int, weight: float) -> list[_Tree]:
    """The cheapest rows by the cost model rows x width x (1 + weight x (prefix + width)), over row capacities from
    one row for everything down to one row per unit: long rows pay for attention over masked pairs, short rows for
    padding and for nodes repeated in several rows."""
    total = len(_pack(units, None)[0])
    biggest = max(len(_pack(units, [[u]])[0]) for u in range(len(units)))
    best: tuple[float, list[_Tree]] | None = None
    worse = 0
    for n_rows in range(1, len(units) + 1):
        cap = max(biggest, -(-total // n_rows))
        trees = _pack(units, _rows(units, cap))
        width = max(len(t) for t in trees)
        cost = len(trees) * width * (1 + weight * (prefix_len + width))
        if best is None or cost < best[0]:
            best, worse = (cost, trees), 0
        else:
            worse += 1
            if worse == 3 or cap == biggest:
                break
    assert best is not None
    return best[1]


def _one_stream(specs_for: SpecsFor | None) -> RowSpecs | None:
    """A single stream's steering as row specs: specs_for(number of rows)."""
    if specs_for is None:
        return None

    def rows(streams: Sequence[int]) -> list[SteerSpec]:
        return specs_for(len(streams))

    return rows


def _steering(model: torch.nn.Module, row_specs: RowSpecs | None, rows: int, plan: ForkPlan | None) -> Any:
    """Steering of a pass of `rows` rows: one stream's specs, or a fork plan's streams stacked (steer.fork)."""
    from steerwarm.steer.hooks import steer

    if plan is not None:
        assert row_specs is not None
        return plan.apply(model, row_specs, rows)
    return steer(model, row_specs([0] * rows)) if row_specs is not None else nullcontext()


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


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(x) for x in seqs)
    first = seqs[0]
    for k in range(n):
        if any(x[k] != first[k] for x in seqs):
            return k
    return n


def _prefix_cache(model: torch.nn.Module, prefix: list[int], row_specs: RowSpecs | None, plan: ForkPlan | None,
                  memo: dict[tuple[int, ...], Any] | None) -> Any:
    """Key/value cache of a token prefix (batch 1; with streams, one row per stream above the fork layer), computed
    once per distinct prefix when a memo is given (a memo serves one steering configuration)."""
    import copy

    import torch

    key = tuple(prefix)
    if memo is not None and key in memo:
        return copy.deepcopy(memo[key])
    from transformers import DynamicCache

    k, dev = len(prefix), input_device(model)
    # a cache without the model's config keeps every key, also on sliding-window layers (the model's own would keep
    # only the last `window`): the tree masks address prefix keys by position and apply the window themselves
    with _steering(model, row_specs, 1, plan):
        out = _forward(model, input_ids=torch.tensor([prefix], device=dev),
                       attention_mask=torch.ones((1, k), dtype=torch.long, device=dev),
                       position_ids=torch.arange(k, device=dev)[None, :], past_key_values=DynamicCache(),
                       use_cache=True, logits_to_keep=1)
    if memo is not None:
        if len(memo) >= PREFIX_MEMO_SIZE:
            memo.clear()
        memo[key] = copy.deepcopy(out.past_key_values)
    return out.past_key_values


def _tree_inputs(trees: Sequence[_Tree], prefix_len: int, pad: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, position ids and which keys each node may see ([rows, width, prefix_len + width], bool) for rows
    of prefix trees: a node attends to the shared prefix, its ancestors and itself, so it sees exactly the tokens
    before it in each of its sequences. Padding attends to the prefix and itself (no row is empty) and nothing
    attends to padding. `model.masks.layer_masks` turns it into the model's masks (sliding windows included)."""
    import torch

    width = max(len(t) for t in trees)
    ids = torch.full((len(trees), width), pad, dtype=torch.long)
    pos = torch.full((len(trees), width), prefix_len, dtype=torch.long)
    allowed = torch.zeros((len(trees), width, prefix_len + width), dtype=torch.bool)
    allowed[:, :, :prefix_len] = True
    for r, tree in enumerate(trees):
        n = len(tree)
        ids[r, :n] = torch.tensor(tree.tokens, dtype=torch.long)
        pos[r, :n] += torch.tensor(tree.depths, dtype=torch.long)
        seen = allowed[r, :, prefix_len:]  # a view: rows are queries, columns the row's own keys
        for i, parent in enumerate(tree.parents):
            if parent >= 0:
                seen[i] = seen[parent]
            seen[i, i] = True
        seen.diagonal()[n:].fill_(True)
    return ids, pos, allowed


def _score(loaded: LoadedModel, pairs: Sequence[tuple[_Reply, _Reply]], specs_for: SpecsFor | None,
           prefix_memo: dict[tuple[int, ...], Any] | None) -> list[tuple[ReplyScore, ReplyScore]]:
    """Score a batch of reply pairs in one forward pass over prefix trees (see the module doc)."""
    return _score_streams(loaded, pairs, 1, _one_stream(specs_for), prefix_memo)[0]


def _score_streams(loaded: LoadedModel, pairs: Sequence[tuple[_Reply, _Reply]], n_streams: int,
                   row_specs: RowSpecs | None, prefix_memo: dict[tuple[int, ...], Any] | None
                   ) -> list[list[tuple[ReplyScore, ReplyScore]]]:
    """Score a batch of reply pairs under each of `n_streams` steering streams in one forward pass over prefix
    trees, forked at the first steered layer (see the module doc); one list of scores per stream."""
    import torch

    model = loaded.model
    plan: ForkPlan | None = None
    if n_streams > 1:
        from steerwarm.steer.fork import ForkPlan

        plan = ForkPlan.build(row_specs, n_streams) if row_specs is not None else None
        if plan is None:  # no stream steers anything: every stream is the unsteered model
            return _score_streams(loaded, pairs, 1, None, prefix_memo) * n_streams
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or "eager"
    if impl not in ("sdpa", "eager"):
        raise ValueError(f"likelihood scoring packs prompts into prefix trees with a custom 4-D attention mask, "
                         f"which needs attn_implementation 'sdpa' or 'eager'; this model uses {impl!r}")
    replies_ = [r for pair in pairs for r in pair]
    fed = [r.ids[:-1] for r in replies_]  # a reply's last token predicts nothing: it is scored, never fed
    k = min(_common_prefix(fed), min(r.scored[0] for r in replies_) - 1)
    if k < MIN_SHARED_PREFIX:
        k = 0
    units = [[fed[2 * i][k:], fed[2 * i + 1][k:]] for i in range(len(pairs))]
    order = sorted(range(len(units)), key=lambda i: units[i][0])  # sequences sharing a prefix become neighbours
    trees = _layout([units[i] for i in order], k, _attention_weight(model))
    dtype = next(model.parameters()).dtype
    ids, pos, allowed = _tree_inputs(trees, k, int(loaded.tokenizer.pad_token_id or 0))
    key_pos = torch.cat([torch.arange(k).expand(len(trees), k), pos], dim=1)
    dev = input_device(model)
    # additive, as this scoring has always fed sdpa (its speed and numbers were measured so)
    mask = layer_masks(model.config, allowed.to(dev), pos.to(dev), key_pos.to(dev), dtype, additive=True)

    # where each scored token is predicted: (row, node of the token before it), shared between replies
    where: dict[tuple[int, int], int] = {}
    picks: list[list[tuple[int, int]]] = [[] for _ in replies_]  # per reply: (prediction index, target token)
    for r, tree in enumerate(trees):
        for u, paths in zip(tree.units, tree.paths, strict=True):
            for s, path in enumerate(paths):
                b = 2 * order[u] + s
                reply = replies_[b]
                for t in reply.scored:
                    at = where.setdefault((r, path[t - 1 - k]), len(where))
                    picks[b].append((at, reply.ids[t]))
    rows = torch.tensor([rn[0] for rn in where])
    nodes = torch.tensor([rn[1] for rn in where])

    get_decoder, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    decoder: Any = get_decoder() if callable(get_decoder) else None
    head: Any = get_head() if callable(get_head) else None
    with torch.inference_mode():
        cache = None
        if k:
            cache = _prefix_cache(model, fed[0][:k], row_specs, plan, prefix_memo)
            cache.batch_repeat_interleave(len(trees))
        kwargs = {"input_ids": ids.to(dev), "attention_mask": mask, "position_ids": pos.to(dev),
                  "past_key_values": cache, "use_cache": cache is not None}
        # stream s's copy of tree row r is row position[s] * len(trees) + r (steer.fork)
        position = plan.position if plan is not None else [0]
        rows = torch.cat([rows + position[s] * len(trees) for s in range(n_streams)])
        nodes = nodes.repeat(n_streams)
        with _steering(model, row_specs, len(trees), plan):
            if decoder is not None and isinstance(head, torch.nn.Linear):
                hidden = decoder(**kwargs).last_hidden_state
                logits = head(hidden[rows.to(hidden.device), nodes.to(hidden.device)])
            else:  # models without a plain decoder + linear head: full logits
                full = model(**kwargs).logits
                logits = full[rows.to(full.device), nodes.to(full.device)]
        index = torch.tensor([at for p in picks for at, _ in p], device=logits.device)
        targets = torch.tensor([tok for p in picks for _, tok in p], device=logits.device)
        index = torch.cat([index + s * len(where) for s in range(n_streams)])
        lps = _token_logprobs(logits[index], targets.repeat(n_streams)).tolist()
    out, at = [], 0
    for _ in range(n_streams):
        scores = []
        for p in picks:
            scores.append(ReplyScore(float(sum(lps[at: at + len(p)])), len(p)))
            at += len(p)
        out.append([(scores[2 * i], scores[2 * i + 1]) for i in range(len(pairs))])
    return out


def continuation(loaded: LoadedModel, prompt_text: str, user: str, reply: str, system: str | None = None) -> str:
    """The text that follows the chat prompt when the assistant says `reply`: the reply and its end-of-turn marker
    as the chat template writes them (trailing whitespace after the marker dropped). `system`: the conversation's
    system message, as in `pair_texts`."""
    from steerwarm.model.chat import chat_text
    from steerwarm.targets.prompt import user_turn

    full = chat_text(loaded, [*user_turn(user, system), {"role": "assistant", "content": reply}],
                     add_generation_prompt=False)
    if not full.startswith(prompt_text):
        raise ValueError("the chat template does not extend the generation prompt with the assistant turn; "
                         "likelihood mode needs a template where it does")
    return full[len(prompt_text):].rstrip()


def pair_texts(loaded: LoadedModel, user: str, pair: tuple[str, str], system: str | None = None
               ) -> tuple[str, tuple[str, str], int]:
    """(chat prompt, (correct continuation, wrong continuation), start of the scored span in the continuations).
    `system`: a system message to open the conversation with (a prompt target's, `targets.prompt.system_message`);
    None leaves the template's default."""
    from steerwarm.model.chat import chat_text
    from steerwarm.targets.prompt import user_turn

    prompt = chat_text(loaded, user_turn(user, system))
    right, wrong = pair
    conts = (continuation(loaded, prompt, user, right, system), continuation(loaded, prompt, user, wrong, system))
    return prompt, conts, divergence_start(*conts)


def score_pairs(loaded: LoadedModel, users: Sequence[str], pairs: Sequence[tuple[str, str]],
                specs_for: SpecsFor | None = None,
                prefix_memo: dict[tuple[int, ...], Any] | None = None, system: str | None = None
                ) -> list[PairScore]:
    """Likelihood-mode scores for a batch of conditioned user messages, one (correct, wrong) reply pair each.
    `prefix_memo` (owned by a caller whose model and steering never change, e.g. a target) keeps the shared chat
    prefix's cache across batches. `system`: the system message of every conversation (see `pair_texts`)."""
    if not users:
        return []
    texts = [pair_texts(loaded, u, pair, system) for u, pair in zip(users, pairs, strict=True)]
    encoded = _encode(loaded, [t[0] for t in texts], [t[1] for t in texts], [t[2] for t in texts])
    return [PairScore(a, b) for a, b in _score(loaded, encoded, specs_for, prefix_memo)]


def score_pairs_forked(loaded: LoadedModel, users: Sequence[str], pairs: Sequence[tuple[str, str]], n_streams: int,
                       row_specs: RowSpecs | None,
                       prefix_memo: dict[tuple[int, ...], Any] | None = None) -> list[list[PairScore]]:
    """`score_pairs` under `n_streams` steering streams at once: `row_specs(streams)` gives the steering of a pass
    whose row i belongs to stream streams[i] (e.g. the dial with one warmth per stream). The layers below the first
    steered layer run once for all streams (`steer.fork`); result[s] is what `score_pairs` with stream s's steering
    alone gives (equal to float rounding: only the batch size of the layers above the fork differs). A
    `prefix_memo` serves one (streams, steering) configuration."""
    if n_streams < 1:
        raise ValueError(f"need at least one stream, got {n_streams}")
    if not users:
        return [[] for _ in range(n_streams)]
    texts = [pair_texts(loaded, u, pair) for u, pair in zip(users, pairs, strict=True)]
    encoded = _encode(loaded, [t[0] for t in texts], [t[1] for t in texts], [t[2] for t in texts])
    return [[PairScore(a, b) for a, b in scores]
            for scores in _score_streams(loaded, encoded, n_streams, row_specs, prefix_memo)]


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

    from steerwarm.model.chat import chat_text

    texts = [chat_text(loaded, [{"role": "user", "content": u}]) for u in users]
    enc = loaded.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    enc = enc.to(input_device(loaded.model))
    pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        start = time.perf_counter()
        _forward(loaded.model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], position_ids=pos,
                 use_cache=False, logits_to_keep=1)
        return time.perf_counter() - start
