"""The masked-LM head: transform, layernorm, output tied to the token embedding, bias."""

from __future__ import annotations

import keras
from keras import ops

from models.layers.feedforward import ACTIVATIONS
from models.layers.fused import tied_logits
from models.layers.initializers import bert_initializer


@keras.saving.register_keras_serializable(package="trimbert")
class MaskedLMHead(keras.layers.Layer):
    """Logits over the vocabulary at the masked positions.

    gather(sequence_output, positions) -> dense H -> E + activation -> layernorm
    -> matmul with the token embedding transposed (E x V, shared, not a new weight) + bias V.
    Its own parameters are ``models.params.masked_lm_head_parameters``.

    Args:
        vocabulary_size: V, the number of logits per position.
        embedding_dim: E, the width of the tied token embedding.
        token_embedding: the encoder's token ``Embedding`` layer (V x E) to tie to.
        activation: transform activation (``gelu``, ``gelu_approximate``, ``relu``).
        layer_norm_epsilon: epsilon of the transform layernorm.
    """

    def __init__(self, vocabulary_size: int, embedding_dim: int, token_embedding: keras.layers.Embedding,
                 activation: str = "gelu", layer_norm_epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.token_embedding = token_embedding
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.transform = keras.layers.Dense(
            embedding_dim, activation=ACTIVATIONS[activation], kernel_initializer=bert_initializer(),
            dtype=self.dtype_policy, name="transform")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="transform_layer_norm")

    def build(self, sequence_output_shape, mask_positions_shape=None):
        self.transform.build(sequence_output_shape)
        self.layer_norm.build(tuple(sequence_output_shape[:-1]) + (self.embedding_dim,))
        self.output_bias = self.add_weight(
            shape=(self.vocabulary_size,), initializer="zeros", name="output_bias")
        self.built = True

    def call(self, sequence_output, mask_positions):
        positions = ops.cast(mask_positions, "int32")[:, :, None]  # [B, M, 1]
        gathered = ops.take_along_axis(sequence_output, positions, axis=1)  # [B, M, H]
        hidden = self.layer_norm(self.transform(gathered))  # [B, M, E]
        embeddings = ops.cast(self.token_embedding.embeddings, hidden.dtype)  # [V, E]
        return tied_logits(hidden, embeddings, ops.cast(self.output_bias, hidden.dtype))  # [B, M, V]

    def compute_output_shape(self, sequence_output_shape, mask_positions_shape):
        return tuple(mask_positions_shape) + (self.vocabulary_size,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            # Re-tied by whoever rebuilds the head; serialised so the config is complete.
            "token_embedding": keras.layers.serialize(self.token_embedding),
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("token_embedding"), dict):
            config["token_embedding"] = keras.layers.deserialize(config["token_embedding"])
        return cls(**config)
