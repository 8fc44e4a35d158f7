"""10. ReduNet: one shift-invariant layer's construction, per frequency versus on all shifts.

The same layer two ways (they agree to rounding: tests/test_redunet.py checks it to 1e-10):

- ours: :class:`structlearn.redunet.ReduLayer` with ``spatial_dims=2`` builds E and every C_j
  from ``m`` images of ``C x H x W``: one real FFT, per stored frequency a ``C x C`` Gram matrix
  and a batched Cholesky inverse (``J + 1`` operators, ``H (W/2 + 1)`` frequencies);
- baseline: the explicit vector form, the reference formulation of a translation-invariant
  layer: all ``m H W`` cyclic shifts as rows of ``d = C H W`` features, ``d x d`` Gram matrices
  and Cholesky inverses for E and each C_j.

Quality: both operators applied to one random probe ``x`` (``E x`` as a circular convolution
versus the dense ``d x d`` product), relative difference. float64 on both sides.
"""
from __future__ import annotations

import torch

from structlearn.bench import Benchmark, Context, Result, Target
from structlearn.redunet import ReduLayer, ops


def _all_shifts(Z: torch.Tensor) -> torch.Tensor:
    H, W = Z.shape[-2:]
    return torch.cat([torch.roll(Z, (a, b), dims=(2, 3)) for a in range(H) for b in range(W)])


def run(ctx: Context) -> list[Result]:
    cases = ctx.pick([(8, 16, 64, 4), (16, 16, 32, 4)], [(8, 16, 64, 4), (16, 16, 16, 2)], [(4, 4, 12, 2), (6, 4, 8, 2)])
    rows = []
    for side, C, m, J in cases:
        g = ctx.generator(f"redunet/{side}/{C}/{m}/{J}")
        Z = ops.normalize(torch.randn(m, C, side, side, generator=g, dtype=torch.float64))
        y = torch.arange(m) % J
        N = side * side
        Zs, ys = _all_shifts(Z).flatten(1), y.repeat(N)
        fft = ReduLayer(J, 2, 0.5, 500.0, 0.1, "exact")
        vec = ReduLayer(J, 0, 0.5, 500.0, 0.1, "exact")
        t_o, t_b = ctx.time_pair(lambda: fft.fit(Z, y), lambda: vec.fit(Zs, ys), repeat=min(ctx.repeat, 3))
        x = torch.randn(1, C, side, side, generator=g, dtype=torch.float64)
        Ex_fft = ops.from_fourier(ops.to_fourier(x) @ fft.E.mT, tuple(x.shape)).flatten(1)
        Ex_vec = x.flatten(1) @ vec.E.T
        quality = {"E_probe_rel_diff": float((Ex_fft - Ex_vec).norm() / Ex_vec.norm()), "d": C * N, "rows": m * N}
        rows.append(Result("redunet", f"{C}x{side}x{side}, m={m}, J={J}", "per-frequency Cholesky (real FFT)",
                           "vector form on all m H W shifts (d x d)", t_o, t_b,
                           target=Target("speedup", ">=", 20) if side >= 16 else None, quality=quality,
                           notes="float64; construction of E and every C_j"))
    return rows


BENCHMARK = Benchmark("redunet", 10, run, "ReduNet layer construction: per frequency vs the vector form on all shifts")
