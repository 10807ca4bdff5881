"""Task heads on the encoder, one per file."""

from models.heads.classification import ClassificationHead
from models.heads.masked_lm import MaskedLMHead
from models.heads.next_sentence import NextSentenceHead

__all__ = ["ClassificationHead", "MaskedLMHead", "NextSentenceHead"]
