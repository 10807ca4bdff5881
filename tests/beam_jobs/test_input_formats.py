"""Input formats of the preprocessing job: Parquet, Zstandard and bzip2 give the bytes plain text gives,
and bad files of each kind fail naming the file, with exit code 2 and no manifest."""

from __future__ import annotations

import bz2
import gzip
import json
import pathlib
import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from beam_jobs import parquet
from beam_jobs import pipeline as preprocess
from beam_jobs.read import DocumentReader, expand_inputs
from beam_jobs.records import Stats
from configs.errors import TrimbertError
from configs.schema import DataConfig

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
WORDS = ("the quick brown fox jumps over a lazy dog while small birds sing in tall green trees near "
         "old stone houses and children play games on the wide open field every sunny morning").split()
FORMATS = ["jsonl", "jsonl.gz", "jsonl.zst", "jsonl.bz2", "parquet", "parquet-row-groups"]
ROW_GROUP_ROWS = 4
SMALL_SPLIT_BYTES = 1500


def _texts(count: int = 36) -> list[str]:
    """Multi-sentence documents as JSON or Parquet text: line breaks of all kinds, blank and padded lines."""
    rng = random.Random(11)
    texts = []
    for number in range(count):
        lines = []
        for _ in range(1 + number % 5):
            sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))).capitalize() + "."
                         for _ in range(rng.randint(1, 3))]
            lines.append(" ".join(sentences))
        breaks = ["\n", "\r\n", "\n\n", "\n  \n "]
        text = lines[0]
        for index, line in enumerate(lines[1:]):
            text += breaks[(number + index) % len(breaks)] + ("  " if index % 2 else "") + line
        texts.append(text + ("\n" if number % 3 == 0 else ""))
    return texts


def _plain_text(texts: list[str]) -> str:
    """The same documents in the plain-text format: their non-blank stripped lines, a blank line between."""
    return "\n\n".join("\n".join(line.strip() for line in text.splitlines() if line.strip()) for text in texts) + "\n"


def _jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"id": number, "text": text}) + "\n" for number, text in enumerate(texts)).encode()


def _write_parquet(path: pathlib.Path, texts: list, row_group_rows: int | None = None, **columns) -> None:
    table = pa.table({"id": list(range(len(texts))), "text": texts, **columns})
    pq.write_table(table, path, row_group_size=row_group_rows or len(texts) or 1)


def _write(directory: pathlib.Path, input_format: str, texts: list[str]) -> pathlib.Path:
    """Writes the documents in ``input_format`` into ``directory``; returns the file."""
    directory.mkdir(parents=True)
    data = _jsonl(texts)
    if input_format == "text":
        path = directory / "corpus.txt"
        path.write_text(_plain_text(texts), encoding="utf-8")
    elif input_format == "jsonl":
        path = directory / "corpus.jsonl"
        path.write_bytes(data)
    elif input_format == "jsonl.gz":
        path = directory / "corpus.jsonl.gz"
        path.write_bytes(gzip.compress(data, mtime=0))
    elif input_format == "jsonl.zst":  # two frames: the reader goes on across them
        path = directory / "corpus.jsonl.zst"
        half = data.index(b"\n", len(data) // 2) + 1
        compressor = zstandard.ZstdCompressor()
        path.write_bytes(compressor.compress(data[:half]) + compressor.compress(data[half:]))
    elif input_format == "jsonl.bz2":
        path = directory / "corpus.jsonl.bz2"
        path.write_bytes(bz2.compress(data))
    else:
        path = directory / "corpus.parquet"
        _write_parquet(path, texts, ROW_GROUP_ROWS if input_format == "parquet-row-groups" else None)
    return path


def _run(path: pathlib.Path, output: pathlib.Path, vocab: str, record_format: str, **overrides) -> dict:
    job = preprocess.PreprocessJob(
        inputs=(str(path),), output=str(output), vocab=vocab, shards=3,
        data=DataConfig(format=record_format, seq_len=32, max_predictions=5, dupe_factor=2, seed=3), **overrides)
    return preprocess.run(job, IN_PROCESS)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _texts()


@pytest.fixture(scope="module", params=["packed", "bert"])
def reference(request, tmp_path_factory, texts, vocab_path):
    """The plain-text job's output, per record format: ``(format, output folder, manifest)``."""
    root = tmp_path_factory.mktemp(f"text-{request.param}")
    output = root / "out"
    manifest = _run(_write(root / "corpus", "text", texts), output, str(vocab_path), request.param)
    assert manifest["examples"] > 20 and manifest["stats"]["documents"] == len(texts)
    return request.param, output, manifest


@pytest.mark.parametrize("input_format", FORMATS)
def test_every_format_gives_the_bytes_of_plain_text(tmp_path, texts, vocab_path, reference, input_format):
    record_format, expected_output, expected = reference
    path = _write(tmp_path / "corpus", input_format, texts)
    split_bytes = SMALL_SPLIT_BYTES if input_format == "parquet-row-groups" else None
    if split_bytes is not None:
        assert pq.ParquetFile(path).num_row_groups == -(-len(texts) // ROW_GROUP_ROWS)
        assert len(expand_inputs(str(path), split_bytes=split_bytes)) > 2
    manifest = _run(path, tmp_path / "out", str(vocab_path), record_format, split_bytes=split_bytes)
    assert (manifest["examples"], manifest["tokens"]) == (expected["examples"], expected["tokens"])
    assert manifest["stats"]["documents"] == len(texts) and manifest["shards"] == expected["shards"]
    for shard in expected["shards"]:
        assert (tmp_path / "out" / shard["name"]).read_bytes() == (expected_output / shard["name"]).read_bytes()


def test_parquet_row_group_ranges_read_each_row_once(tmp_path, texts):
    path = _write(tmp_path / "corpus", "parquet-row-groups", texts)
    sizes = parquet.row_group_sizes(str(path), "text")
    units = expand_inputs(str(path), split_bytes=SMALL_SPLIT_BYTES)
    ends = [unit.end if unit.end >= 0 else len(sizes) for unit in units]
    assert [unit.start for unit in units] == [0] + ends[:-1] and units[-1].end == -1
    for unit, end in zip(units, ends, strict=True):  # about the split size: one more group would pass it
        assert end - unit.start == 1 or sum(sizes[unit.start:end]) <= SMALL_SPLIT_BYTES
        assert end == len(sizes) or sum(sizes[unit.start:end + 1]) > SMALL_SPLIT_BYTES
    reader = DocumentReader("text", log_empty_files=False)
    stats = Stats()
    per_unit = [[document.lines for document in reader.documents(unit, stats)] for unit in units]
    metadata = pq.ParquetFile(path).metadata  # each unit read the rows of its own groups, and no others
    rows = [sum(metadata.row_group(group).num_rows for group in range(unit.start, end))
            for unit, end in zip(units, ends, strict=True)]
    assert [len(lines) for lines in per_unit] == rows
    whole = [document.lines for document in reader.documents(expand_inputs(str(path))[0], Stats())]
    assert [lines for unit_lines in per_unit for lines in unit_lines] == whole and len(whole) == len(texts)
    assert stats["files"] == 1 and stats["documents"] == len(texts)


@pytest.mark.parametrize("sizes, split, expected", [
    ([], 10, [(0, -1)]), ([5, 5], 10, [(0, -1)]), ([5, 5, 5], 10, [(0, 2), (2, -1)]),
    ([30, 1, 1], 10, [(0, 1), (1, -1)]), ([4, 4, 4, 4, 4], 8, [(0, 2), (2, 4), (4, -1)])])
def test_row_groups_are_grouped_by_compressed_size(sizes, split, expected):
    assert parquet.group_ranges(sizes, split) == expected


def test_parquet_null_and_empty_texts_are_skipped_and_counted(tmp_path):
    path = tmp_path / "rows.parquet"
    _write_parquet(path, ["First document.\nSecond line.", None, "", "  \n ", "Last one."])
    reader = DocumentReader("text", log_empty_files=False)
    stats = Stats()
    documents = [document.lines for unit in expand_inputs(str(path)) for document in reader.documents(unit, stats)]
    assert documents == [("First document.", "Second line."), ("Last one.",)]
    assert stats["skipped_documents.empty_text"] == 3 and stats["documents"] == 2 and stats["empty_files"] == 0
    empty = tmp_path / "empty.parquet"
    _write_parquet(empty, [None, ""])
    stats = Stats()
    assert not [document for unit in expand_inputs(str(empty)) for document in reader.documents(unit, stats)]
    assert stats["empty_files"] == 1 and stats["files"] == 1


def test_parquet_is_recognised_by_its_magic_bytes_and_reads_another_text_field(tmp_path):
    path = tmp_path / "export.bin"
    pq.write_table(pa.table({"body": ["A document in a column named body."]}), path)
    (unit,) = expand_inputs(str(path), text_field="body")
    assert unit.kind == "parquet"
    documents = list(DocumentReader("body", log_empty_files=False).documents(unit, Stats()))
    assert [document.lines for document in documents] == [("A document in a column named body.",)]


COMPRESSORS = {"zstd": zstandard.ZstdCompressor().compress, "bzip2": bz2.compress, "gzip": gzip.compress}


@pytest.mark.parametrize("name, compression, kind", [
    ("a.jsonl.zst", "zstd", "jsonl"), ("a.json.bz2", "bzip2", "jsonl"), ("a.zst", "zstd", "text"),
    ("a.txt.bz2", "bzip2", "text"), ("a.jsonl", "zstd", "jsonl"), ("a.data", "bzip2", "text"),
    ("a.jsonl.zst", "gzip", "jsonl")])
def test_compression_is_recognised_by_magic_bytes_and_kind_by_the_name_without_suffix(tmp_path, name, compression,
                                                                                      kind):
    record = json.dumps({"text": "One document."}) + "\n"
    path = tmp_path / name
    path.write_bytes(COMPRESSORS[compression](record.encode()))
    (unit,) = expand_inputs(str(path), split_bytes=4)  # compressed: one unit, however small the split
    assert unit.kind == kind and unit.whole_file
    (document,) = DocumentReader("text", log_empty_files=False).documents(unit, Stats())
    assert document.lines == (("One document.",) if kind == "jsonl" else (record.strip(),))


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def _bad_parquet(path: pathlib.Path, case: str) -> pathlib.Path:
    path = path.with_suffix(".parquet")
    if case == "no text column":
        pq.write_table(pa.table({"id": [1], "body": ["words"]}), path)
    elif case == "integer text column":
        pq.write_table(pa.table({"text": [1, 2]}), path)
    elif case == "corrupt parquet page":  # the footer intact: found only when the page is read
        pq.write_table(pa.table({"text": [f"Text number {number} of a longer corpus." for number in range(2000)]}),
                       path, compression="snappy")
        raw = path.read_bytes()
        middle = len(raw) // 3
        path.write_bytes(raw[:middle] + bytes(64) + raw[middle + 64:])
    else:
        path.write_bytes(b"PAR1 not really a parquet file")
    return path


def _bad_compressed(path: pathlib.Path, case: str) -> pathlib.Path:
    data = _jsonl(_texts(40))
    compression = case.split()[1]
    compressed = {"zst": zstandard.ZstdCompressor().compress, "bz2": bz2.compress,
                  "gz": lambda raw: gzip.compress(raw, mtime=0)}[compression](data)
    if case.startswith("truncated"):
        compressed = compressed[:len(compressed) * 2 // 3]
    else:  # corrupt: a run of bytes in the middle overwritten
        middle = len(compressed) // 2
        compressed = compressed[:middle] + bytes(64) + compressed[middle + 64:]
    path = path.with_name(f"corpus.jsonl.{compression}")
    path.write_bytes(compressed)
    return path


BAD_INPUTS = {
    "no text column": "has no column 'text' .*its columns: id, body",
    "integer text column": "column 'text' has type int64, not a string type",
    "not parquet": "is not a readable Parquet file",
    "corrupt parquet page": "row group 0 cannot be read",
    "truncated zst": "cannot be decompressed as zstd",
    "corrupt zst": "cannot be decompressed as zstd",
    "truncated bz2": "cannot be decompressed as bzip2",
    "corrupt bz2": "cannot be decompressed as bzip2",
    "truncated gz": "cannot be decompressed as gzip",
    "corrupt gz": "cannot be decompressed as gzip",
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_naming_the_file_and_leaves_no_manifest(tmp_path, vocab_path, capsys, case):
    from pipeline.cli import main as cli

    write = _bad_parquet if "parquet" in case or "column" in case else _bad_compressed
    path = write(tmp_path / "corpus", case)
    output = tmp_path / "out"
    code = cli.main(["preprocess", "--input", str(path), "--output", str(output), "--vocab", str(vocab_path),
                     "--format", "packed", "--seq-len", "32", "--shards", "2", *IN_PROCESS])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2, error
    assert error.startswith("trimbert preprocess: error: ") and str(path) in error
    assert re.search(BAD_INPUTS[case], error), error
    assert "[while running" not in error
    assert not (output / "manifest.json").exists()
    assert not output.exists() or not list(output.iterdir())  # nothing that looks like a run in progress


@pytest.mark.parametrize("case", ["truncated zst", "corrupt zst", "truncated bz2", "truncated gz"])
def test_a_truncated_or_corrupt_stream_fails_where_its_lines_are_read(tmp_path, case):
    path = _bad_compressed(tmp_path / "corpus", case)
    (unit,) = expand_inputs(str(path))  # the header is fine: found only when read
    with pytest.raises(TrimbertError, match=f"input file {path} cannot be decompressed"):
        list(DocumentReader("text", log_empty_files=False).documents(unit, Stats()))


def test_a_step_error_reported_by_a_worker_process_becomes_its_message():
    from beam_jobs.runners import step_error_message

    worker = RuntimeError("Traceback (most recent call last):\n  File \"x.py\", line 1\nEOFError: cut\n\n"
                          "configs.errors.TrimbertError: input file /d/a.zst cannot be decompressed [while "
                          "running 'ProcessUnits/ParDo(_ProcessUnitFn)']\n")
    assert step_error_message(worker) == "input file /d/a.zst cannot be decompressed"
    assert step_error_message(TrimbertError("bad [while running 'Step']")) == "bad"
    assert step_error_message(RuntimeError("Traceback ...\nValueError: a bug")) is None


@pytest.mark.slow  # the CLI's default multi-processing runner: worker processes that load TensorFlow
def test_a_corrupt_file_read_in_a_worker_process_exits_2_with_one_line(tmp_path, vocab_path):
    import subprocess
    import sys

    path = _bad_compressed(tmp_path / "corpus", "truncated zst")
    root = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "preprocess", "--input", str(path), "--output", str(tmp_path / "out"),
         "--vocab", str(vocab_path), "--format", "packed", "--seq-len", "32", "--direct_num_workers=2"],
        cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"trimbert preprocess: error: input file {path} cannot be decompressed as zstd (truncated or corrupt?): "
        "the input ends inside a Zstandard frame")
    assert not list((tmp_path / "out").iterdir())
