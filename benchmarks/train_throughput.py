"""Training throughput of the three configs on Multi30k, fp32 against bf16-mixed.

    python benchmarks/train_throughput.py --dataset ../shared/data/multi30k
    python benchmarks/train_throughput.py --precisions 32-true --max-tokens 4096 2048 --name train_batch_size
    python benchmarks/train_throughput.py --models transformer --precisions 32-true --compile --name train_compile
    python benchmarks/train_throughput.py --models transformer --precisions 32-true --max-tokens 1024 2048 \
        --warmup 5 --steps 20 --revision 9481ff0 --repeats 2 --name train_revision

Each (model, precision, batch size) runs in its own process (so peak RSS is its own): a Lightning Trainer takes
`warmup` steps (at least one), then times `steps` more on the same shuffled training batches as `translate fit`,
each batch from the end of the one before it (data loading and the Trainer's work between batches included).
Reported: target tokens/s (non-pad), ms/step, padding fraction, peak RSS, and model FLOPs/s
(counted by torch's FlopCounterMode on one forward+backward) as a fraction of the matmul peak
measured in the same run: the best fp32 GFLOP/s over the feed-forward and output layers' matmul shapes
(forward and both gradients; bf16 on one shape: it is two orders of magnitude slower on CPUs without bf16).
With `--compile`, each configuration is timed twice: eager, then with the model's `features` (all of it
but the fused output layer and loss) compiled by `torch.compile(dynamic=True)` (compilation falls inside
the warm-up steps).
With `--revision REV`, each configuration is also timed with the package and configs as they were at git
revision REV (`git archive` into a temporary folder, first on the child's PYTHONPATH), alternating with the
working tree `repeats` times, and the ratio of the medians is reported.
"""

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from common import write_results
from torch.utils.flop_counter import FlopCounterMode

import translate
from translate.cli import cli

ROOT = Path(__file__).parent.parent


# (m, k, n) of the feed-forward and output layers' matmuls in a Transformer step at 2,048 tokens:
# forward, gradient of the input, gradient of the weight
STEP_SHAPES = [
    (2048, 256, 1024),
    (2048, 1024, 256),
    (1024, 2048, 256),
    (2048, 256, 8000),
    (2048, 8000, 256),
    (8000, 2048, 256),
]


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
    """Wall time and target tokens of every training batch after the first `skip`. A batch's time runs from the
    end of the batch before it, so data loading and the Trainer's work between batches count, as in the
    intervals of JoeyNMT's log."""

    def __init__(self, skip: int) -> None:
        if skip < 1:
            raise ValueError("at least one warm-up step: a batch is timed from the end of the one before it")
        self.skip, self.times, self.tokens, self.padding = skip, [], [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if batch_idx >= self.skip:
            self.times.append(now - self.last)
            real = int(batch.src_lengths.sum()) + int((batch.tgt_out != module.pad_id).sum())
            self.tokens.append(int((batch.tgt_out != module.pad_id).sum()))
            self.padding.append(1 - real / (batch.src.numel() + batch.tgt_out.numel()))
        self.last = time.perf_counter()


def model_flops(module: L.LightningModule, batch) -> int:
    """FLOPs of one forward and backward pass on `batch`, counted by torch."""
    with FlopCounterMode(display=False) as counter:
        loss, _, _ = module.loss(batch)
        loss.backward()
    module.zero_grad()
    return counter.get_total_flops()


def measure(
    config: str,
    dataset: str,
    precision: str,
    warmup: int,
    steps: int,
    max_tokens: int | None,
    compiled: bool,
    accumulate: int = 1,
) -> dict:
    """One (model, precision, batch size, compiled or not): run in a child process. `warmup` and `steps`
    count updates, within one epoch (it ends the run); with `accumulate`, each update is that many batches of
    `max_tokens`."""
    batching = [f"--data.max_tokens={max_tokens}"] if max_tokens else []
    parsed = cli(["--config", config, f"--data.dataset={dataset}", *batching], run=False)
    model, dm = parsed.model, parsed.datamodule
    timer = StepTimer(warmup * accumulate)
    trainer = L.Trainer(
        max_steps=warmup + steps,
        max_epochs=1,
        precision=precision,
        gradient_clip_val=1.0,
        accumulate_grad_batches=accumulate,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    if compiled:
        model.features = torch.compile(model.features, dynamic=True)  # what `loss` calls, not Lightning's hooks
    trainer.fit(model, dm)
    batch = next(iter(dm.train_dataloader()))
    with torch.compiler.set_stance("force_eager"):
        flops = model_flops(model.float().train(), batch)
    tokens_per_step = int((batch.tgt_out != dm.pad_id).sum())
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
        "flops_per_target_token": round(flops / tokens_per_step),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "package": str(Path(translate.__file__).parent.parent),
    }


def revision_ratios(rows: list[dict], revision: str) -> list[dict]:
    """Per configuration, the median target tokens/s at `revision` and in the working tree, and their ratio."""
    setting = ("config", "precision", "max_tokens", "compiled")
    speeds: dict[tuple, dict[str, list[float]]] = {}
    for row in rows:
        by_code = speeds.setdefault(tuple(row[k] for k in setting), {revision: [], "working tree": []})
        by_code[row["code"]].append(row["target_tokens_per_s"])
    ratios = []
    for key, by_code in speeds.items():
        before, after = (round(statistics.median(by_code[code]), 1) for code in (revision, "working tree"))
        ratio = round(after / before, 3)
        ratios.append({**dict(zip(setting, key, strict=True)), revision: before, "working tree": after, "ratio": ratio})
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--models", nargs="+", default=["gru", "bahdanau", "transformer"])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed steps in fp32")
    parser.add_argument("--bf16-steps", type=int, default=2, help="timed steps in bf16 (slow on CPUs without bf16)")
    parser.add_argument("--bf16-models", nargs="+", help="models to time in bf16 (default: all of --models)")
    parser.add_argument("--max-tokens", type=int, nargs="+", help="batch sizes to time (default: each config's own)")
    parser.add_argument("--compile", action="store_true", help="also time each with torch.compile")
    parser.add_argument("--revision", help="also time the package at this git revision, alternately")
    parser.add_argument("--repeats", type=int, default=1, help="times each configuration is timed")
    parser.add_argument("--name", default="train_throughput", help="results/<name>.json and .md")
    parser.add_argument("--child", nargs=4, metavar=("CONFIG", "PRECISION", "WARMUP", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--child-max-tokens", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-accumulate", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config, precision, warmup, steps = args.child
        row = measure(
            config,
            args.dataset,
            precision,
            int(warmup),
            int(steps),
            args.child_max_tokens,
            args.child_compile,
            args.child_accumulate,
        )
        print(json.dumps(row))
        return

    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16, STEP_SHAPES[:1], 1)}
    print({k: round(v, 1) for k, v in peaks.items()}, flush=True)
    trees = {"working tree": ROOT}
    if args.revision:
        temporary = tempfile.TemporaryDirectory(prefix="translate-")  # removed when the script ends
        folder = Path(temporary.name)
        archive = subprocess.run(["git", "archive", args.revision], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
        trees[args.revision] = folder
    rows = []
    grid = itertools.product(
        args.models,
        args.precisions,
        args.max_tokens or [None],
        [False, True] if args.compile else [False],
        range(args.repeats),
        trees.items(),
    )
    for name, precision, max_tokens, compiled, _, (code, tree) in grid:
        if precision.startswith("bf16") and args.bf16_models and name not in args.bf16_models:
            continue
        steps = args.bf16_steps if precision.startswith("bf16") else args.steps
        config = str(tree / "configs" / f"{name}.yaml")
        child = [sys.executable, __file__, "--dataset", args.dataset, "--child", config, precision]
        child += [str(args.warmup), str(steps)] + (["--child-max-tokens", str(max_tokens)] if max_tokens else [])
        child += ["--child-compile"] if compiled else []
        path = [str(tree), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        out = subprocess.run(child, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
        row = {"config": name, "code": code, **json.loads(out.stdout.strip().splitlines()[-1])}
        if Path(row.pop("package")).resolve() != tree.resolve():
            raise RuntimeError(f"the child imported translate from outside {tree}")
        peak = peaks["bf16" if precision.startswith("bf16") else "fp32"]
        achieved = row["flops_per_target_token"] * row["target_tokens_per_s"] / 1e9
        row["model_gflops_per_s"] = round(achieved, 1)
        row["fraction_of_matmul_peak"] = round(achieved / peak, 3)
        print(row, flush=True)
        rows.append(row)
    columns = [
        "config",
        "code",
        "precision",
        "compiled",
        "max_tokens",
        "steps_per_epoch",
        "steps",
        "ms_per_step",
        "target_tokens_per_s",
        "padding_fraction",
        "peak_rss_mib",
        "model_gflops_per_s",
        "fraction_of_matmul_peak",
    ]
    table = f"Matmul peak, best of 10 over the shapes {STEP_SHAPES}: fp32 {peaks['fp32']:.1f} GFLOP/s; "
    table += f"bf16 (slow here: once, {STEP_SHAPES[0]}) {peaks['bf16']:.1f} GFLOP/s.\n\n"
    table += "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    table += "\n".join("| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows)
    results = {"matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()}, "rows": rows}
    if args.revision:
        results["ratios"] = revision_ratios(rows, args.revision)
        table += f"\n\nMedian target tokens/s of the working tree against revision {args.revision}:\n\n"
        table += f"| config | precision | max_tokens | compiled | {args.revision} | working tree | ratio |\n"
        table += "|---|---|---|---|---:|---:|---:|\n"
        table += "\n".join("| " + " | ".join(str(v) for v in r.values()) + " |" for r in results["ratios"])
    write_results(args.name, results, table)


if __name__ == "__main__":
    main()
