"""``trimbert study layer-drop|trims``: the command lines of :mod:`pipeline.studies`."""

from __future__ import annotations

import argparse

from pipeline.cli.arguments import add_config_arguments, finetune_options, load_config, resolve_task, resolve_tasks
from pipeline.studies.layer_drop import STUDY_STRATEGIES, run_layer_drop


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _strategy_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in STUDY_STRATEGIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown strategies {unknown}; choose from {', '.join(STUDY_STRATEGIES)}")
    return names


STUDIES = {
    "layer-drop": "Poor Man's BERT: every layer-dropping strategy, fine-tuned, beside the unpruned model",
    "trims": "TrimBERT, Poor Man's BERT and Bort side by side: trimmed models from scratch or from a "
             "pre-trained encoder, each fine-tuned on the same tasks",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    studies = parser.add_subparsers(dest="study", required=True, metavar="STUDY")
    layer_drop = studies.add_parser("layer-drop", help=STUDIES["layer-drop"], description=STUDIES["layer-drop"])
    layer_drop.add_argument("--init", required=True, help="pre-trained model (as for trimbert finetune --init)")
    layer_drop.add_argument("--task", required=True,
                            help="task to fine-tune on, e.g. sentiment-movies or rte, or your own task's name "
                                 "with --train ...")
    layer_drop.add_argument("--drop", type=_int_list, required=True, help="numbers of blocks to drop, e.g. 2,4")
    layer_drop.add_argument("--strategies", type=_strategy_list, default=list(STUDY_STRATEGIES),
                            help=f"comma-separated subset of {','.join(STUDY_STRATEGIES)} (default: all)")
    add_config_arguments(layer_drop)
    layer_drop.add_argument("--out", required=True, help="output folder: models/, runs/, layer_drop.{md,csv,json}")
    layer_drop.set_defaults(run_study=_run_layer_drop)
    _add_trims_arguments(studies.add_parser(
        "trims", help=STUDIES["trims"], description=STUDIES["trims"],
        epilog=_trims_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter))


def _trims_epilog() -> str:
    from pipeline.studies import trim_specs

    return "Trim specs (--trims):\n" + trim_specs.__doc__.split("::", 1)[1].split("Plain Python")[0]


def _add_trims_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.studies.trim_specs import DEFAULT_SCRATCH_TRIMS

    parser.add_argument("--from", dest="source", default=None,
                        help="a pre-trained encoder to trim (trimbert model directory, Hugging Face folder, "
                             "keras-hub preset); without it every row is pre-trained from scratch")
    parser.add_argument("--trims", default=None,
                        help=f"comma-separated trim specs, one per row (from scratch, default: "
                             f"{','.join(DEFAULT_SCRATCH_TRIMS)}; see below)")
    parser.add_argument("--tasks", required=True,
                        help="comma-separated tasks; 'glue' and 'sentiment' name the groups; a new name with "
                             "--train ... adds your own task")
    parser.add_argument("--data", default=None,
                        help="pre-training data (a trimbert preprocess folder) for rows that pre-train or heal")
    parser.add_argument("--teacher", default=None, help="from scratch: distil every pre-trained row from this model")
    parser.add_argument("--init", default=None,
                        help="from scratch: pre-trained rows start from this (larger) checkpoint by weight selection")
    parser.add_argument("--heal-steps", type=int, default=0, help="continued pre-training steps of +heal rows")
    add_config_arguments(parser)
    parser.set_defaults(run_study=_run_trims)
    parser.add_argument("--out", required=True,
                        help="output folder: models/, pretrain/, runs/, trims.{md,csv,json,png}")


def _run_layer_drop(args: argparse.Namespace) -> int:
    import storage
    from pipeline.model_source import ModelSource

    task = resolve_task(args)
    source = ModelSource.open(args.init, "--init")
    config = load_config(args, source.model_dir)
    out = args.out
    run_layer_drop(config, source, task, args.drop, args.strategies, out,
                   lambda init, run_out: finetune_options(args, init, task, str(run_out)))
    print(storage.read_text(storage.join(out, "layer_drop.md")))
    print("wrote " + ", ".join(storage.join(out, f"layer_drop.{extension}") for extension in ("md", "csv", "json")))
    return 0


def _run_trims(args: argparse.Namespace) -> int:
    import storage
    from configs.errors import TrimbertError
    from pipeline.studies import trim_specs, trims, trims_table

    if args.config is None:
        raise TrimbertError("study trims needs --config: the shape from scratch, and the pre-training and "
                            "fine-tuning recipe of every row (e.g. mini or tiny)")
    if args.trims is None and args.source is not None:
        raise TrimbertError("study trims --from needs --trims, e.g. untrimmed,pmb:top:2,no-ffn:top-half+heal")
    specs = trim_specs.parse_list(args.trims or ",".join(trim_specs.DEFAULT_SCRATCH_TRIMS))
    study = trims.TrimStudy(
        config=load_config(args, None), specs=tuple(specs),
        tasks=tuple(resolve_tasks(args, args.tasks, "--tasks")),
        data_dirs=tuple(folder for folder in (args.data or "").split(",") if folder),
        source=args.source, teacher=args.teacher, init=args.init, heal_steps=args.heal_steps)
    trims.run_trims(study, args.out, lambda init, run_out, task: finetune_options(args, init, task, str(run_out)))
    print(storage.read_text(storage.join(args.out, f"{trims_table.TABLE_NAME}.md")))
    print("wrote " + ", ".join(storage.join(args.out, f"{trims_table.TABLE_NAME}.{extension}")
                               for extension in ("md", "csv", "json", "png")))
    return 0


def run(args: argparse.Namespace) -> int:
    return args.run_study(args)
