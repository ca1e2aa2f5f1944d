"""Directions besides German->English: a tiny four-language corpus (Multi30k's en/de/fr/cs layout)
trains either way, and every committed config of another direction fits on it."""

import random
from pathlib import Path

import pytest

from conftest import CONFIGS, TINY_CLI, datamodule, run_cli, train_tiny, write_jsonl
from translate import Translator
from translate.checkpoints import read_checkpoint

WORDS = {  # English: German, French, Czech
    "man": ("Mann", "homme", "muž"),
    "dog": ("Hund", "chien", "pes"),
    "rides": ("fährt", "roule", "jede"),
    "runs": ("läuft", "court", "běží"),
    "over": ("über", "sur", "přes"),
    "street": ("Straße", "rue", "ulice"),
    "bridge": ("Brücke", "pont", "most"),
    "fast": ("schnell", "vite", "rychle"),
    "green": ("grüne", "vert", "zelený"),
    "girl": ("Mädchen", "fille", "dívka"),
    "river": ("Fluss", "rivière", "řeka"),
    "plays": ("spielt", "joue", "hraje"),
}


def four_languages(n: int, seed: int) -> list[dict[str, str]]:
    """`n` word-by-word rows in English, German, French and Czech (diacritics in all but English)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        english = [rng.choice(list(WORDS)) for _ in range(rng.randint(1, 6))]
        row = {"en": " ".join(english)}
        for i, language in enumerate(("de", "fr", "cs")):
            row[language] = " ".join(WORDS[w][i] for w in english)
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("four")
    rows = four_languages(400, seed=0)
    for split, part in (("train", rows), ("val", rows[:40]), ("test", rows[:50])):
        write_jsonl(root / f"{split}.jsonl", part)
    return root


@pytest.mark.parametrize(("source", "target"), [("cs", "en"), ("en", "cs")])
def test_a_four_language_corpus_trains_each_way(four, source, target, tmp_path):
    dm = datamodule(four, tmp_path / "cache", src_lang=source, tgt_lang=target)
    model, _ = train_tiny("transformer", dm, steps=300)
    translator = Translator(model.eval(), "cpu")
    seen = four_languages(400, seed=0)[:12]
    hypotheses = translator.translate([row[source] for row in seen], split_sentences=False)
    right = sum(h == row[target] for h, row in zip(hypotheses, seen, strict=True))
    assert right >= 9, list(zip(hypotheses, [row[target] for row in seen], strict=True))
    assert model.languages == (source, target)


OTHER_DIRECTIONS = sorted(CONFIGS.glob("*-*/*.yaml"))


def test_the_other_directions_have_configs():
    assert {f"{p.parent.name}/{p.stem}" for p in OTHER_DIRECTIONS} >= {
        "en-de/gru",
        "en-de/bahdanau",
        "en-de/transformer",
        "fr-en/transformer",
        "cs-en/transformer",
    }


@pytest.mark.parametrize("config", OTHER_DIRECTIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_direction_config_fits_in_its_languages(config, four, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [f"--config={config}", f"--data.dataset={four}", f"--data.cache_dir={tmp_path / 'cache'}"]
    tiny = ["--data.vocab_size=400", "--data.max_tokens=512", "--model.init_args.warmup_steps=1"]
    run_cli("fit", *args, *tiny, *TINY_CLI[config.stem], "--trainer.max_steps=2", "--trainer.limit_val_batches=0")
    last = tmp_path / "checkpoints" / config.parent.name / config.stem / "last.ckpt"
    assert read_checkpoint(last)["languages"] == config.parent.name.split("-")
