"""Pruning masks and locality metrics on planted receptive fields with known answers."""
import pytest
import torch

from structlearn.data.mosaics import make_tile_map
from structlearn.models.dense import DenseLayer
from structlearn.prune.magnitude import PRUNERS, magnitude_mask
from structlearn.structure.locality import locality_summary, participation_ratio, single_tile, tile_purity

TM = make_tile_map((3, 3), (8, 8))


def test_planted_purity_known_values():
    g = torch.Generator().manual_seed(0)
    inside = torch.zeros(24, 24)
    inside[8:16, 0:8] = torch.randn(8, 8, generator=g)  # tile 3 only
    uniform = torch.ones(24, 24)
    half = torch.zeros(24, 24)
    half[0, 0], half[0, 8] = 1.0, 1.0  # equal energy in tiles 0 and 1
    W = torch.stack([inside, uniform, half])
    torch.testing.assert_close(tile_purity(W, TM), torch.tensor([1.0, 1 / 9, 0.5]))
    assert single_tile(W, TM).tolist() == [True, False, False]
    s = locality_summary(W, TM)
    assert s["chance_purity"] == pytest.approx(1 / 9)


def test_purity_is_invariant_to_sign_and_scale():
    W = torch.randn(5, 24, 24, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(tile_purity(-3.7 * W, TM), tile_purity(W, TM))


def test_participation_ratio_extremes():
    delta = torch.zeros(1, 10, 10)
    delta[0, 3, 4] = 2.0
    torch.testing.assert_close(participation_ratio(delta), torch.tensor([1.0]))
    torch.testing.assert_close(participation_ratio(torch.ones(1, 10, 10)), torch.tensor([100.0]))


def test_empty_units_excluded_not_crashing():
    W = torch.zeros(3, 24, 24)
    W[0, 0, 0] = 1
    s = locality_summary(W, TM)
    assert s["empty_units"] == 2 and s["tile_purity_mean"] == 1.0
    with pytest.raises(ValueError, match="n_units = 0"):
        locality_summary(torch.zeros(0, 24, 24), TM)
    with pytest.raises(ValueError, match="tile_map shape"):
        locality_summary(torch.zeros(2, 10, 10), TM)


@pytest.mark.parametrize("scope", ["unit", "global"])
@pytest.mark.parametrize("density", [0.05, 0.15, 0.5, 1.0])
def test_target_density_met_exactly(scope, density):
    w = torch.randn(64, 100, generator=torch.Generator().manual_seed(2))
    m = magnitude_mask(w, scope=scope, density=density)
    assert m.sum() == round(density * 100) * 64 if scope == "unit" else m.sum() == round(density * 6400)
    if scope == "unit":  # keeps exactly each unit's largest weights
        kept_min = torch.where(m, w.abs(), torch.inf).min(1).values
        dropped_max = torch.where(~m, w.abs(), -torch.inf).max(1).values
        assert torch.all(kept_min >= dropped_max)


def test_relative_threshold_and_mask_never_grows():
    w = torch.tensor([[1.0, 0.5, 0.05, -0.2], [0.1, -0.01, 0.0, 0.09]])
    m = magnitude_mask(w, scope="unit", threshold=0.1)
    assert m.tolist() == [[True, True, False, True], [True, False, False, True]]
    prev = torch.tensor([[False, True, True, True], [True, True, True, True]])
    m2 = magnitude_mask(w, prev, scope="unit", threshold=0.1)
    assert not torch.any(m2 & ~prev)


@pytest.mark.parametrize("kw, msg", [({"density": 0.0}, "density"), ({"density": 1.5}, "density"),
                                     ({"threshold": 1.0}, "threshold"), ({"threshold": 0.1, "density": 0.1}, "not both"),
                                     ({"scope": "row", "density": 0.1}, "scope")])
def test_pruner_bad_input(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PRUNERS.create("magnitude", **kw)


def test_unknown_pruner_lists_known():
    with pytest.raises(ValueError, match="magnitude"):
        PRUNERS.create("nope")


def test_pruner_sets_layer_mask_and_zeroes_weights():
    layer = DenseLayer(50, 8, generator=torch.Generator().manual_seed(0))
    PRUNERS.create("magnitude", density=0.2)(layer)
    assert layer.density() == pytest.approx(0.2)
    assert torch.all(layer.weight[~layer.mask] == 0)
    # the forward pass ignores pruned weights even if the raw parameter is changed there
    with torch.no_grad():
        layer.weight[~layer.mask] = 123.0
    x = torch.randn(3, 50)
    torch.testing.assert_close(layer(x), x @ torch.where(layer.mask, layer.weight, 0.0).T)
    assert float(layer(x).detach().abs().max()) < 50


def test_shuffled_purity_is_the_chance_level_of_the_weights():
    from structlearn.structure.locality import shuffled_purity

    g = torch.Generator().manual_seed(5)
    one = torch.zeros(1, 24, 24)
    one[0, 3, 4] = 2.0  # a single weight: purity 1 wherever it goes
    flat = torch.ones(1, 24, 24)  # uniform: 1/9 under any permutation
    local = torch.zeros(1, 24, 24)
    local[0, :8, :8] = torch.randn(8, 8, generator=g)  # one full tile
    W = torch.cat([one, flat, local])
    null = shuffled_purity(W, TM, n_perm=64)
    torch.testing.assert_close(null[:2], torch.tensor([1.0, 1 / 9]))
    assert float(tile_purity(local, TM)) == 1.0 and float(null[2]) < 0.35  # 64 weights scattered over 9 tiles
    # random fields: purity equals its own null in distribution
    R = torch.randn(400, 24, 24, generator=g) * (torch.rand(400, 24, 24, generator=g) < 0.15)
    assert abs(float(tile_purity(R, TM).mean()) - float(shuffled_purity(R, TM).mean())) < 0.01
    assert torch.equal(shuffled_purity(R, TM, seed=3), shuffled_purity(R, TM, seed=3))
    with pytest.raises(ValueError, match="n_perm"):
        shuffled_purity(R, TM, n_perm=0)


def _radius_loop(w: torch.Tensor, fraction: float) -> float:
    """The 90%-energy radius of one field, written out in float64 with Python loops."""
    e = (w.double() ** 2).tolist()
    H, W = len(e), len(e[0])
    tot = sum(map(sum, e))
    cy = sum(e[i][j] * i for i in range(H) for j in range(W)) / tot
    cx = sum(e[i][j] * j for i in range(H) for j in range(W)) / tot
    pix = sorted((((i - cy) ** 2 + (j - cx) ** 2) ** 0.5, e[i][j]) for i in range(H) for j in range(W))
    acc = 0.0
    for d, v in pix:
        acc += v
        if acc >= fraction * tot * (1 - 1e-12):
            return d
    return pix[-1][0]


def test_energy_radius_closed_forms_reference_and_invariances():
    from structlearn.structure.locality import energy_radius

    W = torch.zeros(3, 16, 16)
    W[0, 5, 7] = 2.0  # one pixel: radius 0
    W[1, 3:6, 3:6] = 1.0  # a 3x3 square: 8 of 9 pixels within 1, the corners at sqrt(2) -> 90% needs sqrt(2)
    W[2, 0, 0] = W[2, 0, 2] = 1.0  # two pixels 2 apart: centre between them, radius 1
    r = energy_radius(W)
    torch.testing.assert_close(r, torch.tensor([0.0, 2 ** 0.5, 1.0]))
    g = torch.Generator().manual_seed(0)
    rand = torch.randn(20, 9, 12, generator=g) * (torch.rand(20, 9, 12, generator=g) < 0.3)
    ref = torch.tensor([_radius_loop(w, 0.9) for w in rand], dtype=torch.float32)
    torch.testing.assert_close(energy_radius(rand), ref)
    torch.testing.assert_close(energy_radius(rand, 0.5), torch.tensor([_radius_loop(w, 0.5) for w in rand]))
    blob = torch.zeros(1, 32, 32)
    blob[0, 4:9, 6:10] = torch.randn(5, 4, generator=g)
    moved = torch.roll(blob, shifts=(15, 11), dims=(1, 2))  # still inside the image
    torch.testing.assert_close(energy_radius(moved), energy_radius(blob))  # translation
    torch.testing.assert_close(energy_radius(-3.0 * blob), energy_radius(blob))  # sign and scale
    assert energy_radius(torch.zeros(1, 4, 4)).isnan().all()
    uniform = locality_summary(torch.ones(5, 32, 32))["energy_radius90_median"]
    assert uniform == pytest.approx((0.9 * 1024 / torch.pi) ** 0.5 / 32, rel=0.05)  # a disc of 90% of the area (pixels: +3.5%)
    with pytest.raises(ValueError, match="allowed: \\(0, 1\\]"):
        energy_radius(W, 0.0)
