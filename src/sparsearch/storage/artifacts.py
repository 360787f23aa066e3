"""Artifact files under one directory: staged to temp names, renamed into place, undoable.

Layout: ``<artifact_dir>/<job_id>/<index>/<kind>.<ext>``, and ``.../<index>/final/<kind>.<ext>``
for the files of a trial's final training. The database row is the index; a
file without a row is garbage, a row without its file is corruption. ``finish_trial`` keeps
them in step: stage (temp files) → DB flush → ``publish`` (rename, keeping any old file as a
backup) → commit → ``discard_backups``; on any failure ``undo`` restores the previous state.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFoundError, StorageError
from ..vocabulary import ARTIFACT_KINDS
from .records import ArtifactInfo

_HINT = "check SPARSEARCH_ARTIFACT_DIR: it must be a writable directory"


def check_kind(kind: str) -> str:
    if kind not in ARTIFACT_KINDS:
        raise ValueError(
            f"unknown artifact kind {kind!r}; expected one of {', '.join(ARTIFACT_KINDS)}"
        )
    return kind


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class StagedFile:
    kind: str
    rel_path: str
    final: Path
    temp: Path
    sha256: str
    size_bytes: int
    backup: Path | None = None
    published: bool = False


class ArtifactStore:
    """Files of trial artifacts below ``root``; never touches anything outside it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def rel_path(self, job_id: str, index: int, kind: str, final: bool = False) -> str:
        folder = f"{job_id}/{int(index)}/final" if final else f"{job_id}/{int(index)}"
        return f"{folder}/{kind}.{ARTIFACT_KINDS[check_kind(kind)].extension}"

    def holds(self, info: ArtifactInfo) -> bool:
        """Whether this store has the file of ``info`` (not whether it is intact)."""
        try:
            return self.resolve(info.path).is_file()
        except StorageError:
            return False

    def resolve(self, rel_path: str) -> Path:
        """Absolute path of a stored relative path; refuses anything outside the root."""
        candidate = (self.root / rel_path).resolve()
        if Path(rel_path).is_absolute() or not candidate.is_relative_to(self.root):
            raise StorageError(
                f"artifact path {rel_path!r} points outside the artifact directory {self.root}",
                "the artifact record is corrupt or forged; it was not opened",
            )
        return candidate

    def job_dir(self, job_id: str) -> Path:
        path = self.resolve(job_id)
        if path == self.root:
            raise StorageError(f"invalid job id {job_id!r} for an artifact folder")
        return path

    def stage(
        self, job_id: str, index: int, blobs: dict[str, bytes], *, final: bool = False
    ) -> list[StagedFile]:
        """Write each blob to a temp file next to its final place (nothing visible yet);
        ``final``: the files of the trial's final training."""
        of_final = final
        staged: list[StagedFile] = []
        try:
            for kind, data in blobs.items():
                if not isinstance(data, bytes | bytearray | memoryview):
                    raise TypeError(f"artifact {kind!r} must be bytes, not {type(data).__name__}")
                rel = self.rel_path(job_id, index, kind, of_final)
                final = self.resolve(rel)
                final.parent.mkdir(parents=True, exist_ok=True)
                temp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")
                item = StagedFile(kind, rel, final, temp, sha256_hex(data), len(data))
                staged.append(item)
                with open(temp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as e:
            self.undo(staged)
            raise StorageError(f"cannot write artifacts under {self.root}: {e}", _HINT) from e
        except BaseException:
            self.undo(staged)
            raise
        return staged

    def publish(self, staged: list[StagedFile]) -> None:
        """Rename staged files into place; an existing file is kept as a backup until commit."""
        try:
            for item in staged:
                if item.final.exists():
                    backup = item.final.with_name(f".{item.final.name}.bak-{uuid.uuid4().hex}")
                    os.replace(item.final, backup)
                    item.backup = backup
                os.replace(item.temp, item.final)
                item.published = True
        except OSError as e:
            raise StorageError(f"cannot move artifacts into {self.root}: {e}", _HINT) from e

    def undo(self, staged: list[StagedFile]) -> None:
        """Remove new files (temp or published) and restore backups. Never raises."""
        for item in staged:
            for path in (item.temp, item.final if item.published else None):
                if path is not None:
                    path.unlink(missing_ok=True)
            if item.backup is not None and item.backup.exists():
                os.replace(item.backup, item.final)
            item.published = False
            item.backup = None
        for folder in {item.final.parent for item in staged}:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a trial folder this call created

    def discard_backups(self, staged: list[StagedFile]) -> None:
        for item in staged:
            if item.backup is not None:
                item.backup.unlink(missing_ok=True)
                item.backup = None

    def read(self, info: ArtifactInfo) -> bytes:
        path = self.resolve(info.path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise StorageError(
                f"artifact file {path} of job {info.job_id} trial {info.trial_index} is missing",
                "the artifact directory does not match the database; restore it or re-run the job",
            ) from e
        except OSError as e:
            raise StorageError(f"cannot read artifact {path}: {e}", _HINT) from e
        if sha256_hex(data) != info.sha256:
            raise StorageError(
                f"artifact {path} does not match its recorded sha256",
                "the file was modified or corrupted; re-run the trial to regenerate it",
            )
        return data

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)


def missing_artifact(job_id: str, index: int, kind: str, *, final: bool = False) -> NotFoundError:
    what = f"final {kind!r} artifact (run `sparsearch finalize` first)" if final else repr(kind)
    return NotFoundError(
        f"trial {index} of job {job_id} has no {what} artifact"
        if not final
        else f"trial {index} of job {job_id} has no {what}",
        f"available kinds: {', '.join(ARTIFACT_KINDS)}; a trial has only the artifacts its "
        "run exported",
    )
