"""What every study shares: its signature file (resume, or refuse a changed study) and run-once fine-tuning.

A study writes ``OUT/study.json`` with the settings that decide its numbers. A rerun into the same
``OUT`` with the same settings resumes (finished runs are read back, not redone); with different
settings it is refused, naming every changed field.
"""

from __future__ import annotations

import json

import storage
from configs.errors import TrimbertError

STUDY_FILENAME = "study.json"


def changed_fields(written, current, prefix: str = "", defaults=None) -> list[str]:
    """Dotted names of the fields that differ between two JSON values (``finetune.learning_rate``).

    A key ``written`` lacks (a field newer than the file) is no change while ``current`` holds its
    value in ``defaults`` (the same shape, every field at its default), so a study written before a
    field existed resumes as long as the field keeps its default.
    """
    if isinstance(written, dict) and isinstance(current, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        names = []
        for key in sorted(set(written) | set(current)):
            if key not in written and key in defaults and current[key] == defaults[key]:
                continue
            names += changed_fields(written.get(key), current.get(key), f"{prefix}{key}.", defaults.get(key))
        return names
    return [] if written == current else [prefix.rstrip(".")]


def check_study_folder(out: str, signature: dict, defaults: dict | None = None) -> None:
    """Writes ``OUT/study.json``, or checks that the one there describes the same study (resume).

    ``defaults``: the signature's shape with every field at its default (:func:`changed_fields`).
    """
    signature = json.loads(json.dumps(signature))  # tuples -> lists, as read back
    path = storage.join(out, STUDY_FILENAME)
    if storage.isfile(path):
        written = storage.read_json(path)
        changed = changed_fields(written, signature, defaults=json.loads(json.dumps(defaults or {})))
        if changed:
            raise TrimbertError(f"{path}: {out} holds a study with a different {', '.join(changed)}; "
                                f"use another --out or the same settings to resume it")
        return
    storage.makedirs(out)
    storage.write_json(path, signature)


def finetune_once(config, options, log):
    """``finetune.run``, unless this run's ``result.json`` is already there (a resumed study)."""
    from pipeline.evaluation import record as result_record
    from pipeline.finetune import run as finetune

    path = storage.join(options.out, result_record.RESULT_FILENAME)
    if storage.isfile(path):
        log(f"    {path} exists: reusing it")
        return result_record.ResultRecord.load(path)
    return finetune.run(config, options, log)
