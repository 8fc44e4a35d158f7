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
quickly and then grows to 1. ``rho`` (when set; it replaces ``beta``) is the weighting of Mairal et
al. (2010, JMLR, section 3.4) with ``t`` counting batches, this one included:

    beta_t = (1 - 1/t)^rho,   t = 2, 3, ...    (the first batch's factor is 1: A and B are zero)

which weights batch ``s`` of ``t`` about ``(s/t)^rho``: the window grows with training (about
``t / rho`` batches) where a fixed ``beta`` caps it at ``1 / (1 - beta)``. The longer window
averages more samples but keeps statistics computed with older atoms; on whole 32x32 images
(4096 atoms, 2000 steps; README, "Whole images") ``rho=2`` localised faster up to about step 800
and ended behind ``beta=0.99``. ``init="data"`` replaces the atoms by random samples of the first
batch (masked, normalised; Mairal et al. 2010) instead of keeping the layer's random start.
Atoms whose usage ``A_jj`` stays below ``dead_fraction`` of the median are re-seeded with a
batch residual (standard in online dictionary learning), so no unit stays random.

Linear-cost options for large layers (``k`` atoms, ``d`` inputs, batch ``n``); the defaults
keep the block-coordinate path above, bit for bit:

- ``dict_update``: ``bcd`` (above: ``2nk^2`` for ``z^T z`` plus ``2k^2 d`` per pass, best for
  small ``k``) or a projected-gradient step on the batch (Olshausen and Field 1996), ``O(nkd)``
  time and ``O(kd)`` memory, no ``k x k`` statistics. With ``G = -z^T (x - z D) / n`` (the
  gradient of the batch's reconstruction term) and its tangent part
  ``G_j <- G_j - <G_j, d_j> d_j`` (the radial component removed: atoms live on the sphere),
  ``sgd`` steps ``d_j <- d_j - lr G_j``; ``usage`` steps ``d_j <- d_j - lr G_j / u_j`` with
  ``u_j`` the running mean of ``z_j^2`` (a diagonal Newton step: ``lr = 1`` is the exact
  minimiser along the atom for that batch, the one-batch version of the BCD step); ``adam``
  is Adam (Kingma and Ba 2015) on ``G``. Then the mask, then each row renormalised. Default
  steps: usage 0.03 and adam 0.003 (on whitened 24 x 24 natural patches they come within 1%
  of the block-coordinate held-out objective with 3x its samples at 256 and 1024 atoms, while
  10x larger steps stall at a noise floor, benchmark ``linear_convergence``); sgd 10 (it finds
  planted dictionaries, but one step size for all atoms stalls on natural patches, where atom
  usage spans orders of magnitude: that is what the usage scaling fixes).
- ``stats: sparse`` (``bcd`` only): ``z^T z`` from the non-zero codes (sparse x sparse, cost
  ``sum_i a_i^2`` for ``a_i`` active codes of sample ``i``, instead of ``2nk^2``), added into
  ``A`` at its non-zero entries only, with the forgetting factor kept as a lazy scale:
  ``A = A_scale * A_hat`` (the BCD step is invariant to that scale, so it runs on ``A_hat``).
- ``lipschitz: power``: FISTA's ``L = ||D||_2^2`` by ``power_iters`` power iterations per call,
  warm-started from the previous call's vector (the dictionary moves little between batches),
  continued while the Rayleigh quotient still rises by 0.1% (else 20 Lanczos steps), times
  ``lipschitz_margin``, and exactly (``eigh``, whose top eigenvector restarts the iteration)
  every ``lipschitz_every`` calls; ``2 k d`` per iteration instead of ``2 k d^2 + d^3``.
  The Rayleigh quotient is a lower bound of ``L``; the margin is what keeps the step safe
  between exact calls (tested along training: never below the exact constant).
- ``fista_product: sparse``: on the CPU, FISTA's product of its iterate with ``D`` (or with the
  ``k x k`` step matrix) comes from the iterate's non-zeros (``embedding_bag``) in the
  iterations where fewer than 5% are non-zero, ``nnz d`` instead of ``2 n k d``; equal to the
  dense GEMM to rounding, not bit for bit, hence opt-in. At 16k atoms the codes are under 1%
  non-zero after a few iterations, and FISTA takes about 30% less time (NOTES.md section 12).

Homeostasis (``homeostasis = eta > 0``; off by default): every atom gets its own threshold
``lam_j = lam exp(theta_j)``, so the penalty is ``sum_j lam_j |z_j|`` (FISTA's prox a per-atom
soft threshold), and after each batch

    theta_j <- clamp(theta_j + eta (f_j - p) / p,  -ln 100, ln 100)

with ``f_j`` the share of the batch's samples in which atom ``j`` is non-zero and ``p`` the
mean of ``f_j`` over the atoms: an atom that fires less often than the average gets cheaper,
one that fires more often dearer, until all fire equally often. This is the adaptive
threshold of SAILnet (Zylberberg, Murphy and DeWeese 2011, ``theta_j += gamma (n_j - p)``),
in the log domain and relative to the mean rate so that it needs no target rate; the
updates sum to zero over the atoms, so the thresholds' geometric mean stays ``lam`` (up to
the clamp). It keeps rarely chosen atoms of a large dictionary in use (Perrinet 2010); on
whole 32 x 32 natural images with 4096 atoms it changed nothing measurable, whose usage spread
is moderate (README, "Whole images"). ``theta`` is part of the model: codes (``encode``) and
the reported loss use the per-atom thresholds.
"""
from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from structlearn.functional.sparse import Prox, fista, lipschitz, soft_threshold
from structlearn.objectives.base import OBJECTIVES, Objective
from structlearn.params import Interval, Options, OrNone, Param

BCD_BLOCK = 64  # atoms per GEMM in the dictionary update
INITS = ("random", "data")
DICT_UPDATES = ("bcd", "sgd", "usage", "adam")
DEFAULT_LR = {"sgd": 10.0, "usage": 0.03, "adam": 0.003}  # see the module docstring
LANCZOS_STEPS = 20  # when warm power iterations do not settle (lipschitz: power)
USAGE_DECAY = 0.99  # running mean of z_j^2 for the usage step and the dead-atom check
ADAM_BETAS = (0.9, 0.999)
THRESHOLD_LOG_RANGE = float(np.log(100.0))  # homeostasis: no threshold drifts more than 100x from lam


@OBJECTIVES.register("sparse_coding")
class SparseCoding(Objective):
    name = "sparse_coding"
    uses_gradients = False
    A: Tensor  # (k, k) running sum of z^T z / n (buffers)
    B: Tensor  # (k, d) running sum of z^T x / n
    steps: Tensor  # () long
    seed: Tensor  # () long, the re-seeding stream
    usage: Tensor  # (k,) running mean of z_j^2 (gradient updates)
    adam_m: Tensor  # (k, d) Adam's moments (dict_update: adam)
    adam_v: Tensor
    A_scale: Tensor  # () float64: A = A_scale * A_hat (stats: sparse)
    power_vector: Tensor  # (d,) the power iteration's warm start (lipschitz: power)
    power_calls: Tensor  # () long
    log_threshold: Tensor  # (k,) theta_j, lam_j = lam exp(theta_j) (homeostasis > 0)
    lam = Param(0.5, Interval(float, 0, None, closed="neither"), "L1 weight lambda")
    n_iter = Param(50, Interval(int, 1, None), "FISTA iterations per training batch")
    eval_iter = Param(200, Interval(int, 1, None), "FISTA iterations for encode / evaluation")
    beta = Param(0.99, OrNone(Interval(float, 0, 1, closed="left")),
                 "forgetting factor of A and B; null: scikit-learn's schedule")
    rho = Param(None, OrNone(Interval(float, 0, None, closed="neither")),
                "when set: forgetting factor (1 - 1/t)^rho at batch t (Mairal et al. 2010), replacing beta")
    init = Param("random", Options(INITS), "random: keep the layer's start; data: atoms from the first batch")
    dead_fraction = Param(0.02, Interval(float, 0, 1), "re-seed atoms whose usage is below this share of the median")
    resample_every = Param(100, Interval(int, 0, None), "steps between dead-atom checks (0: never)")
    dict_update = Param("bcd", Options(DICT_UPDATES), "bcd: block coordinate on running statistics (small k); "
                        "sgd, usage, adam: projected-gradient steps, O(nkd)")
    dict_lr = Param(None, OrNone(Interval(float, 0, None, closed="neither")),
                    "step size of sgd/usage/adam; null: 10 (sgd), 0.03 (usage), 0.003 (adam)")
    stats = Param("dense", Options(("dense", "sparse")), "bcd's z^T z: dense GEMM, or from the non-zero codes")
    lipschitz = Param("exact", Options(("exact", "power")), "FISTA's step: exact ||D||^2, or warm power iteration")
    power_iters = Param(2, Interval(int, 1, None), "power iterations per FISTA call (lipschitz: power)")
    lipschitz_margin = Param(1.05, Interval(float, 1, None), "factor on the power estimate (lipschitz: power)")
    lipschitz_every = Param(50, Interval(int, 1, None), "calls between exact computations (lipschitz: power)")
    fista_product = Param("dense", Options(("dense", "sparse")), "FISTA's product of the iterate with D: dense "
                          "GEMM, or from its non-zeros while fewer than 5% are non-zero (CPU)")
    homeostasis = Param(0.0, Interval(float, 0, 1), "rate eta of the per-atom thresholds that equalise how often "
                        "atoms fire (0: off, one lam for all atoms)")
    fixed_params: ClassVar[tuple[str, ...]] = ("dict_update", "stats", "lipschitz", "homeostasis")

    def __init__(self, layer, *, generator: torch.Generator | None = None, **params: Any) -> None:
        super().__init__(layer, generator=generator, **params)
        w = layer.weight
        k, d = layer.n_units, layer.n_in
        if self.dict_update == "bcd":  # the gradient updates keep no (k, k) statistics
            self.register_buffer("A", torch.zeros(k, k, device=w.device, dtype=w.dtype))
            self.register_buffer("B", torch.zeros(k, d, device=w.device, dtype=w.dtype))
        # the step and call counters live on the host whatever the layer's device: the schedule
        # reads them every step, and reading a CUDA scalar would be a device sync
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        self.register_buffer("seed", torch.tensor(seed, dtype=torch.long))  # re-seeding stream, saved for resume
        # the options' state, registered only when used (the default's state_dict is unchanged)
        if self.dict_update != "bcd":
            self.register_buffer("usage", torch.zeros(k, device=w.device, dtype=w.dtype))
        if self.dict_update == "adam":
            self.register_buffer("adam_m", torch.zeros(k, d, device=w.device, dtype=w.dtype))
            self.register_buffer("adam_v", torch.zeros(k, d, device=w.device, dtype=w.dtype))
        if self.stats == "sparse":
            self.register_buffer("A_scale", torch.ones((), device=w.device, dtype=torch.float64))
        if self.lipschitz == "power":
            self.register_buffer("power_vector", torch.ones(d, device=w.device, dtype=w.dtype) / d ** 0.5)
            self.register_buffer("power_calls", torch.zeros((), dtype=torch.long))  # host, as steps
        if self.homeostasis > 0:
            self.register_buffer("log_threshold", torch.zeros(k, device=w.device, dtype=w.dtype))
        with torch.no_grad():
            layer.apply_mask_()
            self._normalize_()

    # penalty and its prox: group sparse coding overrides these two
    def penalty(self, z: Tensor) -> Tensor:
        """Per-sample ``||z||_1``, or ``sum_j exp(theta_j) |z_j|`` with homeostasis: (n,)."""
        if self.homeostasis > 0:
            return z.abs() @ self.log_threshold.exp()
        return z.abs().sum(1)

    def prox(self) -> Prox | None:
        """The prox of ``t * penalty``; ``None`` selects FISTA's built-in in-place soft threshold.
        With homeostasis: the soft threshold at ``t exp(theta_j)`` for atom ``j``."""
        if self.homeostasis > 0:
            scale = self.log_threshold.exp()  # (k,), once per FISTA call
            return lambda v, t: soft_threshold(v, scale * t)
        return None

    def _check_joint(self, p: dict[str, Any]) -> None:
        if p["stats"] == "sparse" and p["dict_update"] != "bcd":
            raise ValueError(f"stats='sparse' with dict_update={p['dict_update']!r}; allowed: stats 'sparse' only with "
                             "dict_update 'bcd' (the gradient updates keep no z^T z)")

    @torch.no_grad()
    def lipschitz_constant(self, D: Tensor) -> Tensor | float:
        """FISTA's ``L`` for ``D`` (times 1.0001, as always): exact, or the warm power estimate
        times ``lipschitz_margin``. Power mode: ``power_iters`` iterations from the previous
        call's vector, more (up to 4 times as many) while the Rayleigh quotient ``rho = v^T G v``
        still rises by more than 0.1% per iteration; when it has not settled (early training
        moves the top eigenvector far), 20 Lanczos steps from there; and the exact value (whose
        top eigenvector becomes the next start) every ``lipschitz_every`` calls. (Falling back
        to the exact ``eigh`` instead cost 7.6 s per call at d = 3072, k = 8192.)

        Host reads: the power estimate comes back as a Python float (rounded to ``D``'s dtype,
        as the tensor it replaces), read once when the first ``power_iters`` iterations settle,
        so FISTA's step costs no further device sync; each further iteration or Lanczos step
        reads one more. The exact value stays a tensor (one read, in FISTA)."""
        if self.lipschitz == "exact":
            return self._exact_lipschitz(D, keep_vector=False) * 1.0001
        calls = int(self.power_calls)  # a host counter: no sync
        self.power_calls.add_(1)
        if calls % self.lipschitz_every:
            tiny = torch.finfo(D.dtype).tiny
            v, last, last_t = self.power_vector, 0.0, None
            for it in range(4 * self.power_iters):
                w = self._gram_apply(D, v)
                rho_t = torch.dot(v, w)  # Rayleigh quotients of power iterates never decrease
                if it + 1 < self.power_iters:  # no stopping test yet: nothing read
                    last_t = rho_t
                else:
                    if last_t is not None:  # the first test reads both quotients at once
                        last, rho = torch.stack([last_t, rho_t]).tolist()
                        last_t = None
                    else:
                        rho = float(rho_t)
                    if rho - last <= 1e-3 * rho:
                        self.power_vector.copy_(w / w.norm().clamp_min(tiny))
                        return _as_dtype(rho * self.lipschitz_margin * 1.0001, D.dtype)
                    last = rho
                v = w / w.norm().clamp_min(tiny)
            theta, ritz = self._lanczos_top(D, v, min(LANCZOS_STEPS, D.shape[1]))
            self.power_vector.copy_(ritz)
            return _as_dtype(theta * self.lipschitz_margin * 1.0001, D.dtype)
        return self._exact_lipschitz(D) * 1.0001

    @torch.no_grad()
    def _lanczos_top(self, D: Tensor, v0: Tensor, m: int) -> tuple[float, Tensor]:
        """The largest Ritz value of ``G = D^T D`` after ``m`` Lanczos steps from ``v0`` (full
        reorthogonalisation; ``m`` products with ``G`` through :meth:`_gram_apply`), and its
        Ritz vector. Ritz values never exceed ``lambda_max``; on crowded spectra they approach
        it far faster than power iterations (a fresh 8192 x 3072 dictionary: 0.9995 of it after
        20 steps, 0.33 s, where 12 power iterations reach 0.92 and ``eigh`` takes 7.6 s)."""
        tiny = torch.finfo(D.dtype).tiny
        Q = [v0 / v0.norm().clamp_min(tiny)]
        alphas: list[float] = []
        betas: list[float] = []
        for j in range(m):
            w = self._gram_apply(D, Q[-1])
            alphas.append(float(Q[-1] @ w))
            Qm = torch.stack(Q)  # (j + 1, d)
            w = w - Qm.T @ (Qm @ w)
            w = w - Qm.T @ (Qm @ w)  # twice is enough (Giraud et al. 2005)
            b = float(w.norm())
            if j == m - 1 or b <= 1e-10 * max(abs(a) for a in alphas):
                break
            betas.append(b)
            Q.append(w / b)
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(T)
        ritz = torch.stack(Q[: T.shape[0]]).T @ evecs[:, -1].to(D.dtype)
        return float(evals[-1]), ritz / ritz.norm().clamp_min(tiny)

    def _gram_apply(self, D: Tensor, v: Tensor) -> Tensor:
        """``D^T D v``: (d,). (A sharded layer sums it over the shards.)"""
        return D.T @ (D @ v)

    def _exact_lipschitz(self, D: Tensor, keep_vector: bool = True) -> Tensor:
        """``||D||_2^2`` from the smaller Gram matrix; with ``keep_vector`` its top eigenvector
        (in input space) becomes the power iteration's start."""
        if not keep_vector:
            return lipschitz(D)
        small = D.shape[0] < D.shape[1]
        evals, evecs = torch.linalg.eigh(D @ D.T if small else D.T @ D)
        v = D.T @ evecs[:, -1] if small else evecs[:, -1]
        self.power_vector.copy_(v / v.norm().clamp_min(torch.finfo(D.dtype).tiny))
        return evals[-1]

    def infer(self, x: Tensor, n_iter: int) -> Tensor:
        D = self.layer.effective_weight().detach()
        return fista(x, D, self.lam, n_iter, L=self.lipschitz_constant(D), prox=self.prox(),
                     sparse=self.fista_product == "sparse")

    def encode(self, x: Tensor) -> Tensor:
        """Codes at ``eval_iter`` iterations. An evaluation leaves the training state alone: the
        warm power iteration's vector and call count (``lipschitz: power``) are put back, so
        how often a run evaluates never changes what it trains (nor does a sharded run's
        evaluation of its gathered layer)."""
        if self.lipschitz != "power":
            return self.infer(x, self.eval_iter)
        kept = self.power_vector.clone(), self.power_calls.clone()
        try:
            return self.infer(x, self.eval_iter)
        finally:
            self.power_vector.copy_(kept[0])
            self.power_calls.copy_(kept[1])

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
        if self.rho is not None:
            t = int(self.steps) + 1
            return (1.0 - 1.0 / t) ** self.rho if t > 1 else 1.0
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
        fires = ("fires",) if self.homeostasis > 0 else ()
        if self.dict_update != "bcd":
            return ("grad", "usage", "loss", "active_codes", *fires)
        return ("zz", "zx", "loss", "active_codes", *fires)

    @torch.no_grad()
    def statistics(self, x: Tensor) -> dict[str, Any]:
        """Codes ``z`` by FISTA at the current dictionary, then the batch means
        ``zz = z^T z / n`` (k, k) and ``zx = z^T x / n`` (k, d); ``_residual`` (n, d) is kept
        for re-seeding dead atoms, on the steps that re-seed only (data-parallel replicas
        gather it). ``init="data"`` sets the atoms from the first batch here.
        The gradient updates take ``grad = -z^T r / n`` (k, d) and ``usage = mean z^2`` (k,)
        instead; ``stats: sparse`` gives ``zz`` as a sparse COO tensor."""
        if self.init == "data" and int(self.steps) == 0:
            self._init_from_data_(x)
        D = self.layer.effective_weight()
        z = self.infer(x, self.n_iter)  # (n, k)
        n = x.shape[0]
        r = x - z @ D  # (n, d) residual
        out: dict[str, Any] = {"n": n, "loss": 0.5 * (r * r).sum(1).mean() + self.lam * self.penalty(z).mean(),
                               "recon_rel_error": (r * r).sum() / (x * x).sum(),
                               "active_codes": (z != 0).float().sum(1).mean()}
        if self.reseeds_next():
            out["_residual"] = r
        if self.homeostasis > 0:
            out["fires"] = (z != 0).to(x.dtype).mean(0)
        if self.dict_update != "bcd":
            out.update(grad=z.T @ r / -n, usage=(z * z).mean(0))
        elif self.stats == "sparse":
            zs = z.to_sparse()
            zst = zs.t().coalesce()
            with warnings.catch_warnings():  # torch marks its sparse x sparse product (CSR inside) as beta
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                zz = torch.sparse.mm(zst, zs).coalesce()
            out.update(zz=zz / n, zx=torch.sparse.mm(zst, x) / n)
        else:
            out.update(zz=z.T @ z / n, zx=z.T @ x / n)
        return out

    def reseeds_next(self) -> bool:
        """Whether the next :meth:`update` checks for dead atoms (it reads ``_residual``)."""
        return bool(self.resample_every) and (int(self.steps) + 1) % self.resample_every == 0

    @torch.no_grad()
    def update(self, stats: dict[str, Any]) -> dict[str, Tensor]:
        """``A <- beta A + zz``, ``B <- beta B + zx``, one block-coordinate pass, re-seeding
        (or one projected-gradient step, see the module docstring)."""
        beta = self.forgetting_factor(stats["n"])
        if self.dict_update != "bcd":
            self.steps.add_(1)
            self._gradient_step_(stats["grad"], stats["usage"])
        elif self.stats == "sparse":  # A = A_scale * A_hat: only the non-zeros of zz are touched
            self.A_scale.mul_(beta)
            c = float(self.A_scale)
            zz = stats["zz"]
            idx = zz.indices()
            self.A.index_put_((idx[0], idx[1]), zz.values() / c, accumulate=True)
            self.B.add_(stats["zx"], alpha=1.0 / c)
            if c < 1e-100:  # fold the scale back in before it underflows
                self.A.mul_(c)
                self.B.mul_(c)
                self.A_scale.fill_(1.0)
            self.steps.add_(1)
            self._bcd_()
        else:
            self.A.mul_(beta).add_(stats["zz"])
            self.B.mul_(beta).add_(stats["zx"])
            self.steps.add_(1)
            self._bcd_()
        if self.homeostasis > 0:
            self._adapt_thresholds_(stats["fires"])
        if self.resample_every and int(self.steps) % self.resample_every == 0:
            self._resample_dead_(stats["_residual"])
        return {k: stats[k] for k in ("loss", "recon_rel_error", "active_codes")}

    @torch.no_grad()
    def _gradient_step_(self, grad: Tensor, usage: Tensor) -> None:
        """One projected-gradient step on the atoms (module docstring): tangent part of the
        batch gradient, the step, the mask, unit rows. ``O(kd)``."""
        W, M = self.layer.weight, self.layer.mask
        W.mul_(M)
        g = grad - (grad * W).sum(1, keepdim=True) * W  # (k, d): the radial component removed
        lr = self.dict_lr if self.dict_lr is not None else DEFAULT_LR[self.dict_update]
        t = int(self.steps)
        self.usage.mul_(USAGE_DECAY).add_(usage, alpha=1 - USAGE_DECAY)
        if self.dict_update == "sgd":
            step = g.mul_(lr)
        elif self.dict_update == "usage":
            u = self.usage / (1 - USAGE_DECAY ** t)  # bias-corrected running mean of z_j^2
            floor = (u.mean().double() * 1e-3 + 1e-30).to(u.dtype)  # on the device: no sync (same rounding as a float)
            step = g.mul_((lr / u.clamp_min(floor))[:, None])
        else:  # adam
            b1, b2 = ADAM_BETAS
            self.adam_m.mul_(b1).add_(g, alpha=1 - b1)
            self.adam_v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step = (self.adam_m / (1 - b1 ** t)).div_((self.adam_v / (1 - b2 ** t)).sqrt_().add_(1e-8)).mul_(lr)
        W.sub_(step).mul_(M)
        self._normalize_()

    @torch.no_grad()
    def _adapt_thresholds_(self, fires: Tensor) -> None:
        """``theta_j += eta (f_j - p) / p``, clamped to ``|theta_j| <= ln 100`` (module
        docstring); ``fires``: (k,) this batch's firing shares. On the device: no sync."""
        p = self._atom_mean(fires)
        step = (fires - p).div_(p.clamp_min(torch.finfo(fires.dtype).tiny)).mul_(self.homeostasis)
        self.log_threshold.add_(step).clamp_(-THRESHOLD_LOG_RANGE, THRESHOLD_LOG_RANGE)

    def _atom_mean(self, t: Tensor) -> Tensor:
        """The mean of a per-atom tensor over every atom of the layer (a sharded layer sums its shards')."""
        return t.mean()

    def atom_usage(self) -> Tensor:
        """How much each atom is used: ``A_jj`` (bcd) or the running mean of ``z_j^2``."""
        return self.A.diagonal() if self.dict_update == "bcd" else self.usage

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

    def _global_usage(self) -> tuple[Tensor, slice]:
        """Every atom's usage and this layer's slice of them (a sharded layer gathers its shards')."""
        return self.atom_usage(), slice(None)

    @torch.no_grad()
    def _resample_dead_(self, residual: Tensor) -> None:
        full, mine = self._global_usage()
        dead_all = full < self.dead_fraction * full.median()
        n_dead = int(dead_all.sum())
        if n_dead == 0:
            return
        g = torch.Generator(device="cpu").manual_seed(int(self.seed) + int(self.steps))
        pick = torch.randint(residual.shape[0], (n_dead,), generator=g).to(residual.device)
        order = torch.cumsum(dead_all.long(), 0) - 1  # the dead atoms take the picks in atom order
        dead = dead_all[mine]
        if not bool(dead.any()):
            return
        W = self.layer.weight
        W[dead] = residual[pick[order[mine][dead]]] * self.layer.mask[dead]  # residual rows, respecting the mask
        W[dead] /= W[dead].norm(dim=1, keepdim=True).clamp_min(1e-12)
        # forget the dead atoms' statistics so the next pass does not undo the re-seed
        if self.dict_update == "bcd":
            self.A[dead, :] = 0
            self.A[:, dead] = 0
            self.B[dead] = 0
        else:
            self.usage[dead] = full.median()  # a fresh atom starts at the typical usage, not re-seeded at once
        if self.dict_update == "adam":
            self.adam_m[dead] = 0
            self.adam_v[dead] = 0


def _as_dtype(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype`` (float32 or float64, the run's dtypes) on the host (numpy;
    no tensor is read), as a Python float."""
    return float(np.array(value, dtype=torch.empty((), dtype=dtype).numpy().dtype))
