"""Encoder-decoder Transformer (Vaswani et al. 2017), pre-norm, on scaled_dot_product_attention.

Decoding is incremental: each layer caches its self-attention keys/values, and the cross-attention
keys/values of the source are projected once in `encode`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from translate.models.base import Seq2SeqModule
from translate.models.dropout import Dropout, dropout
from translate.search import State
from translate.tokenizer import PAD_ID

# Every backend of scaled_dot_product_attention but cuDNN's, which torch prefers on Hopper GPUs: it builds a graph
# for each new shape, and variable-length batches and step-by-step decoding bring new shapes at every call
# (benchmarks/gpu/gpu_attention.md). On CPUs torch's choice is among these anyway. `encode` and `_decode`
# run under it.
ATTENTION_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def sinusoids(length: int, dim: int) -> Tensor:
    """Sinusoidal position encodings (length, dim)."""
    position = torch.arange(length).unsqueeze(1)  # (L, 1)
    frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))  # (dim/2,)
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class Attention(nn.Module):
    """Multi-head attention; keys/values are projected separately so they can be cached."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, heads, L, dh)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        key, value = self.key_value(x).chunk(2, -1)  # (B, L, D) each
        return self.split(key), self.split(value)

    def forward(
        self,
        x: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        every_head: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from x (B, T, D) to key/value (B, heads, S, dh); mask (B, 1, 1, S) is True where
        attending is allowed. Returns (B, T, D) and, with `need_weights`, weights averaged over heads (B, T, S),
        or with `every_head` too, each head's (B, heads, T, S)."""
        query = self.split(self.query(x))  # (B, heads, T, dh)
        if not need_weights:
            dropout_p = self.dropout if self.training else 0.0
            attended = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, is_causal=causal, dropout_p=dropout_p
            )  # (B, heads, T, dh)
            return self.out(attended.transpose(1, 2).flatten(2)), None  # (B, T, D)
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))  # (B, heads, T, S)
        if causal:
            scores = scores.masked_fill(scores.new_ones(scores.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.softmax(-1)  # (B, heads, T, S)
        attended = dropout(probs.to(value.dtype), self.dropout, self.training) @ value  # (B, heads, T, dh)
        return self.out(attended.transpose(1, 2).flatten(2)), probs if every_head else probs.mean(1)  # (B, T, D)


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ff_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, ff_dim), nn.ReLU(), Dropout(dropout), nn.Linear(ff_dim, dim))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.attention(h, *self.attention.keys_values(h), mask=mask)[0])
        return x + self.dropout(self.ff(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attention = Attention(dim, heads, dropout)
        self.cross_attention = Attention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.dropout = Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        cache: dict[str, Tensor],
        mask: Tensor,
        incremental: bool,
        need_weights: bool = False,
        every_head: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D). `cache` holds the source's `cross_k`/`cross_v`; when `incremental`, x is the
        newest position only and `self_k`/`self_v` (B, heads, t, dh) grow by one step. With `need_weights`,
        also the cross-attention (Attention.forward's, `every_head` or averaged)."""
        h = self.norm1(x)
        key, value = self.self_attention.keys_values(h)
        if incremental:
            key, value = torch.cat([cache["self_k"], key], 2), torch.cat([cache["self_v"], value], 2)
            cache["self_k"], cache["self_v"] = key, value
        x = x + self.dropout(self.self_attention(h, key, value, causal=not incremental)[0])
        cross_k, cross_v = cache["cross_k"], cache["cross_v"]
        attended, weights = self.cross_attention(
            self.norm2(x), cross_k, cross_v, mask=mask, need_weights=need_weights, every_head=every_head
        )
        x = x + self.dropout(attended)
        return x + self.dropout(self.ff(self.norm3(x))), weights


class TransformerSeq2Seq(Seq2SeqModule):
    """Pre-norm Transformer encoder-decoder.

    Args:
        d_model / heads / ff_dim / encoder_layers / decoder_layers / dropout: sizes.
        tie_embeddings: one embedding matrix for source, target and output (the vocabulary is joint).
        max_positions: longest sequence the position table covers.
        **kwargs: loss, optimiser and decoding settings of :class:`Seq2SeqModule`.
    """

    has_attention, has_context_vector = True, False

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        heads: int = 4,
        ff_dim: int = 1024,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        dropout: float = 0.1,
        tie_embeddings: bool = True,
        max_positions: int = 1024,
        **kwargs,
    ) -> None:
        super().__init__(vocab_size=vocab_size, **kwargs)
        self.d_model, self.max_positions = d_model, max_positions
        self.max_length = max_positions  # the longest source, and output (decoding feeds position t at step t)
        self.src_embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        self.tgt_embed = self.src_embed if tie_embeddings else nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        self.register_buffer("positions", sinusoids(max_positions, d_model), persistent=False)
        self.dropout = Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, ff_dim, dropout) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, heads, ff_dim, dropout) for _ in range(decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size, bias=False)
        for name, p in self.named_parameters():
            if p.dim() > 1 and "embed" not in name:
                nn.init.xavier_uniform_(p)
        nn.init.normal_(self.src_embed.weight, std=d_model**-0.5)
        nn.init.normal_(self.tgt_embed.weight, std=d_model**-0.5)
        if tie_embeddings:
            self.output.weight = self.tgt_embed.weight

    def embed(self, embedding: nn.Embedding, ids: Tensor, start: int = 0) -> Tensor:
        """Scaled embeddings plus positions start.. (B, L, D)."""
        if start + ids.size(1) > self.max_positions:
            raise ValueError(f"sequence of {start + ids.size(1)} tokens exceeds max_positions={self.max_positions}")
        positions = self.positions[start : start + ids.size(1)]  # (L, D)
        return self.dropout(embedding(ids) * math.sqrt(self.d_model) + positions)

    @property
    def source_embedding(self) -> nn.Embedding:
        return self.src_embed

    @property
    def attention_maps(self) -> int:
        """One cross-attention map per decoder layer and head."""
        return len(self.decoder) * self.decoder[0].cross_attention.heads

    @sdpa_kernel(ATTENTION_BACKENDS)  # once per pass, not per attention call
    def encode(self, src: Tensor, src_lengths: Tensor) -> State:
        """Memory and the per-layer cross-attention keys/values of the source."""
        mask = self.source_mask(src, src_lengths)  # (B, S)
        mask = mask[:, None, None, :]  # (B, 1, 1, S)
        x = self.embed(self.src_embed, src)  # (B, S, D)
        for layer in self.encoder:
            x = layer(x, mask)
        memory = self.encoder_norm(x)  # (B, S, D)
        caches = []
        for layer in self.decoder:
            key, value = layer.cross_attention.keys_values(memory)  # (B, heads, S, dh)
            empty = key[:, :, :0]  # (B, heads, 0, dh)
            caches.append({"cross_k": key, "cross_v": value, "self_k": empty, "self_v": empty})
        return {"mask": mask, "layers": caches}

    @sdpa_kernel(ATTENTION_BACKENDS)
    def _decode(
        self, tgt: Tensor, state: State, incremental: bool, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Output-layer input (B, T, D) and, with `need_weights`, the last layer's cross-attention
        averaged over heads (B, T, S)."""
        start = state["layers"][0]["self_k"].size(2) if incremental else 0
        x = self.embed(self.tgt_embed, tgt, start)  # (B, T, D)
        weights = None
        for i, (layer, cache) in enumerate(zip(self.decoder, state["layers"], strict=True)):
            last = i == len(self.decoder) - 1
            x, weights = layer(x, cache, state["mask"], incremental, need_weights=need_weights and last)
        return self.decoder_norm(x), weights  # (B, T, D)

    def features(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced output-layer input (B, T, D); with `need_weights`, also the last layer's
        cross-attention averaged over heads (B, T, S)."""
        return self._decode(tgt_in, self.encode(src, src_lengths), False, need_weights)

    @sdpa_kernel(ATTENTION_BACKENDS)
    def cross_attention(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Every decoder layer's and head's cross-attention (B, layers, heads, T, S), teacher-forced on
        `tgt_in` (B, T); the last layer's mean over heads is what `features` and search record."""
        state = self.encode(src, src_lengths)
        x = self.embed(self.tgt_embed, tgt_in)  # (B, T, D)
        maps = []
        for layer, cache in zip(self.decoder, state["layers"], strict=True):
            x, weights = layer(x, cache, state["mask"], incremental=False, need_weights=True, every_head=True)
            maps.append(weights)  # (B, heads, T, S)
        return torch.stack(maps, 1)  # (B, layers, heads, T, S)

    def decode_step(self, prev: Tensor, state: State, attention: bool = False) -> tuple[Tensor, State]:
        state = {**state, "layers": [dict(cache) for cache in state["layers"]]}
        features, weights = self._decode(prev, state, incremental=True, need_weights=attention)
        if weights is not None:
            state["attention"] = weights.squeeze(1)  # (B, S)
        return self.output(features.squeeze(1)).float().log_softmax(-1), state
