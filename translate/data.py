"""From a Hugging Face translation dataset to padded token-id batches: the LightningDataModule.

    load_splits -> (src, tgt) text pairs (corpus.py) -> joint SentencePiece (tokenizer.py)
                -> token ids (cached by `datasets`) -> TokenizedPairs (pairs.py)
                -> token-budget batches from length-sorted buckets (sampler.py) -> Batch

Long inputs are made by joining sentence pairs: in training, each epoch's shuffled pairs are cut
into groups of 1..`join` pairs whose token ids are concatenated (`sampler.join_groups`); in evaluation,
a split is read as consecutive runs of exactly `eval_join` sentences, sources and references each
joined with a space (`corpus.join_runs`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from functools import cached_property
from pathlib import Path

import datasets
import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from translate.corpus import SPLIT_ALIASES, SPLITS, join_runs, load_splits, text_pairs
from translate.pairs import SampledPairs, TokenizedPairs
from translate.sampler import TokenBudgetSampler
from translate.tokenizer import ModelType, SharedTokenizer

# what other modules and tests import from here, though corpus.py and sampler.py hold it
__all__ = ["TokenBudgetSampler", "TranslationDataModule", "join_runs", "load_splits", "text_pairs"]

log = logging.getLogger(__name__)


def within_length(batch: dict[str, list[list[int]]], max_length: int) -> list[bool]:
    """Training filter: both sides non-empty and at most `max_length` tokens."""
    return [
        0 < len(s) <= max_length and 0 < len(t) <= max_length
        for s, t in zip(batch["src_ids"], batch["tgt_ids"], strict=True)
    ]


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
