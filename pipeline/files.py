"""Writing a file so that a reader never sees half of it (local disk or object storage).

The work is :mod:`pipeline.storage`'s: a temporary name and a rename on a local disk, one
direct write of the final object on object storage (where a rename is a copy + delete).
"""

from __future__ import annotations

import os
from typing import Any

from pipeline import storage


def write_text_atomic(path: str | os.PathLike, text: str) -> str:
    """Writes ``text`` to ``path`` atomically; returns the path as ``str``."""
    return storage.write_text(path, text)


def write_json(path: str | os.PathLike, value: Any) -> str:
    """Indented JSON, written atomically."""
    return storage.write_json(path, value)
