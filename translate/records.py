"""Evaluation records: one per (checkpoint, test set, decoding), the unit every report is made of.

    <records>/<model>/<test set>/record.json      what was evaluated (checkpoint, test set), how (decoding),
                                                  its scores, speed, machine, date and command
    <records>/<model>/<test set>/hypotheses.txt   one translation per test input, in order
    <records>/<model>/<test set>/sentences.tsv    per input: source words, sentences joined, and
                                                  sacreBLEU's BLEU statistics (evaluation.bleu_statistics)

:func:`write_record` is the one function that scores translations and writes a record: `translate
evaluate` and the leaderboard call it through :func:`evaluate`, `translate test` with its test loop's
translations. Reports (report.py) are computed from records alone: they never decode and never need the
references. A model's name is its checkpoint's: architecture, training run and step (`gru-3fa9c1-3432`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from translate.checkpoints import check_languages, model_from, read_checkpoint, training_record
from translate.data import TranslationDataModule, join_runs, load_splits, text_pairs
from translate.evaluation import bleu_of, bleu_statistics, chrf_scores, literature_bleu
from translate.files import atomic_write_bytes, write_json
from translate.machine import machine
from translate.saliency import remembered
from translate.search import TranslationModel
from translate.translator import Translator

RECORD, HYPOTHESES, SENTENCES = "record.json", "hypotheses.txt", "sentences.tsv"
N_BOOTSTRAP = 1000  # resamples of the confidence intervals and paired tests
# the short name of each architecture (TranslationModel.architecture) that begins its models' names
ARCHITECTURES = {"GRUSeq2Seq": "gru", "BahdanauSeq2Seq": "bahdanau", "TransformerSeq2Seq": "transformer"}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class TestSet:
    """Sources and references, named (a record's folder), with what they are: `about` holds the dataset
    or file, split and languages; `joined`, per input, how many consecutive sentences it joins."""

    __test__ = False  # pytest: not a test class
    name: str
    sources: list[str]
    references: list[str]
    about: dict
    joined: list[int] = field(default_factory=list)
    tokenized: list[str] | None = None  # the references as the literature scores them (literature_references)

    def __post_init__(self) -> None:
        self.sources, self.references = list(self.sources), list(self.references)
        if len(self.sources) != len(self.references):
            raise ValueError(f"test set {self.name}: {len(self.sources)} sources for {len(self.references)} references")
        self.joined = self.joined or [1] * len(self.sources)

    def identity(self) -> dict:
        texts = json.dumps([self.sources, self.references], ensure_ascii=False).encode()
        identity = {"name": self.name, **self.about, "sentences": len(self.sources), "sha256": digest(texts)}
        if self.tokenized is not None:
            identity["tokenized_sha256"] = digest("".join(f"{line}\n" for line in self.tokenized).encode())
        return identity


def literature_references(test_set: TestSet, path: Path) -> TestSet:
    """`test_set` with its references as Multi30k papers score against them: `path`, one tokenized,
    lowercased reference a line (e.g. the official test_2016_flickr.lc.norm.tok.de), in the test set's
    order; records of it also give the literature's BLEU (evaluation.literature_bleu)."""
    if set(test_set.joined) != {1}:
        raise ValueError(f"tokenized references are of single sentences, but {test_set.name} joins them")
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if len(lines) != len(test_set.references):
        raise ValueError(
            f"{path} has {len(lines)} lines for the {len(test_set.references)} references of {test_set.name}"
        )
    return replace(test_set, tokenized=lines)


def dataset_test_set(dm: TranslationDataModule, split: str = "test", joined: Sequence[int] = (1,)) -> TestSet:
    """A split of the datamodule's dataset (read whole, whatever its `eval_join`), with every k of `joined`
    the split in consecutive runs of k sentences, one after the other."""
    languages = [dm.src_lang, dm.tgt_lang]
    return split_test_set(dm.dataset, split, languages, joined, dm.dataset_config, dm.cache_dir / "datasets")


def split_test_set(
    dataset: str,
    split: str,
    languages: Sequence[str],
    joined: Sequence[int] = (1,),
    config: str | None = None,
    cache_dir: Path | None = None,
) -> TestSet:
    """A split of `dataset` (corpus.load_splits) in `languages` (source, target), with every k of `joined`
    the split in consecutive runs of k sentences, one after the other: the test set a report names."""
    splits = load_splits(dataset, config, cache_dir)
    if split not in splits:
        raise KeyError(f"dataset {dataset!r} has no {split!r} split; splits found: {list(splits)}")
    src_lang, tgt_lang = languages
    pairs = text_pairs(splits[split], src_lang, tgt_lang, split)
    runs = {k: join_runs(pairs, k, split) for k in joined}
    name = split if list(joined) == [1] else f"{split}.joined{'-'.join(map(str, sorted({min(joined), max(joined)})))}"
    about = {"dataset": dataset, "split": split, "languages": [src_lang, tgt_lang], "joined": list(joined)}
    sources = [s for run in runs.values() for s in run["src"]]
    references = [t for run in runs.values() for t in run["tgt"]]
    return TestSet(name, sources, references, about, [k for k, run in runs.items() for _ in range(run.num_rows)])


def file_test_set(path: Path, src_lang: str, tgt_lang: str) -> TestSet:
    """The sentence pairs of one .jsonl/.json/.tsv/.csv/.parquet file (columns named by the languages)."""
    (split,) = load_splits(str(path)).values()
    pairs = text_pairs(split, src_lang, tgt_lang, path.name)
    about = {"file": str(path), "languages": [src_lang, tgt_lang], "joined": [1]}
    return TestSet(f"file.{path.stem}", pairs["src"], pairs["tgt"], about)


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a model's weights (names, dtypes, shapes and bytes): the same weights, the same digest."""
    hasher = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def model_identity(model: TranslationModel, checkpoint: dict, path: str | Path | None) -> dict:
    """What a record says of the model: its name, checkpoint file, run, step, weights, size and training."""
    architecture = ARCHITECTURES[model.architecture]
    weights = weights_digest(checkpoint["state_dict"])
    run, step = checkpoint.get("run"), checkpoint["global_step"]
    name = f"{architecture}-{run[:6]}-{step}" if run else f"{architecture}-{weights[:6]}"
    averaged = checkpoint.get("averaged_from")
    return {
        "name": f"{name}-avg{len(averaged)}" if averaged else name,
        "checkpoint": str(path) if path else None,
        "model": model.architecture,
        "run": run,
        "step": step,
        "averaged_from": averaged,
        "weights_sha256": weights,
        "parameters": model.num_parameters,
        "hyper_parameters": {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")},
        **training_record(checkpoint),
    }


def record_folder(root: Path, model: dict, test_set: TestSet, decoding: dict) -> Path:
    """Where the record of `model` on `test_set` lives; decoding sentence by sentence is a record of its own."""
    return root / model["name"] / (test_set.name + (".split" if decoding.get("split_sentences") else ""))


def write_record(
    folder: Path,
    model: dict,
    test_set: TestSet,
    decoding: dict,
    hypotheses: Sequence[str],
    seconds: float,
    extra: dict | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
) -> dict:
    """Score `hypotheses` (sacreBLEU: BLEU with its CI, chrF, chrF++) and write the record in `folder`
    (the hypotheses and sentence table first, the JSON that vouches for them by hash last). A line break
    in a translation (of a multi-line input) is kept as a space."""
    if len(hypotheses) != len(test_set.sources):
        raise ValueError(f"{len(hypotheses)} translations for the {len(test_set.sources)} inputs of {test_set.name}")
    hypotheses = [h.replace("\n", " ") for h in hypotheses]  # one line each (to sacreBLEU both are spaces)
    statistics = bleu_statistics(hypotheses, test_set.references)
    rows = [
        "\t".join(map(str, [len(source.split()), k, *stats]))
        for source, k, stats in zip(test_set.sources, test_set.joined, statistics, strict=True)
    ]
    files = {HYPOTHESES: "".join(f"{h}\n" for h in hypotheses), SENTENCES: "".join(f"{row}\n" for row in rows)}
    target = test_set.about["languages"][1]
    literature = (
        {} if test_set.tokenized is None else {"literature": literature_bleu(hypotheses, test_set.tokenized, target)}
    )
    for name, text in files.items():
        atomic_write_bytes(folder / name, text.encode("utf-8"))
    record = {
        "model": model,
        "test_set": test_set.identity(),
        "decoding": decoding,
        "scores": {**bleu_of(statistics, n_bootstrap), **chrf_scores(hypotheses, test_set.references), **literature},
        "decode_seconds": round(seconds, 1),
        "sentences_per_second": round(len(hypotheses) / max(seconds, 1e-9), 1),
        "extra": extra or {},
        "files": {name: digest(text.encode("utf-8")) for name, text in files.items()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["translate", *sys.argv[1:]]),
        "machine": machine(),
    }
    write_json(folder / RECORD, record)
    return record


@dataclass
class Record:
    """A record read back: its JSON, its translations, and per input its source words, sentences joined
    and BLEU statistics."""

    folder: Path
    data: dict
    hypotheses: list[str]
    source_words: list[int]
    joined: list[int]
    statistics: list[list[int]]

    @property
    def name(self) -> str:
        return self.data["model"]["name"]


def read_record(folder: Path) -> Record:
    """The record in `folder`; refused (naming the file) when a file is missing or is not the one the
    record was written with."""
    path = folder / RECORD
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation record in {folder} (expected {RECORD})")
    data = json.loads(path.read_text(encoding="utf-8"))
    texts = {}
    for name in (HYPOTHESES, SENTENCES):
        raw = (folder / name).read_bytes() if (folder / name).is_file() else None
        if raw is None or digest(raw) != data["files"].get(name):
            raise ValueError(
                f"{folder / name} is {'missing' if raw is None else 'not the file its record was written with'}"
            )
        texts[name] = raw.decode("utf-8").split("\n")[:-1]
    rows = [list(map(int, line.split("\t"))) for line in texts[SENTENCES]]
    return Record(folder, data, texts[HYPOTHESES], [r[0] for r in rows], [r[1] for r in rows], [r[2:] for r in rows])


def matches(folder: Path, model: dict, test_set: TestSet, decoding: dict) -> bool:
    """Whether `folder` already holds the record of these weights on this test set with this decoding."""
    path = folder / RECORD
    if not path.is_file():
        return False
    data = json.loads(path.read_text(encoding="utf-8"))
    same_weights = data["model"]["weights_sha256"] == model["weights_sha256"]
    return same_weights and data["test_set"] == test_set.identity() and data["decoding"] == decoding


Translate = Callable[[list[str]], list[str]]


def evaluate(
    root: Path,
    model: dict,
    test_set: TestSet,
    decoding: dict,
    translate: Translate,
    extra: Callable[[list[str]], dict] | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
) -> Record:
    """The record of `model` on `test_set`: read back where it is already written for the same weights and
    decoding, else decoded by `translate` (sources -> translations, timed) and written (with `extra`
    results computed from the translations)."""
    folder = record_folder(root, model, test_set, decoding)
    if not matches(folder, model, test_set, decoding):
        start = time.perf_counter()
        hypotheses = translate(test_set.sources)
        seconds = time.perf_counter() - start
        more = extra(hypotheses) if extra else None
        write_record(folder, model, test_set, decoding, hypotheses, seconds, more, n_bootstrap)
    return read_record(folder)


# -- evaluating a checkpoint -------------------------------------------------------------------------


def checkpoint_translator(path: Path, languages: Sequence[str], device: str = "auto") -> tuple[Translator, dict]:
    """The Translator of a checkpoint and the model's identity; refused when trained on another language pair."""
    checkpoint = read_checkpoint(path)
    check_languages(checkpoint.get("languages"), languages, f"checkpoint {path}", "the test set")
    translator = Translator(model_from(checkpoint), device)
    return translator, model_identity(translator.model, checkpoint, path)


def decoding_of(translator: Translator, beam_size: int | None, alpha: float | None, split: bool = False) -> dict:
    """The decoding a record is made with: the model's own settings with `beam_size` and `alpha` where given."""
    return {**asdict(translator.settings(beam_size=beam_size, alpha=alpha)), "split_sentences": split}


def decoder(translator: Translator, decoding: dict, max_tokens: int = 4096) -> Translate:
    """sources -> translations, by `decoding` (batches of at most `max_tokens` source tokens)."""
    beam, alpha, split = decoding["beam_size"], decoding["alpha"], decoding["split_sentences"]

    def translate(sources: list[str]) -> list[str]:
        return translator.translate(sources, beam, alpha, max_tokens=max_tokens, progress=True, split_sentences=split)

    return translate


def longest(sources: Sequence[str], count: int) -> list[int]:
    """The `count` longest sources (by words; ties by position)."""
    return sorted(range(len(sources)), key=lambda i: (-len(sources[i].split()), i))[:count]


def attention_of(translator: Translator, test_set: TestSet, decoding: dict, count: int) -> dict:
    """The attention (target pieces x source pieces, rounded) of the `count` longest inputs, for the
    heatmaps; nothing for a model without attention."""
    rows = longest(test_set.sources, count)
    details = translator.translate(
        [test_set.sources[i] for i in rows],
        decoding["beam_size"],
        decoding["alpha"],
        return_details=True,
        split_sentences=False,
    )
    kept = [
        {
            "sentence": i,
            "source_pieces": t.source_pieces,
            "target_pieces": t.target_pieces,
            "weights": [[round(w, 3) for w in line] for line in t.attention.tolist()],
        }
        for i, t in zip(rows, details, strict=True)
        if t.attention is not None
    ]
    return {"attention": kept} if kept else {}


def joined_extra(translator: Translator, test_set: TestSet, decoding: dict, split_at: Sequence[int] = (4, 8)):
    """What the long-input report adds to a joined test set's record, from its translations: for each k of
    `split_at`, BLEU with the inputs split into sentences and of the model's own k = 1 translations
    joined the same way; and what the model remembers (saliency.py) of the shortest and longest inputs."""

    def extra(hypotheses: list[str]) -> dict:
        runs = {k: [i for i, n in enumerate(test_set.joined) if n == k] for k in sorted(set(test_set.joined))}
        singles = [hypotheses[i] for i in runs.get(1, [])]
        split = []
        for k in (k for k in split_at if k in runs):
            sources, references = ([texts[i] for i in runs[k]] for texts in (test_set.sources, test_set.references))
            translated = decoder(translator, {**decoding, "split_sentences": True})(sources)
            joined = [" ".join(singles[j * k : (j + 1) * k]) for j in range(len(sources))]
            row = {"k": k, "bleu_split": bleu_of(bleu_statistics(translated, references), 1)["bleu"]}
            split.append(row | {"bleu_singles": bleu_of(bleu_statistics(joined, references), 1)["bleu"]})
        ends = {"short": min(runs), "long": max(runs)}
        remembers = {
            end: remembered(
                translator.model, *([texts[i] for i in runs[k]] for texts in (test_set.sources, test_set.references))
            )
            for end, k in ends.items()
        }
        return {"split": split, "remembers": remembers}

    return extra


def recorded_bleu(root: Path, checkpoint: Path, test_set: str = "test") -> float | None:
    """The BLEU the records under `root` give this very checkpoint (the same weights) on `test_set`, if any."""
    weights = weights_digest(read_checkpoint(checkpoint)["state_dict"])
    for path in sorted(root.glob(f"*/{test_set}/{RECORD}")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["model"]["weights_sha256"] == weights:
            return round(data["scores"]["bleu"], 2)
    return None


def datamodule_test_set(dm: TranslationDataModule, split: str) -> TestSet:
    """A split as the datamodule reads it (in runs of `eval_join` sentences): what `translate test` decodes."""
    k = dm.eval_join
    about = {"dataset": dm.dataset, "split": split, "languages": [dm.src_lang, dm.tgt_lang], "joined": [k]}
    name = split if k == 1 else f"{split}.joined{k}"
    return TestSet(name, dm.sources(split), dm.references(split), about, [k] * len(dm.sources(split)))
