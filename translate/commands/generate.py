"""`translate generate`: translate a text file (or stdin) with a checkpoint, one output line per input line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from translate.files import atomic_write_bytes
from translate.translator import Translator


def generate(argv: list[str]) -> None:
    """Translate lines of a file (or stdin) to a file (or stdout), in order, one line per line."""
    parser = argparse.ArgumentParser(prog="translate generate", description=generate.__doc__)
    parser.add_argument(
        "--checkpoint", required=True, help="a checkpoint of `translate fit`, or a directory of `translate export`"
    )
    parser.add_argument("--input", help="source text, one sentence a line (default: stdin)")
    parser.add_argument("--output", help="where to write translations (default: stdout)")
    parser.add_argument("--beam-size", type=int, help="default: the checkpoint's (5 unless its config says)")
    parser.add_argument(
        "--alpha", type=float, help="length penalty: GNMT's, CTranslate2's when exported (default: the model's)"
    )
    parser.add_argument("--max-tokens", type=int, default=4096, help="source tokens per batch")
    parser.add_argument(
        "--split-sentences",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="translate each line sentence by sentence, rejoined in order (default: on)",
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.output:
        for flag, given in (("--input", args.input), ("--checkpoint", args.checkpoint)):
            if given and Path(args.output).resolve() == Path(given).resolve():
                raise ValueError(f"--output {args.output} is the {flag} file: it would be overwritten")
    translator = Translator.from_checkpoint(args.checkpoint, args.device)
    translator.settings(beam_size=args.beam_size, alpha=args.alpha, n_best=1)  # refused before reading input
    try:
        source = Path(args.input).read_text(encoding="utf-8") if args.input else sys.stdin.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"--input {args.input or '(stdin)'} is not UTF-8 text ({e})") from e
    lines = [line.removesuffix("\r") for line in source.split("\n")]  # lines end at \n (or \r\n) only
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    outputs = translator.translate(
        lines,
        beam_size=args.beam_size,
        alpha=args.alpha,
        max_tokens=args.max_tokens,
        progress=bool(args.input),
        split_sentences=args.split_sentences,
    )
    text = "".join(line + "\n" for line in outputs)
    if args.output:
        atomic_write_bytes(Path(args.output), text.encode("utf-8"))
    else:
        sys.stdout.write(text)
