"""Which rows make each batch: token budgets over length-sorted rows, joined groups, ranks, resuming.

:class:`TokenBudgetSampler` yields lists of rows (or of groups of rows, :func:`join_groups`) for
:class:`~translate.pairs.TokenizedPairs` to turn into batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from torch.utils.data import DistributedSampler

from translate.batching import token_budget_batches


def join_groups(n: int, join: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Pairs 0..n-1 in a random order, cut into consecutive groups of 1..`join` pairs (sizes drawn
    uniformly by `rng`): every pair in exactly one group."""
    order = rng.permutation(n)
    ends = np.cumsum(rng.integers(1, join + 1, size=n))  # n sizes always reach past n
    return np.split(order, ends[ends < n])


class TokenBudgetSampler(DistributedSampler):
    """Yields lists of rows whose padded size, batch x max(src_len, tgt_len + 1), stays within
    `max_tokens` (an example longer than that gets a batch of its own). Rows are sorted by
    (source, target) length so that a batch holds similar lengths.

    With `shuffle`, ties are broken and the batch order drawn afresh from (seed, epoch); the same on
    every rank. With `join` > 1 (training), the rows batched are each epoch's groups of 1..`join`
    pairs (:func:`join_groups`, drawn from (seed, epoch) too), and a batch is a list of groups.

    With `resample` (training with subword sampling), the epoch's lengths are `resample(epoch)`: the
    dataset segments its pairs afresh for that epoch (:meth:`translate.pairs.SampledPairs.set_epoch`).

    With several ranks, training gives each rank every `num_replicas`-th batch and drops
    the remainder, so that every rank gets the same number of disjoint batches; evaluation gives each
    rank every `num_replicas`-th sentence (by length), so every sentence is decoded exactly once and
    every rank has work. It is a DistributedSampler so that Lightning uses it as it is.
    """

    def __init__(
        self,
        src_lengths: np.ndarray,
        tgt_lengths: np.ndarray,
        max_tokens: int,
        shuffle: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        join: int = 1,
        resample: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        super().__init__(src_lengths, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        if join > 1 and not shuffle:
            raise ValueError("join groups training pairs; evaluation joins its splits by text (eval_join)")
        self.src_lengths = np.asarray(src_lengths)
        self.tgt_lengths = np.asarray(tgt_lengths)
        self.max_tokens, self.join, self.resample = max_tokens, join, resample
        self.resume: tuple[int, int] | None = None  # (epoch, batches already done in it)

    def batches(self) -> list[list[int]] | list[list[np.ndarray]]:
        """This rank's batches for the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        src_lengths, tgt_lengths, groups = self.src_lengths, self.tgt_lengths, None
        if self.resample is not None:
            src_lengths, tgt_lengths = self.resample(self.epoch)
        if self.join > 1:
            groups = join_groups(len(src_lengths), self.join, np.random.default_rng([self.seed, self.epoch, self.join]))
            starts = np.cumsum([0] + [len(g) for g in groups[:-1]])  # (groups,)
            members = np.concatenate(groups)
            src_lengths = np.add.reduceat(src_lengths[members], starts)  # (groups,)
            tgt_lengths = np.add.reduceat(tgt_lengths[members], starts)  # (groups,)
        tiebreak = rng.permutation(len(src_lengths)) if self.shuffle else np.arange(len(src_lengths))
        order = np.lexsort((tiebreak, tgt_lengths, src_lengths))
        if not self.shuffle:  # evaluation: each rank batches its own disjoint share of the sentences
            order = order[self.rank :: self.num_replicas]
        batches = token_budget_batches(order, np.maximum(src_lengths, tgt_lengths + 1), self.max_tokens)
        if groups is not None:
            batches = [[groups[i] for i in batch] for batch in batches]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
            batches = batches[: len(batches) - len(batches) % self.num_replicas]
            return batches[self.rank :: self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        """This epoch's batches; after `resume_at` the first epoch iterated starts where the saved run stopped."""
        batches = self.batches()
        skip = self.resume[1] if self.resume and self.resume[0] == self.epoch else 0
        self.resume = None
        return iter(batches[skip:])

    def __len__(self) -> int:
        return len(self.batches())  # the whole epoch, also when resuming: Lightning counts from the saved batch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue a saved run: the next iteration is `epoch` without its first `batches_done` batches
        (the next epoch from its start when that one was done). Lightning creates the resumed epoch's
        iterator before it sets the epoch, so the sampler sets it here."""
        self.set_epoch(epoch)
        if batches_done >= len(self):
            epoch, batches_done = epoch + 1, 0
            self.set_epoch(epoch)
        self.resume = (epoch, batches_done)
