"""The README's screenshot of the page: a running `translate serve` driven by Playwright and Debian's
Chromium grows a test example to three sentences, hovers over a target word and saves the whole page.

    translate serve &                 # the report's models, at http://127.0.0.1:8000
    python docs/screenshot.py --example 12
"""

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

ANSWER_MS = 300_000  # every model, with attention and saliency, on a paragraph on a CPU
ANSWERED = """() => document.getElementById('status').textContent === 'done'
                || document.getElementById('error').textContent !== ''"""  # answered, or an error shown


def translated(page: Page) -> None:
    """Wait for every model's answer; stop with the page's message if it shows an error."""
    page.wait_for_function(ANSWERED, timeout=ANSWER_MS)
    error = page.locator("#error").text_content()
    if error:
        raise SystemExit(f"the page shows an error: {error}")


def shoot(page: Page, url: str, example: int, sentences: int, out: Path) -> None:
    page.goto(url)
    options = page.locator("#example option")
    expect(options.nth(1)).to_be_attached()  # GET /examples answered
    if example + 1 >= options.count():
        raise SystemExit(f"--example {example}: the server has {options.count() - 1} examples")
    page.select_option("#example", str(example))
    translated(page)
    for _ in range(sentences - 1):
        page.click("#grow")
        translated(page)
    target = page.locator(".model:has(.heads) .target .piece")  # the Transformer's, else any model's
    if not target.count():
        target = page.locator(".target .piece")
    if target.count():
        target.nth(min(2, target.count() - 1)).hover()  # a word into the sentence: where it looks, shaded
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=out, full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="where `translate serve` runs")
    parser.add_argument("--out", type=Path, default=Path("docs/page.png"), help="the PNG to write")
    parser.add_argument("--example", type=int, default=0, help="which test example: test rows 8N to 8N+7")
    parser.add_argument("--sentences", type=int, default=3, help="of the example's sentences, how many")
    parser.add_argument("--width", type=int, default=1400, help="the browser window's width in pixels")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        parser.error("no chromium found (Debian: apt-get install chromium)")
    if not 1 <= args.sentences <= 8 or args.example < 0:
        parser.error("--sentences is 1 to 8, --example 0 or more")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        shoot(page, args.url, args.example, args.sentences, args.out)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
