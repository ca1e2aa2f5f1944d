import logging
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import make_pairs, write_corpus, write_jsonl
from translate.data import TokenBudgetSampler, TranslationDataModule
from translate.tokenizer import SharedTokenizer

MULTI30K = Path(os.environ.get("TRANSLATE_MULTI30K", Path(__file__).parents[1] / "../shared/data/multi30k"))


def datamodule(dataset, cache_dir, **kwargs) -> TranslationDataModule:
    kwargs = {"vocab_size": 400, "max_tokens": 256, "eval_max_tokens": 256, **kwargs}
    return TranslationDataModule(dataset=str(dataset), cache_dir=str(cache_dir), **kwargs)


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


def lengths(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 40, n), rng.integers(1, 40, n)


def test_order_deterministic_per_seed_and_epoch():
    src, tgt = lengths()

    def order(seed, epoch):
        sampler = TokenBudgetSampler(src, tgt, max_tokens=200, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)


def test_ranks_get_disjoint_equal_shares():
    src, tgt = lengths()
    shares = [list(TokenBudgetSampler(src, tgt, 200, shuffle=True, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) > 0
    rows = [{i for batch in share for i in batch} for share in shares]
    assert not rows[0] & rows[1]
    whole = list(TokenBudgetSampler(src, tgt, 200, shuffle=True, seed=3))
    assert len(shares[0]) + len(shares[1]) >= len(whole) - 1  # at most the odd batch is dropped


def test_oversized_example_gets_its_own_batch():
    batches = list(TokenBudgetSampler(np.array([3, 50, 4]), np.array([3, 5, 4]), max_tokens=20))
    assert sorted(map(sorted, batches)) == [[0, 2], [1]]


# Bad input: each gets an error that names the problem.


def test_missing_local_path(tmp_path, cache_dir):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        datamodule(tmp_path / "does-not-exist", cache_dir).tokenizer


def test_unreachable_hub_id_suggests_local_copy(cache_dir):
    with pytest.raises(FileNotFoundError, match="local copy"):
        datamodule("someone/no-such-dataset", cache_dir).tokenizer


def test_missing_language_lists_columns(corpus, cache_dir):
    with pytest.raises(KeyError, match=r"'fr'.*columns found: \['de', 'en'\]"):
        datamodule(corpus, cache_dir, tgt_lang="fr").tokenizer


def test_nested_missing_language(nested_corpus, cache_dir):
    with pytest.raises(KeyError, match="translation.fr"):
        datamodule(nested_corpus, cache_dir, src_lang="fr").tokenizer


def test_empty_split(tmp_path, cache_dir):
    root = write_corpus(tmp_path / "c")
    (root / "test.jsonl").write_text("")
    with pytest.raises(ValueError, match="split 'test'.*empty"):
        datamodule(root, cache_dir).tokenizer


def test_same_source_and_target_language(corpus, cache_dir):
    with pytest.raises(ValueError, match="both 'de'"):
        datamodule(corpus, cache_dir, tgt_lang="de")


def test_sentence_that_is_not_a_string(tmp_path, cache_dir):
    root = write_corpus(tmp_path / "c")
    rows = make_pairs(10, seed=0)
    rows[7]["en"] = None
    write_jsonl(root / "validation.jsonl", rows)
    (root / "val.jsonl").unlink()
    with pytest.raises(TypeError, match="split 'validation' row 7: the 'en' sentence is None"):
        datamodule(root, cache_dir).tokenizer


def test_column_of_numbers(tmp_path, cache_dir):
    root = tmp_path / "nums"
    write_jsonl(root / "train.jsonl", [{"de": i, "en": "x"} for i in range(5)])
    with pytest.raises(TypeError, match="column 'de' holds int64"):
        datamodule(root, cache_dir).tokenizer


def test_real_multi30k_splits(tmp_path):
    """The local copy of bentrevett/multi30k must be there (CI has it): this test never skips."""
    assert MULTI30K.is_dir(), f"Multi30k copy not found at {MULTI30K}; set TRANSLATE_MULTI30K"
    dm = TranslationDataModule(dataset=str(MULTI30K), cache_dir=str(tmp_path))
    assert {name: split.num_rows for name, split in dm.texts.items()} == {
        "train": 29000,
        "validation": 1014,
        "test": 1000,
    }
    assert dm.references("test")[0] and dm.sources("test")[0]
