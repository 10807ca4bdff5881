"""The trimmable BERT encoder, its heads, pretrained import/export and Poor Man's pruning.

Public API (resolved lazily so ``import models.params`` and the CLI's ``--help`` do not
import TensorFlow):

    build_encoder(config) -> Encoder            models.build
    compact_config(config) -> Config            models.build
    Encoder                                     models.encoder
    build_pretraining_model, build_classifier   models.tasks
    MaskedLMHead, NextSentenceHead, ClassificationHead   models.heads
    from_pretrained(path), save_pretrained(encoder, path)   models.pretrained
    prune_encoder(encoder, strategy, drop, ...), layer_similarities   models.prune
    layers_to_drop, STRATEGIES                  models.drop_rules

``prune_encoder`` is ``models.prune.prune`` under another name: a ``models.prune`` attribute would be
shadowed by the submodule of that name as soon as anything imports it.
    count_parameters(config), flops_per_token(config, seq_len)   models.params
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_encoder": "models.build",
    "compact_config": "models.build",
    "Encoder": "models.encoder",
    "build_pretraining_model": "models.tasks",
    "build_classifier": "models.tasks",
    "MaskedLMHead": "models.heads",
    "NextSentenceHead": "models.heads",
    "ClassificationHead": "models.heads",
    "from_pretrained": "models.pretrained",
    "save_pretrained": "models.pretrained",
    "prune_encoder": ("models.prune", "prune"),
    "drop_blocks": "models.prune",
    "layers_to_drop": "models.drop_rules",
    "layer_similarities": "models.prune",
    "STRATEGIES": "models.drop_rules",
    "encode_texts": "models.sample_text",
    "count_parameters": "models.params",
    "flops_per_token": "models.params",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    module, attribute = _EXPORTS[name] if isinstance(_EXPORTS[name], tuple) else (_EXPORTS[name], name)
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return __all__
