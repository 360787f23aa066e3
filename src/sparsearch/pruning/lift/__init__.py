"""Load a user's TorchScript or ``torch.export`` CNN as an ordinary ``nn.Module`` that
Torch-Pruning can prune.

Torch-Pruning's dependency graph works on real ``nn.Conv2d`` / ``nn.BatchNorm2d`` /
``nn.Linear`` modules: it hooks them, follows the autograd graph between them and edits their
weights in place. Neither a ``ScriptModule`` nor an ``ExportedProgram`` (whose graph calls
``aten.conv2d`` on lifted parameters) offers that, so this module rebuilds the network:

- :func:`load_model_file` tells the two formats apart by their zip members (a ``torch.export``
  archive has ``archive_format``, a TorchScript archive ``constants.pkl`` and ``code/``), not by
  the suffix, loads on the CPU, checks that the model runs on the example inputs, lifts it and
  insists that the rebuilt model's outputs equal the file's (``atol=1e-5``).
- TorchScript goes through ``torch._export.converter.TS2EPConverter`` (torch 2.13, the version
  sparsearch pins) into an ``ExportedProgram`` first. It converts scripted *and* traced models,
  custom ``forward``s with residual adds included, and yields the same ATen graph as
  ``torch.export``, so one lifting path serves both formats. Rebuilding from a ScriptModule's
  submodules was the alternative; it only covers ``nn.Sequential`` chains and a traced
  module keeps no strides or paddings, so it was not kept.
- :func:`lift_exported` walks the program's graph and emits a ``torch.fx.GraphModule``: Conv2d,
  BatchNorm (every eval- and training-mode variant export and its decompositions produce),
  Linear (``aten.linear``, or ``addmm`` / ``mm`` of a transposed weight), ReLU / ReLU6 /
  Hardtanh and pooling nodes become ``call_module`` nodes on fresh modules with the weights
  copied; flatten, batch-preserving reshapes, adds and channel concatenations stay
  ``call_function`` nodes, so Torch-Pruning sees a residual add and couples the channels it
  joins. Any other operation is a :class:`PruningError` naming it. Only what the user's outputs
  depend on is lifted (a training-mode program's buffer updates are dropped).

Modules are named after the original module paths (the weight's name minus ``.weight``, else
the node's ``nn_module_stack``, else the node's name), so ``features.0`` stays ``features.0``
and the state-dict keys match the original model's. A batch size baked into a static export
does not carry over: reshapes that keep the batch become ``flatten(x, 1)``.
"""

from __future__ import annotations

from sparsearch.pruning.lift.common import SAVE_HINT, SUPPORTED_HINT
from sparsearch.pruning.lift.graph import lift_exported
from sparsearch.pruning.lift.load import ATOL, detect_format, load_model_file
from sparsearch.pruning.lift.ops import _HANDLERS as _HANDLERS  # the op table, for tests

__all__ = [
    "ATOL",
    "SAVE_HINT",
    "SUPPORTED_HINT",
    "detect_format",
    "lift_exported",
    "load_model_file",
]
