"""Data parallelism over threads in one process: the training batch split by sentence, one shard per thread.

torch runs each operator of a training step on all cores (intra-op threads); between operators, and in
the serial ones (the random bits of dropout, small kernels, Python), the other cores wait: on a 2-core
CPU about a quarter of the time. Here each shard's forward and backward run on a thread of their own,
with their share of the intra-op threads, so that one shard's serial stretches overlap the other's
matrix products. On that CPU it gained a few percent where shards hold ~1,000 tokens or more and
nothing measurable at 1,024-token batches (benchmarks/results/train_throughput_threads*.md).

The shards' gradients are computed on their threads with `torch.autograd.grad` (nothing is written to
`.grad` concurrently), summed in shard order, and handed to the parameters by the backward of the
returned loss: Lightning's own backward, gradient accumulation, clipping and loss scaling see an ordinary
loss. Each shard draws its dropout masks from its own generator, seeded from torch's global one,
so a run is as deterministic as an unsharded one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from translate.data import Batch
from translate.models import dropout
from translate.tokenizer import PAD_ID

Loss = Callable[[Batch], tuple[Tensor, Tensor, Tensor]]  # batch -> (loss, nll, tokens), per-token means


class _Precomputed(torch.autograd.Function):
    """`loss`, whose gradients with respect to `params` are `grads` (already computed): the backward
    only scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx: FunctionCtx, loss: Tensor, grads: list[Tensor | None], *params: Tensor) -> Tensor:
        ctx.grads = grads
        return loss.detach().clone()

    @staticmethod
    def backward(ctx: FunctionCtx, grad_loss: Tensor) -> tuple:
        grads = [None if g is None else g * grad_loss.to(g.dtype) for g in ctx.grads]
        ctx.grads = None
        return None, None, *grads


@functools.cache
def _workers(count: int, intra_op_threads: int) -> ThreadPoolExecutor:
    """`count` threads (kept for the process) that run torch operators on `intra_op_threads` threads each."""
    return ThreadPoolExecutor(count, "shard", initializer=torch.set_num_threads, initargs=(intra_op_threads,))


def _shard_gradients(
    loss_fn: Loss, shard: Batch, params: Sequence[Tensor], total: int, seed: int, autocast: tuple[bool, torch.dtype]
) -> tuple[Tensor, Tensor, list[Tensor | None]]:
    """(loss, nll) summed over the shard's target tokens, and the gradients of that sum / `total`."""
    enabled, dtype = autocast
    with dropout.generator(torch.Generator().manual_seed(seed)), torch.autocast("cpu", dtype, enabled=enabled):
        loss, nll, tokens = loss_fn(shard)
    grads = torch.autograd.grad(loss * (tokens / total), params, allow_unused=True)
    return loss.detach() * tokens, nll * tokens, list(grads)


def sharded_loss(loss_fn: Loss, batch: Batch, params: Sequence[Tensor], threads: int) -> tuple[Tensor, Tensor]:
    """(loss, nll) of `batch` as `loss_fn` gives them, computed in `threads` shards side by side on the CPU.

    The returned loss carries the gradients of all shards to `params` (see the module docstring)."""
    shards = batch.split(threads)
    if len(shards) == 1:
        loss, nll, _ = loss_fn(batch)
        return loss, nll
    total = int((batch.tgt_out != PAD_ID).sum())
    seeds = torch.randint(2**62, (len(shards),)).tolist()  # from the global generator: deterministic per seed
    autocast = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
    main_threads = torch.get_num_threads()
    intra_op = max(1, main_threads // len(shards))
    args = [(loss_fn, shard, params, total, seed, autocast) for shard, seed in zip(shards, seeds, strict=True)]
    torch.set_num_threads(intra_op)
    try:
        others = [_workers(len(shards) - 1, intra_op).submit(_shard_gradients, *a) for a in args[1:]]
        results = [_shard_gradients(*args[0])] + [future.result() for future in others]
    finally:
        torch.set_num_threads(main_threads)
    loss = sum(r[0] for r in results) / total
    nll = sum(r[1] for r in results) / total
    grads = [_sum([r[2][i] for r in results]) for i in range(len(params))]
    return _Precomputed.apply(loss, grads, *params), nll


def _sum(grads: list[Tensor | None]) -> Tensor | None:
    """The gradients of one parameter from all shards, added in shard order (None where no shard used it).
    Not in place: autograd may hand two parameters one gradient tensor."""
    present = [g for g in grads if g is not None]
    return functools.reduce(torch.add, present) if present else None
