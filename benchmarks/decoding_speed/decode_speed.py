"""Decoding speed and BLEU of trained checkpoints on the Multi30k test split, greedy against beam search.

    python -m benchmarks.decoding_speed.decode_speed --dataset ../shared/data/multi30k \
        --checkpoints checkpoints/gru/last.ckpt checkpoints/bahdanau/last.ckpt checkpoints/transformer/last.ckpt

Each setting decodes the 1,000 test sentences once (after one warm-up batch) and scores them with sacreBLEU.
"""

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import write_results
from translate import TranslationDataModule, Translator
from translate.evaluation import corpus_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--settings", nargs="+", default=["1:4096", "5:2048", "5:8192"], help="beam:max_tokens")
    parser.add_argument("--name", default="decode_speed", help="<name>.json and .md beside this script")
    args = parser.parse_args()

    data = TranslationDataModule(dataset=args.dataset)
    sources, references = data.sources("test"), data.references("test")
    rows = []
    for path in args.checkpoints:
        translator = Translator.from_checkpoint(path, device="cpu")
        translator.translate(sources[:16])  # warm-up
        for setting in args.settings:
            beam, max_tokens = map(int, setting.split(":"))
            start = time.perf_counter()
            hypotheses = translator.translate(sources, beam_size=beam, max_tokens=max_tokens, split_sentences=False)
            seconds = time.perf_counter() - start
            score = corpus_score(hypotheses, references)
            row = {
                "checkpoint": path,
                "model": type(translator.model).__name__,
                "beam_size": beam,
                "max_tokens": max_tokens,
                "seconds": round(seconds, 2),
                "sentences_per_s": round(len(sources) / seconds, 1),
                "bleu": round(score.bleu, 2),
                "bleu_ci95": round(score.bleu_ci, 2),
                "chrf": round(score.chrf, 2),
                "signature": score.signature,
            }
            print(row, flush=True)
            rows.append(row)
    table = "| model | beam | max_tokens | seconds | sentences/s | sacreBLEU | ± 95 % CI | chrF |\n"
    table += "|---|---|---|---|---|---|---|---|\n"
    columns = ["model", "beam_size", "max_tokens", "seconds", "sentences_per_s", "bleu", "bleu_ci95", "chrf"]
    table += "\n".join("| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows)
    write_results(
        Path(__file__).parent,
        args.name,
        {"threads": torch.get_num_threads(), "sentences": len(sources), "rows": rows},
        table,
    )


if __name__ == "__main__":
    main()
