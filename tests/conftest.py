"""Shared fixtures: small synthetic parallel corpora in the Hub's jsonl layout."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub

import json
import random
from pathlib import Path

import pytest

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
