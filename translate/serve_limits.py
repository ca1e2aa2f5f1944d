"""What `translate serve` takes in a /translate request: its limits, and the checks that refuse what is
over them (each with a 4xx or 5xx and a message naming the limit) before the request reaches a model."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass

import torch
from starlette.requests import Request

from translate.export import ExportedTransformer
from translate.models.base import Seq2SeqModule
from translate.search import max_output_lengths
from translate.sentences import split_lines
from translate.tokenizer import check_unicode
from translate.translator import Translator

FIELDS = ("text", "model", "beam_size", "alpha", "attention")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (more: 413), how long it may take, and how many may wait."""

    body_bytes: int = 1_000_000
    texts: int = 64
    characters: int = 5_000  # per text
    total_characters: int = 20_000
    sentences: int = 256  # in all the texts
    attention_cells: int = 200_000  # weights (target x source subwords a sentence) of all asked models, at most
    beam_size: int = 16
    queue: int = 64  # requests waiting for each model (503 past it)
    body_seconds: float = 10.0  # to send the body (408 past it)
    deadline_seconds: float = 30.0  # to answer, from the request's arrival (504 past it)
    shutdown_seconds: float = 10.0  # for queued work on shutdown (503 past it)


class RequestError(ValueError):
    """A request that cannot be answered: `status` and this message (a 503 also says when to retry)."""

    def __init__(self, message: str, status: int = 400) -> None:
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

    @property
    def settings(self) -> tuple:
        return self.beam_size, self.alpha, self.attention


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


def parse_texts(value: object, limits: Limits) -> tuple[list[str], bool]:
    """The texts of a request's "text" (a string or a list of strings), and whether it was one string."""
    single = isinstance(value, str)
    if not single and not isinstance(value, list):
        raise RequestError(f"'text' must be a string or a list of strings, got {type(value).__name__}")
    texts = [value] if single else value
    if len(texts) > limits.texts:
        raise RequestError(f"too many texts: {len(texts)} (at most {limits.texts} a request)", 413)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(f"text[{i}] is {type(text).__name__}, expected a string")
        try:
            check_unicode(text, i)
        except ValueError as e:
            raise RequestError(str(e)) from e
        if len(text) > limits.characters:
            raise RequestError(f"text[{i}] has {len(text)} characters (at most {limits.characters} a text)", 413)
    total = sum(map(len, texts))
    if total > limits.total_characters:
        raise RequestError(f"the texts have {total} characters in all (at most {limits.total_characters})", 413)
    return texts, single


def parse_query(body: bytes, names: list[str], limits: Limits) -> Query:
    """The request body, checked: JSON, known fields, types and limits."""
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(f"the body is not valid JSON: {e}") from e
    if not isinstance(request, dict):
        raise RequestError(f"the body must be a JSON object, got {type(request).__name__}")
    unknown = sorted(set(request) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    if "text" not in request:
        raise RequestError("missing field 'text' (a string or a list of strings)")
    texts, single = parse_texts(request["text"], limits)
    model = request.get("model", "all")
    if model != "all" and (not isinstance(model, str) or model not in names):
        raise RequestError(f"unknown model {model!r} (loaded: {', '.join(names)}; or 'all')")
    beam_size, alpha, attention = request.get("beam_size"), request.get("alpha"), request.get("attention", False)
    if beam_size is not None and (isinstance(beam_size, bool) or not isinstance(beam_size, int)):
        raise RequestError(f"beam_size must be an integer, got {beam_size!r}")
    if beam_size is not None and not 1 <= beam_size <= limits.beam_size:
        raise RequestError(f"beam_size must be from 1 to {limits.beam_size}, got {beam_size}")
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha)
    ):
        raise RequestError(f"alpha must be a finite number, got {alpha!r}")
    if not isinstance(attention, bool):
        raise RequestError(f"attention must be true or false, got {attention!r}")
    return Query(texts, single, names if model == "all" else [model], beam_size, alpha, attention)


def has_context(model: Seq2SeqModule | ExportedTransformer) -> bool:
    """Whether the model shows one context vector per sentence (the GRU) rather than attention."""
    return not isinstance(model, ExportedTransformer) and type(model).context_vector is not Seq2SeqModule.context_vector


def source_lengths(name: str, translator: Translator, texts: list[str], limits: Limits) -> list[int]:
    """The source tokens of each sentence of `texts`; refused (413) past `limits.sentences` sentences or
    with a sentence longer than the model's source limit, which it would truncate."""
    split = [[s for line in split_lines(text, translator.source_language) for s in line] for text in texts]
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
    """Refuse what an asked model cannot decode: its Decoding's checks (400), too many sentences, one over
    its source limit, or (with attention) more attention cells than `limits.attention_cells` at most (413).
    The cells are counted before decoding, as each sentence's source tokens times the longest output
    the model may give it (eos included). It splits and tokenizes: call it off the event loop."""
    cells = 0
    for name in query.models:
        translator = translators[name]
        try:
            decoding = translator.settings(beam_size=query.beam_size, alpha=query.alpha)
        except ValueError as e:
            raise RequestError(str(e)) from e
        lengths = source_lengths(name, translator, query.texts, limits)
        if query.attention and lengths and not has_context(translator.model):
            sources = torch.tensor(lengths)
            cells += int((sources * max_output_lengths(sources, decoding, translator.model.max_length)).sum())
    if cells > limits.attention_cells:
        raise RequestError(
            f"the attention asked for may have up to {cells} cells (target x source subwords), over the limit "
            f"of {limits.attention_cells} a request: send less text, fewer models, or attention false",
            413,
        )
