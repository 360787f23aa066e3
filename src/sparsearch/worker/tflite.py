"""A trained float model -> the int8 ``.tflite`` an MCU runs (litert-torch PT2E, no TensorFlow).

Post-training quantization: per-channel symmetric int8 weights, int8 activations calibrated on
a fixed sample of the training split, BatchNorm folded into the conv biases by the converter,
ReLU fused. The model takes an NHWC int8 input (``to_channel_last_io``: what a camera or sensor
buffer holds) and gives int8 logits. ``strip`` removes what the runtime never reads (tensor
names ~220 characters each, subgraph name, description, signature defs): often a third of a
tiny model's file. The shipped file is always the stripped one.

Conversion prints from Python and from C++ (absl logging on fd 2); everything it writes is
kept off stdout and stderr and, when it fails, its last lines become the trial's reason.
"""

from __future__ import annotations

import importlib.metadata
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparsearch.errors import TrialError
from sparsearch.worker.export import fds_to

log = logging.getLogger(__name__)

#: Images of the training split that calibrate the activation ranges (a fixed, seeded sample).
CALIBRATION_SAMPLES = 256
_CALIBRATION_SEED = 0


def converter_version() -> str:
    """The converter that produces the shipped models, as ``litert-torch X (ai-edge-litert Y)``."""
    return (
        f"litert-torch {importlib.metadata.version('litert-torch')} "
        f"(ai-edge-litert {importlib.metadata.version('ai-edge-litert')})"
    )


def calibration_sample(x_train: np.ndarray, n: int = CALIBRATION_SAMPLES) -> np.ndarray:
    """The fixed calibration images: ``n`` training images drawn with a fixed seed, so a trial's
    export depends only on its data and weights."""
    if len(x_train) <= n:
        return np.ascontiguousarray(x_train, dtype=np.float32)
    idx = np.sort(np.random.default_rng(_CALIBRATION_SEED).choice(len(x_train), n, replace=False))
    return np.ascontiguousarray(x_train[idx], dtype=np.float32)


def _last_lines(path: Path, n: int = 3) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[:500]


def export_int8(model: nn.Module, calibration: np.ndarray) -> bytes:
    """The int8 ``.tflite`` (not stripped) of ``model``, calibrated on ``calibration`` (N, C, H,
    W float images at the model's input resolution). Raises TrialError with the converter's
    reason when the model cannot be converted."""
    if calibration.ndim != 4 or len(calibration) == 0:
        raise TrialError(
            f"calibration images must be a non-empty (N, C, H, W) array, got {calibration.shape}"
        )
    with tempfile.NamedTemporaryFile(prefix="sparsearch-convert-", suffix=".log") as said:
        try:
            with fds_to(said.fileno()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return _convert(model.eval(), calibration)
        except Exception as e:  # the converter's own errors are many and undocumented
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            lines = _last_lines(Path(said.name))
            raise TrialError(
                f"int8 export failed: {type(e).__name__}: {first}"
                + (f" (converter said: {lines})" if lines else ""),
                "the model could not be converted to TFLite; the search goes on without it",
            ) from e


def _convert(model: nn.Module, calibration: np.ndarray) -> bytes:
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    nhwc_images = torch.from_numpy(np.ascontiguousarray(calibration.transpose(0, 2, 3, 1)))
    sample = (nhwc_images[:1],)
    nhwc_model = litert_torch.to_channel_last_io(model, args=[0]).eval()
    quantizer = PT2EQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    with torch.no_grad():
        graph = torch.export.export(nhwc_model, sample).module()
        graph = prepare_pt2e(graph, quantizer)
        for i in range(len(nhwc_images)):  # the exported graph has a fixed batch of one
            graph(nhwc_images[i : i + 1])
        graph = convert_pt2e(graph, fold_quantize=False)
        edge = litert_torch.convert(
            graph, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)
        )
    with tempfile.TemporaryDirectory(prefix="sparsearch-tflite-") as tmp:
        path = Path(tmp) / "model.tflite"
        edge.export(str(path))
        return path.read_bytes()


def strip(tflite: bytes) -> bytes:
    """``tflite`` without the strings the runtime never reads (tensor and subgraph names, the
    description, signature defs); the graph, weights and quantization are untouched."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def operators(tflite: bytes) -> list[str]:
    """The builtin operators the model uses (``CONV_2D``, ...), in the flatbuffer's order."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    return [flatbuffer_utils.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]


def input_quantization(tflite: bytes) -> tuple[float, int]:
    """(scale, zero point) of the model's int8 input, read from the flatbuffer."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    q = graph.tensors[graph.inputs[0]].quantization
    return float(q.scale[0]), int(q.zeroPoint[0])


def quantize_nhwc(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float (N, C, H, W) images -> the model's int8 NHWC input: ``round(x / scale) + zp``,
    clipped to int8 (what firmware does to a preprocessed image)."""
    q = np.round(np.asarray(x, dtype=np.float32).transpose(0, 2, 3, 1) / scale) + zero_point
    return np.ascontiguousarray(np.clip(q, -128, 127).astype(np.int8))
