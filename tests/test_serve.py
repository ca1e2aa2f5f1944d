"""translate serve: the API, its limits and load (its bad bodies and schema: test_serve_schema.py; the page
in a real browser: test_page.py)."""

import asyncio
import json
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import DE, EN
from translate.commands.serve import serve
from translate.serve import Limits, Server, create_app
from translate.translator import Translator


@pytest.fixture(scope="module")
def report(trained) -> dict:
    return {
        "test_set": {"split": "test"},
        "models": [{"name": "transformer", "checkpoint": str(trained), "bleu": 97.123}],
    }


@pytest.fixture(scope="module")
def client(models, report):
    with TestClient(create_app(models, report)) as client:
        yield client


def started(app: FastAPI, **config: object) -> tuple[Server, threading.Thread, str]:
    """The app on uvicorn (translate.serve.Server) in a thread, on a free port of 127.0.0.1; its URL."""
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


@contextmanager
def running(app: FastAPI, **config: object) -> Iterator[str]:
    """:func:`started`, stopped on leaving."""
    server, thread, url = started(app, **config)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def server(models, report):
    """The app on uvicorn, its URL."""
    with running(create_app(models, report)) as url:
        yield url


def gated(translator: Translator) -> tuple[Translator, threading.Event]:
    """A Translator of the same model whose translate() first waits until the event is set (60 s at most)."""
    gate, blocked = threading.Event(), Translator(translator.model, "cpu")
    translate = blocked.translate

    def wait_then_translate(*args: object, **kwargs: object) -> object:
        gate.wait(60)
        return translate(*args, **kwargs)

    blocked.translate = wait_then_translate
    return blocked, gate


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.01)


def health(url: str) -> dict:
    return httpx.get(f"{url}/health").json()


def ask(url: str, model: str, text: str = DE[0], **fields: object) -> httpx.Response:
    return httpx.post(f"{url}/translate", json={"text": text, "model": model, **fields}, timeout=60)


def test_health_and_models(client, trained):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["models"] == ["gru", "bahdanau", "transformer"]
    assert health["queued"] == {"gru": 0, "bahdanau": 0, "transformer": 0}
    described = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert described["transformer"]["architecture"] == "TransformerSeq2Seq"
    assert described["transformer"]["test_bleu"] == 97.12  # the report scored this checkpoint
    assert described["gru"]["test_bleu"] is None  # the report did not
    assert described["gru"]["shows"] == "context vector" and described["bahdanau"]["shows"] == "attention"
    assert described["gru"]["parameters"] > 0
    assert client.get("/figures").json() == {"figures": []}  # no reports folder given
    page = client.get("/")
    assert page.status_code == 200 and "/page/page.js" in page.text
    assert client.get("/page/page.js").status_code == 200


def test_translations_keep_the_shape_of_the_input(client):
    one = client.post("/translate", json={"text": DE[3], "model": "transformer"}).json()["results"]
    assert list(one) == ["transformer"]
    assert one["transformer"]["translations"] == EN[3] and one["transformer"]["scores"] < 0
    assert one["transformer"]["milliseconds"] > 0 and one["transformer"]["batch_requests"] == 1
    many = client.post("/translate", json={"text": DE[:5], "model": "transformer", "beam_size": 1}).json()
    assert many["results"]["transformer"]["translations"] == EN[:5]
    assert (
        client.post("/translate", json={"text": [], "model": "transformer"}).json()["results"]["transformer"][
            "translations"
        ]
        == []
    )
    every = client.post("/translate", json={"text": [DE[0], ""]}).json()["results"]
    assert list(every) == ["gru", "bahdanau", "transformer"]
    assert all(len(result["translations"]) == 2 and result["translations"][1] == "" for result in every.values())


def test_attention_and_context_vectors_come_sentence_by_sentence(client):
    text = f"{DE[1]}\n{DE[2]}"  # two lines: two sentences, each with its attention or context vector
    results = client.post("/translate", json={"text": text, "attention": True}).json()["results"]
    assert results["transformer"]["translations"] == f"{EN[1]}\n{EN[2]}"
    sentences = results["transformer"]["attention"]
    assert len(sentences) == 2
    for attention, english in zip(sentences, EN[1:3], strict=True):
        assert "".join(attention["target"][:-1]).replace("\u2581", " ").strip() == english
        assert len(attention["weights"]) == len(attention["target"])
        assert all(len(row) == len(attention["source"]) and abs(sum(row) - 1) < 0.01 for row in attention["weights"])
    assert len(results["bahdanau"]["attention"]) == 2 and results["bahdanau"]["context"] is None
    context = results["gru"]["context"]
    assert results["gru"]["attention"] is None
    assert len(context) == 2 and all(len(sentence["vector"]) == 128 for sentence in context)  # (hidden,)
    assert all(-1 <= x <= 1 for x in context[0]["vector"])  # c = tanh(...)
    assert "attention" not in client.post("/translate", json={"text": DE[0]}).json()["results"]["gru"]


def test_joined_translations_keep_their_sentences(models):
    translator = models["transformer"][1]
    text = f"{DE[1]}\n{DE[2]}\n{DE[3]}"
    joined = translator.translate(text, return_details=True)
    assert [t.text for t in joined.sentences] == EN[1:4]
    torch.testing.assert_close(joined.attention, torch.block_diag(*(t.attention for t in joined.sentences)))
    lean = translator.translate(text, return_details=True, block_attention=False)
    assert lean.attention is None and lean.text == joined.text
    for a, b in zip(lean.sentences, joined.sentences, strict=True):
        torch.testing.assert_close(a.attention, b.attention)


def test_attention_past_its_cap_is_refused_before_decoding(client):
    sentence = "Hund " * 39 + "Hund."  # 40 words: up to 40 x 70 cells of attention in the tiny model
    texts = [" ".join([sentence] * 24)] * 4  # 96 sentences, under 5,000 characters a text
    refused = client.post("/translate", json={"text": texts, "model": "transformer", "attention": True})
    assert (
        refused.status_code == 413
        and f"over the limit of {Limits().attention_cells} a request" in refused.json()["error"]
    )
    many = ["Ja. " * 1_250] * 4  # 5,000 one-word sentences, in every character limit
    refused = client.post("/translate", json={"text": many, "attention": True})
    assert refused.status_code == 413 and "5000 sentences (at most 256 a request)" in refused.json()["error"]


def test_a_sentence_over_the_source_limit_is_refused_not_truncated(models):
    with TestClient(create_app(models, limits=Limits(characters=50_000, total_characters=50_000))) as client:
        response = client.post("/translate", json={"text": "Hund " * 2_000, "model": "transformer"})
    assert response.status_code == 413 and "tokens, over transformer's limit of" in response.json()["error"]


def test_wrong_route_and_method(client):
    assert client.get("/nothing").status_code == 404
    assert client.get("/translate").status_code == 405


def test_concurrent_clients_share_batches_and_get_their_own_answers(server):
    def ask(i: int) -> dict:
        response = httpx.post(f"{server}/translate", json={"text": DE[i % 12], "model": "transformer"}, timeout=60)
        return response.json()["results"]["transformer"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(48)))
    assert [a["translations"] for a in answers] == [EN[i % 12] for i in range(48)]
    assert max(a["batch_requests"] for a in answers) > 1


def test_a_client_that_disconnects_is_dropped_and_the_server_goes_on(server):
    host, port = server.removeprefix("http://").split(":")
    slow = {"text": [f"{d} {d}" for d in DE] * 5, "model": "gru", "beam_size": 16}  # the untrained GRU: slow
    body = json.dumps(slow).encode()
    before = httpx.get(f"{server}/health").json()["translated"]["gru"]
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(httpx.post, f"{server}/translate", json=slow, timeout=120)  # holds the GRU's thread
        while httpx.get(f"{server}/health").json()["translating"]["gru"] == 0:
            time.sleep(0.01)
        for _ in range(3):  # queued behind it, sent whole, then gone
            with socket.create_connection((host, int(port))) as connection:
                connection.sendall(
                    b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
        assert busy.result().json()["results"]["gru"]["batch_requests"] == 1
    answer = httpx.post(f"{server}/translate", json={"text": DE[5], "model": "gru"}, timeout=120).json()
    assert isinstance(answer["results"]["gru"]["translations"], str)  # still serving
    health = httpx.get(f"{server}/health").json()
    assert health["queued"]["gru"] == 0
    assert health["translated"]["gru"] - before == len(slow["text"]) + 1  # the three left the queue untranslated


def test_a_full_queue_refuses_with_503_and_leaves_no_job_behind(models):
    slow, gate = gated(models["transformer"][1])
    app = create_app({"slow": (Path("slow.ckpt"), slow), "fast": models["transformer"]}, limits=Limits(queue=2))
    with running(app) as url, ThreadPoolExecutor(3) as pool:
        first = pool.submit(ask, url, "slow")
        wait_for(lambda: health(url)["translating"]["slow"] == 1)
        queued = [pool.submit(ask, url, "slow") for _ in range(2)]
        wait_for(lambda: health(url)["queued"]["slow"] == 2)
        refused = ask(url, "all")  # the fast model could take it: the full one refuses it for both
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "slow's queue is full (2 requests waiting, the limit)" in refused.json()["error"]
        state = health(url)
        assert state["queued"] == {"slow": 2, "fast": 0} and state["translated"]["fast"] == 0
        gate.set()
        answers = [future.result() for future in [first, *queued]]  # each accepted request is answered
    assert [a.json()["results"]["slow"]["translations"] for a in answers] == [EN[0]] * 3


def test_a_request_past_its_deadline_gets_504_and_leaves_the_queue(models):
    slow, gate = gated(models["transformer"][1])
    app = create_app({"slow": (Path("slow.ckpt"), slow)}, limits=Limits(deadline_seconds=0.5))
    with running(app) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(ask, url, "slow")  # its batch starts, and waits at the gate
        wait_for(lambda: health(url)["translating"]["slow"] == 1)
        second = ask(url, "slow")  # queued behind it
        assert second.status_code == 504 and "no answer within the deadline of 0.5 s" in second.json()["error"]
        assert first.result().status_code == 504
        assert health(url)["queued"]["slow"] == 0
        gate.set()
        wait_for(lambda: health(url)["translating"]["slow"] == 0)
        assert ask(url, "slow").json()["results"]["slow"]["translations"] == EN[0]
        assert health(url)["translated"]["slow"] == 2  # the first (started) and the last: not the second


def test_bodies_too_big_or_too_slow_are_refused(client, models):
    chunks = (b"x" * 100_000 for _ in range(11))  # no Content-Length: refused as it passes the limit
    too_big = client.post("/translate", content=chunks, headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and "over 1000000 bytes" in too_big.json()["error"]
    app = create_app({"transformer": models["transformer"]}, limits=Limits(body_seconds=0.3))
    with running(app) as url, socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as connection:
        connection.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        connection.settimeout(30)
        response = b""
        while b"did not arrive" not in response and (chunk := connection.recv(4096)):  # headers, body: 1 or 2 reads
            response += chunk
    assert response.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.3 s" in response


def test_a_dead_worker_makes_health_and_ready_answer_503(models):
    app = create_app({"gru": models["gru"], "transformer": models["transformer"]})
    with TestClient(app) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        app.state.pool.workers["gru"].thread.shutdown()  # its thread is gone: the worker ends at its next batch
        for _ in range(2):  # the request it held, then one refused at once
            dead = client.post("/translate", json={"text": DE[0], "model": "gru"})
            assert dead.status_code == 503 and "model gru is not available: its worker stopped" in dead.json()["error"]
        ready, state = client.get("/ready"), client.get("/health")
        assert ready.status_code == 503 and ready.json()["error"] == "dead workers: gru"
        assert state.status_code == 503 and state.json()["status"] == "degraded" and state.json()["dead"] == ["gru"]
        answer = client.post("/translate", json={"text": DE[0], "model": "transformer"})
        assert answer.json()["results"]["transformer"]["translations"] == EN[0]  # the other model still serves


def test_shutdown_finishes_queued_work_until_its_deadline_then_answers_503(models):
    slow, slow_gate = gated(models["transformer"][1])
    fast, fast_gate = gated(models["transformer"][1])
    models = {"slow": (Path("slow.ckpt"), slow), "fast": (Path("fast.ckpt"), fast)}
    app = create_app(models, limits=Limits(shutdown_seconds=2))
    server, thread, url = started(app, timeout_graceful_shutdown=3)
    with ThreadPoolExecutor(2) as pool:
        finished, unfinished = pool.submit(ask, url, "fast"), pool.submit(ask, url, "slow")
        wait_for(lambda: health(url)["translating"] == {"slow": 1, "fast": 1})
        server.should_exit = True  # uvicorn stops accepting connections, and the app drains
        wait_for(lambda: app.state.pool.closing is not None)
        fast_gate.set()
        thread.join(30)
        slow_gate.set()
    assert finished.result().json()["results"]["fast"]["translations"] == EN[0]
    assert unfinished.result().status_code == 503
    assert "the server is shutting down (queued work got 2 s to finish)" in unfinished.result().json()["error"]


def test_overload_is_shed_with_503s_and_health_stays_quick(models):
    """64 clients send 5 requests each, one after the other, to a model with a queue of 4: the overload
    is refused with 503 at once, every request is answered (none lost), every translation is right, and
    /health, polled throughout from another thread, answers 200 within 100 ms (p99)."""
    expected = dict(zip(DE, models["transformer"][1].translate(DE), strict=True))
    app = create_app({"transformer": models["transformer"]}, max_batch=4, limits=Limits(queue=4))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    polls, stop = [], threading.Event()

    def poll(url: str) -> None:
        with httpx.Client(timeout=10) as http:
            http.get(f"{url}/health")  # the connection set up first: the polls time the server, not a handshake
            while not stop.is_set():
                began = time.perf_counter()
                status = http.get(f"{url}/health").status_code
                polls.append((time.perf_counter() - began, status))
                time.sleep(0.01)

    async def client(http: httpx.AsyncClient, url: str, first: int) -> list[tuple[int | None, str]]:
        outcomes = []
        for text in (DE[(first + k) % len(DE)] for k in range(5)):
            try:
                response = await http.post(f"{url}/translate", json={"text": text, "model": "transformer"})
            except httpx.HTTPError as e:
                outcomes.append((None, repr(e)))
                continue
            body = response.json()
            right = response.status_code == 200 and body["results"]["transformer"]["translations"] == expected[text]
            outcomes.append((response.status_code, "right" if right else body.get("error", "wrong")))
        return outcomes

    async def load(url: str) -> list[tuple[int | None, str]]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
            clients = asyncio.gather(*(client(http, url, i) for i in range(64)))
            return [outcome for outcomes in await asyncio.wait_for(clients, 60) for outcome in outcomes]

    with running(app, limit_concurrency=128) as url, ThreadPoolExecutor(1) as pool:
        polling = pool.submit(poll, url)
        outcomes = asyncio.run(load(url))
        stop.set()
        polling.result()
    statuses = Counter(status for status, _ in outcomes)
    assert sum(statuses.values()) == 320 and set(statuses) <= {200, 503, 504}, statuses  # none lost
    assert all(outcome == "right" for status, outcome in outcomes if status == 200)  # none wrong
    assert statuses[200] > 0 and any("queue is full" in outcome for status, outcome in outcomes if status == 503)
    latencies = sorted(seconds for seconds, _ in polls)
    assert len(polls) >= 10 and {status for _, status in polls} == {200}
    assert latencies[int(0.99 * (len(latencies) - 1))] < 0.1, latencies[-10:]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 500 * 1024  # peak RSS: < 500 MB more


def test_serve_refuses_missing_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="no --checkpoint NAME=PATH given, and no report"):
        serve(["--report", str(tmp_path / "none.json")])
    with pytest.raises(FileNotFoundError, match="checkpoints not found: {'gru': 'nowhere.ckpt'}"):
        serve(["--checkpoint", "gru=nowhere.ckpt"])
    with pytest.raises(ValueError, match="--max-batch must be at least 1"):
        serve(["--checkpoint", "gru=nowhere.ckpt", "--max-batch", "0"])
    with pytest.raises(ValueError, match="--max-connections must be at least 1, got 0"):
        serve(["--checkpoint", "gru=nowhere.ckpt", "--max-connections", "0"])
    with pytest.raises(ValueError, match="--deadline must be over 0"):
        serve(["--checkpoint", "gru=nowhere.ckpt", "--deadline", "0"])


def test_serve_passes_its_limits_to_the_app_and_uvicorn(trained, tmp_path, monkeypatch):
    configs = []
    monkeypatch.setattr(Server, "run", lambda server: configs.append(server.config))
    limits = ["--queue", "3", "--deadline", "5", "--max-connections", "7", "--shutdown-timeout", "2"]
    serve(["--checkpoint", f"transformer={trained}", "--report", str(tmp_path / "none.json"), *limits])
    (config,) = configs
    assert config.limit_concurrency == 7 and config.timeout_graceful_shutdown == 3  # 1 s more to send the 503s
    assert config.app.state.pool.limits == Limits(queue=3, deadline_seconds=5, shutdown_seconds=2)
