"""Translate from Python with nothing but a checkpoint:

from translate import Translator
Translator.from_checkpoint("checkpoints/transformer/last.ckpt").translate(["Ein Mann fährt Fahrrad."])
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from translate.data import TokenBudgetSampler
from translate.models.base import Seq2SeqModule
from translate.search import Hypothesis
from translate.tokenizer import PAD_ID


@dataclass
class Translation:
    """A translation with its score (length-normalised log-probability), subwords and attention
    (target pieces + eos, source pieces), where the model records attention."""

    text: str
    score: float
    source_pieces: list[str]
    target_pieces: list[str]
    attention: Tensor | None = None


def read_checkpoint(path: str | Path) -> dict:
    """The contents of a `translate` checkpoint (weights, hyper-parameters, tokenizer); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise ValueError(f"checkpoint {path} is corrupt or not a PyTorch checkpoint ({type(e).__name__}: {e})") from e
    missing = [k for k in ("model_class", "hyper_parameters", "state_dict", "tokenizer") if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {path} is not a translate checkpoint: it lacks {missing}")
    return checkpoint


def average_checkpoints(paths: Sequence[str | Path]) -> dict:
    """A checkpoint whose weights are the element-wise mean of those in `paths` (checkpoint averaging,
    as fairseq's average_checkpoints.py); everything else (hyper-parameters, tokenizer, epoch, step,
    training time) is the last one's. All must be checkpoints of one model: same class, hyper-parameters,
    tokenizer and weight names."""
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    checkpoints = [read_checkpoint(path) for path in paths]
    last = checkpoints[-1]
    for path, checkpoint in zip(paths, checkpoints, strict=True):
        for key in ("model_class", "hyper_parameters", "tokenizer"):
            if checkpoint[key] != last[key]:
                raise ValueError(f"checkpoint {path} differs from {paths[-1]} in its {key}: not one model")
        if checkpoint["state_dict"].keys() != last["state_dict"].keys():
            raise ValueError(f"checkpoint {path} differs from {paths[-1]} in its weight names: not one model")
    weights, averaged = {}, {}  # tied weights (one storage in the last checkpoint) stay one tensor
    for name, value in last["state_dict"].items():
        view = (value.untyped_storage().data_ptr(), value.storage_offset(), value.shape, value.stride(), value.dtype)
        if view not in averaged:
            if value.is_floating_point():
                total = sum(checkpoint["state_dict"][name].double() for checkpoint in checkpoints)
                value = (total / len(checkpoints)).to(value.dtype)
            averaged[view] = value
        weights[name] = averaged[view]
    return {**last, "state_dict": weights, "averaged_from": [str(path) for path in paths]}


def model_from(checkpoint: dict) -> Seq2SeqModule:
    """The model, with its tokenizer, of a checkpoint read by :func:`read_checkpoint`."""
    module, _, name = checkpoint["model_class"].rpartition(".")
    model_class = getattr(importlib.import_module(module), name)
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    model = model_class(**hparams)
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def load_model(path: str | Path) -> Seq2SeqModule:
    """The model of a `translate` checkpoint, with its tokenizer; errors name the file."""
    return model_from(read_checkpoint(path))


class Translator:
    """Batched translation with a trained model, in input order."""

    def __init__(self, model: Seq2SeqModule, device: str | torch.device = "auto") -> None:
        if model.tokenizer is None:
            raise ValueError("the model has no tokenizer: load it from a checkpoint written by `translate fit`")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = model.tokenizer

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto") -> Translator:
        return cls(load_model(path), device)

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
    ) -> str | list[str] | Translation | list:
        """Translate a string or a list of strings; the result has the same shape.

        Each output is a string, or with `return_details` a :class:`Translation`; with `n_best` > 1,
        a list of the n best of those. `beam_size` and the length penalty `alpha` default to the
        model's own (its config's ``beam_size`` and ``alpha``, 5 and 1.0 unless tuned).
        Empty or whitespace-only input gives an empty translation; input longer than the model's
        `max_source_length` is truncated with a warning.
        `max_tokens` bounds the source tokens per batch (times the beam size in memory); `progress`
        shows a progress bar (on stderr).
        """
        beam_size = self.model.hparams.beam_size if beam_size is None else beam_size
        alpha = self.model.hparams.alpha if alpha is None else alpha
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        if not 1 <= n_best <= beam_size:
            raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text at index {i} is {type(text).__name__}, expected a string")
        ids = self._source_ids(texts)
        results: list[list[Translation]] = [[Translation("", 0.0, [], [])] * n_best if not x else [] for x in ids]
        todo = [i for i, x in enumerate(ids) if x]
        lengths = torch.tensor([len(ids[i]) for i in todo])
        self.model.keep_attention = return_details
        bar = tqdm(total=len(texts), unit="sent", disable=not progress, initial=len(texts) - len(todo))
        try:
            for rows in TokenBudgetSampler(lengths.numpy(), lengths.numpy(), max(1, max_tokens // beam_size)):
                batch = [todo[r] for r in rows]
                src = pad_sequence([torch.tensor(ids[i]) for i in batch], batch_first=True, padding_value=PAD_ID)
                hyps = self.model.generate(src.to(self.device), lengths[rows].to(self.device), beam_size, alpha, n_best)
                for i, nbest in zip(batch, hyps, strict=True):
                    results[i] = [self._translation(ids[i], h) for h in nbest]
                bar.update(len(batch))
        finally:
            self.model.keep_attention = False
            bar.close()

        def shaped(nbest: list[Translation]) -> str | Translation | list:
            items = nbest if return_details else [t.text for t in nbest]
            return items if n_best > 1 else items[0]

        outputs = [shaped(nbest) for nbest in results]
        return outputs[0] if single else outputs

    def _source_ids(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer.encode(texts)
        limit = self.model.hparams.max_source_length
        long = [i for i, x in enumerate(ids) if len(x) > limit]
        if long:
            warnings.warn(
                f"{len(long)} input(s) longer than the model's max_source_length ({limit} tokens) were truncated "
                f"(first at index {long[0]}: {len(ids[long[0]])} tokens)",
                stacklevel=3,
            )
        return [x[:limit] for x in ids]

    def _translation(self, source: list[int], hyp: Hypothesis) -> Translation:
        return Translation(
            text=self.tokenizer.decode([hyp.tokens])[0],
            score=hyp.score,
            source_pieces=self.tokenizer.pieces(source),
            target_pieces=[*self.tokenizer.pieces(hyp.tokens), "</s>"],
            attention=None if hyp.attention is None else hyp.attention[:, : len(source)].float().cpu(),
        )
