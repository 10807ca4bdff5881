"""A served SavedModel, loaded by a process with only TensorFlow and tf-text, gives the classifier's outputs on
the Python path's ids; exports are atomic; latency is measured through the signature."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import models
from configs.errors import TrimbertError
from configs.schema import TrimConfig
from pipeline.finetune import data
from pipeline.finetune.tasks import Example
from pipeline.serving import latency, saved_model

SEQ_LEN = 24
TEXTS = ["A wonderful, moving film.", "Dull and far TOO long; I left early.", "Café crème à Zürich 東京",
         "", "tab\there \x00 and emoji 🍕", " ".join(["very long"] * 40)]
SECONDS = ["It was great.", "Not my thing at all!", "", "naïve 北京", "short", "and another"]

# Runs in a fresh interpreter: only TensorFlow and tf-text, nothing of this project (`import tensorflow` itself
# loads Keras, so Keras cannot be kept out; the model's Python classes are not needed, only its graph).
LOADER = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
requests = json.load(open(sys.argv[1]))
results = {}
for name, request in requests.items():
    serve = tf.saved_model.load(request["path"]).signatures["serving_default"]
    inputs = {key: tf.constant(values) for key, values in request["inputs"].items()}
    results[name] = {key: value.numpy().tolist() for key, value in serve(**inputs).items()}
    if "label" in results[name]:
        results[name]["label"] = [label.decode() for label in results[name]["label"]]
project = {"models", "pipeline", "configs", "beam_jobs", "storage"}
loaded = sorted(name for name in sys.modules if name.split(".")[0] in project)
print(json.dumps({"results": results, "loaded": loaded}))
"""


def _classifier(config, num_classes: int, pooling: str = "cls", seed: int = 0) -> keras.Model:
    """A classifier whose weights are drawn wider than BERT's initialisation (embeddings std 0.5, kernels
    1/sqrt(fan-in), vectors moved by std 0.1), so outputs differ clearly between texts."""
    keras.utils.set_random_seed(seed)
    classifier = models.build_classifier(models.build_encoder(config), num_classes, dropout=0.1, pooling=pooling)
    rng = np.random.default_rng(seed)
    for variable in classifier.weights:
        shape = tuple(variable.shape)
        if "embedding" in variable.path:
            value = rng.normal(0.0, 0.5, shape)
        elif len(shape) >= 2:
            value = rng.normal(0.0, 1.0 / math.sqrt(shape[0]), shape)
        else:
            value = np.asarray(variable.numpy()) + rng.normal(0.0, 0.1, shape)
        variable.assign(value.astype(variable.dtype))
    return classifier


def _python_outputs(classifier, vocab_path, pair: bool, regression: bool) -> np.ndarray:
    """softmax(logits) (or the score) of the fine-tuning path's ids, padded to SEQ_LEN."""
    examples = [Example(text, SECONDS[i] if pair else None, None, i) for i, text in enumerate(TEXTS)]
    encoded = data.Tokenizer(vocab_path, lowercase=True).encode(examples, SEQ_LEN, regression)
    batch = data.pad_batch(encoded, np.arange(len(examples)), regression, length=SEQ_LEN)
    logits = np.asarray(classifier(batch.inputs, training=False), dtype=np.float64)
    if regression:
        return logits[:, 0]
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    return probabilities / probabilities.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def tokens(vocab_path):
    return pathlib.Path(vocab_path).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def trimmed_config(tiny_config):
    """Two blocks: FFN only in block 0, ReLU attention, no post-attention layernorms, one FFN layernorm,
    a factorised embedding (E = 16 < H = 32)."""
    model = dataclasses.replace(tiny_config.model, num_layers=2, embedding_dim=16)
    trim = TrimConfig(ffn_blocks=(0,), attention_normalizer="relu", attention_layernorm_blocks=(),
                      ffn_layernorm_blocks=(1,))
    return dataclasses.replace(tiny_config, model=model, trim=trim)


@pytest.mark.slow
def test_a_tensorflow_only_process_serves_what_the_classifier_computes(tmp_path, tiny_config, trimmed_config,
                                                                        vocab_path, tokens):
    cases = {  # name: (config, labels, pair, pooling)
        "single": (tiny_config, ["negative", "neutral", "positive"], False, "cls"),
        "pair": (tiny_config, ["entailment", "not_entailment"], True, "cls"),
        "regression": (tiny_config, [], True, "cls"),
        "trimmed": (trimmed_config, ["no", "yes"], False, "mean"),
    }
    requests, expected = {}, {}
    for seed, (name, (config, labels, pair, pooling)) in enumerate(cases.items()):
        classifier = _classifier(config, len(labels) or 1, pooling, seed)
        path = saved_model.export_saved_model(classifier, tokens, True, SEQ_LEN, labels, pair, tmp_path / name)
        assert path == tmp_path / name / "1"
        assert {"saved_model.pb", "variables", "assets"} <= set(os.listdir(path))
        assert os.listdir(tmp_path / name) == ["1"]  # no partial folder left behind
        inputs = {"text": TEXTS, **({"text_pair": SECONDS} if pair else {})}
        requests[name] = {"path": str(path), "inputs": inputs}
        expected[name] = (_python_outputs(classifier, vocab_path, pair, not labels), labels)
    (tmp_path / "requests.json").write_text(json.dumps(requests))
    env = {**os.environ, "PYTHONPATH": ""}  # nothing of this project importable
    run = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path / "requests.json")], capture_output=True,
                         text=True, env=env, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    served = json.loads(run.stdout.strip().splitlines()[-1])
    assert served["loaded"] == []
    for name, (want, labels) in expected.items():
        got = served["results"][name]
        if not labels:
            assert set(got) == {"score"}
            np.testing.assert_allclose(got["score"], want, atol=1e-5, err_msg=name)
        else:
            assert set(got) == {"probabilities", "label"}
            np.testing.assert_allclose(got["probabilities"], want, atol=1e-5, err_msg=name)
            assert got["label"] == [labels[index] for index in want.argmax(1)], name
        assert np.ptp(want, axis=0).max() > 1e-2, name  # the texts do get different outputs


def test_export_refuses_bad_arguments_and_an_existing_version(tmp_path, tiny_config, tokens):
    classifier = _classifier(tiny_config, 2)
    with pytest.raises(TrimbertError, match="3 label names for a classifier with 2 outputs"):
        saved_model.export_saved_model(classifier, tokens, True, SEQ_LEN, ["a", "b", "c"], False, tmp_path)
    with pytest.raises(TrimbertError, match="no label names for a classifier with 2 outputs"):
        saved_model.export_saved_model(classifier, tokens, True, SEQ_LEN, [], False, tmp_path)
    with pytest.raises(TrimbertError, match="seq_len 65 is outside 1..64"):
        saved_model.export_saved_model(classifier, tokens, True, 65, ["a", "b"], False, tmp_path)
    with pytest.raises(TrimbertError, match="version must be a positive integer"):
        saved_model.export_saved_model(classifier, tokens, True, SEQ_LEN, ["a", "b"], False, tmp_path, version=0)
    with pytest.raises(TrimbertError, match=r"lacks \[PAD\]"):
        saved_model.export_saved_model(classifier, [t for t in tokens if t != "[PAD]"], True, SEQ_LEN, ["a", "b"],
                                       False, tmp_path)
    (tmp_path / "7").mkdir()
    with pytest.raises(TrimbertError, match="7 already exists"):
        saved_model.export_saved_model(classifier, tokens, True, SEQ_LEN, ["a", "b"], False, tmp_path, version=7)
    assert os.listdir(tmp_path) == ["7"]


def test_a_failed_export_leaves_nothing_that_looks_complete(tmp_path, tiny_config, tokens, monkeypatch):
    import tensorflow as tf

    def fail_half_way(module, path, signatures):
        (pathlib.Path(path) / "saved_model.pb").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        saved_model.export_saved_model(_classifier(tiny_config, 2), tokens, True, SEQ_LEN, ["a", "b"], False,
                                       tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []


class _CountingSignatures:
    """A loaded SavedModel's stand-in: its signature records the rows of every call."""

    def __init__(self, serve):
        self.rows: list[int] = []

        def counting(**inputs):
            self.rows.append(int(inputs["text"].shape[0]))
            return serve(**inputs)

        self.signatures = {"serving_default": counting}


def test_latency_is_measured_through_the_signature_at_each_batch_size(tmp_path, tiny_config, tokens):
    import tensorflow as tf

    path = saved_model.export_saved_model(_classifier(tiny_config, 2), tokens, True, SEQ_LEN, ["a", "b"], True,
                                          tmp_path)
    counting = _CountingSignatures(tf.saved_model.load(str(path)).signatures["serving_default"])
    timings = latency.measure_latency(counting, TEXTS, SECONDS, batch_sizes=(1, 32), repeats=3)
    assert sorted(timings) == [1, 32]
    assert all(math.isfinite(value) and value > 0 for value in timings.values())
    assert counting.rows == [1] * 5 + [32] * 5  # two warm-up and three timed calls, all rows of each batch
    assert set(latency.measure_latency(path, TEXTS[:1], SECONDS[:1], batch_sizes=(4,), repeats=1)) == {4}
    with pytest.raises(TrimbertError, match="5 text_pairs for 6 texts"):
        latency.measure_latency(counting, TEXTS, SECONDS[:5])
    with pytest.raises(TrimbertError, match="not a SavedModel folder"):
        latency.measure_latency(tmp_path, TEXTS)
