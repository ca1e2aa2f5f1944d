"""Load on `translate serve`: concurrent clients against 127.0.0.1, with and without request batching.

Starts `translate serve --max-batch B` with every `--checkpoint` (NAME=PATH: a .ckpt of `translate fit` or a
directory of `translate export`) as its own process for each B, alternately (rounds of every B, so the VM's drift
hits them alike), then `--clients` clients each send `--requests` requests of one test sentence to every model
("model": "all"), one after the other, and stop. Every answer is checked against each model's own translation of
that sentence (made here first, alone); the results give failed requests, answers that differ, throughput and
p50/p95 latency per B. With one client, p50 is the median wall time of a request alone.

    python -m benchmarks.serving.serve_load --checkpoint bahdanau=checkpoints/bahdanau/best-….ckpt
    python -m benchmarks.serving.serve_load --checkpoint gru=… bahdanau=… transformer=… --name serve_load_all
    python -m benchmarks.serving.serve_load --checkpoint ct2=checkpoints/ctranslate2/int8 --name serve_load_ct2
    python -m benchmarks.serving.serve_load --checkpoint gru=… bahdanau=… transformer=… --clients 1 \\
        --requests 20 --max-batch 16 --rounds 1 --page --name serve_latency_all
"""

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx

from benchmarks.common import run_stamp
from benchmarks.serving.harness import client, free_port, sentences_and_translations, start_server


async def load(port: int, sentences: list[str], expected: dict[str, list[str]], args: argparse.Namespace) -> dict:
    """All `args.clients` at once, `args.requests` each: failures, differing answers, throughput and latency."""
    url = f"http://127.0.0.1:{port}/translate"
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        await client(http, url, sentences, expected, 0, 1, asks(args))  # a warm-up request, not counted
        began = time.perf_counter()
        runs = [
            client(http, url, sentences, expected, c * args.requests, args.requests, asks(args))
            for c in range(args.clients)
        ]
        outcomes = [o for run in await asyncio.gather(*runs) for o in run]
        wall = time.perf_counter() - began
    latencies = sorted(seconds for seconds, _ in outcomes)
    failed = [outcome for _, outcome in outcomes if outcome not in ("ok", "differs")]
    return {
        "requests": len(outcomes),
        "failed": len(failed),
        "failures": failed[:5],
        "differ": sum(outcome == "differs" for _, outcome in outcomes),
        "seconds": round(wall, 2),
        "requests_per_second": round(len(outcomes) / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
    }


def asks(args: argparse.Namespace) -> dict:
    """The request fields besides text and model: with `--page`, every view the page shows."""
    return {"attention": True, "saliency": True, "n_best": 5} if args.page else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, nargs="+", metavar="NAME=PATH", help="the models served")
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=25, help="per client")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--page", action="store_true", help="ask what the page asks: attention, saliency, 5-best")
    parser.add_argument("--name", default="serve_load", help="the scenario: its section of serve_load.json and .md")
    args = parser.parse_args()
    if any("=" not in checkpoint for checkpoint in args.checkpoint):
        parser.error(f"--checkpoint takes NAME=PATH, got {args.checkpoint}")
    # each sentence alone, as with --max-batch 1
    sentences, expected = sentences_and_translations(args.checkpoint, args.dataset, args.clients * args.requests)
    runs = []
    for round_ in range(args.rounds):
        for max_batch in args.max_batch:
            port = free_port()
            server = start_server(args.checkpoint, port, "--max-batch", str(max_batch))
            try:
                result = asyncio.run(load(port, sentences, expected, args))
            finally:
                server.terminate()
                server.wait(30)
            runs.append({"round": round_ + 1, "max_batch": max_batch, **result})
            print(runs[-1], flush=True)
    models = dict(checkpoint.split("=", 1) for checkpoint in args.checkpoint)
    settings = {"clients": args.clients, "requests_per_client": args.requests, "asks": asks(args)}
    write_scenario(args.name, {**run_stamp(), "models": models, **settings, "runs": runs, "table": table(runs, models)})


def write_scenario(name: str, results: dict) -> None:
    """Each scenario's (`--name`) latest run in serve_load.json and .md beside this script, with its own stamp."""
    json_path, md_path = Path(__file__).with_suffix(".json"), Path(__file__).with_suffix(".md")
    scenarios = json.loads(json_path.read_text())["scenarios"] if json_path.is_file() else {}
    scenarios[name] = results
    json_path.write_text(json.dumps({"scenarios": scenarios}, indent=2) + "\n")
    sections = [
        f"## {n}\n\nCommand: `{s['command']}`  \nDate: {s['date']}  \nMachine: {json.dumps(s['machine'])}\n\n"
        + s["table"]
        for n, s in scenarios.items()
    ]
    md_path.write_text("\n\n".join(sections) + "\n")


def table(runs: list[dict], models: dict[str, str]) -> str:
    lines = [
        "| round | max batch | requests | failed | differ | seconds | requests/s | p50 ms | p95 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['round']} | {r['max_batch']} | {r['requests']} | {r['failed']} | {r['differ']} | {r['seconds']} "
            f"| {r['requests_per_second']} | {r['p50_ms']} | {r['p95_ms']} |"
        )
    served = ", ".join(f"{name} ({path})" for name, path in models.items())
    return "\n".join(lines) + f"\n\nEach request: one test sentence to every model served: {served}."


if __name__ == "__main__":
    main()
