"""translate: three generations of neural machine translation, trained, compared and served."""

from translate.data import TranslationDataModule
from translate.tokenizer import SharedTokenizer
from translate.translator import Translation, Translator

__all__ = ["SharedTokenizer", "Translation", "TranslationDataModule", "Translator"]
