"""``variational_dropout``: sparse variational dropout (Molchanov, Ashukha & Vetrov 2017,
"Variational Dropout Sparsifies Deep Neural Networks"; SpArSe's own pruning, seed 004).

``induce`` swaps every Conv2d and Linear for a sparse-VD layer: the weight ``θ`` (the trained
weight, still the ``weight`` parameter) gets a learned per-weight noise variance ``σ²``
(``log_sigma2``, initialised at -10, the additive reparameterisation), so that
``log α = log σ² - log(θ² + 1e-8)``, clipped to [-10, 10], is each weight's dropout rate.
Training uses the local reparameterisation trick (``mean = op(x, θ)``,
``var = op(x², σ²)``, ``out = mean + sqrt(var + 1e-8) · ε``) and adds
``kl_weight · KL / train_size`` to the loss, with Molchanov's approximation of the KL to the
log-uniform prior. The layers are then swapped back to the very Conv2d / Linear modules they
replaced (same positions, same parameters, now trained), so the state_dict keys never change;
the learned ``log α`` of each layer stays on the method (``log_alpha``, keyed by module name).

``prune`` masks (``torch.nn.utils.prune``) every weight with ``log α > threshold``: at level 0
that is the method's whole pruning. ``level`` is a floor: where the threshold leaves fewer
than ``round(level · total)`` zeros, the weights with the highest ``log α`` go next, over the
whole model, until exactly that many are zero (so the search's estimate at ``level`` is an
upper bound of the cost, ``exact_cost=False``). ``finalize`` folds the masks in. Where the
threshold alone decided, the method ends training (the eval forward of a VD layer,
``θ · (log α < threshold)``, is what the pruned model computes); where the level forced
weights VD kept, the schedule fine-tunes with the masks in place (``fine_tune_after``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from sparsearch.errors import PruningError
from sparsearch.pruning.base import PruneReport, PruningMethod, check_level
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.magnitude import fold_masks, is_masked
from sparsearch.pruning.stats import count_params, out_channels, weight_layers
from sparsearch.vocabulary import PRUNING_METHODS

#: log σ² of every weight when a VD layer is made (σ ≈ 0.0067: the trained model's output).
LOG_SIGMA2_INIT = -10.0
#: log α is clipped to this range (Molchanov et al.).
LOG_ALPHA_CLIP = 10.0
EPS = 1e-8
#: Molchanov et al.'s fit of -KL(q || log-uniform prior) as a function of log α.
K1, K2, K3 = 0.63576, 1.87320, 1.48695


def log_alpha_of(weight: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
    """``log σ² - log(θ² + 1e-8)`` clipped to [-10, 10]."""
    log_alpha = log_sigma2 - torch.log(weight * weight + EPS)
    return torch.clamp(log_alpha, -LOG_ALPHA_CLIP, LOG_ALPHA_CLIP)


def kl_approx(log_alpha: torch.Tensor) -> torch.Tensor:
    """Molchanov's approximation of the KL divergence, summed over the weights:
    ``-Σ(k1·σ(k2 + k3·log α) - 0.5·log1p(exp(-log α)) - k1)``."""
    neg_kl = K1 * torch.sigmoid(K2 + K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - K1
    return -neg_kl.sum()


class VDLayer(nn.Module):
    """A Conv2d or Linear under sparse variational dropout. It shares ``weight`` and ``bias``
    (the very Parameter objects) with the layer it stands in for, and adds ``log_sigma2``."""

    def __init__(
        self, layer: nn.Conv2d | nn.Linear, threshold: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.is_conv = isinstance(layer, nn.Conv2d)
        self.weight = layer.weight
        self.bias = layer.bias
        self.log_sigma2 = nn.Parameter(torch.full_like(layer.weight.detach(), LOG_SIGMA2_INIT))
        self.threshold = float(threshold)
        self.generator = generator
        if self.is_conv:
            assert isinstance(layer, nn.Conv2d)
            self.stride, self.dilation, self.groups = layer.stride, layer.dilation, layer.groups
            self.padding, self.padding_mode = layer.padding, layer.padding_mode
            self.pad = layer._reversed_padding_repeated_twice
        self.train(layer.training)

    def op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The wrapped layer's operation with ``weight`` and ``bias`` (stride, padding,
        padding mode, dilation and groups as the layer had them)."""
        if not self.is_conv:
            return F.linear(x, weight, bias)
        padding = self.padding
        if self.padding_mode != "zeros":
            x, padding = F.pad(x, self.pad, mode=self.padding_mode), 0
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, self.groups)

    def log_alpha(self) -> torch.Tensor:
        return log_alpha_of(self.weight, self.log_sigma2)

    def kl(self) -> torch.Tensor:
        return kl_approx(self.log_alpha())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            keep = (self.log_alpha() < self.threshold).to(self.weight.dtype).detach()
            return self.op(x, self.weight * keep, self.bias)
        mean = self.op(x, self.weight, self.bias)
        var = self.op(x * x, torch.exp(self.log_sigma2), None)
        noise = torch.randn(
            mean.shape, generator=self.generator, dtype=mean.dtype, device=mean.device
        )
        return mean + torch.sqrt(var + EPS) * noise


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def swap_in(
    model: nn.Module,
    names: list[str] | None,
    threshold: float,
    generator: torch.Generator,
) -> dict[str, tuple[nn.Module, VDLayer]]:
    """Replace the Conv2d/Linear layers named ``names`` (all when None) by VD layers, through
    their parent's attribute; returns name -> (original layer, VD layer) for :func:`swap_out`."""
    layers = dict(weight_layers(model))
    if names is not None:
        unknown = [n for n in names if n not in layers]
        if unknown:
            raise PruningError(
                f"variational_dropout: no Conv2d or Linear layer named {', '.join(unknown)}",
                hint=f"layers are {', '.join(layers) or 'none'}",
            )
        layers = {n: m for n, m in layers.items() if n in names}
    if not layers:
        raise PruningError(
            "variational_dropout: the model has no Conv2d or Linear layer to train",
            hint="pass the trained CNN itself",
        )
    for name, layer in layers.items():
        if name == "":
            raise PruningError(
                "variational_dropout: the model is a single layer, there is no parent to swap in",
                hint="wrap it in an nn.Sequential",
            )
        if is_masked(layer):
            raise PruningError(
                f"variational_dropout: layer {name} is already pruned",
                hint="induce before prune (the one_shot schedule does)",
            )
    swapped: dict[str, tuple[nn.Module, VDLayer]] = {}
    try:
        for name, layer in layers.items():
            vd = VDLayer(layer, threshold, generator)
            parent, attr = _parent(model, name)
            setattr(parent, attr, vd)
            swapped[name] = (layer, vd)
    except BaseException:
        swap_out(model, swapped)
        raise
    return swapped


def swap_out(model: nn.Module, swapped: dict[str, tuple[nn.Module, VDLayer]]) -> None:
    """Put the original layers back where :func:`swap_in` took them from."""
    for name, (layer, _) in swapped.items():
        parent, attr = _parent(model, name)
        setattr(parent, attr, layer)


class VariationalDropout(PruningMethod):
    """Learn a dropout rate per weight (sparse VD), zero those with log α above ``threshold``,
    and at least the ``level`` fraction (highest log α first)."""

    name = "variational_dropout"

    @property  # type: ignore[override]
    def fine_tune_after(self) -> bool:
        """Sparse VD ends training where log α alone decided; where the level forced weights
        VD had kept, the schedule fine-tunes (with those masks) to recover."""
        return self._forced

    def __init__(self, threshold: float = 3.0, kl_weight: float = 1.0) -> None:
        knobs = {k.name: k for k in PRUNING_METHODS[self.name].knobs}
        try:
            self.threshold = float(knobs["threshold"].check(self.name, threshold))
            self.kl_weight = float(knobs["kl_weight"].check(self.name, kl_weight))
        except ValueError as e:
            allowed = " and ".join(f"{k.name} in {list(k.bounds or ())}" for k in knobs.values())
            raise PruningError(str(e), hint=f"use {allowed}") from None
        #: The learned log α of every layer ``induce`` trained, keyed by module name.
        self.log_alpha: dict[str, torch.Tensor] = {}
        self._forced = False

    def induce(
        self, model: nn.Module, context: PruneContext, layers: list[str] | None = None
    ) -> None:
        """Train ``model`` (``context.train``, its default budget) with its Conv2d/Linear
        layers (or ``layers``) under sparse VD and the KL term; keep each layer's log α."""
        train = context.need_train(self.name)
        if self.kl_weight > 0 and context.train_size < 1:
            raise PruningError(
                "variational_dropout needs the number of training images to scale its KL term",
                hint="pass a PruneContext with train_size=",
            )
        scale = self.kl_weight / max(1, context.train_size)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        generator = torch.Generator(device=device).manual_seed(int(context.seed))
        was_training = model.training
        swapped = swap_in(model, layers, self.threshold, generator)
        vd_layers = [vd for _, vd in swapped.values()]

        def penalty(_model: nn.Module) -> torch.Tensor:
            return scale * sum((vd.kl() for vd in vd_layers), torch.zeros((), device=device))

        try:
            train(model, penalty=penalty)
        finally:
            swap_out(model, swapped)
            model.train(was_training)
        with torch.no_grad():
            for name, (_, vd) in swapped.items():
                self.log_alpha[name] = vd.log_alpha().detach().clone()

    def prune(
        self,
        model: nn.Module,
        level: float,
        example_inputs: torch.Tensor | None = None,
        *,
        context: PruneContext | None = None,
        base: dict[str, int] | None = None,
        layers: list[str] | None = None,
    ) -> PruneReport:
        """Mask every weight with learned ``log α > threshold``, then, while fewer than
        ``round(level · total)`` of the chosen layers' weights are masked, those with the
        highest ``log α`` (masks accumulate; ``level`` is a floor).

        Unlike the other methods, level 0 is not a no-op after ``induce``: the threshold is the
        method's criterion. Layers without a learned log α (no ``induce`` before, or another
        layer set) are ranked by |θ| instead, i.e. magnitude pruning: their score is the log α
        their weights would have at the initial σ² (``-10 - log(θ² + 1e-8)``, decreasing in
        |θ|), and the threshold does not apply to them."""
        level = check_level(level)
        chosen = [(n, m) for n, m in weight_layers(model) if layers is None or n in layers]
        if not chosen:
            raise PruningError(
                "variational_dropout: the model has no Conv2d or Linear layer to prune",
                hint="pass the trained CNN itself",
            )
        channels = out_channels(model)
        params_before = count_params(model)
        with torch.no_grad():
            scores, masks, learned = [], [], []
            for name, module in chosen:
                score, is_learned = self._scores(name, module)
                old = module.weight_mask if is_masked(module) else torch.ones_like(score)
                scores.append(score.flatten())
                masks.append(old.flatten().clone())
                learned.append(is_learned)
            new = torch.cat(
                [
                    torch.where(s > self.threshold, torch.zeros_like(m), m) if is_learned else m
                    for s, m, is_learned in zip(scores, masks, learned, strict=True)
                ]
            )
            score = torch.cat(scores)
            extra = round(level * new.numel()) - int((new == 0).sum())
            self._forced = extra > 0
            if extra > 0:
                score[new == 0] = -math.inf
                order = torch.argsort(score, descending=True, stable=True)[:extra]
                new[order] = 0
        start = 0
        for (_, module), old in zip(chosen, masks, strict=True):
            n = module.weight.numel()
            mask = new[start : start + n]
            start += n
            if not torch.equal(mask, old):
                torch_prune.custom_from_mask(module, "weight", mask.view_as(module.weight))
        return self._report(model, level, params_before, channels)

    def _scores(self, name: str, module: nn.Module) -> tuple[torch.Tensor, bool]:
        """The layer's learned log α (True), or its |θ| ranking as a log α at the initial σ²."""
        weight = module.weight.detach()
        learned = self.log_alpha.get(name)
        if learned is None:
            return LOG_SIGMA2_INIT - torch.log(weight * weight + EPS), False
        if learned.shape != weight.shape:
            raise PruningError(
                f"variational_dropout: layer {name} has shape {tuple(weight.shape)}, but its "
                f"log alpha was learned for {tuple(learned.shape)}",
                hint="prune the model induce trained",
            )
        return learned.to(weight.device), True

    def finalize(self, model: nn.Module) -> nn.Module:
        """Fold masks into plain ``weight`` parameters (idempotent)."""
        return fold_masks(model)
