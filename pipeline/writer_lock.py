"""One writer per output folder: a lock file naming its holder, kept fresh by a heartbeat.

Two ``trimbert pretrain`` commands started into one ``--model-dir`` (a restarted Kubernetes pod, a
second terminal) would interleave checkpoints and write every metrics row twice. Each command that
owns a folder (pre-training, a study, a search) holds ``FOLDER/writer.lock`` while it runs:

    {"holder": "pretrain", "host": ..., "pid": ..., "token": ..., "started": ..., "heartbeat": ...}

- The lock file is created only if absent: ``O_CREAT | O_EXCL`` on a local disk. Object stores
  reached through ``tf.io.gfile`` offer no create-if-absent, so there the lock is written and read
  back, and whoever's token is read back holds it: a race inside that round trip is not excluded.
- A second writer is refused with the holder named (host, pid, since when, last heartbeat).
- A lock whose heartbeat stopped (older than ``stale_seconds``), or whose holder ran on this host
  and is no longer alive (a run killed with SIGKILL), is taken over with a warning.
- The holder rewrites the heartbeat every ``heartbeat_seconds`` from a thread and deletes the lock
  when it finishes, if the lock is still its own.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import storage
from configs.errors import TrimbertError

LOCK_FILENAME = "writer.lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0  # ten missed heartbeats: the holder is gone, or cannot reach the folder


class FolderLocked(TrimbertError):
    """Another live writer holds the folder."""


class WriterLock:
    """Holds ``FOLDER/writer.lock`` for the life of a ``with`` block.

    Args:
        folder: the output folder (local path or URL); created if missing.
        holder: what writes there, e.g. ``pretrain``, for the refusal message.
        log: where the take-over warning goes.
        heartbeat_seconds: how often the heartbeat is rewritten.
        stale_seconds: a heartbeat older than this means the holder is gone.
    """

    def __init__(self, folder: str, holder: str, log: Callable[[str], None] = print,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, stale_seconds: float = STALE_SECONDS):
        self.path = storage.join(str(folder), LOCK_FILENAME)
        self._folder = str(folder)
        self._holder = holder
        self._log = log
        self._heartbeat_seconds = heartbeat_seconds
        self._stale_seconds = stale_seconds
        self._token = uuid.uuid4().hex
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WriterLock:
        storage.makedirs(self._folder)
        if not self._create_if_absent():
            current = self._read()
            reason = self._takeover_reason(current)
            if reason is None:
                raise FolderLocked(f"{self._folder} is being written by {describe(current)}; wait for it to end, "
                                   f"or delete {self.path} if that run is gone")
            self._log(f"warning: taking over {self.path} from {describe(current)}: {reason}")
            storage.write_text(self.path, self._content())
            if self._read().get("token") != self._token:
                raise FolderLocked(f"{self._folder}: another writer took {self.path} at the same moment")
        self._thread = threading.Thread(target=self._beat, name="writer-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._read().get("token") == self._token:
            storage.remove_file(self.path)

    # -- internals -------------------------------------------------------------------------

    def _content(self) -> str:
        return json.dumps({"holder": self._holder, "host": socket.gethostname(), "pid": os.getpid(),
                           "token": self._token, "started": self._started, "heartbeat": time.time()})

    def _create_if_absent(self) -> bool:
        if storage.is_url(self.path):
            if storage.exists(self.path):
                return False
            storage.write_text(self.path, self._content())
            return self._read().get("token") == self._token
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(self._content())
        return True

    def _read(self) -> dict:
        try:
            return json.loads(storage.read_text(self.path))
        except (OSError, ValueError):  # vanished or half-written: nobody's
            return {}

    def _takeover_reason(self, current: dict) -> str | None:
        heartbeat = current.get("heartbeat")
        if not isinstance(heartbeat, (int, float)):
            return "the lock file is unreadable"
        age = time.time() - heartbeat
        if age > self._stale_seconds:
            return f"no heartbeat for {age:.0f} s"
        if current.get("host") == socket.gethostname() and not _alive(current.get("pid")):
            return f"process {current.get('pid')} on this host has ended"
        return None

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_seconds):
            if self._read().get("token") != self._token:
                self._log(f"warning: {self.path} was taken over by another writer")
                return
            storage.write_text(self.path, self._content())


def describe(lock: dict) -> str:
    """``pretrain (host H, pid P, since T, last heartbeat N s ago)``."""
    def when(seconds) -> str:
        if not isinstance(seconds, (int, float)):
            return "?"
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")

    heartbeat = lock.get("heartbeat")
    ago = f"{time.time() - heartbeat:.0f} s ago" if isinstance(heartbeat, (int, float)) else "never"
    return (f"{lock.get('holder', 'an unknown command')} (host {lock.get('host', '?')}, pid {lock.get('pid', '?')}, "
            f"since {when(lock.get('started'))}, last heartbeat {ago})")


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
