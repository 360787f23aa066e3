"""``/new``: the new-job form (sizes with units) and the dataset upload.

The form is turned into the body of ``POST /v1/jobs`` and sent through the same route function,
so it accepts and refuses exactly what the API does, with the same messages; a size it cannot
read (``32 KiB``, ``6144``, ``1.5MB``) says so in ``units.parse_size``'s words.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError

from sparsearch.api.routes.datasets import upload_dataset
from sparsearch.api.routes.jobs import create_job
from sparsearch.api.schemas import TARGET_DESCRIPTION, JobCreate
from sparsearch.api.ui.pages import SessionDep
from sparsearch.api.ui.render import check_csrf, redirect, render
from sparsearch.api.views import field_errors
from sparsearch.datasets import BUILTIN_DATASETS
from sparsearch.errors import SparsearchError
from sparsearch.units import parse_size
from sparsearch.vocabulary import (
    DEFAULT_STRATEGY,
    DEFAULT_TARGET,
    FLASH_ACCOUNTINGS,
    PRUNING_CHOICES,
    PRUNING_METHODS,
    STRATEGIES,
    TARGETS,
)

router = APIRouter(include_in_schema=False)

#: The form's fields and where each goes in the job body (sizes are parsed with units).
SIZE_FIELDS = {"flash": "flash_bytes", "ram": "ram_bytes", "ram_margin": "ram_margin_bytes"}
INT_FIELDS = {"trials": "budget", "parallel": "budget", "epochs": "budget", "seed": None}
DEFAULTS = {
    "dataset": "digits",
    "flash": "32KiB",
    "ram": "8KiB",
    "ram_margin": "0",
    "macs": "",
    "instructions": "",
    "trials": "20",
    "parallel": "2",
    "epochs": "6",
    "seed": "0",
    "strategy": DEFAULT_STRATEGY,
    "target": DEFAULT_TARGET,
    "flash_accounting": "dense",
    "early_stopping": "off",
}


_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _number(text: str) -> int | str:
    """A form's integer, or the text itself so the API's validation names the problem."""
    text = text.strip()
    return int(text) if _INTEGER.fullmatch(text) else text


def job_body(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``POST /v1/jobs`` body of the form, and the sizes that could not be read (by field).
    Empty optional fields are left out, as an API client would leave them out."""
    errors: dict[str, str] = {}
    limits: dict[str, Any] = {}
    for name, key in SIZE_FIELDS.items():
        text = str(form.get(name, "")).strip()
        if name == "ram_margin" and text in ("", "0"):
            continue  # the API's default margin is 0
        if isinstance(number := _number(text), int):  # bytes: the API checks the range
            limits[key] = number
            continue
        try:
            limits[key] = parse_size(text, what=name.replace("_", " "))
        except SparsearchError as e:
            errors[name] = f"{e.message}; {e.hint}" if e.hint else e.message
    if str(form.get("macs", "")).strip():
        limits["macs"] = _number(str(form["macs"]))
    if str(form.get("instructions", "")).strip():
        limits["instructions"] = _number(str(form["instructions"]))
    budget = {k: _number(str(form.get(k, ""))) for k, part in INT_FIELDS.items() if part}
    body: dict[str, Any] = {
        "dataset": str(form.get("dataset", "")).strip(),
        "limits": limits,
        "budget": budget,
        "seed": _number(str(form.get("seed", "0")) or "0"),
        "strategy": form.get("strategy") or DEFAULT_STRATEGY,
        "target": form.get("target") or DEFAULT_TARGET,
        "flash_accounting": form.get("flash_accounting") or "dense",
        "early_stopping": form.get("early_stopping") == "on",
    }
    methods = list(form.get("pruning_methods") or [])
    if methods:
        body["pruning_methods"] = methods
    return body, errors


def _choices(storage: Any, owner: str) -> dict[str, Any]:
    uploads = storage.list_datasets(owner=owner, limit=200, offset=0)
    return {
        "builtin": BUILTIN_DATASETS,
        "uploads": uploads,
        "strategies": list(STRATEGIES.values()),
        "accountings": FLASH_ACCOUNTINGS,
        "targets": TARGETS,
        "target_help": TARGET_DESCRIPTION.replace("`", ""),
        "methods": [(m, PRUNING_METHODS.get(m)) for m in PRUNING_CHOICES],
    }


async def _form_page(
    request: Request,
    session: Any,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
    notice: str | None = None,
) -> Response:
    storage = request.app.state.storage
    choices = await anyio.to_thread.run_sync(_choices, storage, session.owner)
    return render(
        request,
        "new.html",
        {
            "values": values,
            "errors": errors or {},
            "problem": problem,
            "notice": notice,
            **choices,
        },
        session=session,
        status=status,
    )


@router.get("/new")
async def new_job_page(request: Request, session: SessionDep, dataset: str = "") -> Response:
    values: dict[str, Any] = {**DEFAULTS, "pruning_methods": []}
    notice = None
    if dataset:
        values["dataset"] = dataset[:64]
        notice = f"Uploaded: use dataset {dataset[:64]} below."
    return await _form_page(request, session, values, notice=notice)


@router.post("/new")
async def submit_job(request: Request, session: SessionDep) -> Response:
    form = await request.form()
    values: dict[str, Any] = {k: str(form.get(k, "")) for k in DEFAULTS}
    values["pruning_methods"] = [str(v) for v in form.getlist("pruning_methods")]
    await check_csrf(request, session, str(form.get("csrf", "")))
    body, errors = job_body(values)
    if errors:
        return await _form_page(request, session, values, errors, status=422)
    storage, settings = request.app.state.storage, request.app.state.settings
    try:
        parsed = JobCreate.model_validate(body)
    except ValidationError as e:
        found = field_errors(list(e.errors()))
        by_field = {_form_field(err["where"]): f"{err['where']}: {err['msg']}" for err in found}
        problem = "; ".join(f"{err['where']}: {err['msg']}" for err in found)
        return await _form_page(request, session, values, by_field, problem, status=422)
    response = Response()
    try:
        job = await anyio.to_thread.run_sync(
            create_job, parsed, response, storage, settings, session.owner
        )
    except HTTPException as e:
        return await _form_page(request, session, values, None, str(e.detail), status=422)
    except SparsearchError as e:
        from sparsearch.storage import ConflictError

        status = 409 if isinstance(e, ConflictError) else 422
        problem = f"{e.message} ({e.hint})" if e.hint else e.message
        return await _form_page(request, session, values, None, problem, status=status)
    return redirect(f"/jobs/{job.id}")


def _form_field(where: str) -> str:
    """The form field an API error location refers to (``limits.flash_bytes`` -> ``flash``)."""
    leaf = where.split(".")[1] if where.startswith(("limits.", "budget.")) else where
    for name, key in SIZE_FIELDS.items():
        if leaf == key:
            return name
    if where.startswith("pruning_methods"):
        return "pruning_methods"
    return leaf


@router.post("/datasets")
async def upload(
    request: Request,
    session: SessionDep,
    file: Annotated[UploadFile | None, File()] = None,
    csrf: Annotated[str, Form(max_length=128)] = "",
    name: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    await check_csrf(request, session, csrf)
    storage, settings = request.app.state.storage, request.app.state.settings
    values: dict[str, Any] = {**DEFAULTS, "pruning_methods": []}
    if file is None or not file.filename:
        problem = "choose an .npz file to upload (x_train, y_train, x_test, y_test)"
        return await _form_page(request, session, values, None, problem, status=422)
    try:
        info = await anyio.to_thread.run_sync(
            lambda: upload_dataset(
                file, Response(), storage, settings, session.owner, name=name.strip() or None
            )
        )
    except HTTPException as e:
        return await _form_page(request, session, values, None, str(e.detail), e.status_code)
    except SparsearchError as e:
        problem = f"{e.message} ({e.hint})" if e.hint else e.message
        return await _form_page(request, session, values, None, problem, status=422)
    except ValueError as e:  # a name storage refuses
        return await _form_page(request, session, values, None, str(e), status=422)
    return redirect(f"/new?dataset={info.id}")
