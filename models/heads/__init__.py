"""Task heads on the encoder, one per file."""

from models.heads.classification import POOLINGS, ClassificationHead, MaskedMeanPooling
from models.heads.masked_lm import MaskedLMHead
from models.heads.next_sentence import NextSentenceHead

__all__ = ["POOLINGS", "ClassificationHead", "MaskedMeanPooling", "MaskedLMHead", "NextSentenceHead"]
