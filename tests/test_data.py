import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest

from conftest import datamodule, make_pairs, quiet_trainer, tiny_model, write_corpus, write_jsonl
from translate.data import TokenBudgetSampler, TranslationDataModule
from translate.tokenizer import SharedTokenizer

MULTI30K = Path(os.environ.get("TRANSLATE_MULTI30K", Path(__file__).parents[1] / "../shared/data/multi30k"))


@pytest.mark.parametrize("fixture", ["corpus", "nested_corpus"])
def test_loads_flat_and_nested_schema(fixture, request, cache_dir):
    dm = datamodule(request.getfixturevalue(fixture), cache_dir)
    dm.setup()
    assert {name: len(pairs) for name, pairs in dm.pairs.items()} == {"train": 300, "validation": 40, "test": 50}
    expected = make_pairs(50, seed=2)
    assert dm.sources("test") == [p["de"] for p in expected]
    assert dm.references("test") == [p["en"] for p in expected]
    assert dm.tokenizer.decode(dm.tokenized("test")["tgt_ids"][:3]) == [p["en"] for p in expected[:3]]


def test_split_aliases_and_single_file(tmp_path, cache_dir):
    root = write_corpus(tmp_path / "dev", splits=("train", "dev", "test"))
    assert datamodule(root, cache_dir).split_name("valid") == "validation"
    assert set(datamodule(root, cache_dir).texts) == {"train", "validation", "test"}
    assert set(datamodule(root / "train.jsonl", cache_dir).texts) == {"train"}


def test_tokenizer_cached_and_reused(corpus, cache_dir, monkeypatch):
    first = datamodule(corpus, cache_dir)
    assert first.tokenizer.vocab_size <= 400
    assert first.tokenizer_path.exists() and first.tokenizer_path.is_relative_to(cache_dir)

    def no_training(*args, **kwargs):
        raise AssertionError("the tokenizer was trained again")

    monkeypatch.setattr(SharedTokenizer, "train", no_training)
    second = datamodule(corpus, cache_dir)
    assert second.tokenizer == first.tokenizer
    other = datamodule(corpus, cache_dir, vocab_size=300)  # another key: must train
    with pytest.raises(AssertionError, match="trained again"):
        other.tokenizer


def test_tokenized_splits_are_cached_by_datasets(corpus, cache_dir):
    files = [datamodule(corpus, cache_dir).tokenized("train").cache_files for _ in range(2)]
    assert files[0] and files[0] == files[1]


def test_train_filter_drops_empty_and_long_pairs_only_in_train(tmp_path, cache_dir, caplog):
    rows = make_pairs(100, seed=0)
    long = {"de": " ".join(["Mann"] * 60), "en": " ".join(["man"] * 60)}
    odd = [{"de": "", "en": "the man"}, {"de": "der Mann", "en": "   "}, long]
    root = tmp_path / "odd"
    write_jsonl(root / "train.jsonl", rows + odd)
    write_jsonl(root / "validation.jsonl", rows[:5] + odd)
    write_jsonl(root / "test.jsonl", rows[:5] + odd)
    dm = datamodule(root, cache_dir, max_length=30)
    with caplog.at_level(logging.INFO, logger="translate.data"):
        dm.setup()
    assert dm.dropped == 3 and len(dm.pairs["train"]) == 100
    assert "dropped 3 of 103" in caplog.text
    assert len(dm.pairs["validation"]) == len(dm.pairs["test"]) == 8


def test_batches_respect_budget_padding_and_shift(corpus, cache_dir):
    dm = datamodule(corpus, cache_dir, max_tokens=96)
    dm.setup("fit")
    tok = dm.tokenizer
    batches = list(dm.train_dataloader())
    assert sum(len(b) for b in batches) == 300
    for b in batches:
        assert len(b) * max(b.src.size(1), b.tgt_out.size(1)) <= 96
        assert (b.tgt_in[:, 0] == tok.bos_id).all()
        for i in range(len(b)):
            n = int((b.tgt_out[i] != tok.pad_id).sum())
            assert b.tgt_out[i, n - 1] == tok.eos_id
            assert b.tgt_in[i, 1:n].tolist() == b.tgt_out[i, : n - 1].tolist()
            assert (b.tgt_in[i, n:] == tok.pad_id).all()
            s = int(b.src_lengths[i])
            assert (b.src[i, :s] != tok.pad_id).all() and (b.src[i, s:] == tok.pad_id).all()
            row = int(b.index[i])
            assert b.src[i, :s].tolist() == tok.encode([dm.sources("train")[row]])[0]


def test_eval_batches_cover_split_once_with_indices(corpus, cache_dir):
    dm = datamodule(corpus, cache_dir, eval_max_tokens=64)
    dm.setup("test")
    indices = np.concatenate([b.index.numpy() for b in dm.test_dataloader()])
    assert sorted(indices.tolist()) == list(range(50))


# Bad input: each gets an error that names the problem.


@pytest.mark.skipif(
    not MULTI30K.is_dir() and not os.environ.get("TRANSLATE_DATA_TESTS"),
    reason=f"no local copy of Multi30k at {MULTI30K} (set TRANSLATE_MULTI30K); .ci/run requires this test",
)
def test_real_multi30k_splits(tmp_path):
    """The local copy of bentrevett/multi30k (CI has it and sets TRANSLATE_DATA_TESTS: there it never skips)."""
    assert MULTI30K.is_dir(), f"Multi30k copy not found at {MULTI30K}; set TRANSLATE_MULTI30K"
    dm = TranslationDataModule(dataset=str(MULTI30K), cache_dir=str(tmp_path))
    assert {name: split.num_rows for name, split in dm.texts.items()} == {
        "train": 29000,
        "validation": 1014,
        "test": 1000,
    }
    assert dm.references("test")[0] and dm.sources("test")[0]


def test_joined_training_batch_concatenates_the_pairs_ids(corpus, cache_dir):
    dm = datamodule(corpus, cache_dir, join=3, max_tokens=256)
    dm.setup("fit")
    tok, pairs = dm.tokenizer, dm.pairs["train"]
    batch_rows = next(iter(dm.train_dataloader().sampler))
    batch = pairs[batch_rows]
    for i, group in enumerate(batch_rows):
        ids = tok.encode([dm.sources("train")[j] for j in group])
        expected = [t for x in ids for t in x]
        assert batch.src[i, : batch.src_lengths[i]].tolist() == expected
        target = [t for x in tok.encode([dm.references("train")[j] for j in group]) for t in x]
        assert batch.tgt_out[i, : len(target) + 1].tolist() == [*target, tok.eos_id]
    assert dm.longest_training_example() >= max(int(n) for n in batch.src_lengths)


@pytest.mark.parametrize("fixture", ["corpus", "nested_corpus"])
def test_eval_splits_join_runs_of_k_references_like_sources(fixture, request, cache_dir):
    corpus = request.getfixturevalue(fixture)
    single = datamodule(corpus, cache_dir)
    dm = datamodule(corpus, cache_dir, eval_join=3)
    for split in ("validation", "test"):
        src, ref = single.sources(split), single.references(split)
        n = len(src) // 3
        assert dm.sources(split) == [" ".join(src[3 * i : 3 * i + 3]) for i in range(n)]
        assert dm.references(split) == [" ".join(ref[3 * i : 3 * i + 3]) for i in range(n)]
    assert dm.sources("train") == single.sources("train")  # training joins groups of ids, not texts
    dm.setup("test")
    assert len(dm.pairs["test"]) == 50 // 3


def test_join_settings_are_checked(corpus, cache_dir):
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="join must be a positive integer"):
            datamodule(corpus, cache_dir, join=bad)
    with pytest.raises(ValueError, match="fewer than eval_join=60"):
        _ = datamodule(corpus, cache_dir, eval_join=60).texts
    with pytest.raises(ValueError, match="evaluation joins its splits by text"):
        TokenBudgetSampler(np.ones(5), np.ones(5), 10, join=2)


def epoch_batches(dm: TranslationDataModule, epoch: int) -> list:
    """The training batches of `epoch`, each as (rows, source ids, target ids)."""
    sampler = dm.train_dataloader().sampler
    sampler.set_epoch(epoch)
    pairs = dm.pairs["train"]
    return [(rows, pairs[rows].src.tolist(), pairs[rows].tgt_out.tolist()) for rows in sampler]


def test_subword_sampling_segments_training_pairs_afresh_each_epoch(corpus, cache_dir):
    plain = datamodule(corpus, cache_dir, max_tokens=256)
    dm = datamodule(corpus, cache_dir, max_tokens=256, sampling_alpha=0.1)
    plain.setup("fit"), dm.setup("fit")
    tok, pairs = dm.tokenizer, dm.pairs["train"]
    first, again, second = epoch_batches(dm, 0), epoch_batches(dm, 0), epoch_batches(dm, 1)
    assert first == again  # the epoch's draws are made once
    assert first != second
    assert pairs.src.tolist() != plain.pairs["train"].src.tolist()  # segmentations changed...
    for rows, src, tgt in second[:5]:  # ...but every segmentation spells the same pair
        lengths = pairs[rows].src_lengths.tolist()
        assert tok.decode([s[:n] for s, n in zip(src, lengths, strict=True)]) == [dm.sources("train")[i] for i in rows]
        assert tok.decode(tgt) == [dm.references("train")[i] for i in rows]
    assert sorted(i for rows, *_ in second for i in rows) == list(range(len(pairs)))
    dm.setup("validate")
    assert dm.pairs["validation"].src.tolist() == plain.pairs["validation"].src.tolist()  # evaluation: fixed ids


def side_ids(pairs, side: str, i: int) -> list[int]:
    values, offsets = getattr(pairs, side), getattr(pairs, f"{side}_offsets")
    return values[offsets[i] : offsets[i + 1]].tolist()


def test_sampled_side_over_max_length_keeps_its_deterministic_ids(corpus, cache_dir):
    plain = datamodule(corpus, cache_dir)
    plain.setup("fit")
    fixed = plain.pairs["train"]
    longest = int(max(fixed.src_lengths.max(), fixed.tgt_lengths.max()))
    dm = datamodule(corpus, cache_dir, sampling_alpha=0.1, max_length=longest)  # keeps every pair
    dm.setup("fit")
    pairs = dm.pairs["train"]
    pairs.set_epoch(3)
    assert len(pairs) == len(fixed) and max(pairs.src_lengths.max(), pairs.tgt_lengths.max()) <= longest
    for side in ("src", "tgt"):  # a sampled side may only reach the limit by keeping its deterministic ids
        at_limit = np.flatnonzero(getattr(fixed, f"{side}_lengths") == longest)
        kept = [side_ids(pairs, side, i) == side_ids(fixed, side, i) for i in at_limit]
        assert len(kept) == 0 or any(kept)
    assert dm.longest_training_example() == longest + 1


def test_subword_sampling_settings_are_checked(corpus, cache_dir):
    for alpha in (0, -0.1, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="sampling_alpha must be in"):
            datamodule(corpus, cache_dir, sampling_alpha=alpha)
    for nbest in (0, 1, -2, 2.5):
        with pytest.raises(ValueError, match="sampling_nbest must be -1"):
            datamodule(corpus, cache_dir, sampling_alpha=0.1, sampling_nbest=nbest)
    with pytest.raises(ValueError, match="set num_workers: 0"):
        datamodule(corpus, cache_dir, sampling_alpha=0.1, num_workers=2)


def test_resuming_with_sampling_skips_the_batches_done(corpus, cache_dir):
    """In one process, where SentencePiece's draws repeat, a resumed epoch is the rest of the same epoch."""
    dm = datamodule(corpus, cache_dir, sampling_alpha=0.1)
    dm.setup("fit")
    expected = epoch_batches(dm, 1)[3:]
    resumed = datamodule(corpus, cache_dir, sampling_alpha=0.1)
    resumed.setup("fit")
    resumed.load_state_dict({"epoch": 1, "batches_done": 3})
    pairs, sampler = resumed.pairs["train"], resumed.train_dataloader().sampler
    got = [(rows, pairs[rows].src.tolist(), pairs[rows].tgt_out.tolist()) for rows in sampler]
    assert got == expected


class EpochRecord(L.Callback):
    """Per epoch: the batches trained and whether validation ran."""

    def __init__(self) -> None:
        self.batches, self.validated = [], []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.batches.append(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated.append(trainer.current_epoch)


@pytest.mark.parametrize("varying", [{"sampling_alpha": 0.1}, {"join": 3}])
def test_every_epoch_trains_all_its_batches_and_validates(corpus, cache_dir, varying):
    dm = datamodule(corpus, cache_dir, max_tokens=64, **varying)
    model = tiny_model("transformer", datamodule(corpus, cache_dir).vocab_size)
    with pytest.raises(ValueError, match="set trainer.reload_dataloaders_every_n_epochs: 1"):
        quiet_trainer(-1, max_epochs=1).fit(model, dm)
    record = EpochRecord()
    trainer = quiet_trainer(-1, max_epochs=4, reload_dataloaders_every_n_epochs=1, callbacks=[record])
    trainer.limit_val_batches, trainer.num_sanity_val_steps = 1, 0
    trainer.fit(model, dm)
    expected = [len(epoch_batches(dm, epoch)) for epoch in range(4)]
    assert len(set(expected)) > 1  # the counts differ, so a count read once would skip or cut epochs
    assert record.batches == expected and record.validated == [0, 1, 2, 3]
