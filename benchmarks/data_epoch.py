"""Time one epoch of Multi30k training batches (cache warm) and measure their padding.

python benchmarks/data_epoch.py --dataset ../shared/data/multi30k
"""

import argparse
import time

from common import write_results

from translate.data import TranslationDataModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="../shared/data/multi30k")
    parser.add_argument("--max-tokens", type=int, default=4096)
    args = parser.parse_args()

    dm = TranslationDataModule(dataset=args.dataset, max_tokens=args.max_tokens)
    dm.setup("fit")  # first run trains the tokenizer and fills the caches
    dm = TranslationDataModule(dataset=args.dataset, max_tokens=args.max_tokens)
    start = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - start

    start = time.perf_counter()
    batches = real = slots = target_tokens = 0
    for batch in dm.train_dataloader():
        batches += 1
        src_real, tgt_real = int(batch.src_lengths.sum()), int((batch.tgt_out != dm.pad_id).sum())
        real += src_real + tgt_real
        slots += batch.src.numel() + batch.tgt_out.numel()
        target_tokens += tgt_real
    epoch_s = time.perf_counter() - start

    results = {
        "dataset": args.dataset,
        "max_tokens": args.max_tokens,
        "warm_setup_s": round(setup_s, 3),
        "epoch_s": round(epoch_s, 3),
        "batches": batches,
        "target_tokens": target_tokens,
        "padding_fraction": round(1 - real / slots, 4),
    }
    print(results)
    table = "| warm setup (s) | one epoch of batches (s) | batches | target tokens | padding |\n|---|---|---|---|---|\n"
    table += (
        f"| {results['warm_setup_s']} | {results['epoch_s']} | {batches} | {target_tokens} "
        f"| {results['padding_fraction']:.1%} |"
    )
    write_results("data_epoch", results, table)


if __name__ == "__main__":
    main()
