"""Label-smoothed cross-entropy with its closed-form gradient.

Autograd's version of the same loss (log-softmax, gather, mean) fills a zero tensor of the logits'
size for the gather, adds the two branches and runs log-softmax's backward: four passes over a
(tokens, vocabulary) tensor, the largest in the model. The gradient has a closed form,

    d loss / d logits = softmax(logits) - (1 - eps) * one_hot(target) - eps / V,

which is what :class:`LabelSmoothedCrossEntropy` computes into one tensor from the saved log-probabilities:
1.5 times faster forward and backward than `F.cross_entropy(..., label_smoothing=eps)`
(benchmarks/results/train_levers.md).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx


class LabelSmoothedCrossEntropy(torch.autograd.Function):
    """Mean over non-pad targets of (1 - eps) * NLL + eps * (mean NLL over the vocabulary).

    forward(logits (B, T, V), target (B, T), pad_id, eps) -> (loss, nll, tokens): the plain NLL
    (for perplexity) and the number of target tokens come without gradient.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, logits: Tensor, target: Tensor, pad_id: int, eps: float) -> tuple[Tensor, ...]:
        log_probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)  # (B, T, V)
        mask = target != pad_id  # (B, T)
        tokens = mask.sum()
        weight = mask.to(log_probs.dtype) / tokens.clamp(min=1)  # (B, T)
        nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T)
        smooth = -log_probs.mean(-1)  # (B, T)
        loss = (((1 - eps) * nll + eps * smooth) * weight).sum()
        ctx.save_for_backward(log_probs, target, weight)
        ctx.eps, ctx.logits_dtype = eps, logits.dtype
        nll = (nll * weight).sum()
        ctx.mark_non_differentiable(nll, tokens)
        return loss, nll, tokens

    @staticmethod
    def backward(ctx: FunctionCtx, grad_loss: Tensor, _grad_nll: Tensor, _grad_tokens: Tensor) -> tuple:
        log_probs, target, weight = ctx.saved_tensors
        eps = ctx.eps
        grad = log_probs.exp().sub_(eps / log_probs.size(-1))  # (B, T, V)
        hit = torch.full_like(target, eps - 1, dtype=grad.dtype).unsqueeze(-1)  # (B, T, 1)
        grad.scatter_add_(-1, target.unsqueeze(-1), hit)
        grad.mul_((weight * grad_loss).unsqueeze(-1))
        return grad.to(ctx.logits_dtype), None, None, None


def label_smoothed_cross_entropy(
    logits: Tensor, target: Tensor, pad_id: int, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, nll, tokens) of `logits` (B, T, V) against `target` (B, T), pad positions ignored."""
    return LabelSmoothedCrossEntropy.apply(logits, target, pad_id, eps)
