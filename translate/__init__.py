"""translate: three generations of neural machine translation, trained, compared and served.

The names below are imported when first used, so that `from translate import Translator` loads no
training code (no `datasets`)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SharedTokenizer": "translate.tokenizer",
    "Translation": "translate.translator",
    "TranslationDataModule": "translate.data",
    "Translator": "translate.translator",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'translate' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
