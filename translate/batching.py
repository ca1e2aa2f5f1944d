"""Batches of token ids: the padded `Batch` every model trains on, and token-budget batching.

Shared by the training datamodule and the Translator, so translating needs no training code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor


@dataclass
class Batch:
    """Padded token ids of a batch; `index` is each example's row in its split."""

    src: Tensor  # (B, S) source ids, right-padded
    src_lengths: Tensor  # (B,)
    tgt_in: Tensor  # (B, T) bos + y
    tgt_out: Tensor  # (B, T) y + eos
    index: Tensor  # (B,)

    def __len__(self) -> int:
        return self.src.size(0)


def token_budget_batches(order: np.ndarray, sizes: np.ndarray, max_tokens: int) -> list[list[int]]:
    """Cut the rows `order` (sorted by length) into consecutive batches whose padded size, rows x the
    largest `sizes[row]`, stays within `max_tokens`; a row larger than that gets a batch of its own."""
    batches, start, longest = [], 0, 0
    for i, size in enumerate(np.asarray(sizes)[order]):
        longest = max(longest, size)
        if (i - start + 1) * longest > max_tokens and i > start:
            batches.append(order[start:i].tolist())
            start, longest = i, size
    if start < len(order):
        batches.append(order[start:].tolist())
    return batches
