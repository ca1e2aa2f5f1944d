"""translate serve: the API, its bad requests and load, and the page in a real browser."""

import json
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from conftest import DE, EN, tiny_model
from translate.cli import serve
from translate.serve import Limits, create_app
from translate.translator import Translator

ARTIFACTS = Path(__file__).parents[1] / "artifacts"  # git-ignored: the browser test's screenshot
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def models(trained, tiny_dm) -> dict:
    """The trained tiny Transformer, and untrained tiny GRU and Bahdanau models on its tokenizer."""
    loaded = {}
    for name in ("gru", "bahdanau"):
        model = tiny_model(name, tiny_dm.vocab_size)
        model.tokenizer = tiny_dm.tokenizer
        loaded[name] = (Path(f"{name}.ckpt"), Translator(model, "cpu"))
    loaded["transformer"] = (trained, Translator.from_checkpoint(trained, "cpu"))
    return loaded


@pytest.fixture(scope="module")
def report(trained) -> dict:
    return {"data": {"split": "test"}, "models": [{"name": "transformer", "checkpoint": str(trained), "bleu": 97.123}]}


@pytest.fixture(scope="module")
def client(models, report):
    with TestClient(create_app(models, report)) as client:
        yield client


@pytest.fixture(scope="module")
def server(models, report, tmp_path_factory):
    """The app on uvicorn in a thread, on a free port; its URL. The reports folder holds one figure."""
    reports = tmp_path_factory.mktemp("reports")
    (reports / "bleu_by_length.png").write_bytes(b"\x89PNG")
    app = create_app(models, report, reports)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


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


def test_attention_and_context_vectors(client):
    text = f"{DE[1]}\n{DE[2]}"  # two lines: attention block-diagonal, one context vector each
    results = client.post("/translate", json={"text": text, "attention": True}).json()["results"]
    attention = results["transformer"]["attention"]
    assert results["transformer"]["translations"] == f"{EN[1]}\n{EN[2]}"
    assert len(attention["weights"]) == len(attention["target"])
    assert all(len(row) == len(attention["source"]) and abs(sum(row) - 1) < 0.01 for row in attention["weights"])
    assert results["bahdanau"]["attention"] is not None and results["bahdanau"]["context"] is None
    context = results["gru"]["context"]
    assert results["gru"]["attention"] is None
    assert len(context["vectors"]) == 2 and len(context["vectors"][0]) == 128  # (sentences, hidden)
    assert all(-1 <= x <= 1 for x in context["vectors"][0])  # c = tanh(...)
    assert "attention" not in client.post("/translate", json={"text": DE[0]}).json()["results"]["gru"]


BAD = [
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object, got list"),
    (b"{}", 400, "missing field 'text'"),
    (b'{"text": 3}', 400, "'text' must be a string or a list of strings, got int"),
    (b'{"text": ["ja", null]}', 400, "text[1] is NoneType"),
    (b'{"text": "\\ud800"}', 400, "index 0"),
    (json.dumps({"text": "a" * 100_000}).encode(), 413, "text[0] has 100000 characters"),
    (json.dumps({"text": ["Ja."] * 10_000}).encode(), 413, "too many texts: 10000"),
    (json.dumps({"text": "Ja. " * 4_000}).encode(), 413, "characters"),
    (json.dumps({"text": "Hund", "model": "nmt"}).encode(), 400, "unknown model 'nmt' (loaded: gru, bahdanau"),
    (json.dumps({"text": "Hund", "beam_size": 0}).encode(), 400, "beam_size must be from 1 to 16, got 0"),
    (json.dumps({"text": "Hund", "beam_size": 1000}).encode(), 400, "beam_size must be from 1 to 16, got 1000"),
    (json.dumps({"text": "Hund", "beam_size": 2.5}).encode(), 400, "beam_size must be an integer"),
    (json.dumps({"text": "Hund", "alpha": -1}).encode(), 400, "alpha"),
    (json.dumps({"text": "Hund", "alpha": "high"}).encode(), 400, "alpha must be a finite number"),
    (b'{"text": "Hund", "alpha": NaN}', 400, "alpha must be a finite number"),
    (json.dumps({"text": "Hund", "attention": "yes"}).encode(), 400, "attention must be true or false"),
    (json.dumps({"text": "Hund", "beam": 5}).encode(), 400, "unknown field 'beam'"),
    (b'{"text": "' + b"a" * 1_100_000 + b'"}', 413, "at most 1000000"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[f"{i}:{b[:20]!r}" for i, (b, _, _) in enumerate(BAD)])
def test_bad_requests_get_a_4xx_that_names_the_problem(client, body, status, message):
    response = client.post("/translate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert (
        client.post("/translate", json={"text": DE[4], "model": "transformer"}).json()["results"]["transformer"][
            "translations"
        ]
        == EN[4]
    )  # still serving


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


def test_serve_refuses_missing_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="no --checkpoint NAME=PATH given, and no report"):
        serve(["--report", str(tmp_path / "none.json")])
    with pytest.raises(FileNotFoundError, match="checkpoints not found: {'gru': 'nowhere.ckpt'}"):
        serve(["--checkpoint", "gru=nowhere.ckpt"])
    with pytest.raises(ValueError, match="--max-batch must be at least 1"):
        serve(["--checkpoint", "gru=nowhere.ckpt", "--max-batch", "0"])


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("TRANSLATE_BROWSER_TESTS"),
    reason="no chromium (Debian: apt-get install chromium); .ci/run installs it and requires this test",
)
def test_the_page_in_a_real_browser(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(server)
        expect(page.locator(".model")).to_have_count(3)
        expect(page.locator("#figures a")).to_have_text(["BLEU by source length"])
        page.fill("#source", f"{DE[6]}\n{DE[7]}")
        page.click("#submit")
        expect(page.locator("#status")).to_have_text("done", timeout=60_000)
        transformer = page.locator('.model[data-model="transformer"]')
        expect(transformer.locator(".translation")).to_have_text(f"{EN[6]}\n{EN[7]}")
        expect(transformer.locator(".meta")).to_contain_text("test BLEU 97.12")
        for name in ("gru", "bahdanau"):
            expect(page.locator(f'.model[data-model="{name}"] .translation')).not_to_be_empty()
        for name in ("bahdanau", "transformer"):
            expect(page.locator(f'.model[data-model="{name}"] table.heatmap tbody tr').first).to_be_visible()
        expect(page.locator('.model[data-model="gru"] .context canvas')).to_be_visible()
        expect(page.locator('.model[data-model="gru"] .caption')).to_contain_text("128 numbers per sentence (2 here)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "serve_page.png", full_page=True)
        page.fill("#source", "Hund " * 1_001)  # over the page's request limit of 5,000 characters
        page.click("#submit")
        expect(page.locator("#error")).to_contain_text("characters (at most 5000 a text)")
        browser.close()
