"""A versioned architecture spec of the discovered structure, and spec -> ``nn.Module``.

The spec is plain JSON so NAS pipelines can read it without structlearn::

    {"format": "structlearn.architecture", "version": 1,
     "input": {"channels": 1, "shape": [H, W]},     # 3 for colour runs (data.color), channels first
     "stages": [
        {"type": "conv2d", "out_channels": C, "kernel_size": [k, k], "stride": [s, s],
         "padding": [p, p], "evidence": {"coverage": ..., "equivalence_error": ..., "density": ...}},
        {"type": "pool", "kind": "l2", "kernel_size": [a, a], "stride": [b, b]},
        {"type": "activation", "fn": "abs" | "log_abs" | "relu" | "identity"},
        {"type": "activation", "fn": "group_l2", "group": g},   # sqrt of the summed squares of
                                                                 # each g consecutive features
        {"type": "shared_conv", "out_channels": C, "kernel_size": [k, k], "units": n,
         "evidence": {"coverage": 1.0, "weight_error": ..., "response_error": ...}},
            # every unit i of the layer = gain_i * Conv2d(1, C, k, padding=k-1)(x)[c_i, r_i, q_i]
        {"type": "dense", "out_features": N, "masked": true, "evidence": {"density": ...}},
            # masked (version 2): the discovered weight and pruning mask are given to build_module
        {"type": "redu", "channels": C, "classes": J, "kernel_size": [K, K], "eta": ..., "lam": ...,
         "gamma": [...]},   # a constructed shift-invariant ReduNet layer (circular convolutions)
     ],
     "source": {...}}

Conv stages may carry ``"padding_mode": "circular"`` (default ``"zeros"``). A redu stage is a
ReduNet layer built by :mod:`structlearn.redunet`: its kernels (``(1 + J, C, C, K, K)``: E's,
then each C_j's) must be given to ``build_module``; it normalises its input.
A conv stage comes from a layer whose pruned receptive fields share weights
(:func:`structlearn.structure.conv.conv_from_filters`); a layer without weight sharing stays a
(sparse) dense stage. ``build_module(spec, kernels)`` returns an ``nn.Sequential``; given the
discovered kernels (one ``(C, k, k)`` tensor per conv stage, ``(C, 3, k, k)`` on RGB inputs: the
colour read-out of :mod:`structlearn.structure.color`) the first conv reproduces the
dense layer's responses at the covered units.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from structlearn.redunet.conv import ReduConv

FORMAT, VERSION = "structlearn.architecture", 2
VERSIONS = (1, 2)  # 2 adds the shared_conv stage; version-1 specs still load
STAGE_TYPES = ("conv2d", "shared_conv", "pool", "activation", "dense", "redu")
PADDING_MODES = ("zeros", "circular")
ACTIVATIONS = ("abs", "log_abs", "relu", "identity", "group_l2")


class Abs(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.abs()


class LogAbs(nn.Module):
    """``log(|x| + 1e-6)``: the log-magnitude nonlinearity of ``nonlinearity: log_abs``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.log(x.abs() + 1e-6)


class GroupL2(nn.Module):
    """Pooled energy of consecutive feature groups: ``(n, F) -> (n, F / g)``, ``sqrt(sum_group x^2)``."""

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1, self.group).pow(2).sum(-1).sqrt()


class SharedConv(nn.Module):
    """A dense layer as shared kernels (:mod:`structlearn.structure.sharing`): a
    ``Conv2d(c, C, k, padding=k-1)`` (kernels ``(C, k, k)`` for ``c = 1``, ``(C, c, k, k)`` for
    colour) then, per unit ``i``, the output cell ``(c_i, r_i + k - 1, q_i + k - 1)`` times a gain
    ``a_i``: ``(b, c, H, W) -> (b, n)``. Kernels and gains are parameters (trainable); which cell
    each unit reads is a fixed buffer. Units without a kernel (empty) give 0, also under training
    (a ``live`` mask multiplies the gains).

    Two exact forms of the same map: the convolution above, or the dense ``(n, c H W)`` matrix
    whose row ``i`` holds unit ``i``'s kernel at the ``k x k`` window it reads (``x_pad[:, top_i +
    a, left_i + b]``, ``x_pad`` the input zero-padded by ``k - 1``, cropped to the image; every
    input channel at the same window), rebuilt from the kernels at every call (a scatter, so
    gradients reach the kernels) and applied as one GEMM. The window form costs ``n c H W`` per
    image against ``C Ho Wo c k^2``; it is used when the convolution would compute more than 4
    times as many cells as there are units (layers without weight sharing, where C is close to n)."""

    index: Tensor
    unit_channel: Tensor
    window: Tensor
    live: Tensor

    def __init__(self, kernels: Tensor, channel: Tensor, top: Tensor, left: Tensor, gain: Tensor,
                 input_shape: tuple[int, int]) -> None:
        super().__init__()
        kern = kernels if kernels.ndim == 4 else kernels[:, None]  # (C, c_in, k, k)
        c, c_in, k, _ = kern.shape
        h, w = input_shape
        self.k, self.input_shape = k, (h, w)
        self.conv = nn.Conv2d(c_in, c, k, padding=k - 1, bias=False, dtype=kernels.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(kern)
        ho, wo = h + k - 1, w + k - 1
        live = channel >= 0
        r = (top + k - 1).clamp(0, ho - 1)
        q = (left + k - 1).clamp(0, wo - 1)
        index = torch.where(live, channel.clamp_min(0) * ho * wo + r * wo + q, torch.zeros_like(channel))
        self.register_buffer("index", index.long())
        self.gain = nn.Parameter(torch.where(live, gain, torch.zeros_like(gain)).to(kernels.dtype))
        self.register_buffer("live", live.to(kernels.dtype))
        # the window form: unit i reads x_pad[r_i + a, q_i + b] (x_pad: (h + 2k - 2, w + 2k - 2))
        self.register_buffer("unit_channel", torch.where(live, channel, torch.zeros_like(channel)).long())
        a = torch.arange(k)
        wp = w + 2 * (k - 1)
        self.register_buffer("window", ((r.long()[:, None, None] + a[:, None]) * wp
                                        + q.long()[:, None, None] + a[None, :]).flatten(1))  # (n, k*k)
        self.use_windows = c * ho * wo > 4 * index.numel()

    def forward(self, x: Tensor) -> Tensor:
        if not self.use_windows:
            y = self.conv(x).flatten(1)  # (b, C Ho Wo)
            return y.index_select(1, self.index) * (self.gain * self.live)
        p, (h, w) = self.k - 1, self.input_shape
        n, c_in = self.window.shape[0], self.conv.in_channels
        kern = self.conv.weight.flatten(2).index_select(0, self.unit_channel)  # (n, c_in, k*k)
        full = kern.new_zeros(n, c_in, (h + 2 * p) * (w + 2 * p)).scatter(
            2, self.window[:, None].expand(n, c_in, -1), kern)  # (n, c_in, Hp Wp)
        weight = full.view(n, c_in, h + 2 * p, w + 2 * p)[:, :, p:p + h, p:p + w].reshape(n, c_in * h * w)
        return nn.functional.linear(x.flatten(1), weight) * (self.gain * self.live)


class MaskedLinear(nn.Module):
    """``y = x (W * M)^T``: a dense stage with its pruning mask ``M`` (a buffer: pruned weights stay
    zero under training, as in the discovering run); ``weight`` is the trainable parameter."""

    mask: Tensor

    def __init__(self, weight: Tensor, mask: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.register_buffer("mask", mask.detach().to(weight.dtype).clone())

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight * self.mask)


class L2Pool2d(nn.Module):
    """Energy pooling ``sqrt(sum_window x^2)`` (the pooling that group sparse coding implies)."""

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.pool = nn.LPPool2d(2, kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x)


def conv_stage(readout_dict: dict[str, Any], evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Spec stage from :meth:`ConvReadout.to_dict`."""
    k = readout_dict["kernel_size"]
    return {"type": "conv2d", "out_channels": int(readout_dict["channels"]), "kernel_size": [int(k), int(k)],
            "stride": [int(s) for s in readout_dict["stride"]], "padding": [int(p) for p in readout_dict["padding"]],
            "evidence": dict(evidence or {}, coverage=readout_dict.get("coverage"))}


def shared_conv_stage(sharing: dict[str, Any], evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Spec stage from the ``sharing`` section of ``structure.json``."""
    k = int(sharing["kernel_size"])
    ev = {key: sharing.get(key) for key in ("coverage", "weight_error", "response_error", "knee_C", "chosen_by")}
    return {"type": "shared_conv", "out_channels": int(sharing["channels"]), "kernel_size": [k, k],
            "units": len(sharing.get("unit_channel", [])) or int(sum(sharing["units_per_channel"])),
            "evidence": dict(evidence or {}, **ev)}


def pool_stage(pool_dict: dict[str, Any]) -> dict[str, Any]:
    """Spec stage from :meth:`PoolSpec.to_dict`."""
    return {"type": "pool", "kind": "l2", "kernel_size": [int(v) for v in pool_dict["kernel_size"]],
            "stride": [int(v) for v in pool_dict["stride"]], "evidence": {"purity": pool_dict.get("purity")}}


def make_spec(input_shape: tuple[int, ...], stages: list[dict[str, Any]], source: dict[str, Any] | None = None) -> dict[str, Any]:
    """A validated spec for inputs ``(H, W)`` (one channel) or ``(C, H, W)`` (e.g. RGB)."""
    *chans, h, w = (int(v) for v in input_shape)
    if len(chans) > 1 or (chans and chans[0] < 1):
        raise ValueError(f"input_shape={tuple(input_shape)}; allowed: (H, W) or (C, H, W)")
    spec = {"format": FORMAT, "version": VERSION, "input": {"channels": chans[0] if chans else 1, "shape": [h, w]},
            "stages": stages, "source": dict(source or {})}
    validate_spec(spec)
    return spec


def _pair(v: Any, name: str) -> tuple[int, int]:
    if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) and i >= 0 for i in v)):
        raise ValueError(f"{name}={v!r}; allowed: two non-negative integers")
    return int(v[0]), int(v[1])


SCHEMA_PATH = Path(__file__).with_name("architecture.schema.json")  # the published JSON Schema (package data)


def schema() -> dict[str, Any]:
    """The spec's JSON Schema (draft 2020-12), for pipelines that validate without structlearn."""
    return json.loads(SCHEMA_PATH.read_text())


def validate_spec(spec: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first problem (format, version, stage fields). Checks what
    the JSON Schema (:func:`schema`) states, plus what it does not: version-2 stages in a
    version-1 spec (the tests hold the two to the same verdicts on the specs both judge)."""
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ValueError(f"not a structlearn architecture spec (format must be {FORMAT!r})")
    if spec.get("version") not in VERSIONS:
        raise ValueError(f"spec version {spec.get('version')!r}; allowed: {', '.join(map(str, VERSIONS))}")
    _pair(spec["input"]["shape"], "input.shape")
    head = spec.get("head")
    if head is not None and (not isinstance(head, dict) or isinstance(head.get("num_classes"), bool)
                             or not isinstance(head.get("num_classes"), int) or head["num_classes"] < 1):
        raise ValueError(f"head={head!r}; allowed: {{'num_classes': a positive integer}} or no head")
    for i, st in enumerate(spec["stages"]):
        t = st.get("type")
        if t not in STAGE_TYPES:
            raise ValueError(f"stages.{i}.type={t!r}; allowed: {', '.join(STAGE_TYPES)}")
        if t == "conv2d":
            if not isinstance(st.get("out_channels"), int) or st["out_channels"] < 1:
                raise ValueError(f"stages.{i}.out_channels must be a positive integer")
            for key in ("kernel_size", "stride"):
                if min(_pair(st[key], f"stages.{i}.{key}")) < 1:
                    raise ValueError(f"stages.{i}.{key}={st[key]}; allowed: positive integers")
            _pair(st["padding"], f"stages.{i}.padding")
            if st.get("padding_mode", "zeros") not in PADDING_MODES:
                raise ValueError(f"stages.{i}.padding_mode={st['padding_mode']!r}; allowed: {', '.join(PADDING_MODES)}")
        elif t == "shared_conv":
            if spec["version"] < 2:
                raise ValueError(f"stages.{i}.type='shared_conv' needs spec version 2")
            for key in ("out_channels", "units"):
                if not isinstance(st.get(key), int) or isinstance(st.get(key), bool) or st[key] < 1:
                    raise ValueError(f"stages.{i}.{key} must be a positive integer")
            if min(_pair(st["kernel_size"], f"stages.{i}.kernel_size")) < 1:
                raise ValueError(f"stages.{i}.kernel_size={st['kernel_size']}; allowed: positive integers")
        elif t == "pool":
            for key in ("kernel_size", "stride"):
                if min(_pair(st[key], f"stages.{i}.{key}")) < 1:
                    raise ValueError(f"stages.{i}.{key}={st[key]}; allowed: positive integers")
        elif t == "activation" and st.get("fn") not in ACTIVATIONS:
            raise ValueError(f"stages.{i}.fn={st.get('fn')!r}; allowed: {', '.join(ACTIVATIONS)}")
        elif t == "activation" and st["fn"] == "group_l2" and (not isinstance(st.get("group"), int) or st["group"] < 1):
            raise ValueError(f"stages.{i}.group={st.get('group')!r}; allowed: a positive integer (group_l2)")
        elif t == "dense" and (not isinstance(st.get("out_features"), int) or st["out_features"] < 1):
            raise ValueError(f"stages.{i}.out_features must be a positive integer")
        elif t == "dense" and not isinstance(st.get("masked", False), bool):
            raise ValueError(f"stages.{i}.masked={st.get('masked')!r}; allowed: true, false")
        elif t == "redu":
            for key in ("channels", "classes"):
                if not isinstance(st.get(key), int) or st[key] < 1:
                    raise ValueError(f"stages.{i}.{key} must be a positive integer")
            _pair(st["kernel_size"], f"stages.{i}.kernel_size")
            if len(st.get("gamma", [])) != st["classes"]:
                raise ValueError(f"stages.{i}.gamma must list one weight per class ({st['classes']})")


def build_module(spec: dict[str, Any], kernels: list[Any] | None = None, num_classes: int | None = None) -> nn.Sequential:
    """``nn.Sequential`` for ``(n, 1, H, W)`` inputs; conv stages initialised from ``kernels``
    (one ``(C, k, k)`` per conv stage, in order) when given, else PyTorch's default init; redu
    stages take their ``(1 + J, C, C, K, K)`` kernels from the same list (required); a
    shared_conv stage takes a dict ``{"kernels": (C, k, k), "channel", "top", "left", "gain": (n,)}``
    (kernels ``(C, c, k, k)`` on ``c > 1`` input channels)
    (required: which cell each unit reads is part of the discovered structure); a masked dense
    stage takes ``{"weight": (out, in), "mask": (out, in)}``. ``num_classes`` (or the spec's
    ``head.num_classes``) appends a classifier ``Linear(features, num_classes)`` with bias. Inputs
    of ``c > 1`` channels (``input.channels``) take conv kernels ``(C, c, k, k)``."""
    validate_spec(spec)
    shape = (int(spec["input"].get("channels", 1)), *spec["input"]["shape"])  # (C, H, W) flowing through
    mods: list[nn.Module] = []
    conv_i = 0
    for i, st in enumerate(spec["stages"]):
        t = st["type"]
        if t == "conv2d":
            if len(shape) != 3:
                raise ValueError(f"stages.{i}: conv2d after a dense stage is not supported")
            conv = nn.Conv2d(shape[0], st["out_channels"], tuple(st["kernel_size"]), tuple(st["stride"]),
                             tuple(st["padding"]), bias=False, padding_mode=st.get("padding_mode", "zeros"),
                             dtype=kernels[conv_i].dtype if kernels is not None else None)
            if kernels is not None:
                w = kernels[conv_i]
                want = (st["out_channels"], *((shape[0],) if shape[0] > 1 else ()), *st["kernel_size"])
                if tuple(w.shape) != want:
                    raise ValueError(f"stages.{i}: kernels shape {tuple(w.shape)} does not match {want} "
                                     f"on {shape[0]} input channel(s)")
                with torch.no_grad():
                    conv.weight.copy_((w if shape[0] > 1 else w[:, None]).to(conv.weight.dtype))
            conv_i += 1
            mods.append(conv)
            h = (shape[1] + 2 * st["padding"][0] - st["kernel_size"][0]) // st["stride"][0] + 1
            w_ = (shape[2] + 2 * st["padding"][1] - st["kernel_size"][1]) // st["stride"][1] + 1
            shape = (st["out_channels"], h, w_)
        elif t == "shared_conv":
            if len(shape) != 3:
                raise ValueError(f"stages.{i}: shared_conv after a dense stage is not supported")
            if kernels is None or conv_i >= len(kernels) or not isinstance(kernels[conv_i], dict):
                raise ValueError(f"stages.{i}: a shared_conv stage needs its kernels and unit placements "
                                 "({'kernels', 'channel', 'top', 'left', 'gain'}: structure_kernels.pt 'shared')")
            p = kernels[conv_i]
            want = (st["out_channels"], *((shape[0],) if shape[0] > 1 else ()), *st["kernel_size"])
            if tuple(p["kernels"].shape) != want or p["channel"].shape != (st["units"],):
                raise ValueError(f"stages.{i}: kernels {tuple(p['kernels'].shape)} / units {tuple(p['channel'].shape)} "
                                 f"do not match {want} / ({st['units']},)")
            mods.append(SharedConv(p["kernels"], p["channel"], p["top"], p["left"], p["gain"], (shape[1], shape[2])))
            conv_i += 1
            shape = (st["units"],)
        elif t == "pool":
            if len(shape) != 3:
                raise ValueError(f"stages.{i}: pool after a dense stage is not supported")
            mods.append(L2Pool2d(tuple(st["kernel_size"]), tuple(st["stride"])))
            h = (shape[1] - st["kernel_size"][0]) // st["stride"][0] + 1
            w_ = (shape[2] - st["kernel_size"][1]) // st["stride"][1] + 1
            shape = (shape[0], h, w_)
        elif t == "redu":
            if kernels is None or conv_i >= len(kernels):
                raise ValueError(f"stages.{i}: a redu stage needs its constructed kernels (1 + J, C, C, K, K)")
            w = kernels[conv_i]
            want = (st["classes"] + 1, st["channels"], st["channels"], *shape[1:])
            if len(shape) != 3 or shape[0] != st["channels"] or tuple(w.shape) != want:
                raise ValueError(f"stages.{i}: redu kernels {tuple(w.shape)} / input {shape} do not match {want}")
            mods.append(ReduConv(w, torch.tensor(st["gamma"], dtype=w.dtype), st["eta"], st["lam"]))
            conv_i += 1
        elif t == "activation" and st["fn"] == "group_l2":
            if len(shape) != 1 or shape[0] % st["group"]:
                raise ValueError(f"stages.{i}: group_l2 needs flat features divisible by group={st['group']}; got {shape}")
            mods.append(GroupL2(st["group"]))
            shape = (shape[0] // st["group"],)
        elif t == "activation":
            mods.append({"abs": Abs(), "log_abs": LogAbs(), "relu": nn.ReLU(), "identity": nn.Identity()}[st["fn"]])
        else:  # dense
            if len(shape) == 3:
                mods.append(nn.Flatten())
            n_in = math.prod(shape)
            if st.get("masked"):
                if kernels is None or conv_i >= len(kernels) or not isinstance(kernels[conv_i], dict):
                    raise ValueError(f"stages.{i}: a masked dense stage needs its weight and mask ({{'weight', 'mask'}})")
                p = kernels[conv_i]
                if tuple(p["weight"].shape) != (st["out_features"], n_in) or p["mask"].shape != p["weight"].shape:
                    raise ValueError(f"stages.{i}: weight {tuple(p['weight'].shape)} / mask {tuple(p['mask'].shape)} do not "
                                     f"match ({st['out_features']}, {n_in})")
                mods.append(MaskedLinear(p["weight"], p["mask"]))
                conv_i += 1
            else:
                mods.append(nn.Linear(n_in, st["out_features"], bias=False))
            shape = (st["out_features"],)
        if min(shape) < 1:
            raise ValueError(f"stages.{i} ({t}) leaves an empty output of shape {shape}")
    head = num_classes if num_classes is not None else (spec.get("head") or {}).get("num_classes")
    if head is not None:
        if isinstance(head, bool) or not isinstance(head, int) or head < 1:
            raise ValueError(f"num_classes={head!r} out of range; allowed: integers >= 1")
        if len(shape) == 3:
            mods.append(nn.Flatten())
        mods.append(nn.Linear(math.prod(shape), head))
    return nn.Sequential(*mods)
