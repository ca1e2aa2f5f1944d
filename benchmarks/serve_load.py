"""Load on `translate serve`: concurrent clients against 127.0.0.1, with and without request batching.

Starts `translate serve --max-batch B` as its own process for each B, alternately (rounds of every B,
so the VM's drift hits them alike), then `--clients` clients each send `--requests` requests of one
test sentence, one after the other, and stop. Every answer is checked against the model's own
translation of that sentence (made here first, alone); the results give failed requests, answers that
differ, throughput and p50/p95 latency per B.

    python benchmarks/serve_load.py --checkpoint bahdanau=checkpoints/bahdanau/best-….ckpt
"""

import argparse
import asyncio
import socket
import statistics
import subprocess
import tempfile
import time

import httpx
from common import write_results

from translate import TranslationDataModule, Translator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: str, port: int, *options: str) -> subprocess.Popen:
    """`translate serve` (with `options`) in a process of its own, once /health answers."""
    command = ["translate", "serve", "--checkpoint", checkpoint, "--port", str(port), *options]
    with tempfile.TemporaryFile() as log:  # not a pipe: a full one would stall the server
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 120
        while time.time() < deadline:
            if server.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"translate serve exited: {log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    return server
            except httpx.TransportError:
                time.sleep(0.2)
    server.kill()
    raise RuntimeError("translate serve did not answer /health within 120 s")


async def client(
    http: httpx.AsyncClient, url: str, name: str, sentences: list[str], expected: list[str], start: int, count: int
) -> list[tuple[float, str]]:
    """`count` requests one after the other; each one's latency and outcome (ok, differs, or the error)."""
    outcomes = []
    for i in range(start, start + count):
        began = time.perf_counter()
        try:
            response = await http.post(url, json={"text": sentences[i], "model": name})
            if response.status_code != 200:
                outcome = f"HTTP {response.status_code}: {response.text[:200]}"
            else:
                outcome = "ok" if response.json()["results"][name]["translations"] == expected[i] else "differs"
        except httpx.HTTPError as e:
            outcome = f"{type(e).__name__}: {e}"
        outcomes.append((time.perf_counter() - began, outcome))
    return outcomes


async def load(port: int, name: str, sentences: list[str], expected: list[str], clients: int, requests: int) -> dict:
    url = f"http://127.0.0.1:{port}/translate"
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        began = time.perf_counter()
        runs = [client(http, url, name, sentences, expected, c * requests, requests) for c in range(clients)]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, metavar="NAME=PATH")
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=25, help="per client")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--name", default="serve_load")
    args = parser.parse_args()
    name, path = args.checkpoint.split("=", 1)
    total = args.clients * args.requests
    sentences = TranslationDataModule(dataset=args.dataset).sources("test")[:total]
    translator = Translator.from_checkpoint(path, device="cpu")
    expected = [translator.translate(sentence) for sentence in sentences]  # each alone, as with --max-batch 1
    runs = []
    for round_ in range(args.rounds):
        for max_batch in args.max_batch:
            port = free_port()
            server = start_server(args.checkpoint, port, "--max-batch", str(max_batch))
            try:
                result = asyncio.run(load(port, name, sentences, expected, args.clients, args.requests))
            finally:
                server.terminate()
                server.wait(30)
            runs.append({"round": round_ + 1, "max_batch": max_batch, **result})
            print(runs[-1], flush=True)
    write_results(args.name, {"model": name, "checkpoint": path, "clients": args.clients, "runs": runs}, table(runs))


def table(runs: list[dict]) -> str:
    lines = [
        "| round | max batch | requests | failed | differ | seconds | requests/s | p50 ms | p95 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['round']} | {r['max_batch']} | {r['requests']} | {r['failed']} | {r['differ']} | {r['seconds']} "
            f"| {r['requests_per_second']} | {r['p50_ms']} | {r['p95_ms']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
