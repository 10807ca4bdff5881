"""`pretrain --init` through the loop, `trimbert teacher` on an encoder-only checkpoint, keras-hub presets."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from beam_jobs.manifest import Manifest
from configs import schema as config_lib

SEQ_LEN = 64  # the length of conftest's packed_data


def tiny_config(*extra):
    return config_lib.load("tiny", [
        f"pretrain.phases=[{{steps: 1, seq_len: {SEQ_LEN}, batch_size: 8}}]", f"data.seq_len={SEQ_LEN}",
        f"model.max_sequence_length={SEQ_LEN}", "pretrain.log_every=1", *extra])


@pytest.fixture(scope="module")
def encoder_only_folder(tmp_path_factory):
    """A tiny Hugging Face-format encoder (no heads), weights shifted away from any fresh initialisation."""
    import models
    from models.pretrained import weight_table

    encoder = models.build_encoder(tiny_config())
    for _, variable, _ in weight_table(encoder):
        variable.assign(variable.numpy() + 0.5)
    return models.save_pretrained(encoder, tmp_path_factory.mktemp("encoder_only") / "bert")


def safetensors(path):
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


def test_pretrain_init_loads_the_checkpoint_under_the_configs_trims(packed_data, encoder_only_folder, tmp_path):
    from pipeline.pretrain import loop as pretrain

    lines = []
    config = tiny_config("trim.ffn_blocks=[0]")
    pretrain.run(config, pretrain.RunOptions(data_dirs=(str(packed_data),), model_dir=str(tmp_path),
                                             init=str(encoder_only_folder)), log=lines.append)
    init_line = next(line for line in lines if line.startswith("init from"))
    assert "6 dropped (encoder.layer.1." in init_line and "new (cls.predictions" in init_line
    source, trained = safetensors(encoder_only_folder), safetensors(tmp_path / "encoder")
    assert "encoder.layer.1.intermediate.dense.weight" not in trained
    # One AdamW step at 1e-4 moves a weight by about 1e-4; the +0.5 shift shows they came from --init.
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.0.intermediate.dense.weight",
                "encoder.layer.1.attention.self.query.weight"):
        assert np.max(np.abs(trained[key] - source[key])) < 2e-3, key


def test_pretrain_cli_takes_init():
    from pipeline.cli.main import build_parser

    args = build_parser().parse_args(["pretrain", "--config", "tiny", "--data", "d", "--model-dir", "m",
                                      "--init", "hf/bert-base-uncased"])
    assert args.init == "hf/bert-base-uncased"


def test_teacher_fits_a_head_on_the_frozen_encoder_and_reports_heldout_accuracy(
        packed_data, encoder_only_folder, tmp_path):
    from models.pretrained_heads import find_encoder
    from pipeline.pretrain import starting_points, teacher_head

    out = tmp_path / "teacher"
    lines = []
    summary = teacher_head.fit(teacher_head.TeacherOptions(
        source=str(encoder_only_folder), data_dir=str(packed_data), out_dir=str(out), steps=3, batch_size=8,
        heldout_examples=32), log=lines.append)

    assert 0.0 <= summary["heldout_mlm_accuracy"] <= 1.0 and summary["heldout_masked_tokens"] > 0
    assert json.loads((out / "summary.json").read_text())["heldout_mlm_accuracy"] == summary["heldout_mlm_accuracy"]
    assert lines[-1].startswith("teacher: held-out masked-LM accuracy") and f"--teacher {out}" in lines[-1]
    # The last shard was held out: training read the others only.
    train, heldout = (Manifest.read(out / "heldout_split" / name) for name in ("train", "heldout"))
    assert summary["data"] == [str(out / "heldout_split" / "train")]
    assert len(train.shards) == 1 and len(heldout.shards) == 1 and train.shards != heldout.shards
    assert train.examples + heldout.examples == Manifest.read(packed_data).examples
    # Frozen: every encoder weight is the checkpoint's, bit for bit.
    source, written = safetensors(encoder_only_folder), safetensors(out / "encoder")
    assert set(written) == set(source)
    for key, value in source.items():
        np.testing.assert_array_equal(written[key], value, err_msg=key)
    # The output dir now teaches: it has a trained head.
    _, teacher = starting_points.build_teacher(out)
    assert np.any(np.asarray(teacher.get_layer("masked_lm_head").output_bias) != 0.0)
    np.testing.assert_array_equal(np.asarray(find_encoder(teacher).token_embedding.embeddings),
                                  source["embeddings.word_embeddings.weight"])


def test_keras_hub_masked_lm_preset_teaches_like_keras_hub(tmp_path):
    import keras
    import keras_hub

    from pipeline.pretrain import starting_points

    keras.utils.set_random_seed(3)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=32)
    masked_lm = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    head = masked_lm.masked_lm_head
    rng = np.random.default_rng(0)
    head._bias.assign(rng.normal(size=head._bias.shape).astype(np.float32))
    head._intermediate_layer_norm.beta.assign(rng.normal(size=(16,)).astype(np.float32))
    masked_lm.save_to_preset(str(tmp_path / "preset"))

    _, teacher = starting_points.build_teacher(tmp_path / "preset")
    inputs = {"token_ids": rng.integers(0, 50, size=(2, 10)).astype(np.int32),
              "segment_ids": np.zeros((2, 10), np.int32), "padding_mask": np.ones((2, 10), np.int32),
              "mask_positions": np.array([[1, 2], [3, 9]], np.int32)}
    ours = np.asarray(teacher(inputs, training=False)["mlm_logits"])
    theirs = np.asarray(masked_lm(inputs, training=False))
    # keras-hub's head uses exact GELU and epsilon 1e-5 where ours follows the backbone (docstring).
    np.testing.assert_allclose(ours, theirs, atol=2e-2)
    assert np.argmax(ours, -1).tolist() == np.argmax(theirs, -1).tolist()


@pytest.mark.slow
def test_search_runs_end_to_end_with_a_teacher_made_from_minilm(minilm_dir, packed_data, tmp_path):
    """The issue's acceptance path, through the command line."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    teacher = tmp_path / "minilm-teacher"
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "teacher", "--from", str(minilm_dir),
                           "--data", str(packed_data), "--out", str(teacher), "--steps", "2", "--batch-size", "8",
                           "--heldout-examples", "16"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "held-out masked-LM accuracy" in done.stdout
    out = tmp_path / "search"
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "search", "--space", "tiny_space", "--teacher",
                           str(teacher), "--data", str(packed_data), "--out", str(out), "--budget-steps", "6"],
                          env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    best = config_lib.load(out / "best_config.yaml")
    assert best.pretrain.distill.teacher == str(teacher)
    assert "| rank | name |" in (out / "results.md").read_text()
