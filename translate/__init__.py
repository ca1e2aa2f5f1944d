"""translate: three generations of neural machine translation, trained, compared and served."""

from translate.data import TranslationDataModule
from translate.tokenizer import SharedTokenizer

__all__ = ["SharedTokenizer", "TranslationDataModule"]
