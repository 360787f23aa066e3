"""The front as CSV (SQLite and PostgreSQL): the accuracy the front is ranked by (int8 on TFLite
Micro where measured) is a column, beside the float accuracies, whether the resources are
measured, and the numbers the JSON front gives for the same trials."""

from __future__ import annotations

import csv
import io

from sparsearch.jobconfig import JobConfig

# accuracy, test accuracy, int8 accuracy, int8 test accuracy, flash, RAM, parameters; trial 1 is
# not measured on TFLM (no int8 numbers, estimated resources).
ROWS = [
    (0.95, 0.94, 0.93, 0.92, 20000, 5000, 4000),
    (0.90, 0.89, None, None, 9000, 3000, 1500),
]
# Both deployment targets' numbers of trial 0 (trial 1 has none).
TARGETS = {
    "tflm_flash_bytes": 20000,
    "tflm_ram_bytes": 5000,
    "c_flash_bytes": 12288,
    "c_ram_bytes": 4096,
    "c_stack_bytes": 384,
    "instructions": 5_000_000_000,
}
#: The columns before the targets' numbers came, in their order (which stays).
EARLIER_COLUMNS = [
    "index", "accuracy", "test_accuracy", "int8_accuracy", "int8_test_accuracy", "flash_bytes",
    "ram_bytes", "activation_bytes", "macs", "nnz_flash_bytes", "param_count", "measured",
    "pruning_method", "pruning_level", "flash_accounting", "accounted_flash_bytes",
]  # fmt: skip


def _measured_front(storage, owner: str) -> str:
    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=2)
    job = storage.create_job(dataset="digits", config=cfg.to_dict(), owner=owner)
    for i, (acc, test, int8, int8_test, flash, ram, params) in enumerate(ROWS):
        est = {"flash_bytes": flash, "ram_bytes": ram, "macs": 1000, "param_count": params}
        storage.add_trial(
            job.id, i, status="running", params={"n_blocks": 1}, generator="Sobol",
            gen_seconds=0.1, estimates=est, feasible=True,
            pruning={"method": "magnitude", "level": 0.5},
        )  # fmt: skip
        metrics = {"accuracy": acc, "test_accuracy": test}
        if int8 is not None:
            metrics |= {"int8_accuracy": int8, "int8_test_accuracy": int8_test, **TARGETS}
        storage.finish_trial(
            job.id, i, status="completed", metrics=metrics, measured=int8 is not None
        )
    storage.set_pareto(job.id, range(len(ROWS)))
    storage.set_job_status(job.id, "running")
    storage.set_job_status(job.id, "completed")
    return job.id


def _csv_rows(client, headers, job_id: str) -> tuple[list[str], list[dict[str, str]]]:
    r = client.get(f"/v1/jobs/{job_id}/pareto?format=csv", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(r.text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def test_the_csv_has_the_int8_accuracies_and_whether_measured(client, alice, storage):
    job_id = _measured_front(storage, "alice")
    header, rows = _csv_rows(client, alice, job_id)
    assert header[:5] == [
        "index",
        "accuracy",
        "test_accuracy",
        "int8_accuracy",
        "int8_test_accuracy",
    ]
    assert {"measured", "param_count"} <= set(header)
    assert [
        (r["index"], r["int8_accuracy"], r["int8_test_accuracy"], r["measured"]) for r in rows
    ] == [("0", "0.93", "0.92", "true"), ("1", "", "", "false")]
    assert [r["param_count"] for r in rows] == ["4000", "1500"]


def test_the_targets_numbers_come_after_the_earlier_columns(client, alice, storage):
    job_id = _measured_front(storage, "alice")
    header, rows = _csv_rows(client, alice, job_id)
    assert header == [*EARLIER_COLUMNS, *TARGETS, "c_error"]
    assert [{k: r[k] for k in (*TARGETS, "c_error")} for r in rows] == [
        {**{k: str(v) for k, v in TARGETS.items()}, "c_error": ""},
        dict.fromkeys((*TARGETS, "c_error"), ""),
    ]


def test_every_csv_column_agrees_with_the_json_front(client, alice, storage):
    job_id = _measured_front(storage, "alice")
    header, rows = _csv_rows(client, alice, job_id)
    front = client.get(f"/v1/jobs/{job_id}/pareto", headers=alice).json()["data"]
    assert [t["index"] for t in front] == [int(r["index"]) for r in rows]
    derived = {"pruning_method", "pruning_level"}  # from the JSON's `pruning` object
    for trial, row in zip(front, rows, strict=True):
        for column in set(header) - derived:
            value = trial[column]
            expected = (
                ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
            assert row[column] == expected, column
        assert (row["pruning_method"], float(row["pruning_level"])) == ("magnitude", 0.5)
