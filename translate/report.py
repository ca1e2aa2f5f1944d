"""Reports, computed from evaluation records alone (records.py): never decoding, never reading references.

A leaderboard is a list of records of one test set, in table order. :func:`leaderboard` turns them into
the report (leaderboard.json: every number of the tables, and which records made them), :func:`figures`
draws its figures and :func:`render_markdown` writes leaderboard.md; :func:`summary` is the README's short
version. The same records always give the same files, byte for byte.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from translate.evaluation import bleu_by_length, bleu_of, length_bucket_edges, paired_significance, width_bucket_edges
from translate.files import atomic_write_bytes
from translate.machine import describe
from translate.plots import attention_figure, bleu_by_length_figure, remembers_figure
from translate.records import N_BOOTSTRAP, Record, read_record

SMOKE = (
    "**Smoke run** (`translate leaderboard --quick`): small models trained for 100 seconds each, to show that "
    "everything works and that the models learn; these are not the models' real scores."
)


def check_comparable(records: Sequence[Record]) -> None:
    """Refuse records of different test sets or beams, and a model twice."""
    if not records:
        raise ValueError("a leaderboard needs at least one evaluation record")
    first = records[0]
    for record in records[1:]:
        if record.data["test_set"]["sha256"] != first.data["test_set"]["sha256"]:  # the same sources and references
            raise ValueError(f"{record.folder} and {first.folder} are of different test sets: not one leaderboard")
        if record.data["decoding"]["beam_size"] != first.data["decoding"]["beam_size"]:
            raise ValueError(f"{record.folder} and {first.folder} decoded with different beams: not one leaderboard")
    names = [r.name for r in records]
    if len(set(names)) < len(names):
        raise ValueError(f"a model appears twice in the leaderboard: {names}")


def row(record: Record, root: Path) -> dict:
    """A model's row: what it is, how it was trained and decoded, its scores, where its record is."""
    data, model = record.data, record.data["model"]
    return {
        "name": model["name"],
        "model": model["model"],
        "checkpoint": model["checkpoint"],
        "record": Path(os.path.relpath(record.folder, root)).as_posix(),
        "parameters": model["parameters"],
        **{key: model[key] for key in ("epochs", "steps", "train_seconds", "hardware")},
        "alpha": data["decoding"]["alpha"],
        "beam_size": data["decoding"]["beam_size"],
        **data["scores"],
        "sentences_per_second": data["sentences_per_second"],
        "evaluated": {key: data[key] for key in ("created", "command")} | {"machine": describe(data["machine"])},
    }


def leaderboard(records: Sequence[Record], root: Path, smoke: bool = False, n_bootstrap: int = N_BOOTSTRAP) -> dict:
    """The report of `records` (one test set), paths relative to `root`: rows, BLEU by source length,
    paired tests between every two models, and for joined inputs BLEU by sentences joined."""
    check_comparable(records)
    test_set, lengths = records[0].data["test_set"], records[0].source_words
    joined = test_set.get("joined", [1]) != [1]
    edges = width_bucket_edges(lengths) if joined else length_bucket_edges(lengths)
    models = []
    for record in records:
        model = row(record, root) | {"by_length": bleu_by_length(lengths, record.statistics, edges, n_bootstrap)}
        if joined:
            model["by_joined"] = by_joined(record)
            model["remembers"] = record.data["extra"].get("remembers")
        models.append(model)
    report = {
        "smoke": smoke,
        "test_set": test_set,
        "length_buckets": {"edges": edges, "counts": [r["sentences"] for r in models[0]["by_length"]]},
        "models": models,
        "paired": paired_tests(records, n_bootstrap),
        "heatmaps": [
            {"model": r.name, "sentence": a["sentence"], "file": heatmap_file(r.name, a["sentence"])}
            for r in records
            for a in r.data["extra"].get("attention", [])
        ],
        "matplotlib": matplotlib.__version__,  # figures are byte for byte the same with the same version
    }
    report["finding"] = finding(report)
    return report


def by_joined(record: Record) -> list[dict]:
    """BLEU of each k of a joined test set (its inputs of k sentences), with the split and singles scores
    the record's evaluation added (where measured)."""
    split = {row["k"]: row for row in record.data["extra"].get("split", [])}
    rows = []
    for k in sorted(set(record.joined)):
        members = [s for s, n in zip(record.statistics, record.joined, strict=True) if n == k]
        rows.append({"k": k, "sentences": len(members), "bleu": bleu_of(members, 1)["bleu"], **split.get(k, {})})
    return rows


def paired_tests(records: Sequence[Record], n_bootstrap: int) -> list[dict]:
    """sacreBLEU's paired bootstrap test between every two models, the earlier one as the baseline."""
    tests = []
    for a, b in itertools.combinations(records, 2):
        test = paired_significance(a.statistics, b.statistics, n_bootstrap)
        tests.append({"baseline": a.name, "system": b.name, "p_value": test["p_value"], "signature": test["signature"]})
    return tests


def heatmap_file(name: str, sentence: int) -> str:
    return f"attention_{name}_{sentence}.png"


def figures(report: dict, records: Sequence[Record]) -> dict[str, bytes]:
    """The report's figures by file name: BLEU by length, the attention heatmaps, what each model remembers."""
    files = {"bleu_by_length.png": bleu_by_length_figure(report)}
    for record in records:
        for attention in record.data["extra"].get("attention", []):
            title = f"{record.name}: test sentence {attention['sentence']}"
            files[heatmap_file(record.name, attention["sentence"])] = attention_figure(attention, title)
    if any(m.get("remembers") for m in report["models"]):
        files["remembers.png"] = remembers_figure(report)
    return files


def finding(report: dict) -> str:
    """One sentence, computed from the numbers, on what the bottleneck curve shows: for each model, its
    BLEU on the longest sources against its BLEU on the whole test set (within 5 %: it holds)."""
    models = report["models"]
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


# -- markdown ----------------------------------------------------------------------------------------


def caption(report: dict, full: str) -> str:
    """What was tested and how, in one short line (the provenance is in `full`)."""
    test, models = report["test_set"], report["models"]
    where = test.get("dataset") or test.get("file")
    joined = f" joined in runs of k = {min(test['joined'])}…{max(test['joined'])}" if test["joined"] != [1] else ""
    what = f"The {test['split']} split" if "split" in test else "The test file"
    return (
        f"{what} of `{Path(where).name}` {'→'.join(test['languages'])}"
        f"{joined} ({test['sentences']} inputs), beam {models[0]['beam_size']}; how each model was trained and "
        f"evaluated: [{full}]({full})."
    )


def main_table(report: dict) -> list[str]:
    """The models' table; with a "tokenized BLEU" column (the literature's, evaluation.literature_bleu)
    where their records have it."""
    tokenized = any("literature" in m for m in report["models"])
    head, align = (" tokenized BLEU |", "---:|") if tokenized else ("", "")
    lines = [
        f"| Model | Parameters | Epochs | Training | sacreBLEU | 95 % CI | chrF |{head}"
        " vs previous (paired bootstrap) |",
        f"|---|---:|---:|---:|---:|---:|---:|{align}---|",
    ]
    for previous, m in zip([None, *report["models"]], report["models"], strict=False):
        minutes = f"{m['train_seconds'] / 60:.0f} min" if m["train_seconds"] is not None else "—"
        literature = f" {m['literature']['bleu']:.2f} |" if "literature" in m else " — |" if tokenized else ""
        lines.append(
            f"| {m['name']} | {m['parameters'] / 1e6:.1f} M | {m['epochs']} | {minutes} | **{m['bleu']:.2f}** "
            f"| ± {m['bleu_ci']:.2f} | {m['chrf']:.2f} |{literature} {versus(report, previous, m)} |"
        )
    return lines


def versus(report: dict, baseline: dict | None, model: dict) -> str:
    if baseline is None:
        return "—"
    test = next(t for t in report["paired"] if (t["baseline"], t["system"]) == (baseline["name"], model["name"]))
    verdict = "significant" if test["p_value"] < 0.05 else "not significant"
    return f"{model['bleu'] - baseline['bleu']:+.2f} vs {baseline['name']}, p = {test['p_value']:.4f} ({verdict})"


def length_table(report: dict) -> list[str]:
    models = report["models"]
    lines = ["| Source words | Inputs | " + " | ".join(m["name"] for m in models) + " |"]
    lines.append("|---|---:|" + "---:|" * len(models))
    for b, count in enumerate(report["length_buckets"]["counts"]):
        cells = " | ".join(f"{m['by_length'][b]['bleu']:.1f} ± {m['by_length'][b]['bleu_ci']:.1f}" for m in models)
        lines.append(f"| {models[0]['by_length'][b]['bucket']} | {count} | {cells} |")
    return lines


def joined_table(report: dict) -> list[str]:
    """BLEU of each model by k sentences joined, and where measured split into sentences and as singles."""
    models = report["models"]
    ks = [row["k"] for row in models[0]["by_joined"]]
    split = [row["k"] for row in models[0]["by_joined"] if "bleu_split" in row]
    header = [f"k = {k}" for k in ks] + [f"k = {k}, {kind}" for k in split for kind in ("split", "singles")]
    lines = ["| Model | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for m in models:
        cells = [f"{row['bleu']:.1f}" for row in m["by_joined"]]
        cells += [
            f"{row[key]:.1f}" for row in m["by_joined"] if "bleu_split" in row for key in ("bleu_split", "bleu_singles")
        ]
        lines.append(f"| {m['name']} | " + " | ".join(cells) + " |")
    return lines


SPLIT_NOTE = (
    "Split: each input translated sentence by sentence (sentencex) and rejoined, as `translate generate` does. "
    "Singles: the model's own k = 1 translations of the same sentences, joined the same way."
)


def provenance(report: dict) -> list[str]:
    """Per model: its checkpoint, record, training machine and time, and the evaluation's command, date, machine."""
    lines = [
        "| Model | Checkpoint | Record | Trained on | Length penalty | Evaluated by | Decoding |",
        "|---|---|---|---|---:|---|---:|",
    ]
    for m in report["models"]:
        run = m["evaluated"]
        lines.append(
            f"| {m['name']} | `{m['checkpoint']}` | `{m['record']}` | {m['hardware'] or '—'} | {m['alpha']} "
            f"| `{run['command']}` on {run['created']} ({run['machine']}) | {m['sentences_per_second']:.1f} inputs/s |"
        )
    return lines


def paired_table(report: dict) -> list[str]:
    """The paired bootstrap test of every pair of models, with its signature; none for one model."""
    if not report["paired"]:
        return []
    lines = ["### Paired bootstrap tests, every pair", "", "| Baseline | System | p |", "|---|---|---:|"]
    lines += [f"| {t['baseline']} | {t['system']} | {t['p_value']:.4f} |" for t in report["paired"]]
    return [*lines, "", f"Signature: `{report['paired'][0]['signature']}`.", ""]


def render_markdown(report: dict, images: str = "") -> str:
    """The whole report as Markdown, provenance included; `images` prefixes figure paths."""
    models = report["models"]
    lines = [SMOKE, ""] if report["smoke"] else []
    lines += [caption(report, "#provenance").split("; how")[0] + ".", "", *main_table(report), ""]
    lines += [f"sacreBLEU: `{models[0]['signature']}`; chrF: `{models[0]['chrf_signature']}`.", ""]
    if "literature" in models[0]:
        literature = models[0]["literature"]
        lines += [
            f"Tokenized BLEU, the Multi30k literature's: hypotheses {literature['processing']}, against the "
            f"official tokenized references ({literature['reference_tokens']:,} tokens): `{literature['signature']}`.",
            "",
        ]
    lines += ["### BLEU by source length", "", *length_table(report), ""]
    lines += [f"![BLEU by source length]({images}bleu_by_length.png)", "", report["finding"], ""]
    if "by_joined" in models[0]:
        lines += ["### Inputs joined in runs of k sentences", "", *joined_table(report), "", SPLIT_NOTE, ""]
        lines += [
            "### What each model remembers",
            "",
            f"![Gradient share by source position]({images}remembers.png)",
            "",
        ]
    if report["heatmaps"]:
        lines += ["### Attention on the longest test sentences", ""]
        lines += [f"![{h['model']}, test sentence {h['sentence']}]({images}{h['file']})" for h in report["heatmaps"]]
        lines.append("")
    lines += [*paired_table(report), "### Provenance", "", *provenance(report)]
    return "\n".join(lines) + "\n"


def summary(report: dict, images: str, full: str) -> str:
    """The README's short version: a caption, the table(s) and the figure(s); the rest is in `full`."""
    lines = [SMOKE, ""] if report["smoke"] else []
    lines += [caption(report, full), ""]
    if "by_joined" in report["models"][0]:
        lines += [
            *joined_table(report),
            "",
            SPLIT_NOTE,
            "",
            f"![BLEU by source length]({images}bleu_by_length.png)",
            "",
        ]
        lines += [report["finding"], "", f"![Gradient share by source position]({images}remembers.png)"]
    else:
        lines += [
            *main_table(report),
            "",
            *length_table(report),
            "",
            f"![BLEU by source length]({images}bleu_by_length.png)",
        ]
        lines += ["", report["finding"]]
    return "\n".join(lines) + "\n"


def directions_summary(reports: dict[str, dict]) -> str:
    """The README's table of other directions: each model of each report (by its folder, relative to the
    README) with sacreBLEU and, where measured, the literature's tokenized BLEU."""
    lines = [
        "| Direction | Model | Training | sacreBLEU | 95 % CI | tokenized BLEU | Report |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for folder, report in reports.items():
        for m in report["models"]:
            minutes = f"{m['train_seconds'] / 60:.0f} min" if m["train_seconds"] is not None else "—"
            tokenized = f"{m['literature']['bleu']:.2f}" if "literature" in m else "—"
            lines.append(
                f"| {'→'.join(report['test_set']['languages'])} | {m['name']} | {minutes} | **{m['bleu']:.2f}** "
                f"| ± {m['bleu_ci']:.2f} | {tokenized} | [{folder}]({folder}/leaderboard.md) |"
            )
    return "\n".join(lines) + "\n"


# -- files -------------------------------------------------------------------------------------------


def rendered(report: dict, records: Sequence[Record]) -> dict[str, bytes]:
    """Every file of a report directory by name: the figures, leaderboard.md and leaderboard.json (last)."""
    files = figures(report, records)
    files["leaderboard.md"] = ("# Leaderboard\n\n" + render_markdown(report)).encode()
    files["leaderboard.json"] = (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode()
    return files


def write_report(report: dict, records: Sequence[Record], directory: Path) -> Path:
    """Write every file of the report, each whole (atomic), leaderboard.json last."""
    for name, data in rendered(report, records).items():
        atomic_write_bytes(directory / name, data)
    return directory / "leaderboard.json"


def update_readme(readme: Path, block: str, text: str) -> None:
    """Replace the README's block between ``<!-- {block}:start -->`` and ``<!-- {block}:end -->`` with `text`."""
    start, end = f"<!-- {block}:start -->", f"<!-- {block}:end -->"
    current = readme.read_text(encoding="utf-8")
    if start not in current or end not in current:
        raise ValueError(f"{readme} has no {start} ... {end} block to update")
    head, rest = current.split(start, 1)
    tail = rest.split(end, 1)[1]
    atomic_write_bytes(readme, (head + f"{start}\n{text}{end}" + tail).encode())


def read_report(path: Path) -> dict:
    """A leaderboard.json, or an error naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a leaderboard report ({e})") from e


def rerendered(directory: Path) -> dict[str, bytes]:
    """The files of the report in `directory`, rendered again from the records its leaderboard.json names."""
    report = read_report(directory / "leaderboard.json")
    records = [read_record(directory / model["record"]) for model in report["models"]]
    return rendered(leaderboard(records, directory, report["smoke"]), records)
