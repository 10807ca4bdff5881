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


# Plain SGD, no clipping, constant rate, no dropout, no weight decay: the update is rate x gradient,
# so a constant factor on the gradient (a sum taken as a mean, a division by replicas or micro-batches
# done twice or not at all) moves the weights by that factor. AdamW divides the gradient by the root
# of its own second moment, so the factor cancels (exactly on the first step), and clipping to norm 1
# also hides it whenever the gradient norm exceeds 1: equivalence tests under those settings cannot fail.
# The rate is large so that a step moves the weights far beyond the comparison tolerance.
PLAIN_SGD = {"pretrain.optimizer": "sgd", "pretrain.clip_norm": "null", "pretrain.learning_rate": 0.5,
             "pretrain.decay": "constant", "pretrain.warmup_fraction": 0.0, "pretrain.weight_decay": 0.0,
             "model.dropout": 0.0}


def tiny_overrides(steps, batch_size=16, **extra):
    overrides = [f"pretrain.phases=[{{steps: {steps}, seq_len: {SEQ_LEN}, batch_size: {batch_size}}}]",
                 f"data.seq_len={SEQ_LEN}", "pretrain.log_every=1", "model.max_sequence_length=64",
                 "pretrain.jit_compile=false"]  # tiny's XLA compile would add seconds per run
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

    from pipeline import model_dir

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
    assert written["replicas"] == 1
    _assert_hours_count_every_device(written)  # two replicas: test_mirrored_two_cpu_replicas_match_one_device
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
    """The teacher's weights come from its directory and enter the loss with the configured weights.

    Two teachers (other seeds) distilled into the same student (same seed, data and masks): the
    first step's MLM loss is the same, its KD term differs, so the KD term is computed from the
    directory's weights; and every logged loss is mlm_weight x MLM + kd_weight x KD. The textbook
    ``kl`` term is used because Bort's reference term is ~1e-5 here (README), too small to compare.
    """
    students = []
    for teacher_seed in (1, 2):
        teacher = tmp_path / f"teacher{teacher_seed}"
        run_in_process(packed_data, teacher, steps=1, **{"pretrain.seed": teacher_seed})
        student = tmp_path / f"student{teacher_seed}"
        summary = run_in_process(packed_data, student, steps=1, **{
            "pretrain.distill.teacher": str(teacher), "pretrain.distill.loss": "kl", "model.num_layers": 1,
            "pretrain.distill.mlm_weight": 0.3, "pretrain.distill.kd_weight": 0.7})
        assert summary["steps"] == 1
        [first_step] = read_metrics(student)
        assert first_step["kd_loss"] > 0
        assert first_step["loss"] == pytest.approx(0.3 * first_step["mlm_loss"] + 0.7 * first_step["kd_loss"],
                                                   rel=1e-5)
        students.append(first_step)
    assert students[0]["mlm_loss"] == pytest.approx(students[1]["mlm_loss"], rel=1e-6)
    assert abs(students[0]["kd_loss"] - students[1]["kd_loss"]) > 1e-3 * students[0]["kd_loss"]


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
    """Two mirrored CPU replicas end where one device does on the same global batch of 16.

    Plain SGD without clipping (PLAIN_SGD): if the replicas' gradients were summed but not divided
    by the number of replicas (or divided twice) every update would be twice (or half) as large and
    the weights and later losses would differ; with AdamW and clipping they would still match.
    """
    settings = {**PLAIN_SGD, "pretrain.checkpoint_every": 100}
    single, env = cli(packed_data, tmp_path / "single", 4, "--strategy", "one_device", **settings)
    mirrored, _ = cli(packed_data, tmp_path / "mirrored", 4, "--strategy", "mirrored", "--num-cpu-replicas", "2",
                      **settings)
    for command in (single, mirrored):
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    summary = json.loads((tmp_path / "mirrored" / "summary.json").read_text())
    assert summary["replicas"] == 2
    _assert_same_weights(_encoder_weights(tmp_path / "single"), _encoder_weights(tmp_path / "mirrored"))
    _assert_same_losses(read_metrics(tmp_path / "single"), read_metrics(tmp_path / "mirrored"))
    # Accelerator-hours count the devices (the CPU cores), not the logical replicas.
    _assert_hours_count_every_device(summary)
    # Round trip on two replicas: the finished command run again restores the same weights and hours.
    again = subprocess.run(mirrored, env=env, check=True, capture_output=True, text=True, timeout=300)
    assert "already trained to step 4" in again.stdout
    rerun = json.loads((tmp_path / "mirrored" / "summary.json").read_text())
    assert rerun["weights_sha256"] == summary["weights_sha256"]
    assert rerun["accelerator_hours"] == pytest.approx(summary["accelerator_hours"])


def _assert_same_weights(expected, actual):
    """Every exported weight allclose (the callers' losses show the updates were large)."""
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)


def _assert_same_losses(expected_metrics, actual_metrics):
    """Same loss at every step; the loss must fall, so later steps depend on the size of earlier updates."""
    expected = [m["loss"] for m in expected_metrics]
    actual = [m["loss"] for m in actual_metrics]
    assert len(expected) == len(actual) >= 3
    np.testing.assert_allclose(actual, expected, rtol=1e-4)
    assert expected[-1] < expected[0] - 0.05, expected  # the updates are large enough to show


def _assert_hours_count_every_device(summary):
    """Accelerator-hours = devices x training seconds / 3600, in total and per phase.

    The devices are the CPU cores the run may use (test_device_accounting): logical CPU replicas
    split those cores and add none."""
    devices = summary["device_count"]
    assert summary["train_seconds"] > 0
    assert summary["accelerator_hours"] == pytest.approx(devices * summary["train_seconds"] / 3600)
    for phase in summary["phases"]:
        assert phase["accelerator_hours"] == pytest.approx(devices * phase["train_seconds"] / 3600)
    assert sum(p["accelerator_hours"] for p in summary["phases"]) == pytest.approx(summary["accelerator_hours"])


def _free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def test_multi_worker_two_processes_match_one_device_on_their_data(packed_data, tmp_path, monkeypatch):
    """Two workers (two processes, TF_CONFIG) end with the weights of one device fed the same batches.

    Each worker reads its own shard, so the reference is a one-device run in this process whose
    input is the two workers' streams joined: worker 0's 8 examples then worker 1's, the same
    global batch of 16 with the same masks. Plain SGD without clipping (PLAIN_SGD): a gradient
    all-reduced but not divided by the workers, or divided twice, would make the workers agree with
    each other and still differ from the reference by that factor.
    """
    settings = {**PLAIN_SGD, "pretrain.checkpoint_every": 100}
    outputs = _run_two_workers(packed_data, tmp_path / "run", 6, settings)
    digests = [[line for line in output.splitlines() if line.startswith("weights sha256")] for output in outputs]
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["steps"] == 6
    _assert_hours_count_every_device(summary)
    assert not list((tmp_path / "run").glob(".worker-*"))  # the non-chief cleaned up after itself

    from pipeline.pretrain import loop as pretrain

    monkeypatch.setattr(pretrain, "pretraining_dataset", _both_workers_streams(pretrain.pretraining_dataset))
    reference = run_in_process(packed_data, tmp_path / "one_device", 6, **settings)
    assert reference["replicas"] == 1
    _assert_same_weights(_encoder_weights(tmp_path / "one_device"), _encoder_weights(tmp_path / "run"))
    _assert_same_losses(read_metrics(tmp_path / "one_device"), read_metrics(tmp_path / "run"))


def _run_two_workers(data, model_dir, steps, settings):
    """Runs two local worker processes to the end; returns their outputs."""
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command, env = cli(data, model_dir, steps, "--strategy", "multi_worker", env={"TF_CONFIG": tf_config},
                           **settings)
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    return outputs


def _both_workers_streams(pretraining_dataset):
    """A one-device input that yields, per step, worker 0's batch then worker 1's, concatenated."""
    import tensorflow as tf

    def joined(manifest, batch_size, seed, shuffle_buffer, masking, input_context=None, start_step=0):
        assert input_context.num_input_pipelines == 1 and start_step == 0  # one device, from scratch
        streams = [pretraining_dataset(manifest, batch_size // 2, seed, shuffle_buffer, masking,
                                       tf.distribute.InputContext(2, worker, 2))
                   for worker in range(2)]
        return tf.data.Dataset.zip(tuple(streams)).map(
            lambda first, second: tf.nest.map_structure(lambda a, b: tf.concat([a, b], 0), first, second))

    return joined


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
    """Two micro-batches of 8 per step end with the weights and losses of one batch of 16.

    Plain SGD without clipping (PLAIN_SGD): micro-batch losses are divided by the global count of
    masked tokens, so their gradients must be summed; averaging them instead (a factor 1/2) or
    dividing each by the micro-batch count would halve every update and show in the weights and in
    every later loss. AdamW would cancel the factor and clipping would cap both runs alike.
    """
    import keras

    def final_weights(model_dir, **extra):
        keras.backend.clear_session()
        summary = run_in_process(packed_data, model_dir, steps=4, **{**PLAIN_SGD, "pretrain.checkpoint_every": 100,
                                                                      **extra})
        return summary, _encoder_weights(model_dir)

    _, whole = final_weights(tmp_path / "whole")
    summary, accumulated = final_weights(tmp_path / "accumulated", **{"pretrain.gradient_accumulation": 2})
    assert summary["steps"] == 4
    _assert_same_weights(whole, accumulated)
    metrics_whole, metrics_accumulated = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "accumulated")
    _assert_same_losses(metrics_whole, metrics_accumulated)
    # The logged MLM accuracy is summed over micro-batches too: the same fraction, not twice it.
    np.testing.assert_allclose([m["mlm_accuracy"] for m in metrics_accumulated],
                               [m["mlm_accuracy"] for m in metrics_whole], rtol=1e-4)


@pytest.mark.parametrize("variant, reference, loss_tolerance", [
    ({**PLAIN_SGD, "pretrain.mixed_precision": "bfloat16"}, PLAIN_SGD, 5e-2),
    ({**PLAIN_SGD, "pretrain.mixed_precision": "float16"}, PLAIN_SGD, 1e-2),
    # No dropout: XLA draws other dropout masks, which would change the losses from step 1.
    ({"pretrain.jit_compile": True, "pretrain.optimizer": "lamb", "model.dropout": 0.0},
     {"pretrain.optimizer": "lamb", "model.dropout": 0.0}, 1e-4),
], ids=["bfloat16", "float16", "xla-lamb"])
def test_mixed_precision_xla_and_lamb_train(packed_data, tmp_path, variant, reference, loss_tolerance):
    """Each variant follows the float32, non-XLA run of the same optimizer step by step.

    Mixed precision runs with plain SGD (PLAIN_SGD): float16 gradients are computed on the loss
    times the loss scale (2^15) and must be divided by it once; a scale left on (or removed twice)
    changes the update by 2^15 under SGD, while AdamW would divide it out and still train.
    """
    import keras

    try:
        summary = run_in_process(packed_data, tmp_path / "variant", steps=3, **{"pretrain.checkpoint_every": 100,
                                                                                 **variant})
    finally:
        keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()
    run_in_process(packed_data, tmp_path / "reference", steps=3, **{"pretrain.checkpoint_every": 100, **reference})
    assert summary["steps"] == 3
    expected = [m["loss"] for m in read_metrics(tmp_path / "reference")]
    np.testing.assert_allclose([m["loss"] for m in read_metrics(tmp_path / "variant")], expected,
                               rtol=loss_tolerance)
    if variant.get("pretrain.mixed_precision") == "float16":
        assert _loss_scale_steps(tmp_path / "variant") == 3


def _loss_scale_steps(model_dir):
    """Finite steps the checkpointed LossScaleOptimizer counted (fails if the run had none)."""
    import keras
    import tensorflow as tf

    from pipeline import model_dir as model_dir_lib
    from pipeline.pretrain.optimizer import pretraining_optimizer

    config, model = model_dir_lib.restore_pretraining_model(model_dir)
    optimizer = pretraining_optimizer(config.pretrain)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.latest_checkpoint(str(pathlib.Path(model_dir) / "checkpoints"))
    # Every variable of the loss-scaling optimizer must come from the checkpoint: a run whose
    # optimizer had no loss scale would leave dynamic_scale and step_counter unmatched.
    tf.train.Checkpoint(optimizer=optimizer).restore(checkpoint).assert_existing_objects_matched()
    assert float(optimizer.dynamic_scale.numpy()) > 1.0
    return int(optimizer.step_counter.numpy())


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
    from beam_jobs.manifest import Manifest

    examples = Manifest.read(data).examples
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

    from beam_jobs.manifest import Manifest
    from pipeline.pretrain.input import pretraining_dataset

    # Two workers, one file each, and the second worker's file is empty: its stream could never yield.
    manifest = Manifest.read(packed_data)
    first, second = manifest.shards
    manifest = dataclasses.replace(manifest, shards=(dataclasses.replace(first, examples=10),
                                                     dataclasses.replace(second, examples=0)))
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
    # The same recipe stopped at step 3, then resumed: only the watchdog's interval differs (allowed).
    first, env = cli(data, tmp_path / "model", 10, "--max-steps", "3", **{"pretrain.checkpoint_every": 1})
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
