"""Our encoder and classifier as keras-hub presets: ``BertBackbone`` and ``BertTextClassifier`` folders.

A preset folder (keras-hub 0.32's ``save_to_preset``) holds ``config.json`` and ``model.weights.h5`` of
the backbone, ``metadata.json``, and the tokenizer (``tokenizer.json``, ``assets/tokenizer/vocabulary.txt``);
a classifier preset adds ``task.json``, ``task.weights.h5`` and ``preprocessor.json``. keras-hub's
``from_preset(folder)`` rebuilds them.

Weights go through the one name table each side has: ``models.pretrained.weight_table`` gives ours
under Hugging Face names (``encoder_tensors``), ``models.pretrained.keras_hub_weight_table`` puts each
name into the keras-hub variable (the table that reads presets, used the other way).

What a BertBackbone cannot be is refused (:func:`unsupported`): it is always a plain BERT (every FFN and
layernorm, softmax attention, embeddings as wide as the model; ``models.pretrained.non_standard_properties``)
with the tanh GELU, layernorm epsilon 1e-12 and a pooler. A pruned encoder (``trim.drop_layers``) is
written in compact form, a plain BERT with its D' kept blocks, as ``models.save_pretrained`` writes it.
keras-hub's ``BertTextClassifier`` head is dropout then a Dense on ``pooled_output``, which is our
``ClassificationHead`` on ``pooling: cls``; a mean-pooling classifier has a layer it lacks and is refused.

The tokenizer saved with a preset is keras-hub's BertTokenizer on the same vocabulary and lower-casing;
it is not our normalisation (``beam_jobs.wordpiece``), and keras-hub's preprocessor truncates pairs
round-robin, not longest-first: ids from keras-hub's preprocessing may differ from fine-tuning's on
unusual text. The weights and the computation on given ids are the same.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Sequence

import keras
import numpy as np

import storage
from configs.errors import TrimbertError
from models.build import compact_config
from models.encoder import Encoder
from models.heads import ClassificationHead
from models.pretrained import encoder_tensors, keras_hub_weight_table, non_standard_properties
from models.pretrained_heads import find_encoder

KERAS_HUB_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")  # BertTokenizer's special tokens


def unsupported(encoder: Encoder) -> list[str]:
    """Every property of the encoder that keras-hub's BertBackbone cannot express (empty: it can)."""
    config = compact_config(encoder.to_config())
    model = config.model
    reasons = non_standard_properties(config)
    if model.activation != "gelu_approximate":
        reasons.append(f"model.activation is {model.activation!r}; BertBackbone computes only the tanh GELU "
                       f"(gelu_approximate)")
    if model.layer_norm_epsilon != 1e-12:
        reasons.append(f"model.layer_norm_epsilon is {model.layer_norm_epsilon:g}; BertBackbone fixes 1e-12")
    if not model.use_pooler:
        reasons.append("model.use_pooler is false; BertBackbone always has its dense+tanh pooler")
    return reasons


def _backbone(encoder: Encoder):
    """A BertBackbone holding the encoder's weights."""
    import keras_hub

    reasons = unsupported(encoder)
    if reasons:
        raise TrimbertError(f"encoder {encoder.name} is not a standard keras-hub BERT: {'; '.join(reasons)}")
    model = compact_config(encoder.to_config()).model
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=model.vocabulary_size, num_layers=model.num_layers, num_heads=model.num_heads,
        hidden_dim=model.hidden_dim, intermediate_dim=model.intermediate_dim, dropout=model.dropout,
        max_sequence_length=model.max_sequence_length, num_segments=model.num_segments)
    tensors = encoder_tensors(encoder)
    table = keras_hub_weight_table(backbone)
    if {key for key, *_ in table} != set(tensors):
        raise TrimbertError(f"encoder {encoder.name}: its weights {sorted(set(tensors) ^ {k for k, *_ in table})} "
                            f"have no BertBackbone counterpart")
    for key, variable, transposed, _ in table:
        value = tensors[key].T if transposed else tensors[key]
        variable.assign(np.reshape(value, variable.shape).astype(variable.dtype))
    return backbone


def _tokenizer(vocabulary_tokens: Sequence[str], lowercase: bool):
    import keras_hub

    missing = [token for token in KERAS_HUB_TOKENS if token not in vocabulary_tokens]
    if missing:
        raise TrimbertError(f"the vocabulary lacks {', '.join(missing)}, which keras-hub's BertTokenizer needs")
    return keras_hub.models.BertTokenizer(vocabulary=list(vocabulary_tokens), lowercase=bool(lowercase))


def _write_atomically(out_dir: str | os.PathLike, save) -> pathlib.Path:
    """Runs ``save(folder)`` in a hidden sibling of ``out_dir`` and renames it into place; never overwrites."""
    if storage.is_url(out_dir):
        raise TrimbertError(f"{out_dir}: write the preset to a local folder (the final rename is not atomic on "
                            f"object storage), then copy it")
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists():
        raise TrimbertError(f"{out_dir} already exists; choose a new preset folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        save(str(partial))
        os.rename(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


def export_keras_hub_backbone(encoder: Encoder, vocabulary_tokens: Sequence[str], lowercase: bool,
                              out_dir: str | os.PathLike) -> pathlib.Path:
    """Writes a preset that ``keras_hub.models.BertBackbone.from_preset(out_dir)`` loads as this encoder.

    Args:
        encoder: a standard-BERT encoder (see :func:`unsupported`).
        vocabulary_tokens: its ``vocab.txt`` lines (with [CLS], [SEP], [PAD], [MASK], [UNK]).
        lowercase: the vocabulary is uncased (the tokenizer's ``lowercase``).
        out_dir: a new local folder.

    Raises:
        TrimbertError: a property BertBackbone cannot express, a vocabulary without its special tokens,
            or an existing ``out_dir``.
    """
    backbone, tokenizer = _backbone(encoder), _tokenizer(vocabulary_tokens, lowercase)

    def save(folder: str) -> None:
        backbone.save_to_preset(folder)
        tokenizer.save_to_preset(folder)

    return _write_atomically(out_dir, save)


def export_keras_hub_classifier(classifier: keras.Model, vocabulary_tokens: Sequence[str], lowercase: bool,
                                num_classes: int, out_dir: str | os.PathLike,
                                sequence_length: int | None = None) -> pathlib.Path:
    """Writes a preset that ``keras_hub.models.BertTextClassifier.from_preset(out_dir)`` loads as this classifier.

    Args:
        classifier: from ``models.build_classifier`` with ``pooling: cls`` on a standard-BERT encoder.
        vocabulary_tokens: the encoder's ``vocab.txt`` lines.
        lowercase: the vocabulary is uncased.
        num_classes: the head's outputs C (checked against the classifier; 1 for regression).
        out_dir: a new local folder.
        sequence_length: the preprocessor's packed length; the encoder's max_sequence_length if not given.

    Raises:
        TrimbertError: as :func:`export_keras_hub_backbone`, or a head keras-hub's does not match.
    """
    import keras_hub

    layer_names = {layer.name for layer in classifier.layers}
    if "mean_pooling" in layer_names:
        raise TrimbertError("the classifier pools the mean of sequence_output (pooling: mean); BertTextClassifier's "
                            "head reads pooled_output ([CLS] through the pooler) only")
    head = classifier.get_layer("classification_head") if "classification_head" in layer_names else None
    if not isinstance(head, ClassificationHead):
        raise TrimbertError(f"model {classifier.name} has no classification_head (not a models.build_classifier model)")
    if num_classes != head.num_classes:
        raise TrimbertError(f"num_classes {num_classes} but the classifier's head has {head.num_classes} outputs")
    encoder = find_encoder(classifier)
    backbone, tokenizer = _backbone(encoder), _tokenizer(vocabulary_tokens, lowercase)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length or encoder.model_config.max_sequence_length)
    task = keras_hub.models.BertTextClassifier(backbone, num_classes, preprocessor=preprocessor, dropout=head.dropout)
    task.output_dense.kernel.assign(head.dense.kernel.numpy())
    task.output_dense.bias.assign(head.dense.bias.numpy())
    return _write_atomically(out_dir, task.save_to_preset)
