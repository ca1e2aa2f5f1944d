"""`translate leaderboard`: train each config that has no finished run, evaluate each model into its record
(records.py; an existing record of the same weights, test set and decoding is kept), then render the
report from the records (report.py)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from translate.checkpoints import best_checkpoint, finished
from translate.commands.arguments import named_checkpoints
from translate.commands.lightning import cli
from translate.files import check_writable
from translate.records import (
    Record,
    TestSet,
    attention_of,
    checkpoint_translator,
    dataset_test_set,
    decoder,
    decoding_of,
    evaluate,
    joined_extra,
    literature_references,
)
from translate.report import directions_summary, read_report, summary, update_readme, write_report
from translate.report import leaderboard as leaderboard_report
from translate.search import Decoding

log = logging.getLogger(__name__)
CONFIGS = ("gru", "bahdanau", "transformer")  # the generations, in order


def arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The leaderboard's own arguments, checked; the rest are overrides for every config."""
    parser = argparse.ArgumentParser(prog="translate leaderboard", description=leaderboard.__doc__)
    parser.add_argument("--configs", nargs="+", type=Path, help="default: configs/{gru,bahdanau,transformer}.yaml")
    parser.add_argument("--quick", action="store_true", help="smoke run: configs/quick/, reports/quick, minutes")
    parser.add_argument("--long", action="store_true", help="the test split joined in runs of k = 1..8: reports/long")
    parser.add_argument("--joined", type=int, help="test on the test split joined in runs of k = 1..JOINED sentences")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="CONFIG=PATH", help="use this checkpoint")
    parser.add_argument(
        "--records", type=Path, help="evaluation records (default: reports/records, or reports/quick/records)"
    )
    parser.add_argument("--out", type=Path, help="report directory (default: reports, reports/long or reports/quick)")
    parser.add_argument("--readme", type=Path, help="also rewrite this README's leaderboard block")
    parser.add_argument(
        "--readme-block",
        choices=["leaderboard", "long", "directions"],
        help="the README block to rewrite (default: long with --joined, else leaderboard); directions: one table "
        "of the reports in the <source>-<target> folders beside --out",
    )
    parser.add_argument(
        "--tokenized-references",
        type=Path,
        help="the test references as papers score against them (tokenized, lowercased): adds the literature's BLEU",
    )
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--alpha", type=float, help="GNMT length penalty exponent (default: each config's)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="source tokens per decoding batch")
    parser.add_argument("--heatmaps", type=int, default=2, help="attention heatmaps of the longest test sentences")
    parser.add_argument("--device", default="auto")
    args, overrides = parser.parse_known_args(argv)
    Decoding(beam_size=args.beam_size, alpha=0.0 if args.alpha is None else args.alpha)  # refused before training
    if args.joined is not None and args.joined < 1:
        raise ValueError(f"--joined must be at least 1 (sentences per input), got {args.joined}")
    args.joined = args.joined or (8 if args.long else None)
    smoke = Path("reports/quick")
    args.configs = args.configs or [Path("configs/quick" if args.quick else "configs") / f"{n}.yaml" for n in CONFIGS]
    args.out = args.out or (smoke if args.quick else Path("reports/long" if args.joined else "reports"))
    args.records = args.records or ((smoke if args.quick else Path("reports")) / "records")
    args.checkpoint = config_checkpoints(args.checkpoint, [config.stem for config in args.configs])
    if len({config.stem for config in args.configs}) < len(args.configs):
        raise ValueError(f"--configs need distinct names (they name the checkpoints given): {args.configs}")
    check_writable(args.out)
    check_writable(args.records)
    missing = [str(config) for config in args.configs if not config.is_file()]
    if missing:
        raise FileNotFoundError(f"config {missing[0]} does not exist")
    return args, overrides


def config_checkpoints(items: list[str], configs: list[str]) -> dict[str, str]:
    """--checkpoint CONFIG=PATH arguments as a dict, each naming one of the configs."""
    named = named_checkpoints(items)
    unknown = set(named) - set(configs)
    if unknown:
        raise ValueError(f"--checkpoint names {sorted(unknown)}, but the configs are {configs}")
    return named


def trained(config: Path, overrides: list[str], checkpoint: str | None) -> tuple[Path, object, float]:
    """The checkpoint of a config (the given one, else the best of its finished run, trained first if there
    is none, or resumed if its run was cut off), its datamodule and its config's length penalty."""
    parsed = cli(["--config", str(config), *overrides], run=False)
    callback = parsed.trainer.checkpoint_callback
    if callback is None or callback.dirpath is None:
        raise ValueError(f"config {config} has no ModelCheckpoint callback with a dirpath to keep its checkpoints")
    directory, last = Path(callback.dirpath), Path(callback.dirpath) / "last.ckpt"
    if checkpoint is None and not finished(last):
        resume = ["--ckpt_path", "last"] if last.is_file() else []
        log.info("%s: %s in %s", config, "resuming the unfinished run" if resume else "no checkpoint", directory)
        cli(["fit", "--config", str(config), *overrides, *resume])
        if not finished(last):
            raise RuntimeError(f"training {config} ended without a finished last.ckpt in {directory}")
    path = Path(checkpoint or best_checkpoint(directory))
    here = Path.cwd().resolve()
    path = path.resolve().relative_to(here) if path.resolve().is_relative_to(here) else path  # as a record shows it
    return path, parsed.datamodule, parsed.model.decoding.alpha


def record_of(args: argparse.Namespace, checkpoint: Path, test_set: TestSet, alpha: float) -> Record:
    """Evaluate one checkpoint into its record (kept if already there): with the attention of the longest
    sentences for the heatmaps, or on joined inputs with what the long-input report adds."""
    translator, model = checkpoint_translator(checkpoint, test_set.about["languages"], args.device)
    decoding = decoding_of(translator, args.beam_size, alpha if args.alpha is None else args.alpha)
    if args.joined:
        extra = joined_extra(translator, test_set, decoding)
    else:

        def extra(_: list[str]) -> dict:
            return attention_of(translator, test_set, decoding, args.heatmaps)

    log.info("%s: evaluating %s on %s", model["name"], checkpoint, test_set.name)
    return evaluate(args.records, model, test_set, decoding, decoder(translator, decoding, args.max_tokens), extra)


def leaderboard(argv: list[str]) -> None:
    """Train every config that has no finished run, evaluate each model on the test split into an evaluation
    record, and write the report rendered from those records (with --long/--joined, of the test split
    joined in runs of 1..K sentences). Other arguments (``--data.dataset``, ``--trainer.max_epochs``, ...)
    apply to every config, as in `translate fit`."""
    args, overrides = arguments(argv)
    records, test_set = [], None
    for config in args.configs:
        checkpoint, dm, alpha = trained(config, overrides, args.checkpoint.get(config.stem))
        ks = range(1, args.joined + 1) if args.joined else [dm.eval_join]
        this = dataset_test_set(dm, "test", list(ks))
        if args.tokenized_references is not None:
            this = literature_references(this, args.tokenized_references)
        if test_set is not None and this.identity() != test_set.identity():
            raise ValueError(f"config {config} tests on {this.identity()}, the previous ones on {test_set.identity()}")
        test_set = this
        records.append(record_of(args, checkpoint, test_set, alpha))
    report = leaderboard_report(records, args.out, smoke=args.quick)
    log.info("leaderboard: %s", write_report(report, records, args.out))
    if args.readme:
        readme_block(args, report)


def readme_block(args: argparse.Namespace, report: dict) -> None:
    """Rewrite the README's block: this report's summary, or the table of every direction's report."""
    block = args.readme_block or ("long" if args.joined else "leaderboard")
    relative = Path(os.path.relpath(args.out, args.readme.parent)).as_posix()
    if block == "directions":
        folders = sorted(args.out.parent.glob("*-*/leaderboard.json"))
        reports = {f"{Path(relative).parent.as_posix()}/{p.parent.name}": read_report(p) for p in folders}
        update_readme(args.readme, block, directions_summary(reports))
    else:
        update_readme(args.readme, block, summary(report, f"{relative}/", f"{relative}/leaderboard.md"))
