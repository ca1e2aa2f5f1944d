"""Training speed side by side with JoeyNMT 2.3.0 on the same machine: target tokens/s of the same
Transformer size (d_model 256, 3+3 layers, 4 heads, ff 1024, joint SentencePiece 8000) and update size: JoeyNMT's
`batch_size: 4096` (tokens, counted its way) makes ~265 updates per Multi30k epoch; ours, by default, one batch of
2,048 padded tokens per update, 252 updates (`--max-tokens 2048 --accumulate 1`). `--max-tokens 1024 --accumulate 2`
accumulates two batches of configs/transformer.yaml's size instead (245 updates).

    ../shared/peers/joeynmt/setup.sh ../peer-joeynmt && ../shared/peers/joeynmt/run.sh ../peer-joeynmt [UPDATES]
    python -m benchmarks.joeynmt.joeynmt_compare --joeynmt ../peer-joeynmt [--epoch]

Run it right after run.sh: JoeyNMT's numbers come from its own training log (its "Tokens per Sec" lines
count target tokens over the wall time between two log lines, as ours count them over the wall time of the
timed updates, data loading included), ours are measured here: the median of `--repeats` runs in fresh processes
(on a VM they differ by several percent; all are recorded), with our model FLOP/s against the best fp32
matmul of the step's shapes (common.matmul_peak). Decoding speed: joeynmt_decode.py.
"""

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import torch
import yaml

from benchmarks.common import ROOT, child_result, matmul_peak, timed_training, write_results


def peer_training(work: Path) -> dict:
    train = (work / "train.log").read_text()
    speeds = [float(s) for s in re.findall(r"Tokens per Sec:\s*([\d.]+)", train)]
    steps = [int(s) for s in re.findall(r"Step:\s*(\d+)", train)]
    params = re.search(r"Total params:\s*([\d,]+)", train)
    epoch = re.search(r"Epoch\s+1, total training loss.*num\. of tokens:\s*(\d+),\s*([\d.]+)\[sec\]", train)
    config = yaml.safe_load((work / "transformer.yaml").read_text())
    return {
        "batch_size": config["training"]["batch_size"],
        "parameters": int(params.group(1).replace(",", "")) if params else None,
        "updates_logged": max(steps),
        "target_tokens_per_s_per_log_line": speeds,
        "target_tokens_per_s": statistics.median(speeds[1:] or speeds),  # the first line includes start-up
        # its first epoch whole, when the run got that far: target tokens over seconds, both as it logs them
        "first_epoch": {"target_tokens": int(epoch.group(1)), "seconds": float(epoch.group(2))} if epoch else None,
    }


def our_training(dataset: str, steps: int, max_tokens: int, accumulate: int) -> dict:
    """configs/transformer.yaml in fp32, `accumulate` batches of `max_tokens` per update, 2 updates then `steps`
    timed, in a child process at the repository root (the data caches of `translate fit`)."""
    child = [sys.executable, "-m", __spec__.name, "--dataset", dataset, "--max-tokens", str(max_tokens)]
    return child_result([*child, "--accumulate", str(accumulate), "--child", str(steps)])


def table(results: dict, peak: float, achieved: float) -> str:
    """JoeyNMT's numbers beside ours; `peak` and `achieved`: the fp32 matmul peak and our model's GFLOP/s."""
    peer, ours, peer_epoch = results["joeynmt"], results["ours"], results["joeynmt"]["training"]["first_epoch"]
    speeds = ours["target_tokens_per_s_per_run"]
    text = "| | JoeyNMT 2.3.0 | translate |\n|---|---|---|\n"
    text += f"| parameters | {peer['training']['parameters']} | {ours['training']['parameters']} |\n"
    text += (
        f"| update | `batch_size: {peer['training']['batch_size']}` tokens (its count) "
        f"| {ours['training']['accumulate']} x {ours['training']['max_tokens']} padded tokens, "
        f"{ours['training']['steps_per_epoch']} updates per epoch |\n"
        f"| training target tokens/s, fp32 (median of JoeyNMT's log lines; ours: median of {len(speeds)} runs of "
        f"{ours['training']['steps']} updates, {', '.join(f'{v:.0f}' for v in speeds)}) "
        f"| {peer['training']['target_tokens_per_s']:.0f} "
        f"| {ours['training']['target_tokens_per_s']:.0f} (**{results['train_speedup']}x**) |\n"
        "| model FLOP/s of ours (torch's FlopCounterMode) against the best fp32 matmul of its step's shapes, "
        "measured after it | | "
        f"{achieved:.1f} of {peak:.1f} GFLOP/s ({achieved / peak:.0%}) |\n"
    )
    if "epoch_speedup" in results:
        text += (
            f"| one epoch, target tokens/s (JoeyNMT's first, {peer_epoch['target_tokens']} tokens in "
            f"{peer_epoch['seconds']:.0f} s as it logs them; ours: updates 3 to {ours['epoch']['steps'] + 2} of "
            f"its first, after the runs above) "
            f"| {peer_epoch['target_tokens_per_s']:.0f} "
            f"| {ours['epoch']['target_tokens_per_s']:.0f} (**{results['epoch_speedup']}x**) |\n"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joeynmt", type=Path, default=Path("../peer-joeynmt"))
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--train-steps", type=int, default=50, help="timed updates of ours")
    parser.add_argument("--max-tokens", type=int, default=2048, help="our batch size: ~JoeyNMT's updates per epoch")
    parser.add_argument("--accumulate", type=int, default=1, help="batches per update")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (processes): the median counts")
    parser.add_argument("--epoch", action="store_true", help="also time the rest of one epoch of ours after 2 updates")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # STEPS: time ours, print the row
    args = parser.parse_args()
    if args.child:
        config = str(ROOT / "configs" / "transformer.yaml")
        row = timed_training(
            config, args.dataset, "32-true", 2, args.child, args.max_tokens, accumulate=args.accumulate
        )
        print(json.dumps(row))
        return

    peer = {"training": peer_training(args.joeynmt)}
    peer_epoch = peer["training"]["first_epoch"]
    if args.epoch and not peer_epoch:
        raise SystemExit(f"--epoch: {args.joeynmt / 'train.log'} has no whole first epoch (run JoeyNMT 300 updates)")
    ours_setting = (args.max_tokens, args.accumulate)
    runs = [our_training(args.dataset, args.train_steps, *ours_setting) for _ in range(args.repeats)]
    speeds = [run["target_tokens_per_s"] for run in runs]
    median = sorted(runs, key=lambda run: run["target_tokens_per_s"])[len(runs) // 2]
    ours = {"training": median, "target_tokens_per_s_per_run": speeds}
    peak = matmul_peak(torch.float32)
    achieved = ours["training"]["flops_per_target_token"] * ours["training"]["target_tokens_per_s"] / 1e9
    results = {
        "joeynmt": peer,
        "ours": ours,
        "train_speedup": round(ours["training"]["target_tokens_per_s"] / peer["training"]["target_tokens_per_s"], 2),
        "fp32_matmul_peak_gflops": round(peak, 1),
        "our_model_gflops_per_s": round(achieved, 1),
    }
    if args.epoch:
        ours["epoch"] = our_training(args.dataset, 10**6, *ours_setting)  # the epoch ends it
        peer_epoch["target_tokens_per_s"] = round(peer_epoch["target_tokens"] / peer_epoch["seconds"], 1)
        results["epoch_speedup"] = round(ours["epoch"]["target_tokens_per_s"] / peer_epoch["target_tokens_per_s"], 2)
    print(json.dumps(results, indent=2))
    write_results(Path(__file__).parent, "joeynmt_compare", results, table(results, peak, achieved))


if __name__ == "__main__":
    main()
