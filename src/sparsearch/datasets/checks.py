"""The rules every ``.npz`` meets, a local ``npz:<path>`` or an upload to the service, and the
image / label checks the other loaders share. Nothing here trusts the file: see ``_npz.py``."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sparsearch.datasets._npz import check_zip_directory, read_npz
from sparsearch.errors import DatasetError


def load_npz(path: Path) -> tuple[Any, ...]:
    """(x_train, y_train, x_test, y_test, pixel_scale) from an ``.npz`` archive, validated by
    the same rules as an upload (:func:`validate_npz_bytes`), without its size caps (the file is
    the user's). ``pixel_scale``: see :func:`pixel_scale_of`."""
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
        to_float_images(x_train, "x_train"),
        y_train,
        to_float_images(x_test, "x_test"),
        y_test,
        pixel_scale_of(x_train),
    )


def pixel_scale_of(x: np.ndarray) -> float | None:
    """What :func:`to_float_images` multiplies the stored pixels by (1/255 for integer images),
    or None when float images are used as stored."""
    return None if np.issubdtype(x.dtype, np.floating) else 1.0 / 255.0


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
        out += [x, to_labels(y, split)]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DatasetError(
            f"npz x_train images are {out[0].shape[1:]} (C, H, W) but x_test images are "
            f"{out[2].shape[1:]}",
            hint="train and test images must have the same (C, H, W)",
        )
    num_classes = check_labels(out[1], out[3])
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


def to_float_images(x: np.ndarray, what: str) -> np.ndarray:
    _check_images(x, what)
    if np.issubdtype(x.dtype, np.floating):
        return np.ascontiguousarray(x, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)


def to_labels(y: np.ndarray, split: str = "") -> np.ndarray:
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


def check_labels(y_train: np.ndarray, y_test: np.ndarray) -> int:
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


def stratified_split(
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
