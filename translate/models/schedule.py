"""The learning-rate schedules of :class:`~translate.models.base.Seq2SeqModule`, fitted to the run.

    inverse_sqrt   linear warm-up over `warmup_steps`, then 1/sqrt(step)
    linear         the same warm-up, then a straight line down to zero at the trainer's last step or, where
                   the trainer has a ``max_time``, at the end of that time, whichever comes first
    plateau        halve the rate when val/bleu stops rising for `patience` epochs
    constant       no schedule

A linear warm-up longer than :data:`WARMUP_SHARE` of the run (a config's warm-up on a quick try of a few
steps) is cut to that share, with a warning naming the numbers, so that any run trains.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_warn

Scheduler = Literal["inverse_sqrt", "linear", "plateau", "constant"]
WARMUP_SHARE = 0.5  # the largest part of a linear schedule's steps its warm-up may take


def lr_scheduler(
    optimizer: torch.optim.Optimizer, trainer: L.Trainer | None, scheduler: Scheduler, warmup_steps: int, patience: int
) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` entry of `optimizer` under `scheduler`; None for a constant rate. Only
    ``linear`` needs the `trainer` (the run's length)."""
    if scheduler == "constant":
        return None
    if scheduler == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=patience)
        return {"scheduler": plateau, "monitor": "val/bleu"}
    factor = linear(trainer, warmup_steps) if scheduler == "linear" else inverse_sqrt(max(1, warmup_steps))
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}


def inverse_sqrt(warmup: int) -> Callable[[int], float]:
    """The factor of the rate at each step (from 0): linear warm-up over `warmup` steps, then sqrt(warmup / step)."""

    def factor(step: int) -> float:
        step += 1
        return min(step / warmup, math.sqrt(warmup / step))

    return factor


def linear(trainer: L.Trainer | None, warmup_steps: int) -> Callable[[int], float]:
    """The factor of the rate at each step (from 0): linear warm-up (:func:`fitted_warmup`), then down to
    zero at the trainer's last step or at the end of its `max_time` (Lightning's Timer), whichever comes
    first. A smoke run (``fast_dev_run``) keeps the configured warm-up: its one step is the run's first."""
    if trainer is None:
        raise ValueError("scheduler 'linear' is fitted to the run: configure the optimizer within a Trainer")
    total = trainer.estimated_stepping_batches
    if math.isinf(total):
        raise ValueError("scheduler 'linear' needs a finite number of steps: set trainer.max_epochs or max_steps")
    warmup = max(1, warmup_steps) if trainer.fast_dev_run else fitted_warmup(warmup_steps, int(total))
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)

    def factor(step: int) -> float:
        step += 1
        decay = (total - step + 1) / max(1, total - warmup + 1)
        if timer is not None and timer.time_remaining() is not None:
            decay = min(decay, timer.time_remaining() / (timer.time_remaining() + timer.time_elapsed()))
        return min(step / warmup, max(0.0, decay))

    return factor


def fitted_warmup(warmup_steps: int, total: int) -> int:
    """The warm-up of a linear schedule over `total` steps: `warmup_steps`, but at most :data:`WARMUP_SHARE`
    of the run (at least one step), with a warning where it is cut."""
    warmup, longest = max(1, warmup_steps), max(1, int(total * WARMUP_SHARE))
    if warmup <= longest:
        return warmup
    rank_zero_warn(
        f"scheduler 'linear' warms up over {warmup} steps but the run has only {total}: warming up over "
        f"{longest} steps instead ({WARMUP_SHARE:.0%} of the run; set model.warmup_steps to choose)"
    )
    return longest
