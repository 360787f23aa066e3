"""Datasets as plain numpy arrays, loaded from local files only (never the network).

Names: ``digits`` (scikit-learn), ``fashion-mnist`` (Debian package ``dataset-fashion-mnist``),
``idx:<dir>`` (any MNIST-format folder), ``npz:<path>`` (x_train, y_train, x_test, y_test).
Every dataset comes back with a stratified validation split carved from its training data (the
search objective) and an untouched test split. Images are float32 (N, C, H, W) in [0, 1] for
uint8 sources; labels int64 in 0..num_classes-1.

An npz (a local ``npz:<path>`` or a file uploaded to the service, checked first by
:func:`validate_npz_bytes`) follows one set of rules: numeric arrays only (nothing is
unpickled), images N×H×W, N×H×W×C or N×C×H×W with C <= 4 (a 4-D array where both dim 1 and
dim 3 are <= 4 is ambiguous and refused), uint8 / 0-255 integer / finite float images, integer
labels in [0, classes) with classes = largest label + 1 >= 2, matching lengths.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsearch.datasets.checks import (
    check_labels,
    load_npz,
    stratified_split,
    to_float_images,
    to_labels,
)
from sparsearch.errors import DatasetError

log = logging.getLogger(__name__)

BUILTIN_DATASETS: tuple[str, ...] = ("digits", "fashion-mnist")
DATASET_NAMES: tuple[str, ...] = ("digits", "fashion-mnist", "idx:<dir>", "npz:<path>")
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "apt-get install -y dataset-fashion-mnist"
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# split -> accepted file stems (canonical MNIST spelling, then the dotted variant some mirrors use)
_IDX_FILES: dict[str, tuple[str, ...]] = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/validation/test splits. x: float32 (N, C, H, W); y: int64 class indices."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    #: What turned the stored pixels into the model's [0, 1] floats: multiply by this (1/255
    #: for uint8 images, 1/16 for scikit-learn's digits), or None for float images used as
    #: stored. Firmware applies the same before quantizing (``deployment.preprocessing``).
    pixel_scale: float | None = 1.0 / 255.0
    #: Names of the classes by index, where the source has them (else empty).
    class_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def summary(self) -> dict[str, Any]:
        """JSON-safe description: sizes, shape, classes."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "train": len(self.y_train),
            "val": len(self.y_val),
            "test": len(self.y_test),
        }


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    train_limit: int | None = None,
    root: Path | str | None = None,
) -> Dataset:
    """Load dataset ``name`` and split it.

    The validation split is a stratified ``val_fraction`` of the source's training data
    (``random_state=seed``). ``train_limit`` then keeps a stratified subset of at most that many
    training images; validation and test are unaffected by it. ``root`` overrides the folder of
    ``fashion-mnist``."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"dataset name {name!r} is not valid", hint=_valid_names())
    if not 0.0 < float(val_fraction) < 1.0:
        raise DatasetError(f"val_fraction {val_fraction!r} is outside (0, 1)", hint="use e.g. 0.2")
    if train_limit is not None and int(train_limit) < 1:
        raise DatasetError(f"train_limit {train_limit!r} must be positive", hint="or leave it None")

    pixel_scale: float | None = 1.0 / 255.0
    class_names: tuple[str, ...] = ()
    if name == "digits":
        x_src, y_src, x_test, y_test = _load_digits(seed)
        pixel_scale, class_names = 1.0 / 16.0, tuple(str(d) for d in range(10))
    elif name == "fashion-mnist":
        folder = Path(root) if root is not None else FASHION_MNIST_ROOT
        hint = f"install it with `{FASHION_MNIST_INSTALL}`"
        if root is not None:
            hint += " and drop root=, or pass a folder holding the four IDX files"
        x_src, y_src, x_test, y_test = load_idx_folder(folder, missing_hint=hint)
        class_names = FASHION_MNIST_CLASSES
    elif name.startswith("idx:") and len(name) > 4:
        x_src, y_src, x_test, y_test = load_idx_folder(Path(name[4:]).expanduser())
    elif name.startswith("npz:") and len(name) > 4:
        x_src, y_src, x_test, y_test, pixel_scale = load_npz(Path(name[4:]).expanduser())
    else:
        raise DatasetError(f"unknown dataset {name!r}", hint=_valid_names())

    num_classes = check_labels(y_src, y_test)
    x_train, x_val, y_train, y_val = stratified_split(
        x_src, y_src, test_size=float(val_fraction), seed=seed, what="validation split"
    )
    if train_limit is not None and int(train_limit) < len(y_train):
        x_train, _, y_train, _ = stratified_split(
            x_train, y_train, train_size=int(train_limit), seed=seed, what="train_limit subset"
        )
    ds = Dataset(
        name=name,
        x_train=np.ascontiguousarray(x_train),
        y_train=y_train,
        x_val=np.ascontiguousarray(x_val),
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        pixel_scale=pixel_scale,
        class_names=class_names if len(class_names) == num_classes else (),
    )
    log.debug("loaded dataset %s", ds.summary())
    return ds


# --- sources ----------------------------------------------------------------------------------


def _load_digits(seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_src, x_test, y_src, y_test = stratified_split(
        x, y, test_size=0.2, seed=seed, what="test split"
    )
    return x_src, y_src, x_test, y_test


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (plain or gzipped) into a native-endian numpy array."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"cannot read IDX file {path}: {e}", hint=_corrupt_hint(path)) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DatasetError(
            f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})",
            hint=_corrupt_hint(path),
        )
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"IDX file {path} is truncated (header)", hint=_corrupt_hint(path))
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DatasetError(
            f"IDX file {path} is {state}: {len(raw)} bytes, expected {expected} for shape {dims}",
            hint=_corrupt_hint(path),
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def load_idx_folder(folder: Path, *, missing_hint: str | None = None) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) from an MNIST-format folder (N, 1, H, W images)."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, stems in _IDX_FILES.items():
        candidates = [folder / f"{stem}{ext}" for stem in stems for ext in (".gz", "")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(f"{stems[0]}[.gz]")
        else:
            found[key] = path
    if missing:
        raise DatasetError(
            f"IDX dataset folder {folder} lacks {', '.join(missing)}",
            hint=missing_hint or "point idx:<dir> at a folder with the four MNIST-format files",
        )
    arrays: list[np.ndarray] = []
    for split in ("train", "test"):
        images = read_idx(found[f"{split}_images"])
        labels = read_idx(found[f"{split}_labels"])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"IDX {split} files in {folder} do not match: images {images.shape}, "
                f"labels {labels.shape}",
                hint="images must be (N, H, W) and labels (N,)",
            )
        arrays += [to_float_images(images[:, None], f"{split} images"), to_labels(labels)]
    return tuple(arrays)


def _corrupt_hint(path: Path) -> str:
    if path.is_relative_to(FASHION_MNIST_ROOT):
        return "the file is damaged; reinstall: `apt-get install --reinstall dataset-fashion-mnist`"
    return "the file is damaged or not in IDX format; replace it"


def _valid_names() -> str:
    return f"valid datasets: {', '.join(DATASET_NAMES)}"
