"""The training loop: deterministic mini-batch Adam on in-memory tensors."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn

from sparsearch.errors import TrialError


def set_determinism(seed: int, threads: int) -> None:
    """Seed torch and fix the thread count: float sums depend on how work is split."""
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))


def train_epochs(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    seed: int,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    after_step: Callable[[float], None] | None = None,
    after_epoch: Callable[[float], None] | None = None,
) -> float:
    """Train in place for ``epochs`` (a fraction trains that share of the last epoch's
    batches); returns the last epoch's mean loss. ``penalty(model)`` is added to every batch's
    loss; ``after_step(lr)`` runs after every optimizer step (pruning methods' hooks);
    ``after_epoch(epochs)`` after each epoch with the epochs it trained (less than 1 for a
    partial last one), the model back in training mode afterwards (a learning curve).

    Shuffling uses its own generator so the order depends only on ``seed``. A loss that turns
    NaN/inf raises TrialError (the search records the trial as failed and goes on)."""
    per_epoch = math.ceil(len(x) / batch_size)
    steps = math.ceil(epochs * per_epoch - 1e-9) if epochs > 0 else 0
    if steps <= 0:
        return float("nan")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    mean_loss = float("nan")
    done = 0
    for epoch in range(math.ceil(steps / per_epoch)):
        order = torch.randperm(len(xt), generator=gen)
        total, batches = 0.0, 0
        for start in range(0, len(xt), batch_size):
            if done == steps:
                break
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            if penalty is not None:
                loss = loss + penalty(model)
            if not torch.isfinite(loss):
                raise TrialError(
                    f"training diverged (loss {loss.item()}) in epoch {epoch + 1}",
                    "a lower learning rate usually helps",
                )
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(float(opt.param_groups[0]["lr"]))
            sched.step()
            total += loss.item()
            batches += 1
            done += 1
        mean_loss = total / max(1, batches)
        if after_epoch is not None and batches:
            after_epoch(batches / per_epoch)
            model.train()
    return mean_loss


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on (x, y)."""
    model.eval()
    correct = 0
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for start in range(0, len(xt), batch_size):
        pred = model(xt[start : start + batch_size]).argmax(dim=1)
        correct += int((pred == yt[start : start + batch_size]).sum())
    return correct / max(1, len(xt))


def trainer(
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[nn.Module, float], None] | None = None,
) -> Callable[..., float]:
    """A :class:`sparsearch.pruning.context.Trainer` on (x, y): each call trains for ``epochs``
    (the fine-tuning budget) unless told otherwise, with its own shuffling seed (seed, seed + 1,
    ...) so repeated fine-tunings see different orders but the whole run stays deterministic.
    ``on_epoch(model, epochs)``: after every epoch of every call (the trial's learning curve)."""
    calls = 0

    def train(
        model: nn.Module,
        *,
        epochs: float | None = None,
        penalty: Callable[[nn.Module], torch.Tensor] | None = None,
        after_step: Callable[[float], None] | None = None,
        lr: float | None = None,
    ) -> float:
        nonlocal calls
        calls += 1
        return train_epochs(
            model,
            x,
            y,
            epochs=default_epochs if epochs is None else epochs,
            lr=default_lr if lr is None else lr,
            batch_size=batch_size,
            seed=seed + calls,
            penalty=penalty,
            after_step=after_step,
            after_epoch=None if on_epoch is None else partial(on_epoch, model),
        )

    default_epochs, default_lr = epochs, lr
    return train
