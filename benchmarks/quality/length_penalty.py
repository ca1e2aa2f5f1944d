"""Choose each model's length penalty on the validation split (never the test split).

Beam-5 decoding of the 1,014 validation sentences (in each checkpoint's direction) at every alpha of a
grid; sacreBLEU, its brevity penalty and the hypothesis/reference length ratio show whether outputs run
short or long. The best
alpha goes into the config's ``decoding:`` section (``alpha``; ``--decoding.alpha`` on the command line),
which `translate test` and the leaderboard decode with.

    python -m benchmarks.quality.length_penalty --checkpoint gru=checkpoints/gru/<best>.ckpt ...
"""

import argparse
from pathlib import Path

import sacrebleu

from benchmarks.common import write_results
from translate import TranslationDataModule, Translator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.6, 0.8, 1.0, 1.2, 1.4, 1.6])
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--eval-join", type=int, default=1, help="validation joined in runs of this many sentences")
    parser.add_argument("--name", default="length_penalty", help="<name>.json and .md beside this script")
    args = parser.parse_args()

    results: dict = {"dataset": args.dataset, "split": "validation", "eval_join": args.eval_join, "models": {}}
    results["beam_size"] = args.beam_size
    table = "| model | alpha | val sacreBLEU | brevity penalty | hyp/ref length |\n|---|---:|---:|---:|---:|\n"
    for item in args.checkpoint:
        name, path = item.split("=", 1)
        translator = Translator.from_checkpoint(path, device="cpu")
        source, target = translator.model.languages or ("de", "en")  # the checkpoint's direction
        data = TranslationDataModule(dataset=args.dataset, src_lang=source, tgt_lang=target, eval_join=args.eval_join)
        sources, references = data.sources("validation"), data.references("validation")
        rows = []
        for alpha in args.alphas:
            hypotheses = translator.translate(
                sources, beam_size=args.beam_size, alpha=alpha, max_tokens=8192, split_sentences=False
            )
            bleu = sacrebleu.corpus_bleu(hypotheses, [references])
            rows.append(
                {"alpha": alpha, "bleu": round(bleu.score, 2), "bp": round(bleu.bp, 3), "ratio": round(bleu.ratio, 3)}
            )
            print(name, rows[-1], flush=True)
        best = max(rows, key=lambda row: row["bleu"])
        results["models"][name] = {"checkpoint": path, "languages": [source, target], "sentences": len(sources)}
        results["models"][name] |= {"grid": rows, "best_alpha": best["alpha"]}
        for row in rows:
            mark = " **best**" if row is best else ""
            table += f"| {name} | {row['alpha']}{mark} | {row['bleu']} | {row['bp']} | {row['ratio']} |\n"
    write_results(Path(__file__).parent, args.name, results, table)


if __name__ == "__main__":
    main()
