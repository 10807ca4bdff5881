"""One writer per output folder: a second writer is refused with the holder named; a dead holder's lock
is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

import storage
from pipeline.writer_lock import LOCK_FILENAME, FolderLocked, WriterLock


def _write_lock(folder, **fields) -> None:
    lock = {"holder": "pretrain", "host": socket.gethostname(), "pid": os.getpid(), "token": "theirs",
            "started": time.time() - 60, "heartbeat": time.time(), **fields}
    storage.makedirs(str(folder))
    storage.write_text(storage.join(str(folder), LOCK_FILENAME), json.dumps(lock))


@pytest.mark.parametrize("on_ram", [False, True])
def test_a_second_writer_is_refused_with_the_holder_named(tmp_path, on_ram):
    folder = f"ram://lock-{uuid.uuid4().hex}" if on_ram else str(tmp_path / "run")
    with WriterLock(folder, "pretrain", log=lambda line: None):
        with pytest.raises(FolderLocked, match=rf"is being written by pretrain \(host {socket.gethostname()}, "
                                               rf"pid {os.getpid()}, since .*, last heartbeat \d+ s ago\)"):
            WriterLock(folder, "study layer-drop").__enter__()
    assert not storage.exists(storage.join(folder, LOCK_FILENAME))  # released on exit
    with WriterLock(folder, "pretrain", log=lambda line: None):  # and free again
        pass


def test_a_lock_whose_heartbeat_stopped_is_taken_over_with_a_warning(tmp_path):
    _write_lock(tmp_path, host="another-host", pid=1, heartbeat=time.time() - 3600)
    warnings = []
    with WriterLock(str(tmp_path), "pretrain", log=warnings.append, stale_seconds=300):
        assert json.loads((tmp_path / LOCK_FILENAME).read_text())["host"] == socket.gethostname()
    assert len(warnings) == 1 and "taking over" in warnings[0] and "no heartbeat for 3600 s" in warnings[0]


def test_a_lock_of_a_process_that_ended_on_this_host_is_taken_over(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    _write_lock(tmp_path, pid=int(ended.stdout))  # a fresh heartbeat, but its process is gone (SIGKILL)
    warnings = []
    with WriterLock(str(tmp_path), "pretrain", log=warnings.append):
        pass
    assert "has ended" in warnings[0]


def test_the_holder_keeps_its_heartbeat_fresh(tmp_path):
    with WriterLock(str(tmp_path), "pretrain", log=lambda line: None, heartbeat_seconds=0.05):
        first = json.loads((tmp_path / LOCK_FILENAME).read_text())["heartbeat"]
        time.sleep(0.3)
        assert json.loads((tmp_path / LOCK_FILENAME).read_text())["heartbeat"] > first


def test_study_and_search_refuse_a_folder_another_writer_holds(tmp_path, packed_data):
    from configs import schema
    from pipeline.studies import layer_drop, search
    from pipeline.studies.search_space import load_space

    _write_lock(tmp_path / "study", holder="study layer-drop")
    with pytest.raises(FolderLocked, match="being written by study layer-drop"):
        layer_drop.run_layer_drop(schema.load("tiny"), "unused", "rte", [1], ["top"], tmp_path / "study",
                                  options_for=None, log=lambda line: None)
    _write_lock(tmp_path / "search", holder="search")
    options = search.SearchOptions(teacher="unused", data_dir=str(packed_data), out_dir=str(tmp_path / "search"))
    with pytest.raises(FolderLocked, match="being written by search"):
        search.run(load_space("tiny_space"), options, log=lambda line: None)
