"""The preprocessing job on a real dask.distributed cluster gives the FnApiRunner's bytes."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASK = str(pathlib.Path(sys.executable).with_name("dask"))
START_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A scheduler and two single-threaded workers, each its own process, all able to import the
    project (the scheduler unpickles the task graph, so it needs the project too)."""
    from distributed import Client  # the `dask` extra, part of `test`

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask_logs")
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    commands = [[DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]] + [
        [DASK, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
         "--name", f"worker-{number}"] for number in range(2)]
    processes: list[subprocess.Popen] = []
    try:
        for number, command in enumerate(commands):
            log = open(logs / f"process-{number}.log", "wb")  # noqa: SIM115 (closed with the process)
            processes.append(subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT))
        with Client(address, timeout=START_SECONDS) as client:
            client.wait_for_workers(2, timeout=START_SECONDS)
            yield address, client
    finally:
        _stop(processes)
        for log in sorted(logs.iterdir()):
            if log.stat().st_size and any(p.returncode not in (0, -15) for p in processes):
                print(log.name, log.read_text(errors="replace")[-2000:])


def _small_corpus(corpus_dir: pathlib.Path, folder: pathlib.Path) -> str:
    """Three files of real text, a few documents each."""
    text = (corpus_dir / sorted(os.listdir(corpus_dir))[0]).read_text(encoding="utf-8")
    documents = [block for block in text.split("\n\n") if block.strip()][:9]
    folder.mkdir()
    for number in range(3):
        (folder / f"part-{number}.txt").write_text("\n\n".join(documents[number::3]) + "\n", encoding="utf-8")
    return str(folder / "*.txt")


@pytest.mark.slow  # about 25 s with the cluster's start and stop; Beam's own runner is in the default suite
def test_dask_cluster_output_is_byte_identical_to_the_fn_api_runner(tmp_path, dask_cluster, corpus_dir,
                                                                  vocab_path):
    from pipeline.cli import main as cli

    address, client = dask_cluster
    corpus = _small_corpus(pathlib.Path(corpus_dir), tmp_path / "corpus")
    common = ["preprocess", "--input", corpus, "--vocab", str(vocab_path), "--format", "bert",
              "--seq-len", "64", "--max-predictions", "10", "--dupe-factor", "2", "--shards", "3", "--seed", "5"]
    started = time.monotonic()
    assert cli.main([*common, "--output", str(tmp_path / "fn_api"), "--direct_running_mode=in_memory",
                     "--direct_num_workers=1"]) == 0
    fn_api_seconds = time.monotonic() - started
    before = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert cli.main([*common, "--output", str(tmp_path / "dask"), "--runner", "DaskRunner",
                     "--dask_client_address", address]) == 0
    after = client.run(lambda dask_worker: dask_worker.state.executed_count)
    print(f"FnApiRunner {fn_api_seconds:.1f} s, DaskRunner {time.monotonic() - started - fn_api_seconds:.1f} s")

    # Both workers ran part of the job: it was distributed, not run in this process.
    assert sorted(after) == sorted(before) and len(after) == 2
    assert all(after[worker] > before[worker] for worker in after), (before, after)
    expected = sorted(path.name for path in (tmp_path / "fn_api").iterdir())
    assert expected == ["data-00000-of-00003.tfrecord", "data-00001-of-00003.tfrecord",
                        "data-00002-of-00003.tfrecord", "manifest.json"]
    assert sorted(path.name for path in (tmp_path / "dask").iterdir()) == expected
    # The manifest records neither the runner nor timings, so it is compared whole, byte for byte.
    for name in expected:
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "fn_api" / name).read_bytes(), name
    assert all((tmp_path / "fn_api" / name).stat().st_size > 0 for name in expected)


@pytest.mark.slow  # a second Dask run, learning the vocabulary
def test_dask_cluster_learns_the_same_vocabulary_and_writes_the_same_records(tmp_path, dask_cluster,
                                                                              corpus_dir):
    import json

    from pipeline.cli import main as cli

    address, _ = dask_cluster
    corpus = _small_corpus(pathlib.Path(corpus_dir), tmp_path / "corpus")
    # packed: stream packing, whose chains run on across files at this length (most of these long
    # documents do not start a chain); and held-out shards.
    common = ["preprocess", "--input", corpus, "--learn-vocab", "400", "--format", "packed", "--seq-len", "128",
              "--shards", "2", "--heldout-fraction", "0.2"]
    assert cli.main([*common, "--output", str(tmp_path / "fn_api"), "--direct_running_mode=in_memory",
                     "--direct_num_workers=1"]) == 0
    assert cli.main([*common, "--output", str(tmp_path / "dask"), "--runner", "DaskRunner",
                     "--dask_client_address", address]) == 0

    expected = sorted(path.name for path in (tmp_path / "fn_api").iterdir())
    assert expected == ["data-00000-of-00002.tfrecord", "data-00001-of-00002.tfrecord",
                        "heldout-00000-of-00001.tfrecord", "manifest.json", "vocab.txt"]
    assert sorted(path.name for path in (tmp_path / "dask").iterdir()) == expected
    assert len((tmp_path / "fn_api" / "vocab.txt").read_text().splitlines()) > 100
    for name in expected[:3] + ["vocab.txt"]:
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "fn_api" / name).read_bytes(), name
    # The manifest names the learned vocab.txt by its path inside each output folder; all else is equal.
    manifests = [json.loads((tmp_path / folder / "manifest.json").read_text()) for folder in ("fn_api", "dask")]
    assert [manifest["vocab"].pop("path") for manifest in manifests] == [
        str(tmp_path / "fn_api" / "vocab.txt"), str(tmp_path / "dask" / "vocab.txt")]
    assert manifests[0] == manifests[1]


def _compressed_and_parquet_corpus(corpus_dir: pathlib.Path, folder: pathlib.Path) -> str:
    """The small corpus's three parts as .jsonl.zst, .jsonl.bz2 and .parquet (one row group per
    document, so a small --split-bytes makes it several read units); returns the comma-separated inputs."""
    import bz2
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    from beam_jobs.read import DocumentReader, expand_inputs
    from beam_jobs.records import Stats

    folder.mkdir()
    pattern = _small_corpus(corpus_dir, folder / "text")
    reader = DocumentReader("text", log_empty_files=False)
    parts = [["\n".join(document.lines) for document in reader.documents(unit, Stats())]
             for unit in expand_inputs(pattern)]
    records = ["".join(json.dumps({"text": text}) + "\n" for text in part).encode() for part in parts[:2]]
    (folder / "part-0.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(records[0]))
    (folder / "part-1.jsonl.bz2").write_bytes(bz2.compress(records[1]))
    pq.write_table(pa.table({"text": parts[2]}), folder / "part-2.parquet", row_group_size=1)
    assert len(expand_inputs(str(folder / "part-2.parquet"), split_bytes=256)) > 1
    return ",".join(str(folder / name) for name in ("part-0.jsonl.zst", "part-1.jsonl.bz2", "part-2.parquet"))


@pytest.mark.slow  # a third Dask run
def test_dask_cluster_reads_zstd_bzip2_and_parquet_inputs_as_the_fn_api_runner(tmp_path, dask_cluster, corpus_dir,
                                                                               vocab_path):
    from pipeline.cli import main as cli

    address, _ = dask_cluster
    inputs = _compressed_and_parquet_corpus(pathlib.Path(corpus_dir), tmp_path / "corpus")
    common = ["preprocess", "--input", inputs, "--vocab", str(vocab_path), "--format", "bert", "--seq-len", "64",
              "--max-predictions", "10", "--dupe-factor", "2", "--shards", "2", "--seed", "5", "--split-bytes", "256"]
    assert cli.main([*common, "--output", str(tmp_path / "fn_api"), "--direct_running_mode=in_memory",
                     "--direct_num_workers=1"]) == 0
    assert cli.main([*common, "--output", str(tmp_path / "dask"), "--runner", "DaskRunner",
                     "--dask_client_address", address]) == 0

    expected = sorted(path.name for path in (tmp_path / "fn_api").iterdir())
    assert expected == ["data-00000-of-00002.tfrecord", "data-00001-of-00002.tfrecord", "manifest.json"]
    assert sorted(path.name for path in (tmp_path / "dask").iterdir()) == expected
    for name in expected:
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "fn_api" / name).read_bytes(), name
    import json

    manifest = json.loads((tmp_path / "fn_api" / "manifest.json").read_text())
    assert manifest["examples"] > 0 and manifest["stats"]["files"] == 3 and manifest["stats"]["documents"] == 9
