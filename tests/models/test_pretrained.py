"""Pretrained import/export: keras-hub parity on MiniLM, exact save/load round trips."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file

from configs import schema as config_module
from configs.errors import TrimbertError
from models import build_encoder, from_pretrained, save_pretrained
from models.pretrained import normalize_key, weight_table
from models.sample_text import encode_texts

SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "She played the violin at the concert last night, and the audience loved it.",
    "Photosynthesis converts light energy into chemical energy.",
    "Where is the nearest train station?",
    "A surprisingly moving film with a weak second half.",
]


def encoder_inputs(batch):
    return {name: batch[name] for name in ("token_ids", "segment_ids", "padding_mask")}


def test_parity_with_keras_hub_bert_backbone(minilm_dir):
    import keras_hub

    batch = encode_texts(SENTENCES, minilm_dir / "vocab.txt", sequence_length=24)
    assert batch["padding_mask"].sum(1).min() < 24  # some rows are padded
    reference = keras_hub.models.BertBackbone.from_preset(str(minilm_dir))
    expected = np.asarray(reference(batch)["sequence_output"])
    # keras-hub's BertBackbone hard-codes the tanh GELU; the checkpoint says exact "gelu".
    ours = from_pretrained(minilm_dir, {"activation": "gelu_approximate"})
    got = ours(batch)
    real = batch["padding_mask"].astype(bool)
    assert np.abs(np.asarray(got["sequence_output"]) - expected)[real].max() <= 1e-4
    np.testing.assert_allclose(
        np.asarray(got["pooled_output"]), np.asarray(reference(batch)["pooled_output"]), atol=1e-4
    )


def _numpy_bert(tensors, hf_config, batch):
    """An independent NumPy forward pass of Hugging Face's BertModel (exact erf GELU)."""
    eps = hf_config["layer_norm_eps"]
    heads = hf_config["num_attention_heads"]

    def layernorm(x, prefix):
        mean = x.mean(-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + eps) * tensors[f"{prefix}.weight"] + tensors[f"{prefix}.bias"]

    def dense(x, prefix):
        return x @ tensors[f"{prefix}.weight"].T + tensors[f"{prefix}.bias"]

    erf = np.vectorize(math.erf)
    ids, mask = batch["token_ids"], batch["padding_mask"].astype(np.float64)
    length = ids.shape[1]
    x = (
        tensors["embeddings.word_embeddings.weight"][ids]
        + tensors["embeddings.position_embeddings.weight"][:length]
        + tensors["embeddings.token_type_embeddings.weight"][batch["segment_ids"]]
    )
    x = layernorm(x, "embeddings.LayerNorm")
    for index in range(hf_config["num_hidden_layers"]):
        prefix = f"encoder.layer.{index}"

        def split(t):
            return t.reshape(t.shape[0], length, heads, -1).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(x, f"{prefix}.attention.self.{name}")) for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + (1 - mask[:, None, None, :]) * -1e9
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        x = layernorm(
            x + dense(context, f"{prefix}.attention.output.dense"), f"{prefix}.attention.output.LayerNorm"
        )
        inner = dense(x, f"{prefix}.intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / math.sqrt(2)))
        x = layernorm(x + dense(inner, f"{prefix}.output.dense"), f"{prefix}.output.LayerNorm")
    return x


def test_exact_gelu_load_matches_a_numpy_bert(minilm_dir):
    batch = encode_texts(SENTENCES[:3], minilm_dir / "vocab.txt", sequence_length=16)
    tensors = {
        key: value.astype(np.float64)
        for key, value in load_file(str(minilm_dir / "model.safetensors")).items()
        if value.dtype != np.int64
    }
    expected = _numpy_bert(tensors, json.loads((minilm_dir / "config.json").read_text()), batch)
    got = np.asarray(from_pretrained(minilm_dir)(batch)["sequence_output"])
    real = batch["padding_mask"].astype(bool)
    assert np.abs(got - expected)[real].max() <= 1e-4


def test_save_and_load_round_trip_is_exact(tmp_path, vocab_path):
    config = config_module.load(
        "bort",
        [
            "model.vocabulary_size=101",
            "model.hidden_dim=32",
            "model.intermediate_dim=40",
            "model.num_layers=5",
            "model.num_heads=4",
            "model.embedding_dim=24",
            "model.max_sequence_length=128",
            "trim.ffn_blocks=[0,3,4]",
            "trim.attention_layernorm_blocks=[1,3]",
            "trim.ffn_layernorm_blocks=[4]",
            "trim.attention_normalizer=sigmoid",
            "trim.drop_layers=[2]",
            "model.activation=relu",
            "model.layer_norm_epsilon=1e-7",
        ],
    )
    encoder = build_encoder(config)
    path = save_pretrained(encoder, tmp_path / "saved", vocabulary_path=vocab_path)
    assert (path / "vocab.txt").is_file()
    loaded = from_pretrained(path)
    assert len(loaded.blocks) == 4 and loaded.model_config.num_layers == 4
    assert loaded.trim_config.drop_layers == () and loaded.trim_config.ffn_blocks == (0, 2, 3)
    assert loaded.trim_config.attention_normalizer == "sigmoid"
    assert loaded.model_config.activation == "relu" and loaded.model_config.layer_norm_epsilon == 1e-7
    before = [np.asarray(variable) for _, variable, _ in weight_table(encoder)]
    after = [np.asarray(variable) for _, variable, _ in weight_table(loaded)]
    assert len(before) == len(after) == len(loaded.weights)
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)
    batch = {
        "token_ids": np.arange(1, 21, dtype="int32").reshape(2, 10),
        "segment_ids": np.zeros((2, 10), "int32"),
        "padding_mask": np.ones((2, 10), "int32"),
    }
    np.testing.assert_array_equal(
        np.asarray(encoder(batch, training=False)["sequence_output"]),
        np.asarray(loaded(batch, training=False)["sequence_output"]),
    )
    # A second save of the reloaded model writes byte-identical tensors.
    again = save_pretrained(loaded, tmp_path / "again")
    first, second = load_file(str(path / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[key], second[key]) for key in first)


def test_untrimmed_save_uses_standard_bert_names(tmp_path):
    config = config_module.load(
        "tiny",
        ["model.vocabulary_size=50", "model.hidden_dim=16", "model.num_heads=2", "model.intermediate_dim=24"],
    )
    path = save_pretrained(build_encoder(config), tmp_path / "plain")
    hf_config = json.loads((path / "config.json").read_text())
    assert hf_config["model_type"] == "bert" and hf_config["hidden_size"] == 16
    keys = set(load_file(str(path / "model.safetensors")))
    assert "encoder.layer.1.output.LayerNorm.weight" in keys and "pooler.dense.bias" in keys
    assert not any("projection" in key for key in keys)


def test_keras_hub_preset_directory(tmp_path):
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=12,
        max_sequence_length=16,
    )
    backbone.save_to_preset(str(tmp_path / "preset"))
    ours = from_pretrained(tmp_path / "preset")
    assert ours.count_params() == backbone.count_params()
    batch = {
        "token_ids": np.array([[2, 7, 9, 3, 0, 0]], "int32"),
        "segment_ids": np.zeros((1, 6), "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 0, 0]], "int32"),
    }
    np.testing.assert_allclose(
        np.asarray(ours(batch)["sequence_output"])[:, :4],
        np.asarray(backbone(batch)["sequence_output"])[:, :4],
        atol=1e-5,
    )


def test_checkpoint_name_variants_and_errors(tmp_path):
    assert (
        normalize_key("bert.encoder.layer.0.output.LayerNorm.gamma")
        == "encoder.layer.0.output.LayerNorm.weight"
    )
    assert normalize_key("embeddings.LayerNorm.beta") == "embeddings.LayerNorm.bias"
    with pytest.raises(TrimbertError, match="no config.json"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8, "hidden_act": "swish"}))
    with pytest.raises(TrimbertError, match="hidden_act"):
        from_pretrained(tmp_path)
    keras.backend.clear_session()


def test_vocabulary_case_is_detected_from_its_tokens(tmp_path):
    from models import pretrained

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert not pretrained.vocabulary_is_cased(specials + ["the", "##s", "café"])
    assert pretrained.vocabulary_is_cased(specials + ["the", "The", "##s"])
    # A folder with a cased vocab.txt and no tokenizer config keeps case (it used to lower-case).
    (tmp_path / "vocab.txt").write_text("\n".join(specials + ["The", "fox"]) + "\n")
    assert pretrained.lowercases(tmp_path) is False
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    assert pretrained.lowercases(tmp_path) is True  # a declared setting wins


def test_weight_selection_takes_the_leading_slice_of_the_first_blocks():
    """A 2 x 16 encoder from a 3 x 32 one: each weight is the larger one's [:rows, :cols] in Hugging Face layout
    (independent of our weight table's transposes), blocks 0 and 1 from blocks 0 and 1; without select, refused."""
    from models.pretrained import assign_matching, encoder_tensors

    small = ["model.vocabulary_size=50", "model.max_sequence_length=16", "data.seq_len=16"]
    keras.utils.set_random_seed(1)
    large = build_encoder(config_module.load("tiny", [*small, "model.num_layers=3", "model.hidden_dim=32",
                                                      "model.intermediate_dim=64", "model.num_heads=2"]))
    student = build_encoder(config_module.load("tiny", [*small, "model.num_layers=2", "model.hidden_dim=16",
                                                        "model.intermediate_dim=24", "model.num_heads=2"]))
    source = encoder_tensors(large)
    with pytest.raises(TrimbertError, match="has shape"):
        assign_matching(weight_table(student), source, "large")
    report = assign_matching(weight_table(student), source, "large", select=True)
    assert report["new"] == [] and all(name.startswith("encoder.layer.2.") for name in report["dropped"])
    selected = encoder_tensors(student)
    for name, value in selected.items():
        expected = source[name][tuple(slice(0, size) for size in value.shape)]
        np.testing.assert_array_equal(value, expected, err_msg=name)
    # e.g. the query kernel, stored [out, in] in Hugging Face layout: the first 16 outputs of the first 16 inputs.
    np.testing.assert_array_equal(selected["encoder.layer.1.attention.self.query.weight"],
                                  source["encoder.layer.1.attention.self.query.weight"][:16, :16])
