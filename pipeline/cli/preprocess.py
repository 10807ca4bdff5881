"""``trimbert preprocess``: the thin command-line entry of the Beam preprocessing job.

Flags map onto :class:`configs.schema.DataConfig` (the one config system) and
:class:`beam_jobs.pipeline.PreprocessJob`; any flag not listed here is a Beam pipeline option and
is forwarded (``--runner DataflowRunner --project P --region R --temp_location gs://... ``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

from configs.schema import DataConfig

_DEFAULTS = DataConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True,
                        help="comma-separated globs or tfds:NAME/CONFIG[:split]: plain text (documents split by "
                             "blank lines), JSON Lines (.jsonl/.json), Parquet (.parquet; one row per document); "
                             "text and JSON Lines may be gzip, zstd or bzip2 compressed (.gz/.zst/.bz2, "
                             "recognised by their first bytes)")
    parser.add_argument("--output", required=True, help="output directory (local or gs://...)")
    vocab = parser.add_mutually_exclusive_group(required=True)
    vocab.add_argument("--vocab", help="WordPiece vocab.txt with [PAD] [UNK] [CLS] [SEP] [MASK]")
    vocab.add_argument("--learn-vocab", type=int, metavar="SIZE",
                       help="learn a WordPiece vocabulary of SIZE tokens; written as OUTPUT/vocab.txt")
    parser.add_argument("--format", choices=["bert", "packed"], default=_DEFAULTS.format)
    parser.add_argument("--packing", choices=["stream", "document"], default=_DEFAULTS.packing,
                        help="packed format: fill every sequence from a stream of documents separated by [SEP] "
                             "(stream), or cut each document on its own, padding its last sequence (document)")
    parser.add_argument("--seq-len", type=int, default=_DEFAULTS.seq_len)
    parser.add_argument("--max-predictions", type=int, default=_DEFAULTS.max_predictions)
    parser.add_argument("--masked-lm-prob", type=float, default=_DEFAULTS.masked_lm_prob)
    parser.add_argument("--dupe-factor", type=int, default=_DEFAULTS.dupe_factor)
    parser.add_argument("--short-seq-prob", type=float, default=_DEFAULTS.short_seq_prob)
    parser.add_argument("--whole-word-mask", action="store_true",
                        help="choose whole words for prediction (Google's do_whole_word_mask; one 80/10/10 "
                             "decision per word). --format bert: applied to the written masks. --format packed: "
                             "recorded in the manifest only; pre-training masks whole words when its config "
                             "sets data.whole_word_mask: true")
    case = parser.add_mutually_exclusive_group()
    case.add_argument("--cased", dest="lower_case", action="store_false", default=None,
                      help="keep case and accents (cased vocabulary)")
    case.add_argument("--uncased", dest="lower_case", action="store_true",
                      help="lower-case and strip accents (uncased vocabulary)")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--gzip", action="store_true", help="gzip the shards")
    parser.add_argument("--text-field", default="text",
                        help="JSON Lines / TFDS key, or Parquet string column, holding the text")
    parser.add_argument("--allow-empty", action="store_true",
                        help="write the manifest even when no example is produced (default: exit 2, write nothing)")
    parser.add_argument("--split-bytes", type=int, metavar="BYTES",
                        help="read uncompressed files larger than BYTES in byte ranges of about BYTES (Parquet "
                             "files in row-group ranges), on several workers (default: 1/64 of the input, "
                             "within 1-64 MiB)")
    parser.add_argument("--heldout-fraction", type=float, default=0.0, metavar="F",
                        help="hold this share of the documents (chosen by a seeded hash of their content) out of "
                             "training and write their records to heldout-*.tfrecord shards, which pretrain "
                             "evaluates on (default 0: none)")
    parser.add_argument("--progress-seconds", type=float, default=30.0,
                        help="seconds between progress lines (documents, tokens, instances, rate)")
    parser.add_argument("--verbose", action="store_true",
                        help="also show Beam's and TensorFlow's own log lines (hidden by default)")
    parser.set_defaults(accepts_extra_args=True)


def run(args: argparse.Namespace) -> int:
    from beam_jobs import pipeline

    _show_progress(args.verbose)
    data = dataclasses.replace(
        _DEFAULTS, format=args.format, packing=args.packing, seq_len=args.seq_len, max_predictions=args.max_predictions,
        masked_lm_prob=args.masked_lm_prob, dupe_factor=args.dupe_factor,
        short_seq_prob=args.short_seq_prob, lower_case=_lower_case(args), seed=args.seed,
        whole_word_mask=args.whole_word_mask)
    job = pipeline.PreprocessJob(
        inputs=tuple(p for p in args.input.split(",") if p), output=args.output, data=data,
        vocab=args.vocab, learn_vocab=args.learn_vocab, shards=args.shards, compress=args.gzip,
        text_field=args.text_field, allow_empty=args.allow_empty, split_bytes=args.split_bytes,
        progress_seconds=args.progress_seconds, heldout_fraction=args.heldout_fraction)
    manifest = pipeline.run(job, getattr(args, "extra_args", []))
    summary = {key: manifest[key] for key in ("format", "examples", "tokens", "fill", "schema_fingerprint")}
    summary["unknown_token_rate"] = manifest["stats"]["unknown_token_rate"]
    print(json.dumps(summary, indent=2))
    return 0


def _lower_case(args: argparse.Namespace) -> bool:
    """--cased / --uncased if given; else what the --vocab says (the text must be cased as it was)."""
    if args.lower_case is not None:
        return args.lower_case
    if args.vocab is None:
        print("learning an uncased vocabulary (pass --cased to keep case)", file=sys.stderr)
        return True
    lower_case = vocabulary_lowercases(args.vocab)
    print(f"--vocab {args.vocab} is {'uncased' if lower_case else 'cased'}: "
          f"{'lower-casing' if lower_case else 'keeping the case of'} the text "
          f"(pass --cased or --uncased to override)", file=sys.stderr)
    return lower_case


def vocabulary_lowercases(vocab: str) -> bool:
    """Whether text for this vocab.txt must be lower-cased: its folder's tokenizer config, else its tokens.

    Plain Python (``models.casing``): the driver of the job never imports TensorFlow.
    """
    from beam_jobs.tokenize import read_vocabulary
    from models.casing import local_declared_lowercase, vocabulary_is_cased

    folder = pathlib.Path(vocab).parent
    declared = local_declared_lowercase(folder) if "://" not in vocab and folder.is_dir() else None
    if declared is not None:
        return declared
    return not vocabulary_is_cased(read_vocabulary(vocab))


def _show_progress(verbose: bool) -> None:
    """Shows this job's own lines (progress, counts, warnings); Beam's INFO chatter and TensorFlow's
    C++ start-up lines (CUDA probing in every worker process) only with ``--verbose``."""
    import logging
    import os

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger().setLevel(logging.INFO)
    if verbose:
        return
    # Inherited by the worker processes the runner starts, before they import TensorFlow.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    only_ours = _OnlyPreprocess()
    for handler in logging.getLogger().handlers:
        handler.addFilter(only_ours)


class _OnlyPreprocess:
    """Passes the job's own lines and real problems; drops Beam's notices. Beam relays every SDK
    worker's log through its own logger, warnings included ("No semi_persistent_directory found"
    at each worker start), so a Beam record passes only from ERROR up."""

    def filter(self, record) -> bool:
        import logging

        if "preprocess:" in record.getMessage():
            return True
        threshold = logging.ERROR if record.name.startswith("apache_beam") else logging.WARNING
        return record.levelno >= threshold
