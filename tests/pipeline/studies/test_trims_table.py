"""The trims table's held-out MLM column, and a study.json written before the evaluation settings resuming."""

from __future__ import annotations

import csv
import dataclasses
import json
import types

import pytest

from configs import schema as config_lib
from configs.errors import TrimbertError
from pipeline.studies import bookkeeping, trim_specs, trims, trims_table


def _record(score: float, seeds=(1, 2, 3), std: float = 0.01) -> types.SimpleNamespace:
    """The fields of a fine-tuning ``ResultRecord`` the table reads."""
    return types.SimpleNamespace(parameters=1000, finetune_accelerator_hours=0.01,
                                 serving_latency={1: 1.5, 32: 0.5}.get,
                                 metric_mean={"score": score}, metric_std={"score": std}, test_metric_mean={},
                                 seeds=list(seeds))


@pytest.mark.parametrize("seeds", [(1,), (1, 2), (1, 2, 3)])
def test_a_win_over_random_init_is_claimed_only_with_three_seeds(seeds):
    """With one seed every std is 0, so any positive difference would read as "> 2 std"."""
    config = config_lib.load("tiny")
    std = 0.0 if len(seeds) == 1 else 0.01
    rows = [trims_table.make_row(trim_specs.parse(name), trims.RowModel("path", config, None),
                                 {"rte": _record(score, seeds, std)}, 64)
            for name, score in (("untrimmed", 0.65), ("random-init", 0.60))]
    (untrimmed, _) = trims_table.findings(rows)
    if len(seeds) >= 3:
        assert "beats random-init by > 2 std on 1 of 1 tasks" in untrimmed
    else:
        assert "beats" not in untrimmed
        assert f"the spread is unknown with {len(seeds)} seed" in untrimmed


def test_the_heldout_column_shows_pretrained_rows_and_stays_blank_for_the_others(tmp_path):
    config = config_lib.load("tiny")
    summaries = {"untrimmed": {"device_hours": 0.5, "heldout_mlm_loss": 6.25, "heldout_mlm_accuracy": 0.1234},
                 "trimbert": {"device_hours": 0.4},  # pre-trained on data without held-out shards, or before
                 "random-init": None}  # not pre-trained
    rows = [trims_table.make_row(trim_specs.parse(name), trims.RowModel("path", config, summary),
                                 {"rte": _record(0.6)}, 64) for name, summary in summaries.items()]
    assert [(row.heldout_mlm_loss, row.heldout_mlm_accuracy) for row in rows] == [(6.25, 0.1234), (None, None),
                                                                                  (None, None)]
    study = types.SimpleNamespace(config=config, source=None)
    trims_table.write_table(rows, str(tmp_path), study)
    table = (tmp_path / "trims.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| row"))
    column = [cell.strip() for cell in header.split("|")].index("held-out MLM acc")
    cells = {line.split("|")[1].strip(): line.split("|")[column].strip() for line in table
             if line.startswith("| ") and line.split("|")[1].strip() in summaries}
    assert cells == {"untrimmed": "12.3", "trimbert": "", "random-init": ""}
    written = {row["name"]: row for row in csv.DictReader(open(tmp_path / "trims.csv"))}
    assert (written["untrimmed"]["heldout_mlm_accuracy"], written["trimbert"]["heldout_mlm_accuracy"]) == \
        ("0.1234", "")
    assert json.loads((tmp_path / "trims.json").read_text())["rows"][0]["heldout_mlm_loss"] == 6.25


def test_a_study_written_before_newer_config_fields_resumes(tmp_path):
    config = config_lib.load("tiny")
    study = trims.TrimStudy(config=config, specs=(trim_specs.parse("untrimmed"),), tasks=("rte",))
    # study.json as written before the evaluation settings and the data section's packing and
    # whole-word masking existed.
    older = json.loads(json.dumps(study.signature()))
    for section, field in (("pretrain", "eval_every"), ("pretrain", "eval_examples"), ("data", "packing"),
                           ("data", "whole_word_mask")):
        del older["config"][section][field]
    (tmp_path / bookkeeping.STUDY_FILENAME).write_text(json.dumps(older))
    bookkeeping.check_study_folder(str(tmp_path), study.signature(), study.signature_defaults())
    # A newer field set to something else than its default is a change: not mixed into the older study.
    for changed in (dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, eval_examples=64)),
                    dataclasses.replace(config, data=dataclasses.replace(config.data, packing="document"))):
        with pytest.raises(TrimbertError, match="config.(pretrain.eval_examples|data.packing)"):
            bookkeeping.check_study_folder(str(tmp_path), dataclasses.replace(study, config=changed).signature(),
                                           study.signature_defaults())
    # Without the defaults every field the file lacks is a change.
    with pytest.raises(TrimbertError, match="config.data.packing"):
        bookkeeping.check_study_folder(str(tmp_path), study.signature())
