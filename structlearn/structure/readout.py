"""The structure of a trained dense layer, in numbers: what ``structure.json`` holds.

For a first layer (its inputs are images ``H x W``) with filters ``W: (n_units, H, W)``:

- ``density``, ``empty_units``: share of non-zero weights; units with none left;
- ``receptive_fields``: medians of spread, best-window energy, participation ratio and
  kurtosis (:mod:`structlearn.structure.receptive_fields`); tile purity for mosaics
  (:mod:`structlearn.structure.locality`);
- ``gabor``: median Gabor-fit R^2, frequency, widths, Ringach's (n_x, n_y)
  (:mod:`structlearn.structure.gabor`);
- ``sharing``: every unit as one of ``C`` shared kernels with its own gain and position
  (:mod:`structlearn.structure.sharing`): the weight error against ``C``, ``C`` at its knee,
  the kernels' coverage (1: every non-empty unit) and the error of the unit responses on the
  held-out inputs (:func:`sharing_section`; for colour units, on their whole colour fields);
- ``conv``: the strict (exact-sharing) view: channels, kernel size, stride, padding, coverage, pooling
  (:func:`structlearn.structure.conv.conv_from_filters`) and the equivalence error
  ``||dense(x) - conv(x)|| / ||dense(x)||`` on real held-out inputs ``x``; for mosaics, the
  tile containment of the channel kernels (:func:`kernel_tile_containment`).

A read-out that has nothing to read (no weight sharing on a tiny run, all units empty, a
layer whose inputs are not images) is not an error of the run: its section holds
``{"error": reason}`` instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from structlearn.structure.conv import ConvReadout, conv_from_filters, equivalence_error
from structlearn.structure.gabor import GaborFit, fit_gabor, gabor_summary
from structlearn.structure.locality import locality_summary, single_tile, tile_purity
from structlearn.structure.receptive_fields import check_filters, receptive_field_stats, receptive_field_summary
from structlearn.structure.sharing import SharedKernels, fit_shared_kernels

__all__ = ["STRUCTURE_COLUMNS", "LayerStructure", "format_structure_table", "kernel_tile_containment", "placed_kernels",
           "read_layer", "sharing_section", "structure_rows"]


@dataclass
class LayerStructure:
    summary: dict[str, Any]  # JSON-ready numbers (the layer's entry in structure.json)
    gabor: GaborFit | None  # per-unit fits (None when the fit failed)
    conv: ConvReadout | None  # the convolution read-out (None when there is none)
    shared: SharedKernels | None = None  # full-coverage sharing at the knee (None when not fitted)


def placed_kernels(readout: ConvReadout) -> Tensor:
    """Each covered unit's channel kernel placed where the conv puts it, cut to the image:
    ``(n_covered, H, W)`` with ``K_c`` at top-left ``(o_y s_y - p_y, o_x s_x - p_x)``."""
    k = readout.kernel_size
    h, w = readout.input_shape
    cov = readout.covered
    ch, oy, ox = readout.channel[cov], readout.out_y[cov], readout.out_x[cov]
    top = oy * readout.stride[0] - readout.padding[0]  # (m,), in [-(k-1), H-1]
    left = ox * readout.stride[1] - readout.padding[1]
    m = int(cov.sum())
    canvas = torch.zeros(m, h + 2 * k, w + 2 * k, dtype=readout.kernels.dtype, device=readout.kernels.device)
    ar = torch.arange(k, device=canvas.device)
    rows = (top + k)[:, None, None] + ar[None, :, None]  # (m, k, 1)
    cols = (left + k)[:, None, None] + ar[None, None, :]  # (m, 1, k)
    canvas[torch.arange(m, device=canvas.device)[:, None, None], rows, cols] = readout.kernels[ch]
    return canvas[:, k:k + h, k:k + w]


def _tile_size(tile_map: Tensor) -> tuple[int, int]:
    """Largest row and column extent of any tile of a ``(H, W)`` tile map."""
    hs, ws = [], []
    for t in torch.unique(tile_map):
        r, c = (tile_map == t).nonzero(as_tuple=True)
        hs.append(int(r.max() - r.min()) + 1)
        ws.append(int(c.max() - c.min()) + 1)
    return max(hs), max(ws)


def kernel_tile_containment(readout: ConvReadout, tile_map: Tensor, rel_support: float = 0.1) -> dict[str, Any]:
    """Do the conv kernels fit inside one mosaic tile?

    A kernel's support is ``|K| >= rel_support * max|K|`` (the default pruner's rule). Per channel:
    the support's bounding box ``(rows, cols)``, ``fits_tile`` (box within the tile size) and the
    share of its placements (one per covered unit) whose support lies in a single tile. Overall:
    ``single_tile_fraction`` over covered units and the median energy share of a placed kernel in
    its dominant tile (``tile_purity_median``; chance ``1 / n_tiles``).
    """
    if not 0 <= rel_support < 1:
        raise ValueError(f"rel_support={rel_support!r} out of range; allowed: [0, 1)")
    if tuple(tile_map.shape) != tuple(readout.input_shape):
        raise ValueError(f"tile_map shape {tuple(tile_map.shape)} != input shape {tuple(readout.input_shape)}")
    if not bool(readout.covered.any()):
        raise ValueError("no unit is covered by a channel; no kernel placement to check")
    k = readout.kernels
    support = k.abs() >= rel_support * k.abs().flatten(1).amax(1)[:, None, None]  # (C, k, k)
    th, tw = _tile_size(tile_map)
    placed = placed_kernels(readout)  # (m, H, W)
    placed_support = torch.where(placed.abs() >= rel_support * placed.abs().flatten(1).amax(1).clamp_min(1e-30)[:, None, None],
                                 torch.ones_like(placed), torch.zeros_like(placed))
    tm = tile_map.to(placed.device)
    one = single_tile(placed_support, tm)  # (m,)
    pur = tile_purity(placed, tm)  # (m,)
    ch = readout.channel[readout.covered]
    channels = []
    for c in range(k.shape[0]):
        r, q = support[c].nonzero(as_tuple=True)
        box = (int(r.max() - r.min()) + 1, int(q.max() - q.min()) + 1)
        sel = ch == c
        channels.append({"channel": c, "units": int(sel.sum()), "support_box": list(box),
                         "fits_tile": box[0] <= th and box[1] <= tw,
                         "single_tile_fraction": float(one[sel].double().mean()) if bool(sel.any()) else float("nan")})
    return {
        "tile_size": [th, tw],
        "rel_support": rel_support,
        "channels_fit_tile": sum(c["fits_tile"] for c in channels),
        "single_tile_fraction": float(one.double().mean()),
        "tile_purity_median": float(pur.median()),
        "chance_purity": 1.0 / int(torch.unique(tile_map).numel()),
        "per_channel": channels,
    }


def _section(fn, *args, **kwargs) -> tuple[Any, dict[str, Any]]:
    """Run one read-out; a ``ValueError`` (nothing to read) becomes ``{"error": reason}``."""
    try:
        return fn(*args, **kwargs), {}
    except ValueError as e:
        return None, {"error": str(e)}


def read_layer(
    filters: Tensor,
    *,
    inputs: Tensor | None = None,
    tile_map: Tensor | None = None,
    groups: Tensor | None = None,
    gabor_steps: int = 300,
    gabor_starts: int = 4,
    conv_kwargs: dict[str, Any] | None = None,
    sharing: bool = True,
) -> LayerStructure:
    """Every read-out of one image layer.

    Args:
        filters: ``(n_units, H, W)`` effective (pruned) weights.
        inputs: ``(n_samples, H, W)`` real held-out inputs for the equivalence error (None: skipped).
        tile_map: ``(H, W)`` long for mosaics: tile purity and the kernels' tile containment.
        groups: ``(n_units,)`` group id per unit (group sparse coding, pooled energy) -> pooling.
        gabor_steps, gabor_starts: :func:`fit_gabor` budget.
        conv_kwargs: extra arguments of :func:`conv_from_filters` (threshold, max_shift, ...).
        sharing: fit the full-coverage shared kernels and their error-vs-C curve.
    """
    check_filters(filters)
    f = filters.detach()
    n, h, w = f.shape
    out: dict[str, Any] = {"input_shape": [h, w], "n_units": n}
    loc = locality_summary(f, tile_map)
    out["density"] = loc["density"]
    out["empty_units"] = loc["empty_units"]
    rf, err = _section(lambda: receptive_field_summary(receptive_field_stats(f, k=min(5, h, w))))
    out["receptive_fields"] = err or {**rf, **{k: v for k, v in loc.items()
                                               if k.startswith(("tile_purity", "single_tile", "chance", "participation"))}}
    fit, err = _section(fit_gabor, f, steps=gabor_steps, n_starts=gabor_starts)
    summary, err2 = (None, err) if fit is None else _section(gabor_summary, fit)
    out["gabor"] = err2 or summary
    readout, err = _section(conv_from_filters, f, groups=groups, **(conv_kwargs or {}))
    if readout is None:
        out["conv"] = err
    else:
        conv = readout.to_dict()
        conv["units_per_channel"] = torch.bincount(readout.channel[readout.covered], minlength=readout.channels).tolist()
        if inputs is None:
            conv["equivalence_error"] = None
        else:
            e, err = _section(equivalence_error, f, readout, inputs.reshape(-1, h, w))
            conv["equivalence_error"] = float(e) if e is not None else err["error"]
            conv["equivalence_inputs"] = int(inputs.shape[0])
        if tile_map is not None:
            tc, err = _section(kernel_tile_containment, readout, tile_map)
            conv["tile_containment"] = err or tc
        out["conv"] = conv
    shared = None
    if sharing:
        shared, out["sharing"] = sharing_section(f, inputs)
    return LayerStructure(out, fit, readout, shared)


def sharing_section(filters: Tensor, inputs: Tensor | None = None) -> tuple[SharedKernels | None, dict[str, Any]]:
    """The full-coverage shared kernels of ``filters`` (``(n, H, W)``, or colour ``(n, c, H, W)``:
    kernels ``(C, c, k, k)``) at the knee, and the ``sharing`` section of ``structure.json``: the
    fit's numbers, the error-vs-C curve and, given real ``inputs`` (``(m, *filters.shape[1:])``),
    the response error ``||W x - W_hat x|| / ||W x||`` over them; ``(None, {"error": ...})``
    when there is nothing to share."""
    f = filters.detach()
    got, err = _section(fit_shared_kernels, f.double())
    if got is None:
        return None, err
    shared, curve = got
    sec = {**shared.to_dict(), "knee_C": curve["knee_C"], "chosen_by": curve["chosen_by"],
           "curve": {"C": curve["C"], "weight_error": curve["weight_error"]}}
    if inputs is not None:
        x = inputs.reshape(-1, *f.shape[1:]).double()
        d = x.flatten(1) @ f.double().flatten(1).T
        approx = x.flatten(1) @ shared.dense().flatten(1).T  # = shared.conv_responses(x) (tested), far cheaper
        sec["response_error"] = float((d - approx).norm() / d.norm().clamp_min(1e-300))
    return shared, sec


# ---------------------------------------------------------------------------- table

def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{nd}g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt(x) for x in v)
    return str(v)


STRUCTURE_COLUMNS = ("layer", "units", "density", "channels", "kernel", "stride", "pool", "coverage", "equiv. err",
                     "Gabor R2 (median)", "kernels in 1 tile", "shared C", "shared: weight / response err")


def structure_rows(structure: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """``(rows, notes)``: one row of :data:`STRUCTURE_COLUMNS` per layer (formatted strings) and
    one note per failed read-out with its reason."""
    rows, notes = [], []
    for e in structure.get("layers", []):
        conv = e.get("conv") or {}
        gab = e.get("gabor") or {}
        tc = conv.get("tile_containment") or {}
        pool = conv.get("pooling")
        eq = conv.get("equivalence_error")
        sh = e.get("sharing") or {}
        rows.append([
            _fmt(e.get("layer")), _fmt(e.get("n_units")), _fmt(e.get("density")),
            _fmt(conv.get("channels")), _fmt(conv.get("kernel_size")), _fmt(conv.get("stride")),
            _fmt(pool["kernel_size"]) + "/" + _fmt(pool["stride"]) if pool else "-",
            _fmt(conv.get("coverage")), _fmt(eq) if not isinstance(eq, str) else "n/a",
            _fmt(gab.get("median_r2")),
            f"{tc['channels_fit_tile']}/{conv.get('channels')} ch, {tc['single_tile_fraction']:.2f} units"
            if "channels_fit_tile" in tc else "-",
            (f"{sh['channels']} ({'knee' if sh.get('chosen_by') == 'knee' else 'no knee'}, k {sh['kernel_size']}, "
             f"cov. {_fmt(sh['coverage'])})") if "channels" in sh else "-",
            f"{_fmt(sh['weight_error'])} / {_fmt(sh.get('response_error'))}" if "weight_error" in sh else "-",
        ])
        for key in ("error",):
            if key in e:
                notes.append(f"layer {e.get('layer')}: {e[key]}")
        if isinstance(e.get("color"), dict):
            c = e["color"]
            notes.append(f"layer {e.get('layer')} colour: the kernels and Gabor fits are those of each unit's dominant "
                         f"colour component (the shared kernels are fitted to the whole colour fields), which holds "
                         f"{_fmt(c['separability_median'])} of a unit's energy (median); "
                         f"{_fmt(c['achromatic_fraction'])} of the units are achromatic (within 25 degrees of grey)")
        for sec in ("receptive_fields", "gabor", "conv", "sharing"):
            if isinstance(e.get(sec), dict) and "error" in e[sec]:
                notes.append(f"layer {e.get('layer')} {sec}: {e[sec]['error']}")
        if isinstance(eq, str):
            notes.append(f"layer {e.get('layer')} equivalence error: {eq}")
        if "error" in tc:
            notes.append(f"layer {e.get('layer')} tile containment: {tc['error']}")
    return rows, notes


def format_structure_table(structure: dict[str, Any]) -> str:
    """A markdown table, one row per layer, then one line per failed read-out with its reason."""
    cols = STRUCTURE_COLUMNS
    rows, notes = structure_rows(structure)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + ([""] + notes if notes else []))
