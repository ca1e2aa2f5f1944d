"""The CPU levers of the training step, each against torch's default: `translate.models.dropout`,
`translate.models.loss` and the fused AdamW step `Seq2SeqModule.configure_optimizers` asks for.

    python -m benchmarks.training_speed.train_levers

Forward plus backward on the shapes of a Transformer training step at `max_tokens` 2048 (about 2,048
target positions): dropout on the feed-forward (tokens, 1024) and residual (tokens, 256) activations,
the output layer (256 -> 8000, no bias) with the label-smoothed cross-entropy, and one AdamW step over
the parameters of configs/transformer.yaml's model (7.6 M). Each time is the median of `repeats`.
What they give a whole training step: `train_throughput --revision` (before against after).
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import write_results
from translate.models import TransformerSeq2Seq
from translate.models.dropout import dropout
from translate.models.loss import output_cross_entropy
from translate.tokenizer import PAD_ID


def median_ms(run: Callable[[], None], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def dropout_pass(drop: Callable, shape: tuple[int, ...], p: float) -> Callable[[], None]:
    x = torch.randn(shape, requires_grad=True)
    return lambda: drop(x, p, True).sum().backward()


def loss_pass(loss: Callable, tokens: int, vocab: int, eps: float) -> Callable[[], None]:
    features = torch.randn(1, tokens, 256, requires_grad=True)
    weight = (torch.randn(vocab, 256) / 16).requires_grad_()
    target = torch.randint(1, vocab, (1, tokens))
    target[:, -tokens // 20 :] = PAD_ID  # ~5 % padding, as in the batches
    return lambda: loss(features, weight, target, eps).backward()


def torch_loss(features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    logits = F.linear(features, weight).flatten(0, 1)  # (tokens, vocab)
    return F.cross_entropy(logits, target.flatten(), ignore_index=PAD_ID, label_smoothing=eps)


def our_loss(features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    return output_cross_entropy(features, weight, None, target, PAD_ID, eps)[0]


def adamw_step(fused: bool, vocab: int) -> Callable[[], None]:
    parameters = list(TransformerSeq2Seq(vocab).parameters())
    for p in parameters:
        p.grad = torch.randn_like(p)
    return torch.optim.AdamW(parameters, lr=1e-4, betas=(0.9, 0.98), fused=fused).step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--name", default="train_levers", help="<name>.json and .md beside this script")
    args = parser.parse_args()
    cases = {
        "dropout 0.1, (tokens, 1024)": (
            dropout_pass(F.dropout, (args.tokens, 1024), 0.1),
            dropout_pass(dropout, (args.tokens, 1024), 0.1),
        ),
        "dropout 0.1, (tokens, 256)": (
            dropout_pass(F.dropout, (args.tokens, 256), 0.1),
            dropout_pass(dropout, (args.tokens, 256), 0.1),
        ),
        "output layer 256 -> vocab + label-smoothed cross-entropy 0.1": (
            loss_pass(torch_loss, args.tokens, args.vocab, 0.1),
            loss_pass(our_loss, args.tokens, args.vocab, 0.1),
        ),
        "AdamW step, Transformer's parameters": (adamw_step(False, args.vocab), adamw_step(True, args.vocab)),
    }
    rows = []
    for case, (theirs, ours) in cases.items():
        torch_ms, our_ms = median_ms(theirs, args.repeats), median_ms(ours, args.repeats)
        rows.append(
            {
                "case": case,
                "torch_ms": round(torch_ms, 2),
                "ours_ms": round(our_ms, 2),
                "speedup": round(torch_ms / our_ms, 2),
            }
        )
        print(rows[-1], flush=True)
    table = f"Forward + backward (AdamW: one step), tokens = {args.tokens}, vocab = {args.vocab}, "
    table += f"median of {args.repeats}, fp32.\n\n"
    table += "| case | torch (ms) | translate (ms) | speedup |\n|---|---:|---:|---:|\n"
    table += "\n".join(f"| {r['case']} | {r['torch_ms']} | {r['ours_ms']} | {r['speedup']}x |" for r in rows)
    write_results(
        Path(__file__).parent,
        args.name,
        {"tokens": args.tokens, "vocab": args.vocab, "repeats": args.repeats, "rows": rows},
        table,
    )


if __name__ == "__main__":
    main()
