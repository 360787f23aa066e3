"""What every part of :class:`~sparsearch.storage.Storage` shares: engine, sessions, files."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Self

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ._session import reading, transaction
from .artifacts import ArtifactStore
from .engine import build_reader, connection_error, mask_url
from .records import ArtifactInfo


class StorageBase:
    """Engine, one session per call, and the artifact store (its folder is made on first
    write, so read-only users need no writable artifact directory)."""

    def __init__(self, engine: Engine, artifact_dir: Path | str) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Reads on the API's hot path run in autocommit mode: no BEGIN/COMMIT round trips (on
        # PostgreSQL each measured as much as the query), each statement reads its own
        # snapshot.
        self._reader = build_reader(engine)
        self._files = ArtifactStore(artifact_dir)

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return mask_url(self._engine.url)

    @property
    def artifact_dir(self) -> Path:
        return self._files.root

    def _job_files(self, recorded: str | None) -> ArtifactStore:
        """Where a job's artifact files are written: the folder recorded with the job when it
        exists (a job made by ``search --artifacts DIR``), else this storage's own."""
        if recorded:
            path = Path(recorded)
            if path != self._files.root and path.is_dir():
                return ArtifactStore(path)
        return self._files

    def _read_file(self, info: ArtifactInfo, recorded: str | None) -> bytes:
        """An artifact's bytes from this storage's folder if it holds the file (an explicit
        ``--artifacts`` wins), else from the folder recorded with the job."""
        own, job = self._files, self._job_files(recorded)
        return own.read(info) if job is own or own.holds(info) else job.read(info)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def ping(self) -> None:
        """``SELECT 1``; an unreachable database raises StorageError (with a hint)."""
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as e:
            raise connection_error(self._engine.url, e) from e

    def close(self) -> None:
        self._engine.dispose()
        if self._reader is not self._engine:
            self._reader.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, doing: str, *, conflict: str | None = None) -> AbstractContextManager[Session]:
        return transaction(self._sessions, self.url, doing, conflict=conflict)

    def _read(self, doing: str) -> AbstractContextManager[Connection]:
        """A Core connection whose statements commit one by one: for hot reads that need no
        snapshot across statements (and idempotent single-statement writes)."""
        return reading(self._reader, self.url, doing)
