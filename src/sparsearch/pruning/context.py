"""What a pruning method may use besides the model: an input batch, a data sample, a trainer.

The worker (``run_trial``) and ``sparsearch prune`` build one :class:`PruneContext` per model;
methods take what their ``needs`` (``vocabulary.PRUNING_METHODS``) say and raise a clear
PruningError when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sparsearch.errors import PruningError

if TYPE_CHECKING:
    import torch
    from torch import nn


class Trainer(Protocol):
    """Trains ``model`` in place on the training data; returns the last mean loss.

    ``epochs`` None means the schedule's fine-tuning budget (may be fractional: the trainer
    stops after that share of an epoch's batches); ``lr`` None the fine-tuning learning rate.
    ``penalty(model)`` is added to the loss (a regularizer); ``after_step(lr)`` runs after
    every optimizer step (a proximal step)."""

    def __call__(
        self,
        model: nn.Module,
        *,
        epochs: float | None = None,
        penalty: Callable[[nn.Module], torch.Tensor] | None = None,
        after_step: Callable[[float], None] | None = None,
        lr: float | None = None,
    ) -> float: ...


@dataclass
class PruneContext:
    """``example_inputs``: one batch (N, C, H, W) the model accepts (to trace its dependency
    graph); ``sample``: representative training images (methods that need ``sample``);
    ``train``: the trainer (fine-tuning, and methods that need ``training``); ``seed``: for
    every random choice a method makes; ``train_size``: training images (a KL term's scale);
    ``scratch_epochs`` / ``scratch_lr``: epochs and learning rate of a training from scratch
    (``train_once`` on a torch model);
    ``finetune_epochs``: the trainer's default budget (a method that splits it, e.g. over
    layers, passes ``epochs=finetune_epochs / n``)."""

    example_inputs: torch.Tensor
    sample: torch.Tensor | None = None
    train: Trainer | None = None
    seed: int = 0
    train_size: int = 0
    scratch_epochs: float = 0.0
    scratch_lr: float | None = None
    finetune_epochs: float = 0.0

    def need_sample(self, method: str) -> torch.Tensor:
        if self.sample is None or len(self.sample) == 0:
            raise PruningError(
                f"{method} needs a sample of training images",
                "pass --dataset (sparsearch prune) or a PruneContext with sample=",
            )
        return self.sample

    def need_train(self, method: str) -> Trainer:
        if self.train is None:
            raise PruningError(
                f"{method} trains the model and needs the training data",
                "pass --dataset (sparsearch prune) or a PruneContext with train=",
            )
        return self.train


def as_context(
    example_inputs: torch.Tensor | None, context: PruneContext | None, method: str
) -> PruneContext:
    """The context of a ``prune`` call given either an input batch or a full context."""
    if context is not None:
        return context
    if example_inputs is None:
        raise PruningError(
            f"{method} needs example_inputs to trace the model",
            "pass one input batch of shape (N, C, H, W)",
        )
    return PruneContext(example_inputs=example_inputs)
