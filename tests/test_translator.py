"""Translator: checkpoint in, translations out, in input order; bad input handled."""

import subprocess
import sys

import pytest
import torch

from conftest import make_pairs, tiny_model, train_tiny
from translate import Translation, Translator

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


def test_fresh_process_needs_only_the_checkpoint(trained, tmp_path):
    code = f"from translate import Translator as T; print(T.from_checkpoint({str(trained)!r}).translate({DE[0]!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == EN[0]


def test_shapes_and_order(translator):
    assert translator.translate(DE[9]) == EN[9]
    batch = translator.translate(DE, max_tokens=20)  # several batches, sorted by length inside
    assert batch == EN
    assert translator.translate(DE, beam_size=1) == EN


def test_details_scores_and_attention(translator):
    detail = translator.translate(DE[2], return_details=True)
    assert isinstance(detail, Translation) and detail.text == EN[2]
    assert detail.score < 0
    assert detail.attention.shape == (len(detail.target_pieces), len(detail.source_pieces))
    torch.testing.assert_close(detail.attention.sum(-1), torch.ones(len(detail.target_pieces)))
    nbest = translator.translate([DE[9]], n_best=3, return_details=True)[0]
    assert len(nbest) == 3 and [t.score for t in nbest] == sorted((t.score for t in nbest), reverse=True)
    assert translator.translate(DE[9], n_best=2)[0] == EN[9]


def test_untrained_models_of_every_kind_translate(tiny_dm, tmp_path):
    for name in ("gru", "bahdanau"):
        model = tiny_model(name, tiny_dm.vocab_size)
        model.tokenizer = tiny_dm.tokenizer
        translator = Translator(model)
        detail = translator.translate("der Hund", return_details=True)
        assert isinstance(detail.text, str)
        assert (detail.attention is None) == (name == "gru")  # the GRU has no attention to show


# -- bad input ------------------------------------------------------------------------------------


def test_empty_and_whitespace_give_empty_translations(translator):
    assert translator.translate(["", "   ", DE[9]]) == ["", "", EN[9]]
    assert translator.translate("") == ""


@pytest.mark.parametrize("bad", [None, 42, b"der Hund"])
def test_non_string_names_its_index(translator, bad):
    with pytest.raises(TypeError, match="index 1"):
        translator.translate([DE[9], bad])


def test_very_long_input_is_truncated_with_warning(translator):
    with pytest.warns(UserWarning, match="truncated"):
        out = translator.translate([DE[9], "der Mann läuft " * 700])
    assert out[0] == EN[9] and isinstance(out[1], str)


def test_unseen_characters_translate(translator):
    out = translator.translate(["Ball Hund 🐕", "日本語の文", "😀😀😀"])
    assert all(isinstance(t, str) for t in out)


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


# -- translate generate ---------------------------------------------------------------------------


def test_generate_file_to_file(trained, tmp_path, monkeypatch):
    src = tmp_path / "in.de"
    src.write_text(f"{DE[9]}\n\n{DE[3]}\n", encoding="utf-8")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "translate",
            "generate",
            "--checkpoint",
            str(trained),
            "--input",
            str(src),
            "--output",
            str(tmp_path / "out.en"),
        ],
    )
    from translate.cli import main

    main()
    assert (tmp_path / "out.en").read_text(encoding="utf-8") == f"{EN[9]}\n\n{EN[3]}\n"


def test_generate_stdin_to_stdout(trained):
    out = subprocess.run(
        [sys.executable, "-m", "translate.cli", "generate", "--checkpoint", str(trained), "--beam-size", "2"],
        input=f"{DE[8]}\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == f"{EN[8]}\n"
