"""What the generator hands over: the C sources of one model and the facts about its API.

The API every generated model has (``P`` is the prefix, ``model`` unless chosen, upper-cased
for macros), declared in ``P.h`` and defined in ``P.c`` (one translation unit, everything but
the API ``static``)::

    #define P_INPUT_BYTES   ...   /* int8 NHWC input, H * W * C bytes            */
    #define P_OUTPUT_BYTES  ...   /* int8 output (logits), one byte per class     */
    int8_t *P_input(void);        /* where the caller writes the int8 input        */
    void P_invoke(void);          /* run the network                               */
    const int8_t *P_output(void); /* the int8 outputs of the last invoke           */
    int P_classify(const uint8_t *raw);  /* raw source sample -> class index        */

``P_classify``'s argument is ``classify_dtype`` (``uint8`` pixels of the source image for
8-bit image data sets, preprocessed inside; ``int8`` for data stored as floats: the quantized
input itself), ``classify_bytes`` long. Input and output live in one static activation buffer
(``P_ARENA_BYTES``); no heap, no floating point at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CProgram:
    #: file name -> text (``P.h``, ``P.c``)
    files: dict[str, str]
    prefix: str
    input_bytes: int
    output_bytes: int
    classify_bytes: int
    classify_dtype: str  # "uint8" | "int8"
    #: Bytes of the static activation buffer (the plan's peak).
    arena_bytes: int
    #: Input / output details: shape (NHWC), scale, zero point; the plan; per-layer notes.
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def header(self) -> str:
        return f"{self.prefix}.h"

    @property
    def source(self) -> str:
        return f"{self.prefix}.c"
