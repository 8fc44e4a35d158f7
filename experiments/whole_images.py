"""Whole-image locality (issue 11): a natural run of ``experiments/whole_images.yaml`` against its
Gaussian clone, by the 90%-energy radius of every unit.

    structlearn discover experiments/whole_images.yaml --no-readout                 # NATURAL
    structlearn discover experiments/whole_images.yaml --no-readout --set data.gaussian_clone=true   # CLONE
    python experiments/whole_images.py NATURAL CLONE        # -> NATURAL/whole_images.md and two montages

For each run: the radius (:func:`structlearn.structure.locality.energy_radius`, as a fraction of
the image side) of the final (pruned) units, its quantiles and the share of units below a
quarter of the side, over all units and over the quartile of units the sparse code uses most
(``A_jj``, the running mean of ``z_j^2`` of the block-coordinate update, read from the
checkpoint; with a gradient update its running usage). On 4096 atoms many units are still
converging after a 2-core machine's hour (an edge speckled with what the update has not yet
averaged away), and pruning a speckled field keeps it spread, so the two numbers say different
things: how far training has gone, and what the units that it has shaped look like. Montages:
the 144 most used units of each run.

A second table sweeps the share of weights each unit keeps: the dense layer at the first
pruning (``layer0_dense.pt``) is pruned unit-wise to each share of :data:`SHARES` with the
library's own :func:`~structlearn.prune.magnitude.magnitude_mask` (no fine-tuning) and the
median radius is taken for both runs, so the ratio is read as a curve, not only at the one
density the config prunes to (share 1.0: the dense units themselves).

A third table, when both runs have a fine-tuned density sweep (``structlearn sweep RUN``, the
same densities on both), reads the ratio after fine-tuning at each density beside the held-out
reconstruction error and objective, and the knee of the natural run's error curve (the density the library's
own criterion picks, :func:`structlearn.prune.sweep.knee`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from structlearn.io import atomic_write_text, load_checkpoint, read_json
from structlearn.prune.magnitude import magnitude_mask
from structlearn.runs.run import Run
from structlearn.structure.locality import energy_radius
from structlearn.viz.montage import filters_to_rgb, save_png, upscale

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
SHARES = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def usage(run: Run) -> torch.Tensor:
    """Each unit's usage at the end of training: ``A_jj`` (times its lazy scale) or the running usage."""
    state = load_checkpoint(run.file("checkpoint.pt"))["done"][0]
    if "A" in state:
        return state["A"].diagonal().double() * float(state.get("A_scale", torch.tensor(1.0)))
    return state["usage"].double()


def describe(run: Run) -> dict:
    W = run.weights(0)
    side = max(run.input_shape(0))
    fields = W.reshape(W.shape[0], *run.input_shape(0))
    r = energy_radius(fields).double() / side
    u = usage(run)
    top = u >= u.quantile(0.75)
    out = {"density": float((W != 0).double().mean()), "units": int(W.shape[0])}
    for name, sel in (("all", torch.ones_like(top)), ("most used quartile", top)):
        rs = r[sel & ~r.isnan()]
        q = rs.quantile(torch.tensor(QUANTILES, dtype=rs.dtype))
        out[name] = {"median": float(rs.median()), "quantiles": [float(v) for v in q],
                     "below_quarter": float((rs < 0.25).double().mean()), "n": int(rs.numel())}
    order = torch.argsort(u, descending=True)[:144].numpy()
    save_png(run.file("filters_most_used.png"), upscale(filters_to_rgb(fields.numpy(), order), 900))
    return out


def share_sweep(run: Run, shares: tuple[float, ...] = SHARES) -> list[float]:
    """Median 90%-energy radius / side of the dense layer at the first pruning, each unit pruned
    to its largest ``share`` of weights, for every share."""
    state = run.layer(0, "dense")["objective"]
    dense = (state["layer.weight"] * state["layer.mask"]).double()
    shape = run.input_shape(0, "dense")
    side = max(shape)
    out = []
    for share in shares:
        kept = dense * magnitude_mask(dense, density=share) if share < 1 else dense
        out.append(float((energy_radius(kept.reshape(-1, *shape)) / side).median()))
    return out


def sweep_table(nat: Run, clone: Run) -> list[str]:
    """Markdown lines of the fine-tuned density sweeps of both runs, joined on the target density
    (empty when either run has no ``sweep.json``)."""
    if not (nat.file("sweep.json").is_file() and clone.file("sweep.json").is_file()):
        return []
    a, b = read_json(nat.file("sweep.json")), read_json(clone.file("sweep.json"))
    for key in ("mode", "finetune_steps"):
        if a.get(key) != b.get(key):
            raise SystemExit(f"the two sweeps differ in {key} ({a.get(key)!r} natural, {b.get(key)!r} clone); "
                             "allowed: both swept alike (`structlearn sweep RUN` with the same options)")
    rb = {r["density_target"]: r for r in b["rows"]}
    knee = a.get("knee", {}).get("density")
    lines = ["", f"Fine-tuned density sweeps (`structlearn sweep`, {a.get('mode')}, {a.get('finetune_steps')} fine-tuning "
             f"steps per density; knee of the natural run's {a['metric']}: "
             + (f"{knee:.3g}" if knee is not None else "none") + "):", "",
             "| density | natural radius90 | clone radius90 | natural / clone | natural recon error | clone recon error "
             "| natural loss | clone loss |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in a["rows"]:
        c = rb.get(r["density_target"])
        if c is None:
            continue
        x, y = r["energy_radius90_median"], c["energy_radius90_median"]
        mark = " (knee)" if knee is not None and r["density"] == knee else ""
        lines.append(f"| {r['density']:.4g}{mark} | {x:.3f} | {y:.3f} | {x / y:.2f} | "
                     f"{r['recon_rel_error']:.4f} | {c['recon_rel_error']:.4f} | {r['loss']:.2f} | {c['loss']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("natural", type=Path)
    p.add_argument("clone", type=Path)
    args = p.parse_args(argv)
    nat, clone = Run(args.natural), Run(args.clone)
    if not clone.cfg.data.gaussian_clone or nat.cfg.data.gaussian_clone:
        raise SystemExit("give the natural run first, then its Gaussian clone (data.gaussian_clone=true)")
    a, b = describe(nat), describe(clone)
    lines = ["| units | run | density | median radius90 / side | quantiles 10-25-50-75-90% | below 0.25 |",
             "|---|---|---:|---:|---|---:|"]
    for group in ("all", "most used quartile"):
        for name, d in (("natural", a), ("Gaussian clone", b)):
            g = d[group]
            q = " ".join(f"{v:.3f}" for v in g["quantiles"])
            lines.append(f"| {group} ({g['n']}) | {name} | {d['density']:.4f} | {g['median']:.3f} | {q} | "
                         f"{g['below_quarter']:.3f} |")
        ratio = a[group]["median"] / b[group]["median"]
        lines.append(f"| {group} | natural / clone | | **{ratio:.2f}** (target <= 0.33) | | |")
    sa, sb = share_sweep(nat), share_sweep(clone)
    lines += ["", "Dense layer at the first pruning, each unit pruned to its largest share of weights (no fine-tuning):", "",
              "| share kept | " + " | ".join(f"{v:g}" for v in SHARES) + " |", "|---|" + "---:|" * len(SHARES),
              "| natural | " + " | ".join(f"{v:.3f}" for v in sa) + " |",
              "| Gaussian clone | " + " | ".join(f"{v:.3f}" for v in sb) + " |",
              "| natural / clone | " + " | ".join(f"{x / y:.2f}" if y > 0 else "-" for x, y in zip(sa, sb)) + " |"]
    lines += sweep_table(nat, clone)
    text = "\n".join(lines) + "\n"
    atomic_write_text(nat.file("whole_images.md"), text)
    print(text)
    print(f"wrote {nat.file('whole_images.md')}, {nat.file('filters_most_used.png')}, {clone.file('filters_most_used.png')}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
