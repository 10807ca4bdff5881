"""Whether a WordPiece vocabulary wants lower-cased text: plain Python, no TensorFlow.

``trimbert preprocess`` asks this in its driver process, which otherwise never needs TensorFlow;
``models.pretrained`` asks the same of a checkpoint folder (through ``tf.io.gfile``, for gs://).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

from configs.errors import TrimbertError

# Where a Hugging Face folder says whether its tokenizer lower-cases: (file, key), first found wins.
CASE_SETTINGS = (("tokenizer_config.json", "do_lower_case"), ("tokenizer.json", "lowercase"))


def lowercase_setting(data: dict[str, Any], key: str) -> bool | None:
    """The lower-casing a tokenizer file's JSON declares under ``key``; None if it says nothing."""
    settings = data.get("config", data)
    return bool(settings[key]) if key in settings else None


def vocabulary_is_cased(tokens: Sequence[str]) -> bool:
    """Whether a WordPiece vocabulary keeps case: some token other than a bracketed special has a capital.

    An uncased vocabulary was built from lower-cased text, so it has no capitals outside
    [PAD], [CLS] and the like (bert-base-uncased has none among its 30,522 tokens); a cased one
    has thousands.
    """
    return any(token != token.lower() for token in tokens
               if not (token.startswith("[") and token.endswith("]")))


def local_declared_lowercase(folder: str | pathlib.Path) -> bool | None:
    """What the tokenizer config files of a local folder say about lower-casing; None if nothing."""
    for file_name, key in CASE_SETTINGS:
        candidate = pathlib.Path(folder) / file_name
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_bytes())
            except (OSError, json.JSONDecodeError) as error:
                raise TrimbertError(f"{candidate}: cannot read JSON: {error}") from error
            declared = lowercase_setting(data, key)
            if declared is not None:
                return declared
    return None
