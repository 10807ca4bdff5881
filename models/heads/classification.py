"""The fine-tuning head: dropout and one dense layer on the pooled output."""

from __future__ import annotations

import keras

from models.layers.initializers import bert_initializer


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
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="classifier_dropout")
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
