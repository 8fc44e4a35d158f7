"""Typed, frozen run configuration with YAML round-trip and validation at the boundary.

A YAML file (e.g. ``experiments/mosaic_sparse.yaml``) maps onto :class:`RunConfig`;
``--set a.b=value`` overrides any field by its dotted path (list items by index:
``layers.0.params.lam=0.3``). Unknown keys and out-of-range values raise a ``ValueError``
that names the key and the allowed values.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import structlearn.objectives  # noqa: F401  (registers the built-in objectives)
import structlearn.prune  # noqa: F401  (registers the built-in pruners)
from structlearn.data.images import BUNDLED_DEFAULT
from structlearn.params import check_choice, check_range, declared_params
from structlearn.prune.base import PRUNERS


@dataclass(frozen=True)
class DataConfig:
    source: str = "bundled"  # "bundled" (scikit-image, no download), a folder of PNG/JPEG/TIFF, or .npy/.npz (kind: array)
    images: tuple[str, ...] = BUNDLED_DEFAULT  # bundled image names (used when source == "bundled")
    kind: str = "mosaic"  # "mosaic": independent tiles; "patches"; "hierarchical": planted depth; "array": the source's samples
    grid: tuple[int, int] = (3, 3)  # mosaic tiles (rows, cols); at least 2 tiles
    tile: tuple[int, int] = (8, 8)  # tile size (h, w) in pixels
    patch: tuple[int, int] = (16, 16)  # patch size (h, w) when kind == "patches"
    n_train: int = 50000  # training samples, drawn once from the seed
    n_test: int = 2000  # held-out samples for the metrics
    remove_mean: str = "tile"  # "tile" | "mosaic" | "none" (per-patch mean when kind == "patches")
    whitening: str = "zca"  # "zca" | "one_over_f" (Olshausen-Field, applied to whole images) | "none"
    zca_floor: float = 0.01  # ZCA eigenvalue floor, relative to the mean eigenvalue, > 0
    f0_fraction: float = 0.39  # 1/f filter cutoff f0 as a fraction of the image size, (0, 0.5]
    gaussian_clone: bool = False  # control: replace the data by a Gaussian with the same covariance
    color: bool = False  # RGB samples (3, H, W), channels first (image sources only; every image must be RGB)
    depth: int = 2  # kind "hierarchical": levels of the planted model (1, 2 or 3)
    dims: tuple[int, ...] = (64, 8, 2)  # kind "hierarchical": units per level, sources first
    modulation: tuple[float, ...] = (4.0, 16.0)  # kind "hierarchical": per level, std of B's entries x sqrt(units above)

    def validate(self) -> None:
        from structlearn.data.arrays import is_array_file
        from structlearn.data.hierarchical import check_hierarchical

        check_choice("data.kind", self.kind, KINDS)
        check_choice("data.whitening", self.whitening, ("zca", "one_over_f", "none"))
        if is_array_file(self.source) != (self.kind == "array"):
            raise ValueError(f"data.source={self.source!r} with data.kind={self.kind!r}; allowed: data.kind 'array' "
                             f"exactly when data.source is a .npy or .npz file")
        if self.kind == "hierarchical":
            check_hierarchical(self.depth, tuple(self.dims), tuple(self.modulation))
        if self.kind in ("hierarchical", "array") and self.whitening == "one_over_f":
            raise ValueError(f"data.whitening='one_over_f' filters whole images; allowed for data.kind={self.kind!r}: "
                             f"zca, none")
        if self.kind == "array":
            _ = self.input_shape  # reads the file's header: a missing or corrupt file fails here
        check_choice("data.remove_mean", self.remove_mean, ("tile", "mosaic", "none"))
        for key in ("grid", "tile", "patch"):
            v = getattr(self, key)
            if len(v) != 2 or min(v) < 1:
                raise ValueError(f"data.{key}={list(v)}; allowed: two positive integers [h, w]")
        if self.kind == "mosaic" and self.grid[0] * self.grid[1] < 2:
            raise ValueError(f"data.grid={list(self.grid)} has one tile; allowed: at least 2 tiles, e.g. [3, 3]")
        check_range("data.n_train", self.n_train, 2, None)
        check_range("data.n_test", self.n_test, 1, None)
        check_range("data.zca_floor", self.zca_floor, 0, None, low_open=True)
        check_range("data.f0_fraction", self.f0_fraction, 0, 0.5, low_open=True)
        if not isinstance(self.color, bool):
            raise ValueError(f"data.color={self.color!r}; allowed: true, false")
        if self.color and self.kind not in ("mosaic", "patches"):
            raise ValueError(f"data.color=true with data.kind={self.kind!r}; allowed: data.kind mosaic or patches "
                             f"(colour images), or data.color false")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(H, W)`` of one sample, ``(3, H, W)`` with ``color``; vectors of ``d`` values are ``(1, d)``."""
        if self.color and self.kind in ("mosaic", "patches"):
            return (3, *dataclasses.replace(self, color=False).input_shape)
        if self.kind == "mosaic":
            return (self.grid[0] * self.tile[0], self.grid[1] * self.tile[1])
        if self.kind == "hierarchical":
            return (1, int(self.dims[0]))
        if self.kind == "array":
            from structlearn.data.arrays import array_sample_shape

            shape = array_sample_shape(self.source)
            return (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])
        return (self.patch[0], self.patch[1])


KINDS = ("mosaic", "patches", "hierarchical", "array")


COMMON_PRUNE_FIELDS = ("scope", "threshold", "density", "rounds")


@dataclass(frozen=True)
class PruneConfig:
    method: str = "magnitude"  # pruner name (registry "pruner"): magnitude | imp | beta_lasso
    scope: str = "unit"  # "unit": per-unit threshold/density; "global": one for the layer (pruners that have a scope)
    threshold: float | None = None  # magnitude: keep |w| >= threshold * max|w|, in [0, 1) (default 0.1 when no density)
    density: float | None = None  # magnitude/imp: keep this share of weights, in (0, 1] (imp: the final density)
    finetune_steps: int = 200  # training steps after each pruning round, with the mask fixed
    finetune_params: dict = field(default_factory=dict)  # objective hyperparameters for fine-tuning, e.g. {lam: 0.3}
    rounds: int = 1  # pruning rounds, >= 1 (imp: density falls geometrically to `density`)
    rewind_step: int | None = None  # after each round, reset to the state after this many steps (0 = init), kept support only
    params: dict = field(default_factory=dict)  # the pruner's own other hyperparameters (beta_lasso: lam, beta, lr)

    def pruner_kwargs(self) -> dict:
        """The common fields the pruner declares, plus ``params``. A common field set to a
        value that the pruner does not declare is an error (no silent ignoring)."""
        declared = declared_params(PRUNERS.get(self.method))
        defaults = {"scope": "unit", "rounds": 1}
        out = {}
        for k in COMMON_PRUNE_FIELDS:
            v = getattr(self, k)
            if k in declared:
                out[k] = v
            elif v is not None and v != defaults.get(k):
                raise ValueError(f"prune.{k}={v!r}: pruner {self.method!r} has no {k}; "
                                 f"its parameters: {', '.join(declared)}")
        clash = sorted(set(self.params) & set(COMMON_PRUNE_FIELDS))
        if clash:
            raise ValueError(f"prune.params may not set {clash}; allowed: set them as prune.{clash[0]}")
        return {**out, **self.params}

    def build(self):
        """The pruner object (registry "pruner"); its constructor checks its declared parameters."""
        return PRUNERS.create(self.method, **self.pruner_kwargs())

    def validate(self) -> None:
        check_range("prune.finetune_steps", self.finetune_steps, 0, None, integer=True)
        if self.rewind_step is not None:
            check_range("prune.rewind_step", self.rewind_step, 0, None, integer=True)
        try:
            self.build()
        except ValueError as e:
            raise ValueError(f"prune: {e}") from None


NONLINEARITIES = ("abs", "log_abs", "relu", "none", "pool_energy")


@dataclass(frozen=True)
class LayerConfig:
    n_units: int = 1024  # units (rows of the dense weight)
    objective: str = "sparse_coding"  # objective name (registry "objective")
    params: dict = field(default_factory=dict)  # the objective's hyperparameters
    steps: int = 1000  # training steps before pruning
    batch_size: int = 256  # samples per step
    prune: PruneConfig | None = field(default_factory=PruneConfig)  # None: no pruning
    nonlinearity: str = "abs"  # how codes feed the next layer: "abs" | "log_abs" | "relu" | "none" | "pool_energy"
    pool_group: int = 1  # units per group for "pool_energy" (sqrt of the group's summed squares)
    pca_input: bool = False  # layers after the first: inputs projected on their n_units leading principal components, whitened

    def validate(self, i: int = 0) -> None:
        check_range(f"layers.{i}.n_units", self.n_units, 1, None)
        check_range(f"layers.{i}.steps", self.steps, 0, None)
        check_range(f"layers.{i}.batch_size", self.batch_size, 1, None)
        check_choice(f"layers.{i}.nonlinearity", self.nonlinearity, NONLINEARITIES)
        if not isinstance(self.pca_input, bool):
            raise ValueError(f"layers.{i}.pca_input={self.pca_input!r}; allowed: true, false")
        check_range(f"layers.{i}.pool_group", self.pool_group, 1, None)
        if self.nonlinearity == "pool_energy" and self.n_units % self.pool_group:
            raise ValueError(f"layers.{i}.pool_group={self.pool_group} must divide n_units={self.n_units}")
        if self.prune is not None:
            try:
                self.prune.validate()
            except ValueError as e:
                raise ValueError(f"layers.{i}.{e}") from None
            if self.prune.rewind_step is not None and self.prune.rewind_step > self.steps:
                raise ValueError(f"layers.{i}.prune.rewind_step={self.prune.rewind_step} out of range; "
                                 f"allowed: [0, layers.{i}.steps={self.steps}]")


WANDB_MODES = ("offline", "online", "online-or-offline", "disabled")


@dataclass(frozen=True)
class WandbConfig:
    """The W&B run: how it logs (``mode``) and who it is (project, entity, group, job type, tags).
    None of it is part of the experiment: a resumed run may change any field. A bare string
    (``wandb: offline``, ``--set wandb=disabled``) sets ``mode``."""

    mode: str = "offline"  # offline (into the run folder) | online | online-or-offline (online, else offline, said) | disabled
    project: str = "structlearn"
    entity: str | None = None  # None: the user's W&B default (their settings file or WANDB_ENTITY)
    group: str | None = None  # None: the run's name (a stack's layers share one run; a search names its study)
    job_type: str | None = None  # None: the command (discover, search-trial, report, export)
    tags: tuple[str, ...] = ()
    log_images_every: int = 0  # steps between filter montages (every layer, every pruning round); 0: eval_every

    def validate(self) -> None:
        check_choice("wandb.mode", self.mode, WANDB_MODES)
        check_range("wandb.log_images_every", self.log_images_every, 0, None)
        for k in ("project", "entity", "group", "job_type"):
            v = getattr(self, k)
            if v is not None and (not v.strip() or len(v) > 128):
                raise ValueError(f"wandb.{k}={v!r}; allowed: a non-empty name of at most 128 characters, or null")
        for t in self.tags:
            if not t.strip() or len(t) > 64:
                raise ValueError(f"wandb.tags has {t!r}; allowed: non-empty tags of at most 64 characters")


PARALLEL_BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class ParallelConfig:
    """How ``torchrun --nproc_per_node N`` (or ``discover --nproc N``) splits one layer over its
    ``N`` processes: a 2-D mesh ``("dp", "atoms")`` of ``dp`` data-parallel replicas times
    ``atoms`` atom shards (``dp * atoms = N``). Sparse coding shards its atoms (FISTA with one
    all-reduce per iteration, local gradient updates) and splits each batch over the replicas;
    RICA and natural-gradient InfoMax run data-parallel (their batch-mean statistics are
    all-reduced). With one process none of it applies. Not part of the experiment: a run may
    resume on another number of processes (results then agree to rounding, not bit for bit)."""

    dp: int = 1  # data-parallel replicas (each batch split evenly over them)
    atoms: int = 0  # atom shards; 0: the processes / dp
    backend: str = "auto"  # auto (NCCL on CUDA, else gloo) | gloo | nccl
    timeout_s: float = 60.0  # a collective waiting longer than this ends the run with an error (a dead or hung rank)

    def validate(self) -> None:
        check_range("parallel.dp", self.dp, 1, None, integer=True)
        check_range("parallel.atoms", self.atoms, 0, None, integer=True)
        check_choice("parallel.backend", self.backend, PARALLEL_BACKENDS)
        check_range("parallel.timeout_s", self.timeout_s, 1, None)


@dataclass(frozen=True)
class RunConfig:
    name: str = "mosaic_sparse"  # run name (folder runs/<time>-<name>)
    seed: int = 0  # the one seed every generator derives from
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:N"
    dtype: str = "float32"  # "float32" | "float64"
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    data: DataConfig = field(default_factory=DataConfig)
    layers: tuple[LayerConfig, ...] = (LayerConfig(),)
    eval_every: int = 100  # steps between held-out evaluations
    checkpoint_every: int = 100  # steps between checkpoints
    wandb: WandbConfig = field(default_factory=WandbConfig)  # W&B mode and identity (not part of the experiment)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)  # processes of one layer (not part of the experiment)

    def validate(self) -> None:
        self.data.validate()
        if not self.layers:
            raise ValueError("layers is empty; allowed: a list of at least one layer")
        for i, layer in enumerate(self.layers):
            layer.validate(i)
        self.wandb.validate()
        self.parallel.validate()
        check_choice("dtype", self.dtype, ("float32", "float64"))
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device={self.device!r}; allowed: auto, cpu, cuda, cuda:N")
        check_range("eval_every", self.eval_every, 1, None)
        check_range("checkpoint_every", self.checkpoint_every, 1, None)
        check_range("threads", self.threads, 0, None)


# ---------------------------------------------------------------- dict <-> dataclass

def _convert(tp: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{path} must be a mapping; got {value!r}")
        return from_dict(tp, value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path} must be a list; got {value!r}")
        item_tp = args[0]
        return tuple(_convert(item_tp, v, f"{path}.{i}") for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{path} must be a mapping; got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path} must be true or false; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
            raise ValueError(f"{path} must be an integer; got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path} must be a number; got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{path} must be a string; got {value!r}")
        return value
    return value


def from_dict(cls: type, d: dict, path: str = "") -> Any:
    """Build dataclass ``cls`` from a dict; unknown keys raise a ValueError listing allowed ones."""
    if cls is RunConfig:
        d = legacy_wandb(d)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        where = f" in {path}" if path else ""
        near = [m for k in unknown for m in difflib.get_close_matches(k, names, n=1, cutoff=0.75)]
        hint = f" (did you mean {', '.join(map(repr, near))}?)" if near else ""
        raise ValueError(f"unknown config key(s) {unknown}{where}; allowed: {', '.join(names)}{hint}")
    kwargs = {k: _convert(hints[k], v, f"{path}.{k}" if path else k) for k, v in d.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (tuple, list)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value, e.g. data.gaussian_clone=true")
        key, raw = item.split("=", 1)
        value = load_yaml(raw, f"--set {key.strip()}")
        key = LEGACY_KEYS.get(key.strip(), key) if not isinstance(value, dict) else key
        parts = key.strip().split(".")
        node: Any = d
        for j, p in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not p.isdigit() or int(p) >= len(node):
                    raise ValueError(f"--set {key}: index {p!r} out of range; allowed: 0..{len(node) - 1}")
                node = node[int(p)]
            else:
                if p not in node:
                    raise ValueError(f"--set {key}: unknown key {'.'.join(parts[:j + 1])!r}; allowed: {', '.join(node)}")
                if node[p] is None:
                    node[p] = {}
                node = node[p]
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ValueError(f"--set {key}: index {last!r} out of range; allowed: 0..{len(node) - 1}")
            node[int(last)] = value
        else:
            node[last] = value
    return d


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ValueError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}; allowed: each key once")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def load_yaml(text: str, where: str) -> Any:
    """YAML text -> Python, refusing duplicate keys; a clear ``ValueError`` naming ``where``."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{where} is not valid YAML: {getattr(e, 'problem', None) or type(e).__name__}{at}") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML file's top-level mapping; a clear ValueError for a missing, invalid or non-mapping file."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    user = load_yaml(p.read_text(), f"config file {str(p)!r}") or {}
    if not isinstance(user, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping at the top level")
    return user


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults <- YAML file <- ``--set`` overrides, then validated."""
    base = to_dict(RunConfig())
    if path is not None:
        base = merge_config(base, read_yaml_mapping(path), "")
    base = apply_overrides(base, list(overrides or []))
    cfg = from_dict(RunConfig, base)
    cfg.validate()
    return cfg


LEGACY_KEYS = {"wandb": "wandb.mode", "wandb_project": "wandb.project"}  # --set forms of earlier versions


def legacy_wandb(user: dict) -> dict:
    """A run config mapping of an earlier version (``wandb: offline``, ``wandb_project: p``) in the
    current shape (``wandb: {mode: offline, project: p}``); anything else unchanged."""
    if not ("wandb_project" in user or isinstance(user.get("wandb"), str)):
        return user
    out = {k: v for k, v in user.items() if k != "wandb_project"}
    wb = {"mode": user["wandb"]} if isinstance(user.get("wandb"), str) else dict(user.get("wandb") or {})
    if "wandb_project" in user:
        wb["project"] = user["wandb_project"]
    out["wandb"] = wb
    return out


FREE_FORM = ("params", "finetune_params")  # dict fields whose keys the objective validates


def merge_config(base: dict, user: dict, path: str = "") -> dict:
    """Merge a user's YAML mapping into a full config dict, refusing unknown keys."""
    out = dict(base)
    for k, v in (legacy_wandb(user) if isinstance(base.get("wandb"), dict) else user).items():
        if k not in base:
            raise ValueError(f"unknown config key {path + k!r}; allowed: {', '.join(base)}")
        if k == "layers" and isinstance(v, list):
            default_layer = to_dict(LayerConfig())
            out[k] = [merge_config(default_layer, lv, f"layers.{i}.") if isinstance(lv, dict) else lv for i, lv in enumerate(v)]
        elif isinstance(v, dict) and isinstance(base[k], dict) and k not in FREE_FORM:
            out[k] = merge_config(base[k], v, f"{path}{k}.")
        else:
            out[k] = v
    return out


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
