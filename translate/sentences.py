"""Paragraphs in, paragraphs out: each line of a text is split into sentences by sentencex (Wikimedia's
maintained segmenter, with per-language abbreviation lists), and the sentences' translations are put
back in order, line by line.

The models were trained on single sentences: given several at once, they translate the first ones and
stop. Translating sentence by sentence keeps the rest.
"""

from __future__ import annotations

from sentencex import segment


def split_lines(text: str, language: str) -> list[list[str]]:
    """The sentences of each line of `text` (lines end at a newline); a blank line has none."""
    return [[s.strip() for s in segment(language, line) if s.strip()] for line in text.split("\n")]


def join_lines(lines: list[list[str]]) -> str:
    """The inverse of :func:`split_lines` for translated sentences: a space between sentences, lines kept."""
    return "\n".join(" ".join(sentences) for sentences in lines)
