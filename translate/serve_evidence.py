"""What `translate serve` shows of the leaderboard's evidence, from the report, its evaluation records and
the test set:

    GET /evidence           the report's test set, its models (and which served model is which), BLEU with
                            its CI of each model in each source-length bucket, and the figure
    GET /evidence/{bucket}  the bucket's test sentences: source, reference, each model's stored translation
                            (its record's hypotheses.txt) and that translation's sentence chrF (sacreBLEU)
    GET /examples           the test split in consecutive runs of 8 sentences (as corpus.join_runs groups them)

The test split is loaded as the leaderboard loads it (records.split_test_set, from `translate serve
--dataset`), in a thread, once, on the first request that needs it; it is used only if it is the very
test set the report was evaluated on (its sha256), and the records only if they are the report's own:
otherwise those two routes answer 503 saying why, never other sentences.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import sacrebleu
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from translate.evaluation import bucket_of
from translate.records import Record, TestSet, read_record, split_test_set
from translate.serve_limits import RequestError
from translate.serve_schema import Error

DATASETS_CACHE = Path("data/datasets")  # the `datasets` cache under the configs' data.cache_dir
FIGURE = "bleu_by_length.png"
RUN = 8  # sentences an example has
NO_REPORT = "the server has no leaderboard report: start it with --report PATH (e.g. reports/leaderboard.json)"


class Unavailable(RequestError):
    """A 503 that retrying does not mend (no Retry-After): the evidence cannot be shown by this server."""

    headers = None

    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


# answers


class TestSetInfo(BaseModel):
    """The test set the report was evaluated on, as its records name it."""

    model_config = ConfigDict(extra="allow")

    name: str
    dataset: str | None = None
    split: str | None = None
    languages: list[str]
    joined: list[int] = [1]
    sentences: int
    sha256: str = Field(description="of the sources and references (records.TestSet.identity)")


class ReportModel(BaseModel):
    """A model of the report, and the served model with its very checkpoint (null: none is served)."""

    name: str
    served: str | None


class BucketScore(BaseModel):
    """A model's BLEU on a bucket's sentences, with its 95 % bootstrap CI (±)."""

    bleu: float
    ci: float


class Bucket(BaseModel):
    """The test sentences of min_words..max_words source words, and each model's BLEU on them."""

    bucket: str = Field(description="its name: GET /evidence/{bucket}")
    min_words: int
    max_words: int
    sentences: int
    bleu: dict[str, BucketScore] = Field(description="by the report's model name")


class EvidenceSummary(BaseModel):
    """GET /evidence: the report's BLEU by source length, and the figure that draws it."""

    test_set: TestSetInfo
    models: list[ReportModel]
    buckets: list[Bucket]
    figure: str | None = Field(description="where the server has the BLEU-by-length figure, if it has it")


class ScoredTranslation(BaseModel):
    """A model's stored translation of a test sentence, and its sentence chrF (sacreBLEU, 0..100)."""

    text: str
    chrf: float


class Sentence(BaseModel):
    """A test sentence: its row in the test set, source words, source, reference and the translations."""

    index: int = Field(description="its row in the test set (of the split, unless the report's inputs are joined)")
    words: int
    source: str
    reference: str
    translations: dict[str, ScoredTranslation] = Field(description="by the report's model name")


class BucketSentences(BaseModel):
    """GET /evidence/{bucket}: the bucket's test sentences, in test set order."""

    bucket: str
    sentences: list[Sentence]


class Example(BaseModel):
    """A run of 8 consecutive test sentences: rows 8 * index .. 8 * index + 7 of the split."""

    index: int
    sources: list[str] = Field(min_length=RUN, max_length=RUN)
    references: list[str] = Field(min_length=RUN, max_length=RUN)


class Examples(BaseModel):
    """GET /examples: the test split in runs of 8 sentences (the last, shorter run left out)."""

    examples: list[Example]


# the evidence


@dataclass
class Sentences:
    """What the test set and the records give: each bucket's sentences, and the examples."""

    buckets: dict[str, BucketSentences]
    examples: Examples


class Evidence:
    """A leaderboard report (its JSON, `reports` its folder, where its records are) and the test split it
    was evaluated on, to be loaded from `dataset` (default: the report's) with `datasets`' cache in
    `cache_dir`. The report is read at once, the test set and the records on the first request that
    needs them (:meth:`sentences`)."""

    def __init__(
        self, report: dict, reports: Path, dataset: str | None = None, cache_dir: Path | None = DATASETS_CACHE
    ) -> None:
        missing = [key for key in ("test_set", "length_buckets", "models") if not report.get(key)]
        if missing:
            raise ValueError(f"the report has no {', '.join(missing)}: not a leaderboard report")
        self.report, self.reports, self.cache_dir = report, reports, cache_dir
        self.about: dict = report["test_set"]
        self.dataset = dataset or self.about.get("dataset")
        self.edges: list[int] = report["length_buckets"]["edges"]
        self.labels = [row["bucket"] for row in report["models"][0]["by_length"]]
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="evidence")
        self.loading: Future[Sentences | str] | None = None

    def summary(self, checkpoints: Mapping[str, Path]) -> EvidenceSummary:
        """GET /evidence's answer; `checkpoints`: the served models' (name: checkpoint path), which say
        which served model is which of the report's (the same checkpoint file)."""
        served = {Path(path).resolve(): name for name, path in checkpoints.items()}
        models = self.report["models"]
        buckets = []
        for b, row in enumerate(models[0]["by_length"]):
            scores = {
                m["name"]: BucketScore(bleu=m["by_length"][b]["bleu"], ci=m["by_length"][b]["bleu_ci"]) for m in models
            }
            buckets.append(Bucket(**{key: row[key] for key in Bucket.model_fields if key != "bleu"}, bleu=scores))
        return EvidenceSummary(
            test_set=TestSetInfo.model_validate(self.about),
            models=[ReportModel(name=m["name"], served=served_as(m, served)) for m in models],
            buckets=buckets,
            figure=f"/reports/{FIGURE}" if (self.reports / FIGURE).is_file() else None,
        )

    def check_bucket(self, bucket: str) -> None:
        """Refuse (404) a bucket the report does not have, naming the ones it has."""
        if bucket not in self.labels:
            raise RequestError(f"the report has no bucket {bucket!r}; its buckets: {', '.join(self.labels)}", 404)

    async def sentences(self) -> Sentences:
        """The buckets' sentences and the examples: loaded in the evidence thread on the first call, which
        later calls wait for; or (503) why they cannot be shown."""
        if self.loading is None:
            self.loading = self.thread.submit(self.load)
        loaded = await asyncio.shield(asyncio.wrap_future(self.loading))
        if isinstance(loaded, str):
            raise Unavailable(loaded)
        return loaded

    def load(self) -> Sentences | str:
        """(In the evidence thread.) The buckets' sentences and the examples, or the reason there are none."""
        try:
            records, test_set = self.records(), self.test_set()
        except Unavailable as e:
            return str(e)
        chrf = sacrebleu.CHRF()
        buckets: list[list[Sentence]] = [[] for _ in self.labels]
        words = records[0].source_words  # as the report buckets them
        for i, (source, reference) in enumerate(zip(test_set.sources, test_set.references, strict=True)):
            translations = {
                record.name: ScoredTranslation(
                    text=record.hypotheses[i], chrf=chrf.sentence_score(record.hypotheses[i], [reference]).score
                )
                for record in records
            }
            row = Sentence(index=i, words=words[i], source=source, reference=reference, translations=translations)
            buckets[bucket_of(words[i], self.edges)].append(row)
        return Sentences(
            {label: BucketSentences(bucket=label, sentences=s) for label, s in zip(self.labels, buckets, strict=True)},
            Examples(examples=example_runs(test_set)),
        )

    def records(self) -> list[Record]:
        """The report's records, each checked to be the one the report was made from."""
        records = []
        for model in self.report["models"]:
            try:
                record = read_record(self.reports / model["record"])
                same = record.data["test_set"]["sha256"] == self.about["sha256"]
                made = same and record.data["scores"]["bleu"] == model["bleu"]
            except (OSError, ValueError, KeyError) as e:
                raise Unavailable(f"the evaluation record of {model['name']} cannot be read ({e})") from e
            if not made:
                raise Unavailable(
                    f"{record.folder} is not the record the report was made from (another test set or other "
                    "translations): render the report again (translate leaderboard)"
                )
            records.append(record)
        return records

    def test_set(self) -> TestSet:
        """The report's test set, loaded from `dataset`; refused unless it is the very one the report was
        evaluated on."""
        where = f"dataset {self.dataset!r}"
        hint = (
            "start the server with --dataset PATH_OR_HUB_ID naming the dataset the report was evaluated on "
            f"({self.about.get('dataset')!r})"
        )
        split, joined = self.about.get("split"), self.about.get("joined", [1])
        try:
            if self.dataset is None or split is None:
                raise ValueError("the report names no dataset and split")
            test_set = split_test_set(self.dataset, split, self.about["languages"], joined, cache_dir=self.cache_dir)
        except Exception as e:  # whatever stops it loading: the message names it
            raise Unavailable(f"the test set cannot be loaded from {where} ({type(e).__name__}: {e}); {hint}") from e
        sha256 = test_set.identity()["sha256"]
        if sha256 != self.about["sha256"]:
            raise Unavailable(
                f"the {split!r} split of {where} is not the test set the report was evaluated on: its sha256 is "
                f"{sha256[:12]}…, the report's {self.about['sha256'][:12]}… ({len(test_set.sources)} against "
                f"{self.about['sentences']} inputs); {hint}"
            )
        return test_set


def served_as(model: dict, served: Mapping[Path, str]) -> str | None:
    """The served name of the report's `model`: the one with its checkpoint file (`served`: by resolved path)."""
    return served.get(Path(model["checkpoint"]).resolve()) if model.get("checkpoint") else None


def example_runs(test_set: TestSet) -> list[Example]:
    """The single sentences of `test_set` (its rows, if not joined) in consecutive runs of 8, as
    corpus.join_runs groups them (the last, shorter run left out)."""
    singles = [i for i, k in enumerate(test_set.joined) if k == 1]
    starts = range(0, len(singles) - RUN + 1, RUN)
    return [
        Example(
            index=i,
            sources=[test_set.sources[j] for j in singles[a : a + RUN]],
            references=[test_set.references[j] for j in singles[a : a + RUN]],
        )
        for i, a in enumerate(starts)
    ]


def add_evidence_routes(app: FastAPI, evidence: Evidence | None, checkpoints: Mapping[str, Path]) -> None:
    """GET /evidence, /evidence/{bucket} and /examples from `evidence` (None: each answers 404);
    `checkpoints`: the served models' (name: checkpoint path)."""
    summary = evidence.summary(checkpoints) if evidence is not None else None
    errors = {404: {"model": Error, "description": "no report, or no such bucket"}}
    errors |= {503: {"model": Error, "description": "the test set cannot be loaded, or is not the report's"}}

    def present() -> Evidence:
        if evidence is None:
            raise RequestError(NO_REPORT, 404)
        return evidence

    @app.get("/evidence", responses={404: errors[404]})
    async def evidence_summary() -> EvidenceSummary:
        """The report's test set and models, each model's BLEU (with its CI) by source length, the figure."""
        if summary is None:
            raise RequestError(NO_REPORT, 404)
        return summary

    @app.get("/evidence/{bucket}", responses=errors)
    async def bucket_sentences(bucket: str) -> BucketSentences:
        """The bucket's test sentences, each with every model's stored translation and its sentence chrF."""
        present().check_bucket(bucket)
        return (await present().sentences()).buckets[bucket]

    @app.get("/examples", responses=errors)
    async def list_examples() -> Examples:
        """The test split in consecutive runs of 8 sentences, sources and references."""
        return (await present().sentences()).examples
