"""``trimbert study trims``: TrimBERT, Poor Man's BERT and Bort side by side, each fine-tuned on the same tasks.

Two ways to get the models (rows are specs, :mod:`pipeline.studies.trim_specs`):

- **from scratch** (no ``--from``): every row is the study config's shape with the row's trims,
  pre-trained on the same data with the same steps, batch and seed (the same token budget), by
  distillation when ``--teacher`` is given, starting from a larger checkpoint's weights by weight
  selection when ``--init`` is given; ``random-init`` is the shape fine-tuned from random weights,
  the row that shows what pre-training is worth.
- **from a pre-trained encoder** (``--from PATH``): each trim is applied to its weights (kept
  weights copied exactly; blocks dropped for ``pmb``); ``+heal`` continues pre-training the trimmed
  model for ``--heal-steps`` with distillation from the untrimmed original (its masked-LM logits
  when it has a masked-LM head, else its hidden states); ``student:CONFIG`` extracts another shape
  from the original by weight selection (its first blocks, the leading slice of every weight: Bort
  extracts a sub-architecture) and distils it from the original for the study config's whole budget.
  From random weights instead, minutes of CPU distillation leave a small encoder worse than no
  pre-training at all (BENCHMARKS.md, "Pre-training against random init").

Every model is then fine-tuned on every task with the study config's ``finetune`` section. Layout::

    OUT/study.json                the settings (a rerun with others is refused)
    OUT/models/ROW/               trimmed or random models, Hugging Face format
    OUT/pretrain/ROW/             pre-training / healing runs (resumable model directories)
    OUT/runs/ROW/TASK/result.json fine-tuning results
    OUT/trims.{md,csv,json,png}   the table and plot (pipeline.studies.trims_table), with each
                                  pre-trained row's held-out masked-LM figures when its data has held-out shards

A killed study resumes: a finished pre-training run (``summary.json``), a written model
(``config.json``) and a finished fine-tuning run (``result.json``) are reused, not redone.
The list of rows is not part of the signature: rerunning with more rows adds them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import storage
from beam_jobs.manifest import Manifest
from configs.errors import TrimbertError
from configs.schema import Config
from pipeline.finetune import task_files
from pipeline.finetune.tasks import Task, task_of
from pipeline.studies import trim_specs
from pipeline.studies.bookkeeping import check_study_folder, finetune_once
from pipeline.studies.trim_specs import TrimSpec
from pipeline.writer_lock import WriterLock

if TYPE_CHECKING:
    from pipeline.model_source import ModelSource


@dataclasses.dataclass(frozen=True)
class TrimStudy:
    """What the study compares and on what.

    Args:
        config: the study config: the shape (from scratch), the pre-training recipe (rows that
            pre-train, heal or distil) and the fine-tuning recipe (every row).
        specs: the rows.
        tasks: fine-tuning tasks (names of built-in tasks are looked up; a :class:`Task` may be a user's own).
        data_dirs: pre-training data (``trimbert preprocess`` output), needed by rows that pre-train.
        source: ``--from``: the pre-trained encoder to trim; ``None`` trains from scratch.
        teacher: from scratch only: distil every pre-training row from this checkpoint.
        init: from scratch only: every pre-training row starts from this checkpoint by weight selection.
        heal_steps: pre-training steps of a ``+heal`` row.
    """

    config: Config
    specs: tuple[TrimSpec, ...]
    tasks: tuple[Task, ...]
    data_dirs: tuple[str, ...] = ()
    source: str | None = None
    teacher: str | None = None
    init: str | None = None
    heal_steps: int = 0

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(task_of(task) for task in self.tasks))

    def signature(self) -> dict:
        """The settings that decide the study's numbers; a user's task adds its files and their sha256."""
        return {"from": self.source and storage.absolute(self.source),
                "teacher": self.teacher and storage.absolute(self.teacher),
                "init": self.init and storage.absolute(self.init),
                "data": [storage.absolute(folder) for folder in self.data_dirs],
                "tasks": [task.name for task in self.tasks],
                "task_files": {task.name: task_files.signature(task.user_files) for task in self.tasks
                               if task.user_files is not None},
                "heal_steps": self.heal_steps, "config": self.config.to_dict()}

    @staticmethod
    def signature_defaults() -> dict:
        """The signature's fields at their defaults: a config field newer than a study.json is no change
        while it keeps its default (``bookkeeping.changed_fields``); so is a study with no user task."""
        return {"config": Config().to_dict(), "task_files": {}}

    def check(self) -> None:
        """Refuses, before anything runs, rows this study cannot build."""
        for spec in self.specs:
            if self.source is None and (spec.drop or spec.heal):
                raise TrimbertError(f"trim spec {spec.name!r}: pmb and heal trim a pre-trained model: give --from")
            if self.source is not None and (self.teacher or self.init):
                raise TrimbertError("--teacher and --init are for studies from scratch; from --from the original "
                                    "is the starting point and the teacher")
            if spec.heal and self.heal_steps < 1:
                raise TrimbertError(f"trim spec {spec.name!r} heals: give --heal-steps N (N >= 1)")
            needs_data = spec.heal or spec.student or (self.source is None and not spec.random_init)
            if needs_data and not self.data_dirs:
                raise TrimbertError(f"trim spec {spec.name!r} pre-trains: give --data (a trimbert preprocess folder)")
            if spec.random_init and self.source is None and not self.data_dirs:
                raise TrimbertError(f"trim spec {spec.name!r} needs a vocabulary: give --data (its manifest names "
                                    f"the vocabulary) or --from")


@dataclasses.dataclass(frozen=True)
class RowModel:
    """A row's model, ready to fine-tune.

    Args:
        path: what ``finetune --init`` reads (a model directory or a Hugging Face folder).
        config: its shape and trims.
        pretrain_summary: the ``summary.json`` of the pre-training or healing run, if any.
    """

    path: str
    config: Config
    pretrain_summary: dict | None = None


def with_recipe(recipe: Config, shape: Config, name: str, **pretrain_changes) -> Config:
    """The recipe's data, pretrain and finetune sections around another model shape and its trims."""
    pretrain = dataclasses.replace(recipe.pretrain, **pretrain_changes)
    return dataclasses.replace(recipe, name=name, model=shape.model, trim=shape.trim, pretrain=pretrain) \
        .validate(f"study row {name}")


def distillation_from(recipe: Config, teacher: ModelSource) -> dict:
    """``pretrain`` changes that distil from ``teacher``: matching its masked-LM logits when it has a
    masked-LM head, else its last hidden states (a sentence encoder such as MiniLM has no head)."""
    from models import pretrained_heads

    objective = "logits" if pretrained_heads.has_masked_lm_head(teacher.tensors()) else "hidden"
    return {"distill": dataclasses.replace(recipe.pretrain.distill, teacher=teacher.path, objective=objective)}


def heal_config(recipe: Config, trimmed_shape: Config, name: str, distillation: dict, steps: int) -> Config:
    """The healing run: the trimmed shape, the recipe's first phase cut to ``steps``, distilled from the
    original (``distillation``: :func:`distillation_from` the untrimmed source)."""
    phase = dataclasses.replace(recipe.pretrain.phases[0], steps=steps)
    return with_recipe(recipe, trimmed_shape, name, phases=(phase,), **distillation)


def run_trims(study: TrimStudy, out: str, options_for: Callable, log=print) -> list:
    """Builds, pre-trains and fine-tunes every row; writes and returns the table rows.

    Args:
        study: what to compare.
        out: output folder (local or a URL).
        options_for: ``(init, out, Task) -> FinetuneOptions`` (glue dir, vocabulary ... from the command line).
        log: progress printer.
    """
    study.check()
    out = str(out)
    with WriterLock(out, "study trims", log):
        check_study_folder(out, study.signature(), study.signature_defaults())
        builder = _RowBuilder(study, out, log)
        results = {}
        for number, spec in enumerate(study.specs, start=1):
            log(f"=== [{number}/{len(study.specs)}] {spec.name}")
            model = builder.build(spec)
            folder = trim_specs.folder_name(spec)
            results[spec.name] = (model, {
                task.name: finetune_once(study.config, options_for(
                    model.path, storage.join(out, "runs", folder, task.name), task), log)
                for task in study.tasks})
        from pipeline.studies import trims_table

        rows = [trims_table.make_row(spec, *results[spec.name], study.config.finetune.seq_len)
                for spec in study.specs]
        trims_table.write_table(rows, out, study)
        return rows


class _RowBuilder:
    """Makes each row's model once (reusing what a killed study already wrote)."""

    def __init__(self, study: TrimStudy, out: str, log):
        self.study, self.out, self.log = study, out, log
        self._opened = None
        self._source = None
        self._distillation = None

    def _distillation_changes(self) -> dict:
        """The ``pretrain`` changes that distil from the study's one teacher (the source, else --teacher),
        read from its checkpoint once; no changes without a teacher."""
        from pipeline.model_source import ModelSource

        if self.study.source is None and self.study.teacher is None:
            return {}
        if self._distillation is None:
            teacher = self._opened_source() if self.study.source is not None else ModelSource.open(self.study.teacher)
            self._distillation = distillation_from(self.study.config, teacher)
        return self._distillation

    def build(self, spec: TrimSpec) -> RowModel:
        study = self.study
        if spec.student:
            return self._student(spec)
        if study.source is None:
            return self._from_scratch(spec)
        if spec.is_reference:
            return RowModel(study.source, self._source_config())
        if spec.random_init:
            shape = self._source_config()
            return RowModel(self._save_random(trim_specs.folder_name(spec), shape), shape)
        folder = self._trimmed_folder(spec)
        if not spec.heal:
            return RowModel(folder, _read_shape(folder))
        name = trim_specs.folder_name(spec)
        config = heal_config(study.config, _read_shape(folder), name, self._distillation_changes(), study.heal_steps)
        return self._pretrain(name, config, init=folder)

    # --- from scratch

    def _from_scratch(self, spec: TrimSpec) -> RowModel:
        base = self.study.config
        name = trim_specs.folder_name(spec)
        trim = trim_specs.trimmed(base.trim, spec, base.model.num_layers)
        shape = dataclasses.replace(base, trim=trim)
        if spec.random_init:
            return RowModel(self._save_random(name, shape), shape)
        config = with_recipe(base, shape, name, **self._distillation_changes())
        return self._pretrain(name, config, init=self.study.init, select_weights=True)

    def _student(self, spec: TrimSpec) -> RowModel:
        from configs import schema as config_lib

        shape = config_lib.load(spec.student)
        name = trim_specs.folder_name(spec)
        config = with_recipe(self.study.config, shape, name, **self._distillation_changes())
        init = self.study.source or self.study.init
        return self._pretrain(name, config, init=init, select_weights=init is not None)

    def _pretrain(self, name: str, config: Config, init: str | None = None,
                  select_weights: bool = False) -> RowModel:
        from pipeline import model_dir as model_dir_lib
        from pipeline.pretrain import loop as pretrain
        model_dir = storage.join(self.out, "pretrain", name)
        summary_path = storage.join(model_dir, model_dir_lib.SUMMARY_FILE)
        total = sum(phase.steps for phase in config.pretrain.phases)
        if storage.isfile(summary_path) and storage.read_json(summary_path)["steps"] >= total:
            self.log(f"    {summary_path} exists: reusing the finished run")
        else:
            pretrain.run(config, pretrain.RunOptions(
                data_dirs=self.study.data_dirs, model_dir=model_dir, init=init, select_weights=select_weights,
                vocabulary=Manifest.read(self.study.data_dirs[0]).readable_vocabulary),
                log=lambda line: self.log(f"    {line}"))
        return RowModel(model_dir, config, storage.read_json(summary_path))

    def _save_random(self, name: str, shape: Config) -> str:
        import keras

        import models

        folder = storage.join(self.out, "models", name)
        if not self._written(folder):
            keras.utils.set_random_seed(self.study.config.pretrain.seed)
            vocabulary, lowercase = self._vocabulary()
            models.save_pretrained(models.build_encoder(shape), folder, vocabulary, lowercase)
        return folder

    # --- from a pre-trained encoder

    def _opened_source(self) -> ModelSource:
        """``--from``, opened once."""
        from pipeline.model_source import ModelSource

        if self._opened is None:
            self._opened = ModelSource.open(self.study.source, "--from")
        return self._opened

    def _source_encoder(self):
        if self._source is None:
            self._source = self._opened_source().encoder()
        return self._source

    def _source_config(self) -> Config:
        from models.build import compact_config

        return compact_config(self._source_encoder().to_config())

    def _trimmed_folder(self, spec: TrimSpec) -> str:
        """The source with the spec's trims (no healing), saved once as a Hugging Face folder."""
        import models
        from models import pretrained
        from models.build import compact_config
        from models.prune import drop_blocks

        folder = storage.join(self.out, "models", trim_specs.folder_name(spec).replace("+heal", ""))
        if self._written(folder):
            return folder
        encoder = self._source_encoder()
        dropped = trim_specs.dropped_blocks(spec, len(encoder.blocks))
        if dropped:
            encoder = drop_blocks(encoder, dropped)
        shape = compact_config(encoder.to_config())
        trim = trim_specs.trimmed(shape.trim, spec, shape.model.num_layers)
        trimmed = models.build_encoder(dataclasses.replace(shape, trim=trim))
        report = pretrained.assign_matching(pretrained.weight_table(trimmed),
                                            pretrained.encoder_tensors(encoder), spec.name)
        self.log(f"    {spec.name}: {len(report['loaded'])} tensors kept, {len(report['dropped'])} removed"
                 + (f", blocks {list(dropped)} dropped" if dropped else ""))
        vocabulary, lowercase = self._vocabulary()
        models.save_pretrained(trimmed, folder, vocabulary, lowercase)
        return folder

    def _vocabulary(self) -> tuple[str | None, bool]:
        """The source's vocabulary and case, else the data's vocabulary (lower-cased, as pre-training exports)."""
        if self.study.source is not None:
            return self._opened_source().vocabulary()
        return Manifest.read(self.study.data_dirs[0]).readable_vocabulary, True

    def _written(self, folder: str) -> bool:
        from models import pretrained

        written = storage.isfile(storage.join(folder, pretrained.CONFIG_FILE))  # written last
        if written:
            self.log(f"    {folder} exists: reusing it")
        return written


def _read_shape(folder: str) -> Config:
    from pipeline.model_source import ModelSource

    return ModelSource.open(folder).config
