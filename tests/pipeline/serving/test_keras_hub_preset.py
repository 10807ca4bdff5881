"""keras-hub loads our standard-BERT encoder and classifier from the presets we write, with the same outputs;
anything BertBackbone cannot express is refused, each property named."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import keras
import numpy as np
import pytest

import models
from configs.errors import TrimbertError
from configs.schema import TrimConfig
from pipeline.serving import keras_hub_preset

BATCH = {
    "token_ids": np.array([[101, 7592, 2088, 999, 102, 0, 0, 0], [101, 2023, 2003, 102, 2178, 6251, 102, 0]],
                          "int32"),
    "segment_ids": np.array([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 0]], "int32"),
    "padding_mask": np.array([[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0]], "int32"),
}


@pytest.fixture(scope="module")
def tokens(vocab_path):
    return pathlib.Path(vocab_path).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def bert_config(tiny_config):
    """The tiny encoder with two blocks, as keras-hub's BertBackbone computes: tanh GELU, epsilon 1e-12."""
    model = dataclasses.replace(tiny_config.model, num_layers=2, activation="gelu_approximate",
                                layer_norm_epsilon=1e-12)
    return dataclasses.replace(tiny_config, model=model)


def _randomised(model, seed=0):
    """Weights drawn wider than BERT's initialisation, so a misplaced tensor changes the outputs."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(np.asarray(variable.numpy()) + rng.normal(0.0, 0.2, variable.shape).astype("float32"))
    return model


def _real(outputs):
    return np.asarray(outputs)[BATCH["padding_mask"].astype(bool)]


def test_backbone_preset_round_trip(tmp_path, bert_config, tokens):
    import keras_hub

    keras.utils.set_random_seed(0)
    encoder = _randomised(models.build_encoder(bert_config))
    path = keras_hub_preset.export_keras_hub_backbone(encoder, tokens, True, tmp_path / "backbone")
    assert path == tmp_path / "backbone" and os.listdir(tmp_path) == ["backbone"]
    backbone = keras_hub.models.BertBackbone.from_preset(str(path))
    ours, theirs = encoder(BATCH), backbone(BATCH)
    np.testing.assert_allclose(_real(theirs["sequence_output"]), _real(ours["sequence_output"]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(theirs["pooled_output"]), np.asarray(ours["pooled_output"]), atol=1e-5)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(str(path))
    assert tokenizer.vocabulary_size() == len(tokens) and tokenizer.lowercase
    with pytest.raises(TrimbertError, match="already exists"):
        keras_hub_preset.export_keras_hub_backbone(encoder, tokens, True, path)


def test_a_pruned_encoder_is_written_as_a_shallower_bert(tmp_path, bert_config, tokens):
    import keras_hub

    pruned = dataclasses.replace(bert_config, trim=TrimConfig(drop_layers=(0,)))
    keras.utils.set_random_seed(1)
    encoder = _randomised(models.build_encoder(pruned), seed=1)
    backbone = keras_hub.models.BertBackbone.from_preset(
        str(keras_hub_preset.export_keras_hub_backbone(encoder, tokens, True, tmp_path / "pruned")))
    assert backbone.num_layers == 1
    np.testing.assert_allclose(_real(backbone(BATCH)["sequence_output"]), _real(encoder(BATCH)["sequence_output"]),
                               atol=1e-5)


@pytest.mark.parametrize("num_classes", [3, 1])
def test_classifier_preset_round_trip(tmp_path, bert_config, tokens, num_classes):
    import keras_hub

    keras.utils.set_random_seed(2)
    classifier = _randomised(models.build_classifier(models.build_encoder(bert_config), num_classes, dropout=0.2),
                             seed=2)
    path = keras_hub_preset.export_keras_hub_classifier(classifier, tokens, True, num_classes, tmp_path / "task",
                                                        sequence_length=32)
    task = keras_hub.models.BertTextClassifier.from_preset(str(path))
    assert task.num_classes == num_classes and task.dropout == 0.2
    assert task.preprocessor.sequence_length == 32
    expected = np.asarray(classifier(BATCH, training=False))
    np.testing.assert_allclose(np.asarray(task(BATCH, training=False)), expected, atol=1e-5)
    assert np.ptp(expected, axis=0).max() > 1e-2  # the rows do get different logits


def test_what_bert_backbone_cannot_express_is_refused_by_name(tmp_path, bert_config, tiny_config, tokens):
    trimmed = dataclasses.replace(
        bert_config, model=dataclasses.replace(bert_config.model, embedding_dim=16),
        trim=TrimConfig(ffn_blocks=(0,), attention_layernorm_blocks=(), ffn_layernorm_blocks=(1,),
                        attention_normalizer="relu"))
    with pytest.raises(TrimbertError) as refused:
        keras_hub_preset.export_keras_hub_backbone(models.build_encoder(trimmed), tokens, True, tmp_path / "trimmed")
    message = str(refused.value)
    for phrase in ("blocks [1] have no feed-forward sub-layer (trim.ffn_blocks)",
                   "blocks [0, 1] have no post-attention layernorm (trim.attention_layernorm_blocks)",
                   "blocks [0] have no post-feed-forward layernorm (trim.ffn_layernorm_blocks)",
                   "attention weights come from 'relu', not softmax",
                   "the embeddings are 16 wide, projected to the model's 32 (model.embedding_dim)"):
        assert phrase in message
    assert "activation" not in message  # the tanh GELU of bert_config is BertBackbone's
    exact_gelu = dataclasses.replace(tiny_config, model=dataclasses.replace(
        tiny_config.model, layer_norm_epsilon=1e-5, use_pooler=False))
    with pytest.raises(TrimbertError, match=r"model.activation is 'gelu'.*epsilon is 1e-05.*use_pooler is false"):
        keras_hub_preset.export_keras_hub_backbone(models.build_encoder(exact_gelu), tokens, True, tmp_path / "gelu")
    mean = models.build_classifier(models.build_encoder(bert_config), 2, pooling="mean")
    with pytest.raises(TrimbertError, match="pooling: mean"):
        keras_hub_preset.export_keras_hub_classifier(mean, tokens, True, 2, tmp_path / "mean")
    classifier = models.build_classifier(models.build_encoder(bert_config), 2)
    with pytest.raises(TrimbertError, match="num_classes 3 but the classifier's head has 2 outputs"):
        keras_hub_preset.export_keras_hub_classifier(classifier, tokens, True, 3, tmp_path / "classes")
    with pytest.raises(TrimbertError, match=r"lacks \[MASK\]"):
        keras_hub_preset.export_keras_hub_classifier(classifier, [t for t in tokens if t != "[MASK]"], True, 2,
                                                     tmp_path / "mask")
    assert os.listdir(tmp_path) == []  # nothing written by any refusal
