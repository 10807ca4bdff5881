"""``trimbert study trims`` end to end on tiny shapes: rows, table, resume, refusal, and the healing wiring."""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np
import pytest

FIXTURE_GLUE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "glue"
SMALL = ["data.seq_len=64", "model.num_layers=2", "model.hidden_dim=32", "model.intermediate_dim=64",
         "model.num_heads=2", "model.max_sequence_length=64"]
RECIPE = ["data.seq_len=64", "pretrain.phases=[{steps: 2, seq_len: 64, batch_size: 4}]", "pretrain.log_every=1",
          "finetune.seq_len=32", "finetune.batch_size=4", "finetune.epochs=1"]


def _sets(values):
    return [argument for value in values for argument in ("--set", value)]


@pytest.fixture(scope="module")
def source_model(tmp_path_factory, vocab_path):
    """A two-block encoder saved as a Hugging Face folder (no masked-LM head, like the MiniLM asset)."""
    import keras

    import models
    from configs import schema as config_lib

    folder = tmp_path_factory.mktemp("trims") / "source"
    keras.utils.set_random_seed(3)
    models.save_pretrained(models.build_encoder(config_lib.load("tiny", SMALL)), folder,
                           vocabulary_path=vocab_path)
    return folder


def _rows(out: pathlib.Path) -> dict[str, dict]:
    return {row["name"]: row for row in csv.DictReader(open(out / "trims.csv"))}


def _tensors(folder: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def test_from_a_pretrained_encoder_trims_heals_and_resumes(source_model, packed_data, tmp_path, capsys):
    from pipeline.cli import main as cli

    out = tmp_path / "study"
    student = tmp_path / "student.yaml"
    student.write_text("name: student\nmodel: {num_layers: 1, hidden_dim: 32, intermediate_dim: 32, "
                       "num_heads: 2, max_sequence_length: 64}\ndata: {seq_len: 64}\n")
    arguments = ["study", "trims", "--from", str(source_model), "--config", "tiny", "--tasks", "rte",
                 "--trims", f"untrimmed,pmb:top:1,no-ffn:1+heal,student:{student}", "--heal-steps", "2",
                 "--data", str(packed_data), "--glue-dir", str(FIXTURE_GLUE), "--out", str(out), *_sets(RECIPE)]
    assert cli.main(arguments) == 0
    rows = _rows(out)
    assert list(rows) == ["untrimmed", "pmb:top:1", "no-ffn:1+heal", f"student:{student}"]
    # Each row reports its own fine-tuning record.
    folders = {"untrimmed": "untrimmed", "pmb:top:1": "pmb_top_1", "no-ffn:1+heal": "no-ffn_1+heal",
               f"student:{student}": f"student_{str(student).replace('/', '_')}"}
    for name, row in rows.items():
        record = json.loads((out / "runs" / folders[name] / "rte" / "result.json").read_text())
        assert float(row["rte_mean"]) == record["metric_mean"]["score"], name
        assert int(row["parameters"]) == record["parameters"], name
    assert int(rows["pmb:top:1"]["parameters"]) < int(rows["untrimmed"]["parameters"])
    assert int(rows["no-ffn:1+heal"]["parameters"]) < int(rows["untrimmed"]["parameters"])
    # Only the rows that trained report pre-training cost.
    assert float(rows["untrimmed"]["pretrain_device_hours"]) == 0 == float(rows["pmb:top:1"]["pretrain_device_hours"])
    assert float(rows["no-ffn:1+heal"]["pretrain_device_hours"]) > 0

    # Kept weights are the source's, exactly: PMB keeps block 0; no-ffn:1 keeps block 1's attention, not its FFN.
    source = _tensors(source_model)
    pruned = _tensors(out / "models" / "pmb_top_1")
    assert not any(name.startswith("encoder.layer.1.") for name in pruned)
    for name, value in pruned.items():
        np.testing.assert_array_equal(value, source[name])
    no_ffn = _tensors(out / "models" / "no-ffn_1")
    assert "encoder.layer.1.intermediate.dense.weight" not in no_ffn
    np.testing.assert_array_equal(no_ffn["encoder.layer.1.attention.self.query.weight"],
                                  source["encoder.layer.1.attention.self.query.weight"])

    # Healing: started from the trimmed folder, distilled from the untrimmed original's hidden states.
    from configs import schema as config_lib

    healed = config_lib.load(str(out / "pretrain" / "no-ffn_1+heal" / "config.yaml"))
    assert healed.pretrain.distill.teacher == str(source_model) and healed.pretrain.distill.objective == "hidden"
    assert healed.trim.ffn_blocks == (0,) and sum(phase.steps for phase in healed.pretrain.phases) == 2
    log = capsys.readouterr().out
    assert f"init from {out / 'models' / 'no-ffn_1'}" in log
    # The student is extracted from the source by weight selection, then distilled from it.
    assert log.count(f"init from {source_model}") == 1
    student_config = config_lib.load(str(out / "pretrain" / folders[f"student:{student}"] / "config.yaml"))
    assert student_config.pretrain.distill.teacher == str(source_model)

    # Resume: as if killed while fine-tuning one row, a rerun redoes only that; no pre-training is redone.
    (out / "runs" / "pmb_top_1" / "rte" / "result.json").unlink()
    summary = out / "pretrain" / "no-ffn_1+heal" / "summary.json"
    kept = {path: path.stat().st_mtime_ns for path in [summary, out / "runs" / "untrimmed" / "rte" / "result.json"]}
    assert cli.main(arguments) == 0
    assert (out / "runs" / "pmb_top_1" / "rte" / "result.json").is_file()
    assert kept == {path: path.stat().st_mtime_ns for path in kept}
    assert _rows(out)["untrimmed"] == rows["untrimmed"]
    # A changed recipe is refused, naming the field.
    capsys.readouterr()
    assert cli.main([*arguments, "--set", "finetune.learning_rate=1e-3"]) == 2
    assert "config.finetune.learning_rate" in capsys.readouterr().err


@pytest.mark.slow  # 2 pre-training runs and 6 fine-tuning runs: 1-6 min
def test_from_scratch_every_row_pretrains_on_the_same_budget_beside_random_init(source_model, packed_data, tmp_path,
                                                                                capsys):
    from configs import schema as config_lib
    from pipeline.cli import main as cli

    out = tmp_path / "scratch"
    arguments = ["study", "trims", "--config", "tiny", "--tasks", "rte,mrpc",
                 "--trims", "untrimmed,trimbert,random-init",
                 "--data", str(packed_data), "--glue-dir", str(FIXTURE_GLUE), "--out", str(out),
                 "--init", str(source_model), *_sets(SMALL + RECIPE)]
    assert cli.main(arguments) == 0
    # The pre-trained rows start from --init (the trimbert row without its removed FFN weights); random-init not.
    log = capsys.readouterr().out
    assert log.count(f"init from {source_model}") == 2
    rows = _rows(out)
    assert list(rows) == ["untrimmed", "trimbert", "random-init"]
    for name in ("untrimmed", "trimbert"):
        summary = json.loads((out / "pretrain" / name / "summary.json").read_text())
        assert summary["steps"] == 2 and float(rows[name]["pretrain_device_hours"]) > 0
    trimmed = config_lib.load(str(out / "pretrain" / "trimbert" / "config.yaml"))
    assert trimmed.trim.ffn_blocks == (0,) and trimmed.trim.attention_normalizer == "relu"
    assert float(rows["random-init"]["pretrain_device_hours"]) == 0
    assert (out / "models" / "random-init" / "config.json").is_file()
    assert int(rows["trimbert"]["parameters"]) < int(rows["untrimmed"]["parameters"]) == \
        int(rows["random-init"]["parameters"])
    record = json.loads((out / "runs" / "trimbert" / "mrpc" / "result.json").read_text())
    assert float(rows["trimbert"]["mrpc_std"]) == record["metric_std"]["score"] and record["seeds"] == [1]
    table = (out / "trims.md").read_text()
    assert "| trimbert |" in table and "beats random-init" not in table  # one seed: no claim
    assert "against random-init the spread is unknown with 1 seed (at least 3 needed)" in table
    assert (out / "trims.png").stat().st_size > 0


def test_rows_that_need_data_or_a_source_are_refused_before_anything_runs(tmp_path, capsys):
    from pipeline.cli import main as cli

    base = ["study", "trims", "--config", "tiny", "--tasks", "rte", "--out", str(tmp_path / "out")]
    assert cli.main([*base, "--trims", "pmb:top:1"]) == 2
    assert "give --from" in capsys.readouterr().err
    assert cli.main([*base, "--trims", "trimbert"]) == 2
    assert "give --data" in capsys.readouterr().err
    assert cli.main([*base, "--trims", "random-init"]) == 2  # no pre-training, but no vocabulary either
    assert "needs a vocabulary: give --data" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
