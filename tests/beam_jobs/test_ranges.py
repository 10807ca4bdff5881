"""Large files read in byte ranges by several read units, and the driver's progress lines."""

from __future__ import annotations

import gzip
import json
import logging
import pathlib
import re

import pytest

from beam_jobs import pipeline as preprocess
from beam_jobs.ranges import byte_ranges
from beam_jobs.read import DocumentReader, expand_inputs
from beam_jobs.records import Stats, merge_stats
from configs.schema import DataConfig

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _documents(count: int) -> list[str]:
    """Documents of very different sizes (one far longer than a range), with the layouts a corpus
    has: runs of blank lines, whitespace-only lines, Windows line ends."""
    documents = []
    for number in range(count):
        sentences = [f"Document {number} sentence {line} says something about topic {line * number % 7}."
                     for line in range(1 + (number * 5) % 11 + (60 if number == 4 else 0))]
        documents.append("\n".join(sentences))
    return documents


def _text(documents: list[str]) -> str:
    separators = ["\n\n", "\n\n\n", "\n  \n", "\r\n\r\n"]
    text = documents[0]
    for number, document in enumerate(documents[1:]):
        text += separators[number % len(separators)] + document
    return text + "\n"


def _read_all(units) -> tuple[list[tuple[str, tuple[str, ...]]], dict]:
    reader = DocumentReader("text", log_empty_files=False)
    documents, stats = [], []
    for unit in units:
        unit_stats = Stats()
        documents += [(document.digest, document.lines) for document in reader.documents(unit, unit_stats)]
        stats.append(unit_stats)
    return documents, merge_stats(stats)


@pytest.mark.parametrize("split_bytes", [97, 500, 1024, 5000])
def test_large_text_file_is_read_in_ranges_with_every_document_once(tmp_path, split_bytes):
    path = tmp_path / "corpus.txt"
    path.write_bytes(_text(_documents(40)).encode("utf-8"))
    whole = expand_inputs(str(path), split_bytes=1 << 30)
    ranges = expand_inputs(str(path), split_bytes=split_bytes)
    assert len(whole) == 1 and len(ranges) == -(-path.stat().st_size // split_bytes)
    assert [unit.index for unit in ranges] == list(range(len(ranges)))
    whole_documents, whole_stats = _read_all(whole)
    range_documents, range_stats = _read_all(ranges)
    assert len(whole_documents) == 40
    assert range_documents == whole_documents  # none cut, none lost, none read twice, same order
    assert range_stats == whole_stats  # bytes and files counted once


def test_large_jsonl_file_is_read_in_ranges_with_every_line_once(tmp_path):
    path = tmp_path / "corpus.jsonl"
    records = [json.dumps({"text": document}) for document in _documents(30)]
    records.insert(7, "not json")
    path.write_text("\n".join(records) + "\n")
    whole_documents, whole_stats = _read_all(expand_inputs(str(path), split_bytes=1 << 30))
    ranges = expand_inputs(str(path), split_bytes=300)
    assert len(ranges) > 10
    range_documents, range_stats = _read_all(ranges)
    assert len(whole_documents) == 30 and range_documents == whole_documents
    assert range_stats == whole_stats and range_stats["skipped_documents.invalid_json"] == 1


def test_gzip_file_stays_one_read_unit_and_the_job_says_so(tmp_path, caplog):
    path = tmp_path / "corpus.txt.gz"
    path.write_bytes(gzip.compress(_text(_documents(40)).encode("utf-8")))
    with caplog.at_level(logging.INFO):
        units = expand_inputs(str(path), split_bytes=100)
    assert [(unit.start, unit.end) for unit in units] == [(0, -1)]
    assert "gzip-compressed" in caplog.text and "one worker reads it whole" in caplog.text


def test_byte_ranges_cover_the_file_without_overlap():
    assert byte_ranges(10, 10) == [(0, -1)]
    ranges = byte_ranges(1001, 100)
    assert ranges[0][0] == 0 and ranges[-1][1] == -1 and len(ranges) == 11
    assert all(end == next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:], strict=False))


def test_one_file_read_in_ranges_gives_the_same_shards_as_the_text_in_many_files(tmp_path, vocab_path):
    documents = _documents(24)
    one = tmp_path / "one"
    many = tmp_path / "many"
    one.mkdir()
    many.mkdir()
    (one / "corpus.txt").write_text(_text(documents))
    for number in range(0, 24, 6):
        (many / f"part-{number:02d}.txt").write_text(_text(documents[number:number + 6]))
    data = DataConfig(format="bert", dupe_factor=2, seq_len=64, max_predictions=10, seed=7)
    outputs = {}
    for name, folder, split_bytes in (("one", one, 400), ("many", many, None)):
        job = preprocess.PreprocessJob(inputs=(str(folder / "*.txt"),), output=str(tmp_path / f"out-{name}"),
                                       data=data, vocab=str(vocab_path), shards=3, split_bytes=split_bytes)
        outputs[name] = (job.output, preprocess.run(job, IN_PROCESS))
    (one_out, one_manifest), (many_out, many_manifest) = outputs["one"], outputs["many"]
    assert one_manifest["examples"] > 50 and one_manifest["shards"] == many_manifest["shards"]
    assert one_manifest["stats"]["documents"] == many_manifest["stats"]["documents"] == 24
    assert one_manifest["inputs"]["sources"] == [str(one / "corpus.txt")]  # listed once, not per range
    for shard in one_manifest["shards"]:
        one_bytes = (pathlib.Path(one_out) / shard["name"]).read_bytes()
        assert one_bytes and one_bytes == (pathlib.Path(many_out) / shard["name"]).read_bytes()


def test_progress_line_appears_on_a_job_longer_than_its_interval(tmp_path, vocab_path, caplog):
    path = tmp_path / "corpus.txt"
    path.write_text(_text(_documents(40)))
    job = preprocess.PreprocessJob(inputs=(str(path),), output=str(tmp_path / "out"),
                                   data=DataConfig(format="packed", seq_len=64), vocab=str(vocab_path),
                                   shards=2, split_bytes=1000, progress_seconds=0.2)
    with caplog.at_level(logging.INFO):
        manifest = preprocess.run(job, IN_PROCESS)
    pattern = re.compile(r"preprocess: progress at \d+ s \(building instances\): ([\d,]+) documents "
                         r"\([\d.]+ MB\), ([\d,]+) tokens, ([\d,]+) instances; [\d,]+ tokens/s")
    lines = [match.groups() for match in map(pattern.search, caplog.messages) if match]
    assert lines, caplog.text
    documents, tokens, instances = (int(value.replace(",", "")) for value in lines[-1])
    assert documents <= 40 and tokens <= manifest["stats"]["tokens"] and instances <= manifest["examples"]
    final = [message for message in caplog.messages if "examples holding" in message]
    assert final and f"holding {manifest['tokens']} tokens" in final[0]
    assert f"of {manifest['stats']['tokens']} WordPiece tokens" in final[0]


@pytest.mark.slow
def test_cli_on_worker_processes_prints_progress_but_not_beams_notices(tmp_path, vocab_path):
    import subprocess
    import sys

    path = tmp_path / "corpus.txt"
    path.write_text(_text(_documents(200)))
    command = [sys.executable, "-m", "pipeline.cli", "preprocess", "--input", str(path), "--output",
               str(tmp_path / "out"), "--vocab", str(vocab_path), "--format", "packed", "--split-bytes", "20000",
               "--progress-seconds", "1", "--direct_num_workers=2"]
    root = pathlib.Path(__file__).resolve().parents[2]
    completed = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "preprocess: progress at" in completed.stderr
    assert "read units from 1 inputs" in completed.stderr
    assert "semi_persistent_directory" not in completed.stderr  # Beam's relayed worker notice
    verbose = subprocess.run(command + ["--verbose"], cwd=root, capture_output=True, text=True, timeout=600)
    assert verbose.returncode == 0 and "semi_persistent_directory" in verbose.stderr


def test_split_file_of_blank_lines_counts_as_one_empty_file(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b"\n  \n\r\n\t\n" * 200)
    late = tmp_path / "late.txt"  # its first range is blank, a document starts after it
    late.write_bytes(b"\n" * 700 + b"A document that starts late in the file.\n")
    for path, empty, documents in ((blank, 1, 0), (late, 0, 1)):
        units = expand_inputs(str(path), split_bytes=256)
        assert len(units) > 1 and not any(unit.whole_file for unit in units)
        read, stats = _read_all(units)
        assert (stats.get("files"), stats.get("empty_files", 0), len(read)) == (1, empty, documents)
