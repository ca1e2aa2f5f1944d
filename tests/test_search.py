"""Greedy and beam search over the decoding interface, checked on tiny random models."""

import itertools

import lightning as L
import pytest
import torch

from translate.models import BahdanauSeq2Seq, GRUSeq2Seq, TransformerSeq2Seq
from translate.search import Decoding, beam_search, greedy_search, length_penalty
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID

SIZES = {
    GRUSeq2Seq: {"embed_dim": 16, "hidden": 32},
    BahdanauSeq2Seq: {"embed_dim": 16, "hidden": 32, "attention_dim": 16},
    TransformerSeq2Seq: {"d_model": 32, "heads": 2, "ff_dim": 64, "encoder_layers": 1, "decoder_layers": 2},
}


def model(cls, vocab_size: int = 40, seed: int = 0):
    L.seed_everything(seed)
    m = cls(vocab_size=vocab_size, dropout=0.0, **SIZES[cls]).eval()
    with torch.no_grad():  # sharpen the output distribution so decoding has real choices to make
        m.output.weight.mul_(8.0)
    return m


def sources(vocab_size: int = 40, lengths=(6, 3, 9, 1)):
    g = torch.Generator().manual_seed(1)
    src = torch.full((len(lengths), max(lengths)), PAD_ID)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, vocab_size, (n,), generator=g)
    return src, torch.tensor(lengths)


@pytest.mark.parametrize("cls", list(SIZES))
def test_beam_one_equals_greedy(cls):
    m = model(cls)
    src, lengths = sources()
    with torch.inference_mode():
        greedy = greedy_search(m, src, lengths)
        beam = beam_search(m, src, lengths, Decoding(beam_size=1))
    assert [h.tokens for h in greedy] == [hyps[0].tokens for hyps in beam]
    assert all(EOS_ID not in h.tokens and BOS_ID not in h.tokens and PAD_ID not in h.tokens for h in greedy)


@pytest.mark.parametrize("cls", list(SIZES))
def test_wide_beam_finds_exhaustive_best(cls):
    """Vocabulary of 4 real tokens, outputs of at most 3 tokens + eos: 85 candidates in all."""
    m = model(cls, vocab_size=8, seed=3)
    src, lengths = torch.tensor([[5, 6, 7]]), torch.tensor([3])
    limits = {"alpha": 0.0, "max_len_ratio": 0.0, "max_len_extra": 4}

    def log_prob(tokens: list[int]) -> float:
        state, total = m.encode(src, lengths), 0.0
        for prev, nxt in zip([BOS_ID, *tokens], [*tokens, EOS_ID], strict=True):
            log_probs, state = m.decode_step(torch.tensor([[prev]]), state)
            total += log_probs[0, nxt].item()
        return total

    with torch.inference_mode():
        candidates = [list(c) for n in range(4) for c in itertools.product(range(4, 8), repeat=n)]
        best = max(candidates, key=log_prob)
        (found,) = beam_search(m, src, lengths, Decoding(beam_size=100, **limits))
        narrow = beam_search(m, src, lengths, Decoding(beam_size=2, n_best=2, **limits))
    assert found[0].tokens == best
    assert found[0].score == pytest.approx(log_prob(best), abs=1e-4)
    assert narrow[0][0].score <= found[0].score + 1e-6


@pytest.mark.parametrize("cls", list(SIZES))
@pytest.mark.parametrize("beam_size", [1, 5])
def test_alone_equals_in_batch(cls, beam_size):
    m = model(cls)
    src, lengths = sources()
    with torch.inference_mode():
        batched = beam_search(m, src, lengths, Decoding(beam_size=beam_size))
        for i in range(len(lengths)):
            alone = beam_search(m, src[i : i + 1, : lengths[i]], lengths[i : i + 1], Decoding(beam_size=beam_size))
            assert alone[0][0].tokens == batched[i][0].tokens
            assert alone[0][0].score == pytest.approx(batched[i][0].score, abs=1e-4)


def test_n_best_sorted_and_distinct():
    m = model(TransformerSeq2Seq)
    src, lengths = sources()
    with torch.inference_mode():
        results = beam_search(m, src, lengths, Decoding(beam_size=5, n_best=3))
    for hyps in results:
        assert len(hyps) == 3
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 3


def test_output_length_limit():
    m = model(GRUSeq2Seq)
    src, lengths = sources()
    with torch.inference_mode():
        for hyps in beam_search(m, src, lengths, Decoding(beam_size=3, max_len_ratio=0.0, max_len_extra=2)):
            assert len(hyps[0].tokens) <= 1  # 2 tokens at most, eos included


@pytest.mark.parametrize("cls", [BahdanauSeq2Seq, TransformerSeq2Seq])
def test_attention_is_recorded_only_when_asked(cls):
    m = model(cls)
    src, lengths = sources()
    with torch.inference_mode():
        assert all(h.attention is None for h in greedy_search(m, src, lengths))
        assert all(hyps[0].attention is None for hyps in beam_search(m, src, lengths, Decoding(beam_size=3)))
        assert all(h.attention is not None for h in greedy_search(m, src, lengths, attention=True))


def test_attention_follows_the_beam():
    m = model(BahdanauSeq2Seq)
    src, lengths = sources()
    with torch.inference_mode():
        results = beam_search(m, src, lengths, Decoding(beam_size=4), attention=True)
    for (hyp,), n in zip(results, lengths.tolist(), strict=True):
        assert hyp.attention.shape == (len(hyp.tokens) + 1, src.size(1))
        torch.testing.assert_close(hyp.attention.sum(-1), torch.ones(len(hyp.tokens) + 1))
        assert hyp.attention[:, n:].abs().sum() == 0


def test_n_best_larger_than_beam_is_refused():
    m = model(GRUSeq2Seq)
    with pytest.raises(ValueError, match="n_best"):
        beam_search(m, *sources(), Decoding(beam_size=2, n_best=3))


def test_transformer_output_stops_within_its_positions():
    """A model that would never emit eos decodes up to its last position, not past it."""
    m = TransformerSeq2Seq(vocab_size=40, dropout=0.0, max_positions=16, **SIZES[TransformerSeq2Seq]).eval()
    decode_step = m.decode_step

    def never_eos(prev, state, attention=False):
        log_probs, state = decode_step(prev, state, attention)
        log_probs[:, EOS_ID] = -1e9  # eos only where the length limit forces it
        return log_probs, state

    m.decode_step = never_eos
    src, lengths = sources(lengths=(12, 3))  # the ratio alone would allow 1.5 * 12 + 10 = 28 tokens
    with torch.inference_mode():
        greedy = m.generate(src, lengths, Decoding(beam_size=1))
        beam = m.generate(src, lengths, Decoding(beam_size=3))
    lengths = [15, 13]  # + eos: 16 (its positions), 14 (1.5 * 3 + 10)
    assert [len(h[0].tokens) for h in greedy] == [len(h[0].tokens) for h in beam] == lengths


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_greedy_scores_are_length_normalised_like_beam_scores(alpha):
    """A greedy score is the hypothesis's log-probability over the GNMT penalty of its length with eos."""
    m = model(TransformerSeq2Seq)
    src, lengths = sources()
    with torch.inference_mode():
        for i, hyp in enumerate(greedy_search(m, src, lengths, Decoding(beam_size=1, alpha=alpha))):
            state, total = m.encode(src[i : i + 1], lengths[i : i + 1]), 0.0
            for prev, nxt in zip([BOS_ID, *hyp.tokens], [*hyp.tokens, EOS_ID], strict=True):
                log_probs, state = m.decode_step(torch.tensor([[prev]]), state)
                total += log_probs[0, nxt].item()
            assert hyp.score == pytest.approx(total / length_penalty(len(hyp.tokens) + 1, alpha), abs=1e-4)
