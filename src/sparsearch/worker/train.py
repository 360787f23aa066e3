"""The training loop: deterministic mini-batch Adam on in-memory tensors."""

from __future__ import annotations

import math

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
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> float:
    """Train in place for ``epochs``; returns the last epoch's mean loss.

    Shuffling uses its own generator so the order depends only on ``seed``. A loss that turns
    NaN/inf raises TrialError (the search records the trial as failed and goes on)."""
    if epochs <= 0:
        return float("nan")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=epochs * math.ceil(len(xt) / batch_size)
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    mean_loss = float("nan")
    for epoch in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        total, batches = 0.0, 0
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            if not torch.isfinite(loss):
                raise TrialError(
                    f"training diverged (loss {loss.item()}) in epoch {epoch + 1}",
                    "a lower learning rate usually helps",
                )
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            batches += 1
        mean_loss = total / max(1, batches)
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
