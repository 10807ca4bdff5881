"""One function turns a config into an encoder; one turns a trimmed config into its compact form."""

from __future__ import annotations

import dataclasses

from configs.schema import Config
from models.encoder import Encoder


def build_encoder(config: Config, name: str = "encoder") -> Encoder:
    """Builds the (trimmed) encoder a config describes, with freshly initialised weights.

    Args:
        config: a validated config (``configs.schema.load``); only its ``model`` and
            ``trim`` sections are used.
        name: the Keras model name.

    Returns:
        An :class:`Encoder` whose parameter count equals
        ``models.params.count_parameters(config).total``.
    """
    return Encoder(model_config=config.model, trim_config=config.trim, name=name)


def compact_config(config: Config) -> Config:
    """The same encoder described without ``drop_layers``: blocks renumbered 0..D'-1.

    ``num_layers`` becomes the number of kept blocks and the per-block lists are
    re-indexed, so a saved pruned model reloads as a plain encoder of depth D'.

    Args:
        config: a config whose ``trim.drop_layers`` may be non-empty.
    """
    model, trim = config.model, config.trim
    kept = trim.kept_blocks(model.num_layers)
    position_of = {source: position for position, source in enumerate(kept)}

    def reindex(blocks):
        if blocks is None:
            return None
        return tuple(position_of[block] for block in blocks if block in position_of)

    new_trim = dataclasses.replace(
        trim, drop_layers=(), ffn_blocks=reindex(trim.ffn_blocks),
        attention_layernorm_blocks=reindex(trim.attention_layernorm_blocks),
        ffn_layernorm_blocks=reindex(trim.ffn_layernorm_blocks))
    return dataclasses.replace(
        config, model=dataclasses.replace(model, num_layers=len(kept)), trim=new_trim)
