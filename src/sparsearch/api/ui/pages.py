"""The dashboard's read pages and their buttons: jobs (``/``), a job (``/jobs/{id}``), a trial
(``/jobs/{id}/trials/{index}``), cancel and delete.

Pages read storage exactly as the API does, scoped to the signed-in owner: another owner's job
is a 404 page. Live data (progress, trials, the front, hypervolume) is polled by the page's
script from the ``/v1`` API, which accepts the session cookie on GET (``guard``).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import Response

from sparsearch.api.routes import trials as trial_routes
from sparsearch.api.routes.artifacts import list_artifacts
from sparsearch.api.schemas import MAX_BYTES
from sparsearch.api.ui.render import (
    PageError,
    check_csrf,
    job_id_or_404,
    owned,
    page_session,
    redirect,
    render,
    safe_next,
)
from sparsearch.api.ui.session import Session
from sparsearch.api.ui.trial_view import trial_view
from sparsearch.api.views import jobs_public
from sparsearch.errors import SparsearchError
from sparsearch.units import parse_size
from sparsearch.vocabulary import JOB_STATUSES, SETTLED_JOB_STATUSES, accounted_flash_field

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[Session, Depends(page_session)]
JOBS_PER_PAGE = 25


def _storage(request: Request) -> Any:
    return request.app.state.storage


@router.get("/")
async def jobs_page(
    request: Request,
    session: SessionDep,
    status: str = "",
    page_text: Annotated[str, Query(alias="page")] = "1",
) -> Response:
    if status and status not in JOB_STATUSES:
        status = ""
    # like an unknown status, a page number that is none is ignored (not a JSON 422)
    digits = page_text.isascii() and page_text.isdigit() and len(page_text) <= 7
    page = max(1, min(int(page_text), 10**6)) if digits else 1
    storage = _storage(request)

    def read() -> tuple[list[Any], int]:
        found = storage.list_jobs(
            owner=session.owner,
            status=status or None,
            limit=JOBS_PER_PAGE,
            offset=(page - 1) * JOBS_PER_PAGE,
        )
        total = storage.count_jobs(status or None, owner=session.owner)
        return jobs_public(storage, found), total

    jobs, total = await anyio.to_thread.run_sync(read)
    pages = max(1, -(-total // JOBS_PER_PAGE))
    return render(
        request,
        "jobs.html",
        {
            "jobs": jobs,
            "total": total,
            "status": status,
            "page": page,
            "pages": pages,
            "settled": SETTLED_JOB_STATUSES,
            "poll": {
                "status": status,
                "limit": JOBS_PER_PAGE,
                "offset": (page - 1) * JOBS_PER_PAGE,
            },
        },
        session=session,
    )


def _pick(storage: Any, job_id: str, owner: str, flash: str, ram: str) -> dict[str, Any] | None:
    """ "Pick for my chip": the ``/best`` endpoint's answer for sizes written with units."""
    if not flash and not ram:
        return None
    try:
        max_flash = parse_size(flash, what="flash") if flash else None
        max_ram = parse_size(ram, what="RAM") if ram else None
    except SparsearchError as e:
        return {"error": f"{e.message}: {e.hint}" if e.hint else e.message}
    for what, text, value in (("flash", flash, max_flash), ("RAM", ram, max_ram)):
        if value is not None and value > MAX_BYTES:  # /best's own bound (a database error past it)
            return {"error": f"{what} {text!r} is over the largest size accepted, {MAX_BYTES} B"}
    try:
        best = trial_routes.best(job_id, storage, owner, max_flash=max_flash, max_ram=max_ram)
    except HTTPException as e:
        return {"error": str(e.detail), "max_flash": max_flash, "max_ram": max_ram}
    trial = best.model_dump(mode="json")
    artifacts = [a.model_dump() for a in list_artifacts(job_id, trial["index"], storage, owner)]
    return {"trial": trial, "artifacts": artifacts, "max_flash": max_flash, "max_ram": max_ram}


@router.get("/jobs/{job_id}")
async def job_page(
    request: Request, job_id: str, session: SessionDep, flash: str = "", ram: str = ""
) -> Response:
    job_id_or_404(job_id)
    storage = _storage(request)
    flash, ram = flash.strip()[:32], ram.strip()[:32]

    def read() -> tuple[Any, Any, dict[str, Any] | None]:
        job = owned(storage.get_job, job_id, owner=session.owner)
        public = jobs_public(storage, [job])[0]
        return job, public, _pick(storage, job_id, session.owner, flash, ram)

    job, public, pick = await anyio.to_thread.run_sync(read)
    accounting = job.config.get("flash_accounting", "dense")
    limits = job.config["limits"]
    page_data = {
        "id": job.id,
        "status": job.status,
        "settled": list(SETTLED_JOB_STATUSES),
        "flash_limit": limits["flash_bytes"],
        "ram_limit": limits["ram_bytes"] - limits.get("ram_margin_bytes", 0),
        "ram_margin": limits.get("ram_margin_bytes", 0),
        "flash_field": accounted_flash_field(accounting),
        "flash_accounting": accounting,
        "pick": pick["trial"]["index"] if pick and "trial" in pick else None,
    }
    return render(
        request,
        "job.html",
        {
            "job": public,
            "config": job.config,
            "pick": pick,
            "pick_flash": flash,
            "pick_ram": ram,
            "page_data": page_data,
        },
        session=session,
    )


@router.get("/jobs/{job_id}/trials/{index}")
async def trial_page(request: Request, job_id: str, index: str, session: SessionDep) -> Response:
    job_id_or_404(job_id)
    if not index.isdigit() or len(index) > 9:
        raise PageError(404, "No such trial", f"Job {job_id} has no trial {index[:16]!r}.")
    storage = _storage(request)

    def read() -> tuple[Any, Any, list[Any]]:
        job = owned(storage.get_job, job_id, owner=session.owner)
        trial = owned(storage.get_trial, job_id, int(index))
        return job, trial, list_artifacts(job_id, int(index), storage, session.owner)

    job, trial, artifacts = await anyio.to_thread.run_sync(read)
    return render(
        request,
        "trial.html",
        {"job": job, "trial": trial, "view": trial_view(job, trial), "artifacts": artifacts},
        session=session,
    )


@router.post("/jobs/{job_id}/cancel")
async def cancel(
    request: Request,
    job_id: str,
    session: SessionDep,
    csrf: Annotated[str, Form(max_length=128)] = "",
    back: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    job_id_or_404(job_id)
    await check_csrf(request, session, csrf)
    await _act(request, job_id, session, "cancel")
    return redirect(_same_site(back, f"/jobs/{job_id}"))


@router.post("/jobs/{job_id}/delete")
async def delete(
    request: Request,
    job_id: str,
    session: SessionDep,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    job_id_or_404(job_id)
    await check_csrf(request, session, csrf)
    await _act(request, job_id, session, "delete")
    return redirect("/")


async def _act(request: Request, job_id: str, session: Session, action: str) -> None:
    from sparsearch.storage import ConflictError

    storage = _storage(request)
    call = storage.request_cancel if action == "cancel" else storage.delete_job
    try:
        await anyio.to_thread.run_sync(lambda: owned(call, job_id, owner=session.owner))
    except ConflictError as e:
        raise PageError(409, f"Cannot {action} job {job_id}", e.message) from None


def _same_site(target: str, fallback: str) -> str:
    """``target`` when it is a path on this site (no open redirect), else ``fallback``."""
    return target if target and safe_next(target) == target else fallback
