"""Exports say what they are: a standard BERT is `bert`, anything trimmed is `trimbert`, and both reload exactly.

Every shipped config keeps its trims (which blocks keep an FFN or a layernorm, the normaliser, an
embedding projection) but is shrunk in width so the test stays small.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from configs import schema
from models import build_encoder, from_pretrained, save_pretrained

SMALL = ["model.hidden_dim=32", "model.num_heads=2", "model.intermediate_dim=48", "model.vocabulary_size=64",
         "model.max_sequence_length=512", "model.dropout=0.0"]
STANDARD = {"bert_base", "bert_large", "bort", "bort_mlm", "bort_minilm", "mini", "tiny", "pmb_6l"}


def _small(name: str):
    config = schema.load(name)
    embedding = config.model.embedding_dim
    if embedding is None:
        return schema.load(name, SMALL)
    # Keep the shape's kind: an embedding as wide as the model stays so, a projection stays one.
    return schema.load(name, SMALL + [f"model.embedding_dim={32 if embedding == config.model.hidden_dim else 24}"])


def _inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    padding = np.ones((2, 16), dtype="int32")
    padding[1, 10:] = 0
    return {"token_ids": rng.integers(0, 64, (2, 16)).astype("int32"),
            "segment_ids": rng.integers(0, 2, (2, 16)).astype("int32"), "padding_mask": padding}


@pytest.mark.parametrize("name", schema.shipped_names())
def test_every_shipped_config_exports_under_its_true_label_and_reloads_exactly(name, tmp_path):
    encoder = build_encoder(_small(name))
    save_pretrained(encoder, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    expected = ("bert", "BertModel") if name in STANDARD else ("trimbert", "TrimbertEncoder")
    assert (written["model_type"], written["architectures"][0]) == expected, name
    reloaded = from_pretrained(tmp_path)
    inputs = _inputs()
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(np.asarray(reloaded(inputs)[key]), np.asarray(encoder(inputs)[key]))


def test_a_standard_export_loads_in_keras_hub_with_the_same_outputs(tmp_path):
    import keras_hub

    # keras-hub's BertBackbone uses the tanh GELU: the same activation on our side for parity.
    config = schema.load("bert_base", SMALL + ["model.num_layers=2", "model.activation=gelu_approximate"])
    encoder = build_encoder(config)
    save_pretrained(encoder, tmp_path)
    backbone = keras_hub.models.BertBackbone.from_preset(str(tmp_path))
    inputs = _inputs(1)
    np.testing.assert_allclose(np.asarray(backbone(inputs)["sequence_output"]),
                               np.asarray(encoder(inputs)["sequence_output"]), atol=1e-5)


def test_keras_hub_refuses_a_trimmed_export(tmp_path):
    import keras_hub

    # ReLU attention has exactly BERT's tensors: labelled bert, keras-hub would load it as softmax BERT.
    save_pretrained(build_encoder(_small("trimbert_relu")), tmp_path)
    with pytest.raises(Exception):  # noqa: B017 - keras-hub's own error type for an unknown model_type
        keras_hub.models.BertBackbone.from_preset(str(tmp_path))
