"""Callbacks for crash tests: kill the training process with SIGKILL after a given step; record the first step."""

import os
import signal
from pathlib import Path

import lightning as L


class KillAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordFirstStep(L.Callback):
    """Writes the global step at which this process trains its first batch to `path`."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if not self.path.exists():
            self.path.write_text(str(trainer.global_step))
