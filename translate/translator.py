"""Translate from Python with nothing but a checkpoint:

from translate import Translator
Translator.from_checkpoint("checkpoints/transformer/last.ckpt").translate(["Ein Mann fährt Fahrrad."])

Paragraphs are translated sentence by sentence (sentences.py) unless `split_sentences=False`.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from translate.batching import token_budget_batches
from translate.checkpoints import load_model
from translate.export import ExportedTransformer, is_exported
from translate.search import Decoding, Hypothesis, TranslationModel
from translate.sentences import join_lines, split_lines
from translate.tokenizer import PAD_ID, check_unicode


def resolve_device(device: str | torch.device) -> torch.device:
    """`device`, where "auto" is the GPU if there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Translation:
    """A translation with its score (log-probability / GNMT length penalty), subwords and attention
    (target pieces + eos, source pieces), where the model records attention; where the model has one
    context vector instead (the GRU), that vector of each sentence (sentences, H). `source_ids` and
    `target_ids` are the ids the model read and wrote (no bos, no eos; what lab.py feeds it again). A
    translation that joins several sentences keeps theirs, in order, in `sentences` (empty otherwise)."""

    text: str
    score: float
    source_pieces: list[str]
    target_pieces: list[str]
    attention: Tensor | None = None
    context: Tensor | None = None
    sentences: list[Translation] = field(default_factory=list, repr=False)
    source_ids: list[int] = field(default_factory=list, repr=False)
    target_ids: list[int] = field(default_factory=list, repr=False)


def join_translations(lines: list[list[Translation]], block_attention: bool = True) -> Translation:
    """One translation of several lines of sentences: texts joined as by sentences.join_lines, pieces
    and ids one after the other, attention block-diagonal (where every sentence has it; None without
    `block_attention`), context vectors stacked, the mean score, the sentences' own in `sentences`."""
    parts = [t for line in lines for t in line]
    attention, context = [t.attention for t in parts], [t.context for t in parts]
    blocks = block_attention and parts and all(a is not None for a in attention)
    return Translation(
        text=join_lines([[t.text for t in line] for line in lines]),
        score=sum(t.score for t in parts) / len(parts) if parts else 0.0,
        source_pieces=[piece for t in parts for piece in t.source_pieces],
        target_pieces=[piece for t in parts for piece in t.target_pieces],
        attention=torch.block_diag(*attention) if blocks else None,
        context=torch.cat(context) if parts and all(c is not None for c in context) else None,
        sentences=parts,
        source_ids=[i for t in parts for i in t.source_ids],
        target_ids=[i for t in parts for i in t.target_ids],
    )


class Translator:
    """Batched translation with a trained model (or one exported to CTranslate2), in input order: any
    search.TranslationModel."""

    def __init__(self, model: TranslationModel, device: str | torch.device = "auto") -> None:
        if model.tokenizer is None:
            raise ValueError("the model has no tokenizer: load it from a checkpoint written by `translate fit`")
        self.device = resolve_device(device)
        self.model = model.for_inference(self.device)
        self.tokenizer = model.tokenizer

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto") -> Translator:
        """A checkpoint of `translate fit`, or a directory of `translate export` (decoded by CTranslate2)."""
        if is_exported(path):
            return cls(ExportedTransformer(path, resolve_device(device).type), device)
        if Path(path).is_dir():
            raise IsADirectoryError(
                f"{path} is a directory but no model of `translate export`; give a .ckpt file of `translate fit`"
            )
        return cls(load_model(path), device)

    @property
    def source_language(self) -> str:
        """The language the model translates from (for the sentence segmenter)."""
        return self.model.languages[0] if self.model.languages else "en"

    def settings(self, **given: object) -> Decoding:
        """The model's decoding settings with those `given` that are not None; checked by :class:`Decoding`."""
        return replace(self.model.decoding, **{k: v for k, v in given.items() if v is not None})

    @torch.inference_mode()
    def translate(
        self,
        texts: str | Sequence[str],
        beam_size: int | None = None,
        alpha: float | None = None,
        n_best: int = 1,
        max_tokens: int = 4096,
        return_details: bool = False,
        progress: bool = False,
        split_sentences: bool = True,
        attention: bool = True,
        block_attention: bool = True,
    ) -> str | list[str] | Translation | list:
        """Translate a string or a list of strings; the result has the same shape.

        Each output is a string, or with `return_details` a :class:`Translation`; with `n_best` > 1,
        a list of the n best of those. `beam_size` and the length penalty `alpha` default to the
        model's own (its config's ``decoding``). With `split_sentences` (the default) each line of a
        text is split into sentences (sentences.py), all sentences are translated as one batch and
        put back in order, a space between sentences and lines kept as lines; a text's details then
        join its sentences' (pieces one after the other, attention block-diagonal, the mean score),
        and its i-th best joins each sentence's i-th best. Empty or whitespace-only input gives an
        empty translation; control characters count as spaces; input longer than the model's
        `max_source_length` is truncated with a warning. `max_tokens` bounds the source tokens per batch
        (times the beam size in memory); `progress` shows a progress bar (on stderr). With `attention`
        False, details leave out attention and context vectors (faster: scores and pieces only); with
        `block_attention` False, a text of several sentences has no block-diagonal attention (its size
        grows with the square of the text's length), only its sentences' own, in `sentences`.
        """
        decoding = self.settings(beam_size=beam_size, alpha=alpha, n_best=n_best)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        single, record = isinstance(texts, str), return_details and attention
        texts = [texts] if single else list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text at index {i} is {type(text).__name__}, expected a string")
            check_unicode(text, i)  # before the segmenter, which cannot take it either
        if split_sentences:
            layout = [split_lines(text, self.source_language) for text in texts]
            sentences = [sentence for lines in layout for line in lines for sentence in line]
            nbests = self._nbest(sentences, decoding, max_tokens, record, progress, "sentence")
            results = self._rejoin(layout, nbests, decoding.n_best, block_attention)
        else:
            results = self._nbest(texts, decoding, max_tokens, record, progress, "text")
        outputs = [self._shaped(nbest, decoding.n_best, return_details) for nbest in results]
        return outputs[0] if single else outputs

    def _nbest(
        self, texts: list[str], decoding: Decoding, max_tokens: int, record: bool, progress: bool, unit: str
    ) -> list[list[Translation]]:
        """The n-best translations of each text, each decoded whole, batched by source length, with
        attention and context vectors if `record` (`unit`: what the texts are, for the truncation warning)."""
        ids = self._source_ids(texts, self.model.source_limit(decoding), unit)
        empty = [Translation("", 0.0, [], [])] * decoding.n_best
        results: list[list[Translation]] = [empty if not x else [] for x in ids]
        todo = np.array([i for i, x in enumerate(ids) if x], dtype=np.int64)
        lengths = np.array([len(ids[i]) for i in todo], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        budget = max(1, max_tokens // decoding.beam_size)
        batches = [todo[rows] for rows in token_budget_batches(order, lengths + 1, budget)]
        # all batches handed over at once: a model may decode several together (the exported Transformer does)
        decoded = self.model.generate_batches((self._padded(ids, b) for b in batches), decoding, attention=record)
        with tqdm(total=len(texts), unit="sent", disable=not progress, initial=len(texts) - len(todo)) as bar:
            for batch, hyps in zip(batches, decoded, strict=True):
                vectors = None  # (B, H) where the model has one context vector per source
                if record and self.model.has_context_vector:
                    vectors = self.model.context_vector(*self._padded(ids, batch))
                for row, (i, nbest) in enumerate(zip(batch.tolist(), hyps, strict=True)):
                    context = None if vectors is None else vectors[row : row + 1].float().cpu()  # (1, H)
                    results[i] = [self._translation(ids[i], h, context) for h in nbest]
                bar.update(len(batch))
        return results

    def _padded(self, ids: list[list[int]], batch: np.ndarray) -> tuple[Tensor, Tensor]:
        """The sources `batch` (rows of `ids`) padded, (B, S), and their lengths (B,), on the device."""
        rows = [torch.tensor(ids[i]) for i in batch]
        src = pad_sequence(rows, batch_first=True, padding_value=PAD_ID)  # (B, S)
        return src.to(self.device), torch.tensor([len(row) for row in rows], device=self.device)

    @staticmethod
    def _rejoin(
        layout: list[list[list[str]]], sentences: list[list[Translation]], n_best: int, block_attention: bool
    ) -> list[list[Translation]]:
        """Each text's n-best from its sentences' (`layout`: each text's lines, each line's sentences)."""
        parts = iter(sentences)
        results = []
        for lines in layout:
            nbests = [[next(parts) for _ in line] for line in lines]  # (lines, sentences, n_best)
            if len(lines) == 1 and len(lines[0]) == 1:
                results.append(nbests[0][0])  # one sentence: its own translations
            else:
                joined = [
                    join_translations([[s[k] for s in line] for line in nbests], block_attention) for k in range(n_best)
                ]
                results.append(joined)
        return results

    @staticmethod
    def _shaped(nbest: list[Translation], n_best: int, details: bool) -> str | Translation | list:
        items = nbest if details else [t.text for t in nbest]
        return items if n_best > 1 else items[0]

    def _source_ids(self, texts: list[str], limit: int, unit: str) -> list[list[int]]:
        """Token ids of each text, at most `limit` (with a warning naming the first truncated `unit`)."""
        ids = self.tokenizer.encode(texts)
        long = [i for i, x in enumerate(ids) if len(x) > limit]
        if long:
            warnings.warn(
                f"{len(long)} of {len(texts)} {unit}s longer than the model's source limit ({limit} tokens) were "
                f"truncated (the first: {unit} {long[0]}, {len(ids[long[0]])} tokens)",
                stacklevel=5,  # past _nbest, translate and its inference_mode wrapper
            )
        return [x[:limit] for x in ids]

    def _translation(self, source: list[int], hyp: Hypothesis, context: Tensor | None) -> Translation:
        return Translation(
            text=self.tokenizer.decode([hyp.tokens])[0],
            score=hyp.score,
            source_pieces=self.tokenizer.pieces(source),
            target_pieces=[*self.tokenizer.pieces(hyp.tokens), "</s>"],
            attention=None if hyp.attention is None else hyp.attention[:, : len(source)].float().cpu(),
            context=context,
            source_ids=list(source),
            target_ids=list(hyp.tokens),
        )
