"""Checkpoints users already have, as teachers (``distill.teacher``, ``--teacher``) and starting points (``--init``).

One path may be any :class:`pipeline.model_source.ModelSource`:

- a trimbert model directory (``config.yaml`` + ``checkpoints/``: encoder and heads as trained), or
  one ``checkpoints/ckpt-N`` of it;
- a Hugging Face BERT folder (``config.json`` + ``model.safetensors``): ``BertModel`` weights,
  plus the masked-LM head of ``BertForMaskedLM`` / ``BertForPreTraining`` (``cls.predictions.*``)
  and the next-sentence head (``cls.seq_relationship``) when present;
- a keras-hub ``BertBackbone`` or ``BertMaskedLM`` preset.

A teacher must produce masked-LM logits, so a checkpoint without a head (a sentence-embedding
encoder such as the MiniLM-L6 asset) is refused with the way out: ``trimbert teacher`` fits a head.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import keras
import numpy as np

import models
from configs.errors import TrimbertError
from configs.schema import Config
from models import pretrained, pretrained_heads
from pipeline.model_source import ModelSource


def no_head_message(path: str, kind: str) -> str:
    return (f"{path}: this {kind} has no masked-LM head (no {pretrained_heads.MASKED_LM_MARKER}; a sentence-"
            f"embedding encoder such as MiniLM-L6 is encoder only), so it cannot give teacher logits. Fit a head "
            f"on its frozen encoder first: trimbert teacher --from {path} --data DIR --out TEACHER_DIR, then use "
            f"TEACHER_DIR as the teacher")


def teacher_tensors(source: ModelSource) -> dict[str, np.ndarray]:
    """A folder's tensors for a teacher, refused without a masked-LM head (with the ``trimbert teacher`` way out)."""
    tensors = source.tensors()
    if not pretrained_heads.has_masked_lm_head(tensors):
        raise TrimbertError(no_head_message(source.path, source.description))
    return tensors


def build_teacher(path: str | pathlib.Path, encoder_name: str = "teacher_encoder") -> tuple[Config, keras.Model]:
    """A pre-training model (encoder + masked-LM head, no next-sentence head) set from the checkpoint.

    Call it under the strategy's scope. Every encoder and masked-LM head weight must come from the
    checkpoint: a teacher with any freshly initialised weight would teach noise.

    Raises:
        TrimbertError: no masked-LM head (with the ``trimbert teacher`` way out), or a missing tensor.
    """
    source = ModelSource.open(path)
    if source.from_pretraining:
        return source.restore(next_sentence=False, encoder_name=encoder_name)
    tensors = teacher_tensors(source)
    encoder = models.build_encoder(source.config, name=encoder_name)
    model = models.build_pretraining_model(encoder, next_sentence=False)
    report = pretrained.assign_matching(pretrained_heads.pretraining_weight_table(model), tensors, source.path)
    if report["new"]:
        raise TrimbertError(f"{source.path}: tensors missing for the teacher: {', '.join(report['new'][:5])}")
    return source.config, model


def initialize(model: keras.Model, path: str | pathlib.Path, select: bool = False) -> dict[str, list[str]]:
    """Sets a fresh pre-training model's weights from a checkpoint, leniently (``pretrain --init``).

    Weights in both are loaded, the checkpoint's weights the model has no place for (a trimmed-away
    FFN, a head it does not build) are dropped, and the model's weights the checkpoint lacks (a new
    head) keep their initial values. Shapes must agree (the model section must be the checkpoint's),
    unless ``select``: then a smaller model takes the leading slice of each larger weight
    (``models.pretrained.assign_matching``, weight selection).

    Returns:
        ``{"loaded", "dropped", "new"}`` lists of Hugging Face tensor names.
    """
    tensors = ModelSource.open(path).tensors()
    return pretrained.assign_matching(pretrained_heads.pretraining_weight_table(model), tensors,
                                      f"--init {path}", select=select)


def describe_initialization(path: str, report: dict[str, list[str]], shown: int = 3) -> str:
    """One log line: counts and the first names of loaded, dropped and new weights."""
    parts = []
    for name in ("loaded", "dropped", "new"):
        names = report[name]
        more = f", ... {len(names) - shown} more" if len(names) > shown else ""
        parts.append(f"{len(names)} {name}" + (f" ({', '.join(names[:shown])}{more})" if names else ""))
    return f"init from {path}: " + "; ".join(parts)


def initialize_and_log(model: keras.Model, path: str, log: Callable[[str], None],
                       select: bool = False) -> dict[str, list[str]]:
    report = initialize(model, path, select)
    log(describe_initialization(path, report))
    return report


def build_hidden_teacher(path: str | pathlib.Path, encoder_name: str = "teacher_encoder") -> tuple[Config, keras.Model]:
    """The checkpoint's encoder alone, for hidden-state distillation: no masked-LM head is needed.

    Call it under the strategy's scope.

    Raises:
        TrimbertError: an encoder weight missing from the checkpoint.
    """
    source = ModelSource.open(path)
    if source.from_pretraining:
        config, model = source.restore(next_sentence=False, encoder_name=encoder_name)
        return config, pretrained_heads.find_encoder(model)
    tensors = source.tensors()
    encoder = models.build_encoder(source.config, name=encoder_name)
    pretrained.assign_tensors(encoder, tensors, source.path)
    return source.config, encoder


# The teacher of a distillation run


def check_teacher_given(config: Config) -> None:
    """A distillation recipe (``distill.required``) must not quietly train plain MLM instead."""
    distill = config.pretrain.distill
    if distill.required and not distill.teacher:
        raise TrimbertError(
            f"config {config.name} pre-trains by distillation and needs a teacher: set "
            f"pretrain.distill.teacher (--set pretrain.distill.teacher=DIR, a pre-trained model folder), "
            f"or use a plain-MLM config (e.g. bort_mlm)")


def teacher_hidden_width(config: Config) -> int | None:
    """The teacher's width when the student matches its hidden states (the projection's output), else None."""
    distill = config.pretrain.distill
    if not distill.teacher or distill.objective != "hidden":
        return None
    try:
        return ModelSource.open(distill.teacher).config.model.hidden_dim
    except TrimbertError as error:
        raise TrimbertError(f"pretrain.distill.teacher: {error}") from error


def load_teacher(config: Config, strategy) -> keras.Model:
    """The frozen teacher: a pre-training model with its masked-LM head (``distill.objective: logits``,
    ``build_teacher``) or the encoder alone (``hidden``)."""
    teacher_dir = config.pretrain.distill.teacher
    build = build_hidden_teacher if config.pretrain.distill.objective == "hidden" else \
        build_teacher
    try:
        with strategy.scope():
            teacher_config, teacher = build(teacher_dir, encoder_name="teacher_encoder")
    except TrimbertError as error:
        raise TrimbertError(f"pretrain.distill.teacher: {error}") from error
    if teacher_config.model.vocabulary_size != config.model.vocabulary_size:
        raise TrimbertError(f"pretrain.distill.teacher {teacher_dir}: vocabulary size "
                            f"{teacher_config.model.vocabulary_size} differs from the student's")
    teacher.trainable = False
    return teacher
