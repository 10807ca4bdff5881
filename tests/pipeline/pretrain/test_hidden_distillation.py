"""Hidden-state distillation (``distill.objective: hidden``): the loss, and a run taught by a headless encoder."""

import json

import numpy as np
import pytest

from configs import schema as config_lib
from configs.errors import TrimbertError

SEQ_LEN = 64  # the length of conftest's packed_data


def test_hidden_losses_match_numpy_and_skip_padding():
    import tensorflow as tf

    from pipeline.pretrain import losses

    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.int32)
    cosine = 1.0 - (student * teacher).sum(-1) / (np.linalg.norm(student, axis=-1) * np.linalg.norm(teacher, axis=-1))
    mse = ((student - teacher) ** 2).mean(-1)
    for kind, per_token in (("cosine", cosine), ("mse", mse)):
        value = losses.hidden_distillation_loss_sum(tf.constant(student), tf.constant(teacher), mask, kind)
        np.testing.assert_allclose(float(value), (per_token * mask).sum(), rtol=1e-5)
        same = losses.hidden_distillation_loss_sum(tf.constant(teacher), tf.constant(teacher), mask, kind)
        assert abs(float(same)) < 1e-5


def tiny_run(data, model_dir, steps, *extra):
    from pipeline.pretrain import loop as pretrain

    config = config_lib.load("tiny", [
        f"pretrain.phases=[{{steps: {steps}, seq_len: {SEQ_LEN}, batch_size: 8}}]", f"data.seq_len={SEQ_LEN}",
        f"model.max_sequence_length={SEQ_LEN}", "pretrain.log_every=1", "pretrain.learning_rate=2e-3",
        "pretrain.jit_compile=false", *extra])
    summary = pretrain.run(config, pretrain.RunOptions(data_dirs=(str(data),), model_dir=str(model_dir)),
                           log=lambda line: None)
    metrics = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, metrics


@pytest.fixture(scope="module")
def headless_teacher(tmp_path_factory):
    """A width-128 encoder-only Hugging Face folder (no masked-LM head), from another seed than the students."""
    import keras

    import models

    keras.utils.set_random_seed(7)
    config = config_lib.load("tiny", [f"model.max_sequence_length={SEQ_LEN}", f"data.seq_len={SEQ_LEN}"])
    return models.save_pretrained(models.build_encoder(config), tmp_path_factory.mktemp("headless") / "bert")


def test_a_headless_teacher_teaches_a_narrower_student_through_a_projection(packed_data, headless_teacher,
                                                                             tmp_path):
    teacher = f"pretrain.distill.teacher={headless_teacher}"
    # Intermediate width 96 so that the only 64 x 128 kernel is the projection.
    narrow = ("model.hidden_dim=64", "model.intermediate_dim=96", "pretrain.distill.objective=hidden")
    summary, metrics = tiny_run(packed_data, tmp_path / "mse", 2, teacher, *narrow, "pretrain.distill.hidden_loss=mse")
    assert summary["steps"] == 2 and all(m["kd_loss"] > 0.0 for m in metrics)
    # The student's projection to the teacher's width (64 -> 128) is in the checkpoint, so a resume keeps it.
    import tensorflow as tf

    shapes = [shape for _, shape in tf.train.list_variables(str(tmp_path / "mse" / "checkpoints"))]
    assert [64, 128] in shapes


def test_the_hidden_term_pulls_the_student_and_its_projection_toward_the_teacher(packed_data, headless_teacher):
    """The train step on one repeated batch: the hidden term alone falls fast (on fresh batches a student
    with random embeddings learns a random teacher's token codes only slowly)."""
    import tensorflow as tf

    import models
    from beam_jobs.manifest import Manifest
    from pipeline.pretrain import distribution, starting_points
    from pipeline.pretrain.input import pretraining_dataset
    from pipeline.pretrain.masking import masking_spec
    from pipeline.pretrain.optimizer import pretraining_optimizer
    from pipeline.pretrain.step import make_train_step

    config = config_lib.load("tiny", [
        f"pretrain.phases=[{{steps: 12, seq_len: {SEQ_LEN}, batch_size: 8}}]", f"data.seq_len={SEQ_LEN}",
        f"model.max_sequence_length={SEQ_LEN}", "model.hidden_dim=64", "model.intermediate_dim=128",
        f"pretrain.distill.teacher={headless_teacher}", "pretrain.distill.objective=hidden",
        "pretrain.distill.mlm_weight=0.0", "pretrain.distill.kd_weight=1.0", "pretrain.learning_rate=1e-3",
        "pretrain.decay=constant", "pretrain.jit_compile=false"])
    strategy = distribution.make_strategy("one_device", 1, None)
    with strategy.scope():
        model = models.build_pretraining_model(models.build_encoder(config), next_sentence=False, hidden_width=128)
        optimizer = pretraining_optimizer(config.pretrain)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
    teacher = starting_points.load_teacher(config, strategy)
    projection = model.get_layer("hidden_projection")
    projection_before = projection.kernel.numpy().copy()
    manifest = Manifest.read(packed_data)
    batch = pretraining_dataset(manifest, 8, 0, 100, masking_spec(config, manifest, SEQ_LEN)).take(1)
    iterator = iter(strategy.experimental_distribute_dataset(batch.cache().repeat()))
    train_step = make_train_step(strategy, model, teacher, optimizer, step, config, 8, 1, False)
    kd = [float(train_step(iterator)["kd_loss"]) for _ in range(12)]
    assert kd[-1] < 0.8 * kd[0], kd
    assert not np.array_equal(projection.kernel.numpy(), projection_before)


def test_a_headless_teacher_is_still_refused_for_logit_distillation(packed_data, headless_teacher, tmp_path):
    with pytest.raises(TrimbertError, match="pretrain.distill.teacher: .*no masked-LM head.*trimbert teacher"):
        tiny_run(packed_data, tmp_path / "logits", 1, f"pretrain.distill.teacher={headless_teacher}")
