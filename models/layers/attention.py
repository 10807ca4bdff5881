"""Multi-head self-attention with a configurable normaliser (TrimBERT's softmax replacement).

With scores s = q k^T / sqrt(d) over keys j, a key mask m_j (1 real, 0 padding) and
n = sum_j m_j the number of unmasked keys, the attention weights w_j are
(docs/papers.md; masked keys always get w_j = 0):

    softmax   w_j = m_j exp(s_j) / sum_k m_k exp(s_k)
    relu      w_j = m_j ReLU(s_j) / n
    relu_sum  w_j = m_j ReLU(s_j) / (sum_k m_k ReLU(s_k) + eps),   eps = 1e-6
    sigmoid   w_j = m_j sigmoid(s_j - log n)

Each weight depends only on the unmasked keys, so appending padding never changes the
outputs at real tokens. The normaliser runs in float32 whatever the compute dtype.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from models.layers.dropout import Dropout
from models.layers.initializers import bert_initializer

RELU_SUM_EPSILON = 1e-6
_MASKED_SCORE = -1e9  # exp(-1e9 - max) is exactly 0 in float32


def _softmax(scores, key_mask, key_count):
    masked = scores + (1.0 - key_mask) * _MASKED_SCORE
    return ops.softmax(masked, axis=-1) * key_mask


def _relu(scores, key_mask, key_count):
    return ops.relu(scores) * key_mask / key_count


def _relu_sum(scores, key_mask, key_count):
    positive = ops.relu(scores) * key_mask
    return positive / (ops.sum(positive, axis=-1, keepdims=True) + RELU_SUM_EPSILON)


def _sigmoid(scores, key_mask, key_count):
    return ops.sigmoid(scores - ops.log(key_count)) * key_mask


NORMALIZERS = {"softmax": _softmax, "relu": _relu, "relu_sum": _relu_sum, "sigmoid": _sigmoid}


def normalize_scores(scores, padding_mask, normalizer: str):
    """Attention weights from scores, per the module docstring.

    Args:
        scores: float tensor [B, A, T_query, T_key].
        padding_mask: [B, T_key], 1 (or True) for real tokens, 0 for padding.
        normalizer: one of ``softmax``, ``relu``, ``relu_sum``, ``sigmoid``.

    Returns:
        float32 weights [B, A, T_query, T_key]; masked keys are exactly 0.
    """
    scores = ops.cast(scores, "float32")
    key_mask = ops.cast(padding_mask, "float32")[:, None, None, :]  # [B, 1, 1, T_key]
    key_count = ops.maximum(ops.sum(key_mask, axis=-1, keepdims=True), 1.0)  # [B, 1, 1, 1]
    return NORMALIZERS[normalizer](scores, key_mask, key_count)


@keras.saving.register_keras_serializable(package="trimbert")
class TrimmedSelfAttention(keras.layers.Layer):
    """Self-attention: query/key/value projections H -> H, A heads, output projection H -> H.

    Args:
        num_heads: attention heads A (H must be divisible by A).
        hidden_dim: model width H.
        normalizer: ``softmax``, ``relu``, ``relu_sum`` or ``sigmoid`` (module docstring).
        dropout: dropout rate on the attention weights.
    """

    def __init__(self, num_heads: int, hidden_dim: int, normalizer: str = "softmax",
                 dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if normalizer not in NORMALIZERS:
            raise ValueError(f"normalizer must be one of {sorted(NORMALIZERS)}, got {normalizer!r}")
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.normalizer = normalizer
        self.dropout = dropout
        self.head_dim = hidden_dim // num_heads
        self.query_dense, self.key_dense, self.value_dense, self.output_dense = (
            keras.layers.Dense(hidden_dim, kernel_initializer=bert_initializer(),
                               dtype=self.dtype_policy, name=name)
            for name in ("query", "key", "value", "attention_output"))
        self.weights_dropout = Dropout(
            dropout, dtype=self.dtype_policy, name="attention_dropout")

    def build(self, inputs_shape, padding_mask_shape=None):
        for dense in (self.query_dense, self.key_dense, self.value_dense, self.output_dense):
            dense.build(inputs_shape)
        self.built = True

    def _split_heads(self, tensor, batch_size, sequence_length):
        tensor = ops.reshape(tensor, (batch_size, sequence_length, self.num_heads, self.head_dim))
        return ops.transpose(tensor, (0, 2, 1, 3))  # [B, A, T, d]

    def call(self, inputs, padding_mask, training=None):
        batch_size, sequence_length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        # 1/sqrt(d) scales the queries [B, T, H], not the scores [B, A, T, T]: the same products
        # (exactly so when sqrt(d) is a power of two, as for d = 64), on fewer elements.
        query = self.query_dense(inputs) * (1.0 / math.sqrt(self.head_dim))
        query = self._split_heads(query, batch_size, sequence_length)  # [B, A, T, d]
        key = self._split_heads(self.key_dense(inputs), batch_size, sequence_length)  # [B, A, T, d]
        value = self._split_heads(self.value_dense(inputs), batch_size, sequence_length)  # [B, A, T, d]
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))  # [B, A, T, T]
        weights = normalize_scores(scores, padding_mask, self.normalizer)  # [B, A, T, T] float32
        weights = self.weights_dropout(ops.cast(weights, value.dtype), training=training)
        context = ops.matmul(weights, value)  # [B, A, T, d]
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)),
                              (batch_size, sequence_length, self.hidden_dim))  # [B, T, H]
        return self.output_dense(context)  # [B, T, H]

    def compute_output_shape(self, inputs_shape, padding_mask_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "normalizer": self.normalizer,
            "dropout": self.dropout,
        })
        return config
