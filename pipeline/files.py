"""Writing a file so that a reader never sees half of it: a temporary name, then a rename."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any


def write_text_atomic(path: str | pathlib.Path, text: str) -> pathlib.Path:
    """Writes ``text`` to ``path`` through ``.NAME.tmp`` beside it and ``os.replace``."""
    path = pathlib.Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


def write_json(path: str | pathlib.Path, value: Any) -> pathlib.Path:
    """Indented JSON, written atomically."""
    return write_text_atomic(path, json.dumps(value, indent=2) + "\n")
