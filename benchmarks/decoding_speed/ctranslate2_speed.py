"""Beam-5 decoding of the Multi30k test split: our PyTorch search against the model exported to CTranslate2.

    python -m benchmarks.decoding_speed.ctranslate2_speed --checkpoint checkpoints/transformer/averaged-top5.ckpt

Exports the checkpoint (`translate export`) in float32 and int8, chooses each backend's length penalty on validation
(GNMT's for ours, CTranslate2's score / length ** alpha for the exports), then decodes the test split with each in
turn, `--rounds` times alternately (the VM's drift hits them alike), same threads and batches, scored by sacreBLEU.
Int8 also runs as it did before the Translator handed every batch over at once (each batch awaited before the next
is handed over), alternately with the rest. Then, alone, int8 as a CTranslate2 Translator decodes by default (each
batch on every thread), not as ours does (a thread per part of each batch, the parts at once).
"""

import argparse
import itertools
import statistics
import time
from pathlib import Path

import ctranslate2
import torch

from benchmarks.common import write_results
from translate import TranslationDataModule, Translator
from translate.evaluation import corpus_score
from translate.export import ExportedTransformer, export

GRID = (0.0, 0.4, 0.8, 1.0, 1.2, 1.6, 2.0)


class ABatchAtATime(ExportedTransformer):
    """The exported model with each batch awaited before the next is handed over (as before 2026-12-06)."""

    def generate_batches(self, batches, decoding=None, attention=False):
        for batch in batches:
            yield from super().generate_batches([batch], decoding, attention)


def one_batch_on_all_threads(directory: Path) -> Translator:
    """The exported model, each batch decoded on all of torch's threads, one batch at a time."""
    model = ExportedTransformer(directory)
    model.workers = 1
    model.translator = ctranslate2.Translator(str(directory), device="cpu", intra_threads=torch.get_num_threads())
    return Translator(model)


def choose_alpha(translator: Translator, sources: list[str], references: list[str], max_tokens: int) -> dict:
    """Validation BLEU of beam 5 at each alpha of GRID, and the best alpha."""
    scores = {}
    for alpha in GRID:
        outputs = translator.translate(sources, alpha=alpha, max_tokens=max_tokens, split_sentences=False)
        scores[alpha] = round(corpus_score(outputs, references).bleu, 2)
        print(f"  validation alpha {alpha}: {scores[alpha]}", flush=True)
    return {"validation_bleu": scores, "alpha": max(scores, key=scores.get)}


def exported(checkpoint: str, exports: Path) -> tuple[dict[str, Translator], dict]:
    """Ours and the checkpoint exported in float32 and int8 (each export's seconds and size)."""
    translators, sizes = {"pytorch": Translator.from_checkpoint(checkpoint, device="cpu")}, {}
    for quantization in ("float32", "int8"):
        start = time.perf_counter()
        directory = export(checkpoint, exports / quantization, quantization, force=True)
        size = sum(f.stat().st_size for f in directory.iterdir())
        sizes[quantization] = {"seconds": round(time.perf_counter() - start, 1), "megabytes": round(size / 2**20, 1)}
        translators[f"ctranslate2 {quantization}"] = Translator.from_checkpoint(directory, device="cpu")
    return translators, sizes


def timed_rounds(translators: dict[str, Translator], chosen: dict, test: tuple, rounds: range, warm_up: bool) -> list:
    """Per round, each backend in turn on the test split (`test`: sources, references, max_tokens), its alpha."""
    (sources, references, max_tokens), runs = test, []
    for round_, (name, translator) in itertools.product(rounds, translators.items()):
        if warm_up:
            translator.translate(sources[:16], split_sentences=False)
        start = time.perf_counter()
        outputs = translator.translate(
            sources, alpha=chosen[name]["alpha"], max_tokens=max_tokens, split_sentences=False
        )
        seconds, score = time.perf_counter() - start, corpus_score(outputs, references)
        speed = {"seconds": round(seconds, 2), "sentences_per_s": round(len(sources) / seconds, 1)}
        scores = {"bleu": round(score.bleu, 2), "chrf": round(score.chrf, 2), "signature": score.signature}
        runs.append({"round": round_, "backend": name, **speed, **scores})
        print(runs[-1], flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--exports", type=Path, default=Path("checkpoints/ctranslate2"), help="where to export")
    parser.add_argument("--max-tokens", type=int, default=4096, help="source tokens per batch, as translate generate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="ctranslate2_speed", help="<name>.json and .md beside this script")
    args = parser.parse_args()

    data = TranslationDataModule(dataset=args.dataset)
    translators, exports = exported(args.checkpoint, args.exports)
    validation, chosen = (data.sources("validation"), data.references("validation"), args.max_tokens), {}
    for name, translator in translators.items():
        print(f"{name}: choosing alpha on validation", flush=True)
        chosen[name] = choose_alpha(translator, *validation)
    translators["ctranslate2 int8, a batch at a time"] = Translator(ABatchAtATime(args.exports / "int8"))
    chosen["ctranslate2 int8, a batch at a time"] = chosen["ctranslate2 int8"]
    sources = data.sources("test")
    test = (sources, data.references("test"), args.max_tokens)
    runs = timed_rounds(translators, chosen, test, range(1, args.rounds + 1), warm_up=True)
    # last, as its threads keep spinning after each batch and would slow whatever ran after them
    variant = "ctranslate2 int8, one batch on all threads"
    translators, chosen[variant] = (
        {variant: one_batch_on_all_threads(args.exports / "int8")},
        chosen["ctranslate2 int8"],
    )
    runs += timed_rounds(translators, chosen, test, range(args.rounds + 1, 2 * args.rounds + 1), warm_up=False)
    summary = summarise(runs, chosen)
    results = {"checkpoint": args.checkpoint, "threads": torch.get_num_threads(), "max_tokens": args.max_tokens}
    results |= {"beam_size": 5, "sentences": len(sources), "exports": exports, "chosen": chosen, "runs": runs}
    results["summary"] = summary
    write_results(Path(__file__).parent, args.name, results, table(summary, exports))


def summarise(runs: list[dict], chosen: dict) -> list[dict]:
    """Per backend: the alpha, test BLEU, median sentences/s and its ratio to ours."""
    speed = {name: statistics.median(r["sentences_per_s"] for r in runs if r["backend"] == name) for name in chosen}
    rows = []
    for name in chosen:
        first = next(r for r in runs if r["backend"] == name)
        rows.append(
            {
                "backend": name,
                "alpha": chosen[name]["alpha"],
                "validation_bleu": chosen[name]["validation_bleu"][chosen[name]["alpha"]],
                "bleu": first["bleu"],
                "chrf": first["chrf"],
                "sentences_per_s": speed[name],
                "speedup": round(speed[name] / speed["pytorch"], 2),
            }
        )
    return rows


def table(summary: list[dict], exports: dict) -> str:
    lines = [
        "| backend | alpha (validation) | validation BLEU | test sacreBLEU | chrF | sentences/s (median) | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        lines.append(
            f"| {r['backend']} | {r['alpha']} | {r['validation_bleu']} | {r['bleu']} | {r['chrf']} "
            f"| {r['sentences_per_s']} | {r['speedup']} |"
        )
    sizes = ", ".join(f"{q} {e['megabytes']} MB ({e['seconds']} s to export)" for q, e in exports.items())
    return "\n".join(lines) + f"\n\nExported model directories: {sizes}."


if __name__ == "__main__":
    main()
