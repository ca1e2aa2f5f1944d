"""The output layer and the label-smoothed cross-entropy, fused.

The logits (tokens, V) are the largest tensor of every model. Autograd's way through them (linear,
log-softmax, gather, mean; backward: softmax minus targets, two matrix products) writes and re-reads
that tensor about ten times. The gradient has a closed form,

    d loss / d logits = softmax(logits) - (1 - eps) * one_hot(target) - eps / V,

so :class:`OutputCrossEntropy` computes the loss and the gradients of features, weight and bias in one
go, in the forward: the logits become exponentials in place, then the gradient in place, which is
multiplied out at once. The one-hot and smoothing terms never touch a (tokens, V) tensor: the target
logits are a gather, the mean logit is the features times the column sum of the weight, and the one-hot
part of the gradient is added row by row. Pad positions never reach the output layer.
Against `F.linear` + `F.cross_entropy(label_smoothing=0.1)` over 2,048 tokens and 8,000 words: 1.43x
(benchmarks/training_speed/train_levers.md); a whole Transformer training update: 1.03x against the
closed-form loss on autograd's output layer that came before it (train_revision_fused.md, benchmarks at bcdd160).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx


class OutputCrossEntropy(torch.autograd.Function):
    """Mean over tokens of (1 - eps) * NLL + eps * (mean NLL over the vocabulary) of
    `features @ weight.T + bias` against `target`.

    forward(features (N, E), weight (V, E), bias (V,) or None, target (N,), eps, grad_enabled) -> (loss, nll):
    the plain mean NLL (for perplexity) comes without gradient. The gradients are computed in the forward when
    grad mode was on at the call (`grad_enabled`) and an input needs one; the backward only scales them by
    the incoming gradient of the loss.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        features: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        eps: float,
        grad_enabled: bool,
    ) -> tuple[Tensor, Tensor]:
        device = features.device.type
        dtype = (
            torch.get_autocast_dtype(device)
            if torch.is_autocast_enabled(device)
            else torch.promote_types(features.dtype, weight.dtype)
        )
        with torch.autocast(device, enabled=False):
            acc = torch.promote_types(dtype, torch.float32)  # of the logits, sums and gradients
            h, w = features.to(dtype), weight.to(dtype)  # (N, E), (V, E)
            vocab, tokens = w.size(0), max(h.size(0), 1)
            logits = (h @ w.T if bias is None else torch.addmm(bias.to(dtype), h, w.T)).to(acc)  # (N, V)
            maximum = logits.amax(1, keepdim=True)  # (N, 1)
            exps = logits.sub_(maximum).exp_()  # (N, V): in place, the logits are not needed again
            total = exps.sum(1, keepdim=True)  # (N, 1)
            lse = (maximum + total.log()).squeeze(1)  # (N,) log-sum-exp of each row's logits
            target_logit = (h * w[target]).sum(1).to(acc)  # (N,)
            mean_logit = (h @ w.sum(0)).to(acc) / vocab  # (N,)
            if bias is not None:
                target_logit += bias[target].to(acc)
                mean_logit += bias.to(acc).mean()
            nll = (lse - target_logit).sum() / tokens
            loss = (1 - eps) * nll + eps * (lse - mean_logit).sum() / tokens
            ctx.mark_non_differentiable(nll)
            if not (grad_enabled and any(ctx.needs_input_grad[:3])):
                return loss, nll

            grad = exps.div_(total * tokens).sub_(eps / (vocab * tokens))  # (N, V): softmax - eps/V, per token
            hit = (1 - eps) / tokens  # the one-hot part, added sparsely
            grad_b = None
            if bias is not None:  # summed before the products' dtype can round it
                grad_b = grad.sum(0).index_add_(0, target, torch.full_like(target, -hit, dtype=acc))  # (V,)
                grad_b = grad_b.to(bias.dtype)
            grad = grad.to(dtype)
            grad_h = (grad @ w).to(acc) - hit * w[target]  # (N, E)
            grad_w = (grad.T @ h).to(acc).index_add_(0, target, h.to(acc), alpha=-hit)  # (V, E)
        ctx.save_for_backward(grad_h.to(features.dtype), grad_w.to(weight.dtype), grad_b)
        return loss, nll

    @staticmethod
    def backward(ctx: FunctionCtx, grad_loss: Tensor, _grad_nll: Tensor) -> tuple:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        grad_b = None if grad_b is None else grad_b * grad_loss
        return grad_h * grad_loss, grad_w * grad_loss, grad_b, None, None, None


def output_cross_entropy(
    features: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    pad_id: int,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, nll, tokens) of the output layer `weight` (V, E), `bias` (V,) on `features` (B, T, E)
    against `target` (B, T): label-smoothed cross-entropy and plain NLL per target token, pad positions
    skipped (they never reach the output layer)."""
    keep = target != pad_id  # (B, T)
    loss, nll = OutputCrossEntropy.apply(features[keep], weight, bias, target[keep], eps, torch.is_grad_enabled())
    return loss, nll, keep.sum()
