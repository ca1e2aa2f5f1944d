"""The `translate` command: LightningCLI over the three models and the shared datamodule, plus
commands that work with checkpoints (`translate --help` lists them all)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import uvicorn
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from translate.checkpoints import (
    LEGACY,
    SafeCheckpointIO,
    average_checkpoints,
    check_resume,
    read_checkpoint,
)
from translate.data import TranslationDataModule
from translate.export import QUANTIZATIONS, is_exported
from translate.export import export as export_model
from translate.models import Seq2SeqModule
from translate.records import datamodule_test_set, model_identity, record_folder, recorded_bleu, write_record
from translate.report import read_report
from translate.search import Decoding
from translate.serve import create_app
from translate.translator import Translator

log = logging.getLogger(__name__)

SUBCOMMANDS = {
    "fit": "train a model from a config (translate fit --config configs/transformer.yaml)",
    "validate": "loss, perplexity and greedy BLEU of a checkpoint on the validation split",
    "test": "decode the test split with beam search, score it with sacreBLEU, write its evaluation record",
    "predict": "translate the datamodule's predict_split into <split>_predictions.txt",
    "generate": "translate a text file or stdin with a checkpoint, one line per line",
    "evaluate": "score a checkpoint on a test set (a split, joined runs of one, or a file) into an evaluation record",
    "leaderboard": "train the configs that have no finished run, evaluate each into a record, render the report",
    "average": "write a checkpoint whose weights are the mean of several checkpoints of one run",
    "export": "write a Transformer checkpoint as a CTranslate2 model (int8/int16/float32) for fast CPU decoding",
    "serve": "an HTTP API and a page that shows the models side by side (translate serve --port 8000)",
}


class TranslateCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the model's vocabulary comes from the datamodule's tokenizer, never from a number in a config
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.pad_id", "model.init_args.pad_id", apply_on="instantiate")
        # how to decode is no model argument: with --ckpt_path the config's and the command line's apply
        parser.add_class_arguments(Decoding, "decoding")

    def parse_arguments(self, parser: LightningArgumentParser, args: object) -> None:
        """Parse, then check a --ckpt_path file before Lightning reads its hyper-parameters into the config:
        a checkpoint names no class or argument that is not a translate model's (checkpoints.py)."""
        super().parse_arguments(parser, args)
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

    def before_instantiate_classes(self) -> None:
        """With --ckpt_path Lightning passes the checkpoint's hyper-parameters to the model; those of
        checkpoints written before decoding had a section of its own (checkpoints.LEGACY) are dropped."""
        model = (self.config[self.subcommand] if self.subcommand else self.config).model
        for key in ("init_args", "dict_kwargs"):
            arguments = model.get(key)
            for name in LEGACY:
                if arguments and name in arguments:
                    del arguments[name]

    def after_instantiate_classes(self) -> None:
        self.model.decoding = (self.config_init[self.subcommand] if self.subcommand else self.config_init).decoding

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

    def instantiate_trainer(self, **kwargs) -> Trainer:
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


def average(argv: list[str]) -> None:
    """Write a checkpoint whose weights are the mean of several checkpoints of one model."""
    parser = argparse.ArgumentParser(prog="translate average", description=average.__doc__)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="checkpoints of one training run")
    parser.add_argument("--output", type=Path, required=True, help="the averaged checkpoint")
    args = parser.parse_args(argv)
    if args.output.resolve() in {Path(path).resolve() for path in args.checkpoints}:
        raise ValueError(f"--output {args.output} is one of the checkpoints: it would be overwritten")
    SafeCheckpointIO().save_checkpoint(average_checkpoints(args.checkpoints), args.output)


def export(argv: list[str]) -> None:
    """Write a Transformer checkpoint as a CTranslate2 model directory, which `generate`, `serve` and
    Translator.from_checkpoint decode with CTranslate2."""
    parser = argparse.ArgumentParser(prog="translate export", description=export.__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a Transformer checkpoint of `translate fit`")
    parser.add_argument("--output", type=Path, required=True, help="the model directory to write")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="int8", help="weight type (default: int8)")
    parser.add_argument(
        "--alpha", type=float, default=1.0, help="CTranslate2 length penalty, score / length**alpha (default: 1.0)"
    )
    parser.add_argument("--records", type=Path, default=Path("reports/records"), help="its test BLEU, if evaluated")
    parser.add_argument("--force", action="store_true", help="replace --output if it exists")
    args = parser.parse_args(argv)
    Decoding(alpha=args.alpha)  # refused before loading anything
    bleu = recorded_bleu(args.records, args.checkpoint)
    written = export_model(args.checkpoint, args.output, args.quantization, args.alpha, bleu, args.force)
    known = f"test BLEU {bleu}" if bleu is not None else f"no test BLEU in {args.records}"
    print(f"wrote {written} ({args.quantization}, {known})")


def named_checkpoints(items: list[str]) -> dict[str, str]:
    """--checkpoint NAME=PATH arguments as a dict."""
    malformed = [item for item in items if not all(item.partition("=")[::2])]
    if malformed:
        raise ValueError(f"--checkpoint expects NAME=PATH (e.g. transformer=last.ckpt), got {malformed}")
    return dict(item.split("=", 1) for item in items)


def serve(argv: list[str]) -> None:
    """Serve checkpoints over HTTP: POST /translate, GET /models, /health and a page at / that shows
    the models side by side. Limits and what is guaranteed: translate/serve.py."""
    from translate.serve import Limits, Server  # here: the rest of this module needs neither

    parser = argparse.ArgumentParser(prog="translate serve", description=serve.__doc__)
    parser.add_argument(
        "--checkpoint", action="append", default=[], metavar="NAME=PATH", help="default: the report's models"
    )
    parser.add_argument("--report", type=Path, default=Path("reports/leaderboard.json"), help="test BLEU, figures")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=int, default=16, help="requests a model translates together, at most")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--queue", type=int, default=Limits.queue, help="requests waiting per model (more: 503)")
    parser.add_argument("--deadline", type=float, default=Limits.deadline_seconds, help="seconds to answer (504)")
    parser.add_argument(
        "--max-connections", type=int, default=256, help="open connections, at most (more: uvicorn answers 503)"
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=Limits.shutdown_seconds,
        help="seconds queued work gets to finish on shutdown (the rest: 503)",
    )
    args = parser.parse_args(argv)
    for option in ("max_batch", "queue", "max_connections"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    if not args.deadline > 0 or not args.shutdown_timeout >= 0:
        raise ValueError(
            f"--deadline must be over 0 and --shutdown-timeout at least 0, got {args.deadline}, {args.shutdown_timeout}"
        )
    report = read_report(args.report) if args.report.is_file() else {}
    checkpoints = named_checkpoints(args.checkpoint) or {m["name"]: m["checkpoint"] for m in report.get("models", [])}
    if not checkpoints:
        raise ValueError(f"no --checkpoint NAME=PATH given, and no report at {args.report} to take them from")
    missing = {name: path for name, path in checkpoints.items() if not (Path(path).is_file() or is_exported(path))}
    if missing:
        raise FileNotFoundError(f"checkpoints not found: {missing} (train them, or pass --checkpoint NAME=PATH)")
    models = {name: (Path(path), Translator.from_checkpoint(path, args.device)) for name, path in checkpoints.items()}
    limits = Limits(queue=args.queue, deadline_seconds=args.deadline, shutdown_seconds=args.shutdown_timeout)
    app = create_app(models, report, args.report.parent, args.max_batch, limits)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        limit_concurrency=args.max_connections,
        timeout_graceful_shutdown=args.shutdown_timeout + 1,  # the second more writes the drain's 503s
    )
    Server(config).run()


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items()]
    return "\n".join(
        [
            "usage: translate SUBCOMMAND [ARGUMENTS]",
            "",
            "subcommands:",
            *lines,
            "",
            "`translate SUBCOMMAND --help` lists a subcommand's arguments.",
        ]
    )


COMMANDS = {
    "evaluate": "translate.commands.evaluate",
    "generate": "translate.commands.generate",
    "leaderboard": "translate.commands.leaderboard",
}  # a module each, imported when run


def main() -> None:
    commands = {"average": average, "export": export, "serve": serve}
    if sys.argv[1:2] and sys.argv[1] in COMMANDS:
        name = sys.argv[1]
        getattr(importlib.import_module(COMMANDS[name]), name)(sys.argv[2:])
    elif sys.argv[1:2] and sys.argv[1] in commands:
        commands[sys.argv[1]](sys.argv[2:])
    elif sys.argv[1:2] in ([], ["-h"], ["--help"]):
        print(usage())
    else:
        cli()


if __name__ == "__main__":
    main()
