"""What both serving benchmarks need: `translate serve` started in a process of its own, and a client whose
every answer is checked against the model's own translation."""

import socket
import subprocess
import sys
import tempfile
import time

import httpx

from benchmarks.common import ROOT
from translate import TranslationDataModule, Translator


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: str, port: int, *options: str) -> subprocess.Popen:
    """`translate serve` (with `options`) of this working tree in a process of its own, once /health answers."""
    command = [
        sys.executable,
        "-m",
        "translate.cli",
        "serve",
        "--checkpoint",
        checkpoint,
        "--port",
        str(port),
        *options,
    ]
    with tempfile.TemporaryFile() as log:  # not a pipe: a full one would stall the server
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
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


def sentences_and_translations(path: str, dataset: str, count: int) -> tuple[list[str], list[str]]:
    """The first `count` test sentences of `dataset`, and the model's own translation of each, made alone."""
    sentences = TranslationDataModule(dataset=dataset).sources("test")[:count]
    translator = Translator.from_checkpoint(path, device="cpu")
    return sentences, [translator.translate(sentence) for sentence in sentences]
