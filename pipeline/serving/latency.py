"""Inference latency through an exported SavedModel: raw strings in, so tokenisation is timed too.

Like ``pipeline.finetune.run.measure_latency`` (the Keras model on already padded ids) the calls are
pinned to one device, the CPU unless told, and the figure is the median of timed calls after warm-up
calls, divided by the batch size. Every batch is padded to the export's fixed ``seq_len`` in the graph,
so short and long texts cost the model the same; only tokenisation depends on their length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from configs.errors import TrimbertError
from pipeline.clock import median_call_seconds
from pipeline.serving.saved_model import SIGNATURE

WARM_UP = 2  # untimed calls first: tracing, kernel selection, caches


def _signature(export):
    """The serving function of an export folder, or of an already loaded SavedModel."""
    if isinstance(export, (str, os.PathLike)):
        import tensorflow_text  # noqa: F401  (registers the tokenizer's ops before loading)

        if not os.path.isfile(os.path.join(export, "saved_model.pb")):
            raise TrimbertError(f"{export}: not a SavedModel folder (no saved_model.pb); pass the version folder")
        export = tf.saved_model.load(os.fspath(export))
    if SIGNATURE not in export.signatures:
        raise TrimbertError(f"the SavedModel has no {SIGNATURE!r} signature")
    return export.signatures[SIGNATURE]


def measure_latency(export, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                    batch_sizes: Sequence[int] = (1, 32), repeats: int = 20,
                    device: str = "/CPU:0") -> dict[int, float]:
    """Milliseconds per example at each batch size, through the ``serving_default`` signature.

    Args:
        export: the version folder :func:`pipeline.serving.saved_model.export_saved_model` returned,
            or the object ``tf.saved_model.load`` gave for it.
        texts: example texts; each batch takes them in order, repeated if fewer than the batch size.
        text_pairs: the second texts, for a pair model (as many as ``texts``).
        batch_sizes: rows per call.
        repeats: timed calls per batch size.
        device: where the ops run.

    Returns:
        ``{batch size: median milliseconds of one call / batch size}``.
    """
    if not texts:
        raise TrimbertError("no texts to time")
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise TrimbertError(f"{len(text_pairs)} text_pairs for {len(texts)} texts")
    if repeats < 1 or any(size < 1 for size in batch_sizes):
        raise TrimbertError(f"repeats ({repeats}) and batch sizes ({list(batch_sizes)}) must be >= 1")
    serve = _signature(export)
    latencies = {}
    for size in batch_sizes:
        rows = np.resize(np.arange(len(texts)), size)
        inputs = {"text": tf.constant([texts[row] for row in rows])}
        if text_pairs is not None:
            inputs["text_pair"] = tf.constant([text_pairs[row] for row in rows])
        def call(inputs=inputs):
            for value in serve(**inputs).values():
                value.numpy()  # wait for the result

        with tf.device(device):
            latencies[size] = 1000.0 * median_call_seconds(call, repeats, WARM_UP) / size
    return latencies


def saved_model_latency(classifier, vocabulary_tokens: Sequence[str], lowercase: bool, seq_len: int,
                        label_names: Sequence[str], texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                        batch_sizes: Sequence[int] = (1, 32), repeats: int = 20) -> dict[int, float]:
    """Exports ``classifier`` as :func:`pipeline.serving.saved_model.export_saved_model` does, into a
    temporary folder, loads it back and times it with :func:`measure_latency`; the folder is removed.

    Args:
        classifier: the fine-tuned Keras classifier.
        vocabulary_tokens: its ``vocab.txt`` lines.
        lowercase: the vocabulary is uncased.
        seq_len: the export's fixed length.
        label_names: class names; empty for a regression model.
        texts: example texts (e.g. the task's dev texts); the second texts in ``text_pairs`` for a pair model.
        text_pairs: the second texts, or ``None``.
        batch_sizes: rows per call.
        repeats: timed calls per batch size.
    """
    import tempfile

    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    from pipeline.serving.saved_model import export_saved_model

    with tempfile.TemporaryDirectory(prefix="trimbert-latency-") as folder:
        version = export_saved_model(classifier, vocabulary_tokens, lowercase, seq_len, label_names,
                                     text_pairs is not None, folder)
        return measure_latency(tf.saved_model.load(str(version)), texts, text_pairs, batch_sizes, repeats)
