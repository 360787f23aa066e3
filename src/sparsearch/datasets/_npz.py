"""Reading ``.npz`` archives without trusting them (uploads, and the CLI's ``npz:PATH``).

zipfile parses the archive; this module parses each member's ``.npy`` header itself and returns
arrays that are views of the member's bytes, so an object (pickled) dtype is refused before
anything is unpickled and a header that promises more data than the member holds is refused
before anything is allocated. With ``max_decompressed``, the members' declared sizes must add up
to at most that many bytes and every member is read through a bounded stream (headers can lie).
What the arrays must look like is ``sparsearch.datasets``'s business; this module only reads them.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sparsearch.errors import DatasetError

#: The arrays an npz dataset holds, in this order.
NPZ_KEYS: tuple[str, ...] = ("x_train", "y_train", "x_test", "y_test")

# What a hostile or broken zip can raise from zipfile/zlib/numpy's header parser.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    RuntimeError,  # encrypted members; RecursionError from a nested header
    NotImplementedError,  # unsupported compression method
    ValueError,
    TypeError,
    zlib.error,
    struct.error,
    UnicodeError,
    OverflowError,
)
_READ_CHUNK = 1 << 20
_NPY_MAX_HEADER = 10_000  # numpy's own default limit for an .npy header
_RECREATE = "re-create it with numpy.savez (or savez_compressed) from plain numeric arrays"


def read_npz(
    source: Path | io.BytesIO, *, max_decompressed: int | None, subject: str
) -> dict[str, np.ndarray]:
    """The four arrays of an npz archive; ``max_decompressed`` caps the bytes inflated;
    ``subject`` names the archive in messages."""
    try:
        with zipfile.ZipFile(source) as archive:
            infos = archive.infolist()
            members = {_npz_key(info.filename): info for info in infos}
            absent = [k for k in NPZ_KEYS if k not in members]
            if absent:
                raise DatasetError(
                    f"{subject} lacks {', '.join(absent)}",
                    hint=f"it must hold {', '.join(NPZ_KEYS)}; it holds "
                    f"{', '.join(sorted(members)) or 'nothing'}",
                )
            if max_decompressed is not None:
                declared = sum(info.file_size for info in infos)
                if declared > max_decompressed:
                    raise _too_big(
                        f"{subject} declares {_mib(declared)} of uncompressed data",
                        max_decompressed,
                    )
            budget = max_decompressed
            raw: dict[str, np.ndarray] = {}
            for key in NPZ_KEYS:
                buf = _read_member(archive, members[key], budget, max_decompressed, subject)
                if budget is not None:
                    budget -= len(buf)
                raw[key] = _parse_npy(buf, key, subject)
            return raw
    except DatasetError:
        raise
    except _ZIP_ERRORS as e:
        raise DatasetError(
            f"{subject} is corrupt or unreadable: {_first_line(e)}", _RECREATE
        ) from e


_MAX_ZIP_DIRECTORY = 64 * 1024  # an npz of 4 arrays needs a few hundred bytes


def check_zip_directory(data: bytes, subject: str) -> None:
    """Refuse a zip whose central directory is huge before zipfile parses it: hundreds of
    thousands of tiny members cost zipfile seconds of CPU and ~7x their size in memory."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))  # end of central directory
    if end < 0 or end + 22 > len(data):
        return  # zipfile will refuse it
    size = struct.unpack_from("<I", data, end + 12)[0]
    locator, record = end - 20, end - 76  # zip64 locator and end record, where zipfile looks
    if (
        record >= 0
        and data[locator : locator + 4] == b"PK\x06\x07"
        and data[record : record + 4] == b"PK\x06\x06"
    ):
        size = max(size, struct.unpack_from("<Q", data, record + 40)[0])
    if size > _MAX_ZIP_DIRECTORY:
        raise DatasetError(
            f"{subject} has a zip directory of {size:,} bytes (thousands of members); an npz "
            f"dataset holds only {', '.join(NPZ_KEYS)}",
            hint="save just those four arrays with numpy.savez or numpy.savez_compressed",
        )


def _npz_key(name: str) -> str:
    return name[:-4] if name.endswith(".npy") else name  # numpy's own rule for npz keys


def _read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    budget: int | None,
    cap: int | None,
    subject: str,
) -> bytearray:
    out = bytearray()
    with archive.open(info) as fh:
        while chunk := fh.read(_READ_CHUNK):
            out += chunk
            if budget is not None and len(out) > budget:
                raise _too_big(f"{subject} inflates to more than its headers declare", cap or 0)
    return out


def _parse_npy(buf: bytearray, key: str, subject: str) -> np.ndarray:
    """One ``.npy`` member as a view of ``buf`` (nothing is unpickled, nothing is allocated
    from what the header claims)."""
    head = io.BytesIO(bytes(buf[: _NPY_MAX_HEADER + 16]))
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except ValueError as e:
        msg = f"{subject}: {key} is not a valid .npy array: {_first_line(e)}"
        raise DatasetError(msg, _RECREATE) from e
    if dtype.hasobject:
        raise DatasetError(
            f"{subject} holds object (pickled) arrays ({key}), which are refused for safety",
            hint="store plain numeric arrays (uint8/float images, integer labels)",
        )
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise DatasetError(
            f"{subject}: {key} has dtype {dtype}, which is not a plain number type",
            hint="store numeric arrays: uint8 or float images, integer labels",
        )
    if any(d < 0 for d in shape):
        raise DatasetError(f"{subject}: {key} has an invalid shape {shape}", _RECREATE)
    offset, count = head.tell(), math.prod(shape)
    need, have = count * dtype.itemsize, len(buf) - head.tell()
    if have < need:
        raise DatasetError(
            f"{subject}: {key} is truncated: its header says {shape} of {dtype} "
            f"({need} bytes) but only {have} bytes follow",
            _RECREATE,
        )
    if count == 0:
        return np.zeros(shape, dtype)
    flat = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _too_big(what: str, cap: int) -> DatasetError:
    return DatasetError(
        f"{what}; this server accepts at most {_mib(cap)} of decompressed data",
        hint="upload fewer or smaller images (e.g. uint8 instead of float32), or ask the "
        "operator to raise SPARSEARCH_MAX_DATASET_MB",
    )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB ({n:,} bytes)"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
