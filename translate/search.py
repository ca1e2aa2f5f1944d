"""Decoding written once, over the one interface every model offers:

    state = model.encode(src, src_lengths)             # whatever the decoder needs, batch-first
    log_probs, state = model.decode_step(prev, state)  # prev: (N, 1) -> log_probs: (N, vocab)
    state = model.reorder(state, indices)              # keep rows `indices` (index_select on dim 0)

Search never imports a concrete model.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID

State = Any


class Decoder(Protocol):
    def encode(self, src: Tensor, src_lengths: Tensor) -> State: ...

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]: ...

    def reorder(self, state: State, indices: Tensor) -> State: ...


def max_output_lengths(src_lengths: Tensor, ratio: float, extra: int) -> Tensor:
    """Longest output allowed for each source, eos included: ratio * source length + extra."""
    return (src_lengths.float() * ratio).long() + extra  # (B,)


def never_special(log_probs: Tensor) -> Tensor:
    """Rule out pad and bos as outputs."""
    log_probs[:, [PAD_ID, BOS_ID]] = float("-inf")
    return log_probs


def greedy_search(
    model: Decoder, src: Tensor, src_lengths: Tensor, max_len_ratio: float = 1.5, max_len_extra: int = 10
) -> list[list[int]]:
    """Most likely next token at every step, for the whole batch at once; ids without bos/eos."""
    batch = src.size(0)
    limits = max_output_lengths(src_lengths, max_len_ratio, max_len_extra).tolist()
    state = model.encode(src, src_lengths)
    prev = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)  # (B,)
    steps = []
    for _ in range(max(limits)):
        log_probs, state = model.decode_step(prev, state)  # (B, V)
        prev = never_special(log_probs).argmax(-1, keepdim=True)  # (B, 1)
        steps.append(prev)
        finished |= prev.squeeze(1) == EOS_ID
        if finished.all():
            break
    tokens = torch.cat(steps, dim=1).tolist()  # (B, L)
    return [_until_eos(row[:limit]) for row, limit in zip(tokens, limits, strict=True)]


def _until_eos(ids: list[int]) -> list[int]:
    return ids[: ids.index(EOS_ID)] if EOS_ID in ids else ids
