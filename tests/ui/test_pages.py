"""The dashboard's pages on SQLite and PostgreSQL, read as a browser gets them: the jobs list,
a job with "pick for my chip" (the same answer as /v1/.../best), a trial with its layers and
downloads, another owner's job as a 404 that reveals nothing, and HTML error pages that never
replace the API's Problem JSON."""

from __future__ import annotations

import hashlib
import re

from api_helpers import seed_job
from ui_helpers import add_pruned_trial, form_csrf, page, pruned_arch, queued_job, words

from sparsearch.errors import ConfigError
from sparsearch.jobconfig import MAX_BYTES
from sparsearch.space import layer_shapes
from sparsearch.units import parse_size

MISSING = "0123456789ab"  # a job id nobody has


def _job_links(doc) -> set[str]:
    """The jobs a page links to."""
    found = set()
    for a in doc.find_all("a", href=True):
        m = re.fullmatch(r"/jobs/([A-Za-z0-9_-]+)", a.attrs["href"])
        if m:
            found.add(m.group(1))
    return found


def _row_of(doc, job_id: str):
    """The table row that links to ``job_id``'s page."""
    rows = [tr for tr in doc.find_all("tr") if tr.find_all("a", href=f"/jobs/{job_id}")]
    assert len(rows) == 1
    return rows[0]


def _downloads(section) -> set[tuple[str, str]]:
    """(url, sha256) of the download buttons in ``section``."""
    return {(a.attrs["href"], a.attrs["data-sha256"]) for a in section.find_all("a", download=True)}


def _listed(client, headers, job_id: str, index: int) -> set[tuple[str, str]]:
    r = client.get(f"/v1/jobs/{job_id}/trials/{index}/artifacts", headers=headers)
    assert r.status_code == 200
    return {(a["url"], a["sha256"]) for a in r.json()}


# -- the jobs list ---------------------------------------------------------------------------


def test_the_jobs_page_lists_the_owners_jobs_with_status_and_progress(
    alice, storage, api_alice, alice_job
):
    queued = queued_job(storage, "alice")
    bobs = seed_job(storage, "bob")
    r = alice.get("/")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"  # an owner's data stays out of caches
    doc = page(r)
    assert _job_links(doc) == {alice_job, queued}  # never bob's
    assert bobs not in r.text

    job = alice.get(f"/v1/jobs/{alice_job}", headers=api_alice).json()
    p = job["progress"]
    assert (p["trained"], p["budget"], p["running"], p["infeasible"]) == (3, 3, 0, 1)
    row = _row_of(doc, alice_job).text()
    assert "completed" in row
    assert f"{p['trained']} / {p['budget']} trained" in row
    assert f"{p['running']} running" in row and f"{p['infeasible']} infeasible" in row
    assert "95.0 %" in row  # best accuracy
    assert "queued" in _row_of(doc, queued).text()

    assert _job_links(page(alice.get("/?status=completed"))) == {alice_job}
    assert _job_links(page(alice.get("/?status=queued"))) == {queued}
    assert _job_links(page(alice.get("/?status=failed"))) == set()
    assert _job_links(page(alice.get("/?status=nonsense"))) == {alice_job, queued}
    for number in ("abc", "-1", "²", "9" * 5000):  # a page number that is none: the first
        assert _job_links(page(alice.get("/", params={"page": number}))) == {alice_job, queued}
    assert _job_links(page(alice.get("/?page=2"))) == set()  # 25 a page


# -- a job: pick for my chip -----------------------------------------------------------------


def _pick(client, job_id: str, **sizes: str):
    r = client.get(f"/jobs/{job_id}", params=sizes)
    assert r.status_code == 200, r.text[:500]
    return page(r).by_id("pick")


def _picked(section, job_id: str) -> int:
    """The trial a pick shows (the one trial page it links to)."""
    found = {
        int(m.group(1))
        for a in section.find_all("a", href=True)
        if (m := re.fullmatch(rf"/jobs/{job_id}/trials/(\d+)", a.attrs["href"]))
    }
    assert len(found) == 1, found
    return found.pop()


def test_pick_for_my_chip_shows_the_apis_best_trial_its_downloads_or_why_not(
    alice, api_alice, alice_job
):
    plain = _pick(alice, alice_job)
    form = plain.find("form")
    assert form.attrs["method"] == "get"
    assert form.attrs["action"].startswith(f"/jobs/{alice_job}")
    assert {i.attrs["name"] for i in form.find_all("input")} == {"flash", "ram"}
    assert not plain.find_all("a", download=True)  # nothing picked yet

    picked = []
    for sizes, query in [
        ({"flash": "24KiB", "ram": "6KiB"}, {"max_flash": 24576, "max_ram": 6144}),
        ({"flash": "10KB"}, {"max_flash": 10000}),  # only the smaller front trial fits
    ]:
        best = alice.get(f"/v1/jobs/{alice_job}/best", params=query, headers=api_alice)
        assert best.status_code == 200
        index = best.json()["index"]
        picked.append(index)
        section = _pick(alice, alice_job, **sizes)
        assert _picked(section, alice_job) == index
        downloads = _downloads(section)
        assert downloads and downloads == _listed(alice, api_alice, alice_job, index)
        for url, sha256 in downloads:  # and the browser can fetch them with its cookie
            file = alice.get(url)
            assert file.status_code == 200
            assert hashlib.sha256(file.content).hexdigest() == sha256
    assert picked == [0, 1]  # the two picks differ: the page applies the sizes it is given

    # picks that cannot be answered say why
    none_fits = alice.get(f"/v1/jobs/{alice_job}/best?max_flash=1000", headers=api_alice)
    assert none_fits.status_code == 404
    error = _pick(alice, alice_job, flash="1KB").find(role="alert").text()
    assert error == words(none_fits.json()["detail"])

    try:
        parse_size("lots", what="flash")
    except ConfigError as e:
        units = e
    section = _pick(alice, alice_job, flash="lots", ram="6KiB")
    error = section.find(role="alert").text()
    assert units.message in error and units.hint in error
    assert not section.find_all("a", download=True)

    # a size past what the API accepts is an error on the page, not a server error
    error = _pick(alice, alice_job, flash="99GB").find(role="alert").text()
    assert str(MAX_BYTES) in error
    # and one past what can be stored at all is refused by the size parser, in its words
    error = _pick(alice, alice_job, flash="99999999999GB").find(role="alert").text()
    assert "too large" in error


# -- a trial ---------------------------------------------------------------------------------


def test_the_trial_page_lists_layers_and_download_buttons(alice, storage, api_alice, alice_job):
    add_pruned_trial(storage, alice_job, 4)
    r = alice.get(f"/jobs/{alice_job}/trials/4")
    assert r.status_code == 200
    doc = page(r)
    rows = doc.by_id("layers").find("tbody").find_all("tr")
    expected = layer_shapes(pruned_arch())
    assert len(rows) == len(expected)
    cells = [td.text() for td in rows[0].find_all("td")]
    assert "Conv" in cells and "8 → 5" in cells  # channels before and after pruning
    assert [c.text() for c in rows[-1].find_all("td")][-1] == f"{expected[-1].macs:,}"
    assert _downloads(doc.by_id("downloads")) == _listed(alice, api_alice, alice_job, 4)

    first = page(alice.get(f"/jobs/{alice_job}/trials/0"))
    assert _downloads(first.by_id("downloads")) == _listed(alice, api_alice, alice_job, 0)
    assert len(_listed(alice, api_alice, alice_job, 0)) == 2  # state_dict and onnx

    for missing in ("9", "abc", "1" * 12):
        r = alice.get(f"/jobs/{alice_job}/trials/{missing}")
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


# -- another owner's job ---------------------------------------------------------------------


def _as_missing(response, job_id: str) -> str:
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    return response.text.replace(job_id, "<id>")


def test_another_owners_job_is_a_404_that_reveals_nothing(alice, storage):
    bobs = seed_job(storage, "bob")
    bobs_queued = queued_job(storage, "bob")
    for path in ("/jobs/{}", "/jobs/{}/trials/0", "/jobs/{}?flash=24KiB"):
        shown = _as_missing(alice.get(path.format(bobs)), bobs)
        # word for word the page of a job that does not exist: nothing of bob's job in it
        assert shown == _as_missing(alice.get(path.format(MISSING)), MISSING)
        assert "bob" not in shown

    csrf = form_csrf(alice)
    r = alice.post(f"/jobs/{bobs_queued}/cancel", data={"csrf": csrf})
    assert _as_missing(r, bobs_queued)
    info = storage.get_job(bobs_queued)
    assert (info.status, info.cancel_requested) == ("queued", False)
    r = alice.post(f"/jobs/{bobs}/delete", data={"csrf": csrf})
    assert _as_missing(r, bobs)
    assert storage.get_job(bobs).status == "completed"
    assert len(storage.list_trials(bobs)) == 4


# -- errors and the schema: the API stays as it was ------------------------------------------


def test_html_errors_and_the_schema_leave_the_api_alone(alice, api_alice):
    html = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    r = alice.get("/no/such/page", headers=html)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert page(r).find(role="alert")
    for path, headers in [
        ("/v1/no/such/thing", html),
        ("/v1/no/such/thing", html | api_alice),
        (f"/v1/jobs/{MISSING}", html | api_alice),
        ("/no/such/page", {"accept": "application/json"}),
    ]:
        r = alice.get(path, headers=headers)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("application/"), path
        assert r.json()["detail"], path

    paths = set(alice.get("/openapi.json").json()["paths"])
    assert "/v1/jobs" in paths and "/v1/jobs/{job_id}" in paths
    dashboard = ("/login", "/logout", "/jobs", "/new", "/datasets", "/static")
    assert "/" not in paths
    assert not [p for p in paths if p.startswith(dashboard)]
    assert all(p.startswith("/v1/") or p == "/healthz" for p in paths), paths


CURVE = [
    {"epoch": 1.0, "accuracy": 0.5, "seconds": 1.0, "phase": "train"},
    {"epoch": 2.0, "accuracy": 0.75, "seconds": 2.0, "phase": "train"},
    {"epoch": 2.5, "accuracy": 0.7, "seconds": 2.5, "phase": "prune"},
]
MEASURED = {
    "flash_bytes": 2300, "ram_bytes": 440, "activation_bytes": 324, "int8_accuracy": 0.77,
    "tflm_flash_bytes": 3416, "tflm_ram_bytes": 2592, "c_flash_bytes": 2300, "c_ram_bytes": 440,
    "c_stack_bytes": 116, "instructions": 22_725,
}  # fmt: skip


def _measured_trial(storage, target: str) -> str:  # type: ignore[no-untyped-def]
    from sparsearch.jobconfig import JobConfig

    cfg = JobConfig.create(
        dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=1, target=target
    )
    job = storage.create_job(dataset="digits", config=cfg.to_dict(), owner="alice")
    storage.add_trial(
        job.id, 0, status="running", params={"n_blocks": 1}, generator="Sobol", gen_seconds=0.1,
        estimates={"flash_bytes": 2310, "ram_bytes": 440, "macs": 3000}, feasible=True,
        pruning={"method": "none", "level": 0.0},
    )  # fmt: skip
    storage.finish_trial(
        job.id, 0, status="completed", metrics={"accuracy": 0.7, **MEASURED}, measured=True,
        curve=CURVE,
    )  # fmt: skip
    return job.id


def _costs(doc) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    rows = doc.by_id("costs").find("tbody").find_all("tr")
    return {
        r.find("th").text().strip(): [td.text().strip() for td in r.find_all("td")] for r in rows
    }


def test_the_trial_page_shows_its_targets_costs_and_its_learning_curve(alice, storage):
    c_page = page(alice.get(f"/jobs/{_measured_trial(storage, 'c')}/trials/0"))
    costs = _costs(c_page)
    assert list(costs)[:5] == [
        "Flash (the whole model, Cortex-M4)", "RAM (static + peak stack)",
        "Activation buffer (static)", "Peak stack", "Instructions per inference",
    ]  # fmt: skip
    assert costs["Peak stack"][1] == "116 B" and costs["Instructions per inference"][1] == "22,725"
    assert "TFLM: arena" in costs and not any("Arena tail" in k for k in costs)
    assert "target c" in words(c_page.text())
    points = [
        [td.text().strip() for td in r.find_all("td")]
        for r in c_page.by_id("curve").find("tbody").find_all("tr")
    ]
    assert [(p[0], p[3]) for p in points] == [("1.0", "train"), ("2.0", "train"), ("2.5", "prune")]

    tflm = _costs(page(alice.get(f"/jobs/{_measured_trial(storage, 'tflm')}/trials/0")))
    assert list(tflm)[:4] == [
        "Flash (int8 .tflite)", "RAM (TFLM arena)", "Arena head (activations)",
        "Arena tail (runtime state)",
    ]  # fmt: skip
    assert tflm["C: instructions per inference"][1] == "22,725"


def test_the_job_page_counts_trials_stopped_early(alice, storage, alice_job):
    assert page(alice.get(f"/jobs/{alice_job}")).find_all("span", data_role="stopped") == []
    storage.add_trial(
        alice_job, 9, status="running", params={"n_blocks": 1}, generator="Sobol",
        gen_seconds=0.1, estimates={"flash_bytes": 3000, "ram_bytes": 900}, feasible=True,
        pruning={"method": "none", "level": 0.0},
    )  # fmt: skip
    storage.finish_trial(alice_job, 9, status="stopped", metrics={}, curve=CURVE[:1])
    doc = page(alice.get(f"/jobs/{alice_job}"))
    assert doc.find("span", data_role="stopped").text() == "1"
    trial = page(alice.get(f"/jobs/{alice_job}/trials/9"))
    assert "stopped" in trial.find("span", class_="badge").text()
