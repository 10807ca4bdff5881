"""The rows of ``trimbert study trims``, written as short specs: what to trim and how to recover.

A spec is one or more parts joined by ``+``; block indices are 0-based, counted after any
``pmb`` drop::

    untrimmed              the base model as it is (the reference row)
    random-init            the base shape, fine-tuned from random weights (no pre-training)
    no-ffn:top-half        remove the feed-forward sub-layer from the top half of the blocks (TrimBERT)
    no-ffn:2,3             ... from the given blocks
    attention:relu         replace the attention softmax (relu, relu_sum or sigmoid; TrimBERT)
    half-ln                remove every post-attention layernorm, half of the blocks' layernorms (TrimBERT)
    trimbert               all three: no-ffn:top-half + attention:relu + half-ln
    pmb:top:2              drop whole blocks by a Poor Man's BERT strategy (top, bottom, alternate-odd,
                           alternate-even, symmetric), from a pre-trained model only
    student:CONFIG         another shape (a shipped config name or YAML file, e.g. a Bort-like one),
                           extracted from the --from (or --init) checkpoint by weight selection,
                           else from random weights, then distilled from the teacher
    heal                   after trimming a pre-trained model, continue pre-training it for the study's
                           healing steps with distillation from the untrimmed original

e.g. ``trimbert,no-ffn:2,3+heal,pmb:top:2,student:bort_minilm``. Plain Python: no TensorFlow here.
"""

from __future__ import annotations

import dataclasses

from configs.errors import TrimbertError
from configs.schema import TrimConfig
from models.drop_rules import layers_to_drop

UNTRIMMED = "untrimmed"
RANDOM_INIT = "random-init"
NORMALIZERS = ("relu", "relu_sum", "sigmoid")
PMB_STRATEGIES = ("top", "bottom", "alternate-odd", "alternate-even", "symmetric")
DEFAULT_SCRATCH_TRIMS = (UNTRIMMED, "no-ffn:top-half", "attention:relu", "half-ln", "trimbert", RANDOM_INIT)


@dataclasses.dataclass(frozen=True)
class TrimSpec:
    """One row's recipe, parsed from its spec text.

    Args:
        name: the spec as written (the row's name and its folder name).
        drop: ``(strategy, K)`` of a Poor Man's BERT drop, applied first.
        no_ffn: ``"top-half"`` or the blocks that lose their feed-forward sub-layer.
        normalizer: the attention normaliser replacing softmax.
        half_layernorms: remove every post-attention layernorm.
        student: config of another shape trained by distillation.
        heal: continued pre-training with distillation after trimming.
        random_init: no pre-trained weights at all.
    """

    name: str
    drop: tuple[str, int] | None = None
    no_ffn: str | tuple[int, ...] | None = None
    normalizer: str | None = None
    half_layernorms: bool = False
    student: str | None = None
    heal: bool = False
    random_init: bool = False

    @property
    def is_reference(self) -> bool:
        return self.name == UNTRIMMED

    @property
    def changes_blocks(self) -> bool:
        return bool(self.no_ffn or self.normalizer or self.half_layernorms)


def _error(text: str, why: str) -> TrimbertError:
    return TrimbertError(f"trim spec {text!r}: {why} (see `trimbert study trims --help`)")


def parse(text: str) -> TrimSpec:
    """One spec string -> :class:`TrimSpec`; unknown or contradictory parts are errors naming the spec."""
    text = text.strip()
    fields: dict = {"name": text}
    for part in (piece.strip() for piece in text.split("+")):
        head, _, argument = part.partition(":")
        if part in (UNTRIMMED, RANDOM_INIT):
            if text != part:
                raise _error(text, f"{part} cannot be combined with other parts")
            fields["random_init"] = part == RANDOM_INIT
        elif part == "trimbert":
            fields.update(no_ffn="top-half", normalizer="relu", half_layernorms=True)
        elif part == "half-ln":
            fields["half_layernorms"] = True
        elif part == "heal":
            fields["heal"] = True
        elif head == "attention":
            if argument not in NORMALIZERS:
                raise _error(text, f"attention normaliser must be one of {', '.join(NORMALIZERS)}")
            fields["normalizer"] = argument
        elif head == "no-ffn":
            fields["no_ffn"] = _blocks(text, argument)
        elif head == "pmb":
            strategy, _, count = argument.partition(":")
            if strategy not in PMB_STRATEGIES or not count.isdigit() or int(count) < 1:
                raise _error(text, f"expected pmb:STRATEGY:K with STRATEGY one of {', '.join(PMB_STRATEGIES)}")
            fields["drop"] = (strategy, int(count))
        elif head == "student":
            if not argument:
                raise _error(text, "student needs a config name, e.g. student:bort_minilm")
            fields["student"] = argument
        else:
            raise _error(text, f"unknown part {part!r}")
    spec = TrimSpec(**fields)
    if spec.student and (spec.drop or spec.changes_blocks or spec.heal):
        raise _error(text, "a student is its own shape: it does not combine with other trims")
    return spec


def _blocks(text: str, argument: str) -> str | tuple[int, ...]:
    if argument == "top-half":
        return argument
    try:
        blocks = tuple(int(piece) for piece in argument.split(",") if piece.strip())
    except ValueError:
        blocks = ()
    if not blocks:
        raise _error(text, "no-ffn takes top-half or comma-separated block indices, e.g. no-ffn:2,3")
    return blocks


def parse_list(text: str) -> list[TrimSpec]:
    """``"untrimmed,no-ffn:2,3+heal,trimbert"``: commas inside ``no-ffn:`` belong to its block list."""
    specs: list[str] = []
    for piece in (piece.strip() for piece in text.split(",")):
        if piece[:1].isdigit() and specs and specs[-1].rsplit("+", 1)[-1].startswith("no-ffn:"):
            specs[-1] += "," + piece
        elif piece:
            specs.append(piece)
    parsed = [parse(spec) for spec in specs]
    names = [spec.name for spec in parsed]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise TrimbertError(f"trim specs repeat {', '.join(repeated)}")
    if not parsed:
        raise TrimbertError("--trims needs at least one spec")
    return parsed


def trimmed(trim: TrimConfig, spec: TrimSpec, num_layers: int) -> TrimConfig:
    """The trim section of a ``num_layers``-block model (after any drop) with the spec's block trims on top.

    Blocks the model already trims stay trimmed.
    """
    changes: dict = {}
    if spec.no_ffn is not None:
        removed = set(range(num_layers // 2, num_layers)) if spec.no_ffn == "top-half" else set(spec.no_ffn)
        bad = sorted(block for block in removed if not 0 <= block < num_layers)
        if bad:
            raise TrimbertError(f"trim spec {spec.name!r}: blocks {bad} outside 0..{num_layers - 1}")
        changes["ffn_blocks"] = tuple(block for block in range(num_layers)
                                      if trim.keeps("ffn_blocks", block) and block not in removed)
    if spec.normalizer is not None:
        changes["attention_normalizer"] = spec.normalizer
    if spec.half_layernorms:
        changes["attention_layernorm_blocks"] = ()
    return dataclasses.replace(trim, **changes)


def dropped_blocks(spec: TrimSpec, num_layers: int) -> tuple[int, ...]:
    """The source blocks a ``pmb`` part removes (none without one)."""
    if spec.drop is None:
        return ()
    strategy, count = spec.drop
    try:
        return tuple(layers_to_drop(strategy, num_layers, count))
    except TrimbertError as error:
        raise TrimbertError(f"trim spec {spec.name!r}: {error}") from error


def folder_name(spec: TrimSpec) -> str:
    """A file-system-safe folder name for the row (``no-ffn:2,3+heal`` -> ``no-ffn_2-3+heal``)."""
    return spec.name.replace(":", "_").replace(",", "-").replace("/", "_")
