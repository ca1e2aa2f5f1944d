"""Where a training step's time goes: torch's profiler over a few Transformer updates on Multi30k.

    python benchmarks/train_profile.py --dataset ../shared/data/multi30k

The update is the Trainer's, without its hooks: loss, backward, gradient clipping, the config's optimizer.
Reported: self CPU time per operator (the top `--top`), and the share of the matrix multiplications
(`aten::mm`, `addmm`, `bmm`): the part only a faster matmul library can shrink. The profiler's own cost
per operator call falls on the many small operators, so the matmul share is if anything understated.

Then a ceiling: `--steps` more updates are timed without the profiler, each then run again on the same batch
while every matrix multiplication it makes is recorded (operands copied with their strides), and those
multiplications are replayed back to back, alone, best of three. Target tokens per second of matmul-only
replay is what the update could reach if everything else in it (elementwise operators, the loss, the
optimizer, Python) took no time at all.
"""

import argparse
import time

import torch
from common import update, write_results
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--config", default="configs/transformer.yaml")
    parser.add_argument("--max-tokens", type=int, help="batch size (default: the config's)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed updates first")
    parser.add_argument("--steps", type=int, default=8, help="profiled updates")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    parser.add_argument("--name", default="train_profile", help="results/<name>.json and .md")
    args = parser.parse_args()

    batching = [f"--data.max_tokens={args.max_tokens}"] if args.max_tokens else []
    parsed = cli(["--config", args.config, f"--data.dataset={args.dataset}", *batching], run=False)
    model, dm = parsed.model.train(), parsed.datamodule
    dm.setup("fit")
    optimizer = model.configure_optimizers()["optimizer"]
    batches = iter(dm.train_dataloader())

    clip = parsed.trainer.gradient_clip_val

    for _ in range(args.warmup):
        update(model, optimizer, next(batches), clip)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        tokens = sum(update(model, optimizer, next(batches), clip) for _ in range(args.steps))
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMULS)
    rows = [
        {
            "operator": e.key,
            "calls": e.count,
            "self_ms_per_update": round(e.self_cpu_time_total / 1000 / args.steps, 2),
            "share": round(e.self_cpu_time_total / total, 4),
        }
        for e in events[: args.top]
    ]
    ceiling_tokens, seconds, matmul_seconds, flops = 0, 0.0, 0.0, 0
    for _ in range(args.steps):  # each update timed, then its multiplications: drift hits both alike
        batch = next(batches)
        start = time.perf_counter()
        ceiling_tokens += update(model, optimizer, batch, clip)
        seconds += time.perf_counter() - start
        with MatmulRecorder() as recorder:
            update(model, optimizer, batch, clip)
        matmul_seconds += replay_seconds(recorder.calls)
        flops += sum(matmul_flops(func, args) for func, args, _ in recorder.calls)
    results = {
        "config": args.config,
        "max_tokens": dm.max_tokens,
        "updates": args.steps,
        "target_tokens": tokens,
        "self_ms_per_update": round(total / 1000 / args.steps, 1),
        "matmul_share": round(matmul / total, 4),
        "operators": rows,
        "ceiling_updates": args.steps,
        "ceiling_target_tokens": ceiling_tokens,
        "ms_per_update": round(1000 * seconds / args.steps, 1),
        "target_tokens_per_s": round(ceiling_tokens / seconds, 1),
        "matmul_replay_ms_per_update": round(1000 * matmul_seconds / args.steps, 1),
        "matmul_replay_gflops_per_s": round(flops / matmul_seconds / 1e9, 1),
        "matmul_only_target_tokens_per_s": round(ceiling_tokens / matmul_seconds, 1),
    }
    table = f"{args.config} at {dm.max_tokens} tokens, {args.steps} updates ({tokens} target tokens) under the "
    table += f"profiler: {results['self_ms_per_update']} ms of operator time per update, "
    table += f"**{results['matmul_share']:.1%} in matrix multiplications** ({', '.join(sorted(MATMULS))}).\n\n"
    table += "| operator | calls | self ms per update | share |\n|---|---:|---:|---:|\n"
    table += "\n".join(
        f"| `{r['operator']}` | {r['calls']} | {r['self_ms_per_update']} | {r['share']:.1%} |" for r in rows
    )
    table += f"\n\nCeiling, {args.steps} further updates ({ceiling_tokens} target tokens) without the profiler: "
    table += f"{results['ms_per_update']} ms per update, {results['target_tokens_per_s']:.0f} target tokens/s. "
    table += f"Their matrix multiplications alone, replayed back to back: {results['matmul_replay_ms_per_update']} ms "
    table += f"per update ({results['matmul_replay_gflops_per_s']} GFLOP/s), "
    table += f"**{results['matmul_only_target_tokens_per_s']:.0f} target tokens/s** "
    table += "if nothing else took time."
    write_results(args.name, results, table)


if __name__ == "__main__":
    main()
