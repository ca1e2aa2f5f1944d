"""Beam-5 decoding of the Multi30k test split by JoeyNMT 2.3.0 and by us, with the *same* trained weights.

Our checkpoint converts into a JoeyNMT checkpoint, vocabulary and SentencePiece model (convert.py). Both
decoders then translate the same 1,000 sentences, beam 5, alpha 1.0, one after the other on this machine: the time
difference is the decoder's alone. JoeyNMT's time is its own "Generation took" (model loading excluded); ours is
`Translator.translate` after a warm-up, at JoeyNMT's decoding batch (2,048 tokens) and at our default.

    ../shared/peers/joeynmt/setup.sh ../peer-joeynmt          # JoeyNMT's venv and config, outside the repo
    python -m benchmarks.joeynmt.joeynmt_decode --checkpoint checkpoints/transformer/<best>.ckpt
"""

import argparse
import re
import subprocess
import time
from pathlib import Path

import sacrebleu
import yaml

from benchmarks.common import write_results
from benchmarks.joeynmt.convert import convert
from translate import TranslationDataModule, Translator
from translate.models.transformer import TransformerSeq2Seq

BEAM_SIZE, ALPHA = 5, 1.0  # both decoders' (JoeyNMT's testing section, our Translator's arguments)


def joeynmt_decode(venv_python: Path, config: Path) -> dict:
    """`joeynmt test` on `config`: its own generation time, the process's wall time, its hypotheses."""
    out, start = config.parent, time.perf_counter()
    run = [str(venv_python), "-m", "joeynmt", "test", str(config), "--output-path", str(out / "hyp")]
    done = subprocess.run(run, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (out / "test.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"joeynmt test failed, see {out / 'test.log'}:\n{done.stderr[-3000:]}")
    generation = re.findall(r"Generation took ([\d.]+)\[sec\]", done.stdout + done.stderr)
    hypotheses = (out / "hyp.test").read_text(encoding="utf-8").splitlines()
    seconds = round(float(generation[-1]), 2)
    return {"test_decode_seconds": seconds, "process_wall_seconds": round(wall, 1), "hypotheses": hypotheses}


def our_decode(translator: Translator, sources: list[str], max_tokens: int) -> dict:
    """Our beam search over `sources` after a warm-up: its time and hypotheses."""
    translator.translate(sources[:16], beam_size=BEAM_SIZE)  # warm-up
    start = time.perf_counter()
    hypotheses = translator.translate(
        sources, beam_size=BEAM_SIZE, alpha=ALPHA, max_tokens=max_tokens, split_sentences=False
    )
    seconds = round(time.perf_counter() - start, 2)
    return {"max_tokens": max_tokens, "test_decode_seconds": seconds, "hypotheses": hypotheses}


def table(runs: dict[str, dict], sentences: int) -> str:
    """One row per decoder, JoeyNMT's first, with each one's speed-up over JoeyNMT."""
    text = f"| decoder (same weights, beam {BEAM_SIZE}, alpha {ALPHA}) | test decode (s) | speedup | sacreBLEU "
    text += "| same output as JoeyNMT |\n|---|---|---|---|---|\n"
    for name, run in runs.items():
        label = (
            "JoeyNMT 2.3.0 (batch 2,048 tokens)" if name == "joeynmt" else f"translate, max_tokens {run['max_tokens']}"
        )
        speedup = runs["joeynmt"]["test_decode_seconds"] / run["test_decode_seconds"]
        same = f"{run['same_output_as_joeynmt']} / {sentences}"
        text += f"| {label} | {run['test_decode_seconds']} | {speedup:.2f}x | {run['test_sacrebleu']} | {same} |\n"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="our Transformer checkpoint")
    parser.add_argument("--joeynmt", type=Path, default=Path("../peer-joeynmt"), help="setup.sh's work folder")
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[2048, 8192], help="our decoding batch sizes")
    args = parser.parse_args()

    data = TranslationDataModule(dataset=args.dataset)
    sources, references = data.sources("test"), data.references("test")
    joey_test = [line.rstrip("\n") for line in (args.joeynmt / "data" / "test.de").open(encoding="utf-8")]
    if joey_test != sources:
        raise SystemExit(f"{args.joeynmt / 'data' / 'test.de'} is not the test split of {args.dataset}")
    translator = Translator.from_checkpoint(args.checkpoint, device="cpu")
    if not isinstance(translator.model, TransformerSeq2Seq) or translator.model.max_positions > 5000:
        raise SystemExit(f"{args.checkpoint}: JoeyNMT takes our Transformer only")
    config = convert(translator.model, args.joeynmt / "transformer.yaml", args.joeynmt / "ours", BEAM_SIZE, ALPHA)
    runs = {"joeynmt": joeynmt_decode(args.joeynmt / "venv" / "bin" / "python", config)}
    for max_tokens in args.max_tokens:
        runs[f"translate_{max_tokens}"] = our_decode(translator, sources, max_tokens)

    joey_hypotheses = runs["joeynmt"]["hypotheses"]
    for run in runs.values():
        hypotheses = run.pop("hypotheses")
        run["test_sacrebleu"] = round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2)
        run["same_output_as_joeynmt"] = sum(a == b for a, b in zip(hypotheses, joey_hypotheses, strict=True))
    slowest = max(run["test_decode_seconds"] for name, run in runs.items() if name != "joeynmt")
    decoding = translator.model.decoding  # the checkpoint's; beam and alpha are overridden above
    results = {
        "checkpoint": args.checkpoint,
        "beam_size": BEAM_SIZE,
        "alpha": ALPHA,
        "joeynmt_max_output_length": yaml.safe_load(config.read_text())["testing"].get("max_output_length"),
        "our_max_length": f"{decoding.max_len_ratio} x source + {decoding.max_len_extra}",
        "runs": runs,
        "speedup_worst_case": round(runs["joeynmt"]["test_decode_seconds"] / slowest, 2),
    }
    text = table(runs, len(sources))
    print(text)
    write_results(Path(__file__).parent, "joeynmt_decode", results, text)


if __name__ == "__main__":
    main()
