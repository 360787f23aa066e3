"""Datasets as plain numpy arrays: the built-in loaders and the validation of untrusted files.

Torch-free, so the API (which validates uploads) and the workers (which train) share it. Images
come back float32 (N, C, H, W) in [0, 1] for uint8 sources, labels int64 in 0..classes-1."""

from sparsearch.datasets.checks import LAYOUT_HINT, MAX_CLASSES, load_npz, validate_npz_bytes
from sparsearch.datasets.loaders import (
    BUILTIN_DATASETS,
    DATASET_NAMES,
    FASHION_MNIST_INSTALL,
    FASHION_MNIST_ROOT,
    Dataset,
    load_dataset,
    load_idx_folder,
    read_idx,
)

__all__ = [
    "BUILTIN_DATASETS",
    "DATASET_NAMES",
    "FASHION_MNIST_INSTALL",
    "FASHION_MNIST_ROOT",
    "LAYOUT_HINT",
    "MAX_CLASSES",
    "Dataset",
    "load_dataset",
    "load_idx_folder",
    "load_npz",
    "read_idx",
    "validate_npz_bytes",
]
