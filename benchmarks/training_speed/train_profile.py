"""Where a training step's time goes: torch's profiler over a few Transformer updates on Multi30k.

    python -m benchmarks.training_speed.train_profile --dataset ../shared/data/multi30k

The update is the Trainer's without its hooks (loss, backward, gradient clipping, the config's optimizer). Reported:
self CPU time of the `--top` operators and the share of the matrix multiplications, the part only a faster matmul
library can shrink (the profiler's own cost falls on the many small operators: that share is if anything
understated). Then a ceiling: `--steps` more updates timed without the profiler, each run again while its matmuls
are recorded (operands copied, strides kept) and replayed back to back, alone, best of three: the tokens/s were
everything else (elementwise operators, the loss, the optimizer, Python) free.
"""

import argparse
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.common import write_results
from translate.batching import Batch
from translate.cli import cli

MATMULS = {"aten::mm", "aten::addmm", "aten::bmm"}
MATMUL_OPS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}


class MatmulRecorder(TorchDispatchMode):
    """Keeps every matrix multiplication run under it: the operator and copies of its operands, strides kept."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(
        self, func: torch._ops.OpOverload, types: tuple, args: tuple = (), kwargs: dict | None = None
    ) -> object:
        if func in MATMUL_OPS:
            copies = [a.detach().clone(memory_format=torch.preserve_format) if torch.is_tensor(a) else a for a in args]
            self.calls.append((func, copies, kwargs or {}))
        return func(*args, **(kwargs or {}))


def matmul_flops(func: torch._ops.OpOverload, args: list) -> int:
    """2·n·k·m of one recorded mm / addmm (its bias first) / bmm (times its batch)."""
    a, b = args[1:3] if func is torch.ops.aten.addmm.default else args[:2]
    return 2 * a.shape[:-1].numel() * a.shape[-1] * b.shape[-1]


def replay_seconds(calls: list[tuple], repeats: int = 3) -> float:
    """Fastest of `repeats` back-to-back runs of the recorded multiplications."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for func, args, kwargs in calls:
            func(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


def profiled(step: Callable[[Batch], int], batches: Iterator[Batch], steps: int, top: int) -> dict:
    """`steps` updates under torch's profiler: operator time per update (the `top` operators), the matmuls' share."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        tokens = sum(step(next(batches)) for _ in range(steps))
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return {
        "updates": steps,
        "target_tokens": tokens,
        "self_ms_per_update": round(total / 1000 / steps, 1),
        "matmul_share": round(sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / total, 4),
        "operators": [
            {"operator": e.key, "calls": e.count, "self_ms_per_update": round(e.self_cpu_time_total / 1000 / steps, 2)}
            | {"share": round(e.self_cpu_time_total / total, 4)}
            for e in events[:top]
        ],
    }


def ceiling(step: Callable[[Batch], int], batches: Iterator[Batch], steps: int) -> dict:
    """`steps` updates timed, each followed by its own matmuls replayed alone (drift hits both alike)."""
    tokens, seconds, matmul_seconds, flops = 0, 0.0, 0.0, 0
    for _ in range(steps):
        batch = next(batches)
        start = time.perf_counter()
        tokens += step(batch)
        seconds += time.perf_counter() - start
        with MatmulRecorder() as recorder:
            step(batch)
        matmul_seconds += replay_seconds(recorder.calls)
        flops += sum(matmul_flops(func, operands) for func, operands, _ in recorder.calls)
    return {
        "ceiling_updates": steps,
        "ceiling_target_tokens": tokens,
        "ms_per_update": round(1000 * seconds / steps, 1),
        "target_tokens_per_s": round(tokens / seconds, 1),
        "matmul_replay_ms_per_update": round(1000 * matmul_seconds / steps, 1),
        "matmul_replay_gflops_per_s": round(flops / matmul_seconds / 1e9, 1),
        "matmul_only_target_tokens_per_s": round(tokens / matmul_seconds, 1),
    }


def report(r: dict) -> str:
    text = f"{r['config']} at {r['max_tokens']} tokens, {r['updates']} updates ({r['target_tokens']} target tokens) "
    text += f"under the profiler: {r['self_ms_per_update']} ms of operator time per update, "
    text += f"**{r['matmul_share']:.1%} in matrix multiplications** ({', '.join(sorted(MATMULS))}).\n\n"
    rows = [
        f"| `{o['operator']}` | {o['calls']} | {o['self_ms_per_update']} | {o['share']:.1%} |" for o in r["operators"]
    ]
    text += "| operator | calls | self ms per update | share |\n|---|---:|---:|---:|\n" + "\n".join(rows)
    text += f"\n\nCeiling, {r['ceiling_updates']} further updates ({r['ceiling_target_tokens']} target tokens) without "
    text += f"the profiler: {r['ms_per_update']} ms per update, {r['target_tokens_per_s']:.0f} target tokens/s. Their "
    text += f"matrix multiplications alone, replayed back to back: {r['matmul_replay_ms_per_update']} ms per update "
    text += f"({r['matmul_replay_gflops_per_s']} GFLOP/s), **{r['matmul_only_target_tokens_per_s']:.0f} target "
    return text + "tokens/s** if nothing else took time."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--config", default="configs/transformer.yaml")
    parser.add_argument("--max-tokens", type=int, help="batch size (default: the config's)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed updates first")
    parser.add_argument("--steps", type=int, default=8, help="profiled updates")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    parser.add_argument("--name", default="train_profile", help="<name>.json and .md beside this script")
    args = parser.parse_args()

    batching = [f"--data.max_tokens={args.max_tokens}"] if args.max_tokens else []
    parsed = cli(["--config", args.config, f"--data.dataset={args.dataset}", *batching], run=False)
    model, dm = parsed.model.train(), parsed.datamodule
    dm.setup("fit")
    optimizer = model.configure_optimizers()["optimizer"]
    batches, clip = iter(dm.train_dataloader()), parsed.trainer.gradient_clip_val

    def step(batch: Batch) -> int:
        """One update as the Trainer makes it, without its hooks; the batch's target tokens."""
        loss, _, tokens = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return int(tokens)

    for _ in range(args.warmup):
        step(next(batches))
    results = {"config": args.config, "max_tokens": dm.max_tokens}
    results |= profiled(step, batches, args.steps, args.top) | ceiling(step, batches, args.steps)
    write_results(Path(__file__).parent, args.name, results, report(results))


if __name__ == "__main__":
    main()
