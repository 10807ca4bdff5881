"""The Beam preprocessing stage: transforms on three documents, full jobs read back, bad inputs."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import pathlib

import pytest

from beam_jobs import features, runners
from beam_jobs import pipeline as preprocess
from beam_jobs.normalize import normalize_document, split_document
from beam_jobs.records import Document, Stats, TokenizedDocument
from beam_jobs.tokenize import BatchTokenizer
from configs.errors import TrimbertError
from configs.schema import DataConfig

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox",
              "jump", "##s", ".", "a", "dog", "sleep", "##ing", "cafe", "!", "is", "open"]

SENTENCES = [
    "The first document has a few sentences in it. It talks about nothing much at all.",
    "Sentences are short here! Another one follows the first. And a third closes the paragraph.",
    "A second line of the same document keeps going for a while, so that it is long enough.",
]


def _write_corpus(directory: pathlib.Path, documents: int = 6) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    blocks = []
    for number in range(documents):
        lines = [f"Document number {number} begins here with its own words."]
        lines += [f"{sentence} Line {line} of document {number}." for line, sentence in
                  enumerate(SENTENCES * (1 + number % 3))]
        blocks.append("\n".join(lines))
    (directory / "corpus_a.txt").write_text("\n\n".join(blocks[: documents // 2]) + "\n")
    (directory / "corpus_b.txt").write_text("\n\n".join(blocks[documents // 2:]) + "\n")
    return directory


@pytest.fixture(scope="module")
def bert_vocab(vocab_path) -> str:
    return str(vocab_path)


def _job(tmp_path: pathlib.Path, vocab: str, **overrides) -> preprocess.PreprocessJob:
    data = DataConfig(format=overrides.pop("format", "bert"), packing=overrides.pop("packing", "stream"),
                      dupe_factor=overrides.pop("dupe_factor", 2),
                      seq_len=overrides.pop("seq_len", 64), max_predictions=10, seed=7)
    corpus = _write_corpus(tmp_path / "corpus")
    values = dict(inputs=(str(corpus / "*.txt"),), output=str(tmp_path / "out"), data=data, vocab=vocab,
                  shards=3)
    values.update(overrides)
    return preprocess.PreprocessJob(**values)


def _records(output: str, manifest: dict) -> list[dict]:
    import tensorflow as tf

    spec = features.parsing_spec(manifest["format"], manifest["seq_len"], manifest["max_predictions"] or 1)
    paths = [os.path.join(output, shard["name"]) for shard in manifest["shards"]]
    dataset = tf.data.TFRecordDataset(paths, compression_type=manifest["compression"])
    return [{name: value.numpy() for name, value in tf.io.parse_single_example(raw, spec).items()}
            for raw in dataset]


# ---------------------------------------------------------------------------
# Transforms on three documents
# ---------------------------------------------------------------------------


def test_three_documents_tokenize_to_exact_ids():
    documents = [
        Document(0, 0, "d0", ("The quick brown fox jumps.", "A dog is sleeping!")),
        Document(0, 1, "d1", ("THE CAFÉ\tIS OPEN.",)),
        Document(1, 0, "d2", ("The zebra jumps. The fox sleeps.",)),
    ]
    expected = [
        TokenizedDocument(0, 0, "d0", ((5, 6, 7, 8, 9, 10, 11), (12, 13, 18, 14, 15, 17))),
        TokenizedDocument(0, 1, "d1", ((5, 16, 18, 19, 11),)),
        # "zebra" is not in the vocabulary: one [UNK]; the line splits into two sentences.
        TokenizedDocument(1, 0, "d2", ((5, 1, 9, 10, 11), (5, 8, 14, 10, 11))),
    ]
    tokenizer = BatchTokenizer(TINY_VOCAB, batch_sentences=2)
    stats = Stats()
    tokenized = []
    for document in documents:
        tokenized += tokenizer.add(split_document(normalize_document(document, lower_case=True)), stats)
    tokenized += tokenizer.flush(stats)
    assert tokenized == expected
    assert {key: value for key, value in stats.items() if value} == {"tokens": 28, "unknown_tokens": 1}


# ---------------------------------------------------------------------------
# Whole jobs
# ---------------------------------------------------------------------------


def test_bert_records_read_back_with_google_feature_spec(tmp_path, bert_vocab):
    job = _job(tmp_path, bert_vocab)
    manifest = preprocess.run(job, IN_PROCESS)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    assert manifest["schema_fingerprint"] == features.schema_fingerprint("bert", 64, 10)
    assert manifest["vocab"]["size"] == 30522 and manifest["stats"]["documents"] == 6
    records = _records(job.output, manifest)
    assert len(records) == manifest["examples"] > 0
    labels = set()
    for record in records:
        length = int(record["input_mask"].sum())
        assert record["input_mask"][:length].all() and not record["input_mask"][length:].any()
        assert (record["input_ids"] < 30522).all() and (record["input_ids"] >= 0).all()
        assert record["input_ids"][0] == 101 and record["input_ids"][length - 1] == 102
        assert not record["input_ids"][length:].any()
        assert set(record["segment_ids"][:length]) == {0, 1} and not record["segment_ids"][length:].any()
        weights = record["masked_lm_weights"]
        count = int(weights.sum())
        assert count >= 1 and (weights[:count] == 1.0).all() and (weights[count:] == 0.0).all()
        positions = record["masked_lm_positions"]
        assert ((positions[:count] > 0) & (positions[:count] < length - 1)).all()
        assert (positions[:count][1:] > positions[:count][:-1]).all()  # sorted, distinct
        assert not positions[count:].any() and not record["masked_lm_ids"][count:].any()
        assert (record["masked_lm_ids"][:count] < 30522).all()
        assert count == min(10, max(1, round(length * 0.15)))
        labels.add(int(record["next_sentence_labels"][0]))
    assert labels == {0, 1}
    assert not (tmp_path / "out" / preprocess.SCRATCH_DIR).exists()


def test_document_packed_records_are_full_length_and_unmasked(tmp_path, bert_vocab):
    job = _job(tmp_path, bert_vocab, format="packed", packing="document", compress=True)
    manifest = preprocess.run(job, IN_PROCESS)
    assert manifest["compression"] == "GZIP" and all(s["name"].endswith(".gz") for s in manifest["shards"])
    records = _records(job.output, manifest)
    assert sum(int(r["input_mask"].sum()) for r in records) == manifest["tokens"]
    assert manifest["tokens"] == manifest["stats"]["tokens"] + 2 * len(records)
    full = [r for r in records if r["input_mask"].all()]
    assert len(full) >= len(records) - 6  # only each document's last sequence may be shorter
    for record in records:
        length = int(record["input_mask"].sum())
        assert record["input_ids"][0] == 101 and record["input_ids"][length - 1] == 102
        assert 103 not in record["input_ids"] and not record["segment_ids"].any()


def test_same_seed_and_input_give_identical_bytes(tmp_path, bert_vocab):
    first = _job(tmp_path / "one", bert_vocab)
    second = _job(tmp_path / "two", bert_vocab)
    first_manifest = preprocess.run(first, IN_PROCESS)
    # Plant the debris a killed run leaves: a scratch directory, a stale shard, no manifest.
    out = pathlib.Path(second.output)
    (out / preprocess.SCRATCH_DIR / "fragments").mkdir(parents=True)
    (out / preprocess.SCRATCH_DIR / "fragments" / "unit-0000000-shard-00000-part-000").write_bytes(b"junk")
    (out / "data-00000-of-00007.tfrecord").write_bytes(b"partial")
    second_manifest = preprocess.run(second, IN_PROCESS)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [shard["name"] for shard in second_manifest["shards"]] + ["manifest.json"])
    for shard in first_manifest["shards"]:
        assert (pathlib.Path(first.output) / shard["name"]).read_bytes() == (out / shard["name"]).read_bytes()
    drop_inputs = lambda manifest: {k: v for k, v in manifest.items() if k != "inputs"}  # noqa: E731
    assert drop_inputs(first_manifest) == drop_inputs(second_manifest)
    reseeded = dataclasses.replace(first, output=str(tmp_path / "three"),
                                   data=dataclasses.replace(first.data, seed=8))
    changed = preprocess.run(reseeded, IN_PROCESS)
    # Another seed draws other masks and pairs: the decoded examples (compared as sorted sets, so a
    # mere reordering across shards would not count) must differ, not only the files' bytes or counts.
    assert _example_set(reseeded.output, changed) != _example_set(first.output, first_manifest)
    assert _example_set(second.output, second_manifest) == _example_set(first.output, first_manifest)


def _example_set(output: str, manifest: dict) -> list[tuple[bytes, ...]]:
    """Every decoded example as a tuple of its features' bytes, sorted."""
    return sorted(tuple(record[name].tobytes() for name in sorted(record)) for record in _records(output, manifest))


@pytest.mark.parametrize("record_format", ["bert", "packed"])
def test_multi_process_direct_runner_matches_in_process(tmp_path, bert_vocab, record_format):
    # packed: stream packing, whose chains run on from one read unit into the next.
    in_process = _job(tmp_path / "a", bert_vocab, format=record_format, seq_len=16, split_bytes=300)
    manifest = preprocess.run(in_process, IN_PROCESS)
    multi = _job(tmp_path / "b", bert_vocab, format=record_format, seq_len=16, split_bytes=300)
    # No runner flags: the default is the direct runner in multi_processing mode, one worker per core.
    options = runners.pipeline_options([])
    assert options.get_all_options()["direct_running_mode"] == "multi_processing"
    assert options.get_all_options()["direct_num_workers"] == os.cpu_count()
    with _WorkerProcessWatcher() as watcher:
        multi_manifest = preprocess.run(multi, ["--direct_num_workers=2"])
    assert len(watcher.workers) >= 2, "the job did not run in separate SDK worker processes"
    assert multi_manifest["shards"] == manifest["shards"]
    for shard in manifest["shards"]:
        assert (pathlib.Path(in_process.output) / shard["name"]).read_bytes() == (
            pathlib.Path(multi.output) / shard["name"]).read_bytes()


class _WorkerProcessWatcher:
    """Records the Beam SDK worker processes started under this test process while in use."""

    def __enter__(self):
        import threading

        self.workers: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        self._thread.join()

    def _watch(self):
        import psutil

        me = psutil.Process()
        while not self._done.wait(0.1):
            for child in me.children(recursive=True):
                try:
                    if "sdk_worker_main" in " ".join(child.cmdline()):
                        self.workers.add(child.pid)
                except psutil.Error:
                    pass


# ---------------------------------------------------------------------------
# Inputs: formats and bad input
# ---------------------------------------------------------------------------


def test_jsonl_gzip_bad_utf8_and_empty_files_are_counted(tmp_path, bert_vocab):
    corpus = tmp_path / "mixed"
    corpus.mkdir()
    lines = [json.dumps({"text": "A json document.\nWith two lines of text."}), "{not json",
             json.dumps({"title": "no text field"}), json.dumps({"text": "Another json document here."})]
    (corpus / "docs.jsonl").write_text("\n".join(lines) + "\n")
    with gzip.open(corpus / "zipped.txt.gz", "wt") as handle:
        handle.write("A gzipped document.\nIt has two lines.\n")
    (corpus / "latin1.txt").write_bytes("Caf\xe9 au lait is served.\nSecond line.\n".encode("latin-1"))
    (corpus / "empty.txt").write_bytes(b"")
    job = preprocess.PreprocessJob(inputs=(str(corpus / "*"),), output=str(tmp_path / "out"),
                                   data=DataConfig(format="packed", packing="document", seq_len=32),
                                   vocab=bert_vocab, shards=2)
    manifest = preprocess.run(job, IN_PROCESS)
    stats = manifest["stats"]
    assert stats["files"] == 4 and stats["empty_files"] == 1 and stats["documents"] == 4
    assert stats["invalid_utf8_lines"] == 1 and stats["invalid_utf8_characters"] == 1
    assert stats["skipped_documents"] == {"invalid_json": 1, "missing_text_field": 1}
    assert stats["skipped_bytes"]["invalid_json"] == len("{not json") + 1
    assert manifest["examples"] == 4


def test_glob_matching_nothing_fails_naming_it_and_writes_nothing(tmp_path, bert_vocab):
    job = preprocess.PreprocessJob(inputs=(str(tmp_path / "missing" / "*.txt"),),
                                   output=str(tmp_path / "out"), vocab=bert_vocab)
    with pytest.raises(TrimbertError, match="matches no file: .*missing"):
        preprocess.run(job, IN_PROCESS)
    assert not (tmp_path / "out").exists()


def test_unreadable_file_fails_naming_it(tmp_path, bert_vocab):
    corpus = _write_corpus(tmp_path / "corpus")
    (corpus / "broken.txt").symlink_to(tmp_path / "nowhere.txt")
    job = preprocess.PreprocessJob(inputs=(str(corpus / "*.txt"),), output=str(tmp_path / "out"),
                                   vocab=bert_vocab)
    with pytest.raises(TrimbertError, match="cannot be read: .*broken.txt"):
        preprocess.run(job, IN_PROCESS)
    assert not (tmp_path / "out").exists()


def test_vocab_without_special_tokens_fails_naming_them(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(token for token in TINY_VOCAB if token not in ("[MASK]", "[PAD]")) + "\n")
    job = _job(tmp_path, str(vocab))
    with pytest.raises(TrimbertError, match=r"vocab.txt lacks the special tokens \[PAD\], \[MASK\]"):
        preprocess.run(job, IN_PROCESS)
    assert not (tmp_path / "out").exists()


def test_tfds_dataset_that_is_not_available_fails_naming_it(tmp_path, bert_vocab):
    pytest.importorskip("tensorflow_datasets")
    job = preprocess.PreprocessJob(inputs=("tfds:no_such_dataset_anywhere/en:train",),
                                   output=str(tmp_path / "out"), vocab=bert_vocab)
    with pytest.raises(TrimbertError, match="no_such_dataset_anywhere"):
        preprocess.run(job, IN_PROCESS)
    assert not (tmp_path / "out").exists()


def test_tfds_wikipedia_is_read_through_the_real_code_path(tmp_path, bert_vocab):
    tfds = pytest.importorskip("tensorflow_datasets")
    spec = "tfds:wikipedia/20230601.en:train"
    job = preprocess.PreprocessJob(inputs=(spec,), output=str(tmp_path / "out"), vocab=bert_vocab,
                                   data=DataConfig(format="packed", seq_len=32))
    # mock_data serves generated records in place of the prepared dataset (offline); everything
    # after tfds.load is the production path, run in this process so the mock applies.
    with tfds.testing.mock_data(num_examples=12):
        manifest = preprocess.run(job, IN_PROCESS)
    assert manifest["examples"] > 0 and manifest["tokens"] > 0
    assert all(source.startswith(spec) for source in manifest["inputs"]["sources"])
    assert len(manifest["inputs"]["sources"]) > 1  # read in even slices, in parallel


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, bert_vocab, capsys):
    from pipeline.cli import main as cli

    code = cli.main(["preprocess", "--input", str(tmp_path / "nothing*.txt"),
                     "--output", str(tmp_path / "out"), "--vocab", bert_vocab,
                     "--direct_running_mode=in_memory"])
    assert code == 2
    assert "matches no file" in capsys.readouterr().err


def test_learned_vocabulary_is_written_and_used(tmp_path):
    job = preprocess.PreprocessJob(inputs=(str(_write_corpus(tmp_path / "corpus") / "*.txt"),),
                                   output=str(tmp_path / "out"), data=DataConfig(format="packed", seq_len=32),
                                   learn_vocab=120, shards=1)
    manifest = preprocess.run(job, IN_PROCESS)
    vocabulary = (tmp_path / "out" / "vocab.txt").read_text().splitlines()
    assert vocabulary[:5] == list(features.SPECIAL_TOKENS) and len(vocabulary) <= 120
    assert manifest["vocab"]["learned"] and manifest["vocab"]["size"] == len(vocabulary)
    assert manifest["stats"]["unknown_token_rate"] < 0.01


@pytest.mark.slow
def test_rerun_after_a_real_kill_gives_the_same_complete_output(tmp_path, bert_vocab):
    import signal
    import subprocess
    import sys
    import time

    corpus = _write_corpus(tmp_path / "corpus", documents=400)
    output = tmp_path / "killed"
    command = [sys.executable, "-m", "pipeline.cli", "preprocess", "--input", str(corpus / "*.txt"),
               "--output", str(output), "--vocab", bert_vocab, "--format", "bert", "--dupe-factor", "10",
               "--seq-len", "64", "--max-predictions", "10", "--seed", "7", "--shards", "3"]
    process = subprocess.Popen(command, cwd=pathlib.Path(__file__).resolve().parents[2],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    fragments = output / preprocess.SCRATCH_DIR / "fragments"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (fragments.is_dir() and any(fragments.iterdir())):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the job and its Beam workers, mid-write
    process.wait()
    assert not (output / "manifest.json").exists(), "the job finished before it could be killed"
    job = preprocess.PreprocessJob(
        inputs=(str(corpus / "*.txt"),), output=str(output), vocab=bert_vocab, shards=3,
        data=DataConfig(format="bert", dupe_factor=10, seq_len=64, max_predictions=10, seed=7))
    rerun = preprocess.run(job, IN_PROCESS)
    clean = preprocess.run(dataclasses.replace(job, output=str(tmp_path / "clean")), IN_PROCESS)
    assert rerun["shards"] == clean["shards"]
    for shard in clean["shards"]:
        assert (output / shard["name"]).read_bytes() == (tmp_path / "clean" / shard["name"]).read_bytes()
    assert not (output / preprocess.SCRATCH_DIR).exists()


CASED_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "The", "Fox", "Dog", "jump", "sleep", "##s", "."]


@pytest.mark.parametrize("flags, unknown_rate", [([], 0.0), (["--cased"], 0.0), (["--uncased"], 0.4)])
def test_cli_takes_the_case_from_the_vocabulary_unless_told(tmp_path, capsys, flags, unknown_rate):
    from pipeline.cli import main as cli

    (tmp_path / "vocab.txt").write_text("\n".join(CASED_VOCAB) + "\n")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The Fox jumps. The Dog sleeps.\nThe Dog jumps. The Fox sleeps.\n\n" * 4)
    code = cli.main(["preprocess", "--input", str(corpus), "--output", str(tmp_path / "out"),
                     "--vocab", str(tmp_path / "vocab.txt"), "--format", "packed", "--seq-len", "16",
                     "--shards", "1", *flags, *IN_PROCESS])
    assert code == 0
    output = capsys.readouterr()
    # Lower-cased, "the", "fox" and "dog" miss this cased vocabulary: 4 of every 10 word pieces.
    assert json.loads(output.out)["unknown_token_rate"] == pytest.approx(unknown_rate)
    if not flags:
        assert "is cased: keeping the case" in output.err


@pytest.mark.parametrize("config, expected", [(None, False), ('{"do_lower_case": true}', True),
                                              ('{"do_lower_case": false}', False)])
def test_vocabulary_case_is_read_without_importing_tensorflow(tmp_path, config, expected):
    """The job's driver decides the case in plain Python: a folder's tokenizer config, else the tokens."""
    import subprocess
    import sys

    (tmp_path / "vocab.txt").write_text("\n".join(CASED_VOCAB) + "\n")
    if config is not None:
        (tmp_path / "tokenizer_config.json").write_text(config)
    check = ("import sys; from pipeline.cli.preprocess import vocabulary_lowercases; "
             f"print(vocabulary_lowercases({str(tmp_path / 'vocab.txt')!r}), 'tensorflow' in sys.modules)")
    root = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=root,
                            env=dict(os.environ, PYTHONPATH=str(root)), check=True)
    assert result.stdout.split() == [str(expected), "False"]


def test_tokenizer_thread_limit_failure_is_reported_not_swallowed(caplog, monkeypatch):
    import tensorflow as tf

    from beam_jobs.tokenize import limit_tensorflow_threads

    def already_initialised(threads):
        raise RuntimeError("Intra op parallelism cannot be modified after initialization.")

    # What TensorFlow raises once its runtime is up (e.g. under the in-process runner).
    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", already_initialised)
    with caplog.at_level(logging.WARNING, logger="beam_jobs.tokenize"):
        limit_tensorflow_threads()
    assert "tokenizer threads not limited to 1 (Intra op parallelism cannot be modified" in caplog.text


# ---------------------------------------------------------------------------
# Degenerate input: no silent success
# ---------------------------------------------------------------------------


def _preprocess_command(corpus: pathlib.Path, output: pathlib.Path, vocab: str, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "pipeline.cli", "preprocess", "--input", str(corpus), "--output", str(output),
            "--vocab", vocab, "--format", "packed", "--seq-len", "32", "--shards", "2", *extra, *IN_PROCESS]


def _run_cli(command: list[str]):
    import subprocess

    return subprocess.run(command, cwd=pathlib.Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("content, counts", [
    (b"", "files 1 (1 empty), documents kept 0"),
    (bytes(range(256)) * 20, "documents skipped 1 (binary 1)"),
])
def test_input_without_examples_exits_non_zero_with_counts_and_no_manifest(tmp_path, bert_vocab, content,
                                                                           counts):
    corpus = tmp_path / "input.txt"
    corpus.write_bytes(content)
    result = _run_cli(_preprocess_command(corpus, tmp_path / "out", bert_vocab))
    assert result.returncode == 2, result.stderr
    assert "no pre-training example produced" in result.stderr and counts in result.stderr
    assert "tokens 0" in result.stderr and "--allow-empty" in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not list((tmp_path / "out").glob("data-*"))


def test_learning_a_vocabulary_from_no_words_is_a_clean_error(tmp_path, bert_vocab):
    import sys

    corpus = tmp_path / "empty.txt"
    corpus.write_bytes(b"")
    command = [sys.executable, "-m", "pipeline.cli", "preprocess", "--input", str(corpus), "--output",
               str(tmp_path / "out"), "--learn-vocab", "100", "--format", "packed", *IN_PROCESS]
    result = _run_cli(command)
    assert result.returncode == 2, result.stderr
    assert f"--learn-vocab: the inputs hold no words to learn a vocabulary from ({corpus})" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "out").iterdir())


def test_allow_empty_writes_an_empty_manifest(tmp_path, bert_vocab):
    corpus = tmp_path / "empty.txt"
    corpus.write_bytes(b"")
    from pipeline.cli import main as cli

    command = _preprocess_command(corpus, tmp_path / "out", bert_vocab, "--allow-empty")
    parsed, beam_options = cli.build_parser().parse_known_args(command[3:])
    assert parsed.allow_empty and "--allow-empty" not in beam_options  # ours, not passed on to Beam
    result = _run_cli(command)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["examples"] == 0


def test_fewer_examples_than_shards_is_reported(tmp_path, bert_vocab):
    corpus = tmp_path / "short.txt"
    corpus.write_text("One short sentence.\n")
    job = preprocess.PreprocessJob(inputs=(str(corpus),), output=str(tmp_path / "out"), vocab=bert_vocab,
                                   data=DataConfig(format="packed", seq_len=32), shards=4)
    with _CapturedWarnings() as warnings:
        manifest = preprocess.run(job, IN_PROCESS)
    assert manifest["examples"] == 1
    assert "only 1 example(s) for 4 shards: 3 shard(s) will be empty" in warnings.text


class _CapturedWarnings:
    """Collects the preprocess job's log warnings (the driver's, where the shard count is checked)."""

    def __enter__(self):
        import logging

        self.text = ""
        self._handler = logging.Handler(logging.WARNING)
        self._handler.emit = lambda record: setattr(self, "text", self.text + record.getMessage() + "\n")
        logging.getLogger().addHandler(self._handler)
        return self

    def __exit__(self, *exc_info):
        import logging

        logging.getLogger().removeHandler(self._handler)


def test_workers_import_tensorflow_without_its_start_up_notices_when_quiet():
    import subprocess
    import sys

    code = ("from beam_jobs.tokenize import limit_tensorflow_threads; limit_tensorflow_threads(); "
            "import sys; print('after import', file=sys.stderr)")
    root = pathlib.Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert "after import" in run.stderr
    assert "cudart_stub" not in run.stderr and "absl::InitializeLog" not in run.stderr
    assert "oneDNN custom operations" not in run.stderr


def test_units_reach_the_heavy_step_only_after_the_pool_is_written(tmp_path, bert_vocab):
    import apache_beam as beam

    from beam_jobs.pool import UnitsAfterPool, pool_file, read_pool
    from beam_jobs.read import expand_inputs

    corpus = _write_corpus(tmp_path / "corpus")
    units = expand_inputs([str(corpus / "*.txt")])
    tokens = pathlib.Path(bert_vocab).read_text().splitlines()
    path = pool_file(str(tmp_path))
    seen = tmp_path / "seen"
    seen.mkdir()

    def record(unit):  # what the unit step would find: is the pool already complete?
        (seen / str(unit.index)).write_text(str(len(read_pool(path))))

    with runners.running(runners.pipeline_options(IN_PROCESS)) as pipeline:
        (pipeline
         | beam.Create(units)
         | UnitsAfterPool(units, tokens, True, 7, "text", path)
         | beam.Map(record))
    pool_size = len(read_pool(path))
    assert pool_size > 0
    assert {item.name: item.read_text() for item in seen.iterdir()} == {
        str(unit.index): str(pool_size) for unit in units}


def test_bert_input_without_documents_writes_an_empty_pool_and_an_empty_output(tmp_path, bert_vocab):
    corpus = tmp_path / "empty.txt"
    corpus.write_bytes(b"")
    job = preprocess.PreprocessJob(inputs=(str(corpus),), output=str(tmp_path / "out"), vocab=bert_vocab,
                                   data=DataConfig(format="bert", seq_len=32), shards=2, allow_empty=True)
    manifest = preprocess.run(job, IN_PROCESS)
    assert manifest["examples"] == 0 and manifest["stats"]["documents"] == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "data-00000-of-00002.tfrecord", "data-00001-of-00002.tfrecord", "manifest.json"]


def test_binary_check_counts_replacement_and_control_characters_only():
    import random

    from beam_jobs.read import looks_binary

    def reference(text: str) -> bool:  # the definition, one character at a time
        suspicious = sum(1 for character in text
                         if character == "\ufffd" or (character < " " and character not in "\t\n\r"))
        return suspicious > 0.1 * len(text)

    alphabet = [chr(code) for code in range(40)] + ["\ufffd", "\x7f", "\u2028", "é", "a", " "]
    rng = random.Random(3)
    texts = ["".join(rng.choice(alphabet) if rng.random() < share else "x" for _ in range(rng.randrange(60)))
             for share in (0.05, 0.1, 0.2, 0.5) for _ in range(500)]
    assert [looks_binary(text) for text in texts] == [reference(text) for text in texts]
    assert sum(map(looks_binary, texts)) > 100 and not looks_binary("prose\twith\ttabs\r\nand lines\n")
    assert looks_binary("\ufffd" * 2 + "x" * 18) is False and looks_binary("\x00" * 3 + "x" * 17) is True


def test_the_manifest_records_each_shards_real_length_and_crc32c(tmp_path, bert_vocab):
    """Training and held-out shards, gzipped, some of them empty (written by the driver, not the merge)."""
    import google_crc32c

    job = _job(tmp_path, bert_vocab, format="packed", compress=True, shards=12, heldout_fraction=0.3)
    manifest = preprocess.run(job, IN_PROCESS)
    shards = manifest["shards"] + manifest["heldout"]["shards"]
    assert {shard["examples"] == 0 for shard in shards} == {True, False}
    assert any(shard["name"].startswith("heldout-") and shard["examples"] for shard in shards)
    for shard in shards:
        content = (tmp_path / "out" / shard["name"]).read_bytes()
        assert (shard["bytes"], shard["crc32c"]) == (len(content), f"{google_crc32c.value(content):08x}")
