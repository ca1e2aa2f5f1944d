"""Shared fixtures: small synthetic parallel corpora in the Hub's jsonl layout."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub

import json
import random
from pathlib import Path

import lightning as L
import pytest

from translate import Translator
from translate.commands.lightning import cli
from translate.data import TranslationDataModule
from translate.models import BahdanauSeq2Seq, GRUSeq2Seq, Seq2SeqModule, TransformerSeq2Seq

LEXICON = {
    "der": "the",
    "Mann": "man",
    "Hund": "dog",
    "fährt": "rides",
    "läuft": "runs",
    "über": "over",
    "Straße": "street",
    "Brücke": "bridge",
    "schnell": "fast",
    "grüne": "green",
    "Mädchen": "girl",
    "schöne": "beautiful",
    "Fluss": "river",
    "spielt": "plays",
    "Ball": "ball",
    "im": "in the",
}


def make_pairs(n: int, seed: int, max_words: int = 8) -> list[dict[str, str]]:
    """`n` word-by-word German->English pairs over a small lexicon with umlauts and ß."""
    rng = random.Random(seed)
    words = list(LEXICON)
    pairs = []
    for _ in range(n):
        de = [rng.choice(words) for _ in range(rng.randint(1, max_words))]
        pairs.append({"de": " ".join(de), "en": " ".join(LEXICON[w] for w in de)})
    return pairs


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_corpus(root: Path, nested: bool = False, sizes=(300, 40, 50), splits=("train", "val", "test")) -> Path:
    for i, (split, n) in enumerate(zip(splits, sizes, strict=True)):
        rows = make_pairs(n, seed=i)
        write_jsonl(root / f"{split}.jsonl", [{"translation": r} for r in rows] if nested else rows)
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A flat-schema corpus folder (train 300 / val 40 / test 50)."""
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def nested_corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "nested", nested=True)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# Tiny models and a tiny task they can learn in seconds.

TINY = {
    "gru": (GRUSeq2Seq, {"embed_dim": 64, "hidden": 128, "dropout": 0.0}),
    "bahdanau": (BahdanauSeq2Seq, {"embed_dim": 64, "hidden": 64, "attention_dim": 64, "dropout": 0.0}),
    "transformer": (
        TransformerSeq2Seq,
        {"d_model": 64, "heads": 4, "ff_dim": 128, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.0},
    ),
}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    """Word-by-word 'translation' over a 16-word lexicon, 1-6 words a sentence."""
    root = tmp_path_factory.mktemp("tiny")
    rows = make_pairs(400, seed=0, max_words=6)
    write_jsonl(root / "train.jsonl", rows)
    write_jsonl(root / "validation.jsonl", rows[:50])
    write_jsonl(root / "test.jsonl", rows[:50])
    return root


@pytest.fixture(scope="module")
def tiny_dm(tiny_corpus, tmp_path_factory) -> TranslationDataModule:
    cache = tmp_path_factory.mktemp("cache")
    return TranslationDataModule(dataset=str(tiny_corpus), cache_dir=str(cache), vocab_size=400, max_tokens=1024)


def tiny_model(name: str, vocab_size: int, **kwargs) -> Seq2SeqModule:
    cls, sizes = TINY[name]
    L.seed_everything(0)
    return cls(vocab_size=vocab_size, **sizes, **kwargs)


def quiet_trainer(steps: int, **kwargs) -> L.Trainer:
    """A Trainer for `steps` updates without logger, checkpoints, progress bar or validation."""
    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **kwargs,
    )


def train_tiny(name: str, dm: TranslationDataModule, steps: int = 150) -> tuple[Seq2SeqModule, L.Trainer]:
    """A tiny model trained on `dm` for `steps` updates (enough to learn the tiny task)."""
    schedule = {"scheduler": "inverse_sqrt", "warmup_steps": 50} if name == "transformer" else {}
    model = tiny_model(name, dm.vocab_size, lr=3e-3, label_smoothing=0.0, **schedule)
    trainer = quiet_trainer(steps, reload_dataloaders_every_n_epochs=int(dm.batches_vary))
    trainer.fit(model, dm)
    return model, trainer


# Small datamodules, the CLI with tiny models, and a trained tiny Transformer checkpoint.

SEEN = make_pairs(400, seed=0, max_words=6)[:12]  # training pairs of the tiny task: the model knows them
DE = [p["de"] for p in SEEN]
EN = [p["en"] for p in SEEN]


@pytest.fixture(scope="module")
def trained(tiny_dm, tmp_path_factory):
    """Path of a checkpoint of the tiny Transformer trained on the word-by-word task."""
    _, trainer = train_tiny("transformer", tiny_dm, steps=400)
    path = tmp_path_factory.mktemp("ckpt") / "transformer.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def translator(trained) -> Translator:
    return Translator.from_checkpoint(trained)


@pytest.fixture(scope="module")
def models(trained, tiny_dm) -> dict:
    """The models the serve and page tests serve: the trained tiny Transformer, and untrained tiny GRU and
    Bahdanau models on its tokenizer."""
    loaded = {}
    for name in ("gru", "bahdanau"):
        model = tiny_model(name, tiny_dm.vocab_size)
        model.tokenizer = tiny_dm.tokenizer
        loaded[name] = (Path(f"{name}.ckpt"), Translator(model, "cpu"))
    loaded["transformer"] = (trained, Translator.from_checkpoint(trained, "cpu"))
    return loaded


CONFIGS = Path(__file__).parents[1] / "configs"
TINY_CLI = {
    "gru": ["--model.init_args.embed_dim=16", "--model.init_args.hidden=32"],
    "bahdanau": ["--model.init_args.embed_dim=16", "--model.init_args.hidden=32", "--model.init_args.attention_dim=16"],
    "transformer": ["--model.init_args.d_model=32", "--model.init_args.heads=2", "--model.init_args.ff_dim=64"],
}


def run_cli(*args: str) -> None:
    cli([*args])


def cli_args(name: str, corpus: Path, cache: Path) -> list[str]:
    return [
        f"--config={CONFIGS / f'{name}.yaml'}",
        f"--data.dataset={corpus}",
        f"--data.cache_dir={cache}",
        "--data.vocab_size=400",
        "--data.max_tokens=512",
        "--model.init_args.warmup_steps=1",  # runs of a few steps (the linear schedule would cut a longer one, warning)
        *TINY_CLI[name],
    ]


def datamodule(dataset, cache_dir, **kwargs) -> TranslationDataModule:
    kwargs = {"vocab_size": 400, "max_tokens": 256, "eval_max_tokens": 256, **kwargs}
    return TranslationDataModule(dataset=str(dataset), cache_dir=str(cache_dir), **kwargs)
