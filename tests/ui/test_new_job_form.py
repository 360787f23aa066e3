"""The new-job form and the dataset upload on SQLite and PostgreSQL: sizes with units become
bytes, every refusal carries the message POST /v1/jobs (or /v1/datasets) gives for the same
input, at the field it concerns, and an upload leads back to the form with the new dataset."""

from __future__ import annotations

import io

import numpy as np
from ui_helpers import ACTIVE_JOBS, csrf_of, form_csrf, location, page, queued_job, words

from sparsearch.errors import ConfigError
from sparsearch.units import parse_size
from sparsearch.vocabulary import DEFAULT_TARGET, TARGETS

#: A target other than the default: the form's choice must reach the job.
OTHER = next(t for t in TARGETS if t != DEFAULT_TARGET)

FORM = {
    "dataset": "digits",
    "flash": "32KB",
    "ram": "24KiB",
    "ram_margin": "0",
    "macs": "",
    "instructions": "",
    "trials": "3",
    "parallel": "1",
    "epochs": "2",
    "seed": "7",
    "strategy": "random",
    "target": OTHER,
    "flash_accounting": "dense",
    "early_stopping": "off",
}
#: The POST /v1/jobs body of FORM.
BODY = {
    "dataset": "digits",
    "limits": {"flash_bytes": 32000, "ram_bytes": 24576},
    "budget": {"trials": 3, "parallel": 1, "epochs": 2},
    "seed": 7,
    "strategy": "random",
    "target": OTHER,
    "early_stopping": False,
}


def _submit(client, **changes: str):
    return client.post("/new", data={**FORM, **changes, "csrf": form_csrf(client, "/new")})


def _field_message(doc, name: str) -> str:
    """The error the form shows at field ``name`` (tied to it for screen readers)."""
    field = doc.find("input", name=name)
    assert field.attrs.get("aria-invalid") == "true", field.attrs
    return doc.by_id(field.attrs["aria-describedby"]).text()


def test_the_form_creates_a_job_with_sizes_read_with_units(alice, api_alice, storage):
    r = alice.get("/new")
    assert r.status_code == 200
    doc = page(r)
    names = {el.attrs.get("name") for el in doc.by_id("new-job").find_all(name=True)}
    assert set(FORM) <= names

    r = _submit(alice, ram_margin="1KiB", macs="50000", pruning_methods="filter_norm")
    job_id = location(r).removeprefix("/jobs/")
    assert location(r) == f"/jobs/{job_id}"
    job = alice.get(f"/v1/jobs/{job_id}", headers=api_alice).json()
    assert job["limits"] == {
        "flash_bytes": 32000,
        "ram_bytes": 24576,
        "ram_margin_bytes": 1024,
        "macs": 50000,
        "instructions": None,
    }
    assert job["budget"] == {"trials": 3, "parallel": 1, "epochs": 2}
    assert (job["seed"], job["strategy"], job["dataset"]) == (7, "random", "digits")
    assert job["target"] == OTHER
    assert job["status"] == "queued"
    assert storage.get_job(job_id, owner="alice").config["space"]["pruning_methods"] == [
        "filter_norm"
    ]
    assert alice.get(location(r)).status_code == 200


def _units_error(text: str, what: str) -> ConfigError:
    try:
        parse_size(text, what=what)
    except ConfigError as e:
        return e
    raise AssertionError(f"{text!r} parsed")


def test_a_size_it_cannot_read_is_refused_at_its_field(alice, storage):
    r = _submit(alice, flash="lots", ram_margin="2 potatoes")
    assert r.status_code == 422
    doc = page(r)
    for field, text, what in [
        ("flash", "lots", "flash"),
        ("ram_margin", "2 potatoes", "ram margin"),
    ]:
        shown = _field_message(doc, field)
        error = _units_error(text, what)
        assert error.message in shown and error.hint in shown
        assert doc.find("input", name=field).attrs["value"] == text  # kept for correcting
    assert doc.find("input", name="ram").attrs.get("aria-invalid") is None
    assert storage.count_jobs(None, owner="alice") == 0


#: Form fields, and the same values in a POST /v1/jobs body.
REFUSED = [
    ({"trials": "0"}, {"budget": {**BODY["budget"], "trials": 0}}),
    ({"epochs": "999"}, {"budget": {**BODY["budget"], "epochs": 999}}),
    ({"parallel": "-1"}, {"budget": {**BODY["budget"], "parallel": -1}}),
    ({"trials": "many"}, {"budget": {**BODY["budget"], "trials": "many"}}),
    ({"trials": "--5"}, {"budget": {**BODY["budget"], "trials": "--5"}}),
    ({"trials": "²"}, {"budget": {**BODY["budget"], "trials": "²"}}),
    ({"trials": "9" * 5000}, {"budget": {**BODY["budget"], "trials": "9" * 5000}}),
    ({"trials": "51"}, {"budget": {**BODY["budget"], "trials": 51}}),  # over max_trials
    ({"seed": "-1"}, {"seed": -1}),
    ({"macs": "0"}, {"limits": {**BODY["limits"], "macs": 0}}),
    ({"instructions": "0"}, {"limits": {**BODY["limits"], "instructions": 0}}),
    ({"instructions": "lots"}, {"limits": {**BODY["limits"], "instructions": "lots"}}),
    ({"flash": "0"}, {"limits": {**BODY["limits"], "flash_bytes": 0}}),
    ({"ram": "-5"}, {"limits": {**BODY["limits"], "ram_bytes": -5}}),
    ({"flash": "99999999999"}, {"limits": {**BODY["limits"], "flash_bytes": 99999999999}}),
    ({"strategy": "guess"}, {"strategy": "guess"}),
    ({"target": "esp32"}, {"target": "esp32"}),
    ({"pruning_methods": "magnitude"}, {"pruning_methods": ["magnitude"]}),  # dense: no
]  # fmt: skip


def test_refusals_carry_the_apis_message_for_the_same_values(alice, api_alice, storage):
    for fields, body in REFUSED:
        api = alice.post("/v1/jobs", json={**BODY, **body}, headers=api_alice)
        assert api.status_code == 422, (fields, api.text)
        problem = api.json()
        hint = f" ({problem['hint']})" if problem.get("hint") else ""
        r = _submit(alice, **fields)
        assert r.status_code == 422, (fields, r.text[:300])
        doc = page(r)
        assert doc.by_id("form-problem").text() == words(problem["detail"] + hint), fields
        (field,) = fields
        if "errors" in problem and doc.find_all("input", name=field, type="text"):
            # a text field the API names: the message is shown at it too
            assert _field_message(doc, field) == words(problem["detail"]), fields
    assert storage.count_jobs(None, owner="alice") == 0


def test_the_target_select_offers_every_target_the_default_selected(alice):
    select = page(alice.get("/new")).by_id("new-job").find("select", name="target")
    options = select.find_all("option")
    assert [o.attrs["value"] for o in options] == list(TARGETS)
    assert [o.attrs["value"] for o in options if "selected" in o.attrs] == [DEFAULT_TARGET]
    assert "Cortex-M4" in page(alice.get("/new")).by_id("h-target").text()


def test_sparse_accounting_under_c_is_refused_with_the_apis_message(alice, api_alice, storage):
    changes = {"target": "c", "flash_accounting": "sparse"}
    api = alice.post("/v1/jobs", json={**BODY, **changes}, headers=api_alice)
    assert api.status_code == 422, api.text
    problem = api.json()
    r = _submit(alice, **changes)
    assert r.status_code == 422
    doc = page(r)
    assert doc.by_id("form-problem").text() == words(f"{problem['detail']} ({problem['hint']})")
    kept = doc.find("select", name="target").find_all("option", selected=True)
    assert [o.attrs["value"] for o in kept] == ["c"]  # kept for correcting
    assert storage.count_jobs(None, owner="alice") == 0


def test_an_instructions_limit_under_tflm_is_refused_with_the_apis_message(
    alice, api_alice, storage
):
    api_body = {**BODY, "target": "tflm", "limits": {**BODY["limits"], "instructions": 5000}}
    api = alice.post("/v1/jobs", json=api_body, headers=api_alice)
    assert api.status_code == 422, api.text
    problem = api.json()
    assert "C target" in problem["detail"] and "--target c" in problem["hint"]
    r = _submit(alice, target="tflm", instructions="5000")
    assert r.status_code == 422
    doc = page(r)
    assert doc.by_id("form-problem").text() == words(f"{problem['detail']} ({problem['hint']})")
    assert doc.find("input", name="instructions").attrs["value"] == "5000"  # kept
    assert storage.count_jobs(None, owner="alice") == 0


def test_an_instructions_limit_reaches_the_job_and_its_page(alice, api_alice, storage):
    r = _submit(alice, target="c", instructions="300000")
    job_id = location(r).removeprefix("/jobs/")
    assert location(r) == f"/jobs/{job_id}"
    job = alice.get(f"/v1/jobs/{job_id}", headers=api_alice).json()
    assert job["limits"]["instructions"] == 300000 and job["target"] == "c"
    assert storage.get_job(job_id, owner="alice").config["limits"]["instructions"] == 300000
    facts = words(page(alice.get(f"/jobs/{job_id}")).text())
    assert "Instructions300,000 per inference" in facts  # <dt>, then <dd>
    plain = location(_submit(alice, target="c")).removeprefix("/jobs/")
    assert "Instructions" not in words(page(alice.get(f"/jobs/{plain}")).text())


def test_the_job_page_and_the_jobs_table_show_the_target(alice):
    job_id = location(_submit(alice)).removeprefix("/jobs/")
    assert page(alice.get(f"/jobs/{job_id}")).by_id("job-target").text() == OTHER
    rows = [tr for tr in page(alice.get("/")).find_all("tr", data_job_id=job_id)]
    assert [row.find("td", data_role="target").text() for row in rows] == [OTHER]


def test_over_the_active_job_quota_is_a_409_with_the_apis_message(alice, api_alice, storage):
    for _ in range(ACTIVE_JOBS):
        queued_job(storage, "alice")
    api = alice.post("/v1/jobs", json=BODY, headers=api_alice)
    assert api.status_code == 409
    problem = api.json()
    r = _submit(alice)
    assert r.status_code == 409
    shown = page(r).by_id("form-problem").text()
    assert words(problem["detail"]) in shown and words(problem["hint"]) in shown
    assert storage.count_jobs(None, owner="alice") == ACTIVE_JOBS


def _npz(**drop: bool) -> bytes:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (40, 8, 8), dtype=np.uint8),
        "y_train": np.arange(40) % 4,
        "x_test": rng.integers(0, 256, (12, 8, 8), dtype=np.uint8),
        "y_test": np.arange(12) % 4,
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v for k, v in arrays.items() if not drop.get(k)})
    return buf.getvalue()


def _upload(client, data: bytes, csrf: str, name: str = ""):
    files = {"file": ("mine.npz", data, "application/octet-stream")}
    return client.post("/datasets", files=files, data={"csrf": csrf, "name": name})


def test_an_upload_leads_back_to_the_form_with_the_dataset_or_says_why_not(
    alice, api_alice, storage
):
    assert _upload(alice, _npz(), csrf="").status_code == 403
    assert storage.list_datasets(owner="alice", limit=10, offset=0) == []

    r = _upload(alice, _npz(), form_csrf(alice, "/new"), name="squares")
    target = location(r)
    assert target.startswith("/new?dataset=")
    dataset_id = target.removeprefix("/new?dataset=")
    (stored,) = storage.list_datasets(owner="alice", limit=10, offset=0)
    assert stored.id == dataset_id

    doc = page(alice.get(target))
    options = doc.by_id("f-dataset").find_all("option")
    assert dataset_id in {o.attrs["value"] for o in options}
    (selected,) = [o for o in options if "selected" in o.attrs]
    assert selected.attrs["value"] == dataset_id
    # and a job on it goes through
    r = alice.post("/new", data={**FORM, "dataset": dataset_id, "csrf": csrf_of(alice.get(target))})
    job = alice.get(f"/v1{location(r)}", headers=api_alice).json()
    assert job["dataset"] == dataset_id

    # no file at all: the form says so (not a JSON 422)
    r = alice.post("/datasets", data={"csrf": form_csrf(alice, "/new")}, files={"x": ("", b"")})
    assert r.status_code == 422 and "text/html" in r.headers["content-type"]
    assert "choose an .npz file" in page(r).by_id("form-problem").text()

    # a file that is no dataset: the API's status and message
    bad = _npz(y_test=True)
    files = {"file": ("mine.npz", bad, "application/octet-stream")}
    api = alice.post("/v1/datasets", files=files, headers=api_alice)
    assert api.status_code == 422
    problem = api.json()
    r = _upload(alice, bad, form_csrf(alice, "/new"))
    assert r.status_code == api.status_code
    shown = page(r).by_id("form-problem").text()
    assert words(problem["detail"]) in shown
    if problem.get("hint"):
        assert words(problem["hint"]) in shown
    assert len(storage.list_datasets(owner="alice", limit=10, offset=0)) == 1


def test_early_stopping_is_off_unless_chosen_and_reaches_the_job(alice, api_alice, storage):
    off = location(_submit(alice)).removeprefix("/jobs/")
    on = location(_submit(alice, early_stopping="on")).removeprefix("/jobs/")
    assert storage.get_job(off, owner="alice").config["early_stopping"] is False
    assert storage.get_job(on, owner="alice").config["early_stopping"] is True
    assert alice.get(f"/v1/jobs/{on}", headers=api_alice).json()["early_stopping"] is True
    select = page(alice.get("/new")).by_id("new-job").find("select", name="early_stopping")
    assert [o.attrs.get("value") for o in select.find_all("option", selected=True)] == ["off"]
