"""Pre-training: one step and a checkpoint round trip, falling loss, replicas, workers, kill and resume."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import schema as config_lib
from configs.errors import TrimbertError

REPO = pathlib.Path(__file__).resolve().parents[3]
SEQ_LEN = 64  # the length of conftest's packed_data


def tiny_overrides(steps, batch_size=16, **extra):
    overrides = [f"pretrain.phases=[{{steps: {steps}, seq_len: {SEQ_LEN}, batch_size: {batch_size}}}]",
                 f"data.seq_len={SEQ_LEN}", "pretrain.log_every=1", "model.max_sequence_length=64"]
    return overrides + [f"{key}={value}" for key, value in extra.items()]


def run_in_process(data, model_dir, steps, **extra):
    from pipeline.pretrain import loop as pretrain

    config = config_lib.load("tiny", tiny_overrides(steps, **extra))
    options = pretrain.RunOptions(data_dirs=(str(data),), model_dir=str(model_dir))
    return pretrain.run(config, options, log=lambda line: None)


def cli(data, model_dir, steps, *flags, env=None, **extra):
    command = [sys.executable, "-m", "pipeline.cli", "pretrain", "--config", "tiny", "--data", str(data),
               "--model-dir", str(model_dir), *flags]
    for override in tiny_overrides(steps, **extra):
        command += ["--set", override]
    return command, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}


def read_metrics(model_dir):
    return [json.loads(line) for line in (pathlib.Path(model_dir) / "metrics.jsonl").read_text().splitlines()]


def test_one_step_and_checkpoint_round_trip(packed_data, tmp_path):
    import tensorflow as tf

    from pipeline.pretrain import model_dir

    summary = run_in_process(packed_data, tmp_path, steps=2, **{"pretrain.checkpoint_every": 1})
    assert summary["steps"] == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == ["ckpt-1.index", "ckpt-2.index"]
    config, model = model_dir.restore_pretraining_model(tmp_path)
    assert model_dir.weights_digest(model) == summary["weights_sha256"]
    # The optimizer state comes back too: a fresh optimizer restored from the checkpoint is at step 2.
    from pipeline.pretrain.optimizer import pretraining_optimizer

    optimizer = pretraining_optimizer(config.pretrain)
    optimizer.build(model.trainable_variables)
    tf.train.Checkpoint(optimizer=optimizer).restore(str(tmp_path / "checkpoints" / "ckpt-2")).expect_partial()
    assert int(optimizer.iterations.numpy()) == 2
    moments = [v for v in optimizer.variables if "momentum" in v.path]
    assert moments and any(np.abs(v.numpy()).sum() > 0 for v in moments)
    # Outputs: metrics per step, the summary with accelerator-hours, the exported encoder.
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2]
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["accelerator_hours"] == pytest.approx(written["device_count"] * written["train_seconds"] / 3600)
    assert (tmp_path / "encoder" / "model.safetensors").is_file()
    assert list((tmp_path / "tensorboard").iterdir())
    # Running the finished command again changes nothing: same weights in the summary and the export.
    exported = _encoder_weights(tmp_path)
    again = run_in_process(packed_data, tmp_path, steps=2, **{"pretrain.checkpoint_every": 1})
    assert again["weights_sha256"] == summary["weights_sha256"]
    assert again["accelerator_hours"] == pytest.approx(summary["accelerator_hours"])
    for name, value in _encoder_weights(tmp_path).items():
        np.testing.assert_array_equal(value, exported[name])


def test_loss_falls_on_a_tiny_corpus(packed_data, tmp_path):
    run_in_process(packed_data, tmp_path, steps=60, **{"pretrain.learning_rate": 2e-3,
                                                        "pretrain.checkpoint_every": 60})
    losses = [m["loss"] for m in read_metrics(tmp_path)]
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 1.0


def test_vocabulary_mismatch_is_refused(packed_data, tmp_path):
    from pipeline.pretrain import loop as pretrain

    config = config_lib.load("tiny", tiny_overrides(1, **{"model.vocabulary_size": 1000}))
    with pytest.raises(TrimbertError, match="vocabulary size 30522 does not match the model's model.vocabulary_size"):
        pretrain.run(config, pretrain.RunOptions(data_dirs=(str(packed_data),), model_dir=str(tmp_path)))


def test_distillation_from_a_teacher_directory(packed_data, tmp_path):
    run_in_process(packed_data, tmp_path / "teacher", steps=2)
    summary = run_in_process(packed_data, tmp_path / "student", steps=3, **{
        "pretrain.distill.teacher": str(tmp_path / "teacher"), "model.num_layers": 1})
    assert summary["steps"] == 3
    assert all(np.isfinite(m["loss"]) for m in read_metrics(tmp_path / "student"))


def test_distillation_config_without_a_teacher_is_refused(packed_data, tmp_path):
    from pipeline.pretrain import loop as pretrain

    options = pretrain.RunOptions(data_dirs=(str(packed_data),), model_dir=str(tmp_path))
    for config in (config_lib.load("bort"), config_lib.load("tiny", ["pretrain.distill.required=true"])):
        with pytest.raises(TrimbertError, match=r"--set pretrain\.distill\.teacher=DIR"):
            pretrain.run(config, options, log=lambda line: None)
    assert not list(tmp_path.iterdir())  # refused before writing anything
    assert config_lib.load("bort_mlm").pretrain.distill.required is False


@pytest.mark.slow
def test_teacher_changes_training_and_the_kd_term_falls(packed_data, tmp_path):
    # The textbook KD term; Bort's reference term is ~1e-5 and nearly flat at this vocabulary size
    # (README, distillation), so it cannot show the teacher's pull over a few dozen steps. The
    # teacher starts from another seed: from the student's own seed it would begin next to the student.
    run_in_process(packed_data, tmp_path / "teacher", steps=30, **{"pretrain.learning_rate": 2e-3,
                                                                    "pretrain.seed": 1})
    common = {"pretrain.learning_rate": 2e-3, "pretrain.checkpoint_every": 40}
    alone = run_in_process(packed_data, tmp_path / "alone", steps=40, **common)
    taught = run_in_process(packed_data, tmp_path / "taught", steps=40, **common, **{
        "pretrain.distill.teacher": str(tmp_path / "teacher"), "pretrain.distill.loss": "kl"})
    assert taught["weights_sha256"] != alone["weights_sha256"]
    assert all(m["kd_loss"] == 0 for m in read_metrics(tmp_path / "alone"))
    kd = [m["kd_loss"] for m in read_metrics(tmp_path / "taught")]
    assert np.mean(kd[-5:]) < 0.5 * np.mean(kd[:5])


def _encoder_weights(model_dir):
    from safetensors.numpy import load_file

    return load_file(str(pathlib.Path(model_dir) / "encoder" / "model.safetensors"))


def test_mirrored_two_cpu_replicas_match_one_device(packed_data, tmp_path):
    no_dropout = {"model.dropout": 0.0, "pretrain.checkpoint_every": 100}
    single, env = cli(packed_data, tmp_path / "single", 4, "--strategy", "one_device", **no_dropout)
    mirrored, _ = cli(packed_data, tmp_path / "mirrored", 4, "--strategy", "mirrored", "--num-cpu-replicas", "2",
                      **no_dropout)
    for command in (single, mirrored):
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    assert json.loads((tmp_path / "mirrored" / "summary.json").read_text())["replicas"] == 2
    one, two = _encoder_weights(tmp_path / "single"), _encoder_weights(tmp_path / "mirrored")
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_allclose(one[name], two[name], atol=2e-5, err_msg=name)
    losses_one = [m["loss"] for m in read_metrics(tmp_path / "single")]
    losses_two = [m["loss"] for m in read_metrics(tmp_path / "mirrored")]
    np.testing.assert_allclose(losses_one, losses_two, rtol=1e-4)


def _free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def test_multi_worker_two_processes_end_with_identical_weights(packed_data, tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command, env = cli(packed_data, tmp_path / "run", 6, "--strategy", "multi_worker",
                           env={"TF_CONFIG": tf_config})
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    digests = [[line for line in output.splitlines() if line.startswith("weights sha256")] for output in outputs]
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["steps"] == 6
    assert not list((tmp_path / "run").glob(".worker-*"))  # the non-chief cleaned up after itself


def _wait_for(path, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_killed_run_resumes_to_the_same_weights(packed_data, tmp_path):
    settings = {"pretrain.checkpoint_every": 4}
    reference, env = cli(packed_data, tmp_path / "reference", 12, **settings)
    subprocess.run(reference, env=env, check=True, capture_output=True, timeout=300)

    command, env = cli(packed_data, tmp_path / "killed", 12, **settings)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(tmp_path / "killed" / "checkpoints" / "ckpt-4.index", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout
    steps = [m["step"] for m in read_metrics(tmp_path / "killed")]
    assert steps == list(range(1, 13))  # nothing lost, nothing logged twice
    final = json.loads((tmp_path / "killed" / "summary.json").read_text())
    expected = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert final["steps"] == 12
    assert final["weights_sha256"] == expected["weights_sha256"]  # same data position, same masks


def test_sigterm_checkpoints_and_exits_for_resume(packed_data, tmp_path):
    command, env = cli(packed_data, tmp_path, 400, **{"pretrain.checkpoint_every": 1000})
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(tmp_path / "metrics.jsonl", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 143, output
    step = read_metrics(tmp_path)[-1]["step"]
    assert (tmp_path / "checkpoints" / f"ckpt-{step}.index").exists()
    assert "SIGTERM: checkpoint saved" in output


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(packed_data, tmp_path):
    command, env = cli(packed_data, tmp_path, 20, **{"pretrain.learning_rate": 1e30, "pretrain.warmup_fraction": 0.0,
                                                     "pretrain.checkpoint_every": 1})
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "non-finite loss" in result.stderr and "at step" in result.stderr
    bad_step = int(result.stderr.split("at step ")[1].split(";")[0])
    saved = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "checkpoints").glob("ckpt-*.index"))
    assert saved and max(saved) == bad_step - 1


def test_gradient_accumulation_matches_one_large_batch(packed_data, tmp_path):
    import keras

    from pipeline.pretrain import loop as pretrain

    def final_weights(model_dir, **extra):
        summary = run_in_process(packed_data, model_dir, steps=3, **{"model.dropout": 0.0,
                                                                      "pretrain.checkpoint_every": 100, **extra})
        return summary, _encoder_weights(model_dir)

    keras.backend.clear_session()
    _, whole = final_weights(tmp_path / "whole")
    keras.backend.clear_session()
    summary, accumulated = final_weights(tmp_path / "accumulated", **{"pretrain.gradient_accumulation": 2})
    assert summary["steps"] == 3
    for name in whole:
        np.testing.assert_allclose(whole[name], accumulated[name], atol=2e-5, err_msg=name)
    assert pretrain  # imported for the same module state as the runs


@pytest.mark.parametrize("precision, extra", [
    ("bfloat16", {}),
    ("float16", {}),
    ("float32", {"pretrain.jit_compile": True, "pretrain.optimizer": "lamb"}),
])
def test_mixed_precision_xla_and_lamb_train(packed_data, tmp_path, precision, extra):
    import keras

    try:
        summary = run_in_process(packed_data, tmp_path, steps=3, **{"pretrain.mixed_precision": precision,
                                                                     "pretrain.checkpoint_every": 100, **extra})
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert summary["steps"] == 3
    assert all(np.isfinite(m["loss"]) for m in read_metrics(tmp_path))


def test_two_phase_schedule_reports_each_phase(packed_data, tmp_path):
    from pipeline.pretrain import loop as pretrain

    overrides = tiny_overrides(1) + [
        f"pretrain.phases=[{{steps: 3, seq_len: {SEQ_LEN}, batch_size: 16}}, "
        f"{{steps: 2, seq_len: {SEQ_LEN}, batch_size: 8, learning_rate: 1.0e-4}}]"]
    config = config_lib.load("tiny", overrides)
    summary = pretrain.run(config, pretrain.RunOptions(data_dirs=(str(packed_data),), model_dir=str(tmp_path)),
                           log=lambda line: None)
    assert summary["steps"] == 5
    assert [p["batch_size"] for p in summary["phases"]] == [16, 8]
    assert all(p["train_seconds"] > 0 for p in summary["phases"])
    assert [m["phase"] for m in read_metrics(tmp_path)] == [0, 0, 0, 1, 1]


# ---------------------------------------------------------------------------
# Degenerate data: refused before the loop, never an endless wait
# ---------------------------------------------------------------------------


def _preprocessed(tmp_path, vocab_path, text: str) -> pathlib.Path:
    """A Beam output folder for ``text``, committed even when it holds no example."""
    from beam_jobs import pipeline as beam_pipeline
    from configs.schema import DataConfig

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text)
    job = beam_pipeline.PreprocessJob(inputs=(str(corpus),), output=str(tmp_path / "data"), vocab=str(vocab_path),
                                      shards=2, data=DataConfig(format="packed", seq_len=SEQ_LEN),
                                      allow_empty=True)
    beam_pipeline.run(job, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return tmp_path / "data"


@pytest.mark.parametrize("text", ["", "One short sentence.\n\nAnother one.\n"])
def test_too_little_data_is_refused_before_the_loop(tmp_path, vocab_path, text):
    data = _preprocessed(tmp_path, vocab_path, text)
    examples = json.loads((data / "manifest.json").read_text())["examples"]
    assert examples < 16
    command, env = cli(data, tmp_path / "model", 5)
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 45
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{data}: {examples} example(s) in 2 shard(s)" in result.stderr
    assert "pretrain.phases[0] batch_size 16" in result.stderr
    assert not (tmp_path / "model" / "checkpoints").exists()


def test_an_input_pipeline_whose_files_hold_no_whole_batch_is_refused(packed_data):
    import dataclasses

    import tensorflow as tf

    from pipeline.pretrain.input import DataManifest, pretraining_dataset

    # Two workers, one file each, and the second worker's file is empty: its stream could never yield.
    manifest = dataclasses.replace(DataManifest.read(packed_data), shard_examples=(10, 0))
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    with pytest.raises(TrimbertError, match="input pipeline 1 of 2 gets 0 of the .* fewer than its batch of 4"):
        pretraining_dataset(manifest, 4, 0, 100, None, context)


# ---------------------------------------------------------------------------
# Stalls end: the input blocks for good (shards swapped for FIFOs nobody writes to)
# ---------------------------------------------------------------------------


def _start_then_block_the_input(data, model_dir, steps, **extra):
    """Starts a pretrain run and, once it has checked the data, makes every shard block on open."""
    command, env = cli(data, model_dir, steps, **extra)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    header = process.stdout.readline()  # printed after the manifests are read, before the input starts
    assert header.startswith("pretrain tiny:"), header + process.stderr.read()
    for shard in pathlib.Path(data).glob("data-*.tfrecord"):
        shard.unlink()
        os.mkfifo(shard)
    return process


def _copy_of(packed_data, tmp_path):
    import shutil

    return pathlib.Path(shutil.copytree(packed_data, tmp_path / "data"))


def test_a_stalled_input_ends_the_run_naming_the_last_step_and_keeping_the_checkpoint(packed_data, tmp_path):
    data = _copy_of(packed_data, tmp_path)
    first, env = cli(data, tmp_path / "model", 3, **{"pretrain.checkpoint_every": 1})
    subprocess.run(first, env=env, check=True, capture_output=True, timeout=120)
    process = _start_then_block_the_input(data, tmp_path / "model", 10,
                                          **{"pretrain.checkpoint_every": 1, "pretrain.stall_timeout_seconds": 8})
    output, errors = process.communicate(timeout=90)
    assert process.returncode == 2, output + errors
    assert "no optimizer step completed in 8 s (pretrain.stall_timeout_seconds)" in errors
    assert "last completed step 3, waiting on the first step of phase 0" in errors
    assert "ckpt-3 stays" in errors
    saved = sorted(path.name for path in (tmp_path / "model" / "checkpoints").glob("ckpt-*.index"))
    assert saved[-1] == "ckpt-3.index"


def test_sigterm_while_the_input_is_blocked_exits_143_within_seconds(packed_data, tmp_path):
    data = _copy_of(packed_data, tmp_path)
    process = _start_then_block_the_input(data, tmp_path / "model", 10)
    time.sleep(8)  # past tracing: the first step now waits for a batch that never comes
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    output, errors = process.communicate(timeout=60)
    assert time.monotonic() - signalled < 15
    assert process.returncode == 143, output + errors
    assert "SIGTERM and no step ended in 5 s; exiting WITHOUT a checkpoint" in errors
    assert "no checkpoint yet in" in errors
