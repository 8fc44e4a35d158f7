"""NAS search spaces centred on a discovered structlearn architecture spec.

The discovered spec says *which* operations the data asked for (convolutions of a certain
support and stride, energy pooling); a NAS search then only tunes their sizes. The space
for a conv stage with C channels, k x k kernels and stride s is

    channels in {C/2, C, 2C},  kernel in {k-2, k, k+2} (same parity, >= 1),  stride in {s, s+1}
    (clipped at 1), and each pool stage may be kept or dropped. A shared_conv stage (every unit
    of the layer on C shared k x k kernels) becomes, in a sampled spec, a conv2d trained from
    scratch: channels and kernel as above, stride in {1, 2}, "same" padding. A dense stage
    (other than the last) may be 1/2, 1 or 2 times as wide.

Formats of the same space (parameter names are the ones :func:`suggest_spec` uses):
``distributions(spec)`` (Optuna distributions; the ``optuna`` exporter writes them with
``optuna.distributions.distribution_to_json``), ``syne_config_space(spec)`` (Syne Tune's
config-space JSON; the ``syne`` exporter), ``ray_space(spec)`` (Ray Tune has no JSON form of a
search space: the ``ray`` exporter writes ``{"param_space": {name: {"choice": [...]}},
"points_to_evaluate": [...]}`` and :func:`load_ray_space` turns it into ``ray.tune.choice``
domains), ``discovered_params(spec)`` (the discovered architecture as one point of the space)
and ``seed_study(study, spec)`` (enqueue it as the first trial, so a search starts from what
discovery found; Syne Tune and Ray Tune take it as ``points_to_evaluate``).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

__all__ = ["CNN_SPACE", "cnn_distributions", "cnn_params_from_discovery", "cnn_spec", "discovered_params",
           "distributions", "load_ray_space", "model_factory", "ray_space", "register",
           "register_timm", "search_space", "seed_study", "suggest_spec", "syne_config_space", "unit_geometry"]


def _choices(v: int, deltas: tuple[int, ...], low: int = 1) -> list[int]:
    return sorted({max(low, v + d) for d in deltas})


def search_space(spec: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready search space: ``{"stages": [{"index": i, "param": [choices...]}, ...]}``."""
    from structlearn.export import validate_spec

    validate_spec(spec)
    out = []
    last_dense = max([i for i, st in enumerate(spec["stages"]) if st["type"] == "dense"], default=-1)
    for i, st in enumerate(spec["stages"]):
        if st["type"] == "conv2d":
            c, k, s = st["out_channels"], st["kernel_size"][0], st["stride"][0]
            out.append({"index": i, "type": "conv2d",
                        "out_channels": sorted({max(1, c // 2), c, 2 * c}),
                        "kernel_size": [x for x in _choices(k, (-2, 0, 2)) if x % 2 == k % 2],
                        "stride": _choices(s, (0, 1))})
        elif st["type"] == "shared_conv":
            c, k = st["out_channels"], st["kernel_size"][0]
            out.append({"index": i, "type": "shared_conv", "out_channels": sorted({max(1, c // 2), c, 2 * c}),
                        "kernel_size": [x for x in _choices(k, (-2, 0, 2)) if x % 2 == k % 2], "stride": [1, 2]})
        elif st["type"] == "pool":
            out.append({"index": i, "type": "pool", "keep": [True, False]})
        elif st["type"] == "dense" and i < last_dense:
            n = st["out_features"]
            out.append({"index": i, "type": "dense", "out_features": sorted({max(1, n // 2), n, 2 * n})})
    return {"format": "structlearn.nas_space", "version": 1, "base": spec, "stages": out}


PARAMS = {"conv2d": (("channels", "out_channels"), ("kernel", "kernel_size"), ("stride", "stride")),
          "shared_conv": (("channels", "out_channels"), ("kernel", "kernel_size"), ("stride", "stride")),
          "dense": (("width", "out_features"),), "pool": (("keep", "keep"),)}


def distributions(spec: dict[str, Any]) -> dict[str, Any]:
    """``{param name: optuna.distributions.CategoricalDistribution}``, the names of :func:`suggest_spec`."""
    from optuna.distributions import CategoricalDistribution

    return {f"s{st['index']}_{name}": CategoricalDistribution(st[key])
            for st in search_space(spec)["stages"] for name, key in PARAMS[st["type"]]}


def syne_config_space(spec: dict[str, Any]) -> dict[str, Any]:
    """The space in Syne Tune's JSON form (what ``syne_tune.config_space.config_space_to_json_dict``
    writes and ``config_space_from_json_dict`` reads: one ``Categorical`` domain per parameter,
    uniform sampler), keyed by the names of :func:`suggest_spec`. Seed a Syne Tune scheduler
    with ``points_to_evaluate=[discovered_params(spec)]``."""
    return {f"s{st['index']}_{name}": {"domain_cls": "Categorical", "domain_kwargs": {"categories": list(st[key])},
                                       "sampler_cls": "Uniform", "sampler_kwargs": {}}
            for st in search_space(spec)["stages"] for name, key in PARAMS[st["type"]]}


RAY_FORMAT = "structlearn.ray_param_space"


def ray_space(spec: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready Ray Tune space: ``{"format", "version": 1, "param_space": {name: {"choice":
    [...]}}, "points_to_evaluate": [discovered_params(spec)]}``, keyed by the names of
    :func:`suggest_spec`. :func:`load_ray_space` makes it Ray's own objects."""
    return {"format": RAY_FORMAT, "version": 1,
            "param_space": {f"s{st['index']}_{name}": {"choice": list(st[key])}
                            for st in search_space(spec)["stages"] for name, key in PARAMS[st["type"]]},
            "points_to_evaluate": [discovered_params(spec)]}


def load_ray_space(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(param_space, points_to_evaluate)`` for ``ray.tune.Tuner(param_space=...)`` and a search
    algorithm's ``points_to_evaluate`` (e.g. ``ray.tune.search.optuna.OptunaSearch``), from the
    ``ray`` export (a path or its dict). Needs ``ray[tune]``."""
    import json

    d = json.loads(Path(source).read_text()) if isinstance(source, (str, Path)) else source
    if not isinstance(d, dict) or d.get("format") != RAY_FORMAT or d.get("version") != 1:
        raise ValueError(f"not a structlearn Ray Tune space (format must be {RAY_FORMAT!r}, version 1)")
    bad = [k for k, v in d["param_space"].items() if not (isinstance(v, dict) and set(v) == {"choice"}
                                                          and isinstance(v["choice"], list) and v["choice"])]
    if bad:
        raise ValueError(f"param_space entries {bad}; allowed: {{'choice': [a non-empty list]}}")
    try:
        from ray import tune
    except ImportError as e:
        raise ValueError(f"load_ray_space needs ray[tune] ({e.name} is missing); allowed: pip install 'ray[tune]'") from None
    return {k: tune.choice(v["choice"]) for k, v in d["param_space"].items()}, list(d.get("points_to_evaluate", []))


def discovered_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The discovered architecture as a point of the space (stride 1 for a shared_conv)."""
    base = spec["stages"]
    out: dict[str, Any] = {}
    for st in search_space(spec)["stages"]:
        b, i = base[st["index"]], st["index"]
        if st["type"] in ("conv2d", "shared_conv"):
            out.update({f"s{i}_channels": b["out_channels"], f"s{i}_kernel": b["kernel_size"][0],
                        f"s{i}_stride": b.get("stride", [1, 1])[0]})
        elif st["type"] == "dense":
            out[f"s{i}_width"] = b["out_features"]
        else:
            out[f"s{i}_keep"] = True
    return out


def seed_study(study: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Enqueue the discovered architecture as the study's next trial (``study.enqueue_trial``);
    returns the enqueued parameters."""
    params = discovered_params(spec)
    study.enqueue_trial(params, user_attrs={"seeded_from": spec.get("source", {}).get("run", "spec")})
    return params


def suggest_spec(trial, spec: dict[str, Any]) -> dict[str, Any]:
    """A concrete spec sampled by an Optuna ``trial`` from :func:`search_space` (validated)."""
    from structlearn.export import validate_spec

    space = search_space(spec)
    new = copy.deepcopy(spec)
    drop = set()
    for st in space["stages"]:
        i = st["index"]
        if st["type"] == "conv2d":
            c = trial.suggest_categorical(f"s{i}_channels", st["out_channels"])
            k = trial.suggest_categorical(f"s{i}_kernel", st["kernel_size"])
            s = trial.suggest_categorical(f"s{i}_stride", st["stride"])
            new["stages"][i].update(out_channels=c, kernel_size=[k, k], stride=[s, s])
            pad = new["stages"][i]["padding"][0]
            new["stages"][i]["padding"] = [min(pad, k // 2)] * 2
        elif st["type"] == "shared_conv":  # trained from scratch: a plain conv with "same" padding
            c = trial.suggest_categorical(f"s{i}_channels", st["out_channels"])
            k = trial.suggest_categorical(f"s{i}_kernel", st["kernel_size"])
            s = trial.suggest_categorical(f"s{i}_stride", st["stride"])
            new["stages"][i] = {"type": "conv2d", "out_channels": c, "kernel_size": [k, k], "stride": [s, s],
                                "padding": [k // 2, k // 2], "evidence": dict(spec["stages"][i].get("evidence", {}),
                                                                                from_shared_conv=True)}
        elif st["type"] == "dense":
            n = trial.suggest_categorical(f"s{i}_width", st["out_features"])
            new["stages"][i] = {k: v for k, v in new["stages"][i].items() if k != "masked"}  # a new width: fresh weights
            new["stages"][i]["out_features"] = n
        elif not trial.suggest_categorical(f"s{i}_keep", st["keep"]):
            drop.add(i)
    new["stages"] = [st for i, st in enumerate(new["stages"]) if i not in drop]
    new["source"] = dict(new.get("source", {}), nas_trial=trial.number)
    validate_spec(new)
    return new


# ----------------------------------------------------------------------------- a generic CNN space
# What a NAS user searches when nothing was discovered: one conv layer (channels, kernel, stride),
# an activation, optional 2 x 2 energy pooling, then the classifier head. The discovered first
# layer is one point of it (cnn_params_from_discovery); seeding a search with that point, against
# the same search unseeded, is what experiments/nas_seeded.py measures.
CNN_SPACE: dict[str, list[Any]] = {"channels": [2, 4, 8, 16, 32, 64], "kernel": [3, 5, 7, 9, 11],
                                   "stride": [1, 2, 3, 4], "pool": [False, True], "activation": ["relu", "abs"]}


def cnn_distributions() -> dict[str, Any]:
    """The generic CNN space as Optuna distributions."""
    from optuna.distributions import CategoricalDistribution

    return {k: CategoricalDistribution(v) for k, v in CNN_SPACE.items()}


def cnn_spec(params: dict[str, Any], input_shape: tuple[int, ...]) -> dict[str, Any]:
    """The spec of one point of :data:`CNN_SPACE` ("same" padding, pooling only where the map is
    at least 2 x 2) for inputs ``(H, W)`` or ``(C, H, W)`` (colour: ``C = 3``)."""
    from structlearn.export import make_spec

    bad = {k: params.get(k) for k in CNN_SPACE if params.get(k) not in CNN_SPACE[k]}
    if bad:
        raise ValueError(f"CNN parameters {bad}; allowed: {CNN_SPACE}")
    k, s = params["kernel"], params["stride"]
    stages: list[dict[str, Any]] = [
        {"type": "conv2d", "out_channels": params["channels"], "kernel_size": [k, k], "stride": [s, s],
         "padding": [k // 2, k // 2]},
        {"type": "activation", "fn": params["activation"]}]
    side = min((n + 2 * (k // 2) - k) // s + 1 for n in tuple(input_shape)[-2:])
    if params["pool"] and side >= 2:
        stages.append({"type": "pool", "kind": "l2", "kernel_size": [2, 2], "stride": [2, 2]})
    return make_spec(tuple(input_shape), stages, {"nas": "cnn_space"})


def _nearest(v: float, choices: list[int]) -> int:
    return min(choices, key=lambda c: (abs(math.log(c) - math.log(max(v, 1e-9))), c))


def _bbox(support: Any) -> tuple[Any, Any, Any, Any]:
    """First and last row and column of each ``(n, a, b)`` boolean support (empty: 0, -1)."""
    import torch

    rows, cols = support.any(2), support.any(1)  # (n, a), (n, b)
    ar, ac = torch.arange(rows.shape[1]), torch.arange(cols.shape[1])
    big = max(rows.shape[1], cols.shape[1])
    return (torch.where(rows, ar, big).amin(1), torch.where(rows, ar, -1).amax(1),
            torch.where(cols, ac, big).amin(1), torch.where(cols, ac, -1).amax(1))


def unit_geometry(spec: dict[str, Any], kernels: list[Any]) -> tuple[Any, Any]:
    """``(centres (n, 2), sides (n,))`` of the live units of a shared_conv or masked dense first
    stage: the centre and the longer side of each unit's receptive-field bounding box, in input
    pixels (a shared kernel's support is its entries above 1e-6 of its largest, a colour kernel's
    the pixels where any channel's is; a colour unit's field is the pixels where any of its
    channels is unmasked)."""
    import torch

    first, p = spec["stages"][0], kernels[0]
    if first["type"] == "shared_conv":
        k = p["kernels"].abs()
        k = k if k.ndim == 3 else k.amax(1)  # colour kernels (C, 3, k, k): the pixels where any channel is
        support = k > 1e-6 * k.flatten(1).amax(1).clamp_min(1e-30)[:, None, None]
        r0, r1, c0, c1 = _bbox(support)
        live = p["channel"] >= 0
        ch = p["channel"][live]
        top, left = p["top"][live].float(), p["left"][live].float()
        centres = torch.stack([top + (r0[ch] + r1[ch]) / 2, left + (c0[ch] + c1[ch]) / 2], 1)
        sides = torch.maximum(r1[ch] - r0[ch] + 1, c1[ch] - c0[ch] + 1)
    else:
        h, w = spec["input"]["shape"]
        m = (p["mask"] != 0).reshape(-1, spec["input"].get("channels", 1), h, w).any(1)  # a pixel: any channel
        m = m[m.flatten(1).any(1)]
        r0, r1, c0, c1 = _bbox(m)
        centres = torch.stack([(r0 + r1) / 2, (c0 + c1) / 2], 1).float()
        sides = torch.maximum(r1 - r0 + 1, c1 - c0 + 1)
    return centres, sides


def cnn_params_from_discovery(spec: dict[str, Any], kernels: list[Any] | None = None,
                              activation: str = "relu") -> dict[str, Any]:
    """The discovered first layer as a point of :data:`CNN_SPACE`.

    - a ``conv2d`` stage: its channels, kernel and stride, each snapped to the nearest choice;
    - a ``shared_conv`` or masked ``dense`` stage (needs ``kernels``: the shared kernels and unit
      places, or the weight and mask): kernel = the median side of the units' receptive-field
      bounding boxes; stride = the median spacing between the distinct (rounded) row and column
      coordinates of the receptive-field centres (the lattice's step); channels = live units per
      distinct centre. A planted lattice of c units on every k x k window at step s gives (c, k, s).

    ``pool`` is True when the spec pools; ``activation`` is the supervised net's (the
    discovering run's nonlinearity is not a supervised choice)."""
    h, w = spec["input"]["shape"]
    first = spec["stages"][0]
    pool = any(st["type"] == "pool" or (st["type"] == "activation" and st["fn"] == "group_l2") for st in spec["stages"])
    if first["type"] == "conv2d":
        c, k, s = first["out_channels"], first["kernel_size"][0], first["stride"][0]
    elif first["type"] == "shared_conv" or (first["type"] == "dense" and first.get("masked")):
        import torch

        if kernels is None or not isinstance(kernels[0], dict):
            raise ValueError(f"a {first['type']} first stage needs its kernels (the export's _kernels.pt) to place its units")
        centres, sides = unit_geometry(spec, kernels)
        grid = centres.round()
        places = grid.unique(dim=0).shape[0]
        gaps = [torch.diff(grid[:, a].unique()) for a in (0, 1)]
        gaps = [g for g in gaps if g.numel()]
        k = float(sides.float().median())
        s = float(torch.cat(gaps).float().median()) if gaps else 1.0  # the lattice spacing of the centres
        c = centres.shape[0] / places  # units per place
    else:
        raise ValueError(f"first stage {first['type']!r}; allowed: conv2d, shared_conv, masked dense")
    return {"channels": _nearest(c, CNN_SPACE["channels"]), "kernel": min(CNN_SPACE["kernel"], key=lambda v: (abs(v - k), v)),
            "stride": min(CNN_SPACE["stride"], key=lambda v: (abs(v - s), v)), "pool": pool, "activation": activation}


def model_factory(spec_path: str | Path, name: str) -> Any:
    """``structlearn_<name>(pretrained=False, num_classes=10, **kwargs)``: a timm-style factory of
    :class:`structlearn.export.model.DiscoveredNet` for the spec at ``spec_path`` (its kernels
    from ``<stem>_kernels.pt`` beside it, when there)."""
    import json

    import torch

    from structlearn.export.model import DiscoveredNet

    spec_path = Path(spec_path)
    spec = json.loads(spec_path.read_text())
    kfile = spec_path.with_name(spec_path.stem + "_kernels.pt")

    def factory(pretrained: bool = False, num_classes: int = 10, pretrained_cfg: Any = None,
                pretrained_cfg_overlay: Any = None, cache_dir: Any = None, **kwargs: Any) -> Any:
        # timm's create_model passes pretrained_cfg, pretrained_cfg_overlay and cache_dir to every
        # entrypoint (timm 1.0 models/_factory.py); the discovered kernels are local, so they are unused
        kernels = torch.load(kfile)["kernels"] if kfile.is_file() else None
        if pretrained and kernels is None:
            raise ValueError(f"pretrained=True needs the discovered kernels: {kfile} is missing")
        return DiscoveredNet(spec, kernels if pretrained or kernels is not None else None, num_classes=num_classes, **kwargs)

    factory.__name__ = f"structlearn_{name}"
    factory.__qualname__ = factory.__name__
    factory.__module__ = __name__
    return factory


def register_timm(spec_path: str | Path, name: str) -> str:
    """Register the spec with timm (``timm.create_model('structlearn_<name>', num_classes=...)``);
    returns the model name. Needs timm (and so torchvision)."""
    try:
        from timm.models import register_model
    except ImportError as e:
        raise ValueError(f"register_timm needs timm ({e.name} is missing); allowed: pip install timm, or use "
                         f"model_factory(spec_path, name) directly") from None
    factory = model_factory(spec_path, name)
    globals()[factory.__name__] = factory  # timm records the defining module's attribute
    register_model(factory)
    return factory.__name__


def register() -> None:
    """Entry point: adds the ``ray``, ``syne``, ``optuna`` and ``optuna_space`` exporters to
    structlearn's EXPORTERS (each writes one JSON file)."""
    from structlearn.export import EXPORTERS
    from structlearn.io import atomic_write_json

    if "optuna_space" in EXPORTERS:
        return

    def optuna_json(spec: dict[str, Any]) -> dict[str, Any]:
        """``{name: distribution JSON}``: ``optuna.distributions.json_to_distribution`` loads each."""
        from optuna.distributions import distribution_to_json

        return {k: distribution_to_json(d) for k, d in distributions(spec).items()}

    def json_exporter(make: Any) -> Any:
        def factory() -> Any:
            def write(spec: dict[str, Any], path: Path) -> None:
                atomic_write_json(path, make(spec))

            write.__doc__ = make.__doc__
            return write

        return factory

    # Ray Tune's choices and the discovered point, Syne Tune's config-space JSON, Optuna's
    # distribution JSON, and the plugin's own space format
    for name, make in (("ray", ray_space), ("syne", syne_config_space), ("optuna", optuna_json),
                       ("optuna_space", search_space)):
        EXPORTERS.register(name)(json_exporter(make))
