"""Where ``sparsearch prune`` gets its model and data and where it writes the result.

The model is a trial of a job (``JOB:N``, read from the local database or ``--server`` as
``pull`` reads it), a sparsearch model file (what ``-o`` writes, so a pruned model can be pruned
again), or a user's own TorchScript / ``torch.export`` CNN (``pruning.lift``).

A sparsearch model file is ``torch.save`` of a dict (loadable with ``weights_only=True``)::

    {"format": "sparsearch-model/1",
     "effective_spec": {"arch": ArchSpec.to_dict(), "pruning": PruningSpec.to_dict()},
     "state_dict": model.state_dict(),
     "dataset": "digits", "seed": 0}      # the data set and split seed it was trained with

``dataset`` and ``seed`` are optional; when present they are the defaults of ``--dataset`` and
``--seed`` (so the test split stays the one the model never trained on).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsearch.cli.common import backend, check_int
from sparsearch.errors import ConfigError, PruningError

#: The ``format`` of a sparsearch model file.
MODEL_FORMAT = "sparsearch-model/1"
#: ``JOB:N`` (a job id as storage allows it, a trial index).
_JOB_TRIAL = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]{0,63}):([0-9]+)$", re.ASCII)


# --- the model --------------------------------------------------------------------------------


@dataclass
class Source:
    """Where the model comes from, what it was trained on, and how to build it."""

    kind: str  # "trial", "file" or "user"
    describe: str
    dataset: str | None
    seed: int | None
    #: trial / file: the effective spec and weights; user: the file's path.
    effective_spec: dict[str, Any] | None = None
    state_dict: Any = None
    path: Path | None = None

    def load(self, data: Any) -> tuple[Any, Any]:
        """The model (eval mode) and its ArchSpec (None for a user's model)."""
        import torch

        from sparsearch.space.spec import ArchSpec

        if self.kind == "user":
            from sparsearch.pruning.lift import load_model_file

            assert self.path is not None
            return load_model_file(self.path, torch.from_numpy(data.x_test[:1])), None
        assert self.effective_spec is not None
        try:
            arch = ArchSpec.from_dict(self.effective_spec["arch"])
        except (KeyError, TypeError, ValueError) as e:
            raise PruningError(
                f"{self.describe} has no valid architecture: {e}",
                "write sparsearch model files with `sparsearch prune -o`",
            ) from None
        if self.kind == "trial":
            from sparsearch.worker.export import load_model

            loader: Callable[[], Any] = lambda: load_model(self.effective_spec, self.state_dict)  # noqa: E731
        else:

            def loader() -> Any:
                from sparsearch.space.builder import build_model

                built = build_model(arch)
                built.load_state_dict(self.state_dict)
                return built.eval()

        try:
            return loader(), arch
        except (RuntimeError, KeyError, ValueError) as e:
            raise PruningError(
                f"the weights of {self.describe} do not fit its architecture: "
                f"{str(e).splitlines()[0]}",
                "the file is damaged or was edited; write it again",
            ) from None


def read_source(
    model: str, *, db: str | None, artifacts: Path | None, server: str | None, token: str | None
) -> Source:
    """Resolve MODEL: ``JOB:N`` (unless a file of that name exists), else a file."""
    path = Path(model).expanduser()
    match = _JOB_TRIAL.match(model)
    if match and not path.exists():
        index = int(match.group(2))
        check_int(index, f"the trial index of {model}", hint="trial indices start at 0")
        return _trial_source(match.group(1), index, db, artifacts, server, token)
    if not path.is_file():
        raise PruningError(
            f"model file not found: {model}",
            "give JOB:N (a trial of a job), a sparsearch model file, or a TorchScript / "
            "torch.export file",
        )
    doc = _torch_load(path)
    if isinstance(doc, dict) and "format" in doc:
        return _file_source(path, doc)
    return Source(kind="user", describe=str(path), dataset=None, seed=None, path=path)


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of ``path``, or None when it is no such pickle (a
    TorchScript or torch.export archive, or anything else: the lifting says what)."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any unpickling or archive error: not a sparsearch model file
        return None


def _file_source(path: Path, doc: dict[str, Any]) -> Source:
    if doc.get("format") != MODEL_FORMAT:
        raise PruningError(
            f"{path} is a model file of format {doc.get('format')!r}, not {MODEL_FORMAT}",
            "a newer sparsearch wrote it; upgrade, or prune a model this version wrote",
        )
    spec, weights = doc.get("effective_spec"), doc.get("state_dict")
    if not isinstance(spec, dict) or not isinstance(weights, dict):
        raise PruningError(
            f"{path} lacks effective_spec or state_dict",
            "write sparsearch model files with `sparsearch prune -o`",
        )
    dataset, seed = doc.get("dataset"), doc.get("seed")
    return Source(
        kind="file",
        describe=str(path),
        dataset=dataset if isinstance(dataset, str) else None,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        effective_spec=spec,
        state_dict=weights,
    )


def _trial_source(
    job_id: str,
    index: int,
    db: str | None,
    artifacts: Path | None,
    server: str | None,
    token: str | None,
) -> Source:
    source = backend(server, token, db, artifacts)
    job = source.get_job(job_id)
    trial = source.trial(job_id, index)
    spec = trial.get("effective_spec")
    if not spec:
        raise PruningError(
            f"trial {index} of job {job_id} has no trained model (status {trial.get('status')})",
            f"pick a completed trial: `sparsearch pareto {job_id}`",
        )
    weights, _ = source.artifact(job_id, index, "state_dict", final=False)
    return Source(
        kind="trial",
        describe=f"job {job_id} trial {index}",
        dataset=_job_dataset(source, job),
        seed=int(job["seed"]) if job.get("seed") is not None else None,
        effective_spec=spec,
        state_dict=weights,
    )


def _job_dataset(source: Any, job: dict[str, Any]) -> str | None:
    """The job's data set as ``load_dataset`` names it; an upload: its stored file (local),
    None on a server (the file is not here)."""
    from sparsearch.storage import is_dataset_id

    name = job.get("dataset")
    if not isinstance(name, str):
        return None
    if is_dataset_id(name):
        storage = getattr(source, "storage", None)
        return f"npz:{storage.dataset_path(name)}" if storage is not None else None
    return name


def load_data(
    name: str | None, model: str, seed: int, train_limit: int | None, source: Source
) -> Any:
    from sparsearch.datasets import load_dataset

    if name is None:
        why = {
            "user": "a TorchScript / torch.export model does not say what it was trained on",
            "file": "the model file does not say what it was trained on",
            "trial": "the job's data set is an upload on the server, not here",
        }[source.kind]
        raise ConfigError(
            f"--dataset is needed for {model}: {why}",
            "pass --dataset digits | fashion-mnist | idx:DIR | npz:FILE",
        )
    return load_dataset(name, seed=seed, train_limit=train_limit)


def write_result(
    outcome: Any, output: Path, tflite: Path | None, data: Any, seed: int, source: Source
) -> None:
    import torch

    try:
        if outcome.arch is not None:
            doc = {
                "format": MODEL_FORMAT,
                "effective_spec": {
                    "arch": outcome.arch.to_dict(),
                    "pruning": {
                        "method": outcome.method,
                        "level": outcome.level,
                        "options": outcome.options,
                    },
                },
                "state_dict": outcome.model.state_dict(),
                "dataset": data.name,
                "seed": seed,
            }
            torch.save(doc, output)
        else:
            torch.export.save(_exported(outcome.model, data, source), output)
        if tflite is not None:
            tflite.write_bytes(outcome.tflite)
    except OSError as e:
        raise ConfigError(
            f"cannot write {e.filename or output}: {e.strerror or e}",
            "pass a writable file path with -o / --tflite",
        ) from e


def _exported(model: Any, data: Any, source: Source) -> Any:
    """The pruned user model as a torch.export program, with a dynamic batch where export
    allows it (else the batch of one the input file may have fixed)."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    attempts: list[tuple[Any, Any]] = [
        (torch.from_numpy(data.x_test[:2]), ({0: batch},)),
        (torch.from_numpy(data.x_test[:1]), None),
    ]
    error: Exception | None = None
    for example, dynamic in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic)
        except Exception as e:  # any export failure of the pruned graph: try the next way
            error = e
    raise PruningError(
        f"cannot export the pruned model of {source.describe}: {str(error).splitlines()[0]}",
        "report it with the model file",
    )
