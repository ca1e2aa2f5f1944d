"""The evidence routes of `translate serve` (serve_evidence.py): a report's BLEU by source length, each
bucket's test sentences with the records' translations and their chrF, the runs of 8 sentences, and a
clear error (never other sentences) when the test set is missing or not the report's."""

import os
from pathlib import Path

import pytest
import sacrebleu
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import tiny_model, write_corpus
from translate.commands.serve import serve
from translate.records import TestSet, read_record, record_folder, split_test_set, write_record
from translate.report import leaderboard, read_report, write_report
from translate.serve import Server, create_app
from translate.serve_evidence import Evidence, add_evidence_routes
from translate.serve_limits import RequestError
from translate.serve_schema import refused
from translate.translator import Translator

ROOT = Path(__file__).parents[1]
MULTI30K = Path(os.environ.get("TRANSLATE_MULTI30K", ROOT / "../shared/data/multi30k"))
DECODING = {"beam_size": 3, "alpha": 0.0, "split_sentences": False}
SYSTEMS = {  # three "models" whose translations differ from the references in known ways
    "gru-aaaaaa-10": lambda reference: " ".join(reference.split()[:-1]),  # the last word left out
    "bahdanau-bbbbbb-20": lambda reference: " ".join(reversed(reference.split())),
    "transformer-cccccc-30": lambda reference: reference,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A corpus whose test split has 203 sentences of 1-8 words (so several length buckets, and a last
    run of 8 that is shorter)."""
    return write_corpus(tmp_path_factory.mktemp("corpus"), sizes=(20, 10, 203))


@pytest.fixture(scope="module")
def test_set(corpus, tmp_path_factory) -> TestSet:
    return split_test_set(str(corpus), "test", ["de", "en"], cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def reports(test_set, tmp_path_factory) -> Path:
    """A report folder as `translate leaderboard` writes it: a record per system, and the report rendered
    from them (leaderboard.json, the figures)."""
    root = tmp_path_factory.mktemp("reports")
    records = []
    for name, system in SYSTEMS.items():
        model = {
            "name": name,
            "checkpoint": str(root / f"{name}.ckpt"),
            "model": name.split("-")[0],
            "parameters": 1000,
            "epochs": 1,
            "steps": 10,
            "train_seconds": None,
            "hardware": None,
        }
        folder = record_folder(root / "records", model, test_set, DECODING)
        hypotheses = [system(reference) for reference in test_set.references]
        write_record(folder, model, test_set, DECODING, hypotheses, 1.0, n_bootstrap=50)
        records.append(read_record(folder))
    write_report(leaderboard(records, root, n_bootstrap=50), records, root)
    return root


@pytest.fixture(scope="module")
def report(reports) -> dict:
    return read_report(reports / "leaderboard.json")


def evidence_client(evidence: Evidence | None, checkpoints: dict[str, Path] | None = None) -> TestClient:
    """A client of an app with only the evidence routes (and the server's error handler)."""
    app = FastAPI()
    app.add_exception_handler(RequestError, refused)
    add_evidence_routes(app, evidence, checkpoints or {})
    return TestClient(app)


@pytest.fixture(scope="module")
def client(report, reports, tmp_path_factory) -> TestClient:
    """Serving the report's evidence, the transformer's checkpoint as the served model "best"."""
    evidence = Evidence(report, reports, cache_dir=tmp_path_factory.mktemp("cache"))
    return evidence_client(evidence, {"best": reports / "transformer-cccccc-30.ckpt"})


def test_evidence_lists_the_buckets_and_each_models_bleu(client, report):
    answer = client.get("/evidence")
    assert answer.status_code == 200
    evidence = answer.json()
    assert evidence["test_set"] == report["test_set"]
    assert evidence["models"] == [
        {"name": "gru-aaaaaa-10", "served": None},
        {"name": "bahdanau-bbbbbb-20", "served": None},
        {"name": "transformer-cccccc-30", "served": "best"},
    ]
    assert evidence["figure"] == "/reports/bleu_by_length.png"
    rows = report["models"][0]["by_length"]
    assert len(evidence["buckets"]) == len(rows) >= 3
    for b, bucket in enumerate(evidence["buckets"]):
        assert {key: bucket[key] for key in ("bucket", "min_words", "max_words", "sentences")} == {
            key: rows[b][key] for key in ("bucket", "min_words", "max_words", "sentences")
        }
        scores = {
            m["name"]: {"bleu": m["by_length"][b]["bleu"], "ci": m["by_length"][b]["bleu_ci"]} for m in report["models"]
        }
        assert bucket["bleu"] == scores


def test_each_bucket_has_its_sentences_with_every_models_translation_and_chrf(client, report, test_set):
    seen = []
    for bucket in client.get("/evidence").json()["buckets"]:
        answer = client.get(f"/evidence/{bucket['bucket']}")
        assert answer.status_code == 200
        sentences = answer.json()["sentences"]
        assert answer.json()["bucket"] == bucket["bucket"] and len(sentences) == bucket["sentences"]
        for sentence in sentences:
            i = sentence["index"]
            source, reference = test_set.sources[i], test_set.references[i]
            assert (sentence["source"], sentence["reference"]) == (source, reference)
            assert sentence["words"] == len(source.split())
            assert bucket["min_words"] <= sentence["words"] <= bucket["max_words"]
            for name, system in SYSTEMS.items():
                translation = sentence["translations"][name]
                assert translation["text"] == system(reference)
                assert translation["chrf"] == sacrebleu.sentence_chrf(system(reference), [reference]).score
        seen += [sentence["index"] for sentence in sentences]
    assert sorted(seen) == list(range(len(test_set.sources)))  # every sentence, in one bucket


def test_an_unknown_bucket_is_404_naming_it_and_the_buckets_without_loading_the_test_set(report, reports, tmp_path):
    evidence = Evidence(report, reports, cache_dir=tmp_path)
    answer = evidence_client(evidence).get("/evidence/99-100")
    assert answer.status_code == 404
    labels = [row["bucket"] for row in report["models"][0]["by_length"]]
    assert answer.json() == {"error": f"the report has no bucket '99-100'; its buckets: {', '.join(labels)}"}
    assert evidence.loading is None  # nothing loaded for it


def test_examples_are_the_test_split_in_runs_of_8(client, corpus, test_set, tmp_path):
    answer = client.get("/examples")
    assert answer.status_code == 200
    examples = answer.json()["examples"]
    assert len(test_set.sources) == 203 and len(examples) == 25  # the last, shorter run is left out
    for i, example in enumerate(examples):
        assert example["index"] == i
        assert example["sources"] == test_set.sources[8 * i : 8 * i + 8]
        assert example["references"] == test_set.references[8 * i : 8 * i + 8]
    runs = split_test_set(str(corpus), "test", ["de", "en"], joined=[8], cache_dir=tmp_path)  # as join_runs joins
    assert [" ".join(e["sources"]) for e in examples] == runs.sources
    assert [" ".join(e["references"]) for e in examples] == runs.references


def test_the_test_set_is_loaded_once_on_the_first_request(report, reports, tmp_path):
    evidence = Evidence(report, reports, cache_dir=tmp_path)
    client = evidence_client(evidence)
    assert client.get("/evidence").status_code == 200 and evidence.loading is None  # the report alone
    assert client.get("/examples").status_code == 200
    loading = evidence.loading
    assert loading is not None and loading.done()
    assert client.get(f"/evidence/{report['models'][0]['by_length'][0]['bucket']}").status_code == 200
    assert evidence.loading is loading


@pytest.mark.parametrize("case", ["other test set", "no such dataset", "no test split"])
def test_a_test_set_that_is_not_the_reports_is_refused_naming_the_dataset_and_the_option(
    case, report, reports, tmp_path
):
    if case == "other test set":
        dataset = write_corpus(tmp_path / "other", sizes=(203, 10, 20), splits=("test", "val", "train"))  # other seed
        expected = "is not the test set the report was evaluated on: its sha256 is"
    elif case == "no such dataset":
        dataset, expected = tmp_path / "nowhere", "the test set cannot be loaded from"
    else:
        dataset = write_corpus(tmp_path / "splits", sizes=(20, 10), splits=("train", "val"))
        expected = "has no 'test' split"
    client = evidence_client(Evidence(report, reports, str(dataset), cache_dir=tmp_path / "cache"))
    bucket = report["models"][0]["by_length"][0]["bucket"]
    for route in (f"/evidence/{bucket}", "/examples"):
        answer = client.get(route)
        assert answer.status_code == 503 and "retry-after" not in answer.headers  # retrying would not mend it
        error = answer.json()["error"]
        assert expected in error and repr(str(dataset)) in error and "--dataset" in error
    assert client.get("/evidence").status_code == 200  # the report's own numbers are still shown


def test_records_that_are_not_the_reports_are_refused(report, reports, tmp_path):
    stale = {**report, "models": [{**report["models"][0], "bleu": report["models"][0]["bleu"] + 1}]}
    answer = evidence_client(Evidence(stale, reports, cache_dir=tmp_path)).get("/examples")
    assert answer.status_code == 503
    assert "is not the record the report was made from" in answer.json()["error"]
    moved = {**report, "models": [{**report["models"][0], "record": "records/nowhere/test"}]}
    answer = evidence_client(Evidence(moved, reports, cache_dir=tmp_path)).get("/examples")
    assert answer.status_code == 503
    assert answer.json()["error"].startswith(
        "the evaluation record of gru-aaaaaa-10 cannot be read (no evaluation record"
    )


def test_without_a_report_each_route_is_404_saying_so():
    client = evidence_client(None)
    for route in ("/evidence", "/evidence/0-7", "/examples"):
        answer = client.get(route)
        assert answer.status_code == 404 and "no leaderboard report" in answer.json()["error"]
        assert "--report" in answer.json()["error"]


def test_a_report_without_buckets_is_refused():
    with pytest.raises(ValueError, match="the report has no length_buckets: not a leaderboard report"):
        Evidence({"test_set": {"split": "test"}, "models": [{"name": "gru"}]}, Path("reports"))


def test_openapi_lists_the_evidence_routes_with_typed_fields(client):
    schema = client.get("/openapi.json").json()
    for path in ("/evidence", "/evidence/{bucket}", "/examples"):
        assert "200" in schema["paths"][path]["get"]["responses"]
        assert schema["paths"][path]["get"]["responses"]["404"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    assert "503" in schema["paths"]["/examples"]["get"]["responses"]
    components = schema["components"]["schemas"]
    sentence = components["Sentence"]["properties"]
    assert sentence["index"]["type"] == "integer" and sentence["source"]["type"] == "string"
    assert components["ScoredTranslation"]["properties"]["chrf"]["type"] == "number"
    assert components["Bucket"]["properties"]["min_words"]["type"] == "integer"
    assert components["Example"]["properties"]["sources"]["maxItems"] == 8
    assert components["ReportModel"]["properties"]["served"]["anyOf"] == [{"type": "string"}, {"type": "null"}]


@pytest.fixture(scope="module")
def translator(tiny_dm) -> Translator:
    model = tiny_model("gru", tiny_dm.vocab_size)
    model.tokenizer = tiny_dm.tokenizer
    return Translator(model, "cpu")


def test_create_app_serves_the_evidence_naming_the_served_model(report, reports, translator, tmp_path):
    checkpoint = reports / "bahdanau-bbbbbb-20.ckpt"
    evidence = Evidence(report, reports, cache_dir=tmp_path)
    with TestClient(create_app({"mine": (checkpoint, translator)}, report, reports, evidence=evidence)) as client:
        served = {m["name"]: m["served"] for m in client.get("/evidence").json()["models"]}
        assert served == {"gru-aaaaaa-10": None, "bahdanau-bbbbbb-20": "mine", "transformer-cccccc-30": None}
        assert client.get("/examples").status_code == 200
        assert client.get("/reports/bleu_by_length.png").status_code == 200  # the figure /evidence names


def test_serve_takes_the_test_set_from_the_reports_dataset_or_from_dataset(
    report, reports, corpus, translator, tmp_path, monkeypatch
):
    apps = []
    monkeypatch.setattr(Server, "run", lambda server: apps.append(server.config.app))
    monkeypatch.setattr(Translator, "from_checkpoint", lambda path, device: translator)
    monkeypatch.chdir(tmp_path)  # the datasets cache (data/datasets) in here
    checkpoint = tmp_path / "gru.ckpt"
    checkpoint.touch()
    given = ["--checkpoint", f"gru={checkpoint}", "--report", str(reports / "leaderboard.json")]
    other = write_corpus(tmp_path / "other", sizes=(20, 10, 30))
    for extra in ([], ["--dataset", str(corpus)], ["--dataset", str(other)]):
        serve([*given, *extra])
    answers = [TestClient(app).get("/examples") for app in apps]
    assert [answer.status_code for answer in answers] == [200, 200, 503]
    assert repr(str(other)) in answers[2].json()["error"]
    assert Path("data/datasets").is_dir()
    with pytest.raises(ValueError, match="--dataset gives the report's test set, but there is no report at"):
        serve(["--checkpoint", f"gru={checkpoint}", "--report", str(tmp_path / "none.json"), "--dataset", str(corpus)])


def test_the_committed_report_is_read_with_its_records():
    evidence = Evidence(read_report(ROOT / "reports/leaderboard.json"), ROOT / "reports")
    summary = evidence.summary({})
    assert [b.bucket for b in summary.buckets] == [r["bucket"] for r in evidence.report["models"][0]["by_length"]]
    assert sum(b.sentences for b in summary.buckets) == summary.test_set.sentences
    assert {m.name for m in summary.models} == {m["name"] for m in evidence.report["models"]}
    assert summary.figure == "/reports/bleu_by_length.png"
    records = evidence.records()  # read and checked to be the report's
    assert all(len(record.hypotheses) == summary.test_set.sentences for record in records)


@pytest.mark.skipif(
    not MULTI30K.is_dir() and not os.environ.get("TRANSLATE_DATA_TESTS"),
    reason=f"no local copy of Multi30k at {MULTI30K} (set TRANSLATE_MULTI30K); .ci/run requires this test",
)
def test_the_committed_report_with_its_test_set(tmp_path):
    report = read_report(ROOT / "reports/leaderboard.json")
    client = evidence_client(Evidence(report, ROOT / "reports", str(MULTI30K), cache_dir=tmp_path))
    buckets = client.get("/evidence").json()["buckets"]
    sizes = [len(client.get(f"/evidence/{b['bucket']}").json()["sentences"]) for b in buckets]
    assert sizes == report["length_buckets"]["counts"]
    assert len(client.get("/examples").json()["examples"]) == report["test_set"]["sentences"] // 8
