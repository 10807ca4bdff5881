"""The ``trimbert`` command's global flags."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from beam_jobs.quiet_tensorflow import START_UP_NOTICES

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _pretrain_stderr(tmp_path, *flags: str) -> str:
    """stderr of ``trimbert [flags] pretrain`` on a missing data folder: it loads TensorFlow, then fails."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-m", "pipeline.cli", *flags, "pretrain", "--config", "tiny",
               "--data", str(tmp_path / "missing"), "--model-dir", str(tmp_path / "run")]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                               env={**environment, "PYTHONPATH": str(ROOT)})
    assert completed.returncode == 2, completed.stderr
    assert "trimbert pretrain: error:" in completed.stderr and "no manifest.json" in completed.stderr
    return completed.stderr


def test_tensorflow_start_up_notices_only_with_verbose(tmp_path):
    quiet = _pretrain_stderr(tmp_path)
    assert not [notice for notice in START_UP_NOTICES if notice in quiet], quiet
    assert quiet.count("\n") == 1  # the error line alone
    verbose = _pretrain_stderr(tmp_path, "--verbose")
    assert [notice for notice in START_UP_NOTICES if notice in verbose], verbose
