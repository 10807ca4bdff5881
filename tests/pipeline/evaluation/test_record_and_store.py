"""Result records (summaries, JSON round trip) and the store's exactly-once rule."""

import json
import multiprocessing
import os
import pathlib
import time

import pytest

from configs.errors import TrimbertError
from pipeline.evaluation import record as result_record
from pipeline.evaluation.store import ResultStore

STARTED = "2026-01-01T00:00:00+00:00"


def _record(checkpoint="ckpt", task="rte", scores=(0.5,)) -> result_record.ResultRecord:
    seed_results = [result_record.SeedResult(seed, {"accuracy": score, "score": score})
                    for seed, score in enumerate(scores, start=1)]
    return result_record.make_record(checkpoint, "tiny", 1000, task, seed_results, finetune_seconds=7200.0,
                               devices=2, started_at=STARTED, finished_at=STARTED)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


def test_make_record_mean_std_and_best_seed(tmp_path):
    seed_results = [
        result_record.SeedResult(1, {"accuracy": 0.60, "score": 0.60}, {"accuracy": 0.55, "score": 0.55}),
        result_record.SeedResult(2, {"accuracy": 0.70, "score": 0.70}, {"accuracy": 0.68, "score": 0.68}),
        result_record.SeedResult(3, {"accuracy": 0.65, "score": 0.65}, {"accuracy": 0.61, "score": 0.61}),
    ]
    record = result_record.make_record(tmp_path / "model", "tiny", 4_385_920, "sentiment-movies", seed_results,
                                 finetune_seconds=5400.0, devices=2, started_at=STARTED,
                                 inference_latency_ms=3.5)
    # mean (0.60 + 0.70 + 0.65) / 3 = 0.65; deviations -.05, .05, 0 -> sample var (.0025*2)/2 -> std .05
    assert record.metric_mean["accuracy"] == pytest.approx(0.65)
    assert record.metric_std["accuracy"] == pytest.approx(0.05)
    assert record.test_metric_mean["accuracy"] == pytest.approx((0.55 + 0.68 + 0.61) / 3)
    assert record.best_seed == 2 and record.best.test_metrics["accuracy"] == 0.68
    assert record.seeds == [1, 2, 3]
    assert record.finetune_accelerator_hours == pytest.approx(2 * 5400 / 3600)  # 3.0
    assert record.pretrain_accelerator_hours is None
    assert record.inference_latency_ms == 3.5


def test_single_seed_has_zero_std_and_ties_keep_the_first_seed():
    record = _record(scores=(0.5,))
    assert record.metric_std == {"accuracy": 0.0, "score": 0.0}
    assert _record(scores=(0.7, 0.7)).best_seed == 1


def test_pretrain_hours_come_from_summary_next_to_or_above_the_checkpoint(tmp_path):
    run = tmp_path / "pretrain_run"
    checkpoint = run / "checkpoints" / "ckpt-1000.weights.h5"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("weights")
    (run / "summary.json").write_text(json.dumps({"accelerator_hours": 1.25, "steps": 1000}))
    assert result_record.read_pretrain_accelerator_hours(checkpoint) == 1.25
    assert _record(checkpoint=checkpoint).pretrain_accelerator_hours == 1.25
    (checkpoint.parent / "summary.json").write_text(json.dumps({"accelerator_hours": 0.5}))
    assert result_record.read_pretrain_accelerator_hours(checkpoint) == 0.5  # the nearest wins
    (checkpoint.parent / "summary.json").write_text("{not json")
    with pytest.raises(TrimbertError, match="cannot read the pre-training summary"):
        result_record.read_pretrain_accelerator_hours(checkpoint)


def test_json_round_trip(tmp_path):
    record = _record(scores=(0.5, 0.75))
    path = record.save(tmp_path / "out" / result_record.RESULT_FILENAME)
    assert json.loads(path.read_text())["seeds"] == [1, 2]
    assert result_record.ResultRecord.load(path) == record
    (tmp_path / "bad.json").write_text(json.dumps({"task": "rte"}))
    with pytest.raises(TrimbertError, match=r"bad.json: not a result record \(missing fields: checkpoint"):
        result_record.ResultRecord.load(tmp_path / "bad.json")


# ---------------------------------------------------------------------------
# Store
# ---------------------------------------------------------------------------


def test_completed_pairs_are_never_claimed_again_even_after_restart(tmp_path):
    database = tmp_path / "results.sqlite"
    with ResultStore(database) as store:
        claims = store.claim_pending(["a", "b"], ["rte", "cola"], owner="first")
        assert [(c.checkpoint, c.task, c.attempt) for c in claims] == [
            ("a", "rte", 1), ("a", "cola", 1), ("b", "rte", 1), ("b", "cola", 1)]
        assert store.claim_pending(["a", "b"], ["rte", "cola"], owner="second") == []  # all leased
        for claim in claims:
            assert store.complete(claim, _record(claim.checkpoint, claim.task))
    with ResultStore(database) as restarted:
        assert restarted.claim_pending(["a", "b"], ["rte", "cola"], owner="third") == []
        assert sorted((r.checkpoint, r.task) for r in restarted.results()) == [
            ("a", "cola"), ("a", "rte"), ("b", "cola"), ("b", "rte")]
        # a new checkpoint shows up: only its pairs are pending
        new = restarted.claim_pending(["a", "b", "c"], ["rte", "cola"], owner="third", limit=1)
        assert [(c.checkpoint, c.task) for c in new] == [("c", "rte")]


def test_failure_is_recorded_and_retried_on_the_next_pass(tmp_path):
    with ResultStore(tmp_path / "results.sqlite") as store:
        pass_started = time.time()
        (claim,) = store.claim_pending(["a"], ["rte"], owner="w", pass_started=pass_started)
        assert store.fail(claim, "ValueError: loss is NaN")
        (row,) = store.rows()
        assert (row.status, row.error, row.attempts) == ("failed", "ValueError: loss is NaN", 1)
        assert store.claim_pending(["a"], ["rte"], owner="w", pass_started=pass_started) == []  # same pass
        (retry,) = store.claim_pending(["a"], ["rte"], owner="w", pass_started=time.time())  # next pass
        assert retry.attempt == 2
        assert store.complete(retry, _record("a", "rte"))
        assert store.claim_pending(["a"], ["rte"], owner="w") == []
        assert store.rows()[0].status == "done" and store.rows()[0].error is None


def test_lost_lease_cannot_overwrite_the_new_owner(tmp_path):
    database = tmp_path / "results.sqlite"
    with ResultStore(database, lease_seconds=0.2) as slow, ResultStore(database) as other:
        (stale,) = slow.claim_pending(["a"], ["rte"], owner="slow")
        assert slow.heartbeat(stale)
        time.sleep(0.3)
        (fresh,) = other.claim_pending(["a"], ["rte"], owner="other")
        assert fresh.attempt == 2
        assert not slow.heartbeat(stale)
        assert not slow.complete(stale, _record("a", "rte", scores=(0.1,)))
        assert other.complete(fresh, _record("a", "rte", scores=(0.9,)))
        assert [r.score for r in other.results()] == [0.9]


def test_keep_alive_holds_the_lease_while_work_runs(tmp_path):
    database = tmp_path / "results.sqlite"
    with ResultStore(database, lease_seconds=0.3) as worker, ResultStore(database) as rival:
        (claim,) = worker.claim_pending(["a"], ["rte"], owner="worker")
        with worker.keep_alive(claim, interval=0.05) as lost:
            time.sleep(0.6)  # twice the lease
            assert rival.claim_pending(["a"], ["rte"], owner="rival") == []
        assert not lost.is_set()
        assert worker.complete(claim, _record("a", "rte"))


def _crash_after_claiming(database: str) -> None:
    store = ResultStore(pathlib.Path(database), lease_seconds=0.5)
    store.claim_pending(["a"], ["rte"], owner=f"crashing-{os.getpid()}")
    os._exit(1)  # a watcher killed mid-evaluation: no complete, no fail


def test_crashed_watchers_claim_expires_and_is_retried(tmp_path):
    database = tmp_path / "results.sqlite"
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_crash_after_claiming, args=(str(database),))
    process.start()
    process.join(60)
    assert process.exitcode == 1
    with ResultStore(database) as store:
        assert store.claim_pending(["a"], ["rte"], owner="survivor") == []  # lease still valid
        time.sleep(0.6)
        (claim,) = store.claim_pending(["a"], ["rte"], owner="survivor")
        assert claim.attempt == 2
        assert store.complete(claim, _record("a", "rte"))
    with ResultStore(database) as restarted:
        assert restarted.claim_pending(["a"], ["rte"], owner="later") == []
        assert len(restarted.results()) == 1


CHECKPOINTS = [f"step-{step}" for step in range(0, 6000, 1000)]
TASKS = ["cola", "sst2", "mrpc", "rte"]


def _watch(database: str, owner: str, log: str, barrier) -> None:
    store = ResultStore(pathlib.Path(database), lease_seconds=30.0)
    barrier.wait()
    with open(log, "a") as handle:
        while claims := store.claim_pending(CHECKPOINTS, TASKS, owner, limit=1, pass_started=time.time()):
            for claim in claims:
                handle.write(f"{claim.checkpoint}\t{claim.task}\n")  # "evaluated" by this watcher
                handle.flush()
                time.sleep(0.01)
                assert store.complete(claim, _record(claim.checkpoint, claim.task))
    store.close()


def test_two_concurrent_watchers_evaluate_each_pair_exactly_once(tmp_path):
    database = tmp_path / "results.sqlite"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    logs = [tmp_path / f"watcher-{number}.log" for number in range(2)]
    processes = [context.Process(target=_watch, args=(str(database), f"watcher-{number}", str(log), barrier))
                 for number, log in enumerate(logs)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0]
    evaluated = [tuple(line.split("\t")) for log in logs for line in log.read_text().splitlines()]
    expected = [(checkpoint, task) for checkpoint in CHECKPOINTS for task in TASKS]
    assert sorted(evaluated) == sorted(expected)  # each pair once: no duplicates, none missing
    assert all(log.read_text() for log in logs)  # both watchers did part of the work
    with ResultStore(database) as store:
        assert sorted((r.checkpoint, r.task) for r in store.results()) == sorted(expected)
        assert {row.attempts for row in store.rows()} == {1}


def test_fine_tuning_devices_are_recorded_and_older_records_still_load(tmp_path):
    seeds = [result_record.SeedResult(1, {"accuracy": 0.5, "score": 0.5})]
    on_gpus = result_record.make_record("ckpt", "tiny", 10, "rte", seeds, finetune_seconds=1800.0, devices=2,
                                        started_at="2026-01-01T00:00:00+00:00", device_kind="GPU: A100")
    assert (on_gpus.finetune_device_kind, on_gpus.finetune_device_count) == ("GPU: A100", 2)
    assert on_gpus.finetune_accelerator_hours == on_gpus.finetune_gpu_hours == 1.0
    on_cpu = result_record.make_record("ckpt", "tiny", 10, "rte", seeds, finetune_seconds=1800.0, devices=2,
                                       started_at="2026-01-01T00:00:00+00:00", device_kind="CPU: x")
    assert on_cpu.finetune_accelerator_hours == 1.0 and on_cpu.finetune_gpu_hours is None
    older = on_cpu.to_dict()
    for field in ("finetune_device_kind", "finetune_device_count", "finetune_gpu_hours"):
        del older[field]  # written before devices were recorded
    (tmp_path / "result.json").write_text(json.dumps(older))
    assert result_record.ResultRecord.load(tmp_path / "result.json").finetune_device_kind is None
