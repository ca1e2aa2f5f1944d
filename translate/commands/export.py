"""`translate export`: a Transformer checkpoint as a CTranslate2 model directory, which `generate`, `serve` and
Translator.from_checkpoint decode with CTranslate2."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from translate.commands.arguments import parse
from translate.export import export as export_model
from translate.records import recorded_bleu
from translate.search import Decoding


def run(
    checkpoint: Path,
    output: Path,
    quantization: Literal["int8", "int16", "float32"] = "int8",
    alpha: float = 1.0,
    records: Path = Path("reports/records"),
    force: bool = False,
) -> None:
    """Write a Transformer checkpoint as a CTranslate2 model directory, which `generate`, `serve` and
    Translator.from_checkpoint decode with CTranslate2.

    Args:
        checkpoint: a Transformer checkpoint of `translate fit`
        output: the model directory to write
        quantization: weight type
        alpha: CTranslate2 length penalty, score / length**alpha
        records: evaluation records: its test BLEU, if evaluated
        force: replace --output if it is an export
    """
    Decoding(alpha=alpha)  # refused before loading anything
    bleu = recorded_bleu(records, checkpoint)
    written = export_model(checkpoint, output, quantization, alpha, bleu, force)
    known = f"test BLEU {bleu}" if bleu is not None else f"no test BLEU in {records}"
    print(f"wrote {written} ({quantization}, {known})")


def export(argv: list[str]) -> None:
    """`translate export ARGUMENTS` (see :func:`run`)."""
    run(**parse(run, "translate export", argv))
