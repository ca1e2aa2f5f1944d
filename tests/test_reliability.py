"""Crash and resume, atomic checkpoints, two-process DDP, determinism: real `translate` processes."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import translate.files
from conftest import cli_args
from translate.checkpoints import SafeCheckpointIO, average_checkpoints
from translate.commands.lightning import cli
from translate.data import TranslationDataModule

TESTS = Path(__file__).parent

CONFIG = """
seed_everything: 7
trainer:
  max_steps: {max_steps}
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: logs, name: tiny}}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: checkpoints, every_n_train_steps: {every}, save_top_k: 0, save_last: true}}
model:
  class_path: translate.models.TransformerSeq2Seq
  init_args: {{d_model: 32, heads: 2, ff_dim: 64, encoder_layers: 1, decoder_layers: 1, dropout: 0.2, lr: 0.003}}
data:
  dataset: {corpus}
  cache_dir: {cache}
  vocab_size: 400
  max_tokens: 512
"""


def write_config(folder: Path, corpus: Path, max_steps: int, every: int = 1000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    cache = folder.parent / "cache"
    path.write_text(CONFIG.format(max_steps=max_steps, every=every, corpus=corpus, cache=cache))
    return path


def run_translate(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`translate ARGS` in a fresh process in `folder` (tests/ on the path for the crash callback)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "translate.cli", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def final_val_loss(folder: Path, name: str = "tiny") -> float:
    """The last val/loss the CSV logger recorded (a resumed run logs into a new version folder)."""
    files = sorted(folder.glob(f"logs/{name}/version_*/metrics.csv"), key=lambda path: int(path.parent.name[8:]))
    rows = [row for path in files for row in csv.DictReader(path.open())]
    return float([row for row in rows if row.get("val/loss")][-1]["val/loss"])


@pytest.fixture(scope="module")
def epoch_batches(tiny_corpus, tmp_path_factory) -> int:
    cache = tmp_path_factory.mktemp("cache")
    dm = TranslationDataModule(str(tiny_corpus), cache_dir=str(cache), vocab_size=400, max_tokens=512)
    dm.setup("fit")
    return len(dm.train_dataloader())


def committed(name: str, corpus: Path, folder: Path, epochs: int) -> list[str]:
    """The committed config of `name` (its schedule, its two checkpoint callbacks) on the tiny task, tiny."""
    return [*cli_args(name, corpus, folder.parent / "cache"), f"--trainer.max_epochs={epochs}"]


def callback(name: str, **init_args) -> str:
    return f"--trainer.callbacks+={json.dumps({'class_path': f'killer.{name}', 'init_args': init_args})}"


@pytest.mark.parametrize("name", ["gru", "transformer"])  # the plateau and the linear schedule
def test_sigkill_then_resume_continues_where_the_run_stopped(name, tiny_corpus, tmp_path, epoch_batches):
    """The committed config is killed (SIGKILL) two steps after its 50-step checkpoint; the same command with
    --ckpt_path last trains on from the saved step, and ends at the uninterrupted run's step and loss."""
    epochs, kill = math.ceil(55 / epoch_batches) + 1, 52  # more than 52 steps
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    straight.mkdir(), crashed.mkdir()
    uninterrupted = run_translate(straight, "fit", *committed(name, tiny_corpus, straight, epochs))
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    args = committed(name, tiny_corpus, crashed, epochs)
    killed = run_translate(crashed, "fit", *args, callback("KillAtStep", step=kill))
    assert killed.returncode == -9  # really SIGKILLed
    saved = torch.load(crashed / f"checkpoints/{name}/last.ckpt", weights_only=True)
    assert 50 <= saved["global_step"] < kill and not saved["finished"]
    assert saved["TranslationDataModule"]["batches_done"] > 0  # mid-epoch

    first = crashed / "first_step.txt"
    resumed = run_translate(crashed, "fit", *args, "--ckpt_path=last", callback("RecordFirstStep", path=str(first)))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert int(first.read_text()) == saved["global_step"]  # it went on from the checkpoint, not from step 0
    ends = [torch.load(run / f"checkpoints/{name}/last.ckpt", weights_only=True) for run in (straight, crashed)]
    assert ends[0]["global_step"] == ends[1]["global_step"] > kill and ends[0]["epoch"] == ends[1]["epoch"]
    assert ends[0]["finished"] and ends[1]["finished"] and ends[0]["run"] != ends[1]["run"] == saved["run"]
    assert final_val_loss(crashed, name) == pytest.approx(final_val_loss(straight, name), abs=1e-4)


def test_resume_refuses_what_would_lie(tiny_corpus, tmp_path, epoch_batches):
    """--ckpt_path last with nothing to resume, a new run over another's checkpoints, and resuming one
    run into the folder of another are errors; averaging two runs' checkpoints too."""
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        trained = run_translate(folder, "fit", *committed("gru", tiny_corpus, folder, 1))
        assert trained.returncode == 0, trained.stderr[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run_translate(empty, "fit", *committed("gru", tiny_corpus, empty, 1), "--ckpt_path=last")
    assert nothing.returncode != 0 and "empty/checkpoints/gru, so nothing to resume" in nothing.stderr
    again = run_translate(one, "fit", *committed("gru", tiny_corpus, one, 1))
    assert again.returncode != 0 and "checkpoints/gru holds checkpoints of an earlier run" in again.stderr
    other = f"--ckpt_path={two / 'checkpoints/gru/last.ckpt'}"
    mixed = run_translate(one, "fit", *committed("gru", tiny_corpus, one, 2), other)
    assert mixed.returncode != 0 and "belongs to another run than" in mixed.stderr
    lasts = [str(folder / "checkpoints/gru/last.ckpt") for folder in (one, two)]
    with pytest.raises(ValueError, match="of another training run"):
        average_checkpoints(lasts)


def test_same_seed_same_weights_and_bleu(tiny_corpus, tmp_path):
    results = []
    for run in ("a", "b"):
        folder = tmp_path / run
        config = write_config(folder, tiny_corpus, max_steps=30)
        assert run_translate(folder, "fit", f"--config={config}").returncode == 0
        tested = run_translate(folder, "test", f"--config={config}", "--ckpt_path=checkpoints/last.ckpt")
        assert tested.returncode == 0, tested.stderr[-3000:]
        weights = torch.load(folder / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
        (result,) = folder.glob("logs/tiny/version_*/*/test/record.json")
        results.append((weights, json.loads(result.read_text())["scores"]["bleu"]))
    (weights_a, bleu_a), (weights_b, bleu_b) = results
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert bleu_a == bleu_b


def test_two_process_ddp_fit_and_test(tiny_corpus, tmp_path):
    """2-process CPU DDP: fit, then test; test BLEU covers each of the 50 test sentences exactly once."""
    config = write_config(tmp_path, tiny_corpus, max_steps=6)
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    fit = run_translate(tmp_path, "fit", f"--config={config}", *ddp)
    assert fit.returncode == 0, fit.stderr[-3000:]
    tested = run_translate(tmp_path, "test", f"--config={config}", "--ckpt_path=checkpoints/last.ckpt", *ddp)
    assert tested.returncode == 0, tested.stderr[-3000:]
    (result,) = tmp_path.glob("logs/tiny/version_*/*/test/record.json")
    assert json.loads(result.read_text())["test_set"]["sentences"] == 50


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint_io = SafeCheckpointIO()
    path = tmp_path / "last.ckpt"
    checkpoint_io.save_checkpoint({"global_step": 1}, path)
    before = path.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as `open` would make it, not mkstemp's 0600

    def crash(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(translate.files.os, "fsync", crash)
    with pytest.raises(OSError):
        checkpoint_io.save_checkpoint({"global_step": 2, "weights": torch.zeros(10_000)}, path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_the_cli_saves_checkpoints_atomically(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, tiny_corpus, max_steps=1)
    parsed = cli(["--config", str(config)], run=False)
    assert isinstance(parsed.trainer.strategy.checkpoint_io, SafeCheckpointIO)
