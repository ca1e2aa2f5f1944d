"""`translate generate`: translate a text file (or stdin) with a checkpoint, one output line per input line."""

from __future__ import annotations

import sys
from pathlib import Path

from translate.commands.arguments import parse
from translate.files import atomic_write_bytes
from translate.translator import Translator


def run(
    checkpoint: str,
    input: Path | None = None,
    output: Path | None = None,
    beam_size: int | None = None,
    alpha: float | None = None,
    max_tokens: int = 4096,
    split_sentences: bool = True,
    device: str = "auto",
) -> None:
    """Translate lines of a file (or stdin) to a file (or stdout), in order, one line per line.

    Args:
        checkpoint: a checkpoint of `translate fit`, or a directory of `translate export`
        input: source text, one sentence a line (default: stdin)
        output: where to write translations (default: stdout)
        beam_size: default: the checkpoint's (5 unless its config says)
        alpha: length penalty: GNMT's, CTranslate2's when exported (default: the model's)
        max_tokens: source tokens per batch
        split_sentences: translate each line sentence by sentence, rejoined in order (default: on)
        device: auto, cpu or cuda
    """
    if output:
        for flag, given in (("--input", input), ("--checkpoint", checkpoint)):
            if given and output.resolve() == Path(given).resolve():
                raise ValueError(f"--output {output} is the {flag} file: it would be overwritten")
    translator = Translator.from_checkpoint(checkpoint, device)
    translator.settings(beam_size=beam_size, alpha=alpha, n_best=1)  # refused before reading input
    try:
        source = input.read_text(encoding="utf-8") if input else sys.stdin.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"--input {input or '(stdin)'} is not UTF-8 text ({e})") from e
    lines = [line.removesuffix("\r") for line in source.split("\n")]  # lines end at \n (or \r\n) only
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    outputs = translator.translate(
        lines,
        beam_size=beam_size,
        alpha=alpha,
        max_tokens=max_tokens,
        progress=bool(input),
        split_sentences=split_sentences,
    )
    text = "".join(line + "\n" for line in outputs)
    if output:
        atomic_write_bytes(output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)


def generate(argv: list[str]) -> None:
    """`translate generate ARGUMENTS` (see :func:`run`)."""
    run(**parse(run, "translate generate", argv))
