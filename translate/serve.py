"""`translate serve`: the models behind an HTTP API (FastAPI on uvicorn), and a page at `/` that shows
them side by side.

    POST /translate  {"text": str | [str], "model": NAME | "all", "beam_size"?, "alpha"?, "attention"?}
    GET  /models     name, architecture, parameters, test BLEU (from the leaderboard report) of each model
    GET  /figures    the leaderboard figures the page links to
    GET  /health

Each model has one queue and one thread: requests that arrive while it translates a batch wait, and
go together (up to `max_batch` of them) into its next batch, so concurrent clients share batches and
no two batches run through one model at once. A bad request gets a 4xx whose message names the
problem, before it reaches a model; a client that goes away is dropped from the queue.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from translate.export import ExportedTransformer
from translate.models.base import Seq2SeqModule
from translate.sentences import split_lines
from translate.tokenizer import check_unicode
from translate.translator import Translation, Translator

PAGE = Path(__file__).parent / "page"
FIGURES = {  # the leaderboard figures the page links to, if the reports folder has them
    "BLEU by source length": "bleu_by_length.png",
    "Long inputs: BLEU by source length": "long/bleu_by_length.png",
    "Long inputs: what each model remembers": "long/remembers.png",
}
FIELDS = ("text", "model", "beam_size", "alpha", "attention")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (larger requests get 413)."""

    body_bytes: int = 1_000_000
    texts: int = 64
    characters: int = 5_000  # per text
    total_characters: int = 20_000
    beam_size: int = 16


class BadRequest(ValueError):
    """A request that cannot be served, answered with `status` and this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Query:
    """A checked /translate request."""

    texts: list[str]
    single: bool  # "text" was one string: answer with one
    models: list[str]
    beam_size: int | None = None
    alpha: float | None = None
    attention: bool = False

    @property
    def settings(self) -> tuple:
        return self.beam_size, self.alpha, self.attention


def parse_texts(value: object, limits: Limits) -> tuple[list[str], bool]:
    """The texts of a request's "text" (a string or a list of strings), and whether it was one string."""
    single = isinstance(value, str)
    if not single and not isinstance(value, list):
        raise BadRequest(f"'text' must be a string or a list of strings, got {type(value).__name__}")
    texts = [value] if single else value
    if len(texts) > limits.texts:
        raise BadRequest(f"too many texts: {len(texts)} (at most {limits.texts} a request)", 413)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequest(f"text[{i}] is {type(text).__name__}, expected a string")
        try:
            check_unicode(text, i)
        except ValueError as e:
            raise BadRequest(str(e)) from e
        if len(text) > limits.characters:
            raise BadRequest(f"text[{i}] has {len(text)} characters (at most {limits.characters} a text)", 413)
    total = sum(map(len, texts))
    if total > limits.total_characters:
        raise BadRequest(f"the texts have {total} characters in all (at most {limits.total_characters})", 413)
    return texts, single


def parse_query(body: bytes, names: list[str], limits: Limits) -> Query:
    """The request body, checked: JSON, known fields, types and limits."""
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from e
    if not isinstance(request, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(request).__name__}")
    unknown = sorted(set(request) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    if "text" not in request:
        raise BadRequest("missing field 'text' (a string or a list of strings)")
    texts, single = parse_texts(request["text"], limits)
    model = request.get("model", "all")
    if model != "all" and (not isinstance(model, str) or model not in names):
        raise BadRequest(f"unknown model {model!r} (loaded: {', '.join(names)}; or 'all')")
    beam_size, alpha, attention = request.get("beam_size"), request.get("alpha"), request.get("attention", False)
    if beam_size is not None and (isinstance(beam_size, bool) or not isinstance(beam_size, int)):
        raise BadRequest(f"beam_size must be an integer, got {beam_size!r}")
    if beam_size is not None and not 1 <= beam_size <= limits.beam_size:
        raise BadRequest(f"beam_size must be from 1 to {limits.beam_size}, got {beam_size}")
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha)
    ):
        raise BadRequest(f"alpha must be a finite number, got {alpha!r}")
    if not isinstance(attention, bool):
        raise BadRequest(f"attention must be true or false, got {attention!r}")
    return Query(texts, single, names if model == "all" else [model], beam_size, alpha, attention)


def check_lengths(name: str, translator: Translator, texts: list[str]) -> None:
    """Refuse (413) a sentence longer than the model's source limit, which it would truncate."""
    limit = translator.model.source_limit(translator.model.decoding)
    for i, text in enumerate(texts):
        sentences = [s for line in split_lines(text, translator.source_language) for s in line]
        for length in map(len, translator.tokenizer.encode(sentences)):
            if length > limit:
                raise BadRequest(f"text[{i}] has a sentence of {length} tokens, over {name}'s limit of {limit}", 413)


@dataclass
class Job:
    query: Query
    future: asyncio.Future = field(repr=False)


class Worker:
    """One model's queue, and the one thread that translates its batches in turn."""

    def __init__(self, translator: Translator, max_batch: int) -> None:
        self.translator, self.max_batch = translator, max_batch
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.thread = ThreadPoolExecutor(1)
        self.translating = 0  # requests in the batch being translated
        self.translated = 0  # texts, since the start

    async def submit(self, query: Query) -> tuple[list[Translation], float, int]:
        """The query's translations, the seconds its batch took and the requests in that batch."""
        job = Job(query, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future  # cancelled with the request: then the job is skipped

    async def run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            while len(jobs) < self.max_batch and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
            jobs = [job for job in jobs if not job.future.done()]
            for settings in dict.fromkeys(job.query.settings for job in jobs):
                await self.translate([job for job in jobs if job.query.settings == settings])

    async def translate(self, jobs: list[Job]) -> None:
        """Translate the jobs (of one setting) as one batch; if that fails, each alone, so that one
        failing request fails no other."""
        start, self.translating = time.perf_counter(), len(jobs)
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self.thread, self.run_batch, jobs)
        except Exception as e:
            self.translating = 0
            if len(jobs) > 1:
                for job in jobs:
                    await self.translate([job])
            elif not jobs[0].future.done():
                jobs[0].future.set_exception(e)
            return
        seconds, self.translating = time.perf_counter() - start, 0
        self.translated += sum(len(job.query.texts) for job in jobs)
        for job, output in zip(jobs, outputs, strict=True):
            if not job.future.done():
                job.future.set_result((output, seconds, len(jobs)))

    def run_batch(self, jobs: list[Job]) -> list[list[Translation]]:
        """(In the worker thread.) Each job's translations, all decoded in one call."""
        beam_size, alpha, attention = jobs[0].query.settings
        texts = [text for job in jobs for text in job.query.texts]
        translations = self.translator.translate(
            texts, beam_size=beam_size, alpha=alpha, return_details=True, attention=attention
        )
        ends = list(itertools.accumulate((len(job.query.texts) for job in jobs), initial=0))
        return [translations[a:b] for a, b in itertools.pairwise(ends)]


def matrix(tensor: object) -> list[list[float]] | None:
    return None if tensor is None else [[round(x, 4) for x in row] for row in tensor.tolist()]


def model_result(query: Query, translations: list[Translation], seconds: float, batch: int) -> dict:
    """One model's answer: translations and scores shaped as the request's text; with `attention`, each
    text's attention (source and target subwords, weights (target, source)) or context vectors."""
    result = {"translations": [t.text for t in translations], "scores": [round(t.score, 4) for t in translations]}
    if query.attention:
        result["attention"] = [
            None
            if t.attention is None
            else {"source": t.source_pieces, "target": t.target_pieces, "weights": matrix(t.attention)}
            for t in translations
        ]
        result["context"] = [
            None
            if t.context is None
            else {"source": t.source_pieces, "target": t.target_pieces, "vectors": matrix(t.context)}
            for t in translations
        ]
    if query.single:
        result = {key: value[0] for key, value in result.items()}
    return {**result, "milliseconds": round(1000 * seconds, 1), "batch_requests": batch}


def describe(name: str, checkpoint: Path, model: Seq2SeqModule | ExportedTransformer, report: dict) -> dict:
    """What GET /models says of a model: the report's test BLEU only if it scored this very checkpoint
    (an exported model's own record otherwise)."""
    exported = isinstance(model, ExportedTransformer)
    scored = {Path(m["checkpoint"]).resolve(): m for m in report.get("models", []) if m.get("name") == name}
    entry = scored.get(checkpoint.resolve())
    bleu = None if entry is None else round(entry["bleu"], 2)
    if bleu is None and exported:
        bleu = model.metadata["test_bleu"]
    has_context = not exported and type(model).context_vector is not Seq2SeqModule.context_vector
    return {
        "name": name,
        "architecture": model.architecture if exported else type(model).__name__,
        "parameters": model.num_parameters if exported else sum(p.numel() for p in model.parameters()),
        "checkpoint": str(checkpoint),
        "shows": "context vector" if has_context else "attention",
        "languages": list(model.languages or []),
        "decoding": {"beam_size": model.decoding.beam_size, "alpha": model.decoding.alpha},
        "test_bleu": bleu,
        "test_split": None if bleu is None else report.get("data", {}).get("split", "test"),
    }


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the body has {declared} bytes (at most {limit})", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"the body has over {limit} bytes (at most {limit})", 413)
    return body


async def bad_request(request: Request, error: BadRequest) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status)


async def disconnected(request: Request) -> None:
    """Returns when the client has gone away (the body is read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(
    models: dict[str, tuple[Path, Translator]],
    report: dict | None = None,
    reports: Path | None = None,
    max_batch: int = 16,
    limits: Limits | None = None,
) -> FastAPI:
    """The app serving `models` (name: checkpoint and its Translator); `report` (the leaderboard JSON)
    gives their test BLEU, `reports` (its folder) the figures; `max_batch` requests a batch at most."""
    limits = limits or Limits()
    workers = {name: Worker(translator, max_batch) for name, (_, translator) in models.items()}
    described = [describe(name, path, translator.model, report or {}) for name, (path, translator) in models.items()]
    figures = [
        {"title": title, "url": f"/reports/{file}"}
        for title, file in FIGURES.items()
        if reports is not None and (reports / file).is_file()
    ]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(worker.run()) for worker in workers.values()]
        yield
        for task in tasks:
            task.cancel()
        for worker in workers.values():
            worker.thread.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="translate", lifespan=lifespan, docs_url=None, redoc_url=None)  # their pages load a CDN
    app.mount("/page", StaticFiles(directory=PAGE), name="page")
    if reports is not None and reports.is_dir():
        app.mount("/reports", StaticFiles(directory=reports), name="reports")

    app.add_exception_handler(BadRequest, bad_request)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/health")
    async def health() -> dict:
        queued = {name: worker.queue.qsize() for name, worker in workers.items()}
        translating = {name: worker.translating for name, worker in workers.items()}
        translated = {name: worker.translated for name, worker in workers.items()}
        return {
            "status": "ok",
            "models": list(workers),
            "queued": queued,
            "translating": translating,
            "translated": translated,
        }

    @app.get("/models")
    async def list_models() -> dict:
        return {"models": described}

    @app.get("/figures")
    async def list_figures() -> dict:
        return {"figures": figures}

    @app.post("/translate")
    async def translate(request: Request) -> Response:
        query = parse_query(await read_body(request, limits.body_bytes), list(workers), limits)
        for name in query.models:
            check_settings(name, workers[name].translator, query)
        return await answer(request, query, workers)

    return app


def check_settings(name: str, translator: Translator, query: Query) -> None:
    """Refuse what the model cannot decode: its Decoding's checks (400), sentences over its source limit (413)."""
    try:
        translator.settings(beam_size=query.beam_size, alpha=query.alpha)
    except ValueError as e:
        raise BadRequest(str(e)) from e
    check_lengths(name, translator, query.texts)


async def answer(request: Request, query: Query, workers: dict[str, Worker]) -> Response:
    """Every asked model's answer to `query`; if the client goes away first, its jobs leave the queues."""
    answers = asyncio.gather(*(workers[name].submit(query) for name in query.models))
    gone = asyncio.ensure_future(disconnected(request))
    done, _ = await asyncio.wait({answers, gone}, return_when=asyncio.FIRST_COMPLETED)
    if gone in done:
        answers.cancel()
        return Response(status_code=499)  # nobody is left to read it
    gone.cancel()
    results = {name: model_result(query, *result) for name, result in zip(query.models, answers.result(), strict=True)}
    return JSONResponse({"results": results})
