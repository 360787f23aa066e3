"""The plot of ``benchmarks/pruning.py``: accuracy against flash, one line per method."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def plot(doc: dict[str, Any], path: Path, label_of: Callable[[dict[str, Any]], str]) -> None:
    """Accuracy vs flash, one line per method (complexity: one per mode), baseline a star;
    unstructured methods at their sparse flash (nnz_flash_bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sparsearch.vocabulary import PRUNING_METHODS

    records = doc["records"]
    base = next((r for r in records if r["method"] == "none"), None)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["method"] != "none" and r.get("status") == "ok":
            groups.setdefault(label_of(r), []).append(r)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, (label, recs) in enumerate(groups.items()):
        structured = PRUNING_METHODS[recs[0]["method"]].structured
        field = "flash_bytes" if structured else "nnz_flash_bytes"
        recs = sorted(recs, key=lambda r: r[field])
        xs = [r[field] / 1024 for r in recs]
        ys = [r["accuracy"] for r in recs]
        ax.plot(
            xs,
            ys,
            marker="os^vDP<>"[i % 8],
            linestyle=("-", "--", "-.", ":")[i % 4],
            label=label + ("" if structured else " (sparse flash)"),
        )
        for r, x, y in zip(recs, xs, ys, strict=True):
            ax.annotate(
                f"{r['reduction']:g}",
                (x, y),
                fontsize=6,
                alpha=0.6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    if base is not None:
        ax.plot(
            [base["flash_bytes"] / 1024],
            [base["accuracy"]],
            marker="*",
            markersize=14,
            color="black",
            linestyle="none",
            label="baseline (no pruning)",
        )
        ax.plot(
            [base["nnz_flash_bytes"] / 1024],
            [base["accuracy"]],
            marker="*",
            markersize=14,
            markerfacecolor="none",
            color="black",
            linestyle="none",
            label="baseline, sparse flash",
        )
    cfg = doc["config"]
    ax.set_xlabel("flash (KiB): int8 .tflite, or its sparse accounting where marked")
    ax.set_ylabel("float test accuracy")
    ax.set_title(
        f"Fashion-MNIST, {cfg['train_limit']} training images, baseline {cfg['epochs']} "
        f"epoch(s), fine-tuning {cfg['finetune_epochs']:g} epoch(s)\n(point labels: "
        "reduction of the method's own target quantity)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------------
