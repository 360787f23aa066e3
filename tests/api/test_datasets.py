"""/v1/datasets on SQLite and PostgreSQL: uploads in the three accepted layouts, every kind of bad
file refused with a 4xx that says what to fix (nothing stored), owners kept apart, deletion
refused while a job uses the dataset, and a job on an uploaded dataset run to completion."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zipfile

import numpy as np
import pytest
from api_helpers import JOB_BODY, MAX_TRIALS

from sparsearch.config import Settings

UPLOAD_MB = 2
DATASET_MB = 8
MIB = 1 << 20


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        database_url="sqlite://",
        artifact_dir=tmp_path / "artifacts",
        auth="on",
        max_trials=MAX_TRIALS,
        max_active_jobs_per_owner=3,
        max_upload_mb=UPLOAD_MB,
        max_dataset_mb=DATASET_MB,
    )


# -- building files ----------------------------------------------------------------------------


def _arrays(image_shape: tuple[int, ...] = (8, 8), n_train: int = 40, n_test: int = 12) -> dict:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, *image_shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % 4,
        "x_test": rng.integers(0, 256, (n_test, *image_shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % 4,
    }


def _npz(arrays: dict, *, compressed: bool = True, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    if allow_pickle:  # np.savez pickles object arrays (it always allows it when writing)
        np.savez(buf, **arrays)
    elif compressed:
        np.savez_compressed(buf, **arrays)
    else:
        np.savez(buf, **arrays)
    return buf.getvalue()


def _with(**changes) -> bytes:
    arrays = _arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return _npz(arrays)


def _zip_with_member(name: str, header: dict, payload_chunks, *, zip64: bool = False) -> bytes:
    """An npz whose member ``name`` is written chunk by chunk (never held in memory whole)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in _arrays().items():
            if key != name:
                with archive.open(f"{key}.npy", "w") as fh:
                    np.lib.format.write_array(fh, value)
        with archive.open(f"{name}.npy", "w", force_zip64=zip64) as fh:
            head = io.BytesIO()
            np.lib.format.write_array_header_1_0(head, header)
            fh.write(head.getvalue())
            for chunk in payload_chunks:
                fh.write(chunk)
    return buf.getvalue()


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """About 1 MB that inflates to 1 GiB of zeros (x_train of 16M 8x8 uint8 images)."""
    n, chunk = 1 << 30, bytes(16 * MIB)
    header = {"descr": "|u1", "fortran_order": False, "shape": (n // 64, 8, 8)}
    return _zip_with_member("x_train", header, (chunk for _ in range(n // len(chunk))), zip64=True)


def _lying_bomb() -> bytes:
    """64 MiB of zeros whose zip headers claim 1,000 bytes (a bomb that lies about its size)."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (MIB, 8, 8)}
    raw = bytearray(_zip_with_member("x_train", header, [bytes(16 * MIB)] * 4))
    pos = raw.find(b"PK\x01\x02")
    while pos >= 0:  # central directory entries: patch x_train's sizes and its local header
        name_len = struct.unpack_from("<H", raw, pos + 28)[0]
        if raw[pos + 46 : pos + 46 + name_len] == b"x_train.npy":
            struct.pack_into("<I", raw, pos + 24, 1000)
            local = struct.unpack_from("<I", raw, pos + 42)[0]
            struct.pack_into("<I", raw, local + 22, 1000)
        pos = raw.find(b"PK\x01\x02", pos + 4)
    return bytes(raw)


def _huge_header() -> bytes:
    """A member whose .npy header promises 64 GB of images but holds 64 bytes."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**9, 8, 8)}
    return _zip_with_member("x_train", header, [bytes(64)])


def _many_members(n: int = 5000) -> bytes:
    buf = io.BytesIO(_npz(_arrays()))
    with zipfile.ZipFile(buf, "a") as archive:
        for i in range(n):
            archive.writestr(f"extra{i}.npy", b"")
    return buf.getvalue()


def _upload(client, headers, data: bytes, *, name: str | None = None, filename: str = "d.npz"):
    form = {"name": name} if name is not None else None
    return client.post("/v1/datasets", files={"file": (filename, data)}, data=form, headers=headers)


def _stored_files(settings: Settings) -> list:
    folder = settings.artifact_dir / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- valid uploads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layout, image_shape, expected",
    [
        ("NxHxW", (8, 7), [1, 8, 7]),
        ("NxHxWxC", (8, 7, 3), [3, 8, 7]),
        ("NxCxHxW", (2, 8, 7), [2, 8, 7]),
    ],
)
def test_upload_valid_layouts(client, alice, settings, layout, image_shape, expected):
    data = _npz(_arrays(image_shape))
    r = _upload(client, alice, data, filename=f"{layout}.npz")
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/datasets/{body['id']}"
    assert body["id"].startswith("ds_") and len(body["id"]) == 15
    assert body["name"] == f"{layout}.npz" and body["owner"] == "alice"
    assert body["input_shape"] == expected
    assert (body["num_classes"], body["n_train"], body["n_test"]) == (4, 40, 12)
    assert body["size_bytes"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()

    assert client.get(r.headers["location"], headers=alice).json() == body
    page = client.get("/v1/datasets", headers=alice).json()
    assert page == {"data": [body], "count": 1}
    stored = settings.artifact_dir / "datasets" / f"{body['id']}.npz"
    assert stored.read_bytes() == data
    assert _stored_files(settings) == [stored.name]  # no temp files left behind


def test_upload_name_field_and_paging(client, alice):
    ids = []
    for i in range(3):
        r = _upload(client, alice, _npz(_arrays()), name=f"set {i}", filename="../../x.npz")
        assert r.status_code == 201, r.text
        assert r.json()["name"] == f"set {i}"
        ids.append(r.json()["id"])
    page = client.get("/v1/datasets?limit=2&offset=0", headers=alice).json()
    assert page["count"] == 3 and len(page["data"]) == 2
    rest = client.get("/v1/datasets?limit=2&offset=2", headers=alice).json()
    assert {d["id"] for d in page["data"] + rest["data"]} == set(ids)
    default = _upload(client, alice, _npz(_arrays()), filename="../../secret/x.npz").json()
    assert default["name"] == "x.npz"  # the base name only


@pytest.mark.parametrize("name", ["a" * 129, "nul\x00here", "line\nbreak"])
def test_upload_bad_name(client, alice, settings, name):
    r = _upload(client, alice, _npz(_arrays()), name=name)
    assert r.status_code == 422, r.text
    assert "name" in r.json()["detail"]
    assert _stored_files(settings) == []


# -- rejections --------------------------------------------------------------------------------

BAD_FILES = {
    "not a zip": (lambda: b"x_train,y_train\n1,2\n", "not an npz (zip) archive"),
    "truncated zip": (lambda: _npz(_arrays())[:-40], "not an npz (zip) archive"),
    "corrupt member": (
        lambda: (lambda d: d[:300] + bytes(200) + d[500:])(_npz(_arrays(), compressed=True)),
        "corrupt",
    ),
    "pickled object array": (
        lambda: _npz(
            {**_arrays(), "y_train": np.array([1, "a"] * 20, dtype=object)}, allow_pickle=True
        ),
        "pickled",
    ),
    "wrong keys": (
        lambda: _npz({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.arange(4)}),
        "lacks x_train, y_train, x_test, y_test",
    ),
    "one key missing": (lambda: _with(y_test=None), "lacks y_test"),
    "negative labels": (lambda: _with(y_train=np.arange(40) % 4 - 1), "negative"),
    "float labels": (lambda: _with(y_train=(np.arange(40) % 4).astype(np.float32)), "float32"),
    "one class": (lambda: _with(y_train=np.zeros(40, np.int64)), "1 class"),
    "label too large": (lambda: _with(y_test=np.full(12, 5000)), "5000"),
    "mismatched lengths": (lambda: _with(y_train=np.arange(39) % 4), "40 samples but y_train"),
    "ambiguous layout": (
        lambda: _with(x_train=np.zeros((40, 3, 8, 3), np.uint8)),
        "reads as N×C×H×W and as N×H×W×C",
    ),
    "5-D images": (lambda: _with(x_train=np.zeros((40, 2, 2, 8, 8), np.uint8)), "shape"),
    "train/test shapes differ": (
        lambda: _with(x_test=np.zeros((12, 9, 9), np.uint8)),
        "but x_test images are (1, 9, 9)",
    ),
    "string images": (lambda: _with(x_train=np.full((40, 8, 8), "a")), "not a plain number"),
    "complex images": (lambda: _with(x_train=np.zeros((40, 8, 8), np.complex64)), "complex"),
    "NaN images": (lambda: _with(x_train=np.full((40, 8, 8), np.nan, np.float32)), "NaN"),
    "int images over 255": (lambda: _with(x_train=np.full((40, 8, 8), 300, np.int32)), "int32"),
    "too few per class": (
        lambda: _with(y_train=np.r_[np.arange(39) % 4, 7]),
        "class 7 has only 1 training sample",
    ),
    "header promises more than it holds": (_huge_header, "truncated"),
    "thousands of members": (_many_members, "zip directory of"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_422_with_a_fix(client, alice, settings, case):
    make, message = BAD_FILES[case]
    r = _upload(client, alice, make())
    assert r.status_code == 422, r.text
    problem = r.json()
    assert message in problem["detail"]
    assert problem.get("hint"), problem  # says what to do
    assert client.get("/v1/datasets", headers=alice).json()["count"] == 0
    assert _stored_files(settings) == []


def test_ambiguous_layout_hint_says_how_to_reshape(client, alice):
    r = _upload(client, alice, _with(x_train=np.zeros((40, 4, 8, 1), np.uint8)))
    assert r.status_code == 422
    assert "np.transpose(x, (0, 3, 1, 2))" in r.json()["hint"]


def test_zip_bomb_is_refused_quickly(client, alice, settings, zip_bomb):
    assert len(zip_bomb) < UPLOAD_MB * MIB  # small on the wire...
    start = time.monotonic()
    r = _upload(client, alice, zip_bomb)
    assert time.monotonic() - start < 5  # ...and refused without inflating 1 GiB
    assert r.status_code == 422, r.text
    assert f"at most {DATASET_MB:.1f} MiB" in r.json()["detail"]
    assert "1,024.0 MiB" in r.json()["detail"]
    assert _stored_files(settings) == []


def test_zip_bomb_lying_about_its_size_is_refused(client, alice, settings):
    r = _upload(client, alice, _lying_bomb())
    assert r.status_code == 422, r.text
    assert "corrupt" in r.json()["detail"]
    assert _stored_files(settings) == []


def test_oversize_upload_is_413_with_the_cap(client, alice, settings):
    data = np.random.default_rng(0).bytes(UPLOAD_MB * MIB + 1)
    r = _upload(client, alice, data)
    assert r.status_code == 413, r.text
    assert f"{UPLOAD_MB} MiB" in r.json()["detail"]
    # Far over the cap: refused from Content-Length, before the body is read.
    r = _upload(client, alice, bytes(4 * UPLOAD_MB * MIB))
    assert r.status_code == 413 and f"{UPLOAD_MB * MIB:,} bytes" in r.json()["detail"]
    assert _stored_files(settings) == []


def test_oversize_streamed_upload_without_length_is_413(client, alice):
    boundary = "sparsearchboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.npz"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body():  # a generator: httpx sends it chunked, without Content-Length
        yield head
        for _ in range(4 * UPLOAD_MB):
            yield bytes(MIB)
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {**alice, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = client.post("/v1/datasets", content=body(), headers=headers)
    assert r.status_code == 413, r.text


def test_upload_without_file_is_422(client, alice):
    r = client.post("/v1/datasets", data={"name": "x"}, headers=alice)
    assert r.status_code == 422
    assert "file" in r.json()["detail"]


# -- owners, jobs, deletion --------------------------------------------------------------------


def _job_body(dataset: str) -> dict:
    return {**JOB_BODY, "dataset": dataset}


def test_owners_are_isolated(client, alice, bob):
    ds = _upload(client, alice, _npz(_arrays())).json()["id"]
    for r in (
        client.get(f"/v1/datasets/{ds}", headers=bob),
        client.delete(f"/v1/datasets/{ds}", headers=bob),
    ):
        assert r.status_code == 404 and ds in r.json()["detail"]
    assert client.get("/v1/datasets", headers=bob).json() == {"data": [], "count": 0}
    r = client.post("/v1/jobs", json=_job_body(ds), headers=bob)
    assert r.status_code == 422 and "unknown dataset id" in r.json()["detail"]
    assert client.get(f"/v1/datasets/{ds}", headers=alice).status_code == 200
    assert client.get("/v1/datasets").status_code == 401


def test_job_body_never_takes_a_path(client, alice):
    for dataset in ("npz:/etc/passwd", "idx:/tmp", "/tmp/x.npz", "ds_123", "ds_ABCDEF123456"):
        r = client.post("/v1/jobs", json=_job_body(dataset), headers=alice)
        assert r.status_code == 422, (dataset, r.text)
    r = client.post("/v1/jobs", json=_job_body("ds_0123456789ab"), headers=alice)
    assert r.status_code == 422 and "unknown dataset id 'ds_0123456789ab'" in r.json()["detail"]


def test_delete_is_409_while_a_job_uses_it_then_204(client, alice, settings):
    ds = _upload(client, alice, _npz(_arrays())).json()["id"]
    r = client.post("/v1/jobs", json=_job_body(ds), headers=alice)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["dataset"] == ds and job["status"] == "queued"

    r = client.delete(f"/v1/datasets/{ds}", headers=alice)
    assert r.status_code == 409
    assert job["id"] in r.json()["detail"] and "cancel" in r.json()["hint"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice).status_code == 200

    assert client.delete(f"/v1/datasets/{ds}", headers=alice).status_code == 204
    assert client.get(f"/v1/datasets/{ds}", headers=alice).status_code == 404
    assert client.delete(f"/v1/datasets/{ds}", headers=alice).status_code == 404
    assert _stored_files(settings) == []


# -- a job on an uploaded dataset --------------------------------------------------------------


def _digits_npz(n_train: int = 400, n_test: int = 100) -> bytes:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)  # N×H×W, 8×8
    labels = digits.target.astype(np.int64)
    return _npz(
        {
            "x_train": images[:n_train],
            "y_train": labels[:n_train],
            "x_test": images[n_train : n_train + n_test],
            "y_test": labels[n_train : n_train + n_test],
        }
    )


@pytest.mark.slow
def test_a_job_on_an_uploaded_dataset_completes(client, alice, storage, settings, ray_address):
    from sparsearch.service.scheduler import Scheduler

    r = _upload(client, alice, _digits_npz(), name="digits-400")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["input_shape"] == [1, 8, 8] and ds["num_classes"] == 10
    body = {
        "dataset": ds["id"],
        "limits": {"flash_bytes": 24 * 1024, "ram_bytes": 6 * 1024},
        "budget": {"trials": 2, "parallel": 2, "epochs": 1},
        "seed": 0,
    }
    r = client.post("/v1/jobs", json=body, headers=alice)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    run_settings = settings.model_copy(update={"ray_address": ray_address})
    with Scheduler(run_settings, storage) as scheduler:
        assert scheduler.run_once() is True

    job = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
    assert job["status"] == "completed", job["error"]
    assert job["dataset"] == ds["id"]
    assert job["progress"]["trained"] == 2
    trials = client.get(f"/v1/jobs/{job_id}/trials?status=completed", headers=alice).json()
    assert trials["count"] >= 1
    assert all(t["accuracy"] is not None for t in trials["data"])
    # Finished jobs do not hold the dataset: it can be deleted now.
    assert client.delete(f"/v1/datasets/{ds['id']}", headers=alice).status_code == 204
