"""GRU encoder-decoder with a single context vector (Cho et al. 2014).

The encoder reads the whole source into one vector c. The decoder sees nothing else of the source:
c initialises its state and is fed again at every step, and the output layer sees
(decoder state, previous target embedding, c). However long the sentence, everything must pass
through c: this is the bottleneck that attention removes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from translate.models.base import Seq2SeqModule
from translate.models.dropout import Dropout
from translate.search import State
from translate.tokenizer import PAD_ID


class GRUEncoder(nn.Module):
    """Embedding + (bi)GRU over the padded source; also used by the Bahdanau model."""

    def __init__(
        self, vocab_size: int, embed_dim: int, hidden: int, layers: int, dropout: float, bidirectional: bool
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.dropout = Dropout(dropout)
        self.rnn = nn.GRU(
            embed_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Returns all states (B, S, dirs*H), zero at padding, and the last layer's final state of
        each direction (B, dirs, H)."""
        x = self.dropout(self.embed(src))  # (B, S, E)
        lengths = src_lengths.clamp(min=1).cpu()  # an empty source reads one pad token
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)  # final: (layers*dirs, B, H)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))  # (B, S, dirs*H)
        dirs = 2 if self.rnn.bidirectional else 1
        return outputs, final[-dirs:].transpose(0, 1)  # (B, dirs, H)


class GRUSeq2Seq(Seq2SeqModule):
    """Cho et al. (2014) encoder-decoder: the source reaches the decoder only as one vector.

    Args:
        embed_dim / hidden / layers / dropout: sizes of embeddings and GRUs.
        bidirectional: read the source both ways; c is then made from both final states (still one vector).
        tie_embeddings: share the target embedding with the output layer's weights.
        **kwargs: loss, optimiser and decoding settings of :class:`Seq2SeqModule`.
    """

    has_attention, has_context_vector = False, True

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 256,
        hidden: int = 512,
        layers: int = 1,
        dropout: float = 0.3,
        bidirectional: bool = True,
        tie_embeddings: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(vocab_size=vocab_size, **kwargs)
        dirs = 2 if bidirectional else 1
        self.layers = layers
        self.encoder = GRUEncoder(vocab_size, embed_dim, hidden, layers, dropout, bidirectional)
        self.to_context = nn.Linear(dirs * hidden, hidden)
        self.to_initial = nn.Linear(hidden, layers * hidden)
        self.tgt_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.decoder = nn.GRU(
            embed_dim + hidden, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.readout = nn.Linear(hidden + embed_dim + hidden, embed_dim)
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(embed_dim, vocab_size)
        if tie_embeddings:
            self.output.weight = self.tgt_embed.weight

    @property
    def source_embedding(self) -> nn.Embedding:
        return self.encoder.embed

    def encode(self, src: Tensor, src_lengths: Tensor) -> State:
        _, final = self.encoder(src, src_lengths)  # (B, dirs, H)
        context = torch.tanh(self.to_context(final.flatten(1)))  # (B, H): the context vector
        hidden = torch.tanh(self.to_initial(context)).unflatten(1, (self.layers, -1))  # (B, layers, H)
        return {"context": context, "hidden": hidden}

    def context_vector(self, src: Tensor, src_lengths: Tensor) -> Tensor:
        return self.encode(src, src_lengths)["context"]  # (B, H)

    def _decode(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        """Output-layer input (B, T, E) for target inputs `prev` (B, T) from `state`, and the state after them."""
        context = state["context"]  # (B, H)
        embedded = self.dropout(self.tgt_embed(prev))  # (B, T, E)
        context_t = context.unsqueeze(1).expand(-1, prev.size(1), -1)  # (B, T, H)
        hidden = state["hidden"].transpose(0, 1).contiguous()  # (layers, B, H)
        outputs, hidden = self.decoder(torch.cat([embedded, context_t], -1), hidden)  # (B, T, H)
        features = torch.tanh(self.readout(torch.cat([outputs, embedded, context_t], -1)))  # (B, T, E)
        return self.dropout(features), {"context": context, "hidden": hidden.transpose(0, 1)}

    def features(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, None]:
        """Teacher-forced output-layer input (B, T, E); no attention weights: there is no attention."""
        return self._decode(tgt_in, self.encode(src, src_lengths))[0], None

    def decode_step(self, prev: Tensor, state: State, attention: bool = False) -> tuple[Tensor, State]:
        """One step; `attention` is ignored: the decoder sees the source only through the context vector."""
        features, state = self._decode(prev, state)  # (B, 1, E)
        return self.output(features.squeeze(1)).float().log_softmax(-1), state
