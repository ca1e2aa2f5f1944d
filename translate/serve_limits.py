"""What `translate serve` takes in a /translate request: its limits, the body's reading, and the checks
that need the models (sentences, tokens, attention cells), each refusing with a 4xx or 5xx and a message
naming the limit before the request reaches a model. The request's schema (serve_schema.py) checks its
fields: their types, the texts' and characters' limits and the beam size's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import torch
from starlette.requests import Request

from translate.search import max_output_lengths
from translate.sentences import split_lines
from translate.translator import Translator


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (more: 413), how long it may take, and how many may wait."""

    body_bytes: int = 1_000_000
    texts: int = 64
    characters: int = 5_000  # per text
    total_characters: int = 20_000
    sentences: int = 256  # in all the texts
    attention_cells: int = 500_000  # weights (target x source subwords a sentence, a map) of all asked models
    beam_size: int = 16
    queue: int = 64  # requests waiting for each model (503 past it)
    body_seconds: float = 10.0  # to send the body (408 past it)
    deadline_seconds: float = 30.0  # to answer, from the request's arrival (504 past it)
    shutdown_seconds: float = 10.0  # for queued work on shutdown (503 past it)


class RequestError(ValueError):
    """A request that cannot be answered: `status` and this message (a 503 also says when to retry)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": "1"} if self.status == 503 else None


@dataclass(frozen=True)
class Query:
    """A checked /translate request."""

    texts: list[str]
    single: bool  # "text" was one string: answer with one
    models: list[str]
    beam_size: int | None = None
    alpha: float | None = None
    attention: bool = False
    n_best: int = 1
    saliency: bool = False
    references: list[str] | None = None  # one a text
    split_sentences: bool = True  # False: each text translated whole, as one input

    @property
    def settings(self) -> tuple:
        """What decoding depends on: requests with the same settings go in one batch."""
        return self.beam_size, self.alpha, self.attention, self.n_best, self.split_sentences


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request body: refused (413) as soon as it passes `limits.body_bytes`, and (408) if it takes over
    `limits.body_seconds` to arrive."""
    limit = limits.body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the body has {declared} bytes (at most {limit})", 413)

    async def chunks() -> list[bytes]:
        received, size = [], 0
        async for chunk in request.stream():
            received.append(chunk)
            size += len(chunk)
            if size > limit:
                raise RequestError(f"the body has over {limit} bytes (at most {limit})", 413)
        return received

    try:
        return b"".join(await asyncio.wait_for(chunks(), limits.body_seconds))
    except asyncio.TimeoutError:
        raise RequestError(f"the body did not arrive within {limits.body_seconds:g} s (the limit)", 408) from None


def source_lengths(name: str, translator: Translator, query: Query, limits: Limits) -> list[int]:
    """The source tokens of each sentence of the query's texts (each text whole, if it is not split);
    refused (413) past `limits.sentences` sentences or with one longer than the model's source limit,
    which it would truncate."""
    language = translator.source_language
    split = [
        [s for line in split_lines(text, language) for s in line] if query.split_sentences else [text]
        for text in query.texts
    ]
    total = sum(map(len, split))
    if total > limits.sentences:
        raise RequestError(f"the texts have {total} sentences (at most {limits.sentences} a request)", 413)
    limit = translator.model.source_limit(translator.model.decoding)
    lengths = []
    for i, sentences in enumerate(split):
        for length in map(len, translator.tokenizer.encode(sentences)):
            if length > limit:
                raise RequestError(f"text[{i}] has a sentence of {length} tokens, over {name}'s limit of {limit}", 413)
            lengths.append(length)
    return lengths


def check_query(query: Query, translators: dict[str, Translator], limits: Limits) -> None:
    """Refuse what an asked model cannot decode: its Decoding's checks (422: n_best over its beam size,
    say), too many sentences, one over its source limit, or (with attention) more attention cells than
    `limits.attention_cells` at most (413). The cells are counted before decoding, as each sentence's
    source tokens times the longest output the model may give it (eos included), times 1 + layers x heads
    for a model that shows each head's map too. It splits and tokenizes: call it off the event loop."""
    cells = 0
    for name in query.models:
        translator = translators[name]
        try:
            decoding = translator.settings(beam_size=query.beam_size, alpha=query.alpha, n_best=query.n_best)
        except ValueError as e:
            raise RequestError(f"{name}: {e}", 422) from e
        lengths = source_lengths(name, translator, query, limits)
        if query.attention and lengths and not translator.model.has_context_vector:
            sources, maps = torch.tensor(lengths), 1 + translator.model.attention_maps
            cells += maps * int((sources * max_output_lengths(sources, decoding, translator.model.max_length)).sum())
    if cells > limits.attention_cells:
        raise RequestError(
            f"the attention asked for may have up to {cells} cells (target x source subwords, each head's too where "
            f"a model shows them), over the limit of {limits.attention_cells} a request: send less text, fewer "
            "models, or attention false",
            413,
        )
