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
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, create_model
from pydantic_core import PydanticCustomError
from torch import Tensor

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
        return Query([self.text] if single else self.text, single, models, self.beam_size, self.alpha, self.attention)


def text_kind(value: Any) -> str | None:
    """Which of the `text` union's members checks the value (None: neither, one error naming both)."""
    return "string" if isinstance(value, str) else "list" if isinstance(value, list) else None


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
    )


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
    """A sentence's subwords and its attention weights, shape (target, source)."""

    source: list[str]
    target: list[str]
    weights: list[list[float]]


class Context(BaseModel):
    """A sentence's subwords and the GRU's context vector, shape (hidden,)."""

    source: list[str]
    target: list[str]
    vector: list[float]


class ModelAnswer(BaseModel):
    """One model's answer, shaped as the request's text (a string, or a list); `attention` and `context`
    only when asked, per sentence (a text's list, or a list of them; null where the model has none)."""

    translations: str | list[str]
    scores: float | list[float] = Field(description="log-probability / length penalty (several sentences: their mean)")
    attention: list[Attention] | list[list[Attention] | None] | None = None
    context: list[Context] | list[list[Context] | None] | None = None
    milliseconds: float = Field(description="the batch's decoding time")
    batch_requests: int = Field(description="requests in the batch it was decoded in")


class TranslateResponse(BaseModel):
    """Each asked model's answer."""

    results: dict[str, ModelAnswer]


def rounded(tensor: Tensor) -> list:
    """The tensor's values to 4 decimals, as (nested) lists."""
    return tensor.double().round(decimals=4).tolist()


def sentence_details(translation: Translation, kind: str) -> list[dict] | None:
    """Each sentence's attention (source and target subwords, weights (target, source)) or context vector
    (`kind`); None where the model has none."""
    parts = [t for t in translation.sentences or [translation] if getattr(t, kind) is not None]
    if not parts:
        return None
    key, value = ("weights", rounded) if kind == "attention" else ("vector", lambda c: rounded(c[0]))
    return [{"source": t.source_pieces, "target": t.target_pieces, key: value(getattr(t, kind))} for t in parts]


def model_result(query: Query, translations: list[Translation], seconds: float, batch: int) -> dict:
    """One model's answer: translations and scores shaped as the request's text; with `attention`, each
    text's attention or context vectors, sentence by sentence."""
    result = {"translations": [t.text for t in translations], "scores": [round(t.score, 4) for t in translations]}
    if query.attention:
        result["attention"] = [sentence_details(t, "attention") for t in translations]
        result["context"] = [sentence_details(t, "context") for t in translations]
    if query.single:
        result = {key: value[0] for key, value in result.items()}
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
