"""Pre-training: one step and a checkpoint round trip, falling loss, replicas, workers, kill and resume."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from configs import schema as config_lib
from configs.errors import TrimbertError

SEQ_LEN = 64  # the length of conftest's packed_data


def test_one_step_and_checkpoint_round_trip(packed_data, tmp_path, run_pretraining, read_metrics):
    import tensorflow as tf

    from pipeline import model_dir

    summary = run_pretraining(packed_data, tmp_path, steps=2, **{"pretrain.checkpoint_every": 1})
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
    _assert_hours_count_every_device(written)  # two workers: the multi-worker test below
    assert (tmp_path / "encoder" / "model.safetensors").is_file()
    assert list((tmp_path / "tensorboard").iterdir())
    # Running the finished command again changes nothing: same weights in the summary and the export.
    exported = _encoder_weights(tmp_path)
    again = run_pretraining(packed_data, tmp_path, steps=2, **{"pretrain.checkpoint_every": 1})
    assert again["weights_sha256"] == summary["weights_sha256"]
    assert again["accelerator_hours"] == pytest.approx(summary["accelerator_hours"])
    for name, value in _encoder_weights(tmp_path).items():
        np.testing.assert_array_equal(value, exported[name])


def test_vocabulary_mismatch_is_refused(packed_data, tmp_path, pretrain_overrides):
    from pipeline.pretrain import loop as pretrain

    config = config_lib.load("tiny", pretrain_overrides(1, **{"model.vocabulary_size": 1000}))
    with pytest.raises(TrimbertError, match="vocabulary size 30522 does not match the model's model.vocabulary_size"):
        pretrain.run(config, pretrain.RunOptions(data_dirs=(str(packed_data),), model_dir=str(tmp_path)))


def test_distillation_from_a_teacher_directory(packed_data, tmp_path, run_pretraining, read_metrics, tiny_config,
                                               model_dir_writer):
    """The teacher's weights come from its directory and enter the loss with the configured weights.

    Two teachers (other seeds) distilled into the same student (same seed, data and masks): the
    first step's MLM loss is the same, its KD term differs, so the KD term is computed from the
    directory's weights; and every logged loss is mlm_weight x MLM + kd_weight x KD. The textbook
    ``kl`` term is used because Bort's reference term is ~1e-5 here (README), too small to compare.
    """
    students = []
    for teacher_seed in (1, 2):
        teacher = tmp_path / f"teacher{teacher_seed}"
        model_dir_writer(teacher, tiny_config, seed=teacher_seed)  # a model directory of the tiny shape
        student = tmp_path / f"student{teacher_seed}"
        summary = run_pretraining(packed_data, student, steps=1, **{
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
def test_teacher_changes_training_and_the_kd_term_falls(packed_data, tmp_path, run_pretraining, read_metrics):
    # The textbook KD term; Bort's reference term is ~1e-5 and nearly flat at this vocabulary size
    # (README, distillation), so it cannot show the teacher's pull over a few dozen steps. The
    # teacher starts from another seed: from the student's own seed it would begin next to the student.
    run_pretraining(packed_data, tmp_path / "teacher", steps=30, **{"pretrain.learning_rate": 2e-3,
                                                                    "pretrain.seed": 1})
    common = {"pretrain.learning_rate": 2e-3, "pretrain.checkpoint_every": 40}
    alone = run_pretraining(packed_data, tmp_path / "alone", steps=40, **common)
    taught = run_pretraining(packed_data, tmp_path / "taught", steps=40, **common, **{
        "pretrain.distill.teacher": str(tmp_path / "teacher"), "pretrain.distill.loss": "kl"})
    assert taught["weights_sha256"] != alone["weights_sha256"]
    assert all(m["kd_loss"] == 0 for m in read_metrics(tmp_path / "alone"))
    kd = [m["kd_loss"] for m in read_metrics(tmp_path / "taught")]
    assert np.mean(kd[-5:]) < 0.5 * np.mean(kd[:5])


def _encoder_weights(model_dir):
    from safetensors.numpy import load_file

    return load_file(str(pathlib.Path(model_dir) / "encoder" / "model.safetensors"))


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


@pytest.mark.slow  # about 15 s (two worker processes); test_two_mirrored_replicas_match_one_device covers the
# replicas' arithmetic in this process
def test_multi_worker_two_processes_match_one_device_on_their_data(packed_heldout_data, tmp_path, monkeypatch,
                                                                   run_pretraining, pretrain_command, read_metrics,
                                                                   plain_sgd):
    """Two workers (two processes, TF_CONFIG) end with the weights of one device fed the same batches,
    and score the held-out text as that device does.

    Each worker reads its own shard, so the reference is a one-device run in this process whose
    input is the two workers' streams joined: worker 0's 8 examples then worker 1's, the same
    global batch of 16 with the same masks. Plain SGD without clipping (plain_sgd): a gradient
    all-reduced but not divided by the workers, or divided twice, would make the workers agree with
    each other and still differ from the reference by that factor. The held-out evaluation is split
    over the workers too: an example scored twice, or not at all, would change its figures.
    """
    data = packed_heldout_data
    settings = {**plain_sgd, "pretrain.checkpoint_every": 100, "pretrain.eval_every": 3}
    outputs = _run_two_workers(pretrain_command, data, tmp_path / "run", 6, settings)
    digests = [[line for line in output.splitlines() if line.startswith("weights sha256")] for output in outputs]
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["steps"] == 6
    _assert_hours_count_every_device(summary)
    assert not list((tmp_path / "run").glob(".worker-*"))  # the non-chief cleaned up after itself

    from pipeline.pretrain import loop as pretrain

    monkeypatch.setattr(pretrain, "pretraining_dataset", _both_workers_streams(pretrain.pretraining_dataset))
    reference = run_pretraining(data, tmp_path / "one_device", 6, **settings)
    assert reference["replicas"] == 1
    _assert_same_weights(_encoder_weights(tmp_path / "one_device"), _encoder_weights(tmp_path / "run"))
    expected, actual = read_metrics(tmp_path / "one_device"), read_metrics(tmp_path / "run")
    _assert_same_losses([m for m in expected if "loss" in m], [m for m in actual if "loss" in m])
    heldout = [[m for m in metrics if "heldout_mlm_loss" in m] for metrics in (expected, actual)]
    assert [m["step"] for m in heldout[1]] == [m["step"] for m in heldout[0]] == [3, 6]
    for name in ("heldout_examples", "heldout_masked_tokens"):
        assert [m[name] for m in heldout[1]] == [m[name] for m in heldout[0]]
    np.testing.assert_allclose([m["heldout_mlm_loss"] for m in heldout[1]],
                               [m["heldout_mlm_loss"] for m in heldout[0]], rtol=1e-4)


def _run_two_workers(pretrain_command, data, model_dir, steps, settings):
    """Runs two local worker processes to the end; returns their outputs."""
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command, env = pretrain_command(data, model_dir, steps, "--strategy", "multi_worker",
                                        env={"TF_CONFIG": tf_config}, **settings)
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


def test_an_interrupted_run_resumes_to_the_same_weights(packed_data, tmp_path, run_pretraining, read_metrics):
    """In this process: a finished 8-step run set back to its step-4 checkpoint (as if it had died after
    writing it) resumes from there and ends with the uninterrupted run's weights, each step logged once.
    The same through a real SIGKILL of the command is test_killed_run_resumes_to_the_same_weights (slow)."""
    import shutil

    uninterrupted = run_pretraining(packed_data, tmp_path, 8, **{"pretrain.checkpoint_every": 4})
    checkpoints = tmp_path / "checkpoints"
    for path in checkpoints.glob("ckpt-8.*"):
        path.unlink()
    (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-4"\nall_model_checkpoint_paths: "ckpt-4"\n')
    (tmp_path / "summary.json").unlink()
    shutil.rmtree(tmp_path / "encoder")
    resumed = run_pretraining(packed_data, tmp_path, 8, **{"pretrain.checkpoint_every": 4})
    assert [m["step"] for m in read_metrics(tmp_path)] == list(range(1, 9))  # nothing lost, nothing logged twice
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]  # same data position, same masks


@pytest.mark.slow  # about 30 s (three pretrain processes); test_an_interrupted_run_resumes_... covers it in-process
def test_killed_run_resumes_to_the_same_weights(packed_data, tmp_path, pretrain_command, read_metrics,
                                                run_pretraining):
    # 40 steps: the kill lands long before the end, a checkpoint every 4 steps.
    settings = {"pretrain.checkpoint_every": 4}
    run_pretraining(packed_data, tmp_path / "reference", 40, **settings)  # uninterrupted, in this process

    command, env = pretrain_command(packed_data, tmp_path / "killed", 40, **settings)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(tmp_path / "killed" / "checkpoints" / "ckpt-4.index", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout
    steps = [m["step"] for m in read_metrics(tmp_path / "killed")]
    assert steps == list(range(1, 41))  # nothing lost, nothing logged twice
    final = json.loads((tmp_path / "killed" / "summary.json").read_text())
    expected = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert final["steps"] == 40
    assert final["weights_sha256"] == expected["weights_sha256"]  # same data position, same masks


def test_sigterm_at_a_step_boundary_checkpoints_and_stops_for_resume(packed_data, tmp_path, pretrain_overrides):
    """In this process: a SIGTERM that arrives while step 2 is logged is seen at that step's boundary: the loop
    saves ckpt-2 and stops with Preempted (the command's exit 143), long before its 40 steps. The command
    itself: test_sigterm_checkpoints_and_exits_for_resume (slow)."""
    import os
    import signal as signals

    from pipeline.pretrain import loop as pretrain

    def log(line: str) -> None:
        if line.startswith("step") and line.split()[1] == "2":
            os.kill(os.getpid(), signals.SIGTERM)

    config = config_lib.load("tiny", pretrain_overrides(40, **{"pretrain.checkpoint_every": 1000}))
    with pytest.raises(pretrain.Preempted):
        pretrain.run(config, pretrain.RunOptions(data_dirs=(str(packed_data),), model_dir=str(tmp_path)), log=log)
    assert sorted(path.name for path in (tmp_path / "checkpoints").glob("*.index")) == ["ckpt-2.index"]
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.slow  # about 10 s (a pretrain process); the in-process test above covers the loop's part
def test_sigterm_checkpoints_and_exits_for_resume(packed_data, tmp_path, pretrain_command, read_metrics):
    command, env = pretrain_command(packed_data, tmp_path, 400, **{"pretrain.checkpoint_every": 1000})
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(tmp_path / "metrics.jsonl", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 143, output
    step = read_metrics(tmp_path)[-1]["step"]
    assert (tmp_path / "checkpoints" / f"ckpt-{step}.index").exists()
    assert "SIGTERM: checkpoint saved" in output


def _pretrain_command_line(pretrain_command, capsys, data, model_dir, steps, **extra):
    """``trimbert pretrain`` called in this process: (exit code, stdout, stderr)."""
    from pipeline.cli import main as cli

    argv, _ = pretrain_command(data, model_dir, steps, **extra)
    code = cli.main(argv[argv.index("pretrain"):])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(packed_data, tmp_path, pretrain_command, capsys):
    code, _, errors = _pretrain_command_line(pretrain_command, capsys, packed_data, tmp_path, 20, **{
        "pretrain.learning_rate": 1e30, "pretrain.warmup_fraction": 0.0, "pretrain.checkpoint_every": 1})
    assert code == 2
    assert "non-finite loss" in errors and "at step" in errors
    bad_step = int(errors.split("at step ")[1].split(";")[0])
    saved = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "checkpoints").glob("ckpt-*.index"))
    assert saved and max(saved) == bad_step - 1


def test_two_phase_schedule_reports_each_phase(packed_data, tmp_path, read_metrics, pretrain_overrides):
    from pipeline.pretrain import loop as pretrain

    overrides = pretrain_overrides(1) + [
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
def test_too_little_data_is_refused_before_the_loop(tmp_path, vocab_path, text, pretrain_command, capsys):
    from beam_jobs.manifest import Manifest

    data = _preprocessed(tmp_path, vocab_path, text)
    examples = Manifest.read(data).examples
    assert examples < 16
    started = time.monotonic()
    code, output, errors = _pretrain_command_line(pretrain_command, capsys, data, tmp_path / "model", 5)
    assert time.monotonic() - started < 45
    assert code == 2, output + errors
    assert f"{data}: {examples} example(s) in 2 shard(s)" in errors
    assert "pretrain.phases[0] batch_size 16" in errors
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


def _start_then_block_the_input(pretrain_command, data, model_dir, steps, **extra):
    """Starts a pretrain run and, once it has checked the data, makes every shard block on open."""
    command, env = pretrain_command(data, model_dir, steps, **extra)
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


@pytest.mark.slow  # about 20 s; test_watchdog covers the stall rule in this process
def test_a_stalled_input_ends_the_run_naming_the_last_step_and_keeping_the_checkpoint(packed_data, tmp_path,
                                                                                     pretrain_command):
    data = _copy_of(packed_data, tmp_path)
    # The same recipe stopped at step 3, then resumed: only the watchdog's interval differs (allowed).
    first, env = pretrain_command(data, tmp_path / "model", 10, "--max-steps", "3", **{"pretrain.checkpoint_every": 1})
    subprocess.run(first, env=env, check=True, capture_output=True, timeout=120)
    process = _start_then_block_the_input(pretrain_command, data, tmp_path / "model", 10,
                                          **{"pretrain.checkpoint_every": 1, "pretrain.stall_timeout_seconds": 8})
    output, errors = process.communicate(timeout=90)
    assert process.returncode == 2, output + errors
    assert "no optimizer step completed in 8 s (pretrain.stall_timeout_seconds)" in errors
    assert "last completed step 3, waiting on the first step of phase 0" in errors
    assert "ckpt-3 stays" in errors
    saved = sorted(path.name for path in (tmp_path / "model" / "checkpoints").glob("ckpt-*.index"))
    assert saved[-1] == "ckpt-3.index"


@pytest.mark.slow  # about 15 s; test_watchdog covers SIGTERM's grace rule in this process
def test_sigterm_while_the_input_is_blocked_exits_143_within_seconds(packed_data, tmp_path, pretrain_command):
    data = _copy_of(packed_data, tmp_path)
    process = _start_then_block_the_input(pretrain_command, data, tmp_path / "model", 10)
    time.sleep(8)  # past tracing: the first step now waits for a batch that never comes
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    output, errors = process.communicate(timeout=60)
    assert time.monotonic() - signalled < 15
    assert process.returncode == 143, output + errors
    assert "SIGTERM and no step ended in 5 s; exiting WITHOUT a checkpoint" in errors
    assert "no checkpoint yet in" in errors
