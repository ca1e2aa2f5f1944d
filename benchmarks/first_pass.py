"""Collect the first-pass Multi30k results of the three configs into results/first_pass.{json,md}.

    python benchmarks/first_pass.py --driver-log runs/train_all.log

Reads, for each model, the newest `logs/<model>/version_*/test_results.json` written by `translate test`,
the epoch and step stored in the tested checkpoint, and the fit wall time that the driver script logged
(its log is copied beside the results).
"""

import argparse
import json
import re
import shutil
from pathlib import Path

from common import RESULTS, write_results

from translate.checkpoints import read_checkpoint, training_record

MODELS = ("gru", "bahdanau", "transformer")


def newest_results(logs: Path, model: str) -> dict:
    results = sorted(logs.glob(f"{model}/version_*/test_results.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(results[-1].read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--driver-log", type=Path, required=True, help="log of the script that ran translate fit")
    parser.add_argument("--pause-log", type=Path, help="log of pauses of the training runs")
    parser.add_argument("--logs", type=Path, default=Path("logs"))
    parser.add_argument("--greedy-logs", type=Path, help="logs of `translate test` runs with greedy decoding")
    args = parser.parse_args()

    driver = args.driver_log.read_text()
    shutil.copy(args.driver_log, RESULTS / "first_pass_driver.log")
    if args.pause_log:  # times the runs were stopped (SIGSTOP) while tests ran: part of the wall time
        shutil.copy(args.pause_log, RESULTS / "first_pass_pauses.log")
    rows = []
    for model in MODELS:
        record = newest_results(args.logs, model)
        greedy = newest_results(args.greedy_logs, model) if args.greedy_logs else {}
        trained = training_record(read_checkpoint(record["checkpoint"]))
        wall = re.search(rf"== {model} fit done rc=0 wall_s=(\d+)", driver)
        rows.append(
            {
                "model": model,
                **record,
                "epochs": trained["epochs"],
                "steps": trained["steps"],
                "fit_wall_s": int(wall[1]) if wall else None,
                "greedy_bleu": greedy.get("bleu"),
                "fit_command": f"translate fit --config configs/{model}.yaml --data.dataset ../shared/data/multi30k",
                "test_command": (
                    f"translate test --config configs/{model}.yaml --data.dataset ../shared/data/multi30k "
                    f"--ckpt_path {record['checkpoint']}"
                ),
            }
        )
    table = "| model | params | epochs (best) | steps | fit wall (s) | greedy sacreBLEU | beam | sacreBLEU | chrF "
    table += "| test decode (s) |\n|---|---|---|---|---|---|---|---|---|---|\n"
    for r in rows:
        greedy = f"{r['greedy_bleu']:.2f}" if r["greedy_bleu"] is not None else "-"
        table += (
            f"| {r['model']} | {r['parameters'] / 1e6:.1f} M | {r['epochs']} | {r['steps']} | {r['fit_wall_s']} "
            f"| {greedy} | {r['beam_size']} | {r['bleu']:.2f} | {r['chrf']:.2f} | {r['decode_seconds']} |\n"
        )
    table += f"\nsacreBLEU signature: `{rows[0]['signature']}`\n\nCommands:\n\n"
    table += "".join(f"    {r['fit_command']}\n    {r['test_command']}\n" for r in rows)
    write_results("first_pass", {"rows": rows}, table)


if __name__ == "__main__":
    main()
