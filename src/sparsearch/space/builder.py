"""ArchSpec -> torch model.

Module names are a contract: a state_dict saved from a model whose channels were physically
pruned must load into ``build_model(effective_arch(arch, pruning))``, so the layout depends on
the spec's structure only, never on channel counts:

    features.<block>   Sequential: conv, bn, relu[, pool]  or  dw, bn, relu, pw, bn, relu[, pool]
    head               Sequential: AdaptiveAvgPool2d(1) + Flatten | Flatten,
                       [Linear(head_units), ReLU,] Linear(num_classes)

A model on a one-row input (sensor windows, audio features) is built from the same modules with
1 x k kernels, padding (0, k//2), stride (1, 2) and MaxPool2d((1, 2)) (see ``_shapes``).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from sparsearch.space._shapes import Layer, layer_shapes
from sparsearch.space.spec import ArchSpec


def _conv_bn_relu(layer: Layer) -> list[nn.Module]:
    ci, co = layer.in_shape[0], layer.out_shape[0]
    conv = nn.Conv2d(
        ci,
        co,
        layer.kernel_hw,
        stride=layer.stride_hw,
        padding=layer.padding_hw,
        groups=layer.groups,
        bias=False,
    )
    return [conv, nn.BatchNorm2d(co), nn.ReLU()]


def build_model(arch: ArchSpec) -> nn.Module:
    """The float model for ``arch`` on input (N, *arch.model_input_shape).

    Raises SpaceError (via the shared shape walk) for nonsense specs and for downsampling that
    would go below 1x1 (1-D: below length 1).
    """
    layers = layer_shapes(arch)  # validates; also the single source of every shape below
    blocks: list[list[nn.Module]] = [[] for _ in arch.blocks]
    head: list[nn.Module] = []
    for layer in layers:
        ci, co = layer.in_shape[0], layer.out_shape[0]
        if layer.kind in ("conv", "dwconv"):
            blocks[layer.block] += _conv_bn_relu(layer)
        elif layer.kind == "maxpool":
            blocks[layer.block].append(nn.MaxPool2d((1, 2)) if layer.one_d else nn.MaxPool2d(2))
        elif layer.kind == "gap":
            head += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif layer.kind == "flatten":
            head.append(nn.Flatten())
        else:  # dense
            head.append(nn.Linear(ci, co))
            if layer.relu:
                head.append(nn.ReLU())
    features = nn.Sequential(*(nn.Sequential(*b) for b in blocks))
    return nn.Sequential(OrderedDict(features=features, head=nn.Sequential(*head)))
