"""Beam-5 decoding of the Multi30k test split: our PyTorch search against the model exported to CTranslate2.

    python benchmarks/ctranslate2_speed.py --checkpoint checkpoints/transformer/averaged-top5.ckpt

Exports the checkpoint (`translate export`) in float32 and int8, chooses each backend's length penalty
on the validation split (GNMT's for ours, CTranslate2's score / length ** alpha for the exports), then
decodes the test split with each in turn, `--rounds` times alternately (so the VM's drift hits them
alike), on the same threads and batches, and scores every output with sacreBLEU. Then, alone, "one
batch on all threads": int8 as a CTranslate2 Translator decodes by default (each batch on every thread),
not as ours does (a thread per part of each batch, the parts at once).
"""

import argparse
import statistics
import time
from pathlib import Path

import ctranslate2
import torch
from common import write_results

from translate import TranslationDataModule, Translator
from translate.evaluation import corpus_score
from translate.export import ExportedTransformer, export

GRID = (0.0, 0.4, 0.8, 1.0, 1.2, 1.6, 2.0)


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


def timed(translator: Translator, alpha: float, sources: list[str], references: list[str], max_tokens: int) -> dict:
    start = time.perf_counter()
    outputs = translator.translate(sources, alpha=alpha, max_tokens=max_tokens, split_sentences=False)
    seconds = time.perf_counter() - start
    score = corpus_score(outputs, references)
    return {
        "seconds": round(seconds, 2),
        "sentences_per_s": round(len(sources) / seconds, 1),
        "bleu": round(score.bleu, 2),
        "chrf": round(score.chrf, 2),
        "signature": score.signature,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--exports", type=Path, default=Path("checkpoints/ctranslate2"), help="where to export")
    parser.add_argument("--max-tokens", type=int, default=4096, help="source tokens per batch, as translate generate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="ctranslate2_speed")
    args = parser.parse_args()

    data = TranslationDataModule(dataset=args.dataset)
    translators, exports = {"pytorch": Translator.from_checkpoint(args.checkpoint, device="cpu")}, {}
    for quantization in ("float32", "int8"):
        start = time.perf_counter()
        directory = export(args.checkpoint, args.exports / quantization, quantization, force=True)
        size = sum(f.stat().st_size for f in directory.iterdir())
        exports[quantization] = {"seconds": round(time.perf_counter() - start, 1), "megabytes": round(size / 2**20, 1)}
        translators[f"ctranslate2 {quantization}"] = Translator.from_checkpoint(directory, device="cpu")
    chosen = {}
    for name, translator in translators.items():
        print(f"{name}: choosing alpha on validation", flush=True)
        chosen[name] = choose_alpha(
            translator, data.sources("validation"), data.references("validation"), args.max_tokens
        )
    sources, references = data.sources("test"), data.references("test")
    runs = []
    for round_ in range(args.rounds):
        for name, translator in translators.items():
            translator.translate(sources[:16], split_sentences=False)  # warm-up
            result = timed(translator, chosen[name]["alpha"], sources, references, args.max_tokens)
            runs.append({"round": round_ + 1, "backend": name, **result})
            print(runs[-1], flush=True)
    # last, as its threads keep spinning after each batch and would slow whatever ran after them
    variant = "ctranslate2 int8, one batch on all threads"
    translators, chosen[variant] = (
        {variant: one_batch_on_all_threads(args.exports / "int8")},
        chosen["ctranslate2 int8"],
    )
    for round_ in range(args.rounds):
        result = timed(translators[variant], chosen[variant]["alpha"], sources, references, args.max_tokens)
        runs.append({"round": args.rounds + round_ + 1, "backend": variant, **result})
        print(runs[-1], flush=True)
    summary = summarise(runs, chosen)
    results = {
        "checkpoint": args.checkpoint,
        "threads": torch.get_num_threads(),
        "max_tokens": args.max_tokens,
        "beam_size": 5,
        "sentences": len(sources),
        "exports": exports,
        "chosen": chosen,
        "runs": runs,
        "summary": summary,
    }
    write_results(args.name, results, table(summary, exports))


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
