"""Shared data for the API tests: a job body and a stored job made without training."""

from __future__ import annotations

import io

MAX_TRIALS = 50

JOB_BODY = {
    "dataset": "digits",
    "limits": {"flash_bytes": 24576, "ram_bytes": 6144},
    "budget": {"trials": 4, "parallel": 2, "epochs": 4},
    "seed": 0,
}


def _state_dict_bytes() -> tuple[bytes, dict]:
    import torch

    from sparsearch.space.builder import build_model
    from sparsearch.space.spec import ArchSpec, BlockSpec

    arch = ArchSpec(input_shape=(1, 8, 8), num_classes=10, blocks=(BlockSpec("conv", 3, 4),))
    buf = io.BytesIO()
    torch.save(build_model(arch).state_dict(), buf)
    return buf.getvalue(), {"arch": arch.to_dict(), "pruning": {"method": "none", "level": 0.0}}


def seed_job(storage, owner: str) -> str:
    """A completed job with 4 trials: 3 completed (2 on the front), 1 infeasible."""
    from sparsearch.jobconfig import JobConfig

    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=3)
    job = storage.create_job(dataset="digits", config=cfg.to_dict(), owner=owner)
    weights, spec = _state_dict_bytes()
    rows = [  # accuracy, flash, ram, on the front
        (0.95, 20000, 5000, True),
        (0.90, 9000, 3000, True),
        (0.85, 12000, 4000, False),
    ]
    for i, (acc, flash, ram, _front) in enumerate(rows):
        est = {
            "flash_bytes": flash,
            "ram_bytes": ram,
            "activation_bytes": ram // 2,
            "macs": 1000 * (i + 1),
            "nnz_flash_bytes": flash // 2,
            "param_count": 100,
        }
        storage.add_trial(
            job.id,
            i,
            status="running",
            params={"n_blocks": 1},
            generator="Sobol",
            gen_seconds=0.1,
            estimates=est,
            feasible=True,
            pruning={"method": "none", "level": 0.0},
        )
        storage.finish_trial(
            job.id,
            i,
            status="completed",
            metrics={"accuracy": acc, "test_accuracy": acc - 0.01},
            train_seconds=1.0,
            effective_spec=spec,
            artifacts={"state_dict": weights, "onnx": b"onnx-bytes-%d" % i},
        )
    storage.add_trial(
        job.id,
        3,
        status="infeasible",
        params={"n_blocks": 4},
        generator="MBM",
        gen_seconds=2.0,
        estimates={"flash_bytes": 99999, "ram_bytes": 9999},
        feasible=False,
        pruning={"method": "none", "level": 0.0},
        error="over a limit by estimate",
    )
    storage.set_pareto(job.id, [i for i, r in enumerate(rows) if r[3]])
    storage.set_job_status(job.id, "running")
    storage.set_job_status(job.id, "completed")
    storage.update_job_summary(job.id, hypervolume=0.5, best_accuracy=0.95, trained=3)
    return job.id
