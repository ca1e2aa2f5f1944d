"""How to use the two cores: one process with two threads (torch's default), or two data-parallel processes.

    python benchmarks/train_threads.py --dataset ../shared/data/multi30k

Trains configs/transformer.yaml's model (fp32, its 1,024-token batches) on the same `--batches` Multi30k
training batches in each setting, each setting in fresh processes, alternately `--repeats` times:

- one process with 2 threads (torch's default on 2 cores), with 1 thread, and with 2 threads under
  `OMP_WAIT_POLICY=ACTIVE` / `PASSIVE` (how idle OpenMP threads wait between operators);
- two processes of one thread each, every process a batch of its own per update, gradients averaged by
  torch's `DistributedDataParallel` over gloo (what Lightning's `strategy: ddp` with `devices: 2` runs);
- the same two processes without exchanging gradients: the most data parallelism could give.

Each process's update is the Trainer's without its hooks (loss, backward, gradient clipping, the config's
optimizer). Reported: target tokens/s over all processes (median of the repeats) and its ratio to the default.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from common import update, write_results
from torch.nn.parallel import DistributedDataParallel

from translate.batching import Batch
from translate.cli import cli

SETTINGS = {
    "1 process x 2 threads (default)": (1, 2, {}),
    "1 process x 1 thread": (1, 1, {}),
    "1 process x 2 threads, OMP_WAIT_POLICY=ACTIVE": (1, 2, {"OMP_WAIT_POLICY": "ACTIVE"}),
    "1 process x 2 threads, OMP_WAIT_POLICY=PASSIVE": (1, 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "2 processes x 1 thread, DistributedDataParallel (gloo)": (2, 1, {"EXCHANGE": "ddp"}),
    "2 processes x 1 thread, no gradient exchange (upper bound)": (2, 1, {"EXCHANGE": "none"}),
}


class Loss(torch.nn.Module):
    """The model's loss as a module's forward, which DistributedDataParallel wraps."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        return self.model.loss(batch)


def child(dataset: str, timed: int, warmup: int) -> None:
    """One process of a setting: its rank, the world size and threads from the environment."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(int(os.environ["THREADS"]))
    if world > 1:
        store = f"file://{os.environ['STORE']}"  # a file store: no rendezvous server to outlive
        dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
    parsed = cli(["--config", "configs/transformer.yaml", f"--data.dataset={dataset}"], run=False)
    model, dm = parsed.model.train(), parsed.datamodule
    dm.setup("fit")
    optimizer = model.configure_optimizers()["optimizer"]
    loader = iter(dm.train_dataloader())  # seeded: the same batches in every setting
    batches = [next(loader) for _ in range(2 * warmup + timed)]
    warm, mine = batches[: 2 * warmup][rank::world][:warmup], batches[2 * warmup :][rank::world]
    forward = DistributedDataParallel(Loss(model)) if os.environ.get("EXCHANGE") == "ddp" else None
    clip = parsed.trainer.gradient_clip_val

    for batch in warm:
        update(model, optimizer, batch, clip, forward)
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    tokens = sum(update(model, optimizer, batch, clip, forward) for batch in mine)
    if world > 1:
        dist.barrier()
    seconds = time.perf_counter() - start
    total = torch.tensor([tokens], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(total)
    if rank == 0:
        print(json.dumps({"target_tokens_per_s": round(total.item() / seconds, 1), "seconds": round(seconds, 2)}))
        sys.stdout.flush()
    if world > 1:
        dist.destroy_process_group()


def run_setting(name: str, dataset: str, batches: int, warmup: int, timeout: float = 900) -> dict:
    """Start the setting's processes, wait for them, and return rank 0's measurement."""
    world, threads, env = SETTINGS[name]
    store = Path(tempfile.mkdtemp()) / "store"
    common = {**os.environ, **env, "THREADS": str(threads), "WORLD_SIZE": str(world), "STORE": str(store)}
    command = [sys.executable, __file__, "--child", "--dataset", dataset, "--batches", str(batches)]
    command += ["--warmup", str(warmup)]
    ranks = [
        subprocess.Popen(command, env={**common, "RANK": str(r)}, stdout=subprocess.PIPE, text=True)
        for r in range(world)
    ]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in ranks]
    except subprocess.TimeoutExpired:
        for p in ranks:
            p.kill()
        raise RuntimeError(f"{name}: no result within {timeout} s") from None
    shutil.rmtree(store.parent)
    if any(p.returncode for p in ranks):
        raise RuntimeError(f"{name}: a process failed (exit codes {[p.returncode for p in ranks]})")
    return json.loads(outputs[0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--batches", type=int, default=40, help="timed batches, over all processes")
    parser.add_argument("--warmup", type=int, default=4, help="untimed batches per process first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="train_threads", help="results/<name>.json and .md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.dataset, args.batches, args.warmup)
        return

    runs: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for repeat in range(args.repeats):
        for name in SETTINGS:
            speed = run_setting(name, args.dataset, args.batches, args.warmup)["target_tokens_per_s"]
            runs[name].append(speed)
            print(f"repeat {repeat + 1}: {name}: {speed} target tokens/s", flush=True)
    default = statistics.median(runs[next(iter(SETTINGS))])
    rows = [
        {
            "setting": name,
            "processes": SETTINGS[name][0],
            "threads_per_process": SETTINGS[name][1],
            "runs": speeds,
            "target_tokens_per_s": statistics.median(speeds),
            "ratio_to_default": round(statistics.median(speeds) / default, 3),
        }
        for name, speeds in runs.items()
    ]
    table = [
        f"configs/transformer.yaml, fp32, the same {args.batches} training batches of 1,024 tokens in every "
        f"setting (after {args.warmup} untimed per process); median of {args.repeats} runs, alternating.",
        "",
        "| setting | target tokens/s | runs | ratio to default |",
        "|---|---:|---|---:|",
    ]
    table += [
        f"| {r['setting']} | {r['target_tokens_per_s']:.0f} | {', '.join(f'{s:.0f}' for s in r['runs'])} "
        f"| {r['ratio_to_default']:.3f} |"
        for r in rows
    ]
    write_results(args.name, {"batches": args.batches, "warmup": args.warmup, "rows": rows}, "\n".join(table))


if __name__ == "__main__":
    main()
