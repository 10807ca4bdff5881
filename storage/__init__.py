"""Paths that may be local or object-storage URLs (gs://, s3://, ram://, ...), and the file calls on them.

The one storage layer, below every other package (configs, models, beam_jobs and pipeline all
use it). Every TensorFlow-side stage reads and writes through here, so ``--model-dir gs://bucket/run``
works wherever a local folder does. Paths are ``str``: ``pathlib.Path`` folds ``gs://b`` into
``gs:/b``. A URL goes through ``tf.io.gfile`` (TensorFlow's filesystems); a local path goes
through the standard library, so commands that only touch local files (``trimbert report``,
``--help``) do not load TensorFlow.

Atomic writes differ by kind (:func:`staging_path` owns the rule): on a local disk the bytes go
to ``.NAME.tmp`` and are renamed over the target; on an object store a rename is a copy and a
delete (not atomic), while a single object write is, so the final object is written once,
directly. The Beam job follows the same rule through Beam's own filesystems, which (unlike
TensorFlow's gs://) honour ``STORAGE_EMULATOR_HOST``.
"""

from __future__ import annotations

import contextlib
import glob as glob_lib
import json
import os
import pathlib
import posixpath
import shutil
from typing import Any

PathLike = str | os.PathLike


def is_url(path: PathLike) -> bool:
    """``scheme://...``: a path for ``tf.io.gfile`` rather than the local disk."""
    return "://" in os.fspath(path)


def staging_path(path: PathLike) -> str:
    """Where to write a file that must appear whole at ``path``: ``.NAME.tmp`` beside it on a local
    disk (then renamed over ``path``), ``path`` itself on object storage (one object write is atomic;
    a rename would be a copy and a delete)."""
    path = os.fspath(path)
    if is_url(path):
        return path
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")


def url_errors(path: PathLike) -> tuple[type[Exception], ...]:
    """The exception types a read of ``path`` may raise besides ``OSError``: TensorFlow's for a URL."""
    if not is_url(path):
        return ()
    import tensorflow as tf

    return (tf.errors.OpError,)


def _gfile():
    import tensorflow as tf  # only for URLs: local-only commands stay free of TensorFlow

    return tf.io.gfile


def join(base: PathLike, *parts: str) -> str:
    """``base/part/...`` for local paths and URLs alike (never folds ``scheme://``)."""
    base = os.fspath(base)
    if is_url(base):
        return posixpath.join(base, *(os.fspath(part) for part in parts))
    return os.path.join(base, *(os.fspath(part) for part in parts))


def parent(path: PathLike) -> str:
    """The folder holding ``path`` (``gs://b/run/x`` -> ``gs://b/run``)."""
    return posixpath.dirname(os.fspath(path).rstrip("/")) if is_url(path) else os.path.dirname(os.fspath(path))


def name(path: PathLike) -> str:
    """The last component of ``path``."""
    return os.path.basename(os.fspath(path).rstrip("/"))


def absolute(path: PathLike) -> str:
    """A local path made absolute with symlinks resolved (as ``Path.resolve``); a URL as given."""
    return os.fspath(path) if is_url(path) else os.path.realpath(os.fspath(path))


def relative_to_file(path: PathLike, relative: str) -> str:
    """What ``relative`` names from the folder holding ``path`` (a ``base:`` beside a config file):
    a local path absolute with symlinks resolved, a URL with ``.`` and ``..`` folded."""
    target = join(parent(path), relative)
    if is_url(target):
        return posixpath.normpath(target).replace(":/", "://", 1)
    return os.path.realpath(target)


def as_given(path: str) -> pathlib.Path | str:
    """What functions that always returned ``pathlib.Path`` return now: that for a local path, a URL as ``str``."""
    return path if is_url(path) else pathlib.Path(path)


def exists(path: PathLike) -> bool:
    return _gfile().exists(os.fspath(path)) if is_url(path) else os.path.exists(path)


def isdir(path: PathLike) -> bool:
    return _gfile().isdir(os.fspath(path)) if is_url(path) else os.path.isdir(path)


def isfile(path: PathLike) -> bool:
    """An existing file (an object, on object storage), not a folder."""
    if is_url(path):
        gfile = _gfile()
        return gfile.exists(os.fspath(path)) and not gfile.isdir(os.fspath(path))
    return os.path.isfile(path)


def listdir(path: PathLike) -> list[str]:
    """Names (not paths) in a folder, sorted; folders on object stores come without a trailing ``/``."""
    if is_url(path):
        return sorted(entry.rstrip("/") for entry in _gfile().listdir(os.fspath(path)))
    return sorted(os.listdir(path))


def glob(pattern: PathLike) -> list[str]:
    """Paths matching a glob pattern, sorted."""
    return sorted(_gfile().glob(os.fspath(pattern))) if is_url(pattern) else sorted(glob_lib.glob(os.fspath(pattern)))


def walk_files(path: PathLike) -> list[str]:
    """Every file under a folder, at any depth, sorted."""
    if is_url(path):
        return sorted(join(folder, filename) for folder, _, files in _gfile().walk(os.fspath(path))
                      for filename in files)
    return sorted(os.path.join(folder, filename) for folder, _, files in os.walk(path) for filename in files)


def makedirs(path: PathLike) -> str:
    """Creates a folder and its parents if missing (object stores: a no-op marker at most)."""
    if is_url(path):
        _gfile().makedirs(os.fspath(path))
    else:
        os.makedirs(path, exist_ok=True)
    return os.fspath(path)


def read_head(path: PathLike, size: int) -> bytes:
    """The first ``size`` bytes of a file (e.g. to recognise its format)."""
    with open_binary(path) as handle:
        return handle.read(size)


def open_binary(path: PathLike):
    """A binary file object for reading ``path`` as a stream (use it in a ``with``)."""
    if is_url(path):
        return _gfile().GFile(os.fspath(path), "rb")
    return open(path, "rb")


def size(path: PathLike) -> int:
    """A file's length in bytes (one stat; on object storage the object's metadata, not its bytes)."""
    return _gfile().stat(os.fspath(path)).length if is_url(path) else os.path.getsize(path)


def read_chunks(path: PathLike, chunk_bytes: int = 1 << 22):
    """A file's bytes in pieces of at most ``chunk_bytes``, for a pass over a file too large to hold."""
    with open_binary(path) as handle:
        while chunk := handle.read(chunk_bytes):
            yield chunk


def read_bytes(path: PathLike) -> bytes:
    with open_binary(path) as handle:
        return handle.read()


def read_text(path: PathLike) -> str:
    return read_bytes(path).decode("utf-8")


def read_json(path: PathLike) -> Any:
    return json.loads(read_text(path))


def write_bytes(path: PathLike, data: bytes) -> str:
    """Writes ``data`` so that a reader sees the old file or the whole new one, never a part.

    Local: ``.NAME.tmp`` beside the target, then ``os.replace``. URL: one write of the final
    object (atomic on object stores, where a rename would be a non-atomic copy + delete).
    """
    path = os.fspath(path)
    if is_url(path):
        if path.startswith("ram://") and _gfile().exists(path):
            # TensorFlow's in-memory ram:// appends to an existing file opened with "wb" (TF 2.21);
            # object stores replace the object in the one write, so only ram:// is cleared first.
            _gfile().remove(path)
        with _gfile().GFile(path, "wb") as handle:
            handle.write(data)
        return path
    temporary = staging_path(path)
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
    return path


def write_text(path: PathLike, text: str) -> str:
    """UTF-8 text, written atomically (see :func:`write_bytes`)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, value: Any) -> str:
    """Indented JSON, written atomically."""
    return write_text(path, json.dumps(value, indent=2) + "\n")


def append_text(path: PathLike, text: str) -> None:
    """Adds ``text`` at the end of a file, creating it if missing.

    Object stores cannot append: the object is read and written again whole (one atomic write),
    which is fine for the small logs appended to here (one line per logged step).
    """
    path = os.fspath(path)
    if is_url(path):
        previous = read_bytes(path) if _gfile().exists(path) else b""
        write_bytes(path, previous + text.encode("utf-8"))
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def copy_file(source: PathLike, destination: PathLike) -> str:
    """Copies one file across filesystems (local <-> URL), overwriting."""
    if not is_url(source) and not is_url(destination):
        shutil.copyfile(source, destination)
        return os.fspath(destination)
    return write_bytes(destination, read_bytes(source))


def copy_tree(source: PathLike, destination: PathLike) -> str:
    """Copies a folder's files, keeping their relative paths, across filesystems."""
    source = os.fspath(source)
    for path in walk_files(source):
        relative = os.path.relpath(path, source) if not is_url(source) else path[len(source.rstrip("/")) + 1:]
        target = join(destination, *relative.split("/"))
        makedirs(parent(target))
        copy_file(path, target)
    return os.fspath(destination)


def move(source: PathLike, destination: PathLike) -> str:
    """Renames a file, refusing to replace an existing ``destination`` (on object storage a copy and a
    delete, so not atomic)."""
    source, destination = os.fspath(source), os.fspath(destination)
    if is_url(source) or is_url(destination):
        _gfile().rename(source, destination, overwrite=False)
    elif os.path.exists(destination):
        raise FileExistsError(destination)
    else:
        os.rename(source, destination)
    return destination


def remove_file(path: PathLike) -> None:
    """Deletes one file; a missing file is not an error."""
    if is_url(path):
        if _gfile().exists(os.fspath(path)):
            _gfile().remove(os.fspath(path))
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def remove_tree(path: PathLike) -> None:
    """Deletes a folder and everything under it; a missing folder is not an error."""
    if is_url(path):
        if _gfile().exists(os.fspath(path)):
            _gfile().rmtree(os.fspath(path))
    else:
        shutil.rmtree(path, ignore_errors=True)
