"""The page of `translate serve` in a real browser (Playwright driving Debian's Chromium): the lab (growing
a test example, saliency, attention, the beam), the evidence, a phone's width, and errors shown on the page,
never thrown. Each test saves a screenshot to artifacts/ and fails on any console error."""

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import sacrebleu
from playwright.sync_api import expect, sync_playwright
from test_serve import running

from conftest import DE, EN
from translate.records import read_record, record_folder, split_test_set, write_record
from translate.report import leaderboard, read_report, write_report
from translate.serve import create_app
from translate.serve_evidence import Evidence

ARTIFACTS = Path(__file__).parents[1] / "artifacts"  # git-ignored: the tests' screenshots
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("TRANSLATE_BROWSER_TESTS"),
    reason="no chromium (Debian: apt-get install chromium); .ci/run installs it and requires these tests",
)
DONE = 120_000  # ms to wait for a translation by every model
ANSWERED = """() => document.getElementById('status').textContent === 'done'
                || document.getElementById('error').textContent !== ''"""  # answered, or an error shown
SYSTEMS: dict[str, Callable[[str], str]] = {  # each model's stored test translations, from the reference
    "gru": lambda reference: " ".join(reference.split()[:-1]),  # the last word left out
    "bahdanau": lambda reference: " ".join(reversed(reference.split())),
    "transformer": lambda reference: reference,
}


@pytest.fixture(scope="module")
def reports(models, tiny_corpus, tmp_path_factory) -> Path:
    """A report folder as `translate leaderboard` writes it, on the tiny corpus's test split: a record per
    served model (its stored translations made from the references by SYSTEMS), and the report."""
    root = tmp_path_factory.mktemp("reports")
    test_set = split_test_set(str(tiny_corpus), "test", ["de", "en"], cache_dir=tmp_path_factory.mktemp("cache"))
    decoding = {"beam_size": 3, "alpha": 0.0, "split_sentences": False}
    records = []
    for name, system in SYSTEMS.items():
        model = {"name": name, "checkpoint": str(models[name][0]), "model": name, "parameters": 1000}
        model |= {"epochs": 1, "steps": 10, "train_seconds": None, "hardware": None}
        folder = record_folder(root / "records", model, test_set, decoding)
        write_record(folder, model, test_set, decoding, [system(r) for r in test_set.references], 1.0, n_bootstrap=50)
        records.append(read_record(folder))
    write_report(leaderboard(records, root, n_bootstrap=50), records, root)
    return root


@pytest.fixture(scope="module")
def server(models, reports, tmp_path_factory) -> Iterator[str]:
    """The app on uvicorn with the three models and the report's evidence; its URL."""
    report = read_report(reports / "leaderboard.json")
    evidence = Evidence(report, reports, cache_dir=tmp_path_factory.mktemp("evidence"))
    with running(create_app(models, report, reports, evidence=evidence)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def failing() -> set[str]:
    """Paths a test makes answer an error: Chromium's own "Failed to load resource" for them is expected."""
    return set()


@pytest.fixture
def page(browser, failing):
    """A new page (1400 x 900) that fails the test on any console error or uncaught exception."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []

    def console(message) -> None:
        expected = message.text.startswith("Failed to load resource") and (
            urlparse(message.location.get("url", "")).path in failing
        )
        if message.type == "error" and not expected:
            errors.append(f"console: {message.text} ({message.location})")

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    yield page
    page.close()
    assert errors == [], errors


def translated(page) -> None:
    """Wait until every model has answered, with no error shown (failing at once on one)."""
    page.wait_for_function(ANSWERED, timeout=DONE)
    expect(page.locator("#error")).to_be_empty()
    expect(page.locator("#status")).to_have_text("done")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"page_{name}.png", full_page=True)


def card(page, name: str):
    return page.locator(f'.model[data-model="{name}"]')


def models_translation(server: str, text: str, whole: bool = False) -> dict[str, str]:
    """Each model's translation of `text` as the API gives it (the page's default beam of 5), sentence by
    sentence or (`whole`) as one input."""
    body = {"text": text, "beam_size": 5, "split_sentences": not whole}
    answer = httpx.post(f"{server}/translate", json=body, timeout=120).json()
    return {name: result["translations"] for name, result in answer["results"].items()}


def test_the_page_translates_a_paragraph_with_every_model(page, server, failing):
    failing.add("/translate")  # its last request is refused: 413
    page.goto(server)
    expect(page.locator(".model")).to_have_count(3)
    expect(page.locator("#figures a")).to_have_text(["BLEU by source length"])
    expect(card(page, "transformer").locator(".meta")).to_contain_text("test BLEU 100")  # the report's
    expect(card(page, "transformer").locator(".meta")).to_contain_text("de → en")  # its direction
    page.fill("#source", f"{DE[6]}\n{DE[7]}")
    page.click("#submit")
    translated(page)
    expect(card(page, "transformer").locator(".translation")).to_have_text(f"{EN[6]}\n{EN[7]}")
    for name in ("gru", "bahdanau"):
        expect(card(page, name).locator(".translation")).not_to_be_empty()
    screenshot(page, "paragraph")
    page.fill("#source", "Hund " * 1_001)  # over the request limit of 5,000 characters a text
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("text: String should have at most 5000 characters")


def test_growing_a_test_example_adds_its_next_sentence_and_reference(page, server):
    example = httpx.get(f"{server}/examples").json()["examples"][1]
    page.goto(server)
    expect(page.locator("#grow")).to_be_disabled()
    page.select_option("#example", "1")
    translated(page)
    expect(page.locator("#whole")).to_be_checked()  # a grown example is read whole, as one input
    expect(page.locator("#source")).to_have_value(example["sources"][0])
    expect(page.locator("#reference")).to_have_value(example["references"][0])
    page.click("#grow")
    translated(page)
    expect(page.locator("#source")).to_have_value(" ".join(example["sources"][:2]))
    expect(page.locator("#reference")).to_have_value(" ".join(example["references"][:2]))
    expect(page.locator("#grow-count")).to_have_text("2 of 8 sentences")
    reference = " ".join(example["references"][:2])
    for name in ("gru", "bahdanau", "transformer"):
        chrf = sacrebleu.sentence_chrf(card(page, name).locator(".translation").text_content(), [reference]).score
        shown = re.fullmatch(r"chrF (\d+\.\d) against the reference", card(page, name).locator(".chrf").text_content())
        assert shown and float(shown[1]) == pytest.approx(chrf, abs=0.05 + 1e-9), (name, chrf)
    screenshot(page, "grow")
    page.fill("#source", f"{page.input_value('#source')} {DE[0]}")  # typing more, then Translate
    page.click("#submit")
    translated(page)
    whole = models_translation(server, page.input_value("#source"), whole=True)
    for name in ("gru", "bahdanau", "transformer"):
        expect(card(page, name).locator(".translation")).to_have_text(whole[name])
    for _ in range(6):  # the example's other sentences, one by one: then there are none to add
        page.click("#grow")
        translated(page)
    expect(page.locator("#grow-count")).to_have_text("8 of 8 sentences")
    expect(page.locator("#grow")).to_be_disabled()


def test_saliency_shades_each_source_piece_by_its_share(page, server):
    page.goto(server)
    page.fill("#source", f"{DE[1]}\n{DE[2]}")  # two lines: two sentences
    page.click("#submit")
    translated(page)
    source = card(page, "transformer").locator(".attention .sentence").first.locator(".source .piece")
    for name in ("gru", "bahdanau", "transformer"):
        saliency = card(page, name).locator(".saliency")
        expect(saliency.locator(".pieces")).to_have_count(2)
        first = saliency.locator(".pieces").first.locator(".piece")
        assert first.all_text_contents() == source.all_text_contents()  # the same subwords the models read
        for line in saliency.locator(".pieces").all():
            shares = [float(share) for share in line.locator(".piece").evaluate_all("s => s.map(x => x.dataset.share)")]
            assert sum(shares) == pytest.approx(1, abs=0.01) and min(shares) >= 0  # to 4 decimals each
        assert re.fullmatch(r"\d+\.\d% of the gradient", first.first.get_attribute("title"))
    screenshot(page, "saliency")


def test_attention_explorer_highlights_where_a_target_piece_looks(page, server):
    page.goto(server)
    page.fill("#source", f"{DE[1]}\n{' '.join(DE[2:9])}")  # a short sentence, and a long one: a wide heatmap
    page.click("#submit")
    translated(page)
    transformer = card(page, "transformer")
    first = transformer.locator(".attention .sentence").first
    first.locator(".target .piece").first.hover()
    expect(first.locator(".source .piece.highlight").first).to_be_visible()
    expect(first.locator(".target .piece").first).to_have_class(re.compile(r"\bactive\b"))
    maps = first.locator(".heads button.map")
    expect(maps).to_have_count(1 + 2 * 4)  # the average, and the tiny Transformer's 2 decoder layers x 4 heads
    expect(maps.first).to_have_attribute("aria-pressed", "true")
    first.locator('button[data-map="1,2"]').click()
    expect(first.locator("table.heatmap caption")).to_contain_text("layer 2, head 3")
    last = transformer.locator(".attention .sentence").last  # the selection holds for the whole card
    expect(last.locator('button[data-map="1,2"]')).to_have_attribute("aria-pressed", "true")
    first.locator(".target .piece").first.focus()  # the keyboard, too
    expect(first.locator(".source .piece.highlight").first).to_be_visible()
    page.keyboard.press("Tab")
    expect(first.locator(".target .piece").nth(1)).to_have_class(re.compile(r"\bactive\b"))
    expect(first.locator("table.heatmap tbody tr").nth(1)).to_have_class("active")
    bahdanau = card(page, "bahdanau").locator(".attention .sentence").last
    scroller = bahdanau.locator("table.heatmap").locator("xpath=..")
    assert scroller.evaluate("node => getComputedStyle(node).overflowX") == "auto"
    assert scroller.evaluate("node => node.scrollWidth > node.clientWidth")  # wide: it scrolls inside its card
    box, heatmap = card(page, "bahdanau").bounding_box(), scroller.bounding_box()
    assert heatmap["x"] + heatmap["width"] <= box["x"] + box["width"]
    gru = card(page, "gru")
    expect(gru.locator(".context .caption").first).to_contain_text("numbers per sentence (2 here)")
    expect(gru.locator("svg.drift")).to_have_count(2)
    for chart, sentence in zip(gru.locator("svg.drift").all(), transformer.locator(".sentence").all(), strict=True):
        assert chart.locator("circle").count() == sentence.locator(".source .piece").count()  # one a piece
    screenshot(page, "attention")


def test_the_beam_lists_each_models_best_hypotheses_with_the_chosen_marked(page, server):
    page.goto(server)
    page.fill("#beam", "3")
    page.fill("#source", DE[3])
    page.click("#submit")
    translated(page)
    for name in ("gru", "bahdanau", "transformer"):
        items = card(page, name).locator(".nbest li")
        expect(items).to_have_count(3)  # n_best = min(5, beam)
        expect(items.first).to_have_class(re.compile(r"\bchosen\b"))
        assert card(page, name).locator(".nbest li.chosen").count() == 1
        expect(items.first.locator(".hypothesis")).to_have_text(card(page, name).locator(".translation").text_content())
        scores = [float(score) for score in items.locator(".score").all_text_contents()]
        assert scores == sorted(scores, reverse=True)
    screenshot(page, "beam")
    page.fill("#beam", "1")  # greedy search: one hypothesis, no list
    page.click("#submit")
    translated(page)
    expect(page.locator(".nbest")).to_have_count(0)


def test_the_evidence_chart_lists_a_buckets_sentences_to_try(page, server):
    evidence = httpx.get(f"{server}/evidence").json()
    names = [model["name"] for model in evidence["models"]]
    page.goto(server)
    bars = page.locator("#evidence svg .bar")
    expect(bars).to_have_count(len(evidence["buckets"]) * len(names))
    first = evidence["buckets"][0]["bucket"]
    for name in names:
        label = page.locator(f'#evidence .bar[data-bucket="{first}"][aria-label^="{name},"]')
        expect(label).to_have_attribute("aria-label", re.compile(rf"{name}, {first} words: BLEU [\d.]+ ± [\d.]+"))
    last = evidence["buckets"][-1]
    bar = '#evidence .bar[data-bucket="{}"][aria-label^="{},"] rect'
    heights = {name: float(page.locator(bar.format(last["bucket"], name)).get_attribute("height")) for name in names}
    assert heights["transformer"] > heights["gru"] > 0  # the references themselves, against a word left out
    page.locator(".bucket").last.focus()
    page.keyboard.press("Enter")
    rows = page.locator("#bucket-sentences tr.sentence")
    expect(rows).to_have_count(last["sentences"])
    expect(page.locator(".bucket").last).to_have_attribute("aria-pressed", "true")
    sentences = httpx.get(f"{server}/evidence/{last['bucket']}").json()["sentences"]
    expect(rows.first.locator("td").nth(2)).to_contain_text(sentences[0]["translations"]["gru"]["text"])
    page.locator(f'#evidence .bar[data-bucket="{first}"]').first.focus()  # a bar is a button too
    page.keyboard.press("Enter")
    expect(rows).to_have_count(evidence["buckets"][0]["sentences"])
    screenshot(page, "evidence")
    sentence = httpx.get(f"{server}/evidence/{first}").json()["sentences"][0]
    rows.first.locator(".try").click()
    translated(page)
    expect(page.locator("#source")).to_have_value(sentence["source"])
    expect(page.locator("#reference")).to_have_value(sentence["reference"])
    expect(card(page, "transformer").locator(".chrf")).to_contain_text("against the reference")


def test_at_a_phones_width_cards_stack_and_wide_views_scroll_inside(page, server):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server)
    page.select_option("#example", "0")
    translated(page)
    page.click("#grow")
    translated(page)
    boxes = [model.bounding_box() for model in page.locator(".model").all()]
    assert len({round(box["x"]) for box in boxes}) == 1 and all(box["width"] <= 390 for box in boxes)
    assert [box["y"] for box in boxes] == sorted(box["y"] for box in boxes)  # one under the other
    page.locator(".bucket").first.click()
    expect(page.locator("#bucket-sentences tr.sentence").first).to_be_visible()
    scroller = page.locator("#bucket-sentences")
    assert scroller.evaluate("node => node.scrollWidth > node.clientWidth")  # the table scrolls inside
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the page itself does not
    page.locator("#example").focus()
    page.keyboard.press("Tab")  # every control is reached by the keyboard, its focus visible
    assert page.evaluate("document.activeElement.id") == "grow"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    screenshot(page, "phone")


def test_an_endpoint_that_fails_shows_its_message_on_the_page(page, server, failing):
    failing |= {"/evidence", "/examples", "/translate"}
    page.route("**/evidence", lambda route: route.fulfill(status=500, json={"error": "the report is gone"}))
    page.route("**/examples", lambda route: route.fulfill(status=503, body="Service Unavailable"))
    page.goto(server)
    expect(page.locator("#evidence-status")).to_have_text("No evidence to show: the report is gone")
    expect(page.locator("#examples-status")).to_contain_text("503")
    expect(page.locator("#example")).to_be_disabled()
    expect(page.locator(".model")).to_have_count(3)  # the rest works
    page.fill("#source", "Hund " * 1_001)  # over the request limit of 5,000 characters a text: 413
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("text: String should have at most 5000 characters")
    expect(page.locator("#status")).to_be_empty()
    screenshot(page, "errors")
