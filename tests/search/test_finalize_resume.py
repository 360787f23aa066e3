"""A finalize job cut by a crash (its scheduler SIGKILLed) and resumed by another holder, in the
driver without Ray (SQLite and PostgreSQL): what the crash lost is retrained under a new index,
the source trial's final status ends completed, and a crash loop ends after
``FINALIZE_CRASH_RETRIES`` retries with the source trial failed, saying why.

A crash is emulated in-process: the runner raises an exception the driver does not handle
(a BaseException), so nothing is written, as with SIGKILL; then ``interrupt_stale_jobs`` does
what a live scheduler does to a dead one's job (its in-flight trials failed "scheduler lost").
"""

from __future__ import annotations

import pytest
from test_driver import _job
from test_finalize import ShippingRunner

from sparsearch.jobconfig import mark_queued, plan_finalize
from sparsearch.search.driver import SearchDriver
from sparsearch.search.finalize import FINALIZE_CRASH_RETRIES
from sparsearch.vocabulary import CLAIMABLE_JOB_STATUSES


class _Crash(BaseException):
    """The process died: no handler of the driver runs."""


class CrashingRunner(ShippingRunner):
    """Dies (``_Crash``) at its first wait for a result, with every dispatched trial in flight."""

    def wait_one(self, refs, timeout=None):
        raise _Crash


def _searched_and_planned(storage, chosen):
    job, cfg = _job(storage, trials=4, parallel=1)  # parallel 1: one retraining at a time
    SearchDriver(storage, job.id, runner=ShippingRunner(ram_limit=cfg.limits.ram_bytes)).run()
    fcfg, _ = plan_finalize(storage, job.id, trials=chosen, epochs=2)
    fjob = storage.create_job(dataset=fcfg.dataset, config=fcfg.to_dict())
    mark_queued(storage, fjob)
    return job, cfg, fjob


def _crash(storage, fjob, cfg, n):
    """One holder claims the job, starts the next retraining and dies; another one notices."""
    assert storage.claim_next_job(CLAIMABLE_JOB_STATUSES, scheduler_id=f"dead:{n}:0") is not None
    with pytest.raises(_Crash):
        SearchDriver(storage, fjob.id, runner=CrashingRunner(ram_limit=cfg.limits.ram_bytes)).run()
    assert storage.interrupt_stale_jobs(stale_after=-60) == [fjob.id]


def _resume(storage, fjob, cfg, n):
    assert storage.claim_next_job(CLAIMABLE_JOB_STATUSES, scheduler_id=f"next:{n}:0") is not None
    runner = ShippingRunner(ram_limit=cfg.limits.ram_bytes)
    return SearchDriver(storage, fjob.id, runner=runner).run(), runner


def test_a_retraining_lost_to_a_crash_is_redone_under_a_new_index(storage):
    job, cfg, fjob = _searched_and_planned(storage, [2, 3])
    _crash(storage, fjob, cfg, 1)
    assert storage.get_trial(job.id, 2).final["status"] == "running"  # as the crash left it

    info, runner = _resume(storage, fjob, cfg, 1)
    assert info.status == "completed" and info.error is None
    assert len(runner.specs) == 2  # the lost retraining again, and the one never started
    for index in (2, 3):
        final = storage.get_trial(job.id, index).final
        assert final["status"] == "completed" and final["job"] == fjob.id, final
        assert final["int8_test_accuracy"] == 0.4
    assert storage.get_trial(job.id, 2).final["crashes"] == 1
    assert "crashes" not in storage.get_trial(job.id, 3).final
    trials = storage.list_trials(fjob.id)
    assert [t.index for t in trials] == [0, 1, 2]
    lost = trials[0]
    assert (lost.status, lost.charged) == ("failed", False)  # recorded, not counted
    assert lost.error.startswith("scheduler lost")
    assert [(t.status, t.charged) for t in trials[1:]] == [("completed", True)] * 2
    assert trials[1].params == lost.params  # the same retraining, under a new index
    assert storage.trial_counts([fjob.id])[fjob.id] == {"completed": 2, "uncharged": 1}


def test_a_holder_that_died_without_a_takeover_is_resumed_the_same_way(storage):
    """No stale-heartbeat takeover (a job without a holder, or resumed in place): the driver's
    own start-of-run clean-up finds the trial still running."""
    job, cfg, fjob = _searched_and_planned(storage, [2])
    with pytest.raises(_Crash):
        SearchDriver(storage, fjob.id, runner=CrashingRunner(ram_limit=cfg.limits.ram_bytes)).run()
    runner = ShippingRunner(ram_limit=cfg.limits.ram_bytes)
    assert SearchDriver(storage, fjob.id, runner=runner).run().status == "completed"
    assert len(runner.specs) == 1
    assert storage.get_trial(job.id, 2).final["status"] == "completed"
    assert [(t.status, t.charged) for t in storage.list_trials(fjob.id)] == [
        ("failed", False),
        ("completed", True),
    ]


def test_a_crash_loop_gives_up_on_the_trial_after_its_retries_and_says_why(storage):
    assert FINALIZE_CRASH_RETRIES == 2
    job, cfg, fjob = _searched_and_planned(storage, [2, 3])
    for n in range(FINALIZE_CRASH_RETRIES + 1):  # trial 2's retraining dies with each holder
        _crash(storage, fjob, cfg, n)
        final = storage.get_trial(job.id, 2).final
        assert final["status"] == "running" and final.get("crashes", 0) == n, final

    info, runner = _resume(storage, fjob, cfg, 9)
    assert info.status == "completed"  # as a search whose trials failed: the job ran its plan
    assert len(runner.specs) == 1  # trial 3 only: trial 2 is not retried a third time
    gave_up = storage.get_trial(job.id, 2).final
    assert gave_up["status"] == "failed" and gave_up["job"] == fjob.id
    assert gave_up["crashes"] == 3
    assert "3 scheduler crashes" in gave_up["error"] and "2 retries" in gave_up["error"]
    assert storage.get_trial(job.id, 3).final["status"] == "completed"
    trials = storage.list_trials(fjob.id)
    assert [t.index for t in trials] == [0, 1, 2, 3]
    assert [(t.status, t.charged) for t in trials] == [
        ("failed", False),
        ("failed", False),
        ("failed", True),  # the last crash counts: the plan entry is done with
        ("completed", True),
    ]
    assert all(t.params == trials[0].params for t in trials[:3])
    assert storage.trial_counts([fjob.id])[fjob.id] == {
        "completed": 1,
        "failed": 1,
        "uncharged": 2,
    }
    # Resuming a settled entry again changes nothing (the decision is idempotent).
    assert storage.get_job(fjob.id).status == "completed"
