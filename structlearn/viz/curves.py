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


def plot_sharing_curve(C: Sequence[int], error: Sequence[float], knee_C: int | None, chosen_C: int, path: str | Path,
                       strict: tuple[int, float] | None = None) -> None:
    """The rate-distortion curve of weight sharing: weight error ``||W - W_hat||_F / ||W||_F``
    against the number of shared kernels ``C`` (log axis), the knee (if any) and the chosen
    ``C`` marked; ``strict``: the exact-sharing read-out's ``(channels, coverage)``, in the title."""
    plt, fig, (ax,) = _figure(1, 5.6)
    ax.plot(C, error, "o-", ms=3)
    i = list(C).index(chosen_C)
    what = "knee" if knee_C == chosen_C else "no knee; chosen"
    ax.plot([chosen_C], [error[i]], "r*", ms=12, label=f"{what}: C = {chosen_C}, error {error[i]:.3f}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("shared kernels C (every unit covered)")
    ax.set_ylabel("weight error ||W - W_hat||_F / ||W||_F")
    ax.set_ylim(0, max(1.0, max(error) * 1.05))
    ax.legend(fontsize=8)
    if strict is not None:
        ax.set_title(f"strict cosine read-out: {strict[0]} channels cover {strict[1]:.3f} of the units", fontsize=8)
    _save(plt, fig, path)
