"""From a translation dataset to text pairs: where the sentences come from.

    load_splits: a Hub id, a local folder or one file -> splits named train / validation / test
    text_pairs:  a split -> string columns `src` and `tgt`, from either schema
    join_runs:   an evaluation split read as consecutive runs of k sentences joined with a space

The flat schema (`{"de": ..., "en": ...}`, as bentrevett/multi30k) and the nested one
(`{"translation": {"de": ..., "en": ...}}`, as wmt16 or opus_books) are both read.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation"}
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


def load_splits(dataset: str, config: str | None = None, cache_dir: Path | None = None) -> datasets.DatasetDict:
    """`datasets.load_dataset` on a Hub id, a local folder or a local file, splits renamed to
    train/validation/test (val, valid and dev are accepted for validation)."""
    try:
        splits = _load(dataset, config, cache_dir)
    except ValueError as e:
        empty = re.search(r'Instruction "(.+)" corresponds to no data', str(e))
        if empty is None:
            raise
        raise ValueError(f"split {empty[1]!r} of dataset {dataset!r} is empty") from e
    return datasets.DatasetDict({SPLIT_ALIASES.get(name, name): split for name, split in splits.items()})


def _load(dataset: str, config: str | None, cache_dir: Path | None) -> datasets.DatasetDict:
    """The splits of `dataset` as `datasets` loads them (a file by its suffix's builder)."""
    path = Path(dataset).expanduser()
    kwargs = {"cache_dir": str(cache_dir) if cache_dir else None}
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix)
        if builder is None:
            raise ValueError(f"dataset file {path} has suffix {path.suffix!r}; expected one of {sorted(FILE_BUILDERS)}")
        extra = {"keep_default_na": False} if builder == "csv" else {}  # "None", "NA" are sentences, not nulls
        if path.suffix == ".tsv":
            extra |= {"delimiter": "\t", "quoting": csv.QUOTE_NONE}  # quotes are text: every tab is a column
        splits = datasets.load_dataset(builder, data_files=str(path), **kwargs, **extra)
    elif path.is_dir():
        splits = datasets.load_dataset(str(path), config, **kwargs)
    elif dataset.startswith((".", "/", "~")) or dataset.count("/") > 1 or path.suffix in FILE_BUILDERS:
        raise FileNotFoundError(f"dataset path {dataset!r} does not exist")
    else:
        try:
            splits = datasets.load_dataset(dataset, config, **kwargs)
        except (datasets.exceptions.DatasetNotFoundError, OSError) as e:
            raise FileNotFoundError(
                f"could not load dataset {dataset!r} from the Hugging Face Hub ({type(e).__name__}: {e}). "
                f"Without Hub access, point at a local copy of the same files instead, "
                "with --data.dataset PATH (a folder of train/validation/test files, or one file)"
            ) from e
    return splits


def text_pairs(split: datasets.Dataset, src_lang: str, tgt_lang: str, name: str) -> datasets.Dataset:
    """The split reduced to string columns `src` and `tgt`, from either schema; rejects
    missing languages and sentences that are not strings, naming the row."""
    if "translation" in split.column_names:
        split = split.flatten()
        columns = {f"translation.{src_lang}": "src", f"translation.{tgt_lang}": "tgt"}
    else:
        columns = {src_lang: "src", tgt_lang: "tgt"}
    for column in columns:
        if column not in split.column_names:
            raise KeyError(
                f"split {name!r} has no column {column!r} for the language pair "
                f"{src_lang}->{tgt_lang}; columns found: {split.column_names}"
            )
    split = split.select_columns(list(columns)).rename_columns(columns)
    for column, side in columns.items():
        values = split.data.column(side)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            raise TypeError(f"split {name!r}: column {column!r} holds {values.type}, expected strings")
        if values.null_count:
            row = pc.index(pc.is_null(values), True).as_py()
            raise TypeError(f"split {name!r} row {row}: the {column!r} sentence is None, expected a string")
    return split


def join_runs(split: datasets.Dataset, k: int, name: str) -> datasets.Dataset:
    """Consecutive runs of exactly `k` pairs joined into one (sources with a space, references the
    same way); the last, shorter run is dropped."""
    if k == 1:
        return split
    if split.num_rows < k:
        raise ValueError(f"split {name!r} has {split.num_rows} sentences, fewer than eval_join={k}")

    def join(batch: dict[str, list[str]]) -> dict[str, list[str]]:
        return {side: [" ".join(batch[side])] for side in ("src", "tgt")}

    return split.map(join, batched=True, batch_size=k, drop_last_batch=True, desc=f"joining {name} by {k}")
