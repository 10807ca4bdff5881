"""Encoder + heads as Keras models for pre-training and fine-tuning.

Both keep the encoder's input dict and add what the task needs; the encoder stays a
sub-model, so its weights can be saved with ``models.save_pretrained`` afterwards.
"""

from __future__ import annotations

import keras

from models.encoder import Encoder
from models.heads import POOLINGS, ClassificationHead, MaskedLMHead, MaskedMeanPooling, NextSentenceHead


def _encoder_inputs() -> dict[str, keras.KerasTensor]:
    return {name: keras.Input(shape=(None,), dtype="int32", name=name)
            for name in ("token_ids", "segment_ids", "padding_mask")}


def build_pretraining_model(encoder: Encoder, next_sentence: bool = True,
                            hidden_width: int | None = None) -> keras.Model:
    """Masked-LM (and optionally next-sentence) model around an encoder.

    inputs: the encoder's three plus ``mask_positions`` [B, M] int32.
    outputs: ``mlm_logits`` [B, M, V], with ``next_sentence`` ``nsp_logits`` [B, 2], and with
    ``hidden_width`` ``hidden`` [B, T, hidden_width].

    Args:
        encoder: the encoder; its token embedding is tied to the masked-LM output.
        next_sentence: add BERT's next-sentence head on ``pooled_output``.
        hidden_width: also output the sequence output for hidden-state distillation, through a
            learned projection (``hidden_projection``) when this differs from the encoder's width.
    """
    model_config = encoder.model_config
    inputs = _encoder_inputs()
    inputs["mask_positions"] = keras.Input(shape=(None,), dtype="int32", name="mask_positions")
    encoded = encoder({name: inputs[name] for name in ("token_ids", "segment_ids", "padding_mask")})
    masked_lm_head = MaskedLMHead(
        vocabulary_size=model_config.vocabulary_size,
        embedding_dim=model_config.embedding_dim or model_config.hidden_dim,
        token_embedding=encoder.token_embedding, activation=model_config.activation,
        layer_norm_epsilon=model_config.layer_norm_epsilon, name="masked_lm_head")
    outputs = {"mlm_logits": masked_lm_head(encoded["sequence_output"], inputs["mask_positions"])}
    if next_sentence:
        outputs["nsp_logits"] = NextSentenceHead(name="next_sentence_head")(encoded["pooled_output"])
    if hidden_width is not None:
        hidden = encoded["sequence_output"]
        if hidden_width != model_config.hidden_dim:
            hidden = keras.layers.Dense(hidden_width, name="hidden_projection")(hidden)
        outputs["hidden"] = hidden
    return keras.Model(inputs=inputs, outputs=outputs, name="pretraining_model")


def build_classifier(encoder: Encoder, num_classes: int, dropout: float = 0.1, pooling: str = "cls") -> keras.Model:
    """Classification (C >= 2) or regression (C = 1) model on one vector per example.

    Args:
        encoder: the (pre-trained) encoder.
        num_classes: output units; 1 for a regression task such as STS-B.
        dropout: dropout rate before the output layer.
        pooling: ``cls``: the encoder's ``pooled_output`` (BERT's pooler on [CLS]);
            ``mean``: the mean of the non-padding token vectors of ``sequence_output``
            (this marks the encoder's pooler, which it does not use, as not trainable).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    inputs = _encoder_inputs()
    encoded = encoder(inputs)
    if pooling == "cls":
        pooled = encoded["pooled_output"]
    else:
        pooled = MaskedMeanPooling(name="mean_pooling")(encoded["sequence_output"], inputs["padding_mask"])
        if encoder.pooler is not None:
            encoder.pooler.trainable = False  # unused: no gradient reaches it
    logits = ClassificationHead(num_classes, dropout, name="classification_head")(pooled)
    return keras.Model(inputs=inputs, outputs=logits, name="classifier")
