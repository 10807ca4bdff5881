"""Pre-training heads in and out of Hugging Face tensor names, and lenient weight transfer.

Hugging Face's ``BertForMaskedLM`` / ``BertForPreTraining`` store the masked-LM head as
``cls.predictions.transform.dense`` (H -> H, the config's activation), ``cls.predictions.transform.LayerNorm``,
``cls.predictions.decoder`` tied to the word embeddings, and the bias as ``cls.predictions.bias``
(newer checkpoints also, or only, as ``cls.predictions.decoder.bias``). The next-sentence head is
``cls.seq_relationship`` (2 x H; label 1 = segment B is random, as ours). Our ``MaskedLMHead`` is the
same computation, so the tensors map one to one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from configs.errors import TrimbertError
from models.encoder import Encoder
from models.pretrained import weight_table

MASKED_LM_PREFIX = "cls.predictions"
NEXT_SENTENCE_PREFIX = "cls.seq_relationship"
# The tensor whose presence says "this checkpoint carries a masked-LM head".
MASKED_LM_MARKER = f"{MASKED_LM_PREFIX}.transform.dense.weight"


def has_masked_lm_head(tensors: Mapping[str, Any]) -> bool:
    """Whether Hugging Face-named (normalised) tensors include a masked-LM head."""
    return MASKED_LM_MARKER in tensors


def has_next_sentence_head(tensors: Mapping[str, Any]) -> bool:
    return f"{NEXT_SENTENCE_PREFIX}.weight" in tensors


def normalize_head_tensors(tensors: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Puts the output bias under one name and checks that the decoder really is tied.

    Args:
        tensors: Hugging Face-named tensors with ``bert.`` already stripped.
        source: where they came from, for errors.

    Raises:
        TrimbertError: a decoder weight that differs from the word embeddings (an untied head
            cannot be represented: our output layer *is* the token embedding).
    """
    tensors = dict(tensors)
    bias = f"{MASKED_LM_PREFIX}.bias"
    decoder_bias = f"{MASKED_LM_PREFIX}.decoder.bias"
    if bias not in tensors and decoder_bias in tensors:
        tensors[bias] = tensors[decoder_bias]
    tensors.pop(decoder_bias, None)
    decoder = tensors.pop(f"{MASKED_LM_PREFIX}.decoder.weight", None)
    embeddings = tensors.get("embeddings.word_embeddings.weight")
    if decoder is not None and embeddings is not None and not np.array_equal(decoder, embeddings):
        raise TrimbertError(f"{source}: {MASKED_LM_PREFIX}.decoder.weight is not tied to the word embeddings; "
                            f"only tied masked-LM heads (BERT's) can be loaded")
    return tensors


def find_encoder(model: keras.Model) -> Encoder:
    """The encoder sub-model of a ``build_pretraining_model`` model."""
    for layer in model.layers:
        if isinstance(layer, Encoder):
            return layer
    raise TrimbertError(f"model {model.name} holds no trimbert Encoder")


def head_weight_table(model: keras.Model) -> list[tuple[str, Any, bool]]:
    """(Hugging Face name, variable, stored transposed) for the heads of a pre-training model."""
    head = model.get_layer("masked_lm_head")
    table = [
        (f"{MASKED_LM_PREFIX}.transform.dense.weight", head.transform.kernel, True),
        (f"{MASKED_LM_PREFIX}.transform.dense.bias", head.transform.bias, False),
        (f"{MASKED_LM_PREFIX}.transform.LayerNorm.weight", head.layer_norm.gamma, False),
        (f"{MASKED_LM_PREFIX}.transform.LayerNorm.bias", head.layer_norm.beta, False),
        (f"{MASKED_LM_PREFIX}.bias", head.output_bias, False),
    ]
    if "next_sentence_head" in {layer.name for layer in model.layers}:
        dense = model.get_layer("next_sentence_head").dense
        table += [(f"{NEXT_SENTENCE_PREFIX}.weight", dense.kernel, True),
                  (f"{NEXT_SENTENCE_PREFIX}.bias", dense.bias, False)]
    return table


def pretraining_weight_table(model: keras.Model) -> list[tuple[str, Any, bool]]:
    """Every weight of a pre-training model (encoder, then heads) under Hugging Face names."""
    return weight_table(find_encoder(model)) + head_weight_table(model)


def pretraining_tensors(model: keras.Model) -> dict[str, np.ndarray]:
    """A pre-training model's weights as Hugging Face-named arrays in Hugging Face layout."""
    tensors = {}
    for key, variable, transposed in pretraining_weight_table(model):
        value = np.asarray(variable.numpy())
        tensors[key] = np.ascontiguousarray(value.T if transposed else value)
    return tensors


def keras_hub_masked_lm_tensors(path) -> dict[str, np.ndarray]:
    """The masked-LM head of a keras-hub ``BertMaskedLM`` preset under Hugging Face names; {} if none.

    A preset saved from a ``BertMaskedLM`` task has ``task.json`` naming it; a backbone-only preset
    has no head. keras-hub's head is the same computation as BERT's except that it fixes the exact
    GELU and layernorm epsilon 1e-5 where the backbone uses tanh-GELU and 1e-12; ours uses the
    backbone's for both, which moves logits by well under 1e-2.
    """
    import json
    import pathlib

    task_file = pathlib.Path(path) / "task.json"
    if not task_file.is_file() or "BertMaskedLM" not in json.loads(task_file.read_text()).get("class_name", ""):
        return {}
    import keras_hub

    head = keras_hub.models.BertMaskedLM.from_preset(str(path)).masked_lm_head
    return {
        f"{MASKED_LM_PREFIX}.transform.dense.weight": np.asarray(head._intermediate_dense.kernel.numpy()).T,
        f"{MASKED_LM_PREFIX}.transform.dense.bias": np.asarray(head._intermediate_dense.bias.numpy()),
        f"{MASKED_LM_PREFIX}.transform.LayerNorm.weight": np.asarray(head._intermediate_layer_norm.gamma.numpy()),
        f"{MASKED_LM_PREFIX}.transform.LayerNorm.bias": np.asarray(head._intermediate_layer_norm.beta.numpy()),
        f"{MASKED_LM_PREFIX}.bias": np.asarray(head._bias.numpy()),
    }
