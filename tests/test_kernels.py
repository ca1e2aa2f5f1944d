"""The CPU speed levers every model trains with: the cheap dropout mask and the closed-form loss gradient."""

import pytest
import torch
import torch.nn.functional as F

from translate.models.dropout import Dropout, dropout, keep_mask
from translate.models.loss import label_smoothed_cross_entropy
from translate.tokenizer import PAD_ID


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_keep_mask_keeps_1_minus_p_and_the_expectation(p):
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([1000, 1000]), p, torch.float32)
    kept = (mask > 0).float()
    assert abs(kept.mean().item() - (1 - p)) < 0.002  # 1e6 draws: 3 standard deviations < 0.0015
    assert abs(mask.mean().item() - 1) < 0.004
    assert mask.unique().tolist() == [0.0, pytest.approx(1 / (1 - p), rel=1e-4)]
    # every 16-bit lane of a 64-bit draw is uniform, the one holding the sign bit included
    for lane in range(4):
        assert abs(kept.flatten()[lane::4].mean().item() - (1 - p)) < 0.004


def test_keep_mask_draws_from_the_seeded_generator_and_odd_sizes_work():
    torch.manual_seed(1)
    a = keep_mask(torch.Size([3, 7]), 0.2, torch.bfloat16)
    torch.manual_seed(1)
    b = keep_mask(torch.Size([3, 7]), 0.2, torch.bfloat16)
    assert a.dtype == torch.bfloat16 and a.shape == (3, 7)
    assert torch.equal(a, b)
    assert not torch.equal(a, keep_mask(torch.Size([3, 7]), 0.2, torch.bfloat16))


def test_dropout_gradient_is_the_mask_and_eval_is_identity():
    x = torch.randn(64, 32, requires_grad=True)
    layer = Dropout(0.25)
    y = layer(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach() / x.detach())
    assert 0.6 < (y != 0).float().mean() < 0.9
    layer.eval()
    assert layer(x) is x
    assert torch.equal(dropout(x, 1.0, True), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.5, True)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_loss_and_gradient_match_torch_cross_entropy(eps):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 11, (3, 5))
    target[0, 3:] = PAD_ID
    target[2, 1:] = PAD_ID
    loss, nll, tokens = label_smoothed_cross_entropy(logits, target, PAD_ID, eps)
    (grad,) = torch.autograd.grad(loss, logits)
    flat_logits, flat_target = logits.flatten(0, 1), target.flatten()
    expected_loss = F.cross_entropy(flat_logits, flat_target, ignore_index=PAD_ID, label_smoothing=eps)
    expected_nll = F.cross_entropy(flat_logits, flat_target, ignore_index=PAD_ID)
    (expected_grad,) = torch.autograd.grad(expected_loss, logits)
    assert tokens == 9
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(nll, expected_nll)
    torch.testing.assert_close(grad, expected_grad)
    assert torch.all(grad[2, 1:] == 0)  # pad positions get no gradient
    assert torch.autograd.gradcheck(
        lambda z: label_smoothed_cross_entropy(z, target, PAD_ID, eps)[0], (logits.detach().requires_grad_(),)
    )


def test_loss_gradient_keeps_a_low_precision_dtype():
    logits = torch.randn(2, 3, 7, dtype=torch.bfloat16, requires_grad=True)
    loss, _, _ = label_smoothed_cross_entropy(logits, torch.tensor([[1, 2, 0], [3, 0, 0]]), PAD_ID, 0.1)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16
