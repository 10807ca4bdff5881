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
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as handle:
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
