"""One large file vs the same text in 16 files (BENCHMARKS.md): does a big file spread over workers?

Builds the benchmark corpus from the embedded corpus asset (Brown + State of the Union, ``trimbert
data fetch corpus``): one sentence per line, a blank line between documents, 16.9 MB. Writes it as
one file and as 16 files cut at document boundaries (same bytes, document for document), runs
``trimbert preprocess`` on each (FnApiRunner, multi_processing, one worker per core) for every
format asked, and reports wall time, CPU seconds of the whole process tree, peak tree memory, the
fill (real tokens / token slots), the documents' WordPiece tokens per CPU-second and whether the
shards are byte-identical. A format may name its packing: ``packed:stream`` (the default packing) and
``packed:document`` (one document per sequence) compare the two on the same text in one run.

    .venv/bin/python benchmarks/preprocess_split.py --vocab ~/.cache/trimbert/vocab/bert-base-uncased.txt \
        --formats packed:stream,packed:document,bert --work-dir /tmp/preprocess_split
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import sys

from process_tree import run_and_sample  # beside this script

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BERT_ARGUMENTS = ["--seq-len", "128", "--max-predictions", "20", "--dupe-factor", "5"]


def corpus_documents() -> list[str]:
    """The embedded corpus as documents of one sentence per line (the job's own sentence split)."""
    from beam_jobs.normalize import split_sentences
    from pipeline.assets import cache as assets

    folder = pathlib.Path(assets.ensure("corpus"))
    documents = []
    for name in ("brown.txt", "sotu.txt"):
        for block in (folder / name).read_text(encoding="utf-8").split("\n\n"):
            sentences = [sentence for line in block.splitlines() if line.strip()
                         for sentence in split_sentences(line.strip())]
            if sentences:
                documents.append("\n".join(sentences) + "\n")
    return documents


def sentiment_documents() -> list[str]:
    """A corpus of short documents: every training text of the embedded sentiment tasks, one per document."""
    from pipeline.assets import cache as assets

    folder = pathlib.Path(assets.ensure("sentiment"))
    return [line.split("\t")[0] + "\n" for path in sorted(folder.glob("*/train.tsv"))
            for line in path.read_text(encoding="utf-8").splitlines()[1:]]


def write_corpus(directory: pathlib.Path, documents: list[str], files: int, copies: int = 1) -> str:
    """``copies`` x the documents in ``files`` files cut at document boundaries; returns the glob."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    documents = documents * copies
    per_file = -(-len(documents) // files)
    for number in range(files):
        (directory / f"part-{number:02d}.txt").write_text(
            "\n".join(documents[number * per_file:(number + 1) * per_file]), encoding="utf-8")
    return str(directory / "*.txt")


def measure(command: list[str]) -> dict:
    """Runs ``command``; wall time, CPU seconds of it and every descendant (rusage of reaped
    children), and the peak resident memory of the whole process tree (sampled every 0.2 s)."""
    run = run_and_sample(command, cwd=ROOT)
    if run.returncode:
        raise RuntimeError(f"{command[:4]} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return {"wall_seconds": round(run.wall_seconds, 1), "cpu_seconds": round(run.cpu_seconds, 1),
            "peak_tree_rss_mib": round(run.peak_tree_rss / 2**20), "stdout": run.stdout, "stderr": run.stderr}


def preprocess_command(pattern: str, output: pathlib.Path, vocab: str, record_format: str) -> list[str]:
    """``record_format`` is ``bert``, ``packed`` or ``packed:PACKING``."""
    record_format, _, packing = record_format.partition(":")
    extra = BERT_ARGUMENTS if record_format == "bert" else ["--packing", packing] if packing else []
    return [sys.executable, "-m", "pipeline.cli", "preprocess", "--input", pattern, "--output", str(output),
            "--vocab", vocab, "--format", record_format, *extra]


def shard_digests(folder: pathlib.Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("data-*"))}


def main(argv: list[str] | None = None) -> int:
    from beam_jobs.manifest import Manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--formats", default="packed,bert")
    parser.add_argument("--corpus", choices=["embedded", "sentiment"], default="embedded",
                        help="the embedded corpus (Brown + State of the Union), or the sentiment texts as a "
                             "corpus of short documents")
    parser.add_argument("--work-dir", default="/tmp/preprocess_split")
    args = parser.parse_args(argv)
    work = pathlib.Path(args.work_dir)
    documents = corpus_documents() if args.corpus == "embedded" else sentiment_documents()
    layouts = {"1 file": write_corpus(work / "one", documents, 1),
               "16 files": write_corpus(work / "sixteen", documents, 16)}
    rows = []
    for record_format in args.formats.split(","):
        digests = {}
        for layout, pattern in layouts.items():
            output = work / f"out-{record_format.replace(':', '-')}-{layout.replace(' ', '')}"
            result = measure(preprocess_command(pattern, output, args.vocab, record_format))
            manifest = Manifest.read(output)
            digests[layout] = shard_digests(output)
            rows.append({"format": record_format, "input": layout, "examples": manifest.examples,
                         "fill": round(manifest.fill, 4),
                         "tokens_per_cpu_second": round(manifest.stats["tokens"] / result["cpu_seconds"]),
                         **{key: value for key, value in result.items() if key not in ("stdout", "stderr")}})
            print(json.dumps(rows[-1]), flush=True)
        print(json.dumps({"format": record_format, "shards_identical": digests["1 file"] == digests["16 files"]}))
    print(f"cores: {os.cpu_count()} (shared with other work)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
