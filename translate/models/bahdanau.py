"""Additive attention over a bidirectional GRU encoder (Bahdanau, Cho & Bengio 2015).

Instead of one context vector, the decoder looks back at every source position at every step:

    e_tj = v . tanh(W s_{t-1} + U h_j)      alpha_t = softmax_j(e_tj)  (padding masked)
    c_t  = sum_j alpha_tj h_j               s_t = GRU([emb(y_{t-1}); c_t], s_{t-1})
    p(y_t) = softmax(W_o tanh(W_r [s_t; emb(y_{t-1}); c_t]))

Work that does not depend on the step is done once: the keys U h_j per batch, and the embedding's
share of the GRU input gates for all target positions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from translate.models.base import Seq2SeqModule
from translate.models.dropout import Dropout
from translate.models.gru import GRUEncoder
from translate.search import State
from translate.tokenizer import PAD_ID


class BahdanauSeq2Seq(Seq2SeqModule):
    """Bi-GRU encoder, additive attention, GRU decoder.

    Args:
        embed_dim / hidden / attention_dim / encoder_layers / dropout: sizes.
        tie_embeddings: share the target embedding with the output layer's weights.
        **kwargs: loss, optimiser and decoding settings of :class:`Seq2SeqModule`.
    """

    has_attention, has_context_vector = True, False

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 256,
        hidden: int = 512,
        attention_dim: int = 512,
        encoder_layers: int = 1,
        dropout: float = 0.3,
        tie_embeddings: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(vocab_size=vocab_size, **kwargs)
        self.encoder = GRUEncoder(vocab_size, embed_dim, hidden, encoder_layers, dropout, bidirectional=True)
        self.to_initial = nn.Linear(hidden, hidden)
        self.keys = nn.Linear(2 * hidden, attention_dim, bias=False)  # U
        self.query = nn.Linear(hidden, attention_dim)  # W
        self.energy = nn.Linear(attention_dim, 1, bias=False)  # v
        self.tgt_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        # GRU gates (reset, update, new) from the three inputs; the embedding part is hoisted out of the loop
        self.embed_gates = nn.Linear(embed_dim, 3 * hidden)
        self.context_gates = nn.Linear(2 * hidden, 3 * hidden, bias=False)
        self.hidden_gates = nn.Linear(hidden, 3 * hidden)
        self.readout = nn.Linear(hidden + embed_dim + 2 * hidden, embed_dim)
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(embed_dim, vocab_size)
        if tie_embeddings:
            self.output.weight = self.tgt_embed.weight

    @property
    def source_embedding(self) -> nn.Embedding:
        return self.encoder.embed

    def encode(self, src: Tensor, src_lengths: Tensor) -> State:
        values, final = self.encoder(src, src_lengths)  # (B, S, 2H), (B, 2, H)
        mask = self.source_mask(src, src_lengths)  # (B, S)
        return {
            "hidden": torch.tanh(self.to_initial(final[:, 1])),  # (B, H) from the backward state
            "values": values,  # (B, S, 2H)
            "keys": self.keys(values),  # (B, S, A)
            "mask": mask,
        }

    def attend(self, hidden: Tensor, state: State) -> tuple[Tensor, Tensor]:
        """Context (B, 2H) and attention weights (B, S) for decoder state `hidden` (B, H)."""
        energy = self.energy(torch.tanh(state["keys"] + self.query(hidden).unsqueeze(1))).squeeze(-1)  # (B, S)
        weights = energy.masked_fill(~state["mask"], float("-inf")).softmax(-1)  # (B, S)
        return torch.bmm(weights.unsqueeze(1), state["values"]).squeeze(1), weights

    def step(self, embed_gates: Tensor, state: State) -> tuple[Tensor, Tensor, Tensor]:
        """One decoder step from the embedding's gate inputs (B, 3H): new state (B, H), context
        (B, 2H), attention weights (B, S)."""
        hidden = state["hidden"]  # (B, H)
        context, weights = self.attend(hidden, state)
        r_in, z_in, n_in = (embed_gates + self.context_gates(context)).chunk(3, -1)  # (B, H) each
        r_h, z_h, n_h = self.hidden_gates(hidden).chunk(3, -1)  # (B, H) each
        reset, update = torch.sigmoid(r_in + r_h), torch.sigmoid(z_in + z_h)
        new = torch.tanh(n_in + reset * n_h)
        return (1 - update) * new + update * hidden, context, weights

    def _features(self, hidden: Tensor, embedded: Tensor, context: Tensor) -> Tensor:
        """Output-layer input (..., E) from decoder state, target embedding and context."""
        return self.dropout(torch.tanh(self.readout(torch.cat([hidden, embedded, context], -1))))  # (..., E)

    def features(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced output-layer input (B, T, E); with `need_weights`, also the attention (B, T, S)."""
        state = self.encode(src, src_lengths)
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        gates = self.embed_gates(embedded)  # (B, T, 3H): all steps at once
        hiddens, contexts, weights = [], [], []
        for t in range(tgt_in.size(1)):
            hidden, context, attention = self.step(gates[:, t], state)
            state["hidden"] = hidden
            hiddens.append(hidden)
            contexts.append(context)
            weights.append(attention)
        features = self._features(torch.stack(hiddens, 1), embedded, torch.stack(contexts, 1))  # (B, T, E)
        return features, torch.stack(weights, 1) if need_weights else None

    def decode_step(self, prev: Tensor, state: State, attention: bool = False) -> tuple[Tensor, State]:
        embedded = self.tgt_embed(prev.squeeze(1))  # (B, E)
        hidden, context, weights = self.step(self.embed_gates(embedded), state)
        state = {**state, "hidden": hidden}
        if attention:
            state["attention"] = weights  # (B, S)
        logits = self.output(self._features(hidden, embedded, context))  # (B, V)
        return logits.float().log_softmax(-1), state
