"""A resumed job's stored trials told to its strategy and counted in its progress
(``SearchDriver._start_strategy``): trained trials as results, stopped ones as failures whose
epochs count, infeasible ones as counts; trials a graceful stop cut short are returned to run
again first."""

from __future__ import annotations

from typing import Any

from sparsearch.search.screen import Screen
from sparsearch.search.strategies import Result
from sparsearch.vocabulary import accounted_flash


def stopped_epochs(trial: Any, epochs: float) -> float:
    """The epochs a stopped trial trained (its curve's last point), at most a full training."""
    last = trial.curve[-1]["epoch"] if trial.curve else epochs
    return min(float(last), float(epochs))


def replay(
    trials: list[Any], cfg: Any, screen: Screen, progress: Any, lookahead: Any
) -> tuple[set[str], dict[str, Any]]:
    """Tell ``lookahead`` every stored finished trial and count it in ``progress``. Returns
    the keys of the candidates tried and, by key, the uncharged trials to run again."""
    tried: set[str] = set()
    redo: dict[str, Any] = {}
    key = screen.codec.key
    for t in trials:
        if t.status == "infeasible":
            progress.infeasible += 1
            continue
        if t.status == "stopped":  # its epochs count; never proposed again
            progress.stopped += 1
            progress.stopped_epochs += stopped_epochs(t, cfg.budget.epochs)
            costs = screen.costs(t.params)
            if costs is not None:
                lookahead.tell(Result(t.params, None, costs.flash, costs.ram, costs.macs))
            tried.add(key(t.params))
            continue
        if t.status not in ("completed", "failed"):
            continue
        if not t.charged:  # cut short by a graceful stop: run it again
            redo.setdefault(key(t.params), t)
            continue
        costs = screen.costs(t.params)
        flash = (
            accounted_flash(cfg.flash_accounting, t.to_json()) if t.flash_bytes is not None else 0
        )
        ram = t.ram_bytes if t.ram_bytes is not None else 0
        macs = t.macs if t.macs is not None else (costs.macs if costs else 0)
        lookahead.tell(Result(t.params, t.objective_accuracy, flash, ram, macs))
        tried.add(key(t.params))
        progress.trained += 1
        if t.status == "completed":
            progress.completed += 1
            progress.over_limit += not t.feasible
        else:
            progress.failed += 1
    return tried, redo
