"""The leaderboard: every model decodes the same test split with the same beam, sacreBLEU scores it
(bootstrap CIs, paired significance against the previous generation, BLEU by source length), and
`reports/` receives leaderboard.json (the source of truth), leaderboard.md rendered from it, the
bottleneck curve, attention heatmaps and each model's test translations (hypotheses/, which let a later
run that decodes some models alone test them against the others).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import itertools
import logging
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from translate.checkpoints import check_languages, model_from, read_checkpoint, training_record
from translate.evaluation import (
    bleu_by_length,
    bucket_of,
    corpus_score,
    length_bucket_edges,
    paired_significance,
    width_bucket_edges,
)
from translate.files import atomic_write_bytes, write_json
from translate.machine import describe, machine
from translate.saliency import BINS, FROM_END, remembered
from translate.translator import Translation, Translator

log = logging.getLogger(__name__)
N_BOOTSTRAP = 1000  # resamples of the confidence intervals and paired tests

ATTENTION = {  # what each model's heatmap shows
    "BahdanauSeq2Seq": "additive attention",
    "TransformerSeq2Seq": "last-layer cross-attention, mean over heads",
}
SMOKE = (
    "**Smoke run** (`translate leaderboard --quick`): small models trained for 100 seconds each, to show that "
    "everything works and that the models learn; these are not the models' real scores."
)
VOLATILE = ("created", "command", "machine", "decode_seconds", "sentences_per_second")  # differ between runs


Extra = Callable[[Translator, list[str], float], dict]  # more of a model's row: (translator, hypotheses, alpha)


@dataclass
class Entry:
    """One model on the leaderboard: its name (the config's), the checkpoint to evaluate and the length
    penalty to decode with (None: the checkpoint's own)."""

    name: str
    checkpoint: Path
    alpha: float | None = None


def heatmap_sentences(sources: Sequence[str], count: int) -> list[int]:
    """The `count` longest sources (by words; ties by position): fixed for a given test split."""
    return sorted(range(len(sources)), key=lambda i: (-len(sources[i].split()), i))[:count]


def report_head(
    sources: Sequence[str], data: dict, beam_size: int, max_tokens: int, smoke: bool, edges: list[int] | None = None
) -> dict:
    """The report before any model: when, by what command, on what machine and data, the length buckets
    (by default evaluation.length_bucket_edges)."""
    lengths = [len(s.split()) for s in sources]
    edges = edges if edges is not None else length_bucket_edges(lengths)
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["translate", *sys.argv[1:]]),
        "machine": machine(),
        "smoke": smoke,
        "data": {**data, "sentences": len(sources)},
        "decoding": {"beam_size": beam_size, "max_tokens": max_tokens},
        "length_buckets": {
            "edges": edges,
            "counts": [sum(bucket_of(n, edges) == b for n in lengths) for b in range(len(edges))],
        },
        "models": [],
        "heatmaps": [],
    }


def entry_translator(entry: Entry, data: dict, device: str) -> tuple[Translator, dict]:
    """The Translator of an entry's checkpoint (and the checkpoint), refusing one of another language pair."""
    checkpoint = read_checkpoint(entry.checkpoint)
    test_data = f"the test data ({data['dataset']})"
    check_languages(checkpoint.get("languages"), data["languages"], f"checkpoint {entry.checkpoint}", test_data)
    return Translator(model_from(checkpoint), device), checkpoint


def heatmap_figures(
    entry: Entry, translator: Translator, sources: Sequence[str], examples: list[int], beam_size: int, alpha: float
) -> list[tuple[int, str, bytes]]:
    """(sentence, file name, PNG) of the attention heatmaps of the example sentences by one model (none
    for the context-vector model)."""
    figures = []
    examples_text = [sources[i] for i in examples]
    details = translator.translate(examples_text, beam_size, alpha, return_details=True, split_sentences=False)
    kind = ATTENTION.get(type(translator.model).__name__, "attention")
    for i, translation in zip(examples, details, strict=True):
        if translation.attention is not None:
            figure = attention_figure(translation, f"{entry.name} ({kind}): test sentence {i}")
            figures.append((i, f"attention_{entry.name.replace('/', '-')}_{i}.png", figure))
    return figures


def build_report(
    entries: Sequence[Entry],
    sources: Sequence[str],
    references: Sequence[str],
    data: dict,
    beam_size: int = 5,
    alpha: float | None = None,
    max_tokens: int = 4096,
    heatmaps: int = 2,
    n_bootstrap: int = N_BOOTSTRAP,
    device: str = "auto",
    smoke: bool = False,
    edges: list[int] | None = None,
    extra: Extra | None = None,
) -> tuple[dict, dict[str, bytes]]:
    """Decode and score every entry; returns the report (JSON-ready) and its files by name: the figures (PNG)
    and each model's test translations (:func:`hypotheses_file`).

    Every model decodes with the same beam; `alpha` overrides each entry's length penalty. `data`
    describes the test data: ``dataset``, ``split`` and ``languages`` (source, target); a checkpoint
    trained on another language pair is refused. `smoke` marks the report as a smoke run's. `edges`
    are the source-length buckets' lower edges (default: evaluation.length_bucket_edges); `extra`
    adds fields to each model's row from (translator, its hypotheses, its length penalty).
    """
    names = [entry.name for entry in entries]
    if len(set(names)) < len(names):
        raise ValueError(f"entries need distinct names (they name figures and significance pairs), got {names}")
    report = report_head(sources, data, beam_size, max_tokens, smoke, edges)
    edges, examples = report["length_buckets"]["edges"], heatmap_sentences(sources, heatmaps)
    figures: dict[str, bytes] = {}
    outputs: dict[str, list[str]] = {}
    for entry in entries:
        translator, checkpoint = entry_translator(entry, data, device)
        penalty = next(a for a in (alpha, entry.alpha, translator.model.decoding.alpha) if a is not None)
        log.info("%s: decoding %d sentences with beam %d (%s)", entry.name, len(sources), beam_size, entry.checkpoint)
        start = time.perf_counter()
        hypotheses = translator.translate(
            sources, beam_size, penalty, max_tokens=max_tokens, progress=True, split_sentences=False
        )
        row = model_row(entry, translator, checkpoint, penalty, time.perf_counter() - start, len(sources))
        row |= corpus_score(hypotheses, references, n_bootstrap).as_dict()
        outputs[entry.name] = hypotheses
        figures[hypotheses_file(entry.name)] = "".join(f"{h}\n" for h in hypotheses).encode()
        row["by_length"] = bleu_by_length(sources, hypotheses, references, edges, n_bootstrap)
        row |= extra(translator, hypotheses, penalty) if extra else {}
        report["models"].append(row)
        log.info("%s: BLEU %.2f ± %.2f, chrF %.2f", entry.name, row["bleu"], row["bleu_ci"], row["chrf"])
        for i, name, figure in heatmap_figures(entry, translator, sources, examples, beam_size, penalty):
            figures[name] = figure
            report["heatmaps"].append({"model": entry.name, "sentence": i, "file": name})
    pair_tests(report["models"], outputs, references, n_bootstrap)
    report["finding"] = finding(report)
    figures["bleu_by_length.png"] = bleu_by_length_figure(report)
    return report, figures


def hypotheses_file(name: str) -> str:
    """Where a report keeps a model's test translations, one line per source sentence."""
    return f"hypotheses/{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.txt"


def pair_tests(models: list[dict], hypotheses: dict[str, list[str]], references: list[str], n_bootstrap: int) -> None:
    """Give every model the paired bootstrap test against the model before it, where it has none yet and
    both models' translations are in `hypotheses`; a test against another model goes."""
    for previous, model in itertools.pairwise(models):
        if model.get("significance", {}).get("against") == previous["name"]:
            continue
        model.pop("significance", None)
        if previous["name"] in hypotheses and model["name"] in hypotheses:
            test = paired_significance(hypotheses[previous["name"]], hypotheses[model["name"]], references, n_bootstrap)
            model["significance"] = {
                "against": previous["name"],
                "p_value": test["p_value"],
                "signature": test["signature"],
            }


def kept_hypotheses(report: dict, files: dict[str, bytes], directory: Path) -> dict[str, list[str]]:
    """Each model's test translations, from this run's `files`, else from those kept in `directory` with the
    report; a model whose translations are missing, not the report's own (:func:`verified`) or not one line
    per sentence is left out."""
    found = {}
    for model in report["models"]:
        name = hypotheses_file(model["name"])
        data = files.get(name) or verified(report, directory, name) or b""
        lines = data.decode("utf-8").split("\n")[:-1]
        if data and len(lines) == model["sentences"]:
            found[model["name"]] = lines
    return found


def model_row(
    entry: Entry, translator: Translator, checkpoint: dict, alpha: float, seconds: float, sentences: int
) -> dict:
    """What the report says of a model besides its scores: what it is, how it was trained, its decoding."""
    return {
        "name": entry.name,
        "model": type(translator.model).__name__,
        "checkpoint": str(entry.checkpoint),
        "parameters": sum(p.numel() for p in translator.model.parameters()),
        **training_record(checkpoint),
        "alpha": alpha,
        "decode_seconds": round(seconds, 1),
        "sentences_per_second": round(sentences / seconds, 1),
    }


# -- the long-input report ---------------------------------------------------------------------------


def build_long_report(
    entries: Sequence[Entry],
    sets: dict[int, tuple[list[str], list[str]]],
    data: dict,
    beam_size: int = 5,
    alpha: float | None = None,
    max_tokens: int = 4096,
    split_at: Sequence[int] = (4, 8),
    **settings: object,
) -> tuple[dict, dict[str, bytes]]:
    """The leaderboard on the test split joined in runs of k sentences, for every k of `sets` (k ->
    (sources, references)) at once, bucketed by source length 10 words wide (at least 50 sentences a
    bucket). Each model also gets BLEU by k (for k in `split_at` also with sentence splitting) and
    what it remembers (saliency.py) of the shortest runs and of the longest. Other `settings`
    (n_bootstrap, device) are :func:`build_report`'s."""
    ks = [k for k, (sources, _) in sets.items() for _ in sources]
    sources, references = joined_texts(sets)

    def extra(translator: Translator, hypotheses: list[str], penalty: float) -> dict:
        rows = []
        by_k = {k: [h for h, n in zip(hypotheses, ks, strict=True) if n == k] for k in sets}
        for k, (src, ref) in sets.items():
            row = {"k": k, "sentences": len(src), "bleu": corpus_score(by_k[k], ref, n_bootstrap=1).bleu}
            if k in split_at:
                split = translator.translate(src, beam_size, penalty, max_tokens=max_tokens, split_sentences=True)
                row["bleu_split"] = corpus_score(split, ref, n_bootstrap=1).bleu
                singles = [" ".join(by_k[1][i * k : (i + 1) * k]) for i in range(len(src))] if 1 in by_k else None
                row["bleu_singles_joined"] = corpus_score(singles, ref, n_bootstrap=1).bleu if singles else None
            rows.append(row)
        ends = {"short": min(sets), "long": max(sets)}
        return {
            "by_joined": rows,
            "remembers": {name: remembered(translator.model, *sets[k]) for name, k in ends.items()},
        }

    edges = width_bucket_edges([len(s.split()) for s in sources])
    data = {**data, "joined": list(sets)}
    report, figures = build_report(
        entries, sources, references, data, beam_size, alpha, max_tokens, 0, edges=edges, extra=extra, **settings
    )
    figures["remembers.png"] = remembers_figure(report)
    return report, figures


def joined_texts(sets: dict[int, tuple[list[str], list[str]]]) -> tuple[list[str], list[str]]:
    """The sources and references of every k of `sets`, one list each, in the order the long report decodes them."""
    return [s for k in sets for s in sets[k][0]], [r for k in sets for r in sets[k][1]]


def runs_of(report: dict) -> list[dict]:
    """The runs that decoded a report's models: when, by what command, on what machine, which models."""
    names = [m["name"] for m in report["models"]]
    return report.get("runs") or [{key: report[key] for key in ("created", "command", "machine")} | {"models": names}]


def reported_bleu(report: dict, checkpoint: Path) -> float | None:
    """The test BLEU `report` gives this very checkpoint (the same file at the same training step), if any."""
    steps = read_checkpoint(checkpoint)["global_step"]
    for model in report.get("models", []):
        if Path(model["checkpoint"]).resolve() == checkpoint.resolve() and model.get("steps") == steps:
            return round(model["bleu"], 2)
    return None


def merge_reports(old: dict, new: dict, order: Sequence[str]) -> dict:
    """The `old` report with the models of `new` added or replaced, ordered by `order` (names; others
    last), its finding recomputed and each model's run recorded. The two must have measured the same
    thing (data, decoding, length buckets); a kept model's significance test against a replaced one goes
    (:func:`pair_tests` gives it again from the kept translations).
    A report written before reports recorded `smoke` (2026-12-01) was a full run's."""
    old = {"smoke": False} | old
    for key in ("smoke", "data", "decoding", "length_buckets"):
        if old.get(key) != new[key]:
            raise ValueError(
                f"the existing report's {key} is {old.get(key)}, this run's {new[key]}: they cannot be merged "
                "(decode every model in one run)"
            )
    replaced = {m["name"] for m in new["models"]}
    kept = [dict(m) for m in old["models"] if m["name"] not in replaced]
    for model in kept:
        if model.get("significance", {}).get("against") in replaced:
            del model["significance"]
    rank = {name: i for i, name in enumerate(order)}
    runs = [run | {"models": [n for n in run["models"] if n not in replaced]} for run in runs_of(old)]
    merged = {
        **new,
        "files": old.get("files", {}),
        "models": sorted(kept + new["models"], key=lambda m: rank.get(m["name"], len(rank))),
        "heatmaps": [h for h in old["heatmaps"] if h["model"] not in replaced] + new["heatmaps"],
        "runs": [run for run in runs if run["models"]] + runs_of(new),
    }
    merged["finding"] = finding(merged)
    return merged


def summary_figures(report: dict) -> dict[str, bytes]:
    """The figures drawn from the report's numbers alone (not the heatmaps), by file name."""
    figures = {"bleu_by_length.png": bleu_by_length_figure(report)}
    return figures | ({"remembers.png": remembers_figure(report)} if "joined" in report["data"] else {})


def finding(report: dict) -> str:
    """One sentence, computed from the numbers, on what the bottleneck curve shows: for each model, its
    BLEU on the longest sources against its BLEU on the whole test set (within 5 %: it holds)."""
    models = report["models"]
    if not models:
        return ""
    longest = models[0]["by_length"][-1]
    parts = []
    for m in models:
        share = m["by_length"][-1]["bleu"] / max(m["bleu"], 1e-9)
        verb = "holds at" if abs(share - 1) <= 0.05 else "falls to" if share < 1 else "rises to"
        parts.append(f"{m['name']} {verb} {m['by_length'][-1]['bleu']:.1f} ({share:.0%} of its {m['bleu']:.1f})")
    return (
        f"On the longest source sentences ({longest['bucket']} words, {longest['sentences']} sentences) BLEU "
        f"against the whole test set: {', '.join(parts)}."
    )


# -- figures -----------------------------------------------------------------------------------------


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
    ax.set_title(f"BLEU by source length, {report['data']['dataset']} {report['data']['split']}")
    ax.grid(alpha=0.3)
    ax.legend()
    return png(figure)


def remembers_figure(report: dict) -> bytes:
    """Gradient share by source position against a uniform spread, one line per model: by relative
    position and by distance from the end (columns), for the shortest and the longest inputs (rows)."""
    figure = Figure(figsize=(10.0, 6.4))
    axes = figure.subplots(2, 2, sharey="row")
    joined = report["data"]["joined"]
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
    lines = [SMOKE, ""] if report.get("smoke") else []
    lines += [
        f"Test split of `{data['dataset']}` {'→'.join(data['languages'])} ({data['sentences']} sentences), "
        f"beam {decoding['beam_size']}, length penalty alpha {alphas}."
        f" {written_by(report)}.",
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
    if "joined" in data:
        lines += joined_markdown(report, images)
    if report["heatmaps"]:
        lines += ["", "### Attention on the longest test sentences", ""]
        lines += [f"![{h['model']}, test sentence {h['sentence']}]({images}{h['file']})" for h in report["heatmaps"]]
    return "\n".join(lines) + "\n"


def joined_summary(report: dict, images: str = "") -> str:
    """The long-input report in short (for the README): how it was made, BLEU by sentences joined,
    the bottleneck curve and its finding, what each model remembers."""
    data, models = report["data"], report["models"]
    alphas = ", ".join(f"{m['alpha']} ({m['name']})" for m in models)
    lines = [
        f"Test split of `{data['dataset']}` {'→'.join(data['languages'])} joined in runs of k = "
        f"{min(data['joined'])}…{max(data['joined'])} consecutive sentences ({data['sentences']} inputs), beam "
        f"{report['decoding']['beam_size']}, alpha {alphas}. {written_by(report)}; the whole report: "
        f"`{images}leaderboard.md`.",
        "",
        *joined_table(report),
        "",
        f"![BLEU by source length]({images}bleu_by_length.png)",
        "",
        report["finding"],
        "",
        f"![Gradient share by source position]({images}remembers.png)",
    ]
    return "\n".join(lines) + "\n"


def joined_markdown(report: dict, images: str) -> list[str]:
    """The long-input report's own sections: BLEU by sentences joined (unsplit and split), what each model remembers."""
    lines = ["", "### Test sentences joined in runs of k", "", *joined_table(report), ""]
    return [*lines, "### What each model remembers", "", f"![Gradient share by source position]({images}remembers.png)"]


def joined_table(report: dict) -> list[str]:
    """BLEU of each model by k sentences joined, unsplit and (where measured) split into sentences."""
    models, joined = report["models"], report["data"]["joined"]
    split = [row["k"] for row in models[0]["by_joined"] if "bleu_split" in row] if models else []
    header = [f"k = {k}" for k in joined] + [f"k = {k}, {kind}" for k in split for kind in ("split", "singles")]
    lines = ["| Model | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for m in models:
        cells = [f"{row['bleu']:.1f}" for row in m["by_joined"]]
        for row in (row for row in m["by_joined"] if "bleu_split" in row):
            singles = row["bleu_singles_joined"]
            cells += [f"{row['bleu_split']:.1f}", "—" if singles is None else f"{singles:.1f}"]
        lines.append(f"| {m['name']} | " + " | ".join(cells) + " |")
    note = (
        "Split: each run translated sentence by sentence (sentencex) and rejoined, as `translate generate` does. "
        "Singles: the model's own k = 1 translations of the same sentences, joined the same way (what splitting "
        "gives back at best; joined, BLEU also counts the n-grams across sentence boundaries)."
    )
    return [*lines, "", note]


def written_by(report: dict) -> str:
    """By what command, when and on what machine the report was written (each run's, for a merged report)."""
    runs = report.get("runs")
    if not runs:
        return f"Written by `{report['command']}` on {report['created']} ({describe(report['machine'])})"
    parts = [f"`{r['command']}` on {r['created']} ({describe(r['machine'])}): {', '.join(r['models'])}" for r in runs]
    return "Written in runs: " + "; ".join(parts)


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
    a rename: a failure leaves each file whole. The JSON records the SHA-256 of every file written with
    it (`files`), so that a file left by a run that failed before its JSON is told apart (:func:`verified`)."""
    check_writable(directory)
    for name, data in figures.items():
        atomic_write_bytes(directory / name, data)
    report = {**report, "files": report.get("files", {}) | {name: digest(data) for name, data in figures.items()}}
    atomic_write_bytes(directory / "leaderboard.md", ("# Leaderboard\n\n" + render_markdown(report)).encode())
    path = directory / "leaderboard.json"
    write_json(path, report)
    return path


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verified(report: dict, directory: Path, name: str) -> bytes | None:
    """The file `name` of the report in `directory`, if it is the one the report was written with."""
    path = directory / name
    data = path.read_bytes() if path.is_file() else None
    return data if data is not None and report.get("files", {}).get(name) == digest(data) else None


def update_readme(readme: Path, report: dict, images: str = "reports/", block: str = "leaderboard") -> None:
    """Replace the README's block between ``<!-- {block}:start -->`` and ``<!-- {block}:end -->`` with
    the report rendered as Markdown (a long-input report in short)."""
    start, end = f"<!-- {block}:start -->", f"<!-- {block}:end -->"
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block to update")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    render = joined_summary if "joined" in report["data"] else render_markdown
    atomic_write_bytes(readme, (head + f"{start}\n{render(report, images)}{end}" + tail).encode())


def strip_volatile(value: object) -> object:
    """The report without the fields that differ between two identical runs (dates, timings, machine)."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value
