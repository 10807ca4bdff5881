"""beam_jobs.manifest: the one type the Beam job writes and pre-training reads."""

from __future__ import annotations

import dataclasses
import json

import google_crc32c
import pytest

from beam_jobs import checksums, features
from beam_jobs.manifest import FILE_NAME, Heldout, Inputs, Manifest, Shard, Vocabulary
from configs.errors import TrimbertError
from configs.schema import DataConfig

# What the Beam job has written since its first version, in the order it builds them (the file sorts them).
WRITTEN_KEYS = ["format", "schema", "schema_fingerprint", "seq_len", "max_predictions", "data_config", "seed",
                "compression", "gzip", "vocab", "inputs", "examples", "tokens", "fill", "shards", "stats"]
VOCAB_KEYS = ["path", "size", "sha256", "learned"]
INPUTS_KEYS = ["patterns", "sources"]
SHARD_KEYS = ["name", "examples", "tokens"]  # "bytes" and "crc32c" follow when known (not in older manifests)
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello"]


def _manifest(directory, record_format: str = "packed", compression: str = "",
              shard_examples: tuple[int, ...] = (3, 2)) -> Manifest:
    """A manifest as the Beam job builds one; its shards and vocabulary exist (empty shards)."""
    data = DataConfig(format=record_format, seq_len=64, max_predictions=10)
    suffix = ".gz" if compression else ""
    shards = tuple(Shard(name=f"data-{index:05d}-of-{len(shard_examples):05d}.tfrecord{suffix}", examples=count,
                         tokens=60 * count) for index, count in enumerate(shard_examples))
    for shard in shards:
        (directory / shard.name).write_bytes(b"")
    vocabulary = directory / "vocab.txt"
    vocabulary.write_text("\n".join(TOKENS) + "\n")
    return Manifest(
        directory=str(directory), format=record_format, seq_len=64,
        max_predictions=10 if record_format == "bert" else None, data_config=dataclasses.asdict(data),
        seed=data.seed, compression=compression,
        vocabulary=Vocabulary(path=str(vocabulary), size=len(TOKENS), sha256=features.vocabulary_sha256(TOKENS),
                              learned=False),
        inputs=Inputs(patterns=("corpus/*.txt",), sources=("corpus/a.txt", "corpus/b.txt")),
        examples=sum(shard_examples), tokens=60 * sum(shard_examples), shards=shards,
        stats={"documents": 2, "tokens": 250, "length_histogram": {"0-8": 1, "8-16": 1}, "unknown_token_rate": 0.0})


def _with_heldout(manifest: Manifest, shard_examples: tuple[int, ...] = (2, 1)) -> Manifest:
    """``manifest`` with held-out shards (written, empty) named as the Beam job names them."""
    suffix = ".gz" if manifest.compressed else ""
    shards = tuple(Shard(name=f"heldout-{index:05d}-of-{len(shard_examples):05d}.tfrecord{suffix}", examples=count,
                         tokens=60 * count) for index, count in enumerate(shard_examples))
    for shard in shards:
        with open(f"{manifest.directory}/{shard.name}", "wb"):
            pass
    heldout = Heldout(fraction=0.25, examples=sum(shard_examples), tokens=60 * sum(shard_examples), shards=shards)
    return dataclasses.replace(manifest, heldout=heldout)


def _write(manifest: Manifest) -> None:
    with open(f"{manifest.directory}/{FILE_NAME}", "w", encoding="utf-8") as handle:
        handle.write(manifest.to_text())


@pytest.mark.parametrize("record_format, compression", [("packed", ""), ("bert", "GZIP")])
def test_what_is_written_reads_back_equal(tmp_path, record_format, compression):
    manifest = _manifest(tmp_path, record_format, compression)
    _write(manifest)
    read = Manifest.read(tmp_path)
    assert read == manifest
    assert read.to_text() == (tmp_path / FILE_NAME).read_text()
    assert read.compressed == (compression == "GZIP")
    assert read.shard_paths == (str(tmp_path / read.shards[0].name), str(tmp_path / read.shards[1].name))


@pytest.mark.parametrize("record_format, compression", [("packed", ""), ("bert", "GZIP")])
def test_written_keys_are_the_beam_jobs(tmp_path, record_format, compression):
    manifest = _manifest(tmp_path, record_format, compression)
    written = manifest.to_json()
    assert list(written) == WRITTEN_KEYS
    assert list(written["vocab"]) == VOCAB_KEYS and list(written["inputs"]) == INPUTS_KEYS
    assert all(list(shard) == SHARD_KEYS for shard in written["shards"])
    assert list(json.loads(manifest.to_text())) == sorted(WRITTEN_KEYS)
    # Both compression keys, one derived from the other.
    assert (written["compression"], written["gzip"]) == (compression, compression == "GZIP")
    assert written["max_predictions"] == (10 if record_format == "bert" else None)
    assert written["schema"] == features.schema(record_format, 64, 10)
    assert written["schema_fingerprint"] == features.schema_fingerprint(record_format, 64, 10)


@pytest.mark.parametrize("record_format, compression", [("packed", ""), ("bert", "GZIP")])
def test_heldout_shards_are_written_read_back_and_kept_out_of_the_training_counts(tmp_path, record_format,
                                                                                compression):
    training = _manifest(tmp_path, record_format, compression)
    manifest = _with_heldout(training)
    _write(manifest)
    read = Manifest.read(tmp_path)
    assert read == manifest and read.to_text() == (tmp_path / FILE_NAME).read_text()
    written = json.loads(read.to_text())
    assert list(written) == sorted([*WRITTEN_KEYS, "heldout"])
    assert written["heldout"] == {"fraction": 0.25, "examples": 3, "tokens": 180, "shards": [
        {"name": f"heldout-0000{index}-of-00002.tfrecord{'.gz' if compression else ''}", "examples": count,
         "tokens": 60 * count} for index, count in enumerate((2, 1))]}
    assert read.heldout_paths == tuple(str(tmp_path / shard.name) for shard in read.heldout.shards)
    # The training figures are the training shards' alone.
    assert (read.examples, read.tokens, read.shard_paths) == (5, 300, training.shard_paths)
    assert training.heldout is None and training.heldout_paths == ()


def test_a_missing_heldout_shard_is_named(tmp_path):
    _write(_with_heldout(_manifest(tmp_path)))
    (tmp_path / "heldout-00001-of-00002.tfrecord").unlink()
    with pytest.raises(TrimbertError) as error:
        Manifest.read(tmp_path)
    assert str(error.value) == f"{tmp_path / FILE_NAME}: lists shards that are missing: heldout-00001-of-00002.tfrecord"


@pytest.mark.parametrize("change, field", [
    (lambda raw: raw.update(heldout=7), "'heldout'"),
    (lambda raw: raw["heldout"].pop("fraction"), "'fraction'"),
    (lambda raw: raw["heldout"]["shards"][0].update(examples="two"), "'examples'"),
])
def test_a_malformed_heldout_field_is_named(tmp_path, change, field):
    raw = _with_heldout(_manifest(tmp_path)).to_json()
    change(raw)
    (tmp_path / FILE_NAME).write_text(json.dumps(raw))
    with pytest.raises(TrimbertError) as error:
        Manifest.read(tmp_path)
    assert str(error.value) == f"{tmp_path / FILE_NAME}: malformed manifest, field {field} missing or wrong"


def test_the_beam_jobs_manifest_reads_back_to_its_own_bytes(bert_data):
    text = (bert_data / FILE_NAME).read_text()
    assert list(json.loads(text)) == sorted(WRITTEN_KEYS)
    assert Manifest.read(bert_data).to_text() == text
    assert all(sorted(shard) == sorted(SHARD_KEYS + ["bytes", "crc32c"]) for shard in json.loads(text)["shards"])


def _with_real_shards(directory, contents: list[bytes], heldout: list[bytes]) -> Manifest:
    """A manifest whose training and held-out shards hold ``contents`` and ``heldout``, their lengths and
    CRC-32Cs recorded as the Beam job records them."""
    manifest = _with_heldout(_manifest(directory, shard_examples=(1,) * len(contents)),
                             shard_examples=(1,) * len(heldout))

    def recorded(shards, data):
        for shard, content in zip(shards, data, strict=True):
            (directory / shard.name).write_bytes(content)
        return tuple(dataclasses.replace(shard, bytes=len(content), crc32c=checksums.crc32c(content))
                     for shard, content in zip(shards, data, strict=True))

    heldout_shards = recorded(manifest.heldout.shards, heldout)
    return dataclasses.replace(manifest, shards=recorded(manifest.shards, contents),
                               heldout=dataclasses.replace(manifest.heldout, shards=heldout_shards))


def test_shard_lengths_and_checksums_read_back_and_older_manifests_still_load(tmp_path):
    manifest = _with_real_shards(tmp_path, [b"first shard", b"second"], [b"held out"])
    _write(manifest)
    assert Manifest.read(tmp_path) == manifest
    written = json.loads((tmp_path / FILE_NAME).read_text())
    assert written["shards"][1] == {"name": manifest.shards[1].name, "examples": 1, "tokens": 60, "bytes": 6,
                                    "crc32c": f"{google_crc32c.value(b'second'):08x}"}
    assert written["heldout"]["shards"][0]["bytes"] == len(b"held out")
    # A manifest from before the job recorded them: read with None, and nothing to compare.
    for shard in written["shards"] + written["heldout"]["shards"]:
        del shard["bytes"], shard["crc32c"]
    (tmp_path / FILE_NAME).write_text(json.dumps(written))
    (tmp_path / manifest.shards[0].name).write_bytes(b"changed, and longer")
    old = Manifest.read(tmp_path)
    assert all(shard.bytes is None and shard.crc32c is None for shard in old.shards + old.heldout.shards)
    old.check_shard_files(checksums=True)
    assert list(old.to_json()["shards"][0]) == SHARD_KEYS


def test_a_shard_of_another_length_or_checksum_is_named_with_both_figures(tmp_path):
    manifest = _with_real_shards(tmp_path, [b"first shard", b"second"], [b"held out", b"also held out"])
    _write(manifest)
    manifest = Manifest.read(tmp_path)
    manifest.check_shard_files(checksums=True)
    held = tmp_path / manifest.heldout.shards[1].name
    held.write_bytes(b"also held")  # truncated
    with pytest.raises(TrimbertError) as error:
        manifest.check_shard_files()
    assert str(error.value).startswith(f"{held}: 9 bytes, but {FILE_NAME} lists 13; the shard was truncated")
    held.write_bytes(b"also held out")
    second = tmp_path / manifest.shards[1].name
    second.write_bytes(b"SECOND")  # the same length: only the checksum sees it
    manifest.check_shard_files()
    with pytest.raises(TrimbertError) as error:
        manifest.check_shard_files(checksums=True)
    assert str(error.value).startswith(f"{second}: CRC-32C {google_crc32c.value(b'SECOND'):08x}, but {FILE_NAME} "
                                       f"lists {google_crc32c.value(b'second'):08x}; the shard was corrupted")


def _edit(tmp_path, change) -> str:
    manifest = _manifest(tmp_path)
    raw = manifest.to_json()
    change(raw)
    (tmp_path / FILE_NAME).write_text(json.dumps(raw))
    return str(tmp_path / FILE_NAME)


@pytest.mark.parametrize("change, field", [
    (lambda raw: raw.pop("seq_len"), "'seq_len'"),
    (lambda raw: raw.update(examples="many"), "'examples'"),
    (lambda raw: raw["vocab"].pop("sha256"), "'sha256'"),
    (lambda raw: raw["shards"][1].update(tokens=None), "'tokens'"),
    (lambda raw: raw.update(shards=7), "'shards'"),
])
def test_a_missing_or_wrong_field_is_named(tmp_path, change, field):
    path = _edit(tmp_path, change)
    with pytest.raises(TrimbertError) as error:
        Manifest.read(tmp_path)
    assert str(error.value) == f"{path}: malformed manifest, field {field} missing or wrong"


def test_an_unfinished_job_is_named(tmp_path):
    with pytest.raises(TrimbertError, match="no manifest.json; is the preprocessing finished"):
        Manifest.read(tmp_path)


def test_missing_shards_are_named(tmp_path):
    path = _edit(tmp_path, lambda raw: None)
    (tmp_path / "data-00001-of-00002.tfrecord").unlink()
    with pytest.raises(TrimbertError) as error:
        Manifest.read(tmp_path)
    assert str(error.value) == f"{path}: lists shards that are missing: data-00001-of-00002.tfrecord"


def test_records_of_another_schema_are_refused(tmp_path):
    path = _edit(tmp_path, lambda raw: raw.update(seq_len=128))
    recorded, expected = features.schema_fingerprint("packed", 64, 0), features.schema_fingerprint("packed", 128, 0)
    with pytest.raises(TrimbertError) as error:
        Manifest.read(tmp_path)
    assert str(error.value) == (f"{path}: schema fingerprint {recorded[:12]} does not match this reader's "
                                f"{expected[:12]} for format packed")


def test_vocabulary_is_found_where_recorded_else_beside_the_data(tmp_path):
    manifest = _manifest(tmp_path)
    assert manifest.readable_vocabulary == str(tmp_path / "vocab.txt")
    moved = dataclasses.replace(manifest, vocabulary=dataclasses.replace(manifest.vocabulary, path="/gone/vocab.txt"))
    assert moved.vocabulary_path == moved.readable_vocabulary == str(tmp_path / "vocab.txt")
    (tmp_path / "vocab.txt").unlink()
    assert moved.vocabulary_path == str(tmp_path / "vocab.txt") and moved.readable_vocabulary is None


def test_checks_on_examples_and_vocabulary(tmp_path):
    manifest = _manifest(tmp_path, shard_examples=(3, 2, 4))
    assert [manifest.pipeline_examples(2, index) for index in range(2)] == [7, 2]  # shards 0, 2 and shard 1
    assert manifest.pipeline_examples(4, 0) == 9 // 4  # fewer shards than pipelines: records split evenly
    manifest.check_enough_examples(9, "here")
    with pytest.raises(TrimbertError, match=r": 9 example\(s\) in 3 shard\(s\), fewer than here batch_size 10"):
        manifest.check_enough_examples(10, "here")
    manifest.check_vocabulary(len(TOKENS), features.vocabulary_sha256(TOKENS))
    with pytest.raises(TrimbertError, match="vocabulary size 6 does not match the model's model.vocabulary_size 7"):
        manifest.check_vocabulary(7)
    with pytest.raises(TrimbertError, match="same size, different tokens"):
        manifest.check_vocabulary(len(TOKENS), "0" * 64)
