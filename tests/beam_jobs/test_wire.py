"""The batched ``bert`` builder against independent references: the record bytes against the general
encoder and tf.train.Example, Google's truncation loop, and the masking statistics."""

from __future__ import annotations

import random

import numpy as np
import pytest

from beam_jobs import features, masking, pairs, wire


def _pad(values, length, fill=0):
    return list(values) + [fill] * (length - len(values))


def _random_instances(rng: random.Random, count: int, seq_len: int, max_predictions: int, vocabulary_size: int):
    rows = []
    for _ in range(count):
        length = rng.randint(5, seq_len)
        segment_a = rng.randint(2, length - 2)
        positions = sorted(rng.sample(range(1, length), rng.randint(0, min(max_predictions, length - 1))))
        rows.append(([rng.randrange(vocabulary_size) for _ in range(length)], length, segment_a, positions,
                     [rng.randrange(vocabulary_size) for _ in positions], int(rng.random() < 0.5)))
    return rows


@pytest.mark.parametrize("seq_len, max_predictions, vocabulary_size", [(128, 20, 30522), (512, 76, 30522),
                                                                      (16, 3, 250_000), (8, 1, 5)])
def test_batch_encoder_writes_the_general_encoders_bytes_and_tensorflow_reads_them(
        tmp_path, seq_len, max_predictions, vocabulary_size):
    import tensorflow as tf

    rows = _random_instances(random.Random(seq_len), 150, seq_len, max_predictions, vocabulary_size)
    encoder = wire.BertRecordEncoder(seq_len, max_predictions)
    data, sizes = encoder.encode(
        np.array([_pad(row[0], seq_len) for row in rows]), np.array([row[1] for row in rows]),
        np.array([row[2] for row in rows]), np.array([_pad(row[3], max_predictions) for row in rows]),
        np.array([_pad(row[4], max_predictions) for row in rows]), np.array([len(row[3]) for row in rows]),
        np.array([row[5] for row in rows]))
    specs = features.feature_specs("bert", seq_len, max_predictions)
    expected = []
    for ids, length, segment_a, positions, labels, next_sentence in rows:
        values = {"input_ids": _pad(ids, seq_len), "input_mask": _pad([1] * length, seq_len),
                  "segment_ids": _pad([0] * segment_a + [1] * (length - segment_a), seq_len),
                  "masked_lm_positions": _pad(positions, max_predictions),
                  "masked_lm_ids": _pad(labels, max_predictions),
                  "masked_lm_weights": _pad([1.0] * len(positions), max_predictions, 0.0),
                  "next_sentence_labels": [next_sentence]}
        expected.append((features.encode_example(specs, values), values))
    ends = np.cumsum(sizes)
    raw = data.tobytes()
    assert [raw[end - size:end] for end, size in zip(ends, sizes, strict=True)] == [item[0] for item in expected]
    # Framed: TensorFlow's reader checks both CRCs; each record parses as tf.train.Example's own bytes.
    path = tmp_path / "batch.tfrecord"
    path.write_bytes(wire.frame_records(data, sizes).tobytes())
    spec = features.parsing_spec("bert", seq_len, max_predictions)
    read = list(tf.data.TFRecordDataset(str(path)))
    assert len(read) == len(rows)
    for record, (_, values) in zip(read[:20], expected[:20], strict=True):
        example = tf.train.Example(features=tf.train.Features(feature={
            name: tf.train.Feature(float_list=tf.train.FloatList(value=vector)) if name == "masked_lm_weights"
            else tf.train.Feature(int64_list=tf.train.Int64List(value=vector)) for name, vector in values.items()}))
        ours = tf.io.parse_single_example(record, spec)
        theirs = tf.io.parse_single_example(example.SerializeToString(), spec)
        for name in spec:
            np.testing.assert_array_equal(ours[name].numpy(), theirs[name].numpy())


def _google_truncation(a_length: int, b_length: int, max_tokens: int) -> tuple[int, int]:
    """Google's truncate_seq_pair, counting the tokens removed from each segment."""
    trimmed = [0, 0]
    lengths = [a_length, b_length]
    while sum(lengths) > max_tokens:
        longer = 0 if lengths[0] > lengths[1] else 1
        lengths[longer] -= 1
        trimmed[longer] += 1
    return trimmed[0], trimmed[1]


def test_trims_equal_googles_truncation_loop():
    for a_length in range(1, 40):
        for b_length in range(1, 40):
            for max_tokens in (2, 5, 17, 40, 80):
                assert pairs.trims(a_length, b_length, max_tokens) == _google_truncation(a_length, b_length,
                                                                                         max_tokens)


def test_pairs_cover_whole_sentences_and_fit():
    rng = random.Random(3)
    lengths = [rng.randint(1, 40) for _ in range(200)]
    starts = [0]
    for length in lengths:
        starts.append(starts[-1] + length)
    pool_starts = [[0, 10, 25, 60], [0, 5, 9]]
    found = pairs.plan_pairs(starts, "doc", pool_starts, ["p0", "p1"], random.Random(1), 64, 0.1)
    assert {pair.is_random_next for pair in found} == {False, True}
    for pair in found:
        assert 1 <= pair.a_length and 1 <= pair.b_length and pair.a_length + pair.b_length <= 61
        other = starts if pair.source < 0 else pool_starts[pair.source]
        assert 0 <= pair.b_start and pair.b_start + pair.b_length <= other[-1]
        assert pair.is_random_next == (pair.source >= 0)


def _masked_sample(rows: int = 20_000, seq_len: int = 128):
    rng = np.random.default_rng(0)
    length = rng.integers(8, seq_len + 1, rows)
    a_length = np.array([rng.integers(1, value - 3) for value in length])
    source = rng.integers(1000, 2000, 10 * seq_len * rows // 8)
    a_start = rng.integers(0, len(source) - seq_len, rows)
    b_start = rng.integers(0, len(source) - seq_len, rows)
    tokens = masking.assemble(source, a_start, a_length, b_start, length - a_length - 3, seq_len, 101, 102)
    keys = rng.integers(0, 2**63, rows).astype(np.uint64)
    masked = masking.mask_batch(tokens, a_length, length, keys, max_predictions=20, masked_lm_prob=0.15,
                                mask_token_rate=0.8, random_token_rate=0.1, mask_id=103, vocabulary_size=30522)
    return tokens, length, a_length, keys, masked


def test_masking_statistics_and_positions():
    tokens, length, a_length, keys, masked = _masked_sample()
    assert (masked.counts == np.minimum(20, np.maximum(1, np.rint(length * 0.15)))).all()
    real = np.arange(20)[None, :] < masked.counts[:, None]
    positions = masked.positions
    rows = np.broadcast_to(np.arange(len(length))[:, None], positions.shape)
    # Never [CLS], a [SEP] or padding; sorted and distinct; padding slots zero.
    chosen = tokens[rows[real], positions[real]]
    assert ((chosen >= 1000) & (chosen < 2000)).all()
    assert (positions[real] < length[rows[real]] - 1).all() and (positions[real] > 0).all()
    assert (np.diff(np.where(real, positions, 10**6), axis=1)[real[:, 1:]] > 0).all()
    assert not positions[~real].any() and not masked.labels[~real].any()
    assert (masked.labels[real] == chosen).all()
    # Unchosen tokens are untouched; chosen: 80% [MASK], 10% random id, 10% kept (kept includes random
    # ids that happen to equal the original, about 1 in 30,522).
    untouched = masked.input_ids.copy()
    untouched[rows[real], positions[real]] = tokens[rows[real], positions[real]]
    assert (untouched == tokens).all()
    after = masked.input_ids[rows[real], positions[real]]
    total = len(after)
    assert abs((after == 103).sum() / total - 0.8) < 0.01
    assert abs((after == chosen).sum() / total - 0.1) < 0.01
    replaced = after[(after != 103) & (after != chosen)]
    assert abs(len(replaced) / total - 0.1) < 0.01 and (replaced < 30522).all()
    assert len(np.unique(replaced)) > 5000  # spread over the vocabulary, not a few ids
    # Every candidate position is chosen about equally often (a uniform subset).
    full = real & (length[:, None] == 128)
    hits = np.bincount(positions[full], minlength=128)
    expected = full.sum() / 125
    assert hits[0] == hits[127] == 0 and (np.abs(hits[1:127] - expected) < 0.5 * expected).all()


def test_masking_depends_on_the_instance_key_only():
    tokens, length, a_length, keys, masked = _masked_sample(rows=500)
    again = masking.mask_batch(tokens[::-1], a_length[::-1], length[::-1], keys[::-1], max_predictions=20,
                               masked_lm_prob=0.15, mask_token_rate=0.8, random_token_rate=0.1, mask_id=103,
                               vocabulary_size=30522)
    np.testing.assert_array_equal(again.input_ids[::-1], masked.input_ids)
    np.testing.assert_array_equal(again.positions[::-1], masked.positions)


def test_batcher_bytes_do_not_depend_on_batch_boundaries():
    from beam_jobs.instances import BertBatcher, SpecialIds
    from beam_jobs.records import TokenizedDocument
    from configs.schema import DataConfig

    rng = random.Random(5)
    documents = [TokenizedDocument(0, number, f"d{number}", tuple(
        tuple(rng.randrange(5, 30522) for _ in range(rng.randint(3, 30))) for _ in range(rng.randint(1, 12))))
        for number in range(30)]
    config = DataConfig(format="bert", seq_len=64, max_predictions=10, dupe_factor=3, seed=11)
    special = SpecialIds(0, 101, 102, 103, 30522)

    def shards(batch_instances: int) -> dict[int, bytes]:
        batcher, out = BertBatcher(config, special, 4, documents[:10], batch_instances), {}
        for records in [*(r for document in documents for r in batcher.add(document)), *batcher.flush()]:
            out[records.shard] = out.get(records.shard, b"") + records.data
        return out

    whole = shards(100_000)
    assert len(whole) == 4 and whole == shards(1) == shards(7)
