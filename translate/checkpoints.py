"""The checkpoint format in one place.

A `translate` checkpoint is a Lightning checkpoint (weights, hyper-parameters, loop and callback state)
plus what :func:`extras` adds on save: the SentencePiece model, the model class, the language pair, the
decoding settings, the hardware it was trained on, the run it belongs to, whether that run finished, and
the random state. So a checkpoint alone is enough to translate.

Loading one never runs code from the file: it is read with ``weights_only=True`` (plain tensors and
Python values only), its model class must be one of :data:`MODEL_CLASSES` (nothing else is imported) and
its hyper-parameters must be arguments of that class, with plain values, before anything is built.
This module reads, checks, loads and averages checkpoints and finds the best one of a run; it imports no
model until one is asked for by a checked name.
"""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from translate.files import atomic_write_bytes
from translate.machine import describe, machine
from translate.search import Decoding
from translate.tokenizer import SharedTokenizer

if TYPE_CHECKING:  # a translate model (models/base.py's Seq2SeqModule), which imports this module
    from lightning import LightningModule as Seq2SeqModule

REQUIRED = ("model_class", "hyper_parameters", "state_dict", "tokenizer", "decoding")
# the only classes a checkpoint may name (class name: its module); a checkpoint records `module.class`
MODEL_CLASSES = {
    "GRUSeq2Seq": "translate.models.gru",
    "BahdanauSeq2Seq": "translate.models.bahdanau",
    "TransformerSeq2Seq": "translate.models.transformer",
}
PLAIN = (bool, int, float, str, type(None))


def extras(model: Seq2SeqModule) -> dict[str, Any]:
    """What a model adds to its Lightning checkpoint on save."""
    return {
        "tokenizer": model.tokenizer.to_bytes() if model.tokenizer else None,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "languages": list(model.languages) if model.languages else None,
        "decoding": asdict(model.decoding),
        "hardware": machine(),
        "run": model.run,
        "finished": model.finished,
        "rng_state": random_state(),
    }


def new_run() -> str:
    """A fresh run id: every checkpoint of one training run carries the same one."""
    return uuid.uuid4().hex


def random_state() -> dict[str, Any]:
    """The CPU generator's state and, where CUDA is in use, every device's (dropout after a resume)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_random_state(state: dict[str, Any]) -> None:
    """Restore what :func:`random_state` saved (the CUDA states where this process has those devices)."""
    torch.set_rng_state(state["cpu"])
    if state["cuda"] and torch.cuda.is_available() and torch.cuda.device_count() >= len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(path: str | Path) -> dict:
    """The contents of a `translate` checkpoint (weights, hyper-parameters, tokenizer); errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a directory; give a .ckpt file written by `translate fit`")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        raise ValueError(
            f"checkpoint {path} holds a pickled object ({found[1] if found else 'not a tensor or plain value'}), "
            "which loading it would run: refused"
        ) from e
    except Exception as e:
        raise ValueError(f"checkpoint {path} is corrupt or not a PyTorch checkpoint ({type(e).__name__}: {e})") from e
    missing = [k for k in REQUIRED if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {path} is not a translate checkpoint: it lacks {missing}")
    try:
        check_checkpoint(checkpoint)
    except ValueError as e:
        raise ValueError(f"checkpoint {path}: {e}") from e
    return checkpoint


def decoding_of(checkpoint: dict) -> Decoding:
    """The decoding settings a checkpoint was saved with."""
    return checked_decoding(checkpoint["decoding"])


def checked_decoding(stored: object) -> Decoding:
    """Stored decoding settings (of a checkpoint or an exported model) as a Decoding; refused naming the field."""
    names = {f.name for f in fields(Decoding)}
    unknown = set(stored) - names if isinstance(stored, dict) else {"(not a mapping)"}
    if unknown:
        raise ValueError(f"decoding has {sorted(unknown)}, which are no decoding settings: refused")
    try:
        return Decoding(**stored)
    except (TypeError, ValueError) as e:
        raise ValueError(f"decoding: {e}") from e


def checked_languages(languages: object) -> tuple[str, str] | None:
    """Stored languages, [source, target] or None (unknown); refused otherwise."""
    if languages is not None and not (
        isinstance(languages, list) and len(languages) == 2 and all(isinstance(x, str) for x in languages)
    ):
        raise ValueError(f"languages is {languages!r}, not [source, target]: refused")
    return tuple(languages) if languages else None


def model_class_of(checkpoint: dict) -> type:
    """The model class a checkpoint names, if it is one of :data:`MODEL_CLASSES`; nothing else is imported."""
    named = checkpoint["model_class"]
    module, _, name = named.rpartition(".") if isinstance(named, str) else ("", "", "")
    if MODEL_CLASSES.get(name) != module:
        known = ", ".join(f"{m}.{c}" for c, m in MODEL_CLASSES.items())
        raise ValueError(f"model_class {named!r} is not a translate model (one of {known}): refused")
    return getattr(importlib.import_module(module), name)


def model_arguments(model_class: type) -> dict[str, inspect.Parameter]:
    """The arguments `model_class` takes: its own and, through ``**kwargs``, its base classes'."""
    arguments = {}
    for cls in model_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
        arguments |= {p.name: p for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return arguments


def is_plain(value: object) -> bool:
    """A number, string, bool or None, or a list/tuple of those (what a config can hold)."""
    if isinstance(value, list | tuple):
        return all(isinstance(item, PLAIN) for item in value)
    return isinstance(value, PLAIN)


def checked_hyper_parameters(checkpoint: dict, model_class: type) -> dict[str, Any]:
    """The hyper-parameters of `checkpoint` to build `model_class` with, refused (naming the field) unless
    every one is an argument of the class with a plain value; LightningCLI's own keys must name the class."""
    hparams = checkpoint["hyper_parameters"]
    if not isinstance(hparams, dict):
        raise ValueError(f"hyper_parameters is a {type(hparams).__name__}, not a mapping: refused")
    name = model_class.__name__
    allowed = {  # what LightningCLI adds to the hyper-parameters it saves: the class (as a config names it), its loader
        "_class_path": {None, f"translate.models.{name}", f"{model_class.__module__}.{name}"},
        "_instantiator": {None, "lightning.pytorch.cli.instantiate_module"},
    }
    for key, values in allowed.items():
        if not isinstance(hparams.get(key), str | None) or hparams.get(key) not in values:
            raise ValueError(f"hyper_parameters[{key!r}] is {hparams.get(key)!r}, not {name}'s: refused")
    arguments = model_arguments(model_class)
    given = {k: v for k, v in hparams.items() if k not in allowed}
    for key, value in given.items():
        if key not in arguments:
            raise ValueError(f"hyper_parameters[{key!r}] is not an argument of {model_class.__name__}: refused")
        if not is_plain(value):
            raise ValueError(f"hyper_parameters[{key!r}] is a {type(value).__name__}, not a plain value: refused")
    missing = [name for name, p in arguments.items() if p.default is p.empty and name not in given]
    if missing:
        raise ValueError(f"hyper_parameters lack {missing}, which {model_class.__name__} needs")
    return given


def check_checkpoint(checkpoint: dict) -> None:
    """Refuse, naming the field, a checkpoint whose class, hyper-parameters, decoding settings, languages
    or tokenizer are not what `translate fit` writes; nothing is imported or built before."""
    checked_hyper_parameters(checkpoint, model_class_of(checkpoint))
    decoding_of(checkpoint)
    checked_languages(checkpoint.get("languages"))
    if not isinstance(checkpoint["tokenizer"], bytes | None):
        raise ValueError(f"tokenizer is a {type(checkpoint['tokenizer']).__name__}, not a SentencePiece model")


def model_from(checkpoint: dict, **overrides: Any) -> Seq2SeqModule:
    """The model of a checkpoint read by :func:`read_checkpoint`, with its tokenizer and decoding settings;
    `overrides` replace hyper-parameters."""
    model_class = model_class_of(checkpoint)
    model = model_class(**{**checked_hyper_parameters(checkpoint, model_class), **overrides})
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    model.attach(decoding=decoding_of(checkpoint))
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


def average_checkpoints(paths: Sequence[str | Path]) -> dict:
    """A checkpoint whose weights are the element-wise mean of those in `paths` (checkpoint averaging,
    as fairseq's average_checkpoints.py); everything else (hyper-parameters, tokenizer, epoch, step,
    training time) is the last one's. All must be checkpoints of one model: same class, hyper-parameters,
    tokenizer, weight names and training run."""
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    checkpoints = [read_checkpoint(path) for path in paths]
    last = checkpoints[-1]
    for path, checkpoint in zip(paths, checkpoints, strict=True):
        for key in ("model_class", "hyper_parameters", "tokenizer"):
            if checkpoint[key] != last[key]:
                raise ValueError(f"checkpoint {path} differs from {paths[-1]} in its {key}: not one model")
        if checkpoint.get("run") != last.get("run"):
            raise ValueError(f"checkpoint {path} is of another training run than {paths[-1]}: not one model")
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


def finished(path: Path) -> bool:
    """Whether `path` is the last checkpoint of a run that reached its end (not one cut off by a crash)."""
    return path.is_file() and read_checkpoint(path).get("finished") is True


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


class SafeCheckpointIO(TorchCheckpointIO):
    """How the Trainer saves and loads: written with :func:`atomic_write_bytes` (a crash while saving leaves
    the previous `last.ckpt` whole), read only through :func:`read_checkpoint` (a resumed or tested
    checkpoint runs no code and builds nothing unchecked)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getbuffer())

    def load_checkpoint(self, path: _PATH, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path)


def check_resume(folders: Sequence[Path], ckpt_path: str | None) -> None:
    """Before `translate fit` writes checkpoints into `folders`: refuse `--ckpt_path last` with no
    last.ckpt to resume, a new run in a folder that holds checkpoints, and a resumed run in a folder
    whose last.ckpt belongs to another run (so `best-*` files of two runs never mix)."""
    lasts = [folder / "last.ckpt" for folder in folders if (folder / "last.ckpt").is_file()]
    where = ", ".join(map(str, folders))
    if ckpt_path == "last":
        if not lasts:
            raise FileNotFoundError(
                f"--ckpt_path last: there is no last.ckpt in {where}, so nothing to resume "
                "(leave out --ckpt_path to start a new run)"
            )
        return
    held = sorted(path for folder in folders for path in folder.glob("*.ckpt"))
    if not held:
        return
    if ckpt_path is None:
        raise FileExistsError(
            f"{held[0].parent} holds checkpoints of an earlier run ({', '.join(p.name for p in held[:3])}"
            f"{', ...' if len(held) > 3 else ''}): resume it with --ckpt_path last, or move them away "
            "(or give the ModelCheckpoint callbacks another dirpath) to start a new run"
        )
    if Path(ckpt_path).is_file():
        resumed = read_checkpoint(ckpt_path).get("run")
        foreign = [last for last in lasts if read_checkpoint(last).get("run") != resumed]
        if foreign:
            raise FileExistsError(
                f"{foreign[0]} belongs to another run than {ckpt_path}: resuming would mix their checkpoints "
                "in one folder; give the ModelCheckpoint callbacks another dirpath"
            )
