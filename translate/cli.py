"""The `translate` command: LightningCLI over the three models and the shared datamodule, plus
commands that work with checkpoints (`translate --help` lists them all)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
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
    best_checkpoint,
    check_resume,
    finished,
    read_checkpoint,
)
from translate.commands.generate import generate
from translate.data import TranslationDataModule, join_runs
from translate.export import QUANTIZATIONS, is_exported
from translate.export import export as export_model
from translate.models import Seq2SeqModule
from translate.report import (
    N_BOOTSTRAP,
    Entry,
    build_long_report,
    build_report,
    check_writable,
    joined_texts,
    kept_hypotheses,
    merge_reports,
    pair_tests,
    reported_bleu,
    summary_figures,
    update_readme,
    write_report,
)
from translate.search import Decoding
from translate.serve import create_app
from translate.translator import Translator

log = logging.getLogger(__name__)

SUBCOMMANDS = {
    "fit": "train a model from a config (translate fit --config configs/transformer.yaml)",
    "validate": "loss, perplexity and greedy BLEU of a checkpoint on the validation split",
    "test": "decode the test split with beam search and score it with sacreBLEU",
    "predict": "translate the datamodule's predict_split into <split>_predictions.txt",
    "generate": "translate a text file or stdin with a checkpoint, one line per line",
    "leaderboard": "train the configs that have no checkpoint, decode the test split with each, write the report",
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

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The configured Trainer, saving checkpoints atomically and loading them checked (SafeCheckpointIO)
        unless the config chose another CheckpointIO."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = SafeCheckpointIO()
        return trainer


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
    parser.add_argument("--report", type=Path, default=Path("reports/leaderboard.json"), help="its test BLEU")
    parser.add_argument("--force", action="store_true", help="replace --output if it exists")
    args = parser.parse_args(argv)
    Decoding(alpha=args.alpha)  # refused before loading anything
    bleu = reported_bleu(previous_report(args.report), args.checkpoint) if args.report.is_file() else None
    written = export_model(args.checkpoint, args.output, args.quantization, args.alpha, bleu, args.force)
    known = f"test BLEU {bleu}" if bleu is not None else f"no test BLEU in {args.report}"
    print(f"wrote {written} ({args.quantization}, {known})")


CONFIGS = ("gru", "bahdanau", "transformer")  # the generations, in order
LONG = ("gru_unidirectional", "gru", "bahdanau", "transformer")  # configs/long/: trained on joined sentences


def config_names(configs: list[Path]) -> list[str]:
    """The models' names: the configs' file names, or where two share one, FOLDER/NAME (a config
    directly in configs/ keeps its plain name)."""
    stems = [config.stem for config in configs]
    if len(set(stems)) == len(stems):
        return stems
    names = [c.stem if c.parent.name in ("configs", "") else f"{c.parent.name}/{c.stem}" for c in configs]
    if len(set(names)) < len(names):
        raise ValueError(f"--configs need distinct names (they name the models): {[str(c) for c in configs]}")
    return names


def leaderboard_arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The leaderboard's own arguments, checked; the rest are overrides for every config."""
    parser = argparse.ArgumentParser(prog="translate leaderboard", description=leaderboard.__doc__)
    parser.add_argument("--configs", nargs="+", type=Path, help="default: configs/{gru,bahdanau,transformer}.yaml")
    parser.add_argument("--quick", action="store_true", help="smoke run: configs/quick/, reports/quick, minutes")
    parser.add_argument(
        "--long",
        action="store_true",
        help="long-input report: configs/long/ and configs/, test joined k = 1..8, reports/long",
    )
    parser.add_argument("--joined", type=int, help="test on the test split joined in runs of k = 1..JOINED sentences")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="use this checkpoint")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="decode only these models; the other models' rows are kept from the report already in --out (if any)",
    )
    parser.add_argument("--out", type=Path, help="report directory (default: reports, or reports/quick)")
    parser.add_argument("--readme", type=Path, help="also rewrite this README's leaderboard block")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--alpha", type=float, help="GNMT length penalty exponent (default: each config's)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="source tokens per decoding batch")
    parser.add_argument(
        "--heatmaps", type=int, default=2, help="attention heatmaps of the longest test sentences (not with --joined)"
    )
    parser.add_argument("--device", default="auto")
    args, overrides = parser.parse_known_args(argv)
    Decoding(beam_size=args.beam_size, alpha=0.0 if args.alpha is None else args.alpha)  # refused before training
    if args.quick and args.long:
        raise ValueError("--quick and --long are two different reports: choose one")
    if args.joined is not None and args.joined < 1:
        raise ValueError(f"--joined must be at least 1 (sentences per run), got {args.joined}")
    standard = [Path("configs/quick" if args.quick else "configs") / f"{name}.yaml" for name in CONFIGS]
    long = [Path("configs/long") / f"{name}.yaml" for name in LONG] + standard
    args.configs = args.configs or (long if args.long else standard)
    args.joined = args.joined or (8 if args.long else None)
    args.out = args.out or Path("reports/quick" if args.quick else "reports/long" if args.joined else "reports")
    check_selection(args, config_names(args.configs))
    missing = [str(config) for config in args.configs if not config.is_file()]
    if missing:
        raise FileNotFoundError(f"config {missing[0]} does not exist")
    return args, overrides


def named_checkpoints(items: list[str]) -> dict[str, str]:
    """--checkpoint NAME=PATH arguments as a dict."""
    malformed = [item for item in items if not all(item.partition("=")[::2])]
    if malformed:
        raise ValueError(f"--checkpoint expects NAME=PATH (e.g. transformer=last.ckpt), got {malformed}")
    return dict(item.split("=", 1) for item in items)


def check_selection(args: argparse.Namespace, stems: list[str]) -> None:
    """Check --checkpoint (parsed into a dict) and --only against the configs' model names."""
    args.checkpoint = named_checkpoints(args.checkpoint)
    unknown = set(args.checkpoint) - set(stems)
    if unknown:
        raise ValueError(f"--checkpoint names {sorted(unknown)}, but the configs are {stems}")
    unknown = set(args.only or []) - set(stems)
    if unknown:
        raise ValueError(f"--only names {sorted(unknown)}, but the configs are {stems}")
    unused = set(args.checkpoint) - set(args.only or stems)
    if unused:
        raise ValueError(f"--checkpoint names {sorted(unused)}, which --only leaves out")


def leaderboard_entry(
    config: Path, name: str, overrides: list[str], checkpoint: str | None
) -> tuple[Entry, TranslateCLI]:
    """The entry of one config: the given checkpoint, else the best of its finished run, trained first if there
    is none (or resumed, if its run was cut off)."""
    parsed = cli(["--config", str(config), *overrides], run=False)
    callback = parsed.trainer.checkpoint_callback
    if callback is None or callback.dirpath is None:
        raise ValueError(f"config {config} has no ModelCheckpoint callback with a dirpath to keep its checkpoints")
    directory, last = Path(callback.dirpath), Path(callback.dirpath) / "last.ckpt"
    if checkpoint is None and not finished(last):
        resume = ["--ckpt_path", "last"] if last.is_file() else []
        log.info("%s: %s in %s", name, "resuming the unfinished run" if resume else "no checkpoint", directory)
        cli(["fit", "--config", str(config), *overrides, *resume])
        if not finished(last):
            raise RuntimeError(f"training {config} ended without a finished last.ckpt in {directory}")
    checkpoint = checkpoint or best_checkpoint(directory)
    return Entry(name, Path(checkpoint), parsed.model.decoding.alpha), parsed


def leaderboard(argv: list[str]) -> None:
    """Train every config that has no checkpoint yet, decode the test split with each model and write
    the leaderboard report (with --joined/--long, of the test split joined in runs of 1..K sentences).
    Other arguments (``--data.dataset``, ``--trainer.max_epochs``, ...) apply to every config, as in
    `translate fit`."""
    args, overrides = leaderboard_arguments(argv)
    check_writable(args.out)
    entries, data, names = [], None, config_names(args.configs)
    for config, name in zip(args.configs, names, strict=True):
        if args.only and name not in args.only:
            continue
        entry, parsed = leaderboard_entry(config, name, overrides, args.checkpoint.get(name))
        dm = parsed.datamodule
        joined = dm.eval_join > 1 and not args.joined  # --joined joins the single sentences itself
        split = f"test, runs of {dm.eval_join} sentences" if joined else "test"  # as `translate test` reads it
        described = {"dataset": dm.dataset, "split": split, "languages": [dm.src_lang, dm.tgt_lang]}
        if data is not None and described != data:
            raise ValueError(f"config {config} tests on {described}, the previous ones on {data}")
        data = described
        entries.append(entry)
    settings = {"beam_size": args.beam_size, "alpha": args.alpha, "max_tokens": args.max_tokens, "device": args.device}
    settings["smoke"] = args.quick
    if args.joined:
        single = TranslationDataModule(
            dm.dataset, dm.dataset_config, dm.src_lang, dm.tgt_lang, cache_dir=str(dm.cache_dir)
        )
        runs = {k: join_runs(single.texts["test"], k, "test") for k in range(1, args.joined + 1)}
        sets = {k: (run["src"], run["tgt"]) for k, run in runs.items()}
        report, figures = build_long_report(entries, sets, data, **settings)
    else:
        sources, references = dm.sources("test"), dm.references("test")
        report, figures = build_report(entries, sources, references, data, heatmaps=args.heatmaps, **settings)
    if args.only and (args.out / "leaderboard.json").is_file():
        report = merge_reports(previous_report(args.out / "leaderboard.json"), report, names)
        tested = joined_texts(sets)[1] if args.joined else references
        pair_tests(report["models"], kept_hypotheses(report, figures, args.out), tested, N_BOOTSTRAP)
        figures |= summary_figures(report)
    log.info("leaderboard: %s", write_report(report, figures, args.out))
    if args.readme:
        update_readme(args.readme, report, f"{args.out.as_posix()}/", block="long" if args.joined else "leaderboard")


def previous_report(path: Path) -> dict:
    """The report already at `path`, which --only adds to."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a leaderboard report ({e}): move it away, or rerun without --only") from e


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
    report = previous_report(args.report) if args.report.is_file() else {}
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


def main() -> None:
    commands = {"average": average, "export": export, "generate": generate, "leaderboard": leaderboard, "serve": serve}
    if sys.argv[1:2] and sys.argv[1] in commands:
        commands[sys.argv[1]](sys.argv[2:])
    elif sys.argv[1:2] in ([], ["-h"], ["--help"]):
        print(usage())
    else:
        cli()


if __name__ == "__main__":
    main()
