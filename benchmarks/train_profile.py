"""Where a training step's time goes: torch's profiler over a few Transformer updates on Multi30k.

    python benchmarks/train_profile.py --dataset ../shared/data/multi30k

The update is the Trainer's, without its hooks: loss, backward, gradient clipping, the config's optimizer.
Reported: self CPU time per operator (the top `--top`), and the share of the matrix multiplications
(`aten::mm`, `addmm`, `bmm`): the part only a faster matmul library can shrink. The profiler's own cost
per operator call falls on the many small operators, so the matmul share is if anything understated.
"""

import argparse

import torch
from common import write_results
from torch.profiler import ProfilerActivity, profile

from translate.cli import cli

MATMULS = {"aten::mm", "aten::addmm", "aten::bmm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--config", default="configs/transformer.yaml")
    parser.add_argument("--max-tokens", type=int, help="batch size (default: the config's)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed updates first")
    parser.add_argument("--steps", type=int, default=8, help="profiled updates")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    args = parser.parse_args()

    batching = [f"--data.max_tokens={args.max_tokens}"] if args.max_tokens else []
    parsed = cli(["--config", args.config, f"--data.dataset={args.dataset}", *batching], run=False)
    model, dm = parsed.model.train(), parsed.datamodule
    dm.setup("fit")
    optimizer = model.configure_optimizers()["optimizer"]
    batches = iter(dm.train_dataloader())

    def update() -> int:
        batch = next(batches)
        loss, _, tokens = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return int(tokens)

    for _ in range(args.warmup):
        update()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        tokens = sum(update() for _ in range(args.steps))
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
    results = {
        "config": args.config,
        "max_tokens": dm.max_tokens,
        "updates": args.steps,
        "target_tokens": tokens,
        "self_ms_per_update": round(total / 1000 / args.steps, 1),
        "matmul_share": round(matmul / total, 4),
        "operators": rows,
    }
    table = f"{args.config} at {dm.max_tokens} tokens, {args.steps} updates ({tokens} target tokens) under the "
    table += f"profiler: {results['self_ms_per_update']} ms of operator time per update, "
    table += f"**{results['matmul_share']:.1%} in matrix multiplications** ({', '.join(sorted(MATMULS))}).\n\n"
    table += "| operator | calls | self ms per update | share |\n|---|---:|---:|---:|\n"
    table += "\n".join(
        f"| `{r['operator']}` | {r['calls']} | {r['self_ms_per_update']} | {r['share']:.1%} |" for r in rows
    )
    write_results("train_profile", results, table)


if __name__ == "__main__":
    main()
