"""Held-out masked-LM evaluation during pre-training: when it runs, what it counts, that its masks do not
depend on the run, that replicas score as one device, and that its time stays out of the device-hours."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from configs import schema as config_lib

EXAMPLES = 37  # not a multiple of any batch below: the last batch is padded


def _independent_masked_count(data, examples: int, max_predictions: int) -> int:
    """Masked positions of the first ``examples`` held-out records, counted from the records alone: ``bert``
    records carry their weights; a ``packed`` one gets round(15% of its real non-special tokens), at least 1,
    at most ``max_predictions`` (BERT's recipe, whatever the seed)."""
    import tensorflow as tf

    from beam_jobs import features
    from beam_jobs.manifest import Manifest

    manifest = Manifest.read(data)
    vocabulary = features.special_token_ids(open(manifest.vocabulary_path, encoding="utf-8").read().splitlines())
    special = [vocabulary[token] for token in ("[PAD]", "[CLS]", "[SEP]")]
    records = tf.data.TFRecordDataset(list(manifest.heldout_paths), compression_type=manifest.compression)
    total = 0
    for serialized in records.take(examples).as_numpy_iterator():
        feature = tf.train.Example.FromString(serialized).features.feature
        if manifest.format == "bert":
            total += int(sum(feature["masked_lm_weights"].float_list.value))
            continue
        ids, mask = np.array(feature["input_ids"].int64_list.value), np.array(feature["input_mask"].int64_list.value)
        candidates = int(np.sum((mask == 1) & ~np.isin(ids, special)))
        total += min(max(int(np.round(candidates * 0.15)), min(candidates, 1)), max_predictions)
    assert total > 0
    return total


def _evaluate(config, data, strategy=None, per_replica_batch: int = 4, examples: int = EXAMPLES,
              global_seed: int = 0):
    """Two evaluations of the same freshly initialised model (weights from seed 0) under ``strategy``, the
    evaluation built after seeding every generator with ``global_seed`` (as a run seeds them with its seed)."""
    import keras
    import tensorflow as tf

    import models
    from beam_jobs.manifest import Manifest
    from pipeline.pretrain.heldout import HeldoutEvaluator
    from pipeline.pretrain.masking import masking_spec

    keras.backend.clear_session()
    strategy = strategy or tf.distribute.OneDeviceStrategy("/cpu:0")
    manifest = Manifest.read(data)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.build_pretraining_model(models.build_encoder(config), next_sentence=False)
    keras.utils.set_random_seed(global_seed)
    masking = masking_spec(config, manifest, manifest.seq_len) if manifest.format == "packed" else None
    evaluator = HeldoutEvaluator(strategy, model, manifest, masking, per_replica_batch, examples)
    return evaluator(), evaluator()


@pytest.mark.parametrize("data_fixture", ["packed_heldout_data", "bert_heldout_data"])
def test_each_example_counts_once_and_two_replicas_score_as_one_device(data_fixture, request, tiny_config):
    from pipeline.pretrain import distribution

    data = request.getfixturevalue(data_fixture)
    mirrored = distribution.make_strategy("mirrored", num_cpu_replicas=2)
    assert mirrored.num_replicas_in_sync == 2, "the CPU must be split in two before TensorFlow starts"
    # One device: 10 batches of 4 (3 padding examples); two replicas: 5 global batches of 8 (3 padding).
    one, again = _evaluate(tiny_config, data)
    two, _ = _evaluate(tiny_config, data, strategy=mirrored)
    expected = _independent_masked_count(data, EXAMPLES, tiny_config.data.max_predictions)
    for result in (one, again, two):
        assert (result.examples, result.masked_tokens) == (EXAMPLES, expected)
    # Each call scores the same pass: the same figures every time.
    assert (again.mlm_loss, again.mlm_accuracy) == (one.mlm_loss, one.mlm_accuracy)
    assert two.mlm_loss == pytest.approx(one.mlm_loss, rel=1e-5)
    assert two.mlm_accuracy == pytest.approx(one.mlm_accuracy, abs=1e-9)
    assert 0 < one.mlm_loss < 20


def test_the_figures_do_not_depend_on_the_global_seed(packed_heldout_data, tiny_config):
    """The same weights scored after seeding every generator otherwise: the same figures (the in-process
    part of test_the_figures_do_not_depend_on_the_run_seed, which runs two seeded runs)."""
    first, _ = _evaluate(tiny_config, packed_heldout_data, global_seed=0)
    other, _ = _evaluate(tiny_config, packed_heldout_data, global_seed=7)
    assert other == dataclasses.replace(first, seconds=other.seconds)


def test_rows_at_eval_every_and_the_end_survive_a_resume_once(packed_heldout_data, tmp_path, run_pretraining,
                                                             read_metrics):
    """A finished 5-step run set back to its step-4 checkpoint (as if it died after the step-5 evaluation and
    before its checkpoint) resumes, evaluates step 5 again and logs it once, with the same figures."""
    import tensorflow as tf

    settings = {"pretrain.eval_every": 2, "pretrain.eval_examples": EXAMPLES, "pretrain.checkpoint_every": 2}
    summary = run_pretraining(packed_heldout_data, tmp_path, 5, **settings)
    rows = read_metrics(tmp_path)
    evaluations = [row for row in rows if "heldout_mlm_loss" in row]
    assert [row["step"] for row in evaluations] == [2, 4, 5]
    assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3, 4, 5]  # training rows as before
    assert {row["heldout_examples"] for row in evaluations} == {EXAMPLES}
    assert len({row["heldout_masked_tokens"] for row in evaluations}) == 1  # the same masked tokens each time
    last = evaluations[-1]
    assert (summary["heldout_mlm_loss"], summary["heldout_mlm_accuracy"], summary["heldout_step"]) == \
        (last["heldout_mlm_loss"], last["heldout_mlm_accuracy"], 5)
    assert summary["heldout_evaluations"] == 3 and summary["heldout_examples"] == EXAMPLES
    assert summary["heldout_seconds"] == pytest.approx(sum(row["heldout_seconds"] for row in evaluations))
    assert json.loads((tmp_path / "summary.json").read_text())["heldout_mlm_loss"] == summary["heldout_mlm_loss"]
    tags = {value.tag for path in (tmp_path / "tensorboard").iterdir()
            for event in tf.compat.v1.train.summary_iterator(str(path)) for value in event.summary.value}
    assert {"heldout_mlm_loss", "heldout_mlm_accuracy", "heldout_seconds"} <= tags

    checkpoints = tmp_path / "checkpoints"
    for path in checkpoints.glob("ckpt-5.*"):
        path.unlink()
    (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-4"\nall_model_checkpoint_paths: "ckpt-4"\n')
    (tmp_path / "summary.json").unlink()
    shutil.rmtree(tmp_path / "encoder")
    resumed = run_pretraining(packed_heldout_data, tmp_path, 5, **settings)
    assert read_metrics(tmp_path)[:-2] == rows[:-2]  # up to step 4 as written; step 5 redone, not repeated
    again = [row for row in read_metrics(tmp_path) if "heldout_mlm_loss" in row]
    assert [row["step"] for row in again] == [2, 4, 5]
    assert again[-1]["heldout_mlm_loss"] == last["heldout_mlm_loss"]
    assert resumed["heldout_evaluations"] == 3  # two restored from the checkpoint, one run again


@pytest.mark.slow  # two pre-training runs: about 15 s; test_the_figures_do_not_depend_on_the_global_seed in-process
def test_the_figures_do_not_depend_on_the_run_seed(packed_heldout_data, tiny_model_dir, tmp_path, pretrain_overrides,
                                                   read_metrics):
    """Two runs with different seeds from the same weights, which a zero learning rate keeps: their held-out
    figures are equal (same examples, same masks), though they train on other batches with other masks."""
    from pipeline.pretrain import loop

    rows = {}
    for seed in (0, 1):
        config = config_lib.load("tiny", pretrain_overrides(
            2, **{"pretrain.seed": seed, "pretrain.learning_rate": 0.0, "pretrain.eval_every": 1,
                  "pretrain.eval_examples": EXAMPLES}))
        loop.run(config, loop.RunOptions(data_dirs=(str(packed_heldout_data),), model_dir=str(tmp_path / str(seed)),
                                         init=str(tiny_model_dir)), log=lambda line: None)
        rows[seed] = read_metrics(tmp_path / str(seed))
    figures = {seed: [(row["heldout_mlm_loss"], row["heldout_mlm_accuracy"], row["heldout_masked_tokens"])
                      for row in seed_rows if "heldout_mlm_loss" in row] for seed, seed_rows in rows.items()}
    assert len(figures[0]) == 2 and figures[0] == figures[1]
    assert figures[0][0] == figures[0][1]  # the weights did not move
    # The runs did see different training batches.
    assert [row["loss"] for row in rows[0] if "loss" in row] != [row["loss"] for row in rows[1] if "loss" in row]


def test_evaluation_time_is_not_training_time(packed_heldout_data, tmp_path, run_pretraining, monkeypatch):
    """Each evaluation made a second longer: the run's train_seconds (hence device-hours) do not grow by them."""
    import time

    from pipeline.pretrain import heldout

    evaluate = heldout.HeldoutEvaluator.__call__

    def slow(self, interrupted=lambda: False):
        started = time.perf_counter()
        result = evaluate(self, interrupted)
        time.sleep(1.0)
        return heldout.HeldoutResult(result.mlm_loss, result.mlm_accuracy, result.masked_tokens, result.examples,
                                     time.perf_counter() - started)

    monkeypatch.setattr(heldout.HeldoutEvaluator, "__call__", slow)
    summary = run_pretraining(packed_heldout_data, tmp_path, 3, **{"pretrain.eval_every": 1,
                                                                   "pretrain.eval_examples": 8})
    assert summary["heldout_evaluations"] == 3 and summary["heldout_seconds"] >= 3.0
    # Steps 2 and 3 of a tiny model take well under a second; the three evaluations ran between steps.
    assert summary["train_seconds"] - summary["first_step_seconds"] < 1.0
    assert summary["device_hours"] == pytest.approx(summary["device_count"] * summary["train_seconds"] / 3600)


def test_without_heldout_shards_nothing_is_evaluated(packed_data, tmp_path, run_pretraining, read_metrics):
    summary = run_pretraining(packed_data, tmp_path, 2, **{"pretrain.eval_every": 1})
    assert not [key for key in summary if key.startswith("heldout")]
    assert [sorted(row) == sorted(read_metrics(tmp_path)[0]) for row in read_metrics(tmp_path)] == [True, True]
    assert not [key for row in read_metrics(tmp_path) for key in row if key.startswith("heldout")]


def test_sigterm_during_an_evaluation_checkpoints_that_step_and_stops(packed_heldout_data, tmp_path,
                                                                      pretrain_overrides, read_metrics, monkeypatch):
    """A SIGTERM that arrives during the step-2 evaluation ends it at the next batch: the loop saves ckpt-2
    and stops with Preempted, the unfinished evaluation unrecorded, long before the watchdog's grace."""
    import os
    import signal as signals

    from pipeline.pretrain import heldout
    from pipeline.pretrain import loop as pretrain

    evaluate = heldout.HeldoutEvaluator.__call__
    batches_scored = []

    def terminated_midway(self, interrupted=lambda: False):
        def after_one_batch():
            batches_scored.append(1)
            if len(batches_scored) == 2:
                os.kill(os.getpid(), signals.SIGTERM)
            return interrupted()

        return evaluate(self, after_one_batch)

    monkeypatch.setattr(heldout.HeldoutEvaluator, "__call__", terminated_midway)
    config = config_lib.load("tiny", pretrain_overrides(40, **{"pretrain.checkpoint_every": 1000,
                                                               "pretrain.eval_every": 2,
                                                               "pretrain.eval_examples": EXAMPLES}))
    with pytest.raises(pretrain.Preempted):
        pretrain.run(config, pretrain.RunOptions(data_dirs=(str(packed_heldout_data),), model_dir=str(tmp_path)),
                     log=lambda line: None)
    assert sorted(path.name for path in (tmp_path / "checkpoints").glob("*.index")) == ["ckpt-2.index"]
    assert len(batches_scored) == 2  # stopped at the batch after the signal, not at the pass's end (3 batches)
    assert not [row for row in read_metrics(tmp_path) if "heldout_mlm_loss" in row]
