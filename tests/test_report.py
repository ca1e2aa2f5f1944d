"""Reports from evaluation records: complete, consistent with sacreBLEU, re-rendered byte for byte, and
the committed reports rendered from the committed records (bad input: test_bad_input.py)."""

import json
import logging
from argparse import Namespace
from pathlib import Path

import matplotlib
import pytest
import sacrebleu
import torch
import yaml
from sacrebleu.significance import PairedTest

from conftest import train_tiny
from translate import Translator
from translate.checkpoints import best_checkpoint
from translate.commands.leaderboard import leaderboard as leaderboard_command
from translate.commands.leaderboard import readme_block
from translate.records import (
    TestSet,
    attention_of,
    checkpoint_translator,
    dataset_test_set,
    decoder,
    decoding_of,
    evaluate,
    joined_extra,
    read_record,
)
from translate.report import (
    directions_summary,
    finding,
    leaderboard,
    main_table,
    render_markdown,
    rendered,
    rerendered,
    summary,
    update_readme,
    write_report,
)

ROOT = Path(__file__).parent.parent
NAMES = ("gru", "bahdanau", "transformer")


@pytest.fixture(scope="module")
def checkpoints(tiny_dm, tmp_path_factory) -> list[Path]:
    """The three tiny models, trained on the word-by-word task (the GRU less, so the models differ)."""
    folder = tmp_path_factory.mktemp("ckpts")
    for name, steps in zip(NAMES, (60, 150, 300), strict=True):
        _, trainer = train_tiny(name, tiny_dm, steps=steps)
        trainer.save_checkpoint(folder / f"{name}.ckpt")
    return [folder / f"{name}.ckpt" for name in NAMES]


def evaluated(root, checkpoints, test_set, joined=False):
    records = []
    for checkpoint in checkpoints:
        translator, model = checkpoint_translator(checkpoint, test_set.about["languages"])
        decoding = decoding_of(translator, 3, None)
        if joined:
            extra = joined_extra(translator, test_set, decoding, split_at=(3,))
        else:

            def extra(_, translator=translator, decoding=decoding):
                return attention_of(translator, test_set, decoding, 2)

        records.append(evaluate(root, model, test_set, decoding, decoder(translator, decoding), extra, n_bootstrap=100))
    return records


@pytest.fixture(scope="module")
def records(checkpoints, tiny_dm, tmp_path_factory):
    return evaluated(tmp_path_factory.mktemp("records"), checkpoints, dataset_test_set(tiny_dm, "test"))


@pytest.fixture(scope="module")
def report(records):
    return leaderboard(records, records[0].folder.parent.parent, n_bootstrap=100)


def test_report_is_complete(report, records, tiny_dm):
    n = len(tiny_dm.sources("test"))
    names = [r.name for r in records]
    assert [m["name"] for m in report["models"]] == names and len(set(names)) == 3
    assert [name.split("-")[0] for name in names] == list(NAMES)  # architecture, run, step
    for model in report["models"]:
        for key in ("parameters", "epochs", "steps", "bleu", "bleu_ci", "chrf", "chrf_pp", "signature", "record"):
            assert model[key] is not None, key
        assert sum(row["sentences"] for row in model["by_length"]) == n
    assert sum(report["length_buckets"]["counts"]) == n
    assert [(t["baseline"], t["system"]) for t in report["paired"]] == [
        (names[0], names[1]),
        (names[0], names[2]),
        (names[1], names[2]),
    ]
    # two heatmaps each for the attention models, none for the context vector
    assert [h["model"].split("-")[0] for h in report["heatmaps"]] == ["bahdanau"] * 2 + ["transformer"] * 2
    files = rendered(report, records)
    assert set(files) == {"bleu_by_length.png", "leaderboard.md", "leaderboard.json"} | {
        h["file"] for h in report["heatmaps"]
    }
    assert all(files[h["file"]].startswith(b"\x89PNG") for h in report["heatmaps"])
    markdown = render_markdown(report)
    assert all(name in markdown for name in names) and report["finding"] in markdown
    assert all(r.data["command"] in markdown for r in records)  # the provenance is in the full report


def test_scores_and_paired_tests_agree_with_sacrebleu(report, records, checkpoints, tiny_dm):
    sources, references = tiny_dm.sources("test"), tiny_dm.references("test")
    hypotheses = [Translator.from_checkpoint(c).translate(sources, 3, split_sentences=False) for c in checkpoints]
    for model, translations in zip(report["models"], hypotheses, strict=True):
        assert model["bleu"] == pytest.approx(sacrebleu.corpus_bleu(translations, [references]).score)
    _, scores = PairedTest(
        [("a", hypotheses[0]), ("b", hypotheses[2])],
        {"BLEU": sacrebleu.BLEU()},
        references=[references],
        test_type="bs",
        n_samples=100,
    )()
    assert report["paired"][1]["p_value"] == pytest.approx(scores["BLEU"][1].p_value)


def test_report_is_rendered_again_byte_for_byte(report, records, tmp_path):
    out = tmp_path / "reports"
    for record in records:  # the report names its records relative to itself
        target = out / "records" / record.folder.relative_to(record.folder.parent.parent)
        target.mkdir(parents=True)
        for file in record.folder.iterdir():
            (target / file.name).write_bytes(file.read_bytes())
    moved = [read_record(out / "records" / r.folder.relative_to(r.folder.parent.parent)) for r in records]
    again = leaderboard(moved, out, n_bootstrap=1000)
    write_report(again, moved, out)
    assert rerendered(out) == {name: (out / name).read_bytes() for name in rendered(again, moved)}
    assert json.loads((out / "leaderboard.json").read_text())["models"][0]["record"].startswith("records/")


def test_records_of_different_test_sets_are_not_one_leaderboard(records, checkpoints, tiny_dm, tmp_path):
    test = dataset_test_set(tiny_dm, "test")
    half = TestSet("half", test.sources[:20], test.references[:20], test.about)
    other = evaluated(tmp_path, checkpoints[:1], half)
    with pytest.raises(ValueError, match="different test sets"):
        leaderboard([records[1], *other], tmp_path)
    with pytest.raises(ValueError, match="appears twice"):
        leaderboard([records[0], records[0]], tmp_path)


def test_readme_block_is_the_short_version(report, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- leaderboard:start -->\nthe old block\n<!-- leaderboard:end -->\noutro\n")
    update_readme(readme, "leaderboard", summary(report, "reports/", "reports/leaderboard.md"))
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "the old block" not in text
    assert "(reports/bleu_by_length.png)" in text and "(reports/leaderboard.md)" in text
    assert "Provenance" not in text and all(len(line) <= 300 for line in text.splitlines())


def test_finding_says_what_the_numbers_say(report):
    models = [
        {"name": name, "bleu": 30.0, "by_length": [{"bucket": "18-30", "sentences": 51, "bleu": longest}]}
        for name, longest in (("gru", 15.0), ("bahdanau", 29.5), ("transformer", 34.2))
    ]
    text = finding({**report, "models": models})
    assert "gru falls to 15.0 (50% of its 30.0)" in text
    assert "bahdanau holds at 29.5 (98% of its 30.0)" in text
    assert "transformer rises to 34.2 (114% of its 30.0)" in text


def test_one_models_report_has_no_paired_tests(records):
    one = leaderboard(records[-1:], records[-1].folder.parent.parent, n_bootstrap=100)
    assert one["paired"] == [] and "Paired bootstrap" not in render_markdown(one)
    assert "### Paired bootstrap tests, every pair" in render_markdown(
        leaderboard(records[:2], records[0].folder.parent.parent, n_bootstrap=100)
    )


def test_smoke_report_says_so(report):
    assert "Smoke run" not in render_markdown(report)
    assert render_markdown({**report, "smoke": True}).startswith("**Smoke run**")


# -- the long-input report --------------------------------------------------------------------------


def test_long_report_scores_by_joined_k_split_and_what_each_model_remembers(checkpoints, tiny_dm, tmp_path):
    sources, references = [f"{s.capitalize()}." for s in tiny_dm.sources("test")], tiny_dm.references("test")
    runs = {k: [range(i, i + k) for i in range(0, len(sources) - k + 1, k)] for k in (1, 2, 3)}  # sentences to split
    about = {"dataset": "tiny", "split": "test", "languages": ["de", "en"], "joined": [1, 2, 3]}
    test_set = TestSet(
        "test.joined1-3",
        [" ".join(sources[i] for i in run) for k in runs for run in runs[k]],
        [" ".join(references[i] for i in run) for k in runs for run in runs[k]],
        about,
        [k for k in runs for _ in runs[k]],
    )
    records = evaluated(tmp_path, checkpoints[::2], test_set, joined=True)
    report = leaderboard(records, tmp_path, n_bootstrap=10)
    assert report["test_set"]["joined"] == [1, 2, 3] and "remembers.png" in rendered(report, records)
    translator = Translator.from_checkpoint(checkpoints[2])
    for model in report["models"]:
        assert [row["k"] for row in model["by_joined"]] == [1, 2, 3]
        assert [("bleu_split" in row) for row in model["by_joined"]] == [False, False, True]
        assert model["remembers"]["long"]["mean_source_tokens"] > model["remembers"]["short"]["mean_source_tokens"]
    threes = [i for i, k in enumerate(test_set.joined) if k == 3]
    sources, references = [test_set.sources[i] for i in threes], [test_set.references[i] for i in threes]
    split = translator.translate(sources, 3)  # sentence by sentence, as generate does
    row = report["models"][1]["by_joined"][2]
    assert row["bleu_split"] == pytest.approx(sacrebleu.corpus_bleu(split, [references]).score)
    unsplit = translator.translate(sources, 3, split_sentences=False)
    assert row["bleu"] == pytest.approx(sacrebleu.corpus_bleu(unsplit, [references]).score)
    singles = records[1].hypotheses[: test_set.joined.count(1)]
    joined = [" ".join(singles[j * 3 : j * 3 + 3]) for j in range(len(threes))]
    assert row["bleu_singles"] == pytest.approx(sacrebleu.corpus_bleu(joined, [references]).score)
    markdown = render_markdown(report)
    assert "| k = 3, split | k = 3, singles |" in markdown and "(remembers.png)" in markdown
    short = summary(report, "reports/long/", "reports/long/leaderboard.md")
    assert "| k = 3, split |" in short and "(reports/long/remembers.png)" in short and report["finding"] in short


# -- the committed reports --------------------------------------------------------------------------


DIRECTIONS = sorted(p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "reports").glob("*-*/leaderboard.json"))


@pytest.mark.parametrize("folder", ["reports", "reports/long", *DIRECTIONS])
def test_committed_reports_render_from_the_committed_records(folder):
    directory = ROOT / folder
    files = rerendered(directory)
    report, committed = json.loads(files["leaderboard.json"]), json.loads((directory / "leaderboard.json").read_bytes())
    same_plots = committed["matplotlib"] == matplotlib.__version__  # another version draws other PNG bytes
    if not same_plots:  # the JSON names the version that drew the figures
        files["leaderboard.json"] = (
            json.dumps({**report, "matplotlib": committed["matplotlib"]}, indent=2, ensure_ascii=False) + "\n"
        ).encode()
    for name, data in files.items():
        if same_plots or not name.endswith(".png"):
            assert data == (directory / name).read_bytes(), name
    block = "long" if report["test_set"]["joined"] != [1] else "leaderboard"
    text = (ROOT / "README.md").read_text()
    if folder in DIRECTIONS:
        reports = {name: json.loads((ROOT / name / "leaderboard.json").read_text()) for name in DIRECTIONS}
        assert text.split("<!-- directions:start -->\n")[1].startswith(directions_summary(reports))
    else:
        assert summary(report, f"{folder}/", f"{folder}/leaderboard.md") in text.split(f"<!-- {block}:start -->\n")[1]


def test_no_two_committed_records_give_one_name_to_different_weights():
    weights = {}
    for path in (ROOT / "reports").rglob("record.json"):
        model = json.loads(path.read_text())["model"]
        assert weights.setdefault(model["name"], model["weights_sha256"]) == model["weights_sha256"], path


# -- the command ----------------------------------------------------------------------------------


def test_leaderboard_command_trains_once_then_reuses(tiny_corpus, tmp_path, monkeypatch, caplog):
    """`translate leaderboard --quick` on tiny data: trains the three quick configs, writes records and the
    report; a second run finds the checkpoints and records and neither trains nor decodes."""
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
        leaderboard_command(args)
    assert caplog.text.count("no checkpoint in") == 3 and caplog.text.count(": evaluating ") == 3
    report = json.loads((tmp_path / "reports/quick/leaderboard.json").read_text())
    assert [m["name"].split("-")[0] for m in report["models"]] == list(NAMES) and report["smoke"] is True
    assert (tmp_path / "reports/quick/leaderboard.md").read_text().startswith("# Leaderboard\n\n**Smoke run**")
    assert len(list((tmp_path / "reports/quick/records").glob("*/test/record.json"))) == 3
    first = {name: best_checkpoint(tmp_path / "checkpoints/quick" / name).stat().st_mtime for name in NAMES}
    written = {p: p.stat().st_mtime for p in (tmp_path / "reports/quick/records").rglob("*")}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        leaderboard_command(args)
    assert "no checkpoint in" not in caplog.text and "resuming" not in caplog.text
    assert {name: best_checkpoint(tmp_path / "checkpoints/quick" / name).stat().st_mtime for name in NAMES} == first
    assert {p: p.stat().st_mtime for p in (tmp_path / "reports/quick/records").rglob("*")} == written
    cut = tmp_path / "checkpoints/quick/gru/last.ckpt"  # as a run killed before its end leaves it
    torch.save({**torch.load(cut, weights_only=True), "finished": False}, cut)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        leaderboard_command(args)
    assert caplog.text.count("resuming the unfinished run") == 1 and "no checkpoint in" not in caplog.text
    assert torch.load(cut, weights_only=True)["finished"]


def test_leaderboard_rejects_unknown_checkpoint_name_and_bad_joined(tmp_path):
    with pytest.raises(ValueError, match="--checkpoint names \\['rnn'\\]"):
        leaderboard_command(["--checkpoint", "rnn=x.ckpt", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--joined must be at least 1"):
        leaderboard_command(["--joined=0"])


def test_leaderboard_refuses_configs_that_test_on_different_sets(checkpoints, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    joined = yaml.safe_load((ROOT / "configs" / "quick" / "transformer.yaml").read_text())
    joined["data"]["eval_join"] = 4  # its test split is read in runs of 4
    (tmp_path / "transformer.yaml").write_text(yaml.safe_dump(joined))
    args = [
        "--configs",
        str(ROOT / "configs" / "quick" / "gru.yaml"),
        str(tmp_path / "transformer.yaml"),
        f"--checkpoint=gru={checkpoints[0]}",
        f"--checkpoint=transformer={checkpoints[2]}",
        f"--data.dataset={tiny_corpus}",
        f"--data.cache_dir={tmp_path / 'cache'}",
        "--data.vocab_size=400",
    ]
    with pytest.raises(ValueError, match="tests on"):
        leaderboard_command(args)
    leaderboard_command([*args, "--joined=2", "--out=long"])  # --joined reads the split itself, for every config
    report = json.loads((tmp_path / "long/leaderboard.json").read_text())
    assert report["test_set"]["joined"] == [1, 2] and report["test_set"]["sentences"] == 50 + 25


def test_the_models_table_has_the_literatures_bleu_where_records_have_it(report):
    assert "tokenized BLEU" not in main_table(report)[0]
    first, *others = report["models"]
    scores = {"bleu": 41.016, "processing": "lowercase, …", "reference_tokens": 12103, "signature": "tok:none"}
    literature = {**report, "models": [{**first, "literature": scores}, *others]}
    header, _, row, *rest = main_table(literature)
    assert "| chrF | tokenized BLEU | vs previous" in header and "| 41.02 |" in row
    assert all("| — |" in line for line in rest)
    assert "official tokenized references (12,103 tokens): `tok:none`" in render_markdown(literature)


def test_the_directions_block_has_each_directions_models(report, tmp_path):
    first, *others = report["models"]
    for pair in ("en-de", "fr-en"):
        this = {**report, "test_set": {**report["test_set"], "languages": pair.split("-")}}
        if pair == "en-de":
            this["models"] = [{**first, "literature": {"bleu": 41.016}}, *others]
        (tmp_path / "reports" / pair).mkdir(parents=True)
        (tmp_path / "reports" / pair / "leaderboard.json").write_text(json.dumps(this))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- directions:start -->\n<!-- directions:end -->\n")
    args = Namespace(readme=readme, readme_block="directions", out=tmp_path / "reports/fr-en", joined=None)
    readme_block(args, report)
    rows = [line for line in readme.read_text().splitlines() if line.startswith(("| en→de |", "| fr→en |"))]
    assert len(rows) == 2 * len(report["models"])
    assert "| 41.02 | [reports/en-de](reports/en-de/leaderboard.md) |" in rows[0]
    assert rows[-1].endswith("| — | [reports/fr-en](reports/fr-en/leaderboard.md) |")
