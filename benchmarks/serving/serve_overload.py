"""Overload on `translate serve`: more concurrent clients than its queue holds, against 127.0.0.1.

Starts `translate serve --max-batch B --queue Q --max-connections C` as its own process, then `--clients`
clients each send `--requests` requests of one test sentence, one after the other, while a thread polls
/health. Every 200 answer is checked against the model's own translation of its sentence (made here
first, alone). The results: requests sent, 200/503/504 answers, lost requests (no answer, or another
status), wrong answers, /health p50/p99 latency, and the server's RSS (VmRSS before the load, peak
VmHWM after it). Without --checkpoint, a tiny Transformer is trained here first (`--steps` updates).

    python -m benchmarks.serving.serve_overload --dataset ../shared/data/multi30k
"""

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import lightning as L

from benchmarks.common import markdown_table, write_results
from benchmarks.serving.harness import client, free_port, sentences_and_translations, start_server
from translate import TranslationDataModule
from translate.models import TransformerSeq2Seq


def train_tiny(dataset: str, steps: int, folder: Path) -> str:
    """NAME=PATH of a tiny Transformer (d_model 64) trained for `steps` updates on `dataset`."""
    dm = TranslationDataModule(dataset=dataset, cache_dir=str(folder / "cache"), vocab_size=1000, max_tokens=2048)
    L.seed_everything(0)
    sizes = {"d_model": 64, "heads": 4, "ff_dim": 128, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.0}
    model = TransformerSeq2Seq(vocab_size=dm.vocab_size, lr=3e-3, scheduler="inverse_sqrt", warmup_steps=50, **sizes)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, enable_model_summary=False, **quiet)
    trainer.fit(model, dm)
    trainer.save_checkpoint(folder / "tiny.ckpt")
    return f"tiny={folder / 'tiny.ckpt'}"


def memory(pid: int) -> dict[str, float]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), MiB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines if line.startswith(("VmRSS", "VmHWM")))
    return {key: round(int(value.split()[0]) / 1024, 1) for key, value in fields.items()}


def poll(url: str, stop: threading.Event, seconds: list[float], statuses: Counter) -> None:
    """GET /health every 10 ms until `stop`: each one's latency and status."""
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            began = time.perf_counter()
            statuses[http.get(f"{url}/health").status_code] += 1
            seconds.append(time.perf_counter() - began)
            time.sleep(0.01)


async def load(url: str, sentences: list[str], expected: dict[str, list[str]], args: argparse.Namespace) -> list:
    """Every client's outcomes (harness.client), within `args.seconds` in all."""
    async with httpx.AsyncClient(timeout=args.seconds, limits=httpx.Limits(max_connections=args.clients)) as http:
        runs = [
            client(http, f"{url}/translate", sentences, expected, c * args.requests, args.requests)
            for c in range(args.clients)
        ]
        return [outcome for run in await asyncio.wait_for(asyncio.gather(*runs), args.seconds) for outcome in run]


def status(outcome: str) -> str:
    """The HTTP status of a harness.client outcome ("ok", "differs", "HTTP 503: …"), or "lost"."""
    return "200" if outcome in ("ok", "differs") else outcome[5:8] if outcome.startswith("HTTP ") else "lost"


def overload(checkpoint: str, args: argparse.Namespace) -> dict:
    name, path = checkpoint.split("=", 1)
    sentences, expected = sentences_and_translations([checkpoint], args.dataset, args.clients * args.requests)
    port, options = free_port(), ["--max-batch", str(args.max_batch), "--queue", str(args.queue)]
    server = start_server([checkpoint], port, *options, "--max-connections", str(args.max_connections))
    url, stop, seconds, health = f"http://127.0.0.1:{port}", threading.Event(), [], Counter()
    try:
        before = memory(server.pid)
        poller = threading.Thread(target=poll, args=(url, stop, seconds, health))
        poller.start()
        began = time.perf_counter()
        outcomes = [outcome for _, outcome in asyncio.run(load(url, sentences, expected, args))]
        wall = time.perf_counter() - began
        stop.set()
        poller.join()
        after = memory(server.pid)
    finally:
        server.terminate()
        server.wait(60)
    statuses = Counter(map(status, outcomes))
    seconds.sort()
    return {
        "model": name,
        "checkpoint": path,
        "server": {"max_batch": args.max_batch, "queue": args.queue, "max_connections": args.max_connections},
        "clients": args.clients,
        "sent": len(outcomes),
        **{status: statuses[status] for status in ("200", "503", "504")},
        "lost": len(outcomes) - sum(statuses[status] for status in ("200", "503", "504")),  # no answer, or else
        "wrong": outcomes.count("differs"),
        "seconds": round(wall, 2),
        "health_polls": len(seconds),
        "health_statuses": dict(health),
        "health_p50_ms": round(1000 * statistics.median(seconds), 1),
        "health_p99_ms": round(1000 * seconds[int(0.99 * (len(seconds) - 1))], 1),
        "server_rss_before_mib": before["VmRSS"],
        "server_rss_peak_mib": after["VmHWM"],
    }


COLUMNS = ["sent", "200", "503", "504", "lost", "wrong", "seconds", "health_polls", "health_p50_ms", "health_p99_ms"]
COLUMNS += ["server_rss_before_mib", "server_rss_peak_mib"]


def table(r: dict) -> str:
    return markdown_table([r], COLUMNS) + (
        f"\n\nModel {r['model']} ({r['checkpoint']}); server {r['server']}; {r['clients']} clients; /health "
        f"statuses {r['health_statuses']} (the bar: p99 under 100 ms)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", metavar="NAME=PATH", help="default: a tiny Transformer trained here")
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--steps", type=int, default=300, help="updates of the tiny Transformer")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=5, help="per client")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--queue", type=int, default=4)
    parser.add_argument("--max-connections", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=120, help="bound on the whole load")
    parser.add_argument("--name", default="serve_overload", help="<name>.json and .md beside this script")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = overload(args.checkpoint or train_tiny(args.dataset, args.steps, Path(folder)), args)
    if not args.checkpoint:
        result["checkpoint"] = f"a tiny Transformer (d_model 64) trained here for {args.steps} steps"
    print(result, flush=True)
    write_results(Path(__file__).parent, args.name, result, table(result))


if __name__ == "__main__":
    main()
