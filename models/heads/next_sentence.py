"""The next-sentence head: two logits from the pooled output."""

from __future__ import annotations

import keras

from models.layers.initializers import bert_initializer


@keras.saving.register_keras_serializable(package="trimbert")
class NextSentenceHead(keras.layers.Layer):
    """dense H -> 2 on ``pooled_output``; label 1 means segment B is a random sentence.

    Args:
        num_classes: number of logits (2 for BERT's next-sentence task).
    """

    def __init__(self, num_classes: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dense = keras.layers.Dense(
            num_classes, kernel_initializer=bert_initializer(), dtype=self.dtype_policy,
            name="next_sentence_dense")

    def build(self, pooled_shape):
        self.dense.build(pooled_shape)
        self.built = True

    def call(self, pooled_output):
        return self.dense(pooled_output)  # [B, 2]

    def compute_output_shape(self, pooled_shape):
        return tuple(pooled_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config
