"""Token + position + segment embeddings, layernorm, and the optional E -> H projection."""

from __future__ import annotations

import keras
from keras import ops

from models.layers.dropout import Dropout
from models.layers.initializers import bert_initializer


@keras.saving.register_keras_serializable(package="trimbert")
class BertEmbeddings(keras.layers.Layer):
    """BERT's input embeddings at width E, projected to the model width H when E != H.

    sum(token, learned position, segment) -> layernorm -> dropout -> [dense E -> H].
    Bort's released config needs the projection when its embedding width differs
    from the model width; with E = H there is none and this is BERT's layer.

    Args:
        vocabulary_size: rows of the token embedding (V).
        max_sequence_length: rows of the learned position embedding (P).
        num_segments: rows of the segment (token type) embedding.
        embedding_dim: embedding width E.
        hidden_dim: model width H.
        dropout: dropout rate after the layernorm.
        layer_norm_epsilon: epsilon of the embedding layernorm.
    """

    def __init__(self, vocabulary_size: int, max_sequence_length: int, num_segments: int,
                 embedding_dim: int, hidden_dim: int, dropout: float = 0.1,
                 layer_norm_epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim, embeddings_initializer=bert_initializer(),
            dtype=self.dtype_policy, name="token_embedding")
        self.segment_embedding = keras.layers.Embedding(
            num_segments, embedding_dim, embeddings_initializer=bert_initializer(),
            dtype=self.dtype_policy, name="segment_embedding")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="embeddings_layer_norm")
        self.dropout_layer = Dropout(dropout, dtype=self.dtype_policy, name="embeddings_dropout")
        self.projection = None
        if embedding_dim != hidden_dim:
            self.projection = keras.layers.Dense(
                hidden_dim, kernel_initializer=bert_initializer(), dtype=self.dtype_policy,
                name="embedding_projection")

    def build(self, token_ids_shape, segment_ids_shape=None):
        self.position_embeddings = self.add_weight(
            shape=(self.max_sequence_length, self.embedding_dim), initializer=bert_initializer(),
            name="position_embeddings")
        self.token_embedding.build(token_ids_shape)
        self.segment_embedding.build(token_ids_shape)
        embedded_shape = tuple(token_ids_shape) + (self.embedding_dim,)
        self.layer_norm.build(embedded_shape)
        if self.projection is not None:
            self.projection.build(embedded_shape)
        self.built = True

    def call(self, token_ids, segment_ids, training=None):
        sequence_length = ops.shape(token_ids)[1]
        tokens = self.token_embedding(token_ids)  # [B, T, E]
        positions = ops.slice(
            ops.convert_to_tensor(self.position_embeddings), (0, 0),
            (sequence_length, self.embedding_dim))  # [T, E]
        segments = self.segment_embedding(segment_ids)  # [B, T, E]
        embedded = tokens + ops.cast(positions[None, :, :], tokens.dtype) + segments  # [B, T, E]
        embedded = self.layer_norm(embedded)
        embedded = self.dropout_layer(embedded, training=training)
        if self.projection is not None:
            embedded = self.projection(embedded)  # [B, T, H]
        return embedded

    def compute_output_shape(self, token_ids_shape, segment_ids_shape=None):
        return tuple(token_ids_shape) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size,
            "max_sequence_length": self.max_sequence_length,
            "num_segments": self.num_segments,
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        })
        return config
