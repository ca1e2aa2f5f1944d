"""The learning-rate schedules (models/schedule.py): warm-up, linear decay by steps or by time, fitted to the run."""

import datetime
import itertools

import lightning as L
import pytest
from lightning.pytorch.callbacks import Timer

from conftest import cli_args, quiet_trainer, run_cli, tiny_model


class RecordLr(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, *args) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_linear_schedule_warms_up_then_falls_to_zero_at_the_last_step(tiny_dm):
    model = tiny_model("gru", tiny_dm.vocab_size, lr=1e-3, scheduler="linear", warmup_steps=3)
    record = RecordLr()
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[record]
    )
    trainer.fit(model, tiny_dm)
    lrs, total = record.lrs, trainer.global_step
    assert len(lrs) == total == trainer.estimated_stepping_batches > 6
    assert lrs[:3] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])
    assert all(a > b for a, b in itertools.pairwise(lrs[2:]))  # falls every step after the warm-up
    assert lrs[-1] == pytest.approx(1e-3 / (total - 2))  # one step's worth above zero


class StepClock(Timer):
    """Lightning's Timer (what `max_time` sets up) on a clock that advances one second per training step."""

    def __init__(self, seconds: int) -> None:
        super().__init__(duration=datetime.timedelta(seconds=seconds))
        self.steps = 0

    def time_elapsed(self, stage: str = "train") -> float:
        return float(self.steps)

    def on_train_batch_end(self, trainer, *args) -> None:
        self.steps += 1
        super().on_train_batch_end(trainer, *args)


def test_linear_schedule_falls_to_zero_by_max_time_when_the_epochs_would_outlast_it(tiny_dm):
    model = tiny_model("gru", tiny_dm.vocab_size, lr=1e-3, scheduler="linear", warmup_steps=1)
    record = RecordLr()
    trainer = L.Trainer(
        max_epochs=1000,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[record, StepClock(seconds=12)],  # 12 steps of time, far fewer than the epochs' steps
    )
    trainer.fit(model, tiny_dm)
    assert trainer.global_step == 12 < trainer.estimated_stepping_batches / 100
    # from the third step on, the rate is what was left of the time after the step before
    assert record.lrs[2:] == pytest.approx([1e-3 * (13 - k) / 12 for k in range(2, 12)])


def test_linear_schedule_refuses_an_open_ended_run(tiny_dm):
    model = tiny_model("gru", tiny_dm.vocab_size, scheduler="linear")
    trainer = L.Trainer(max_epochs=-1, max_time="00:00:00:05", logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="linear.*max_epochs"):
        trainer.fit(model, tiny_dm)


def test_linear_schedule_fits_a_warm_up_longer_than_the_run_to_half_of_it_and_warns(tiny_dm):
    model = tiny_model("gru", tiny_dm.vocab_size, lr=1e-3, scheduler="linear", warmup_steps=1000)
    record = RecordLr()
    trainer = quiet_trainer(6, callbacks=[record])
    with pytest.warns(UserWarning, match="warms up over 1000 steps but the run has only 6: warming up over 3 steps"):
        trainer.fit(model, tiny_dm)
    assert trainer.global_step == 6 and model.hparams.warmup_steps == 1000  # the checkpoint keeps the config's
    assert record.lrs == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 0.75e-3, 0.5e-3, 0.25e-3])


def test_a_quick_try_of_the_transformer_config_trains_and_warns(tiny_corpus, tmp_path, monkeypatch):
    """`translate fit --config configs/transformer.yaml --trainer.limit_train_batches 3`: its 1000 warm-up steps
    (a full run's) are cut to half of the 15 epochs x 3 batches."""
    monkeypatch.chdir(tmp_path)
    args = [*cli_args("transformer", tiny_corpus, tmp_path / "cache"), "--model.init_args.warmup_steps=1000"]
    with pytest.warns(UserWarning, match="warms up over 1000 steps but the run has only 45: warming up over 22"):
        run_cli("fit", *args, "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=0")
    assert (tmp_path / "checkpoints/transformer/last.ckpt").exists()


def test_linear_schedule_lets_a_fast_dev_run_through_at_its_first_warm_up_step(tiny_dm):
    model = tiny_model("gru", tiny_dm.vocab_size, lr=1e-3, scheduler="linear", warmup_steps=1000)
    record = RecordLr()
    trainer = L.Trainer(fast_dev_run=True, logger=False, enable_progress_bar=False, callbacks=[record])
    trainer.fit(model, tiny_dm)
    assert record.lrs == pytest.approx([1e-3 / 1000])
