"""``--heldout-fraction``: documents held out of training by a seeded hash of their content, written to
their own shards and listed in the manifest."""

from __future__ import annotations

import pathlib

import pytest

from beam_jobs import features
from beam_jobs import pipeline as preprocess
from beam_jobs.manifest import Manifest
from beam_jobs.normalize import normalize_document, split_document
from beam_jobs.read import DocumentReader, expand_inputs
from beam_jobs.records import Stats, held_out
from beam_jobs.tokenize import BatchTokenizer, read_vocabulary
from configs.schema import DataConfig
from pipeline.cli import main as cli

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _documents(count: int) -> list[str]:
    return ["\n".join(f"Report {number} part {line} covers subject {(line + 3) * number % 13}."
                      for line in range(1 + number % 4)) for number in range(count)]


def _write(folder: pathlib.Path, documents: list[str], files: int) -> pathlib.Path:
    folder.mkdir(parents=True)
    per_file = -(-len(documents) // files)
    for number in range(files):
        (folder / f"part-{number:02d}.txt").write_text("\n\n".join(documents[number * per_file:
                                                                              (number + 1) * per_file]) + "\n")
    return folder


def _run(folder, output, vocab, data, fraction, split_bytes=None) -> dict:
    job = preprocess.PreprocessJob(inputs=(str(folder / "*.txt"),), output=str(output), data=data, vocab=str(vocab),
                                   shards=4, split_bytes=split_bytes, heldout_fraction=fraction)
    return preprocess.run(job, IN_PROCESS)


def _sequences(paths: list[pathlib.Path], data: DataConfig) -> list[tuple[int, ...]]:
    import tensorflow as tf

    spec = features.parsing_spec("packed", data.seq_len, 0)
    sequences = []
    for raw in tf.data.TFRecordDataset([str(path) for path in paths]):
        record = tf.io.parse_single_example(raw, spec)
        length = int(record["input_mask"].numpy().sum())
        sequences.append(tuple(int(token) for token in record["input_ids"].numpy()[:length]))
    return sequences


def test_held_out_documents_are_exactly_those_their_hash_chooses_and_never_in_training(tmp_path, vocab_path):
    """One document per sequence, each shorter than a sequence: every record is one whole document."""
    data = DataConfig(format="packed", packing="document", seq_len=64, seed=11)
    folder = _write(tmp_path / "corpus", _documents(80), files=3)
    written = _run(folder, tmp_path / "out", vocab_path, data, fraction=0.25)
    manifest = Manifest.read(tmp_path / "out")
    assert manifest.heldout is not None and manifest.heldout.fraction == 0.25
    assert [shard.name for shard in manifest.heldout.shards] == ["heldout-00000-of-00001.tfrecord"]
    # The expected split, computed from the documents themselves.
    tokens = read_vocabulary(str(vocab_path))
    reader, tokenizer, stats = DocumentReader("text", log_empty_files=False), BatchTokenizer(tokens), Stats()
    expected: dict[bool, set] = {False: set(), True: set()}
    for unit in expand_inputs([str(folder / "*.txt")]):
        for document in reader.documents(unit, stats):
            for tokenized in [*tokenizer.add(split_document(normalize_document(document, True)), stats),
                              *tokenizer.flush(stats)]:
                ids = tuple(token for sentence in tokenized.sentences for token in sentence)
                expected[held_out(document.digest, data.seed, 0.25)].add(
                    (tokens.index("[CLS]"), *ids, tokens.index("[SEP]")))
    assert 8 <= len(expected[True]) <= 35 and len(expected[True]) + len(expected[False]) == 80
    training = _sequences([pathlib.Path(path) for path in manifest.shard_paths], data)
    heldout = _sequences([pathlib.Path(path) for path in manifest.heldout_paths], data)
    assert sorted(training) == sorted(expected[False]) and sorted(heldout) == sorted(expected[True])
    assert manifest.examples == len(training) and manifest.heldout.examples == len(heldout)
    assert manifest.heldout.tokens == sum(map(len, heldout))
    assert written["stats"]["heldout_documents"] == len(expected[True])
    assert written["stats"]["documents"] == 80


@pytest.mark.parametrize("record_format", ["packed", "bert"])
def test_held_out_shards_do_not_depend_on_how_the_text_is_cut_into_files(tmp_path, vocab_path, record_format):
    data = DataConfig(format=record_format, seq_len=16, max_predictions=4, dupe_factor=1, seed=2)
    documents = _documents(64)
    one = _write(tmp_path / "one", documents, files=1)
    many = _write(tmp_path / "many", documents, files=16)
    first = _run(one, tmp_path / "out-one", vocab_path, data, fraction=0.3, split_bytes=400)
    second = _run(many, tmp_path / "out-many", vocab_path, data, fraction=0.3)
    assert first["heldout"] == second["heldout"] and first["heldout"]["examples"] > 10
    assert first["shards"] == second["shards"]
    for shard in first["heldout"]["shards"] + first["shards"]:
        one_bytes = (tmp_path / "out-one" / shard["name"]).read_bytes()
        assert one_bytes == (tmp_path / "out-many" / shard["name"]).read_bytes()


def test_a_rerun_without_held_out_data_leaves_no_held_out_shard(tmp_path, vocab_path):
    data = DataConfig(format="packed", seq_len=32)
    folder = _write(tmp_path / "corpus", _documents(40), files=2)
    _run(folder, tmp_path / "out", vocab_path, data, fraction=0.5)
    assert list((tmp_path / "out").glob("heldout-*"))
    rerun = _run(folder, tmp_path / "out", vocab_path, data, fraction=0.0)
    assert "heldout" not in rerun and not list((tmp_path / "out").glob("heldout-*"))
    assert Manifest.read(tmp_path / "out").heldout is None


def test_cli_refuses_a_fraction_outside_zero_to_one(tmp_path, vocab_path, capsys):
    folder = _write(tmp_path / "corpus", _documents(4), files=1)
    code = cli.main(["preprocess", "--input", str(folder / "*.txt"), "--output", str(tmp_path / "out"),
                     "--vocab", str(vocab_path), "--heldout-fraction", "1.5"])
    assert code == 2 and "--heldout-fraction must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.json").exists()
