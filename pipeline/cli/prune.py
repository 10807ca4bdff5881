"""``trimbert prune``: Poor Man's BERT layer dropping on a saved pre-trained encoder."""

from __future__ import annotations

import argparse

from configs.errors import TrimbertError
from models.drop_rules import STRATEGIES, describe_positional


def _indices(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"--indices expects comma-separated integers, got {text!r}") from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True,
                        help="pre-trained model folder (Hugging Face BERT format or keras-hub preset)")
    parser.add_argument("--strategy", required=True, choices=STRATEGIES, help=(
        "which layers to drop, named and numbered as in Poor Man's BERT (layer 1 = bottom); "
        f"for D=12, K=4: {describe_positional(12, 4)}; contribution drops the K blocks most similar "
        "to their input, or with --threshold every block at least that similar; indices takes 0-based "
        "--indices"))
    parser.add_argument("--drop", type=int, default=None, help="number of blocks to drop (K)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="for --strategy contribution instead of --drop: drop every block whose mean "
                             "input/output cosine is at least this (the paper's form)")
    parser.add_argument("--indices", type=_indices, default=None,
                        help="0-based blocks to drop for --strategy indices, e.g. 9,10,11")
    parser.add_argument("--sample", default=None,
                        help="text file (one sequence per line; TSV: last field) for --strategy contribution")
    parser.add_argument("--sample-lines", type=int, default=256, help="lines of --sample to use")
    parser.add_argument("--sequence-length", type=int, default=128, help="tokens per sample sequence")
    parser.add_argument("--out", required=True, help="output folder (Hugging Face format)")


def run(args: argparse.Namespace) -> int:
    from models import pretrained
    from models.prune import prune
    from models.sample_text import encode_texts, read_sample

    if args.strategy == "contribution" and not args.sample:
        raise TrimbertError("--strategy contribution needs --sample FILE")
    encoder = pretrained.from_pretrained(args.source)
    vocabulary = pretrained.vocabulary_file(args.source)
    lowercase = pretrained.lowercases(args.source)
    sample_inputs = None
    if args.strategy == "contribution":
        if vocabulary is None:
            raise TrimbertError(f"{args.source}: no vocab.txt to tokenise the sample with")
        sample_inputs = encode_texts(read_sample(args.sample, args.sample_lines), vocabulary, lowercase,
                                     min(args.sequence_length, encoder.model_config.max_sequence_length))
    result = prune(encoder, args.strategy, args.drop, args.indices, sample_inputs, args.threshold)
    if result.similarities is not None:
        print("mean cosine(input, output) per block: " + ", ".join(
            f"{index}: {value:.4f}" for index, value in enumerate(result.similarities)))
    print(f"strategy {args.strategy}: dropped blocks {list(result.dropped)} (the paper's layers "
          f"{[index + 1 for index in result.dropped]}), kept blocks {list(result.kept)}")
    reduction = 1 - result.parameters_after / result.parameters_before
    print(f"parameters: {result.parameters_before:,} before, {result.parameters_after:,} after "
          f"({reduction:.1%} fewer)")
    pretrained.save_pretrained(result.encoder, args.out, vocabulary, lowercase)
    print(f"wrote {args.out}")
    return 0
