"""Preprocessing throughput (BENCHMARKS.md): tokens/s per core and peak memory.

Measures, in one run, on the same text and the same vocab.txt:

1. tokenization alone, one thread each: tensorflow-text FastWordpieceTokenizer as the Beam job
   calls it (batched, on normalised sentences; and with our normalisation timed in), Hugging Face
   ``tokenizers`` WordPiece (BertWordPieceTokenizer, its own normalisation), keras-hub BertTokenizer;
   plus how often each agrees with ours token for token;
2. the whole ``trimbert preprocess`` job (direct runner, multi-processing, one worker per core) at
   1x and 8x the corpus: wall time, tokens/s per core, tokens per CPU-second, and the peak resident
   memory of the whole process tree (driver + workers), sampled every 0.2 s;
3. with ``--input-formats text,jsonl,jsonl.zst,jsonl.bz2,parquet``: the same job on the same
   documents given in each input format (converted once, before any clock runs), side by side, in
   instances per CPU-second of the whole tree, with each format's ratio against plain text.

    .venv/bin/python benchmarks/preprocess_throughput.py --vocab VOCAB.txt \
        --corpus '/path/to/*.txt' --scales 1,8 --work-dir /tmp/preprocess_bench
    .venv/bin/python benchmarks/preprocess_throughput.py --vocab VOCAB.txt --corpus '/path/to/*.txt' \
        --scales 1 --skip-tokenizers --input-formats text,jsonl,jsonl.zst,jsonl.bz2,parquet
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib
import shutil
import sys
import time

from process_tree import run_and_sample  # beside this script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["RAYON_NUM_THREADS"] = "1"  # Hugging Face tokenizers: one thread, for a per-core figure
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 4096


def read_sentences(pattern: str) -> list[str]:
    """Raw (un-normalised) sentences of the corpus, split as the job splits them."""
    from beam_jobs.normalize import split_sentences

    sentences = []
    for path in sorted(glob.glob(pattern)):
        for line in pathlib.Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                sentences.extend(split_sentences(line.strip()))
    return sentences


def timed(function):
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - start_wall, time.process_time() - start_cpu


def tokenizer_benchmarks(sentences: list[str], vocab: str) -> dict:
    import tensorflow as tf

    from beam_jobs.tokenize import limit_tensorflow_threads, read_vocabulary
    from beam_jobs.wordpiece import build_tokenizer, normalize_line

    limit_tensorflow_threads()
    tokens = read_vocabulary(vocab)
    fast = build_tokenizer(tokens)
    batches = [sentences[i:i + BATCH] for i in range(0, len(sentences), BATCH)]
    results = {}

    def run_fast(text_batches: list[list[str]], normalize: bool):
        ids = []
        for batch in text_batches:
            text = [normalize_line(s, True) for s in batch] if normalize else batch
            ragged = fast.tokenize(text)
            values, splits = ragged.flat_values.numpy().tolist(), ragged.row_splits.numpy().tolist()
            ids.extend(values[splits[i]:splits[i + 1]] for i in range(len(text)))
        return ids

    normalized = [normalize_line(s, True) for s in sentences]
    normalized_batches = [normalized[i:i + BATCH] for i in range(0, len(normalized), BATCH)]
    fast.tokenize(normalized[:8])  # build the op once outside the clock
    ours, wall, cpu = timed(lambda: run_fast(normalized_batches, False))
    results["tf_text_fast_wordpiece"] = {
        "tokens": sum(len(ids) for ids in ours), "seconds": wall, "cpu_seconds": cpu}
    ours_normalized, wall, cpu = timed(lambda: run_fast(batches, True))
    results["tf_text_fast_wordpiece_with_normalization"] = {
        "tokens": sum(len(ids) for ids in ours_normalized), "seconds": wall, "cpu_seconds": cpu}

    from tokenizers import BertWordPieceTokenizer

    hugging_face = BertWordPieceTokenizer(vocab, lowercase=True, clean_text=True, handle_chinese_chars=True)

    def run_hugging_face():
        ids = []
        for batch in batches:
            ids.extend(encoding.ids[1:-1] for encoding in hugging_face.encode_batch(batch))
        return ids

    hf_ids, wall, cpu = timed(run_hugging_face)
    results["hf_tokenizers_bert_wordpiece"] = {
        "tokens": sum(len(ids) for ids in hf_ids), "seconds": wall, "cpu_seconds": cpu,
        "sentences_identical_to_ours": sum(a == b for a, b in zip(hf_ids, ours, strict=True)) / len(ours)}

    import keras_hub

    keras_tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=vocab, lowercase=True)
    keras_tokenizer(tf.constant(batches[0][:8]))

    def run_keras():
        ids = []
        for batch in batches:
            output = keras_tokenizer(tf.constant(batch))
            if isinstance(output, list):  # non-TensorFlow Keras backends get Python lists back
                ids.extend(list(row) for row in output)
                continue
            values, splits = output.flat_values.numpy().tolist(), output.row_splits.numpy().tolist()
            ids.extend(values[splits[i]:splits[i + 1]] for i in range(len(batch)))
        return ids

    keras_ids, wall, cpu = timed(run_keras)
    results["keras_hub_bert_tokenizer"] = {
        "tokens": sum(len(ids) for ids in keras_ids), "seconds": wall, "cpu_seconds": cpu,
        "sentences_identical_to_ours": sum(a == b for a, b in zip(keras_ids, ours, strict=True)) / len(ours)}
    for entry in results.values():
        entry["tokens_per_second_per_core"] = entry["tokens"] / entry["seconds"]
    return results


def replicate_corpus(pattern: str, scale: int, directory: pathlib.Path) -> str:
    """``scale`` copies of every file (symbolic links under new names), so the job sees scale x text."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for copy in range(scale):
        for path in sorted(glob.glob(pattern)):
            (directory / f"copy{copy}-{pathlib.Path(path).name}").symlink_to(os.path.abspath(path))
    return str(directory / "*")


INPUT_FORMATS = ("text", "jsonl", "jsonl.gz", "jsonl.zst", "jsonl.bz2", "parquet")


def convert_corpus(pattern: str, input_format: str, directory: pathlib.Path) -> str:
    """The corpus in ``input_format``, one file per corpus file, holding the documents the job reads
    from the text (so every format gives the same examples); returns their glob."""
    import bz2
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    from beam_jobs.read import DocumentReader, expand_inputs
    from beam_jobs.records import Stats

    if input_format == "text":
        return pattern
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    reader = DocumentReader("text", log_empty_files=False)
    for path in sorted(glob.glob(pattern)):
        texts = ["\n".join(document.lines) for unit in expand_inputs(path, split_bytes=1 << 40)
                 for document in reader.documents(unit, Stats())]
        target = directory / f"{pathlib.Path(path).stem}.{input_format}"
        if input_format == "parquet":
            pq.write_table(pa.table({"text": texts}), target)
            continue
        records = "".join(json.dumps({"text": text}) + "\n" for text in texts).encode("utf-8")
        compress = {"jsonl": bytes, "jsonl.gz": lambda data: gzip.compress(data, mtime=0),
                    "jsonl.zst": zstandard.ZstdCompressor().compress, "jsonl.bz2": bz2.compress}[input_format]
        target.write_bytes(compress(records))
    return str(directory / "*")


def print_format_table(jobs: list[dict]) -> None:
    """One line per input format of each (record format, scale): instances per CPU-second and the
    ratio against plain text."""
    print(f"{'format':<8} {'scale':>5} {'input':<10} {'examples':>9} {'wall s':>7} {'CPU s':>7} "
          f"{'inst/CPU-s':>11} {'vs text':>8}")
    for job in jobs:
        text = next(other for other in jobs if (other["format"], other["scale"], other["input_format"]) == (
            job["format"], job["scale"], "text"))
        print(f"{job['format']:<8} {job['scale']:>5} {job['input_format']:<10} {job['examples']:>9} "
              f"{job['seconds']:>7.1f} {job['cpu_seconds']:>7.1f} {job['instances_per_cpu_second']:>11.1f} "
              f"{job['instances_per_cpu_second'] / text['instances_per_cpu_second']:>7.2f}x")


def run_job(arguments: list[str]) -> dict:
    """Runs ``trimbert preprocess`` in a subprocess; samples the tree's memory and CPU time."""
    from beam_jobs.manifest import Manifest

    run = run_and_sample([sys.executable, "-m", "pipeline.cli", "preprocess", *arguments], cwd=ROOT)
    if run.returncode:
        raise RuntimeError(f"preprocess failed ({run.returncode}):\n{run.stderr[-3000:]}")
    output = arguments[arguments.index("--output") + 1]
    manifest = Manifest.read(output)
    return {"seconds": run.wall_seconds, "cpu_seconds": sum(run.sampled_cpu_by_pid.values()),
            "processes": len(run.sampled_cpu_by_pid),
            "tokens": manifest.stats["tokens"], "examples": manifest.examples,
            "bytes_read": manifest.stats["bytes_read"], "documents": manifest.stats["documents"],
            "peak_tree_rss_mib": run.peak_tree_rss / 2**20, "peak_process_rss_mib": run.peak_process_rss / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="glob of plain-text files")
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--scales", default="1,8")
    parser.add_argument("--formats", default="packed", help="comma-separated: packed,bert")
    parser.add_argument("--dupe-factor", type=int, default=10)
    parser.add_argument("--work-dir", default="/tmp/preprocess_bench")
    parser.add_argument("--skip-tokenizers", action="store_true")
    parser.add_argument("--input-formats", default="text",
                        help=f"comma-separated, measured side by side: {','.join(INPUT_FORMATS)}")
    args = parser.parse_args(argv)
    input_formats = args.input_formats.split(",")
    if "text" not in input_formats or set(input_formats) - set(INPUT_FORMATS):
        parser.error(f"--input-formats: a comma-separated choice of {', '.join(INPUT_FORMATS)}, text included")
    work = pathlib.Path(args.work_dir)
    report: dict = {"cores": os.cpu_count(), "corpus": args.corpus, "vocab": args.vocab}
    if not args.skip_tokenizers:
        sentences = read_sentences(args.corpus)
        report["sentences"] = len(sentences)
        report["tokenizers"] = tokenizer_benchmarks(sentences, args.vocab)
        print(json.dumps(report["tokenizers"], indent=2), flush=True)
    report["jobs"] = []
    corpora = {input_format: convert_corpus(args.corpus, input_format, work / f"corpus-{input_format}")
               for input_format in input_formats}
    for record_format in args.formats.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            for input_format in input_formats:
                pattern = replicate_corpus(corpora[input_format], scale, work / f"corpus-{input_format}-{scale}x")
                output = work / f"out-{record_format}-{scale}x"
                job = run_job(["--input", pattern, "--output", str(output), "--vocab", args.vocab,
                               "--format", record_format, "--dupe-factor", str(args.dupe_factor),
                               "--shards", "8"])
                job.update(format=record_format, scale=scale, input_format=input_format, workers=os.cpu_count(),
                           tokens_per_second_per_core=job["tokens"] / job["seconds"] / os.cpu_count(),
                           tokens_per_cpu_second=job["tokens"] / job["cpu_seconds"],
                           instances_per_cpu_second=job["examples"] / job["cpu_seconds"])
                report["jobs"].append(job)
                print(json.dumps(job, indent=2), flush=True)
                shutil.rmtree(output, ignore_errors=True)
    if len(input_formats) > 1:
        print_format_table(report["jobs"])
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(f"report: {work / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
