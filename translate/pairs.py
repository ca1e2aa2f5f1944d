"""Token ids of a split held as flat arrays, and the padded batches made of them.

:class:`TokenizedPairs` indexes with a list of rows (or of groups of rows, whose ids are concatenated)
and gives a :class:`~translate.batching.Batch`; :class:`SampledPairs` segments the train split afresh
each epoch (subword regularisation).
"""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset

from translate.batching import Batch
from translate.tokenizer import SharedTokenizer

SIDES = ("src", "tgt")


def ragged(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A list<int> column as (flat values, offsets): row i is values[offsets[i]:offsets[i+1]]."""
    column = column.combine_chunks()
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pc.list_flatten(column).to_numpy().astype(np.int64), offsets


class TokenizedPairs(Dataset):
    """Token ids of one split, held as flat arrays; indexing with a list of rows gives a Batch."""

    def __init__(self, split: datasets.Dataset, tokenizer: SharedTokenizer) -> None:
        table = split.with_format("arrow")[:]
        self.src, self.src_offsets = ragged(table.column("src_ids"))
        self.tgt, self.tgt_offsets = ragged(table.column("tgt_ids"))
        self.pad_id, self.bos_id, self.eos_id = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src_offsets)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt_offsets)

    def __getitem__(self, rows: list[int] | list[np.ndarray]) -> Batch:
        """The batch of `rows`; a row may be a group of pairs (an array), whose ids are concatenated
        (its `index` is then the group's first pair)."""
        groups = [np.atleast_1d(row) for row in rows]
        sources = [np.concatenate([self.src[self.src_offsets[i] : self.src_offsets[i + 1]] for i in g]) for g in groups]
        targets = [np.concatenate([self.tgt[self.tgt_offsets[i] : self.tgt_offsets[i + 1]] for i in g]) for g in groups]
        src_len = np.array([len(x) for x in sources], dtype=np.int64)  # (B,)
        tgt_len = np.array([len(y) for y in targets], dtype=np.int64)  # (B,)
        n, s, t = len(rows), max(int(src_len.max()), 1), int(tgt_len.max()) + 1
        src = np.full((n, s), self.pad_id, dtype=np.int64)  # (B, S)
        tgt_in = np.full((n, t), self.pad_id, dtype=np.int64)  # (B, T)
        tgt_out = np.full((n, t), self.pad_id, dtype=np.int64)  # (B, T)
        tgt_in[:, 0] = self.bos_id
        for i, (x, y) in enumerate(zip(sources, targets, strict=True)):
            src[i, : src_len[i]] = x
            tgt_in[i, 1 : tgt_len[i] + 1] = y
            tgt_out[i, : tgt_len[i]] = y
            tgt_out[i, tgt_len[i]] = self.eos_id
        return Batch(
            src=torch.from_numpy(src),
            src_lengths=torch.from_numpy(src_len),
            tgt_in=torch.from_numpy(tgt_in),
            tgt_out=torch.from_numpy(tgt_out),
            index=torch.as_tensor([int(g[0]) for g in groups]),
        )


class SampledPairs(TokenizedPairs):
    """The train split segmented afresh each epoch by SentencePiece sampling (subword regularisation).

    Epoch e's segmentations are drawn with a seed from (seed, e): within a process the same epoch gets the same
    ids, but a new process (a rerun, a resumed run) draws others (see :meth:`SharedTokenizer.sample`). A side
    whose sampled ids exceed `max_length` keeps its deterministic ids (those passed the length filter).
    """

    def __init__(
        self, split: datasets.Dataset, tokenizer: SharedTokenizer, alpha: float, nbest: int, seed: int, max_length: int
    ) -> None:
        super().__init__(split, tokenizer)
        self.texts = {side: split.data.column(side).to_pylist() for side in SIDES}
        self.fixed = {"src": (self.src, self.src_offsets), "tgt": (self.tgt, self.tgt_offsets)}
        self.tokenizer, self.alpha, self.nbest = tokenizer, alpha, nbest
        self.seed, self.max_length, self.epoch = seed, max_length, None

    def set_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Segment the split for `epoch` (once per epoch); returns its (source, target) lengths."""
        if epoch != self.epoch:
            self.src, self.src_offsets = self.sampled("src", epoch)
            self.tgt, self.tgt_offsets = self.sampled("tgt", epoch)
            self.epoch = epoch
        return self.src_lengths, self.tgt_lengths

    def sampled(self, side: str, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        seed = int(np.random.default_rng([self.seed, epoch, SIDES.index(side)]).integers(2**31))
        rows = self.tokenizer.sample(self.texts[side], self.alpha, self.nbest, seed)
        values, offsets = self.fixed[side]
        for i in np.flatnonzero(np.array([len(row) for row in rows]) > self.max_length):
            rows[i] = values[offsets[i] : offsets[i + 1]].tolist()
        return ragged(pa.chunked_array([rows], type=pa.list_(pa.int64())))
