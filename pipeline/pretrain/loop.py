"""Pre-training under tf.distribute with a custom loop; read it top to bottom.

Keras 3 ``model.fit`` fails under MultiWorkerMirroredStrategy, so the loop is
``strategy.run`` + ``GradientTape`` + Keras layers and optimizer, the same on
one device, mirrored replicas, several workers and TPU. Sections:

1. setup: config, strategy, model directory, the data manifests
2. model and optimizer: encoder + heads, optional frozen teacher
3. checkpoint restore: the step first, to know the phase and the data position
4. input: one tf.data pipeline per phase, distributed per replica
5. step: losses normalised by global counts, gradient accumulation
6. loop: progress, metrics, held-out evaluation (clock paused), checkpoints every N steps and on SIGTERM
   (``pipeline.pretrain.preemption``: under several workers, all of them at the same step)
7. summary: wall-clock and accelerator-hours per phase, the held-out figures

Watchdogs (``pipeline.pretrain.watchdog``) bound the time without progress: one over the start-up
(strategy, model, restore, the first phase's input: :func:`run`), then one per phase's loop. Under
several workers, a lost peer ends the run with one line and exit 75 (``pipeline.pretrain.peers``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable

import keras
import tensorflow as tf

import models
import storage
from beam_jobs.manifest import Manifest
from configs.errors import TrimbertError
from configs.schema import Config
from models import params
from pipeline import clock as clock_lib
from pipeline import model_dir as model_dir_lib
from pipeline.clock import TrainingClock
from pipeline.pretrain import checkpoints, corrupt_records, distribution, heldout, peers, preemption, starting_points
from pipeline.pretrain.input import pretraining_dataset
from pipeline.pretrain.masking import masking_spec
from pipeline.pretrain.optimizer import pretraining_optimizer
from pipeline.pretrain.peers import PeerLost as PeerLost  # the CLI's to report
from pipeline.pretrain.preemption import Preempted as Preempted  # the CLI's to report
from pipeline.pretrain.preemption import SigtermStop
from pipeline.pretrain.step import make_train_step
from pipeline.pretrain.watchdog import PREEMPTED_EXIT_CODE as PREEMPTED_EXIT_CODE  # the CLI's exit codes
from pipeline.pretrain.watchdog import RESTART_EXIT_CODE as RESTART_EXIT_CODE
from pipeline.pretrain.watchdog import STALLED_EXIT_CODE, Watchdog
from pipeline.writer_lock import WriterLock

ENCODER_INPUTS = ("token_ids", "segment_ids", "padding_mask")
# pretrain.mixed_precision -> the Keras dtype policy the model is built under.
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class NonFiniteLoss(TrimbertError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How and where to run, beside the config (which says what to train).

    Args:
        data_dirs: one Beam output folder per phase (a single folder serves every phase).
        model_dir: checkpoints, metrics and the summary go here; rerunning resumes.
        strategy: ``auto``, ``one_device``, ``mirrored``, ``multi_worker`` or ``tpu``.
        num_cpu_replicas: logical CPU devices for ``mirrored`` on a CPU-only machine.
        tpu: TPU name or address for ``tpu``.
        vocabulary: the vocab.txt the data was tokenized with (copied into exports).
        max_steps: stop after this global step (for smoke runs); ``None`` = the config's total.
        allow_changes: resume even though the pretrain section, data folders or strategy differ
            from the recorded run; the changes are recorded in run.json.
        init: a checkpoint (trimbert model directory, Hugging Face folder, keras-hub preset) to start
            a fresh run from; ignored when the model directory already has a checkpoint to resume.
        select_weights: ``init`` may be larger than the config's shape: start from a leading slice of
            each of its weights (weight selection, ``models.pretrained.assign_matching``).
        verify_checksums: before training, read every listed shard whole and compare its CRC-32C with
            the manifest's (lengths are always compared: ``Manifest.check_shard_files``).
    """

    data_dirs: tuple[str, ...]
    model_dir: str
    strategy: str = "auto"
    num_cpu_replicas: int = 1
    tpu: str | None = None
    vocabulary: str | None = None
    max_steps: int | None = None
    allow_changes: bool = False
    init: str | None = None
    select_weights: bool = False
    verify_checksums: bool = False


def run(config: Config, options: RunOptions, log: Callable[[str], None] = print) -> dict:
    """Pre-trains ``config`` on the data and returns the summary (also in summary.json).

    The chief holds the model directory's writer lock for the whole run (``pipeline.writer_lock``):
    a second run into the same directory is refused with the holder named.

    Raises:
        Preempted: SIGTERM; a checkpoint was saved (by every worker, at the same step).
        PeerLost: under several workers, a peer stopped answering; restart every worker.
    """
    multi_worker = distribution.runs_multi_worker(options.strategy, options.tpu)
    startup = _startup_watchdog(config, str(options.model_dir), multi_worker)
    with peers.reported(str(options.model_dir), multi_worker), contextlib.ExitStack() as held:
        if distribution.is_chief_process():
            held.enter_context(WriterLock(options.model_dir, "pretrain", log))
        with startup:
            return _run(config, options, log, startup)


def _startup_watchdog(config: Config, model_dir: str, multi_worker: bool) -> Watchdog:
    """The start-up's watchdog: the strategy, the model, the restore and the first phase's input.

    Under several workers the strategy's constructor blocks until every task in TF_CONFIG has
    joined, and building the model broadcasts the chief's initial weights (the first collectives):
    a stall there names the peers and is restartable (exit 75); elsewhere a stall is an error (exit 2).
    """
    return Watchdog(0, "the start-up", config.pretrain.stall_timeout_seconds, config.pretrain.sigterm_grace_seconds,
                    lambda: _describe_last_checkpoint(model_dir),
                    startup_exit_code=RESTART_EXIT_CODE if multi_worker else STALLED_EXIT_CODE)


def _run(config: Config, options: RunOptions, log: Callable[[str], None], startup: Watchdog) -> dict:
    # === 1. Setup ===
    starting_points.check_teacher_given(config)
    started_at = time.time()
    model_dir = str(options.model_dir)
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[config.pretrain.mixed_precision])
    keras.utils.set_random_seed(config.pretrain.seed)  # same initial weights and dropout on every run
    if config.pretrain.deterministic:
        tf.config.experimental.enable_op_determinism()  # GPU kernels otherwise reduce in any order
    multi_worker = distribution.runs_multi_worker(options.strategy, options.tpu)
    peers_named = peers.others_named() if multi_worker else ""
    if multi_worker:  # the strategy's constructor would wait for them where no watchdog can run
        startup.unwatched(0, "the other workers to answer")  # wait_for_peers keeps its own deadline
        peers.wait_for_peers(config.pretrain.stall_timeout_seconds, model_dir)
    startup.step_done(0, f"the other workers to join the cluster: {peers_named}" if multi_worker else
                      f"the tf.distribute strategy ({options.strategy}) to start")
    strategy = distribution.make_strategy(options.strategy, options.num_cpu_replicas, options.tpu)
    if multi_worker:
        preemption.remember_sigterm()  # TensorFlow's own handler would only record it
    if options.verify_checksums:  # reads all the data: as long as it takes
        startup.unwatched(0, "reading every shard to compare its CRC-32C")
    else:
        startup.step_done(0, "reading the data manifests")
    chief = distribution.is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    devices = clock_lib.strategy_devices(strategy)
    phases = config.pretrain.phases
    manifests = _phase_manifests(config, options.data_dirs, options.verify_checksums)
    for manifest in manifests:
        manifest.check_vocabulary(config.model.vocabulary_size)
    startup.step_done(0, "checking the model directory")
    vocabulary_sha256 = manifests[0].vocabulary.sha256
    if len({m.vocabulary.sha256 for m in manifests}) > 1:
        raise TrimbertError("the phases' data folders were tokenized with different vocabularies")
    write_dir = model_dir if chief else storage.join(model_dir, f".worker-{_task_id(strategy)}")
    storage.makedirs(write_dir)
    use_nsp = config.pretrain.next_sentence and manifests[0].format == "bert"
    model_dir_lib.check_same_run(model_dir, config, vocabulary_sha256, use_nsp, chief,
                                 _run_identity(options), options.allow_changes, log)
    boundaries = [sum(p.steps for p in phases[:i]) for i in range(len(phases) + 1)]
    last_step = min(boundaries[-1], options.max_steps or boundaries[-1])
    accumulation = config.pretrain.gradient_accumulation
    log(f"pretrain {config.name}: {params.count_parameters(config).total:,} parameters, "
        f"{replicas} replica(s) under {type(strategy).__name__} on {devices.count} x {devices.kind}, "
        f"steps {last_step}" + (", op determinism on" if config.pretrain.deterministic else ""))

    # === 2. Model and optimizer ===
    startup.step_done(0, "building the model and optimizer" + (
        f" (their initial values are broadcast from the chief to {peers_named})" if multi_worker else ""))
    hidden_width = starting_points.teacher_hidden_width(config)
    with strategy.scope():
        encoder = models.build_encoder(config)
        model = models.build_pretraining_model(encoder, next_sentence=use_nsp, hidden_width=hidden_width)
        encoder.trainable = not config.pretrain.freeze_encoder  # before the optimizer sees the variables
        optimizer = pretraining_optimizer(config.pretrain)  # clipping is done by the step
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        phase_seconds = tf.Variable(tf.zeros([len(phases)], tf.float64), trainable=False, name="phase_seconds")
        # Each run of a phase traces and compiles its step again: that first step, kept apart.
        first_step_seconds = tf.Variable(tf.zeros([len(phases)], tf.float64), trainable=False,
                                         name="first_step_seconds")
        heldout_record = tf.Variable(tf.zeros([len(heldout.RECORD_FIELDS)], tf.float64), trainable=False,
                                     name="heldout_record")
    teacher = starting_points.load_teacher(config, strategy) if config.pretrain.distill.teacher else None

    # === 3. Checkpoint restore (the step first: it says which phase's input to rebuild) ===
    startup.step_done(0, "choosing and reading the checkpoint to resume from")
    manager_options = dict(max_to_keep=config.pretrain.keep_checkpoints)
    # The newest checkpoint that reads whole; unreadable newer ones are moved aside (pipeline.pretrain.checkpoints).
    latest = checkpoints.newest_readable(storage.join(model_dir, model_dir_lib.CHECKPOINTS_DIR), chief, log)
    restored_step = model_dir_lib.checkpoint_step(latest) if latest else 0
    if options.init and not latest:
        # Only a fresh run starts from --init; a resumed one continues from its own checkpoint.
        starting_points.initialize_and_log(model, options.init, log, options.select_weights)
    if restored_step >= last_step:
        # Finished before: reload the weights so the summary and the export describe them.
        tf.train.Checkpoint(model=model, step=step, phase_seconds=phase_seconds, first_step_seconds=first_step_seconds,
                            heldout_record=heldout_record).restore(latest).expect_partial()
        log(f"already trained to step {restored_step}; nothing to do")
    phase_index = next(i for i in range(len(phases)) if restored_step < boundaries[i + 1] or i == len(phases) - 1)

    while restored_step < last_step:
        phase = phases[phase_index]
        startup.step_done(restored_step, f"phase {phase_index}'s input, restore and step function")
        # === 4. Input ===
        manifest = manifests[phase_index]
        if phase.batch_size % (replicas * accumulation):
            raise TrimbertError(f"pretrain.phases[{phase_index}].batch_size {phase.batch_size} is not "
                                f"divisible by replicas ({replicas}) x gradient_accumulation ({accumulation})")
        per_replica_batch = phase.batch_size // replicas
        masking = masking_spec(config, manifest, phase.seq_len) if manifest.format == "packed" else None
        seed = config.pretrain.seed + 7919 * phase_index
        # The data position is the step: the stream is deterministic, so resuming skips what was seen.
        start_step = restored_step - boundaries[phase_index]

        def dataset_fn(context, manifest=manifest, batch=per_replica_batch, seed=seed, masking=masking,
                       start_step=start_step):
            return pretraining_dataset(manifest, batch, seed, config.pretrain.shuffle_buffer, masking, context,
                                       start_step)

        iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
        # Dropout's random state lives outside model.weights; saving it makes a resumed run
        # draw the same dropout masks as an uninterrupted one.
        dropout_states = [v.value for v in model.variables if "seed_generator_state" in v.path]
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, phase_seconds=phase_seconds,
                                         first_step_seconds=first_step_seconds, dropout_states=dropout_states,
                                         heldout_record=heldout_record)
        manager = tf.train.CheckpointManager(checkpoint, storage.join(write_dir, model_dir_lib.CHECKPOINTS_DIR),
                                             **manager_options)
        if latest:
            checkpoint.restore(latest).expect_partial()
            log(f"resumed from {latest} at step {int(step.numpy())}")
            model_dir_lib.drop_metrics_after(storage.join(model_dir, model_dir_lib.METRICS_FILE), int(step.numpy()),
                                             chief)
            latest = None

        # === 5. Step ===
        train_step = make_train_step(strategy, model, teacher, optimizer, step, config, phase.batch_size,
                                      accumulation, use_nsp)
        # Held-out examples in batches of the training micro-batch (what fits a replica's memory).
        heldout_count = heldout.heldout_examples(manifest, config.pretrain.eval_examples)
        evaluator = heldout.HeldoutEvaluator(
            strategy, model, manifest, masking, per_replica_batch // accumulation, heldout_count,
            config.pretrain.jit_compile) if heldout_count else None

        # === 6. Loop ===
        clock = TrainingClock(devices=devices.count, elapsed_before=float(phase_seconds[phase_index].numpy()))
        phase_end = min(boundaries[phase_index + 1], last_step)
        writer = tf.summary.create_file_writer(storage.join(write_dir, model_dir_lib.TENSORBOARD_DIR))
        stop = SigtermStop(strategy)
        window = _Window(time.perf_counter(), int(step.numpy()))
        watchdog = Watchdog(int(step.numpy()), f"the first step of phase {phase_index} (input start-up, tracing, "
                            f"compiling, the first batch)", config.pretrain.stall_timeout_seconds,
                            config.pretrain.sigterm_grace_seconds, lambda: _describe_last_checkpoint(write_dir))
        # A corrupt record stops the run in one line naming its shard and the last step that returned (a
        # failed train_step may have counted itself); nothing is saved after it. Outermost: the shards are
        # read again to name the bad one after the watchdog and the SIGTERM flag have ended.
        corrupt = corrupt_records.reported(manifest, watchdog.completed_step, lambda: _describe_last_checkpoint(
            write_dir), log)
        startup.stop()  # the phase's watchdog takes over (a no-op after the first phase)
        with corrupt, stop, watchdog:
            clock.start()  # every step counts, the first (tracing, compiling) included
            first_step_started = time.perf_counter()
            while int(step.numpy()) < phase_end:
                metrics = train_step(iterator)
                current = int(step.numpy())
                if first_step_started is not None:
                    elapsed = time.perf_counter() - first_step_started
                    first_step_seconds[phase_index].assign(first_step_seconds[phase_index] + elapsed)
                    first_step_started = None
                watchdog.step_done(current, f"step {current + 1} (an input batch or the replicas' collectives)")
                stop.agree()  # SIGTERM to any worker stops every worker at this step
                loss = float(metrics["loss"])
                if not math.isfinite(loss):
                    raise NonFiniteLoss(
                        f"non-finite loss {loss} at step {current}; stopped without saving, the last good "
                        f"checkpoint stays in {storage.join(model_dir, 'checkpoints')}")
                if current % config.pretrain.log_every == 0 or current == phase_end:
                    window = _log_progress(window, current, metrics, optimizer, phase, phase_index, clock,
                                           model_dir, writer, chief, log)
                if evaluator and (current % config.pretrain.eval_every == 0 or current == phase_end) \
                        and not stop.raised:
                    watchdog.step_done(current, f"the held-out evaluation at step {current}")
                    evaluation_started = time.perf_counter()
                    with clock.paused():  # evaluation is not training time
                        result = evaluator(interrupted=stop.is_raised)  # SIGTERM: checkpoint first
                    if result is None:
                        log(f"SIGTERM during the held-out evaluation at step {current}: left unfinished, unrecorded")
                    else:
                        heldout.record_after(heldout_record, current, result)
                        _log_heldout(current, phase_index, result, model_dir, writer, chief, log)
                    # Throughput leaves the evaluation out.
                    window = _Window(window.time + time.perf_counter() - evaluation_started, window.step)
                    watchdog.step_done(current, f"step {current + 1} (an input batch or the replicas' collectives)")
                if current % config.pretrain.checkpoint_every == 0 or current == phase_end or stop.raised:
                    if current == phase_end:
                        clock.stop()  # the phase's time ends here, so the checkpoint holds all of it
                    with clock.paused():
                        phase_seconds[phase_index].assign(clock.seconds)
                        manager.save(checkpoint_number=current)
                if stop.raised:
                    log(stop.saved(current, storage.join(model_dir, model_dir_lib.CHECKPOINTS_DIR, f"ckpt-{current}")))
                    raise Preempted()
        clock.stop()
        phase_seconds[phase_index].assign(clock.seconds)
        restored_step = int(step.numpy())
        if phase_index + 1 < len(phases) and restored_step < last_step:
            phase_index += 1  # the model and optimizer carry over; the next phase gets its own input

    # === 7. Summary ===
    startup.stop()  # a run already finished before has not stopped it yet
    summary = _summary(config, options, replicas, strategy, devices, phases, boundaries, phase_seconds,
                       first_step_seconds, step, vocabulary_sha256, started_at)
    summary.update(heldout.summary_fields(heldout_record))
    summary["weights_sha256"] = model_dir_lib.weights_digest(model)
    log(f"weights sha256 {summary['weights_sha256']}")  # every worker prints it: they must agree
    if chief:
        export_dir = storage.join(model_dir, model_dir_lib.ENCODER_DIR)
        models.save_pretrained(encoder, export_dir, vocabulary_path=options.vocabulary)
        summary["encoder"] = export_dir
        storage.write_json(storage.join(model_dir, model_dir_lib.SUMMARY_FILE), summary)
        log(f"done: step {summary['steps']}, {summary['accelerator_hours']:.6f} accelerator-hours; "
            f"encoder in {export_dir}")
    else:
        storage.remove_tree(write_dir)
    return summary


# ---------------------------------------------------------------------------
# Step
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Window:
    """The start of the current progress-reporting window."""

    time: float
    step: int


def _describe_last_checkpoint(write_dir: str) -> str:
    checkpoints = storage.join(write_dir, model_dir_lib.CHECKPOINTS_DIR)
    latest = tf.train.latest_checkpoint(checkpoints)
    return f"the last checkpoint {latest} stays" if latest else f"no checkpoint yet in {checkpoints}"


def _log_progress(window, current, metrics, optimizer, phase, phase_index, clock, model_dir, writer, chief,
                  log) -> _Window:
    now = time.perf_counter()
    steps = max(current - window.step, 1)
    seconds = max(now - window.time, 1e-9)
    sequences_per_second = steps * phase.batch_size / seconds
    record = {
        "step": current, "phase": phase_index,
        "loss": float(metrics["loss"]), "mlm_loss": float(metrics["mlm_loss"]),
        "mlm_accuracy": float(metrics["mlm_correct"]), "nsp_loss": float(metrics["nsp_loss"]),
        "kd_loss": float(metrics["kd_loss"]),
        "learning_rate": float(optimizer.learning_rate), "sequences_per_second": sequences_per_second,
        "tokens_per_second": sequences_per_second * phase.seq_len, "train_seconds": clock.seconds,
    }
    log(f"step {current:>7d} | loss {record['loss']:.4f} | mlm acc {record['mlm_accuracy']:.3f} | "
        f"lr {record['learning_rate']:.2e} | {sequences_per_second:8.1f} seq/s | "
        f"{record['tokens_per_second']:9.0f} tok/s")
    if chief:
        storage.append_text(storage.join(model_dir, model_dir_lib.METRICS_FILE), json.dumps(record) + "\n")
        with writer.as_default(step=current):
            for name in ("loss", "mlm_loss", "mlm_accuracy", "nsp_loss", "kd_loss", "learning_rate",
                         "sequences_per_second", "tokens_per_second"):
                tf.summary.scalar(name, record[name])
    return _Window(now, current)


def _log_heldout(current, phase_index, result, model_dir, writer, chief, log) -> None:
    record = heldout.metrics_row(current, phase_index, result)
    log(f"step {current:>7d} | held-out mlm loss {result.mlm_loss:.4f} | mlm acc {result.mlm_accuracy:.3f} | "
        f"{result.examples} examples, {result.masked_tokens} masked tokens in {result.seconds:.1f} s")
    if chief:
        storage.append_text(storage.join(model_dir, model_dir_lib.METRICS_FILE), json.dumps(record) + "\n")
        with writer.as_default(step=current):
            for name in ("heldout_mlm_loss", "heldout_mlm_accuracy", "heldout_seconds"):
                tf.summary.scalar(name, record[name])


def _phase_manifests(config: Config, data_dirs: tuple[str, ...], verify_checksums: bool) -> list[Manifest]:
    phases = config.pretrain.phases
    if len(data_dirs) not in (1, len(phases)):
        raise TrimbertError(f"--data lists {len(data_dirs)} folders for {len(phases)} phases; give one or "
                            f"one per phase")
    manifests = [Manifest.read(d) for d in data_dirs]
    for manifest in {m.directory: m for m in manifests}.values():
        manifest.check_shard_files(checksums=verify_checksums)  # a stat per shard; CRC-32Cs read all if asked
    manifests = manifests * len(phases) if len(manifests) == 1 else manifests
    for index, (phase, manifest) in enumerate(zip(phases, manifests, strict=True)):
        if manifest.format == "bert" and manifest.seq_len != phase.seq_len:
            raise TrimbertError(
                f"pretrain.phases[{index}].seq_len is {phase.seq_len} but {manifest.directory} holds bert "
                f"records of length {manifest.seq_len}; pass one --data folder per phase")
        if manifest.format == "packed" and manifest.seq_len != phase.seq_len:
            raise TrimbertError(
                f"pretrain.phases[{index}].seq_len is {phase.seq_len} but {manifest.directory} was packed to "
                f"{manifest.seq_len}; preprocess with --seq-len {phase.seq_len}")
        manifest.check_enough_examples(phase.batch_size, f"pretrain.phases[{index}]")
        if phase.seq_len > config.model.max_sequence_length:
            raise TrimbertError(f"pretrain.phases[{index}].seq_len exceeds model.max_sequence_length")
    return manifests


def _run_identity(options: RunOptions) -> dict:
    """What else a resumed run must share with the recorded one: its data and its strategy."""
    return {"data": [storage.absolute(path) for path in options.data_dirs],
            "strategy": {"kind": options.strategy, "num_cpu_replicas": options.num_cpu_replicas, "tpu": options.tpu}}


def _task_id(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(resolver.task_id) if resolver is not None and resolver.task_id is not None else 0


def _summary(config, options, replicas, strategy, devices, phases, boundaries, phase_seconds, first_step_seconds,
             step, vocabulary_sha256, started_at) -> dict:
    """The run's record. Per phase and in total: ``train_seconds`` (every step, the first included),
    ``first_step_seconds`` (of that, the first step of each run: tracing and compiling plus one step),
    and :meth:`pipeline.clock.Devices.usage`'s device fields; ``accelerator_hours`` is ``device_hours``
    (the name ``trimbert report`` reads)."""
    seconds = [float(s) for s in phase_seconds.numpy()]
    first = [float(s) for s in first_step_seconds.numpy()]

    def accounting(train_seconds: float, first_seconds: float) -> dict:
        usage = devices.usage(train_seconds)
        return {"train_seconds": train_seconds, "first_step_seconds": first_seconds, **usage,
                "accelerator_hours": usage["device_hours"]}

    return {
        "config": config.name,
        "parameters": params.count_parameters(config).total,
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "steps": int(step.numpy()),
        "phases": [
            {"steps": p.steps, "seq_len": p.seq_len, "batch_size": p.batch_size,
             "first_step": boundaries[i], **accounting(seconds[i], first[i])}
            for i, p in enumerate(phases)],
        **accounting(sum(seconds), sum(first)),
        "vocabulary_sha256": vocabulary_sha256,
        "data": list(options.data_dirs),
        "wall_clock_seconds_this_run": time.time() - started_at,
    }
