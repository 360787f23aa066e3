"""Each word of the product has one home (``sparsearch.vocabulary``, the caps in ``jobconfig``):
the API's enums and bounds, the CLI's choices, storage and the search space derive theirs from
it — a new status, artifact kind or pruning method reaches all of them from one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparsearch import jobconfig, vocabulary
from sparsearch.config import Settings


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sparsearch.api.app import create_app

    root = tmp_path_factory.mktemp("vocabulary")
    settings = Settings(database_url=f"sqlite:///{root / 'v.db'}", artifact_dir=root / "a")
    return create_app(settings).openapi()


def _query_enum(schema: dict[str, Any], path: str, name: str) -> list[str]:
    (param,) = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name]
    return next(s["enum"] for s in param["schema"]["anyOf"] if "enum" in s)


def test_the_api_enums_are_the_vocabulary(schema: dict[str, Any]) -> None:
    assert _query_enum(schema, "/v1/jobs", "status") == list(vocabulary.JOB_STATUSES)
    trials = "/v1/jobs/{job_id}/trials"
    assert _query_enum(schema, trials, "status") == list(vocabulary.TRIAL_STATUSES)
    job = schema["components"]["schemas"]["JobCreate"]["properties"]
    assert job["flash_accounting"]["enum"] == list(vocabulary.FLASH_ACCOUNTINGS)
    methods = next(s for s in job["pruning_methods"]["anyOf"] if s.get("type") == "array")
    assert methods["items"]["enum"] == list(vocabulary.PRUNING_CHOICES)
    assert methods["maxItems"] == len(vocabulary.PRUNING_CHOICES)


def test_the_api_bounds_are_the_job_caps(schema: dict[str, Any]) -> None:
    comps = schema["components"]["schemas"]
    budget = comps["BudgetIn"]["properties"]
    assert budget["trials"]["maximum"] == jobconfig.MAX_TRIALS
    assert budget["parallel"]["maximum"] == jobconfig.MAX_PARALLEL
    assert budget["epochs"]["maximum"] == jobconfig.MAX_EPOCHS
    limits = comps["LimitsIn"]["properties"]
    assert limits["flash_bytes"]["maximum"] == limits["ram_bytes"]["maximum"] == jobconfig.MAX_BYTES
    # The server's own trial cap is a policy at or below the product's.
    assert Settings.model_fields["max_trials"].default <= jobconfig.MAX_TRIALS
    with pytest.raises(ValueError):
        Settings(max_trials=jobconfig.MAX_TRIALS + 1)


def test_jobconfig_refuses_what_the_api_refuses() -> None:
    from sparsearch.errors import ConfigError

    for changes in (
        {"trials": jobconfig.MAX_TRIALS + 1},
        {"parallel": jobconfig.MAX_PARALLEL + 1},
        {"epochs": jobconfig.MAX_EPOCHS + 1},
        {"flash_bytes": jobconfig.MAX_BYTES + 1},
    ):
        args = {"dataset": "digits", "flash_bytes": 1024, "ram_bytes": 1024, "trials": 1}
        with pytest.raises(ConfigError):
            jobconfig.JobConfig.create(**{**args, **changes})


def test_default_spaces_follow_the_methods_structure() -> None:
    dense = jobconfig.default_space("dense").pruning_methods
    sparse = jobconfig.default_space("sparse").pruning_methods
    assert sparse == vocabulary.PRUNING_CHOICES
    assert set(dense) == {vocabulary.NO_PRUNING, *vocabulary.STRUCTURED_METHODS}


# One line added to the vocabulary (done here before anything else imports it) reaches storage,
# the API, the CLI and the search space.
EXTENDED = """
import json, sys
import sparsearch.vocabulary as v
v.JOB_STATUSES = (*v.JOB_STATUSES, "paused")
v.TRIAL_STATUSES = (*v.TRIAL_STATUSES, "skipped")
v.ARTIFACT_KINDS["tflite"] = v.ArtifactKind("tflite", "tflite", "application/x-tflite", "int8")
v.PRUNING_METHODS["slim"] = v.PruningMethodInfo("slim", True, "a new structured method")
v.PRUNING_CHOICES = (*v.PRUNING_CHOICES, "slim")
v.STRUCTURED_METHODS = v.STRUCTURED_METHODS | {"slim"}

from sparsearch.api.app import create_app
from sparsearch.api.routes.artifacts import MEDIA_TYPES
from sparsearch.config import Settings
from sparsearch.space.params import SpaceConfig
from sparsearch.storage.artifacts import check_kind
from sparsearch.storage.records import check_job_status, check_trial_status

root = sys.argv[1]
app = create_app(Settings(database_url=f"sqlite:///{root}/v.db", artifact_dir=f"{root}/a"))
params = app.openapi()["paths"]["/v1/jobs"]["get"]["parameters"]
(status,) = [p for p in params if p["name"] == "status"]
print(json.dumps({
    "api_job_statuses": next(s["enum"] for s in status["schema"]["anyOf"] if "enum" in s),
    "storage": [check_job_status("paused"), check_trial_status("skipped"), check_kind("tflite")],
    "media_type": MEDIA_TYPES["tflite"],
    "space_default": list(SpaceConfig().pruning_methods),
    "space_accepts": list(SpaceConfig(pruning_methods=("slim",)).pruning_methods),
}))
"""


def test_one_line_in_the_vocabulary_reaches_every_layer(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", EXTENDED, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["api_job_statuses"][-1] == "paused"
    assert seen["storage"] == ["paused", "skipped", "tflite"]
    assert seen["media_type"] == "application/x-tflite"
    assert "slim" in seen["space_default"] and seen["space_accepts"] == ["slim"]


def test_a_trials_json_fields_have_one_home() -> None:
    """Storage's ``TrialInfo`` lists them; its ``to_json`` (CLI ``--json``, ``LocalBackend``) and
    the API's ``TrialPublic`` follow, in the same order."""
    import dataclasses
    from datetime import UTC, datetime

    from sparsearch.api.schemas import FrontTrialPublic, TrialPublic
    from sparsearch.storage.records import TrialInfo

    names = [f.name for f in dataclasses.fields(TrialInfo)]
    assert list(TrialPublic.model_fields) == names
    assert list(FrontTrialPublic.model_fields)[: len(names)] == names
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    values = {name: None for name in names}
    values.update(
        job_id="j", index=0, status="completed", params={"lr": [0.1]}, feasible=True,
        pareto=False, charged=True, measured=True, pruning={}, created_at=now, finished_at=now,
    )  # fmt: skip
    trial = TrialInfo(**values)
    doc = trial.to_json()
    assert list(doc) == names and doc["created_at"] == now.isoformat()
    doc["params"]["lr"].append(1.0)  # a copy: the frozen record is unchanged
    assert trial.params == {"lr": [0.1]}
    assert TrialPublic(**trial.to_json()).model_dump() == {**dataclasses.asdict(trial)}
