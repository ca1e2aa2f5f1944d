"""Training throughput of the three configs on Multi30k through Lightning's Trainer, fp32 against bf16-mixed.

    python -m benchmarks.training_speed.train_throughput --dataset ../shared/data/multi30k
    python -m benchmarks.training_speed.train_throughput --models transformer --precisions 32-true --compile
    python -m benchmarks.training_speed.train_throughput --models transformer --precisions 32-true \
        --warmup 5 --steps 20 --revision 840d4b3 --repeats 3 --name train_revision

Each (model, precision, batch size) runs in its own process (so peak RSS is its own): `--warmup` updates, then
`--steps` timed ones on the shuffled training batches of `translate fit`, each batch from the end of the one before
(data loading included). Reported: target tokens/s (non-pad), ms/step, padding, peak RSS, and model FLOP/s (torch's
FlopCounterMode) against the best fp32 matmul of the step's shapes measured in the same run (bf16 once: it is two
orders of magnitude slower on CPUs without bf16). `--compile` also times each with the model's `features` under
`torch.compile(dynamic=True)`. `--revision REV` also times the package and configs of git revision REV, alternating
with the working tree `--repeats` times, and reports the ratio of the medians.
"""

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import (
    ROOT,
    STEP_SHAPES,
    child_result,
    markdown_table,
    matmul_peak,
    timed_training,
    write_results,
)

COLUMNS = ["config", "code", "precision", "compiled", "max_tokens", "steps_per_epoch", "steps", "ms_per_step"]
COLUMNS += ["target_tokens_per_s", "padding_fraction", "peak_rss_mib", "model_gflops_per_s", "fraction_of_matmul_peak"]


def checkout(revision: str, folder: Path) -> Path:
    """`translate/` and `configs/` of `revision` in `folder`, beside links to today's `benchmarks/` and the data
    cache (`data/`, as `cache_dir` defaults): a child run in `folder` imports the old package."""
    archive = subprocess.run(["git", "archive", revision, "translate", "configs"], cwd=ROOT, capture_output=True)
    if archive.returncode:
        raise SystemExit(archive.stderr.decode())
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    (ROOT / "data").mkdir(exist_ok=True)
    for name in ("benchmarks", "data"):
        (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    return folder


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
        ratios.append(
            {
                **dict(zip(setting, key, strict=True)),
                revision: before,
                "working tree": after,
                "ratio": round(after / before, 3),
            }
        )
    return ratios


def measure_all(args: argparse.Namespace, trees: dict[str, Path], peaks: dict[str, float]) -> list[dict]:
    """Every configuration in a child process run in its tree, the trees alternating."""
    dataset = str(Path(args.dataset).resolve()) if Path(args.dataset).exists() else args.dataset  # children move
    rows = []
    compiles = [False, True] if args.compile else [False]
    settings = itertools.product(args.models, args.precisions, args.max_tokens or [None], compiles)
    runs = [(setting, code, tree) for setting in settings for _ in range(args.repeats) for code, tree in trees.items()]
    for (name, precision, max_tokens, compiled), code, tree in runs:
        bf16 = precision.startswith("bf16")
        if bf16 and args.bf16_models and name not in args.bf16_models:
            continue
        steps = args.bf16_steps if bf16 else args.steps
        config = str(tree / "configs" / f"{name}.yaml")
        child = [sys.executable, "-m", __spec__.name, "--dataset", dataset, "--child", config, precision]
        child += [str(args.warmup), str(steps), str(max_tokens or 0)] + (["--compile"] if compiled else [])
        row = {"config": name, "code": code, **child_result(child, cwd=tree)}
        if Path(row.pop("package")).resolve() != tree.resolve():
            raise RuntimeError(f"the child imported translate from outside {tree}")
        achieved = row["flops_per_target_token"] * row["target_tokens_per_s"] / 1e9
        row["model_gflops_per_s"] = round(achieved, 1)
        row["fraction_of_matmul_peak"] = round(achieved / peaks["bf16" if bf16 else "fp32"], 3)
        print(row, flush=True)
        rows.append(row)
    return rows


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
    parser.add_argument("--name", default="train_throughput", help="<name>.json and .md beside this script")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)  # CONFIG PRECISION WARMUP STEPS MAX_TOKENS
    args = parser.parse_args()
    if args.child:
        config, precision, warmup, steps, max_tokens = args.child  # one configuration; --compile: compiled
        counts = (int(warmup), int(steps), int(max_tokens) or None)
        print(json.dumps(timed_training(config, args.dataset, precision, *counts, compiled=args.compile)))
        return

    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16, STEP_SHAPES[:1], 1)}
    print({k: round(v, 1) for k, v in peaks.items()}, flush=True)
    with tempfile.TemporaryDirectory(prefix="translate-") as folder:
        trees = {"working tree": ROOT}
        if args.revision:
            trees[args.revision] = checkout(args.revision, Path(folder))
        rows = measure_all(args, trees, peaks)
    table = f"Matmul peak, best of 10 over the shapes {STEP_SHAPES}: fp32 {peaks['fp32']:.1f} GFLOP/s; "
    table += f"bf16 (slow here: once, {STEP_SHAPES[0]}) {peaks['bf16']:.1f} GFLOP/s.\n\n"
    table += markdown_table(rows, COLUMNS)
    results = {"matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()}, "rows": rows}
    if args.revision:
        results["ratios"] = revision_ratios(rows, args.revision)
        table += f"\n\nMedian target tokens/s of the working tree against revision {args.revision}:\n\n"
        table += markdown_table(results["ratios"], list(results["ratios"][0]))
    write_results(Path(__file__).parent, args.name, results, table)


if __name__ == "__main__":
    main()
