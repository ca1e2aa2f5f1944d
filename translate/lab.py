"""What the page's lab shows of a translation besides the translation itself, each sentence fed to the
model again with its chosen translation: which source subwords it rests on (gradient saliency,
saliency.py), every decoder layer's and head's cross-attention (the Transformer), how the GRU's
context vector drifts as the source is read, word by word; and its chrF against a reference.

Sentences are batched by a token budget; the model runs in evaluation mode, as the Translator leaves it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import sacrebleu
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from translate.batching import token_budget_batches
from translate.saliency import gradient_shares
from translate.search import TranslationModel
from translate.tokenizer import BOS_ID, PAD_ID
from translate.translator import Translation, Translator

Pair = tuple[list[int], list[int]]  # a sentence's source ids and its translation's ids (no bos, no eos)


@dataclass
class Explanation:
    """What the lab shows of one translated sentence, where asked and the model has it: each source
    subword's saliency share (S,), every layer's and head's cross-attention (layers, heads, T, S), with
    T the target pieces and eos, and the context vector's drift (S,)."""

    shares: Tensor | None = None
    heads: Tensor | None = None
    drift: Tensor | None = None


def padded(rows: Sequence[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """The ids right-padded (B, L) on `device`, and their lengths (B,)."""
    ids = pad_sequence([torch.tensor(row, dtype=torch.long) for row in rows], batch_first=True, padding_value=PAD_ID)
    return ids.to(device), torch.tensor([len(row) for row in rows], device=device)


def batches(sizes: Sequence[int], max_tokens: int) -> Iterator[list[int]]:
    """Indices of rows of these `sizes`, in batches of similar sizes within `max_tokens` (padded)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    yield from token_budget_batches(np.argsort(sizes, kind="stable"), sizes, max_tokens)


def saliency(
    model: TranslationModel, pairs: Sequence[Pair], device: torch.device, max_tokens: int = 4096
) -> list[Tensor] | None:
    """Each source subword's share (S,) of the gradient of its translation's log-likelihood (they sum to
    1: saliency.gradient_shares, the translation as the target); None for a model without gradients."""
    if not model.has_gradients:
        return None
    shares: list[Tensor | None] = [None] * len(pairs)
    # gradients, also when called from inference mode; cuDNN runs no RNN backward in evaluation mode
    with torch.inference_mode(False), torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        for rows in batches([len(s) + len(t) + 1 for s, t in pairs], max_tokens):
            src, src_lengths = padded([pairs[i][0] for i in rows], device)  # (B, S)
            tgt, _ = padded([pairs[i][1] for i in rows], device)  # (B, T)
            found = gradient_shares(model, src, src_lengths, tgt).detach().float().cpu()  # (B, S)
            for row, i in enumerate(rows):
                shares[i] = found[row, : len(pairs[i][0])]
    return shares


def heads(
    model: TranslationModel, pairs: Sequence[Pair], device: torch.device, max_tokens: int = 4096
) -> list[Tensor] | None:
    """Each sentence's cross-attention of every decoder layer and head (layers, heads, T + 1, S),
    teacher-forced on its translation (the rows: its pieces and eos); None for a model without such maps."""
    if not model.attention_maps:
        return None
    maps: list[Tensor | None] = [None] * len(pairs)
    with torch.inference_mode():
        for rows in batches([len(s) + len(t) + 1 for s, t in pairs], max_tokens):
            src, src_lengths = padded([pairs[i][0] for i in rows], device)  # (B, S)
            tgt_in, _ = padded([[BOS_ID, *pairs[i][1]] for i in rows], device)  # (B, T + 1)
            found = model.cross_attention(src, src_lengths, tgt_in).float().cpu()  # (B, layers, heads, T + 1, S)
            for row, i in enumerate(rows):
                source, target = pairs[i]
                maps[i] = found[row, :, :, : len(target) + 1, : len(source)]
    return maps


def drift(
    model: TranslationModel, sources: Sequence[list[int]], device: torch.device, max_tokens: int = 4096
) -> list[Tensor] | None:
    """For each source (S ids), the cosine distance (S,) between the context vector of each prefix,
    its first k + 1 subwords, and that of the whole source (the last is 0): how much of the vector the
    words after k still change. None for a model without a context vector."""
    if not model.has_context_vector:
        return None
    prefixes = [source[: k + 1] for source in sources for k in range(len(source))]
    vectors: list[Tensor | None] = [None] * len(prefixes)
    with torch.inference_mode():
        for rows in batches([len(prefix) for prefix in prefixes], max_tokens):
            src, src_lengths = padded([prefixes[i] for i in rows], device)  # (B, S)
            found = model.context_vector(src, src_lengths).float().cpu()  # (B, H)
            for row, i in enumerate(rows):
                vectors[i] = found[row]
    distances, start = [], 0
    for source in sources:
        path = torch.stack(vectors[start : start + len(source)])  # (S, H)
        distances.append((1 - F.cosine_similarity(path, path[-1:], dim=-1)).clamp(min=0))  # (S,)
        start += len(source)
    return distances


def sentences(translation: Translation) -> list[Translation]:
    """The sentences a translation joins, or itself if it is one."""
    return translation.sentences or [translation]


def explain(
    translator: Translator, translations: Sequence[Translation], asked: Sequence[bool], attention: bool
) -> list[list[Explanation]]:
    """The explanation of every sentence of each translation (as :func:`sentences`), each kind computed for
    all of them at once: saliency where `asked` (a flag a translation), heads and drift with `attention`.
    A sentence with no source has none."""
    model, device = translator.model, translator.device
    found = [[Explanation() for _ in sentences(t)] for t in translations]
    items = [
        (explanation, (sentence.source_ids, sentence.target_ids), ask)
        for translation, row, ask in zip(translations, found, asked, strict=True)
        for explanation, sentence in zip(row, sentences(translation), strict=True)
        if sentence.source_ids
    ]
    salient = [item for item in items if item[2]]
    fill([e for e, _, _ in salient], "shares", saliency(model, [pair for _, pair, _ in salient], device))
    if attention:
        pairs = [pair for _, pair, _ in items]
        fill([e for e, _, _ in items], "heads", heads(model, pairs, device))
        fill([e for e, _, _ in items], "drift", drift(model, [source for source, _ in pairs], device))
    return found


def fill(explanations: list[Explanation], kind: str, values: list[Tensor] | None) -> None:
    """Set each explanation's `kind` to its value, if the model gave any."""
    for item, value in zip(explanations, values or [None] * len(explanations), strict=True):
        setattr(item, kind, value)


def rounded(tensor: Tensor) -> list:
    """The tensor's values to 4 decimals, as (nested) lists."""
    return tensor.double().round(decimals=4).tolist()


def details(translation: Translation, explanations: list[Explanation], kind: str) -> list[dict] | None:
    """Each sentence's `kind` as the server answers it, given the sentences' `explanations`: "attention"
    (source and target subwords, weights (T, S), every head's (layers, heads, T, S) where found),
    "context" (the GRU's vector (H,), its drift (S,) where found) or "saliency" (source subwords and
    their shares); None where no sentence has it."""
    found = []
    for sentence, item in zip(sentences(translation), explanations, strict=True):
        entry = {"source": sentence.source_pieces, "target": sentence.target_pieces}
        if kind == "saliency" and item.shares is not None:
            found.append({"source": sentence.source_pieces, "shares": rounded(item.shares)})
        elif kind == "attention" and sentence.attention is not None:
            extra = {} if item.heads is None else {"heads": rounded(item.heads)}
            found.append({**entry, "weights": rounded(sentence.attention), **extra})
        elif kind == "context" and sentence.context is not None:
            extra = {} if item.drift is None else {"drift": rounded(item.drift)}
            found.append({**entry, "vector": rounded(sentence.context[0]), **extra})
    return found or None


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    """Sentence-level chrF (sacreBLEU's, 0..100) of each hypothesis against its reference."""
    return [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(hypotheses, references, strict=True)]
