"""Which checkpoint a pre-training run resumes from: the newest one that reads whole.

TensorFlow's own choice (``tf.train.latest_checkpoint``, the ``checkpoint`` state file) is tried
first; a checkpoint counts as readable when its index opens and every tensor in it reads back
(TensorFlow checks each tensor's CRC-32C as it reads it): a truncated or corrupted ``.index`` or
``.data-*`` file, or a missing one, fails that. So a resume reads its checkpoint twice: once here,
once to restore it.

When the newest is unreadable the run falls back to the newest readable older one listed in the
state file, with a warning naming each bad one. The chief then moves every bad checkpoint's files,
unchanged, to ``checkpoints/corrupt/ckpt-N/`` (``ckpt-N-2/`` ... should that name be taken) and
rewrites the state file to list only what remains: the evidence is kept out of
``tf.train.CheckpointManager``'s way, which would otherwise delete it when sweeping old
checkpoints, and the run's next save at step N writes a new ``ckpt-N`` beside no other.
When no listed checkpoint reads, nothing is moved or rewritten and the run stops naming the folder.
Non-chief workers only choose (they read the chief's folder and leave it as found).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from google.protobuf import text_format

import storage
from configs.errors import TrimbertError

CORRUPT_DIR = "corrupt"
STATE_FILE = "checkpoint"
# Errors that say the storage failed to answer, not that the checkpoint is damaged: raised, not a fallback.
_TRANSIENT = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.PermissionDeniedError,
              tf.errors.UnauthenticatedError, tf.errors.ResourceExhaustedError, tf.errors.AbortedError,
              tf.errors.CancelledError)


def unreadable(prefix: str) -> str | None:
    """Why the checkpoint ``prefix`` (``.../ckpt-N``) cannot be read whole, in one line; None when it can."""
    try:
        reader = tf.compat.v1.train.NewCheckpointReader(prefix)
        for name in reader.get_variable_to_dtype_map():
            reader.get_tensor(name)
    except _TRANSIENT:
        raise
    except (tf.errors.OpError, IndexError) as error:  # IndexError: "Read less bytes than requested"
        text = error.message if isinstance(error, tf.errors.OpError) else str(error)
        return " ".join(text.split())
    return None


def newest_readable(folder: str, chief: bool, log: Callable[[str], None]) -> str | None:
    """The checkpoint prefix to resume from, or None for a folder without a checkpoint state.

    Raises:
        TrimbertError: the state file lists checkpoints and none of them reads, naming the folder.
    """
    state = tf.train.get_checkpoint_state(folder)
    if state is None:
        return None
    latest = state.model_checkpoint_path
    listed = list(state.all_model_checkpoint_paths)
    older = listed[:listed.index(latest)] if latest in listed else listed
    bad: list[tuple[str, str]] = []
    for prefix in [latest, *reversed(older)]:
        problem = unreadable(prefix)
        if problem is None:
            break
        bad.append((prefix, problem))
        log(f"warning: checkpoint {prefix} is unreadable ({problem})")
    else:
        raise TrimbertError(f"{folder}: no readable checkpoint ({', '.join(storage.name(p) for p, _ in bad)} "
                            f"all fail to read); nothing was changed there: restore them or use a new --model-dir")
    if bad and chief:
        for bad_prefix, _ in bad:
            log(f"warning: moved the unreadable {storage.name(bad_prefix)} to {_move_aside(folder, bad_prefix)}")
        _write_state(folder, state, prefix, {p for p, _ in bad})
    if bad:
        log(f"warning: resuming from the older {prefix}")
    return prefix


def _move_aside(folder: str, prefix: str) -> str:
    """Moves ``prefix``'s files into a new ``corrupt/ckpt-N[-k]/`` folder; returns that folder."""
    name = storage.name(prefix)
    target, number = storage.join(folder, CORRUPT_DIR, name), 1
    while storage.exists(target):
        number += 1
        target = storage.join(folder, CORRUPT_DIR, f"{name}-{number}")
    storage.makedirs(target)
    for path in storage.glob(f"{prefix}.*"):
        storage.move(path, storage.join(target, storage.name(path)))
    return target


def _write_state(folder: str, state, latest: str, removed: set[str]) -> None:
    """The state file again, ``latest`` its newest and ``removed`` left out (names relative, as the manager writes)."""
    paths, stamps = list(state.all_model_checkpoint_paths), list(state.all_model_checkpoint_timestamps)
    stamps = stamps if len(stamps) == len(paths) else [None] * len(paths)  # the manager copes without them
    kept = [(path, stamp) for path, stamp in zip(paths, stamps, strict=True) if path not in removed]
    del state.all_model_checkpoint_paths[:]
    del state.all_model_checkpoint_timestamps[:]
    state.model_checkpoint_path = storage.name(latest)
    for path, stamp in kept:
        state.all_model_checkpoint_paths.append(storage.name(path))
        if stamp is not None:
            state.all_model_checkpoint_timestamps.append(stamp)
    storage.write_text(storage.join(folder, STATE_FILE), text_format.MessageToString(state))
