"""One opened model path: each kind's config, vocabulary, encoder and tensors, and a path that is none of them."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil

import numpy as np
import pytest

from configs.errors import TrimbertError
from pipeline import model_source
from pipeline.model_source import ModelSource

SMALL = ["model.vocabulary_size=50", "model.num_layers=2", "model.hidden_dim=16", "model.num_heads=2",
         "model.intermediate_dim=24", "model.max_sequence_length=16", "data.seq_len=16", "finetune.seq_len=16"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def batch():
    return {"token_ids": np.array([[2, 7, 9, 31, 3, 0], [2, 44, 3, 12, 8, 3]], "int32"),
            "segment_ids": np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1]], "int32"),
            "padding_mask": np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]], "int32")}


def sequence_output(encoder) -> np.ndarray:
    return np.asarray(encoder(batch(), training=False)["sequence_output"])


def word_embeddings(encoder) -> np.ndarray:
    return np.asarray(encoder.token_embedding.embeddings)


def write_vocabulary(path: pathlib.Path, cased: bool) -> pathlib.Path:
    words = [f"{'W' if cased else 'w'}ord{index}" for index in range(50 - len(SPECIALS))]
    path.write_text("\n".join(SPECIALS + words) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model_dir_writer):
    """A model directory as ``trimbert pretrain`` lays it out before its export: checkpoints 100 and 200 with
    different weights, and a ``run.json`` recording the embedded vocabulary's sha256."""
    import keras
    import tensorflow as tf

    import models
    from configs import schema as config_lib

    config = dataclasses.replace(config_lib.load("tiny", SMALL), name="tiny-run")
    directory = model_dir_writer(tmp_path_factory.mktemp("model_source") / "tiny-run", config, steps=(),
                                 next_sentence=True)  # the layout; the checkpoints are written below
    keras.utils.set_random_seed(0)
    model = models.build_pretraining_model(models.build_encoder(config), next_sentence=True)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(directory / "checkpoints"),
                                         max_to_keep=3)
    embeddings = model.get_layer("encoder").token_embedding.embeddings
    saved = {}
    for step in (100, 200):
        embeddings.assign(embeddings + 1.0)
        manager.save(checkpoint_number=step)
        saved[step] = np.asarray(embeddings).copy()
    return directory, config, saved


def test_a_model_directory_reads_its_latest_checkpoint_and_the_run_json_vocabulary(model_dir):
    from pipeline.assets import cache as assets

    directory, config, saved = model_dir
    source = ModelSource.open(directory)
    assert (source.kind, source.path, source.model_dir) == (model_source.MODEL_DIR, str(directory), str(directory))
    assert source.from_pretraining and source.description == "trimbert model directory"
    assert source.config == config and source.config_name == "tiny-run"
    # No encoder/ export yet: the vocabulary is the embedded one, as run.json's sha256 says.
    assert source.vocabulary() == (assets.ensure("vocab"), True)
    assert source.vocabulary("my/vocab.txt") == ("my/vocab.txt", True)
    np.testing.assert_array_equal(word_embeddings(source.encoder()), saved[200])
    tensors = source.tensors()
    np.testing.assert_array_equal(tensors["embeddings.word_embeddings.weight"], saved[200])
    assert {"cls.predictions.bias", "cls.seq_relationship.weight"} <= set(tensors)
    assert ModelSource.open(source) is source


def test_one_checkpoint_of_a_model_directory(model_dir):
    directory, config, saved = model_dir
    source = ModelSource.open(directory / "checkpoints" / "ckpt-100")
    assert (source.kind, source.model_dir) == (model_source.CHECKPOINT, str(directory))
    assert source.config == config and source.config_name == "tiny-run"
    np.testing.assert_array_equal(word_embeddings(source.encoder()), saved[100])
    np.testing.assert_array_equal(source.tensors()["embeddings.word_embeddings.weight"], saved[100])
    _, model = source.restore(next_sentence=False, encoder_name="teacher_encoder")
    np.testing.assert_array_equal(word_embeddings(model.get_layer("teacher_encoder")), saved[100])


def test_a_finished_model_directory_reads_its_encoder_export(model_dir, tmp_path):
    import models

    directory, config, saved = model_dir
    finished = pathlib.Path(shutil.copytree(directory, tmp_path / "finished"))
    exported = models.build_encoder(config)  # other weights than either checkpoint
    vocabulary = write_vocabulary(tmp_path / "vocab.txt", cased=False)
    models.save_pretrained(exported, finished / "encoder", vocabulary_path=vocabulary)

    source = ModelSource.open(finished)
    assert source.kind == model_source.MODEL_DIR
    np.testing.assert_array_equal(sequence_output(source.encoder()), sequence_output(exported))
    assert source.vocabulary() == (finished / "encoder" / "vocab.txt", True)
    # The tensors (heads included) stay the latest checkpoint's: the export has no heads.
    np.testing.assert_array_equal(source.tensors()["embeddings.word_embeddings.weight"], saved[200])

    export = ModelSource.open(finished / "encoder")
    assert (export.kind, export.model_dir) == (model_source.ENCODER_EXPORT, None)
    assert not export.from_pretraining and export.description == "Hugging Face folder"
    assert export.config_name == "tiny-run"  # the run's config.yaml, not the folder's name
    assert export.config.model == exported.model_config
    assert export.vocabulary() == (finished / "encoder" / "vocab.txt", True)
    np.testing.assert_array_equal(sequence_output(export.encoder()), sequence_output(exported))


def test_a_hugging_face_folder(tmp_path):
    import models
    from configs import schema as config_lib

    encoder = models.build_encoder(config_lib.load("tiny", SMALL))
    vocabulary = write_vocabulary(tmp_path / "vocab.txt", cased=True)
    folder = models.save_pretrained(encoder, tmp_path / "bert-small", vocabulary_path=vocabulary, lowercase=False)

    source = ModelSource.open(folder)
    assert (source.kind, source.model_dir, source.description) == (
        model_source.HUGGING_FACE, None, "Hugging Face folder")
    assert source.config.model == encoder.model_config and source.config_name == "bert-small"
    assert source.vocabulary() == (folder / "vocab.txt", False)
    np.testing.assert_array_equal(sequence_output(source.encoder()), sequence_output(encoder))
    tensors = source.tensors()
    np.testing.assert_array_equal(tensors["embeddings.word_embeddings.weight"], word_embeddings(encoder))
    assert not any(key.startswith("cls.") for key in tensors)

    (folder / "vocab.txt").unlink()
    with pytest.raises(TrimbertError, match=f"--init {folder}: cannot tell which vocab.txt .*pass --vocab FILE"):
        source.vocabulary()


def test_a_keras_hub_preset(tmp_path):
    import keras_hub

    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8,
                                             intermediate_dim=12, max_sequence_length=16)
    backbone.save_to_preset(str(tmp_path / "preset"))

    source = ModelSource.open(tmp_path / "preset")
    assert (source.kind, source.description, source.config_name) == (
        model_source.KERAS_HUB, "keras-hub preset", "preset")
    assert (source.config.model.hidden_dim, source.config.model.num_layers) == (8, 2)
    real = batch()["padding_mask"].astype(bool)
    np.testing.assert_allclose(sequence_output(source.encoder())[real],
                               np.asarray(backbone(batch())["sequence_output"])[real], atol=1e-5)
    np.testing.assert_array_equal(source.tensors()["embeddings.word_embeddings.weight"],
                                  np.asarray(backbone.get_layer("token_embedding").embeddings))
    with pytest.raises(TrimbertError, match="cannot tell which vocab.txt"):
        source.vocabulary()  # a backbone preset carries no tokenizer


def test_a_model_directory_whose_vocabulary_cannot_be_told(model_dir, tmp_path):
    directory, _, _ = model_dir
    other = tmp_path / "other-run"
    other.mkdir()
    shutil.copy(directory / "config.yaml", other / "config.yaml")
    (other / "run.json").write_text(json.dumps({"vocabulary_sha256": "0" * 64}))
    with pytest.raises(TrimbertError, match=f"--init {other}: cannot tell which vocab.txt"):
        ModelSource.open(other).vocabulary()


def test_a_path_that_is_none_of_them_says_what_each_kind_needs(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(TrimbertError) as raised:
        ModelSource.open(tmp_path)
    assert str(raised.value) == (
        f"{tmp_path}: not a checkpoint: a trimbert model directory needs config.yaml, a Hugging Face BERT "
        f"folder config.json + model.safetensors, a keras-hub preset config.json + model.weights.h5")
    with pytest.raises(TrimbertError) as raised:
        ModelSource.open(tmp_path / "checkpoints" / "ckpt-7", "--init")
    assert str(raised.value) == (
        f"--init {tmp_path / 'checkpoints' / 'ckpt-7'}: not a trimbert model directory (config.yaml + "
        f"checkpoints/), a checkpoint (checkpoints/ckpt-N) or a Hugging Face / keras-hub folder (config.json)")
