"""Dropout whose random mask is cheap on a CPU.

torch's CPU dropout draws a Bernoulli sample per element from its serial generator. This one draws 16
random bits per element, four elements to one 64-bit draw, and keeps an element when its bits fall below
(1 - p) * 2**16: the same distribution with the keep probability rounded to 1/65536, two to three times
faster forward and backward (benchmarks/training_speed/train_levers.md); other devices use torch's own dropout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> Tensor:
    """(1 - p)-Bernoulli mask of `shape`, scaled by 1 / (1 - p) so that it keeps the expectation."""
    numel = shape.numel()
    words = torch.empty((numel + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # 64 bits each
    bits = words.view(torch.int16)[:numel].view(shape)  # 16 random bits per element, in [-2**15, 2**15)
    keep = max(round((1 - p) * 2**16), 1)  # out of 2**16
    return (bits < keep - 2**15).to(dtype).mul_(2**16 / keep)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero each element of `x` with probability `p` and scale the rest, as `F.dropout`."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    if x.device.type != "cpu":
        return F.dropout(x, p, training)
    return x * keep_mask(x.shape, p, x.dtype)


class Dropout(nn.Dropout):
    """`nn.Dropout` with the mask of :func:`keep_mask` on the CPU."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)
