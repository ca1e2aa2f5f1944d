"""`translate average`: a checkpoint whose weights are the mean of several checkpoints of one training run."""

from __future__ import annotations

from pathlib import Path

from translate.checkpoints import SafeCheckpointIO, average_checkpoints
from translate.commands.arguments import parse


def run(checkpoints: list[Path], output: Path) -> None:
    """Write a checkpoint whose weights are the mean of several checkpoints of one model.

    Args:
        checkpoints: checkpoints of one training run
        output: the averaged checkpoint
    """
    if output.resolve() in {Path(path).resolve() for path in checkpoints}:
        raise ValueError(f"--output {output} is one of the checkpoints: it would be overwritten")
    SafeCheckpointIO().save_checkpoint(average_checkpoints(checkpoints), output)


def average(argv: list[str]) -> None:
    """`translate average ARGUMENTS` (see :func:`run`)."""
    run(**parse(run, "translate average", argv))
