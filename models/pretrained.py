"""Pre-trained weights in and out: Hugging Face-format BERT folders and keras-hub presets.

A folder we write is a Hugging Face BERT folder (``config.json``, ``model.safetensors``,
``vocab.txt``) with the standard ``BertModel`` tensor names, plus a ``trimbert`` entry in
``config.json`` holding the exact model and trim sections. Trimmed-away sub-layers simply have
no tensors; Bort-style embedding projections (E != H) are stored as
``embeddings.projection.{weight,bias}``. Only a standard shape is labelled ``model_type: bert``,
so BERT loaders read it; a trimmed one says ``model_type: trimbert`` (:func:`is_standard_bert`),
which none of them mistakes for BERT. Everything reloads here exactly.

Dense weights are stored as Hugging Face does, [out, in]; Keras kernels are [in, out].
"""

from __future__ import annotations

import json
import os
import pathlib
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

import storage
from configs.errors import TrimbertError
from configs.schema import Config, ModelConfig, TrimConfig, section_to_dict
from models.build import build_encoder, compact_config
from models.casing import CASE_SETTINGS, lowercase_setting, vocabulary_is_cased
from models.encoder import Encoder, sections_from_dict

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCABULARY_FILE = "vocab.txt"


# Model folders may be on object storage (gs://, s3://, ram://): paths stay str and every file call
# goes through the storage layer (pathlib would fold ``gs://b`` into ``gs:/b``; open() knows no schemes).


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """A vocab.txt's tokens, one per line, exactly as keras-hub's tokenizers read a file path.

    keras-hub opens a path with ``open()``, which cannot read gs:// or ram://: callers read the
    file here (through :mod:`storage`) and hand the tokenizer the list.
    """
    import io

    text = storage.read_bytes(os.fspath(path)).decode("utf-8")
    return [line.rstrip() for line in io.StringIO(text, newline=None)]


# Hugging Face hidden_act -> our activation; "gelu" is the exact erf form in both.
_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
                   "gelu_fast": "gelu_approximate", "relu": "relu"}
_OUR_ACTIVATIONS = {"gelu": "gelu", "gelu_approximate": "gelu_new", "relu": "relu"}


# ---------------------------------------------------------------------------
# The one tensor layout, used for both directions
# ---------------------------------------------------------------------------


def _dense(prefix: str, dense) -> Iterator[tuple[str, Any, bool]]:
    yield f"{prefix}.weight", dense.kernel, True
    yield f"{prefix}.bias", dense.bias, False


def _layernorm(prefix: str, layernorm) -> Iterator[tuple[str, Any, bool]]:
    yield f"{prefix}.weight", layernorm.gamma, False
    yield f"{prefix}.bias", layernorm.beta, False


def weight_table(encoder: Encoder) -> list[tuple[str, Any, bool]]:
    """(Hugging Face tensor name, Keras variable, stored transposed) for every encoder weight.

    Args:
        encoder: a built :class:`Encoder`; block ``i`` maps to ``encoder.layer.{i}``.
    """
    embeddings = encoder.embeddings
    table = [
        ("embeddings.word_embeddings.weight", embeddings.token_embedding.embeddings, False),
        ("embeddings.position_embeddings.weight", embeddings.position_embeddings, False),
        ("embeddings.token_type_embeddings.weight", embeddings.segment_embedding.embeddings, False),
        *_layernorm("embeddings.LayerNorm", embeddings.layer_norm),
    ]
    if embeddings.projection is not None:
        table += _dense("embeddings.projection", embeddings.projection)
    for index, block in enumerate(encoder.blocks):
        prefix = f"encoder.layer.{index}"
        attention = block.self_attention
        table += _dense(f"{prefix}.attention.self.query", attention.query_dense)
        table += _dense(f"{prefix}.attention.self.key", attention.key_dense)
        table += _dense(f"{prefix}.attention.self.value", attention.value_dense)
        table += _dense(f"{prefix}.attention.output.dense", attention.output_dense)
        if block.attention_layernorm is not None:
            table += _layernorm(f"{prefix}.attention.output.LayerNorm", block.attention_layernorm)
        if block.feedforward is not None:
            table += _dense(f"{prefix}.intermediate.dense", block.feedforward.intermediate_dense)
            table += _dense(f"{prefix}.output.dense", block.feedforward.output_dense)
            if block.feedforward_layernorm is not None:
                table += _layernorm(f"{prefix}.output.LayerNorm", block.feedforward_layernorm)
    if encoder.pooler is not None:
        table += _dense("pooler.dense", encoder.pooler)
    return table


def encoder_tensors(encoder: Encoder) -> dict[str, np.ndarray]:
    """All encoder weights as Hugging Face-named numpy arrays in Hugging Face layout."""
    tensors = {}
    for key, variable, transposed in weight_table(encoder):
        value = np.asarray(variable.numpy())
        tensors[key] = np.ascontiguousarray(value.T if transposed else value)
    return tensors


def assign_tensors(encoder: Encoder, tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Sets every encoder weight from Hugging Face-named tensors; all must be there, with their shapes.

    Args:
        encoder: the encoder to fill.
        tensors: name -> array, names already normalised (see ``normalize_key``).
        source: where the tensors came from, for error messages.
    """
    table = weight_table(encoder)
    missing = [key for key, _, _ in table if key not in tensors]
    if missing:
        raise TrimbertError(f"{source}: tensor {missing[0]!r} is missing")
    assign_matching(table, tensors, source)


def assign_matching(table: Iterable[tuple[str, Any, bool]], tensors: Mapping[str, np.ndarray],
                    source: str, select: bool = False) -> dict[str, list[str]]:
    """Sets every variable that has a tensor of the same name; the rest keep their initial values.

    This is how a trimmed or differently-headed model starts from a checkpoint: a block without
    FFN has no FFN variables, so the checkpoint's FFN tensors are dropped; a head the checkpoint
    lacks is newly initialised.

    With ``select``, a smaller model starts from a larger checkpoint by weight selection (Xu et al.
    2024, "Initializing Models with Larger Ones"): block ``i`` from the checkpoint's block ``i`` (the
    first blocks), and each weight from the leading elements of the checkpoint's along every axis
    (the first rows and columns, in Hugging Face layout), the same indices in every layer so the
    residual stream's dimensions line up.

    Args:
        table: (name, variable, transposed) of the model being filled.
        tensors: Hugging Face-named source tensors (Hugging Face layout).
        source: where they came from, for errors.
        select: take the leading slice of a larger tensor instead of refusing it.

    Returns:
        ``{"loaded": [...], "dropped": [...], "new": [...]}``: names in both, only in the source,
        only in the model.

    Raises:
        TrimbertError: a tensor in both whose shape differs, named with both shapes.
    """
    loaded, new, seen = [], [], set()
    for key, variable, transposed in table:
        seen.add(key)
        if key not in tensors:
            new.append(key)
            continue
        value = np.asarray(tensors[key])
        value = value.T if transposed else value
        if select and value.ndim == len(variable.shape) and all(
                have >= want for have, want in zip(value.shape, variable.shape, strict=True)):
            value = value[tuple(slice(0, want) for want in variable.shape)]
        if tuple(value.shape) != tuple(variable.shape):
            raise TrimbertError(
                f"{source}: tensor {key!r} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(variable.shape)}; the config's model section must match the checkpoint's shapes")
        variable.assign(value.astype(variable.dtype))
        loaded.append(key)
    dropped = sorted(key for key in tensors if key not in seen)
    return {"loaded": loaded, "dropped": dropped, "new": new}


def normalize_key(key: str) -> str:
    """Maps checkpoint naming variants (``bert.`` prefix, LayerNorm gamma/beta) to ours."""
    if key.startswith("bert."):
        key = key[len("bert."):]
    if ".LayerNorm." in key:
        key = key.replace(".LayerNorm.gamma", ".LayerNorm.weight")
        key = key.replace(".LayerNorm.beta", ".LayerNorm.bias")
    return key


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _read_json(path: str) -> dict[str, Any]:
    try:
        return json.loads(storage.read_bytes(path))
    except (OSError, json.JSONDecodeError, *storage.url_errors(path)) as error:
        raise TrimbertError(f"{path}: cannot read JSON: {error}") from error


def is_keras_hub_preset(path: str | os.PathLike) -> bool:
    """A keras-hub preset directory has a config.json naming a keras-hub class."""
    config_path = storage.join(os.fspath(path), CONFIG_FILE)
    if not storage.isfile(config_path):
        return False
    config = _read_json(config_path)
    return "class_name" in config and str(config.get("registered_name", "")).startswith("keras_hub")


def config_from_hugging_face(hf_config: Mapping[str, Any], source: str) -> Config:
    """Our config from a Hugging Face ``config.json`` (ours carry an exact ``trimbert`` entry)."""
    if "trimbert" in hf_config:
        model, trim = sections_from_dict(hf_config["trimbert"]["model_config"], hf_config["trimbert"]["trim_config"])
        return Config(name=hf_config["trimbert"].get("name", "pretrained"), model=model, trim=trim)
    activation = hf_config.get("hidden_act", "gelu")
    if activation not in _HF_ACTIVATIONS:
        raise TrimbertError(f"{source}: hidden_act {activation!r} is not supported "
                            f"(supported: {sorted(_HF_ACTIVATIONS)})")
    try:
        hidden_dim = hf_config["hidden_size"]
        embedding_dim = hf_config.get("embedding_size", hidden_dim)
        model = ModelConfig(
            vocabulary_size=hf_config["vocab_size"], num_layers=hf_config["num_hidden_layers"],
            num_heads=hf_config["num_attention_heads"], hidden_dim=hidden_dim,
            intermediate_dim=hf_config["intermediate_size"],
            embedding_dim=None if embedding_dim == hidden_dim else embedding_dim,
            max_sequence_length=hf_config.get("max_position_embeddings", 512),
            num_segments=hf_config.get("type_vocab_size", 2),
            dropout=float(hf_config.get("hidden_dropout_prob", 0.1)),
            layer_norm_epsilon=float(hf_config.get("layer_norm_eps", 1e-12)),
            activation=_HF_ACTIVATIONS[activation], use_pooler=True)
    except KeyError as error:
        raise TrimbertError(f"{source}: config.json lacks {error.args[0]!r}") from error
    model.validate(source)
    return Config(name=str(hf_config.get("_name_or_path") or "pretrained"), model=model, trim=TrimConfig())


def keras_hub_weight_table(backbone) -> list[tuple[str, Any, bool, tuple[int, ...] | None]]:
    """(Hugging Face tensor name, keras-hub variable, stored transposed, Keras matrix shape) for a BertBackbone.

    The keras-hub counterpart of :func:`weight_table`, used both to read a preset and to write one
    (``pipeline.serving.keras_hub_preset``). Its attention projections are EinsumDense layers: kernels
    q/k/v [H, A, d] and output [A, d, H], biases [A, d] and [H]; the shape entry (``None``: as stored)
    flattens them to the [in, out] kernel and [out] bias of a Dense layer, whose transpose is Hugging
    Face's [out, in]; reshaping the other way puts a Hugging Face tensor back.
    """
    hidden = backbone.hidden_dim
    table: list[tuple[str, Any, bool, tuple[int, ...] | None]] = [
        ("embeddings.word_embeddings.weight", backbone.get_layer("token_embedding").embeddings, False, None),
        ("embeddings.position_embeddings.weight",
         backbone.get_layer("position_embedding").position_embeddings, False, None),
        ("embeddings.token_type_embeddings.weight", backbone.get_layer("segment_embedding").embeddings, False, None),
    ]

    def dense(prefix, layer, kernel_shape=(hidden, -1)):
        table.extend([(f"{prefix}.weight", layer.kernel, True, kernel_shape),
                      (f"{prefix}.bias", layer.bias, False, (-1,))])

    def layernorm(prefix, layer):
        table.extend([(f"{prefix}.weight", layer.gamma, False, None), (f"{prefix}.bias", layer.beta, False, None)])

    layernorm("embeddings.LayerNorm", backbone.get_layer("embeddings_layer_norm"))
    for index in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{index}")
        attention = block._self_attention_layer
        prefix = f"encoder.layer.{index}"
        dense(f"{prefix}.attention.self.query", attention.query_dense)
        dense(f"{prefix}.attention.self.key", attention.key_dense)
        dense(f"{prefix}.attention.self.value", attention.value_dense)
        dense(f"{prefix}.attention.output.dense", attention.output_dense, kernel_shape=(hidden, hidden))
        layernorm(f"{prefix}.attention.output.LayerNorm", block._self_attention_layer_norm)
        dense(f"{prefix}.intermediate.dense", block._feedforward_intermediate_dense)
        dense(f"{prefix}.output.dense", block._feedforward_output_dense, kernel_shape=(-1, hidden))
        layernorm(f"{prefix}.output.LayerNorm", block._feedforward_layer_norm)
    dense("pooler.dense", backbone.get_layer("pooled_dense"))
    return table


def _keras_hub_tensors(path: str) -> tuple[Config, dict[str, np.ndarray]]:
    """A keras-hub BertBackbone preset as our config plus Hugging Face-layout tensors."""
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(str(path))
    if not isinstance(backbone, keras_hub.models.BertBackbone):
        raise TrimbertError(f"{path}: a keras-hub {type(backbone).__name__} preset, expected BertBackbone")
    # keras-hub's BertBackbone fixes the tanh GELU and layernorm epsilon 1e-12.
    model = ModelConfig(
        vocabulary_size=backbone.vocabulary_size, num_layers=backbone.num_layers,
        num_heads=backbone.num_heads, hidden_dim=backbone.hidden_dim, intermediate_dim=backbone.intermediate_dim,
        max_sequence_length=backbone.max_sequence_length, num_segments=backbone.num_segments,
        dropout=float(backbone.dropout), layer_norm_epsilon=1e-12, activation="gelu_approximate")
    tensors = {}
    for key, variable, transposed, shape in keras_hub_weight_table(backbone):
        value = np.asarray(variable.numpy())
        value = value if shape is None else value.reshape(shape)
        tensors[key] = value.T if transposed else value
    return Config(name=posixpath.basename(path.rstrip("/")), model=model, trim=TrimConfig()), tensors


def _hugging_face_tensors(path: str) -> tuple[Config, dict[str, np.ndarray]]:
    from safetensors.numpy import load

    config = config_from_hugging_face(_read_json(storage.join(path, CONFIG_FILE)), storage.join(path, CONFIG_FILE))
    weights_path = storage.join(path, WEIGHTS_FILE)
    if not storage.isfile(weights_path):
        raise TrimbertError(f"{path}: no {WEIGHTS_FILE} (only safetensors checkpoints are read)")
    # From bytes, not load_file: the file may be an object on gs:// that only tf.io.gfile can read.
    tensors = {normalize_key(key): value for key, value in load(storage.read_bytes(weights_path)).items()}
    return config, tensors


def from_pretrained(path: str | pathlib.Path, model_overrides: Mapping[str, Any] | None = None,
                    name: str = "encoder") -> Encoder:
    """Loads a local Hugging Face BERT folder or keras-hub BertBackbone preset into our encoder.

    Args:
        path: a folder with ``config.json`` + ``model.safetensors`` (Hugging Face format,
            including folders written by :func:`save_pretrained`), or a keras-hub preset
            directory (``config.json`` naming ``keras_hub>BertBackbone``, ``model.weights.h5``).
        model_overrides: ``model`` fields to change that do not alter weight shapes, e.g.
            ``{"activation": "gelu_approximate"}`` or ``{"dropout": 0.0}``.
        name: the Keras model name.

    Returns:
        The encoder with every weight set from the checkpoint.
    """
    path = os.fspath(path)
    config, tensors = read_checkpoint(path)
    if model_overrides:
        import dataclasses

        model = dataclasses.replace(config.model, **dict(model_overrides))
        model.validate(f"model_overrides for {path}")
        config = dataclasses.replace(config, model=model)
    encoder = build_encoder(config, name=name)
    assign_tensors(encoder, tensors, path)
    return encoder


def read_checkpoint(path: str | pathlib.Path) -> tuple[Config, dict[str, np.ndarray]]:
    """The config and every Hugging Face-named tensor of a folder :func:`from_pretrained` reads.

    Unlike :func:`from_pretrained` nothing is built, and a Hugging Face folder's head tensors
    (``cls.*``) are kept, for callers that load heads too (``models.pretrained_heads``).
    """
    path = os.fspath(path)
    if not storage.isfile(storage.join(path, CONFIG_FILE)):
        raise TrimbertError(f"{path}: not a pretrained model folder (no {CONFIG_FILE})")
    if is_keras_hub_preset(path):
        return _keras_hub_tensors(path)
    return _hugging_face_tensors(path)


def vocabulary_file(path: str | pathlib.Path) -> pathlib.Path | str | None:
    """The WordPiece vocabulary of a Hugging Face folder or keras-hub preset, if it has one."""
    path = os.fspath(path)
    for candidate in (storage.join(path, VOCABULARY_FILE), storage.join(path, "assets", "tokenizer", "vocabulary.txt")):
        if storage.isfile(candidate):
            return storage.as_given(candidate)
    return None


def lowercases(path: str | pathlib.Path) -> bool:
    """Whether the checkpoint's tokenizer lower-cases text.

    Its tokenizer config decides when it says; otherwise the case of its vocabulary's tokens
    (:func:`vocabulary_is_cased`); True only when there is neither.
    """
    declared = declared_lowercase(path)
    if declared is not None:
        return declared
    vocabulary = vocabulary_file(path)
    if vocabulary is not None:
        return not vocabulary_is_cased(storage.read_bytes(os.fspath(vocabulary)).decode("utf-8").splitlines())
    return True


def declared_lowercase(path: str | pathlib.Path) -> bool | None:
    """What a Hugging Face folder's tokenizer config says about lower-casing; None if it says nothing."""
    path = os.fspath(path)
    for file_name, key in CASE_SETTINGS:
        candidate = storage.join(path, file_name)
        if storage.isfile(candidate):
            declared = lowercase_setting(_read_json(candidate), key)
            if declared is not None:
                return declared
    return None


# ---------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------


def non_standard_properties(config: Config) -> list[str]:
    """What keeps a compact config from being a plain BERT, one phrase per property (empty for BERT).

    A plain BERT keeps every block's FFN and both layernorms, uses softmax attention, drops no block
    (a compact config has none to drop) and has embeddings as wide as the model.
    """
    model, trim = config.model, config.trim
    every_block = range(model.num_layers)
    reasons = []
    for field, what in (("ffn_blocks", "no feed-forward sub-layer"),
                        ("attention_layernorm_blocks", "no post-attention layernorm"),
                        ("ffn_layernorm_blocks", "no post-feed-forward layernorm")):
        missing = [block for block in every_block if not trim.keeps(field, block)]
        if missing:
            reasons.append(f"blocks {missing} have {what} (trim.{field})")
    if trim.attention_normalizer != "softmax":
        reasons.append(f"attention weights come from {trim.attention_normalizer!r}, not softmax "
                       f"(trim.attention_normalizer)")
    if trim.drop_layers:
        reasons.append(f"blocks {list(trim.drop_layers)} are dropped (trim.drop_layers)")
    if model.embedding_dim not in (None, model.hidden_dim):
        reasons.append(f"the embeddings are {model.embedding_dim} wide, projected to the model's {model.hidden_dim} "
                       f"(model.embedding_dim)")
    return reasons


def is_standard_bert(config: Config) -> bool:
    """Whether a compact config is a plain BERT that any BERT loader rebuilds exactly.

    Anything else (a TrimBERT trim, a Bort-style embedding projection; :func:`non_standard_properties`)
    would be built by a BERT loader as a standard BERT, with random weights for the missing parts and
    softmax attention, behind only a warning.
    """
    return not non_standard_properties(config)


def hugging_face_config(config: Config) -> dict[str, Any]:
    """A Hugging Face ``config.json`` for a compact config, with the exact trimbert sections.

    A standard BERT is labelled ``model_type: bert`` / ``BertModel``, so BERT loaders read it. Any
    other shape is labelled ``model_type: trimbert`` / ``TrimbertEncoder``, which no BERT loader
    accepts; :func:`from_pretrained` reloads both exactly from the ``trimbert`` entry.
    """
    model = config.model
    standard = is_standard_bert(config)
    hf_config = {
        "architectures": ["BertModel" if standard else "TrimbertEncoder"],
        "model_type": "bert" if standard else "trimbert",
        "vocab_size": model.vocabulary_size,
        "hidden_size": model.hidden_dim,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.num_heads,
        "intermediate_size": model.intermediate_dim,
        "hidden_act": _OUR_ACTIVATIONS[model.activation],
        "hidden_dropout_prob": model.dropout,
        "attention_probs_dropout_prob": model.dropout,
        "max_position_embeddings": model.max_sequence_length,
        "type_vocab_size": model.num_segments,
        "layer_norm_eps": model.layer_norm_epsilon,
        "trimbert": {"name": config.name, "model_config": section_to_dict(model),
                     "trim_config": section_to_dict(config.trim)},
    }
    if model.embedding_dim not in (None, model.hidden_dim):
        hf_config["embedding_size"] = model.embedding_dim
    return hf_config


def save_pretrained(encoder: Encoder, path: str | pathlib.Path,
                    vocabulary_path: str | pathlib.Path | None = None,
                    lowercase: bool = True) -> pathlib.Path | str:
    """Writes the encoder as a Hugging Face-format folder that :func:`from_pretrained` reloads exactly.

    A pruned encoder (``trim.drop_layers``) is written in compact form: its kept blocks
    become ``encoder.layer.0 .. D'-1`` and the config says ``num_layers: D'``.

    Args:
        encoder: the encoder to save.
        path: output folder (created; existing files of the same names are replaced).
        vocabulary_path: a ``vocab.txt`` to copy beside the weights, if any.
        lowercase: written to ``tokenizer_config.json`` as ``do_lower_case`` with the vocabulary.
    """
    from safetensors.numpy import save

    path = os.fspath(path)
    storage.makedirs(path)
    config = compact_config(encoder.to_config())
    # The weights first and config.json last: a folder counts as a model once config.json exists.
    storage.write_bytes(storage.join(path, WEIGHTS_FILE), save(encoder_tensors(encoder), metadata={"format": "pt"}))
    if vocabulary_path is not None:
        storage.write_bytes(storage.join(path, VOCABULARY_FILE), storage.read_bytes(os.fspath(vocabulary_path)))
        storage.write_json(storage.join(path, "tokenizer_config.json"),
                           {"do_lower_case": lowercase, "tokenizer_class": "BertTokenizer"})
    storage.write_json(storage.join(path, CONFIG_FILE), hugging_face_config(config))
    return storage.as_given(path)
