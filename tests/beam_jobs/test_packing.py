"""``packed`` stream packing: against a reference packing of the whole document stream, independent of
how the input is cut, and its fill on a corpus of short documents."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from beam_jobs import features
from beam_jobs import pipeline as preprocess
from beam_jobs.normalize import normalize_document, split_document
from beam_jobs.packing import FIRST_CHAIN, starts_chain
from beam_jobs.read import DocumentReader, expand_inputs
from beam_jobs.records import Document, Stats, content_digest, stable_hash
from beam_jobs.tokenize import BatchTokenizer, read_vocabulary
from configs.schema import DataConfig

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
SEQ_LEN = 16


def _documents(count: int) -> list[str]:
    """Documents from one short sentence to one far longer than a chain."""
    documents = []
    for number in range(count):
        lines = 1 + (number * 7) % 5 + (80 if number % 17 == 3 else 0)
        documents.append("\n".join(f"Document {number} line {line} tells of topic {line * number % 11}."
                                   for line in range(lines)))
    return documents


def _write(folder: pathlib.Path, documents: list[str], files: int) -> pathlib.Path:
    folder.mkdir(parents=True)
    per_file = -(-len(documents) // files)
    for number in range(files):
        part = documents[number * per_file:(number + 1) * per_file]
        (folder / f"part-{number:02d}.txt").write_text("\n\n".join(part) + "\n")
    return folder


def _run(folder: pathlib.Path, output: pathlib.Path, vocab: str, data: DataConfig, shards: int,
         split_bytes: int | None = None) -> dict:
    job = preprocess.PreprocessJob(inputs=(str(folder / "*.txt"),), output=str(output), data=data, vocab=vocab,
                                   shards=shards, split_bytes=split_bytes)
    return preprocess.run(job, IN_PROCESS)


def _shard_sequences(output: pathlib.Path, manifest: dict) -> list[list[tuple[int, ...]]]:
    """Each shard's records as tuples of their real token ids, in file order."""
    import tensorflow as tf

    spec = features.parsing_spec("packed", manifest["seq_len"], 0)
    shards = []
    for shard in manifest["shards"]:
        records = tf.data.TFRecordDataset(str(output / shard["name"]))
        parsed = [tf.io.parse_single_example(raw, spec) for raw in records]
        shards.append([tuple(int(token) for token, real in zip(record["input_ids"].numpy(),
                                                               record["input_mask"].numpy(), strict=True) if real)
                       for record in parsed])
    return shards


def _reference(folder: pathlib.Path, vocab: str, data: DataConfig, shards: int) -> list[list[tuple[int, ...]]]:
    """The packing written out plainly: every document of the corpus in order, the stream cut into
    chains at the documents that start one, each chain ``doc [SEP] doc [SEP] ...`` cut into pieces of
    ``seq_len - 1`` tokens behind a [CLS]; a sequence goes to the shard its (chain, number) hashes to."""
    tokens = read_vocabulary(vocab)
    cls, sep = tokens.index("[CLS]"), tokens.index("[SEP]")
    reader, tokenizer, stats = DocumentReader("text", log_empty_files=False), BatchTokenizer(tokens), Stats()
    chains: list[tuple[str, list[int]]] = [(FIRST_CHAIN, [])]
    units = expand_inputs([str(folder / "*.txt")], split_bytes=1 << 30)
    for document in (document for unit in units for document in reader.documents(unit, stats)):
        if starts_chain(document, data):
            chains.append((document.digest, []))
        queued = list(tokenizer.add(split_document(normalize_document(document, data.lower_case)), stats))
        for tokenized in queued + list(tokenizer.flush(stats)):
            chains[-1][1].extend([token for sentence in tokenized.sentences for token in sentence] + [sep])
    output: list[list[tuple[int, ...]]] = [[] for _ in range(shards)]
    body = data.seq_len - 1
    for key, stream in chains:
        for number, start in enumerate(range(0, len(stream), body)):
            output[stable_hash(data.seed, key, number) % shards].append((cls, *stream[start:start + body]))
    return output


def test_stream_packing_matches_a_plain_packing_of_the_whole_document_stream(tmp_path, vocab_path):
    data = DataConfig(format="packed", seq_len=SEQ_LEN, seed=3)
    folder = _write(tmp_path / "corpus", _documents(60), files=5)
    manifest = _run(folder, tmp_path / "out", str(vocab_path), data, shards=3, split_bytes=700)
    expected = _reference(folder, str(vocab_path), data, shards=3)
    assert sum(map(len, expected)) > 40 and len(expected) == 3
    # Several chains, some spanning read units: the test would pass trivially with one chain per unit.
    assert _shard_sequences(tmp_path / "out", manifest) == expected
    assert manifest["examples"] == sum(map(len, expected))
    assert manifest["tokens"] == sum(len(sequence) for shard in expected for sequence in shard)
    assert manifest["fill"] == pytest.approx(manifest["tokens"] / (manifest["examples"] * SEQ_LEN), abs=1e-6)


@pytest.mark.parametrize("packing", ["stream", "document"])
def test_packed_shards_do_not_depend_on_how_the_text_is_cut_into_files(tmp_path, vocab_path, packing):
    data = DataConfig(format="packed", packing=packing, seq_len=SEQ_LEN, seed=5)
    documents = _documents(48)
    one = _write(tmp_path / "one", documents, files=1)
    many = _write(tmp_path / "many", documents, files=16)
    runs = {"one-ranges": _run(one, tmp_path / "out-one", str(vocab_path), data, shards=4, split_bytes=500),
            "many": _run(many, tmp_path / "out-many", str(vocab_path), data, shards=4)}
    assert runs["one-ranges"]["shards"] == runs["many"]["shards"]
    for shard in runs["many"]["shards"]:
        one_bytes = (tmp_path / "out-one" / shard["name"]).read_bytes()
        assert one_bytes == (tmp_path / "out-many" / shard["name"]).read_bytes()


def test_stream_packing_fills_sequences_of_short_documents(tmp_path, vocab_path, sentiment_dir):
    """One sentiment text per document (a sentence or two each): document packing is mostly padding,
    stream packing almost none."""
    texts = []
    for path in sorted(pathlib.Path(sentiment_dir).glob("*/train.tsv")):
        texts += [line.split("\t")[0] for line in path.read_text().splitlines()[1:]]
    folder = tmp_path / "sentiment"
    folder.mkdir()
    (folder / "texts.txt").write_text("\n\n".join(texts) + "\n")
    fills = {}
    for packing in ("stream", "document"):
        data = DataConfig(format="packed", packing=packing, seq_len=128)
        manifest = _run(folder, tmp_path / packing, str(vocab_path), data, shards=2)
        lengths = np.array([len(sequence) for shard in _shard_sequences(tmp_path / packing, manifest)
                            for sequence in shard])
        assert manifest["fill"] == pytest.approx(lengths.sum() / (len(lengths) * 128), abs=1e-6)
        fills[packing] = manifest["fill"]
    assert len(texts) > 10_000
    assert fills["stream"] >= 0.98 and fills["document"] < 0.5


def test_a_unit_reads_on_only_to_the_next_chain_start(tmp_path, vocab_path, monkeypatch):
    """Every document here starts a chain (each is longer than a chain's text), so a unit reads on into
    the next file's first document at most: the job opens each unit at most twice. A stream that never
    finds its next chain start (a held-out stream when nothing is held out) would read to the end."""
    from beam_jobs import read

    documents = ["\n".join(f"Long document {number} line {line} goes on and on about its topic."
                           for line in range(80)) for number in range(8)]
    opened = []
    original = read.DocumentReader.documents

    def counting(self, unit, stats):
        opened.append(unit.index)
        return original(self, unit, stats)

    monkeypatch.setattr(read.DocumentReader, "documents", counting)
    data = DataConfig(format="packed", seq_len=SEQ_LEN)
    assert all(starts_chain(Document(0, 0, content_digest(text), tuple(text.splitlines())), data) for text in documents)
    manifest = _run(_write(tmp_path / "corpus", documents, files=8), tmp_path / "out", str(vocab_path), data, shards=2)
    assert manifest["examples"] > 8
    assert sorted(set(opened)) == list(range(8)) and len(opened) <= 2 * 8
