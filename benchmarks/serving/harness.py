"""What the serving benchmarks need: `translate serve` started in a process of its own, and a client whose
every answer is checked against each model's own translation."""

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


def start_server(checkpoints: list[str], port: int, *options: str) -> subprocess.Popen:
    """`translate serve` of the `checkpoints` (NAME=PATH each, a .ckpt or an exported directory), with
    `options`, from this working tree in a process of its own, once /health answers."""
    given = [argument for checkpoint in checkpoints for argument in ("--checkpoint", checkpoint)]
    command = [sys.executable, "-m", "translate.cli", "serve", *given, "--port", str(port), *options]
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


def outcome_of(response: httpx.Response, expected: dict[str, str]) -> str:
    """The outcome of a request: ok if every model answered its own translation (`expected`: model name ->
    text), differs if one answered another, else the HTTP status and the start of the body."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    answers = {name: answer["translations"] for name, answer in response.json()["results"].items()}
    return "ok" if answers == expected else "differs"


async def client(
    http: httpx.AsyncClient,
    url: str,
    sentences: list[str],
    expected: dict[str, list[str]],
    start: int,
    count: int,
    asks: dict | None = None,
) -> list[tuple[float, str]]:
    """`count` requests one after the other, each one sentence to every model ("model": "all"), with the
    request fields `asks` (e.g. attention); each one's latency and outcome (ok, differs, or the error)."""
    outcomes = []
    for i in range(start, start + count):
        began = time.perf_counter()
        try:
            body = {"text": sentences[i], "model": "all", **(asks or {})}
            response = await http.post(url, json=body)
            outcome = outcome_of(response, {name: translations[i] for name, translations in expected.items()})
        except httpx.HTTPError as e:
            outcome = f"{type(e).__name__}: {e}"
        outcomes.append((time.perf_counter() - began, outcome))
    return outcomes


def sentences_and_translations(
    checkpoints: list[str], dataset: str, count: int
) -> tuple[list[str], dict[str, list[str]]]:
    """The first `count` test sentences of `dataset`, and each model's (NAME=PATH) own translation of each,
    made alone."""
    sentences = TranslationDataModule(dataset=dataset).sources("test")[:count]
    expected = {}
    for checkpoint in checkpoints:
        name, path = checkpoint.split("=", 1)
        translator = Translator.from_checkpoint(path, device="cpu")
        expected[name] = [translator.translate(sentence) for sentence in sentences]
    return sentences, expected
