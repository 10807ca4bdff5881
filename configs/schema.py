"""The one config system: YAML files in configs/ -> frozen, typed dataclasses.

A config file holds up to five sections (``model``, ``trim``, ``data``,
``pretrain``, ``finetune``); anything left out takes the defaults below. A file
may name another with ``base: other.yaml`` (resolved next to it) and override
only what differs. ``--set section.field=value`` overrides any field from the
command line; the value is parsed as YAML (``--set trim.ffn_blocks=[0,1]``).

Every field is checked on load: an unknown or ill-typed field raises
:class:`ConfigError` naming the field path and the file it came from.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import types
import typing
from typing import Any, Literal

import yaml

import storage
from configs.errors import TrimbertError

CONFIG_DIR = pathlib.Path(__file__).resolve().parent

_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

AttentionNormalizer = Literal["softmax", "relu", "relu_sum", "sigmoid"]
Pooling = Literal["cls", "mean"]  # the classifier head's input: BERT's pooler on [CLS], or the mean token vector


class ConfigError(TrimbertError, ValueError):
    """A config file or override is malformed; the message names field and file."""


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Encoder dimensions (names follow keras-hub's BertBackbone).

    Args:
        vocabulary_size: WordPiece vocabulary size V.
        num_layers: depth D of the source encoder (before ``trim.drop_layers``).
        num_heads: attention heads A; ``hidden_dim % num_heads == 0``.
        hidden_dim: model width H.
        intermediate_dim: feed-forward width I.
        embedding_dim: embedding width E; ``None`` means E = H. When E != H the
            embeddings are projected to H (Bort's released config needs this).
        max_sequence_length: learned position embeddings P.
        num_segments: segment (token type) embeddings.
        dropout: dropout rate in embeddings, attention and feed-forward.
        layer_norm_epsilon: epsilon of every layernorm (BERT 1e-12, Bort 1e-5).
        activation: feed-forward activation.
        use_pooler: keep the dense+tanh pooler over [CLS] (BERT has one).
    """

    vocabulary_size: int = 30522
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    intermediate_dim: int = 3072
    embedding_dim: int | None = None
    max_sequence_length: int = 512
    num_segments: int = 2
    dropout: float = 0.1
    layer_norm_epsilon: float = 1e-12
    activation: Literal["gelu", "gelu_approximate", "relu"] = "gelu"
    use_pooler: bool = True

    def validate(self, where: str) -> None:
        for name in ("vocabulary_size", "num_layers", "num_heads", "hidden_dim",
                     "intermediate_dim", "max_sequence_length", "num_segments"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: model.{name} must be >= 1, got {getattr(self, name)}")
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ConfigError(f"{where}: model.embedding_dim must be >= 1 or null")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"{where}: model.hidden_dim ({self.hidden_dim}) must be divisible by "
                f"model.num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{where}: model.dropout must be in [0, 1), got {self.dropout}")


@dataclasses.dataclass(frozen=True)
class TrimConfig:
    """Trims, per block, as fields of the one encoder (never forked classes).

    Block indices refer to the source encoder's blocks ``0 .. num_layers-1``;
    ``None`` for a block list means "every block".

    Args:
        ffn_blocks: blocks that keep their feed-forward sub-layer (TrimBERT).
        attention_layernorm_blocks: blocks that keep the post-attention layernorm.
        ffn_layernorm_blocks: blocks that keep the post-feed-forward layernorm.
        attention_normalizer: what turns attention scores s into weights, with n
            the number of unmasked keys and masked keys contributing 0:
            ``softmax``; ``relu`` = ReLU(s)/n; ``relu_sum`` = ReLU(s)/(sum ReLU(s)+eps);
            ``sigmoid`` = sigmoid(s - log n).
        drop_layers: source blocks removed whole (Poor Man's BERT, 0-based,
            e.g. [9, 10, 11] is the top three of 12).
    """

    ffn_blocks: tuple[int, ...] | None = None
    attention_layernorm_blocks: tuple[int, ...] | None = None
    ffn_layernorm_blocks: tuple[int, ...] | None = None
    attention_normalizer: AttentionNormalizer = "softmax"
    drop_layers: tuple[int, ...] = ()

    def validate(self, where: str, num_layers: int) -> None:
        for name in ("ffn_blocks", "attention_layernorm_blocks", "ffn_layernorm_blocks", "drop_layers"):
            blocks = getattr(self, name)
            if blocks is None:
                continue
            bad = [b for b in blocks if not 0 <= b < num_layers]
            if bad:
                raise ConfigError(
                    f"{where}: trim.{name} has block indices {bad} outside 0..{num_layers - 1}")
            if len(set(blocks)) != len(blocks):
                raise ConfigError(f"{where}: trim.{name} repeats a block index: {list(blocks)}")
        if len(self.drop_layers) >= num_layers:
            raise ConfigError(f"{where}: trim.drop_layers would remove all {num_layers} blocks")

    def kept_blocks(self, num_layers: int) -> tuple[int, ...]:
        """Source indices of the blocks that remain after ``drop_layers``."""
        dropped = set(self.drop_layers)
        return tuple(i for i in range(num_layers) if i not in dropped)

    def keeps(self, field_name: str, block: int) -> bool:
        blocks = getattr(self, field_name)
        return blocks is None or block in blocks


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Pre-training instances (Google BERT defaults, docs/record_format.md).

    Args:
        format: ``bert`` (static masking + next-sentence pairs, Google's schema)
            or ``packed`` (full-length unmasked sequences, dynamic masking).
        packing: for ``packed``: ``stream`` fills every sequence from a stream of documents separated
            by [SEP] (RoBERTa's FULL-SENTENCES); ``document`` packs each document on its own, padding
            its last sequence (``beam_jobs.packing``).
        seq_len: tokens per instance, [CLS] and [SEP] included.
        max_predictions: masked positions per instance.
        masked_lm_prob: fraction of tokens chosen for prediction.
        mask_token_rate: of the chosen, replaced by [MASK] (80%).
        random_token_rate: of the chosen, replaced by a random token (10%).
        dupe_factor: times each document is masked with a different seed.
        short_seq_prob: probability of a shorter target length.
        lower_case: lower-case text to match an uncased vocabulary.
        seed: seed of every random choice.
        whole_word_mask: choose whole words for prediction, as Google's ``do_whole_word_mask``: a
            WordPiece continuation piece (``##...`` in the vocabulary) is chosen with its word or not
            at all, within the same budget of positions; the 80/10/10 decision is one per word
            (``beam_jobs.whole_words``). For ``bert`` data it is applied by ``trimbert preprocess
            --whole-word-mask``. For ``packed`` data it is applied at training time and this key of
            the *pretrain* config decides: the preprocess flag only records the intent in the
            manifest's ``data_config`` (the records are the same), and pretraining warns when the two
            differ (``pipeline.pretrain.masking``).
    """

    format: Literal["bert", "packed"] = "packed"
    packing: Literal["stream", "document"] = "stream"
    seq_len: int = 128
    max_predictions: int = 20
    masked_lm_prob: float = 0.15
    mask_token_rate: float = 0.8
    random_token_rate: float = 0.1
    dupe_factor: int = 10
    short_seq_prob: float = 0.1
    lower_case: bool = True
    seed: int = 12345
    whole_word_mask: bool = False

    def validate(self, where: str) -> None:
        if self.seq_len < 8:
            raise ConfigError(f"{where}: data.seq_len must be >= 8, got {self.seq_len}")
        if self.max_predictions < 1:
            raise ConfigError(f"{where}: data.max_predictions must be >= 1")
        for name in ("masked_lm_prob", "mask_token_rate", "random_token_rate", "short_seq_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{where}: data.{name} must be in [0, 1]")
        if self.mask_token_rate + self.random_token_rate > 1.0:
            raise ConfigError(f"{where}: data.mask_token_rate + data.random_token_rate must be <= 1")
        if self.dupe_factor < 1:
            raise ConfigError(f"{where}: data.dupe_factor must be >= 1")


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
    """One phase of pre-training (e.g. sequence 128, then 512)."""

    steps: int = 1000
    seq_len: int = 128
    batch_size: int = 256
    learning_rate: float | None = None  # None: the pretrain section's rate


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation (Bort's loss, docs/papers.md).

    loss = mlm_weight * CE(student, labels) + kd_weight * KD(student, teacher),
    over masked positions, normalised by their number. Released values:
    mlm_weight 0.1, kd_weight 0.5, T 2.0 (de Wynter & Perry 2020).

    Args:
        teacher: model folder of the frozen teacher; None trains plain MLM.
        required: refuse to pre-train without a teacher (a config that *is*
            a distillation recipe, like bort.yaml, must not fall back to MLM).
        loss: the KD term. ``bort_reference`` is the released code's term, the
            scale the released weights were tuned for; ``kl`` is the textbook
            T^2 * KL(softmax(teacher/T) || softmax(student/T)). See
            pipeline/pretrain/losses.py.
        objective: what the student matches: ``logits`` (the masked-LM logits, Bort) or ``hidden``
            (the last hidden states at every non-padding token, as DistilBERT and TinyBERT do; through a
            learned projection when the widths differ), which needs no masked-LM head on the teacher.
        hidden_loss: the ``hidden`` term per token: ``cosine`` (1 - cosine similarity) or ``mse``.
    """

    teacher: str | None = None
    required: bool = False
    loss: Literal["bort_reference", "kl"] = "bort_reference"
    mlm_weight: float = 0.1
    kd_weight: float = 0.5
    temperature: float = 2.0
    objective: Literal["logits", "hidden"] = "logits"
    hidden_loss: Literal["cosine", "mse"] = "cosine"


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Pre-training loop, optimizer and checkpoints."""

    phases: tuple[PhaseConfig, ...] = (PhaseConfig(),)
    optimizer: Literal["adamw", "lamb", "sgd"] = "adamw"
    """``sgd`` is plain SGD (no momentum): an update proportional to the gradient, so tests can see
    a constant factor on the gradient that AdamW and LAMB would normalise away."""
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.01
    decay: Literal["linear", "polynomial", "constant"] = "linear"
    decay_power: float = 1.0
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-6
    clip_norm: float | None = 1.0
    """Clip the global gradient norm to this; ``null`` or 0 turns clipping off."""
    mixed_precision: Literal["float32", "bfloat16", "float16"] = "float32"
    jit_compile: bool = False
    deterministic: bool = False
    """Turn on TensorFlow op determinism (``tf.config.experimental.enable_op_determinism``). A resume is
    bit-identical on CPU without it; on GPU only with it (at some cost in speed)."""
    gradient_accumulation: int = 1
    next_sentence: bool = True
    freeze_encoder: bool = False
    """Train only the heads (their output layer stays tied to the frozen token embedding): fitting a
    masked-LM head to a pre-trained encoder that has none (``trimbert teacher``)."""
    distill: DistillConfig = DistillConfig()
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    shuffle_buffer: int = 10000
    seed: int = 0
    eval_every: int = 1000
    """Evaluate masked-LM loss and accuracy on the data's held-out shards (``trimbert preprocess
    --heldout-fraction``) every this many global steps and at the end of each phase; data without
    held-out shards is not evaluated. Rows go to metrics.jsonl and TensorBoard, the last to summary.json.
    Evaluation time is reported apart (``heldout_seconds``) and is not in the training device-hours.
    A whole ``tiny`` run (1000 steps of batch 32, one evaluation at its end) spent 1.2% of its time
    evaluating, measured on a loaded 2-core CPU (docs/heldout_eval.md); a run much shorter than
    ``eval_every`` still evaluates once at its end, which then dominates: lower ``eval_examples`` there."""
    eval_examples: int = 2048
    """Held-out examples each evaluation scores at most: the first ones of the held-out shards, read in
    order, masked (``packed`` data) from a seed of each example's place in that stream and a constant,
    so every evaluation of every run scores the same masked tokens."""
    stall_timeout_seconds: float = 1800.0
    """Stop the run (exit 2, last checkpoint kept) when no optimizer step completes for this long.

    Counted from the start of each phase, so it must cover building the input, tracing and the
    first compile (minutes for a large model with XLA on a slow CPU) as well as one step."""
    sigterm_grace_seconds: float = 5.0
    """After SIGTERM, wait this long for the current step to end and checkpoint there; if it does
    not end (blocked input or collective), exit 143 without a checkpoint. A second SIGTERM exits now."""

    def validate(self, where: str) -> None:
        if self.stall_timeout_seconds <= 0 or self.sigterm_grace_seconds <= 0:
            raise ConfigError(f"{where}: pretrain.stall_timeout_seconds and sigterm_grace_seconds must be > 0")
        if not self.phases:
            raise ConfigError(f"{where}: pretrain.phases must list at least one phase")
        for index, phase in enumerate(self.phases):
            for name in ("steps", "seq_len", "batch_size"):
                if getattr(phase, name) < 1:
                    raise ConfigError(f"{where}: pretrain.phases[{index}].{name} must be >= 1")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"{where}: pretrain.warmup_fraction must be in [0, 1)")
        if self.gradient_accumulation < 1:
            raise ConfigError(f"{where}: pretrain.gradient_accumulation must be >= 1")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            raise ConfigError(f"{where}: pretrain.checkpoint_every and keep_checkpoints must be >= 1")
        if self.eval_every < 1 or self.eval_examples < 1:
            raise ConfigError(f"{where}: pretrain.eval_every and eval_examples must be >= 1")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning on one task (GLUE or an embedded sentiment task)."""

    seq_len: int = 128
    batch_size: int = 32
    epochs: float = 3.0
    learning_rate: float = 2e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-6  # BERT's fine-tuning optimizer (Devlin et al. 2019)
    clip_norm: float | None = 1.0
    """Clip the global gradient norm to this; ``null`` or 0 turns clipping off."""
    dropout: float = 0.1
    pooling: Pooling = "cls"
    seeds: tuple[int, ...] = (1,)
    max_train_examples: int | None = None

    def validate(self, where: str) -> None:
        if self.seq_len < 4 or self.batch_size < 1 or self.epochs <= 0:
            raise ConfigError(f"{where}: finetune.seq_len, batch_size and epochs must be positive")
        if not self.seeds:
            raise ConfigError(f"{where}: finetune.seeds must list at least one seed")


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: what to build, how to trim it, and how to feed and train it."""

    name: str = "unnamed"
    model: ModelConfig = ModelConfig()
    trim: TrimConfig = TrimConfig()
    data: DataConfig = DataConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()

    def validate(self, where: str) -> Config:
        self.model.validate(where)
        self.trim.validate(where, self.model.num_layers)
        self.data.validate(where)
        self.pretrain.validate(where)
        self.finetune.validate(where)
        if self.data.seq_len > self.model.max_sequence_length:
            raise ConfigError(
                f"{where}: data.seq_len ({self.data.seq_len}) exceeds "
                f"model.max_sequence_length ({self.model.max_sequence_length})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return section_to_dict(self)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load(path: str | pathlib.Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Loads a YAML config file, applies ``a.b=value`` overrides, validates it.

    Args:
        path: a YAML file, or the bare name of a shipped config (``bert_base``).
        overrides: ``section.field=value`` strings; values are parsed as YAML.
    """
    if storage.is_url(path):  # a model directory's config.yaml on object storage (gs://, s3://, ...)
        path = str(path)
        if not storage.isfile(path):
            raise ConfigError(f"config file not found: {path}")
    else:
        path = resolve_path(path)
    raw = _read_with_bases(str(path), seen=())
    for override in overrides:
        _apply_override(raw, override, path)
    return from_dict(raw, where=str(path))


def from_dict(raw: dict[str, Any], where: str = "<dict>") -> Config:
    """Builds a validated :class:`Config` from plain data (as read from YAML)."""
    config = build_section(Config, raw, path="", where=where)
    return config.validate(where)


def resolve_path(path: str | pathlib.Path) -> pathlib.Path:
    candidate = pathlib.Path(path)
    if candidate.is_file():
        return candidate
    shipped = CONFIG_DIR / f"{candidate.name}.yaml" if candidate.suffix == "" else CONFIG_DIR / candidate
    if shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {path} (shipped configs: {', '.join(shipped_names())})")


def shipped_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def dump(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def _read_with_bases(path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """A YAML file's mapping merged over its ``base`` chain (a ``base`` path is relative to the file).

    Local files and URLs alike, through :mod:`storage`: loading a local config stays free of TensorFlow.
    """
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back on itself")
    try:
        raw = yaml.safe_load(storage.read_text(path)) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = storage.relative_to_file(path, base)
    if not storage.isfile(base_path):
        raise ConfigError(f"{path}: base file not found: {base}")
    return _merge(_read_with_bases(base_path, seen + (path,)), raw)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_override(raw: dict[str, Any], override: str, path: pathlib.Path | str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected section.field=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {override!r}: {part} is not a section (config {path})")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {override!r}: value is not valid YAML: {error}") from error


def build_section(cls: type, raw: Any, path: str, where: str) -> Any:
    """A frozen dataclass from plain data, every field type-checked; errors name ``path`` and ``where``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {path or 'top level'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        field = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(f"{where}: unknown field '{field}' (known: {', '.join(sorted(names))})")
    values = {}
    for name, value in raw.items():
        field = f"{path}.{name}" if path else name
        values[name] = _coerce(hints[name], value, field, where)
    return cls(**values)


def _coerce(hint: Any, value: Any, field: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, field, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: field '{field}' must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: field '{field}' must be a list, got {value!r}")
        return tuple(_coerce(args[0], item, f"{field}[{i}]", where) for i, item in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return build_section(hint, value, field, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: field '{field}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: field '{field}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            # PyYAML reads 1e-4 (no dot) as a string; accept it as the number it is.
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: field '{field}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: field '{field}' must be a string, got {value!r}")
        return value
    raise TypeError(f"config field '{field}' has unsupported type {hint!r}")


def section_to_dict(section: Any) -> dict[str, Any]:
    """A config (or one section) as plain YAML/JSON-ready data: tuples become lists."""
    return _plain(dataclasses.asdict(section))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
