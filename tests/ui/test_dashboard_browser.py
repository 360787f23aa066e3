"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against a
real `sparsearch serve` (API + scheduler on real Ray, SQLite).

One story, as a user lives it: sign in, submit a job on digits from the form, watch its
progress move without reloading until it completes, read the plotted points and hold them to
`GET /v1/jobs/{id}/pareto`, pick for a chip and download the chosen model (its sha256 against
the API's), open the trial, sign out, and find another owner's job a 404 page. Each page is
photographed at 1280 and 390 px wide (``SPARSEARCH_SCREENSHOTS=DIR`` keeps them, as
``make screenshots`` does for ``docs/screenshots``, with a larger job:
``SPARSEARCH_SCREENSHOT_JOB=trials,epochs,parallel``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

SPARSEARCH = str(Path(sys.executable).with_name("sparsearch"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: The job the story submits: trials, epochs, trials at a time (small: it runs in CI).
JOB = tuple(int(v) for v in os.environ.get("SPARSEARCH_SCREENSHOT_JOB", "3,2,1").split(","))
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def _chromium() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    message = (
        "Debian's chromium is not installed: `make test` installs it (apt-get install chromium)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _token(owner: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [SPARSEARCH, "token", "create", "--owner", owner],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def served(tmp_path, ray_address):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SPARSEARCH_")},
        "SPARSEARCH_DATABASE_URL": f"sqlite:///{tmp_path / 'dashboard.db'}",
        "SPARSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "SPARSEARCH_RAY_ADDRESS": ray_address,
    }
    tokens = {owner: _token(owner, env) for owner in ("alice", "bob")}
    port = _free_port()
    proc = subprocess.Popen(
        [SPARSEARCH, "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).json().get("scheduler") == "running":
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not become healthy with a running scheduler in 90 s")
    yield url, tokens
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def browser():
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("SPARSEARCH_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _photograph(context, url: str, name: str, folder: Path, ready: str = "main") -> None:
    """Screenshots of ``url`` at both widths (a fresh page each, the same signed-in cookies)."""
    for kind, size in VIEWPORTS.items():
        page = context.new_page()
        page.set_viewport_size(size)
        page.goto(url)
        page.wait_for_selector(ready)
        page.wait_for_timeout(300)  # plots re-render on resize
        unlabelled = page.eval_on_selector_all(
            "input:not([type=hidden]), select, textarea",
            "els => els.filter(e => !e.labels.length && !e.getAttribute('aria-label'))"
            ".map(e => e.name || e.id)",
        )
        assert not unlabelled, f"{name}: inputs without a label: {unlabelled}"
        page.screenshot(path=str(folder / f"{name}-{kind}.png"), full_page=True)
        page.close()


def _plotted(page, plot: str) -> dict[int, tuple[float, float]]:
    points = page.eval_on_selector_all(
        f"#{plot} .pt-front",
        "els => els.map(e => [Number(e.dataset.id), Number(e.dataset.x), Number(e.dataset.y)])",
    )
    return {int(i): (x, y) for i, x, y in points}


def test_dashboard_end_to_end(served, browser, shots):
    url, tokens = served
    api = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {tokens['alice']}"}, timeout=30
    )
    context = browser.new_context(base_url=url, accept_downloads=True)
    page = context.new_page()
    page.set_viewport_size(VIEWPORTS["desktop"])

    # Signed out, a page sends you to sign in, and back to it afterwards.
    page.goto("/new")
    assert "/login?next=/new" in page.url
    _photograph(context, f"{url}/login", "login", shots)
    page.fill("#token", "ssk_not-a-token")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text("#login-error")
    page.fill("#token", tokens["alice"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/new")

    # Submit a job from the form: sizes with units, a bad one first.
    page.fill("#f-flash", "lots")
    page.click("#submit-job")
    assert "cannot parse flash" in page.inner_text(".field-error")
    page.select_option("#f-dataset", "digits")
    page.fill("#f-flash", "24KiB")
    page.fill("#f-ram", "6KiB")
    trials, epochs, parallel = JOB
    page.fill("#f-trials", str(trials))
    page.fill("#f-epochs", str(epochs))
    page.fill("#f-parallel", str(parallel))
    page.check("input[name=pruning_methods][value=none]")
    page.check("input[name=pruning_methods][value=filter_norm]")
    _photograph(context, f"{url}/new", "new", shots)
    page.click("#submit-job")
    page.wait_for_url(f"{url}/jobs/*")
    job_id = page.inner_text("#job-id")
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["limits"]["flash_bytes"] == 24576 and job["limits"]["ram_bytes"] == 6144

    # Progress moves without a reload until the job completes; polling reads the trials only
    # when the job's counts move, and stops once the job has settled.
    requests: list[tuple[float, str]] = []
    page.on("request", lambda r: requests.append((time.monotonic(), r.url)))
    page.evaluate("window.__sameDocument = true")
    seen = set()
    deadline = time.monotonic() + 480 * max(1, trials * epochs // 6)
    while time.monotonic() < deadline:
        status = page.inner_text("#job-status")
        seen.add(page.inner_text('#job-progress [data-role="trained"]'))
        if status in ("completed", "failed", "cancelled"):
            break
        page.wait_for_timeout(1000)
    assert status == "completed", api.get(f"/v1/jobs/{job_id}").json()
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    assert str(trials) in seen and len(seen) >= 2, f"progress never moved on the page: {seen}"
    page.wait_for_function("document.getElementById('job-live').textContent.startsWith('Finished')")
    settled_at = time.monotonic()
    page.wait_for_timeout(5000)
    polls = [u for _, u in requests if u.endswith(f"/v1/jobs/{job_id}")]
    reads = [u for _, u in requests if f"/v1/jobs/{job_id}/trials?" in u]
    assert len(polls) >= 5 and len(reads) < len(polls), (len(polls), len(reads))
    assert not [u for t, u in requests if t > settled_at + 0.5 and "/v1/" in u], "still polling"

    # The plotted front is the API's front, in both plots.
    front = api.get(f"/v1/jobs/{job_id}/pareto", params={"limit": 1000}).json()["data"]
    assert front, "a completed job has a front"
    accuracy = {t["index"]: t["int8_accuracy"] or t["accuracy"] for t in front}
    flash_plot, ram_plot = _plotted(page, "plot-flash"), _plotted(page, "plot-ram")
    assert set(flash_plot) == set(ram_plot) == set(accuracy)
    for t in front:
        assert flash_plot[t["index"]] == pytest.approx(
            (t["accounted_flash_bytes"], accuracy[t["index"]])
        )
        assert ram_plot[t["index"]][0] == t["ram_bytes"]
    trials = api.get(f"/v1/jobs/{job_id}/trials").json()
    assert page.locator("#plot-flash .pt").count() == sum(
        t["status"] in ("completed", "failed", "infeasible") for t in trials["data"]
    )
    assert page.locator("#plot-hv .pt-line").count() >= 1
    assert page.locator("#trials-table tbody tr").count() == trials["count"]
    _photograph(
        context, f"{url}/jobs/{job_id}?flash=24KiB&ram=6KiB", "job", shots, ready="#plot-flash svg"
    )

    # Pick for my chip: the API's /best within those limits, highlighted, downloadable.
    smallest = min(front, key=lambda t: (t["accounted_flash_bytes"], t["ram_bytes"]))
    page.fill("#pick-flash", str(smallest["accounted_flash_bytes"]))  # bytes
    page.fill("#pick-ram", "6 KiB")  # with a unit
    page.click("#pick-form button[type=submit]")
    page.wait_for_selector(".pick-best")
    best = api.get(
        f"/v1/jobs/{job_id}/best",
        params={"max_flash": smallest["accounted_flash_bytes"], "max_ram": 6144},
    ).json()
    picked = int(page.get_attribute(".pick-best", "data-trial"))
    assert picked == best["index"]
    page.wait_for_selector("#plot-flash .pt-highlight")
    assert page.locator(f'#trials-table tr.is-picked[data-trial="{picked}"]').count() <= 1
    listing = api.get(f"/v1/jobs/{job_id}/trials/{picked}/artifacts").json()
    tflite = next(a for a in listing if a["kind"] == "tflite")
    with page.expect_download() as download:
        page.click('#pick-downloads a[data-kind="tflite"]')
    data = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == tflite["sha256"]
    assert data[4:8] == b"TFL3"  # a TFLite flatbuffer

    # The trial page: layers, costs, downloads.
    page.goto(f"/jobs/{job_id}/trials/{picked}")
    assert page.locator("#layers tbody tr").count() >= 3
    assert page.locator('#downloads a[data-kind="c_source"]').count() == 1
    _photograph(context, f"{url}/jobs/{job_id}/trials/{picked}", "trial", shots)

    # The jobs page lists it, completed, with its best accuracy.
    page.goto("/")
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    assert row.locator('[data-role="status"]').inner_text() == "completed"
    assert row.locator('[data-role="best"]').inner_text() != "–"
    _photograph(context, f"{url}/", "jobs", shots)

    # Another owner's job is a 404 page.
    bob = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['bob']}"})
    body = {"dataset": "digits", "limits": {"flash_bytes": 4096, "ram_bytes": 2048},
            "budget": {"trials": 1}}  # fmt: skip
    bobs = bob.post("/v1/jobs", json=body).json()["id"]
    bob.post(f"/v1/jobs/{bobs}/cancel")
    response = page.goto(f"/jobs/{bobs}")
    assert response.status == 404 and "Not found" in page.inner_text("h1")

    # Signing out ends it: a page now redirects to sign-in.
    page.goto("/")
    page.click("#sign-out")
    page.wait_for_url(f"{url}/login")
    page.goto(f"/jobs/{job_id}")
    assert f"/login?next=/jobs/{job_id}" in page.url
    context.close()
