"""TensorFlow loaded without its start-up notices: for the ``trimbert`` command line and Beam's workers.

TensorFlow 2.21 writes notices to stderr while its libraries load, before its C++ logging has read
``TF_CPP_MIN_LOG_LEVEL``: oneDNN being on, no CUDA driver found, the CPU instructions the binary was
built without. No log level hides those. Its first device probe then logs ``failed call to cuInit``
as an ERROR on a machine without a GPU driver, which only level 3 (every C++ error) would hide.
So a quiet process imports TensorFlow and probes its devices with stderr (the file descriptor, where
the C++ code writes) captured to a file, and passes on every captured line except those notices.

A process is quiet when ``TF_CPP_MIN_LOG_LEVEL`` is 2 or more (C++ INFO and WARNING lines off,
errors kept). The level is set just before TensorFlow loads, unless already set, so the processes a
quiet one starts inherit it and a user's own setting wins. oneDNN stays on: ``TF_ENABLE_ONEDNN_OPTS=0``
would change the numerics. This module sits in beam_jobs, below pipeline, because Beam's worker
processes load TensorFlow through it too.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LOG_LEVEL = 2
# Each is a substring of one stderr line TensorFlow writes while it loads or first probes devices.
START_UP_NOTICES = (
    "All log messages before absl::InitializeLog() is called",  # absl, once per TensorFlow library
    "oneDNN custom operations are on",  # tensorflow/core/util/port.cc
    "Could not find cuda drivers on your machine",  # cudart_stub.cc
    "cpu_feature_guard.cc",  # "This TensorFlow binary is optimized to use available CPU instructions ..."
    "To enable the following instructions",  # its second line
    "failed call to cuInit",  # cuda_platform.cc, at the first device probe
)


def quiet_tensorflow_start_up() -> None:
    """Makes the first import of TensorFlow in this process quiet, wherever in the code it happens.

    Nothing is imported now, so commands that never load TensorFlow stay free of it; the import
    hook removes itself at that first import.
    """
    if "tensorflow" in sys.modules or any(isinstance(finder, _QuietFirstImport) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFirstImport())


def import_tensorflow_quietly():
    """TensorFlow, loaded without its start-up notices when this process is already quiet (Beam's worker
    processes, which ``trimbert preprocess`` makes quiet unless ``--verbose``)."""
    if _log_level() >= QUIET_LOG_LEVEL:
        quiet_tensorflow_start_up()
    import tensorflow as tf

    return tf


def _log_level() -> int:
    try:
        return int(os.environ.get(LOG_LEVEL_VARIABLE, "0"))
    except ValueError:
        return 0


class _QuietFirstImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` where the path finder does and has it loaded by :class:`_QuietLoader`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader and a device probe with the start-up notices dropped; the import
    hook leaves ``sys.meta_path`` here, at the load (a mere ``find_spec`` leaves it in place)."""

    def __init__(self, loader, finder: _QuietFirstImport):
        self.loader = loader
        self.finder = finder

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        module.__spec__.loader = module.__loader__ = self.loader
        os.environ.setdefault(LOG_LEVEL_VARIABLE, str(QUIET_LOG_LEVEL))  # read once, as the libraries load
        if _log_level() < QUIET_LOG_LEVEL:  # the user asked for TensorFlow's lines
            self.loader.exec_module(module)
            return
        with _start_up_notices_dropped():
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # CUDA's probe runs here, not at the first op


@contextlib.contextmanager
def _start_up_notices_dropped():
    """Captures file descriptor 2, then writes every captured line but the start-up notices to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(notice in line for notice in START_UP_NOTICES):
                    sys.stderr.write(line)
            sys.stderr.flush()
