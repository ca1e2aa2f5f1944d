"""The three generations: context vector, additive attention, Transformer."""

from translate.models.bahdanau import BahdanauSeq2Seq
from translate.models.base import Seq2SeqModule
from translate.models.gru import GRUSeq2Seq
from translate.models.transformer import TransformerSeq2Seq

__all__ = ["BahdanauSeq2Seq", "GRUSeq2Seq", "Seq2SeqModule", "TransformerSeq2Seq"]
