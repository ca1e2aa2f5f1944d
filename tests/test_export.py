"""translate export: the tiny Transformer in CTranslate2 decodes as ours does, through the same API."""

import json
import subprocess
import sys
import threading

import pytest
import torch
from fastapi.testclient import TestClient
from torch.nn.utils.rnn import pad_sequence

from conftest import DE, make_pairs, tiny_model
from translate.commands.export import export as export_command
from translate.export import ExportedTransformer, export, is_exported
from translate.records import weights_digest
from translate.search import Decoder, Decoding, TranslationModel, max_output_lengths
from translate.serve import create_app
from translate.tokenizer import BOS_ID, EOS_ID
from translate.translator import Translator

SOURCES = DE + [p["de"] for p in make_pairs(200, seed=7, max_words=8)]  # seen pairs and unseen ones


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> dict:
    """The tiny Transformer exported in each quantization (alpha 0: both searches rank by log-probability)."""
    root = tmp_path_factory.mktemp("ct2")
    return {q: export(trained, root / q, q, alpha=0.0) for q in ("float32", "int8")}


def search_both(trained, directory, beam_size: int) -> tuple[list, list]:
    """The best hypothesis of every source by our search and by CTranslate2's, on the same ids."""
    ours, theirs = Translator.from_checkpoint(trained, "cpu").model, ExportedTransformer(directory)
    ids = theirs.tokenizer.encode(SOURCES)
    src = pad_sequence([torch.tensor(x) for x in ids], batch_first=True)  # (B, S)
    lengths = torch.tensor([len(x) for x in ids])
    decoding = Decoding(beam_size=beam_size, alpha=0.0)
    return [h[0] for h in ours.generate(src, lengths, decoding)], [
        h[0] for h in theirs.generate(src, lengths, decoding)
    ]


def test_the_exported_model_offers_the_one_interface(trained, exported):
    ours, theirs = Translator.from_checkpoint(trained, "cpu").model, ExportedTransformer(exported["int8"])
    assert isinstance(theirs, TranslationModel) and not isinstance(theirs, Decoder)  # CTranslate2 searches
    assert theirs.architecture == f"{ours.architecture} (CTranslate2 int8)"
    assert theirs.num_parameters == ours.num_parameters and theirs.test_bleu is None
    assert (theirs.has_attention, theirs.has_context_vector) == (ours.has_attention, ours.has_context_vector)
    assert theirs.for_inference(torch.device("cpu")) is theirs
    assert ours.has_gradients and ours.attention_maps == 8  # 2 layers x 4 heads
    assert not theirs.has_gradients and theirs.attention_maps == 0  # its search gives the mean over heads, no more
    src, lengths = torch.tensor([[5, 6, 7]]), torch.tensor([3])
    assert theirs.cross_attention(src, lengths, torch.tensor([[BOS_ID, 8]])) is None
    assert theirs.source_limit(ours.decoding) == ours.source_limit(ours.decoding)


def test_float32_greedy_is_our_greedy_token_for_token(trained, exported):
    ours, theirs = search_both(trained, exported["float32"], beam_size=1)
    assert [h.tokens for h in theirs] == [h.tokens for h in ours]
    close = [abs(a.score - b.score) < 1e-3 for a, b in zip(ours, theirs, strict=True)]
    assert sum(close) >= 0.95 * len(SOURCES)  # not where a long output is cut at its limit: their score goes on


def rescored(model, source: list[int], tokens: list[int]) -> float:
    """The log-probability of `tokens` and eos after `source` under our model, teacher-forced."""
    tgt_in = torch.tensor([[BOS_ID, *tokens]])  # (1, T)
    with torch.no_grad():
        log_probs = model(torch.tensor([source]), torch.tensor([len(source)]), tgt_in).log_softmax(-1)[0]  # (T, V)
    return log_probs[torch.arange(len(tokens) + 1), torch.tensor([*tokens, EOS_ID])].sum().item()


def test_float32_beam_outputs_score_as_our_model_scores_them_and_int8_stays_close(trained, exported):
    """CTranslate2's float32 beam search (alpha 0: ranked by log-probability) runs our model: each of its outputs
    (those its length limit did not cut) has, under our model, the log-probability it reports. The outputs
    themselves may differ from ours: our search stops a sentence once k hypotheses have finished, CTranslate2's
    goes on longer, so where they differ, its output is at least as likely under our model (within float32
    noise). Quantized to int8, its outputs stay those of float32 on most sentences."""
    ours, theirs = search_both(trained, exported["float32"], beam_size=5)
    model = Translator.from_checkpoint(trained, "cpu").model
    ids = model.tokenizer.encode(SOURCES)
    limits = max_output_lengths(torch.tensor([len(x) for x in ids]), Decoding(), model.max_length).tolist()
    whole = [(x, a, b) for x, a, b, limit in zip(ids, ours, theirs, limits, strict=True) if len(b.tokens) < limit - 1]
    assert len(whole) > 0.5 * len(SOURCES)
    off = [(b.score, rescored(model, source, b.tokens)) for source, _, b in whole]
    assert all(abs(reported - true) < 1e-2 for reported, true in off), off  # float32 noise is ~1e-3
    # where the outputs differ, it is the search: CTranslate2's goes on and finds an output at least as likely
    differ = [(rescored(model, x, a.tokens), rescored(model, x, b.tokens)) for x, a, b in whole if a.tokens != b.tokens]
    assert all(theirs_ >= ours_ - 1e-2 for ours_, theirs_ in differ), differ
    _, quantized = search_both(trained, exported["int8"], beam_size=5)
    close = sum(a.tokens == b.tokens for a, b in zip(theirs, quantized, strict=True))
    assert close >= 0.85 * len(SOURCES)


def test_the_translator_api_works_alike(trained, exported):
    translator = Translator.from_checkpoint(exported["float32"])
    ours = Translator.from_checkpoint(trained)
    assert translator.translate(DE[0], beam_size=1) == ours.translate(DE[0], beam_size=1)
    outputs = translator.translate([DE[1], "", "  ", DE[2]])
    assert len(outputs) == 4 and outputs[1] == outputs[2] == "" and all(outputs[i] for i in (0, 3))
    best = translator.translate(DE[3], n_best=3, return_details=True)
    assert len(best) == 3 and best[0].score >= best[1].score >= best[2].score
    detail = best[0]
    assert detail.attention.shape == (len(detail.target_pieces), len(detail.source_pieces))  # eos row included
    assert torch.allclose(detail.attention.sum(-1), torch.ones(len(detail.target_pieces)), atol=1e-3)
    paragraph = translator.translate(f"{DE[4]}. {DE[5]}.")  # sentence by sentence, rejoined
    assert paragraph == " ".join(translator.translate([f"{DE[4]}.", f"{DE[5]}."]))
    with pytest.warns(UserWarning, match="truncated"):
        translator.translate(" ".join(DE * 40), split_sentences=False)


class Recorder:
    """CTranslate2's translator, with each batch handed over and each result awaited recorded in `events`; with
    `wait`, each batch is decoded before translate_batch returns, as the Translator had it before it handed
    over every batch at once."""

    def __init__(self, translator, wait: bool) -> None:
        self.translator, self.wait, self.events = translator, wait, []

    def translate_batch(self, sources, asynchronous: bool, **options):
        self.events.append("batch")
        if self.wait:
            return [Awaited(lambda r=r: r, self.events) for r in self.translator.translate_batch(sources, **options)]
        pending = self.translator.translate_batch(sources, asynchronous=asynchronous, **options)
        return [Awaited(p.result, self.events) for p in pending]


class Awaited:
    """A result of CTranslate2, its awaiting recorded."""

    def __init__(self, get, events: list[str]) -> None:
        self.get, self.events = get, events

    def result(self):
        self.events.append("result")
        return self.get()


@pytest.mark.parametrize("quantization", ["int8", "float32"])
def test_the_translator_hands_every_batch_over_at_once_with_the_same_translations(exported, quantization):
    outputs, events = {}, {}
    for wait in (True, False):
        translator = Translator.from_checkpoint(exported[quantization], "cpu")
        translator.model.translator = recorder = Recorder(translator.model.translator, wait)
        outputs[wait] = translator.translate(SOURCES, max_tokens=100, n_best=2, return_details=True)
        events[wait] = recorder.events
    batches = events[False].count("batch")
    assert batches > 10 and events[False] == ["batch"] * batches + ["result"] * len(SOURCES)
    for before, now in zip(outputs[True], outputs[False], strict=True):
        for a, b in zip(before, now, strict=True):
            assert (a.text, a.score, a.target_pieces) == (b.text, b.score, b.target_pieces)
            assert torch.equal(a.attention, b.attention)


def test_generate_and_serve_take_the_exported_directory(exported):
    result = subprocess.run(
        [sys.executable, "-m", "translate.cli", "generate", "--checkpoint", str(exported["int8"])],
        input=f"{DE[0]}\n\n{DE[1]}\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(result.stdout.split("\n")) == 4 and result.stdout.split("\n")[1] == ""
    app = create_app({"ct2": (exported["int8"], Translator.from_checkpoint(exported["int8"], "cpu"))})
    with TestClient(app) as client:
        (described,) = client.get("/models").json()["models"]
        assert described["architecture"] == "TransformerSeq2Seq (CTranslate2 int8)"
        assert described["shows"] == "attention" and described["parameters"] > 0
        body = {"text": [DE[0], DE[1]], "model": "ct2", "attention": True, "saliency": True, "n_best": 2}
        answer = client.post("/translate", json=body).json()["results"]["ct2"]
        assert len(answer["translations"]) == 2 and answer["attention"][0] and "heads" not in answer["attention"][0][0]
        assert answer["saliency"] is None and [len(nbest) for nbest in answer["nbest"]] == [2, 2]


def test_export_command_records_the_reported_bleu_and_refuses_to_overwrite(trained, tmp_path, capsys):
    records = tmp_path / "records"
    weights = weights_digest(torch.load(trained, weights_only=True)["state_dict"])
    for name, digest, bleu in (("other", "0" * 64, 12.0), ("this", weights, 97.126)):  # the record of these weights
        (records / name / "test").mkdir(parents=True)
        record = {"model": {"weights_sha256": digest}, "scores": {"bleu": bleu}}
        (records / name / "test" / "record.json").write_text(json.dumps(record))
    out = tmp_path / "model"
    export_command(["--checkpoint", str(trained), "--output", str(out), "--records", str(records), "--alpha", "0.8"])
    metadata = json.loads((out / "translate.json").read_text())
    assert (
        metadata["test_bleu"] == 97.13
        and metadata["decoding"]["alpha"] == 0.8
        and "test BLEU 97.13" in capsys.readouterr().out
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.bin",
        "sentencepiece.model",
        "shared_vocabulary.json",
        "translate.json",
    ]
    with pytest.raises(FileExistsError, match="--force"):
        export(trained, out, "int8")
    export(trained, out, "int16", force=True)
    assert json.loads((out / "translate.json").read_text())["quantization"] == "int16"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_what_cannot_be_exported_or_loaded_is_refused(tiny_dm, tmp_path, trained):
    gru = tiny_model("gru", tiny_dm.vocab_size)
    gru.attach(tokenizer=tiny_dm.tokenizer)
    checkpoint = tmp_path / "gru.ckpt"
    torch.save(
        {
            "model_class": "translate.models.gru.GRUSeq2Seq",
            "hyper_parameters": dict(gru.hparams),
            "state_dict": gru.state_dict(),
            "tokenizer": gru.tokenizer.to_bytes(),
            "decoding": {},
        },
        checkpoint,
    )
    with pytest.raises(ValueError, match="GRUSeq2Seq: CTranslate2 runs Transformers only"):
        export(checkpoint, tmp_path / "out", "int8")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="quantization must be one of"):
        export(trained, tmp_path / "out", "int4")
    with pytest.raises(IsADirectoryError, match="no model of `translate export`"):
        Translator.from_checkpoint(tmp_path)
    with pytest.raises(SystemExit):
        export_command(["--checkpoint", str(trained), "--output", str(tmp_path / "x"), "--quantization", "int4"])


def test_force_replaces_only_an_export_and_never_leaves_it_missing(trained, tmp_path, monkeypatch):
    kept = tmp_path / "notes"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "last.ckpt").write_bytes(trained.read_bytes())
    for folder in (kept, checkpoints):
        with pytest.raises(FileExistsError, match="not a model of `translate export`"):
            export_command(["--checkpoint", str(trained), "--output", str(folder), "--force"])
    assert (kept / "notes.txt").read_text() == "mine" and (checkpoints / "last.ckpt").is_file()
    out = export(trained, tmp_path / "model", "int8")
    (out / "last.ckpt").write_bytes(b"a checkpoint put into an export")
    with pytest.raises(FileExistsError, match=r"holds \['last.ckpt'\]"):
        export(trained, out, "int8", force=True)
    (out / "last.ckpt").unlink()
    monkeypatch.chdir(out)
    for here in (out, tmp_path):  # the working directory, and a folder above it
        with pytest.raises(ValueError, match="is the working directory or above it"):
            export(trained, here, "int8", force=True)
    monkeypatch.chdir(tmp_path)
    seen, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(is_exported(out))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for quantization in ("int16", "float32", "int8"):
            export(trained, out, quantization, force=True)
    finally:
        stop.set()
        watcher.join()
    assert seen and all(seen)  # the export was there at every look, old or new
    assert json.loads((out / "translate.json").read_text())["quantization"] == "int8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "model", "notes"]  # no staging left
