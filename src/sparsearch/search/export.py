"""``sparsearch export``: the deployed model of trials stored before deployment existed.

A trial recorded by an older sparsearch has its float weights and effective spec but no
``.tflite``: rebuild the model, export it to int8, measure it on TFLite Micro and store what a
new trial would have (measured flash / RAM / int8 accuracy, the ``tflite`` and ``c_source``
artifacts), then recompute the job's front with the measured numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparsearch.errors import NotFoundError
from sparsearch.jobconfig import JobConfig
from sparsearch.search.pareto import refresh_front
from sparsearch.vocabulary import accounted_flash


def export_stored(
    storage: Any,
    job_id: str,
    index: int | None = None,
    *,
    on_trial: Callable[[str], None] = lambda _: None,
) -> int:
    """Export and measure trial ``index`` of ``job_id`` (None: every completed trial not yet
    measured); returns how many were exported. A trial whose export fails keeps its float
    artifacts and says why (``on_trial``); the others go on."""
    from sparsearch.errors import TrialError
    from sparsearch.search.driver import load_job_data
    from sparsearch.space.spec import ArchSpec, TrialSpec
    from sparsearch.worker.deploy import deploy
    from sparsearch.worker.export import load_model
    from sparsearch.worker.trial import prepare_inputs

    job = storage.get_job(job_id)
    cfg = JobConfig.from_dict(job.config)
    if index is not None:
        trials = [storage.get_trial(job_id, index)]
        if trials[0].status != "completed":
            raise NotFoundError(
                f"trial {index} of job {job_id} is {trials[0].status}: it has no model",
                "export completed trials",
            )
    else:
        trials = [t for t in storage.list_trials(job_id, status="completed") if not t.measured]
    if not trials:
        return 0
    data = load_job_data(storage, cfg)
    done = 0
    for t in trials:
        arch = ArchSpec.from_dict(t.effective_spec["arch"])
        model = load_model(t.effective_spec, storage.read_artifact(job_id, t.index, "state_dict"))
        x_train, x_val, x_test = prepare_inputs(TrialSpec(arch=arch), data)
        try:
            shipped = deploy(
                model,
                arch,
                data,
                x_train,
                x_val,
                x_test,
                title=f"job {job_id} trial {t.index}",
                target=cfg.target,
            )
        except TrialError as e:
            on_trial(f"trial {t.index}: {e.message}")
            continue
        flash = accounted_flash(cfg.flash_accounting, {**t.to_json(), **shipped.measurements()})
        feasible = cfg.limits.fits(flash, shipped.ram_bytes)
        storage.finish_trial(
            job_id,
            t.index,
            status="completed",
            metrics=shipped.measurements(),
            feasible=feasible,
            measured=True,
            deployment=shipped.metadata,
            artifacts=shipped.artifacts(),
        )
        on_trial(
            f"trial {t.index}: {shipped.flash_bytes} B flash, {shipped.ram_bytes} B RAM, "
            f"int8 accuracy {shipped.int8_accuracy:.3f}" + ("" if feasible else " (over a limit)")
        )
        done += 1
    refresh_front(storage, job_id, cfg, data.num_classes)
    return done
