"""``trimbert export``: the command's paths from a kept model and from a pre-trained encoder folder, with
the model card beside each export, and its one-line refusals."""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import pytest
import yaml

import models
from pipeline.cli import main as cli
from pipeline.finetune import kept_model
from pipeline.finetune.tasks import TASKS

BATCH = {
    "token_ids": np.array([[101, 7592, 2088, 999, 102, 0], [101, 2023, 2003, 102, 2178, 102]], "int32"),
    "segment_ids": np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]], "int32"),
    "padding_mask": np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]], "int32"),
}


@pytest.fixture(scope="module")
def bert_config(tiny_config):
    """The tiny shape as keras-hub's BertBackbone computes it (tanh GELU)."""
    return dataclasses.replace(tiny_config, model=dataclasses.replace(tiny_config.model, num_layers=2,
                                                                    activation="gelu_approximate"))


def _card_header(path) -> dict:
    text = open(path, encoding="utf-8").read()
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:].split("\n---\n", 1)[0])


def test_an_encoder_folder_becomes_a_backbone_preset_with_its_card(tmp_path, bert_config, vocab_path):
    import keras_hub

    keras.utils.set_random_seed(5)
    encoder = models.build_encoder(bert_config)
    folder = models.save_pretrained(encoder, tmp_path / "encoder", vocab_path)
    assert cli.main(["export", "--model", str(folder), "--format", "keras-hub", "--out", str(tmp_path / "hub")]) == 0
    backbone = keras_hub.models.BertBackbone.from_preset(str(tmp_path / "hub"))
    mask = BATCH["padding_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(backbone(BATCH)["sequence_output"])[mask],
                               np.asarray(encoder(BATCH)["sequence_output"])[mask], atol=1e-5)
    header = _card_header(tmp_path / "hub" / "README.md")
    assert header["pipeline_tag"] == "feature-extraction"
    body = (tmp_path / "hub" / "README.md").read_text(encoding="utf-8")
    assert f"{encoder.count_params():,}" in body  # the card states the exported encoder's parameters


def test_a_kept_model_becomes_a_text_classifier_preset_with_its_card(tmp_path, bert_config, vocab_path):
    import keras_hub

    keras.utils.set_random_seed(6)
    classifier = models.build_classifier(models.build_encoder(bert_config), 2)
    folder = kept_model.save(tmp_path / "model", classifier, vocab_path, True, 32, TASKS["sst2"], bert_config)
    assert cli.main(["export", "--model", folder, "--format", "keras-hub", "--out", str(tmp_path / "hub")]) == 0
    preset = keras_hub.models.BertTextClassifier.from_preset(str(tmp_path / "hub"))
    logits = preset.output_dense(preset.backbone(BATCH)["pooled_output"])  # inference: no dropout
    np.testing.assert_allclose(np.asarray(logits), np.asarray(classifier(BATCH)), atol=1e-5)
    assert (tmp_path / "hub" / "README.md").read_text() == (tmp_path / "model" / "README.md").read_text()


def test_refusals_are_one_line_naming_the_reason(tmp_path, tiny_config, vocab_path, capsys):
    keras.utils.set_random_seed(7)
    folder = models.save_pretrained(models.build_encoder(tiny_config), tmp_path / "encoder", vocab_path)
    assert cli.main(["export", "--model", str(folder), "--format", "keras-hub", "--out", str(tmp_path / "hub")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("trimbert export: error:") and "model.activation" in error and "\n" not in error
    assert not os.path.exists(tmp_path / "hub")
    # A SavedModel serves a fine-tuned model: an encoder folder is refused, naming the missing model.json.
    assert cli.main(["export", "--model", str(folder), "--format", "saved_model", "--out", str(tmp_path / "sm")]) == 2
    error = capsys.readouterr().err.strip()
    assert "model.json" in error and "\n" not in error
    assert not os.path.exists(tmp_path / "sm")
