"""A checkpoint never runs code: hostile checkpoints and exported models are refused by name, with no side effect."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from conftest import cli_args, run_cli
from translate import Translator
from translate.checkpoints import MODEL_CLASSES, SafeCheckpointIO, read_checkpoint
from translate.export import export
from translate.models import BahdanauSeq2Seq, GRUSeq2Seq, Seq2SeqModule, TransformerSeq2Seq

EVIL_MODULE = "translate_test_evil"  # a module that leaves a file behind when imported


@pytest.fixture
def witness(tmp_path, monkeypatch) -> Path:
    """A file that appears if any hostile code runs: on import of EVIL_MODULE, or through a shell command."""
    marker = tmp_path / "code-ran"
    (tmp_path / f"{EVIL_MODULE}.py").write_text(f"open({str(marker)!r}, 'w').close()\nEvil = dict\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    assert EVIL_MODULE not in sys.modules


class Pickled:
    """An object whose unpickling runs a shell command (what weights_only=True must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


DELETE = object()  # a hyper-parameter to leave out


def hostile(trained: Path, folder: Path, name: str, **changes) -> Path:
    """The trained checkpoint with `changes` (hyper_parameters: a dict of changes to merge, DELETE removes)."""
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    hparams = {**checkpoint["hyper_parameters"], **changes.pop("hyper_parameters", {})}
    checkpoint["hyper_parameters"] = {k: v for k, v in hparams.items() if v is not DELETE}
    checkpoint.update(changes)
    torch.save(checkpoint, folder / name)
    return folder / name


CASES = {  # what is changed in a real checkpoint (given the witness file), and what the refusal says
    "foreign class": (
        lambda marker: {
            "model_class": "subprocess.run",
            "hyper_parameters": {"args": f"touch {marker}", "shell": True},
        },
        "model_class 'subprocess.run' is not a translate model",
    ),
    "class that imports a module": (lambda _: {"model_class": f"{EVIL_MODULE}.Evil"}, f"'{EVIL_MODULE}.Evil'"),
    "translate module, foreign name": (lambda _: {"model_class": "translate.checkpoints.SafeCheckpointIO"}, "model"),
    "LightningCLI class path": (lambda _: {"hyper_parameters": {"_class_path": f"{EVIL_MODULE}.Evil"}}, "_class_path"),
    "LightningCLI class path, our name": (
        lambda _: {"hyper_parameters": {"_class_path": f"{EVIL_MODULE}.TransformerSeq2Seq"}},
        "_class_path",
    ),
    "LightningCLI loader": (lambda _: {"hyper_parameters": {"_instantiator": f"{EVIL_MODULE}.Evil"}}, "_instantiator"),
    "extra argument": (lambda _: {"hyper_parameters": {"shell": True}}, r"\['shell'\] is not an argument"),
    "tensor argument": (lambda _: {"hyper_parameters": {"d_model": torch.ones(2)}}, r"\['d_model'\] is a Tensor"),
    "missing argument": (lambda _: {"hyper_parameters": {"vocab_size": DELETE}}, r"lack \['vocab_size'\]"),
    "foreign decoding": (lambda _: {"decoding": {"beam_size": 5, "shell": "rm -rf ~"}}, r"decoding has \['shell'\]"),
    "bad decoding": (lambda _: {"decoding": {"beam_size": -1}}, "decoding: beam_size must be at least 1"),
    "foreign languages": (lambda _: {"languages": ["de", "en", "fr"]}, "languages is"),
    "foreign tokenizer": (lambda _: {"tokenizer": torch.zeros(3)}, "tokenizer is a Tensor"),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_checkpoints_are_refused_by_field_before_anything_runs(trained, tmp_path, witness, case):
    changes, message = CASES[case]
    path = hostile(trained, tmp_path, "evil.ckpt", **changes(witness))
    for load in (read_checkpoint, Translator.from_checkpoint, Seq2SeqModule.load_from_checkpoint):
        with pytest.raises(ValueError, match=message) as refused:
            load(path)
        assert "evil.ckpt" in str(refused.value)
    with pytest.raises(ValueError, match=message):
        SafeCheckpointIO().load_checkpoint(path)  # what the Trainer resumes and tests through
    with pytest.raises(ValueError, match=message):
        export(path, tmp_path / "exported", "int8")
    assert not witness.exists() and not (tmp_path / "exported").exists()


def test_a_pickled_object_is_refused_unrun(trained, tmp_path, witness):
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    checkpoint["languages"] = Pickled(witness)
    torch.save(checkpoint, tmp_path / "pickled.ckpt")
    for load in (read_checkpoint, Translator.from_checkpoint, SafeCheckpointIO().load_checkpoint):
        with pytest.raises(ValueError, match=r"pickled.ckpt holds a pickled object \(posix.system\)"):
            load(tmp_path / "pickled.ckpt")
    assert not witness.exists()


def test_the_cli_refuses_a_hostile_ckpt_path_before_lightning_reads_it(trained, tiny_corpus, tmp_path, witness):
    """`translate test|fit --ckpt_path` (LightningCLI puts a checkpoint's `_class_path` into the config)."""
    path = hostile(trained, tmp_path, "evil.ckpt", hyper_parameters={"_class_path": f"{EVIL_MODULE}.Evil"})
    args = cli_args("transformer", tiny_corpus, tmp_path / "cache")
    for command in ("test", "fit"):
        with pytest.raises(ValueError, match="'_class_path'"):
            run_cli(command, *args, f"--ckpt_path={path}")
    assert not witness.exists()


def test_the_registry_names_exactly_the_three_models():
    named = {f"{m}.{c}" for c, m in MODEL_CLASSES.items()}
    assert named == {f"{c.__module__}.{c.__qualname__}" for c in (GRUSeq2Seq, BahdanauSeq2Seq, TransformerSeq2Seq)}


EXPORTED_CASES = {
    "foreign field": (lambda m: {**m, "class_path": "subprocess.run"}, "not the fields"),
    "wrong type": (lambda m: {**m, "parameters": "many"}, "parameters is 'many'"),
    "foreign architecture": (lambda m: {**m, "architecture": "subprocess.run"}, "was never exported"),
    "foreign decoding": (lambda m: {**m, "decoding": {**m["decoding"], "shell": 1}}, r"decoding has \['shell'\]"),
    "foreign languages": (lambda m: {**m, "languages": "de"}, "languages is 'de'"),
    "not json": (None, "is not JSON"),
}


@pytest.mark.parametrize("case", EXPORTED_CASES)
def test_hostile_exported_models_are_refused_by_field(trained, tmp_path, case):
    out = export(trained, tmp_path / "exported", "int8")
    change, message = EXPORTED_CASES[case]
    metadata = json.loads((out / "translate.json").read_text())
    (out / "translate.json").write_text("{" * 100_000 if change is None else json.dumps(change(metadata)))
    with pytest.raises(ValueError, match=message):
        Translator.from_checkpoint(out)
