"""The job's limits as *known* constraints: the estimator decides, before anything is trained or
modelled, whether a candidate fits; strategies propose only candidates that pass.

The estimate (``space/estimate.py``) is an exact, deterministic function of a candidate, so no
optimizer has to learn where the limits are. A candidate the screen rejects is counted
(``screened``) and never stored as a trial.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sparsearch.errors import SearchError, SpaceError
from sparsearch.jobconfig import JobConfig
from sparsearch.search.codec import Codec
from sparsearch.space.estimate import estimate
from sparsearch.space.params import decode, smallest_candidates
from sparsearch.space.spec import ArchSpec, PruningSpec
from sparsearch.vocabulary import NO_PRUNING, accounted_flash

#: Draws a design may spend per candidate it needs before the limits count as too tight.
MAX_DRAWS_PER_CANDIDATE = 2000
#: ... and at least this many, so that a 1-in-a-few-thousand feasible region is still found.
MIN_DRAWS = 20_000

#: Estimate fields stored with every trial.
ESTIMATE_FIELDS = ("flash_bytes", "ram_bytes", "activation_bytes", "macs", "nnz_flash_bytes")


@dataclass(frozen=True)
class Costs:
    """A candidate's estimated deployment cost: ``flash`` as the job's limit counts it;
    ``instructions`` per inference under the ``c`` target (None under ``tflm``)."""

    flash: int
    ram: int
    macs: int
    estimates: dict[str, int]  # the stored estimate fields (+ param_count)
    instructions: int | None = None


class LimitsTooTight(SearchError):
    """No candidate of the space fits the job's limits (by estimate)."""


class Screen:
    """Known-constraint oracle of one job: costs, fits, feasible designs, reachability.

    Thread-safe counters: a generator thread and the driver both use it."""

    def __init__(
        self,
        cfg: JobConfig,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        screened: int = 0,
        pixel_scale: float | None = 1.0 / 255.0,
    ) -> None:
        """``screened``: the count so far (a resumed job goes on from its stored one).
        ``pixel_scale``: the data set's (None for data stored as floats): under the ``c``
        target, what ``classify``'s preprocessing costs."""
        self.cfg = cfg
        self.pixel_scale = pixel_scale
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.codec = Codec(cfg.space)
        self._lock = threading.Lock()
        self._screened = screened
        self._smallest: dict[str, int] = {}
        self._cache: dict[str, Costs | None] = {}

    # -- one candidate -------------------------------------------------------------------------

    def decode(self, params: dict[str, Any]) -> tuple[ArchSpec, PruningSpec, float]:
        return decode(params, self.cfg.space, self.input_shape, self.num_classes)  # type: ignore[arg-type]

    def costs(self, params: dict[str, Any]) -> Costs | None:
        """The candidate's estimate, or None when it cannot be built (cached per network)."""
        key = self.codec.key(params)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        try:
            arch, pruning, _ = self.decode(params)
            est = self.estimate(arch, pruning).to_dict()
        except SpaceError:
            costs = None
        else:
            stored = {k: est[k] for k in ESTIMATE_FIELDS}
            stored["param_count"] = est["params"]
            costs = Costs(
                flash=accounted_flash(self.cfg.flash_accounting, est),
                ram=est["ram_bytes"],
                macs=est["macs"],
                estimates=stored,
                instructions=est.get("instructions"),
            )
        with self._lock:
            if len(self._cache) < 200_000:
                self._cache[key] = costs
        return costs

    def estimate(self, arch: ArchSpec, pruning: PruningSpec) -> Any:
        """The candidate's CostEstimate on the job's target."""
        return estimate(arch, pruning, target=self.cfg.target, pixel_scale=self.pixel_scale)

    def within(self, costs: Costs | None) -> bool:
        return costs is not None and self.cfg.limits.fits(
            costs.flash, costs.ram, costs.macs, costs.instructions
        )

    def fits(self, params: dict[str, Any]) -> bool:
        """Whether the candidate fits every limit by estimate; a rejection is counted."""
        costs = self.costs(params)
        if self.within(costs):
            return True
        with self._lock:
            self._screened += 1
            if costs is not None:
                for name, value in (
                    ("flash", costs.flash),
                    ("ram", costs.ram),
                    ("instructions", costs.instructions),
                ):
                    if value is not None:
                        self._smallest[name] = min(self._smallest.get(name, value), value)
        return False

    @property
    def screened(self) -> int:
        with self._lock:
            return self._screened

    # -- designs -------------------------------------------------------------------------------

    def feasible(
        self,
        draw: Callable[[], dict[str, Any]],
        n: int,
        *,
        exclude: Iterable[str] = (),
        what: str = "the design",
    ) -> list[dict[str, Any]]:
        """Up to ``n`` distinct feasible points from ``draw`` (a sampler of canonical points),
        none of whose keys is in ``exclude``. Raises LimitsTooTight when the draw budget
        (``MAX_DRAWS_PER_CANDIDATE`` per point, at least ``MIN_DRAWS``) finds none at all."""
        seen = set(exclude)
        found: list[dict[str, Any]] = []
        limit = max(MIN_DRAWS, MAX_DRAWS_PER_CANDIDATE * n)
        for _ in range(limit):
            p = draw()
            key = self.codec.key(p)
            if key in seen:
                continue
            seen.add(key)
            if self.fits(p):
                found.append(p)
                if len(found) >= n:
                    break
        if not found and n > 0:
            self.too_tight(f"{what} drew {limit} candidates and none fits")
        return found

    def too_tight(self, what: str) -> None:
        with self._lock:
            s = dict(self._smallest)
        lim = self.cfg.limits
        timed = lim.instructions is not None and "instructions" in s
        seen = (
            f"smallest flash {s['flash']} B, smallest RAM {s['ram']} B"
            + (f", smallest instructions {s['instructions']}" if timed else "")
            if s
            else "no candidate could be built"
        )
        limits = f"limits flash {lim.flash_bytes} B, RAM {lim.model_ram_bytes} B" + (
            f", instructions {lim.instructions}" if lim.instructions is not None else ""
        )
        raise LimitsTooTight(
            f"limits too tight for this space: {what} ({seen}; {limits})",
            "raise --flash/--ram"
            + ("/--max-instructions" if lim.instructions is not None else "")
            + " or shrink the space (fewer channels, smaller input scale)",
        )

    # -- reachability --------------------------------------------------------------------------

    def check_reachable(self) -> None:
        """Fail in milliseconds when no network of the space, pruned as far as the space
        allows, fits the limits: names the limit out of reach and by how much."""
        lim = self.cfg.limits
        rows: list[Costs] = []
        for arch in smallest_candidates(self.cfg.space, self.input_shape, self.num_classes):  # type: ignore[arg-type]
            for pruning in self._deepest_pruning():
                try:
                    est = self.estimate(arch, pruning).to_dict()
                except SpaceError:
                    continue
                rows.append(
                    Costs(
                        accounted_flash(self.cfg.flash_accounting, est),
                        est["ram_bytes"],
                        est["macs"],
                        {},
                        est.get("instructions"),
                    )
                )
        if not rows:
            raise LimitsTooTight(
                "no network of this space can be built for this input shape",
                "allow more input scales or fewer downsampling blocks",
            )
        if any(self.within(c) for c in rows):
            return
        over = []
        timed = [c.instructions for c in rows if c.instructions is not None]
        for name, value, limit in (
            ("flash", min(c.flash for c in rows), lim.flash_bytes),
            ("RAM", min(c.ram for c in rows), lim.model_ram_bytes),
            ("MACs", min(c.macs for c in rows), lim.macs),
            ("instructions", min(timed, default=None), lim.instructions),
        ):
            if limit is not None and value is not None and value > limit:
                unit = " B" if name in ("flash", "RAM") else ""
                over.append(
                    f"{name}: the smallest network needs {value}{unit}, "
                    f"{value - limit}{unit} ({100 * (value - limit) / limit:.0f}%) over the "
                    f"limit of {limit}{unit}"
                )
        if not over:
            best = min(rows, key=lambda c: max(_fractions(c, lim)))
            if lim.instructions is not None and best.instructions is not None:
                over.append(
                    f"no network meets flash, RAM and instructions together (closest: flash "
                    f"{best.flash} B, RAM {best.ram} B, {best.instructions} instructions)"
                )
            else:
                over.append(
                    f"no network meets flash and RAM together (closest: flash {best.flash} B, "
                    f"RAM {best.ram} B)"
                )
        raise LimitsTooTight(
            "limits too tight for this space, even pruned as far as it allows: " + "; ".join(over),
            "raise the limit named, or shrink the space (fewer channels, smaller input scale)",
        )

    def _deepest_pruning(self) -> list[PruningSpec]:
        space = self.cfg.space
        out = [PruningSpec()] if NO_PRUNING in space.pruning_methods else []
        top = space.prune_level[1]
        for method in space.pruning_methods:
            if method != NO_PRUNING and top > 0:
                out.append(PruningSpec(method, top))
        return out or [PruningSpec()]


def _fractions(costs: Costs, lim: Any) -> list[float]:
    """Each cost as a fraction of its limit (flash, RAM, and instructions where limited)."""
    out = [costs.flash / lim.flash_bytes, costs.ram / lim.model_ram_bytes]
    if lim.instructions is not None and costs.instructions is not None:
        out.append(costs.instructions / lim.instructions)
    return out


def sobol_draw(codec: Codec, seed: int) -> Callable[[], dict[str, Any]]:
    """A sampler of canonical points from a scrambled Sobol sequence over the unit cube."""
    from scipy.stats import qmc

    engine = qmc.Sobol(d=max(1, codec.dim), scramble=True, seed=seed)
    buffer: list[list[float]] = []

    def draw() -> dict[str, Any]:
        if not buffer:
            buffer.extend(engine.random(256).tolist())  # powers of two keep the balance
        return codec.from_unit(buffer.pop(0))

    return draw
