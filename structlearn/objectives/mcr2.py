"""MCR^2: a dense encoder trained to maximise the rate reduction (Yu, Chan, You, Song, Ma 2020).

Encoder ``z = normalize(x W^T)`` (unit-norm rows, ``W = layer.effective_weight(): (k, d)``).
Loss, minimised with ``self.optimizer`` (Adam) over the layer's weight, in the reference
code's parametrisation:

    loss = -gam2 * R(Z, eps^2 / gam1) + R_c(Z, eps^2 | Pi) + sparsity * mean_i ||z_i||_1

``gam1`` scales ``d/(m eps^2)`` inside R (so ``R(Z, eps^2/gam1)``), ``gam2`` weighs R
against R_c; ``gam1 = gam2 = 1`` and ``sparsity = 0`` is plain ``-Delta R``. The reported
``R``, ``Rc`` and ``delta_R`` are always the unweighted terms at ``eps2``. ``eps2`` is eps^2
(the reference code's ``eps``); 0.5 is the reference value. The reference self-supervised
command used ``gam1 = 20`` (ryanchankh/mcr2 README, ``train_unsup.py --gam1 20 --eps 0.5``).
``unit_norm`` (default) projects the rows of W back to unit norm after every step, as
sparse coding does for its atoms: ``z = normalize(x W^T)`` ignores a global scale but not
per-unit scales, and without the projection a few units grow, dominate every ``z`` and
starve the others of gradient (on mosaics about 40% of the units then stayed at their
random initialisation).
``sparsity > 0`` is the sparse rate reduction variant ``Delta R - lambda ||Z||_1``
(registered as ``mcr2_sparse``; Yu et al. 2023, "White-box transformers via sparse rate
reduction", use the same trade-off with an L0/L1 term).

The partition ``Pi``:

- ``partition='augment'`` (default, no labels): each sample of the batch ``x: (n, d)`` is a
  source; :func:`structlearn.data.augment.augment_groups` makes ``n_aug`` copies of it
  (the source itself, small shifts, mirror flips, contrast gains, optional noise) on the
  image grid ``layer.input_shape`` (which must end in ``(h, w)``), so the loss sees
  ``n * n_aug`` samples in ``n`` groups. Augmentations are drawn from a generator seeded by
  ``(seed, step)``, so runs are reproducible and resumable.
- ``partition='labels'``: the caller passes integer class labels with the batch,
  ``train_step(x, labels=y)`` and ``loss(x, labels=y)`` with ``y: (n,)`` in
  ``0..n_classes-1``; no augmentation. Use it from your own loop over labelled data (the
  trainer's minibatches carry no labels, so from YAML only ``augment`` applies).

Data parallel (``parallel.dp`` replicas, :mod:`structlearn.parallel.engine`): ``R`` is not a
sum over samples, but it is a function of the Gram matrix ``C = Z^T Z = sum_r Z_r^T Z_r``, and
with ``augment`` every class (one source's augmentations) lies inside one replica. So each
replica augments the global batch exactly as one process does (same generator), keeps its
sources' rows ``Z_r``, all-reduces ``C_r`` and takes ``R`` of the global ``C`` with the
gradient flowing through its own ``C_r`` (``C = C_r + (sum_s C_s - C_r)`` detached), its
classes' ``R_c`` terms weighted by ``tr(Pi_j) / (2m)`` with the global ``m``, its share of the
L1 term; the sum over replicas of these local gradients is the global batch's gradient (one
all-reduce). ``reducer`` (a sum over the replicas, set by the engine) and ``replica = (rank,
size)`` switch this on; with ``None`` nothing changes.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from structlearn.data.augment import augment_groups
from structlearn.functional.rate import coding_rate, logdet_identity_plus, partition_coding_rate
from structlearn.objectives.base import OBJECTIVES
from structlearn.objectives.gradient import GradientObjective, OptimizerParam
from structlearn.params import Boolean, Interval, Options, Param

PARTITIONS = ("augment", "labels")
POSITIVE = Interval(float, 0, None, closed="neither")


@OBJECTIVES.register("mcr2")
class MCR2(GradientObjective):
    name = "mcr2"
    seed: Tensor  # () long buffers
    steps: Tensor
    separable = False  # logdet(I + c Z^T Z) couples the samples: data-parallel needs the gathered batch
    eps2 = Param(0.5, POSITIVE, "eps^2 of the coding rates (the reference code's eps)")
    gam1 = Param(1.0, POSITIVE, "scale of d/(m eps^2) inside R")
    gam2 = Param(1.0, POSITIVE, "weight of R against R_c")
    sparsity = Param(0.0, Interval(float, 0, None), "weight of mean ||z||_1 (sparse rate reduction)")
    partition = Param("augment", Options(PARTITIONS), "classes: augmentations of each sample, or given labels")
    n_aug = Param(4, Interval(int, 2, None), "augmented copies per sample (partition=augment)")
    max_shift = Param(1, Interval(int, 0, None), "largest shift in pixels of an augmentation")
    flip = Param(True, Boolean(), "mirror flips among the augmentations")
    contrast = Param(0.2, Interval(float, 0, 1, closed="left"), "contrast gain range of the augmentations")
    noise = Param(0.0, Interval(float, 0, None), "std of additive noise in the augmentations")
    unit_norm = Param(True, Boolean(), "project the rows of W to unit norm after each step")
    lr = OptimizerParam(1e-2, POSITIVE, "Adam learning rate")

    def __init__(self, layer, *, generator: torch.Generator | None = None, **params: Any) -> None:
        super().__init__(layer, generator=generator, **params)
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        # saved, so resume repeats the augmentations; host tensors whatever the layer's device
        # (each step reads them to seed its augmentations: on CUDA that read would be a sync)
        self.register_buffer("seed", torch.tensor(seed, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        with torch.no_grad():
            layer.apply_mask_()
            self.after_update()

    def _check_joint(self, p: dict[str, Any]) -> None:
        shape = self.layer.input_shape
        if p["partition"] == "augment" and (len(shape) < 2 or p["max_shift"] >= min(shape[-2:])):
            raise ValueError(f"partition='augment' needs layer.input_shape ending in (h, w) with "
                             f"max_shift < min(h, w); got input_shape={shape}, max_shift={p['max_shift']}; "
                             f"allowed: an image-shaped layer, or partition='labels'")

    @torch.no_grad()
    def after_update(self) -> None:
        if self.unit_norm:
            w = self.layer.weight
            w.div_(w.norm(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny))

    def encode(self, x: Tensor) -> Tensor:
        """``normalize(x W^T)``: (n, k), unit-norm rows."""
        return torch.nn.functional.normalize(self.layer(x), dim=1)

    def _batch(self, x: Tensor, labels: Tensor | None, seed: int) -> tuple[Tensor, Tensor, int]:
        """(samples, integer partition, number of classes) for one loss evaluation."""
        if self.partition == "labels":
            if labels is None:
                raise ValueError("partition='labels' needs labels: call train_step(x, labels=y) with y (n,) integer")
            if labels.shape != (x.shape[0],):
                raise ValueError(f"labels must have shape ({x.shape[0]},); got {tuple(labels.shape)}")
            return x, labels.to(x.device), int(labels.max()) + 1
        if labels is not None:
            raise ValueError("labels were given but partition='augment'; allowed: partition='labels' to use them")
        g = torch.Generator().manual_seed(seed)
        xa, groups = augment_groups(x, self.layer.input_shape, self.n_aug, g, max_shift=self.max_shift,
                                    flip=self.flip, contrast=self.contrast, noise=self.noise)
        return xa, groups, x.shape[0]

    def terms(self, x: Tensor, groups: Tensor | None = None, k: int = 0) -> dict[str, Tensor]:
        """Loss terms of the (already partitioned) samples ``x`` with class ids ``groups``."""
        if groups is None:
            raise ValueError("MCR^2 terms need the partition: groups (m,) integer class ids")
        z = self.encode(x)  # (m, n_units)
        R = coding_rate(z, self.eps2)
        R_w = R if self.gam1 == 1.0 else coding_rate(z, self.eps2 / self.gam1)
        Rc = partition_coding_rate(z, groups, self.eps2, n_classes=k)
        l1 = z.abs().sum(1).mean()
        loss = -self.gam2 * R_w + Rc + self.sparsity * l1
        return {"loss": loss, "R": R, "Rc": Rc, "delta_R": R - Rc, "code_l1": l1}

    def loss(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Loss on ``x`` (augmentations from a fixed seed, so evaluation is repeatable)."""
        xa, groups, k = self._batch(x, labels, int(self.seed) - 1)
        return self.terms(xa, groups, k)["loss"]

    def batch_terms(self, x: Tensor, labels: Tensor | None = None) -> Callable[[], dict[str, Tensor]]:
        xa, groups, k = self._batch(x, labels, int(self.seed + self.steps))  # this step's augmentations
        return lambda: self.terms(xa, groups, k)

    def update(self, stats: dict[str, Any]) -> dict[str, Tensor]:
        self.steps.add_(1)
        return super().update(stats)

    # ------------------------------------------------------------------ data parallel (module docstring)
    reducer: Callable[[Tensor], Tensor] | None = None  # sum over the data-parallel replicas (set by the engine)
    replica: tuple[int, int] = (0, 1)  # (rank, size) among the replicas

    def splits_batch(self) -> bool:
        """Data parallel by reduction: takes the global batch and keeps its own sources' rows."""
        return self.partition == "augment" and self.optimizer_name == "adam"

    def statistics(self, x: Tensor, **kwargs: Any) -> dict[str, Any]:
        if self.reducer is None:
            return super().statistics(x, **kwargs)
        if kwargs.get("labels") is not None:
            raise ValueError("data-parallel MCR^2 takes partition='augment'; allowed: labels on one process")
        reduce, (rank, size) = self.reducer, self.replica
        xa, groups, n = self._batch(x, None, int(self.seed + self.steps))  # the global batch's augmentations
        lo, hi = rank * n // size, (rank + 1) * n // size  # this replica's sources
        mine = (groups >= lo) & (groups < hi)
        layer, opt = self.layer, self.optimizer
        with torch.enable_grad():
            opt.zero_grad(set_to_none=False)
            z = self.encode(xa[mine])  # (m_r, k)
            m, k = xa.shape[0], z.shape[1]
            C_r = z.T @ z
            C = C_r + (reduce(C_r.detach().clone()) - C_r.detach())  # the global Gram matrix, gradient through C_r
            R = 0.5 * logdet_identity_plus(C, k / (m * self.eps2))
            R_w = R if self.gam1 == 1.0 else 0.5 * logdet_identity_plus(C, k / (m * self.eps2 / self.gam1))
            share = z.shape[0] / m  # partition_coding_rate weighs by tr(Pi_j) / (2 m_r): rescale to the global m
            Rc_r = partition_coding_rate(z, groups[mine] - lo, self.eps2, n_classes=hi - lo) * share
            l1_r = z.abs().sum() / m
            (-self.gam2 * R_w + Rc_r + self.sparsity * l1_r).backward()
        grad = reduce(layer.weight.grad.mul_(layer.mask).clone())  # type: ignore[union-attr]
        Rc, l1 = reduce(Rc_r.detach().clone()), reduce(l1_r.detach().clone())
        R, R_w = R.detach(), R_w.detach()
        return {"loss": -self.gam2 * R_w + Rc + self.sparsity * l1, "R": R, "Rc": Rc, "delta_R": R - Rc,
                "code_l1": l1, "grad": grad}


@OBJECTIVES.register("mcr2_sparse")
class SparseMCR2(MCR2):
    """Sparse rate reduction: ``MCR2`` with ``sparsity`` (lambda of ``||Z||_1``) on by default."""

    name = "mcr2_sparse"
    sparsity = Param(20.0, POSITIVE, "weight of mean ||z||_1 (sparse rate reduction)")
