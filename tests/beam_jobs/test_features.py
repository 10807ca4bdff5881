"""The record schema (pipeline/features.py) and the text normalisation the Beam job applies."""

from __future__ import annotations

import pytest

from beam_jobs import features
from beam_jobs.normalize import normalize_line, split_sentences

GOOGLE_BERT_FEATURES = {
    "input_ids": ("int64", 128), "input_mask": ("int64", 128), "segment_ids": ("int64", 128),
    "masked_lm_positions": ("int64", 20), "masked_lm_ids": ("int64", 20),
    "masked_lm_weights": ("float32", 20), "next_sentence_labels": ("int64", 1),
}


def test_bert_schema_is_googles():
    specs = features.feature_specs("bert", 128, 20)
    assert {spec.name: (spec.dtype, spec.length) for spec in specs} == GOOGLE_BERT_FEATURES
    packed = features.feature_specs("packed", 128, 20)
    assert [spec.name for spec in packed] == ["input_ids", "input_mask", "segment_ids"]


def test_fingerprint_changes_with_shape_and_format_only():
    fingerprint = features.schema_fingerprint("bert", 128, 20)
    assert fingerprint == features.schema_fingerprint("bert", 128, 20)
    others = [features.schema_fingerprint("bert", 512, 20), features.schema_fingerprint("bert", 128, 76),
              features.schema_fingerprint("packed", 128, 20)]
    assert len({fingerprint, *others}) == 4
    # packed records have no prediction features, so max_predictions does not enter their schema
    assert features.schema_fingerprint("packed", 128, 20) == features.schema_fingerprint("packed", 128, 0)


def test_encoded_example_parses_with_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    specs = features.feature_specs("bert", 8, 3)
    values = {
        "input_ids": [101, 7592, 70000, 2**40, 102, 0, 0, 0], "input_mask": [1, 1, 1, 1, 1, 0, 0, 0],
        "segment_ids": [0, 0, 0, 1, 1, 0, 0, 0], "masked_lm_positions": [1, 3, 0],
        "masked_lm_ids": [-5, 2088, 0], "masked_lm_weights": [1.0, 1.0, 0.0], "next_sentence_labels": [1],
    }
    payload = features.encode_example(specs, values)
    parsed = tf.train.Example.FromString(payload).features.feature
    assert list(parsed["input_ids"].int64_list.value) == values["input_ids"]
    assert list(parsed["masked_lm_ids"].int64_list.value) == [-5, 2088, 0]
    assert list(parsed["masked_lm_weights"].float_list.value) == [1.0, 1.0, 0.0]
    path = tmp_path / "one.tfrecord"
    path.write_bytes(features.frame_record(payload) * 2)
    spec = features.parsing_spec("bert", 8, 3)
    records = [tf.io.parse_single_example(raw, spec) for raw in tf.data.TFRecordDataset(str(path))]
    assert len(records) == 2 and records[1]["segment_ids"].numpy().tolist() == values["segment_ids"]
    with pytest.raises(ValueError, match="input_mask has 2 values, schema says 8"):
        features.encode_example(specs, {**values, "input_mask": [1, 1]})


def test_normalization_matches_bert_uncased_and_cased():
    assert normalize_line("The CAFÉ\tis Naïve\u200b!", lower_case=True) == "the cafe is naive!"
    assert normalize_line("Cafe\u0301 x\x00y\ufffd", lower_case=False) == "Café xy"
    assert normalize_line("北京 ok", lower_case=True) == "北  京  ok"
    assert normalize_line("\x07", lower_case=True) == ""


def test_sentence_split_keeps_short_fragments_joined():
    assert split_sentences("One sentence here. Another one follows! A third? Yes.") == [
        "One sentence here.", "Another one follows!", "A third? Yes."]
    assert split_sentences("Already a single sentence") == ["Already a single sentence"]
