"""The CPU speed levers every model trains with: the cheap dropout mask and the fused output layer and loss."""

import pytest
import torch
import torch.nn.functional as F

from translate.models.dropout import Dropout, dropout, keep_mask
from translate.models.loss import output_cross_entropy
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
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_output_loss_and_gradients_match_linear_and_torch_cross_entropy(eps, with_bias):
    torch.manual_seed(0)
    features = torch.randn(3, 5, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(11, dtype=torch.float64, requires_grad=True) if with_bias else None
    inputs = (features, weight) + ((bias,) if with_bias else ())
    target = torch.randint(1, 11, (3, 5))
    target[0, 3:] = PAD_ID
    target[2, 1:] = PAD_ID
    loss, nll, tokens = output_cross_entropy(features, weight, bias, target, PAD_ID, eps)
    grads = torch.autograd.grad(3 * loss, inputs)  # an outer factor reaches every gradient
    logits, flat_target = F.linear(features, weight, bias).flatten(0, 1), target.flatten()
    expected_loss = F.cross_entropy(logits, flat_target, ignore_index=PAD_ID, label_smoothing=eps)
    expected_nll = F.cross_entropy(logits, flat_target, ignore_index=PAD_ID)
    expected_grads = torch.autograd.grad(3 * expected_loss, inputs)
    assert tokens == 9
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(nll, expected_nll)
    for grad, expected in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected)
    assert torch.all(grads[0][2, 1:] == 0)  # pad positions get no gradient
    assert torch.autograd.gradcheck(
        lambda *x: output_cross_entropy(x[0], x[1], x[2] if with_bias else None, target, PAD_ID, eps)[0],
        tuple(x.detach().requires_grad_() for x in inputs),
    )


def test_fused_output_loss_without_grad_mode_and_with_only_pad():
    features, weight = torch.randn(2, 3, 4, requires_grad=True), torch.randn(7, 4, requires_grad=True)
    target = torch.tensor([[1, 2, 0], [3, 0, 0]])
    with torch.no_grad():
        loss, nll, tokens = output_cross_entropy(features, weight, None, target, PAD_ID, 0.1)
    assert not loss.requires_grad and tokens == 3 and nll.item() > 0
    with_grad, _, _ = output_cross_entropy(features, weight, None, target, PAD_ID, 0.1)
    torch.testing.assert_close(loss, with_grad.detach())
    empty, nll, tokens = output_cross_entropy(features, weight, None, torch.zeros_like(target), PAD_ID, 0.1)
    empty.backward()
    assert tokens == 0 and empty.item() == 0 and nll.item() == 0
    assert torch.all(features.grad == 0) and torch.all(weight.grad == 0)


def test_fused_output_loss_under_bf16_autocast_keeps_the_parameter_dtypes():
    features = torch.randn(2, 3, 8, requires_grad=True)
    weight, bias = torch.randn(7, 8, requires_grad=True), torch.randn(7, requires_grad=True)
    target = torch.tensor([[1, 2, 0], [3, 0, 0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = output_cross_entropy(features, weight, bias, target, PAD_ID, 0.1)
    exact, _, _ = output_cross_entropy(features, weight, bias, target, PAD_ID, 0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, exact, atol=0.05, rtol=0.02)
    assert loss != exact  # the products ran in bf16
    loss.backward()
    assert features.grad.dtype == weight.grad.dtype == bias.grad.dtype == torch.float32
