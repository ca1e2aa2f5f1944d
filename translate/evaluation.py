"""Scoring with sacreBLEU: corpus BLEU/chrF with bootstrap confidence intervals, paired significance
between systems, BLEU by source-sentence length (the bottleneck curve), and the literature's BLEU on
Moses-tokenized lowercased text. BLEU is computed from each sentence's sufficient statistics, which
evaluation records keep (records.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import sacrebleu
from sacrebleu.significance import _bootstrap_resample, _compute_p_value, estimate_ci
from sacremoses import MosesPunctNormalizer, MosesTokenizer

CI_DIGITS = 4  # decimals of the bootstrap mean and CI kept from sacreBLEU's report


@dataclass
class CorpusScore:
    """sacreBLEU BLEU with a 95 % bootstrap confidence interval (mean ± ci), chrF, and the signature."""

    bleu: float
    bleu_mean: float
    bleu_ci: float
    chrf: float
    sentences: int
    signature: str

    def as_dict(self) -> dict:
        return asdict(self)


def bleu_metric(n_bootstrap: int = 1) -> sacrebleu.BLEU:
    """sacreBLEU's BLEU as every score here uses it: one reference per sentence, and where resampled, its
    bootstrap of `n_bootstrap` samples seeded by SACREBLEU_SEED (so that its signature says both)."""
    metric = sacrebleu.BLEU()
    metric.num_refs = 1  # sacreBLEU sets this when it reads references; from statistics it never does
    if n_bootstrap > 1:
        metric.n_bootstrap, metric.seed = n_bootstrap, os.environ.get("SACREBLEU_SEED", "12345").lower()
    return metric


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> list[list[int]]:
    """sacreBLEU's sufficient statistics of each sentence: hypothesis and reference length, then the
    matching and total n-grams for n = 1..4. A corpus's BLEU (or any subset's) is a function of their sum,
    so a record that keeps them can be re-scored, bucketed and tested without its references."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    rows = sacrebleu.BLEU()._extract_corpus_statistics(list(hypotheses), [list(references)])
    return [[int(x) for x in row] for row in rows]


def bleu_of(statistics: Sequence[Sequence[int]], n_bootstrap: int = 1000) -> dict:
    """Corpus BLEU from sentence statistics, with sacreBLEU's bootstrap mean and 95 % CI (its own resampling,
    seeded by SACREBLEU_SEED as in `BLEU.corpus_score`); without resampling the mean is the score and the CI 0."""
    metric = bleu_metric(n_bootstrap)
    bleu = metric._compute_score_from_stats(np.sum(statistics, axis=0).tolist()).score if statistics else 0.0
    mean, ci = bleu, 0.0
    if n_bootstrap > 1 and statistics:
        _, scores = _bootstrap_resample(list(statistics), metric, n_bootstrap)
        mean, ci = (round(float(x), CI_DIGITS) for x in estimate_ci(np.array([s.score for s in scores])))
    return {
        "bleu": bleu,
        "bleu_mean": mean,
        "bleu_ci": ci,
        "signature": str(metric.get_signature()),
    }


def corpus_score(hypotheses: Sequence[str], references: Sequence[str], n_bootstrap: int = 1000) -> CorpusScore:
    """BLEU with its bootstrap CI (:func:`bleu_of`) and chrF, by sacreBLEU."""
    bleu = bleu_of(bleu_statistics(hypotheses, references), n_bootstrap)
    chrf = sacrebleu.CHRF().corpus_score(list(hypotheses), [list(references)])
    return CorpusScore(**bleu, chrf=chrf.score, sentences=len(hypotheses))


def chrf_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """chrF and chrF++ (word bigrams too), each with its sacreBLEU signature."""
    scores = {}
    for name, metric in (("chrf", sacrebleu.CHRF()), ("chrf_pp", sacrebleu.CHRF(word_order=2))):
        scores[name] = metric.corpus_score(list(hypotheses), [list(references)]).score
        scores[f"{name}_signature"] = str(metric.get_signature())
    return scores


def paired_significance(
    baseline: Sequence[Sequence[int]], system: Sequence[Sequence[int]], n_samples: int = 1000
) -> dict:
    """sacreBLEU's paired bootstrap resampling test (Koehn 2004; its `PairedTest` with test_type "bs",
    step by step on stored sentence statistics: the same resamples, the same p-value). Identical outputs
    get p = 1 (sacreBLEU's test would give its floor, 1 / (n + 1), for a difference of zero)."""
    if len(baseline) != len(system):
        raise ValueError(f"a paired test needs the same sentences: {len(baseline)} against {len(system)}")
    metric = bleu_metric(n_samples)
    rng = np.random.default_rng(None if metric.seed == "none" else int(metric.seed))
    indices = rng.choice(len(system), size=(n_samples, len(system)), replace=True)
    base, sys_ = np.array(baseline, dtype="float32"), np.array(system, dtype="float32")

    def scores(stats: np.ndarray) -> np.ndarray:
        return np.array([metric._compute_score_from_stats(sample.sum(0)).score for sample in stats[indices]])

    base_bleu, sys_bleu = bleu_of(baseline, 1)["bleu"], bleu_of(system, 1)["bleu"]
    differences = np.abs(scores(sys_) - scores(base))
    p_value = _compute_p_value(differences - differences.mean(), abs(base_bleu - sys_bleu))
    return {
        "baseline_bleu": base_bleu,
        "system_bleu": sys_bleu,
        "p_value": 1.0 if np.array_equal(base, sys_) else p_value,
        "signature": str(metric.get_signature()),
    }


def length_bucket_edges(lengths: Sequence[int], buckets: int = 5, min_count: int = 30, tail: float = 0.05) -> list[int]:
    """Lower edges of source-length buckets: `buckets` quantile buckets, plus one for the longest
    `tail` fraction of sentences (where the bottleneck shows). A bucket with fewer than `min_count`
    sentences merges into its neighbour below, but the longest bucket always stays."""
    lengths = np.asarray(lengths)
    quantiles = [*np.linspace(0, 1, buckets + 1)[:-1], 1 - tail]
    edges = sorted({int(np.quantile(lengths, q)) for q in quantiles})
    edges[0] = 0
    counts = [int(((lengths >= lo) & (lengths < hi)).sum()) for lo, hi in zip(edges, [*edges[1:], np.inf], strict=True)]
    kept = [e for e, c in zip(edges[:-1], counts[:-1], strict=True) if c >= min_count or e == 0]
    return [*kept, edges[-1]] if len(edges) > 1 else edges  # one length only: one bucket


def width_bucket_edges(lengths: Sequence[int], width: int = 10, min_count: int = 50) -> list[int]:
    """Lower edges of buckets `width` words wide (0, 10, 20, ...); from the longest down, a bucket with
    fewer than `min_count` sentences merges into the one below (the first, into the one above)."""
    lengths = np.asarray(lengths)
    edges = list(range(0, int(lengths.max()) + 1, width))

    def count(b: int) -> int:
        hi = edges[b + 1] if b + 1 < len(edges) else np.inf
        return int(((lengths >= edges[b]) & (lengths < hi)).sum())

    for b in range(len(edges) - 1, 0, -1):
        if count(b) < min_count:
            del edges[b]
    while len(edges) > 1 and count(0) < min_count:
        del edges[1]
    return edges


def bucket_of(length: int, edges: Sequence[int]) -> int:
    """Index of the bucket (by lower edges) that holds `length`."""
    return int(np.searchsorted(edges, length, side="right")) - 1


def bleu_by_length(
    lengths: Sequence[int], statistics: Sequence[Sequence[int]], edges: Sequence[int], n_bootstrap: int = 1000
) -> list[dict]:
    """BLEU (with CI) of each source-length bucket, from each sentence's source length (in words) and its
    BLEU statistics (:func:`bleu_statistics`)."""
    rows = []
    for b, lo in enumerate(edges):
        members = [i for i, n in enumerate(lengths) if bucket_of(n, edges) == b]
        hi = edges[b + 1] - 1 if b + 1 < len(edges) else max(lengths)
        score = bleu_of([statistics[i] for i in members], n_bootstrap)
        label = f"{lo}-{hi}" if hi > lo else str(lo)
        rows.append({"bucket": label, "min_words": lo, "max_words": hi, "sentences": len(members), **score})
    return rows


def literature_tokenized(texts: Sequence[str], lang: str) -> list[str]:
    """Texts as Multi30k papers score them: lowercased, punctuation-normalized and tokenized by the Moses
    scripts (sacremoses' port of lowercase.perl, normalize-punctuation.perl -l LANG and tokenizer.perl -l LANG,
    special characters escaped as tokenizer.perl does), one space between tokens."""
    normalizer, tokenizer = MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)
    return [tokenizer.tokenize(normalizer.normalize(text.lower()), return_str=True, escape=True) for text in texts]


def literature_bleu(hypotheses: Sequence[str], tokenized_references: Sequence[str], lang: str) -> dict:
    """BLEU the way Multi30k papers report it (e.g. fairseq's BLEU4): the hypotheses through
    :func:`literature_tokenized`, scored against references already processed so (the official tokenized
    test files) with no further tokenization. Not comparable with sacreBLEU's detokenized score."""
    if len(hypotheses) != len(tokenized_references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(tokenized_references)} tokenized references")
    metric = sacrebleu.BLEU(tokenize="none", force=True)  # force: the text is tokenized on purpose
    score = metric.corpus_score(literature_tokenized(hypotheses, lang), [list(tokenized_references)])
    return {
        "bleu": score.score,
        "precisions": [round(p, 1) for p in score.precisions],
        "bp": round(score.bp, 3),
        "hypothesis_tokens": score.sys_len,
        "reference_tokens": score.ref_len,
        "processing": f"lowercase, sacremoses normalize+tokenize -l {lang}",
        "signature": str(metric.get_signature()),
    }
