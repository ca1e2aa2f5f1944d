"""Decoding written once, over the one interface every model offers:

    state = model.encode(src, src_lengths)             # whatever the decoder needs, batch-first
    log_probs, state = model.decode_step(prev, state)  # prev: (N, 1) -> log_probs: (N, vocab)
    state = model.reorder(state, indices)              # keep rows `indices` (index_select on dim 0)

A state may carry "attention" (N, src_len), the weights of the step just taken; search then
returns each hypothesis's attention matrix. Search never imports a concrete model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID

State = Any


class Decoder(Protocol):
    def encode(self, src: Tensor, src_lengths: Tensor) -> State: ...

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]: ...

    def reorder(self, state: State, indices: Tensor) -> State: ...


@dataclass
class Hypothesis:
    """One output: token ids without bos/eos, its score, and (if recorded) attention (len + 1, src_len)."""

    tokens: list[int]
    score: float
    attention: Tensor | None = None


def max_output_lengths(src_lengths: Tensor, ratio: float, extra: int, cap: int | None = None) -> Tensor:
    """Longest output allowed for each source, eos included: ratio * source length + extra, at most `cap`
    (the longest output the model can decode, if it has such a limit)."""
    return ((src_lengths.float() * ratio).long() + extra).clamp(min=1, max=cap)  # (B,)


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


def greedy_search(
    model: Decoder,
    src: Tensor,
    src_lengths: Tensor,
    max_len_ratio: float = 1.5,
    max_len_extra: int = 10,
    max_len_cap: int | None = None,
) -> list[Hypothesis]:
    """The most likely next token at every step, for the whole batch at once."""
    batch = src.size(0)
    limits = max_output_lengths(src_lengths, max_len_ratio, max_len_extra, max_len_cap).to(src.device)  # (B,)
    state = model.encode(src, src_lengths)
    prev = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)  # (B,)
    scores = torch.zeros(batch, device=src.device)  # (B,)
    steps, attention = [], []
    for t in range(int(limits.max())):
        log_probs, state = model.decode_step(prev, state)  # (B, V)
        best, prev = constrain(log_probs, limits == t + 1).max(-1, keepdim=True)  # (B, 1)
        scores += best.squeeze(1).masked_fill(finished, 0.0)
        steps.append(prev)
        if "attention" in state:
            attention.append(state["attention"])
        finished |= prev.squeeze(1) == EOS_ID
        if finished.all():
            break
    tokens = torch.cat(steps, dim=1).tolist()  # (B, L)
    weights = torch.stack(attention, 1) if attention else None  # (B, L, S)
    hypotheses = []
    for i, row in enumerate(tokens):
        length = row.index(EOS_ID)
        hypotheses.append(
            Hypothesis(row[:length], scores[i].item(), None if weights is None else weights[i, : length + 1])
        )
    return hypotheses


def beam_search(
    model: Decoder,
    src: Tensor,
    src_lengths: Tensor,
    beam_size: int = 5,
    alpha: float = 1.0,
    n_best: int = 1,
    max_len_ratio: float = 1.5,
    max_len_extra: int = 10,
    max_len_cap: int | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search: sentences x beams are one batch of rows at every step.

    At each step the 2k best continuations of each sentence are taken; those ending in eos among the
    top k leave the beam as finished hypotheses (score = log-probability / GNMT length penalty), the
    best k others go on. A sentence is done when it has k finished hypotheses, or when its length
    limit forces eos; done sentences leave the batch. Returns the `n_best` best per sentence, sorted.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    batch, k, device = src.size(0), beam_size, src.device
    limits = max_output_lengths(src_lengths, max_len_ratio, max_len_extra, max_len_cap).to(device)  # (B,)
    state = model.reorder(model.encode(src, src_lengths), torch.arange(batch, device=device).repeat_interleave(k))
    active = torch.arange(batch, device=device)  # (A,) sentences still decoding
    scores = torch.full((batch, k), float("-inf"), device=device)  # (A, k)
    scores[:, 0] = 0.0  # all beams start as the same empty prefix: keep one
    tokens = torch.full((batch * k, 1), BOS_ID, dtype=torch.long, device=device)  # (A*k, t+1)
    attention: Tensor | None = None  # (A*k, t, S)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]

    for t in range(int(limits.max())):
        log_probs, state = model.decode_step(tokens[:, -1:], state)  # (A*k, V)
        vocab = log_probs.size(-1)
        at_limit = (limits[active] == t + 1).repeat_interleave(k)  # (A*k,)
        candidates = scores.view(-1, 1) + constrain(log_probs, at_limit)  # (A*k, V)
        top_scores, top_ids = candidates.view(len(active), -1).topk(2 * k, dim=1)  # (A, 2k)
        origin = top_ids // vocab + torch.arange(len(active), device=device).unsqueeze(1) * k  # (A, 2k) rows
        next_tokens = top_ids % vocab  # (A, 2k)
        if "attention" in state:
            step = state["attention"].unsqueeze(1)  # (A*k, 1, S)
            attention = step if attention is None else torch.cat([attention, step], 1)

        is_eos = (next_tokens == EOS_ID) & torch.isfinite(top_scores)  # (A, 2k)
        for a, c in is_eos[:, :k].nonzero().tolist():
            sentence, row = int(active[a]), int(origin[a, c])
            finished[sentence].append(
                Hypothesis(
                    tokens[row, 1:].tolist(),
                    top_scores[a, c].item() / length_penalty(t + 1, alpha),
                    None if attention is None else attention[row],
                )
            )

        go_on = top_scores.masked_fill(is_eos, float("-inf")).topk(k, dim=1)  # best k non-eos, (A, k)
        rows = origin.gather(1, go_on.indices).view(-1)  # (A*k,)
        scores = go_on.values  # (A, k)
        tokens = torch.cat([tokens[rows], next_tokens.gather(1, go_on.indices).view(-1, 1)], 1)  # (A*k, t+2)
        if attention is not None:
            attention = attention[rows]

        done = torch.tensor([len(finished[s]) >= k for s in active.tolist()], device=device)  # (A,)
        done |= limits[active] <= t + 1
        if done.all():
            break
        if done.any():
            keep = (~done).nonzero().squeeze(1)  # (A',)
            keep_rows = (keep.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)  # (A'*k,)
            active, scores, tokens = active[keep], scores[keep], tokens[keep_rows]
            attention = None if attention is None else attention[keep_rows]
            rows = rows[keep_rows]
        state = model.reorder(state, rows)

    return [sorted(hyps, key=lambda h: h.score, reverse=True)[:n_best] for hyps in finished]
