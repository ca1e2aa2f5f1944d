"""The lab: saliency, every head's cross-attention, the context vector's drift, from the three models;
and through POST /translate, with the n best translations and chrF against a reference."""

from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from conftest import DE, tiny_model
from translate.lab import explain, sentences
from translate.saliency import gradient_shares
from translate.serve import create_app
from translate.serve_schema import TranslateResponse
from translate.translator import Translator

TEXTS = [DE[1], f"{DE[2]}\n{DE[3]}", ""]  # one sentence, two (one a line), none


@pytest.fixture(scope="module")
def translators(tiny_dm, translator) -> dict[str, Translator]:
    """Untrained tiny GRU and Bahdanau models on the tiny task's tokenizer, and the trained tiny Transformer."""
    loaded = {}
    for name in ("gru", "bahdanau"):
        model = tiny_model(name, tiny_dm.vocab_size)
        model.tokenizer = tiny_dm.tokenizer
        loaded[name] = Translator(model, "cpu")
    loaded["transformer"] = translator
    return loaded


@pytest.fixture(scope="module")
def client(translators):
    with TestClient(create_app({name: (Path(f"{name}.ckpt"), t) for name, t in translators.items()})) as client:
        yield client


def each_sentence(translations, explained):
    """(sentence, its explained) of every sentence of every translation."""
    for translation, found in zip(translations, explained, strict=True):
        yield from zip(sentences(translation), found, strict=True)


@pytest.mark.parametrize("name", ["gru", "bahdanau", "transformer"])
def test_saliency_gives_each_source_piece_a_share_of_the_translations_gradient(translators, name):
    translator = translators[name]
    translations = translator.translate(TEXTS, beam_size=2, return_details=True, attention=False)
    with torch.inference_mode():  # as the Translator leaves it: the lab gets its gradients all the same
        explained = explain(translator, translations, [True, True, True], attention=False)
    assert [len(found) for found in explained] == [1, 2, 1]
    pairs = list(each_sentence(translations, explained))
    for sentence, found in pairs[:-1]:
        assert found.shares.shape == (len(sentence.source_pieces),) == (len(sentence.source_ids),)
        torch.testing.assert_close(found.shares.sum(), torch.tensor(1.0))
        assert (found.shares > 0).all() and found.heads is None and found.drift is None
    assert pairs[-1][1].shares is None  # an empty text has no source
    sentence, found = pairs[1]  # the translation is the target, whatever else is in the batch
    src, tgt = torch.tensor([sentence.source_ids]), torch.tensor([sentence.target_ids], dtype=torch.long)
    alone = gradient_shares(translator.model, src, torch.tensor([src.size(1)]), tgt)[0]
    torch.testing.assert_close(found.shares, alone, atol=1e-5, rtol=1e-4)
    unasked = explain(translator, translations, [False, True, False], attention=False)
    assert unasked[0][0].shares is None and unasked[1][1].shares is not None


def test_every_layer_and_head_attends_and_the_last_layers_mean_is_the_searchs_attention(translators):
    translator = translators["transformer"]
    layers, heads = len(translator.model.decoder), translator.model.decoder[0].cross_attention.heads
    assert translator.model.attention_maps == layers * heads == 8
    translations = translator.translate(TEXTS, return_details=True)  # beam search, attention recorded
    explained = explain(translator, translations, [False] * 3, attention=True)
    for sentence, found in list(each_sentence(translations, explained))[:-1]:
        target, source = len(sentence.target_pieces), len(sentence.source_pieces)
        assert found.heads.shape == (layers, heads, target, source)
        torch.testing.assert_close(found.heads.sum(-1), torch.ones(layers, heads, target))
        torch.testing.assert_close(found.heads[-1].mean(0), sentence.attention, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(found.heads[0], found.heads[-1])  # each layer its own
        assert found.shares is None and found.drift is None
    for name in ("gru", "bahdanau"):  # one map (Bahdanau), or none (the GRU)
        other = translators[name]
        (found,) = explain(other, other.translate([DE[1]], beam_size=1, return_details=True), [False], True)
        assert found[0].heads is None


def test_the_drift_is_each_prefixs_context_vector_against_the_whole_sources(translators):
    translator = translators["gru"]
    translations = translator.translate(TEXTS, beam_size=1, return_details=True)
    explained = explain(translator, translations, [False] * 3, attention=True)
    for sentence, found in list(each_sentence(translations, explained))[:-1]:
        ids, n = sentence.source_ids, len(sentence.source_ids)
        assert found.drift.shape == (n,) and found.heads is None
        assert found.drift[-1].item() == pytest.approx(0.0, abs=1e-6)
        assert ((found.drift >= 0) & (found.drift <= 2)).all()
        k = n // 2
        with torch.no_grad():
            prefix = translator.model.context_vector(torch.tensor([ids[: k + 1]]), torch.tensor([k + 1]))  # (1, H)
            whole = translator.model.context_vector(torch.tensor([ids]), torch.tensor([n]))  # (1, H)
        torch.testing.assert_close(whole, sentence.context, atol=1e-5, rtol=1e-4)
        assert found.drift[k].item() == pytest.approx(1 - F.cosine_similarity(prefix, whole).item(), abs=1e-5)
    assert explained[2][0].drift is None  # no source


def test_the_n_best_come_best_first_and_the_first_is_the_translation(client, translators):
    for text in (DE[0], [DE[1], f"{DE[2]}\n{DE[3]}"]):
        body = {"text": text, "model": "transformer", "beam_size": 4, "n_best": 3}
        result = client.post("/translate", json=body).json()["results"]["transformer"]
        TranslateResponse.model_validate({"results": {"transformer": result}})
        single = isinstance(text, str)
        nbests = [result["nbest"]] if single else result["nbest"]
        translations = [result["translations"]] if single else result["translations"]
        scores = [result["scores"]] if single else result["scores"]
        for nbest, translation, score in zip(nbests, translations, scores, strict=True):
            assert len(nbest) == 3 and nbest[0] == {"translation": translation, "score": score}
            assert [c["score"] for c in nbest] == sorted((c["score"] for c in nbest), reverse=True)
    own = translators["transformer"].translate(DE[0], beam_size=4, n_best=3)
    asked = client.post("/translate", json={"text": DE[0], "model": "transformer", "beam_size": 4, "n_best": 3})
    assert [c["translation"] for c in asked.json()["results"]["transformer"]["nbest"]] == own
    plain = client.post("/translate", json={"text": DE[0], "model": "transformer", "beam_size": 4}).json()
    assert "nbest" not in plain["results"]["transformer"]


def test_the_lab_answers_saliency_heads_drift_and_chrf_per_text(client):
    body = {"text": TEXTS, "beam_size": 2, "attention": True, "saliency": True}
    results = client.post("/translate", json=body).json()["results"]
    TranslateResponse.model_validate({"results": results})
    for result in results.values():
        assert [None if s is None else len(s) for s in result["saliency"]] == [1, 2, None]
        for entry in [e for text in result["saliency"][:2] for e in text]:
            assert len(entry["shares"]) == len(entry["source"]) and sum(entry["shares"]) == pytest.approx(1, abs=1e-3)
        assert "chrf" not in result
    transformer = results["transformer"]["attention"][1][1]
    heads = np.array(transformer["heads"])  # (layers, heads, target, source)
    assert heads.shape == (2, 4, len(transformer["target"]), len(transformer["source"]))
    np.testing.assert_allclose(heads[-1].mean(0), transformer["weights"], atol=1e-3)
    assert "heads" not in results["bahdanau"]["attention"][0][0]
    context = results["gru"]["context"][1][0]
    assert len(context["drift"]) == len(context["source"]) and context["drift"][-1] == 0
    assert results["bahdanau"]["context"] == results["transformer"]["context"] == [None] * 3

    translations = results["transformer"]["translations"]
    references = [translations[0], "something else entirely", ""]
    scored = client.post("/translate", json={**body, "reference": references, "model": "transformer"}).json()
    chrf = scored["results"]["transformer"]["chrf"]
    assert chrf[0] == 100.0
    assert chrf[1] == round(sacrebleu.sentence_chrf(translations[1], [references[1]]).score, 2) < 100
    one = client.post("/translate", json={"text": DE[1], "model": "gru", "saliency": True, "reference": "a dog"})
    answer = one.json()["results"]["gru"]
    assert isinstance(answer["chrf"], float) and len(answer["saliency"]) == 1 and "attention" not in answer


def test_a_text_sent_whole_is_one_input_not_its_sentences(client, translators):
    text = TEXTS[1]  # two sentences (two lines)
    for split, count in ((True, 2), (False, 1)):
        body = {"text": text, "beam_size": 2, "attention": True, "saliency": True, "split_sentences": split}
        results = client.post("/translate", json=body).json()["results"]
        for name, result in results.items():
            assert len(result["saliency"]) == count, (name, split)
            own = translators[name].translate(text, beam_size=2, split_sentences=split)
            assert result["translations"] == own
        assert len(results["gru"]["context"]) == len(results["transformer"]["attention"]) == count
