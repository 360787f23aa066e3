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
import io
import logging
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsearch.errors import DatasetError
from sparsearch.worker._npz import check_zip_directory, read_npz

log = logging.getLogger(__name__)

BUILTIN_DATASETS: tuple[str, ...] = ("digits", "fashion-mnist")
DATASET_NAMES: tuple[str, ...] = ("digits", "fashion-mnist", "idx:<dir>", "npz:<path>")
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "apt-get install -y dataset-fashion-mnist"

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

    if name == "digits":
        x_src, y_src, x_test, y_test = _load_digits(seed)
    elif name == "fashion-mnist":
        folder = Path(root) if root is not None else FASHION_MNIST_ROOT
        hint = f"install it with `{FASHION_MNIST_INSTALL}`"
        if root is not None:
            hint += " and drop root=, or pass a folder holding the four IDX files"
        x_src, y_src, x_test, y_test = load_idx_folder(folder, missing_hint=hint)
    elif name.startswith("idx:") and len(name) > 4:
        x_src, y_src, x_test, y_test = load_idx_folder(Path(name[4:]).expanduser())
    elif name.startswith("npz:") and len(name) > 4:
        x_src, y_src, x_test, y_test = load_npz(Path(name[4:]).expanduser())
    else:
        raise DatasetError(f"unknown dataset {name!r}", hint=_valid_names())

    num_classes = _check_labels(y_src, y_test)
    x_train, x_val, y_train, y_val = _stratified_split(
        x_src, y_src, test_size=float(val_fraction), seed=seed, what="validation split"
    )
    if train_limit is not None and int(train_limit) < len(y_train):
        x_train, _, y_train, _ = _stratified_split(
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
    )
    log.debug("loaded dataset %s", ds.summary())
    return ds


def resize_inputs(x: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Resize (N, C, H, W) images to ``shape_hw`` by area averaging (the input-scale dimension
    of the search). Returns ``x`` itself when the size already matches."""
    if x.ndim != 4:
        raise DatasetError(f"resize_inputs expects (N, C, H, W), got shape {x.shape}")
    h, w = (int(v) for v in shape_hw)
    if h < 1 or w < 1:
        raise DatasetError(f"cannot resize images to {shape_hw}", hint="use a size of at least 1x1")
    if x.shape[2:] == (h, w):
        return x
    import torch
    import torch.nn.functional as F

    out = np.empty((x.shape[0], x.shape[1], h, w), dtype=np.float32)
    step = 8192  # bounds peak memory on 60k-image datasets
    with torch.no_grad():
        for start in range(0, x.shape[0], step):
            chunk = torch.from_numpy(np.asarray(x[start : start + step], dtype=np.float32))
            out[start : start + step] = F.interpolate(chunk, size=(h, w), mode="area").numpy()
    return out


# --- sources ----------------------------------------------------------------------------------


def _load_digits(seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_src, x_test, y_src, y_test = _stratified_split(
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
        arrays += [_to_float_images(images[:, None], f"{split} images"), _to_labels(labels)]
    return tuple(arrays)


def load_npz(path: Path) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) from an ``.npz`` archive, validated by the same rules
    as an upload (:func:`validate_npz_bytes`), without its size caps (the file is the user's)."""
    if not path.is_file():
        raise DatasetError(f"npz file {path} does not exist", hint="check the path after npz:")
    if not zipfile.is_zipfile(path):
        raise DatasetError(
            f"{path} is not an npz archive", hint="save it with numpy.savez(path, x_train=...)"
        )
    subject = f"npz file {path}"  # name the file: the user may have several
    raw = read_npz(path, max_decompressed=None, subject=subject)
    try:
        x_train, y_train, x_test, y_test, _ = _check_npz(raw)
    except DatasetError as e:
        raise DatasetError(f"{subject}: {e.message}", hint=e.hint) from None
    return (
        _to_float_images(x_train, "x_train"),
        y_train,
        _to_float_images(x_test, "x_test"),
        y_test,
    )


def validate_npz_bytes(data: bytes, *, max_decompressed: int) -> dict[str, Any]:
    """Check an uploaded ``.npz`` without trusting it; return its summary
    ``{"num_classes", "input_shape": [C, H, W], "n_train", "n_test"}``.

    A zip directory of more than 64 KiB (thousands of members) is refused before it is parsed.
    The archive's declared sizes must add up to at most ``max_decompressed`` bytes, and members
    are read through a stream that stops at that many bytes (headers can lie). Arrays are parsed
    from their ``.npy`` headers without numpy's loader: object (pickled) arrays are refused
    before anything is unpickled, and an array whose header promises more data than the member
    holds is refused before anything is allocated. Then the rules of :func:`load_npz` apply.
    Every rejection is a DatasetError whose hint says what to fix.
    """
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise DatasetError(
            "the file is not an npz (zip) archive",
            hint="save the arrays with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
            "y_test=...) or numpy.savez_compressed and upload that file",
        )
    check_zip_directory(data, "the uploaded file")
    x_train, y_train, x_test, y_test, num_classes = _check_npz(
        read_npz(io.BytesIO(data), max_decompressed=max_decompressed, subject="the uploaded file")
    )
    return {
        "num_classes": num_classes,
        "input_shape": [int(v) for v in x_train.shape[1:]],
        "n_train": len(y_train),
        "n_test": len(y_test),
    }


# --- npz: the rules every npz meets (local file or upload) ------------------------------------


def _check_npz(raw: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """(x_train, y_train, x_test, y_test, num_classes): images as (N, C, H, W) views in their
    stored dtype (checked, not yet converted), labels int64 in [0, num_classes)."""
    out: list[np.ndarray] = []
    for split in ("train", "test"):
        x = _to_nchw(raw[f"x_{split}"], f"x_{split}")
        y = raw[f"y_{split}"]
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DatasetError(
                f"npz y_{split} has shape {y.shape}",
                hint="labels must be a 1-D array of integers, one per image",
            )
        if x.size == 0 or y.size == 0:
            raise DatasetError(f"npz x_{split}/y_{split} are empty", hint="store at least 1 sample")
        if len(x) != len(y):
            raise DatasetError(
                f"npz x_{split} has {len(x)} samples but y_{split} has {len(y)}",
                hint="x and y of a split must have the same length (one label per image)",
            )
        _check_images(x, f"x_{split}")
        out += [x, _to_labels(y, split)]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DatasetError(
            f"npz x_train images are {out[0].shape[1:]} (C, H, W) but x_test images are "
            f"{out[2].shape[1:]}",
            hint="train and test images must have the same (C, H, W)",
        )
    num_classes = _check_labels(out[1], out[3])
    _check_stratifiable(out[1])
    return (*out, num_classes)


# --- validation helpers -----------------------------------------------------------------------

#: Accepted image layouts, as the docs state them.
LAYOUT_HINT = (
    "images must be N×H×W, N×H×W×C or N×C×H×W with C <= 4 channels; a 4-D array is read as "
    "N×C×H×W when dim 1 <= 4 and as N×H×W×C when dim 3 <= 4, and only one of them may be <= 4"
)
#: The most classes a dataset may have (labels are 0..MAX_CLASSES-1).
MAX_CLASSES = 1000


def _to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        channels_first, channels_last = x.shape[1] <= 4, x.shape[3] <= 4
        if channels_first and channels_last:
            raise DatasetError(
                f"{what} has shape {x.shape}, which reads as N×C×H×W and as N×H×W×C",
                hint="store it as N×C×H×W (from N×H×W×C: np.transpose(x, (0, 3, 1, 2))) or as "
                "N×H×W×C (from N×C×H×W: np.transpose(x, (0, 2, 3, 1))) so that only the "
                "channel dimension is <= 4, or as N×H×W if it has one channel",
            )
        if channels_first:
            return x
        if channels_last:
            return np.moveaxis(x, 3, 1)
    raise DatasetError(f"{what} has shape {x.shape}", hint=LAYOUT_HINT)


def _check_images(x: np.ndarray, what: str) -> None:
    """Images are uint8, integers in 0..255, or finite floats; anything else is refused."""
    if x.dtype == np.uint8:
        return
    if np.issubdtype(x.dtype, np.floating):
        per_image = max(1, x.size // max(1, len(x)))
        step = max(1, (1 << 22) // per_image)  # bounded temporaries on big arrays
        if not all(np.isfinite(x[i : i + step]).all() for i in range(0, len(x), step)):
            raise DatasetError(f"{what} holds NaN or infinite values", hint="clean the data")
        return
    if np.issubdtype(x.dtype, np.integer) and x.size and x.min() >= 0 and x.max() <= 255:
        return
    raise DatasetError(
        f"{what} has dtype {x.dtype}",
        hint="images must be uint8 (0-255, scaled to [0, 1]), integers within 0-255, or "
        "floating point",
    )


def _to_float_images(x: np.ndarray, what: str) -> np.ndarray:
    _check_images(x, what)
    if np.issubdtype(x.dtype, np.floating):
        return np.ascontiguousarray(x, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)


def _to_labels(y: np.ndarray, split: str = "") -> np.ndarray:
    where = f"y_{split}" if split else "labels"
    if not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        raise DatasetError(
            f"{where} has dtype {y.dtype}",
            hint="labels must be integers 0..K-1 (whole-number floats: y.astype(np.int64))",
        )
    if y.size and y.min() < 0:
        raise DatasetError(f"{where} holds negative labels", hint="labels must be integers 0..K-1")
    if y.size and y.max() >= MAX_CLASSES:
        raise DatasetError(
            f"{where} holds label {int(y.max())}; at most {MAX_CLASSES} classes are supported",
            hint="labels must be integers 0..K-1: renumber the classes consecutively from 0",
        )
    return y.astype(np.int64)


def _check_labels(y_train: np.ndarray, y_test: np.ndarray) -> int:
    """Labels are 0..num_classes-1 with num_classes = largest label + 1; training needs >= 2."""
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    present = np.unique(y_train)
    if len(present) < 2:
        raise DatasetError(
            f"the training labels hold {len(present)} class", hint="a classifier needs >= 2 classes"
        )
    return num_classes


def _check_stratifiable(y_train: np.ndarray, val_fraction: float = 0.2) -> None:
    """Fail now, not when a job starts, if the validation split that every job carves from the
    training data (stratified, ``val_fraction``) is impossible: sklearn's own conditions."""
    counts = np.bincount(y_train)
    singles = np.flatnonzero(counts == 1)
    if len(singles):
        raise DatasetError(
            f"class {int(singles[0])} has only 1 training sample; a stratified validation "
            "split needs at least 2 per class",
            hint="add training samples of that class or drop the class (and renumber labels)",
        )
    n_classes = int(np.count_nonzero(counts))
    n_val = math.ceil(val_fraction * len(y_train))
    if min(n_val, len(y_train) - n_val) < n_classes:
        raise DatasetError(
            f"{len(y_train)} training samples are too few for a stratified validation split "
            f"of {val_fraction:.0%} over {n_classes} classes",
            hint=f"store at least {math.ceil(n_classes / val_fraction)} training samples",
        )


def _stratified_split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    what: str,
    test_size: float | None = None,
    train_size: int | None = None,
) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    try:
        return tuple(
            train_test_split(
                x, y, test_size=test_size, train_size=train_size, stratify=y, random_state=seed
            )
        )
    except ValueError as e:
        raise DatasetError(
            f"cannot make a stratified {what}: {e}",
            hint="every class needs enough samples (at least 2 in the training data)",
        ) from e


def _corrupt_hint(path: Path) -> str:
    if path.is_relative_to(FASHION_MNIST_ROOT):
        return "the file is damaged; reinstall: `apt-get install --reinstall dataset-fashion-mnist`"
    return "the file is damaged or not in IDX format; replace it"


def _valid_names() -> str:
    return f"valid datasets: {', '.join(DATASET_NAMES)}"
