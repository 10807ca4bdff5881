"""The kept model: a fine-tuned classifier as a self-contained folder that ``trimbert predict`` runs.

    FOLDER/
      model.keras    the classifier (Keras format, no optimizer state): inputs ``token_ids``,
                     ``segment_ids``, ``padding_mask`` int32 [B, T] -> logits [B, C] (C = 1: a score)
      vocab.txt      the WordPiece vocabulary it was fine-tuned with (a copy)
      README.md      the model card (:mod:`pipeline.finetune.model_card`)
      model.json     what the folder holds: format name and version, task name, text columns, label
                     names in class order, the regression flag, the tokenizer settings (vocabulary
                     file, lowercase, seq_len), the config (the model, its trims and the fine-tuning
                     recipe, as ``configs.schema`` writes a config) and the result record

A folder is complete once ``model.json`` exists: on a local disk the files are written into a
temporary sibling folder renamed into place at the end (an older folder of the name is replaced);
on object storage (where a rename is a copy) ``model.json`` is written last and removed first when
a folder is overwritten. :func:`load` refuses a folder without it, or of a format version it does
not know. Loading imports ``models.encoder`` and ``models.tasks``, which register the classifier's classes
with Keras (the ``models`` package itself imports them lazily).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import storage
from configs import schema as config_lib
from configs.errors import TrimbertError
from configs.schema import Config
from pipeline.evaluation.record import ResultRecord
from pipeline.finetune import data, model_card
from pipeline.finetune.tasks import Task

if TYPE_CHECKING:
    import keras

FORMAT = "trimbert-classifier"
VERSION = 1
MODEL_FILE = "model.keras"
VOCABULARY_FILE = "vocab.txt"
MANIFEST_FILE = "model.json"
FOLDER = "model"  # fine-tuning keeps its best seed in OUT/model


@dataclasses.dataclass(frozen=True)
class KeptModel:
    """A loaded kept model.

    Args:
        folder: where it was loaded from.
        classifier: the Keras classifier (logits [B, C]).
        tokenizer: its vocabulary and casing.
        seq_len: the most tokens per example it was fine-tuned with; longer texts are cut.
        label_names: class names in output order; ``()`` for a regression score.
        regression: the model outputs one score, not class logits.
        text_columns: the one or two text columns, in the order the model reads them.
        task: the task name.
        config: the model's config (model, trim) with the fine-tuning recipe, as recorded: its fields are
            type-checked but the whole is not validated (an imported model's config has default ``data`` and
            ``pretrain`` sections that need not fit it).
        record: the fine-tuning result (scores of every seed); ``None`` if none was saved.
    """

    folder: str
    classifier: keras.Model
    tokenizer: data.Tokenizer
    seq_len: int
    label_names: tuple[str, ...]
    regression: bool
    text_columns: tuple[str, ...]
    task: str
    config: Config
    record: ResultRecord | None


def manifest(task: Task, config: Config, seq_len: int, lowercase: bool, record: ResultRecord | None,
             base_model: str | None = None) -> dict[str, Any]:
    """``model.json``'s content."""
    return {"format": FORMAT, "version": VERSION, "task": task.name, "text_columns": list(task.text_features),
            "label_names": list(task.label_names), "regression": task.is_regression,
            "tokenizer": {"vocabulary": VOCABULARY_FILE, "lowercase": bool(lowercase), "seq_len": int(seq_len)},
            "model": MODEL_FILE, "base_model": base_model, "config": config.to_dict(),
            "scores": None if record is None else record.to_dict()}


def save(folder: str | os.PathLike, classifier: keras.Model, vocabulary_path: str | os.PathLike, lowercase: bool,
         seq_len: int, task: Task, config: Config, record: ResultRecord | None = None,
         base_model: str | None = None, latencies: Sequence[model_card.Latency] = ()) -> str:
    """Writes the kept-model folder, all or nothing; returns it.

    Args:
        folder: the folder to write (replaced if it exists); local or a URL.
        classifier: the trained classifier; its weights are saved, not its optimizer.
        vocabulary_path: the vocab.txt it was fine-tuned with.
        lowercase: whether its tokenizer lower-cases.
        seq_len: the fine-tuning sequence length.
        task: the task (text columns, label names, regression, metrics).
        config: the model's config with the fine-tuning recipe (see :func:`model_config`).
        record: the fine-tuning result, for ``model.json`` and the card.
        base_model: the pre-trained model it was fine-tuned from (``--init``).
        latencies: measured latencies for the card.
    """
    folder = os.fspath(folder)
    files = {
        model_card.FILENAME: model_card.render(config, seq_len, task, record, base_model, latencies).encode(),
        MANIFEST_FILE: (json.dumps(manifest(task, config, seq_len, lowercase, record, base_model), indent=2)
                        + "\n").encode()}
    inference = _without_optimizer(classifier)
    if storage.is_url(folder):
        storage.remove_file(storage.join(folder, MANIFEST_FILE))  # incomplete until written again
        with tempfile.TemporaryDirectory() as local:
            _write(local, inference, vocabulary_path, {model_card.FILENAME: files[model_card.FILENAME]})
            storage.makedirs(folder)
            for name in (MODEL_FILE, VOCABULARY_FILE, model_card.FILENAME):
                storage.copy_file(os.path.join(local, name), storage.join(folder, name))
        storage.write_bytes(storage.join(folder, MANIFEST_FILE), files[MANIFEST_FILE])
        return folder
    parent, name = os.path.split(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
    try:
        _write(staging, inference, vocabulary_path, files)
        if os.path.exists(folder):
            retired = staging + ".old"
            os.rename(folder, retired)
            os.rename(staging, folder)
            shutil.rmtree(retired)
        else:
            os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _without_optimizer(classifier: keras.Model) -> keras.Model:
    """A copy of the classifier with its weights and no optimizer (a compiled model's file would carry
    the optimizer's slots: twice the weights again for AdamW)."""
    import keras

    copy = keras.Model.from_config(classifier.get_config())  # not clone_model: that compiles the copy too
    copy.set_weights(classifier.get_weights())
    return copy


def _write(folder: str, classifier: keras.Model, vocabulary_path: str | os.PathLike, files: dict[str, bytes]) -> None:
    """The model, the vocabulary, then ``files`` in their order (``model.json`` last) into a local folder."""
    classifier.save(os.path.join(folder, MODEL_FILE))
    storage.copy_file(vocabulary_path, os.path.join(folder, VOCABULARY_FILE))
    for name, content in files.items():
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(content)


def model_config(source_config: Config, name: str, recipe: Config) -> Config:
    """The kept model's config: the pre-trained model's own (``model``, ``trim``, and for a model
    directory its ``data`` and ``pretrain``) named ``name``, with ``recipe``'s ``finetune`` section."""
    return dataclasses.replace(source_config, name=name, finetune=recipe.finetune)


def load(folder: str | os.PathLike) -> KeptModel:
    """Reads a kept-model folder.

    Raises:
        TrimbertError: naming the folder when it is missing, incomplete (no ``model.json``), of an
            unknown format or version, or when ``model.json`` lacks a field.
    """
    import keras

    import models.encoder  # noqa: F401  (the lazy package registers nothing: these modules register the
    import models.tasks  # noqa: F401   encoder, its layers and the heads with keras.saving)

    folder = os.fspath(folder)
    path = storage.join(folder, MANIFEST_FILE)
    if not storage.isfile(path):
        if storage.isdir(folder):
            raise TrimbertError(f"{folder}: incomplete model folder: no {MANIFEST_FILE} (written last, so the "
                                f"save did not finish), or not a trimbert fine-tuned model")
        raise TrimbertError(f"{folder}: no such model folder")
    try:
        raw = storage.read_json(path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TrimbertError(f"{path}: not readable JSON: {error}") from error
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise TrimbertError(f"{path}: not a {FORMAT} manifest (format {found!r})")
    if raw.get("version") != VERSION:
        raise TrimbertError(f"{path}: format version {raw.get('version')!r} is not known to this trimbert "
                            f"(it reads version {VERSION})")
    try:
        tokenizer_settings = raw["tokenizer"]
        label_names, regression = tuple(raw["label_names"]), bool(raw["regression"])
        if regression == bool(label_names):
            raise TrimbertError(f"{path}: regression is {str(regression).lower()} but label_names lists "
                                f"{len(label_names)} class(es)")
        config = config_lib.build_section(Config, raw["config"], path="", where=f"{path} config")
        record = None if raw["scores"] is None else ResultRecord.from_dict(raw["scores"], where=f"{path} scores")
        model_file = storage.join(folder, raw["model"])
        if storage.is_url(model_file):
            with tempfile.TemporaryDirectory() as local:
                storage.copy_file(model_file, os.path.join(local, MODEL_FILE))
                classifier = keras.saving.load_model(os.path.join(local, MODEL_FILE), compile=False)
        else:
            classifier = keras.saving.load_model(model_file, compile=False)
        return KeptModel(
            folder=folder, classifier=classifier,
            tokenizer=data.Tokenizer(storage.join(folder, tokenizer_settings["vocabulary"]),
                                     bool(tokenizer_settings["lowercase"])),
            seq_len=int(tokenizer_settings["seq_len"]), label_names=label_names, regression=regression,
            text_columns=tuple(raw["text_columns"]), task=str(raw["task"]), config=config, record=record)
    except KeyError as error:
        raise TrimbertError(f"{path}: lacks the field {error.args[0]!r}") from error
