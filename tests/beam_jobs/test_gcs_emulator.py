"""The Beam job against gs:// on a local GCS emulator: input, vocabulary and output all in a bucket.

``gcp-storage-emulator`` (a test extra) is started on 127.0.0.1; Beam's GCS client (apache-beam[gcp])
honours ``STORAGE_EMULATOR_HOST``, so the job's FileSystems calls on gs:// reach it. TensorFlow's own
gs:// ignores that variable, which is why the TensorFlow-side stages are tested on ram:// instead
(tests/pipeline/test_object_storage.py).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

BUCKET = "trimbert-test"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def gcs_emulator(monkeypatch, tmp_path):
    """A fresh in-memory emulator with one bucket; ``STORAGE_EMULATOR_HOST`` points at it; killed after."""
    pytest.importorskip("apache_beam.io.gcp.gcsio", reason="needs apache-beam[gcp] (pip install -e '.[test]')")
    executable = shutil.which("gcp-storage-emulator", path=os.path.dirname(sys.executable))
    if executable is None:
        pytest.skip("needs gcp-storage-emulator (pip install -e '.[test]')")
    port = _free_port()
    log = open(tmp_path / "emulator.log", "wb")  # noqa: SIM115 - closed after the process ends
    process = subprocess.Popen([executable, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                                "--default-bucket", BUCKET], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gcp-storage-emulator did not start: "
                                       f"{(tmp_path / 'emulator.log').read_text()}") from None
                time.sleep(0.2)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        # Beam retries for ~20 s to find Google credentials, then connects anonymously, which is all the
        # emulator needs: start from "none found". (Private Beam state; if it moves, the test is only slower.)
        from apache_beam.internal.gcp import auth

        monkeypatch.setattr(auth._Credentials, "_credentials_init", True, raising=False)
        monkeypatch.setattr(auth._Credentials, "_credentials", None, raising=False)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "trimbert-test")
        yield f"gs://{BUCKET}"
    finally:
        process.kill()
        process.wait(timeout=30)
        log.close()


def _upload(path: str, data: bytes) -> None:
    """Stores ``data`` as it is (Beam would otherwise compress it again after a .gz/.zst/.bz2 name)."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)


def test_preprocess_reads_and_writes_gs_through_the_emulator(gcs_emulator, corpus_dir, vocab_path, tmp_path,
                                                             monkeypatch):
    from apache_beam.io.filesystems import FileSystems

    from beam_jobs import pipeline as beam_pipeline
    from configs.schema import DataConfig

    text = (corpus_dir / sorted(os.listdir(corpus_dir))[0]).read_text(encoding="utf-8")[:40_000]
    _upload(f"{gcs_emulator}/corpus/part-1.txt", (text[:text.rfind("\n\n")] + "\n").encode("utf-8"))
    _upload(f"{gcs_emulator}/vocab/vocab.txt", vocab_path.read_bytes())
    monkeypatch.chdir(tmp_path)  # a gs:// path mistaken for a local one would appear here as gs:/...
    output = f"{gcs_emulator}/data"
    job = beam_pipeline.PreprocessJob(
        inputs=(f"{gcs_emulator}/corpus/*.txt",), output=output, vocab=f"{gcs_emulator}/vocab/vocab.txt",
        shards=2, data=DataConfig(format="packed", seq_len=64))
    returned = beam_pipeline.run(job, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])

    with FileSystems.open(f"{output}/manifest.json") as handle:
        manifest = json.loads(handle.read())
    assert manifest == json.loads(json.dumps(returned))
    assert manifest["examples"] > 0 and manifest["vocab"]["path"] == f"{gcs_emulator}/vocab/vocab.txt"
    written = sorted(m.path for m in FileSystems.match([f"{output}/*"])[0].metadata_list)
    expected = [f"{output}/manifest.json"] + [f"{output}/{shard['name']}" for shard in manifest["shards"]]
    assert written == sorted(expected)  # the scratch folder is gone, nothing else was left behind
    assert sum(m.size_in_bytes for m in FileSystems.match([f"{output}/*.tfrecord"])[0].metadata_list) > 0
    assert not os.path.exists(tmp_path / "gs:")


def test_parquet_and_zstd_inputs_are_read_from_gs_as_from_a_local_disk(gcs_emulator, corpus_dir, vocab_path,
                                                                      tmp_path):
    """pyarrow reads the Parquet footer and row groups through Beam's gs:// file object (seek + read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    from beam_jobs import pipeline as beam_pipeline
    from beam_jobs.read import expand_inputs
    from configs.schema import DataConfig

    text = (corpus_dir / sorted(os.listdir(corpus_dir))[0]).read_text(encoding="utf-8")[:30_000]
    lines = [line.strip() for line in text.splitlines() if line.strip()][:-1]
    documents = ["\n".join(lines[start:start + 3]) for start in range(0, len(lines), 3)]
    local = tmp_path / "local"
    local.mkdir()
    pq.write_table(pa.table({"text": documents[::2]}), local / "a.parquet", row_group_size=3)
    records = "".join(json.dumps({"text": document}) + "\n" for document in documents[1::2]).encode("utf-8")
    (local / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(records))
    for name in ("a.parquet", "b.jsonl.zst"):
        _upload(f"{gcs_emulator}/corpus/{name}", (local / name).read_bytes())
    remote_units = expand_inputs(f"{gcs_emulator}/corpus/*", split_bytes=2000)
    assert [unit.kind for unit in remote_units].count("parquet") > 1
    assert len(remote_units) == len(expand_inputs(str(local / "*"), split_bytes=2000))

    results = {}
    for name, inputs, output in [("gs", f"{gcs_emulator}/corpus/*", f"{gcs_emulator}/data"),
                                 ("local", str(local / "*"), str(tmp_path / "out"))]:
        job = beam_pipeline.PreprocessJob(inputs=(inputs,), output=output, vocab=str(vocab_path), shards=2,
                                          data=DataConfig(format="packed", seq_len=64), split_bytes=2000)
        results[name] = beam_pipeline.run(job, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert results["gs"]["stats"]["documents"] == len(documents) and results["gs"]["examples"] > 0
    assert results["gs"]["shards"] == results["local"]["shards"]
    from apache_beam.io.filesystems import FileSystems

    for shard in results["local"]["shards"]:
        with FileSystems.open(f"{gcs_emulator}/data/{shard['name']}") as handle:
            assert handle.read() == (tmp_path / "out" / shard["name"]).read_bytes()
