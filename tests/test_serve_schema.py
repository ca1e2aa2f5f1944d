"""translate serve's bodies: a 4xx naming the problem for every malformed /translate body, whatever its
shape, and the schema (/openapi.json, /docs) with typed fields, the server's limits and an example."""

import json
from pathlib import Path

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from conftest import tiny_model
from translate.search import max_output_lengths
from translate.serve import Limits, create_app
from translate.serve_schema import TranslateResponse
from translate.translator import Translator

NESTED = 100_000  # levels of nesting: Python's json module would raise RecursionError (a 500)


def encoded(body: object) -> bytes:
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def models(tiny_dm) -> dict:
    """Untrained tiny GRU and Transformer models (what they answer is not checked here)."""
    loaded = {}
    for name in ("gru", "transformer"):
        model = tiny_model(name, tiny_dm.vocab_size)
        model.tokenizer = tiny_dm.tokenizer
        loaded[name] = (Path(f"{name}.ckpt"), Translator(model, "cpu"))
    return loaded


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(models)) as client:
        yield client


def post(client: TestClient, body: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {} if content_type is None else {"content-type": content_type}
    return client.post("/translate", content=body, headers=headers)


BAD = [
    # not JSON, or not a JSON object
    (b"{not json", 422, "body: Invalid JSON: key must be a string at line 1 column 2"),
    (b"\xff\xfe", 422, "body: Invalid JSON: expected value"),
    (b"", 422, "body: Invalid JSON: EOF while parsing a value"),
    (b'{"text": "\\ud800"}', 422, "body: Invalid JSON"),  # a lone surrogate: not Unicode
    (b"[" * NESTED, 422, "body: Invalid JSON: recursion limit exceeded"),
    (b'{"text": ' + b"[" * NESTED, 422, "body: Invalid JSON: recursion limit exceeded"),
    (b'{"a": ' * NESTED, 422, "body: Invalid JSON: recursion limit exceeded"),
    (b"[1, 2]", 422, "body: Input should be an object"),
    (b"3", 422, "body: Input should be an object"),
    (b'"Hund"', 422, "body: Input should be an object"),
    (b"null", 422, "body: Input should be an object"),
    # missing, unknown or mistyped fields
    (b"{}", 422, "text: Field required"),
    (encoded({"text": "Hund", "beam": 5}), 422, "beam: Extra inputs are not permitted"),
    (encoded({"text": 3}), 422, "text: Input should be a string or a list of strings"),
    (encoded({"text": {"de": "Hund"}}), 422, "text: Input should be a string or a list of strings"),
    (encoded({"text": ["ja", None]}), 422, "text[1]: Input should be a valid string"),
    (encoded({"text": "Hund", "model": "nmt"}), 422, "model: Input should be 'gru', 'transformer' or 'all'"),
    (encoded({"text": "Hund", "model": 3}), 422, "model: Input should be 'gru', 'transformer' or 'all'"),
    (encoded({"text": "Hund", "beam_size": 2.5}), 422, "beam_size: Input should be a valid integer"),
    (encoded({"text": "Hund", "beam_size": "5"}), 422, "beam_size: Input should be a valid integer"),
    (encoded({"text": "Hund", "beam_size": True}), 422, "beam_size: Input should be a valid integer"),
    (encoded({"text": "Hund", "alpha": "high"}), 422, "alpha: Input should be a valid number"),
    (encoded({"text": "Hund", "alpha": True}), 422, "alpha: Input should be a valid number"),
    (b'{"text": "Hund", "alpha": NaN}', 422, "alpha: Input should be a finite number"),
    (b'{"text": "Hund", "alpha": Infinity}', 422, "alpha: Input should be a finite number"),
    (encoded({"text": "Hund", "attention": "yes"}), 422, "attention: Input should be a valid boolean"),
    (encoded({"text": "Hund", "attention": 1}), 422, "attention: Input should be a valid boolean"),
    (encoded({"text": "Hund", "n_best": 2.0}), 422, "n_best: Input should be a valid integer"),
    (encoded({"text": "Hund", "saliency": "yes"}), 422, "saliency: Input should be a valid boolean"),
    (encoded({"text": "Hund", "reference": 3}), 422, "reference: Input should be a string, a list of strings or null"),
    (encoded({"text": "Hund", "reference": ["a"]}), 422, "reference: Input should be a string, as text is"),
    (encoded({"text": ["a"], "reference": "a"}), 422, "reference: Input should be a list of 1 string, as text is"),
    (encoded({"text": ["a", "b"], "reference": ["a"]}), 422, "reference: Input should be a list of 2 strings"),
    # out of range
    (encoded({"text": "Hund", "beam_size": 0}), 422, "beam_size: Input should be greater than or equal to 1"),
    (encoded({"text": "Hund", "beam_size": 1000}), 422, "beam_size: Input should be less than or equal to 16"),
    (encoded({"text": "Hund", "alpha": -1}), 422, "alpha: Input should be greater than or equal to 0"),
    (encoded({"text": "Hund", "n_best": 0}), 422, "n_best: Input should be greater than or equal to 1"),
    (encoded({"text": "Hund", "n_best": 17}), 422, "n_best: Input should be less than or equal to 16"),
    (encoded({"text": "Hund", "beam_size": 2, "n_best": 3}), 422, "n_best: Input should be at most beam_size (2)"),
    # over a size limit
    (encoded({"text": "a" * 100_000}), 413, "text: String should have at most 5000 characters"),
    (encoded({"text": ["Ja.", "a" * 6_000]}), 413, "text[1]: String should have at most 5000 characters"),
    (encoded({"text": ["Ja."] * 10_000}), 413, "text: List should have at most 64 items after validation, not 10000"),
    (encoded({"text": ["a" * 4_000] * 6}), 413, "text: the texts have 24000 characters in all (at most 20000)"),
    (encoded({"text": "Ja.", "reference": "a" * 6_000}), 413, "reference: String should have at most 5000 characters"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[f"{i}:{b[:20]!r}" for i, (b, _, _) in enumerate(BAD)])
def test_malformed_bodies_get_a_4xx_that_names_the_problem(client, body, status, message):
    response = post(client, body)
    assert response.status_code == status, response.text
    refusal = response.json()
    assert refusal["error"].startswith(message), refusal["error"]
    assert refusal["detail"][0]["loc"][0] == "body" and refusal["detail"][0]["msg"] in refusal["error"]
    answer = client.post("/translate", json={"text": "Hund", "model": "transformer", "beam_size": 1})
    assert isinstance(answer.json()["results"]["transformer"]["translations"], str)  # still serving


def test_a_body_over_the_byte_limit_is_refused_before_it_is_parsed(client):
    response = post(client, b'{"text": "' + b"[" * 1_100_000 + b'"}')
    assert response.status_code == 413
    assert response.json() == {"error": "the body has 1100012 bytes (at most 1000000)"}


def test_a_refusal_lists_each_problem_as_fastapi_does(client):
    refusal = post(client, encoded({"alpha": "x", "beam": 5})).json()
    assert refusal["error"] == (
        "text: Field required; alpha: Input should be a valid number; beam: Extra inputs are not permitted"
    )
    assert refusal["detail"] == [
        {"loc": ["body", "text"], "msg": "Field required", "type": "missing"},
        {"loc": ["body", "alpha"], "msg": "Input should be a valid number", "type": "float_type"},
        {"loc": ["body", "beam"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
    ]
    many = post(client, encoded({f"field{i}": i for i in range(30)}))  # 31 problems: 10 shown
    assert many.status_code == 422 and len(many.json()["detail"]) == 10
    assert many.json()["error"].endswith("field8: Extra inputs are not permitted; and 21 more")
    mixed = post(client, encoded({"text": "a" * 6_000, "beam_size": 0}))  # over a limit, and malformed
    assert mixed.status_code == 422 and "text: String" in mixed.json()["error"]


def test_any_content_type_is_read_as_json(client):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):  # as curl -d sends it, say
        response = post(client, encoded({"text": ["Hund"], "model": "gru", "beam_size": 1}), content_type)
        assert response.status_code == 200 and len(response.json()["results"]["gru"]["translations"]) == 1


def test_answers_are_what_the_response_schema_says(client):
    for text, none in (("Hund.\nKatze.", None), (["Hund.", "", "Katze. Hund."], [None] * 3)):
        for attention in (False, True):
            response = client.post("/translate", json={"text": text, "beam_size": 1, "attention": attention})
            results = TranslateResponse.model_validate(response.json()).results
            gru, transformer = results["gru"], results["transformer"]
            assert list(results) == ["gru", "transformer"] and type(gru.translations) is type(text)
            if attention:  # the GRU has a context vector, the Transformer attention
                assert gru.attention == none and transformer.context == none
                assert gru.context is not None and transformer.attention is not None
            else:
                assert gru.attention is gru.context is transformer.attention is transformer.context is None


def test_the_schema_shows_typed_fields_the_limits_and_an_example(client):
    operation = client.get("/openapi.json").json()["paths"]["/translate"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["text"] and schema["additionalProperties"] is False
    fields = schema["properties"]
    assert fields["text"]["oneOf"] == [
        {"type": "string", "maxLength": 5000},
        {"type": "array", "items": {"type": "string", "maxLength": 5000}, "maxItems": 64},
    ]
    assert fields["model"]["enum"] == ["gru", "transformer", "all"] and fields["model"]["default"] == "all"
    assert fields["beam_size"]["anyOf"] == [{"type": "integer", "minimum": 1, "maximum": 16}, {"type": "null"}]
    assert fields["alpha"]["anyOf"] == [{"type": "number", "minimum": 0}, {"type": "null"}]
    assert fields["attention"]["type"] == "boolean" and fields["attention"]["default"] is False
    assert fields["saliency"]["type"] == "boolean" and fields["saliency"]["default"] is False
    assert (fields["n_best"]["type"], fields["n_best"]["minimum"], fields["n_best"]["maximum"]) == ("integer", 1, 16)
    assert fields["reference"]["oneOf"] == [{"type": "null"}, *fields["text"]["oneOf"]]
    assert all(field["description"] for field in fields.values())
    (example,) = schema["examples"]
    answered = client.post("/translate", json=example)
    assert answered.status_code == 200 and list(answered.json()["results"]) == ["gru", "transformer"]
    responses = operation["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TranslateResponse"
    }
    for status in ("408", "413", "422", "500", "503", "504"):
        assert responses[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text


def test_the_schema_and_the_checks_follow_the_server_limits(models):
    limits = Limits(texts=2, characters=10, total_characters=15, beam_size=4)
    with TestClient(create_app({"gru": models["gru"]}, limits=limits)) as client:
        schema = client.get("/openapi.json").json()["paths"]["/translate"]["post"]["requestBody"]["content"]
        fields = schema["application/json"]["schema"]["properties"]
        assert fields["text"]["oneOf"][1] == {
            "type": "array",
            "items": {"type": "string", "maxLength": 10},
            "maxItems": 2,
        }
        assert fields["beam_size"]["anyOf"][0]["maximum"] == 4 and fields["model"]["enum"] == ["gru", "all"]
        too_many = client.post("/translate", json={"text": ["a", "b", "c"]})
        assert too_many.status_code == 413 and "at most 2 items" in too_many.json()["error"]
        too_long = client.post("/translate", json={"text": ["a" * 9, "b" * 9]})
        assert too_long.status_code == 413 and "18 characters in all (at most 15)" in too_long.json()["error"]
        beams = client.post("/translate", json={"text": "Hund", "beam_size": 5})
        assert beams.status_code == 422 and "less than or equal to 4" in beams.json()["error"]
        assert client.post("/translate", json={"text": ["Hund", "Katze"], "beam_size": 4}).status_code == 200


def test_n_best_over_a_models_own_beam_size_is_refused_naming_both(client):
    refused = client.post("/translate", json={"text": "Hund", "model": "gru", "n_best": 6})  # its beam size: 5
    assert refused.status_code == 422
    assert refused.json() == {"error": "gru: n_best must be between 1 and beam_size (5), got 6"}
    answered = client.post("/translate", json={"text": "Hund", "model": "gru", "n_best": 5}).json()
    assert len(answered["results"]["gru"]["nbest"]) == 5


def test_attention_cells_count_every_head_where_a_model_shows_them(models):
    transformer = models["transformer"][1]
    n = len(transformer.tokenizer.encode(["Hund"])[0])
    cells = n * int(max_output_lengths(torch.tensor([n]), transformer.model.decoding)[0])  # one map
    maps = 1 + transformer.model.attention_maps  # the average, and 2 layers x 4 heads
    for limit, status in ((maps * cells - 1, 413), (maps * cells, 200)):
        with TestClient(create_app(models, limits=Limits(attention_cells=limit))) as client:
            answer = client.post("/translate", json={"text": "Hund", "attention": True})  # the GRU's: not counted
            assert answer.status_code == status, answer.text
            if status == 413:
                error = answer.json()["error"]
                assert f"up to {maps * cells} cells" in error and f"over the limit of {limit} a request" in error
                assert client.post("/translate", json={"text": "Hund"}).status_code == 200
            else:
                heads = answer.json()["results"]["transformer"]["attention"][0]["heads"]
                assert len(heads) * len(heads[0]) == maps - 1
