"""One epoch of each committed config on a GPU in bf16-mixed, then its test split: epoch time and tokens/s.

    python -m benchmarks.gpu.gpu_epoch --dataset ../shared/data/multi30k
    python -m benchmarks.gpu.gpu_epoch --models transformer --max-tokens 8192 --name gpu_epoch_8k  # larger batches
    python -m benchmarks.gpu.gpu_epoch --accelerator cpu --precision 32-true --limit-train-batches 5 --name smoke

Each config runs in its own process as `translate fit --config configs/<model>.yaml --trainer.accelerator gpu
--trainer.devices 1 --trainer.precision bf16-mixed --trainer.max_epochs 1` would (all else as committed), then
tests the epoch's weights as `translate test` does. Reported per config: the epoch's wall time from its start to the
end of its last batch (CUDA warm-up and the every-50-steps checkpoints included, their share `checkpoint_s`;
validation not), target tokens/s over the epoch and after the first `--warmup` updates, the median ms per update,
validation (greedy) and test (beam) time and BLEU, the setup time before the epoch and peak GPU memory.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import ROOT, markdown_table, synchronized, write_results
from translate.cli import cli


class EpochTimer(L.Callback):
    """Wall times of the first training epoch, its validation and the test, and each update's target tokens."""

    def __init__(self, start: float) -> None:
        self.start, self.times, self.tokens, self.marks, self.saving = start, [], [], {}, 0.0

    def time_saving(self, trainer: L.Trainer) -> None:
        """Count the time the trainer's checkpoint writer spends within the training epoch (`saving`)."""
        io = trainer.strategy.checkpoint_io
        save = io.save_checkpoint

        def timed(*args, **kwargs) -> None:
            begin = synchronized()
            save(*args, **kwargs)
            if "epoch_start" in self.marks and "val_start" not in self.marks:
                self.saving += time.perf_counter() - begin

        io.save_checkpoint = timed

    def on_train_epoch_start(self, trainer, module) -> None:
        self.marks["epoch_start"] = self.last = synchronized()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = synchronized()
        self.times.append(now - self.last)
        self.tokens.append(int((batch.tgt_out != module.pad_id).sum()))
        self.marks["epoch_end"] = self.last = now

    def on_validation_epoch_start(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.marks["val_start"] = synchronized()

    def on_validation_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.marks["val_end"] = synchronized()

    def on_test_epoch_start(self, trainer, module) -> None:
        self.marks["test_start"] = synchronized()

    def on_test_epoch_end(self, trainer, module) -> None:
        self.marks["test_end"] = synchronized()

    def row(self, warmup: int) -> dict:
        m, steady = self.marks, slice(warmup, None)
        epoch = m["epoch_end"] - m["epoch_start"]
        return {
            "setup_s": round(m["epoch_start"] - self.start, 1),
            "steps": len(self.times),
            "epoch_s": round(epoch, 2),
            "target_tokens_per_s": round(sum(self.tokens) / epoch),
            "steady_target_tokens_per_s": round(sum(self.tokens[steady]) / sum(self.times[steady])),
            "median_ms_per_step": round(1000 * statistics.median(self.times), 2),
            "checkpoint_s": round(self.saving, 2),
            "val_s": round(m["val_end"] - m["val_start"], 1),
            "test_s": round(m["test_end"] - m["test_start"], 1),
        }


def measure(config: str, options: argparse.Namespace) -> dict:
    """Fit one epoch of `config` and test it (in the calling process)."""
    start = time.perf_counter()
    overrides = {"data.dataset": options.dataset, "data.max_tokens": options.max_tokens, "trainer.devices": 1}
    overrides |= {"trainer.accelerator": options.accelerator, "trainer.precision": options.precision}
    overrides |= {"trainer.max_epochs": 1, "trainer.limit_train_batches": options.limit_train_batches}
    args = [f"--{key}={value}" for key, value in overrides.items() if value is not None]
    parsed = cli(["--config", config, *args, "--trainer.enable_progress_bar=false"], run=False)
    trainer, model, dm, timer = parsed.trainer, parsed.model, parsed.datamodule, EpochTimer(start)
    trainer.callbacks.append(timer)
    timer.time_saving(trainer)
    trainer.fit(model, dm)
    validation = {k: round(float(v), 2) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    (tested,) = trainer.test(model, dm, verbose=False)
    return {
        "model": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "max_tokens": dm.max_tokens,
        **timer.row(options.warmup),
        "val_bleu_greedy": validation.get("val/bleu"),
        "val_loss": validation.get("val/loss"),
        "test_bleu_beam": round(tested["test/bleu"], 2),
        "test_chrf": round(tested["test/chrf"], 2),
        "beam_size": model.decoding.beam_size,
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--models", nargs="+", default=["gru", "bahdanau", "transformer"])
    parser.add_argument("--max-tokens", type=int, help="batch size in tokens (default: each config's own)")
    parser.add_argument("--warmup", type=int, default=20, help="updates left out of the steady tokens/s")
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--limit-train-batches", type=int, help="train on this many batches only (a smoke test)")
    parser.add_argument("--name", default="gpu_epoch", help="<name>.json and .md beside this script")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--accelerator gpu needs a CUDA GPU: torch.cuda.is_available() is False")
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else args.accelerator
    rows = []
    for name in args.models:
        config = ROOT / "configs" / f"{name}.yaml"
        child = [sys.executable, "-m", __spec__.name, *sys.argv[1:], "--child", str(config)]
        out = subprocess.run(child, capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(out.stderr[-4000:], file=sys.stderr)
            rows.append({"config": name, "error": out.stderr.strip().splitlines()[-1]})
        else:
            rows.append({"config": name, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(rows[-1], flush=True)
    table = f"One epoch of each config in {args.precision} on {device}, then its test split.\n\n"
    table += markdown_table(rows, list(dict.fromkeys(k for row in rows for k in row)))
    write_results(Path(__file__).parent, args.name, {"rows": rows}, table)
    print(table)


if __name__ == "__main__":
    main()
