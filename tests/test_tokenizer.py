import pickle

import pytest

from conftest import make_pairs
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, SharedTokenizer


@pytest.fixture(scope="module")
def tokenizer() -> SharedTokenizer:
    pairs = make_pairs(300, seed=0)
    return SharedTokenizer.train([p[side] for p in pairs for side in ("de", "en")], vocab_size=400)


def test_special_ids_are_fixed(tokenizer):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    assert tokenizer.pieces([PAD_ID, UNK_ID, BOS_ID, EOS_ID]) == ["<pad>", "<unk>", "<s>", "</s>"]


@pytest.mark.parametrize(
    "text", ["Der Mann fährt über die Straße.", "Schöne Grüße aus Köln 😀🚲", "日本語のテキスト", "ÄÖÜ äöü ß"]
)
def test_round_trip_including_unseen_characters(tokenizer, text):
    (ids,) = tokenizer.encode([text])
    assert UNK_ID not in ids  # byte fallback covers characters never seen in training
    assert tokenizer.decode([ids]) == [text]


def test_decoded_text_is_one_line(tokenizer):
    """A model can emit the byte-fallback pieces of line breaks; the text it decodes to stays one line."""
    byte = {piece: i for i, piece in enumerate(tokenizer.pieces(range(tokenizer.vocab_size)))}
    (zwei,), (zeilen,) = tokenizer.encode(["zwei"]), tokenizer.encode(["Zeilen"])
    ids = [*zwei, byte["<0x0A>"], *zeilen, byte["<0x0D>"], byte["<0x0C>"], *zwei]
    (text,) = tokenizer.decode([ids])
    assert text.splitlines() == [text] and text.split() == ["zwei", "Zeilen", "zwei"]


def test_batch_encode_decode(tokenizer):
    texts = ["der Hund läuft", "", "das Mädchen spielt Ball"]
    ids = tokenizer.encode(texts)
    assert len(ids) == 3 and ids[1] == []
    assert tokenizer.decode(ids) == texts
    assert tokenizer.decode([[BOS_ID, *ids[0], EOS_ID, PAD_ID]]) == [texts[0]]


def test_bytes_and_pickle_round_trip(tokenizer, tmp_path):
    again = SharedTokenizer.from_bytes(tokenizer.to_bytes())
    assert again == tokenizer and again.encode(["der Ball"]) == tokenizer.encode(["der Ball"])
    assert pickle.loads(pickle.dumps(tokenizer)) == tokenizer
    tokenizer.save(tmp_path / "sp.model")
    assert SharedTokenizer.load(tmp_path / "sp.model") == tokenizer
    assert [p.name for p in tmp_path.iterdir()] == ["sp.model"]  # no temporary file left behind


def test_small_corpus_caps_vocab_with_warning(caplog):
    tok = SharedTokenizer.train(["a b c", "c b a"], vocab_size=8000)
    assert tok.vocab_size < 8000
    assert "asked for 8000" in caplog.text


def test_corrupt_model_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.model"
    bad.write_bytes(b"not a sentencepiece model")
    with pytest.raises(ValueError, match="broken.model"):
        SharedTokenizer.load(bad)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sampled_segmentations_repeat_per_seed_and_spell_the_text(model_type):
    texts = [p[side] for p in make_pairs(2000, seed=3) for side in ("de", "en")]  # enough for SentencePiece threads
    tokenizer = SharedTokenizer.train(texts, vocab_size=300, model_type=model_type)
    first, again, other = (tokenizer.sample(texts, 0.3, -1, seed) for seed in (7, 7, 8))
    assert first == again and first != other and first != tokenizer.encode(texts)
    assert tokenizer.decode(first) == texts
    with pytest.raises(ValueError, match="index 1 is not valid Unicode"):
        tokenizer.sample(["gut", "\ud800"], 0.3, -1, 7)
