"""The one interface every model offers, and decoding written once over it.

What search needs of a model (:class:`Decoder`; the three torch models):

    state = model.encode(src, src_lengths)                        # whatever the decoder needs, batch-first
    log_probs, state = model.decode_step(prev, state, attention)  # prev: (N, 1) -> log_probs: (N, vocab)
    state = model.reorder(state, indices)                         # keep rows `indices` (index_select on dim 0)

With `attention` True, a model with attention puts the weights of the step just taken in the state as
"attention" (N, src_len); search then returns each hypothesis's attention matrix. How to decode (beam,
length penalty, length limits, n-best, source truncation) is one :class:`Decoding`. Search never imports
a concrete model.

What every caller (the Translator, records, the server) asks of a model, torch models and the exported
Transformer alike, is :class:`TranslationModel`: nobody inspects a model's class but the code that loads
a checkpoint.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID, SharedTokenizer

State = Any


@runtime_checkable
class Decoder(Protocol):
    """What search needs of a model: the three torch models offer it (models/base.py and each model)."""

    def encode(self, src: Tensor, src_lengths: Tensor) -> State:
        """What the decoder needs of the sources (B, S) with `src_lengths` (B,), batch-first."""

    def decode_step(self, prev: Tensor, state: State, attention: bool = False) -> tuple[Tensor, State]:
        """Log-probabilities (N, V) of the next token after `prev` (N, 1), and the state after it; with
        `attention`, a model with attention puts this step's weights (N, S) in the state as "attention"."""

    def reorder(self, state: State, indices: Tensor) -> State:
        """The state of rows `indices` (N',) only, in that order (beams picked, finished sentences dropped)."""


@dataclass(frozen=True)
class Decoding:
    """How to decode; one object for the configs (`decoding:`), checkpoints, the Translator and the CLI.

    Args:
        beam_size: 1 decodes greedily; more runs beam search with that many beams.
        alpha: GNMT length penalty exponent ((5 + length) / 6) ** alpha; 0 ranks by log-probability alone.
        n_best: how many translations of each source search returns (at most `beam_size`); test and predict
            keep the best, the Translator returns the n best when asked.
        max_len_ratio / max_len_extra: an output has at most ratio * source length + extra tokens.
        max_source_length: longer sources are truncated to this many tokens, with a warning.
    """

    beam_size: int = 5
    alpha: float = 1.0
    n_best: int = 1
    max_len_ratio: float = 1.5
    max_len_extra: int = 10
    max_source_length: int = 256

    def __post_init__(self) -> None:
        for name in ("beam_size", "n_best", "max_len_extra", "max_source_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
            object.__setattr__(self, name, int(value))  # a plain int (numpy's would not load with weights_only)
        for name in ("alpha", "max_len_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if not 1 <= self.n_best <= self.beam_size:
            raise ValueError(f"n_best must be between 1 and beam_size ({self.beam_size}), got {self.n_best}")
        if self.max_len_extra < 0 or self.max_source_length < 1:
            raise ValueError(
                f"max_len_extra must be >= 0 and max_source_length >= 1, got {self.max_len_extra}, "
                f"{self.max_source_length}"
            )


@dataclass
class Hypothesis:
    """One output: token ids without bos/eos, its score (log-probability / GNMT length penalty of its
    length with eos), and (if recorded) attention (len + 1, src_len)."""

    tokens: list[int]
    score: float
    attention: Tensor | None = None


@runtime_checkable
class TranslationModel(Protocol):
    """The one interface every model offers: the three torch models (models/base.py) and the exported
    Transformer (export.py). What it translates with besides its weights: `tokenizer` (None until given
    one), `languages` (source, target; None if unknown), `decoding` (its default settings); what it is:
    `architecture` (its class name, "TransformerSeq2Seq"; an export says so and its quantization),
    `num_parameters`, `has_attention` (its decoder attends over the source: hypotheses can carry attention),
    `has_context_vector` (the source reaches its decoder as one vector: :meth:`context_vector`),
    `has_gradients` (its log-likelihood can be differentiated: saliency.py can follow the gradient),
    `attention_maps` (how many cross-attention maps :meth:`cross_attention` gives: layers x heads, 0 for
    none), `max_length` (its longest source and output, None for no limit) and `test_bleu` (the test BLEU
    it carries: an export's; a checkpoint's is in its evaluation records, None)."""

    tokenizer: SharedTokenizer | None
    languages: tuple[str, str] | None
    decoding: Decoding
    architecture: str
    num_parameters: int
    has_attention: bool
    has_context_vector: bool
    has_gradients: bool
    attention_maps: int
    max_length: int | None
    test_bleu: float | None

    def for_inference(self, device: torch.device) -> TranslationModel:
        """The model ready to decode inputs on `device`."""

    def source_limit(self, decoding: Decoding) -> int:
        """The longest source decoded whole under `decoding` (longer ones are truncated)."""

    def generate(
        self, src: Tensor, src_lengths: Tensor, decoding: Decoding | None = None, attention: bool = False
    ) -> list[list[Hypothesis]]:
        """The `decoding.n_best` hypotheses of each source (B, S) (default: the model's own decoding); with
        `attention` and `has_attention`, each carries its attention matrix (len + 1, S)."""

    def generate_batches(
        self, batches: Iterable[tuple[Tensor, Tensor]], decoding: Decoding | None = None, attention: bool = False
    ) -> Iterator[list[list[Hypothesis]]]:
        """:meth:`generate` of each batch (src (B, S), src_lengths (B,)) in turn, the same hypotheses. A model
        may decode several batches at once (the exported Transformer hands them all to CTranslate2's threads),
        so a caller with several batches hands them over together."""

    def context_vector(self, src: Tensor, src_lengths: Tensor) -> Tensor | None:
        """The one vector (B, H) of each source, where `has_context_vector`; None otherwise."""

    def cross_attention(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor | None:
        """Every decoder layer's and head's attention (B, layers, heads, T, S) over the sources (B, S),
        teacher-forced on `tgt_in` (B, T) (bos + target), where `attention_maps`; None otherwise."""


def max_output_lengths(src_lengths: Tensor, decoding: Decoding, cap: int | None = None) -> Tensor:
    """Longest output allowed for each source, eos included: ratio * source length + extra, at most `cap`
    (the longest output the model can decode, if it has such a limit)."""
    limits = (src_lengths.float() * decoding.max_len_ratio).long() + decoding.max_len_extra
    return limits.clamp(min=1, max=cap)  # (B,)


def constrain(log_probs: Tensor, at_limit: Tensor) -> Tensor:
    """Never pad or bos; only eos for rows that reached their length limit (at_limit: (N,) bool)."""
    log_probs[:, [PAD_ID, BOS_ID]] = float("-inf")
    eos = log_probs[:, EOS_ID].clone()
    log_probs[at_limit] = float("-inf")
    log_probs[:, EOS_ID] = eos
    return log_probs


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length normalisation ((5 + length) / 6) ** alpha (Wu et al. 2016)."""
    return ((5 + length) / 6) ** alpha


def search(
    model: Decoder,
    src: Tensor,
    src_lengths: Tensor,
    decoding: Decoding,
    max_length: int | None = None,
    attention: bool = False,
) -> list[list[Hypothesis]]:
    """The `decoding.n_best` translations of each source (B, S): greedy for beam size 1, else beam search.
    `max_length` caps the output (eos included) for a model with a position limit."""
    if decoding.beam_size == 1:
        return [[h] for h in greedy_search(model, src, src_lengths, decoding, max_length, attention)]
    return beam_search(model, src, src_lengths, decoding, max_length, attention)


def greedy_search(
    model: Decoder,
    src: Tensor,
    src_lengths: Tensor,
    decoding: Decoding = Decoding(beam_size=1),
    max_length: int | None = None,
    attention: bool = False,
) -> list[Hypothesis]:
    """The most likely next token at every step, for the whole batch at once."""
    batch = src.size(0)
    limits = max_output_lengths(src_lengths, decoding, max_length).to(src.device)  # (B,)
    state = model.encode(src, src_lengths)
    prev = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)  # (B,)
    scores = torch.zeros(batch, device=src.device)  # (B,)
    steps, weights = [], []
    for t in range(int(limits.max())):
        log_probs, state = model.decode_step(prev, state, attention)  # (B, V)
        best, prev = constrain(log_probs, limits == t + 1).max(-1, keepdim=True)  # (B, 1)
        scores += best.squeeze(1).masked_fill(finished, 0.0)
        steps.append(prev)
        if "attention" in state:
            weights.append(state["attention"])  # (B, S)
        finished |= prev.squeeze(1) == EOS_ID
        if finished.all():
            break
    tokens = torch.cat(steps, dim=1).tolist()  # (B, L)
    matrices = torch.stack(weights, 1) if weights else None  # (B, L, S)
    hypotheses = []
    for i, row in enumerate(tokens):
        length = row.index(EOS_ID)
        score = scores[i].item() / length_penalty(length + 1, decoding.alpha)
        hypotheses.append(Hypothesis(row[:length], score, None if matrices is None else matrices[i, : length + 1]))
    return hypotheses


@dataclass
class _Beams:
    """The live beams of beam search: A active sentences of k beams each, as rows of one batch."""

    active: Tensor  # (A,) sentence of each group of k rows
    scores: Tensor  # (A, k) log-probability of each beam's prefix
    tokens: Tensor  # (A*k, t+1) prefixes, bos first
    attention: Tensor | None  # (A*k, t, S) attention of the prefixes, if recorded

    def keep(self, rows: Tensor) -> None:
        """Keep (and reorder) the prefix rows `rows`."""
        self.tokens = self.tokens[rows]
        self.attention = None if self.attention is None else self.attention[rows]

    def shrink(self, going: Tensor) -> Tensor:
        """Keep only the sentences where `going` (A,) is True; returns the rows kept (A'*k,)."""
        k = self.scores.size(1)
        kept = going.nonzero().squeeze(1)  # (A',)
        rows = (kept.unsqueeze(1) * k + torch.arange(k, device=kept.device)).view(-1)  # (A'*k,)
        self.active, self.scores = self.active[kept], self.scores[kept]
        self.keep(rows)
        return rows


def _finish(
    beams: _Beams, top_scores: Tensor, origin: Tensor, is_eos: Tensor, t: int, alpha: float, finished: list
) -> None:
    """Move the candidates among each sentence's top k that end in eos into `finished`."""
    k = beams.scores.size(1)
    for a, c in is_eos[:, :k].nonzero().tolist():
        row = int(origin[a, c])
        hypothesis = Hypothesis(
            beams.tokens[row, 1:].tolist(),
            top_scores[a, c].item() / length_penalty(t + 1, alpha),
            None if beams.attention is None else beams.attention[row],
        )
        finished[int(beams.active[a])].append(hypothesis)


def beam_search(
    model: Decoder,
    src: Tensor,
    src_lengths: Tensor,
    decoding: Decoding = Decoding(),
    max_length: int | None = None,
    attention: bool = False,
) -> list[list[Hypothesis]]:
    """Batched beam search: sentences x beams are one batch of rows at every step.

    At each step the 2k best continuations of each sentence are taken; those ending in eos among the
    top k leave the beam as finished hypotheses (score = log-probability / GNMT length penalty), the
    best k others go on. A sentence is done when it has k finished hypotheses, or when its length
    limit forces eos; done sentences leave the batch. Returns the `n_best` best per sentence, sorted.
    """
    batch, k, device = src.size(0), decoding.beam_size, src.device
    limits = max_output_lengths(src_lengths, decoding, max_length).to(device)  # (B,)
    state = model.reorder(model.encode(src, src_lengths), torch.arange(batch, device=device).repeat_interleave(k))
    scores = torch.full((batch, k), float("-inf"), device=device)  # (A, k)
    scores[:, 0] = 0.0  # all beams start as the same empty prefix: keep one
    bos = torch.full((batch * k, 1), BOS_ID, dtype=torch.long, device=device)  # (A*k, 1)
    beams = _Beams(torch.arange(batch, device=device), scores, bos, None)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]

    for t in range(int(limits.max())):
        log_probs, state = model.decode_step(beams.tokens[:, -1:], state, attention)  # (A*k, V)
        vocab, groups = log_probs.size(-1), len(beams.active)
        at_limit = (limits[beams.active] == t + 1).repeat_interleave(k)  # (A*k,)
        candidates = beams.scores.view(-1, 1) + constrain(log_probs, at_limit)  # (A*k, V)
        top_scores, top_ids = candidates.view(groups, -1).topk(2 * k, dim=1)  # (A, 2k)
        origin = top_ids // vocab + torch.arange(groups, device=device).unsqueeze(1) * k  # (A, 2k) rows
        next_tokens = top_ids % vocab  # (A, 2k)
        if "attention" in state:
            step = state["attention"].unsqueeze(1)  # (A*k, 1, S)
            beams.attention = step if beams.attention is None else torch.cat([beams.attention, step], 1)

        is_eos = (next_tokens == EOS_ID) & torch.isfinite(top_scores)  # (A, 2k)
        _finish(beams, top_scores, origin, is_eos, t, decoding.alpha, finished)

        go_on = top_scores.masked_fill(is_eos, float("-inf")).topk(k, dim=1)  # best k non-eos, (A, k)
        rows = origin.gather(1, go_on.indices).view(-1)  # (A*k,)
        beams.scores = go_on.values  # (A, k)
        beams.keep(rows)
        beams.tokens = torch.cat([beams.tokens, next_tokens.gather(1, go_on.indices).view(-1, 1)], 1)  # (A*k, t+2)

        done = torch.tensor([len(finished[s]) >= k for s in beams.active.tolist()], device=device)  # (A,)
        done |= limits[beams.active] <= t + 1
        if done.all():
            break
        if done.any():
            rows = rows[beams.shrink(~done)]
        state = model.reorder(state, rows)

    return [sorted(hyps, key=lambda h: h.score, reverse=True)[: decoding.n_best] for hyps in finished]
