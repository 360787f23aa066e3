"""Where the CLI's job commands read from: a local database or a sparsearch server.

Both backends answer with the API's JSON shapes (a job with ``progress``, trial dicts, artifact
bytes), so ``jobs``, ``status``, ``pareto`` and ``pull`` work the same against ``--db`` and
``--server``.
"""

from __future__ import annotations

from typing import Any

from sparsearch.errors import ConfigError, NotFoundError, SparsearchError, StorageError

PAGE = 1000


class LocalBackend:
    """Reads a local database directly (no server, no token)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def get_job(self, job_id: str) -> dict[str, Any]:
        from sparsearch.api.views import jobs_public

        return jobs_public(self.storage, [self.storage.get_job(job_id)])[0].model_dump(mode="json")

    def list_jobs(self, *, status: str | None, limit: int) -> list[dict[str, Any]]:
        from sparsearch.api.views import jobs_public

        jobs = self.storage.list_jobs(status=status, limit=limit)
        return [j.model_dump(mode="json") for j in jobs_public(self.storage, jobs)]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel the job (``Storage.request_cancel``): a queued or interrupted job at once, a
        running one by its driver, which polls the flag (a scheduler's, or a local search's)."""
        from sparsearch.api.views import jobs_public

        job = self.storage.request_cancel(job_id)
        return jobs_public(self.storage, [job])[0].model_dump(mode="json")

    def pareto(self, job_id: str) -> list[dict[str, Any]]:
        """The front, most accurate first, each trial with the job's ``flash_accounting`` and
        its ``accounted_flash_bytes`` (as ``GET /v1/jobs/{id}/pareto``)."""
        from sparsearch.api.views import front_trial_json

        accounting, front = self.storage.front(job_id)
        return [front_trial_json(t, accounting) for t in front]

    def trial(self, job_id: str, index: int) -> dict[str, Any]:
        """One trial's JSON (as ``GET /v1/jobs/{id}/trials/{index}``)."""
        return self.storage.get_trial(job_id, index).to_json()  # type: ignore[no-any-return]

    def best(self, job_id: str) -> dict[str, Any]:
        """The most accurate front trial (int8 accuracy where measured), as ``/best``."""
        from sparsearch.api.views import front_trial_json

        accounting, trial = self.storage.best_front_trial(job_id)
        if trial is None:
            raise NotFoundError(
                f"job {job_id} has no trial on its front yet",
                "wait for a trial to complete or pass --trial N",
            )
        return front_trial_json(trial, accounting)

    def artifact(
        self, job_id: str, index: int, kind: str, final: bool | None = None
    ) -> tuple[bytes, bool]:
        """An artifact's bytes and whether they are the final training's; ``final`` None:
        the final training's when the trial has one, else the search run's."""
        if final is None:
            kinds = {(a.kind, a.final) for a in self.storage.list_artifacts(job_id, index)}
            final = (kind, True) in kinds
        return self.storage.read_artifact(job_id, index, kind, final=final), final


class RemoteBackend:
    """Talks to a sparsearch server over HTTP with a bearer token."""

    def __init__(self, server: str, token: str | None, *, timeout: float = 30.0) -> None:
        import httpx

        if not server.startswith(("http://", "https://")):
            raise ConfigError(
                f"server URL {server!r} must start with http:// or https://",
                "for example --server http://127.0.0.1:8000",
            )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise StorageError(
                f"cannot reach the server at {self.server}: {e}",
                "is `sparsearch serve` running there? check --server",
            ) from e
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/v1/jobs", json=body).json()

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel").json()

    def list_jobs(self, *, status: str | None, limit: int) -> list[dict[str, Any]]:
        params = {"limit": min(limit, PAGE), **({"status": status} if status else {})}
        return self._request("GET", "/v1/jobs", params=params).json()["data"]

    def pareto(self, job_id: str) -> list[dict[str, Any]]:
        trials: list[dict[str, Any]] = []
        while True:
            page = self._request(
                "GET", f"/v1/jobs/{job_id}/pareto", params={"limit": PAGE, "offset": len(trials)}
            ).json()
            trials += page["data"]
            if not page["data"] or len(trials) >= page["count"]:
                return trials

    def trial(self, job_id: str, index: int) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}/trials/{index}").json()

    def best(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}/best").json()

    def finalize(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Queue a finalize job on the server (``POST /v1/jobs/{id}/finalize``)."""
        return self._request("POST", f"/v1/jobs/{job_id}/finalize", json=body).json()

    def artifact(
        self, job_id: str, index: int, kind: str, final: bool | None = None
    ) -> tuple[bytes, bool]:
        params = {} if final is None else {"final": "true" if final else "false"}
        path = f"/v1/jobs/{job_id}/trials/{index}/artifacts/{kind}"
        response = self._request("GET", path, params=params)
        disposition = response.headers.get("Content-Disposition", "")
        return response.content, f"-final-{kind}." in disposition


def _error_from(response: Any) -> SparsearchError:
    """An HTTP error as the project's own error, with the server's detail and hint."""
    try:
        body = response.json()
        detail, hint = str(body.get("detail", "")), body.get("hint")
    except ValueError:
        detail, hint = response.text[:300], None
    status = response.status_code
    if status == 401:
        return ConfigError(
            f"the server refused the token: {detail}",
            "pass --token or set SPARSEARCH_TOKEN (create one with "
            "`sparsearch token create --owner NAME` on the server)",
        )
    if status == 404:
        return NotFoundError(detail, hint)
    if status in (409, 413, 422, 429):
        return ConfigError(detail, hint)
    return StorageError(f"the server answered {status}: {detail}", hint)
