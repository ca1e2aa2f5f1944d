"""The `translate` command: LightningCLI over the three models and the shared datamodule, plus
`generate`, which translates a file or stdin with a checkpoint:

- translate fit|validate|test|predict --config configs/<model>.yaml [--trainer.* ...] [--model.* ...]
- translate generate --checkpoint checkpoints/transformer/last.ckpt [--input de.txt] [--output en.txt]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from tqdm import tqdm

from translate.data import TranslationDataModule
from translate.models import Seq2SeqModule
from translate.tokenizer import atomic_write_bytes
from translate.translator import Translator


class TranslateCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the model's vocabulary comes from the datamodule's tokenizer, never from a number in a config
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.pad_id", "model.init_args.pad_id", apply_on="instantiate")


def cli(args: list[str] | None = None) -> TranslateCLI:
    """Run the CLI on `args` (default: the command line) and return it."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return TranslateCLI(
        Seq2SeqModule,
        TranslationDataModule,
        subclass_mode_model=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


def generate(argv: list[str]) -> None:
    """Translate lines of a file (or stdin) to a file (or stdout), in order, one line per line."""
    parser = argparse.ArgumentParser(prog="translate generate", description=generate.__doc__)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `translate fit`")
    parser.add_argument("--input", help="source text, one sentence a line (default: stdin)")
    parser.add_argument("--output", help="where to write translations (default: stdout)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=1.0, help="GNMT length penalty exponent")
    parser.add_argument("--max-tokens", type=int, default=4096, help="source tokens per batch")
    parser.add_argument("--chunk", type=int, default=500, help="lines translated between progress updates")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    translator = Translator.from_checkpoint(args.checkpoint, args.device)
    source = Path(args.input).read_text(encoding="utf-8") if args.input else sys.stdin.read()
    lines = source.splitlines()
    outputs: list[str] = []
    with tqdm(total=len(lines), unit="sent", disable=not args.input, file=sys.stderr) as progress:
        for start in range(0, len(lines), args.chunk):
            chunk = lines[start : start + args.chunk]
            outputs += translator.translate(
                chunk, beam_size=args.beam_size, alpha=args.alpha, max_tokens=args.max_tokens
            )
            progress.update(len(chunk))
    text = "".join(line + "\n" for line in outputs)
    if args.output:
        atomic_write_bytes(Path(args.output), text.encode("utf-8"))
    else:
        sys.stdout.write(text)


def main() -> None:
    if sys.argv[1:2] == ["generate"]:
        generate(sys.argv[2:])
    else:
        cli()


if __name__ == "__main__":
    main()
