"""``bert``-format instances per CPU-second: ``trimbert preprocess`` vs Google's create_pretraining_data.py.

The peer is Google's own script as PyPI ships it, ``bert-tensorflow==1.0.4`` (module
``bert.create_pretraining_data``, TF1 code). This script installs it into a virtualenv of its own
(``WORK/peer-venv``, only the ``bert`` package; TensorFlow is this interpreter's) and runs it with
``tensorflow.compat.v1`` aliased as ``tensorflow`` before the import. Both read the same file (the
embedded corpus, one sentence per line, a blank line between documents, 16.9 MB; 8 copies of it
for 8x), with the same vocab.txt, seq 128, 20 predictions, masked_lm_prob 0.15, dupe factor 5.

Reported per run: instances, wall seconds, CPU seconds of the process and all its descendants,
instances per CPU-second, peak resident memory of the process tree (sampled every 0.2 s).

    .venv/bin/python benchmarks/preprocess_vs_google.py --vocab ~/.cache/trimbert/vocab/bert-base-uncased.txt \
        --scales 1,8 --work-dir /tmp/preprocess_vs_google
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import struct
import subprocess
import sys
import sysconfig

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from preprocess_split import (  # noqa: E402 (the sibling script, found through sys.path)
    BERT_ARGUMENTS,
    corpus_documents,
    measure,
    preprocess_command,
    write_corpus,
)

PEER_PACKAGE = "bert-tensorflow==1.0.4"
PEER_MAIN = """
import sys
import tensorflow.compat.v1 as tf
sys.modules["tensorflow"] = tf  # the script is TF1 code: give it the v1 API under its own name
from bert import create_pretraining_data
sys.argv = ["create_pretraining_data", *sys.argv[1:]]
tf.app.run(main=create_pretraining_data.main)
"""


def install_peer(venv: pathlib.Path) -> pathlib.Path:
    """Installs Google's script into ``venv`` (once); returns its site-packages folder."""
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    if not (site / "bert" / "create_pretraining_data.py").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", PEER_PACKAGE], check=True)
    return site


def peer_command(site: pathlib.Path, input_file: str, output: pathlib.Path, vocab: str) -> list[str]:
    flags = {"input_file": input_file, "output_file": str(output), "vocab_file": vocab, "do_lower_case": "True",
             "max_seq_length": 128, "max_predictions_per_seq": 20, "masked_lm_prob": 0.15,
             "dupe_factor": 5, "random_seed": 12345}
    # The peer's own interpreter is this one (TensorFlow 2 with compat.v1); only `bert` comes from the venv.
    return ["env", f"PYTHONPATH={site}", "TF_CPP_MIN_LOG_LEVEL=2", sys.executable, "-c", PEER_MAIN,
            *(f"--{name}={value}" for name, value in flags.items())]


def count_records(paths: list[pathlib.Path]) -> int:
    """Records in uncompressed TFRecord files, from the framing alone."""
    count = 0
    for path in paths:
        with open(path, "rb") as handle:
            while header := handle.read(12):
                (length,) = struct.unpack("<Q", header[:8])
                handle.seek(length + 4, os.SEEK_CUR)
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    from beam_jobs.manifest import Manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--scales", default="1,8")
    parser.add_argument("--runs", default="ours,google", help="which of ours,google to run")
    parser.add_argument("--work-dir", default="/tmp/preprocess_vs_google")
    args = parser.parse_args(argv)
    work = pathlib.Path(args.work_dir)
    site = install_peer(work / "peer-venv") if "google" in args.runs else None
    documents = corpus_documents()
    for scale in (int(value) for value in args.scales.split(",")):
        pattern = write_corpus(work / f"corpus-{scale}x", documents, 1, copies=scale)
        input_file = pattern.replace("*.txt", "part-00.txt")
        for run in args.runs.split(","):
            output = work / f"out-{run}-{scale}x"
            if run == "ours":
                result = measure(preprocess_command(input_file, output, args.vocab, "bert"))
                instances = Manifest.read(output).examples
            else:
                output.mkdir(parents=True, exist_ok=True)
                result = measure(peer_command(site, input_file, output / "google.tfrecord", args.vocab))
                instances = count_records([output / "google.tfrecord"])
            row = {"run": run, "scale": scale, "instances": instances,
                   "instances_per_cpu_second": round(instances / result["cpu_seconds"]),
                   **{key: value for key, value in result.items() if key not in ("stdout", "stderr")}}
            print(json.dumps(row), flush=True)
    print(json.dumps({"arguments": BERT_ARGUMENTS, "cores": os.cpu_count(), "note": "machine shared with other work",
                      "python": sysconfig.get_python_version()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
