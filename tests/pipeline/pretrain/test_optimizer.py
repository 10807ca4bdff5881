"""Learning-rate schedule shape, phases, weight decay kept off biases and layernorms, the fine-tuning optimizer."""

import keras
import numpy as np
import pytest

from configs import schema as config_lib
from pipeline.pretrain.optimizer import WarmupDecay, finetuning_optimizer, make_optimizer, pretraining_schedule


def test_linear_warmup_then_linear_decay():
    schedule = WarmupDecay([1.0], [], warmup_steps=10, total_steps=110, decay="linear")
    rates = [float(schedule(step)) for step in (0, 4, 9, 10, 60, 110, 200)]
    np.testing.assert_allclose(rates, [0.1, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-6)


def test_polynomial_decay_and_phase_peaks():
    schedule = WarmupDecay([1.0, 0.5], [50], warmup_steps=0, total_steps=100, decay="polynomial", power=2.0)
    assert float(schedule(25)) == pytest.approx(1.0 * 0.75**2)
    assert float(schedule(75)) == pytest.approx(0.5 * 0.25**2)


def test_schedule_from_config_spans_all_phases():
    config = config_lib.load("bert_base").pretrain
    schedule = pretraining_schedule(config)
    assert schedule.total_steps == 1_000_000
    assert schedule.warmup_steps == 10_000
    assert schedule.phase_boundaries == [900_000]
    restored = WarmupDecay(**schedule.get_config())
    assert float(restored(500_000)) == pytest.approx(float(schedule(500_000)))


@pytest.mark.parametrize("name", ["adamw", "lamb", "sgd"])
def test_weight_decay_spares_bias_and_layernorm(name):
    dense = keras.layers.Dense(4, name="dense")
    norm = keras.layers.LayerNormalization(name="norm")
    model = keras.Sequential([keras.Input((3,)), dense, norm])
    for variable in model.trainable_variables:
        variable.assign(keras.ops.ones_like(variable))  # zero biases would hide a decay
    optimizer = make_optimizer(name, 0.0, weight_decay=0.5, epsilon=1e-6, clip_norm=1.0)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    zeros = [keras.ops.zeros_like(v) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    # With rate 0 nothing moves; decoupled decay is lr * wd * w, so use rate 1 to see it.
    optimizer.learning_rate = 1.0
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    for variable in model.trainable_variables:
        moved = not np.allclose(variable.numpy(), before[variable.path])
        decayed_expected = variable.name == "kernel"
        assert moved == decayed_expected, variable.path


def test_sgd_update_is_the_rate_times_the_gradient():
    """Plain SGD: doubling the gradient doubles the step (what the equivalence tests rely on)."""
    variable = keras.Variable(np.ones(3, dtype="float32"))
    optimizer = make_optimizer("sgd", 0.5, weight_decay=0.0, epsilon=1e-6, clip_norm=None)
    optimizer.apply_gradients([(keras.ops.convert_to_tensor([1.0, 2.0, -4.0]), variable)])
    np.testing.assert_allclose(variable.numpy(), [0.5, 0.0, 3.0])


def test_finetuning_optimizer_takes_epsilon_and_clip_norm_from_the_config():
    default = finetuning_optimizer(config_lib.load("bert_base").finetune, total_steps=100)
    assert isinstance(default, keras.optimizers.AdamW)
    assert (default.epsilon, default.global_clipnorm) == (1e-6, 1.0)  # BERT's recipe; bert_base.yaml names neither
    overridden = config_lib.load("bert_base", ["finetune.adam_epsilon=1e-3", "finetune.clip_norm=null",
                                               "finetune.warmup_fraction=0.2", "finetune.learning_rate=0.5"])
    optimizer = finetuning_optimizer(overridden.finetune, total_steps=100)
    assert (optimizer.epsilon, optimizer.global_clipnorm) == (1e-3, None)
    assert float(optimizer.learning_rate) == pytest.approx(0.5 / 20)  # step 0 of 20 warm-up steps to 0.5
