"""Which default space reaches the networks tight limits need? Estimate-only (no training).

For several input shapes and limit pairs (none of them the committed search_quality regimes),
draws scrambled-Sobol points of each candidate space and reports: the share that fits the limits
by estimate (what a strategy pays in screening), and among the fitting ones the 90th
percentile and the largest MACs and parameter count (capacity the search can reach). A space
that leaves tight limits with no or only tiny feasible networks cannot find good ones there,
whatever the strategy.

    .venv/bin/python benchmarks/space_defaults.py --out benchmarks/results/space_defaults.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VARIANTS = {
    "old (4-64 ch, scales .5-1, k 3-7, 4 blocks)": dict(
        max_blocks=4, channels=(4, 64), input_scales=(0.5, 0.75, 1.0), kernels=(3, 5, 7)
    ),
    "new (2-64 ch, scales .25-1, k 1-7, 6 blocks)": dict(
        max_blocks=6, channels=(2, 64), input_scales=(0.25, 0.5, 0.75, 1.0), kernels=(1, 3, 5, 7)
    ),
    "new, 4 blocks": dict(
        max_blocks=4, channels=(2, 64), input_scales=(0.25, 0.5, 0.75, 1.0), kernels=(1, 3, 5, 7)
    ),
}
CASES = [  # (name, input shape, classes, flash, RAM)
    ("28x28x1, 8 KiB / 3 KiB", (1, 28, 28), 10, 8192, 3072),
    ("28x28x1, 32 KiB / 8 KiB", (1, 28, 28), 10, 32768, 8192),
    ("28x28x1, 128 KiB / 32 KiB", (1, 28, 28), 10, 131072, 32768),
    ("32x32x3, 16 KiB / 8 KiB", (3, 32, 32), 10, 16384, 8192),
    ("32x32x3, 64 KiB / 32 KiB", (3, 32, 32), 10, 65536, 32768),
    ("8x8x1, 6 KiB / 3 KiB", (1, 8, 8), 10, 6144, 3072),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--draws", type=int, default=4096)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from sparsearch.jobconfig import JobConfig
    from sparsearch.search.screen import Screen, sobol_draw
    from sparsearch.space.estimate import estimate
    from sparsearch.space.params import SpaceConfig

    rows = []
    for case, shape, classes, flash, ram in CASES:
        for variant, kw in VARIANTS.items():
            cfg = JobConfig.create(
                target="tflm",  # the committed results compare with runs from before the C target
                dataset="x",
                flash_bytes=flash,
                ram_bytes=ram,
                trials=10,
                space=SpaceConfig(**kw),
            )
            screen = Screen(cfg, shape, classes)
            draw = sobol_draw(screen.codec, 0)
            macs, params = [], []
            for _ in range(args.draws):
                p = draw()
                if screen.fits(p):
                    arch, pruning, _ = screen.decode(p)
                    est = estimate(arch, pruning)
                    macs.append(est.macs)
                    params.append(est.params)
            macs.sort()
            row = {
                "case": case,
                "space": variant,
                "feasible_share": round(len(macs) / args.draws, 4),
                "macs_p90": macs[int(0.9 * (len(macs) - 1))] if macs else None,
                "macs_max": macs[-1] if macs else None,
                "params_max": max(params) if params else None,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    doc = {"command": "python " + " ".join(sys.argv), "draws": args.draws, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
