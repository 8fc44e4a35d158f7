"""PNG figures of the depth search and of entropy per layer (matplotlib Agg, atomic writes).

- :func:`plot_gain_vs_depth`: gain of each layer for every finished trial (grey; pruned
  trials dashed), the median over trials, the best trial (thick), the threshold and the
  chosen depth; right panel: entropy per layer ``H_l`` of the same trials.
- :func:`plot_trials`: useful entropy of each trial in order, coloured by state, with the
  best so far.
- :func:`plot_profiles`: entropy and gain per layer of one or more stacks (experiments).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from structlearn.io import atomic_write_bytes


def _figure(ncols: int = 1, width: float = 5.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 3.8), squeeze=False)
    return plt, fig, axes[0]


def _save(plt, fig, path: str | Path) -> None:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_gain_vs_depth(summary: dict[str, Any], path: str | Path) -> None:
    plt, fig, (ax, ax2) = _figure(2)
    rows = [r for r in summary["trials"] if r["state"] in ("COMPLETE", "PRUNED") and r["scored_gains"]]
    for r in rows:
        g = r["scored_gains"]
        style = "--" if r["state"] == "PRUNED" else "-"
        ax.plot(range(1, len(g) + 1), g, style, color="0.6", lw=0.8, marker="o", ms=3)
        ax2.plot(range(len(r["entropies"])), r["entropies"], style, color="0.6", lw=0.8, marker="o", ms=3)
    med = summary["gain_by_layer"]
    if med:
        ax.plot([m["layer"] for m in med], [m["median"] for m in med], color="tab:blue", lw=2, label="median over trials")
    best = summary["best_trial"]
    if best is not None and best["scored_gains"]:
        g = best["scored_gains"]
        ax.plot(range(1, len(g) + 1), g, color="tab:red", lw=2.5, marker="o", label=f"best trial {best['number']}")
        ax2.plot(range(len(best["entropies"])), best["entropies"], color="tab:red", lw=2.5, marker="o",
                 label=f"best trial {best['number']}")
    ax.axhline(summary["threshold"], color="k", ls=":", label=f"threshold {summary['threshold']}")
    ax.axhline(0, color="k", lw=0.5)
    if summary["chosen_depth"] is not None:
        ax.axvline(summary["chosen_depth"] + 0.5, color="tab:green", ls="--", label=f"chosen depth {summary['chosen_depth']}")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"entropy gain ({summary['gain_unit']})")
    ax.set_title("gain per layer (grey: trials, dashed: pruned)")
    ax.legend(fontsize=7)
    ax2.set_xlabel("layer (0 = whitened input)")
    ax2.set_ylabel(f"H_l ({summary['measure']}, nats)")
    ax2.set_title("entropy per layer")
    for a in (ax, ax2):
        a.xaxis.get_major_locator().set_params(integer=True)
    _save(plt, fig, path)


def plot_trials(summary: dict[str, Any], path: str | Path) -> None:
    plt, fig, (ax,) = _figure(1, 6.0)
    colors = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange", "FAIL": "tab:red"}
    best_so_far, xs, ys = -float("inf"), [], []
    for r in sorted(summary["trials"], key=lambda r: r["number"]):
        u = r["useful_entropy"]
        if u is None or r["state"] not in colors:
            continue
        ax.scatter(r["number"], u, color=colors[r["state"]], s=18, zorder=3)
        if r["state"] in ("COMPLETE", "PRUNED"):
            best_so_far = max(best_so_far, u)
            xs.append(r["number"])
            ys.append(best_so_far)
    ax.step(xs, ys, where="post", color="k", lw=1, label="best so far")
    for state, c in colors.items():
        ax.scatter([], [], color=c, label=state.lower())
    ax.set_xlabel("trial")
    ax.set_ylabel("useful entropy U (nats)")
    ax.set_title(f"{summary['study_name']}: chosen depth {summary['chosen_depth']}")
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def plot_profiles(profiles: Sequence[Any], labels: Sequence[str], path: str | Path, threshold: float | None = None,
                  relative: bool = True) -> None:
    """``profiles``: :class:`structlearn.depth.gain.EntropyProfile` objects."""
    plt, fig, (ax, ax2) = _figure(2)
    for p, lab in zip(profiles, labels):
        ax2.plot(range(len(p.entropies)), p.entropies, marker="o", label=lab)
        g = p.relative_gains if relative else p.gains
        ax.plot(range(1, len(g) + 1), g, marker="o", label=lab)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls=":", label=f"threshold {threshold}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("layer")
    ax.set_ylabel("gain / H_0" if relative else "gain (nats)")
    ax.set_title("entropy gain per layer")
    ax2.set_xlabel("layer (0 = whitened input)")
    ax2.set_ylabel("H_l (nats)")
    ax2.set_title("entropy per layer")
    for a in (ax, ax2):
        a.legend(fontsize=7)
        a.xaxis.get_major_locator().set_params(integer=True)
    _save(plt, fig, path)
