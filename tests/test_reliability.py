"""Crash and resume, atomic checkpoints, two-process DDP, determinism: real `translate` processes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import translate.files
from translate.cli import cli
from translate.data import TranslationDataModule
from translate.files import AtomicCheckpointIO

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


def final_val_loss(folder: Path) -> float:
    """The last val/loss the CSV logger recorded (a resumed run logs into a new version folder)."""
    files = sorted(folder.glob("logs/tiny/version_*/metrics.csv"))
    rows = [row for path in files for row in csv.DictReader(path.open())]
    return float([row for row in rows if row.get("val/loss")][-1]["val/loss"])


@pytest.fixture(scope="module")
def epoch_batches(tiny_corpus, tmp_path_factory) -> int:
    cache = tmp_path_factory.mktemp("cache")
    dm = TranslationDataModule(str(tiny_corpus), cache_dir=str(cache), vocab_size=400, max_tokens=512)
    dm.setup("fit")
    return len(dm.train_dataloader())


def test_sigkill_mid_epoch_then_resume_ends_like_an_uninterrupted_run(tiny_corpus, tmp_path, epoch_batches):
    every = epoch_batches + 2  # the step checkpoint falls inside the second epoch
    steps = 3 * epoch_batches
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    uninterrupted = run_translate(straight, "fit", f"--config={write_config(straight, tiny_corpus, steps, every)}")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    config = write_config(crashed, tiny_corpus, steps, every)
    kill = json.dumps({"class_path": "killer.KillAtStep", "init_args": {"step": every + 1}})
    killed = run_translate(crashed, "fit", f"--config={config}", f"--trainer.callbacks+={kill}")
    assert killed.returncode == -9  # really SIGKILLed
    saved = torch.load(crashed / "checkpoints/last.ckpt", weights_only=False)
    assert saved["global_step"] == every
    assert saved["TranslationDataModule"] == {"epoch": 1, "batches_done": 2}  # mid-epoch

    resumed = run_translate(crashed, "fit", f"--config={config}", "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert final_val_loss(crashed) == pytest.approx(final_val_loss(straight), abs=1e-4)


def test_same_seed_same_weights_and_bleu(tiny_corpus, tmp_path):
    results = []
    for run in ("a", "b"):
        folder = tmp_path / run
        config = write_config(folder, tiny_corpus, max_steps=30)
        assert run_translate(folder, "fit", f"--config={config}").returncode == 0
        tested = run_translate(folder, "test", f"--config={config}", "--ckpt_path=checkpoints/last.ckpt")
        assert tested.returncode == 0, tested.stderr[-3000:]
        weights = torch.load(folder / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
        (result,) = folder.glob("logs/tiny/version_*/test_results.json")
        results.append((weights, json.loads(result.read_text())["bleu"]))
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
    (result,) = tmp_path.glob("logs/tiny/version_*/test_results.json")
    assert json.loads(result.read_text())["sentences"] == 50


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint_io = AtomicCheckpointIO()
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
    assert isinstance(parsed.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
