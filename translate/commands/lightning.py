"""`translate fit|validate|test|predict`: a LightningCLI over the three models and the shared datamodule, with
the decoding settings as a section of their own and checkpoints checked before Lightning reads them."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from translate.checkpoints import SafeCheckpointIO, check_resume, read_checkpoint
from translate.data import TranslationDataModule
from translate.models import Seq2SeqModule
from translate.records import datamodule_test_set, model_identity, record_folder, write_record
from translate.search import Decoding


class TranslateCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the model's vocabulary comes from the datamodule's tokenizer, never from a number in a config
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.pad_id", "model.init_args.pad_id", apply_on="instantiate")
        # how to decode is no model argument: with --ckpt_path the config's and the command line's apply
        parser.add_class_arguments(Decoding, "decoding")

    def parse_arguments(self, parser: LightningArgumentParser, args: list[str] | None) -> None:
        """Parse `args` (None: the command line; cli.py passes the arguments after `translate`, so Lightning's
        warning about args given beside a command line does not apply), then check a --ckpt_path file before
        Lightning reads its hyper-parameters into the config: a checkpoint names no class or argument that is not
        a translate model's (checkpoints.py)."""
        self.config = parser.parse_args(args)
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path") if self.config.get("subcommand") else None
        if ckpt_path and Path(ckpt_path).is_file():
            read_checkpoint(ckpt_path)

    def before_fit(self) -> None:
        """Resume only what exists, and never write a new run into a folder of another run's checkpoints. A smoke
        run (fast_dev_run) writes no checkpoint, as Lightning documents (its ModelCheckpoint would save last.ckpt)."""
        if self.trainer.fast_dev_run:
            self.trainer.callbacks = [cb for cb in self.trainer.callbacks if not isinstance(cb, ModelCheckpoint)]
        folders = sorted({Path(cb.dirpath) for cb in self.trainer.checkpoint_callbacks if cb.dirpath})
        check_resume(folders, self.config.fit.ckpt_path)

    def after_instantiate_classes(self) -> None:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        self.model.attach(decoding=config.decoding)

    def after_test(self) -> None:
        """`translate test` writes the evaluation record of its test loop's translations beside its logs."""
        model, trainer = self.model, self.trainer
        logs = Path(trainer.log_dir or ".")  # a collective call under DDP: every rank makes it
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        path = trainer.ckpt_path
        checkpoint = read_checkpoint(path) if path else in_memory(model, trainer)
        identity, test_set = model_identity(model, checkpoint, path), datamodule_test_set(self.datamodule, "test")
        decoding = {**asdict(model.decoding), "split_sentences": False}
        folder = record_folder(logs, identity, test_set, decoding)
        record = write_record(folder, identity, test_set, decoding, model.test_translations, model.test_seconds)
        print(f"test: BLEU = {record['scores']['bleu']:.2f}, evaluation record: {folder}")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The configured Trainer, saving checkpoints atomically and loading them checked (SafeCheckpointIO)
        unless the config chose another CheckpointIO."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = SafeCheckpointIO()
        return trainer


def in_memory(model: Seq2SeqModule, trainer: Trainer) -> dict:
    """What a checkpoint of the model as it is now would hold, for its identity."""
    return {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "run": model.run,
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
    }


def cli(args: list[str] | None = None, run: bool = True) -> TranslateCLI:
    """Run the CLI on `args` (default: the command line) and return it; with `run` False, only
    instantiate the trainer, model and datamodule of a config."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return TranslateCLI(
        Seq2SeqModule,
        TranslationDataModule,
        subclass_mode_model=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
    )


def fit(argv: list[str]) -> None:
    """`translate fit ARGUMENTS`: train a model from a config."""
    cli(["fit", *argv])


def validate(argv: list[str]) -> None:
    """`translate validate ARGUMENTS`: loss, perplexity and greedy BLEU on the validation split."""
    cli(["validate", *argv])


def test(argv: list[str]) -> None:
    """`translate test ARGUMENTS`: beam search on the test split, scored into an evaluation record."""
    cli(["test", *argv])


def predict(argv: list[str]) -> None:
    """`translate predict ARGUMENTS`: translate the datamodule's predict_split."""
    cli(["predict", *argv])
