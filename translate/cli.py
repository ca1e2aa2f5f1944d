"""The `translate` command: LightningCLI over the three models and the shared datamodule, plus
`generate`, which translates a file or stdin with a checkpoint:

- translate fit|validate|test|predict --config configs/<model>.yaml [--trainer.* ...] [--model.* ...]
- translate generate --checkpoint checkpoints/transformer/last.ckpt [--input de.txt] [--output en.txt]
- translate leaderboard [--quick] [--data.dataset ../shared/data/multi30k] [--trainer.* ...]
- translate average --checkpoints A.ckpt B.ckpt [...] --output averaged.ckpt
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from translate.data import TranslationDataModule
from translate.files import AtomicCheckpointIO, atomic_write_bytes
from translate.models import Seq2SeqModule
from translate.report import Entry, best_checkpoint, build_report, check_writable, update_readme, write_report
from translate.translator import Translator, average_checkpoints

log = logging.getLogger(__name__)


DECODING = ("beam_size", "alpha", "max_len_ratio", "max_len_extra", "max_source_length")  # not architecture


class TranslateCLI(LightningCLI):
    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path`` Lightning replaces every model argument with the checkpoint's
        hyper-parameters. The architecture must come from there; how to decode stays what the config
        and the command line say."""
        subcommand = self.config.get("subcommand")
        given = self.config[subcommand].model.init_args if subcommand else {}
        decoding = {key: given[key] for key in DECODING if key in given}
        super()._parse_ckpt_path()
        for key, value in decoding.items():
            self.config[subcommand].model.init_args[key] = value

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the model's vocabulary comes from the datamodule's tokenizer, never from a number in a config
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.pad_id", "model.init_args.pad_id", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The configured Trainer, saving checkpoints atomically unless the config chose another CheckpointIO."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
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


def generate(argv: list[str]) -> None:
    """Translate lines of a file (or stdin) to a file (or stdout), in order, one line per line."""
    parser = argparse.ArgumentParser(prog="translate generate", description=generate.__doc__)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `translate fit`")
    parser.add_argument("--input", help="source text, one sentence a line (default: stdin)")
    parser.add_argument("--output", help="where to write translations (default: stdout)")
    parser.add_argument("--beam-size", type=int, help="default: the checkpoint's (5 unless its config says)")
    parser.add_argument("--alpha", type=float, help="GNMT length penalty exponent (default: the checkpoint's)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="source tokens per batch")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.output:
        for flag, given in (("--input", args.input), ("--checkpoint", args.checkpoint)):
            if given and Path(args.output).resolve() == Path(given).resolve():
                raise ValueError(f"--output {args.output} is the {flag} file: it would be overwritten")
    translator = Translator.from_checkpoint(args.checkpoint, args.device)
    try:
        source = Path(args.input).read_text(encoding="utf-8") if args.input else sys.stdin.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"--input {args.input or '(stdin)'} is not UTF-8 text ({e})") from e
    lines = [line.removesuffix("\r") for line in source.split("\n")]  # lines end at \n (or \r\n) only
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    outputs = translator.translate(
        lines, beam_size=args.beam_size, alpha=args.alpha, max_tokens=args.max_tokens, progress=bool(args.input)
    )
    text = "".join(line + "\n" for line in outputs)
    if args.output:
        atomic_write_bytes(Path(args.output), text.encode("utf-8"))
    else:
        sys.stdout.write(text)


def average(argv: list[str]) -> None:
    """Write a checkpoint whose weights are the mean of several checkpoints of one model."""
    parser = argparse.ArgumentParser(prog="translate average", description=average.__doc__)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="checkpoints of one training run")
    parser.add_argument("--output", type=Path, required=True, help="the averaged checkpoint")
    args = parser.parse_args(argv)
    if args.output.resolve() in {Path(path).resolve() for path in args.checkpoints}:
        raise ValueError(f"--output {args.output} is one of the checkpoints: it would be overwritten")
    AtomicCheckpointIO().save_checkpoint(average_checkpoints(args.checkpoints), args.output)


CONFIGS = ("gru", "bahdanau", "transformer")  # the generations, in order


def leaderboard(argv: list[str]) -> None:
    """Train every config that has no checkpoint yet, decode the test split with each model and write
    the leaderboard report. Other arguments (``--data.dataset``, ``--trainer.max_epochs``, ...) apply to
    every config, as in `translate fit`."""
    parser = argparse.ArgumentParser(prog="translate leaderboard", description=leaderboard.__doc__)
    parser.add_argument("--configs", nargs="+", type=Path, help="default: configs/{gru,bahdanau,transformer}.yaml")
    parser.add_argument("--quick", action="store_true", help="small models, few steps: configs/quick/, reports/quick")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="use this checkpoint")
    parser.add_argument("--out", type=Path, help="report directory (default: reports, or reports/quick)")
    parser.add_argument("--readme", type=Path, help="also rewrite this README's leaderboard block")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--alpha", type=float, help="GNMT length penalty exponent (default: each config's)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="source tokens per decoding batch")
    parser.add_argument("--heatmaps", type=int, default=2, help="attention heatmaps of the longest test sentences")
    parser.add_argument("--device", default="auto")
    args, overrides = parser.parse_known_args(argv)
    folder = Path("configs/quick" if args.quick else "configs")
    configs = args.configs or [folder / f"{name}.yaml" for name in CONFIGS]
    out = args.out or Path("reports/quick" if args.quick else "reports")
    stems = [config.stem for config in configs]
    if len(set(stems)) < len(stems):
        raise ValueError(f"--configs need distinct file names (they name the models): {[str(c) for c in configs]}")
    malformed = [item for item in args.checkpoint if not all(item.partition("=")[::2])]
    if malformed:
        raise ValueError(f"--checkpoint expects NAME=PATH (e.g. transformer=last.ckpt), got {malformed}")
    given = dict(item.split("=", 1) for item in args.checkpoint)
    unknown = set(given) - {c.stem for c in configs}
    if unknown:
        raise ValueError(f"--checkpoint names {sorted(unknown)}, but the configs are {[c.stem for c in configs]}")
    check_writable(out)

    entries, data = [], None
    for config in configs:
        if not config.is_file():
            raise FileNotFoundError(f"config {config} does not exist")
        parsed = cli(["--config", str(config), *overrides], run=False)
        dm = parsed.datamodule
        described = {"dataset": dm.dataset, "split": "test", "languages": [dm.src_lang, dm.tgt_lang]}
        if data is not None and described != data:
            raise ValueError(f"config {config} tests on {described}, the previous ones on {data}")
        data, sources, references = described, dm.sources("test"), dm.references("test")
        callback = parsed.trainer.checkpoint_callback
        if callback is None or callback.dirpath is None:
            raise ValueError(f"config {config} has no ModelCheckpoint callback with a dirpath to keep its checkpoints")
        directory = Path(callback.dirpath)
        checkpoint = given.get(config.stem) or best_checkpoint(directory)
        if checkpoint is None:
            log.info("%s: no checkpoint in %s, training it", config.stem, directory)
            cli(["fit", "--config", str(config), *overrides])
            checkpoint = best_checkpoint(directory)
            if checkpoint is None:
                raise RuntimeError(f"training {config} wrote no last.ckpt to {directory}")
        entries.append(Entry(config.stem, Path(checkpoint), parsed.model.hparams.alpha))

    report, figures = build_report(
        entries,
        sources,
        references,
        data,
        beam_size=args.beam_size,
        alpha=args.alpha,
        max_tokens=args.max_tokens,
        heatmaps=args.heatmaps,
        device=args.device,
    )
    path = write_report(report, figures, out)
    log.info("leaderboard: %s", path)
    if args.readme:
        update_readme(args.readme, report, images=f"{out.as_posix()}/")


def main() -> None:
    commands = {"average": average, "generate": generate, "leaderboard": leaderboard}
    if sys.argv[1:2] and sys.argv[1] in commands:
        commands[sys.argv[1]](sys.argv[2:])
    else:
        cli()


if __name__ == "__main__":
    main()
