"""The read-out workflow: the structure of every finished layer of a run, written once.

``structure.json`` holds, per layer, what :func:`structlearn.structure.readout.read_layer`
measures (density, receptive fields, Gabor fits, the convolution read-out with its
equivalence error and tile containment), and the options it was computed with
(``conv_kwargs``); ``structure_kernels.pt`` holds the shared kernels. ``report`` and
``export`` both go through :func:`ensure_structure`, so they read one result, computed with the
same options (a different ``--threshold`` recomputes and rewrites both files).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor

from structlearn.io import atomic_torch_save, atomic_write_json
from structlearn.runs.run import STRUCTURE_VERSION, Run
from structlearn.structure.color import color_conv, color_equivalence_error, color_split, color_summary
from structlearn.structure.conv import _crops
from structlearn.structure.gabor import GaborFit
from structlearn.structure.locality import locality_summary
from structlearn.structure.readout import LayerStructure, read_layer, sharing_section
from structlearn.structure.receptive_fields import receptive_field_stats
from structlearn.viz.gabor_montage import save_gabor_montage
from structlearn.viz.montage import filters_to_rgb, save_png, upscale


def ensure_structure(run: Run, conv_kwargs: dict[str, Any] | None = None, *, recompute: bool = False,
                     **kwargs: Any) -> dict[str, Any]:
    """``structure.json`` of ``run`` computed with ``conv_kwargs``: read when it exists with the
    same options, else computed and written (:func:`run_structure`)."""
    conv_kwargs = dict(conv_kwargs or {})
    cached = None if recompute else run.structure()
    if cached is not None and cached.get("conv_kwargs", {}) == conv_kwargs:
        return cached
    return run_structure(run, conv_kwargs=conv_kwargs, **kwargs)


def run_structure(run: Run, *, write: bool = True, gabor_steps: int = 300, max_inputs: int = 2000, pngs: bool = True,
                  conv_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read the structure of every finished layer; write ``structure.json``,
    ``structure_kernels.pt`` (and ``structure_gabor_layer0.png``, ``structure_kernels_layer0.png``)
    when ``write``. The equivalence error uses up to ``max_inputs`` held-out samples;
    ``conv_kwargs`` go to :func:`~structlearn.structure.conv.conv_from_filters` (e.g. ``{"threshold": 0.8}``).
    A layer that has nothing to read records ``{"error": reason}`` instead."""
    cfg = run.cfg
    layers: list[dict[str, Any]] = []
    kernels: dict[str, Tensor] = {}
    shared: dict[str, dict[str, Tensor]] = {}
    for li, lcfg in enumerate(cfg.layers):
        entry: dict[str, Any] = {"layer": li, "objective": lcfg.objective}
        try:
            W = run.weights(li)  # (n_units, n_in)
        except ValueError as e:
            layers.append({**entry, "error": str(e)})
            continue
        entry["density"] = float((W != 0).double().mean())
        entry["n_units"] = int(W.shape[0])
        if li > 0:
            entry["error"] = (f"layer {li} reads the codes of layer {li - 1}, not an image: no spatial read-out "
                              "(receptive fields, Gabor fit, convolution) for it")
            layers.append(entry)
            continue
        shape = run.input_shape(li)
        if shape[0] == 1:
            entry["error"] = (f"the samples are vectors of {shape[1]} values (data.kind {cfg.data.kind!r}), not images: "
                              "no spatial read-out (receptive fields, Gabor fit, convolution)")
            layers.append(entry)
            continue
        filters = W.reshape(W.shape[0], *shape)
        x_full = run.data.test[:max_inputs].float().reshape(-1, *shape)
        x: Tensor | None = x_full
        color, cc = None, None
        if len(shape) == 3:  # colour: the spatial read-outs see each unit's dominant colour component
            full, split = filters, color_split(filters)
            color = {**color_summary(split), "locality": locality_summary(filters, run.data.tile_map),
                     "read_out_on": "each unit's dominant colour component (structlearn.structure.color)"}
            filters, x = split.spatial, None
        ls = read_layer(filters, inputs=x, tile_map=run.data.tile_map, groups=run.groups(li), gabor_steps=gabor_steps,
                        conv_kwargs=conv_kwargs, sharing=color is None)
        if color is not None:  # colour kernels (C, 3, k, k) shared by the whole colour fields
            shared_colour, sec = sharing_section(full, x_full)
            ls = replace(ls, summary={**ls.summary, "sharing": sec}, shared=shared_colour)
        entry.update(ls.summary)
        if color is not None:  # the layer's own shape and density, not its dominant components'
            if ls.conv is not None:
                cc = color_conv(ls.conv, split)
                err = float(color_equivalence_error(full, ls.conv, cc, x_full))
                color["conv"] = {"equivalence_error": err, "equivalence_inputs": int(x_full.shape[0]),
                                 "coherence_median": float(cc.coherence.median()), "channel_colours": cc.colour.tolist()}
                entry["conv"].update(equivalence_error=err, equivalence_inputs=int(x_full.shape[0]))  # the colour conv's
            entry.update(color=color, input_shape=list(shape), density=float((W != 0).double().mean()))
        if ls.conv is not None:
            kernels[str(li)] = (ls.conv.kernels if cc is None else cc.kernels).detach().cpu()
        if ls.shared is not None:
            sh = ls.shared
            shared[str(li)] = {"kernels": sh.kernels.cpu(), "channel": sh.channel.cpu(), "gain": sh.gain.cpu(),
                               "top": sh.top.cpu(), "left": sh.left.cpu()}
        if write and pngs:
            entry["pngs"] = _layer_pngs(run, li, filters, ls, None if cc is None else cc.kernels)
        layers.append(entry)
    out = {"version": STRUCTURE_VERSION, "run": run.name, "kind": cfg.data.kind, "input_shape": list(run.data.input_shape),
           "conv_kwargs": dict(conv_kwargs or {}), "layers": layers}
    if cfg.data.kind == "mosaic":
        out["tile"] = list(cfg.data.tile)
        out["grid"] = list(cfg.data.grid)
    if write:
        atomic_torch_save(run.file("structure_kernels.pt"), {"kernels": kernels, "shared": shared})
        atomic_write_json(run.file("structure.json"), out)
    return out


def _layer_pngs(run: Run, li: int, filters: Tensor, ls: LayerStructure, colour_kernels: Tensor | None = None,
                crop: int = 12) -> list[str]:
    """Filters beside their Gabor fits (first 64 non-empty units; inputs larger than 16 pixels
    are cut to a ``crop x crop`` window around each unit's centre of mass) and the conv kernels
    (in colour when given)."""
    names = []
    live = (filters.flatten(1).abs().amax(1) > 0).nonzero()[:, 0][:64]
    if ls.gabor is not None and live.numel():
        f = filters[live]
        sub = GaborFit(**{k: v[live] for k, v in ls.gabor.as_dict().items()})
        h, w = f.shape[1:]
        if max(h, w) > 16:  # small units in a large input: show a window around each one
            c = min(crop, h, w)
            com = receptive_field_stats(f, k=1)["com"].round().long()  # (m, 2)
            top = (com[:, 0] - c // 2).clamp(0, h - c)
            left = (com[:, 1] - c // 2).clamp(0, w - c)
            f = _crops(f, top, left, c)
            sub = replace(sub, x0=sub.x0 - left.to(sub.x0.dtype), y0=sub.y0 - top.to(sub.y0.dtype))
        name = f"structure_gabor_layer{li}.png"
        save_gabor_montage(run.file(name), f, sub, max_units=64, min_side=768)
        names.append(name)
    if ls.conv is not None:
        name = f"structure_kernels_layer{li}.png"
        bank = ls.conv.kernels if colour_kernels is None else colour_kernels
        save_png(run.file(name), upscale(filters_to_rgb(bank.cpu().double().numpy()), 384))
        names.append(name)
    return names
