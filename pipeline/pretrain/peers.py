"""A worker lost during multi-worker pre-training: one line, and exit 75 (``watchdog.RESTART_EXIT_CODE``).

MultiWorkerMirroredStrategy notices a dead peer by its missed heartbeats to the coordination
service; the collective the survivors are in then fails about 10 to 16 s later, typically with
``UnavailableError`` "Collective ops is aborted by: ... The following tasks are unhealthy (stopped
sending heartbeats): /job:worker/replica:0/task:1". The strategy cannot recover in the same process:
every worker has to start again (TensorFlow's own advice, in collective_all_reduce_strategy.py),
and a rerun resumes from the chief's last checkpoint. :func:`reported` turns such an error into
:class:`PeerLost`, whose message names the lost task(s) (from TensorFlow's message, else the
candidates from TF_CONFIG) and that checkpoint; the command prints it as its one line.

Peers that never come up are found before the strategy exists (:func:`wait_for_peers`), because
its constructor cannot be watched: ``enable_collective_ops`` waits for every task inside
TensorFlow's C++ (the coordination service's ``WaitForAllTasks``, up to an hour) without releasing
the GIL, so no Python thread runs until it returns, and SIGTERM is taken by TensorFlow's own
handler by then. So each worker first listens on its own TF_CONFIG port and waits until every
peer's port accepts a connection (that peer's listener, or its gRPC server once it got that far),
then closes its listener and builds the strategy. A peer that answers and then dies before its
strategy starts still leaves the others blocked in TensorFlow; that gap is a few seconds wide.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator

import tensorflow as tf

import storage
from configs.errors import TrimbertError
from pipeline import model_dir as model_dir_lib
from pipeline.pretrain import distribution
from pipeline.pretrain.watchdog import RESTART_EXIT_CODE

# The errors a collective or the coordination service raises when a peer is gone.
PEER_LOSS_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                    tf.errors.DeadlineExceededError)
# Words in any other error's message that say the same (collectives aborted because a task went away).
PEER_LOSS_WORDS = ("are unhealthy", "collective ops is aborted", "stopped sending heartbeats")
TASK_NAME = re.compile(r"/job:\w+/replica:\d+/task:\d+")


class PeerLost(Exception):
    """A peer worker stopped answering; the message is the one line to print; restart every worker."""


def is_peer_loss(error: tf.errors.OpError) -> bool:
    """Whether ``error`` says a peer (or the coordination service) is gone."""
    text = error.message.lower()
    return isinstance(error, PEER_LOSS_ERRORS) or any(words in text for words in PEER_LOSS_WORDS)


def lost_tasks(error: tf.errors.OpError) -> list[str]:
    """The tasks ``error`` names, other than this process's own, in order of first mention."""
    here = distribution.this_task()
    named = dict.fromkeys(name for name in TASK_NAME.findall(error.message) if name != here)
    return list(named)


def others_named() -> str:
    """The other tasks in TF_CONFIG with their index and address, e.g. ``task 1 at host:port
    (/job:worker/replica:0/task:1) (from TF_CONFIG)``."""
    here = distribution.this_task()
    others = [f"task {index} at {address} ({name})"
              for index, (name, address) in enumerate(distribution.cluster_tasks()) if name != here]
    return ", ".join(others) + " (from TF_CONFIG)"


def last_checkpoint(model_dir: str) -> str:
    """The checkpoint a rerun resumes from (the chief's), as ``step N, PATH``, or that there is none yet."""
    folder = storage.join(model_dir, model_dir_lib.CHECKPOINTS_DIR)
    latest = tf.train.latest_checkpoint(folder)
    if not latest:
        return f"no checkpoint yet in {folder}"
    return f"the last checkpoint is step {model_dir_lib.checkpoint_step(latest)}, {latest}"


def describe_loss(error: tf.errors.OpError, model_dir: str) -> str:
    """The one line: who was lost, TensorFlow's error class, the checkpoint to resume from, the exit code."""
    named = lost_tasks(error)
    if named:
        who = "lost " + ", ".join(named)
    else:
        who = f"lost a peer or a service it relies on (TensorFlow named no task; the peers: {others_named()})"
    return (f"trimbert pretrain: {who} ({type(error).__name__}); {last_checkpoint(model_dir)}; "
            f"exit {RESTART_EXIT_CODE}: restart every worker to resume from it")


def wait_for_peers(timeout: float, model_dir: str, poll_seconds: float = 0.5) -> None:
    """Listens on this task's port until every other task's port in TF_CONFIG accepts a connection.

    Raises:
        PeerLost: some peer did not answer within ``timeout`` seconds; the line names each one
            (task index, address, task name) and the checkpoint a restart resumes from.
    """
    here = distribution.this_task()
    tasks = distribution.cluster_tasks()
    others = [(index, name, address) for index, (name, address) in enumerate(tasks) if name != here]
    port = int(dict(tasks)[here].rsplit(":", 1)[1])
    dual = socket.has_dualstack_ipv6()
    try:
        listener = socket.create_server(("", port), family=socket.AF_INET6 if dual else socket.AF_INET,
                                        dualstack_ipv6=dual)
    except OSError as error:
        raise TrimbertError(f"TF_CONFIG: this task ({here}) cannot listen on its port {port}: {error.strerror}; "
                            f"another process holds it") from error
    deadline = time.monotonic() + timeout
    try:
        while True:
            others = [peer for peer in others if not _answers(peer[2])]
            if not others:
                return
            if time.monotonic() > deadline:
                missing = ", ".join(f"task {index} at {address} ({name})" for index, name, address in others)
                raise PeerLost(f"trimbert pretrain: {missing} did not answer within {timeout:g} s "
                               f"(pretrain.stall_timeout_seconds), the peers from TF_CONFIG this worker waited "
                               f"for; {last_checkpoint(model_dir)}; exit {RESTART_EXIT_CODE}: restart every "
                               f"worker once they can reach each other")
            time.sleep(poll_seconds)
    finally:
        listener.close()


def _answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def reported(model_dir: str, multi_worker: bool) -> Iterator[None]:
    """Around a run: under multi-worker, a peer-loss error becomes :class:`PeerLost` (others pass through)."""
    try:
        yield
    except tf.errors.OpError as error:
        if not multi_worker or not is_peer_loss(error):
            raise
        raise PeerLost(describe_loss(error, model_dir)) from error
