"""``bo``: multi-objective Bayesian optimization with the limits as known constraints (BoTorch).

Only accuracy is unknown. Flash and RAM are exact functions of a candidate (the estimate), so
they are not modelled: each candidate's normalized flash and RAM are columns of its feature
vector, read by deterministic models. Accuracy is a BoTorch Gaussian process, and the
acquisition is the exact expected hypervolume improvement (:func:`expected_hvi`, closed form: only
one objective is uncertain) over a pool of candidates that all fit the limits by estimate: a
feasible scrambled-Sobol pool plus mutations of the best trials so far. Nothing over a limit is
ever fitted, scored or proposed.

Stages (the trial's ``generator``): ``bo:sobol`` (the initial design: feasible Sobol points),
``bo:ehvi`` (model-based).

Why not Ax's ``Client``: its generation strategy cannot restrict candidates to a set defined by
a black-box function of the parameters (only linear parameter constraints), so under tight
limits its initial design is mostly over a limit and it stalls (``DataRequiredError``), and it
models flash and RAM although they are known. BoTorch is the library Ax runs on.
"""

from __future__ import annotations

import logging
import math
import random
import time
import warnings
from collections.abc import Sequence
from typing import Any

from sparsearch.search.screen import Screen, sobol_draw
from sparsearch.search.strategies.base import Proposal, Result

log = logging.getLogger(__name__)

#: Feasible Sobol points drawn once per job for the acquisition pool.
POOL_SIZE = 1500
#: Mutations of the current best points added to the pool at every ask.
LOCAL_SIZE = 200
#: L-BFGS iterations of a cold GP fit, and of a fit warm-started from the last hyperparameters.
FIT_MAX_ITER, WARM_FIT_MAX_ITER = 75, 30


def initial_design_size(budget: int) -> int:
    """Trials of the space-filling design before the model is used: a fifth of the budget,
    4 to 8 (a GP over ~40 features needs a few points; more would waste a small budget)."""
    return min(8, max(4, budget // 5))


class BoStrategy:
    name = "bo"

    def __init__(self, screen: Screen, *, seed: int, budget: int, parallel: int = 1) -> None:
        self._screen = screen
        self._codec = screen.codec
        self._seed = seed
        self._n_init = initial_design_size(budget)
        self._draw = sobol_draw(self._codec, seed)
        self._rng = random.Random(seed)
        self._told: dict[str, Result] = {}  # key -> result, in told order
        self._pool: dict[str, dict[str, Any]] | None = None  # key -> point
        lim = screen.cfg.limits
        self._limits = (lim.flash_bytes, lim.model_ram_bytes)
        self._chance = 1.0 / max(2, screen.num_classes)
        self._hyper: dict[str, Any] | None = None  # the last fit's GP hyperparameters
        self._fitted_at = 0  # completed results when the hyperparameters were last optimized
        # Hyperparameters are optimized again after this many new results; in between, the GP
        # is conditioned on the new data with the last ones (one fit per `parallel` asks).
        self._refit_every = max(1, parallel)
        self._rows: dict[str, list[float]] = {}  # feature rows by candidate key
        self.last_fit_seconds: float | None = None  # for benchmarks/generation_cost.py

    # -- the protocol --------------------------------------------------------------------------

    def tell(self, result: Result) -> None:
        self._told[self._codec.key(result.params)] = result

    def ask(self, k: int, pending: Sequence[dict[str, Any]]) -> list[Proposal]:
        start = time.perf_counter()
        key = self._codec.key
        exclude = set(self._told) | {key(p) for p in pending}
        completed = [r for r in self._told.values() if not r.failed]
        if len(completed) + len(pending) < self._n_init or len(completed) < 2:
            points = self._screen.feasible(self._draw, k, exclude=exclude, what="the design")
            stage = "bo:sobol"
        else:
            points = self._model_based(k, completed, pending, exclude)
            stage = "bo:ehvi"
        share = (time.perf_counter() - start) / max(1, len(points))
        return [Proposal(p, stage, share) for p in points]

    # -- model-based candidates ----------------------------------------------------------------

    def _model_based(
        self,
        k: int,
        completed: list[Result],
        pending: Sequence[dict[str, Any]],
        exclude: set[str],
    ) -> list[dict[str, Any]]:
        import numpy as np
        import torch

        pool = self._candidates(completed, exclude)
        if not pool:
            return self._screen.feasible(self._draw, k, exclude=exclude, what="the pool")
        x = torch.tensor([self._row(r.params) for r in completed], dtype=torch.double)
        y = torch.tensor([[self._norm_acc(r.accuracy)] for r in completed], dtype=torch.double)  # type: ignore[arg-type]
        gp = self._fit(x, y)
        rows = [self._row(p) for p in pool] + [self._row(p) for p in pending]
        with torch.no_grad():
            post = gp.posterior(torch.tensor(rows, dtype=torch.double))
            mean = post.mean.squeeze(-1).numpy()
            std = post.variance.clamp_min(1e-12).sqrt().squeeze(-1).numpy()
        costs = np.array([r[-3:-1] for r in rows])  # normalized flash, RAM: 1 - cost/limit
        n = len(pool)
        # The front: what was observed, plus every pending candidate at its posterior mean
        # ("Kriging believer"), so a batch and the trials in flight are not proposed twice.
        front = [(self._norm_acc(r.accuracy), *self._row(r.params)[-3:-1]) for r in completed]  # type: ignore[arg-type]
        front += [(float(mean[n + i]), *costs[n + i]) for i in range(len(pending))]
        picked: list[int] = []
        for _ in range(min(k, n)):
            scores = expected_hvi(mean[:n], std[:n], costs[:n], np.array(front))
            scores[picked] = -np.inf
            best = int(np.argmax(scores))
            picked.append(best)
            front.append((float(mean[best]), *costs[best]))
        return [pool[i] for i in picked]

    def _fit(self, x: Any, y: Any) -> Any:
        """The accuracy GP: hyperparameters optimized (warm-started from the previous ones)
        every ``parallel`` new results, reused in between."""
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        start = time.perf_counter()
        with warnings.catch_warnings(), torch.random.fork_rng():
            warnings.simplefilter("ignore")
            torch.manual_seed(self._seed + len(x))
            gp = SingleTaskGP(x, y)
            warm = self._hyper is not None
            if warm:
                gp.load_state_dict(self._hyper, strict=False)
            if not warm or len(x) - self._fitted_at >= self._refit_every:
                self._fitted_at = len(x)
                try:
                    fit_gpytorch_mll(
                        ExactMarginalLogLikelihood(gp.likelihood, gp),
                        optimizer_kwargs={
                            "options": {"maxiter": WARM_FIT_MAX_ITER if warm else FIT_MAX_ITER}
                        },
                    )
                except Exception:  # noqa: BLE001 - a failed fit from a warm start: start cold
                    log.debug("warm-started GP fit failed; fitting from scratch", exc_info=True)
                    gp = SingleTaskGP(x, y)
                    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        # Hyperparameters only: the outcome transform's statistics belong to these data.
        self._hyper = {
            k: v.clone()
            for k, v in gp.state_dict().items()
            if not k.startswith("outcome_transform")
        }
        gp.eval()
        self.last_fit_seconds = time.perf_counter() - start
        return gp

    def _candidates(self, completed: list[Result], exclude: set[str]) -> list[dict[str, Any]]:
        """Feasible, untried points: the Sobol pool plus mutations of the best trials."""
        if self._pool is None:
            pool = self._screen.feasible(self._draw, POOL_SIZE, what="the pool")
            self._pool = {self._codec.key(p): p for p in pool}
        key = self._codec.key
        out = {k: p for k, p in self._pool.items() if k not in exclude}
        parents = self._parents(completed)
        rejected: set[str] = set()  # screened once per ask, not again
        tries = 0
        while parents and len(out) < len(self._pool) + LOCAL_SIZE and tries < 2 * LOCAL_SIZE:
            tries += 1
            parent = parents[tries % len(parents)]
            child = self._codec.mutate(parent, self._rng, changes=self._rng.choice((1, 1, 2)))
            ck = key(child)
            if ck in exclude or ck in out or ck in rejected:
                continue
            if self._screen.fits(child):
                out[ck] = child
            else:
                rejected.add(ck)
        return list(out.values())

    def _parents(self, completed: list[Result]) -> list[dict[str, Any]]:
        """The observed Pareto points, then the most accurate ones (at most 10)."""
        from sparsearch.search.pareto import Point, pareto_indices

        points = [Point(i, r.accuracy, r.flash, r.ram) for i, r in enumerate(completed)]  # type: ignore[arg-type]
        front = set(pareto_indices(points))
        ranked = sorted(range(len(completed)), key=lambda i: -(completed[i].accuracy or 0.0))
        order = [i for i in ranked if i in front] + [i for i in ranked if i not in front]
        return [completed[i].params for i in order[:10]]

    # -- encoding ------------------------------------------------------------------------------

    def _row(self, params: dict[str, Any]) -> list[float]:
        """Features: the codec's, then normalized flash and RAM (1 - cost/limit, the
        deterministic objectives) and log MACs (informative for accuracy). Cached."""
        k = self._codec.key(params)
        row = self._rows.get(k)
        if row is None:
            row = self._rows[k] = self._features(params)
            if len(self._rows) > 50_000:  # mutations come and go: keep memory bounded
                self._rows.clear()
        return row

    def _features(self, params: dict[str, Any]) -> list[float]:
        costs = self._screen.costs(params)
        if costs is None:  # replayed from an older space: unbuildable now, still a point
            return [*self._codec.features(params), 0.0, 0.0, 0.0]
        flash_limit, ram_limit = self._limits
        return [
            *self._codec.features(params),
            1.0 - costs.flash / flash_limit,
            1.0 - costs.ram / ram_limit,
            min(1.0, math.log10(max(1, costs.macs)) / 9.0),
        ]

    def _norm_acc(self, accuracy: float) -> float:
        return (accuracy - self._chance) / (1.0 - self._chance)


def expected_hvi(mean: Any, std: Any, costs: Any, front: Any) -> Any:
    """Expected hypervolume improvement of each candidate over ``front``, exactly.

    Objectives normalized, larger is better, reference point 0 (DESIGN.md's hypervolume).
    Candidate i has known flash and RAM objectives ``costs[i]`` and accuracy ~ N(mean[i],
    std[i]^2). Its improvement at accuracy ``a`` is the integral over t in (0, a) of the area
    of its (flash, RAM) box not dominated by front points of accuracy >= t: a step function of
    t with steps at the front's accuracies, so the expectation has a closed form per step
    (E[(a - x)^+] = s phi(z) + (m - x) Phi(z)). ``front`` is an (m, 3) array. Vectorized over
    candidates: O(candidates x m^2) array operations."""
    import numpy as np

    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    costs = np.clip(np.asarray(costs, dtype=float).reshape(-1, 2), 0.0, None)
    front = np.clip(np.asarray(front, dtype=float).reshape(-1, 3), 0.0, None)
    front = front[np.argsort(front[:, 0], kind="stable")]
    n, m = len(mean), len(front)
    fc, rc = costs[:, :1], costs[:, 1:]
    box = (fc * rc)[:, 0]
    areas = np.empty((n, m + 1))
    areas[:, m] = box
    for j in range(m):  # step j: t in (acc_{j-1}, acc_j], dominated by points j.. on
        suffix = front[j:]
        order = np.argsort(-suffix[:, 1], kind="stable")
        widths = np.minimum(suffix[order, 1][None, :], fc)  # clipped to each candidate's box
        heights = np.minimum(np.maximum.accumulate(suffix[order, 2])[None, :], rc)
        steps = widths - np.concatenate([widths[:, 1:], np.zeros((n, 1))], axis=1)
        areas[:, j] = box - (steps * heights).sum(axis=1)
    edges = np.concatenate([[0.0], front[:, 0], [np.inf]])
    g = _expected_excess(mean[:, None], std[:, None], edges[None, :])  # E[(a - edge)^+]
    return (areas * (g[:, :-1] - g[:, 1:])).sum(axis=1)


def _expected_excess(m: Any, s: Any, x: Any) -> Any:
    import numpy as np
    from scipy.stats import norm

    m, s, x = np.broadcast_arrays(m, s, x)
    out = np.zeros(m.shape)
    finite = np.isfinite(x)
    z = (m[finite] - x[finite]) / s[finite]
    out[finite] = s[finite] * norm.pdf(z) + (m[finite] - x[finite]) * norm.cdf(z)
    return out
