"""What each model remembers: gradient shares by source position."""

import pytest
import torch

from conftest import DE, EN, TINY, tiny_model
from translate import Translator
from translate.saliency import BINS, FROM_END, gradient_shares, remembered
from translate.tokenizer import PAD_ID


@pytest.mark.parametrize("name", list(TINY))
def test_shares_sum_to_one_are_zero_at_padding_and_do_not_depend_on_the_batch(name):
    model = tiny_model(name, 50, **({"tie_embeddings": True} if name == "transformer" else {})).eval()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, 50, (3, 7), generator=g)
    lengths = torch.tensor([7, 4, 2])
    for i, n in enumerate(lengths):
        src[i, n:] = PAD_ID
    tgt = torch.randint(4, 50, (3, 5), generator=g)
    tgt[2, 3:] = PAD_ID
    shares = gradient_shares(model, src, lengths, tgt)  # the source's gradient, also with tied embeddings
    assert shares.shape == src.shape
    torch.testing.assert_close(shares.sum(1), torch.ones(3))
    assert (shares[src == PAD_ID] == 0).all() and (shares[src != PAD_ID] > 0).all()
    alone = gradient_shares(model, src[1:2, :4], lengths[1:2], tgt[1:2])
    torch.testing.assert_close(alone[0], shares[1, :4], atol=1e-5, rtol=1e-4)


def test_a_position_the_reference_does_not_depend_on_gets_no_share():
    """A context vector made of the forward final state (the last word) and the backward one (the first)."""
    model = tiny_model("gru", 50).eval()
    src = torch.tensor([[5, 6, 7, 8]])
    shares = gradient_shares(model, src, torch.tensor([4]), torch.tensor([[9, 10]]))
    rnn, hidden = model.encoder.rnn, model.encoder.rnn.hidden_size
    with torch.no_grad():  # no recurrence and an update gate shut: each state sees only its own word
        for suffix in ("l0", "l0_reverse"):
            getattr(rnn, f"weight_hh_{suffix}").zero_()
            getattr(rnn, f"bias_ih_{suffix}")[hidden : 2 * hidden] = -1e4
    forgetful = gradient_shares(model, src, torch.tensor([4]), torch.tensor([[9, 10]]))
    assert (shares > 0).all()
    assert forgetful[0, 1:3].tolist() == [0.0, 0.0] and forgetful[0, [0, 3]].sum() == pytest.approx(1.0)


def test_remembered_averages_by_relative_position_and_distance_from_the_end(trained):
    model = Translator.from_checkpoint(trained).model
    result = remembered(model, [*DE, ""], [*EN, "x"])  # an empty source is left out
    assert result["pairs"] == len(DE) and result["mean_source_tokens"] > 1
    assert len(result["relative"]) == BINS and len(result["from_end"]) == FROM_END
    known = [v for v in result["relative"] + result["from_end"] if v is not None]
    assert all(v > 0 for v in known) and result["from_end"][0] is not None
