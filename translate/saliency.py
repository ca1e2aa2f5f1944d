"""What each model remembers: for each source position, the share of the gradient of the reference's
log-likelihood that reaches that position's embedding (a gradient-norm saliency).

A context vector that reads left to right should favour the last words, one that reads both ways
both ends, attention neither. Shares are reported against a uniform spread (1.0 = the position's
fair share, 1 / source length), averaged by relative position and by distance from the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from translate.batching import token_budget_batches
from translate.models.base import Seq2SeqModule
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID

BINS = 10  # relative-position bins
FROM_END = 20  # source tokens counted back from the end


def gradient_shares(model: Seq2SeqModule, src: Tensor, src_lengths: Tensor, tgt: Tensor) -> Tensor:
    """Each source position's share (B, S) of the norm of d log p(tgt | src) / d embedding; 0 at padding.
    `tgt` (B, T) holds the reference ids, padded with PAD_ID, without bos or eos."""
    tgt_lengths = (tgt != PAD_ID).sum(1)  # (B,)
    bos = torch.full_like(tgt[:, :1], BOS_ID)
    tgt_in = torch.cat([bos, tgt], 1)  # (B, T + 1)
    tgt_out = torch.cat([tgt, torch.full_like(bos, PAD_ID)], 1)  # (B, T + 1)
    tgt_out[torch.arange(len(tgt)), tgt_lengths] = EOS_ID
    embedded: list[Tensor] = []

    def keep(module: torch.nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if inputs[0] is src:  # the source's lookup (with tied embeddings the target's goes through it too)
            embedded.append(output)

    handle = model.source_embedding.register_forward_hook(keep)
    try:
        logits = model(src, src_lengths, tgt_in)  # (B, T + 1, V)
    finally:
        handle.remove()
    log_probs = logits.float().log_softmax(-1).gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T + 1)
    likelihood = (log_probs * (tgt_out != PAD_ID)).sum()  # the examples' log-likelihoods do not interact
    (gradient,) = torch.autograd.grad(likelihood, embedded[0])  # (B, S, E)
    norms = gradient.norm(dim=-1) * model.source_mask(src, src_lengths)  # (B, S)
    return norms / norms.sum(1, keepdim=True).clamp(min=1e-12)


def remembered(model: Seq2SeqModule, sources: Sequence[str], references: Sequence[str], max_tokens: int = 4096) -> dict:
    """Gradient shares against a uniform spread, averaged over the pairs: by relative position
    (`BINS` bins, start to end) and by distance from the end (last token first, `FROM_END` tokens)."""
    tokenizer, device = model.tokenizer, model.device
    src_ids, tgt_ids = tokenizer.encode(list(sources)), tokenizer.encode(list(references))
    keep = [i for i, (x, y) in enumerate(zip(src_ids, tgt_ids, strict=True)) if x and y]
    lengths = np.array([len(src_ids[i]) for i in keep])
    relative, from_end = [[] for _ in range(BINS)], [[] for _ in range(FROM_END)]
    model.eval()  # no dropout; cuDNN runs no RNN backward in eval mode, so it is off here
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        for rows in token_budget_batches(np.argsort(lengths, kind="stable"), lengths + 1, max_tokens):
            batch = [keep[i] for i in rows]
            src = pad_sequence([torch.tensor(src_ids[i]) for i in batch], batch_first=True, padding_value=PAD_ID)
            tgt = pad_sequence([torch.tensor(tgt_ids[i]) for i in batch], batch_first=True, padding_value=PAD_ID)
            src_lengths = torch.from_numpy(lengths[rows])
            shares = gradient_shares(model, src.to(device), src_lengths.to(device), tgt.to(device)).cpu()
            for share, n in zip(shares.numpy(), lengths[rows], strict=True):
                fair = share[:n] * n  # (n,): 1.0 = a uniform spread
                for position, value in enumerate(fair):
                    relative[position * BINS // n].append(value)
                for distance, value in enumerate(fair[::-1][:FROM_END]):
                    from_end[distance].append(value)
    return {
        "pairs": len(keep),
        "mean_source_tokens": float(lengths.mean()) if len(lengths) else 0.0,
        "relative": [float(np.mean(v)) if v else None for v in relative],
        "from_end": [float(np.mean(v)) if v else None for v in from_end],
    }
