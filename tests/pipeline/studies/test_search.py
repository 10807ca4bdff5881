"""A tiny end-to-end search on CPU: a tiny teacher, three candidates, two rungs, then a resume."""

import csv
import json
import sys

import pytest

from configs import schema as config_lib
from pipeline.studies import search as search_run
from pipeline.studies.search_space import load_space

SEQ_LEN = 64

# tiny as shipped, but with the graph step: XLA's compile would add seconds to each proxy run.
BASE = """\
base: {tiny}
name: tiny-graph
pretrain: {{jit_compile: false}}
"""

SPACE = """\
base: tiny_graph.yaml
num_layers: [1]
num_heads: [2, 3]
hidden_dim: [16, 24]
intermediate_dim: [32]
proxy: {rung_steps: [2, 3], keep_fraction: 0.5, batch_size: 4, seq_len: 64, learning_rate: 1.0e-3,
        latency_batch_size: 2, latency_seq_len: 64, latency_repeats: 2}
"""


def _write_space(folder):
    (folder / "tiny_graph.yaml").write_text(BASE.format(tiny=config_lib.CONFIG_DIR / "tiny.yaml"))
    (folder / "space.yaml").write_text(SPACE)
    return folder / "space.yaml"


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, tiny_config, model_dir_writer):
    """A pre-training model directory of the tiny shape (encoder + masked-LM head) as the teacher."""
    return model_dir_writer(tmp_path_factory.mktemp("teacher") / "run", tiny_config)


def test_tiny_search_end_to_end_and_resume(tmp_path, packed_data, tiny_teacher, monkeypatch, capsys):
    space_path = _write_space(tmp_path)
    space = load_space(space_path)
    out = tmp_path / "out"
    options = search_run.SearchOptions(teacher=str(tiny_teacher), data_dir=str(packed_data), out_dir=str(out))
    lines = []
    result = search_run.run(space, options, log=lines.append)

    # 4 combinations, (H=16, A=3) dropped -> 3 candidates; progress lines say so.
    assert "3 candidates" in lines[0] and "1 dropped" in lines[0]
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    errors = [r for r in records if r["kind"] == "error"]
    # Which candidates rung 0 trains depends on measured latencies; each one trained says so, and
    # each one not trained is said to be dropped untrained.
    for name in ("d1-a2-h16-i32", "d1-a2-h24-i32", "d1-a3-h24-i32"):
        trained = any(r["name"] == name and r["rung"] == 0 for r in errors)
        said = "training" if trained else "dropped untrained"
        assert any(name in line and said in line and line.startswith("search rung 0") for line in lines), name
    assert {r["name"] for r in records if r["kind"] == "cost"} == {
        "teacher", "d1-a2-h16-i32", "d1-a2-h24-i32", "d1-a3-h24-i32"}
    assert all(r["error"] > 0 for r in errors)
    # Rung 0 trains at most all three, rung 1 exactly the two survivors (ceil(3 x 0.5)).
    assert sum(r["rung"] == 1 for r in errors) == 2

    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    finalists = [r for r in rows if not r["dropped"]]
    assert len(finalists) == 2 and rows[:2] == finalists
    assert float(rows[0]["score"]) <= float(rows[1]["score"])
    assert any(r["pareto"] == "True" for r in finalists)
    assert "| rank | name |" in (out / "results.md").read_text()
    assert (out / "pareto.png").stat().st_size > 5000

    # The chosen config is a valid pre-training config with the teacher set.
    best = config_lib.load(out / "best_config.yaml")
    assert best.name == f"search-{rows[0]['name']}"
    assert (best.model.num_heads, best.model.hidden_dim) == (int(rows[0]["num_heads"]), int(rows[0]["hidden_dim"]))
    assert best.pretrain.distill.teacher == str(tiny_teacher)
    assert result["best"]["name"] == rows[0]["name"]

    # A rerun reads everything from the journal: nothing is trained or measured again.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished candidate was trained again")

    monkeypatch.setattr(search_run, "proxy_error", no_training)
    monkeypatch.setattr(search_run, "measure_latency", no_training)
    search_run.run(space, options, log=lambda line: None)
    assert len((out / "journal.jsonl").read_text().splitlines()) == len(records)


def test_cli_help_lists_search():
    from pipeline.cli import main as cli

    assert "search" in cli.COMMANDS
    parser = cli.build_parser()
    args = parser.parse_args(["search", "--space", "tiny_space", "--teacher", "t", "--data", "d", "--out", "o",
                              "--budget-steps", "40"])
    assert args.budget_steps == 40 and sys.modules["pipeline.cli.search"].run is args.run


def test_too_little_data_is_refused_before_any_candidate_is_measured(tmp_path, vocab_path, capsys):
    from beam_jobs import pipeline as beam_pipeline
    from configs.schema import DataConfig

    (tmp_path / "empty.txt").write_text("")
    job = beam_pipeline.PreprocessJob(inputs=(str(tmp_path / "empty.txt"),), output=str(tmp_path / "data"),
                                      vocab=str(vocab_path), shards=1, allow_empty=True,
                                      data=DataConfig(format="packed", seq_len=SEQ_LEN))
    beam_pipeline.run(job, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    space = _write_space(tmp_path)
    from pipeline.cli import main as cli

    code = cli.main(["search", "--space", str(space), "--teacher", str(tmp_path / "teacher"),
                     "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    errors = capsys.readouterr().err
    assert code == 2, errors
    assert f"{tmp_path / 'data'}: 0 example(s) in 1 shard(s), fewer than the space's proxy batch_size 4" in errors
    assert not (tmp_path / "out").exists()
