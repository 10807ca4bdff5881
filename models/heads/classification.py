"""The fine-tuning head: dropout and one dense layer on a pooled vector; the two poolings."""

from __future__ import annotations

import typing

import keras

from configs.schema import Pooling
from models.layers.dropout import Dropout
from models.layers.initializers import bert_initializer

POOLINGS = typing.get_args(Pooling)  # ("cls", "mean"): the config field's choices


@keras.saving.register_keras_serializable(package="trimbert")
class MaskedMeanPooling(keras.layers.Layer):
    """The mean of the non-padding rows of ``sequence_output``: [B, T, H], [B, T] -> [B, H].

    Sentence-embedding checkpoints (e.g. sentence-transformers' all-MiniLM-L6-v2) are trained
    on this vector, not on BERT's pooler.
    """

    def call(self, sequence_output, padding_mask):
        mask = keras.ops.expand_dims(keras.ops.cast(padding_mask, sequence_output.dtype), -1)  # [B, T, 1]
        total = keras.ops.sum(sequence_output * mask, axis=1)  # [B, H]
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, sequence_output_shape, padding_mask_shape):
        return (sequence_output_shape[0], sequence_output_shape[-1])


@keras.saving.register_keras_serializable(package="trimbert")
class ClassificationHead(keras.layers.Layer):
    """dropout -> dense H -> C on ``pooled_output``; C = 1 is a regression head (e.g. STS-B).

    Args:
        num_classes: output units C (1 for regression).
        dropout: dropout rate before the dense layer.
    """

    def __init__(self, num_classes: int, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.dropout = dropout
        self.dropout_layer = Dropout(dropout, dtype=self.dtype_policy, name="classifier_dropout")
        self.dense = keras.layers.Dense(
            num_classes, kernel_initializer=bert_initializer(), dtype=self.dtype_policy,
            name="classifier_dense")

    def build(self, pooled_shape):
        self.dense.build(pooled_shape)
        self.built = True

    def call(self, pooled_output, training=None):
        return self.dense(self.dropout_layer(pooled_output, training=training))  # [B, C]

    def compute_output_shape(self, pooled_shape):
        return tuple(pooled_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "dropout": self.dropout})
        return config
