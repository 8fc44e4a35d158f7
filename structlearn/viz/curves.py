"""PNG line plots of a run (matplotlib Agg, written atomically): training and held-out curves
over steps, and the weight-sharing curve of the convolution read-out."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from structlearn.io import atomic_write_bytes


def _figure(ncols: int, width: float = 4.6):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 3.6), squeeze=False)
    return plt, fig, axes[0]


def _save(plt: Any, fig: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


PANELS = (("train/loss", "training loss (objective units)"),
          ("train/recon_rel_error", "relative reconstruction error ||x - Dz|| / ||x||"),
          ("eval/tile_purity_mean", "held-out tile purity (energy share)"),
          ("eval/density", "density (share of non-zero weights)"))


def plot_training_curves(rows: Sequence[dict[str, Any]], path: str | Path) -> list[str]:
    """One panel per metric of :data:`PANELS` that the run logged (``metrics.jsonl`` rows), x =
    global step, one line per layer; pruning rounds as dotted vertical lines. Returns the
    metric names drawn (none: nothing written)."""
    keys = [(k, label) for k, label in PANELS if any(k in r for r in rows)]
    if not keys:
        return []
    plt, fig, axes = _figure(len(keys))
    prunes = [r["step"] for r in rows if "prune/round" in r]
    for ax, (k, label) in zip(axes, keys):
        layers = sorted({int(r.get("layer", 0)) for r in rows if k in r})
        for li in layers:
            pts = [(r["step"], r[k]) for r in rows if k in r and int(r.get("layer", 0)) == li]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 30 else None, label=f"layer {li}")
        for s in prunes:
            ax.axvline(s, color="grey", ls=":", lw=1)
        ax.set_xlabel("step (updates, all layers)")
        ax.set_ylabel(label, fontsize=8)
        if len(layers) > 1:
            ax.legend(fontsize=7)
    _save(plt, fig, path)
    return [k for k, _ in keys]


def plot_sharing_curve(points: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Weight sharing against the read-out's cosine threshold: shared kernels (channels, left
    axis) and the share of units they explain (coverage, right axis)."""
    plt, fig, (ax,) = _figure(1, 5.2)
    t = [p["threshold"] for p in points]
    ax.plot(t, [p["channels"] for p in points], "o-", color="C0")
    ax.set_xlabel("cosine threshold a unit needs to join a shared kernel")
    ax.set_ylabel("shared kernels (channels)", color="C0")
    ax2 = ax.twinx()
    ax2.plot(t, [p["coverage"] for p in points], "s--", color="C1")
    ax2.set_ylabel("coverage (share of units explained)", color="C1")
    ax2.set_ylim(0, 1.02)
    _save(plt, fig, path)
