"""Argument checks and ORM row → record conversion (private to ``storage/``)."""

from __future__ import annotations

import copy
import json
import math
import operator
import re
from typing import Any

from .models import Artifact, Job, Token, Trial
from .records import (
    ESTIMATE_KEYS,
    MEASURED_KEYS,
    METRIC_KEYS,
    TARGET_METRIC_KEYS,
    TEXT_METRIC_KEYS,
    ArtifactInfo,
    JobInfo,
    TokenInfo,
    TrialInfo,
)

# Job ids name artifact folders: keep them to a safe alphabet.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_OWNER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise ValueError(
            f"invalid job id {job_id!r}: use 1-64 letters, digits, '-' or '_' "
            "(starting with a letter or digit)"
        )
    if job_id == "datasets":  # the artifact folder of uploaded datasets (storage/datasets.py)
        raise ValueError("job id 'datasets' is reserved; use another id")
    return job_id


def check_owner(owner: str) -> str:
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
        raise ValueError(f"invalid owner {owner!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    return owner


def check_name(name: str, *, what: str = "name", max_len: int = 128) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= max_len or not name.isprintable():
        raise ValueError(f"invalid {what} {name!r}: use 1-{max_len} printable characters")
    return name


def check_page(limit: int | None, offset: int) -> None:
    if (limit is not None and limit < 0) or offset < 0:
        raise ValueError("limit and offset must be >= 0")


def check_index(index: int) -> int:
    if isinstance(index, bool):
        raise TypeError(f"trial index must be an integer, not {index!r}")
    value = operator.index(index)
    if value < 0:
        raise ValueError(f"trial index must be >= 0, not {value}")
    return value


def check_json(name: str, value: Any, kind: type = dict) -> Any:
    """A deep copy of ``value`` (a ``kind``: dict or list) after checking it is strict JSON (no
    NaN/inf)."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, not {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be JSON-serialisable: {e}") from e
    return copy.deepcopy(value)


def float_or_none(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a number, not {value!r}") from e
    return None if math.isnan(result) else result


def int_or_none(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {value!r}") from None


def estimate_values(estimates: dict[str, Any]) -> dict[str, int | None]:
    """Column values of a new trial's estimates: each key, and for flash / RAM / activation
    also its ``est_`` column, which keeps the estimate once a measurement replaces it."""
    unknown = set(estimates) - set(ESTIMATE_KEYS)
    if unknown:
        raise ValueError(
            f"unknown estimate key(s) {', '.join(sorted(unknown))}; "
            f"expected among {', '.join(ESTIMATE_KEYS)}"
        )
    values = {k: int_or_none(k, v) for k, v in estimates.items()}
    values.update({f"est_{k}": values[k] for k in MEASURED_KEYS if k in values})
    return values


def str_or_none(name: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a string, not {value!r}")


_INT_METRICS = frozenset((*ESTIMATE_KEYS, *TARGET_METRIC_KEYS))


def metric_values(metrics: dict[str, Any]) -> dict[str, float | int | str | None]:
    """Column values of a finished trial's ``metrics`` (``records.METRIC_KEYS``): integers
    for the resource numbers, text for ``c_error``, floats for the rest."""
    unknown = set(metrics) - set(METRIC_KEYS)
    if unknown:
        raise ValueError(
            f"unknown metric key(s) {', '.join(sorted(unknown))}; "
            f"expected among {', '.join(METRIC_KEYS)}"
        )
    out: dict[str, float | int | str | None] = {}
    for key, value in metrics.items():
        if key in _INT_METRICS:
            out[key] = int_or_none(key, value)
        elif key in TEXT_METRIC_KEYS:
            out[key] = str_or_none(key, value)
        else:
            out[key] = float_or_none(key, value)
    return out


def job_info(row: Job) -> JobInfo:
    return JobInfo(
        id=row.id,
        status=row.status,
        dataset=row.dataset,
        config=copy.deepcopy(row.config),
        error=row.error,
        hypervolume=row.hypervolume,
        best_accuracy=row.best_accuracy,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        owner=row.owner,
        cancel_requested=bool(row.cancel_requested),
        scheduler_id=row.scheduler_id,
        heartbeat_at=row.heartbeat_at,
        screened=int(row.screened or 0),
    )


def token_info(row: Token) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        owner=row.owner,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def trial_info(row: Trial) -> TrialInfo:
    # No copies: rows come from a session that closes right after, so their freshly decoded
    # JSON values are not shared with anything (copying them was a third of a page's cost).
    return TrialInfo(
        job_id=row.job_id,
        index=row.index,
        status=row.status,
        params=row.params,
        generator=row.generator,
        gen_seconds=row.gen_seconds,
        train_seconds=row.train_seconds,
        accuracy=row.accuracy,
        test_accuracy=row.test_accuracy,
        flash_bytes=row.flash_bytes,
        ram_bytes=row.ram_bytes,
        activation_bytes=row.activation_bytes,
        macs=row.macs,
        nnz_flash_bytes=row.nnz_flash_bytes,
        param_count=row.param_count,
        int8_accuracy=row.int8_accuracy,
        int8_test_accuracy=row.int8_test_accuracy,
        measured=bool(row.measured),
        est_flash_bytes=row.est_flash_bytes,
        est_ram_bytes=row.est_ram_bytes,
        est_activation_bytes=row.est_activation_bytes,
        export_seconds=row.export_seconds,
        tflm_flash_bytes=row.tflm_flash_bytes,
        tflm_ram_bytes=row.tflm_ram_bytes,
        c_flash_bytes=row.c_flash_bytes,
        c_ram_bytes=row.c_ram_bytes,
        c_stack_bytes=row.c_stack_bytes,
        instructions=row.instructions,
        c_error=row.c_error,
        deployment=row.deployment,
        curve=row.curve,
        final=row.final,
        feasible=bool(row.feasible),
        pareto=bool(row.pareto),
        charged=bool(row.charged),
        pruning=row.pruning,
        effective_spec=row.effective_spec,
        error=row.error,
        worker_pid=row.worker_pid,
        worker_host=row.worker_host,
        worker_node=row.worker_node,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def trial_info_from_row(row: Any) -> TrialInfo:
    """A TrialInfo from a Core row of ``queries.trial_page_query`` (its columns are the
    fields in order, then the page's total): no ORM objects and no keyword dict, the cheapest
    build for pages."""
    return TrialInfo(*row[:-1])


def artifact_info(row: Artifact, job_id: str, index: int) -> ArtifactInfo:
    return ArtifactInfo(
        job_id=job_id,
        trial_index=index,
        kind=row.kind,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        path=row.path,
        effective_spec=copy.deepcopy(row.effective_spec),
        created_at=row.created_at,
        final=bool(row.final),
    )
