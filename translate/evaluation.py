"""Scoring with sacreBLEU: corpus BLEU/chrF with bootstrap confidence intervals, paired significance
between systems, and BLEU by source-sentence length (the bottleneck curve)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import sacrebleu
from sacrebleu.significance import PairedTest

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


def corpus_score(hypotheses: Sequence[str], references: Sequence[str], n_bootstrap: int = 1000) -> CorpusScore:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    metric = sacrebleu.BLEU()
    bleu = metric.corpus_score(list(hypotheses), [list(references)], n_bootstrap=n_bootstrap)
    chrf = sacrebleu.CHRF().corpus_score(list(hypotheses), [list(references)])
    # sacreBLEU reports the bootstrap's mean and 95 % CI in its JSON form (absent without resampling, or at 0)
    signature = str(metric.get_signature())
    resampled = json.loads(bleu.format(width=CI_DIGITS, signature=signature, is_json=True))
    return CorpusScore(
        bleu=bleu.score,
        bleu_mean=resampled.get("confidence_mean", bleu.score),
        bleu_ci=resampled.get("confidence_var", 0.0),
        chrf=chrf.score,
        sentences=len(hypotheses),
        signature=signature,
    )


def paired_significance(
    baseline: Sequence[str], system: Sequence[str], references: Sequence[str], n_samples: int = 1000
) -> dict:
    """sacreBLEU's paired bootstrap resampling test of `system` against `baseline` (Koehn 2004). Identical
    outputs get p = 1 (sacreBLEU's test would give its floor, 1 / (n + 1), for a difference of zero)."""
    test = PairedTest(
        [("baseline", list(baseline)), ("system", list(system))],
        {"BLEU": sacrebleu.BLEU()},
        references=[list(references)],
        test_type="bs",
        n_samples=n_samples,
    )
    signatures, scores = test()
    base, sys_ = scores["BLEU"]
    return {
        "baseline_bleu": base.score,
        "system_bleu": sys_.score,
        "p_value": 1.0 if list(baseline) == list(system) else sys_.p_value,
        "signature": str(signatures["BLEU"]),
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
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str],
    edges: Sequence[int],
    n_bootstrap: int = 1000,
) -> list[dict]:
    """BLEU (with CI) of each source-length bucket, lengths counted in whitespace-separated words."""
    lengths = [len(s.split()) for s in sources]
    rows = []
    for b, lo in enumerate(edges):
        members = [i for i, n in enumerate(lengths) if bucket_of(n, edges) == b]
        hi = edges[b + 1] - 1 if b + 1 < len(edges) else max(lengths)
        score = corpus_score([hypotheses[i] for i in members], [references[i] for i in members], n_bootstrap)
        label = f"{lo}-{hi}" if hi > lo else str(lo)
        rows.append({"bucket": label, "min_words": lo, "max_words": hi, **score.as_dict()})
    return rows
