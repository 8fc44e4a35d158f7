"""Sparse coding (Olshausen and Field 1996) on a dense layer.

    min_{D, z}  1/(2n) sum_i ||x_i - z_i D||^2 + lam ||z_i||_1,   ||D_j|| = 1

``D = layer.effective_weight()``: (k, d), row j is atom j (its receptive field).
Inference: batched FISTA (:func:`structlearn.functional.sparse.fista`).
Dictionary step with the codes fixed: online block-coordinate descent (Mairal, Bach,
Ponce and Sapiro 2010, Algorithm 2) on running statistics with forgetting factor ``beta``:

    A <- beta A + z^T z / n,   B <- beta B + z^T x / n          A: (k, k), B: (k, d)
    for j in 1..k:  d_j <- mask_j * (d_j + (B_j - A_j D) / A_jj),  d_j <- d_j / ||d_j||

Each atom's update is exact for the surrogate quadratic, so the step needs no learning
rate. ``beta=None`` replaces the fixed factor by scikit-learn's schedule for Mairal's
forgetting (``MiniBatchDictionaryLearning._update_inner_stats``): at batch ``t`` (0-based) of
size ``b``, ``theta = (t + 1) b`` while ``t < b - 1``, else ``b^2 + t + 1 - b``, and
``beta_t = (theta + 1 - b) / (theta + 1)``, which forgets the first, random-dictionary codes
quickly and then grows to 1. ``init="data"`` replaces the atoms by random samples of the first
batch (masked, normalised; Mairal et al. 2010) instead of keeping the layer's random start.
Atoms whose usage ``A_jj`` stays below ``dead_fraction`` of the median are re-seeded with a
batch residual (standard in online dictionary learning), so no unit stays random.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from structlearn.functional.sparse import Prox, fista, lipschitz
from structlearn.objectives.base import OBJECTIVES, Objective
from structlearn.params import Interval, Options, OrNone, Param

BCD_BLOCK = 64  # atoms per GEMM in the dictionary update
INITS = ("random", "data")


@OBJECTIVES.register("sparse_coding")
class SparseCoding(Objective):
    name = "sparse_coding"
    uses_gradients = False
    A: Tensor  # (k, k) running sum of z^T z / n (buffers)
    B: Tensor  # (k, d) running sum of z^T x / n
    steps: Tensor  # () long
    seed: Tensor  # () long, the re-seeding stream
    lam = Param(0.5, Interval(float, 0, None, closed="neither"), "L1 weight lambda")
    n_iter = Param(50, Interval(int, 1, None), "FISTA iterations per training batch")
    eval_iter = Param(200, Interval(int, 1, None), "FISTA iterations for encode / evaluation")
    beta = Param(0.99, OrNone(Interval(float, 0, 1, closed="left")),
                 "forgetting factor of A and B; null: scikit-learn's schedule")
    init = Param("random", Options(INITS), "random: keep the layer's start; data: atoms from the first batch")
    dead_fraction = Param(0.02, Interval(float, 0, 1), "re-seed atoms whose usage is below this share of the median")
    resample_every = Param(100, Interval(int, 0, None), "steps between dead-atom checks (0: never)")

    def __init__(self, layer, *, generator: torch.Generator | None = None, **params: Any) -> None:
        super().__init__(layer, generator=generator, **params)
        w = layer.weight
        k, d = layer.n_units, layer.n_in
        self.register_buffer("A", torch.zeros(k, k, device=w.device, dtype=w.dtype))
        self.register_buffer("B", torch.zeros(k, d, device=w.device, dtype=w.dtype))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long, device=w.device))
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        self.register_buffer("seed", torch.tensor(seed, dtype=torch.long))  # re-seeding stream, saved for resume
        with torch.no_grad():
            layer.apply_mask_()
            self._normalize_()

    # penalty and its prox: group sparse coding overrides these two
    def penalty(self, z: Tensor) -> Tensor:
        """Per-sample ``||z||_1``: (n,)."""
        return z.abs().sum(1)

    def prox(self) -> Prox | None:
        """The prox of ``t * penalty``; ``None`` selects FISTA's built-in in-place soft threshold."""
        return None

    def infer(self, x: Tensor, n_iter: int) -> Tensor:
        D = self.layer.effective_weight().detach()
        return fista(x, D, self.lam, n_iter, L=lipschitz(D) * 1.0001, prox=self.prox())

    def encode(self, x: Tensor) -> Tensor:
        return self.infer(x, self.eval_iter)

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.layer.effective_weight().detach()

    def loss(self, x: Tensor) -> Tensor:
        z = self.encode(x)
        r = x - z @ self.layer.effective_weight().detach()
        return (0.5 * (r * r).sum(1) + self.lam * self.penalty(z)).mean()

    @torch.no_grad()
    def _normalize_(self) -> None:
        w = self.layer.weight
        w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def forgetting_factor(self, batch: int) -> float:
        """The factor applied to ``A`` and ``B`` at this step (see the module docstring)."""
        if self.beta is not None:
            return self.beta
        t, b = int(self.steps), int(batch)
        theta = (t + 1) * b if t < b - 1 else b * b + t + 1 - b
        return (theta + 1 - b) / (theta + 1)

    @torch.no_grad()
    def _init_from_data_(self, x: Tensor) -> None:
        g = torch.Generator(device="cpu").manual_seed(int(self.seed))
        k, n = self.layer.n_units, x.shape[0]
        pick = (torch.randperm(n, generator=g)[:k] if n >= k else torch.randint(n, (k,), generator=g)).to(x.device)
        self.layer.weight.copy_(x[pick] * self.layer.mask)
        self._normalize_()

    def mean_statistics(self) -> tuple[str, ...]:
        return ("zz", "zx", "loss", "active_codes")

    @torch.no_grad()
    def statistics(self, x: Tensor) -> dict[str, Any]:
        """Codes ``z`` by FISTA at the current dictionary, then the batch means
        ``zz = z^T z / n`` (k, k) and ``zx = z^T x / n`` (k, d); ``_residual`` (n, d) is kept
        for re-seeding dead atoms. ``init="data"`` sets the atoms from the first batch here."""
        if self.init == "data" and int(self.steps) == 0:
            self._init_from_data_(x)
        D = self.layer.effective_weight()
        z = self.infer(x, self.n_iter)  # (n, k)
        n = x.shape[0]
        r = x - z @ D  # (n, d) residual
        return {"zz": z.T @ z / n, "zx": z.T @ x / n, "n": n, "_residual": r,
                "loss": 0.5 * (r * r).sum(1).mean() + self.lam * self.penalty(z).mean(),
                "recon_rel_error": (r * r).sum() / (x * x).sum(), "active_codes": (z != 0).float().sum(1).mean()}

    @torch.no_grad()
    def update(self, stats: dict[str, Any]) -> dict[str, Tensor]:
        """``A <- beta A + zz``, ``B <- beta B + zx``, one block-coordinate pass, re-seeding."""
        beta = self.forgetting_factor(stats["n"])
        self.A.mul_(beta).add_(stats["zz"])
        self.B.mul_(beta).add_(stats["zx"])
        self.steps.add_(1)
        self._bcd_()
        if self.resample_every and int(self.steps) % self.resample_every == 0:
            self._resample_dead_(stats["_residual"])
        return {k: stats[k] for k in ("loss", "recon_rel_error", "active_codes")}

    @torch.no_grad()
    def _bcd_(self) -> None:
        """One pass of exact per-atom updates on the surrogate (Mairal et al. 2010), in
        atom order, as blocked Gauss-Seidel: per block ``J`` of ``BCD_BLOCK`` atoms one GEMM
        ``R = B_J - A_J W`` with the current ``W``; inside the block, atom ``j`` reads
        ``R_j`` (which equals ``B_j - A_j W`` at that moment) and its change ``delta_j``
        corrects the block's later rows by the rank-1 update ``R -= A_{J, j} delta_j``.
        The iterates are those of the plain per-atom loop (to rounding); the per-atom
        ``(k, d)`` mat-vec (memory-bound, O(k^2 d) traffic per pass) becomes one GEMM per
        block plus ``(|J|, d)`` work per atom (NOTES.md section 7)."""
        W, M, A, B = self.layer.weight, self.layer.mask, self.A, self.B
        W.mul_(M)
        diag = A.diagonal()
        tiny = 1e-10 * diag.max().clamp_min(1e-30)
        live = (diag > tiny).tolist()
        k = W.shape[0]
        for j0 in range(0, k, BCD_BLOCK):
            j1 = min(j0 + BCD_BLOCK, k)
            R = torch.addmm(B[j0:j1], A[j0:j1], W, alpha=-1.0)  # (b, d) = B_J - A_J W
            for j in range(j0, j1):
                if not live[j]:
                    continue
                u = (W[j] + R[j - j0] / diag[j]).mul_(M[j])
                u.div_(u.norm().clamp_min(1e-12))
                delta = u - W[j]
                W[j] = u
                if j + 1 < j1:  # later rows of the block see the new atom j
                    R[j + 1 - j0 :].addr_(A[j + 1 : j1, j], delta, alpha=-1.0)

    @torch.no_grad()
    def _resample_dead_(self, residual: Tensor) -> None:
        usage = self.A.diagonal()
        dead = usage < self.dead_fraction * usage.median()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        g = torch.Generator(device="cpu").manual_seed(int(self.seed) + int(self.steps))
        pick = torch.randint(residual.shape[0], (n_dead,), generator=g).to(residual.device)
        W = self.layer.weight
        W[dead] = residual[pick] * self.layer.mask[dead]  # residual rows, respecting the mask
        W[dead] /= W[dead].norm(dim=1, keepdim=True).clamp_min(1e-12)
        # forget the dead atoms' statistics so the next pass does not undo the re-seed
        self.A[dead, :] = 0
        self.A[:, dead] = 0
        self.B[dead] = 0
