"""Integer options are bounded to what storage holds (signed 64-bit) and to what they mean
(indices >= 0, ids >= 1, epochs within the product's cap): out of range is `error:` / `hint:`
and exit 2, never a traceback or an "unexpected OverflowError" from the database driver."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.cli.cli_helpers import Cli

BIG = str(2**63)  # one past the largest signed 64-bit integer


@pytest.fixture()
def cli_with_job(tmp_path: Path) -> tuple[Cli, str]:
    from sparsearch.jobconfig import JobConfig
    from sparsearch.storage import open_storage

    cli = Cli(tmp_path)
    with open_storage(cli.env["SPARSEARCH_DATABASE_URL"], tmp_path / "artifacts") as storage:
        cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=2)
        job = storage.create_job(dataset="digits", config=cfg.to_dict())
        storage.set_job_status(job.id, "running")
        storage.set_job_status(job.id, "completed")
    return cli, job.id


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["pull", "{job}", "--trial", BIG, "-o", "{tmp}/m.tflite"], "--trial"),
        (["pull", "{job}", "--trial", "-1", "-o", "{tmp}/m.tflite"], "--trial"),
        (["export", "{job}", "--trial", BIG], "--trial"),
        (["export", "{job}", "--trial", "-3"], "--trial"),
        (["finalize", "{job}", "--trials", f"1,{BIG}"], "--trials"),
        (["finalize", "{job}", "--trials", "٣"], "--trials"),  # an Arabic-Indic 3
        (["finalize", "{job}", "--trials", "1_0"], "--trials"),
        (["finalize", "{job}", "--epochs", BIG], "epochs"),
        (["token", "revoke", BIG], "ID"),
        (["token", "revoke", "0"], "ID"),
        (["jobs", "--limit", BIG], "--limit"),
        (["search", "--trials", BIG], "trials"),
        (["search", "--train-limit", BIG], "--train-limit"),
        (["prune", "{job}:" + BIG, "--method", "filter_norm", "--ratio", "0.5", "-o", "{tmp}/p.pt"],
         "trial"),
        (["prune", "{job}:0", "--method", "filter_norm", "--ratio", "0.5", "-o", "{tmp}/p.pt",
          "--epochs", BIG], "--epochs"),
        (["prune", "{job}:0", "--method", "filter_norm", "--ratio", "0.5", "-o", "{tmp}/p.pt",
          "--seed", BIG], "--seed"),
        (["prune", "{job}:0", "--method", "filter_norm", "--ratio", "0.5", "-o", "{tmp}/p.pt",
          "--batch-size", BIG], "--batch-size"),
        (["prune", "{job}:0", "--method", "filter_norm", "--ratio", "0.5", "-o", "{tmp}/p.pt",
          "--train-limit", "0"], "--train-limit"),
        (["scheduler", "--parent-pid", BIG], "--parent-pid"),
    ],
)  # fmt: skip
def test_out_of_range_integers_are_clean_errors(
    cli_with_job: tuple[Cli, str], tmp_path: Path, args: list[str], needle: str
) -> None:
    cli, job = cli_with_job
    argv = [a.format(job=job, tmp=tmp_path) for a in args]
    result = cli.fails(argv, needle)
    assert result.exit_code == 2, result.output
    assert "unexpected" not in result.stderr, result.stderr


def test_the_largest_index_is_a_missing_trial_not_an_overflow(
    cli_with_job: tuple[Cli, str], tmp_path: Path
) -> None:
    cli, job = cli_with_job
    result = cli.fails(["pull", job, "--trial", str(2**63 - 1), "-o", tmp_path / "m.tflite"])
    assert "unexpected" not in result.stderr, result.stderr
