"""worker/c_project.py: the c_project artifact unzipped and run as a firmware engineer would
(``make run`` on QEMU), its determinism and README, and the kind through storage, API and CLI."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sparsearch.codegen import CProgram, generate
from sparsearch.vocabulary import ARTIFACT_KINDS
from sparsearch.worker import firmware
from sparsearch.worker.c_host import HostModel
from sparsearch.worker.c_project import MAX_IMAGES, c_project_zip

DATA = Path(__file__).parents[1] / "codegen" / "data"
TOOLCHAIN = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
needs_toolchain = pytest.mark.skipif(
    not TOOLCHAIN or not shutil.which("make"),
    reason="arm-none-eabi-gcc, qemu-system-arm or make is not installed (make toolchain)",
)
MEASURED = {
    "flash_bytes": 12345,
    "ram_bytes": 2468,
    "static_ram_bytes": 1368,
    "stack_bytes": 1100,
    "instructions": 987654,
    "classify_instructions": 991234,
    "compiler": "arm-none-eabi-gcc (15:12.2.rel1-1) 12.2.1 20221205",
    "cpu": "cortex-m4",
}

# A hand-written model that follows the generated API and whose class depends on the input
# (the committed test models' argmax is the same for every input): class j wins when the
# pixels 4j..4j+3 are the brightest quarter.
TINY_H = """\
#ifndef TINY_H
#define TINY_H
#include <stdint.h>
#define TINY_INPUT_BYTES 16
#define TINY_OUTPUT_BYTES 4
#define TINY_CLASSIFY_BYTES 16
#define TINY_ARENA_BYTES 20
int8_t *tiny_input(void);
void tiny_invoke(void);
const int8_t *tiny_output(void);
int tiny_classify(const uint8_t *raw);
#endif
"""
TINY_C = """\
#include "tiny.h"

static int8_t arena[TINY_ARENA_BYTES];

static void preprocess(const uint8_t *raw, int8_t *dst)
{
    for (int i = 0; i < TINY_INPUT_BYTES; i++) {
        dst[i] = (int8_t)(raw[i] - 128);
    }
}

int8_t *tiny_input(void) { return arena; }

const int8_t *tiny_output(void) { return arena + TINY_INPUT_BYTES; }

void tiny_invoke(void)
{
    for (int j = 0; j < TINY_OUTPUT_BYTES; j++) {
        int32_t sum = 0;
        for (int i = 0; i < 4; i++) {
            sum += arena[4 * j + i];
        }
        arena[TINY_INPUT_BYTES + j] = (int8_t)(sum / 4);
    }
}

int tiny_classify(const uint8_t *raw)
{
    preprocess(raw, tiny_input());
    tiny_invoke();
    const int8_t *out = tiny_output();
    int best = 0;
    for (int j = 1; j < TINY_OUTPUT_BYTES; j++) {
        if (out[j] > out[best]) {
            best = j;
        }
    }
    return best;
}
"""


def _tiny() -> CProgram:
    return CProgram(
        files={"tiny.h": TINY_H, "tiny.c": TINY_C},
        prefix="tiny",
        input_bytes=16,
        output_bytes=4,
        classify_bytes=16,
        classify_dtype="uint8",
        arena_bytes=20,
    )


def _case(name: str) -> tuple[CProgram, np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(7)
    if name == "pixels":  # 8-bit images: classify takes the raw 8x8x1 pixels
        program = generate(
            (DATA / "dw_conv_pool_transpose_fc_8x8.tflite").read_bytes(),
            prefix="digits",
            source_hwc=(8, 8, 1),
            pixel_scale=1 / 255,
            title="digits test model",
        )
        images = rng.integers(0, 256, (5, program.classify_bytes), dtype=np.uint8)
        return program, images, np.array([3, 1, 4, 1, 5])
    if name == "int8":  # data stored as floats: classify takes the int8 input
        program = generate((DATA / "dw_conv_pool_sum_fc_1x40.tflite").read_bytes())
        assert program.classify_dtype == "int8"
        return program, rng.integers(-128, 128, (4, program.classify_bytes), np.int8), None
    program = _tiny()
    images = rng.integers(0, 100, (MAX_IMAGES, 16), dtype=np.uint8)
    for n, image in enumerate(images):
        image[4 * (n % 4) : 4 * (n % 4) + 4] += 150  # class n % 4
    return program, images, np.arange(MAX_IMAGES) % 4


@pytest.fixture(scope="module", params=["pixels", "int8", "tiny"])
def case(request):
    program, images, labels = _case(request.param)
    with HostModel(program) as host:
        classes, _ = host.classify(images)
    return program, images, labels, classes


def _unzip(data: bytes, where: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(where)
    (folder,) = where.iterdir()
    return folder


def _make(folder: Path, *targets: str) -> subprocess.CompletedProcess:
    # CC in the environment is the host's compiler, as in many shells: the Makefile ignores it
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "CC": "cc"}
    return subprocess.run(
        ["make", "--no-print-directory", *targets],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _lines(stdout: str) -> list[tuple[int, int, int, int]]:
    rows = [line.split() for line in stdout.splitlines() if line and not line.startswith("#")]
    return [tuple(int(v) for v in row) for row in rows if len(row) == 4 and row[0].isdigit()]


@needs_toolchain
def test_make_run_agrees_with_the_host_build(case, tmp_path: Path) -> None:
    program, images, labels, classes = case
    data = c_project_zip(
        program, images=images, labels=labels, host_predictions=classes, measured=None
    )
    folder = _unzip(data, tmp_path)
    assert folder.name == f"{program.prefix}_project"
    built = _make(folder)  # all: -Wall -Wextra -Werror, then arm-none-eabi-size
    assert built.returncode == 0, built.stdout + built.stderr
    assert "text" in built.stdout and f"{program.prefix}.elf" in built.stdout
    run = _make(folder, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    want_labels = [-1] * len(images) if labels is None else [int(v) for v in labels]
    rows = zip(classes, want_labels, strict=True)
    assert _lines(run.stdout) == [(i, int(c), int(c), label) for i, (c, label) in enumerate(rows)]
    assert f"# 0 of {len(images)} images differ" in run.stdout
    if program.prefix == "tiny":  # the classes really vary with the image
        assert list(classes) == list(np.arange(MAX_IMAGES) % 4)
    clean = _make(folder, "clean")
    assert clean.returncode == 0 and not (folder / f"{program.prefix}.elf").exists()


@needs_toolchain
def test_a_wrong_host_prediction_fails_make_run(tmp_path: Path) -> None:
    program, images, labels = _case("pixels")
    with HostModel(program) as host:
        classes, _ = host.classify(images)
    wrong = classes.copy()
    wrong[2] = (wrong[2] + 1) % program.output_bytes
    data = c_project_zip(
        program, images=images, labels=labels, host_predictions=wrong, measured=MEASURED
    )
    folder = _unzip(data, tmp_path)
    run = _make(folder, "run")
    # make cannot pass a status on: it fails (2) and names the recipe's status, main's value
    assert run.returncode == 2 and "Error 1" in run.stderr, run.stdout + run.stderr
    lines = _lines(run.stdout)
    assert [line[1] == line[2] for line in lines] == [True, True, False, True, True]
    assert lines[2] == (2, classes[2], wrong[2], labels[2])
    assert "# 1 of 5 images differ" in run.stdout
    status, stdout = firmware.run_in_qemu(folder / "digits.elf")  # QEMU's own exit status
    assert status == 1 and _lines(stdout) == lines


def test_the_zip_is_deterministic_and_complete() -> None:
    program, images, labels = _case("pixels")
    host = np.zeros(len(images), dtype=np.int64)
    kw = dict(images=images, labels=labels, host_predictions=host, title="digits test model")
    first = c_project_zip(program, measured=MEASURED, **kw)
    assert first == c_project_zip(program, measured=dict(MEASURED), **kw)
    with zipfile.ZipFile(io.BytesIO(first)) as z:
        names = z.namelist()
        assert names == sorted(names)
        assert names == [
            f"digits_project/{name}"
            for name in (
                "Makefile",
                "README.md",
                "digits.c",
                "digits.h",
                "main.c",
                "mps2-an386.ld",
                "semihost.c",
                "semihost.h",
                "startup.c",
            )
        ]
        assert {i.date_time for i in z.infolist()} == {(2020, 1, 1, 0, 0, 0)}
        text = {n.split("/", 1)[1]: z.read(n).decode() for n in names}
    assert text["digits.h"] == program.files["digits.h"]
    assert text["digits.c"] == program.files["digits.c"]
    for name in ("startup.c", "semihost.c", "semihost.h", "mps2-an386.ld"):
        assert text[name] == (firmware.template_dir() / name).read_text()
    make = text["Makefile"]
    assert " ".join(firmware.CFLAGS) in make and " ".join(firmware.LDFLAGS) in make
    assert " ".join(firmware.QEMU_ARGS) in make and "-mcpu=$(CPU)" in make
    assert "CPU ?= cortex-m4" in make and "timeout 60 $(QEMU)" in make
    assert "-kernel $(ELF)" in make and "ELF = digits.elf" in make
    assert "uint8_t images[NUM_IMAGES][DIGITS_CLASSIFY_BYTES]" in text["main.c"]
    readme = text["README.md"]
    for key in ("flash_bytes", "ram_bytes", "static_ram_bytes", "stack_bytes", "instructions"):
        assert f"| {MEASURED[key]} |" in readme
    assert MEASURED["compiler"] in readme and "not measured" not in readme.lower()
    for needle in (
        "digits test model",
        "digits_input",
        "digits_invoke",
        "digits_output",
        "digits_classify(const uint8_t *pixels)",
        "8x8x1",
        "0.00392156863",  # the pixel scale
        "area-resizes them to 6x6",
        "no heap",
        "C++",
        "make run",
        "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm",
        "i pred host label",
    ):
        assert needle in readme, needle
    unmeasured = c_project_zip(program, measured=None, **kw)
    with zipfile.ZipFile(io.BytesIO(unmeasured)) as z:
        readme = z.read("digits_project/README.md").decode()
    assert "Not measured" in readme and str(MEASURED["flash_bytes"]) not in readme


def test_the_int8_readme_gives_the_quantization() -> None:
    program, images, _ = _case("int8")
    data = c_project_zip(
        program,
        images=images,
        labels=None,
        host_predictions=np.zeros(len(images), dtype=int),
        measured={**MEASURED, "flash_bytes": None},  # a C target that was not built
    )
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        readme = z.read("model_project/README.md").decode()
        main = z.read("model_project/main.c").decode()
    inp = program.info["input"]
    assert f"q = clamp(round(x / {inp['scale']:.9g}) + ({inp['zero_point']}), -128, 127)" in readme
    assert "model_classify(const int8_t *input)" in readme and "Not measured" in readme
    assert "static const int8_t images[NUM_IMAGES][MODEL_CLASSIFY_BYTES]" in main
    assert str(int(images.min())) in main


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(images=np.zeros((3, 63), np.uint8)), "shape"),
        (dict(images=np.zeros(64, np.uint8)), "shape"),
        (dict(images=np.zeros((0, 64), np.uint8)), "1 to 16"),
        (dict(images=np.zeros((17, 64), np.uint8), host_predictions=np.zeros(17, int)), "1 to 16"),
        (dict(images=np.full((3, 64), -1)), "uint8"),
        (dict(images=np.zeros((3, 64), np.float32)), "uint8"),
        (dict(host_predictions=np.zeros(2, int)), r"host_predictions must have shape \(3,\)"),
        (dict(host_predictions=np.array([0, 1, 10])), "host_predictions must lie"),
        (dict(labels=np.zeros(4, int)), r"labels must have shape \(3,\)"),
    ],
)
def test_mismatched_inputs_are_refused(change, match) -> None:
    program, _, _ = _case("pixels")
    kw = dict(
        images=np.zeros((3, 64), np.uint8),
        labels=None,
        host_predictions=np.zeros(3, int),
        measured=None,
    )
    with pytest.raises(ValueError, match=match):
        c_project_zip(program, **{**kw, **change})


def test_the_kind_is_downloadable_like_c_source(tmp_path: Path) -> None:
    """Stored, listed and downloaded through the API and pulled by the CLI, as c_source is."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from sparsearch.api.app import create_app
    from sparsearch.cli import app as cli_app
    from sparsearch.config import Settings
    from sparsearch.storage import open_storage

    kind = ARTIFACT_KINDS["c_project"]
    assert (kind.extension, kind.media_type) == ("zip", "application/zip")
    assert list(ARTIFACT_KINDS).index("c_project") == list(ARTIFACT_KINDS).index("c_source") + 1
    program, images, labels = _case("pixels")
    blobs = {
        "c_source": b"PK-c-source",
        "c_project": c_project_zip(
            program,
            images=images,
            labels=labels,
            host_predictions=np.zeros(len(images), int),
            measured=MEASURED,
        ),
    }
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    artifacts = tmp_path / "artifacts"
    storage = open_storage(db, artifacts)
    try:
        job = storage.create_job(dataset="digits", config={}, owner="alice")
        storage.add_trial(
            job.id, 0, status="running", params={}, generator="sobol", gen_seconds=0.1,
            estimates={"flash_bytes": 9000}, feasible=True, pruning={},
        )  # fmt: skip
        storage.finish_trial(
            job.id, 0, status="completed", metrics={"accuracy": 0.9}, effective_spec={},
            artifacts=blobs,
        )  # fmt: skip
        _, token = storage.create_token("alice")
        settings = Settings(database_url=db, artifact_dir=artifacts, auth="on")
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(settings, storage=storage)) as client:
            base = f"/v1/jobs/{job.id}/trials/0/artifacts"
            listing = {a["kind"]: a for a in client.get(base, headers=headers).json()}
            assert set(listing) == set(blobs)
            for name, data in blobs.items():
                assert listing[name]["filename"] == f"{name}.zip"
                r = client.get(listing[name]["url"], headers=headers)
                assert r.status_code == 200 and r.content == data
                assert r.headers["content-type"] == "application/zip"
                assert r.headers["X-Content-SHA256"] == hashlib.sha256(data).hexdigest()
                assert f'trial-0-{name}.zip"' in r.headers["Content-Disposition"]
    finally:
        storage.close()
    runner = CliRunner()
    for name, data in blobs.items():
        out = tmp_path / f"{name}.zip"
        result = runner.invoke(
            cli_app,
            ["pull", job.id, "--trial", "0", "--format", name, "-o", str(out), "--db", db,
             "--artifacts", str(artifacts)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == data and name in result.output
