"""``make demo``: the main job on the embedded data, every existing stage end to end.

Each step is a real ``trimbert`` command run as a subprocess, printed before it
runs, so what the demo does is exactly what a user can type.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import subprocess
import sys
import time

DEMO_TASK = "sentiment-movies"


def demo_steps(out: pathlib.Path, cache: pathlib.Path) -> list[tuple[str, list[str]]]:
    """(title, trimbert arguments) for each stage, in pipeline order."""
    vocab = cache / "vocab" / "bert-base-uncased.txt"
    minilm = cache / "minilm-l6"
    return [
        ("fetch the embedded data assets", ["data", "fetch"]),
        ("list them", ["data", "list"]),
        ("show the tiny encoder's config", ["config", "show", "tiny"]),
        ("preprocess the embedded corpus with Beam (packed, length 128)",
         ["preprocess", "--input", str(cache / "corpus" / "*.txt"), "--output", str(out / "data"),
          "--vocab", str(vocab), "--format", "packed", "--seq-len", "128", "--shards", "4"]),
        ("pre-train the tiny encoder (dynamic masking, resumable)",
         ["pretrain", "--config", "tiny", "--data", str(out / "data"), "--model-dir", str(out / "pretrain" / "tiny")]),
        (f"fine-tune it on {DEMO_TASK}",
         ["finetune", "--init", str(out / "pretrain" / "tiny"), "--task", DEMO_TASK,
          "--out", str(out / "finetune" / "tiny")]),
        ("prune MiniLM-L6: drop its top 2 layers (Poor Man's BERT)",
         ["prune", "--from", str(minilm), "--strategy", "top", "--drop", "2",
          "--out", str(out / "pruned" / "minilm-top2")]),
        (f"fine-tune the pruned MiniLM on {DEMO_TASK} (length 64, 2 epochs, learning rate 2e-4)",
         ["finetune", "--init", str(out / "pruned" / "minilm-top2"), "--task", DEMO_TASK, "--config", "tiny",
          "--set", "finetune.learning_rate=2e-4", "--out", str(out / "finetune" / "minilm-top2")]),
        ("report: accuracy against parameters and accelerator-hours",
         ["report", str(out / "finetune"), "--out", str(out / "report"), "--title", "trimbert demo"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo_output"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # TensorFlow's start-up chatter (oneDNN, no CUDA driver) would bury the stages' own progress.
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    from pipeline.assets import cache as assets

    steps = demo_steps(args.out.resolve(), assets.cache_dir())
    for number, (title, arguments) in enumerate(steps, start=1):
        command = [sys.executable, "-m", "pipeline.cli", *arguments]
        print(f"\n=== [{number}/{len(steps)}] {title}\n$ trimbert {shlex.join(arguments)}", flush=True)
        step_started = time.monotonic()
        completed = subprocess.run(command, env=environment)
        if completed.returncode != 0:
            print(f"demo: step {number} ({title}) failed with exit code {completed.returncode}",
                  file=sys.stderr)
            return completed.returncode
        print(f"--- done in {time.monotonic() - step_started:.1f} s", flush=True)
    out = args.out.resolve()
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s. Where everything is:\n"
          f"  pre-training data    {out / 'data'} (manifest.json)\n"
          f"  pre-trained tiny     {out / 'pretrain' / 'tiny'} (summary.json, metrics.jsonl, encoder/)\n"
          f"  pruned MiniLM-L6     {out / 'pruned' / 'minilm-top2'}\n"
          f"  fine-tune results    {out / 'finetune'}/*/result.json\n"
          f"  report               {out / 'report'} (report.md, report.csv, *.png)")
    print((out / "report" / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
