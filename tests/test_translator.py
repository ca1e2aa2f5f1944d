"""Translator: checkpoint in, translations out, in input order (bad input: test_bad_input.py)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import DE, EN, tiny_model
from translate import Translation, Translator
from translate.checkpoints import average_checkpoints
from translate.cli import main
from translate.commands.average import average
from translate.models import Seq2SeqModule
from translate.search import Decoding
from translate.sentences import split_lines


def test_fresh_process_needs_only_the_checkpoint(trained, tmp_path):
    code = f"from translate import Translator as T; print(T.from_checkpoint({str(trained)!r}).translate({DE[0]!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == EN[0]


def test_shapes_and_order(translator):
    assert translator.translate(DE[9]) == EN[9]
    batch = translator.translate(DE, max_tokens=20)  # several batches, sorted by length inside
    assert batch == EN
    assert translator.translate(DE, beam_size=1) == EN


def test_every_batch_is_handed_to_the_model_at_once(translator, monkeypatch):
    model, handed = translator.model, []
    generate_batches = model.generate_batches

    def recorded(batches, decoding=None, attention=False):
        handed.append(list(batches))
        return generate_batches(handed[-1], decoding, attention)

    monkeypatch.setattr(model, "generate_batches", recorded)
    assert translator.translate([*DE, ""], max_tokens=60) == [*EN, ""]
    (batches,) = handed  # one call, with every batch
    assert len(batches) > 1 and sum(len(lengths) for _, lengths in batches) == len(DE)  # not the empty text
    budget = 60 // model.decoding.beam_size  # source tokens (eos included) a batch, unless it has one source
    for src, lengths in batches:
        assert src.shape == (len(lengths), lengths.max())
        assert len(lengths) == 1 or (lengths.max() + 1) * len(lengths) <= budget


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
        model.attach(tokenizer=tiny_dm.tokenizer)
        translator = Translator(model)
        detail = translator.translate("der Hund", return_details=True)
        assert isinstance(detail.text, str)
        assert (detail.attention is None) == (name == "gru")  # the GRU has no attention to show


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


def test_generate_stdin_to_stdout_loads_no_server_or_report_code(trained):
    """(matplotlib is loaded anyway: Lightning imports torchmetrics, which imports it where it is installed.)"""
    unused = ("fastapi", "uvicorn", "translate.serve", "translate.report", "translate.plots")
    code = (
        "import sys; from translate.cli import main; main(); "
        f"print(sorted(m for m in {unused} if m in sys.modules), file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "generate", "--checkpoint", str(trained), "--beam-size", "2"],
        input=f"{DE[8]}\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == f"{EN[8]}\n" and out.stderr.splitlines()[-1] == "[]"


def test_beam_and_length_penalty_default_to_the_models_own(translator):
    def nbest(**settings) -> list[tuple[str, float]]:
        return [(t.text, t.score) for t in translator.translate(DE[3], n_best=2, return_details=True, **settings)]

    chosen = nbest(beam_size=2, alpha=0.0)
    own = translator.model.decoding
    translator.model.decoding = Decoding(beam_size=2, alpha=0.0)
    try:
        assert nbest() == chosen
        assert nbest(beam_size=3, alpha=2.0) != chosen  # the scores are normalised by another penalty
    finally:
        translator.model.decoding = own


# -- translate average ----------------------------------------------------------------------------


def test_average_is_the_mean_of_the_weights(trained, tmp_path, monkeypatch):
    first = torch.load(trained, map_location="cpu", weights_only=True)
    shifted = {
        **first,
        "state_dict": {k: v + 1 if v.is_floating_point() else v for k, v in first["state_dict"].items()},
    }
    torch.save(shifted, tmp_path / "shifted.ckpt")
    out = tmp_path / "averaged.ckpt"
    monkeypatch.setattr(
        sys,
        "argv",
        ["translate", "average", "--checkpoints", str(trained), str(tmp_path / "shifted.ckpt"), "--output", str(out)],
    )
    main()
    averaged = torch.load(out, map_location="cpu", weights_only=True)
    for name, value in first["state_dict"].items():
        expected = value + 0.5 if value.is_floating_point() else value
        torch.testing.assert_close(averaged["state_dict"][name], expected)
    assert averaged["global_step"] == shifted["global_step"]
    same = average_checkpoints([trained, trained])
    assert same["state_dict"].keys() == first["state_dict"].keys()
    tied = [same["state_dict"][name] for name in ("src_embed.weight", "tgt_embed.weight", "output.weight")]
    assert tied[0] is tied[1] is tied[2]  # tied embeddings stay one tensor: saved once
    torch.save(same, tmp_path / "same.ckpt")
    assert Translator.from_checkpoint(tmp_path / "same.ckpt").translate(DE[:3]) == EN[:3]


def test_average_refuses_what_is_not_one_model(trained, tmp_path):
    other = torch.load(trained, map_location="cpu", weights_only=True)
    other["hyper_parameters"] = {**other["hyper_parameters"], "d_model": 2 * other["hyper_parameters"]["d_model"]}
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="hyper_parameters: not one model"):
        average_checkpoints([tmp_path / "other.ckpt", trained])
    with pytest.raises(ValueError, match="at least two checkpoints"):
        average_checkpoints([trained])
    with pytest.raises(ValueError, match="would be overwritten"):
        average(["--checkpoints", str(trained), str(trained), "--output", str(trained)])


def test_translating_loads_no_training_data_code(trained, tmp_path):
    code = (
        "import sys; from translate import Translator; "
        f"Translator.from_checkpoint({str(trained)!r}).translate('der Hund'); "
        "print(sorted(m for m in ('datasets', 'translate.data', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lightnings_loader_keeps_the_decoding_and_replaces_a_hyper_parameter(trained):
    model = Seq2SeqModule.load_from_checkpoint(trained, dropout=0.0)
    assert model.decoding == Decoding(**torch.load(trained, weights_only=True)["decoding"])
    assert model.hparams.dropout == 0.0


def test_decoding_settings_are_plain_numbers():
    decoding = Decoding(beam_size=np.int64(3), alpha=np.float32(0.5), max_len_extra=np.int32(4))
    assert [type(v) for v in vars(decoding).values()] == [int, float, int, float, int, int]


# Paragraphs in, paragraphs out.


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Das ist z. B. ein Test. Dr. Müller kam.", ["Das ist z. B. ein Test.", "Dr. Müller kam."]),
        ("Es kostet 3.5 Euro. Gut.", ["Es kostet 3.5 Euro.", "Gut."]),
        ("Er sagte: „Hallo!“ Dann ging er", ["Er sagte: „Hallo!“", "Dann ging er"]),
        ("ohne Punkt am Ende", ["ohne Punkt am Ende"]),
    ],
)
def test_sentences_split_at_boundaries_not_at_abbreviations_or_numbers(text, sentences):
    assert split_lines(text, "de") == [sentences]


def test_paragraph_is_translated_sentence_by_sentence_and_rejoined(translator):
    a, b, c = (f"{DE[i]}." for i in (5, 7, 9))  # sentences that start with a capital
    one = [translator.translate(x) for x in (a, b, c)]
    paragraph = f"{a} {b}\n\n  \n{c}"
    assert translator.translate(paragraph) == f"{one[0]} {one[1]}\n\n\n{one[2]}"  # empty lines kept as lines
    assert "\n" not in translator.translate(paragraph, split_sentences=False)  # unsplit: one output line
    detail = translator.translate(f"{a} {b}", return_details=True)
    parts = [translator.translate(x, return_details=True) for x in (a, b)]
    assert detail.target_pieces == parts[0].target_pieces + parts[1].target_pieces
    torch.testing.assert_close(detail.attention, torch.block_diag(parts[0].attention, parts[1].attention))
    nbest = translator.translate([f"{a} {b}", "", DE[3]], n_best=2)
    assert len(nbest) == 3 and all(len(n) == 2 for n in nbest) and nbest[0][0] == f"{one[0]} {one[1]}"
    assert nbest[1] == ["", ""] and nbest[2][0] == EN[3]


def test_a_ten_thousand_word_input_is_translated_whole(translator):
    sentence = f"{DE[5]}."
    repeats = 10_000 // len(sentence.split()) + 1
    output = translator.translate(" ".join([sentence] * repeats), beam_size=1)
    assert output == " ".join([translator.translate(sentence, beam_size=1)] * repeats)
