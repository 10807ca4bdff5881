"""``make demo``: the main job on the embedded data, every stage end to end, sized for a 2-core CPU.

Each step is a real ``trimbert`` command run as a subprocess, printed before it runs, so what the
demo does is exactly what a user can type. To finish in minutes it shrinks what must shrink, and
says so: sequences of length 64, a short pre-training, and fine-tuning on a fixed subset of the
task's training examples. At the start it measures this machine's matmul speed and estimates its
own duration from a run on a machine of known speed. It ends as a user's work ends: the fine-tuned
pruned MiniLM (the model ``finetune`` kept) exported as a SavedModel for TF Serving, and that
SavedModel run on a few sentences by a script that imports only TensorFlow and tensorflow-text.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

from beam_jobs.quiet_tensorflow import quiet_tensorflow_start_up

DEMO_TASK = "sentiment-movies"
SEQ_LEN = 64
TRAIN_EXAMPLES = 2000  # of sentiment-movies' 8,454
PRETRAIN_STEPS = 100
# The pre-training and fine-tuning recipe of the demo's study (on top of configs/tiny.yaml).
STUDY_RECIPE = (f"data.seq_len={SEQ_LEN}", f"pretrain.phases=[{{steps: {PRETRAIN_STEPS}, seq_len: {SEQ_LEN}, "
                f"batch_size: 32}}]", "pretrain.log_every=50", "finetune.epochs=4", "finetune.pooling=mean")
# Measured (2026-11-22): the whole demo from a clean clone with the assets cached, and the 2048^3 float32
# matmul speed its start measured on that machine (2 cores shared with other jobs, so both were low).
REFERENCE_SECONDS = 1096.2
REFERENCE_GFLOPS = 41.0
SERVING_SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "serve_saved_model.py"
DEMO_SENTENCES = ("a gripping , beautifully acted film", "dull , predictable and far too long",
                  "not the best of the year , but worth seeing")


def demo_steps(out: pathlib.Path, cache: pathlib.Path) -> list[tuple[str, list[str]]]:
    """(title, command) for each stage, in pipeline order: ``trimbert`` arguments, or a ``python`` command."""
    vocab = cache / "vocab" / "bert-base-uncased.txt"
    minilm = cache / "minilm-l6"
    subset = ["--max-train-examples", str(TRAIN_EXAMPLES)]
    return [
        ("fetch the embedded data assets", ["data", "fetch"]),
        ("list them", ["data", "list"]),
        ("show the tiny encoder's config", ["config", "show", "tiny"]),
        (f"preprocess the embedded corpus with Beam (packed, length {SEQ_LEN} to keep the demo short; 2% of the "
         f"documents held out, for the held-out masked-LM accuracy of each pre-trained row)",
         ["preprocess", "--input", str(cache / "corpus" / "*.txt"), "--output", str(out / "data"),
          "--vocab", str(vocab), "--format", "packed", "--seq-len", str(SEQ_LEN), "--shards", "4",
          "--heldout-fraction", "0.02"]),
        (f"study trims from scratch: the tiny encoder pre-trained for {PRETRAIN_STEPS} steps, the same with all "
         f"three TrimBERT trims, both started from MiniLM-L6's weights by weight selection, and the tiny "
         f"encoder from random weights, each fine-tuned on {DEMO_TASK} ({TRAIN_EXAMPLES} training examples)",
         ["study", "trims", "--config", "tiny", "--data", str(out / "data"), "--tasks", DEMO_TASK,
          "--trims", "untrimmed,trimbert,random-init", "--init", str(minilm), *subset,
          *(argument for setting in STUDY_RECIPE for argument in ("--set", setting)), "--out", str(out / "study")]),
        ("prune MiniLM-L6: drop its top 2 layers (Poor Man's BERT)",
         ["prune", "--from", str(minilm), "--strategy", "top", "--drop", "2",
          "--out", str(out / "pruned" / "minilm-top2")]),
        (f"fine-tune the pruned MiniLM on {DEMO_TASK} (length 64, 2 epochs, learning rate 2e-4, "
         f"{TRAIN_EXAMPLES} training examples)",
         ["finetune", "--init", str(out / "pruned" / "minilm-top2"), "--task", DEMO_TASK, "--config", "tiny",
          "--set", "finetune.learning_rate=2e-4", *subset, "--out", str(out / "finetune" / "minilm-top2")]),
        ("report: accuracy against parameters and accelerator-hours",
         ["report", str(out / "study" / "runs"), str(out / "finetune"), "--out", str(out / "report"),
          "--title", "trimbert demo"]),
        ("export the fine-tuned pruned MiniLM (finetune kept its best seed) as a SavedModel in TF Serving's "
         "layout; its signature takes raw text",
         ["export", "--model", str(out / "finetune" / "minilm-top2" / "model"), "--format", "saved_model",
          "--out", str(out / "serving" / "minilm-top2")]),
        ("serve it: load the SavedModel in a process that imports only TensorFlow and tensorflow-text",
         ["python", str(SERVING_SCRIPT), str(out / "serving" / "minilm-top2" / "1"), *DEMO_SENTENCES]),
    ]


def machine_speed_line() -> str:
    """This machine's measured matmul speed, and the demo's duration estimated from it."""
    from pipeline.clock import measure_matmul_peak

    gflops = measure_matmul_peak() / 1e9
    line = f"this machine: {gflops:.0f} GFLOP/s (best 2048^3 float32 matmul)"
    if REFERENCE_SECONDS and REFERENCE_GFLOPS:
        estimate = REFERENCE_SECONDS * REFERENCE_GFLOPS / gflops
        line += (f"; estimated demo time {estimate / 60:.0f} min (it took {REFERENCE_SECONDS / 60:.1f} min on a "
                 f"machine measuring {REFERENCE_GFLOPS:.0f} GFLOP/s; other load on the cores makes it longer)")
    return line


def study_verdict(study_dir: pathlib.Path) -> list[str]:
    """What the study's numbers mean, in plain words."""
    table = json.loads((study_dir / "trims.json").read_text())
    rows = {row["name"]: row for row in table["rows"]}
    score = {name: row["scores"][DEMO_TASK][0] for name, row in rows.items()}
    pretrained, random_init, trimmed = score["untrimmed"], score["random-init"], score["trimbert"]
    verdict = "helped" if pretrained > random_init else "did not help"
    return [
        f"pre-trained tiny {100 * pretrained:.1f} vs random-init tiny {100 * random_init:.1f} dev accuracy "
        f"(same fine-tuning recipe and seed): pre-training {verdict} here.",
        f"TrimBERT's three trims: {rows['trimbert']['parameters']:,} parameters instead of "
        f"{rows['untrimmed']['parameters']:,}, {100 * trimmed:.1f} dev accuracy ({100 * (trimmed - pretrained):+.1f}).",
        "One seed on a training subset: differences of a point or two are within seed noise; "
        "`trimbert study trims --seeds 1,2,3` gives the spread.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo_output"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # TensorFlow's start-up chatter (oneDNN, no CUDA driver) would bury the stages' own progress; the
    # quiet log level it sets reaches the steps too.
    quiet_tensorflow_start_up()
    print(machine_speed_line(), flush=True)
    from pipeline.assets import cache as assets

    steps = demo_steps(args.out.resolve(), assets.cache_dir())
    if (args.out / "serving").exists():
        shutil.rmtree(args.out / "serving")  # an export never overwrites a version: a rerun exports afresh
    for number, (title, arguments) in enumerate(steps, start=1):
        if arguments[0] == "python":
            command, shown = [sys.executable, *arguments[1:]], shlex.join(arguments)
        else:
            command, shown = [sys.executable, "-m", "pipeline.cli", *arguments], f"trimbert {shlex.join(arguments)}"
        print(f"\n=== [{number}/{len(steps)}] {title}\n$ {shown}", flush=True)
        step_started = time.monotonic()
        # The serving script is TensorFlow alone, without trimbert's start-up quieting: its notices are
        # shown only if it fails.
        completed = subprocess.run(command, env=dict(os.environ),
                                   stderr=subprocess.PIPE if arguments[0] == "python" else None, text=True)
        if completed.returncode != 0:
            if completed.stderr:
                print(completed.stderr, file=sys.stderr)
            print(f"demo: step {number} ({title}) failed with exit code {completed.returncode}",
                  file=sys.stderr)
            return completed.returncode
        print(f"--- done in {time.monotonic() - step_started:.1f} s", flush=True)
    out = args.out.resolve()
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s. Where everything is:\n"
          f"  pre-training data    {out / 'data'} (manifest.json)\n"
          f"  study                {out / 'study'} (trims.md, pretrain/, runs/)\n"
          f"  pruned MiniLM-L6     {out / 'pruned' / 'minilm-top2'}\n"
          f"  fine-tune results    {out / 'finetune'}/*/result.json\n"
          f"  report               {out / 'report'} (report.md, report.csv, *.png)\n"
          f"  kept model           {out / 'finetune' / 'minilm-top2' / 'model'} (README.md: its model card)\n"
          f"  SavedModel           {out / 'serving' / 'minilm-top2'} (TF Serving's model base path)")
    print((out / "report" / "report.md").read_text())
    print("What the numbers mean:\n" + "\n".join(f"- {line}" for line in study_verdict(out / "study")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
