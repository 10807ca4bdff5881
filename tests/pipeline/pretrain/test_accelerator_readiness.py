"""What a TPU demands, checked on a CPU: fixed-shape batches and an XLA-compiled step, data on a remote filesystem.

TPUs compile the step with XLA and need every batch shape known in advance; a TPU VM reads its data
and writes its checkpoints through a remote filesystem. Here the step is compiled with
``pretrain.jit_compile`` on fixed-shape batches read from TensorFlow's ``ram://`` filesystem (which
fails in any code that uses os/pathlib/open on a path), for both record formats, and with a teacher
(that case is marked slow).
Not covered: a real TPU (its strategy, its memory) and NCCL collectives on GPUs.
"""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest

import storage
from beam_jobs.manifest import FILE_NAME, Manifest
from pipeline.pretrain.input import pretraining_dataset

SEQ_LEN = 64


def _on_ram(local_data) -> tuple[str, str]:
    """The data folder and its vocabulary copied to a fresh ram:// root; returns (root, data)."""
    root = f"ram://readiness-{uuid.uuid4().hex}"
    data = storage.join(root, "data")
    storage.copy_tree(local_data, data)
    manifest = Manifest.read(data)
    vocabulary = storage.join(data, "vocab.txt")
    storage.copy_file(manifest.vocabulary.path, vocabulary)
    moved = dataclasses.replace(manifest, vocabulary=dataclasses.replace(manifest.vocabulary, path=vocabulary))
    storage.write_text(storage.join(data, FILE_NAME), moved.to_text())
    return root, data


@pytest.mark.parametrize("record_format", ["packed", "bert"])
def test_batches_have_fixed_shapes(record_format, packed_data, bert_data):
    from configs import schema
    from pipeline.pretrain.masking import masking_spec

    local = packed_data if record_format == "packed" else bert_data
    root, data = _on_ram(local)
    manifest = Manifest.read(data)
    config = schema.load("tiny", [f"data.seq_len={SEQ_LEN}", "model.max_sequence_length=64"])
    masking = masking_spec(config, manifest, SEQ_LEN) if record_format == "packed" else None
    dataset = pretraining_dataset(manifest, 4, 0, 16, masking)
    shapes = [spec.shape for spec in [*dataset.element_spec[0].values(), *dataset.element_spec[1].values()]]
    assert all(shape.is_fully_defined() and shape[0] == 4 for shape in shapes), shapes
    storage.remove_tree(root)


# packed-distilled is slow (about 30 s): the teacher's forward pass compiled as well.
@pytest.mark.parametrize("case", ["packed", "bert", pytest.param("packed-distilled", marks=pytest.mark.slow)])
def test_xla_compiled_step_on_remote_data(case, packed_data, bert_data, tmp_path, monkeypatch, run_pretraining):
    monkeypatch.chdir(tmp_path)  # anything written to a relative local path would land here
    root, data = _on_ram(bert_data if case == "bert" else packed_data)
    extra = {"pretrain.jit_compile": "true", "pretrain.checkpoint_every": 1}
    if case == "packed-distilled":
        teacher = storage.join(root, "teacher")
        run_pretraining(data, teacher, steps=1, batch_size=8)
        extra.update({"pretrain.distill.teacher": teacher, "pretrain.distill.loss": "kl"})
    model_dir = storage.join(root, "run")
    summary = run_pretraining(data, model_dir, steps=2, batch_size=8, **extra)
    assert summary["steps"] == 2
    assert storage.isfile(storage.join(model_dir, "checkpoints", "ckpt-2.index"))
    metrics = read_metrics_from(model_dir)
    assert [record["step"] for record in metrics] == [1, 2]
    assert all(np.isfinite(record["loss"]) for record in metrics)
    if case == "packed-distilled":
        assert all(record["kd_loss"] > 0 for record in metrics)
    assert list(tmp_path.iterdir()) == []
    storage.remove_tree(root)


def read_metrics_from(model_dir: str) -> list[dict]:
    """metrics.jsonl through tf.io.gfile (the pre-training tests read it with pathlib, local only)."""
    import json

    return [json.loads(line) for line in storage.read_text(storage.join(model_dir, "metrics.jsonl")).splitlines()]

