"""Build the edge-case int8 models under ``data/edge/`` that ``test_bit_exact.py`` runs through
the C generator and TFLite Micro. Run by hand (not by pytest) after changing a model here:

    .venv/bin/python tests/codegen/make_models.py [NAME ...]

Each model is a small PyTorch module with seeded random weights (BatchNorm with non-trivial
running statistics where used), exported with ``worker.tflite.export_int8`` (per-tensor models
with this script's own copy of the export), calibrated on 32 seeded random images in [0, 1]
(half uniform, half around a random level with a random contrast), stripped, and written to
``data/edge/<name>.tflite``. The name says what it covers: the operators and shape variant
the converter emits for it (printed when the script runs, with the generator's layers). Every
file stays under 8 KB.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparsearch.codegen import generate
from sparsearch.worker import tflite
from sparsearch.worker.export import fds_to

EDGE = Path(__file__).parent / "data" / "edge"
MAX_BYTES = 8 * 1024
CALIBRATION_IMAGES = 32


@dataclass(frozen=True)
class Spec:
    build: Callable[[], nn.Module]
    chw: tuple[int, int, int]  # the float model's input (C, H, W)
    per_channel: bool = True


def _models() -> dict[str, Spec]:
    # Modules are built lazily (inside the seeded scope of each model): lambdas, not instances.
    def s(*f: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        return lambda: nn.Sequential(*(g() for g in f))

    def conv(i, o, k, **kw):  # type: ignore[no-untyped-def]
        return lambda: nn.Conv2d(i, o, k, **kw)

    def lin(i, o):  # type: ignore[no-untyped-def]
        return lambda: nn.Linear(i, o)

    def m(cls, *a, **kw):  # type: ignore[no-untyped-def]
        return lambda: cls(*a, **kw)

    relu, relu6, flat = m(nn.ReLU), m(nn.ReLU6), m(nn.Flatten)

    def b(c):  # type: ignore[no-untyped-def]  # random statistics: see build()
        return lambda: nn.BatchNorm2d(c)

    return {
        # Convolutions: padding, stride, kernel size and channel variants.
        "conv3x3_same_bn_relu_8x8x2": Spec(
            s(conv(2, 4, 3, padding=1), b(4), relu, flat, lin(256, 3)), (2, 8, 8)
        ),
        "pad_conv3x3_s2_valid_even_8x8x2": Spec(
            s(conv(2, 4, 3, stride=2, padding=1), b(4), relu, flat, lin(64, 3)), (2, 8, 8)
        ),
        "conv3x3_s2_same_odd_7x7x2": Spec(
            s(conv(2, 4, 3, stride=2, padding=1), relu, flat, lin(64, 3)), (2, 7, 7)
        ),
        "conv5x5_same_3ch_maxpool4_16x16x3": Spec(
            s(conv(3, 4, 5, padding=2), b(4), relu, m(nn.MaxPool2d, 4), flat, lin(64, 3)),
            (3, 16, 16),
        ),
        "conv1x1_noact_conv3x3_6x6x3": Spec(
            s(conv(3, 6, 3, padding=1), relu, conv(6, 5, 1), flat, lin(180, 3)), (3, 6, 6)
        ),
        "conv3x3_valid_dilation2_9x9x1": Spec(
            s(conv(1, 2, 1), relu, conv(2, 3, 3, dilation=2), relu, flat, lin(75, 3)), (1, 9, 9)
        ),
        "conv3x3_relu6_6x6x2": Spec(
            s(conv(2, 4, 3, padding=1), b(4), relu6, flat, lin(144, 3)), (2, 6, 6)
        ),
        "conv3x3_noact_maxpool2x2_8x8x2": Spec(
            s(conv(2, 4, 3, padding=1), b(4), m(nn.MaxPool2d, 2), flat, lin(64, 3)), (2, 8, 8)
        ),
        # Depthwise: multipliers 1, 2 and a 1-channel input (a conv from 1 channel).
        "dw3x3_mult1_6x6x3": Spec(
            s(
                conv(3, 4, 1),
                relu,
                conv(4, 4, 3, padding=1, groups=4),
                b(4),
                relu,
                flat,
                lin(144, 3),
            ),
            (3, 6, 6),
        ),
        "dw3x3_mult2_8x8x2": Spec(
            s(conv(2, 4, 3, padding=1, groups=2), b(4), relu, flat, lin(256, 3)), (2, 8, 8)
        ),
        "dw3x3_from_1ch_input_maxpool4_28x28x1": Spec(
            s(conv(1, 5, 3, padding=1), relu, m(nn.MaxPool2d, 4), flat, lin(245, 3)),
            (1, 28, 28),
        ),
        "width1_conv_dw_mult4_6x6x2": Spec(
            s(
                conv(2, 1, 3, padding=1),
                relu,
                conv(1, 4, 3, padding=1),
                b(4),
                relu,
                flat,
                lin(144, 3),
            ),
            (2, 6, 6),
        ),
        # Pooling.
        "maxpool2x2_odd_7x7_maxpool3x3_s2_pad": Spec(
            s(
                conv(2, 4, 3, padding=1),
                relu,
                m(nn.MaxPool2d, 2),
                m(nn.MaxPool2d, 3, 2, 1),
                flat,
                lin(16, 3),
            ),
            (2, 7, 7),
        ),
        "avgpool2x2_input_14x14x1": Spec(
            s(m(nn.AvgPool2d, 2), conv(1, 3, 3, padding=1), relu, flat, lin(147, 3)),
            (1, 14, 14),
        ),
        "avgpool3x3_s1_pad_input_6x6x2": Spec(
            s(m(nn.AvgPool2d, 3, 1, 1), conv(2, 3, 3, padding=1), relu, flat, lin(108, 3)),
            (2, 6, 6),
        ),
        "adaptive_avgpool_5x5_20x20x1": Spec(
            s(conv(1, 3, 3, padding=1), b(3), relu, m(nn.AdaptiveAvgPool2d, 4), flat, lin(48, 3)),
            (1, 20, 20),
        ),
        # nn.AvgPool2d after a conv: the quantizer gives the pool's output its own scale, so
        # the converter adds a QUANTIZE (int8 requantization) after it, or before it after PAD.
        "conv_avgpool2x2_quantize_8x8x2": Spec(
            s(conv(2, 3, 3, padding=1), relu, m(nn.AvgPool2d, 2), flat, lin(48, 3)), (2, 8, 8)
        ),
        "conv_pad_quantize_avgpool3x3_s1_6x6x2": Spec(
            s(conv(2, 3, 3, padding=1), relu, m(nn.AvgPool2d, 3, 1, 1), flat, lin(108, 3)),
            (2, 6, 6),
        ),
        # Global average pooling and flatten.
        "noact_gap_mean_keepdims_reshape_1ch_6x6x2": Spec(
            s(conv(2, 1, 3, padding=1), m(nn.AdaptiveAvgPool2d, 1), flat, lin(1, 3)),
            (2, 6, 6),
        ),
        "gap_mean_5ch_5x7x2": Spec(
            s(conv(2, 5, 3, padding=1), b(5), relu, m(nn.AdaptiveAvgPool2d, 1), flat, lin(5, 4)),
            (2, 5, 7),
        ),
        "gap_sum_1x1_3x3x2": Spec(
            s(
                conv(2, 3, 3, stride=2, padding=1),
                relu,
                conv(3, 4, 3, stride=2, padding=1),
                m(nn.AdaptiveAvgPool2d, 1),
                flat,
                lin(4, 3),
            ),
            (2, 3, 3),
        ),
        "flatten_1ch_reshape_fc_6x6x2": Spec(
            s(conv(2, 1, 3, padding=1), relu, flat, lin(36, 3)), (2, 6, 6)
        ),
        "flatten_transpose_fc_relu_fc_5x5x2": Spec(
            s(conv(2, 3, 3, padding=1), relu, flat, lin(75, 8), relu, lin(8, 4)), (2, 5, 5)
        ),
        # Shapes: 1-D (height 1) and rectangular inputs.
        "kws_1d_1x40": Spec(
            s(
                conv(1, 4, (1, 5), stride=(1, 2), padding=(0, 2)),
                relu,
                conv(4, 6, (1, 5), padding=(0, 2)),
                b(6),
                relu,
                m(nn.MaxPool2d, (1, 2)),
                flat,
                lin(60, 4),
            ),
            (1, 1, 40),
        ),
        "conv1x3_noact_mean_1d_1x20x1": Spec(
            s(
                conv(1, 3, (1, 3), padding=(0, 1)),
                relu,
                conv(3, 4, (1, 3)),
                b(4),
                m(nn.AdaptiveAvgPool2d, 1),
                flat,
                lin(4, 3),
            ),
            (1, 1, 20),
        ),
        "rect_12x20x1": Spec(
            s(
                conv(1, 3, 3, stride=2, padding=1),
                relu,
                conv(3, 4, 3, padding=1),
                relu,
                m(nn.MaxPool2d, 2),
                flat,
                lin(60, 3),
            ),
            (1, 12, 20),
        ),
        # Per-tensor weights (conv and dense).
        "per_tensor_conv_fc_relu_fc_6x6x2": Spec(
            s(conv(2, 3, 3, padding=1), b(3), relu, flat, lin(108, 6), relu, lin(6, 3)),
            (2, 6, 6),
            per_channel=False,
        ),
    }


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def build(name: str, spec: Spec) -> nn.Module:
    torch.manual_seed(_seed(name))
    model = spec.build()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(torch.rand(c) + 0.5)
                mod.bias.copy_(torch.randn(c) * 0.2)
                mod.running_mean.copy_(torch.randn(c) * 0.3)
                mod.running_var.copy_(torch.rand(c) * 1.5 + 0.25)
    return model.eval()


def calibration(name: str, chw: tuple[int, int, int]) -> np.ndarray:
    """Random images in [0, 1]: half uniform, half around a random level with a random
    contrast (so global averages, and the activation ranges calibrated on them, vary)."""
    rng = np.random.default_rng(_seed(name))
    n = CALIBRATION_IMAGES
    level, contrast = rng.random((2, n, 1, 1, 1))
    x = level + contrast * (rng.random((n, *chw)) - 0.5)
    x[: n // 2] = rng.random((n // 2, *chw))
    return tflite.calibration_sample(np.clip(x, 0.0, 1.0).astype(np.float32))


def export(model: nn.Module, images: np.ndarray, per_channel: bool = True) -> bytes:
    """``tflite.export_int8``, or (``per_channel=False``) a copy of its conversion with a
    per-tensor symmetric weight quantizer."""
    if per_channel:
        return tflite.export_int8(model, images)
    with tempfile.TemporaryFile() as said, fds_to(said.fileno()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _convert_per_tensor(model.eval(), images)


def _convert_per_tensor(model: nn.Module, calibration: np.ndarray) -> bytes:
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
        get_symmetric_quantization_config(is_per_channel=False, is_dynamic=False)
    )
    with torch.no_grad():
        graph = torch.export.export(nhwc_model, sample).module()
        graph = prepare_pt2e(graph, quantizer)
        for i in range(len(nhwc_images)):
            graph(nhwc_images[i : i + 1])
        graph = convert_pt2e(graph, fold_quantize=False)
        edge = litert_torch.convert(
            graph, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)
        )
    with tempfile.TemporaryDirectory(prefix="make-models-") as tmp:
        path = Path(tmp) / "model.tflite"
        edge.export(str(path))
        return path.read_bytes()


def main(names: list[str]) -> int:
    models = _models()
    unknown = sorted(set(names) - set(models))
    if unknown:
        print(f"unknown model(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    EDGE.mkdir(parents=True, exist_ok=True)
    status = 0
    for name, spec in models.items():
        if names and name not in names:
            continue
        data = tflite.strip(
            export(build(name, spec), calibration(name, spec.chw), spec.per_channel)
        )
        try:
            layers = "; ".join(generate(data).info["layers"])
        except Exception as e:  # noqa: BLE001 - reported, the file is still written
            layers = f"GENERATOR REFUSES: {e}"
        print(f"{name}: {len(data)} bytes, {', '.join(tflite.operators(data))}\n    {layers}")
        if len(data) >= MAX_BYTES:
            print(f"    too large ({len(data)} >= {MAX_BYTES} bytes): not written")
            status = 1
            continue
        (EDGE / f"{name}.tflite").write_bytes(data)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
