"""The interpreter-free C target: an int8 ``.tflite`` -> plain C99 whose outputs equal TFLite
Micro's reference kernels bit for bit.

Torch-free and pure (bytes in, sources out): ``reader`` reads the flatbuffer into a small typed
graph (``graph``), ``passes`` lowers it to layers (one module per operator in ``ops/``),
``planner`` places every activation in one static buffer, ``preprocess`` turns a raw image into
the input in integer arithmetic, ``emit`` writes the sources. Building and measuring them as
Cortex-M firmware is ``worker.firmware``'s job.
"""

from __future__ import annotations

from sparsearch.codegen.emit import generate
from sparsearch.codegen.graph import Model, ModelError
from sparsearch.codegen.ops import SUPPORTED
from sparsearch.codegen.program import CProgram

__all__ = ["SUPPORTED", "CProgram", "Model", "ModelError", "generate"]
