"""The leaderboard: every model decodes the same test split with the same beam, sacreBLEU scores it
(bootstrap CIs, paired significance against the previous generation, BLEU by source length), and
`reports/` receives leaderboard.json (the source of truth), leaderboard.md rendered from it, the
bottleneck curve and attention heatmaps.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from translate.evaluation import bleu_by_length, bucket_of, corpus_score, length_bucket_edges, paired_significance
from translate.files import atomic_write_bytes
from translate.machine import describe, machine
from translate.models.base import check_languages
from translate.translator import Translation, Translator, model_from, read_checkpoint

log = logging.getLogger(__name__)

ATTENTION = {  # what each model's heatmap shows
    "BahdanauSeq2Seq": "additive attention",
    "TransformerSeq2Seq": "last-layer cross-attention, mean over heads",
}
VOLATILE = ("created", "command", "machine", "decode_seconds", "sentences_per_second")  # differ between runs


@dataclass
class Entry:
    """One model on the leaderboard: its name (the config's), the checkpoint to evaluate and the length
    penalty to decode with (None: the checkpoint's own)."""

    name: str
    checkpoint: Path
    alpha: float | None = None


def best_checkpoint(directory: Path) -> Path | None:
    """The best checkpoint that ModelCheckpoint recorded in `directory`/last.ckpt (or last.ckpt
    itself when none was monitored); None when the directory holds no last.ckpt."""
    last = Path(directory) / "last.ckpt"
    if not last.is_file():
        return None
    state = read_checkpoint(last)
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
            best = Path(value["best_model_path"])
            for candidate in (last.parent / best.name, best):  # the folder may have moved since
                if candidate.is_file():
                    return candidate
            raise FileNotFoundError(f"{last} names {best} as the best checkpoint, but it is not in {last.parent}")
    return last


def training_record(checkpoint: dict) -> dict:
    """Epochs, steps, training wall time (Lightning's Timer, where the config sets max_time) and hardware."""
    timer = checkpoint.get("callbacks", {}).get("Timer")
    hardware = checkpoint.get("hardware")
    return {
        "epochs": checkpoint["epoch"] + 1,
        "steps": checkpoint["global_step"],
        "train_seconds": round(timer["time_elapsed"]["train"]) if timer else None,
        "hardware": describe(hardware) if hardware else None,
    }


def heatmap_sentences(sources: Sequence[str], count: int) -> list[int]:
    """The `count` longest sources (by words; ties by position): fixed for a given test split."""
    return sorted(range(len(sources)), key=lambda i: (-len(sources[i].split()), i))[:count]


def build_report(
    entries: Sequence[Entry],
    sources: Sequence[str],
    references: Sequence[str],
    data: dict,
    beam_size: int = 5,
    alpha: float | None = None,
    max_tokens: int = 4096,
    heatmaps: int = 2,
    n_bootstrap: int = 1000,
    device: str = "auto",
) -> tuple[dict, dict[str, bytes]]:
    """Decode and score every entry; returns the report (JSON-ready) and its figures (PNG bytes by file name).

    Every model decodes with the same beam; `alpha` overrides each entry's length penalty.

    `data` describes the test data: ``dataset``, ``split`` and ``languages`` (source, target); a
    checkpoint trained on another language pair is refused.
    """
    names = [entry.name for entry in entries]
    if len(set(names)) < len(names):
        raise ValueError(f"entries need distinct names (they name figures and significance pairs), got {names}")
    lengths = [len(s.split()) for s in sources]
    edges = length_bucket_edges(lengths)
    examples = heatmap_sentences(sources, heatmaps)
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["translate", *sys.argv[1:]]),
        "machine": machine(),
        "data": {**data, "sentences": len(sources)},
        "decoding": {"beam_size": beam_size, "max_tokens": max_tokens},
        "length_buckets": {
            "edges": edges,
            "counts": [sum(bucket_of(n, edges) == b for n in lengths) for b in range(len(edges))],
        },
        "models": [],
        "heatmaps": [],
    }
    figures: dict[str, bytes] = {}
    outputs: dict[str, list[str]] = {}
    for k, entry in enumerate(entries):
        checkpoint = read_checkpoint(entry.checkpoint)
        test_data = f"the test data ({data['dataset']})"
        check_languages(checkpoint.get("languages"), data["languages"], f"checkpoint {entry.checkpoint}", test_data)
        translator = Translator(model_from(checkpoint), device)
        penalty = next(a for a in (alpha, entry.alpha, translator.model.hparams.alpha) if a is not None)
        log.info("%s: decoding %d sentences with beam %d (%s)", entry.name, len(sources), beam_size, entry.checkpoint)
        start = time.perf_counter()
        hypotheses = translator.translate(sources, beam_size, penalty, max_tokens=max_tokens, progress=True)
        seconds = time.perf_counter() - start
        outputs[entry.name] = hypotheses
        row = {
            "name": entry.name,
            "model": type(translator.model).__name__,
            "checkpoint": str(entry.checkpoint),
            "parameters": sum(p.numel() for p in translator.model.parameters()),
            **training_record(checkpoint),
            "alpha": penalty,
            **corpus_score(hypotheses, references, n_bootstrap).as_dict(),
            "decode_seconds": round(seconds, 1),
            "sentences_per_second": round(len(sources) / seconds, 1),
        }
        if k > 0:
            previous = entries[k - 1].name
            test = paired_significance(outputs[previous], hypotheses, references, n_bootstrap)
            row["significance"] = {"against": previous, "p_value": test["p_value"], "signature": test["signature"]}
        row["by_length"] = bleu_by_length(sources, hypotheses, references, edges, n_bootstrap)
        report["models"].append(row)
        log.info("%s: BLEU %.2f ± %.2f, chrF %.2f", entry.name, row["bleu"], row["bleu_ci"], row["chrf"])
        details = translator.translate([sources[i] for i in examples], beam_size, penalty, return_details=True)
        for i, translation in zip(examples, details, strict=True):
            if translation.attention is None:  # the context-vector model has no attention to show
                continue
            name = f"attention_{entry.name}_{i}.png"
            kind = ATTENTION.get(row["model"], "attention")
            figures[name] = attention_figure(translation, f"{entry.name} ({kind}): test sentence {i}")
            report["heatmaps"].append({"model": entry.name, "sentence": i, "file": name})
    report["finding"] = finding(report)
    figures["bleu_by_length.png"] = bleu_by_length_figure(report)
    return report, figures


def finding(report: dict) -> str:
    """One sentence, computed from the numbers, on what the bottleneck curve shows."""
    models = report["models"]
    if not models:
        return ""
    longest = models[0]["by_length"][-1]
    scores = ", ".join(f"{m['by_length'][-1]['bleu']:.1f} for {m['name']}" for m in models)
    shares = ", ".join(f"{m['by_length'][-1]['bleu'] / max(m['bleu'], 1e-9):.0%}" for m in models)
    return (
        f"On the longest source sentences ({longest['bucket']} words, {longest['sentences']} sentences) BLEU falls "
        f"to {scores}: {shares} of each model's BLEU on the whole test set."
    )


# -- figures -----------------------------------------------------------------------------------------


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def bleu_by_length_figure(report: dict) -> bytes:
    """BLEU (with 95 % CI bars) against source length bucket, one line per model."""
    figure = Figure(figsize=(6.4, 4.0))
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
    ax.set_title(f"BLEU by source length, {report['data']['dataset']} {report['data']['split']}")
    ax.grid(alpha=0.3)
    ax.legend()
    return png(figure)


def attention_figure(translation: Translation, title: str) -> bytes:
    """Heatmap of attention weights (target pieces down, source pieces across)."""
    rows, cols = translation.attention.shape
    figure = Figure(figsize=(max(4.0, 0.3 * cols + 1.5), max(3.0, 0.3 * rows + 1.0)))
    ax = figure.subplots()
    image = ax.imshow(translation.attention.numpy(), cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(cols), translation.source_pieces, rotation=90, fontsize=8)
    ax.set_yticks(range(rows), translation.target_pieces, fontsize=8)
    ax.set_xlabel("source subwords")
    ax.set_ylabel("output subwords")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, fraction=0.046)
    return png(figure)


# -- markdown and files --------------------------------------------------------------------------------


def render_markdown(report: dict, images: str = "") -> str:
    """The leaderboard as Markdown; `images` prefixes figure paths (e.g. ``reports/`` for the README)."""
    data, decoding, models = report["data"], report["decoding"], report["models"]
    alphas = ", ".join(f"{m['alpha']} ({m['name']})" for m in models)
    lines = [
        f"Test split of `{data['dataset']}` {'→'.join(data['languages'])} ({data['sentences']} sentences), "
        f"beam {decoding['beam_size']}, length penalty alpha {alphas}."
        f" Written by `{report['command']}` on {report['created']} ({describe(report['machine'])}).",
        "",
        "| Model | Parameters | Epochs | Steps | Training | Trained on | sacreBLEU | 95 % CI | chrF "
        "| vs previous (paired bootstrap) | Decoding |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for m in models:
        minutes = f"{m['train_seconds'] / 60:.1f} min" if m["train_seconds"] is not None else "not recorded"
        lines.append(
            f"| {m['name']} | {m['parameters'] / 1e6:.1f} M | {m['epochs']} | {m['steps']} | {minutes} "
            f"| {m['hardware'] or 'not recorded'} | **{m['bleu']:.2f}** | ± {m['bleu_ci']:.2f} | {m['chrf']:.2f} "
            f"| {significance_text(m, models)} | {m['sentences_per_second']:.1f} sent/s |"
        )
    signature = models[0]["signature"] if models else ""
    lines += ["", f"sacreBLEU signature: `{signature}`", "", "### BLEU by source-sentence length", ""]
    lines.append("| Source words | Sentences | " + " | ".join(m["name"] for m in models) + " |")
    lines.append("|---|---:|" + "---:|" * len(models))
    counts = report["length_buckets"]["counts"]
    for b, count in enumerate(counts):
        cells = " | ".join(f"{m['by_length'][b]['bleu']:.1f} ± {m['by_length'][b]['bleu_ci']:.1f}" for m in models)
        lines.append(f"| {models[0]['by_length'][b]['bucket'] if models else ''} | {count} | {cells} |")
    lines += ["", f"![BLEU by source length]({images}bleu_by_length.png)", "", report["finding"]]
    if report["heatmaps"]:
        lines += ["", "### Attention on the longest test sentences", ""]
        lines += [f"![{h['model']}, test sentence {h['sentence']}]({images}{h['file']})" for h in report["heatmaps"]]
    return "\n".join(lines) + "\n"


def significance_text(model: dict, models: list[dict]) -> str:
    test = model.get("significance")
    if not test:
        return "—"
    previous = next(m for m in models if m["name"] == test["against"])
    delta = model["bleu"] - previous["bleu"]
    verdict = "significant" if test["p_value"] < 0.05 else "not significant"
    return f"{delta:+.2f} vs {test['against']}, p = {test['p_value']:.4f} ({verdict})"


def check_writable(directory: Path) -> None:
    """Fail early, naming the directory, when reports cannot be written there."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise PermissionError(f"report directory {directory} is not writable ({type(e).__name__}: {e})") from e


def write_report(report: dict, figures: dict[str, bytes], directory: Path) -> Path:
    """Write figures, leaderboard.md and leaderboard.json (last), each through a temporary file and
    a rename: a failure leaves the earlier report's files whole."""
    check_writable(directory)
    for name, data in figures.items():
        atomic_write_bytes(directory / name, data)
    atomic_write_bytes(directory / "leaderboard.md", ("# Leaderboard\n\n" + render_markdown(report)).encode())
    path = directory / "leaderboard.json"
    atomic_write_bytes(path, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    return path


README_START, README_END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def update_readme(readme: Path, report: dict, images: str = "reports/") -> None:
    """Replace the README's leaderboard block (between the markers) with one rendered from `report`."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} block to update")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    block = f"{README_START}\n{render_markdown(report, images)}{README_END}"
    atomic_write_bytes(readme, (head + block + tail).encode())


def strip_volatile(value: object) -> object:
    """The report without the fields that differ between two identical runs (dates, timings, machine)."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value
