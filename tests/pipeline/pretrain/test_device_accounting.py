"""Device-hours that say what was used: the device kind and count, every step counted, tracing apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline import clock


def test_a_one_step_run_counts_its_step_and_its_devices(packed_data, tmp_path, run_pretraining):
    summary = run_pretraining(packed_data, tmp_path, steps=1)
    # The only step is also the first: before, the clock started after it and a one-step run cost 0 s.
    assert summary["train_seconds"] > 0
    assert 0 < summary["first_step_seconds"] <= summary["train_seconds"]
    assert summary["device_kind"].startswith("CPU: ")
    assert summary["device_count"] == clock.cpu_cores()
    assert summary["device_hours"] == pytest.approx(summary["device_count"] * summary["train_seconds"] / 3600)
    assert summary["accelerator_hours"] == summary["device_hours"] and summary["gpu_hours"] is None
    (phase,) = summary["phases"]
    assert phase["train_seconds"] == summary["train_seconds"] and phase["device_kind"] == summary["device_kind"]


@pytest.mark.slow  # about 30 s; test_step_arithmetic covers the replicas' arithmetic in this process
def test_logical_cpu_replicas_are_not_extra_devices(packed_data, tmp_path, pretrain_command):
    replicas = clock.cpu_cores() + 1  # more replicas than cores: counting replicas would over-bill
    command, env = pretrain_command(packed_data, tmp_path, 2, "--strategy", "mirrored", "--num-cpu-replicas",
                                    str(replicas), batch_size=4 * replicas)
    subprocess.run(command, env=env, check=True, timeout=600, stdout=subprocess.DEVNULL)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["replicas"] == replicas
    assert summary["device_count"] == clock.cpu_cores()
    assert summary["device_hours"] == pytest.approx(clock.cpu_cores() * summary["train_seconds"] / 3600)
    # Round trip on the replicas: the finished command run again restores the same weights and hours.
    again = subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=600)
    assert "already trained to step 2" in again.stdout
    rerun = json.loads((tmp_path / "summary.json").read_text())
    assert rerun["weights_sha256"] == summary["weights_sha256"]
    assert rerun["accelerator_hours"] == pytest.approx(summary["accelerator_hours"])


def test_gpu_hours_are_filled_only_for_gpus():
    assert clock.Devices("GPU: NVIDIA A100-SXM4-80GB", 8).usage(1800.0) == {
        "device_kind": "GPU: NVIDIA A100-SXM4-80GB", "device_count": 8, "wall_seconds": 1800.0,
        "device_hours": 4.0, "gpu_hours": 4.0}
    assert clock.Devices("TPU", 8).usage(3600.0)["gpu_hours"] is None
    assert clock.Devices("CPU: x", 2).usage(3600.0)["device_hours"] == 2.0


@pytest.mark.slow  # about 40 s (a pre-training subprocess)
def test_deterministic_turns_on_op_determinism(packed_data, tmp_path):
    # A fresh process per setting: op determinism, once on, stays on for the process.
    probe = ("import sys; from configs import schema; from pipeline.pretrain import loop; "
             "from tensorflow.python.framework import config as framework; "
             "config = schema.load('tiny', sys.argv[3:]); "
             "loop.run(config, loop.RunOptions(data_dirs=(sys.argv[1],), model_dir=sys.argv[2]), log=print); "
             "print('determinism', framework.is_op_determinism_enabled())")
    overrides = ["pretrain.phases=[{steps: 1, seq_len: 64, batch_size: 8}]", "data.seq_len=64",
                 "model.max_sequence_length=64"]
    outputs = {}
    for flag in ("true", "false"):
        result = subprocess.run(
            [sys.executable, "-c", probe, str(packed_data), str(tmp_path / flag), *overrides,
             f"pretrain.deterministic={flag}"], capture_output=True, text=True, timeout=300, check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        lines = result.stdout.strip().splitlines()
        outputs[flag] = (lines[-1], any("op determinism on" in line for line in lines))
    assert outputs == {"true": ("determinism True", True), "false": ("determinism False", False)}
