"""Side by side with JoeyNMT 2.3.0 on the same machine: training target tokens/s and, where the peer
was trained to the end, beam-5 decoding of the Multi30k test split. Same Transformer size (d_model 256,
3+3 layers, 4 heads, ff 1024, joint SentencePiece 8000, 4096-token batches).

    ../shared/peers/joeynmt/setup.sh ../peer-joeynmt && ../shared/peers/joeynmt/run.sh ../peer-joeynmt [UPDATES]
    python benchmarks/joeynmt_compare.py --joeynmt ../peer-joeynmt [--checkpoint CKPT]

Run it right after run.sh: JoeyNMT's numbers come from its own logs (its "Tokens per Sec" lines count
target tokens, as ours do; "Generation took" times its test-set decoding), ours are measured here.
Without the peer's test.log (training stopped early) only training speed is compared.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sacrebleu
from common import write_results

from translate import TranslationDataModule, Translator

ROOT = Path(__file__).parent.parent


def peer_training(work: Path) -> dict:
    train = (work / "train.log").read_text()
    speeds = [float(s) for s in re.findall(r"Tokens per Sec:\s*([\d.]+)", train)]
    steps = [int(s) for s in re.findall(r"Step:\s*(\d+)", train)]
    params = re.search(r"Total params:\s*([\d,]+)", train)
    return {
        "parameters": int(params.group(1).replace(",", "")) if params else None,
        "updates_logged": max(steps),
        "target_tokens_per_s_per_log_line": speeds,
        "target_tokens_per_s": statistics.median(speeds[1:] or speeds),  # the first line includes start-up
    }


def peer_decoding(work: Path, references: list[str]) -> dict | None:
    """JoeyNMT's beam-5 test decoding (it decodes dev, then test: the last generation time is the test set's)."""
    if not (work / "test.log").exists() or not (work / "hyp.test").exists():
        return None
    seconds = [float(s) for s in re.findall(r"Generation took ([\d.]+)\[sec\]", (work / "test.log").read_text())]
    hypotheses = (work / "hyp.test").read_text(encoding="utf-8").splitlines()
    return {
        "test_decode_seconds": seconds[-1],
        "test_sacrebleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
        "output_words": sum(len(h.split()) for h in hypotheses),  # decoding time grows with output length
    }


def our_decoding(checkpoint: str, sources: list[str], references: list[str], max_tokens: int) -> dict:
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    translator.translate(sources[:16])  # warm-up
    start = time.perf_counter()
    hypotheses = translator.translate(sources, beam_size=5, alpha=1.0, max_tokens=max_tokens)
    seconds = time.perf_counter() - start
    return {
        "checkpoint": checkpoint,
        "max_tokens": max_tokens,
        "test_decode_seconds": round(seconds, 2),
        "test_sacrebleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
        "output_words": sum(len(h.split()) for h in hypotheses),
    }


def our_training(dataset: str, steps: int) -> dict:
    """configs/transformer.yaml in fp32, timed by benchmarks/train_throughput.py in a child process."""
    script, config = ROOT / "benchmarks" / "train_throughput.py", ROOT / "configs" / "transformer.yaml"
    child = [sys.executable, str(script), "--dataset", dataset, "--child", str(config), "32-true", "2", str(steps)]
    out = subprocess.run(child, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joeynmt", type=Path, default=Path("../peer-joeynmt"))
    parser.add_argument("--checkpoint", help="our Transformer checkpoint, to compare decoding")
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--max-tokens", type=int, default=4096, help="our decoding batch size (source tokens)")
    parser.add_argument("--train-steps", type=int, default=20, help="timed training steps of ours")
    args = parser.parse_args()

    data = TranslationDataModule(dataset=args.dataset)
    sources, references = data.sources("test"), data.references("test")
    peer = {"training": peer_training(args.joeynmt), "decoding": peer_decoding(args.joeynmt, references)}
    ours = {"training": our_training(args.dataset, args.train_steps), "decoding": None}
    if peer["decoding"] and args.checkpoint:
        ours["decoding"] = our_decoding(args.checkpoint, sources, references, args.max_tokens)
    results = {
        "joeynmt": peer,
        "ours": ours,
        "train_speedup": round(ours["training"]["target_tokens_per_s"] / peer["training"]["target_tokens_per_s"], 2),
    }
    table = "| | JoeyNMT 2.3.0 | translate |\n|---|---|---|\n"
    table += f"| parameters | {peer['training']['parameters']} | {ours['training']['parameters']} |\n"
    table += (
        f"| training target tokens/s, fp32 (median of JoeyNMT's log lines; ours over "
        f"{ours['training']['steps']} steps) | {peer['training']['target_tokens_per_s']:.0f} "
        f"| {ours['training']['target_tokens_per_s']:.0f} (**{results['train_speedup']}x**) |\n"
    )
    if ours["decoding"]:
        results["decode_speedup"] = round(
            peer["decoding"]["test_decode_seconds"] / ours["decoding"]["test_decode_seconds"], 2
        )
        for key, label in [
            ("test_decode_seconds", "beam-5 decoding of the 1,000 test sentences (s)"),
            ("test_sacrebleu", "test sacreBLEU of that decoding"),
            ("output_words", "words in the 1,000 outputs"),
        ]:
            table += f"| {label} | {peer['decoding'][key]} | {ours['decoding'][key]} |\n"
    else:
        table += "| beam-5 test decoding | not measured: the peer was not trained to the end in this run | |\n"
    print(json.dumps(results, indent=2))
    write_results("joeynmt_compare", results, table)


if __name__ == "__main__":
    main()
