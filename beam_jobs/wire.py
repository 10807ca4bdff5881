"""``bert`` records of a whole batch at once: the tf.train.Example wire format and TFRecord framing
written with numpy, no per-record Python.

A record is a row of byte columns: fixed bytes (field tags, feature keys), varints (token ids,
positions, the nested length prefixes) and runs of 0x00/0x01 (input_mask, segment_ids). Every
column is a ``[records, width]`` uint8 matrix with a ``keep`` mask (a varint of ``width`` bytes keeps
only the bytes it needs); concatenating the columns and taking the kept bytes in row-major order
gives every record's bytes end to end. The layout is :func:`beam_jobs.features.encode_example`'s
(features in schema order, packed values), so both write the same bytes; ``tests/beam_jobs/
test_wire.py`` checks that, and that TensorFlow reads the framed records back.
"""

from __future__ import annotations

import struct

import google_crc32c
import numpy as np

from beam_jobs.features import feature_specs


def _arithmetic_varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    largest = int(values.max(initial=0))
    width = max(1, -(-largest.bit_length() // 7))
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    shifted = values.astype(np.uint64)[..., None] >> shifts  # [rows, k, width]
    more = np.zeros_like(shifted, dtype=bool)
    more[..., :-1] = shifted[..., 1:] != 0
    data = (shifted & np.uint64(0x7F)).astype(np.uint8) | (more.astype(np.uint8) << 7)
    keep = shifted != 0
    keep[..., 0] = True
    rows = values.shape[0]
    return data.reshape(rows, -1), keep.reshape(rows, -1)


# Varints of 0 .. 2**16-1 (token ids, positions, lengths) looked up: four bytes per value, the
# bytes as one little-endian uint32, which bytes to keep as another.
_SMALL = 1 << 16


def _table() -> tuple[np.ndarray, np.ndarray]:
    data, keep = _arithmetic_varints(np.arange(_SMALL)[:, None])
    padded = np.zeros((_SMALL, 4), dtype=np.uint8)
    padded[:, :3] = data
    kept = np.zeros((_SMALL, 4), dtype=bool)
    kept[:, :3] = keep
    return padded.view("<u4")[:, 0], kept.view("<u4")[:, 0]


_TABLE_DATA, _TABLE_KEEP = _table()


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of non-negative integers ``[rows, k]``: (bytes ``[rows, k * w]``, keep mask)."""
    values = np.asarray(values)
    if values.max(initial=0) < _SMALL:
        rows = values.shape[0]
        return (_TABLE_DATA[values].view(np.uint8).reshape(rows, -1),
                _TABLE_KEEP[values].view(bool).reshape(rows, -1))
    return _arithmetic_varints(values)


def _fixed(rows: int, raw: bytes) -> tuple[np.ndarray, None]:
    return np.broadcast_to(np.frombuffer(raw, dtype=np.uint8), (rows, len(raw))), None


def _join(columns) -> tuple[np.ndarray, np.ndarray]:
    """Kept bytes of every row, end to end, and each row's byte count."""
    data = np.concatenate([column for column, _ in columns], axis=1)
    keep = np.concatenate([np.ones(column.shape, dtype=bool) if mask is None else mask
                           for column, mask in columns], axis=1)
    return data[keep], keep.sum(axis=1)


def _delimited(rows: int, tag: bytes, inner: list, inner_length: np.ndarray):
    """``tag, varint(length), inner`` as columns, and the total length per row."""
    prefix = varints(inner_length[:, None])
    return [_fixed(rows, tag), prefix, *inner], len(tag) + prefix[1].sum(axis=1) + inner_length


class BertRecordEncoder:
    """Serialized ``bert`` tf.train.Examples of a batch of instances.

    Only input_ids, masked_lm_positions and masked_lm_ids vary in byte length; every other feature's
    entry is a constant prefix and a fixed number of bytes (input_mask, segment_ids, the weights of
    one of ``max_predictions + 1`` counts, one of two next-sentence entries).

    Args:
        seq_len: tokens per record.
        max_predictions: masked positions per record.
    """

    VARYING = ("input_ids", "masked_lm_positions", "masked_lm_ids")

    def __init__(self, seq_len: int, max_predictions: int) -> None:
        self.seq_len, self.max_predictions = seq_len, max_predictions
        self._specs = feature_specs("bert", seq_len, max_predictions)
        slots = np.arange(max_predictions)
        one = np.frombuffer(struct.pack("<f", 1.0), dtype=np.uint8)
        self._weights = np.where((slots[None, :] < np.arange(max_predictions + 1)[:, None])[..., None],
                                 one, np.uint8(0)).reshape(max_predictions + 1, -1)
        self._next_sentence = np.stack([self._entry_bytes("next_sentence_labels", np.array([[label]], np.uint8))
                                        for label in (0, 1)])
        self._prefixes = {spec.name: self._entry_bytes(spec.name, np.zeros((1, spec.length), np.uint8))[:-spec.length]
                          for spec in self._specs if spec.name in ("input_mask", "segment_ids")}
        weights = self._entry_bytes("masked_lm_weights", self._weights[:1])
        self._prefixes["masked_lm_weights"] = weights[:-self._weights.shape[1]]

    def _entry_bytes(self, name: str, packed: np.ndarray) -> np.ndarray:
        """One feature's map entry for a single row of packed bytes (uint8)."""
        columns, _ = self._entry(name, [(packed, None)], np.array([packed.shape[1]]))
        return _join(columns)[0]

    def _entry(self, name: str, packed: list, size: np.ndarray):
        # Map entry {key = 1, value = 2: Feature {int64_list = 3 | float_list = 2 {value = 1, packed}}}.
        rows = len(size)
        dtype = next(spec.dtype for spec in self._specs if spec.name == name)
        values, values_size = _delimited(rows, b"\n", packed, size)
        feature, feature_size = _delimited(rows, b"\x1a" if dtype == "int64" else b"\x12", values, values_size)
        value, value_size = _delimited(rows, b"\x12", feature, feature_size)
        key = b"\n" + bytes([len(name)]) + name.encode("utf-8")
        return _delimited(rows, b"\n", [_fixed(rows, key), *value], len(key) + value_size)

    def encode(self, input_ids: np.ndarray, lengths: np.ndarray, segment_a: np.ndarray, positions: np.ndarray,
               labels: np.ndarray, counts: np.ndarray, next_sentence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every record's bytes end to end (uint8) and each record's byte count.

        Args:
            input_ids: ``[n, seq_len]`` masked token ids, zero-padded.
            lengths: ``[n]`` real tokens per record.
            segment_a: ``[n]`` tokens of segment 0 ([CLS], segment A, its [SEP]).
            positions: ``[n, max_predictions]`` masked positions, sorted, zero-padded.
            labels: ``[n, max_predictions]`` original ids at ``positions``, zero-padded.
            counts: ``[n]`` real masked positions per record.
            next_sentence: ``[n]`` 1 when segment B is random.
        """
        rows = len(lengths)
        column = np.arange(self.seq_len)
        real = column[None, :] < lengths[:, None]
        fixed = {
            "input_mask": real.view(np.uint8),
            "segment_ids": (real & (column[None, :] >= segment_a[:, None])).view(np.uint8),
            "masked_lm_weights": self._weights[counts],
        }
        varying = {"input_ids": input_ids, "masked_lm_positions": positions, "masked_lm_ids": labels}
        columns, body = [], np.zeros(rows, dtype=np.int64)
        for spec in self._specs:
            if spec.name in varying:
                data, keep = varints(varying[spec.name])
                entry, size = self._entry(spec.name, [(data, keep)], keep.sum(axis=1))
            elif spec.name in fixed:
                prefix = self._prefixes[spec.name]
                entry = [_fixed(rows, prefix.tobytes()), (fixed[spec.name], None)]
                size = len(prefix) + fixed[spec.name].shape[1]
            else:
                entry, size = [(self._next_sentence[next_sentence], None)], self._next_sentence.shape[1]
            columns += entry
            body += size
        record, _ = _delimited(rows, b"\n", columns, body)
        return _join(record)


def _masked_crc(crc: np.ndarray) -> np.ndarray:
    crc = crc.astype(np.uint64)
    rotated = ((crc >> np.uint64(15)) | (crc << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return ((rotated + np.uint64(0xA282EAD8)) & np.uint64(0xFFFFFFFF)).astype("<u4")


def frame_records(data: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """TFRecord framing of records given end to end: per record its length (uint64), the masked
    crc32c of the length, the record, the masked crc32c of the record."""
    raw = data.tobytes()
    ends = np.cumsum(sizes)
    starts = ends - sizes
    spans = zip(starts.tolist(), ends.tolist(), strict=True)
    payload_crc = np.array([google_crc32c.value(raw[start:end]) for start, end in spans], dtype=np.uint64)
    header = sizes.astype("<u8").view(np.uint8).reshape(-1, 8)
    distinct, which = np.unique(sizes, return_inverse=True)
    length_crc = np.array([google_crc32c.value(struct.pack("<Q", int(size))) for size in distinct], dtype=np.uint64)
    framed_starts = starts + 16 * np.arange(len(sizes))
    out = np.empty(int(ends[-1]) + 16 * len(sizes) if len(sizes) else 0, dtype=np.uint8)
    is_payload = np.ones(out.shape, dtype=bool)
    head = framed_starts[:, None] + np.arange(12)
    tail = (framed_starts + 12 + sizes)[:, None] + np.arange(4)
    out[head[:, :8]] = header
    out[head[:, 8:]] = _masked_crc(length_crc[which]).view(np.uint8).reshape(-1, 4)
    out[tail] = _masked_crc(payload_crc).view(np.uint8).reshape(-1, 4)
    is_payload[head] = False
    is_payload[tail] = False
    out[is_payload] = data
    return out
