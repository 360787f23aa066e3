"""Points of the search space as numbers: the unit cube a design samples, the feature vector a
model fits, the canonical form two equal networks share, and the small moves evolution makes.

Pure Python (no torch): every strategy uses it, and tests run it without a model library.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from sparsearch.space.params import ParamDef, SpaceConfig, parameters


def block_of(name: str) -> int | None:
    """The block a parameter belongs to (``b2_kernel`` -> 2), None for a global one."""
    if name.startswith("b") and "_" in name and name[1 : name.index("_")].isdigit():
        return int(name[1 : name.index("_")])
    return None


class Codec:
    """Maps between parameter dicts and numbers for one space.

    Inactive settings (the blocks past ``n_blocks``, ``prune_level`` without a method, a
    pruning method's knobs under another method) are
    dropped by :meth:`canonical` and encoded as a neutral 0 by :meth:`features`, so they never
    tell a model anything and two points that build the same network look the same."""

    def __init__(self, space: SpaceConfig) -> None:
        self.space = space
        self.defs: list[ParamDef] = parameters(space)
        self.dim = len(self.defs)
        self._names = {d.name for d in self.defs}

    # -- sampling ------------------------------------------------------------------------------

    def from_unit(self, u: Sequence[float]) -> dict[str, Any]:
        """The canonical point at ``u`` in [0, 1)^dim (one coordinate per dimension)."""
        return self.canonical(
            {d.name: _value_at(d, float(x)) for d, x in zip(self.defs, u, strict=True)}
        )

    def canonical(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` without its inactive settings or the ones the space fixes (``decode``
        fills those in), in the space's order; lr rounded to 3 significant digits (closer
        values train alike), the pruning level and float pruning knobs to 2 decimals."""
        # a method the space fixes (one choice) is no dimension, but its knobs and level are
        full = {"prune_method": self.space.pruning_methods[0], **params}
        n_blocks = int(full.get("n_blocks", 1))
        out: dict[str, Any] = {}
        for d in self.defs:
            if d.name not in full:
                continue
            block = block_of(d.name)
            if block is not None and block >= n_blocks:
                continue
            if not d.active(full):
                continue
            out[d.name] = full[d.name]
        if "lr" in out:  # rounded, but never out of the space's bounds
            lo, hi = self.space.lr
            out["lr"] = min(hi, max(lo, float(f"{float(out['lr']):.3g}")))
        for d in self.defs:  # pruning settings act in steps far coarser than 0.005
            if d.when is not None and d.value_type == "float" and d.name in out:
                out[d.name] = round(float(out[d.name]), 2)
        return out

    def key(self, params: dict[str, Any]) -> str:
        """A string equal for two points exactly when they describe the same trial."""
        c = self.canonical(params)
        return ";".join(f"{k}={c[k]}" for k in sorted(c))

    # -- features ------------------------------------------------------------------------------

    def feature_names(self) -> list[str]:
        names: list[str] = []
        for d in self.defs:
            if d.values is not None and not d.ordered:
                names += [f"{d.name}={v}" for v in d.values]
            else:
                names.append(d.name)
        return names

    def features(self, params: dict[str, Any]) -> list[float]:
        """A vector in [0, 1]: ranges and ordered choices as their position (log ranges on a
        log scale), unordered choices one-hot, inactive settings all zeros."""
        c = self.canonical(params)
        row: list[float] = []
        for d in self.defs:
            v = c.get(d.name)
            if d.values is not None and not d.ordered:
                row += [1.0 if v == option else 0.0 for option in d.values]
            elif v is None:
                row.append(0.0)
            else:
                row.append(_position(d, v))
        return row

    # -- moves ---------------------------------------------------------------------------------

    def mutate(self, params: dict[str, Any], rng: random.Random, changes: int = 1) -> dict:
        """``params`` with ``changes`` settings moved (an active one each): choices to another
        value (ordered ones to a neighbour, usually), ranges by a step of about a tenth."""
        out = self.canonical(params)
        for _ in range(changes):
            d = rng.choice([x for x in self.defs if x.name in out])
            if d.name == "n_blocks":  # a block added gets random settings
                lo, hi = int(d.bounds[0]), int(d.bounds[1])  # type: ignore[index]
                n = min(hi, max(lo, int(out["n_blocks"]) + rng.choice((-1, 1))))
                for x in self.defs:
                    if block_of(x.name) == n - 1 and x.name not in out:
                        out[x.name] = _value_at(x, rng.random())
                out["n_blocks"] = n
            elif d.name == "prune_method":
                out[d.name] = rng.choice([v for v in d.values if v != out[d.name]])  # type: ignore[union-attr]
                for x in self.defs:  # settings the new method brings get random values
                    if x.when is not None and x.active(out) and x.name not in out:
                        out[x.name] = _value_at(x, rng.random())
            else:
                out[d.name] = _moved(d, out[d.name], rng)
            out = self.canonical(out)
        return out

    def _def(self, name: str) -> ParamDef:
        return next(d for d in self.defs if d.name == name)


def _value_at(d: ParamDef, x: float) -> Any:
    """The value of dimension ``d`` at position ``x`` in [0, 1)."""
    x = min(max(x, 0.0), 1.0 - 1e-12)
    if d.values is not None:
        return d.values[int(x * len(d.values))]
    lo, hi = d.bounds  # type: ignore[misc]
    if d.value_type == "int":
        if d.log:  # log-uniform over the rounding intervals of lo..hi (lo >= 1)
            a, b = math.log(lo - 0.5), math.log(hi + 0.5)
            v = math.exp(a + x * (b - a))
        else:
            v = lo - 0.5 + x * (hi - lo + 1)
        return int(min(hi, max(lo, round(v))))
    if d.log:
        return math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo)))
    return lo + x * (hi - lo)


def _position(d: ParamDef, v: Any) -> float:
    """Where value ``v`` of dimension ``d`` lies in [0, 1] (the inverse of ``_value_at``)."""
    if d.values is not None:
        n = len(d.values)
        return d.values.index(v) / (n - 1) if n > 1 and v in d.values else 0.0
    lo, hi = d.bounds  # type: ignore[misc]
    if hi <= lo:  # a range of one value (say n_blocks with max_blocks 1)
        return 0.0
    if d.log:
        return (math.log(float(v)) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (float(v) - lo) / (hi - lo)


def _moved(d: ParamDef, v: Any, rng: random.Random) -> Any:
    if d.values is not None:
        options = list(d.values)
        if d.ordered and v in options and rng.random() < 0.8:
            i = options.index(v) + rng.choice((-1, 1))
            return options[min(len(options) - 1, max(0, i))]
        return rng.choice([o for o in options if o != v] or options)
    x = _position(d, v) + rng.gauss(0.0, 0.1)
    x = min(max(x, 0.0), 1.0 - 1e-12)
    moved = _value_at(d, x)
    if moved == v and d.value_type == "int":
        lo, hi = d.bounds  # type: ignore[misc]
        moved = int(min(hi, max(lo, v + rng.choice((-1, 1)))))
    return moved
