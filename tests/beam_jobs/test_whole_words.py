"""Static whole-word masking (``beam_jobs.whole_words``): the positions Google's whole-word walk chooses,
no word ever partly masked, the budget, one 80/10/10 decision per word, and the ``bert`` job end to end."""

from __future__ import annotations

import collections
import json
import random

import numpy as np
import pytest

from beam_jobs import masking, whole_words

CLS, SEP, MASK = 2, 3, 4
# A vocabulary where 40% of the ids are continuation pieces, so words of 3-5 pieces are common.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(60)] + [f"##p{i}" for i in range(40)]
CONTINUATION = whole_words.continuation_table(VOCAB)


# ---------------------------------------------------------------------------
# Google's algorithm, transcribed from google-research/bert create_pretraining_data.py,
# create_masked_lm_predictions, with FLAGS.do_whole_word_mask = True. Only rng.shuffle is given the
# implementation's word order (the _SameOrder generator below); the rest is the published loop.
# ---------------------------------------------------------------------------

MaskedLmInstance = collections.namedtuple("MaskedLmInstance", ["index", "label"])


def google_create_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng):
    cand_indexes = []
    for (i, token) in enumerate(tokens):
        if token == "[CLS]" or token == "[SEP]":
            continue
        if len(cand_indexes) >= 1 and token.startswith("##"):
            cand_indexes[-1].append(i)
        else:
            cand_indexes.append([i])

    rng.shuffle(cand_indexes)

    output_tokens = list(tokens)

    num_to_predict = min(max_predictions_per_seq,
                         max(1, int(round(len(tokens) * masked_lm_prob))))

    masked_lms = []
    covered_indexes = set()
    for index_set in cand_indexes:
        if len(masked_lms) >= num_to_predict:
            break
        if len(masked_lms) + len(index_set) > num_to_predict:
            continue
        is_any_index_covered = False
        for index in index_set:
            if index in covered_indexes:
                is_any_index_covered = True
                break
        if is_any_index_covered:
            continue
        for index in index_set:
            covered_indexes.add(index)

            masked_token = None
            if rng.random() < 0.8:
                masked_token = "[MASK]"
            else:
                if rng.random() < 0.5:
                    masked_token = tokens[index]
                else:
                    masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]

            output_tokens[index] = masked_token

            masked_lms.append(MaskedLmInstance(index=index, label=tokens[index]))
    assert len(masked_lms) <= num_to_predict
    masked_lms = sorted(masked_lms, key=lambda x: x.index)

    masked_lm_positions = []
    masked_lm_labels = []
    for p in masked_lms:
        masked_lm_positions.append(p.index)
        masked_lm_labels.append(p.label)

    return (output_tokens, masked_lm_positions, masked_lm_labels)


class _SameOrder(random.Random):
    """A generator whose ``shuffle`` puts word ``j`` (of the list as built) in the place the
    implementation's order draw ``j`` gives it; its other draws are an ordinary generator's."""

    def __init__(self, word_draws: np.ndarray) -> None:
        super().__init__(0)
        self._draws = word_draws

    def shuffle(self, values) -> None:
        values[:] = [values[j] for j in sorted(range(len(values)), key=lambda j: int(self._draws[j]))]


def _instances(rows: int, seq_len: int, seed: int):
    """Random ``bert``-shaped instances over :data:`VOCAB`: lengths 5..seq_len, random segment split."""
    rng = np.random.default_rng(seed)
    length = rng.integers(5, seq_len + 1, rows)
    a_length = np.array([rng.integers(1, value - 3) for value in length])
    source = rng.integers(5, len(VOCAB), 4 * seq_len * rows)
    tokens = masking.assemble(source, rng.integers(0, 3 * seq_len * rows, rows), a_length,
                              rng.integers(0, 3 * seq_len * rows, rows), length - a_length - 3, seq_len, CLS, SEP)
    keys = rng.integers(0, 2**63, rows).astype(np.uint64)
    return tokens, a_length, length, keys


def _mask(tokens, a_length, length, keys, max_predictions, masked_lm_prob, vocabulary_size=30522):
    return whole_words.mask_batch(tokens, a_length, length, keys, continuation=CONTINUATION,
                                  max_predictions=max_predictions, masked_lm_prob=masked_lm_prob,
                                  mask_token_rate=0.8, random_token_rate=0.1, mask_id=MASK,
                                  vocabulary_size=vocabulary_size)


def test_chooses_the_positions_of_googles_whole_word_walk(google_word_groups):
    seq_len, cases = 64, collections.Counter()
    for masked_lm_prob, max_predictions, seed in [(0.15, 20, 1), (0.4, 6, 2), (0.3, 12, 3)]:
        tokens, a_length, length, keys = _instances(3000, seq_len, seed)
        masked = _mask(tokens, a_length, length, keys, max_predictions, masked_lm_prob)
        draws = whole_words.order_draws(keys, seq_len)
        for row in range(len(tokens)):
            strings = [VOCAB[token] for token in tokens[row, :length[row]]]
            _, positions, labels = google_create_masked_lm_predictions(
                strings, masked_lm_prob, max_predictions, VOCAB, _SameOrder(draws[row]))
            count = masked.counts[row]
            assert masked.positions[row, :count].tolist() == positions, (masked_lm_prob, row)
            assert [VOCAB[label] for label in masked.labels[row, :count]] == labels
            assert not masked.positions[row, count:].any() and not masked.labels[row, count:].any()
            # The cases this comparison must cover.
            budget = min(max_predictions, max(1, round(len(strings) * masked_lm_prob)))
            cases["max_predictions binds"] += round(len(strings) * masked_lm_prob) > max_predictions
            prefix = _prefix_walk(google_word_groups(strings), draws[row], budget)
            cases["a word skipped, a later one taken"] += prefix != positions
            cases["fewer than the budget"] += len(positions) < budget
            cases["## after [CLS]"] += strings[1].startswith("##")
            cases["## first in segment B"] += strings[a_length[row] + 2].startswith("##")
    assert min(cases.values()) >= 50 and len(cases) == 5, cases


def _prefix_walk(groups: list[list[int]], word_draws: np.ndarray, budget: int) -> list[int]:
    """The positions a walk over ``groups`` that stops at the first word that does not fit would choose."""
    taken: list[int] = []
    for j in sorted(range(len(groups)), key=lambda j: int(word_draws[j])):
        if len(taken) + len(groups[j]) > budget:
            break
        taken += groups[j]
    return sorted(taken)


def test_no_word_is_partly_masked_and_the_budget_holds(google_word_groups):
    tokens, a_length, length, keys = _instances(5000, 128, seed=11)
    masked = _mask(tokens, a_length, length, keys, max_predictions=20, masked_lm_prob=0.15)
    multi_piece = 0
    for row in range(len(tokens)):
        strings = [VOCAB[token] for token in tokens[row, :length[row]]]
        chosen = set(masked.positions[row, :masked.counts[row]].tolist())
        budget = min(20, max(1, round(len(strings) * 0.15)))
        assert len(chosen) == masked.counts[row] <= budget
        untaken = []
        for group in google_word_groups(strings):
            inside = chosen.intersection(group)
            assert not inside or inside == set(group), (row, group, sorted(chosen))
            multi_piece += len(inside) > 1
            if not inside:
                untaken.append(len(group))
        # Google's walk: a word left out did not fit in what the budget had left when it was visited.
        assert all(size > budget - len(chosen) for size in untaken)
    assert multi_piece > 1000


def test_one_replacement_decision_per_word(google_word_groups):
    tokens, a_length, length, keys = _instances(6000, 64, seed=5)
    masked = _mask(tokens, a_length, length, keys, max_predictions=20, masked_lm_prob=0.3)
    kinds, mixed, random_words, random_words_varied = collections.Counter(), 0, 0, 0
    for row in range(len(tokens)):
        strings = [VOCAB[token] for token in tokens[row, :length[row]]]
        chosen = set(masked.positions[row, :masked.counts[row]].tolist())
        for group in google_word_groups(strings):
            if not chosen.intersection(group):
                assert (masked.input_ids[row, group] == tokens[row, group]).all()
                continue
            after, before = masked.input_ids[row, group], tokens[row, group]
            # Random ids equal to [MASK] or to the original are 1 in 30,522 each: counted as mixed below.
            piece_kinds = {"mask" if new == MASK else "kept" if new == old else "random"
                           for new, old in zip(after, before, strict=True)}
            if len(piece_kinds) > 1:
                mixed += 1
                continue
            (kind,) = piece_kinds
            kinds[kind] += 1
            if kind == "random" and len(group) > 1:
                random_words += 1
                random_words_varied += len(set(after.tolist())) > 1
    words = sum(kinds.values())
    assert words > 20_000 and mixed <= words // 1000
    assert abs(kinds["mask"] / words - 0.8) < 0.015 and abs(kinds["kept"] / words - 0.1) < 0.015
    # One random id per piece, not one per word.
    assert random_words > 500 and random_words_varied >= random_words - 2


def test_masks_depend_on_the_instance_key_only():
    tokens, a_length, length, keys = _instances(400, 64, seed=3)
    masked = _mask(tokens, a_length, length, keys, 20, 0.15)
    again = _mask(tokens[::-1], a_length[::-1], length[::-1], keys[::-1], 20, 0.15)
    np.testing.assert_array_equal(again.input_ids[::-1], masked.input_ids)
    np.testing.assert_array_equal(again.positions[::-1], masked.positions)


def test_batcher_needs_the_vocabularys_continuation_pieces():
    from beam_jobs.instances import BertBatcher, SpecialIds
    from configs.schema import DataConfig

    config = DataConfig(format="bert", seq_len=64, max_predictions=10, whole_word_mask=True)
    with pytest.raises(ValueError, match="continuation pieces"):
        BertBatcher(config, SpecialIds(0, CLS, SEP, MASK, len(VOCAB)), 2, [])
    assert SpecialIds.from_tokens(VOCAB).continuation.tolist() == [token.startswith("##") for token in VOCAB]


def test_preprocess_whole_word_mask_writes_records_with_whole_words_masked(tmp_path, corpus_dir, vocab_path, capsys,
                                                                           google_word_groups):
    import os

    import tensorflow as tf

    from beam_jobs import features
    from pipeline.cli import main as cli

    text = (corpus_dir / sorted(os.listdir(corpus_dir))[0]).read_text(encoding="utf-8")[:40_000]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text[:text.rfind("\n\n")] + "\n", encoding="utf-8")
    output = tmp_path / "out"
    code = cli.main(["preprocess", "--input", str(corpus), "--output", str(output), "--vocab", str(vocab_path),
                     "--format", "bert", "--whole-word-mask", "--seq-len", "64", "--max-predictions", "10",
                     "--dupe-factor", "2", "--shards", "2", "--direct_running_mode=in_memory",
                     "--direct_num_workers=1"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["data_config"]["whole_word_mask"] is True
    vocab = vocab_path.read_text(encoding="utf-8").splitlines()
    spec = features.parsing_spec("bert", 64, 10)
    paths = [str(output / shard["name"]) for shard in manifest["shards"]]
    records = [tf.io.parse_single_example(raw, spec) for raw in tf.data.TFRecordDataset(paths)]
    assert len(records) == manifest["examples"] > 100
    multi_piece = 0
    for record in records:
        count = int(record["masked_lm_weights"].numpy().sum())
        length = int(record["input_mask"].numpy().sum())
        positions = record["masked_lm_positions"].numpy()[:count].tolist()
        # The original tokens: the input with the labels put back.
        original = record["input_ids"].numpy()[:length].copy()
        original[positions] = record["masked_lm_ids"].numpy()[:count]
        chosen = set(positions)
        assert count <= min(10, max(1, round(length * 0.15)))
        for group in google_word_groups([vocab[token] for token in original]):
            inside = chosen.intersection(group)
            assert not inside or inside == set(group)
            multi_piece += len(inside) > 1
    assert multi_piece > 20


def test_preprocess_whole_word_mask_on_packed_data_is_recorded_and_leaves_the_records_alone(tmp_path, vocab_path,
                                                                                             capsys):
    from pipeline.cli import main as cli

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Unbelievably, the tokenizer splits uncommon words. Preprocessing keeps them whole.\n\n" * 30)
    outputs = {}
    for flags in ([], ["--whole-word-mask"]):
        output = tmp_path / ("whole" if flags else "pieces")
        assert cli.main(["preprocess", "--input", str(corpus), "--output", str(output), "--vocab", str(vocab_path),
                         "--format", "packed", "--seq-len", "32", "--shards", "1", *flags,
                         "--direct_running_mode=in_memory", "--direct_num_workers=1"]) == 0, capsys.readouterr().err
        manifest = json.loads((output / "manifest.json").read_text())
        outputs[bool(flags)] = (manifest["data_config"]["whole_word_mask"],
                                [(output / shard["name"]).read_bytes() for shard in manifest["shards"]])
    assert outputs[False][0] is False and outputs[True][0] is True
    assert outputs[False][1] == outputs[True][1] and outputs[True][1][0]
