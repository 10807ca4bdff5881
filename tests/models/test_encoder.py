"""The encoder: parameter counts per trim, padding masks per normaliser, configs, heads."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from configs import schema as config_module
from models import build_encoder, compact_config
from models.encoder import Encoder
from models.heads import ClassificationHead, MaskedLMHead, MaskedMeanPooling, NextSentenceHead
from models.layers import BertEmbeddings, FeedForward, TransformerBlock, TrimmedSelfAttention
from models.layers.attention import RELU_SUM_EPSILON, normalize_scores
from models.params import count_parameters, feedforward_parameters, masked_lm_head_parameters
from models.tasks import build_classifier, build_pretraining_model

SHIPPED = [
    "bert_base",
    "bert_large",
    "bort",
    "pmb_6l",
    "tiny",
    "trimbert",
    "trimbert_ffn_half",
    "trimbert_half_ln",
    "trimbert_no_ffn",
    "trimbert_relu",
]
# Small dimensions keep the per-trim checks fast; Bort keeps an embedding width != H.
SMALL = [
    "model.vocabulary_size=97",
    "model.hidden_dim=48",
    "model.intermediate_dim=64",
    "model.max_sequence_length=128",
]


def small(name: str, *overrides: str) -> config_module.Config:
    extra = ["model.embedding_dim=24"] if name == "bort" else []
    return config_module.load(name, [*SMALL, *extra, *overrides])


def inputs(token_ids: np.ndarray, padding_mask: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "token_ids": token_ids.astype("int32"),
        "segment_ids": np.zeros_like(token_ids, dtype="int32"),
        "padding_mask": padding_mask.astype("int32"),
    }


# ---------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_small_shipped_config_count_matches_analytic(name):
    config = small(name)
    assert build_encoder(config).count_params() == count_parameters(config).total


@pytest.mark.slow  # builds every shipped config at full size (BERT-Large included): about a minute
def test_full_size_shipped_configs_match_analytic_count():
    # Construction only (no forward pass); bert_base must be the docs/papers.md figure.
    for name in SHIPPED:
        config = config_module.load(name)
        encoder = build_encoder(config)
        assert encoder.count_params() == count_parameters(config).total, name
        if name == "bert_base":
            assert encoder.count_params() == 109_482_240
        del encoder
        keras.backend.clear_session()


def test_each_trim_changes_the_built_count_by_the_analytic_amount():
    base = small("bert_base", "model.num_layers=4", "model.num_heads=4")
    hidden, intermediate = base.model.hidden_dim, base.model.intermediate_dim
    base_count = build_encoder(base).count_params()

    def built(**trim):
        return build_encoder(
            dataclasses.replace(base, trim=dataclasses.replace(base.trim, **trim))
        ).count_params()

    # One FFN gone: its weights and biases plus its layernorm (docs/papers.md: 4,722,432 at BERT-Base).
    assert (
        base_count - built(ffn_blocks=(0, 1, 3)) == feedforward_parameters(hidden, intermediate) + 2 * hidden
    )
    assert base_count - built(attention_layernorm_blocks=(0, 2, 3)) == 2 * hidden
    assert base_count - built(ffn_layernorm_blocks=(1, 2, 3)) == 2 * hidden
    assert built(attention_normalizer="relu") == base_count
    assert base_count - built(drop_layers=(3,)) == count_parameters(base).blocks[3]
    # A block without an FFN has no FFN layernorm to remove.
    assert built(ffn_blocks=(0, 1, 3)) == built(ffn_blocks=(0, 1, 3), ffn_layernorm_blocks=(0, 1, 3))
    assert feedforward_parameters(768, 3072) == 4_722_432


def test_embedding_projection_only_when_widths_differ():
    projected = build_encoder(small("bort"))
    assert projected.embeddings.projection is not None
    assert projected.embeddings.token_embedding.embeddings.shape == (97, 24)
    same_width = build_encoder(small("bort", "model.embedding_dim=48"))
    assert same_width.embeddings.projection is None


# ---------------------------------------------------------------------------
# Attention normalisers and padding
# ---------------------------------------------------------------------------


def test_normalizer_formulas_and_masked_keys_are_zero():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 3, 4, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    real = mask[:, None, None, :].astype(bool)
    count = mask.sum(-1)[:, None, None, None].astype("float32")
    relu = np.maximum(scores, 0) * real
    expected = {
        "relu": relu / count,
        "relu_sum": relu / (relu.sum(-1, keepdims=True) + RELU_SUM_EPSILON),
        "sigmoid": real / (1 + np.exp(-(scores - np.log(count)))),
    }
    exponent = np.where(real, np.exp(scores), 0.0)
    expected["softmax"] = exponent / exponent.sum(-1, keepdims=True)
    for name, want in expected.items():
        got = np.asarray(normalize_scores(scores, mask, name))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        assert np.all(got[:, :, :, 4:][0] == 0.0), name


def test_the_configured_normalizer_reaches_every_attention_layer():
    """The formulas above are only used if trim.attention_normalizer gets to the layers: with the
    same weights and input, a relu encoder and a softmax encoder must give different outputs, and
    every attention layer must name the configured normaliser."""
    rng = np.random.default_rng(2)
    batch = inputs(rng.integers(1, 97, size=(2, 9)), np.ones((2, 9)))
    outputs, softmax_weights = {}, None
    for normalizer in ("softmax", "relu"):
        encoder = build_encoder(small("tiny", "model.dropout=0.0", "model.num_layers=2",
                                      f"trim.attention_normalizer={normalizer}"))
        attention = [layer for layer in encoder._flatten_layers() if isinstance(layer, TrimmedSelfAttention)]
        assert len(attention) == 2 and {layer.normalizer for layer in attention} == {normalizer}
        if softmax_weights is None:
            softmax_weights = encoder.get_weights()
        else:  # the softmax encoder's weights, so only the normaliser differs
            encoder.set_weights(softmax_weights)
        outputs[normalizer] = np.asarray(encoder(batch)["sequence_output"])
    assert np.abs(outputs["relu"] - outputs["softmax"]).max() > 1e-3


@pytest.mark.parametrize("normalizer", ["softmax", "relu", "relu_sum", "sigmoid"])
def test_padding_does_not_change_real_token_outputs(normalizer):
    config = small(
        "tiny", "model.dropout=0.0", "model.num_layers=2", f"trim.attention_normalizer={normalizer}"
    )
    encoder = build_encoder(config)
    rng = np.random.default_rng(1)
    real_tokens = rng.integers(1, 97, size=(2, 7))
    short = encoder(inputs(real_tokens, np.ones((2, 7))))
    # Pad to 12 with arbitrary (non-zero) ids: only the mask may hide them.
    padded_tokens = np.concatenate([real_tokens, rng.integers(1, 97, size=(2, 5))], axis=1)
    padded_mask = np.concatenate([np.ones((2, 7)), np.zeros((2, 5))], axis=1)
    padded = encoder(inputs(padded_tokens, padded_mask))
    np.testing.assert_allclose(
        np.asarray(padded["sequence_output"])[:, :7], np.asarray(short["sequence_output"]), atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(padded["pooled_output"]), np.asarray(short["pooled_output"]), atol=1e-5
    )


def test_mask_matters():
    encoder = build_encoder(small("tiny", "model.dropout=0.0"))
    tokens = np.random.default_rng(2).integers(1, 97, size=(1, 8))
    full = np.asarray(encoder(inputs(tokens, np.ones((1, 8))))["sequence_output"])
    half = np.asarray(encoder(inputs(tokens, np.array([[1, 1, 1, 1, 0, 0, 0, 0]])))["sequence_output"])
    assert np.abs(full[:, :4] - half[:, :4]).max() > 1e-3


# ---------------------------------------------------------------------------
# Configs round trip
# ---------------------------------------------------------------------------


def test_encoder_get_config_round_trip_and_keras_file(tmp_path):
    config = small(
        "trimbert",
        "model.num_layers=3",
        "model.num_heads=4",
        "trim.ffn_blocks=[0]",
        "trim.drop_layers=[1]",
        "model.dropout=0.0",
    )
    encoder = build_encoder(config)
    assert encoder.model_config is config.model and encoder.trim_config is config.trim
    assert encoder.get_config() == {
        "name": "encoder",
        "trainable": True,
        "model_config": {
            "vocabulary_size": 97, "num_layers": 3, "num_heads": 4, "hidden_dim": 48, "intermediate_dim": 64,
            "embedding_dim": None, "max_sequence_length": 128, "num_segments": 2, "dropout": 0.0,
            "layer_norm_epsilon": 1e-12, "activation": "gelu", "use_pooler": True,
        },
        "trim_config": {
            "ffn_blocks": [0], "attention_layernorm_blocks": [], "ffn_layernorm_blocks": None,
            "attention_normalizer": "relu", "drop_layers": [1],
        },
    }
    clone = Encoder.from_config(encoder.get_config())
    assert clone.get_config() == encoder.get_config()
    assert clone.count_params() == encoder.count_params() == count_parameters(config).total
    assert clone.to_config().trim == config.trim and clone.to_config().model == config.model

    path = tmp_path / "encoder.keras"
    encoder.save(path)
    loaded = keras.saving.load_model(path)
    batch = inputs(np.arange(1, 11).reshape(2, 5) % 97, np.ones((2, 5)))
    np.testing.assert_array_equal(
        np.asarray(loaded(batch)["sequence_output"]), np.asarray(encoder(batch)["sequence_output"])
    )


@pytest.mark.parametrize(
    "layer",
    [
        BertEmbeddings(97, 16, 2, 8, 12, 0.1, 1e-5, name="embeddings"),
        TrimmedSelfAttention(2, 8, "sigmoid", 0.1, name="attention"),
        FeedForward(8, 16, "gelu_approximate", 0.2, name="feedforward"),
        TransformerBlock(
            2,
            8,
            16,
            "relu_sum",
            use_feedforward=True,
            use_attention_layernorm=False,
            use_feedforward_layernorm=True,
            activation="relu",
            dropout=0.0,
            layer_norm_epsilon=1e-6,
            name="block",
        ),
        NextSentenceHead(name="next_sentence"),
        ClassificationHead(3, 0.2, name="classifier"),
    ],
)
def test_layer_get_config_round_trip(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


def test_masked_lm_head_get_config_round_trip():
    embedding = keras.layers.Embedding(97, 8, name="token_embedding")
    head = MaskedLMHead(97, 8, embedding, "gelu", 1e-12, name="masked_lm_head")
    config = head.get_config()
    assert MaskedLMHead.from_config(config).get_config() == config


def test_compact_config_renumbers_blocks():
    config = small(
        "bert_base",
        "model.num_layers=6",
        "model.num_heads=4",
        "trim.ffn_blocks=[0,2,5]",
        "trim.drop_layers=[1,2]",
    )
    compact = compact_config(config)
    assert compact.model.num_layers == 4 and compact.trim.drop_layers == ()
    assert compact.trim.ffn_blocks == (0, 3)
    assert count_parameters(compact).total == count_parameters(config).total


# ---------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------


def test_pretraining_model_ties_output_to_token_embedding():
    config = small("bort", "model.dropout=0.0")
    encoder = build_encoder(config)
    model = build_pretraining_model(encoder)
    hidden = config.model.hidden_dim
    assert model.count_params() == (
        count_parameters(config).total + masked_lm_head_parameters(config) + 2 * hidden + 2
    )
    batch = inputs(np.arange(1, 17).reshape(2, 8), np.ones((2, 8)))
    batch["mask_positions"] = np.array([[1, 3], [0, 7]], dtype="int32")
    outputs = model(batch)
    assert outputs["mlm_logits"].shape == (2, 2, 97) and outputs["nsp_logits"].shape == (2, 2)
    # Changing the token embedding changes the masked-LM logits: the weights are shared.
    embedding = encoder.token_embedding.embeddings
    head = model.get_layer("masked_lm_head")
    encoder_inputs = {name: batch[name] for name in ("token_ids", "segment_ids", "padding_mask")}
    sequence = np.asarray(encoder(encoder_inputs)["sequence_output"])
    logits_before = np.asarray(head(sequence, batch["mask_positions"]))
    embedding.assign(np.asarray(embedding) * 2.0)
    logits_after = np.asarray(head(sequence, batch["mask_positions"]))
    assert not np.allclose(logits_before, logits_after)


def test_classifier_and_regression_heads():
    encoder = build_encoder(small("tiny"))
    batch = inputs(np.arange(1, 9).reshape(2, 4), np.ones((2, 4)))
    assert build_classifier(encoder, 3)(batch).shape == (2, 3)
    regression = build_classifier(encoder, 1)
    assert regression(batch).shape == (2, 1)
    assert regression.count_params() - encoder.count_params() == config_hidden(encoder) + 1


def test_mean_pooling_averages_only_real_tokens():
    sequence = np.arange(24, dtype="float32").reshape(2, 3, 4)
    padding_mask = np.array([[1, 1, 0], [1, 1, 1]])
    pooled = np.asarray(MaskedMeanPooling()(sequence, padding_mask))
    np.testing.assert_allclose(pooled[0], (sequence[0, 0] + sequence[0, 1]) / 2)
    np.testing.assert_allclose(pooled[1], sequence[1].mean(axis=0))


def test_mean_pooled_classifier_ignores_padding_and_the_pooler():
    encoder = build_encoder(small("tiny"))
    classifier = build_classifier(encoder, 2, dropout=0.0, pooling="mean")
    short = inputs(np.array([[5, 6, 7]]), np.ones((1, 3)))
    padded = inputs(np.array([[5, 6, 7, 0, 0]]), np.array([[1, 1, 1, 0, 0]]))
    np.testing.assert_allclose(np.asarray(classifier(short)), np.asarray(classifier(padded)), atol=1e-5)
    # Mean pooling reads the token vectors, so BERT's pooler does not matter; cls pooling does.
    cls_classifier = build_classifier(encoder, 2, dropout=0.0, pooling="cls")
    before_mean, before_cls = np.asarray(classifier(short)), np.asarray(cls_classifier(short))
    encoder.pooler.kernel.assign(np.asarray(encoder.pooler.kernel) * 3.0)
    np.testing.assert_allclose(np.asarray(classifier(short)), before_mean)
    assert not np.allclose(np.asarray(cls_classifier(short)), before_cls)
    with pytest.raises(ValueError, match="pooling"):
        build_classifier(encoder, 2, pooling="max")


def config_hidden(encoder: Encoder) -> int:
    return encoder.model_config.hidden_dim
