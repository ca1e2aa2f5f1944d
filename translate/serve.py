"""`translate serve`: the models behind an HTTP API (FastAPI on uvicorn) and a page at `/` showing them side by side.

    POST /translate  {"text": str | [str], "model": NAME | "all", "beam_size"?, "alpha"?, "attention"?,
                      "n_best"?, "saliency"?, "reference"?: str | [str], "split_sentences"?}
    GET  /openapi.json, /docs   the bodies' schemas (serve_schema.py), an example request
    GET  /models     name, architecture, parameters, test BLEU (from the leaderboard report) of each model
    GET  /figures    the leaderboard figures the page links to; /evidence, /examples: serve_evidence.py
    GET  /health     200 {"status": "ok", ...} while every model's worker runs; 503 "degraded" naming the dead ones
    GET  /ready      200 while every worker runs and the server is not shutting down; 503 otherwise

Each model has one queue and one thread (serve_workers.py): requests that arrive while it translates a batch
wait, and go together (up to `max_batch` of them) into its next batch, so concurrent clients share batches and no two
batches run through one model at once. Each text is split into sentences, translated together, unless
`split_sentences` is false. With `attention`, each text's answer has one entry per sentence: its attention (source and
target subwords, weights (target, source); the Transformer's of every layer and head too) or the GRU's context vector
and its drift; `saliency`, `n_best` and a `reference` add each source subword's share of the gradient, the n best
translations and chrF (lab.py). A client that goes away is dropped from the queue.

What is guaranteed (the limits are :class:`Limits`, defaults in brackets): every /translate request
gets an answer, and every error it gets is JSON {"error": message naming the limit or the problem}:
- 422 for a body that the request's schema (serve_schema.py; /openapi.json, /docs) refuses: not JSON (or
  nested too deep), not an object, a missing, unknown or mistyped field, a value out of range (n_best over the
  beam size), an unknown model, a reference not shaped as the text; "detail" lists each problem as FastAPI does;
- 413 for a body over `body_bytes` (1 MB), over `texts` (64) texts, `characters` (5,000) a text or `total_characters`
  (20,000) in all, over `sentences` (256) sentences, a sentence over a model's source limit, or (with attention) over
  `attention_cells` (500,000) cells of attention from all asked models, counted before decoding as each sentence's
  source tokens x its longest output x (1 + layers x heads) for the Transformer (the GRU's not at all);
- 408 when the body takes over `body_seconds` (10 s) to arrive;
- 503 with Retry-After: 1 when an asked model's queue already holds `queue` (64) requests (then no model takes
  the request), its worker has died, or the server is shutting down;
- 504 when it is not answered within `deadline_seconds` (30 s): its jobs leave the queues, untranslated unless their
  batch had started;
- 500 when a model fails on it (the others in its batch are translated again alone).
The body is parsed and checked (by its schema, then sentences split, tokenized) in a thread, the answers built in the
model's thread and rendered to JSON in a thread, so the event loop (and /health) stays quick under load. Past
`translate serve --max-connections` (256) connections, uvicorn answers 503 (plain text) itself. On shutdown (SIGTERM,
Ctrl+C) the server stops accepting connections, lets queued work finish for up to `shutdown_seconds`
(`--shutdown-timeout`, 10 s), then answers what is left 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from translate.search import TranslationModel
from translate.serve_evidence import Evidence, add_evidence_routes
from translate.serve_limits import Limits, RequestError, check_query, read_body
from translate.serve_schema import (
    ERRORS,
    Figure,
    Figures,
    Health,
    Models,
    Ready,
    TranslateRequest,
    TranslateResponse,
    invalid,
    parse_query,
    refused,
    request_model,
)
from translate.serve_workers import Pool, Worker
from translate.translator import Translator

__all__ = ["Limits", "Server", "create_app"]

PAGE = Path(__file__).parent / "page"
FIGURES = {  # the leaderboard figures the page links to, if the reports folder has them
    "BLEU by source length": "bleu_by_length.png",
    "Long inputs: BLEU by source length": "long/bleu_by_length.png",
    "Long inputs: what each model remembers": "long/remembers.png",
}


class Server(uvicorn.Server):
    """uvicorn's server, which on shutdown starts the app's drain at once, so that requests it cannot
    finish get their 503 while uvicorn waits (`timeout_graceful_shutdown`) for connections to close."""

    async def shutdown(self, sockets: list | None = None) -> None:
        drain = self.config.app.state.pool.drain()
        try:
            await super().shutdown(sockets)
        finally:
            drain.cancel()  # done by now, unless the exit was forced


def describe(name: str, checkpoint: Path, model: TranslationModel, report: dict) -> dict:
    """What GET /models says of a model: the report's test BLEU only if it scored this very checkpoint
    (an exported model's own record otherwise)."""
    scored = {Path(m["checkpoint"]).resolve(): m for m in report.get("models", []) if m.get("name") == name}
    entry = scored.get(checkpoint.resolve())
    bleu = model.test_bleu if entry is None else round(entry["bleu"], 2)
    return {
        "name": name,
        "architecture": model.architecture,
        "parameters": model.num_parameters,
        "checkpoint": str(checkpoint),
        "shows": "context vector" if model.has_context_vector else "attention",
        "languages": list(model.languages or []),
        "decoding": {"beam_size": model.decoding.beam_size, "alpha": model.decoding.alpha},
        "test_bleu": bleu,
        "test_split": None if bleu is None else report.get("test_set", {}).get("split", "test"),
    }


async def disconnected(request: Request) -> None:
    """Returns when the client has gone away (the body is read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def answer(request: Request, pool: Pool, schema: type[TranslateRequest]) -> Response:
    """Every asked model's answer to the request (its body checked by `schema`); if the client goes away
    first, or the deadline passes (this is cancelled), its jobs leave the queues."""
    body = await read_body(request, pool.limits)
    query = await asyncio.to_thread(parse_query, body, schema, list(pool.workers))
    pool.admit(query)  # before the costlier checks: an overloaded server refuses at once
    await asyncio.to_thread(check_query, query, pool.translators, pool.limits)
    jobs = pool.submit(query)
    answers = asyncio.gather(*(job.future for job in jobs))
    gone = asyncio.ensure_future(disconnected(request))
    try:
        done, _ = await asyncio.wait({answers, gone}, return_when=asyncio.FIRST_COMPLETED)
        if answers not in done:
            return Response(status_code=499)  # nobody is left to read it
        results = dict(zip(query.models, answers.result(), strict=True))
    finally:
        gone.cancel()
        pool.withdraw(query, jobs)
    return await asyncio.to_thread(JSONResponse, {"results": results})  # rendered off the event loop


def create_app(
    models: dict[str, tuple[Path, Translator]],
    report: dict | None = None,
    reports: Path | None = None,
    max_batch: int = 16,
    limits: Limits | None = None,
    evidence: Evidence | None = None,
) -> FastAPI:
    """The app serving `models` (name: checkpoint and its Translator); `report` (the leaderboard JSON)
    gives their test BLEU, `reports` (its folder) the figures; `max_batch` requests a batch at most;
    `evidence` (the report's, serve_evidence.py) the /evidence routes. Its workers are `app.state.pool`."""
    limits = limits or Limits()
    pool = Pool({name: Worker(name, translator, max_batch) for name, (_, translator) in models.items()}, limits)
    app = FastAPI(title="translate", lifespan=lifespan, redoc_url=None)  # /docs loads Swagger UI from a CDN
    app.state.pool = pool
    app.mount("/page", StaticFiles(directory=PAGE), name="page")
    if reports is not None and reports.is_dir():
        app.mount("/reports", StaticFiles(directory=reports), name="reports")
    app.add_exception_handler(RequestError, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    described = [describe(name, path, translator.model, report or {}) for name, (path, translator) in models.items()]
    files = {title: file for title, file in FIGURES.items() if reports is not None and (reports / file).is_file()}
    found = Figures(figures=[Figure(title=title, url=f"/reports/{file}") for title, file in files.items()])
    add_info_routes(app, pool, Models.model_validate({"models": described}), found)
    add_translate_route(app, pool, request_model(limits, list(pool.workers)))
    add_evidence_routes(app, evidence, {name: path for name, (path, _) in models.items()})
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the workers; on shutdown, drain them."""
    pool = app.state.pool
    for worker in pool.workers.values():
        worker.start()
    yield
    await pool.drain()


def add_info_routes(app: FastAPI, pool: Pool, models: Models, found: Figures) -> None:
    """The page, /health, /ready, /models and /figures."""

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/health", responses={503: {"model": Health, "description": "a model's worker has stopped"}})
    async def health(response: Response) -> Health:
        """Each model's worker (503 if one has stopped: restart the server), its queue, translated texts."""
        response.status_code, workers = 503 if pool.dead else 200, pool.workers.items()
        return Health(
            status="degraded" if pool.dead else "ok",
            models=list(pool.workers),
            dead=pool.dead,
            queued={name: len(worker.queue) for name, worker in workers},
            queue_limit=pool.limits.queue,
            translating={name: worker.translating for name, worker in workers},
            translated={name: worker.translated for name, worker in workers},
        )

    @app.get("/ready", response_model_exclude_none=True, responses={503: {"model": Ready, "description": "not ready"}})
    async def ready(response: Response) -> Ready:
        """Whether the server takes requests: every worker runs, and it is not shutting down."""
        if pool.dead or pool.closing is not None:
            response.status_code = 503
            reason = f"dead workers: {', '.join(pool.dead)}" if pool.dead else "shutting down"
            return Ready(status="not ready", error=reason)
        return Ready(status="ready")

    @app.get("/models")
    async def list_models() -> Models:
        """The served models: architecture, parameters, decoding settings, test BLEU."""
        return models

    @app.get("/figures")
    async def list_figures() -> Figures:
        """The leaderboard figures that the page links to."""
        return found


def add_translate_route(app: FastAPI, pool: Pool, schema: type[TranslateRequest]) -> None:
    """POST /translate, its body read within the limits and checked by `schema` here, not by FastAPI (so it
    reaches the OpenAPI schema by `openapi_extra`); TranslateResponse documents the answer, not checked."""
    body = {"required": True, "content": {"application/json": {"schema": schema.model_json_schema()}}}

    @app.post("/translate", response_model=TranslateResponse, responses=ERRORS, openapi_extra={"requestBody": body})
    async def translate(request: Request) -> Response:
        """Each asked model's translations, shaped as the text; with `attention`, per sentence, its
        attention (subwords, weights) or the GRU's context vector."""
        try:
            return await asyncio.wait_for(answer(request, pool, schema), pool.limits.deadline_seconds)
        except asyncio.TimeoutError:
            raise RequestError(f"no answer within the deadline of {pool.limits.deadline_seconds:g} s", 504) from None
