"""What the trial page shows: the architecture as a layer list (channels before and after
pruning) and the cost figures, estimated against measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparsearch.errors import SparsearchError
from sparsearch.jobconfig import JobConfig
from sparsearch.space._shapes import layer_shapes  # the package names torch (lazily)
from sparsearch.space.params import decode
from sparsearch.space.spec import ArchSpec
from sparsearch.vocabulary import target_of

_KIND_NAMES = {
    "conv": "Conv",
    "dwconv": "Depthwise conv",
    "maxpool": "Max pool",
    "gap": "Global average pool",
    "flatten": "Flatten",
    "dense": "Dense",
}


@dataclass(frozen=True)
class LayerRow:
    name: str
    block: str
    window: str
    in_shape: str
    out_shape: str
    channels_before: int
    channels_after: int
    weights: int
    macs: int


@dataclass(frozen=True)
class CostRow:
    name: str
    estimated: int | None
    measured: int | None
    unit: str = "bytes"


@dataclass(frozen=True)
class TrialView:
    layers: list[LayerRow] | None
    layers_note: str
    costs: list[CostRow]
    pruned: bool
    target: str = "tflm"


def _shape(s: tuple[int, int, int]) -> str:
    c, h, w = s
    return f"{c}" if h == w == 1 else f"{c}×{h}×{w}"


def _window(layer: Any) -> str:
    if layer.kind in ("conv", "dwconv", "maxpool"):
        kh, kw = layer.kernel_hw
        sh, sw = layer.stride_hw
        return f"{kh}×{kw}" + (f" /{sw}" if max(sh, sw) > 1 else "")
    return ""


def _layers(job: Any, trial: Any) -> tuple[list[LayerRow] | None, str]:
    effective = (trial.effective_spec or {}).get("arch")
    if not effective:
        return None, "The layer list appears once the trial is trained."
    try:
        after = ArchSpec.from_dict(effective)
        rows_after = layer_shapes(after)
    except (SparsearchError, KeyError, TypeError, ValueError) as e:
        return None, f"The layer list cannot be shown for this trial ({e})."
    try:  # the architecture as proposed, before pruning removed channels
        space = JobConfig.from_dict(job.config).space
        before, _, _ = decode(trial.params, space, after.input_shape, after.num_classes)
        rows_before = layer_shapes(before)
    except (SparsearchError, KeyError, TypeError, ValueError):
        rows_before = rows_after
    if len(rows_before) != len(rows_after):
        rows_before = rows_after
    return [
        LayerRow(
            name=_KIND_NAMES.get(a.kind, a.kind),
            block="head" if a.block < 0 else str(a.block),
            window=_window(a),
            in_shape=_shape(a.in_shape),
            out_shape=_shape(a.out_shape),
            channels_before=b.out_shape[0],
            channels_after=a.out_shape[0],
            weights=a.weights,
            macs=a.macs,
        )
        for b, a in zip(rows_before, rows_after, strict=True)
    ], ""


def _tail(total: int | None, head: int | None) -> int | None:
    return None if total is None or head is None else total - head


def trial_view(job: Any, trial: Any) -> TrialView:
    layers, note = _layers(job, trial)
    target = target_of(job.config or {})
    pruned = bool(layers) and any(r.channels_before != r.channels_after for r in layers or [])
    return TrialView(
        layers=layers, layers_note=note, costs=_costs(target, trial), pruned=pruned, target=target
    )


def _costs(target: str, trial: Any) -> list[CostRow]:
    """The cost table: the job's target's figures, estimated and measured, then the other
    target's measured beside them (every trained trial is measured on both)."""
    m = (lambda v: v) if trial.measured else (lambda v: None)
    if target == "c":
        own = [
            CostRow(
                "Flash (the whole model, Cortex-M4)", trial.est_flash_bytes, m(trial.flash_bytes)
            ),
            CostRow("RAM (static + peak stack)", trial.est_ram_bytes, m(trial.ram_bytes)),
            CostRow(
                "Activation buffer (static)", trial.est_activation_bytes, m(trial.activation_bytes)
            ),
            CostRow("Peak stack", None, trial.c_stack_bytes),
            CostRow("Instructions per inference", None, trial.instructions, unit="count"),
            CostRow("TFLM: int8 .tflite", None, trial.tflm_flash_bytes),
            CostRow("TFLM: arena", None, trial.tflm_ram_bytes),
        ]
    else:
        own = [
            CostRow("Flash (int8 .tflite)", trial.est_flash_bytes, m(trial.flash_bytes)),
            CostRow("RAM (TFLM arena)", trial.est_ram_bytes, m(trial.ram_bytes)),
            CostRow(
                "Arena head (activations)", trial.est_activation_bytes, m(trial.activation_bytes)
            ),
            CostRow(
                "Arena tail (runtime state)",
                _tail(trial.est_ram_bytes, trial.est_activation_bytes),
                m(_tail(trial.ram_bytes, trial.activation_bytes)),
            ),
            CostRow("C: flash (the whole model)", None, trial.c_flash_bytes),
            CostRow("C: RAM (static + peak stack)", None, trial.c_ram_bytes),
            CostRow("C: instructions per inference", None, trial.instructions, unit="count"),
            CostRow("Non-zero flash (sparse)", trial.nnz_flash_bytes, None),
        ]
    return [
        *own,
        CostRow("MACs per inference", trial.macs, None, unit="count"),
        CostRow("Parameters", trial.param_count, None, unit="count"),
    ]
