"""A trained Transformer as a CTranslate2 model (the CPU engine behind OPUS-MT and LibreTranslate).

:func:`export` writes a directory CTranslate2 loads, built through its specification API weight by
weight (no OpenNMT or fairseq in between): ``model.bin`` and ``config.json`` (float32, int16 or int8
weights), the SentencePiece model and ``translate.json`` (languages, decoding defaults, size, test
BLEU). :class:`ExportedTransformer` decodes with such a directory behind the interface every model
offers (search.TranslationModel), so strings in, strings out work alike. Its ``alpha`` is CTranslate2's
length penalty (score / length ** alpha), not GNMT's: choose it on validation.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import ctranslate2
import numpy as np
import torch
from ctranslate2.specs import common_spec, transformer_spec
from torch import Tensor, nn

from translate.checkpoints import checked_decoding, checked_languages, load_model
from translate.models.transformer import Attention, DecoderLayer, EncoderLayer, TransformerSeq2Seq
from translate.search import Decoding, Hypothesis, TranslationModel, max_output_lengths
from translate.tokenizer import EOS_ID, SharedTokenizer

QUANTIZATIONS = ("int8", "int16", "float32")
METADATA = "translate.json"
TOKENIZER = "sentencepiece.model"


# what translate.json holds, and the types of its values
METADATA_FIELDS = {
    "checkpoint": (str,),
    "architecture": (str,),
    "quantization": (str,),
    "parameters": (int,),
    "max_positions": (int,),
    "languages": (list, type(None)),
    "decoding": (dict,),
    "test_bleu": (int, float, type(None)),
}
# what a directory written by export() holds (CTranslate2 writes one vocabulary file or two)
EXPORT_FILES = {METADATA, TOKENIZER, "model.bin", "config.json", "shared_vocabulary.json"}
EXPORT_FILES |= {"source_vocabulary.json", "target_vocabulary.json"}


def is_exported(path: str | Path) -> bool:
    """Whether `path` is a directory written by :func:`export`."""
    return (Path(path) / METADATA).is_file()


def read_metadata(directory: Path) -> dict:
    """The checked translate.json of an exported model: its fields and types as :func:`export` writes them,
    a Transformer, a known quantization, valid languages and decoding settings; refused naming the field."""
    path = directory / METADATA
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is not JSON ({e})") from e
    if not isinstance(metadata, dict) or set(metadata) != set(METADATA_FIELDS):
        found = sorted(metadata) if isinstance(metadata, dict) else type(metadata).__name__
        raise ValueError(f"{path} has {found}, not the fields {sorted(METADATA_FIELDS)}: refused")
    for key, types in METADATA_FIELDS.items():
        if not isinstance(metadata[key], types) or isinstance(metadata[key], bool):
            raise ValueError(f"{path}: {key} is {metadata[key]!r}, not of type {'/'.join(t.__name__ for t in types)}")
    if metadata["architecture"] != TransformerSeq2Seq.__name__ or metadata["quantization"] not in QUANTIZATIONS:
        raise ValueError(f"{path}: {metadata['architecture']} in {metadata['quantization']} was never exported")
    try:
        checked_languages(metadata["languages"])
        checked_decoding(metadata["decoding"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    return metadata


def check_replaceable(output: Path) -> None:
    """Refuse to replace `output` unless it is a model written by :func:`export` and nothing else: never the
    working directory or a folder above it, a checkpoint folder or any folder holding other files."""
    resolved, here = output.resolve(), Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise ValueError(f"--output {output} is the working directory or above it: it is never replaced")
    if not output.is_dir() or output.is_symlink() or not is_exported(output):
        raise FileExistsError(
            f"{output} exists and is not a model of `translate export` (no {METADATA}): --force replaces only "
            "an export; choose another --output"
        )
    foreign = sorted(p.name for p in output.iterdir() if p.name not in EXPORT_FILES or not p.is_file())
    if foreign:
        raise FileExistsError(
            f"{output} holds {foreign[:3]}, which `translate export` never writes: it is not replaced; "
            "choose another --output"
        )


def swap(staging: Path, output: Path) -> None:
    """Put `staging` at `output`, and the old `output` at `staging`, in one step: on Linux by
    renameat2(RENAME_EXCHANGE), so that `output` always exists; elsewhere by two renames."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        if libc.renameat2(at_fdcwd, os.fsencode(staging), at_fdcwd, os.fsencode(output), rename_exchange) == 0:
            return
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), str(output))
    parked = staging.with_name(staging.name + ".old")
    output.rename(parked)
    staging.rename(output)
    parked.rename(staging)


def weights(tensor: Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def set_linear(spec: common_spec.LinearSpec, *layers: nn.Linear) -> None:
    """`spec` = the given linear layers stacked along their outputs (one fused projection)."""
    spec.weight = np.concatenate([weights(layer.weight) for layer in layers])
    if all(layer.bias is not None for layer in layers):
        spec.bias = np.concatenate([weights(layer.bias) for layer in layers])


def set_norm(spec: common_spec.LayerNormSpec, norm: nn.LayerNorm) -> None:
    spec.gamma, spec.beta = weights(norm.weight), weights(norm.bias)


def set_attention(spec, attention: Attention, norm: nn.LayerNorm, self_attention: bool) -> None:
    """Self-attention as one query-key-value projection; cross-attention as query, key-value, output."""
    set_norm(spec.layer_norm, norm)
    if self_attention:
        set_linear(spec.linear[0], attention.query, attention.key_value)
    else:
        set_linear(spec.linear[0], attention.query)
        set_linear(spec.linear[1], attention.key_value)
    set_linear(spec.linear[-1], attention.out)


def set_feed_forward(spec, layer: EncoderLayer | DecoderLayer, norm: nn.LayerNorm) -> None:
    set_norm(spec.layer_norm, norm)
    set_linear(spec.linear_0, layer.ff[0])
    set_linear(spec.linear_1, layer.ff[3])


def transformer_spec_of(model: TransformerSeq2Seq) -> transformer_spec.TransformerSpec:
    """CTranslate2's description of `model`: pre-norm, ReLU, our embeddings scaled by sqrt(d_model) plus
    our own sinusoid table, the final norms; attention returned averaged over the last layer's heads."""
    heads = model.encoder[0].attention.heads
    spec = transformer_spec.TransformerSpec.from_config(
        (len(model.encoder), len(model.decoder)),
        heads,
        pre_norm=True,
        activation=common_spec.Activation.RELU,
        alignment_layer=-1,
        alignment_heads=heads,
    )
    positions = weights(model.positions)  # (max_positions, D)
    for side in (spec.encoder, spec.decoder):
        side.scale_embeddings = True
        side.position_encodings.encodings = positions
    spec.encoder.embeddings[0].weight = weights(model.src_embed.weight)
    spec.decoder.embeddings.weight = weights(model.tgt_embed.weight)
    set_linear(spec.decoder.projection, model.output)
    set_norm(spec.encoder.layer_norm, model.encoder_norm)
    set_norm(spec.decoder.layer_norm, model.decoder_norm)
    for layer_spec, layer in zip(spec.encoder.layer, model.encoder, strict=True):
        set_attention(layer_spec.self_attention, layer.attention, layer.norm1, self_attention=True)
        set_feed_forward(layer_spec.ffn, layer, layer.norm2)
    for layer_spec, layer in zip(spec.decoder.layer, model.decoder, strict=True):
        set_attention(layer_spec.self_attention, layer.self_attention, layer.norm1, self_attention=True)
        set_attention(layer_spec.attention, layer.cross_attention, layer.norm2, self_attention=False)
        set_feed_forward(layer_spec.ffn, layer, layer.norm3)
    spec.config.layer_norm_epsilon = model.encoder_norm.eps
    vocabulary = model.tokenizer.pieces(range(model.tokenizer.vocab_size))
    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    return spec


def export(
    checkpoint: str | Path,
    output: str | Path,
    quantization: str = "int8",
    alpha: float = 1.0,
    test_bleu: float | None = None,
    force: bool = False,
) -> Path:
    """Write the Transformer of `checkpoint` to the directory `output` as a CTranslate2 model with
    `quantization` weights, `alpha` (CTranslate2's length penalty) as its default and `test_bleu`
    recorded. An existing `output` is replaced only with `force`, and only if it is an export itself
    (:func:`check_replaceable`); the new model appears whole or not at all."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    output = Path(output)
    if output.exists() and not force:
        raise FileExistsError(f"{output} exists: choose another --output, or pass --force to replace an export")
    if output.exists():
        check_replaceable(output)
    model = load_model(checkpoint)
    if not isinstance(model, TransformerSeq2Seq):
        raise ValueError(
            f"{checkpoint} holds a {type(model).__name__}: CTranslate2 runs Transformers only, so only "
            "TransformerSeq2Seq checkpoints can be exported"
        )
    spec = transformer_spec_of(model)
    spec.validate()
    spec.optimize(quantization=None if quantization == "float32" else quantization)
    decoding = replace(model.decoding, alpha=alpha)
    metadata = {
        "checkpoint": str(checkpoint),
        "architecture": model.architecture,
        "quantization": quantization,
        "parameters": model.num_parameters,
        "max_positions": model.max_positions,
        "languages": list(model.languages) if model.languages else None,
        "decoding": asdict(decoding),
        "test_bleu": test_bleu,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        spec.save(str(staging))
        model.tokenizer.save(staging / TOKENIZER)
        (staging / METADATA).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        if output.exists():
            check_replaceable(output)  # again: it may have changed while the model was written
            swap(staging, output)  # the old export is now at `staging`, removed below
        else:
            staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


class ExportedTransformer:
    """A directory written by :func:`export`, decoded by CTranslate2 on `device` ("cpu" or "cuda"), on the
    CPU by `threads` threads (0: torch's count): a search.TranslationModel, as the torch models are (its
    search is CTranslate2's own, so it has no encode/decode_step). It gives no gradients (no saliency), and
    its attention only averaged over the last layer's heads (no :meth:`cross_attention`)."""

    has_attention, has_context_vector, has_gradients = True, False, False
    attention_maps = 0

    def __init__(self, directory: str | Path, device: str = "cpu", threads: int = 0) -> None:
        directory = Path(directory)
        if not is_exported(directory):
            raise FileNotFoundError(f"{directory} is not a model written by `translate export` (no {METADATA})")
        self.metadata = read_metadata(directory)
        self.tokenizer = SharedTokenizer.load(directory / TOKENIZER)
        self.languages = checked_languages(self.metadata["languages"])
        self.decoding = checked_decoding(self.metadata["decoding"])
        self.max_length = self.metadata["max_positions"]
        self.architecture = f"{self.metadata['architecture']} (CTranslate2 {self.metadata['quantization']})"
        self.num_parameters = self.metadata["parameters"]
        self.test_bleu = self.metadata["test_bleu"]
        # on the CPU one thread per part of a batch, every batch handed over at once: 1.41x the sentences/s of each
        # batch on both threads, 1.31x of one batch at a time (2 cores, benchmarks/decoding_speed/ctranslate2_speed.md)
        self.workers = (threads or torch.get_num_threads()) if device == "cpu" else 1
        self.translator = ctranslate2.Translator(
            str(directory), device=device, inter_threads=self.workers, intra_threads=1 if device == "cpu" else 0
        )

    def for_inference(self, device: torch.device) -> TranslationModel:
        """The model itself: CTranslate2 decodes on the device it was opened on (inputs may be anywhere)."""
        return self

    def source_limit(self, decoding: Decoding) -> int:
        """The longest source decoded whole (longer ones are truncated)."""
        return min(decoding.max_source_length, self.max_length)

    def context_vector(self, src: Tensor, src_lengths: Tensor) -> None:
        """None: a Transformer has attention, not one context vector."""
        return None

    def cross_attention(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> None:
        """None: CTranslate2 returns attention averaged over heads, during its own search only."""
        return None

    def generate(
        self, src: Tensor, src_lengths: Tensor, decoding: Decoding | None = None, attention: bool = False
    ) -> list[list[Hypothesis]]:
        """The `decoding.n_best` hypotheses of each source (B, S) by CTranslate2's search (:meth:`submit`)."""
        return next(self.generate_batches([(src, src_lengths)], decoding, attention))

    def generate_batches(
        self, batches: Iterable[tuple[Tensor, Tensor]], decoding: Decoding | None = None, attention: bool = False
    ) -> Iterator[list[list[Hypothesis]]]:
        """:meth:`generate` of each batch (src (B, S), src_lengths (B,)) in turn, every batch handed to
        CTranslate2 before the first is awaited: its threads go from one part to the next without waiting
        for each other at the end of a batch, or for the caller between batches. Each batch is decoded as
        :meth:`generate` decodes it alone, so the hypotheses are the same."""
        decoding = decoding or self.decoding
        submitted = [self.submit(src, src_lengths, decoding, attention) for src, src_lengths in batches]
        for pending, limits in submitted:
            results = [result.result() for result in pending]  # waits for this batch only
            yield [
                [self.hypothesis(result, k, limit - 1, attention) for k in range(len(result.hypotheses))]
                for result, limit in zip(results, limits, strict=True)
            ]

    def submit(
        self, src: Tensor, src_lengths: Tensor, decoding: Decoding, attention: bool
    ) -> tuple[list[ctranslate2.AsyncTranslationResult], list[int]]:
        """Hand the sources (B, S) to CTranslate2's threads, one part of the batch to each, without waiting:
        each source's pending result and its longest output (:func:`max_output_lengths`, eos included).
        CTranslate2 has one length limit per batch, so :meth:`hypothesis` cuts an output longer than its
        own limit there, as our search ends it."""
        sources = [self.tokenizer.pieces(row[:length].tolist()) for row, length in zip(src, src_lengths, strict=True)]
        limits = max_output_lengths(src_lengths, decoding, self.max_length).tolist()  # (B,)
        pending = self.translator.translate_batch(
            sources,
            beam_size=decoding.beam_size,
            num_hypotheses=decoding.n_best,
            length_penalty=decoding.alpha,
            max_decoding_length=max(limits),
            max_batch_size=math.ceil(len(sources) / self.workers),  # one part for each worker
            max_input_length=0,  # sources come truncated to source_limit
            suppress_sequences=[["<pad>"], ["<s>"]],  # as our search: never pad or bos
            return_scores=True,
            return_attention=attention,
            return_end_token=True,
            asynchronous=True,
        )
        return pending, limits

    def hypothesis(self, result: ctranslate2.TranslationResult, k: int, longest: int, attention: bool) -> Hypothesis:
        """The k-th hypothesis of `result` without its eos, at most `longest` tokens; attention (len + 1, S),
        the eos row zero where the output was cut before its eos."""
        tokens = [self.tokenizer.piece_id(piece) for piece in result.hypotheses[k]]
        if tokens and tokens[-1] == EOS_ID:
            tokens.pop()
        tokens = tokens[:longest]
        if not attention:
            return Hypothesis(tokens, result.scores[k])
        weights = torch.tensor(result.attention[k])[: len(tokens) + 1]  # (len + 1, S), or (len, S) if cut
        if len(weights) == len(tokens):
            weights = torch.cat([weights, weights.new_zeros(1, weights.size(1))])  # (len + 1, S)
        return Hypothesis(tokens, result.scores[k], weights)
