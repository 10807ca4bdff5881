"""``trimbert launch`` with real pre-training workers: a worker killed mid-run, the group restarted, the run
finished with the weights of an uninterrupted two-worker run. The supervisor's rules with fake workers:
tests/pipeline/test_launcher.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

STEPS, CHECKPOINT_EVERY = 60, 4
SETTINGS = {"pretrain.checkpoint_every": CHECKPOINT_EVERY}
# Checkpoint entries that are wall-clock times, not training state.
TIMINGS = ("phase_seconds/", "first_step_seconds/", "_CHECKPOINTABLE_OBJECT_GRAPH")


def _launch_command(pretrain_command, data, model_dir, max_restarts):
    argv, env = pretrain_command(data, model_dir, STEPS, **SETTINGS)
    at = argv.index("pretrain")
    return argv[:at] + ["launch", "--workers", "2", "--max-restarts", str(max_restarts), "--"] + argv[at:], env


def _checkpoint(path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(path))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(TIMINGS)}


@pytest.mark.slow  # 44 to 93 s measured (two launches of two pretrain workers, one group restarted)
def test_a_killed_worker_restarts_the_group_and_the_run_ends_with_the_uninterrupted_weights(
        packed_data, tmp_path, pretrain_command, read_metrics):
    command, env = _launch_command(pretrain_command, packed_data, tmp_path / "reference", 0)
    reference = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]

    command, env = _launch_command(pretrain_command, packed_data, tmp_path / "killed", 1)
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: dict[str, list[str]] = {"out": [], "err": []}
    readers = [threading.Thread(target=_collect, args=(stream, lines[key]), daemon=True)
               for key, stream in (("out", launcher.stdout), ("err", launcher.stderr))]
    for reader in readers:
        reader.start()
    errors = lines["err"]
    try:
        first_checkpoint = tmp_path / "killed" / "checkpoints" / f"ckpt-{CHECKPOINT_EVERY}.index"
        deadline = time.monotonic() + 300
        while not first_checkpoint.exists():
            assert launcher.poll() is None, "".join(errors)[-3000:]
            assert time.monotonic() < deadline, f"{first_checkpoint} never appeared"
            time.sleep(0.05)
        started = next(line for line in errors if line.startswith("launch: started"))
        worker_1 = int(re.search(r"worker 1 \(pid (\d+)\)", started).group(1))
        os.kill(worker_1, signal.SIGKILL)
        launcher.wait(timeout=600)
    finally:
        _stop(launcher)
    for reader in readers:
        reader.join(timeout=10)
    output = "".join(lines["out"])
    log = "".join(errors)
    assert launcher.returncode == 0, log[-3000:]
    assert "launch: worker 1 was killed by SIGKILL; restarting all 2 workers from the last checkpoint " \
           "(restart 1 of 1)" in log
    assert sum(line.startswith("launch: started") for line in errors) == 2
    assert re.search(r"\[worker 0\] resumed from .*ckpt-\d+ at step \d+", output)
    assert "[worker 1] " in output

    assert [m["step"] for m in read_metrics(tmp_path / "killed") if "loss" in m] == list(range(1, STEPS + 1))
    expected = _checkpoint(tmp_path / "reference" / "checkpoints" / f"ckpt-{STEPS}")
    actual = _checkpoint(tmp_path / "killed" / "checkpoints" / f"ckpt-{STEPS}")
    # The model's weights are saved through the optimizer that tracks them (optimizer/_trainable_variables/i).
    assert sorted(actual) == sorted(expected) and any("_trainable_variables" in name for name in actual)
    different = [name for name in expected if not np.array_equal(expected[name], actual[name])]
    assert not different, different[:5]
    summaries = [json.loads((tmp_path / run / "summary.json").read_text()) for run in ("reference", "killed")]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]


def _collect(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def _stop(launcher: subprocess.Popen) -> None:
    """A launcher still running when the test fails: SIGTERM (passed on to its workers), then a second one (which
    kills them), so that no worker outlives the test."""
    for _ in range(2):
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
    if launcher.poll() is None:
        launcher.kill()
