"""MNIST-1D as an ``.npz`` that ``sparsearch search --dataset npz:FILE`` reads: 4,000 training
and 1,000 test sequences of length 40, 10 classes (Greydanus 2020; the ``mnist1d`` package on
PyPI, ``pip install -e '.[bench]'``).

The data set is generated offline with the package's defaults, ``make_dataset(get_dataset_args())``
(seed 42, 5,000 samples, 80 % train): the package's ``get_dataset`` would download a pickle from
GitHub first, ``make_dataset`` builds the same kind of data with numpy and scipy only. Sequences
are stored as float32 ``N x 1 x 1 x 40`` (one channel, height 1: the npz rules' 1-D layout, so
the networks use ``1 x k`` kernels), used as stored (float data has no pixel scale), and labels
as int64.

    python benchmarks/make_mnist1d.py --out runs/mnist1d.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def make() -> dict[str, np.ndarray]:
    """The four arrays of the npz dataset, from the package's default arguments."""
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())  # offline: numpy/scipy only, seeded (42)

    def seqs(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)[:, None, None, :]  # N x C x H x L

    return {
        "x_train": seqs(data["x"]),
        "y_train": np.asarray(data["y"], dtype=np.int64),
        "x_test": seqs(data["x_test"]),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the .npz to write")
    a = p.parse_args()
    arrays = make()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, **arrays)
    summary = {k: list(v.shape) for k, v in arrays.items()}
    summary["classes"] = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    summary["out"] = str(a.out)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
