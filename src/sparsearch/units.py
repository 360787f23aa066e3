"""Byte sizes as users write them: ``24KiB``, ``32KB``, ``1.5MiB``, ``6144``.

``KB``/``MB`` are powers of 1000, ``KiB``/``MiB`` powers of 1024, a bare number is bytes.
"""

from __future__ import annotations

import re
from decimal import Decimal

from sparsearch.errors import ConfigError

#: The largest integer a database column holds (signed 64-bit): sizes and the CLI's integer
#: options are capped by it.
INT64_MAX = 2**63 - 1
MAX_SIZE = INT64_MAX
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
# ASCII only: a str pattern's \d also matches other scripts' digits (２, ٢), which no one means.
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$", re.ASCII)
_SIZE_HINT = "write a byte count like 6144, 24KiB (x1024) or 32KB (x1000)"


def parse_size(text: str | int, *, what: str = "size") -> int:
    """Parse a size into a positive byte count, or raise ConfigError saying why not."""
    if isinstance(text, bool):
        raise ConfigError(
            f"{what} must be a size, got {text!r}", "write a byte count like 6144 or 24KiB"
        )
    if isinstance(text, int):
        value = text
    else:
        if not str(text).isascii():
            raise ConfigError(
                f"cannot parse {what} {text!r}: only ASCII digits, '.' and units are accepted",
                _SIZE_HINT,
            )
        match = _SIZE.match(str(text))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _UNITS:
            raise ConfigError(f"cannot parse {what} {text!r}", _SIZE_HINT)
        # Decimal, not float: exact for 19-digit counts, never inf for 400 digits.
        value = int(Decimal(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"{what} must be positive, got {text!r}", "give a limit above zero")
    if value > MAX_SIZE:
        raise ConfigError(
            f"{what} is too large: at most {MAX_SIZE:,} bytes can be stored", _SIZE_HINT
        )
    return value


def format_size(n: int | None) -> str:
    """Human-readable bytes for tables: 24576 -> '24.0 KiB'."""
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.2f} MiB"
