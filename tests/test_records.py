"""Evaluation records: what they hold, when they are kept or redone, and that a changed file is refused."""

import json

import pytest
import sacrebleu
import torch

from conftest import train_tiny
from translate import Translator
from translate.checkpoints import read_checkpoint
from translate.cli import main
from translate.evaluation import literature_bleu, literature_tokenized
from translate.records import (
    TestSet,
    checkpoint_translator,
    dataset_test_set,
    decoder,
    decoding_of,
    evaluate,
    literature_references,
    read_record,
    weights_digest,
)


@pytest.fixture(scope="module")
def gru_checkpoint(tiny_dm, tmp_path_factory):
    _, trainer = train_tiny("gru", tiny_dm, steps=60)
    path = tmp_path_factory.mktemp("ckpt") / "gru.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def test_set(tiny_dm) -> TestSet:
    return dataset_test_set(tiny_dm, "test")


def record_in(root, checkpoint, test_set, alpha=None, calls=None):
    translator, model = checkpoint_translator(checkpoint, test_set.about["languages"])
    decoding = decoding_of(translator, 3, alpha)
    translate = decoder(translator, decoding)

    def counted(sources):
        if calls is not None:
            calls.append(len(sources))
        return translate(sources)

    return evaluate(root, model, test_set, decoding, counted, n_bootstrap=50), translator


def test_a_record_holds_what_a_report_needs(gru_checkpoint, test_set, tmp_path):
    record, translator = record_in(tmp_path, gru_checkpoint, test_set)
    data, checkpoint = record.data, read_checkpoint(gru_checkpoint)
    model = data["model"]
    assert model["run"] == checkpoint["run"] and model["step"] == checkpoint["global_step"] > 0
    assert model["name"] == f"gru-{checkpoint['run'][:6]}-{checkpoint['global_step']}"
    assert model["weights_sha256"] == weights_digest(checkpoint["state_dict"])
    assert model["parameters"] == sum(p.numel() for p in translator.model.parameters())
    assert record.folder == tmp_path / model["name"] / "test"
    assert data["test_set"]["sentences"] == len(test_set.sources) and len(data["test_set"]["sha256"]) == 64
    assert data["decoding"]["beam_size"] == 3 and data["decoding"]["split_sentences"] is False
    hypotheses = translator.translate(test_set.sources, 3, split_sentences=False)
    assert record.hypotheses == hypotheses  # the translations that were scored, one per line
    scores = data["scores"]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [test_set.references]).score)
    assert scores["chrf_pp"] == pytest.approx(
        sacrebleu.CHRF(word_order=2).corpus_score(hypotheses, [test_set.references]).score
    )
    assert "bs:50" in scores["signature"] and "nw:2" in scores["chrf_pp_signature"]
    assert record.source_words == [len(s.split()) for s in test_set.sources] and set(record.joined) == {1}
    assert all(len(row) == 10 for row in record.statistics)
    assert data["command"].startswith("translate") and data["machine"]["cores"] >= 1


def test_a_record_is_kept_for_the_same_weights_and_decoding_and_redone_otherwise(gru_checkpoint, test_set, tmp_path):
    calls = []
    first, _ = record_in(tmp_path, gru_checkpoint, test_set, calls=calls)
    again, _ = record_in(tmp_path, gru_checkpoint, test_set, calls=calls)
    assert len(calls) == 1 and again.data == first.data  # nothing decoded the second time
    other, _ = record_in(tmp_path, gru_checkpoint, test_set, alpha=0.5, calls=calls)
    assert len(calls) == 2 and other.data["decoding"]["alpha"] == 0.5


def test_a_changed_or_missing_record_file_is_refused(gru_checkpoint, test_set, tmp_path):
    record, _ = record_in(tmp_path, gru_checkpoint, test_set)
    hypotheses = record.folder / "hypotheses.txt"
    kept = hypotheses.read_text()
    hypotheses.write_text(kept.upper())
    with pytest.raises(ValueError, match="hypotheses.txt is not the file its record was written with"):
        read_record(record.folder)
    hypotheses.write_text(kept)
    (record.folder / "sentences.tsv").unlink()
    with pytest.raises(ValueError, match="sentences.tsv is missing"):
        read_record(record.folder)
    with pytest.raises(FileNotFoundError, match="no evaluation record"):
        read_record(tmp_path)


def test_the_same_weights_have_the_same_digest_and_other_weights_another():
    weights = {"a": torch.ones(2, 3), "b": torch.zeros(4, dtype=torch.bfloat16)}
    assert weights_digest(weights) == weights_digest({k: v.clone() for k, v in reversed(weights.items())})
    assert weights_digest(weights) != weights_digest({**weights, "a": torch.ones(3, 2)})
    assert weights_digest(weights) != weights_digest({**weights, "b": torch.zeros(4)})


def test_a_joined_test_set_records_how_many_sentences_each_input_joins(tiny_dm):
    joined = dataset_test_set(tiny_dm, "test", [1, 2, 3])
    n = len(tiny_dm.sources("test"))
    assert joined.name == "test.joined1-3" and joined.joined == [1] * n + [2] * (n // 2) + [3] * (n // 3)
    assert joined.sources[n] == " ".join(tiny_dm.sources("test")[:2])
    assert joined.identity()["sha256"] != dataset_test_set(tiny_dm, "test").identity()["sha256"]


def test_translate_evaluate_scores_a_file_and_a_dataset_split(gru_checkpoint, tiny_corpus, tiny_dm, tmp_path, capsys):
    pairs = tmp_path / "held_out.tsv"
    pairs.write_text(
        "de\ten\n"
        + "".join(
            f"{s}\t{t}\n" for s, t in zip(tiny_dm.sources("test")[:7], tiny_dm.references("test")[:7], strict=True)
        )
    )
    records = tmp_path / "records"
    main_args = ["translate", "evaluate", "--checkpoint", str(gru_checkpoint), "--records", str(records)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", [*main_args, "--test_file", str(pairs)])
        main()
        patch.setattr(
            "sys.argv",
            [
                *main_args,
                "--data.dataset",
                str(tiny_corpus),
                "--data.cache_dir",
                str(tiny_dm.cache_dir),
                "--data.eval_join",
                "2",
            ],
        )
        main()
    (held_out,) = records.glob("*/file.held_out/record.json")
    data = json.loads(held_out.read_text())
    assert data["test_set"]["file"] == str(pairs) and data["test_set"]["sentences"] == 7
    (joined,) = records.glob("*/test.joined2/record.json")
    assert json.loads(joined.read_text())["test_set"]["sentences"] == len(tiny_dm.sources("test")) // 2
    assert "BLEU" in capsys.readouterr().out
    translator = Translator.from_checkpoint(gru_checkpoint)
    expected = translator.translate(tiny_dm.sources("test")[:7], split_sentences=False)
    assert (held_out.parent / "hypotheses.txt").read_text().splitlines() == expected


def test_a_record_with_tokenized_references_gives_the_literatures_bleu(gru_checkpoint, test_set, tmp_path):
    tokenized = tmp_path / "test.lc.norm.tok.en"
    tokenized.write_text("".join(f"{line}\n" for line in literature_tokenized(test_set.references, "en")))
    literature = literature_references(test_set, tokenized)
    assert literature.identity() == {
        **test_set.identity(),
        "tokenized_sha256": literature.identity()["tokenized_sha256"],
    }
    record, _ = record_in(tmp_path / "records", gru_checkpoint, literature)
    expected = literature_bleu(record.hypotheses, literature.tokenized, "en")
    assert record.data["scores"]["literature"] == expected
    assert expected["reference_tokens"] == sum(len(line.split()) for line in literature.tokenized)
    plain, _ = record_in(tmp_path / "records", gru_checkpoint, test_set)
    assert "literature" not in plain.data["scores"] and plain.folder == record.folder  # redone without it
    tokenized.write_text("one line\n")
    with pytest.raises(ValueError, match="has 1 lines for the"):
        literature_references(test_set, tokenized)
