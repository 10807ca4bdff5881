"""``trimbert predict``: run a kept fine-tuned model (``OUT/model`` of ``trimbert finetune``) on a file of texts."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a kept model folder (OUT/model of trimbert finetune)")
    parser.add_argument("--input", required=True, help="a .csv, .tsv, .jsonl or .parquet file of texts")
    parser.add_argument("--out", required=True,
                        help="predictions file, .csv, .tsv or .jsonl: one row per input row, in input order "
                             "(label and a probability per class, or score)")
    parser.add_argument("--text-column", dest="text_columns", action="append", default=None, metavar="NAME",
                        help="input column holding the text, once per text the model reads "
                             "(default: the model's own text columns, listed in its README.md)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per model call (default 32)")


def run(args: argparse.Namespace) -> int:
    from configs.errors import TrimbertError
    from pipeline.finetune import kept_model, predict

    if args.batch_size < 1:
        raise TrimbertError("--batch-size must be >= 1")
    predict.output_format(args.out)  # a wrong suffix fails before the model loads
    model = kept_model.load(args.model)
    columns = predict.text_columns(model, args.text_columns)
    summary = predict.write_predictions(
        args.out, predict.output_columns(model.label_names, model.regression),
        predict.predict_file(model, args.input, columns, args.batch_size))
    print(f"predict: {summary.rows:,} rows in {summary.seconds:.1f} s "
          f"({summary.rows / max(summary.seconds, 1e-9):,.1f} rows/s); {summary.truncated:,} truncated to the "
          f"model's {model.seq_len} tokens; wrote {summary.out}")
    return 0
