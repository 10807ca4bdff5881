"""storage: joins that keep URLs whole, atomic writes on a local disk and on TensorFlow's ram://."""

from __future__ import annotations

import os
import uuid

import pytest

import storage


def test_join_parent_and_name_keep_the_scheme():
    assert storage.join("gs://bucket/run", "checkpoints", "ckpt-2") == "gs://bucket/run/checkpoints/ckpt-2"
    assert storage.join("gs://bucket/run/", "config.yaml") == "gs://bucket/run/config.yaml"
    assert storage.parent("gs://bucket/run/checkpoints/ckpt-2") == "gs://bucket/run/checkpoints"
    assert storage.name("s3://bucket/run/encoder/") == "encoder"
    assert storage.join("relative", "a") == os.path.join("relative", "a")
    assert storage.is_url("ram://x") and not storage.is_url("/tmp/x")
    assert storage.absolute("gs://bucket/run") == "gs://bucket/run"
    assert os.path.isabs(storage.absolute("relative"))


def test_local_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    storage.write_json(path, {"steps": 2})
    assert storage.read_json(path) == {"steps": 2}
    assert os.listdir(tmp_path) == ["summary.json"]  # the .summary.json.tmp was renamed over the target


def test_url_write_is_one_object_with_no_temporary_object():
    import tensorflow as tf

    folder = f"ram://storage-test-{uuid.uuid4().hex}"
    storage.makedirs(storage.join(folder, "sub"))
    path = storage.join(folder, "sub", "result.json")
    storage.write_json(path, {"score": 0.5})
    storage.append_text(storage.join(folder, "metrics.jsonl"), "1\n")
    storage.append_text(storage.join(folder, "metrics.jsonl"), "2\n")
    assert storage.read_json(path) == {"score": 0.5}
    assert tf.io.gfile.listdir(storage.join(folder, "sub")) == ["result.json"]
    assert storage.read_text(storage.join(folder, "metrics.jsonl")) == "1\n2\n"
    assert storage.isfile(path) and not storage.isfile(storage.join(folder, "sub"))
    assert storage.isdir(storage.join(folder, "sub"))
    assert storage.walk_files(folder) == [storage.join(folder, "metrics.jsonl"), path]


def test_staging_path_is_a_hidden_sibling_locally_and_the_object_itself_on_a_url(tmp_path):
    assert storage.staging_path(tmp_path / "manifest.json") == str(tmp_path / ".manifest.json.tmp")
    assert storage.staging_path("gs://bucket/data/manifest.json") == "gs://bucket/data/manifest.json"


def test_relative_to_file_folds_dots_in_urls_and_resolves_local_paths(tmp_path):
    assert storage.relative_to_file("gs://b/run/configs/a.yaml", "../base.yaml") == "gs://b/run/base.yaml"
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert storage.relative_to_file(tmp_path / "link" / "a.yaml", "b.yaml") == str(tmp_path / "real" / "b.yaml")


def test_a_config_on_a_url_loads_with_its_base_chain():
    """configs.schema reads YAML through this layer: a ``base`` beside a config on ram:// is found."""
    from configs import schema

    folder = f"ram://storage-test-{uuid.uuid4().hex}"
    storage.makedirs(storage.join(folder, "nested"))
    storage.write_text(storage.join(folder, "tiny.yaml"), (schema.CONFIG_DIR / "tiny.yaml").read_text())
    storage.write_text(storage.join(folder, "middle.yaml"), "base: ./tiny.yaml\nname: middle\n")
    storage.write_text(storage.join(folder, "nested", "run.yaml"), "base: ../middle.yaml\nname: from-url\n")
    config = schema.load(storage.join(folder, "nested", "run.yaml"))
    assert config.name == "from-url"
    assert config.model == schema.load("tiny").model


def test_copy_tree_between_the_local_disk_and_a_url(tmp_path):
    (tmp_path / "source" / "nested").mkdir(parents=True)
    (tmp_path / "source" / "a.txt").write_text("a")
    (tmp_path / "source" / "nested" / "b.bin").write_bytes(b"\x00\x01")
    remote = f"ram://storage-test-{uuid.uuid4().hex}/copy"
    storage.copy_tree(tmp_path / "source", remote)
    assert storage.read_bytes(storage.join(remote, "nested", "b.bin")) == b"\x00\x01"
    storage.copy_tree(remote, tmp_path / "back")
    assert (tmp_path / "back" / "a.txt").read_text() == "a"
    storage.remove_tree(remote)
    assert not storage.exists(storage.join(remote, "a.txt"))


def test_sqlite_store_refuses_a_url():
    from configs.errors import TrimbertError
    from pipeline.evaluation.store import ResultStore

    with pytest.raises(TrimbertError, match=r"gs://bucket/evaluations.sqlite.*local disk.*--store /local/path"):
        ResultStore("gs://bucket/evaluations.sqlite")


def test_search_journal_on_a_url_survives_a_reload():
    from pipeline.studies.search_algorithm import Journal

    path = f"ram://storage-test-{uuid.uuid4().hex}/search/journal.jsonl"
    journal = Journal(path)
    journal.append({"kind": "cost", "name": "a", "parameters": 1})
    journal.append({"kind": "error", "name": "a", "rung": 0, "error": 2.5})
    again = Journal(path)
    assert again.costs("a")["parameters"] == 1 and again.error("a", 0) == 2.5
    assert len(storage.read_text(path).splitlines()) == 2  # rewritten whole, not appended twice


def test_study_and_search_outputs_on_a_url():
    from configs import schema as config_lib
    from pipeline.studies import bookkeeping, layer_drop, search

    config = config_lib.load("tiny")
    study = f"ram://storage-test-{uuid.uuid4().hex}/study"
    bookkeeping.check_study_folder(study, {"init": "ram://bucket/run", "task": "rte"})
    bookkeeping.check_study_folder(study, {"init": "ram://bucket/run", "task": "rte"})  # the same study: resumed
    assert storage.read_json(storage.join(study, bookkeeping.STUDY_FILENAME))["init"] == "ram://bucket/run"
    rows = [layer_drop.StudyRow("unpruned", 0, (), 100, 0.5, 0.0), layer_drop.StudyRow("top", 1, (1,), 80, 0.4, 0.0)]
    layer_drop.write_table(rows, study, "rte", config)
    assert storage.read_text(storage.join(study, "layer_drop.csv")).splitlines()[2].startswith("top,1,1,80,0.4")
    assert storage.read_json(storage.join(study, "layer_drop.json"))["task"] == "rte"

    out = f"ram://storage-test-{uuid.uuid4().hex}/search"
    row = {column: 1 for column in search.TABLE_COLUMNS} | {"name": "a", "parameters": 1_000_000,
                                                          "proxy_loss": 2.0, "pareto": True, "latency_ms": 1.0}
    search._write_tables([row], out)
    search._plot([row], storage.join(out, "pareto.png"))
    assert storage.read_text(storage.join(out, "results.md")).count("1,000,000") == 1
    assert storage.read_bytes(storage.join(out, "pareto.png")).startswith(b"\x89PNG")


def test_config_with_a_base_loads_from_a_url():
    from configs import schema as config_lib

    folder = f"ram://storage-test-{uuid.uuid4().hex}/configs"
    storage.write_text(storage.join(folder, "base.yaml"), config_lib.dump(config_lib.load("tiny")))
    storage.write_text(storage.join(folder, "sub", "child.yaml"), "base: ../base.yaml\nname: child\n")
    config = config_lib.load(storage.join(folder, "sub", "child.yaml"), ["model.num_layers=1"])
    assert config.name == "child" and config.model.num_layers == 1 and config.model.hidden_dim == 128


@pytest.mark.parametrize("on_url", [False, True])
def test_size_read_chunks_and_a_move_that_replaces_nothing(tmp_path, on_url):
    from beam_jobs import checksums

    folder = f"ram://storage-test-{uuid.uuid4().hex}" if on_url else str(tmp_path)
    storage.makedirs(storage.join(folder, "aside"))
    path, other = storage.join(folder, "shard"), storage.join(folder, "other")
    content = bytes(range(256)) * 41
    storage.write_bytes(path, content)
    storage.write_bytes(other, b"other")
    assert storage.size(path) == len(content)
    assert b"".join(storage.read_chunks(path, 1000)) == content
    assert [len(chunk) for chunk in storage.read_chunks(path, 4096)] == [4096, 4096, len(content) - 8192]
    assert checksums.file_crc32c(path) == checksums.crc32c(content)
    moved = storage.move(path, storage.join(folder, "aside", "shard"))
    assert storage.read_bytes(moved) == content and not storage.exists(path)
    with pytest.raises((FileExistsError, *storage.url_errors(folder))):
        storage.move(other, moved)
    assert storage.read_bytes(moved) == content and storage.read_bytes(other) == b"other"
