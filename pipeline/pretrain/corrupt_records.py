"""A record that cannot be read during training, named by its shard and reported in one line.

tf.data raises ``tf.errors.DataLossError`` ("corrupted record at 16360", "truncated record at ...",
a gzip ``inflate() failed``) from the step that asks for the batch; its message names neither the
file nor the step, since the shards are interleaved. :func:`reported` turns it into
:class:`CorruptRecord`: it reads the manifest's listed shards again, in order (training, then held-out),
each through its own ``TFRecordDataset``, and names the first that fails. That pass happens only
after the error and stops at the bad shard: at most the data is read once more.

Nothing is saved after the error: the exception leaves the loop before its checkpoint call, so the
last checkpoint on disk is the last good one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import tensorflow as tf

from beam_jobs.manifest import Manifest
from configs.errors import TrimbertError


class CorruptRecord(TrimbertError):
    """A shard holds a record tf.data cannot read; the run stopped without saving."""


def error_text(error: tf.errors.OpError) -> str:
    """TensorFlow's own words in one line: without its ``{{function_node ...}}`` prefix, ``[Op:...]``
    suffix, graph-execution preamble and node listings."""
    lines = [line.strip() for line in error.message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(("[[", "Graph execution error",
                                                                    "Detected at node", "<stack traces"))]
    text = " ".join(kept) or error.message.strip()
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip()


def first_unreadable_shard(manifest: Manifest) -> tuple[str, str] | None:
    """``(path, TensorFlow's message)`` of the first listed shard (training, then held-out) that tf.data
    cannot read to its end; None when every one reads."""
    for path in manifest.shard_paths + manifest.heldout_paths:
        records = tf.data.TFRecordDataset(path, compression_type=manifest.compression)
        try:
            records.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)
        except tf.errors.DataLossError as error:
            return path, error_text(error)
    return None


@contextlib.contextmanager
def reported(manifest: Manifest, completed_step: Callable[[], int], last_checkpoint: Callable[[], str],
             log: Callable[[str], None]) -> Iterator[None]:
    """Around a phase's loop: a ``DataLossError`` from its input becomes one :class:`CorruptRecord` line.

    Args:
        manifest: the phase's data (its shards are read again to find the bad one).
        completed_step: the last step the run completed.
        last_checkpoint: describes the checkpoint that stays (``loop._describe_last_checkpoint``).
        log: where to say that the shards are being read again.

    Raises:
        CorruptRecord: naming the shard (or, when every shard reads again, the data folder), TensorFlow's
            message, the last completed step and the checkpoint kept.
    """
    try:
        yield
    except tf.errors.DataLossError as error:
        step = completed_step()
        log(f"an unreadable record after step {step}; reading the shards of {manifest.directory} to name it")
        found = first_unreadable_shard(manifest)
        where, text = found if found else (f"{manifest.directory} (no listed shard failed when read again)",
                                           error_text(error))
        raise CorruptRecord(f"{where}: unreadable record ({text}); training stopped after step {step} without "
                            f"saving, {last_checkpoint()}") from error
