"""Encoder building blocks, one layer per file."""

from models.layers.attention import NORMALIZERS, TrimmedSelfAttention
from models.layers.block import TransformerBlock
from models.layers.embeddings import BertEmbeddings
from models.layers.feedforward import FeedForward

__all__ = ["NORMALIZERS", "BertEmbeddings", "FeedForward", "TransformerBlock", "TrimmedSelfAttention"]
