"""Learning curves of training runs from Lightning's own logs: validation BLEU and loss per epoch.

    python -m benchmarks.quality.learning_curves --run gru=logs/gru/version_0/metrics.csv ...

Each ``--run NAME=CSV[,CSV...]`` names the CSVLogger ``metrics.csv`` files of one run, in order (a run
resumed with ``--ckpt_path last`` logs to a new file). Per epoch: the last step, the learning rate,
validation BLEU (greedy, as `translate fit` validates) and loss. A summary table first gives each run's
best validation BLEU; ``--lever NAME=TEXT`` says what a run changed and ``--kept NAME`` marks the runs
whose change the configs keep (a comparison of levers). Writes <name>.{json,md,png} beside this script.
"""

import argparse
import csv
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

from benchmarks.common import write_results


def read_curve(paths: list[str]) -> list[dict]:
    """One row per validated epoch: epoch, step, lr, val_bleu, val_loss (later files win)."""
    epochs: dict[int, dict] = {}
    lr = None
    for path in paths:
        with open(path, newline="") as file:
            for row in csv.DictReader(file):
                lr = float(row["lr-AdamW"]) if row.get("lr-AdamW") else lr
                if row.get("val/bleu"):
                    epochs[int(row["epoch"])] = {
                        "epoch": int(row["epoch"]),
                        "step": int(row["step"]),
                        "lr": lr,
                        "val_bleu": round(float(row["val/bleu"]), 2),
                        "val_loss": round(float(row["val/loss"]), 3),
                    }
    if not epochs:
        raise ValueError(f"no val/bleu rows in {', '.join(paths)}: not a translate fit metrics.csv")
    return [epochs[epoch] for epoch in sorted(epochs)]


def summary(runs: dict) -> str:
    """One row per run: what it changed, epochs validated, its best validation BLEU, whether it is kept."""
    table = "| run | lever | epochs validated | best val BLEU (greedy) | kept |\n|---|---|---:|---:|---|\n"
    for name, run in runs.items():
        best = max(run["epochs"], key=lambda row: row["val_bleu"])
        kept = "yes" if run.get("kept") else "no" if "lever" in run else "—"
        epochs = f"{best['val_bleu']} at epoch {best['epoch']}"
        table += f"| {name} | {run.get('lever', '—')} | {len(run['epochs'])} | {epochs} | {kept} |\n"
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="NAME=CSV[,CSV...]")
    parser.add_argument("--name", default="learning_curves", help="<name>.json, .md and .png beside this script")
    parser.add_argument("--lever", action="append", default=[], metavar="NAME=TEXT", help="what run NAME changed")
    parser.add_argument("--kept", action="append", default=[], metavar="NAME", help="a run whose change is kept")
    args = parser.parse_args()

    runs = {}
    for item in args.run:
        name, paths = item.split("=", 1)
        runs[name] = {"files": paths.split(","), "epochs": read_curve(paths.split(","))}
    for item in args.lever:
        name, text = item.split("=", 1)
        runs[name]["lever"] = text
    for name in args.kept:
        runs[name]["kept"] = True

    figure = Figure(figsize=(10, 4))
    bleu_axis, loss_axis = figure.subplots(1, 2)
    for axis in (bleu_axis, loss_axis):
        axis.set_prop_cycle(color=colormaps["tab20"].colors)  # one colour per run, up to 20 runs
    table = summary(runs) + "\n| run | epoch | step | lr | val BLEU (greedy) | val loss |\n"
    table += "|---|---:|---:|---:|---:|---:|\n"
    for name, run in runs.items():
        epochs = [row["epoch"] + 1 for row in run["epochs"]]
        bleu_axis.plot(epochs, [row["val_bleu"] for row in run["epochs"]], marker="o", label=name)
        loss_axis.plot(epochs, [row["val_loss"] for row in run["epochs"]], marker="o", label=name)
        best = max(run["epochs"], key=lambda row: row["val_bleu"])
        for row in run["epochs"]:
            bleu = f"**{row['val_bleu']}**" if row is best else row["val_bleu"]
            lr = "—" if row["lr"] is None else f"{row['lr']:.2e}"  # None: the run logged no learning rate
            table += f"| {name} | {row['epoch']} | {row['step']} | {lr} | {bleu} | {row['val_loss']} |\n"
    bleu_axis.set(xlabel="epochs trained", ylabel="validation sacreBLEU (greedy)")
    loss_axis.set(xlabel="epochs trained", ylabel="validation loss (label-smoothed)")
    for axis in (bleu_axis, loss_axis):
        axis.grid(alpha=0.3)
    bleu_axis.legend(fontsize="small", ncols=2)  # the loss panel uses the same colours
    figure.tight_layout()
    figure.savefig(Path(__file__).parent / f"{args.name}.png", dpi=100)
    write_results(Path(__file__).parent, args.name, {"runs": runs}, table + f"\n![learning curves]({args.name}.png)")


if __name__ == "__main__":
    main()
