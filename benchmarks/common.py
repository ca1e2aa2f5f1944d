"""What every benchmark records beside its numbers (machine, date, command, versions), a clock that waits for the GPU,
and a bare training update."""

from __future__ import annotations

import datetime
import json
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from translate.machine import machine

if TYPE_CHECKING:  # not imported: train_throughput.py --revision runs this module against older packages
    from translate.batching import Batch
    from translate.models import Seq2SeqModule

RESULTS = Path(__file__).parent / "results"


def synchronized() -> float:
    """`time.perf_counter()` once the GPU (if any) has finished what was queued."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def write_results(name: str, results: dict, markdown: str) -> Path:
    """Write results/<name>.json and .md, stamped with command, date and machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = {
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    record = {**stamp, **results}
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    header = f"Command: `{stamp['command']}`  \nDate: {stamp['date']}  \nMachine: {json.dumps(stamp['machine'])}\n\n"
    (RESULTS / f"{name}.md").write_text(header + markdown + "\n")
    return RESULTS / f"{name}.json"


def update(
    model: Seq2SeqModule, optimizer: torch.optim.Optimizer, batch: Batch, clip: float, forward: nn.Module | None = None
) -> int:
    """One training update as the Trainer makes it, without its hooks: the model's loss, backward, gradient
    clipping at `clip`, the optimizer's step. `forward` (a DistributedDataParallel wrapper, called on the batch)
    replaces the model's own loss. Returns the batch's target tokens."""
    loss, _, tokens = (forward or model.loss)(batch)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return int(tokens)
