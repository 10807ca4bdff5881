"""The config system: shipped files, inheritance, overrides, and errors that name field and file."""

import pytest

from configs import schema as config_lib
from models import params
from pipeline.cli.main import main

BERT_BASE_PARAMETERS = 109_482_240  # docs/papers.md
FFN_PARAMETERS = 4_722_432
ATTENTION_PARAMETERS = 2_362_368
LAYERNORM_PARAMETERS = 2 * 768


@pytest.mark.parametrize("name", config_lib.shipped_names())
def test_every_shipped_config_loads_and_validates(name):
    config = config_lib.load(name)
    assert config.name == name
    assert params.count_parameters(config).total > 0


def test_bert_base_count_matches_reference():
    config = config_lib.load("bert_base")
    count = params.count_parameters(config)
    assert count.total == BERT_BASE_PARAMETERS
    assert params.attention_parameters(768) == ATTENTION_PARAMETERS
    assert params.feedforward_parameters(768, 3072) == FFN_PARAMETERS


def test_trims_remove_exactly_their_parameters():
    no_ffn = params.count_parameters(config_lib.load("trimbert_no_ffn")).total
    assert no_ffn == BERT_BASE_PARAMETERS - 12 * (FFN_PARAMETERS + LAYERNORM_PARAMETERS)
    half_ln = params.count_parameters(config_lib.load("trimbert_half_ln")).total
    assert half_ln == BERT_BASE_PARAMETERS - 12 * LAYERNORM_PARAMETERS
    relu = params.count_parameters(config_lib.load("trimbert_relu")).total
    assert relu == BERT_BASE_PARAMETERS  # a normaliser has no weights
    pmb = params.count_parameters(config_lib.load("pmb_6l"))
    assert len(pmb.blocks) == 6
    block = ATTENTION_PARAMETERS + FFN_PARAMETERS + 2 * LAYERNORM_PARAMETERS
    assert pmb.total == BERT_BASE_PARAMETERS - 6 * block


def test_base_inheritance_overrides_only_what_differs():
    large = config_lib.load("bert_large")
    base = config_lib.load("bert_base")
    assert (large.model.num_layers, large.model.hidden_dim, large.model.num_heads) == (24, 1024, 16)
    assert large.model.vocabulary_size == base.model.vocabulary_size
    assert large.pretrain.phases == base.pretrain.phases


def test_bort_matches_released_shape():
    bort = config_lib.load("bort").model
    assert (bort.num_layers, bort.num_heads, bort.hidden_dim, bort.intermediate_dim) == (4, 8, 1024, 768)
    assert bort.layer_norm_epsilon == pytest.approx(1e-5)


def test_overrides_parse_yaml_values():
    config = config_lib.load("tiny", ["model.num_layers=3", "trim.ffn_blocks=[0, 2]",
                                      "pretrain.learning_rate=5e-4", "trim.attention_normalizer=sigmoid",
                                      "pretrain.phases=[{steps: 7, seq_len: 64, batch_size: 4}]"])
    assert config.model.num_layers == 3
    assert config.trim.ffn_blocks == (0, 2)
    assert config.pretrain.learning_rate == pytest.approx(5e-4)
    assert config.trim.attention_normalizer == "sigmoid"
    assert config.pretrain.phases == (config_lib.PhaseConfig(steps=7, seq_len=64, batch_size=4),)


def test_configs_are_frozen():
    config = config_lib.load("tiny")
    with pytest.raises(AttributeError):
        config.model.num_layers = 5  # type: ignore[misc]


@pytest.mark.parametrize("yaml_text, message", [
    ("model:\n  num_layer: 2\n", "unknown field 'model.num_layer'"),
    ("modle:\n  num_layers: 2\n", "unknown field 'modle'"),
    ("model:\n  num_layers: two\n", "field 'model.num_layers' must be an integer"),
    ("model:\n  num_layers: true\n", "field 'model.num_layers' must be an integer"),
    ("model:\n  dropout: lots\n", "field 'model.dropout' must be a number"),
    ("model:\n  use_pooler: 1\n", "field 'model.use_pooler' must be true or false"),
    ("data:\n  whole_word_mask: words\n", "field 'data.whole_word_mask' must be true or false"),
    ("trim:\n  attention_normalizer: tanh\n", "field 'trim.attention_normalizer' must be one of"),
    ("trim:\n  ffn_blocks: 3\n", "field 'trim.ffn_blocks' must be a list"),
    ("trim:\n  ffn_blocks: [0, x]\n", "field 'trim.ffn_blocks[1]' must be an integer"),
    ("pretrain:\n  phases: [{steps: 1, seq_len: 1, bogus: 2}]\n", "unknown field 'pretrain.phases[0].bogus'"),
    ("model:\n  hidden_dim: 100\n  num_heads: 3\n", "must be divisible by model.num_heads"),
    ("trim:\n  ffn_blocks: [0, 12]\n", "trim.ffn_blocks has block indices [12] outside 0..11"),
    ("trim:\n  drop_layers: [0, 0]\n", "trim.drop_layers repeats a block index"),
    ("data:\n  seq_len: 1024\n", "data.seq_len (1024) exceeds model.max_sequence_length"),
    ("pretrain:\n  eval_every: 0\n", "pretrain.eval_every and eval_examples must be >= 1"),
    ("pretrain:\n  eval_examples: 0\n", "pretrain.eval_every and eval_examples must be >= 1"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("model: [\n", "not valid YAML"),
])
def test_bad_config_names_field_and_file(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.load(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_bad_override_is_named():
    with pytest.raises(config_lib.ConfigError, match="unknown field 'model.depth'"):
        config_lib.load("tiny", ["model.depth=3"])
    with pytest.raises(config_lib.ConfigError, match="expected section.field=value"):
        config_lib.load("tiny", ["model.num_layers"])


def test_base_file_missing_and_loop(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(config_lib.ConfigError, match="loops back"):
        config_lib.load(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(config_lib.ConfigError, match="base file not found: nowhere.yaml"):
        config_lib.load(tmp_path / "c.yaml")


def test_missing_config_file_lists_shipped_ones():
    with pytest.raises(config_lib.ConfigError, match="config file not found: no_such.*bert_base"):
        config_lib.load("no_such")


def test_dump_round_trips(tmp_path):
    config = config_lib.load("trimbert")
    path = tmp_path / "dumped.yaml"
    path.write_text(config_lib.dump(config))
    assert config_lib.load(path) == config


def test_cli_config_show_prints_count_and_fails_cleanly(capsys, tmp_path):
    assert main(["config", "show", "bert_base"]) == 0
    shown = capsys.readouterr().out
    assert "# parameters: 109,482,240" in shown and "  whole_word_mask: false\n" in shown
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  width: 3\n")
    assert main(["config", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown field 'model.width'" in err and str(bad) in err
