"""``trimbert pretrain``: pre-train an encoder on Beam-written TFRecords under tf.distribute."""

from __future__ import annotations

import argparse

from pipeline.pretrain.distribution import STRATEGIES
from pipeline.pretrain.watchdog import PREEMPTED_EXIT_CODE, RESTART_EXIT_CODE, STALLED_EXIT_CODE

EXIT_CODES = (f"exit codes: 0 done; 1 a crash (a traceback); {STALLED_EXIT_CODE} a configuration or data error, or "
              f"no progress within pretrain.stall_timeout_seconds (do not restart unchanged); {RESTART_EXIT_CODE} "
              f"restartable: under several workers a peer was lost, or did not join within "
              f"pretrain.stall_timeout_seconds (restart every worker: they resume from the last checkpoint); "
              f"{PREEMPTED_EXIT_CODE} stopped by SIGTERM, normally after saving a checkpoint (under several "
              f"workers every worker saves the same step); rerun to resume.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_CODES
    parser.add_argument("--config", required=True, help="a YAML config or a shipped name (tiny, bert_base ...)")
    parser.add_argument("--data", required=True,
                        help="a `trimbert preprocess` output folder, or one per phase separated by commas")
    parser.add_argument("--model-dir", required=True,
                        help="checkpoints, metrics.jsonl, TensorBoard and summary.json; rerun to resume")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set pretrain.phases=[{steps: 50}] (repeatable)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto")
    parser.add_argument("--num-cpu-replicas", type=int, default=1,
                        help="split the CPU into N logical devices (runs multi-replica code on a CPU)")
    parser.add_argument("--tpu", default=None, help="TPU name or grpc:// address (strategy tpu)")
    parser.add_argument("--init", default=None,
                        help="start a fresh run from a trimbert model directory, Hugging Face BERT folder or "
                             "keras-hub preset (encoder, and the heads it has); the config's trims apply on top")
    parser.add_argument("--select-weights", action="store_true",
                        help="with --init: the checkpoint may be larger than the config's shape; start from the "
                             "first blocks and the leading rows and columns of each weight (weight selection)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop at this global step")
    parser.add_argument("--verify-checksums", action="store_true",
                        help="before training, read every shard and compare its CRC-32C with the manifest's "
                             "(reads all the data once; shard lengths are always compared)")
    parser.add_argument("--allow-changes", action="store_true",
                        help="resume although the pretrain section, data folders or strategy differ from the "
                             "recorded run (the changes are recorded in run.json)")


def run(args: argparse.Namespace) -> int:
    import sys
    import traceback

    from beam_jobs.manifest import Manifest
    from configs import schema as config_lib
    from pipeline.pretrain import loop as pretrain

    config = config_lib.load(args.config, args.overrides)
    data_dirs = tuple(d for d in args.data.split(",") if d)
    options = pretrain.RunOptions(
        data_dirs=data_dirs, model_dir=args.model_dir, strategy=args.strategy,
        num_cpu_replicas=args.num_cpu_replicas, tpu=args.tpu,
        vocabulary=Manifest.read(data_dirs[0]).readable_vocabulary, max_steps=args.max_steps,
        allow_changes=args.allow_changes, init=args.init, select_weights=args.select_weights,
        verify_checksums=args.verify_checksums)
    try:
        pretrain.run(config, options, log=lambda line: print(line, flush=True))
    except pretrain.Preempted:
        print("pretrain: stopped by SIGTERM after saving a checkpoint", file=sys.stderr)
        return pretrain.PREEMPTED_EXIT_CODE
    except pretrain.PeerLost as lost:
        if getattr(args, "show_tensorflow_logs", False):  # --verbose: TensorFlow's own error too
            traceback.print_exception(lost.__cause__ or lost, file=sys.stderr)
        print(lost, file=sys.stderr, flush=True)
        return pretrain.RESTART_EXIT_CODE
    return 0
