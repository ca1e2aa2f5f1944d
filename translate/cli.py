"""The `translate` command: the table of its subcommands and the dispatch to them. Each subcommand is a function
of its name in a module of translate/commands/, imported only when it runs (`translate --help` loads neither
torch nor Lightning)."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from translate.commands.lightning import TranslateCLI


class Subcommand(NamedTuple):
    module: str  # holds a function named as the subcommand, called with the arguments that follow it
    help: str


LIGHTNING = "translate.commands.lightning"
SUBCOMMANDS = {
    "fit": Subcommand(LIGHTNING, "train a model from a config (translate fit --config configs/transformer.yaml)"),
    "validate": Subcommand(LIGHTNING, "loss, perplexity and greedy BLEU of a checkpoint on the validation split"),
    "test": Subcommand(
        LIGHTNING, "decode the test split with beam search, score it with sacreBLEU, write its evaluation record"
    ),
    "predict": Subcommand(LIGHTNING, "translate the datamodule's predict_split into <split>_predictions.txt"),
    "generate": Subcommand(
        "translate.commands.generate", "translate a text file or stdin with a checkpoint, one line per line"
    ),
    "evaluate": Subcommand(
        "translate.commands.evaluate",
        "score a checkpoint on a test set (a split, joined runs of one, or a file) into an evaluation record",
    ),
    "leaderboard": Subcommand(
        "translate.commands.leaderboard",
        "train the configs that have no finished run, evaluate each into a record, render the report",
    ),
    "average": Subcommand(
        "translate.commands.average", "write a checkpoint whose weights are the mean of several checkpoints of one run"
    ),
    "export": Subcommand(
        "translate.commands.export",
        "write a Transformer checkpoint as a CTranslate2 model (int8/int16/float32) for fast CPU decoding",
    ),
    "serve": Subcommand(
        "translate.commands.serve",
        "an HTTP API and a page that shows the models side by side (translate serve --port 8000)",
    ),
}


def usage() -> str:
    """What `translate --help` prints: every subcommand with its one-line help."""
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {subcommand.help}" for name, subcommand in SUBCOMMANDS.items()]
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


def cli(args: list[str] | None = None, run: bool = True) -> TranslateCLI:
    """The LightningCLI of fit, validate, test and predict (translate/commands/lightning.py), run on `args`."""
    from translate.commands.lightning import cli as lightning_cli  # here: `translate --help` needs no Lightning

    return lightning_cli(args, run)


def main(argv: list[str] | None = None) -> None:
    """Run the subcommand that `argv` (default: the command line) names; options before any subcommand
    (`translate --config CONFIG fit`) go to the LightningCLI."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in ([], ["-h"], ["--help"]):
        print(usage())
    elif argv[0] in SUBCOMMANDS:
        getattr(importlib.import_module(SUBCOMMANDS[argv[0]].module), argv[0])(argv[1:])
    elif argv[0].startswith("-"):
        cli(argv)
    else:
        print(f"{usage()}\n\ntranslate: unknown subcommand {argv[0]!r}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
