"""Teachers and starting points from checkpoints users have: Hugging Face folders with heads, encoder-only ones."""

import json
import math

import numpy as np
import pytest

from configs import schema as config_lib
from configs.errors import TrimbertError

VOCABULARY, HIDDEN, LAYERS, INTERMEDIATE = 50, 16, 2, 32


def hf_bert_tensors(rng, heads=True, bias_name="cls.predictions.bias", prefix="bert."):
    """Random BertForPreTraining tensors under Hugging Face's names ([out, in] dense weights)."""
    def normal(*shape):
        return rng.normal(0.0, 0.2, size=shape).astype(np.float32)

    tensors = {
        f"{prefix}embeddings.word_embeddings.weight": normal(VOCABULARY, HIDDEN),
        f"{prefix}embeddings.position_embeddings.weight": normal(128, HIDDEN),
        f"{prefix}embeddings.token_type_embeddings.weight": normal(2, HIDDEN),
        f"{prefix}embeddings.LayerNorm.weight": 1.0 + normal(HIDDEN),
        f"{prefix}embeddings.LayerNorm.bias": normal(HIDDEN),
        f"{prefix}pooler.dense.weight": normal(HIDDEN, HIDDEN),
        f"{prefix}pooler.dense.bias": normal(HIDDEN),
    }
    for layer in range(LAYERS):
        block = f"{prefix}encoder.layer.{layer}"
        for name, (out_dim, in_dim) in {
                "attention.self.query": (HIDDEN, HIDDEN), "attention.self.key": (HIDDEN, HIDDEN),
                "attention.self.value": (HIDDEN, HIDDEN), "attention.output.dense": (HIDDEN, HIDDEN),
                "intermediate.dense": (INTERMEDIATE, HIDDEN), "output.dense": (HIDDEN, INTERMEDIATE)}.items():
            tensors[f"{block}.{name}.weight"] = normal(out_dim, in_dim)
            tensors[f"{block}.{name}.bias"] = normal(out_dim)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[f"{block}.{name}.weight"] = 1.0 + normal(HIDDEN)
            tensors[f"{block}.{name}.bias"] = normal(HIDDEN)
    if heads:
        tensors.update({
            "cls.predictions.transform.dense.weight": normal(HIDDEN, HIDDEN),
            "cls.predictions.transform.dense.bias": normal(HIDDEN),
            "cls.predictions.transform.LayerNorm.weight": 1.0 + normal(HIDDEN),
            "cls.predictions.transform.LayerNorm.bias": normal(HIDDEN),
            bias_name: normal(VOCABULARY),
            # Tied, as BERT's: the decoder weight is the word embedding.
            "cls.predictions.decoder.weight": tensors[f"{prefix}embeddings.word_embeddings.weight"].copy(),
            "cls.seq_relationship.weight": normal(2, HIDDEN),
            "cls.seq_relationship.bias": normal(2),
        })
    return tensors


def write_hf_folder(path, tensors):
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": VOCABULARY,
        "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": 2,
        "intermediate_size": INTERMEDIATE, "hidden_act": "gelu", "max_position_embeddings": 128,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1}))
    save_file(tensors, str(path / "model.safetensors"))
    return path


def numpy_masked_lm_logits(sequence_output, positions, tensors, bias_name):
    """Hugging Face's BertLMPredictionHead in NumPy: gelu(x W^T + b) -> layernorm -> @ E^T + bias."""
    gathered = np.take_along_axis(sequence_output, positions[:, :, None], axis=1)
    hidden = gathered @ tensors["cls.predictions.transform.dense.weight"].T + tensors[
        "cls.predictions.transform.dense.bias"]
    erf = np.vectorize(math.erf)
    hidden = 0.5 * hidden * (1.0 + erf(hidden / math.sqrt(2.0)))
    mean = hidden.mean(-1, keepdims=True)
    variance = hidden.var(-1, keepdims=True)
    hidden = (hidden - mean) / np.sqrt(variance + 1e-12)
    hidden = hidden * tensors["cls.predictions.transform.LayerNorm.weight"] + tensors[
        "cls.predictions.transform.LayerNorm.bias"]
    return hidden @ tensors["bert.embeddings.word_embeddings.weight"].T + tensors[bias_name]


@pytest.mark.parametrize("bias_name", ["cls.predictions.bias", "cls.predictions.decoder.bias"])
def test_hugging_face_masked_lm_teacher_matches_a_numpy_reference(tmp_path, bias_name):
    from models.pretrained_heads import find_encoder
    from pipeline.pretrain import starting_points

    tensors = hf_bert_tensors(np.random.default_rng(0), bias_name=bias_name)
    folder = write_hf_folder(tmp_path / "bert-mlm", tensors)
    config, teacher = starting_points.build_teacher(folder)
    assert config.model.vocabulary_size == VOCABULARY

    rng = np.random.default_rng(1)
    inputs = {"token_ids": rng.integers(0, VOCABULARY, size=(2, 12)).astype(np.int32),
              "segment_ids": np.zeros((2, 12), np.int32), "padding_mask": np.ones((2, 12), np.int32),
              "mask_positions": np.array([[1, 4, 7], [0, 5, 11]], np.int32)}
    logits = np.asarray(teacher(inputs, training=False)["mlm_logits"])
    encoder_inputs = {k: v for k, v in inputs.items() if k != "mask_positions"}
    sequence_output = np.asarray(find_encoder(teacher)(encoder_inputs, training=False)["sequence_output"])
    expected = numpy_masked_lm_logits(sequence_output, inputs["mask_positions"], tensors, bias_name)
    assert logits.shape == (2, 3, VOCABULARY)
    np.testing.assert_allclose(logits, expected, atol=2e-4, rtol=1e-4)
    # The encoder itself came from the checkpoint, not a fresh initialisation.
    np.testing.assert_array_equal(np.asarray(find_encoder(teacher).token_embedding.embeddings),
                                  tensors["bert.embeddings.word_embeddings.weight"])


def test_an_untied_decoder_is_refused_naming_the_tensor(tmp_path):
    from pipeline.pretrain import starting_points

    tensors = hf_bert_tensors(np.random.default_rng(0))
    tensors["cls.predictions.decoder.weight"] = tensors["cls.predictions.decoder.weight"] + 1.0
    folder = write_hf_folder(tmp_path / "untied", tensors)
    with pytest.raises(TrimbertError, match="cls.predictions.decoder.weight is not tied"):
        starting_points.build_teacher(folder)


def test_an_encoder_only_checkpoint_is_refused_as_a_teacher_with_the_way_out(minilm_dir):
    from pipeline.pretrain import starting_points

    with pytest.raises(TrimbertError) as raised:
        starting_points.build_teacher(minilm_dir)
    message = str(raised.value)
    assert str(minilm_dir) in message and "no masked-LM head" in message
    assert f"trimbert teacher --from {minilm_dir} --data DIR --out TEACHER_DIR" in message


def test_search_refuses_an_encoder_only_teacher_before_measuring(minilm_dir, packed_data, tmp_path):
    from pipeline.studies import search as search_run
    from pipeline.studies.search_space import load_space

    options = search_run.SearchOptions(teacher=str(minilm_dir), data_dir=str(packed_data), out_dir=str(tmp_path))
    with pytest.raises(TrimbertError, match="--teacher: .*no masked-LM head.*trimbert teacher --from"):
        search_run.run(load_space("tiny_space"), options, log=lambda line: None)
    assert not (tmp_path / "journal.jsonl").exists()


def test_init_with_trims_loads_kept_weights_drops_trimmed_ones_and_reports_new_ones(tmp_path):
    import models
    from models.pretrained_heads import find_encoder
    from pipeline.model_source import ModelSource
    from pipeline.pretrain import starting_points

    tensors = hf_bert_tensors(np.random.default_rng(0), heads=False)
    folder = write_hf_folder(tmp_path / "bert", tensors)
    source = ModelSource.open(folder).config
    # Block 1 loses its FFN: its weights have no place and are dropped; the heads are new.
    config = config_lib.from_dict({**source.to_dict(), "trim": {"ffn_blocks": [0]}})
    model = models.build_pretraining_model(models.build_encoder(config), next_sentence=True)
    lines = []
    report = starting_points.initialize_and_log(model, str(folder), lines.append)

    assert report["dropped"] == sorted(f"encoder.layer.1.{name}.{kind}" for name in (
        "intermediate.dense", "output.dense", "output.LayerNorm") for kind in ("weight", "bias"))
    assert "encoder.layer.0.intermediate.dense.weight" in report["loaded"]
    assert set(report["new"]) == {
        "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
        "cls.predictions.bias", "cls.seq_relationship.weight", "cls.seq_relationship.bias"}
    assert lines[0].startswith(f"init from {folder}: {len(report['loaded'])} loaded (")
    assert "6 dropped (encoder.layer.1." in lines[0]
    block = find_encoder(model).blocks[0]
    np.testing.assert_array_equal(np.asarray(block.feedforward.intermediate_dense.kernel),
                                  tensors["bert.encoder.layer.0.intermediate.dense.weight"].T)
    assert find_encoder(model).blocks[1].feedforward is None


def test_init_with_heads_loads_them_and_a_shape_mismatch_names_the_tensor(tmp_path):
    import models
    from pipeline.model_source import ModelSource
    from pipeline.pretrain import starting_points

    tensors = hf_bert_tensors(np.random.default_rng(0))
    folder = write_hf_folder(tmp_path / "bert", tensors)
    source = ModelSource.open(folder).config
    model = models.build_pretraining_model(models.build_encoder(source), next_sentence=True)
    report = starting_points.initialize(model, folder)
    assert report["new"] == [] and "cls.seq_relationship.weight" in report["loaded"]
    np.testing.assert_array_equal(np.asarray(model.get_layer("masked_lm_head").output_bias),
                                  tensors["cls.predictions.bias"])

    wider = config_lib.from_dict({**source.to_dict(), "model": {**source.to_dict()["model"],
                                                                "intermediate_dim": 48}})
    model = models.build_pretraining_model(models.build_encoder(wider), next_sentence=False)
    with pytest.raises(TrimbertError, match=r"--init .*'encoder.layer.0.intermediate.dense.weight' has shape"):
        starting_points.initialize(model, folder)
