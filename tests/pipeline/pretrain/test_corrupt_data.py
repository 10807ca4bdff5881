"""Corrupt data and corrupt checkpoints: one line naming the file, the last good checkpoint kept.

A truncated shard is refused before training (its length differs from the manifest's); a shard of the
right length with a damaged record stops the run where tf.data meets it, naming the shard and the step;
an unreadable latest checkpoint is moved aside and the run resumes from the one before.
"""

from __future__ import annotations

import re
import shutil

import pytest

from beam_jobs import checksums
from beam_jobs.manifest import FILE_NAME, Manifest
from configs.errors import TrimbertError

STEPS = 60  # the schedule's length; each run stops at its own --max-steps


@pytest.fixture
def data(packed_data, tmp_path):
    """A copy of ``packed_data`` to damage."""
    return shutil.copytree(packed_data, tmp_path / "data")


def _argv(data, model_dir, pretrain_overrides, *flags, **extra) -> list[str]:
    argv = ["pretrain", "--config", "tiny", "--data", str(data), "--model-dir", str(model_dir), *flags]
    for override in pretrain_overrides(STEPS, **extra):
        argv += ["--set", override]
    return argv


def _run(data, model_dir, pretrain_overrides, max_steps, log=lambda line: None, **extra):
    from configs import schema as config_lib
    from pipeline.pretrain import loop as pretrain

    config = config_lib.load("tiny", pretrain_overrides(STEPS, **extra))
    options = pretrain.RunOptions(data_dirs=(str(data),), model_dir=str(model_dir), max_steps=max_steps)
    return pretrain.run(config, options, log=log)


def _files(folder) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _flip(path, at: int, count: int = 16) -> None:
    """Inverts ``count`` bytes of a file from ``at``: its length stays, its CRCs fail."""
    content = path.read_bytes()
    path.write_bytes(content[:at] + bytes(byte ^ 0xFF for byte in content[at:at + count]) + content[at + count:])


def test_a_truncated_shard_stops_pretrain_before_training_naming_it(data, tmp_path, capsys, pretrain_overrides):
    from pipeline.cli import main as cli

    shard = data / "data-00001-of-00002.tfrecord"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:size // 10])
    assert cli.main(_argv(data, tmp_path / "run", pretrain_overrides)) == 2
    error = capsys.readouterr().err
    assert error.splitlines()[-1] == (
        f"trimbert pretrain: error: {shard}: {size // 10} bytes, but {FILE_NAME} lists {size}; the shard was "
        f"truncated or changed after preprocessing (restore it or preprocess again)")
    assert "Traceback" not in error
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_verify_checksums_refuses_a_shard_of_the_right_length_before_training(data, tmp_path, capsys,
                                                                              pretrain_overrides):
    from pipeline.cli import main as cli

    shard = data / "data-00000-of-00002.tfrecord"
    _flip(shard, 1000)
    recorded = Manifest.read(data).shards[0].crc32c
    assert cli.main(_argv(data, tmp_path / "run", pretrain_overrides, "--verify-checksums")) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"trimbert pretrain: error: {shard}: CRC-32C {checksums.file_crc32c(str(shard))}, but {FILE_NAME} lists "
        f"{recorded}; the shard was corrupted or changed after preprocessing (restore it or preprocess again)")
    assert not (tmp_path / "run" / "checkpoints").exists()


def _command(argv: list[str], capsys, in_process: bool) -> tuple[int, str]:
    """``trimbert ARGV``'s exit code and stderr: in this process, or in a new one."""
    if in_process:
        from pipeline.cli import main as cli

        capsys.readouterr()
        code = cli.main(argv)
        return code, capsys.readouterr().err
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], capture_output=True, text=True)
    return completed.returncode, completed.stderr


@pytest.mark.parametrize("strategy", ["one_device", pytest.param("mirrored", marks=pytest.mark.slow)])
def test_a_corrupt_record_names_its_shard_and_step_and_keeps_the_last_checkpoint(data, tmp_path, capsys,
                                                                                 pretrain_overrides, strategy):
    """Checkpoints at steps 2 and 4 of clean data; then a record in the middle of a shard is damaged (its
    length kept) and the run resumed: it stops where the record is read, names the shard and the last
    completed step, and leaves the checkpoints as they were (no save after the error).

    The mirrored run goes in its own processes: the error aborts the process's collective executor, which
    TensorFlow does not reset ("Restart your program to reset"), and a later mirrored test in the same
    process would fail on it. The command exits after the error, so a user never meets that state."""
    model_dir = tmp_path / "run"
    in_process = strategy == "one_device"
    flags = ("--strategy", strategy) + (("--num-cpu-replicas", "2") if strategy == "mirrored" else ())
    small_buffer = {"pretrain.shuffle_buffer": 16}  # the bad record is met after a few steps, not at the first
    code, _ = _command(_argv(data, model_dir, pretrain_overrides, *flags, "--max-steps", "4",
                             **{"pretrain.checkpoint_every": 2}, **small_buffer), capsys, in_process)
    assert code == 0
    before = _files(model_dir / "checkpoints")
    assert "ckpt-4.index" in before
    shard = data / "data-00001-of-00002.tfrecord"
    _flip(shard, shard.stat().st_size // 6)  # past the records the first run read, a few steps further
    Manifest.read(data).check_shard_files()  # the right length: only reading the records finds it
    code, error = _command(_argv(data, model_dir, pretrain_overrides, *flags,
                                 **{"pretrain.checkpoint_every": 1000}, **small_buffer), capsys, in_process)
    assert code == 2
    last = error.splitlines()[-1]
    match = re.fullmatch(rf"trimbert pretrain: error: {re.escape(str(shard))}: unreadable record \(corrupted "
                         rf"record at \d+\); training stopped after step (\d+) without saving, the last checkpoint "
                         rf"{re.escape(str(model_dir / 'checkpoints' / 'ckpt-4'))} stays", last)
    assert match, last
    assert 4 < int(match.group(1)) < STEPS
    assert "Traceback" not in error
    assert _files(model_dir / "checkpoints") == before


def test_an_unreadable_latest_checkpoint_is_moved_aside_and_the_run_resumes_from_the_one_before(
        data, tmp_path, pretrain_overrides):
    import tensorflow as tf

    from pipeline.pretrain import checkpoints

    model_dir = tmp_path / "run"
    folder = model_dir / "checkpoints"
    _run(data, model_dir, pretrain_overrides, max_steps=4, **{"pretrain.checkpoint_every": 2})
    bad_data = folder / "ckpt-4.data-00000-of-00001"
    bad_data.write_bytes(bad_data.read_bytes()[:bad_data.stat().st_size // 2])
    bad = {name: (folder / name).read_bytes() for name in ("ckpt-4.index", "ckpt-4.data-00000-of-00001")}
    lines = []
    summary = _run(data, model_dir, pretrain_overrides, max_steps=6, log=lines.append,
                   **{"pretrain.checkpoint_every": 2})
    assert summary["steps"] == 6
    assert f"warning: checkpoint {folder / 'ckpt-4'} is unreadable (Read less bytes than requested)" in lines
    assert f"resumed from {folder / 'ckpt-2'} at step 2" in lines
    # The bad files kept, unchanged, out of the manager's way; the run's own save at step 4 is a new ckpt-4.
    assert _files(folder / checkpoints.CORRUPT_DIR) == {f"ckpt-4/{name}": content for name, content in bad.items()}
    assert checkpoints.unreadable(str(folder / "ckpt-4")) is None
    assert tf.train.get_checkpoint_state(str(folder)).all_model_checkpoint_paths[:] == [
        str(folder / name) for name in ("ckpt-2", "ckpt-4", "ckpt-6")]


def test_when_no_checkpoint_reads_the_run_stops_naming_the_folder_and_changes_nothing(data, tmp_path,
                                                                                    pretrain_overrides):
    model_dir = tmp_path / "run"
    folder = model_dir / "checkpoints"
    _run(data, model_dir, pretrain_overrides, max_steps=2, **{"pretrain.checkpoint_every": 1})
    _flip(folder / "ckpt-1.index", 40)  # a damaged index
    (folder / "ckpt-2.data-00000-of-00001").write_bytes(b"")  # an emptied data file
    before = _files(folder)
    with pytest.raises(TrimbertError) as error:
        _run(data, model_dir, pretrain_overrides, max_steps=3, **{"pretrain.checkpoint_every": 1})
    assert str(error.value) == (f"{folder}: no readable checkpoint (ckpt-2, ckpt-1 all fail to read); nothing was "
                                f"changed there: restore them or use a new --model-dir")
    assert _files(folder) == before


def test_a_checkpoint_corrupt_again_at_the_same_step_keeps_both_copies(tmp_path, tiny_config, model_dir_writer):
    from pipeline.pretrain import checkpoints

    folder = model_dir_writer(tmp_path / "run", tiny_config) / "checkpoints"  # ckpt-100, ckpt-200
    shutil.copytree(folder, tmp_path / "clean")
    for attempt in (1, 2):
        _flip(folder / "ckpt-200.data-00000-of-00001", 100)
        lines = []
        assert checkpoints.newest_readable(str(folder), True, lines.append) == str(folder / "ckpt-100")
        aside = folder / "corrupt" / ("ckpt-200" if attempt == 1 else "ckpt-200-2")
        assert f"warning: moved the unreadable ckpt-200 to {aside}" in lines
        assert sorted(path.name for path in aside.iterdir()) == ["ckpt-200.data-00000-of-00001", "ckpt-200.index"]
        for name in ("ckpt-200.index", "ckpt-200.data-00000-of-00001", "checkpoint"):  # as a later save leaves them
            shutil.copy(tmp_path / "clean" / name, folder / name)
