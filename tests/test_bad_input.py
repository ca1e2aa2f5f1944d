"""Bad input, in one place: each case gets a clear error that names the problem, or a defined output,
and nothing is lost."""

import os
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

import translate.files
from conftest import CONFIGS, DE, EN, cli_args, datamodule, make_pairs, run_cli, tiny_model, write_corpus, write_jsonl
from translate import Translator
from translate.commands.generate import generate
from translate.commands.leaderboard import leaderboard
from translate.data import load_splits
from translate.files import atomic_write_bytes
from translate.records import checkpoint_translator, dataset_test_set, decoder, decoding_of, evaluate
from translate.report import leaderboard as leaderboard_report
from translate.report import write_report

# -- data -----------------------------------------------------------------------------------------


def test_missing_local_path(tmp_path, cache_dir):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        datamodule(tmp_path / "does-not-exist", cache_dir).tokenizer
    with pytest.raises(FileNotFoundError, match="dataset path 'pairs.jsonl' does not exist"):
        datamodule("pairs.jsonl", cache_dir).tokenizer  # a file name, not a Hub id


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


def test_tsv_sentences_are_read_verbatim(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text('de\ten\n"Hallo" sagte er.\t"Hello" he said.\nNone\tNA\nein "Hund\ta "dog\n', encoding="utf-8")
    train = load_splits(str(path), cache_dir=tmp_path / "cache")["train"]
    assert train["de"] == ['"Hallo" sagte er.', "None", 'ein "Hund']
    assert train["en"] == ['"Hello" he said.', "NA", 'a "dog']


def test_train_split_filtered_to_nothing(corpus, cache_dir):
    dm = datamodule(corpus, cache_dir, max_length=0)
    with pytest.raises(ValueError, match=r"max_length=0 .*all 300 were dropped"):
        dm.setup("fit")


# -- sentences to translate -----------------------------------------------------------------------


def test_beam_size_below_one_is_named(translator):
    with pytest.raises(ValueError, match="beam_size must be at least 1, got 0"):
        translator.translate(DE[1], beam_size=0)


def test_generate_keeps_one_output_line_per_input_line(trained, tmp_path):
    source = tmp_path / "in.de"
    source.write_text(f"{DE[1]}\u2028{DE[2]}\r\n{DE[3]}\x0c{DE[4]}\n{DE[5]}", encoding="utf-8")  # 3 lines
    generate(["--checkpoint", str(trained), "--input", str(source), "--output", str(tmp_path / "out.en")])
    assert len((tmp_path / "out.en").read_text(encoding="utf-8").split("\n")) == 3 + 1


def test_generate_refuses_to_overwrite_its_input_or_checkpoint(trained, tmp_path):
    source = tmp_path / "in.de"
    source.write_text(DE[1] + "\n", encoding="utf-8")
    kept = trained.read_bytes()
    for output, flag in ((source, "--input"), (trained, "--checkpoint")):
        with pytest.raises(ValueError, match=f"is the {flag} file"):
            generate(["--checkpoint", str(trained), "--input", str(source), "--output", str(output)])
    assert source.read_text(encoding="utf-8") == DE[1] + "\n" and trained.read_bytes() == kept


def test_generate_names_input_that_is_not_utf8(trained, tmp_path):
    source = tmp_path / "latin1.de"
    source.write_bytes("der Mann läuft\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.de is not UTF-8"):
        generate(["--checkpoint", str(trained), "--input", str(source)])


def test_leaderboard_configs_need_distinct_names(tmp_path):
    configs = [str(CONFIGS / "quick" / "transformer.yaml")] * 2
    with pytest.raises(ValueError, match="distinct names"):
        leaderboard(["--configs", *configs, "--out", str(tmp_path / "r")])


def test_leaderboard_checkpoint_without_a_path(tmp_path):
    with pytest.raises(ValueError, match=r"NAME=PATH.*\['transformer'\]"):
        leaderboard(["--checkpoint", "transformer", "--out", str(tmp_path / "r")])


def test_empty_and_whitespace_give_empty_translations(translator):
    assert translator.translate(["", "   ", DE[9]]) == ["", "", EN[9]]
    assert translator.translate("") == ""


@pytest.mark.parametrize("bad", [None, 42, b"der Hund"])
def test_non_string_names_its_index(translator, bad):
    with pytest.raises(TypeError, match="index 1"):
        translator.translate([DE[9], bad])


def test_very_long_input_is_truncated_with_warning(translator):
    message = r"1 of 2 sentences .* truncated \(the first: sentence 1, 2100 tokens\)"
    with pytest.warns(UserWarning, match=message) as seen:
        out = translator.translate([DE[9], "der Mann läuft " * 700])  # one sentence: no full stop
    assert out[0] == EN[9] and isinstance(out[1], str)
    assert seen[0].filename == __file__  # the warning points at the caller
    with pytest.warns(UserWarning, match=r"1 of 2 texts"):
        translator.translate([DE[9], "der Mann läuft " * 700], split_sentences=False)


def test_unseen_characters_translate(translator):
    out = translator.translate(["Ball Hund 🐕", "日本語の文", "😀😀😀"])
    assert all(isinstance(t, str) for t in out)


# -- checkpoints ----------------------------------------------------------------------------------


def test_missing_checkpoint_names_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        Translator.from_checkpoint(tmp_path / "nowhere.ckpt")


def test_corrupt_and_truncated_checkpoints_name_file(trained, tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(ValueError, match="garbage.ckpt"):
        Translator.from_checkpoint(garbage)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(trained.read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.ckpt"):
        Translator.from_checkpoint(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.ckpt is not a translate checkpoint"):
        Translator.from_checkpoint(foreign)


def test_unknown_model_class_is_named(capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", f"--config={CONFIGS / 'gru.yaml'}", "--model.class_path=translate.models.NoSuchModel")
    assert "NoSuchModel" in capsys.readouterr().err


def test_checkpoint_with_other_vocabulary_is_refused(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli_args("gru", tiny_corpus, tmp_path / "cache")
    run_cli("fit", *args, "--trainer.max_steps=1", "--trainer.limit_val_batches=1")
    ckpt = f"--ckpt_path={tmp_path / 'checkpoints/gru/last.ckpt'}"
    with pytest.raises(ValueError, match="another vocabulary"):
        run_cli("test", *args, "--data.vocab_size=300", ckpt)


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(tiny_dm, tmp_path):
    model = tiny_model("gru", tiny_dm.vocab_size)
    loss = model.loss

    def poisoned(batch):
        value, nll, tokens = loss(batch)
        return (value * float("nan") if model.global_step >= 2 else value), nll, tokens

    model.loss = poisoned
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True)
    trainer = L.Trainer(
        max_steps=10, logger=False, callbacks=[checkpoints], enable_progress_bar=False, limit_val_batches=0
    )
    with pytest.raises(FloatingPointError, match="loss is nan at step 2"):
        trainer.fit(model, tiny_dm)
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 2


# -- reports --------------------------------------------------------------------------------------


def test_checkpoint_of_another_language_pair_is_refused(trained):
    with pytest.raises(ValueError, match=r"transformer\.ckpt was trained on de→en but the test set is en→de"):
        checkpoint_translator(trained, ["en", "de"])


def test_unwritable_report_directory_is_named_before_any_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PermissionError, match="directory .*file/reports is not writable"):
        leaderboard(["--out", str(blocker / "reports")])
    with pytest.raises(PermissionError, match="directory .*file/records is not writable"):
        leaderboard(["--records", str(blocker / "records")])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and symlinks")
def test_rewriting_a_file_keeps_its_permissions_and_follows_a_link(tmp_path):
    private = tmp_path / "private.txt"
    private.write_text("old")
    private.chmod(0o600)
    link = tmp_path / "link.txt"
    link.symlink_to(private)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and private.read_text() == "new"
    assert private.stat().st_mode & 0o777 == 0o600
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_failed_write_leaves_the_earlier_report_intact(trained, tiny_dm, tmp_path, monkeypatch):
    out, test_set = tmp_path / "reports", dataset_test_set(tiny_dm, "test")
    translator, model = checkpoint_translator(trained, test_set.about["languages"])
    decoding = decoding_of(translator, 2, None)
    records = [evaluate(out / "records", model, test_set, decoding, decoder(translator, decoding), n_bootstrap=10)]
    report = leaderboard_report(records, out, n_bootstrap=10)
    write_report(report, records, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}  # the record too
    assert Path("records", model["name"], "test", "hypotheses.txt") in before

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(translate.files.os, "fsync", disk_full)
    changed = {**report, "finding": "something else"}
    with pytest.raises(OSError, match="No space left"):
        write_report(changed, records, out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # no temporary files left either


# -- arguments checked at the door ----------------------------------------------------------------


@pytest.mark.parametrize("beam_size", [2.5, "5", True])
def test_beam_size_that_is_not_an_integer_is_named(translator, beam_size):
    with pytest.raises(TypeError, match="beam_size must be an integer"):
        translator.translate(DE[1], beam_size=beam_size)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -0.5])
def test_alpha_that_is_not_finite_or_negative_is_named(translator, trained, tmp_path, alpha):
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        translator.translate(DE[1], alpha=alpha)
    source = tmp_path / "in.de"
    source.write_text(DE[1] + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        generate(["--checkpoint", str(trained), "--input", str(source), "--alpha", str(alpha)])
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        leaderboard(["--alpha", str(alpha), "--out", str(tmp_path / "r")])


def test_text_that_is_not_valid_unicode_names_its_index(translator):
    with pytest.raises(ValueError, match="text at index 1 is not valid Unicode"):
        translator.translate([DE[1], "der Hund \ud800"])


def test_control_characters_read_as_spaces(translator):
    words = DE[9].split()
    for separator in ("\t", "\x00", "\r", "\x1f", "\x85"):
        assert translator.translate(separator.join(words)) == EN[9]


def test_directory_given_as_checkpoint_is_named(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        Translator.from_checkpoint(tmp_path)
