"""The CLI's trial ``--json`` documents carry both deployment targets' numbers
(``vocabulary.TARGET_METRICS``) and ``c_error``, null where a trial was not measured, as the
API's do (in process, on a local SQLite database)."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import Cli

from sparsearch.jobconfig import JobConfig
from sparsearch.storage import open_storage
from sparsearch.vocabulary import TARGET_METRICS

TARGETS = {
    "tflm_flash_bytes": 14_400,
    "tflm_ram_bytes": 10_336,
    "c_flash_bytes": 12_288,
    "c_ram_bytes": 6_144,
    "c_stack_bytes": 512,
    "instructions": 5_000_000_000,
}


def test_pareto_json_carries_the_targets(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    with open_storage(cli.env["SPARSEARCH_DATABASE_URL"], tmp_path / "artifacts") as storage:
        cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=2)
        job = storage.create_job(dataset="digits", config=cfg.to_dict())
        for i, targets in enumerate([{**TARGETS, "c_error": None}, {}]):
            storage.add_trial(
                job.id, i, status="running", params={}, generator="Sobol", gen_seconds=0.1,
                estimates={"flash_bytes": 20480 - i, "ram_bytes": 4096}, feasible=True,
                pruning={"method": "none", "level": 0.0},
            )  # fmt: skip
            metrics = {"accuracy": 0.9 - i / 10, **targets}
            storage.finish_trial(job.id, i, status="completed", metrics=metrics, measured=True)
        storage.set_pareto(job.id, [0, 1])
        storage.set_job_status(job.id, "running")
        storage.set_job_status(job.id, "completed")
    result = cli("pareto", job.id, "--json")
    assert result.exit_code == 0, result.output
    front = json.loads(result.stdout)
    keys = (*TARGET_METRICS, "c_error")
    assert [{k: t[k] for k in keys} for t in front] == [
        {**TARGETS, "c_error": None},
        dict.fromkeys(keys),
    ]
