"""The layering contracts of pyproject.toml (import-linter, run by `make lint`) hold today and
break on the imports they exist to stop — including imports inside functions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: module of the copy, line appended to it, words the broken contract's name contains
VIOLATIONS = {
    "api imports torch": ("api/views.py", "import torch", "never load torch"),
    "api reaches torch through space.builder": (
        "api/routes/jobs.py",
        "def _f():\n    from sparsearch.space.builder import build_model",
        "never load torch",
    ),
    "space.params imports torch": ("space/params.py", "import torch", "only the model builder"),
    "worker opens storage": (
        "worker/train.py",
        "from sparsearch.storage import open_storage",
        "no database",
    ),
    "pareto imports ray in a function": (
        "search/pareto.py",
        "def _f():\n    import ray",
        "Ray only in",
    ),
    "api imports BoTorch": ("api/deps.py", "import botorch", "Only search/ talks to the optimizer"),
    "cli imports SQLAlchemy": ("cli/common.py", "import sqlalchemy", "Only storage/ talks SQL"),
    "storage imports FastAPI": ("storage/jobs.py", "import fastapi", "Only api/ talks HTTP"),
    "api imports the service": ("api/app.py", "import sparsearch.service.process", "Layers"),
    "routes render templates": (
        "api/routes/jobs.py",
        "import jinja2",
        "Only the dashboard (api/ui) renders templates",
    ),
    "a cycle between siblings": (
        "service/process.py",
        "def _f():\n    import sparsearch.service.asgi",
        "No import cycles",
    ),
}


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "src" / "sparsearch",
        tmp_path / "src" / "sparsearch",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contracts_hold_today(tmp_path: Path) -> None:
    run = _lint(_copy(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, case: str) -> None:
    module, line, contract = VIOLATIONS[case]
    root = _copy(tmp_path)
    path = root / "src" / "sparsearch" / module
    path.write_text(path.read_text() + "\n\n" + line + "\n")
    run = _lint(root)
    assert run.returncode != 0, run.stdout
    broken = run.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, run.stdout
