"""Spatial stacking: windows of feature maps, the shuffled-positions control, and a stack on
images without higher-order structure."""
import pytest
import torch

from structlearn.depth.spatial import spatial_profile, windows


def test_windows_match_explicit_slices():
    maps = torch.randn(3, 2, 7, 7, generator=torch.Generator().manual_seed(0))
    w = windows(maps, 2, 2)
    assert w.shape == (3, 3, 3, 8)
    i, j = 1, 2
    expect = maps[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(3, -1)  # channel-major, then row, column
    assert torch.equal(w[:, i, j], expect)


def test_shuffled_windows_take_each_offset_from_another_sample():
    n = 200
    maps = torch.arange(n, dtype=torch.float64)[:, None, None, None].expand(n, 1, 4, 4).clone()  # value = sample id
    w = windows(maps, 2, 2, shuffle=torch.Generator().manual_seed(0))
    assert w.shape == (n, 2, 2, 4)
    ids = w[:, 0, 0]  # (n, 4): the sample each offset came from
    for o in range(4):
        assert sorted(ids[:, o].tolist()) == list(range(n))  # a permutation per offset
    assert float((ids[:, 0] == ids[:, 1]).double().mean()) < 0.05  # offsets of one window from different samples


def test_windows_refuse_bad_shapes():
    with pytest.raises(ValueError, match="allowed: \\(n, C, H, W\\) maps with k <= min\\(H, W\\)"):
        windows(torch.zeros(2, 1, 3, 3), 4, 1)


def test_gaussian_white_images_gain_nothing_at_any_layer():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 1, 12, 12, generator=g, dtype=torch.float64)
    H = spatial_profile(x[:2000], x[2000:], [(4, 4), (2, 1)], 16, g, max_iter=30, fit_samples=8000)
    gains = [H[i] - H[i - 1] for i in range(1, len(H))]
    assert all(abs(v) < 0.01 for v in gains), H
