"""Uploaded datasets: store, read, list, count, locate and delete (part of ``Storage``).

A dataset is a row (owner, name, summary, size, sha256) plus its file
``<artifact_dir>/datasets/<id>.npz``. The file is written to a temporary name next to its place,
fsynced, and renamed into place just before the row commits; if the commit fails it is removed,
so a row never lacks its file (a crash in between leaves at most an orphan file, never a row
without one). Checking the content is the caller's job (``datasets.validate_npz_bytes``):
storage keeps the bytes and the summary it is given.

Ownership as for jobs: with ``owner=``, another owner's dataset is reported missing
(``NotFoundError``, same message). A dataset that an unfinished job (queued, running,
interrupted) names cannot be deleted (``ConflictError``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import NotFoundError, StorageError
from ..vocabulary import UNFINISHED_JOB_STATUSES
from . import _convert as cv
from ._base import StorageBase
from .artifacts import sha256_hex
from .models import Dataset, Job
from .records import ConflictError, DatasetInfo, is_dataset_id

log = logging.getLogger(__name__)

#: Folder under the artifact directory that holds uploaded datasets (not a valid job id).
DATASETS_DIR = "datasets"
_FILES_HINT = "check SPARSEARCH_ARTIFACT_DIR: it must be a writable directory"
_LIST_HINT = "list your datasets with GET /v1/datasets"
_SUMMARY_KEYS = ("num_classes", "input_shape", "n_train", "n_test")


class DatasetsMixin(StorageBase):
    def create_dataset(
        self, *, owner: str, name: str, data: bytes, summary: dict[str, Any]
    ) -> DatasetInfo:
        """Store an (already validated) npz and its summary ``{num_classes, input_shape
        [C, H, W], n_train, n_test}`` under a new ``ds_…`` id. ValueError for a bad owner, name
        or summary; StorageError if the file cannot be written."""
        owner = cv.check_owner(owner)
        name = cv.check_name(name, what="dataset name")
        values = _summary_values(summary)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"dataset data must be bytes, not {type(data).__name__}")
        dataset_id = f"ds_{uuid.uuid4().hex[:12]}"
        final = self._dataset_file(dataset_id)
        temp = self._write_temp(final, data)
        published = False
        try:
            conflict = f"dataset {dataset_id} already exists"
            with self._tx("storing a dataset", conflict=conflict) as s:
                row = Dataset(
                    id=dataset_id,
                    owner=owner,
                    name=name,
                    size_bytes=len(data),
                    sha256=sha256_hex(data),
                    **values,
                )
                s.add(row)
                s.flush()
                try:  # last step before commit: only the commit can fail after it
                    os.replace(temp, final)
                except OSError as e:
                    msg = f"cannot move a dataset file into {final}: {e}"
                    raise StorageError(msg, _FILES_HINT) from e
                published = True
                info = _dataset_info(row)
        except BaseException:
            temp.unlink(missing_ok=True)
            if published:
                final.unlink(missing_ok=True)
            raise
        return info

    def get_dataset(self, dataset_id: str, *, owner: str | None = None) -> DatasetInfo:
        with self._tx("reading a dataset") as s:
            return _dataset_info(_dataset_row(s, dataset_id, owner))

    def list_datasets(
        self, *, owner: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[DatasetInfo]:
        """A page of datasets, newest first."""
        cv.check_page(limit, offset)
        query = _owned(select(Dataset), owner).order_by(
            Dataset.created_at.desc(), Dataset.id.desc()
        )
        with self._tx("listing datasets") as s:
            return [_dataset_info(r) for r in s.scalars(query.limit(limit).offset(offset))]

    def count_datasets(self, *, owner: str | None = None) -> int:
        query = _owned(select(func.count()).select_from(Dataset), owner)
        with self._tx("counting datasets") as s:
            return int(s.scalar(query) or 0)

    def dataset_path(self, dataset_id: str) -> Path:
        """The stored file of a dataset (for the job that trains on it). NotFoundError if the
        dataset does not exist; StorageError if its file is missing or not the stored size."""
        info = self.get_dataset(dataset_id)
        path = self._dataset_file(info.id)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise StorageError(
                f"the file of dataset {info.id} is missing ({path}): {e}",
                "the artifact directory does not match the database; upload the dataset again",
            ) from e
        if size != info.size_bytes:
            raise StorageError(
                f"the file of dataset {info.id} ({path}) has {size} bytes, "
                f"{info.size_bytes} were stored",
                "the file was modified or truncated; upload the dataset again",
            )
        return path

    def delete_dataset(self, dataset_id: str, *, owner: str | None = None) -> None:
        """Delete the dataset's row, then its file. NotFoundError if missing (or another
        owner's); ConflictError while a queued, running or interrupted job uses it."""
        with self._tx("deleting a dataset") as s:
            row = _dataset_row(s, dataset_id, owner)
            users = list(
                s.scalars(
                    select(Job.id)
                    .where(Job.dataset == row.id, Job.status.in_(UNFINISHED_JOB_STATUSES))
                    .order_by(Job.created_at)
                    .limit(5)
                )
            )
            if users:
                raise ConflictError(
                    f"dataset {row.id} is used by unfinished job(s) {', '.join(users)}",
                    "cancel those jobs or wait until they finish, then delete the dataset",
                )
            s.delete(row)
        try:
            self._dataset_file(dataset_id).unlink(missing_ok=True)
        except OSError:  # the row is gone; an orphan file is garbage, not corruption
            log.warning("could not remove the file of deleted dataset %s", dataset_id)

    # -- files ---------------------------------------------------------------------------------

    def _dataset_file(self, dataset_id: str) -> Path:
        if not is_dataset_id(dataset_id):  # ids name files: never let anything else through
            raise ValueError(f"invalid dataset id {dataset_id!r}")
        return self._files.root / DATASETS_DIR / f"{dataset_id}.npz"

    def _write_temp(self, final: Path, data: bytes) -> Path:
        temp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as e:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            msg = f"cannot write a dataset under {final.parent}: {e}"
            raise StorageError(msg, _FILES_HINT) from e
        return temp


def _owned(query: Any, owner: str | None) -> Any:
    return query if owner is None else query.where(Dataset.owner == owner)


def _dataset_row(s: Session, dataset_id: str, owner: str | None) -> Dataset:
    """The dataset's row; with ``owner``, another owner's dataset is missing too."""
    row = s.get(Dataset, dataset_id) if is_dataset_id(dataset_id) else None
    if row is None or (owner is not None and row.owner != owner):
        raise NotFoundError(f"dataset {dataset_id!r} does not exist", _LIST_HINT)
    return row


def _summary_values(summary: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(summary, dict) or set(summary) != set(_SUMMARY_KEYS):
        keys = sorted(summary) if isinstance(summary, dict) else type(summary).__name__
        raise ValueError(f"dataset summary must have exactly {_SUMMARY_KEYS}, got {keys}")
    shape = [cv.int_or_none("input_shape", v) for v in summary["input_shape"]]
    values = {k: cv.int_or_none(k, summary[k]) for k in ("num_classes", "n_train", "n_test")}
    if len(shape) != 3 or any(v is None or v < 1 for v in (*shape, *values.values())):
        raise ValueError(f"dataset summary has invalid values: {summary!r}")
    if values["num_classes"] < 2:
        raise ValueError("a dataset needs at least 2 classes")
    return {**values, "input_shape": shape}


def _dataset_info(row: Dataset) -> DatasetInfo:
    c, h, w = (int(v) for v in row.input_shape)
    return DatasetInfo(
        id=row.id,
        owner=row.owner,
        name=row.name,
        size_bytes=int(row.size_bytes),
        sha256=row.sha256,
        num_classes=int(row.num_classes),
        input_shape=(c, h, w),
        n_train=int(row.n_train),
        n_test=int(row.n_test),
        created_at=row.created_at,
    )
