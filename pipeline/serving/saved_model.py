"""A fine-tuned classifier as a TensorFlow SavedModel that takes raw text, in TF Serving's folder layout.

``out_dir/<version>/`` holds ``saved_model.pb``, ``variables/`` and ``assets/`` (the ``vocab.txt``, the
label names one per line, and ``serving.json`` with the lower-casing flag, ``seq_len`` and whether
the model reads pairs), so TF Serving pointed at ``out_dir`` serves the newest version. The
``serving_default`` signature:

* inputs: ``text`` (tf.string [None]) and, for a pair model, ``text_pair``; raw UTF-8 text, turned into
  ids in the graph exactly as fine-tuning does it in Python (:mod:`pipeline.serving.text_graph`);
* outputs for classification: ``probabilities`` float32 [None, C] (softmax of the logits) and
  ``label`` tf.string [None], the name of the most probable class; for regression (C = 1, no label
  names): ``score`` float32 [None], the logit.

Loading needs only TensorFlow and ``import tensorflow_text`` (its ops: FastWordpieceTokenizer,
normalize_utf8), not Keras or this project. The classifier runs in inference mode (dropout off).
The export is written to a hidden sibling folder (TF Serving ignores names that are not numbers)
and renamed into place at the end, so no partial export looks complete; an existing version folder
is never overwritten.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Sequence

import keras
import tensorflow as tf

import storage
from configs.errors import TrimbertError
from models.pretrained_heads import find_encoder
from pipeline.serving.text_graph import TextToIds

SIGNATURE = "serving_default"
SETTINGS_FILE = "serving.json"


class _Serving(tf.Module):
    """The classifier behind the in-graph tokenizer, as one saveable module with one ``serve`` function."""

    def __init__(self, classifier: keras.Model, text_to_ids: TextToIds, label_names: Sequence[str],
                 assets: Sequence[str]):
        super().__init__(name="trimbert_serving")
        self.classifier = classifier
        self.text_to_ids = text_to_ids
        self.assets = [tf.saved_model.Asset(path) for path in assets]
        self.label_names = tf.constant(list(label_names) or [""], tf.string)
        self.regression = not label_names
        text = tf.TensorSpec([None], tf.string, name="text")
        if text_to_ids.pair:
            self.serve = tf.function(self._serve_pair, input_signature=[
                text, tf.TensorSpec([None], tf.string, name="text_pair")])
        else:
            self.serve = tf.function(self._serve_single, input_signature=[text])

    def _outputs(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        logits = tf.cast(self.classifier(inputs, training=False), tf.float32)  # [B, C]
        if self.regression:
            return {"score": logits[:, 0]}
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {"probabilities": probabilities,
                "label": tf.gather(self.label_names, tf.argmax(probabilities, axis=-1))}

    def _serve_single(self, text):
        return self._outputs(self.text_to_ids(text))

    def _serve_pair(self, text, text_pair):
        return self._outputs(self.text_to_ids(text, text_pair))


def _check(classifier: keras.Model, label_names: Sequence[str], seq_len: int, version: int) -> None:
    units = classifier.output.shape[-1]
    if label_names and len(label_names) != units:
        raise TrimbertError(f"{len(label_names)} label names for a classifier with {units} outputs")
    if not label_names and units != 1:
        raise TrimbertError(f"no label names for a classifier with {units} outputs "
                            f"(only a one-output regression model has none)")
    if len(set(label_names)) != len(label_names):
        raise TrimbertError(f"label names repeat: {list(label_names)}")
    longest = find_encoder(classifier).model_config.max_sequence_length
    if not 1 <= seq_len <= longest:
        raise TrimbertError(f"seq_len {seq_len} is outside 1..{longest}, the encoder's max_sequence_length")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TrimbertError(f"version must be a positive integer (TF Serving's folder name), got {version!r}")


def export_saved_model(classifier: keras.Model, vocabulary_tokens: Sequence[str], lowercase: bool, seq_len: int,
                       label_names: Sequence[str], pair: bool, out_dir: str | os.PathLike,
                       version: int = 1) -> pathlib.Path:
    """Writes ``out_dir/<version>/``, a SavedModel that serves the classifier on raw text.

    Args:
        classifier: from ``models.build_classifier`` (inputs ``token_ids``, ``segment_ids``,
            ``padding_mask``; logits [B, C]).
        vocabulary_tokens: the encoder's ``vocab.txt`` lines.
        lowercase: the vocabulary is uncased (as fine-tuning tokenised).
        seq_len: every example is cut and padded to this many tokens, special tokens included.
        label_names: the C class names in logit order; empty for a regression model (C = 1).
        pair: the model reads sentence pairs (``text`` and ``text_pair``).
        out_dir: a local folder (created); TF Serving's model base path.
        version: the numbered sub-folder to write.

    Returns:
        The version folder.

    Raises:
        TrimbertError: bad arguments, an object-store ``out_dir``, or an existing version folder.
    """
    label_names = [str(name) for name in label_names]
    _check(classifier, label_names, seq_len, version)
    if storage.is_url(out_dir):
        raise TrimbertError(f"{out_dir}: export to a local folder (the final rename is not atomic on object "
                            f"storage), then copy the version folder")
    text_to_ids = TextToIds(vocabulary_tokens, lowercase, seq_len, pair)
    out_dir = pathlib.Path(out_dir)
    final = out_dir / str(version)
    if final.exists():
        raise TrimbertError(f"{final} already exists; choose another version or remove it")
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = pathlib.Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=out_dir))
    try:
        with tempfile.TemporaryDirectory() as sources:
            assets = [os.path.join(sources, "vocab.txt")]
            pathlib.Path(assets[0]).write_text("\n".join(vocabulary_tokens) + "\n", encoding="utf-8")
            if label_names:
                assets.append(os.path.join(sources, "labels.txt"))
                pathlib.Path(assets[-1]).write_text("\n".join(label_names) + "\n", encoding="utf-8")
            assets.append(os.path.join(sources, SETTINGS_FILE))
            pathlib.Path(assets[-1]).write_text(json.dumps(
                {"lowercase": bool(lowercase), "seq_len": seq_len, "pair": bool(pair), "label_names": label_names,
                 "regression": not label_names}, indent=1) + "\n", encoding="utf-8")
            module = _Serving(classifier, text_to_ids, label_names, assets)
            tf.saved_model.save(module, str(partial), signatures={SIGNATURE: module.serve})
        if final.exists():
            raise TrimbertError(f"{final} appeared while exporting; nothing was written")
        os.rename(partial, final)
    except BaseException:
        if partial.exists() and not final.exists():
            shutil.rmtree(partial, ignore_errors=True)
        raise
    return final
