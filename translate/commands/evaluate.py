"""`translate evaluate`: score a checkpoint on any test set the datamodule can read (a split of a dataset, in
runs of k sentences, or one file of pairs) into an evaluation record (records.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jsonargparse import CLI

from translate import records as evaluation_records
from translate.data import TranslationDataModule


@dataclass
class TestData:
    """A dataset's split as the datamodule reads it (Hub id, local folder or file; the languages default to
    the checkpoint's), in consecutive runs of `eval_join` sentences."""

    dataset: str = "bentrevett/multi30k"
    dataset_config: str | None = None
    src_lang: str | None = None
    tgt_lang: str | None = None
    split: str = "test"
    eval_join: int = 1
    cache_dir: str = "data"


def run(
    checkpoint: Path,
    test_file: Path | None = None,
    data: TestData | None = None,
    beam_size: int | None = None,
    alpha: float | None = None,
    split_sentences: bool = False,
    max_tokens: int = 4096,
    records: Path = Path("reports/records"),
    device: str = "auto",
) -> None:
    """Score CHECKPOINT on a test set into an evaluation record under RECORDS/<model>/<test set>/.

    Args:
        checkpoint: a checkpoint of `translate fit` (or `translate average`).
        test_file: a .jsonl/.json/.tsv/.csv/.parquet file of sentence pairs (columns named by the
            languages) instead of a dataset split.
        data: the dataset split to test on (default: bentrevett/multi30k's test split).
        beam_size: beam width (default: the checkpoint's).
        alpha: GNMT length penalty exponent (default: the checkpoint's).
        split_sentences: translate each input sentence by sentence (as `translate generate` does).
        max_tokens: source tokens per decoding batch.
        records: where records are written.
        device: auto, cpu or cuda.
    """
    data = data or TestData()
    translator, model = evaluation_records.checkpoint_translator(checkpoint, None, device)
    src, tgt = translator.model.languages or (data.src_lang, data.tgt_lang)
    src, tgt = data.src_lang or src, data.tgt_lang or tgt
    if test_file is not None:
        test_set = evaluation_records.file_test_set(test_file, src, tgt)
    else:
        dm = TranslationDataModule(
            data.dataset, data.dataset_config, src, tgt, eval_join=data.eval_join, cache_dir=data.cache_dir
        )
        test_set = evaluation_records.datamodule_test_set(dm, dm.split_name(data.split))
    decoding = evaluation_records.decoding_of(translator, beam_size, alpha, split_sentences)
    record = evaluation_records.evaluate(
        records, model, test_set, decoding, evaluation_records.decoder(translator, decoding, max_tokens)
    )
    scores = record.data["scores"]
    print(
        f"{model['name']} on {test_set.name}: BLEU {scores['bleu']:.2f} ± {scores['bleu_ci']:.2f}, "
        f"chrF {scores['chrf']:.2f}, chrF++ {scores['chrf_pp']:.2f}; record: "
        f"{record.folder}"
    )


def evaluate(argv: list[str]) -> None:
    """`translate evaluate ARGUMENTS` (see :func:`run`)."""
    CLI(run, args=argv, prog="translate evaluate", as_positional=False)
