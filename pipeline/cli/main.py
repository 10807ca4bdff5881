"""The ``trimbert`` command line: one sub-command per pipeline stage.

Each stage module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and
keeps heavy imports (TensorFlow, Beam) inside ``run`` so ``--help`` stays fast.
The table below is the whole registry: explicit, no import side effects.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from beam_jobs.quiet_tensorflow import quiet_tensorflow_start_up
from configs.errors import TrimbertError
from pipeline.host_memory import keep_freed_memory

# name -> (module with add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("pipeline.cli.data", "fetch and list the embedded data assets"),
    "config": ("pipeline.cli.config", "show a resolved config and its parameter count"),
    "preprocess": ("pipeline.cli.preprocess", "corpus -> WordPiece tokens -> pre-training TFRecords (Apache Beam)"),
    "pretrain": ("pipeline.cli.pretrain", "pre-train an encoder under tf.distribute (resumable)"),
    "launch": ("pipeline.cli.launch", "run `pretrain` as N workers here, restarted together on a failure, or print "
                                      "them as a Kubernetes Indexed Job (--emit kubernetes)"),
    "prune": ("pipeline.cli.prune", "drop whole blocks from a pre-trained encoder (Poor Man's BERT)"),
    "finetune": ("pipeline.cli.finetune", "fine-tune an encoder on a GLUE or sentiment task over several seeds"),
    "predict": ("pipeline.cli.predict", "run a fine-tuned model kept by finetune (OUT/model) on a CSV, TSV, JSONL "
                                        "or Parquet file"),
    "evaluate": ("pipeline.cli.evaluate", "fine-tune each checkpoint x task not yet evaluated, exactly once"),
    "watch": ("pipeline.cli.watch", "run evaluate --pending on a schedule (e.g. every 10 minutes)"),
    "study": ("pipeline.cli.study", "studies: layer-drop (Poor Man's BERT strategies), trims (the three methods)"),
    "teacher": ("pipeline.cli.teacher", "fit a masked-LM head on a frozen pre-trained encoder so it can teach"),
    "search": ("pipeline.cli.search", "Bort sub-architecture search: size x latency x proxy error, successive halving"),
    "export": ("pipeline.cli.export", "a fine-tuned model as a TF Serving SavedModel (raw text in), or a model as a "
                                      "keras-hub preset"),
    "report": ("pipeline.cli.report", "trade-off tables and plots: accuracy vs accelerator-hours and parameters"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trimbert", description="Pre-train, trim and evaluate smaller BERT encoders.")
    parser.add_argument("--verbose", action="store_true", dest="show_tensorflow_logs",
                        help="also show TensorFlow's start-up notices and its C++ INFO and WARNING lines "
                             "(hidden by default)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Only stages that forward unknown flags (Beam pipeline options) accept extras.
    if extra and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_args = extra
    if args.show_tensorflow_logs and hasattr(args, "verbose"):
        args.verbose = True  # a command's own --verbose (preprocess) follows the global one
    if not (args.show_tensorflow_logs or getattr(args, "verbose", False)):
        quiet_tensorflow_start_up()  # before anything loads TensorFlow; a no-op for commands that never do
    if args.command != "preprocess":  # Beam's threads share one malloc arena there: 7% slower, measured
        keep_freed_memory()  # before TensorFlow allocates: steps stop page-faulting their tensors
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("trimbert: interrupted", file=sys.stderr)
        return 130
    except TrimbertError as error:
        print(f"trimbert {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
