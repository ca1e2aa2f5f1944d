"""The leaderboard report: complete, deterministic, consistent with sacreBLEU (bad input: test_bad_input.py)."""

import json
import logging
from pathlib import Path

import pytest
import sacrebleu
import torch
from sacrebleu.significance import PairedTest

from conftest import train_tiny
from translate import Translator
from translate.checkpoints import best_checkpoint
from translate.cli import config_names, leaderboard
from translate.evaluation import corpus_score
from translate.report import (
    Entry,
    build_long_report,
    build_report,
    finding,
    hypotheses_file,
    joined_summary,
    kept_hypotheses,
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
    translations = {hypotheses_file(name): name for name in NAMES}
    assert set(figures) == {"bleu_by_length.png"} | {h["file"] for h in report["heatmaps"]} | set(translations)
    pngs = [data for name, data in figures.items() if name not in translations]
    assert all(png.startswith(b"\x89PNG") and len(png) > 1000 for png in pngs)
    for file, name in translations.items():  # one line per test sentence: the translations that were scored
        lines = figures[file].decode().split("\n")[:-1]
        bleu = next(m["bleu"] for m in report["models"] if m["name"] == name)
        assert len(lines) == len(sources) and corpus_score(lines, references, n_bootstrap=1).bleu == bleu
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
    written = json.loads(path.read_text())
    assert {k: v for k, v in written.items() if k != "files"} == json.loads(json.dumps(report))
    assert sorted(written["files"]) == sorted(figures)  # each file with its hash
    kept = kept_hypotheses(written, {}, tmp_path / "reports")
    assert sorted(kept) == sorted(m["name"] for m in report["models"])
    first = tmp_path / "reports" / hypotheses_file(report["models"][0]["name"])
    first.write_text(first.read_text().upper())  # left by a run that failed before writing its JSON
    assert report["models"][0]["name"] not in kept_hypotheses(written, {}, tmp_path / "reports")
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
    long = json.loads((ROOT / "reports" / "long" / "leaderboard.json").read_text())
    assert joined_summary(long, "reports/long/") in (ROOT / "README.md").read_text()


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
    assert caplog.text.count("no checkpoint in") == 3
    report = json.loads((tmp_path / "reports/quick/leaderboard.json").read_text())
    assert [m["name"] for m in report["models"]] == list(NAMES) and report["smoke"] is True
    assert (tmp_path / "reports/quick/leaderboard.md").read_text().startswith("# Leaderboard\n\n**Smoke run**")
    assert all(m["train_seconds"] is not None and m["steps"] > 0 for m in report["models"])
    first = {name: best_checkpoint(tmp_path / "checkpoints/quick" / name).stat().st_mtime for name in NAMES}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        leaderboard(args)
    assert "no checkpoint in" not in caplog.text and "resuming" not in caplog.text
    assert {name: best_checkpoint(tmp_path / "checkpoints/quick" / name).stat().st_mtime for name in NAMES} == first
    cut = tmp_path / "checkpoints/quick/gru/last.ckpt"  # as a run killed before its end leaves it
    torch.save({**torch.load(cut, weights_only=True), "finished": False}, cut)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        leaderboard(args)
    assert caplog.text.count("resuming the unfinished run") == 1 and "no checkpoint in" not in caplog.text
    assert torch.load(cut, weights_only=True)["finished"]


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


# -- the long-input report --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def joined_sets(tiny_dm) -> dict[int, tuple[list[str], list[str]]]:
    """The tiny test split joined in runs of 1, 2 and 3, its sentences ending in full stops (to be split)."""
    sources, references = [f"{s.capitalize()}." for s in tiny_dm.sources("test")], tiny_dm.references("test")
    return {
        k: (
            [" ".join(sources[i : i + k]) for i in range(0, len(sources) - k + 1, k)],
            [" ".join(references[i : i + k]) for i in range(0, len(references) - k + 1, k)],
        )
        for k in (1, 2, 3)
    }


def test_long_report_scores_by_joined_k_split_and_what_each_model_remembers(
    checkpoints, joined_sets, test_data, tmp_path
):
    data = test_data[2]
    report, figures = build_long_report(checkpoints[::2], joined_sets, data, split_at=(3,), n_bootstrap=10)
    assert report["data"]["joined"] == [1, 2, 3]
    assert report["data"]["sentences"] == sum(len(s) for s, _ in joined_sets.values())
    assert {"bleu_by_length.png", "remembers.png"} <= set(figures) and not report["heatmaps"]
    translator = Translator.from_checkpoint(checkpoints[2].checkpoint)
    for model in report["models"]:
        assert [row["k"] for row in model["by_joined"]] == [1, 2, 3]
        assert [("bleu_split" in row) for row in model["by_joined"]] == [False, False, True]
        assert set(model["remembers"]) == {"short", "long"}
        assert model["remembers"]["long"]["mean_source_tokens"] > model["remembers"]["short"]["mean_source_tokens"]
    sources, references = joined_sets[3]
    split = translator.translate(sources)  # sentence by sentence (test_translator.py), as generate does
    expected = sacrebleu.corpus_bleu(split, [references]).score
    unsplit = translator.translate(sources, split_sentences=False)
    assert report["models"][1]["by_joined"][2]["bleu_split"] == pytest.approx(expected, abs=1e-6)
    assert report["models"][1]["by_joined"][2]["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(unsplit, [references]).score
    )
    markdown = render_markdown(report)
    singles = [
        " ".join(translator.translate(joined_sets[1][0][i : i + 3], split_sentences=False)) for i in range(0, 48, 3)
    ]
    assert report["models"][1]["by_joined"][2]["bleu_singles_joined"] == pytest.approx(
        sacrebleu.corpus_bleu(singles, [references]).score
    )
    assert "### Test sentences joined in runs of k" in markdown and "| k = 3, split | k = 3, singles |" in markdown
    assert "(remembers.png)" in markdown
    readme = tmp_path / "README.md"
    readme.write_text(
        "<!-- leaderboard:start -->\nkept\n<!-- leaderboard:end -->\n<!-- long:start -->\n<!-- long:end -->\n"
    )
    update_readme(readme, report, "reports/long/", block="long")
    text = readme.read_text()
    assert "kept" in text and "| k = 3, split |" in text and "(reports/long/remembers.png)" in text
    assert report["finding"] in text and "### BLEU by source-sentence length" not in text  # the short version


def test_config_names_are_file_names_unless_two_share_one():
    assert config_names([Path("configs/gru.yaml"), Path("configs/bahdanau.yaml")]) == ["gru", "bahdanau"]
    assert config_names([Path("configs/long/gru.yaml"), Path("configs/gru.yaml")]) == ["long/gru", "gru"]
    assert config_names([Path("long/gru.yaml"), Path("gru.yaml")]) == ["long/gru", "gru"]
    with pytest.raises(ValueError, match="distinct names"):
        config_names([Path("a/long/gru.yaml"), Path("b/long/gru.yaml")])


def test_leaderboard_joined_command(checkpoints, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "--configs",
        str(ROOT / "configs" / "quick" / "gru.yaml"),
        str(ROOT / "configs" / "long" / "transformer.yaml"),  # its test split is runs of 4; --joined is its own
        f"--checkpoint=gru={checkpoints[0].checkpoint}",
        f"--checkpoint=transformer={checkpoints[2].checkpoint}",
        "--joined=2",
        "--out=long",
        f"--data.dataset={tiny_corpus}",
        f"--data.cache_dir={tmp_path / 'cache'}",
        "--data.vocab_size=400",
    ]
    leaderboard(args)
    report = json.loads((tmp_path / "long/leaderboard.json").read_text())
    assert report["data"]["joined"] == [1, 2] and report["data"]["sentences"] == 50 + 25
    assert [row["k"] for row in report["models"][1]["by_joined"]] == [1, 2]
    mixed = [a for a in args if a != "--joined=2"]  # without --joined: a single-sentence and a joined test split
    with pytest.raises(ValueError, match="tests on .*runs of 4 sentences"):
        leaderboard(mixed)
    with pytest.raises(ValueError, match="--quick and --long"):
        leaderboard(["--quick", "--long"])
    with pytest.raises(ValueError, match="--joined must be at least 1"):
        leaderboard(["--joined=0"])


def test_leaderboard_only_adds_models_to_the_report_in_out(checkpoints, tiny_corpus, tmp_path, monkeypatch):
    """--only decodes the named models and keeps the others' rows (and their runs) from the report in --out."""
    monkeypatch.chdir(tmp_path)
    common = [f"--data.dataset={tiny_corpus}", f"--data.cache_dir={tmp_path / 'cache'}", "--data.vocab_size=400"]
    common += ["--joined=2", "--out=long", "--configs", *(str(ROOT / "configs/quick" / f"{n}.yaml") for n in NAMES)]
    leaderboard([*common, "--only", "gru", f"--checkpoint=gru={checkpoints[0].checkpoint}"])
    first = json.loads((tmp_path / "long/leaderboard.json").read_text())
    assert [m["name"] for m in first["models"]] == ["gru"] and "runs" not in first  # a new report
    leaderboard([*common, "--only", "transformer", "gru", f"--checkpoint=transformer={checkpoints[2].checkpoint}"])
    second = json.loads((tmp_path / "long/leaderboard.json").read_text())
    assert [m["name"] for m in second["models"]] == ["gru", "transformer"]  # the configs' order
    assert [run["models"] for run in second["runs"]] == [["gru", "transformer"]]  # gru decoded again: replaced
    del second["smoke"]  # as a report written before reports recorded it: merged as a full run's
    (tmp_path / "long/leaderboard.json").write_text(json.dumps(second))
    leaderboard([*common, "--only", "bahdanau", f"--checkpoint=bahdanau={checkpoints[1].checkpoint}"])
    third = json.loads((tmp_path / "long/leaderboard.json").read_text())
    assert [m["name"] for m in third["models"]] == list(NAMES)
    assert third["models"][0] == second["models"][0]
    untested = [{k: v for k, v in m.items() if k != "significance"} for m in (third["models"][2], second["models"][1])]
    assert untested[0] == untested[1]  # the transformer's row kept, but its paired test:
    tests = [m.get("significance", {}).get("against") for m in third["models"]]
    assert tests == [None, "gru", "bahdanau"]  # each against the model before it, from the translations kept
    for model in third["models"]:
        lines = (tmp_path / "long/hypotheses" / f"{model['name']}.txt").read_text().splitlines()
        assert len(lines) == model["sentences"] == 75
    assert [run["models"] for run in third["runs"]] == [["gru", "transformer"], ["bahdanau"]]
    assert third["finding"] == finding(third) and "bahdanau" in third["finding"]
    markdown = (tmp_path / "long/leaderboard.md").read_text()
    runs = markdown.split("Written in runs: ")[1].split("\n")[0]  # each run's command, with its models
    assert runs.count("` on 20") == 2 and runs.endswith("): bahdanau.")
    with pytest.raises(ValueError, match="report's data is .* cannot be merged"):
        leaderboard([*[a for a in common if a != "--joined=2"], "--joined=3", "--only", "gru"])
    with pytest.raises(ValueError, match=r"--only names \['attention'\]"):
        leaderboard([*common, "--only", "attention"])
    with pytest.raises(ValueError, match=r"--checkpoint names \['gru'\], which --only leaves out"):
        leaderboard([*common, "--only", "bahdanau", f"--checkpoint=gru={checkpoints[0].checkpoint}"])
    (tmp_path / "long/hypotheses/gru.txt").unlink()  # a report from before translations were kept
    leaderboard([*common, "--only", "bahdanau", f"--checkpoint=bahdanau={checkpoints[1].checkpoint}"])
    fourth = json.loads((tmp_path / "long/leaderboard.json").read_text())
    assert [m.get("significance", {}).get("against") for m in fourth["models"]] == [None, None, "bahdanau"]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/leaderboard.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken/leaderboard.json is not a leaderboard report"):
        leaderboard([*common, "--out=broken", "--only", "gru"])
    assert json.loads((tmp_path / "long/leaderboard.json").read_text()) == fourth  # refusals leave it whole
