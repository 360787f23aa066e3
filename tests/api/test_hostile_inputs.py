"""Hostile requests (SQLite and PostgreSQL): integers past what storage holds, bodies that are
not JSON or not a form, methods a path does not have. Each is a 4xx in the API's error shape
(``detail`` + ``hint``) that the OpenAPI schema lists, never a 500, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import JOB_BODY

DB_INT_MIN, DB_INT_MAX = -(2**63), 2**63 - 1  # a signed 64-bit column (BIGINT, SQLite INTEGER)
TRIAL_INDEX_MAX = 2**31 - 1  # trials.index is a PostgreSQL INTEGER
PAGE_OFFSET_MAX = 10**9
BIG = 2**63  # one past a signed 64-bit column
HUGE = 2**64 + 1


def _job(**changes: Any) -> dict[str, Any]:
    body = {**JOB_BODY, **changes}
    for key in ("limits", "budget"):
        body[key] = {**JOB_BODY[key], **changes.get(key, {})}
    return body


# -- integers ----------------------------------------------------------------------------------


def _integers(schema: Any, spec: dict[str, Any], where: str, seen: set[str]) -> list[tuple]:
    """Every integer schema under ``schema`` (``$ref``s resolved): (where, minimum, maximum)."""
    if isinstance(schema, list):
        return [x for i, s in enumerate(schema) for x in _integers(s, spec, f"{where}[{i}]", seen)]
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return _integers(spec["components"]["schemas"][name], spec, name, seen | {name})
    found = []
    if schema.get("type") == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if "enum" in schema:  # a closed set of values (kernel sizes)
            low, high = min(schema["enum"]), max(schema["enum"])
        found.append((where, low, high))
    for key in ("properties", "additionalProperties", "items", "prefixItems", "anyOf", "oneOf"):
        sub = schema.get(key)
        if isinstance(sub, dict) and key == "properties":
            for name, s in sub.items():
                found += _integers(s, spec, f"{where}.{name}", seen)
        elif sub is not None:
            found += _integers(sub, spec, f"{where}.{key}", seen)
    return found


def test_every_request_integer_is_bounded_by_what_storage_holds(client):
    spec = client.get("/openapi.json").json()
    found = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for p in op.get("parameters", []):
                found += _integers(p["schema"], spec, f"{method} {path} {p['name']}", set())
            for media in op.get("requestBody", {}).get("content", {}).values():
                found += _integers(media["schema"], spec, f"{method} {path} body", set())
    assert len(found) >= 20  # limits, budget, space, seed, finalize, pages, indices, filters
    unbounded = [
        (where, low, high)
        for where, low, high in found
        if low is None or high is None or low < DB_INT_MIN or high > DB_INT_MAX
    ]
    assert unbounded == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"trials": [BIG]}, "trials.0"),
        ({"trials": [0, HUGE]}, "trials.1"),
        ({"trials": [DB_INT_MAX]}, "trials.0"),  # fits 64 bits, not the 32-bit index column
        ({"trials": [-1]}, "trials.0"),
        ({"epochs": BIG}, "epochs"),
        ({"epochs": -BIG}, "epochs"),
    ],
)
def test_finalize_integers_past_storage_are_422(client, alice, alice_job, storage, body, needle):
    r = client.post(f"/v1/jobs/{alice_job}/finalize", json=body, headers=alice)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(needle)
    assert "than or equal to" in r.json()["detail"]
    assert storage.count_jobs() == 1  # no finalize job was queued


def test_the_largest_trial_index_reaches_storage_and_is_404(client, alice, alice_job):
    r = client.post(
        f"/v1/jobs/{alice_job}/finalize", json={"trials": [TRIAL_INDEX_MAX]}, headers=alice
    )
    assert r.status_code == 404, r.text
    r = client.get(f"/v1/jobs/{alice_job}/trials/{TRIAL_INDEX_MAX}", headers=alice)
    assert r.status_code == 404, r.text
    r = client.get(f"/v1/jobs/{alice_job}/trials/{TRIAL_INDEX_MAX + 1}", headers=alice)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"seed": BIG}, "seed"),
        ({"seed": -1}, "seed"),
        ({"limits": {"flash_bytes": BIG}}, "limits.flash_bytes"),
        ({"limits": {"ram_bytes": -BIG - 1}}, "limits.ram_bytes"),
        ({"limits": {"macs": HUGE}}, "limits.macs"),
        ({"limits": {"ram_margin_bytes": BIG}}, "limits.ram_margin_bytes"),
        ({"budget": {"trials": BIG}}, "budget.trials"),
        ({"budget": {"parallel": BIG}}, "budget.parallel"),
        ({"budget": {"epochs": -1}}, "budget.epochs"),
        ({"space": {"max_blocks": BIG}}, "space.max_blocks"),
        ({"space": {"channels": [1, BIG]}}, "space.channels.1"),
        ({"space": {"head_units": [BIG]}}, "space.head_units.0"),
    ],
)
def test_job_integers_past_storage_are_422(client, alice, storage, changes, needle):
    r = client.post("/v1/jobs", json=_job(**changes), headers=alice)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(needle)
    assert storage.count_jobs() == 0


@pytest.mark.parametrize(
    "url",
    [
        "/v1/jobs/{job}/trials/{big}",
        "/v1/jobs/{job}/trials/-1",
        "/v1/jobs/{job}/trials/{big}/artifacts",
        "/v1/jobs/{job}/trials/{huge}/artifacts/onnx",
        "/v1/jobs?limit={big}",
        "/v1/jobs?offset={big}",
        "/v1/jobs?offset=-1",
        "/v1/jobs/{job}/trials?offset={huge}",
        "/v1/jobs/{job}/pareto?limit={big}",
        "/v1/jobs/{job}/pareto?format=csv&offset={big}",
        "/v1/jobs/{job}/best?max_flash={big}",
        "/v1/jobs/{job}/best?max_ram=-{big}",
        "/v1/datasets?limit={huge}",
        "/v1/datasets?offset={big}",
    ],
)
def test_path_and_query_integers_past_storage_are_422(client, alice, alice_job, url):
    r = client.get(url.format(job=alice_job, big=BIG, huge=HUGE), headers=alice)
    assert r.status_code == 422, r.text
    assert "than or equal to" in r.json()["detail"]


def test_the_largest_page_offset_reaches_storage(client, alice, alice_job):
    for url in ("/v1/jobs", f"/v1/jobs/{alice_job}/trials", "/v1/datasets"):
        r = client.get(f"{url}?offset={PAGE_OFFSET_MAX}", headers=alice)
        assert r.status_code == 200, r.text
        assert r.json()["data"] == []


# -- bodies that cannot be parsed ----------------------------------------------------------------


@pytest.mark.parametrize("raw", [b'{"dataset": "\xff"}', b"\xfe\xff\x00", b"\x80{}"])
@pytest.mark.parametrize("url", ["/v1/jobs", "/v1/jobs/{job}/finalize"])
def test_a_json_body_that_is_not_utf8_is_400_with_a_hint(client, alice, alice_job, raw, url):
    headers = {**alice, "Content-Type": "application/json"}
    r = client.post(url.format(job=alice_job), content=raw, headers=headers)
    assert r.status_code == 400, r.text
    body = r.json()
    assert "JSON" in body["detail"]
    assert "application/json" in body["hint"] and "UTF-8" in body["hint"]


def test_a_json_syntax_error_is_422_with_a_hint(client, alice):
    headers = {**alice, "Content-Type": "application/json"}
    r = client.post("/v1/jobs", content=b'{"dataset": "digits",}', headers=headers)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["detail"].startswith("body: not valid JSON")
    assert "line 1 column 22" in body["detail"]  # where json stopped reading
    assert "application/json" in body["hint"]


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("multipart/form-data", b"--x\r\n"),  # no boundary
        ("multipart/form-data; boundary=xx", b"garbage that is no form"),
        ("multipart/form-data; boundary=xx", b"--xx\r\nContent-Disposition: form-data\r\n\r\n"),
    ],
)
def test_a_malformed_upload_is_400_with_a_hint(client, alice, storage, content_type, raw):
    r = client.post("/v1/datasets", content=raw, headers={**alice, "Content-Type": content_type})
    assert r.status_code == 400, r.text
    body = r.json()
    assert "multipart" in body["detail"]
    assert "multipart/form-data" in body["hint"] and "`file`" in body["hint"]
    assert storage.list_datasets(owner="alice") == []


def test_the_schema_lists_the_400_of_every_route_that_takes_a_body(client):
    spec = client.get("/openapi.json").json()
    with_body = {
        (method, path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if "requestBody" in op
    }
    assert {("post", "/v1/jobs"), ("post", "/v1/datasets")} <= set(with_body)
    for op in with_body.values():
        assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    without_body = [
        op for item in spec["paths"].values() for op in item.values() if "requestBody" not in op
    ]
    assert without_body and all("400" not in op["responses"] for op in without_body)


# -- methods -----------------------------------------------------------------------------------


METHODS = [  # FastAPI routes take no HEAD unless they declare it
    ("/v1/jobs", {"GET", "POST"}),
    ("/v1/jobs/{job}", {"GET", "DELETE"}),
    ("/v1/jobs/{job}/finalize", {"GET", "POST"}),
    ("/v1/jobs/{job}/cancel", {"POST"}),
    ("/v1/datasets", {"GET", "POST"}),
    ("/v1/datasets/ds_0123456789ab", {"GET", "DELETE"}),
]


def _allow(response: Any) -> set[str]:
    return {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize(("path", "methods"), METHODS)
def test_options_lists_every_method_of_the_path(client, alice, alice_job, path, methods):
    r = client.options(path.format(job=alice_job), headers=alice)
    assert r.status_code == 204, r.text
    assert _allow(r) == methods | {"OPTIONS"}
    assert r.content == b""


@pytest.mark.parametrize(("path", "methods"), METHODS)
def test_a_method_the_path_lacks_is_405_listing_every_method(
    client, alice, alice_job, path, methods
):
    r = client.put(path.format(job=alice_job), headers=alice)
    assert r.status_code == 405, r.text
    assert _allow(r) == methods | {"OPTIONS"}
    assert "PUT" in r.json()["detail"] and all(m in r.json()["hint"] for m in methods)


def test_options_of_an_unknown_path_is_404(client, alice):
    assert client.options("/v1/nothing-here", headers=alice).status_code == 404
