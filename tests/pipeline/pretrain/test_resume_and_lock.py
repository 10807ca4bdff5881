"""A run cannot silently change on resume, and a model directory has one writer at a time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from configs.errors import TrimbertError
from pipeline.writer_lock import LOCK_FILENAME


def test_a_resume_with_other_settings_is_refused_naming_them(packed_data, tmp_path, run_pretraining):
    run_pretraining(packed_data, tmp_path, steps=2, **{"pretrain.checkpoint_every": 1})
    (tmp_path / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')  # as if stopped at 1
    with pytest.raises(TrimbertError, match=r"pretrain\.learning_rate: 0\.001 -> 0\.002.*--allow-changes"):
        run_pretraining(packed_data, tmp_path, steps=2, **{"pretrain.learning_rate": 2e-3})
    other_data = tmp_path.parent / f"{tmp_path.name}-data"
    subprocess.run(["cp", "-r", str(packed_data), str(other_data)], check=True)
    with pytest.raises(TrimbertError, match=r"data: \["):
        run_pretraining(other_data, tmp_path, steps=2)
    # How the run is watched may change: logging and checkpoint intervals are not what it trains.
    run_pretraining(packed_data, tmp_path, steps=2, **{"pretrain.checkpoint_every": 7, "pretrain.log_every": 3})
    assert "changes" not in json.loads((tmp_path / "run.json").read_text())


def test_allowed_changes_are_recorded(packed_data, tmp_path, run_pretraining, pretrain_overrides):

    from configs import schema as config_lib
    from pipeline.pretrain import loop as pretrain

    run_pretraining(packed_data, tmp_path, steps=1)
    config = config_lib.load("tiny", pretrain_overrides(2, **{"pretrain.learning_rate": 2e-3}))
    options = pretrain.RunOptions(data_dirs=(str(packed_data),), model_dir=str(tmp_path), allow_changes=True)
    assert pretrain.run(config, options, log=lambda line: None)["steps"] == 2
    recorded = json.loads((tmp_path / "run.json").read_text())
    (change,) = recorded["changes"]
    assert change["fields"]["pretrain.learning_rate"] == [1e-3, 2e-3]
    assert "pretrain.phases" in change["fields"]  # 1 step then 2: the schedule changed too
    assert recorded["config"]["pretrain"]["learning_rate"] == 2e-3  # the next resume compares with this


def test_a_pretrain_into_a_model_dir_another_writer_holds_is_refused_naming_it(packed_data, tmp_path,
                                                                              run_pretraining):
    """In this process: while a writer holds the model directory's lock, a run into it is refused before
    it writes anything, naming the holder. Two real processes: the next test (slow)."""
    from pipeline.writer_lock import WriterLock

    with WriterLock(str(tmp_path), "pretrain", log=lambda line: None):
        with pytest.raises(TrimbertError, match=rf"is being written by pretrain \(host {socket.gethostname()}, "
                                                rf"pid {os.getpid()}"):
            run_pretraining(packed_data, tmp_path, 2)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "run.json").exists()


@pytest.mark.slow  # about 8 s (two pretrain processes); the in-process test above covers the refusal
def test_a_second_pretrain_into_the_same_model_dir_is_refused(packed_data, tmp_path, pretrain_command):
    first, env = pretrain_command(packed_data, tmp_path / "run", 400)
    second, _ = pretrain_command(packed_data, tmp_path / "run", 400)
    running = subprocess.Popen(first, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / LOCK_FILENAME).is_file():
            assert running.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.2)
        refused = subprocess.run(second, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2
        assert f"is being written by pretrain (host {socket.gethostname()}, pid {running.pid}" in refused.stderr
    finally:
        running.kill()
        running.wait()
