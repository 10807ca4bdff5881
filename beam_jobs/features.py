"""The pre-training record schema: one module, imported by the Beam writer and the tf.data reader.

Two formats, both one ``tf.train.Example`` per instance with fixed-length features:

``bert``: Google BERT / TF Model Garden pre-training records exactly (docs/record_format.md), so
Google's and Model Garden's readers consume our files and ours consume theirs::

    input_ids, input_mask, segment_ids          int64   [seq_len]          zero-padded
    masked_lm_positions, masked_lm_ids          int64   [max_predictions]  zero-padded
    masked_lm_weights                           float32 [max_predictions]  1.0 real / 0.0 padding
    next_sentence_labels                        int64   [1]                1 = segment B is random

``packed``: full-length unmasked token sequences for dynamic masking in the reader::

    input_ids, input_mask, segment_ids          int64   [seq_len]          zero-padded

TPUs want int32: the reader casts once after parsing (:func:`MODEL_GARDEN_NAMES` maps our names
to Model Garden v2's ``input_word_ids`` / ``input_type_ids``). The schema fingerprint is the
sha256 of the canonical JSON of :func:`schema`; the Beam job writes it into ``manifest.json`` and a
reader compares it before training, so a seq_len or format mismatch fails loudly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import google_crc32c

RecordFormat = Literal["bert", "packed"]
FORMATS: tuple[str, ...] = ("bert", "packed")

# Model Garden v2 (official/nlp/data/pretrain_dataloader.py) renames two features after decoding.
MODEL_GARDEN_NAMES: dict[str, str] = {
    "input_ids": "input_word_ids",
    "segment_ids": "input_type_ids",
    "input_mask": "input_mask",
}

# Special tokens every vocabulary must hold (Google's uncased/cased vocab.txt spell them so).
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def special_token_ids(tokens: Sequence[str]) -> dict[str, int]:
    """Ids of :data:`SPECIAL_TOKENS` in a vocabulary (its token list); those missing are left out."""
    index = {token: i for i, token in enumerate(tokens)}
    return {token: index[token] for token in SPECIAL_TOKENS if token in index}


def vocabulary_sha256(tokens: Sequence[str]) -> str:
    """sha256 of a vocabulary file as written: tokens joined by newlines, one at the end.

    The Beam job records it in ``manifest.json`` and pre-training in ``run.json``; a reader
    compares it to catch a vocabulary of the right size with other tokens.
    """
    return hashlib.sha256(("\n".join(tokens) + "\n").encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One fixed-length feature of a record.

    Args:
        name: feature key in the ``tf.train.Example``.
        dtype: ``int64`` or ``float32`` (the only kinds tf.train.Example stores besides bytes).
        length: number of values (every feature here is a 1-D vector).
    """

    name: str
    dtype: Literal["int64", "float32"]
    length: int


def feature_specs(record_format: str, seq_len: int, max_predictions: int) -> tuple[FeatureSpec, ...]:
    """The ordered features of one record.

    Args:
        record_format: ``bert`` or ``packed``.
        seq_len: tokens per instance, [CLS] and [SEP] included.
        max_predictions: masked positions per instance (``bert`` only).
    """
    if record_format not in FORMATS:
        raise ValueError(f"record format must be one of {FORMATS}, got {record_format!r}")
    sequence = (
        FeatureSpec("input_ids", "int64", seq_len),
        FeatureSpec("input_mask", "int64", seq_len),
        FeatureSpec("segment_ids", "int64", seq_len),
    )
    if record_format == "packed":
        return sequence
    return sequence + (
        FeatureSpec("masked_lm_positions", "int64", max_predictions),
        FeatureSpec("masked_lm_ids", "int64", max_predictions),
        FeatureSpec("masked_lm_weights", "float32", max_predictions),
        FeatureSpec("next_sentence_labels", "int64", 1),
    )


def schema(record_format: str, seq_len: int, max_predictions: int) -> dict[str, Any]:
    """The schema as plain JSON data (what ``manifest.json`` stores under ``schema``)."""
    specs = feature_specs(record_format, seq_len, max_predictions)
    return {
        "format": record_format,
        "features": {spec.name: {"dtype": spec.dtype, "shape": [spec.length]} for spec in specs},
    }


def schema_fingerprint(record_format: str, seq_len: int, max_predictions: int) -> str:
    """sha256 of the canonical JSON schema; equal fingerprints mean interchangeable records."""
    canonical = json.dumps(schema(record_format, seq_len, max_predictions), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parsing_spec(record_format: str, seq_len: int, max_predictions: int) -> dict[str, Any]:
    """``tf.io.parse_single_example`` feature spec (Google's ``name_to_features``)."""
    import tensorflow as tf

    dtypes = {"int64": tf.int64, "float32": tf.float32}
    return {spec.name: tf.io.FixedLenFeature([spec.length], dtypes[spec.dtype])
            for spec in feature_specs(record_format, seq_len, max_predictions)}


# ---------------------------------------------------------------------------
# Encoding: tf.train.Example bytes and TFRecord framing, without importing TensorFlow.
# The Beam workers write millions of records; building protobuf objects per record costs more
# than the tokenizer, so the wire format is written directly (it is stable and tiny).
# ---------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint((field_number << 3) | 2) + _varint(len(payload)) + payload


# Varints of 0 .. 2**16-1 (token ids, positions, masks): a lookup instead of bit arithmetic.
_SMALL_VARINTS: tuple[bytes, ...] = tuple(_varint(value) for value in range(1 << 16))


def _encode_varints(values: Sequence[Any]) -> bytes:
    if min(values, default=0) >= 0:  # negative indices would silently wrap in the lookup
        try:
            return b"".join([_SMALL_VARINTS[value] for value in values])
        except (IndexError, TypeError):  # values >= 2**16 or numpy scalars: the general path
            pass
    # Negative int64s are ten-byte two's-complement varints, as protobuf writes them.
    return b"".join(_varint(int(value) & 0xFFFFFFFFFFFFFFFF) for value in values)


def _encode_feature(dtype: str, values: Sequence[Any]) -> bytes:
    # Feature { oneof kind: bytes_list = 1; float_list = 2; int64_list = 3 } with packed values.
    if dtype == "int64":
        packed = _encode_varints(values)
        return _length_delimited(3, _length_delimited(1, packed))
    packed = struct.pack(f"<{len(values)}f", *values)
    return _length_delimited(2, _length_delimited(1, packed))


def encode_example(specs: Sequence[FeatureSpec], values: Mapping[str, Sequence[Any]]) -> bytes:
    """Serializes one record as ``tf.train.Example`` bytes, checking every length.

    Args:
        specs: the record's features, from :func:`feature_specs`.
        values: feature name -> values (ints, or floats for ``float32`` features).
    """
    entries = []
    for spec in specs:
        vector = values[spec.name]
        if len(vector) != spec.length:
            raise ValueError(f"feature {spec.name} has {len(vector)} values, schema says {spec.length}")
        # Features { map<string, Feature> feature = 1; } map entry: key = 1, value = 2.
        entry = _length_delimited(1, spec.name.encode("utf-8")) + _length_delimited(
            2, _encode_feature(spec.dtype, vector))
        entries.append(_length_delimited(1, entry))
    # Example { Features features = 1; }
    return _length_delimited(1, b"".join(entries))


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(payload: bytes) -> bytes:
    """One TFRecord: length, masked crc32c of the length, payload, masked crc32c of the payload."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", _masked_crc(length)) + payload + struct.pack("<I", _masked_crc(payload))
