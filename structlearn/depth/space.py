"""The search configuration: a discovery config (data, a layer template) plus a ``search:`` block.

    name: search_mosaic            # RunConfig fields, as for `structlearn discover`
    data: {...}
    layers:
      - {objective: sparse_coding, params: {lam: 0.5}, steps: 200, prune: {...}}   # template
    search:                        # SearchSpace fields
      max_depth: 4
      widths: [144, 288, 576]
      sparsity: [0.1, 1.0]

Every layer of a trial is a copy of ``layers[0]`` with its width ``width_l`` (categorical over
``widths``, or over ``widths[l-1]`` when ``widths`` is a list of lists, one per layer), its
sparsity ``params.<sparsity_param> = <sparsity_param>_l`` (log-uniform over
``sparsity``; a fine-tuning value of the same parameter in ``prune.finetune_params`` is scaled
by the same factor, so the template's ratio is kept) and, when ``density`` is given, its
pruning density ``density_l`` (log-uniform; replaces the template's threshold). The depth
``depth`` is an integer in ``[min_depth, max_depth]``; layers are numbered from 1.
``--set search.max_depth=3`` overrides the search block, ``--set data.n_train=2000`` the run.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from structlearn.config import PruneConfig, RunConfig, apply_overrides, from_dict, merge_config, read_yaml_mapping, to_dict
from structlearn.depth.gain import MEASURES
from structlearn.params import check_choice, check_range

PRUNERS = ("stall", "median", "none")


@dataclass(frozen=True)
class SearchSpace:
    n_trials: int = 24  # finished trials (complete + pruned) the study aims for, over all workers
    min_depth: int = 1  # smallest number of trained layers
    max_depth: int = 4  # largest number of trained layers
    widths: tuple = (144, 288, 576)  # n_units choices for every layer, or a list of choices per layer (last: deeper ones)
    sparsity_param: str = "lam"  # the objective hyperparameter searched per layer
    sparsity: tuple[float, float] | None = (0.1, 1.0)  # log-uniform range for it; None: keep the template's
    density: tuple[float, float] | None = None  # log-uniform range for prune.density per layer; None: template's pruning
    measure: str = "total_correlation"  # entropy measure (structlearn.depth.gain.MEASURES)
    eps2: float = 0.5  # coding-rate precision eps^2
    threshold: float = 0.05  # a layer counts while its gain is >= this (share of H_0 when relative)
    relative: bool = True  # gains and threshold as a share of the input's entropy H_0
    pruner: str = "stall"  # "stall": prune when a layer's gain < threshold; "median": Optuna's MedianPruner; "none"
    n_startup_trials: int = 8  # TPE: random trials before the model is used
    heartbeat_s: float = 30.0  # seconds between a running trial's heartbeats
    grace_s: float = 600.0  # a running trial without a heartbeat for this long is stale (other hosts)

    def validate(self) -> None:
        check_range("search.n_trials", self.n_trials, 1, None)
        check_range("search.min_depth", self.min_depth, 1, None)
        check_range("search.max_depth", self.max_depth, self.min_depth, None)
        if not self.widths or not all(_valid_widths(w) for w in self.layer_widths_lists()):
            raise ValueError(f"search.widths={_plain(self.widths)}; allowed: a non-empty list of integers >= 1, "
                             f"or a list of such lists (one per layer)")
        for key, lo, hi in (("sparsity", 0, None), ("density", 0, 1)):
            v = getattr(self, key)
            if v is None:
                continue
            if len(v) != 2 or not (v[0] > lo and v[1] >= v[0] and (hi is None or v[1] <= hi)):
                allowed = f"[low, high] with {lo} < low <= high" + (f" <= {hi}" if hi is not None else "")
                raise ValueError(f"search.{key}={list(v)}; allowed: {allowed}, or null")
        check_choice("search.measure", self.measure, MEASURES)
        check_range("search.eps2", self.eps2, 0, None, low_open=True)
        check_choice("search.pruner", self.pruner, PRUNERS)
        check_range("search.n_startup_trials", self.n_startup_trials, 0, None)
        check_range("search.heartbeat_s", self.heartbeat_s, 0, None, low_open=True)
        check_range("search.grace_s", self.grace_s, 0, None, low_open=True)
        if not self.sparsity_param or not isinstance(self.sparsity_param, str):
            raise ValueError(f"search.sparsity_param={self.sparsity_param!r}; allowed: an objective hyperparameter name")


    def layer_widths_lists(self) -> list[list[int]]:
        """Width choices per layer index ``0..max_depth-1``."""
        w = list(self.widths)
        if not w or not isinstance(w[0], (list, tuple)):
            return [w] * self.max_depth
        return [list(w[min(i, len(w) - 1)]) for i in range(self.max_depth)]


def _valid_widths(w) -> bool:
    return isinstance(w, (list, tuple)) and len(w) > 0 and all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in w)


def _plain(v):
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


@dataclass(frozen=True)
class SearchConfig:
    run: RunConfig = field(default_factory=RunConfig)  # the base run; run.layers[0] is the layer template
    search: SearchSpace = field(default_factory=SearchSpace)

    def to_dict(self) -> dict:
        return {**to_dict(self.run), "search": to_dict(self.search)}

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def fingerprint(self) -> str:
        """8 hex digits over everything except ``search.n_trials`` (a study can be extended) and
        the ``wandb`` section (how it is logged is not part of the experiment)."""
        d = self.to_dict()
        d["search"].pop("n_trials")
        d.pop("wandb")
        return hashlib.sha256(yaml.safe_dump(d, sort_keys=True).encode()).hexdigest()[:8]


def search_config_from_dict(user: dict, overrides: list[str] | None = None) -> SearchConfig:
    """Defaults <- ``user`` mapping <- ``--set`` overrides (``search.*`` go to the search block)."""
    if not isinstance(user, dict):
        raise ValueError("a search config must hold a mapping at the top level")
    user = dict(user)
    search_user = user.pop("search", None) or {}
    if not isinstance(search_user, dict):
        raise ValueError(f"search must be a mapping; got {search_user!r}")
    run_d = merge_config(to_dict(RunConfig()), user, "")
    search_d = merge_config(to_dict(SearchSpace()), search_user, "search.")
    overrides = list(overrides or [])
    is_search = [o.split("=", 1)[0].strip().startswith("search.") for o in overrides]
    apply_overrides({"search": search_d}, [o for o, s in zip(overrides, is_search) if s])
    apply_overrides(run_d, [o for o, s in zip(overrides, is_search) if not s])
    run = from_dict(RunConfig, run_d)
    run.validate()
    space = from_dict(SearchSpace, search_d, "search")
    space.validate()
    return SearchConfig(run, space)


def load_search_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SearchConfig:
    user: Any = {} if path is None else read_yaml_mapping(path)
    return search_config_from_dict(user, overrides)


def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    """Draw (or read back, for an enqueued trial) one trial's architecture."""
    depth = trial.suggest_int("depth", space.min_depth, space.max_depth)
    choices = space.layer_widths_lists()
    for li in range(1, depth + 1):
        trial.suggest_categorical(f"width_{li}", choices[li - 1])
        if space.sparsity is not None:
            trial.suggest_float(f"{space.sparsity_param}_{li}", space.sparsity[0], space.sparsity[1], log=True)
        if space.density is not None:
            trial.suggest_float(f"density_{li}", space.density[0], space.density[1], log=True)
    return dict(trial.params)


def trial_config(cfg: SearchConfig, params: dict[str, Any]) -> RunConfig:
    """The RunConfig of one trial: ``params["depth"]`` copies of the template layer (module docstring)."""
    base, space = cfg.run, cfg.search
    template = base.layers[0]
    depth = int(params["depth"])
    name = space.sparsity_param
    layers = []
    for li in range(1, depth + 1):
        lp, prune = dict(template.params), template.prune
        if space.sparsity is not None:
            value = float(params[f"{name}_{li}"])
            old = lp.get(name)
            lp[name] = value
            if prune is not None and name in prune.finetune_params and old:
                ft = dict(prune.finetune_params)
                ft[name] = float(ft[name]) * value / float(old)
                prune = replace(prune, finetune_params=ft)
        if space.density is not None:
            prune = replace(prune or PruneConfig(), density=float(params[f"density_{li}"]), threshold=None)
        layers.append(replace(template, n_units=int(params[f"width_{li}"]), params=lp, prune=prune))
    run = replace(base, layers=tuple(layers))
    run.validate()
    return run


def corner_params(space: SearchSpace) -> list[dict[str, Any]]:
    """Architectures at the ends of every range (to validate a search before it starts)."""
    out = []
    choices = space.layer_widths_lists()
    for pick, q in ((min, 0), (max, 1)):
        p: dict[str, Any] = {"depth": space.max_depth}
        for li in range(1, space.max_depth + 1):
            p[f"width_{li}"] = pick(choices[li - 1])
            if space.sparsity is not None:
                p[f"{space.sparsity_param}_{li}"] = space.sparsity[q]
            if space.density is not None:
                p[f"density_{li}"] = space.density[q]
        out.append(p)
    return out
