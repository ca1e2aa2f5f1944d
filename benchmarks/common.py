"""What the benchmarks share: the stamp on every result file, a clock that waits for the GPU, the fp32 matmul
peak, and one timed training run through Lightning's Trainer (its callers run it in a fresh process each time).

Run every benchmark from the repository root as a module, `python -m benchmarks.<folder>.<script>`; each writes
its results beside itself. `train_throughput --revision` imports this module beside an older `translate` package
too, so it imports from that package only `cli.cli` and `machine.machine` (both there since 2026-11-27).
"""

from __future__ import annotations

import datetime
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.flop_counter import FlopCounterMode

import translate
from translate.cli import cli
from translate.machine import machine

ROOT = Path(__file__).resolve().parent.parent  # the repository (resolved: children may import via a symlink)

# (m, k, n) of a Transformer step's matmuls at 2,048 tokens, each forward, gradient of the input, gradient of the
# weight: the feed-forward layer (256 -> 1024), then the output layer (256 -> 8000)
STEP_SHAPES = [(2048, 256, 1024), (2048, 1024, 256), (1024, 2048, 256)]
STEP_SHAPES += [(2048, 256, 8000), (2048, 8000, 256), (8000, 2048, 256)]


def synchronized() -> float:
    """`time.perf_counter()` once the GPU (if any) has finished what was queued."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def run_stamp() -> dict:
    """This run's command as typed, date (UTC) and machine."""
    return {
        "command": shlex.join(["python", *sys.orig_argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }


def write_results(folder: Path, name: str, results: dict, markdown: str) -> Path:
    """Write <folder>/<name>.json and .md, stamped with the command as typed, the date (UTC) and the machine."""
    stamp = run_stamp()
    (folder / f"{name}.json").write_text(json.dumps({**stamp, **results}, indent=2) + "\n")
    header = f"Command: `{stamp['command']}`  \nDate: {stamp['date']}  \nMachine: {json.dumps(stamp['machine'])}\n\n"
    (folder / f"{name}.md").write_text(header + markdown + "\n")
    return folder / f"{name}.json"


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """`rows` as a Markdown table of `columns` (a missing value left empty)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows])


def matmul_peak(dtype: torch.dtype, shapes: list[tuple[int, int, int]] = STEP_SHAPES, repeats: int = 10) -> float:
    """Best GFLOP/s of (m, k) @ (k, n) matmuls in `dtype` over `shapes`, each timed `repeats` times."""
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best


class StepTimer(L.Callback):
    """Wall time, target tokens and padding of every training batch after the first `skip`. A batch's time runs
    from the end of the batch before it, so data loading and the Trainer's work between batches count, as in the
    intervals of JoeyNMT's log."""

    def __init__(self, skip: int) -> None:
        if skip < 1:
            raise ValueError("at least one warm-up step: a batch is timed from the end of the one before it")
        self.skip, self.times, self.tokens, self.padding = skip, [], [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if batch_idx >= self.skip:
            self.times.append(now - self.last)
            target = int((batch.tgt_out != module.pad_id).sum())
            self.tokens.append(target)
            real = int(batch.src_lengths.sum()) + target
            self.padding.append(1 - real / (batch.src.numel() + batch.tgt_out.numel()))
        self.last = time.perf_counter()


def timed_training(
    config: str, dataset: str, precision: str, warmup: int, steps: int, max_tokens: int | None = None, **options
) -> dict:
    """`warmup` untimed updates of `config`, then `steps` timed ones, within one epoch (its end stops the run);
    `options`: `accumulate` (batches per update, default 1), `compiled` (the model's `features` under
    `torch.compile(dynamic=True)`). Also the FLOPs of one forward and backward, counted by torch."""
    accumulate, compiled = options.get("accumulate", 1), options.get("compiled", False)
    batching = [f"--data.max_tokens={max_tokens}"] if max_tokens else []
    parsed = cli(["--config", config, f"--data.dataset={dataset}", *batching], run=False)
    model, dm = parsed.model, parsed.datamodule
    timer = StepTimer(warmup * accumulate)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    trainer = L.Trainer(
        max_steps=warmup + steps,
        max_epochs=1,
        precision=precision,
        gradient_clip_val=1.0,
        accumulate_grad_batches=accumulate,
        limit_val_batches=0,
        enable_model_summary=False,
        callbacks=[timer],
        **quiet,
    )
    if compiled:
        model.features = torch.compile(model.features, dynamic=True)  # what `loss` calls, not Lightning's hooks
    trainer.fit(model, dm)
    batch = next(iter(dm.train_dataloader()))
    with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        model.float().train().loss(batch)[0].backward()
    seconds, updates = sum(timer.times), len(timer.times) // accumulate
    return {
        "model": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "precision": precision,
        "compiled": compiled,
        "max_tokens": dm.max_tokens,
        "accumulate": accumulate,
        "steps_per_epoch": len(dm.train_dataloader()) // accumulate,
        "steps": updates,
        "ms_per_step": round(1000 * seconds / updates, 1),
        "target_tokens_per_s": round(sum(timer.tokens) / seconds, 1),
        "padding_fraction": round(sum(timer.padding) / len(timer.padding), 4),
        "flops_per_target_token": round(counter.get_total_flops() / int((batch.tgt_out != dm.pad_id).sum())),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "package": str(Path(translate.__file__).parent.parent),
    }


def child_result(command: list[str], cwd: Path = ROOT) -> dict:
    """Run a benchmark's child process and return the JSON object on the last line it printed."""
    out = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])
