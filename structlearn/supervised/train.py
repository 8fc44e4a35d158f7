"""Supervised training of a classifier on a labelled task, with the information plane recorded
on the way (:mod:`structlearn.info.plane`).

``fit`` trains with Adam and cross-entropy for a fixed number of epochs (no early stopping, no
model selection on the test set: the number reported is the test accuracy after the last
epoch). Everything random (initial weights, batch order, the information-plane subset) comes
from ``seed``; the process-wide RNG is left as it was.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from structlearn.info.plane import kde_information_plane
from structlearn.supervised.nets import effective_params

if TYPE_CHECKING:
    from structlearn.data.labeled import LabeledSplit
    from structlearn.data.whiten import ZCA


@dataclass(frozen=True)
class Task:
    """``x_*: (n, C, H, W)`` float32 (C = 1, or 3 for colour), preprocessed; ``y_*: (n,)`` long in ``0..classes-1``."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: int

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.ndim != 4 or x.shape[1:] != self.x_train.shape[1:] or x.shape[0] != y.shape[0] or x.shape[0] < 1:
                raise ValueError(f"task {self.name!r}: {split} x {tuple(x.shape)}, y {tuple(y.shape)}; "
                                 f"allowed: x (n, C, H, W) (C = 1 grayscale, 3 colour; the same for train and test) "
                                 f"and y (n,) with n >= 1")
            if not torch.isfinite(x).all():
                raise ValueError(f"task {self.name!r}: {split} images hold NaN or inf")


def prepare_task(split: "LabeledSplit", name: str, input_shape: tuple[int, ...], whitener: "ZCA | None" = None) -> Task:
    """Grayscale ``(n, H0, W0)`` images -> resized to ``input_shape`` ``(H, W)`` (anti-aliased) ->
    each image's mean removed -> ``whitener`` (the discovery run's ZCA, so the first layer sees
    inputs like the ones it was learned on) -> ``(n, 1, H, W)``. Colour ``(n, C, H0, W0)`` with
    ``input_shape = (C, H, W)``: each channel resized and its mean removed (as the colour
    patches of a discovery run), the whitener on the ``C H W`` values -> ``(n, C, H, W)``."""
    from skimage.transform import resize

    colour = len(input_shape) == 3
    want_ndim = 4 if colour else 3

    def one(x: Tensor) -> Tensor:
        if x.ndim != want_ndim or (colour and x.shape[1] != input_shape[0]):
            allowed = f"(n, {input_shape[0]}, H, W) colour" if colour else "(n, H, W) grayscale"
            raise ValueError(f"task {name!r}: images of shape {tuple(x.shape)} for input_shape {tuple(input_shape)}; "
                             f"allowed: {allowed}")
        if tuple(x.shape[1:]) != tuple(input_shape):
            arr = np.stack([resize(im, input_shape, anti_aliasing=True) for im in x.numpy()])
            x = torch.as_tensor(arr, dtype=torch.float32)
        x = x.float() - x.float().mean(dim=(-2, -1), keepdim=True)
        if whitener is not None:
            with torch.no_grad():
                x = whitener(x.reshape(x.shape[0], -1).double()).float().reshape(x.shape)
        return x if colour else x[:, None]

    return Task(name, one(split.train.x), split.train.y.long(), one(split.test.x), split.test.y.long(),
                len(split.train.classes))


@dataclass
class FitResult:
    test_acc: float
    train_acc: float
    params: int
    curve: list[dict[str, float]] = field(default_factory=list)  # per epoch: loss, test_acc
    plane: list[dict[str, Any]] = field(default_factory=list)  # per recorded epoch and layer: I(X;T), I(T;Y)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 1024) -> float:
    model.eval()
    pred = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, x.shape[0], batch)])
    return float((pred == y).float().mean())


@torch.no_grad()
def information_plane(model: nn.Module, x: Tensor, y: Tensor, noise: float) -> dict[str, tuple[float, float]]:
    """``{"hidden": (I(X;T), I(T;Y)), "output": ...}``: the features after the first layer's
    activation (``forward_features``) and the logits."""
    model.eval()
    t = model.forward_features(x)  # type: ignore[operator]
    return {"hidden": kde_information_plane(t, y, noise), "output": kde_information_plane(model.forward_head(t), y, noise)}  # type: ignore[operator]


def fit(build: Callable[[], nn.Module], task: Task, *, epochs: int = 30, lr: float = 1e-3, batch_size: int = 64,
        weight_decay: float = 0.0, seed: int = 0, plane_every: int = 0, plane_samples: int = 500,
        noise: float = 0.1) -> FitResult:
    """Train ``build()`` (called under ``seed``) on ``task``; the information plane of the
    hidden layer and the output every ``plane_every`` epochs (0: never) on ``plane_samples``
    training samples, and before the first epoch."""
    for key, v, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("plane_samples", plane_samples, 2)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{key}={v!r} out of range; allowed: integers >= {low}")
    if not lr > 0 or weight_decay < 0:
        raise ValueError(f"lr={lr}, weight_decay={weight_decay}; allowed: lr > 0, weight_decay >= 0")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    n = task.x_train.shape[0]
    sub = torch.randperm(n, generator=g)[:plane_samples]
    result = FitResult(0.0, 0.0, effective_params(model))

    def record(epoch: int) -> None:
        for layer, (ixt, ity) in information_plane(model, task.x_train[sub], task.y_train[sub], noise).items():
            result.plane.append({"epoch": epoch, "layer": layer, "I_XT": ixt, "I_TY": ity})

    if plane_every:
        record(0)
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for idx in torch.randperm(n, generator=g).split(batch_size):
            loss = nn.functional.cross_entropy(model(task.x_train[idx]), task.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        result.curve.append({"epoch": epoch, "loss": total / n, "test_acc": accuracy(model, task.x_test, task.y_test)})
        if plane_every and (epoch % plane_every == 0 or epoch == epochs):
            record(epoch)
    result.test_acc = result.curve[-1]["test_acc"]
    result.train_acc = accuracy(model, task.x_train, task.y_train)
    return result
