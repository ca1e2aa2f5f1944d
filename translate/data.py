"""From a Hugging Face translation dataset to padded token-id batches.

    load_dataset -> (src, tgt) text pairs -> joint SentencePiece -> token ids (cached by `datasets`)
                 -> token-budget batches from length-sorted buckets -> Batch

Long inputs are made by joining sentence pairs: in training, each epoch's shuffled pairs are cut
into groups of 1..`join` pairs whose token ids are concatenated (`join_groups`); in evaluation, a
split is read as consecutive runs of exactly `eval_join` sentences, sources and references each
joined with a space (`join_runs`).

The flat schema (`{"de": ..., "en": ...}`, as bentrevett/multi30k) and the nested one
(`{"translation": {"de": ..., "en": ...}}`, as wmt16 or opus_books) are both read.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path

import datasets
import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from translate.batching import Batch, token_budget_batches
from translate.tokenizer import ModelType, SharedTokenizer

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SIDES = ("src", "tgt")
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation"}
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


def load_splits(dataset: str, config: str | None = None, cache_dir: Path | None = None) -> datasets.DatasetDict:
    """`datasets.load_dataset` on a Hub id, a local folder or a local file, splits renamed to
    train/validation/test (val, valid and dev are accepted for validation)."""
    try:
        splits = _load(dataset, config, cache_dir)
    except ValueError as e:
        empty = re.search(r'Instruction "(.+)" corresponds to no data', str(e))
        if empty is None:
            raise
        raise ValueError(f"split {empty[1]!r} of dataset {dataset!r} is empty") from e
    return datasets.DatasetDict({SPLIT_ALIASES.get(name, name): split for name, split in splits.items()})


def _load(dataset: str, config: str | None, cache_dir: Path | None) -> datasets.DatasetDict:
    path = Path(dataset).expanduser()
    kwargs = {"cache_dir": str(cache_dir) if cache_dir else None}
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix)
        if builder is None:
            raise ValueError(f"dataset file {path} has suffix {path.suffix!r}; expected one of {sorted(FILE_BUILDERS)}")
        extra = {"keep_default_na": False} if builder == "csv" else {}  # "None", "NA" are sentences, not nulls
        if path.suffix == ".tsv":
            extra |= {"delimiter": "\t", "quoting": csv.QUOTE_NONE}  # quotes are text: every tab is a column
        splits = datasets.load_dataset(builder, data_files=str(path), **kwargs, **extra)
    elif path.is_dir():
        splits = datasets.load_dataset(str(path), config, **kwargs)
    elif dataset.startswith((".", "/", "~")) or dataset.count("/") > 1 or path.suffix in FILE_BUILDERS:
        raise FileNotFoundError(f"dataset path {dataset!r} does not exist")
    else:
        try:
            splits = datasets.load_dataset(dataset, config, **kwargs)
        except (datasets.exceptions.DatasetNotFoundError, OSError) as e:
            raise FileNotFoundError(
                f"could not load dataset {dataset!r} from the Hugging Face Hub ({type(e).__name__}: {e}). "
                f"Without Hub access, point at a local copy of the same files instead, "
                "with --data.dataset PATH (a folder of train/validation/test files, or one file)"
            ) from e
    return splits


def text_pairs(split: datasets.Dataset, src_lang: str, tgt_lang: str, name: str) -> datasets.Dataset:
    """The split reduced to string columns `src` and `tgt`, from either schema; rejects
    missing languages and sentences that are not strings, naming the row."""
    if "translation" in split.column_names:
        split = split.flatten()
        columns = {f"translation.{src_lang}": "src", f"translation.{tgt_lang}": "tgt"}
    else:
        columns = {src_lang: "src", tgt_lang: "tgt"}
    for column in columns:
        if column not in split.column_names:
            raise KeyError(
                f"split {name!r} has no column {column!r} for the language pair "
                f"{src_lang}->{tgt_lang}; columns found: {split.column_names}"
            )
    split = split.select_columns(list(columns)).rename_columns(columns)
    for column, side in columns.items():
        values = split.data.column(side)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            raise TypeError(f"split {name!r}: column {column!r} holds {values.type}, expected strings")
        if values.null_count:
            row = pc.index(pc.is_null(values), True).as_py()
            raise TypeError(f"split {name!r} row {row}: the {column!r} sentence is None, expected a string")
    return split


def within_length(batch: dict[str, list[list[int]]], max_length: int) -> list[bool]:
    """Training filter: both sides non-empty and at most `max_length` tokens."""
    return [
        0 < len(s) <= max_length and 0 < len(t) <= max_length
        for s, t in zip(batch["src_ids"], batch["tgt_ids"], strict=True)
    ]


def join_runs(split: datasets.Dataset, k: int, name: str) -> datasets.Dataset:
    """Consecutive runs of exactly `k` pairs joined into one (sources with a space, references the
    same way); the last, shorter run is dropped."""
    if k == 1:
        return split
    if split.num_rows < k:
        raise ValueError(f"split {name!r} has {split.num_rows} sentences, fewer than eval_join={k}")

    def join(batch: dict[str, list[str]]) -> dict[str, list[str]]:
        return {side: [" ".join(batch[side])] for side in ("src", "tgt")}

    return split.map(join, batched=True, batch_size=k, drop_last_batch=True, desc=f"joining {name} by {k}")


def join_groups(n: int, join: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Pairs 0..n-1 in a random order, cut into consecutive groups of 1..`join` pairs (sizes drawn
    uniformly by `rng`): every pair in exactly one group."""
    order = rng.permutation(n)
    ends = np.cumsum(rng.integers(1, join + 1, size=n))  # n sizes always reach past n
    return np.split(order, ends[ends < n])


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


class TokenBudgetSampler(DistributedSampler):
    """Yields lists of rows whose padded size, batch x max(src_len, tgt_len + 1), stays within
    `max_tokens` (an example longer than that gets a batch of its own). Rows are sorted by
    (source, target) length so that a batch holds similar lengths.

    With `shuffle`, ties are broken and the batch order drawn afresh from (seed, epoch); the same on
    every rank. With `join` > 1 (training), the rows batched are each epoch's groups of 1..`join`
    pairs (:func:`join_groups`, drawn from (seed, epoch) too), and a batch is a list of groups.

    With `resample` (training with subword sampling), the epoch's lengths are `resample(epoch)`: the
    dataset segments its pairs afresh for that epoch (:meth:`SampledPairs.set_epoch`).

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


def check_sampling(alpha: float | None, nbest: int, num_workers: int) -> None:
    """Refuse subword-sampling settings SentencePiece would misread, naming the one at fault."""
    if alpha is None:
        return
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 1:
        raise ValueError(f"sampling_alpha must be in (0, 1] (or null for no sampling), got {alpha!r}")
    if isinstance(nbest, bool) or not isinstance(nbest, int) or not (nbest == -1 or nbest >= 2):
        raise ValueError(f"sampling_nbest must be -1 (all segmentations) or at least 2, got {nbest!r}")
    if num_workers:
        raise ValueError(
            f"subword sampling segments the train split afresh each epoch in the main process; "
            f"set num_workers: 0 (got {num_workers})"
        )


class TranslationDataModule(L.LightningDataModule):
    """One datamodule for all three models: loads, tokenizes and batches a translation dataset.

    Args:
        dataset: Hub id (e.g. ``bentrevett/multi30k``), local dataset folder, or a .jsonl/.csv/.tsv/.parquet file.
        dataset_config: Hub configuration name, e.g. ``de-en`` for wmt16.
        src_lang / tgt_lang: column names (flat schema) or keys of the ``translation`` column.
        vocab_size / tokenizer_type: the joint SentencePiece model, trained on the train split.
        max_length: training pairs with more tokens than this on either side are dropped (before joining).
        join: training examples are groups of 1..`join` shuffled pairs, drawn afresh each epoch from
            (seed, epoch); 1 trains on single pairs.
        eval_join: validation, test and predict read their split as consecutive runs of exactly this
            many sentences, joined with a space (sources and references alike).
        sampling_alpha / sampling_nbest: subword regularisation of the training pairs: each epoch, each
            sentence is segmented afresh by SentencePiece sampling (unigram: among the `sampling_nbest`
            best segmentations, all for -1, smoothed by `sampling_alpha`; BPE: BPE-dropout with
            probability `sampling_alpha`), seeded from (seed, epoch) but not repeatable across processes
            (SentencePiece's generator). None keeps the one deterministic segmentation; evaluation always
            uses it. Needs ``num_workers: 0``. With this or `join` > 1 the number of batches differs per
            epoch, so the trainer must set ``reload_dataloaders_every_n_epochs: 1``.
        max_tokens: padded tokens per training batch; ``eval_max_tokens`` for validation/test/predict.
        predict_split: the split ``translate predict`` translates.
        cache_dir: where tokenizers and the ``datasets`` cache (tokenized splits) live.
    """

    def __init__(
        self,
        dataset: str = "bentrevett/multi30k",
        dataset_config: str | None = None,
        src_lang: str = "de",
        tgt_lang: str = "en",
        vocab_size: int = 8000,
        tokenizer_type: ModelType = "unigram",
        max_length: int = 128,
        join: int = 1,
        eval_join: int = 1,
        sampling_alpha: float | None = None,
        sampling_nbest: int = -1,
        max_tokens: int = 4096,
        eval_max_tokens: int = 8192,
        num_workers: int = 0,
        seed: int = 42,
        predict_split: str = "test",
        cache_dir: str = "data",
    ) -> None:
        super().__init__()
        if src_lang == tgt_lang:
            raise ValueError(f"src_lang and tgt_lang are both {src_lang!r}; a translation needs two languages")
        self.dataset, self.dataset_config = dataset, dataset_config
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.vocab_size_requested, self.tokenizer_type = vocab_size, tokenizer_type
        for name, value in (("join", join), ("eval_join", eval_join)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer (sentences per example), got {value!r}")
        check_sampling(sampling_alpha, sampling_nbest, num_workers)
        self.sampling_alpha, self.sampling_nbest = sampling_alpha, sampling_nbest
        self.max_length, self.max_tokens, self.eval_max_tokens = max_length, max_tokens, eval_max_tokens
        self.join, self.eval_join = join, eval_join
        self.num_workers, self.seed, self.predict_split = num_workers, seed, predict_split
        self.cache_dir = Path(cache_dir)
        self.pairs: dict[str, TokenizedPairs] = {}
        self.dropped = 0
        self.resume: dict[str, int] | None = None

    @cached_property
    def texts(self) -> datasets.DatasetDict:
        """Each split as string columns `src` and `tgt`; the evaluation splits joined by `eval_join`."""
        raw = load_splits(self.dataset, self.dataset_config, self.cache_dir / "datasets")
        for name, split in raw.items():
            if split.num_rows == 0:
                raise ValueError(f"split {name!r} of dataset {self.dataset!r} is empty")
        if "train" not in raw:
            raise KeyError(f"dataset {self.dataset!r} has no train split; splits found: {list(raw)}")
        pairs = {name: text_pairs(split, self.src_lang, self.tgt_lang, name) for name, split in raw.items()}
        joined = {name: join_runs(split, self.eval_join, name) for name, split in pairs.items() if name != "train"}
        return datasets.DatasetDict({**pairs, **joined})

    @property
    def tokenizer_path(self) -> Path:
        """Cache file of the tokenizer, keyed by dataset, config, languages, vocab size and type."""
        source = str(Path(self.dataset).resolve()) if Path(self.dataset).exists() else self.dataset
        languages = f"{self.src_lang}-{self.tgt_lang}"
        key = f"{source}|{self.dataset_config}|{languages}|{self.vocab_size_requested}|{self.tokenizer_type}"
        name = re.sub(r"[^A-Za-z0-9]+", "_", Path(self.dataset).name).strip("_")
        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
        stem = f"{name}.{languages}.{self.tokenizer_type}{self.vocab_size_requested}.{digest}"
        return self.cache_dir / "tokenizers" / f"{stem}.model"

    @cached_property
    def tokenizer(self) -> SharedTokenizer:
        """The joint tokenizer: loaded from the cache, or trained on both sides of the train split."""
        path = self.tokenizer_path
        if path.exists():
            return SharedTokenizer.load(path)
        train = self.texts["train"]
        return SharedTokenizer.load_or_train(
            path,
            (text for side in ("src", "tgt") for text in train[side] if text.strip()),
            vocab_size=self.vocab_size_requested,
            model_type=self.tokenizer_type,
        )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    def tokenized(self, split: str) -> datasets.Dataset:
        """Token ids of a split (columns `src_ids`, `tgt_ids`), cached by `datasets.map`."""
        tokenizer = self.tokenizer

        def encode(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
            return {"src_ids": tokenizer.encode(batch["src"]), "tgt_ids": tokenizer.encode(batch["tgt"])}

        return self.texts[split].map(encode, batched=True, remove_columns=["src", "tgt"], desc=f"tokenizing {split}")

    def split_name(self, split: str) -> str:
        name = SPLIT_ALIASES.get(split, split)
        if name not in self.texts:
            raise KeyError(f"dataset {self.dataset!r} has no {split!r} split; splits found: {list(self.texts)}")
        return name

    def prepare_data(self) -> None:
        for split in self.texts:
            self.tokenized(split)

    def setup(self, stage: str | None = None) -> None:
        needed = {
            "fit": ("train", "validation"),
            "validate": ("validation",),
            "test": ("test",),
            "predict": (self.predict_split,),
        }
        for split in needed.get(stage, [s for s in SPLITS if s in self.texts]):
            if split in self.pairs:
                continue
            if split == "train":
                self.pairs[split] = self.train_pairs()
            else:
                self.pairs[split] = TokenizedPairs(self.tokenized(self.split_name(split)), self.tokenizer)

    def train_pairs(self) -> TokenizedPairs:
        """The train split without pairs that are empty or over `max_length` tokens on a side; with
        subword sampling, its texts too, to be segmented afresh each epoch."""
        data = self.tokenized("train")
        if self.sampling_alpha is not None:
            data = datasets.concatenate_datasets([self.texts["train"], data], axis=1)
        n = data.num_rows
        data = data.filter(
            within_length, batched=True, fn_kwargs={"max_length": self.max_length}, desc="filtering train"
        )
        self.dropped = n - data.num_rows
        if data.num_rows == 0:
            raise ValueError(
                f"no training pair of dataset {self.dataset!r} has at most max_length={self.max_length} "
                f"tokens on both sides (all {n} were dropped): raise data.max_length"
            )
        log.info("train: dropped %d of %d pairs (empty, or over %d tokens on a side)", self.dropped, n, self.max_length)
        if self.sampling_alpha is None:
            return TokenizedPairs(data, self.tokenizer)
        return SampledPairs(data, self.tokenizer, self.sampling_alpha, self.sampling_nbest, self.seed, self.max_length)

    def longest_training_example(self) -> int:
        """An upper bound on the tokens of a training example's source and target (+ eos): the sum of
        the `join` longest pairs' lengths."""
        pairs = self.pairs["train"]
        if isinstance(pairs, SampledPairs):  # sampled segmentations are longer, but never over max_length
            return self.join * self.max_length + 1
        src, tgt = np.sort(pairs.src_lengths)[-self.join :], np.sort(pairs.tgt_lengths)[-self.join :]
        return int(max(src.sum(), tgt.sum() + 1))

    def sources(self, split: str) -> list[str]:
        return self.texts[self.split_name(split)]["src"]

    def references(self, split: str) -> list[str]:
        return self.texts[self.split_name(split)]["tgt"]

    def sampler(self, split: str, shuffle: bool) -> TokenBudgetSampler:
        pairs = self.pairs[split]
        trainer = self.trainer
        return TokenBudgetSampler(
            pairs.src_lengths,
            pairs.tgt_lengths,
            max_tokens=self.max_tokens if shuffle else self.eval_max_tokens,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            join=self.join if shuffle else 1,
            resample=pairs.set_epoch if isinstance(pairs, SampledPairs) else None,
        )

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            self.pairs[split],
            sampler=self.sampler(split, shuffle),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    @property
    def batches_vary(self) -> bool:
        """Whether the number of training batches changes from epoch to epoch (joined groups, sampled segmentations)."""
        return self.join > 1 or self.sampling_alpha is not None

    def train_dataloader(self) -> DataLoader:
        """The training batches of the trainer's current epoch (or of the saved run's next batch)."""
        trainer = self.trainer
        if trainer is not None and self.batches_vary and trainer.reload_dataloaders_every_n_epochs != 1:
            raise ValueError(
                "with data.join > 1 or data.sampling_alpha the number of training batches differs from epoch to "
                "epoch, and Lightning reads it once (it would skip or cut epochs): set "
                "trainer.reload_dataloaders_every_n_epochs: 1"
            )
        loader = self.loader("train", shuffle=True)
        if self.resume:
            loader.sampler.resume_at(self.resume["epoch"], self.resume["batches_done"])
            self.resume = None
        elif trainer is not None:  # Lightning takes the epoch's length before it sets the sampler's epoch
            loader.sampler.set_epoch(trainer.current_epoch)
        return loader

    def state_dict(self) -> dict[str, int]:
        """Where training is within its epoch; Lightning keeps it in checkpoints, so a run resumed from a
        mid-epoch checkpoint goes on with the batch it would have had next."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": trainer.current_epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.resume = dict(state) if state else None

    def val_dataloader(self) -> DataLoader:
        return self.loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self.predict_split)
