"""Poor Man's BERT pruning: every strategy's choice, exact weights, contribution, the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from configs import schema as config_module
from configs.errors import TrimbertError
from models import build_encoder, from_pretrained, save_pretrained
from models.params import count_parameters
from models.prune import drop_blocks, layer_similarities, layers_to_drop, prune
from pipeline.cli import main as cli

SAMPLE = [
    "the quick brown fox jumps over the lazy dog",
    "markets rallied on friday",
    "a quiet evening by the river",
    "she wrote three letters to her sister",
]


def tiny_config(num_layers: int = 4, *overrides: str) -> config_module.Config:
    return config_module.load(
        "tiny",
        [
            "model.hidden_dim=16",
            "model.num_heads=2",
            "model.intermediate_dim=24",
            f"model.num_layers={num_layers}",
            "model.dropout=0.0",
            *overrides,
        ],
    )


def sample_inputs(count: int = 4, length: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((count, length), "int32")
    mask[0, 6:] = 0
    return {
        "token_ids": rng.integers(1000, 30000, (count, length)).astype("int32"),
        "segment_ids": np.zeros((count, length), "int32"),
        "padding_mask": mask,
    }


@pytest.mark.parametrize(
    "strategy, drop, expected",
    [
        ("top", 4, (8, 9, 10, 11)),
        ("bottom", 4, (0, 1, 2, 3)),
        # The paper numbers layers 1..12 from the bottom: its odd layers 11, 9, 7, 5 are indices 10, 8, 6, 4.
        ("alternate-odd", 4, (4, 6, 8, 10)),
        ("alternate-even", 4, (5, 7, 9, 11)),
        ("symmetric", 4, (4, 5, 6, 7)),
        ("symmetric", 6, (3, 4, 5, 6, 7, 8)),
        ("top", 6, (6, 7, 8, 9, 10, 11)),
    ],
)
def test_positional_strategies_pick_the_right_layers(strategy, drop, expected):
    assert layers_to_drop(strategy, 12, drop) == expected


def test_indices_and_contribution_choices():
    assert layers_to_drop("indices", 12, None, indices=(11, 9, 10)) == (9, 10, 11)
    similarities = [0.5, 0.9, 0.7, 0.99, 0.6, 0.1]
    assert layers_to_drop("contribution", 6, 2, similarities=similarities) == (1, 3)


def test_contribution_threshold_drops_every_block_at_least_that_similar():
    similarities = [0.5, 0.9, 0.7, 0.99, 0.6, 0.1]
    assert layers_to_drop("contribution", 6, None, similarities=similarities, threshold=0.7) == (1, 2, 3)
    with pytest.raises(TrimbertError, match="--threshold 0.01 selects 6 of 6 blocks"):
        layers_to_drop("contribution", 6, None, similarities=similarities, threshold=0.01)
    with pytest.raises(TrimbertError, match="not both"):
        layers_to_drop("contribution", 6, 2, similarities=similarities, threshold=0.7)
    with pytest.raises(TrimbertError, match="contribution' only"):
        layers_to_drop("top", 6, None, threshold=0.7)


def test_prune_help_lists_the_paper_layers_each_strategy_drops(capsys):
    with pytest.raises(SystemExit):
        cli.main(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for expected in ("top drops 9,10,11,12", "bottom drops 1,2,3,4", "alternate-odd drops 5,7,9,11",
                     "alternate-even drops 6,8,10,12", "symmetric drops 5,6,7,8", "--threshold"):
        assert expected in text


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("top", 12, 12), "--drop"),
        (("top", 12, 0), "--drop"),
        (("sideways", 12, 2), "unknown prune strategy"),
        (("alternate-even", 3, 2), "paper's even layers of 3: there are only 1"),
        (("indices", 12, 2, (1,)), "disagrees"),
        (("indices", 12, None, (12,)), "within"),
        (("contribution", 12, 2), "similarity"),
    ],
)
def test_bad_requests_raise(arguments, message):
    with pytest.raises(TrimbertError, match=message):
        layers_to_drop(*arguments)


def test_kept_blocks_keep_exact_weights():
    config = tiny_config(5, "trim.ffn_blocks=[0,1,4]", "trim.attention_layernorm_blocks=[3]")
    encoder = build_encoder(config)
    pruned = drop_blocks(encoder, (1, 2))
    assert [len(block.weights) for block in pruned.blocks] == [
        len(encoder.blocks[i].weights) for i in (0, 3, 4)
    ]
    for position, source in enumerate((0, 3, 4)):
        pairs = zip(pruned.blocks[position].get_weights(), encoder.blocks[source].get_weights(), strict=True)
        for new, old in pairs:
            np.testing.assert_array_equal(new, old)
    for new, old in zip(
        pruned.embeddings.get_weights() + pruned.pooler.get_weights(),
        encoder.embeddings.get_weights() + encoder.pooler.get_weights(),
        strict=True,
    ):
        np.testing.assert_array_equal(new, old)
    assert pruned.count_params() == count_parameters(pruned.to_config()).total
    assert pruned.trim_config.ffn_blocks == (0, 2) and pruned.trim_config.attention_layernorm_blocks == (1,)


def test_pruned_equals_config_dropping_the_same_layers():
    encoder = build_encoder(tiny_config(4))
    result = prune(encoder, "top", 2)
    assert result.kept == (0, 1) and result.dropped == (2, 3)
    # Running the kept blocks by hand on the source gives the pruned encoder's output.
    batch = sample_inputs()
    hidden = encoder.embeddings(batch["token_ids"], batch["segment_ids"])
    for block in encoder.blocks[:2]:
        hidden = block(hidden, batch["padding_mask"])
    np.testing.assert_allclose(
        np.asarray(result.encoder(batch)["sequence_output"]), np.asarray(hidden), atol=1e-6
    )
    assert result.parameters_before == count_parameters(tiny_config(4)).total
    assert result.parameters_after == result.encoder.count_params() < result.parameters_before


def make_identity(block) -> None:
    """Zero the attention and feed-forward output projections: the block then only re-applies
    its layernorms to an already normalised input, so its output equals its input."""
    for dense in (block.self_attention.output_dense, block.feedforward.output_dense):
        for variable in dense.weights:
            variable.assign(np.zeros(variable.shape, "float32"))


def test_contribution_drops_the_identity_block_first():
    encoder = build_encoder(tiny_config(4))
    make_identity(encoder.blocks[2])
    similarities = layer_similarities(encoder, sample_inputs())
    assert similarities[2] > 0.9999 and similarities.argmax() == 2
    result = prune(encoder, "contribution", 1, sample_inputs=sample_inputs())
    assert result.dropped == (2,) and result.kept == (0, 1, 3)
    with pytest.raises(TrimbertError, match="sample"):
        prune(encoder, "contribution", 1)


def test_prune_command_writes_a_loadable_model(tmp_path, vocab_path, capsys):
    encoder = build_encoder(tiny_config(4))
    make_identity(encoder.blocks[1])
    source = save_pretrained(encoder, tmp_path / "source", vocabulary_path=vocab_path)
    sample = tmp_path / "sample.txt"
    sample.write_text("\n".join(SAMPLE) + "\n")
    out = tmp_path / "pruned"
    code = cli.main(
        [
            "prune",
            "--from",
            str(source),
            "--strategy",
            "contribution",
            "--drop",
            "1",
            "--sample",
            str(sample),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "kept blocks [0, 2, 3]" in printed and "dropped blocks [1]" in printed
    before, after = count_parameters(tiny_config(4)).total, count_parameters(tiny_config(3)).total
    assert f"{before:,} before, {after:,} after" in printed
    loaded = from_pretrained(out)
    assert len(loaded.blocks) == 3 and (out / "vocab.txt").is_file()
    np.testing.assert_array_equal(loaded.blocks[1].get_weights()[0], encoder.blocks[2].get_weights()[0])

    assert (
        cli.main(
            [
                "prune",
                "--from",
                str(source),
                "--strategy",
                "indices",
                "--indices",
                "0,3",
                "--out",
                str(tmp_path / "indices"),
            ]
        )
        == 0
    )
    assert "kept blocks [1, 2]" in capsys.readouterr().out
    assert (
        cli.main(
            [
                "prune",
                "--from",
                str(source),
                "--strategy",
                "contribution",
                "--drop",
                "1",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "--sample" in capsys.readouterr().err
