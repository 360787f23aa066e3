from __future__ import annotations

import gzip
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sparsearch.datasets import (
    FASHION_MNIST_ROOT,
    Dataset,
    load_dataset,
    read_idx,
    validate_npz_bytes,
)
from sparsearch.errors import DatasetError

# --- digits ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


def test_digits_shapes_and_ranges(digits: Dataset) -> None:
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    n_test = len(digits.y_test)
    assert n_test == 360  # 20% of 1,797, stratified
    assert len(digits.y_val) == 288 and len(digits.y_train) == 1149
    for x, y in [(digits.x_train, digits.y_train), (digits.x_val, digits.y_val)]:
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape[1:] == (1, 8, 8) and len(x) == len(y)
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert digits.x_train.max() == 1.0
    assert digits.summary() == {
        "name": "digits", "input_shape": [1, 8, 8], "num_classes": 10,
        "train": 1149, "val": 288, "test": 360,
    }  # fmt: skip


def test_digits_splits_are_stratified(digits: Dataset) -> None:
    total = np.bincount(np.concatenate([digits.y_train, digits.y_val, digits.y_test]), minlength=10)
    for y in (digits.y_train, digits.y_val, digits.y_test):
        counts = np.bincount(y, minlength=10)
        expected = total * len(y) / total.sum()
        assert np.all(np.abs(counts - expected) <= 1.0), (counts, expected)


def test_digits_splits_are_disjoint_and_cover_everything(digits: Dataset) -> None:
    rows = [x.reshape(len(x), -1) for x in (digits.x_train, digits.x_val, digits.x_test)]
    keys = [{r.tobytes() for r in part} for part in rows]
    from sklearn.datasets import load_digits

    all_keys = {(r / 16).astype(np.float32).tobytes() for r in load_digits().data}
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert keys[0] | keys[1] | keys[2] == all_keys


def test_digits_deterministic_by_seed(digits: Dataset) -> None:
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert np.array_equal(again.x_train, digits.x_train)
    assert np.array_equal(again.y_val, digits.y_val)
    assert not np.array_equal(other.y_train, digits.y_train)


def test_train_limit_and_val_fraction() -> None:
    ds = load_dataset("digits", val_fraction=0.5, train_limit=200)
    assert len(ds.y_train) == 200 and len(ds.y_val) == 719
    assert np.bincount(ds.y_train, minlength=10).min() >= 19  # stratified: ~20 per class
    assert len(load_dataset("digits", train_limit=10**6).y_train) == 1149  # a cap, not a size


@pytest.mark.parametrize(
    "kwargs", [{"val_fraction": 0.0}, {"val_fraction": 1.0}, {"train_limit": 0}]
)
def test_bad_split_options(kwargs) -> None:
    with pytest.raises(DatasetError):
        load_dataset("digits", **kwargs)


@pytest.mark.parametrize("name", ["mnist", "", "idx:", "npz:", "cifar10"])
def test_unknown_names_list_valid_ones(name: str) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(name)
    for valid in ("digits", "fashion-mnist", "idx:<dir>", "npz:<path>"):
        assert valid in info.value.hint


# --- IDX -------------------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}[array.dtype]
    head = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.tobytes()


def _write_idx_folder(folder: Path, *, gz: bool, n_train: int = 40, n_test: int = 10) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 6, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 4).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 6, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 4).astype(np.uint8),
    }
    for stem, arr in parts.items():
        data = _idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads(tmp_path: Path, gz: bool) -> None:
    _write_idx_folder(tmp_path, gz=gz)
    ds = load_dataset(f"idx:{tmp_path}", val_fraction=0.25)
    assert ds.input_shape == (1, 6, 5) and ds.num_classes == 4
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (30, 10, 10)
    assert set(np.bincount(ds.y_val, minlength=4).tolist()) <= {2, 3}  # 10 per class, 25%
    raw = read_idx(tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else "")))
    assert raw.dtype == np.uint8 and raw.shape == (10, 6, 5)
    np.testing.assert_allclose(ds.x_test[:, 0], raw / 255.0, rtol=1e-6)


def test_read_idx_big_endian_types(tmp_path: Path) -> None:
    ints = np.arange(-3, 3, dtype=">i4").reshape(2, 3)
    floats = np.linspace(0, 1, 4, dtype=">f4")
    (tmp_path / "i").write_bytes(_idx_bytes(ints))
    (tmp_path / "f").write_bytes(gzip.compress(_idx_bytes(floats)))
    np.testing.assert_array_equal(read_idx(tmp_path / "i"), ints)
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), floats)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-7], "truncated"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b + b"\0", "longer"),
        (lambda b: b"\x01\x02" + b[2:], "magic"),
        (lambda b: b"", "magic"),
    ],
)
def test_corrupt_idx_raises(tmp_path: Path, damage, message: str) -> None:
    _write_idx_folder(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"idx:{tmp_path}")


def test_corrupt_gzip_raises(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_length_mismatch(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path, gz=False)
    labels = (np.arange(39) % 4).astype(np.uint8)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    with pytest.raises(DatasetError, match="do not match"):
        load_dataset(f"idx:{tmp_path}")


def test_missing_idx_files_name_them(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte") as info:
        load_dataset(f"idx:{tmp_path}")
    assert "idx:<dir>" in info.value.hint


def test_fashion_mnist_missing_names_apt_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", root=tmp_path / "nowhere")
    assert "apt-get install -y dataset-fashion-mnist" in info.value.hint


def test_fashion_mnist_root_override(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path, gz=True)
    ds = load_dataset("fashion-mnist", root=tmp_path)
    assert ds.name == "fashion-mnist" and ds.input_shape == (1, 6, 5)


_HAVE_FMNIST = (FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file()


@pytest.mark.skipif(
    not _HAVE_FMNIST,
    reason=f"Debian package dataset-fashion-mnist is not installed ({FASHION_MNIST_ROOT} absent)",
)
def test_fashion_mnist_real_files() -> None:
    ds = load_dataset("fashion-mnist", train_limit=10_000, seed=0)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (10_000, 12_000, 10_000)
    assert np.bincount(ds.y_train).tolist() == [1000] * 10
    assert np.bincount(ds.y_val).tolist() == [1200] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.x_train.dtype == np.float32 and ds.x_train.min() >= 0.0 and ds.x_train.max() == 1.0


# --- npz -------------------------------------------------------------------------------------


def _arrays(n: int = 30, shape: tuple[int, ...] = (6, 6)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "x_train": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        "y_train": np.arange(n) % 3,
        "x_test": rng.integers(0, 256, (9, *shape), dtype=np.uint8),
        "y_test": np.arange(9) % 3,
    }


def _npz(tmp_path: Path, **arrays: np.ndarray) -> str:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_loads_and_scales(tmp_path: Path) -> None:
    arrays = _arrays()
    ds = load_dataset(_npz(tmp_path, **arrays), val_fraction=0.2)
    assert ds.input_shape == (1, 6, 6) and ds.num_classes == 3
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (24, 6, 9)
    np.testing.assert_allclose(ds.x_test[:, 0], arrays["x_test"] / 255.0, rtol=1e-6)
    assert ds.y_test.dtype == np.int64


@pytest.mark.parametrize(
    "shape, layout",
    [((6, 7, 3), "nhwc"), ((3, 6, 7), "nchw"), ((6, 7, 1), "nhwc"), ((2, 6, 7), "nchw")],
)
def test_npz_layouts(tmp_path: Path, shape, layout: str) -> None:
    arrays = _arrays(shape=shape)
    for key in ("x_train", "x_test"):
        arrays[key] = arrays[key].astype(np.float32) / 7.0  # floats are kept as they are
    ds = load_dataset(_npz(tmp_path, **arrays))
    c = shape[2] if layout == "nhwc" else shape[0]
    assert ds.input_shape == (c, 6, 7)
    expected = arrays["x_test"] if layout == "nchw" else np.moveaxis(arrays["x_test"], 3, 1)
    np.testing.assert_array_equal(ds.x_test, expected)


def _bad(tmp_path: Path, **changes) -> str:
    arrays = _arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return _npz(tmp_path, **arrays)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"x_test": None, "y_train": None}, "lacks y_train, x_test"),
        ({"y_train": np.arange(29) % 3}, "30 samples but y_train has 29"),
        ({"x_train": np.zeros((30, 6), np.uint8)}, "shape"),
        ({"x_train": np.zeros((30, 6, 6, 5, 5), np.uint8)}, "shape"),
        ({"x_train": np.zeros((30, 6, 6, 6), np.uint8)}, "shape"),
        ({"x_train": np.zeros((30, 3, 6, 3), np.uint8)}, "reads as N×C×H×W and as N×H×W×C"),
        ({"x_train": np.zeros((30, 1, 6, 1), np.uint8)}, "np.transpose"),
        ({"x_train": np.zeros((30, 6, 6), np.complex64)}, "not a plain number"),
        ({"x_train": np.zeros((30, 6, 6), bool)}, "dtype bool"),
        ({"y_test": np.full(9, 1000)}, "at most 1000 classes"),
        ({"y_train": (np.arange(30) % 3).astype(bool)}, "dtype bool"),
        ({"x_test": np.zeros((9, 5, 5), np.uint8)}, "same"),
        ({"y_train": (np.arange(30) % 3).astype(np.float32)}, "dtype float32"),
        ({"y_test": np.arange(9) % 3 - 1}, "negative"),
        ({"y_train": np.zeros(30, np.int64)}, "1 class"),
        ({"x_train": np.zeros((0, 6, 6), np.uint8), "y_train": np.zeros(0, np.int64)}, "empty"),
        ({"x_train": np.full((30, 6, 6), np.nan, np.float32)}, "NaN"),
        ({"x_train": np.full((30, 6, 6), 300, np.int32)}, "dtype int32"),
        ({"y_train": np.arange(30).reshape(10, 3) % 3}, "1-D"),
    ],
)
def test_npz_validation_errors(tmp_path: Path, changes, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(_bad(tmp_path, **changes))


def test_npz_object_arrays_refused(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["y_train"] = np.array([1, "a"] * 15, dtype=object)
    with pytest.raises(DatasetError, match="pickled"):
        load_dataset(_npz(tmp_path, **arrays))


def test_npz_header_promising_more_than_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    arrays = _arrays()
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w") as fh:
                if key == "x_train":  # claims 10**9 images, holds 36 bytes: never allocated
                    header = {"descr": "|u1", "fortran_order": False, "shape": (10**9, 6, 6)}
                    np.lib.format.write_array_header_1_0(fh, header)
                    fh.write(bytes(36))
                else:
                    np.lib.format.write_array(fh, value)
    with pytest.raises(DatasetError, match="x_train is truncated"):
        load_dataset(f"npz:{path}")


def test_npz_fortran_order_and_big_endian(tmp_path: Path) -> None:
    arrays = _arrays(shape=(6, 7))
    expected = arrays["x_test"].astype(np.float32) / 7.0
    arrays["x_test"] = np.asfortranarray(expected.astype(">f8"))
    arrays["y_test"] = arrays["y_test"].astype(">i2")
    arrays["x_train"] = arrays["x_train"].astype(np.float32) / 7.0
    ds = load_dataset(_npz(tmp_path, **arrays))
    np.testing.assert_allclose(ds.x_test[:, 0], expected, rtol=1e-6)
    assert ds.y_test.dtype == np.int64 and ds.y_test.tolist() == (np.arange(9) % 3).tolist()


@pytest.mark.parametrize("compressed", [False, True])
def test_validate_npz_bytes_matches_load_npz(tmp_path: Path, compressed: bool) -> None:
    arrays = _arrays(shape=(6, 7, 3))
    path = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    summary = validate_npz_bytes(path.read_bytes(), max_decompressed=1 << 20)
    ds = load_dataset(f"npz:{path}")
    assert summary == {"num_classes": 3, "input_shape": [3, 6, 7], "n_train": 30, "n_test": 9}
    assert summary["input_shape"] == list(ds.input_shape)
    assert summary["n_train"] == len(ds.y_train) + len(ds.y_val)


def test_validate_npz_bytes_caps_the_decompressed_size(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez_compressed(path, **_arrays(n=3000))  # ~108 KB of zeros-and-noise, inflated
    data = path.read_bytes()
    validate_npz_bytes(data, max_decompressed=1 << 20)
    with pytest.raises(DatasetError, match="accepts at most 0.1 MiB") as info:
        validate_npz_bytes(data, max_decompressed=100_000)
    assert "SPARSEARCH_MAX_DATASET_MB" in info.value.hint


def test_npz_missing_and_not_npz(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    (tmp_path / "t.npz").write_text("hello")
    with pytest.raises(DatasetError, match="not an npz"):
        load_dataset(f"npz:{tmp_path / 't.npz'}")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(DatasetError, match="not an npz"):
        load_dataset(f"npz:{tmp_path / 'a.npy'}")


def test_npz_class_needing_two_samples_for_stratification(tmp_path: Path) -> None:
    y = np.arange(30) % 3
    y[0] = 3  # class 3 appears once: no stratified split possible
    with pytest.raises(DatasetError, match="stratified"):
        load_dataset(_bad(tmp_path, y_train=y))
