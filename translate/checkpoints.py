"""The checkpoint format in one place.

A `translate` checkpoint is a Lightning checkpoint (weights, hyper-parameters, loop and callback state)
plus what :func:`extras` adds on save: the SentencePiece model, the model class, the language pair, the
decoding settings, the hardware it was trained on and torch's random state. So a checkpoint alone is
enough to translate, and everything here loads with ``weights_only=True``. This module reads, loads and
averages checkpoints and finds the best one of a run; it imports no model (the class is named inside).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from translate.machine import describe, machine
from translate.search import Decoding
from translate.tokenizer import SharedTokenizer

if TYPE_CHECKING:  # a translate model (models/base.py's Seq2SeqModule), which imports this module
    from lightning import LightningModule as Seq2SeqModule

REQUIRED = ("model_class", "hyper_parameters", "state_dict", "tokenizer")
# hyper-parameters of checkpoints written before the decoding settings had a section of their own (and
# before training in shards was removed): decoding ones become the checkpoint's Decoding, the rest is dropped
LEGACY = (*(f.name for f in fields(Decoding) if f.name != "n_best"), "train_threads")


def extras(model: Seq2SeqModule) -> dict[str, Any]:
    """What a model adds to its Lightning checkpoint on save."""
    return {
        "tokenizer": model.tokenizer.to_bytes() if model.tokenizer else None,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "languages": list(model.languages) if model.languages else None,
        "decoding": asdict(model.decoding),
        "hardware": machine(),
        "rng_state": torch.get_rng_state(),  # dropout continues as it would have after a resume
    }


def without_legacy(hparams: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters without the old decoding and shard settings (see LEGACY)."""
    return {k: v for k, v in hparams.items() if k not in LEGACY}


def read_checkpoint(path: str | Path) -> dict:
    """The contents of a `translate` checkpoint (weights, hyper-parameters, tokenizer); errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a directory; give a .ckpt file written by `translate fit`")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise ValueError(f"checkpoint {path} is corrupt or not a PyTorch checkpoint ({type(e).__name__}: {e})") from e
    missing = [k for k in REQUIRED if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {path} is not a translate checkpoint: it lacks {missing}")
    return checkpoint


def decoding_of(checkpoint: dict) -> Decoding:
    """The decoding settings a checkpoint was saved with (older ones kept them among the hyper-parameters)."""
    if checkpoint.get("decoding"):
        return Decoding(**checkpoint["decoding"])
    names = {f.name for f in fields(Decoding)}
    return Decoding(**{k: v for k, v in checkpoint["hyper_parameters"].items() if k in names})


def model_from(checkpoint: dict, **overrides: Any) -> Seq2SeqModule:
    """The model of a checkpoint read by :func:`read_checkpoint`, with its tokenizer and decoding settings;
    `overrides` replace hyper-parameters."""
    module, _, name = checkpoint["model_class"].rpartition(".")
    model_class = getattr(importlib.import_module(module), name)
    hparams = {k: v for k, v in without_legacy(checkpoint["hyper_parameters"]).items() if not k.startswith("_")}
    model = model_class(**{**hparams, **overrides})
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    model.decoding = decoding_of(checkpoint)
    return model.eval()


def load_model(path: str | Path) -> Seq2SeqModule:
    """The model of a `translate` checkpoint file; errors name the file."""
    return model_from(read_checkpoint(path))


def restore(model: Seq2SeqModule, checkpoint: dict) -> None:
    """Give `model` the tokenizer and language pair of `checkpoint`, refusing ones that differ from its own."""
    if checkpoint.get("tokenizer"):
        stored = SharedTokenizer.from_bytes(checkpoint["tokenizer"])
        if model.tokenizer is not None and stored != model.tokenizer:
            raise ValueError(
                "the checkpoint was trained with another vocabulary than the data's tokenizer "
                f"({stored.vocab_size} vs {model.tokenizer.vocab_size} pieces, or other pieces): "
                "test it on the dataset and tokenizer settings it was trained with"
            )
        model.tokenizer = stored
    if checkpoint.get("languages"):
        check_languages(checkpoint["languages"], model.languages, "the checkpoint", "the data")
        model.languages = tuple(checkpoint["languages"])


def check_languages(trained: Sequence[str] | None, given: Sequence[str] | None, model: str, data: str) -> None:
    """Refuse data in another direction (source, target) than the model was trained on; None is unknown."""
    if trained and given and tuple(trained) != tuple(given):
        raise ValueError(f"{model} was trained on {'→'.join(trained)} but {data} is {'→'.join(given)}")


def comparable(checkpoint: dict, key: str) -> object:
    """A checkpoint's `key`, hyper-parameters without the legacy ones (two formats of one run compare equal)."""
    return without_legacy(checkpoint[key]) if key == "hyper_parameters" else checkpoint[key]


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
            if comparable(checkpoint, key) != comparable(last, key):
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


def best_checkpoint(directory: Path) -> Path | None:
    """The best checkpoint that ModelCheckpoint recorded in `directory`/last.ckpt (or last.ckpt
    itself when none was monitored); None when the directory holds no last.ckpt."""
    last = Path(directory) / "last.ckpt"
    if not last.is_file():
        return None
    state = read_checkpoint(last)
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
            best = Path(value["best_model_path"])
            for candidate in (last.parent / best.name, best):  # the folder may have moved since
                if candidate.is_file():
                    return candidate
            raise FileNotFoundError(f"{last} names {best} as the best checkpoint, but it is not in {last.parent}")
    return last


def training_record(checkpoint: dict) -> dict:
    """Epochs, steps, training wall time (Lightning's Timer, where the config sets max_time) and hardware."""
    timer = checkpoint.get("callbacks", {}).get("Timer")
    hardware = checkpoint.get("hardware")
    return {
        "epochs": checkpoint["epoch"] + 1,
        "steps": checkpoint["global_step"],
        "train_seconds": round(timer["time_elapsed"]["train"]) if timer else None,
        "hardware": describe(hardware) if hardware else None,
    }
