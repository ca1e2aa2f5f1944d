"""scaled_dot_product_attention on a GPU, as the Transformer calls it in training: torch's own choice of backend
against the Transformer's `ATTENTION_BACKENDS` (all but cuDNN's).

    python -m benchmarks.gpu.gpu_attention

One "step" is the three attentions of a training batch, forward and backward, in bf16 with dropout 0.2: the
encoder's over the source (padding mask), the decoder's over the target (causal), the decoder's over the source
(padding mask), at the config's sizes (4 heads of 64) and a batch of `--max-tokens` tokens per side at source and
target lengths drawn from 8-40. After one step at another shape (a warm-up), `--steps` steps of new shapes are
timed, then the same steps again (shapes seen before), first with `ATTENTION_BACKENDS` (which builds no cuDNN
graph), then with torch's choice. Reported: ms per step on new shapes and on seen shapes, and the backend torch picks
for each attention.
"""

from __future__ import annotations

import argparse
import contextlib
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.common import synchronized, write_results
from translate.models.transformer import ATTENTION_BACKENDS

HEADS, HEAD_DIM, DROPOUT = 4, 64, 0.2
NAMES = {int(backend): name for name, backend in SDPBackend.__members__.items()}


def step_inputs(source: int, target: int, max_tokens: int, device: str) -> list[tuple]:
    """(query, key, value, mask, causal) of the three attentions of one batch."""
    batch = max_tokens // max(source, target)

    def heads(length: int) -> torch.Tensor:
        shape = (batch, HEADS, length, HEAD_DIM)
        return torch.randn(shape, device=device, dtype=torch.bfloat16, requires_grad=True)

    lengths = torch.randint(1, source + 1, (batch,), device=device)
    mask = (torch.arange(source, device=device) < lengths.unsqueeze(1))[:, None, None, :]  # (B, 1, 1, S)
    return [
        (heads(source), heads(source), heads(source), mask, False),
        (heads(target), heads(target), heads(target), None, True),
        (heads(target), heads(source), heads(source), mask, False),
    ]


def run(steps: list[list[tuple]], backends: list[SDPBackend] | None) -> float:
    """Milliseconds per step of forward and backward of every attention in `steps`."""
    start = synchronized()
    for attentions in steps:
        for query, key, value, mask, causal in attentions:
            with sdpa_kernel(backends) if backends else contextlib.nullcontext():
                out = F.scaled_dot_product_attention(query, key, value, mask, DROPOUT, causal)
            out.sum().backward()
    return round(1000 * (synchronized() - start) / len(steps), 2)


def chosen(attention: tuple) -> str:
    """The backend torch picks for `attention` by default (its own dispatch function)."""
    query, key, value, mask, causal = attention
    return NAMES[torch._fused_sdp_choice(query, key, value, mask, DROPOUT, causal)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--name", default="gpu_attention", help="<name>.json and .md beside this script")
    args = parser.parse_args()
    draw = random.Random(0)
    shapes = [(draw.randint(8, 40), draw.randint(8, 40)) for _ in range(args.steps)]
    steps = [step_inputs(source, target, args.max_tokens, args.device) for source, target in shapes]
    warmup = [step_inputs(48, 48, args.max_tokens, args.device)]  # a shape outside `steps`
    kinds = ["encoder self", "decoder self (causal)", "decoder cross"]
    picks = dict(zip(kinds, map(chosen, steps[0]), strict=True))
    rows = []
    for label, backends in (("ATTENTION_BACKENDS", ATTENTION_BACKENDS), ("torch's choice", None)):
        run(warmup, backends)
        new, seen = run(steps, backends), run(steps, backends)  # cuDNN's graphs: ATTENTION_BACKENDS made none
        rows.append({"backends": label, "ms_per_step_new_shapes": new, "ms_per_step_seen_shapes": seen})
        print(rows[-1], flush=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    table = f"Backend torch picks on {device}: {picks}\n\n"
    table += "| backends | ms per step, new shapes | ms per step, seen shapes |\n|---|---:|---:|\n"
    table += "\n".join(f"| {' | '.join(map(str, row.values()))} |" for row in rows)
    write_results(Path(__file__).parent, args.name, {"torch_picks": picks, "rows": rows}, table)
    print(table)


if __name__ == "__main__":
    main()
