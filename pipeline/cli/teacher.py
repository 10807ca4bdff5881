"""``trimbert teacher``: fit a masked-LM head on a frozen pre-trained encoder so it can teach."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True,
                        help="a Hugging Face BERT folder, keras-hub preset or trimbert model directory")
    parser.add_argument("--data", required=True,
                        help="a `trimbert preprocess` folder tokenized with the checkpoint's vocab.txt")
    parser.add_argument("--out", required=True, help="the teacher model directory to write (use it as --teacher)")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps for the head")
    parser.add_argument("--heldout", default=None,
                        help="a preprocessed folder of held-out text (default: the last shard of --data)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--heldout-examples", type=int, default=2048, help="held-out sequences scored at most")


def run(args: argparse.Namespace) -> int:
    from pipeline.pretrain import teacher_head

    options = teacher_head.TeacherOptions(
        source=args.source, data_dir=args.data, out_dir=args.out, steps=args.steps, heldout_dir=args.heldout,
        batch_size=args.batch_size, learning_rate=args.learning_rate, heldout_examples=args.heldout_examples)
    teacher_head.fit(options, log=lambda line: print(line, flush=True))
    return 0
