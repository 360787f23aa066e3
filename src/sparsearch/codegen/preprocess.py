"""``classify``'s preprocessing: a raw 8-bit source image -> the model's int8 input, in integer
arithmetic, and the same function in NumPy for the host.

The host pipeline for 8-bit images is: pixels times the data set's ``pixel_scale``, an area
resize to the model's input size (windows of PyTorch's adaptive average pooling: rows
``floor(i * H / h)`` to ``ceil((i + 1) * H / h)``), then ``round(x / s) + z``. Here that is
``z + round(S * pixel_scale / (n * s))`` for the window's pixel sum ``S`` over ``n`` pixels,
with the factor held as a Q32 fixed-point multiplier per window size, rounded half up. It can
differ from the float pipeline by one step at exact halves, so the host's int8 evaluation of
8-bit data sets uses :meth:`Preprocess.apply` itself: the firmware and the measured accuracy see
the same bytes. Data stored as floats have no ``pixel_scale``: ``classify`` then takes the
int8 input as it is (the header gives the quantization formula).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_SHIFT = 32
#: Above this a single pixel already saturates (256 steps): the cap keeps S * M in 64 bits.
_MAX_MULT = 2**40


def windows(size: int, out: int) -> list[tuple[int, int]]:
    """[start, end) of each output index of an adaptive average pooling from ``size``."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


@dataclass(frozen=True)
class Preprocess:
    source_hwc: tuple[int, int, int]
    model_hwc: tuple[int, int, int]
    pixel_scale: float | None
    input_scale: float
    input_zero_point: int

    @property
    def raw_dtype(self) -> str:
        return "int8" if self.pixel_scale is None else "uint8"

    @property
    def raw_bytes(self) -> int:
        h, w, c = self.source_hwc if self.pixel_scale is not None else self.model_hwc
        return h * w * c

    def _rows_cols(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        (h, w, _), (mh, mw, _) = self.source_hwc, self.model_hwc
        return windows(h, mh), windows(w, mw)

    def multipliers(self) -> list[int]:
        """Q32 multiplier by window size n (index 0 unused)."""
        rows, cols = self._rows_cols()
        n_max = max(e - s for s, e in rows) * max(e - s for s, e in cols)
        assert self.pixel_scale is not None
        return [0] + [
            min(
                _MAX_MULT,
                int(math.floor(self.pixel_scale / (n * self.input_scale) * 2**_SHIFT + 0.5)),
            )
            for n in range(1, n_max + 1)
        ]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """(N, H, W, C) raw samples -> (N, h, w, C) int8 model inputs, as ``classify`` does."""
        if self.pixel_scale is None:
            return np.ascontiguousarray(raw, dtype=np.int8)
        raw = np.asarray(raw, dtype=np.int64)
        rows, cols = self._rows_cols()
        mult = np.asarray(self.multipliers(), dtype=np.int64)
        out = np.empty((raw.shape[0], len(rows), len(cols), raw.shape[3]), dtype=np.int64)
        for i, (r0, r1) in enumerate(rows):
            for j, (c0, c1) in enumerate(cols):
                s = raw[:, r0:r1, c0:c1, :].sum(axis=(1, 2))
                n = (r1 - r0) * (c1 - c0)
                out[:, i, j, :] = (s * mult[n] + (1 << (_SHIFT - 1))) >> _SHIFT
        q = np.clip(out, 0, 255) + self.input_zero_point
        return np.ascontiguousarray(np.clip(q, -128, 127).astype(np.int8))

    def c_source(self) -> str:
        """``static void preprocess(const uint8_t *raw, int8_t *dst)``."""
        if self.pixel_scale is None:
            return (
                "/* Data stored as floats: the caller passes the quantized input. */\n"
                "static NOINLINE void preprocess(const int8_t *raw, int8_t *dst)\n{\n"
                f"    for (int i = 0; i < {self.raw_bytes}; ++i) {{\n"
                "        dst[i] = raw[i];\n    }\n}\n"
            )
        (h, w, c), (mh, mw, _) = self.source_hwc, self.model_hwc
        rows, cols = self._rows_cols()
        ctype = "uint8_t" if max(h, w) <= 255 else "uint16_t"

        def table(name: str, vals: list[int], t: str) -> str:
            return f"static const {t} {name}[{len(vals)}] = {{{', '.join(map(str, vals))}}};\n"

        tables = "".join(
            table(name, vals, ctype)
            for name, vals in (
                ("pre_row0", [a for a, _ in rows]),
                ("pre_row1", [b for _, b in rows]),
                ("pre_col0", [a for a, _ in cols]),
                ("pre_col1", [b for _, b in cols]),
            )
        )
        return _AREA_C.format(
            h=h,
            w=w,
            c=c,
            mh=mh,
            mw=mw,
            shift=_SHIFT,
            half=1 << (_SHIFT - 1),
            zp=self.input_zero_point,
            tables=tables + table("pre_mult", self.multipliers(), "uint64_t"),
        )


_AREA_C = r"""/* {h}x{w}x{c} pixels -> {mh}x{mw}x{c} int8: the pixel sum of each area window times a
 * Q{shift} factor per window size (scale to [0, 1], average, divide by the input scale),
 * rounded half up, plus the zero point. */
{tables}
static NOINLINE void preprocess(const uint8_t *raw, int8_t *dst)
{{
    for (int i = 0; i < {mh}; ++i) {{
        for (int j = 0; j < {mw}; ++j) {{
            const int n = (pre_row1[i] - pre_row0[i]) * (pre_col1[j] - pre_col0[j]);
            for (int ch = 0; ch < {c}; ++ch) {{
                uint32_t sum = 0;
                for (int y = pre_row0[i]; y < pre_row1[i]; ++y) {{
                    for (int x = pre_col0[j]; x < pre_col1[j]; ++x) {{
                        sum += raw[(y * {w} + x) * {c} + ch];
                    }}
                }}
                const uint64_t q = ((uint64_t)sum * pre_mult[n] + {half}u) >> {shift};
                const int32_t v = (int32_t)(q > 255 ? 255 : q) + ({zp});
                *dst++ = (int8_t)(v > 127 ? 127 : v);
            }}
        }}
    }}
}}
"""
