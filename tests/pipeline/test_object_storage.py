"""Every TensorFlow-side stage on a filesystem that is not the local disk: TensorFlow's in-memory ram://.

A ram:// path breaks in code that uses os, pathlib or open(): pathlib folds ``ram://x`` into
``ram:/x`` (a local folder ``ram:`` in the working directory) and open() cannot find it. The test
runs in an empty working directory, checks each stage's outputs through tf.io.gfile on ram:// and
that no ``ram:`` folder appeared locally, so a stage that slipped back to local file calls fails it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import uuid

import pytest

import storage
from beam_jobs.manifest import FILE_NAME, Manifest

FIXTURE_GLUE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "glue"
PRETRAIN_SETTINGS = ["pretrain.phases=[{steps: 4, seq_len: 64, batch_size: 8}]", "data.seq_len=64",
                     "model.max_sequence_length=64", "pretrain.log_every=1", "pretrain.checkpoint_every=2",
                     # one checkpoint left to evaluate (ckpt-4); the graph step, not XLA's compile
                     "pretrain.keep_checkpoints=1", "pretrain.jit_compile=false"]
FINETUNE_SETTINGS = ["finetune.seq_len=32", "finetune.batch_size=4", "finetune.epochs=1", "finetune.seeds=[1]"]


def _settings(settings):
    return [argument for setting in settings for argument in ("--set", setting)]


@pytest.fixture
def ram_root(packed_data, tmp_path, monkeypatch):
    """The packed data, its vocabulary and the GLUE fixture copied to a fresh ram:// root; cwd an empty folder."""
    root = f"ram://trimbert-{uuid.uuid4().hex}"
    data = storage.join(root, "data")
    storage.copy_tree(packed_data, data)
    manifest = Manifest.read(data)
    vocabulary = storage.join(data, "vocab.txt")
    storage.copy_file(manifest.vocabulary.path, vocabulary)
    # as a job run with --vocab gs://.../vocab.txt records it
    moved = dataclasses.replace(manifest, vocabulary=dataclasses.replace(manifest.vocabulary, path=vocabulary))
    storage.write_text(storage.join(data, FILE_NAME), moved.to_text())
    storage.copy_tree(FIXTURE_GLUE, storage.join(root, "glue"))
    working = tmp_path / "cwd"
    working.mkdir()
    monkeypatch.chdir(working)
    yield root
    assert list(working.iterdir()) == [], "a stage wrote a ram:// path to the local disk"
    storage.remove_tree(root)


def test_pretrain_finetune_evaluate_report_prune_on_ram(ram_root, tmp_path, capsys):
    from models import pretrained
    from pipeline.cli.main import main

    data, run, glue = (storage.join(ram_root, name) for name in ("data", "run", "glue"))
    pretrain = ["pretrain", "--config", "tiny", "--data", data, "--model-dir", run, *_settings(PRETRAIN_SETTINGS)]

    # Pre-train: stopped at step 2, then the same command (without the stop) resumes to step 4.
    assert main([*pretrain, "--max-steps", "2"]) == 0
    assert storage.isfile(storage.join(run, "checkpoints", "ckpt-2.index"))
    assert main(pretrain) == 0
    assert f"resumed from {run}/checkpoints/ckpt-2 at step 2" in capsys.readouterr().out
    metrics = [json.loads(line) for line in storage.read_text(storage.join(run, "metrics.jsonl")).splitlines()]
    assert [record["step"] for record in metrics] == [1, 2, 3, 4]
    summary = storage.read_json(storage.join(run, "summary.json"))
    assert summary["steps"] == 4 and summary["encoder"] == storage.join(run, "encoder")
    assert storage.isfile(storage.join(run, "encoder", "model.safetensors"))
    assert storage.isfile(storage.join(run, "config.yaml")) and storage.isfile(storage.join(run, "run.json"))
    assert storage.listdir(storage.join(run, "tensorboard"))

    # Fine-tune the finished run: vocabulary from the export, result and submissions on ram://.
    finetuned = storage.join(ram_root, "finetune")
    assert main(["finetune", "--init", run, "--task", "mrpc", "--glue-dir", glue, "--out", finetuned,
                 *_settings(FINETUNE_SETTINGS)]) == 0
    record = storage.read_json(storage.join(finetuned, "result.json"))
    assert record["checkpoint"] == run and record["model_config"] == "tiny"
    assert record["pretrain_accelerator_hours"] == pytest.approx(summary["accelerator_hours"])
    assert storage.isfile(storage.join(finetuned, "timings.json"))
    assert storage.listdir(storage.join(finetuned, "submission")) == ["MRPC.tsv"]

    # Evaluate every checkpoint: the SQLite store must be local, and says so when it is not given.
    evaluate = ["evaluate", "--model-dir", run, "--tasks", "mrpc", "--glue-dir", glue, *_settings(FINETUNE_SETTINGS)]
    assert main([*evaluate, "--pending"]) == 2
    assert "--store /local/path" in capsys.readouterr().err
    store = tmp_path / "evaluations.sqlite"
    assert main([*evaluate, "--pending", "--store", str(store)]) == 0
    assert "1 evaluated, 0 failed" in capsys.readouterr().out
    # .claims holds each claim's work in progress; the winner's folder was promoted to ckpt-4
    assert [entry for entry in storage.listdir(storage.join(run, "evaluations")) if not entry.startswith(".")] == [
        "ckpt-4"]
    assert storage.isfile(storage.join(run, "evaluations", "ckpt-4", "mrpc", "result.json"))

    # Report over result folders on ram://, written to ram://.
    report = storage.join(ram_root, "report")
    assert main(["report", storage.join(run, "evaluations"), finetuned, "--out", report]) == 0
    assert {"report.md", "report.csv", "report.json", "score_vs_parameters.png",
            "score_vs_accelerator_hours.png"} <= set(storage.listdir(report))
    assert len(storage.read_json(storage.join(report, "report.json"))["rows"]) == 2
    assert storage.read_bytes(storage.join(report, "score_vs_parameters.png")).startswith(b"\x89PNG")

    # Prune the exported encoder into another ram:// folder and load it back.
    pruned = storage.join(ram_root, "pruned")
    assert main(["prune", "--from", storage.join(run, "encoder"), "--strategy", "top", "--drop", "1",
                 "--out", pruned]) == 0
    encoder = pretrained.from_pretrained(pruned)
    assert encoder.model_config.num_layers == 1
    assert pretrained.vocabulary_file(pruned) == storage.join(pruned, "vocab.txt")


def test_finetune_hands_a_tfds_data_dir_url_to_tfds_whole(minilm_dir, tmp_path, monkeypatch):
    from configs import schema as config_lib
    from pipeline.finetune import run as finetune
    from pipeline.finetune import sources

    seen = []

    def load_examples(task, split, glue_dir=None, tfds_data_dir=None, sentiment_dir=None):
        seen.append(tfds_data_dir)
        raise RuntimeError("stop after reading the options")

    monkeypatch.setattr(sources, "load_examples", load_examples)
    options = finetune.FinetuneOptions(init=str(minilm_dir), task="rte", out=str(tmp_path / "out"),
                                       tfds_data_dir="gs://bucket/tfds")
    with pytest.raises(RuntimeError, match="stop after"):
        finetune.run(config_lib.load("tiny"), options, log=lambda line: None)
    assert [str(value) for value in seen] == ["gs://bucket/tfds"]  # not pathlib's gs:/bucket/tfds
