"""The sub-architecture search space (Bort): a YAML file -> candidates -> trainable configs.

A space file lists the values to try for each encoder dimension, names the base
config every candidate inherits its other fields from, and sets the proxy
(short distillation runs) and the objective's weights::

    base: bort                      # a shipped config name or a path
    num_layers: [2, 4]              # depth D
    num_heads: [4, 8]               # attention heads A
    hidden_dim: [512, 1024]         # model width H (must be divisible by A)
    intermediate_dim: [768, 3072]   # feed-forward width I
    embedding_dim: [null]           # embedding width E (optional; null means E = H)
    proxy: {rung_steps: [50, 100, 200], keep_fraction: 0.5, batch_size: 32, seq_len: 128, ...}
    objective: {parameters: 1.0, latency: 1.0, error: 1.0}

Combinations with ``hidden_dim % num_heads != 0`` are dropped and counted, not
errors: the grid is a product and some corners are simply not encoders.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
from typing import Any

import yaml

from configs import schema as config_lib
from configs.schema import Config, ConfigError
from pipeline.studies.search_algorithm import ObjectiveWeights

SEARCH_CONFIG_DIR = config_lib.CONFIG_DIR / "search"

# The dimensions a space may list, in the order they appear in candidate names.
DIMENSIONS = ("num_layers", "num_heads", "hidden_dim", "intermediate_dim", "embedding_dim")
DIMENSION_LETTERS = {"num_layers": "d", "num_heads": "a", "hidden_dim": "h", "intermediate_dim": "i",
                     "embedding_dim": "e"}


@dataclasses.dataclass(frozen=True)
class ProxySettings:
    """The short distillation runs that estimate each candidate's error, and the latency probe.

    Args:
        rung_steps: cumulative training steps at each successive-halving rung
            (strictly increasing); a survivor of rung r continues from its rung r-1 checkpoint.
        keep_fraction: fraction of a rung's candidates (rounded up, at least one) promoted to the next.
        batch_size: proxy training batch size.
        seq_len: proxy training sequence length (the data folder must have been written at it).
        learning_rate: proxy learning rate; ``None`` keeps the base config's.
        error_floor: a lower bound on the proxy loss, used to drop candidates that cannot make
            a rung's cut whatever their error. 0 is always safe (the distillation loss is a sum of a
            cross-entropy and a KL divergence, both >= 0).
        latency_batch_size: batch size of the inference-latency probe.
        latency_seq_len: sequence length of the latency probe.
        latency_repeats: timed forward passes; the median is reported.
    """

    rung_steps: tuple[int, ...] = (20, 40, 80)
    keep_fraction: float = 0.5
    batch_size: int = 32
    seq_len: int = 128
    learning_rate: float | None = None
    error_floor: float = 0.0
    latency_batch_size: int = 8
    latency_seq_len: int = 128
    latency_repeats: int = 5


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of the space: the encoder dimensions that vary."""

    num_layers: int
    num_heads: int
    hidden_dim: int
    intermediate_dim: int
    embedding_dim: int | None = None

    @property
    def name(self) -> str:
        """A stable, readable id, e.g. ``d4-a8-h1024-i768`` (``-e128`` when E is set)."""
        parts = []
        for dimension in DIMENSIONS:
            value = getattr(self, dimension)
            if value is not None:
                parts.append(f"{DIMENSION_LETTERS[dimension]}{value}")
        return "-".join(parts)

    def model_overrides(self) -> dict[str, Any]:
        return {dimension: getattr(self, dimension) for dimension in DIMENSIONS}


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A loaded, validated space file.

    Args:
        path: the file it came from (named in errors).
        base: the config every candidate starts from (a shipped name or a path).
        values: the values listed per dimension; ``embedding_dim`` defaults to ``(None,)``.
        proxy: the proxy runs and latency probe.
        objective: the objective's weights.
    """

    path: str
    base: str
    values: dict[str, tuple[int | None, ...]]
    proxy: ProxySettings
    objective: ObjectiveWeights

    def base_config(self) -> Config:
        return config_lib.load(_resolve_relative(self.base, self.path))

    def candidates(self) -> tuple[list[Candidate], int]:
        """Every valid combination, and how many were dropped for ``hidden_dim % num_heads != 0``."""
        valid, dropped = [], 0
        for combination in itertools.product(*(self.values[d] for d in DIMENSIONS)):
            candidate = Candidate(*combination)
            if candidate.hidden_dim % candidate.num_heads:
                dropped += 1
            else:
                valid.append(candidate)
        return valid, dropped


def resolve_space_path(path: str | pathlib.Path) -> pathlib.Path:
    """A file path, or the bare name of a shipped space (``bort_space``, ``tiny_space``)."""
    candidate = pathlib.Path(path)
    if candidate.is_file():
        return candidate
    shipped = SEARCH_CONFIG_DIR / (candidate.name if candidate.suffix else f"{candidate.name}.yaml")
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in SEARCH_CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"search space file not found: {path} (shipped spaces: {names})")


def load_space(path: str | pathlib.Path) -> SearchSpace:
    """Reads and validates a space file; every error names the field and the file.

    Args:
        path: a YAML space file or a shipped space name.
    """
    path = resolve_space_path(path)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping")
    known = {"name", "base", "proxy", "objective", *DIMENSIONS}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})")
    base = raw.get("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{where}: 'base' must name a config (e.g. bort or tiny)")
    values = {}
    for dimension in DIMENSIONS:
        optional = dimension == "embedding_dim"
        if dimension not in raw:
            if not optional:
                raise ConfigError(f"{where}: missing field '{dimension}' (a list of values to try)")
            values[dimension] = (None,)
            continue
        listed = raw[dimension]
        if not isinstance(listed, list) or not listed:
            raise ConfigError(f"{where}: '{dimension}' must be a non-empty list, got {listed!r}")
        for value in listed:
            valid = (value is None and optional) or (isinstance(value, int) and not isinstance(value, bool)
                                                     and value >= 1)
            if not valid:
                raise ConfigError(f"{where}: '{dimension}' values must be integers >= 1"
                                  f"{' or null' if optional else ''}, got {value!r}")
        if len(set(listed)) != len(listed):
            raise ConfigError(f"{where}: '{dimension}' repeats a value: {listed}")
        values[dimension] = tuple(listed)
    proxy = config_lib.build_section(ProxySettings, raw.get("proxy", {}), "proxy", where)
    steps = proxy.rung_steps
    if not steps or any(s < 1 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ConfigError(f"{where}: 'proxy.rung_steps' must be positive and strictly increasing, got {list(steps)}")
    if not 0.0 < proxy.keep_fraction <= 1.0:
        raise ConfigError(f"{where}: 'proxy.keep_fraction' must be in (0, 1], got {proxy.keep_fraction}")
    for name in ("batch_size", "seq_len", "latency_batch_size", "latency_seq_len", "latency_repeats"):
        if getattr(proxy, name) < 1:
            raise ConfigError(f"{where}: 'proxy.{name}' must be >= 1, got {getattr(proxy, name)}")
    if proxy.error_floor < 0:
        raise ConfigError(f"{where}: 'proxy.error_floor' must be >= 0, got {proxy.error_floor}")
    objective = config_lib.build_section(ObjectiveWeights, raw.get("objective", {}), "objective", where)
    for name in ("parameters", "latency", "error"):
        if getattr(objective, name) < 0:
            raise ConfigError(f"{where}: 'objective.{name}' must be >= 0, got {getattr(objective, name)}")
    space = SearchSpace(where, base, values, proxy, objective)
    if not space.candidates()[0]:
        raise ConfigError(f"{where}: no combination satisfies hidden_dim % num_heads == 0")
    space.base_config()  # a missing or broken base fails here, before any work
    return space


def candidate_config(space: SearchSpace, candidate: Candidate, teacher: str | None,
                     proxy_steps: int | None) -> Config:
    """The base config with the candidate's dimensions and the teacher set.

    Args:
        space: the search space (its base config and proxy settings).
        candidate: the dimensions to set.
        teacher: a trimbert model directory to distil from; ``None`` leaves the base's.
        proxy_steps: ``None`` keeps the base's pre-training schedule (the config handed to
            ``trimbert pretrain``); a number sets one proxy phase of that many steps.
    """
    raw = space.base_config().to_dict()
    raw["name"] = f"search-{candidate.name}"
    raw["model"].update(candidate.model_overrides())
    # Per-block trims of the base name block indices of its own depth; a searched depth drops them.
    raw["trim"] = {"attention_normalizer": raw["trim"]["attention_normalizer"]}
    if teacher is not None:
        raw["pretrain"]["distill"]["teacher"] = str(teacher)
    if proxy_steps is not None:
        proxy = space.proxy
        raw["data"]["seq_len"] = proxy.seq_len
        raw["model"]["max_sequence_length"] = max(raw["model"]["max_sequence_length"], proxy.seq_len)
        raw["pretrain"]["phases"] = [{"steps": proxy_steps, "seq_len": proxy.seq_len,
                                      "batch_size": proxy.batch_size, "learning_rate": None}]
        if proxy.learning_rate is not None:
            raw["pretrain"]["learning_rate"] = proxy.learning_rate
        # Checkpoints only at a rung's end: that is where the next rung resumes.
        raw["pretrain"]["checkpoint_every"] = proxy_steps
        raw["pretrain"]["keep_checkpoints"] = 1
        raw["pretrain"]["log_every"] = 1
    return config_lib.from_dict(raw, where=f"{space.path} candidate {candidate.name}")


def _resolve_relative(base: str, space_path: str) -> str:
    """A base given as a relative path is read next to the space file; a bare name is a shipped config."""
    beside = pathlib.Path(space_path).parent / base
    return str(beside) if beside.is_file() else base
