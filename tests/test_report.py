"""The leaderboard report: complete, deterministic, consistent with sacreBLEU (bad input: test_bad_input.py)."""

import json
import logging
from pathlib import Path

import pytest
import sacrebleu
from sacrebleu.significance import PairedTest

from conftest import train_tiny
from translate import Translator
from translate.checkpoints import best_checkpoint
from translate.cli import leaderboard
from translate.report import (
    Entry,
    build_report,
    finding,
    render_markdown,
    strip_volatile,
    update_readme,
    write_report,
)

ROOT = Path(__file__).parent.parent
NAMES = ("gru", "bahdanau", "transformer")
DATA = {"split": "test", "languages": ["de", "en"]}


@pytest.fixture(scope="module")
def checkpoints(tiny_dm, tmp_path_factory) -> list[Entry]:
    """The three tiny models, trained on the word-by-word task (the GRU less, so the models differ)."""
    folder = tmp_path_factory.mktemp("ckpts")
    entries = []
    for name, steps in zip(NAMES, (60, 150, 300), strict=True):
        _, trainer = train_tiny(name, tiny_dm, steps=steps)
        trainer.save_checkpoint(folder / f"{name}.ckpt")
        entries.append(Entry(name, folder / f"{name}.ckpt"))
    return entries


@pytest.fixture(scope="module")
def test_data(tiny_dm) -> tuple[list[str], list[str], dict]:
    return tiny_dm.sources("test"), tiny_dm.references("test"), {"dataset": tiny_dm.dataset, **DATA}


@pytest.fixture(scope="module")
def built(checkpoints, test_data):
    sources, references, data = test_data
    return build_report(checkpoints, sources, references, data, heatmaps=2, n_bootstrap=100)


def test_report_is_complete(built, test_data):
    report, figures = built
    sources, references, _ = test_data
    assert [m["name"] for m in report["models"]] == list(NAMES)
    for model in report["models"]:
        for key in ("parameters", "epochs", "steps", "bleu", "bleu_ci", "chrf", "signature", "sentences_per_second"):
            assert model[key] is not None, key
        assert model["sentences"] == len(sources) == len(references)
        assert sum(row["sentences"] for row in model["by_length"]) == len(sources)
    assert "significance" not in report["models"][0]
    assert [m["significance"]["against"] for m in report["models"][1:]] == ["gru", "bahdanau"]
    assert sum(report["length_buckets"]["counts"]) == len(sources)
    # two heatmaps each for the attention models, none for the context vector
    assert sorted(h["model"] for h in report["heatmaps"]) == ["bahdanau", "bahdanau", "transformer", "transformer"]
    assert set(figures) == {"bleu_by_length.png"} | {h["file"] for h in report["heatmaps"]}
    assert all(png.startswith(b"\x89PNG") and len(png) > 1000 for png in figures.values())
    markdown = render_markdown(report)
    assert all(name in markdown for name in NAMES) and report["finding"] in markdown
    assert report["finding"].startswith("On the longest source sentences")


def test_report_is_deterministic(built, checkpoints, test_data):
    sources, references, data = test_data
    again, figures = build_report(checkpoints, sources, references, data, heatmaps=2, n_bootstrap=100)
    assert strip_volatile(again) == strip_volatile(built[0])
    assert figures == built[1]


def test_scores_agree_with_sacrebleu(built, checkpoints, test_data):
    sources, references, _ = test_data
    report, _ = built
    hypotheses = {e.name: Translator.from_checkpoint(e.checkpoint).translate(sources) for e in checkpoints}
    for model in report["models"]:
        assert model["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses[model["name"]], [references]).score)
    _, scores = PairedTest(
        [("gru", hypotheses["gru"]), ("bahdanau", hypotheses["bahdanau"])],
        {"BLEU": sacrebleu.BLEU()},
        references=[references],
        test_type="bs",
        n_samples=100,
    )()
    assert report["models"][1]["significance"]["p_value"] == pytest.approx(scores["BLEU"][1].p_value)


def test_each_model_decodes_with_its_own_length_penalty(checkpoints, test_data, monkeypatch):
    sources, references, data = test_data
    used = []
    translate = Translator.translate

    def spy(self, texts, beam_size=None, alpha=None, **kwargs):
        used.append(alpha)
        return translate(self, texts, beam_size, alpha, **kwargs)

    monkeypatch.setattr(Translator, "translate", spy)
    entries = [Entry(e.name, e.checkpoint, alpha) for e, alpha in zip(checkpoints, (0.0, 2.0, None), strict=True)]
    report, _ = build_report(entries, sources, references, data, heatmaps=0, n_bootstrap=10)
    assert [m["alpha"] for m in report["models"]] == [0.0, 2.0, 1.0]  # None: the checkpoint's own
    assert used == [0.0, 0.0, 2.0, 2.0, 1.0, 1.0]  # the test split, then the heatmap sentences
    assert "alpha 0.0 (gru), 2.0 (bahdanau), 1.0 (transformer)" in render_markdown(report)
    used.clear()
    report, _ = build_report(entries, sources, references, data, alpha=0.5, heatmaps=0, n_bootstrap=10)
    assert [m["alpha"] for m in report["models"]] == [0.5] * 3 and set(used) == {0.5}  # the command line wins


def test_written_files_and_readme_block(built, tmp_path):
    report, figures = built
    path = write_report(report, figures, tmp_path / "reports")
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    assert (tmp_path / "reports" / "leaderboard.md").read_text().endswith(render_markdown(report))
    assert all((tmp_path / "reports" / name).stat().st_size > 0 for name in figures)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- leaderboard:start -->\nthe old block\n<!-- leaderboard:end -->\noutro\n")
    update_readme(readme, report)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "the old block" not in text
    assert "(reports/bleu_by_length.png)" in text


def test_readme_shows_the_committed_leaderboard():
    """The README's leaderboard block is rendered from the committed reports/leaderboard.json, not typed."""
    committed = ROOT / "reports" / "leaderboard.json"
    if not committed.exists():
        pytest.fail("reports/leaderboard.json is not committed")
    report = json.loads(committed.read_text())
    assert render_markdown(report, "reports/") in (ROOT / "README.md").read_text()


# -- the command ----------------------------------------------------------------------------------


def test_leaderboard_command_trains_once_then_reuses(tiny_corpus, tmp_path, monkeypatch, caplog):
    """`translate leaderboard --quick` on tiny data: trains the three quick configs, writes the report;
    a second run finds the checkpoints and trains nothing."""
    monkeypatch.chdir(tmp_path)
    args = [
        "--quick",
        "--configs",
        *(str(ROOT / "configs" / "quick" / f"{name}.yaml") for name in NAMES),
        f"--data.dataset={tiny_corpus}",
        f"--data.cache_dir={tmp_path / 'cache'}",
        "--data.vocab_size=400",
        "--data.max_tokens=512",
        "--trainer.max_steps=20",
        "--trainer.enable_progress_bar=false",
    ]
    with caplog.at_level(logging.INFO):
        leaderboard(args)
    assert caplog.text.count("training it") == 3
    report = json.loads((tmp_path / "reports/quick/leaderboard.json").read_text())
    assert [m["name"] for m in report["models"]] == list(NAMES) and report["smoke"] is True
    assert (tmp_path / "reports/quick/leaderboard.md").read_text().startswith("# Leaderboard\n\n**Smoke run**")
    assert all(m["train_seconds"] is not None and m["steps"] > 0 for m in report["models"])
    first = {name: best_checkpoint(tmp_path / "checkpoints/quick" / name).stat().st_mtime for name in NAMES}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        leaderboard(args)
    assert "training it" not in caplog.text
    assert {name: best_checkpoint(tmp_path / "checkpoints/quick" / name).stat().st_mtime for name in NAMES} == first


def test_leaderboard_rejects_unknown_checkpoint_name(tmp_path):
    with pytest.raises(ValueError, match="--checkpoint names \\['rnn'\\]"):
        leaderboard(["--checkpoint", "rnn=x.ckpt", "--out", str(tmp_path)])


def test_finding_says_what_the_numbers_say(built):
    report, _ = built
    models = [
        {"name": name, "bleu": 30.0, "by_length": [{"bucket": "18-30", "sentences": 51, "bleu": longest}]}
        for name, longest in (("gru", 15.0), ("bahdanau", 29.5), ("transformer", 34.2))
    ]
    text = finding({**report, "models": models})
    assert "gru falls to 15.0 (50% of its 30.0)" in text
    assert "bahdanau holds at 29.5 (98% of its 30.0)" in text
    assert "transformer rises to 34.2 (114% of its 30.0)" in text


def test_smoke_report_says_so(built):
    report, _ = built
    assert "Smoke run" not in render_markdown(report)
    assert render_markdown({**report, "smoke": True}).startswith("**Smoke run**")
