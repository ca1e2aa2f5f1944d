"""The reports' figures (matplotlib, drawn off-screen to PNG bytes): BLEU by source length, what each
model remembers, attention heatmaps."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from translate.saliency import BINS, FROM_END


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def bleu_by_length_figure(report: dict) -> bytes:
    """BLEU (with 95 % CI bars) against source length bucket, one line per model."""
    figure = Figure(figsize=(max(6.4, 0.8 * len(report["length_buckets"]["edges"]) + 1.0), 4.0))
    ax = figure.subplots()
    for model in report["models"]:
        rows = model["by_length"]
        x = range(len(rows))
        bleu, ci = [r["bleu"] for r in rows], [r["bleu_ci"] for r in rows]
        ax.errorbar(x, bleu, yerr=ci, marker="o", capsize=3, label=model["name"])
    buckets = report["models"][0]["by_length"] if report["models"] else []
    counts = report["length_buckets"]["counts"]
    ax.set_xticks(range(len(buckets)), [f"{r['bucket']}\n(n={n})" for r, n in zip(buckets, counts, strict=True)])
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel("sacreBLEU")
    test = report["test_set"]
    ax.set_title(f"BLEU by source length, {Path(test.get('dataset') or test['file']).name} {test.get('split', '')}")
    ax.grid(alpha=0.3)
    ax.legend()
    return png(figure)


def remembers_figure(report: dict) -> bytes:
    """Gradient share by source position against a uniform spread, one line per model: by relative
    position and by distance from the end (columns), for the shortest and the longest inputs (rows)."""
    figure = Figure(figsize=(10.0, 6.4))
    axes = figure.subplots(2, 2, sharey="row")
    joined = report["test_set"]["joined"]
    for row, (which, k) in enumerate((("short", min(joined)), ("long", max(joined)))):
        for model in report["models"]:
            curves = model["remembers"][which]
            relative = [(b + 0.5) / BINS for b in range(BINS)]
            axes[row, 0].plot(relative, curves["relative"], marker="o", label=model["name"])
            axes[row, 1].plot(range(1, FROM_END + 1), curves["from_end"], marker="o", label=model["name"])
        tokens = report["models"][0]["remembers"][which]["mean_source_tokens"] if report["models"] else 0
        for ax, x in zip(
            axes[row], ("relative source position (0 = first word)", "source tokens from the end"), strict=True
        ):
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xlabel(x)
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel(f"{k} sentence{'s' * (k > 1)} (~{tokens:.0f} tokens)\ngradient share x length")
    axes[0, 0].legend(fontsize=8)
    figure.suptitle("What each model remembers: the reference's gradient at each source position (1 = uniform)")
    return png(figure)


def attention_figure(attention: dict, title: str) -> bytes:
    """Heatmap of attention weights (target pieces down, source pieces across), from a record's
    ``{"source_pieces", "target_pieces", "weights"}``."""
    weights = np.array(attention["weights"])
    rows, cols = weights.shape
    figure = Figure(figsize=(max(4.0, 0.3 * cols + 1.5), max(3.0, 0.3 * rows + 1.0)))
    ax = figure.subplots()
    image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(cols), attention["source_pieces"], rotation=90, fontsize=8)
    ax.set_yticks(range(rows), attention["target_pieces"], fontsize=8)
    ax.set_xlabel("source subwords")
    ax.set_ylabel("output subwords")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, fraction=0.046)
    return png(figure)
