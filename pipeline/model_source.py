"""What a model path holds, decided once when it is opened, and how to read it.

A path given as ``--init``, ``--from``, a teacher or a study's source is one of:

- ``model_dir``: a trimbert pre-training model directory (``config.yaml``, ``checkpoints/``; see
  :mod:`pipeline.model_dir`): its encoder is the ``encoder/`` export once pre-training finished,
  else the latest checkpoint's; its tensors (heads included) are the latest checkpoint's;
- ``checkpoint``: one ``MODEL_DIR/checkpoints/ckpt-N`` prefix of it;
- ``encoder_export``: a Hugging Face folder inside a model directory (``MODEL_DIR/encoder/``,
  written when pre-training finished): read as a Hugging Face folder, named by the run's config;
- ``hugging_face``: a Hugging Face BERT folder (``config.json`` + ``model.safetensors``), including
  the folders ``trimbert prune`` and the studies write;
- ``keras_hub``: a keras-hub ``BertBackbone`` or ``BertMaskedLM`` preset.

The folder formats themselves are read by :mod:`models.pretrained` (and the Hugging Face head
names by :mod:`models.pretrained_heads`); this module only decides which reader a path needs.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import TYPE_CHECKING

import numpy as np

import models
import storage
from beam_jobs import features
from configs import schema as config_lib
from configs.errors import TrimbertError
from configs.schema import Config
from models import pretrained, pretrained_heads
from pipeline import model_dir as model_dir_lib
from pipeline.assets import cache as assets

if TYPE_CHECKING:
    import keras

MODEL_DIR = "model_dir"
CHECKPOINT = "checkpoint"
ENCODER_EXPORT = "encoder_export"
HUGGING_FACE = "hugging_face"
KERAS_HUB = "keras_hub"
# The kinds read from a pre-training checkpoint: the encoder and heads as trained.
PRETRAINING_KINDS = (MODEL_DIR, CHECKPOINT)
# How messages name each kind (an encoder export is a Hugging Face folder to every reader).
DESCRIPTIONS = {MODEL_DIR: "trimbert model directory", CHECKPOINT: "trimbert checkpoint",
                ENCODER_EXPORT: "Hugging Face folder", HUGGING_FACE: "Hugging Face folder",
                KERAS_HUB: "keras-hub preset"}


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """One opened model path: its kind, and the readers of its config, vocabulary, encoder and tensors.

    Args:
        path: the path as given (a fine-tuning result records it as its checkpoint).
        kind: one of :data:`MODEL_DIR`, :data:`CHECKPOINT`, :data:`ENCODER_EXPORT`,
            :data:`HUGGING_FACE`, :data:`KERAS_HUB`.
        model_dir: the pre-training model directory whose checkpoints are read (kinds ``model_dir``
            and ``checkpoint``); ``None`` for the folder kinds.
    """

    path: str
    kind: str
    model_dir: str | None = None

    @classmethod
    def open(cls, path: str | os.PathLike | ModelSource, option: str | None = None) -> ModelSource:
        """Classifies ``path`` by the files it holds; a source opened before is returned as it is.

        Args:
            path: a model directory, a checkpoint prefix, or a Hugging Face / keras-hub folder.
            option: the command-line option that named the path (``--init``): its error then
                starts with it and lists the kinds as fine-tuning accepts them.

        Raises:
            TrimbertError: the path is none of the kinds.
        """
        if isinstance(path, ModelSource):
            return path
        path = os.fspath(path)
        if storage.isfile(f"{path}.index"):
            return cls(path, CHECKPOINT, storage.parent(storage.parent(path)))
        if storage.isfile(storage.join(path, model_dir_lib.CONFIG_FILE)):
            return cls(path, MODEL_DIR, path)
        if storage.isfile(storage.join(path, pretrained.CONFIG_FILE)):
            if storage.isfile(storage.join(storage.parent(path), model_dir_lib.CONFIG_FILE)):
                return cls(path, ENCODER_EXPORT)
            return cls(path, KERAS_HUB if pretrained.is_keras_hub_preset(path) else HUGGING_FACE)
        if option is not None:
            raise TrimbertError(
                f"{option} {path}: not a trimbert model directory (config.yaml + checkpoints/), a checkpoint "
                f"(checkpoints/ckpt-N) or a Hugging Face / keras-hub folder (config.json)")
        raise TrimbertError(
            f"{path}: not a checkpoint: a trimbert model directory needs config.yaml, a Hugging Face BERT folder "
            f"config.json + model.safetensors, a keras-hub preset config.json + model.weights.h5")

    @property
    def description(self) -> str:
        """The kind as messages name it, e.g. ``Hugging Face folder``."""
        return DESCRIPTIONS[self.kind]

    @property
    def from_pretraining(self) -> bool:
        """Whether it is read from a pre-training checkpoint (encoder and heads as trained)."""
        return self.kind in PRETRAINING_KINDS

    @functools.cached_property
    def config(self) -> Config:
        """The model's config, without reading weights where the format allows (a keras-hub preset does not).

        A model directory's is its whole ``config.yaml``; a folder's has its model and trim (the
        other sections are defaults).
        """
        if self.from_pretraining:
            return config_lib.load(storage.join(self.model_dir, model_dir_lib.CONFIG_FILE))
        if self.kind == KERAS_HUB:
            return pretrained.read_checkpoint(self.path)[0]
        config_file = storage.join(self.path, pretrained.CONFIG_FILE)
        return pretrained.config_from_hugging_face(storage.read_json(config_file), config_file)

    @property
    def config_name(self) -> str:
        """The model's config name: the pre-training run's (its ``config.yaml``), else the folder's name."""
        if self.from_pretraining:
            return self.config.name
        if self.kind == ENCODER_EXPORT:
            return config_lib.load(storage.join(storage.parent(self.path), model_dir_lib.CONFIG_FILE)).name
        return storage.name(self.path)

    def vocabulary(self, explicit: str | pathlib.Path | None = None) -> tuple[str | pathlib.Path, bool]:
        """The vocab.txt the model was pre-trained with, and whether it lower-cases.

        Looks at, in order: ``explicit``; the folder's own vocabulary (a model directory's:
        its ``encoder/`` export's); the embedded bert-base-uncased vocabulary when its sha256 is
        the one the model directory's ``run.json`` recorded (checkpoints written before the
        export exists).

        Args:
            explicit: ``--vocab``, if given.

        Raises:
            TrimbertError: none of them (the way out: ``--vocab``).
        """
        if explicit is not None:
            return os.fspath(explicit), True
        folder = storage.join(self.model_dir, model_dir_lib.ENCODER_DIR) if self.from_pretraining else self.path
        vocabulary = pretrained.vocabulary_file(folder)
        if vocabulary is not None:
            return vocabulary, pretrained.lowercases(folder)
        run_file = storage.join(self.model_dir, model_dir_lib.RUN_FILE) if self.from_pretraining else None
        if run_file is not None and storage.isfile(run_file):
            expected = storage.read_json(run_file).get("vocabulary_sha256")
            embedded = assets.ensure("vocab")
            if expected == features.vocabulary_sha256(embedded.read_text(encoding="utf-8").splitlines()):
                return embedded, True
        raise TrimbertError(f"--init {self.path}: cannot tell which vocab.txt the model was trained with; "
                            f"pass --vocab FILE")

    def restore(self, next_sentence: bool | None = None, encoder_name: str = "encoder") -> tuple[Config, keras.Model]:
        """The pre-training model (encoder + heads) of a model directory's latest checkpoint, or of this checkpoint.

        Only for the kinds read from pre-training (:attr:`from_pretraining`).

        Args:
            next_sentence: build the next-sentence head; ``None`` = as the run did.
            encoder_name: Keras name of the encoder.
        """
        checkpoint = self.path if self.kind == CHECKPOINT else None
        return model_dir_lib.restore_pretraining_model(self.model_dir, checkpoint, next_sentence, encoder_name)

    def encoder(self) -> models.Encoder:
        """A fresh copy of the pre-trained encoder (fine-tuning loads one per seed)."""
        if self.kind == CHECKPOINT:
            return self.restore()[1].get_layer("encoder")
        if self.kind == MODEL_DIR:
            export = storage.join(self.model_dir, model_dir_lib.ENCODER_DIR)
            if storage.isfile(storage.join(export, pretrained.CONFIG_FILE)):  # written once pre-training finished
                return models.from_pretrained(export)
            return self.restore()[1].get_layer("encoder")
        return models.from_pretrained(self.path)

    def tensors(self) -> dict[str, np.ndarray]:
        """Every weight under Hugging Face names, the masked-LM and next-sentence heads included when it has them.

        A model directory's are its latest checkpoint's. The config read on the way is kept as
        :attr:`config`.
        """
        if self.from_pretraining:
            config, model = self.restore()
            tensors = pretrained_heads.pretraining_tensors(model)
        else:
            config, tensors = pretrained.read_checkpoint(self.path)
            if self.kind == KERAS_HUB:
                tensors.update(pretrained_heads.keras_hub_masked_lm_tensors(self.path))
            tensors = pretrained_heads.normalize_head_tensors(tensors, self.path)
        self.__dict__.setdefault("config", config)  # what the cached config property would read again
        return tensors
