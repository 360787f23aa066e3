"""``sparsearch prune``: a sparsearch model file, its own output, a user's torch.export file and a
job's trial (JOB:N) pruned to ratio / MAC targets, ``--json`` purity, and every refusal as a
two-line error with exit code 2.

One tiny sparsearch model is trained once on digits (module fixture). Every run is in-process
(Typer's CliRunner: each measurement converts to int8 twice, and a subprocess would pay the
cold start again), with training kept short (``--train-limit``, one epoch): the measurements,
not the accuracy, are under test.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from cli_helpers import Cli, sqlite_url
from torch import nn

from sparsearch.cli.prune_model import MODEL_FORMAT
from sparsearch.datasets import load_dataset
from sparsearch.space.builder import build_model
from sparsearch.space.spec import ArchSpec, BlockSpec
from sparsearch.worker.train import train_epochs

ARCH = ArchSpec((1, 8, 8), 10, (BlockSpec("conv", 3, 8), BlockSpec("conv", 3, 16, "stride")))
LIMIT = 300
FAST = ("--epochs", "1", "--train-limit", str(LIMIT))
KEYS = {"accuracy", "params", "flash_bytes", "ram_bytes", "macs"}


def _digits() -> Any:
    return load_dataset("digits", train_limit=LIMIT)


def _train(model: nn.Module) -> nn.Module:
    data = _digits()
    torch.manual_seed(0)
    train_epochs(model, data.x_train, data.y_train, epochs=3, lr=1e-2, batch_size=32, seed=0)
    return model.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny sparsearch model trained on digits, saved as a sparsearch model file."""
    root = tmp_path_factory.mktemp("prune")
    torch.manual_seed(0)
    model = _train(build_model(ARCH))
    path = root / "model.pt"
    spec = {"arch": ARCH.to_dict(), "pruning": {"method": "none", "level": 0.0}}
    torch.save(
        {"format": MODEL_FORMAT, "effective_spec": spec, "state_dict": model.state_dict()}, path
    )
    return SimpleNamespace(root=root, path=path, model=model, spec=spec)


@pytest.fixture(scope="module")
def json_run(trained: SimpleNamespace) -> SimpleNamespace:
    """`sparsearch prune MODEL --json --method filter_norm --ratio 0.5 -o ... --tflite ...`."""
    out, tfl = trained.root / "half.pt", trained.root / "half.tflite"
    args = ["prune", trained.path, "--dataset", "digits", "--method", "filter_norm", "--ratio"]
    result = Cli(trained.root)(*args, "0.5", *FAST, "-o", out, "--tflite", tfl, "--json")
    return SimpleNamespace(result=result, output=out, tflite=tfl)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


# -- pruned and measured as deployed ------------------------------------------------------------


def test_json_is_one_document_with_before_and_after(json_run: SimpleNamespace) -> None:
    result = json_run.result
    assert result.exit_code == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)  # all of stdout is one document (the converters' lines too)
    assert result.stdout.strip().count("\n") == 0, result.stdout
    assert "Traceback" not in result.stderr
    assert set(doc["before"]) >= KEYS and set(doc["after"]) >= KEYS
    assert doc["after"]["params"] < doc["before"]["params"]
    assert doc["after"]["macs"] < doc["before"]["macs"]
    assert doc["method"] == "filter_norm" and doc["level"] == 0.5
    assert doc["target"] == {"quantity": "ratio", "value": 0.5}
    assert doc["output"] == str(json_run.output)
    assert {"options", "schedule", "wall_seconds", "notes"} <= set(doc)
    shipped = json_run.tflite.read_bytes()
    assert shipped[4:8] == b"TFL3" and len(shipped) == doc["after"]["flash_bytes"]


def test_a_users_torch_export_file_pruned_with_relevance(cli: Cli, tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip
    _train(plain)
    source, pruned = tmp_path / "user.pt2", tmp_path / "pruned.pt2"
    torch.export.save(torch.export.export(plain, (torch.zeros(1, 1, 8, 8),)), source)
    result = cli(
        "prune", source, "--dataset", "digits", "--method", "relevance", "--samples", "64",
        "--ratio", "0.5", *FAST, "-o", pruned, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    assert doc["after"]["params"] < doc["before"]["params"]
    assert doc["options"] == {"samples": 64}
    program = torch.export.load(pruned).module()
    assert program(torch.zeros(3, 1, 8, 8)).shape == (3, 10)  # a torch.export file, any batch
    assert sum(p.numel() for p in program.parameters()) == doc["after"]["params"]


# -- what the CLI reads and writes (sizes from the estimator) --------------------------------------


@pytest.fixture
def estimated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's ``measure`` without the int8 conversion and TFLM run (10-30 s each here):
    the estimator's flash and RAM, the float accuracy as the int8 one, every other figure
    real. For the tests of what the CLI reads, writes and refuses; the two tests above
    measure as deployed."""
    from sparsearch.pruning.stats import count_params, zero_fraction
    from sparsearch.worker import prune as engine
    from sparsearch.worker.train import evaluate

    def measure(model: nn.Module, data: Any, inputs: Any, arch: Any, *, title: str = "") -> Any:
        x_train, _, x_test = inputs
        model.eval()
        accuracy = round(evaluate(model, x_test, data.y_test), 4)
        doc = {
            "accuracy": accuracy,
            "int8_accuracy": accuracy,
            "params": count_params(model),
            **engine.size_costs(model, x_train, arch),
            "macs": engine.model_macs(model, torch.from_numpy(x_test[:1])),
            "nnz_flash_bytes": engine.nnz_flash_bytes(model),
            "nonzero_params": engine.nonzero_params(model),
            "zero_fraction": round(zero_fraction(model), 4),
        }
        return doc, b""

    monkeypatch.setattr(engine, "measure", measure)


def test_the_output_reloads_and_prunes_again_to_a_mac_target(
    json_run: SimpleNamespace, cli: Cli, tmp_path: Path, estimated: None
) -> None:
    assert json_run.result.exit_code == 0, json_run.result.stderr[-3000:]
    saved = torch.load(json_run.output, weights_only=True)
    assert saved["format"] == MODEL_FORMAT and saved["dataset"] == "digits"
    half = json.loads(json_run.result.stdout)["after"]["macs"]
    target = half // 2
    again = tmp_path / "again.pt"
    result = cli(
        "prune", json_run.output, "--method", "complexity", "--mode", "flops",
        "--target-macs", target, "--train-epochs", "1", *FAST, "-o", again, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    assert doc["before"]["macs"] == half  # the pruned file, on its own data set (no --dataset)
    assert doc["after"]["macs"] <= target
    assert doc["schedule"] == "train_once" and doc["options"] == {"mode": "flops"}
    assert 0 < doc["level"] < 1
    assert torch.load(again, weights_only=True)["format"] == MODEL_FORMAT


def test_a_job_trial_with_the_jobs_data_set_shows_the_table(
    trained: SimpleNamespace, cli: Cli, tmp_path: Path, estimated: None
) -> None:
    """JOB:N from a local database: no --dataset (the job's), a magnitude (unstructured)
    pruning, the before/after table with the sparse rows."""
    from sparsearch.jobconfig import JobConfig
    from sparsearch.storage import open_storage
    from sparsearch.worker.export import state_dict_bytes

    db, artifacts = sqlite_url(tmp_path / "jobs.db"), tmp_path / "artifacts"
    storage = open_storage(db, artifacts)
    try:
        cfg = JobConfig.create(
            dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=1, seed=3
        )
        job = storage.create_job(dataset="digits", config=cfg.to_dict())
        storage.add_trial(
            job.id, 0, status="running", params={}, generator="test", gen_seconds=0.0,
            estimates={}, feasible=True, pruning={},
        )  # fmt: skip
        storage.finish_trial(
            job.id, 0, status="completed", metrics={"accuracy": 0.5},
            effective_spec=trained.spec,
            artifacts={"state_dict": state_dict_bytes(trained.model)},
        )  # fmt: skip
    finally:
        storage.close()
    out = tmp_path / "trial.pt"
    args = ["prune", f"{job.id}:0", "--method", "magnitude", "--scope", "global"]
    result = cli(*args, "--ratio", "0.6", *FAST, "-o", out, "--db", db, "--artifacts", artifacts)
    assert result.exit_code == 0, result.stderr[-3000:]
    table = result.stdout
    for label in ("before", "after", "change", "accuracy", "int8 accuracy", "params"):
        assert label in table, table
    for label in ("flash", "RAM", "MACs", "non-zero params", "sparse flash", "zero fraction"):
        assert label in table, table
    assert "level 0.60" in table and f"wrote {out}" in table
    saved = torch.load(out, weights_only=True)
    zeros = sum(int((v == 0).sum()) for k, v in saved["state_dict"].items() if "weight" in k)
    assert zeros > 0 and saved["seed"] == 3 and saved["dataset"] == "digits"  # the job's

    missing = cli.fails(
        ["prune", f"{job.id}:7", "--method", "magnitude", "--ratio", "0.5", "-o", out,
         "--db", db, "--artifacts", artifacts],
        "has no trial 7",
    )  # fmt: skip
    assert missing.exit_code == 2


# -- refusals ----------------------------------------------------------------------------------


def _refusals(model: Path, tmp: Path) -> list[tuple[list[Any], tuple[str, ...]]]:
    o = ["-o", tmp / "out.pt"]
    blocker = tmp / "a-file"
    blocker.write_text("x")
    return [
        (["--method", "pruneall", "--ratio", "0.5", *o], ("unknown pruning method", "filter_norm")),
        (["--method", "filter_norm", "--ratio", "1.5", *o], ("ratio 1.5 is outside [0, 1)",)),
        (["--method", "filter_norm", *o], ("no pruning target", "--target-macs")),
        (
            ["--method", "filter_norm", "--ratio", "0.5", "--target-macs", "9k", *o],
            ("two targets at once: --ratio and --target-macs",),
        ),
        (
            ["--method", "filter_norm", "--mode", "flops", "--ratio", "0.5", *o],
            ("--mode is not an option of filter_norm", "--p"),
        ),
        (
            ["--method", "magnitude", "--threshold", "0.3", "--ratio", "0.5", *o],
            ("--threshold is not an option of magnitude", "--scope"),
        ),
        (
            ["--method", "filter_norm", "--schedule", "layerwise", "--ratio", "0.5", *o],
            ("filter_norm does not support schedule 'layerwise'",),
        ),
        (
            ["--method", "filter_norm", "--schedule", "sometimes", "--ratio", "0.5", *o],
            ("unknown schedule 'sometimes'",),
        ),
        (["--method", "filter_norm", "--p", "3", "--ratio", "0.5", *o], ("p=3 is not one of",)),
        (
            ["--method", "filter_norm", "--target-macs", "lots", *o],
            ("cannot parse --target-macs 'lots'",),
        ),
        (
            ["--method", "filter_norm", "--ratio", "0.5", "-o", blocker / "out.pt"],
            ("cannot write", "-o/--output"),
        ),
    ]


def test_bad_options_fail_cleanly_before_any_work(
    trained: SimpleNamespace, cli: Cli, tmp_path: Path
) -> None:
    for args, needles in _refusals(trained.path, tmp_path):
        result = cli.fails(["prune", trained.path, *args], *needles)
        assert result.exit_code == 2, (args, result.stderr)


def test_missing_or_foreign_models_fail_cleanly(cli: Cli, tmp_path: Path) -> None:
    base = ["--method", "filter_norm", "--ratio", "0.5", "-o", tmp_path / "o.pt"]
    cli.fails(["prune", tmp_path / "nothing.pt", *base], "model file not found")
    weights = tmp_path / "weights.pt"
    torch.save(build_model(ARCH).state_dict(), weights)  # a bare state_dict: no architecture
    cli.fails(["prune", weights, "--dataset", "digits", *base], "not a TorchScript or torch.export")
    cli.fails(["prune", weights, *base], "--dataset is needed")
    cli.fails(["prune", "nosuchjob:3", *base, "--db", sqlite_url(tmp_path / "e.db")], "nosuchjob")


def test_an_unreachable_target_is_the_engines_clean_error(
    trained: SimpleNamespace, cli: Cli, tmp_path: Path, estimated: None
) -> None:
    result = cli.fails(
        ["prune", trained.path, "--dataset", "digits", "--method", "filter_norm",
         "--target-macs", "10", *FAST, "-o", tmp_path / "o.pt"],
        "cannot reach macs <= 10",
    )  # fmt: skip
    assert result.exit_code == 2
    assert not (tmp_path / "o.pt").exists()


def test_a_json_run_that_fails_leaves_stdout_empty(trained: SimpleNamespace, cli: Cli) -> None:
    out = trained.root / "never.pt"
    result = cli.fails(  # cli.fails: stdout empty, "error:" on stderr, no traceback
        ["prune", trained.path, "--method", "filter_norm", "--json", "-o", out],
        "no pruning target",
    )
    assert result.exit_code == 2 and not out.exists()
