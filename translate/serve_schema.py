"""The bodies of `translate serve`'s API as Pydantic models: the /translate request, made for the
server's limits and models (its field constraints are the checks, and /openapi.json and /docs show
them), the responses, and the errors: JSON {"error": one line naming each problem}, with FastAPI's
`loc`, `msg` and `type` of each in "detail" when the request's schema refuses it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    create_model,
)
from pydantic_core import PydanticCustomError

from translate.lab import Explanation, chrf, details
from translate.serve_limits import Limits, Query, RequestError
from translate.translator import Translation

# the request

EXAMPLE = {
    "text": ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."],
    "model": "all",
    "beam_size": 5,
    "alpha": 1.0,
    "attention": False,
}


class TranslateRequest(BaseModel):
    """POST /translate: a text or a list of texts (the answer has the same shape), the models to ask, and
    how to decode (each model's own settings where left out)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    def query(self, names: Sequence[str]) -> Query:
        """The checked request the workers take; `names`: the loaded models, which "all" asks."""
        single = isinstance(self.text, str)
        models = list(names) if self.model == "all" else [self.model]
        texts = [self.text] if single else self.text
        references = None if self.reference is None else [self.reference] if single else self.reference
        asked = self.attention, self.n_best, self.saliency, references, self.split_sentences
        return Query(texts, single, models, self.beam_size, self.alpha, *asked)


def text_kind(value: Any) -> str | None:
    """Which of the `text` union's members checks the value (None: neither, one error naming both)."""
    return "string" if isinstance(value, str) else "list" if isinstance(value, list) else None


def reference_kind(value: Any) -> str | None:
    """Which of the `reference` union's members checks the value: null, or as for `text`."""
    return "null" if value is None else text_kind(value)


def within_beam(n_best: int, info: ValidationInfo) -> int:
    """`n_best` if the request's beam size (if it gives one) keeps that many translations."""
    beam_size = info.data.get("beam_size")
    if beam_size is not None and n_best > beam_size:
        message = "Input should be at most beam_size ({beam_size}): the search keeps no more translations"
        raise PydanticCustomError("n_best_over_beam_size", message, {"beam_size": beam_size})
    return n_best


def shaped_as_text(reference: str | list[str] | None, info: ValidationInfo) -> str | list[str] | None:
    """`reference` if it has the shape of the request's text: a string for a string, a list as long."""
    text = info.data.get("text")
    if reference is None or text is None:  # none given, or the text is refused already
        return reference
    if isinstance(text, str) and isinstance(reference, str):
        return reference
    if isinstance(text, list) and isinstance(reference, list) and len(reference) == len(text):
        return reference
    shape = "a string" if isinstance(text, str) else f"a list of {len(text)} string{'s' * (len(text) != 1)}"
    message = "Input should be {shape}, as text is: one reference a text"
    raise PydanticCustomError("reference_shape", message, {"shape": shape})


def request_model(limits: Limits, names: Sequence[str]) -> type[TranslateRequest]:
    """The /translate request with these `limits` (texts, characters, beam size) and models `names`."""
    text = Annotated[str, Field(max_length=limits.characters)]
    texts = Annotated[list[text], Field(max_length=limits.texts)]
    either = Annotated[
        Annotated[text, Tag("string")] | Annotated[texts, Tag("list")],
        Discriminator(
            text_kind,
            custom_error_type="text_type",
            custom_error_message="Input should be a string or a list of strings",
        ),
    ]

    def in_total(value: str | list[str]) -> str | list[str]:
        characters = len(value) if isinstance(value, str) else sum(map(len, value))
        if characters > limits.total_characters:
            message = "the texts have {characters} characters in all (at most {limit})"
            raise PydanticCustomError(
                "texts_too_long", message, {"characters": characters, "limit": limits.total_characters}
            )
        return value

    return create_model(
        "TranslateRequest",
        __base__=TranslateRequest,
        __doc__=TranslateRequest.__doc__,
        text=(
            Annotated[either, AfterValidator(in_total)],
            Field(description="a text, or a list of texts; each line is split into sentences, translated together"),
        ),
        model=(Literal[(*names, "all")], Field("all", description='a loaded model, or "all" of them')),
        beam_size=(
            Annotated[int, Field(strict=True, ge=1, le=limits.beam_size)] | None,
            Field(None, description="beams (1: greedy search); the model's own setting if left out"),
        ),
        alpha=(
            Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] | None,
            Field(None, description="the GNMT length penalty's exponent; the model's own if left out"),
        ),
        attention=(
            bool,
            Field(False, strict=True, description="also each sentence's attention, or the GRU's context vector"),
        ),
        **lab_fields(limits, text, texts),
    )


def lab_fields(limits: Limits, text: Any, texts: Any) -> dict[str, tuple]:
    """The request's fields for the page's lab (lab.py): the n best translations, saliency, a reference
    (`text`'s and `texts`' types and limits) to score by chrF, and whether to split texts into sentences."""
    reference = Annotated[
        Annotated[None, Tag("null")] | Annotated[text, Tag("string")] | Annotated[texts, Tag("list")],
        Discriminator(
            reference_kind,
            custom_error_type="reference_type",
            custom_error_message="Input should be a string, a list of strings or null",
        ),
    ]
    return {
        "n_best": (
            Annotated[int, Field(strict=True, ge=1, le=limits.beam_size), AfterValidator(within_beam)],
            Field(1, description="translations of each text to answer, best first, in `nbest` (at most the beams)"),
        ),
        "saliency": (
            bool,
            Field(False, strict=True, description="also each source subword's share of its translation's gradient"),
        ),
        "reference": (
            Annotated[reference, AfterValidator(shaped_as_text)],
            Field(None, description="a reference translation of each text (the shape of text), scored by chrF"),
        ),
        "split_sentences": (
            bool,
            Field(True, strict=True, description="translate each sentence alone (false: each text whole, in one go)"),
        ),
    }


def parse_query(body: bytes, request: type[TranslateRequest], names: Sequence[str]) -> Query:
    """The body as checked by `request` (its JSON parsed by Pydantic, which refuses deep nesting), or a
    RequestValidationError with FastAPI's locations ("body", field, indices; the union's tags left out)."""
    try:
        return request.model_validate_json(body).query(names)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**error, "loc": location(error["loc"])} for error in errors]) from None


def location(loc: tuple[str | int, ...]) -> list[str | int]:
    """FastAPI's location of a problem in the body: "body", the field, the indices in it (no union tag)."""
    return ["body", *(part for i, part in enumerate(loc) if i == 0 or isinstance(part, int))]


# errors

TOO_LARGE = frozenset({"too_long", "string_too_long", "texts_too_long"})  # over a size limit: 413, not 422
SHOWN = 10  # problems an error lists at most


class Problem(BaseModel):
    """One thing wrong with a request: where (FastAPI's `loc`), what, and Pydantic's name for it."""

    loc: list[str | int]
    msg: str
    type: str


class Error(BaseModel):
    """Every error's body."""

    error: str = Field(description="one line naming the problem or the limit")
    detail: list[Problem] | None = Field(None, description="with a 413 or 422 from the schema: each problem")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": description}
    for status, description in {
        408: "the body took too long to arrive",
        413: "over a limit: the body's bytes, texts, characters, sentences, a sentence's tokens, attention cells",
        422: "a body the request's schema refuses (not JSON, a wrong or unknown field, a value out of range)",
        500: "a model failed on it",
        503: "an asked model's queue is full, its worker has stopped, or the server is shutting down",
        504: "no answer within the deadline",
    }.items()
}
ERRORS[503]["headers"] = {"Retry-After": {"description": "seconds to wait: 1", "schema": {"type": "integer"}}}


def where(loc: Sequence[str | int]) -> str:
    """`text[1]` for ("body", "text", 1); "body" for the body itself."""
    path = [f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:]]
    return "".join(path).removeprefix(".") or "body"


async def refused(request: Request, error: RequestError) -> JSONResponse:
    """A request that cannot be answered (serve_limits.RequestError): its status and message."""
    return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)


async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    """A body the request's schema refuses: 413 if it is only over size limits, else 422; one line naming
    each problem (the first `SHOWN`), and each one's `loc`, `msg` and `type` in "detail"."""
    problems = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in error.errors()]
    shown = problems[:SHOWN]
    line = "; ".join(f"{where(p['loc'])}: {p['msg']}" for p in shown)
    if len(problems) > len(shown):
        line += f"; and {len(problems) - len(shown)} more"
    status = 413 if all(p["type"] in TOO_LARGE for p in problems) else 422
    return JSONResponse({"error": line, "detail": shown}, status_code=status)


# answers


class Attention(BaseModel):
    """A sentence's subwords and its attention weights, shape (target, source); for a model with several
    cross-attention maps (the Transformer), also each one, teacher-forced on the same target."""

    source: list[str]
    target: list[str]
    weights: list[list[float]]
    heads: list[list[list[list[float]]]] | None = Field(None, description="(decoder layers, heads, target, source)")


class Context(BaseModel):
    """A sentence's subwords and the GRU's context vector, shape (hidden,)."""

    source: list[str]
    target: list[str]
    vector: list[float]
    drift: list[float] | None = Field(
        None, description="per source subword k: 1 - cos between the vectors of subwords 0..k and of the whole source"
    )


class Saliency(BaseModel):
    """A sentence's source subwords, and each one's share of the gradient of its translation's log-likelihood
    (the shares sum to 1)."""

    source: list[str]
    shares: list[float]


class Candidate(BaseModel):
    """One of a text's n best translations."""

    translation: str
    score: float


class ModelAnswer(BaseModel):
    """One model's answer, shaped as the request's text (a string, or a list); `attention`, `context`,
    `saliency` only when asked, per sentence (a text's list, or a list of them; null where the model has
    none), `nbest` with n_best over 1, `chrf` with a reference."""

    translations: str | list[str]
    scores: float | list[float] = Field(description="log-probability / length penalty (several sentences: their mean)")
    nbest: list[Candidate] | list[list[Candidate]] | None = Field(None, description="best first; the first is chosen")
    attention: list[Attention] | list[list[Attention] | None] | None = None
    context: list[Context] | list[list[Context] | None] | None = None
    saliency: list[Saliency] | list[list[Saliency] | None] | None = None
    chrf: float | list[float] | None = Field(None, description="sentence-level chrF of the translation (0..100)")
    milliseconds: float = Field(description="the batch's time: decoding, and what the lab asks")
    batch_requests: int = Field(description="requests in the batch it was decoded in")


class TranslateResponse(BaseModel):
    """Each asked model's answer."""

    results: dict[str, ModelAnswer]


def model_result(
    query: Query,
    nbests: list[list[Translation]],
    explained: list[list[Explanation]],
    seconds: float,
    batch: int,
    gradients: bool = True,
) -> dict:
    """One model's answer from each text's n best translations (the first chosen) and its sentences'
    explained (lab.explain): translations and scores shaped as the request's text; with n_best over 1 the
    n best; with `attention`, each text's attention or context vectors, sentence by sentence; with
    `saliency`, its saliency (null for a model without `gradients`); with references, chrF."""
    chosen = [nbest[0] for nbest in nbests]
    result: dict = {"translations": [t.text for t in chosen], "scores": [round(t.score, 4) for t in chosen]}
    if query.n_best > 1:
        result["nbest"] = [[{"translation": t.text, "score": round(t.score, 4)} for t in nbest] for nbest in nbests]
    if query.attention:
        result["attention"] = [details(t, e, "attention") for t, e in zip(chosen, explained, strict=True)]
        result["context"] = [details(t, e, "context") for t, e in zip(chosen, explained, strict=True)]
    if query.saliency:
        result["saliency"] = [details(t, e, "saliency") for t, e in zip(chosen, explained, strict=True)]
    if query.references is not None:
        result["chrf"] = [round(score, 2) for score in chrf(result["translations"], query.references)]
    if query.single:
        result = {key: value[0] for key, value in result.items()}
    if query.saliency and not gradients:
        result["saliency"] = None
    return {**result, "milliseconds": round(1000 * seconds, 1), "batch_requests": batch}


# what the other routes answer


class DecodingSettings(BaseModel):
    """The model's own decoding settings, which a request may override."""

    beam_size: int
    alpha: float


class ModelInfo(BaseModel):
    """A served model: its test BLEU only if the leaderboard report scored this very checkpoint."""

    name: str
    architecture: str
    parameters: int
    checkpoint: str
    shows: Literal["attention", "context vector"]
    languages: list[str]
    decoding: DecodingSettings
    test_bleu: float | None
    test_split: str | None


class Models(BaseModel):
    """GET /models: the served models."""

    models: list[ModelInfo]


class Figure(BaseModel):
    """A leaderboard figure: its title, and where the server has it."""

    title: str
    url: str


class Figures(BaseModel):
    """GET /figures: the leaderboard figures that the reports folder has."""

    figures: list[Figure]


class Health(BaseModel):
    """Each model's worker: which are dead, their waiting and translating requests, translated texts."""

    status: Literal["ok", "degraded"]
    models: list[str]
    dead: list[str]
    queued: dict[str, int]
    queue_limit: int
    translating: dict[str, int]
    translated: dict[str, int]


class Ready(BaseModel):
    """GET /ready: whether the server takes requests, and if not, why."""

    status: Literal["ready", "not ready"]
    error: str | None = None
