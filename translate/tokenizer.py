"""One joint SentencePiece model shared by source and target, and by all three models.

The special ids are fixed (pad 0, unk 1, bos 2, eos 3) so that every model, checkpoint and search
reads them from here and nowhere else. The model travels as bytes, so a checkpoint can carry it.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import sentencepiece as spm

from translate.files import atomic_write_bytes

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

ModelType = Literal["unigram", "bpe"]
# what str.splitlines breaks a line at: decoded text never contains one, so one translation is one line
LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " "))
# control characters (Unicode category Cc: NUL, tab, carriage return, ...) are read as spaces
CONTROLS = str.maketrans(dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], " "))


def check_unicode(text: str, index: int) -> None:
    """Refuse a text that is not valid Unicode (a lone surrogate, as from a bad decode), naming its index."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"text at index {index} is not valid Unicode ({e.reason} at position {e.start})") from e


def clean(texts: Sequence[str]) -> list[str]:
    """The texts as SentencePiece reads them (control characters as spaces); invalid Unicode is refused."""
    for i, text in enumerate(texts):
        check_unicode(text, i)
    return [text.translate(CONTROLS) for text in texts]


class SharedTokenizer:
    """A joint SentencePiece vocabulary: batch encode/decode, serialisable to bytes."""

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, model_proto: bytes) -> None:
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self._proto = model_proto
        ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(
                f"SentencePiece model has special ids pad/unk/bos/eos = {ids}, "
                f"expected {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}"
            )

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        vocab_size: int = 8000,
        model_type: ModelType = "unigram",
        character_coverage: float = 1.0,
        byte_fallback: bool = True,
    ) -> SharedTokenizer:
        """Train on `sentences` (source and target sides together).

        `vocab_size` is an upper bound: a corpus too small for it gets the largest vocabulary it
        supports, with a warning.
        """
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=(sentence.translate(CONTROLS) for sentence in sentences),  # as `encode` reads them
            model_writer=buffer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=byte_fallback,
            hard_vocab_limit=False,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            pad_piece="<pad>",
            unk_piece="<unk>",
            bos_piece="<s>",
            eos_piece="</s>",
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
        tokenizer = cls(buffer.getvalue())
        if tokenizer.vocab_size < vocab_size:
            log.warning(
                "corpus supports only %d SentencePiece pieces; asked for %d",
                tokenizer.vocab_size,
                vocab_size,
            )
        return tokenizer

    @classmethod
    def load_or_train(cls, path: Path, sentences: Iterator[str] | Iterable[str], **train_kwargs) -> SharedTokenizer:
        """Load the model cached at `path`, or train one on `sentences` and cache it there."""
        path = Path(path)
        if path.exists():
            log.info("loading cached tokenizer %s", path)
            return cls.load(path)
        log.info("training SentencePiece tokenizer -> %s", path)
        tokenizer = cls.train(sentences, **train_kwargs)
        tokenizer.save(path)
        return tokenizer

    @classmethod
    def load(cls, path: Path | str) -> SharedTokenizer:
        path = Path(path)
        try:
            return cls(path.read_bytes())
        except (OSError, RuntimeError) as e:
            raise ValueError(f"cannot read SentencePiece model {path}: {e}") from e

    def save(self, path: Path | str) -> None:
        atomic_write_bytes(Path(path), self._proto)

    @classmethod
    def from_bytes(cls, data: bytes) -> SharedTokenizer:
        return cls(data)

    def to_bytes(self) -> bytes:
        return self._proto

    def __getstate__(self) -> bytes:
        return self._proto

    def __setstate__(self, state: bytes) -> None:
        self.__init__(state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SharedTokenizer) and other._proto == self._proto

    def __hash__(self) -> int:
        return hash(self._proto)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without bos/eos. Control characters count as spaces; a text that is not
        valid Unicode (a lone surrogate, as from a bad decode) is refused, naming its index."""
        return self._sp.encode(clean(texts), out_type=int)

    def sample(self, texts: Sequence[str], alpha: float, nbest: int, seed: int) -> list[list[int]]:
        """Token ids of each text in a segmentation drawn at random (subword regularisation, Kudo 2018): for
        a unigram model, among its `nbest` best segmentations (all for -1) with probabilities smoothed by
        `alpha`; for a BPE model, BPE-dropout with merge-dropout probability `alpha`. The draws come from
        SentencePiece's generator, seeded with `seed` and run on one thread: the same seed draws the same
        segmentations within a process, but not in another one (SentencePiece's generator differs per process)."""
        spm.set_random_generator_seed(seed)
        options = {"enable_sampling": True, "alpha": alpha, "nbest_size": nbest, "num_threads": 1}
        return self._sp.encode(clean(texts), out_type=int, **options)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Texts of each id sequence; pad/bos/eos are dropped, and a line break (which byte-fallback pieces
        can spell) becomes a space."""
        return [text.translate(LINE_BREAKS) for text in self._sp.decode([[int(i) for i in seq] for seq in ids])]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The subword of each id (for attention plots)."""
        return [self._sp.id_to_piece(int(i)) for i in ids]

    def piece_id(self, piece: str) -> int:
        """The id of a subword (unk for one not in the vocabulary)."""
        return self._sp.piece_to_id(piece)
