"""Images, patches, mosaics, Gaussian clone and whitening: what the math promises."""
import numpy as np
import pytest
import torch

from structlearn.data.images import load_bundled, load_folder, to_gray_float
from structlearn.data.mosaics import gaussian_clone, make_mosaics, make_tile_map
from structlearn.data.patches import sample_patches
from structlearn.data.whiten import ZCA, one_over_f_filter, whiten_one_over_f


@pytest.fixture(scope="module")
def images():
    return load_bundled(("camera", "astronaut", "grass", "brick", "coffee"))


def test_images_are_gray_unit_range(images):
    for im in images:
        assert im.ndim == 2 and im.dtype == np.float32
        assert 0.0 <= im.min() < im.max() <= 1.0


def test_to_gray_handles_rgb_rgba_16bit():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    g = to_gray_float(rgb)
    ref = (0.2125 * rgb[..., 0] + 0.7154 * rgb[..., 1] + 0.0721 * rgb[..., 2]) / 255
    np.testing.assert_allclose(g, ref, atol=1e-6)
    rgba = np.concatenate([rgb, np.full((10, 12, 1), 255, np.uint8)], -1)
    np.testing.assert_allclose(to_gray_float(rgba), ref, atol=1e-6)
    u16 = (rng.integers(0, 65536, (8, 8))).astype(np.uint16)
    np.testing.assert_allclose(to_gray_float(u16), u16 / 65535, atol=1e-6)


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((8, 8), bool), "boolean"),
    (np.full((8, 8), 0.5), "constant"),
    (np.where(np.eye(8) > 0, np.nan, 0.5), "NaN"),
    (np.zeros((2, 3, 4, 5)), "shape"),
])
def test_bad_images_rejected(bad, msg):
    with pytest.raises(ValueError, match=msg):
        to_gray_float(bad, "x")


def test_folder_loading_and_errors(tmp_path):
    from skimage.io import imsave

    with pytest.raises(ValueError, match="does not exist"):
        load_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no images"):
        load_folder(tmp_path)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imsave(sub / "x.png", rng.integers(0, 256, (20, 30), dtype=np.uint8), check_contrast=False)
    imsave(tmp_path / "y.tif", rng.integers(0, 65536, (16, 16), dtype=np.uint16), check_contrast=False)
    ims = load_folder(tmp_path)
    assert [im.shape for im in ims] == [(20, 30), (16, 16)]  # recursive, sorted
    (tmp_path / "z.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="z.jpg"):
        load_folder(tmp_path)


def test_patches_seeded_and_inside_images(images):
    a = sample_patches(images, (8, 6), 500, torch.Generator().manual_seed(1))
    b = sample_patches(images, (8, 6), 500, torch.Generator().manual_seed(1))
    assert a.shape == (500, 8, 6) and torch.equal(a, b)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    with pytest.raises(ValueError, match="larger than every image"):
        sample_patches(images, (2000, 8), 5, torch.Generator())


def test_tile_map():
    tm = make_tile_map((2, 4), (6, 6))
    assert tm.shape == (12, 24)
    assert tm[0, 0] == 0 and tm[0, 23] == 3 and tm[11, 0] == 4 and tm[11, 23] == 7
    assert torch.equal(torch.bincount(tm.flatten()), torch.full((8,), 36))


def test_cross_tile_correlation_within_sampling_error(images):
    n = 20000
    m = make_mosaics(images, (3, 3), (8, 8), n, torch.Generator().manual_seed(0))
    X = m.x.reshape(n, -1).double()
    C = torch.corrcoef(X.T)
    tm = m.tile_map.flatten()
    cross = tm[:, None] != tm[None, :]
    se = 1 / np.sqrt(n)  # sampling s.d. of a correlation coefficient at rho = 0
    assert float(C[cross].abs().mean()) < 1.5 * se  # E|N(0, se)| = 0.8 se
    assert float(C[cross].abs().max()) < 6 * se
    neighbours = C[~cross & (torch.arange(576)[:, None] == torch.arange(576)[None, :] - 1)]
    assert float(neighbours.mean()) > 0.5  # inside a tile, natural-image correlation survives


def test_gaussian_clone_moments_exact(images):
    m = make_mosaics(images, (3, 3), (4, 4), 3000, torch.Generator().manual_seed(0))
    X = m.x.reshape(3000, -1).double()
    c = gaussian_clone(m.x.double(), 2000, torch.Generator().manual_seed(1)).reshape(2000, -1)
    torch.testing.assert_close(c.mean(0), X.mean(0), atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.cov(c.T), torch.cov(X.T), atol=1e-10, rtol=0)
    # Gaussian: no higher-order structure -> excess kurtosis of a projection is ~0,
    # while the natural mosaics are heavy-tailed
    def kurt(v):
        v = v - v.mean()
        return float((v ** 4).mean() / (v ** 2).mean() ** 2 - 3)
    assert abs(kurt(c[:, 5])) < 0.5 and kurt(X[:, 5]) > 1.0


def test_zca_whitens_and_inverts(images):
    m = make_mosaics(images, (2, 2), (6, 6), 8000, torch.Generator().manual_seed(0), remove_mean="none")
    X = m.x.reshape(8000, -1).double()
    z = ZCA(X.shape[1], floor=1e-6).fit(X)
    Y = z(X)
    torch.testing.assert_close(torch.cov(Y.T), torch.eye(X.shape[1], dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(z.inverse(Y), X, atol=1e-8, rtol=0)
    # ZCA is symmetric; with independent tiles its matrix is (near) block-diagonal
    W = z.matrix
    torch.testing.assert_close(W, W.T)
    tm = m.tile_map.flatten()
    cross = tm[:, None] != tm[None, :]
    assert float(W[cross].abs().mean()) < 0.05 * float(W.diagonal().abs().mean())


def test_zca_on_a_device_in_blocks_equals_the_one_piece_fit(images, monkeypatch):
    """The device path (blocks of rows sent to ``device``: the mean, then the centred scatter;
    whitening block by block) gives the one-piece float64 fit to rounding; run here with
    device="cpu" and blocks of 700 rows, so the blocks and their seams are exercised."""
    import structlearn.data.whiten as whiten

    m = make_mosaics(images, (2, 2), (6, 6), 3000, torch.Generator().manual_seed(1), remove_mean="none")
    X = m.x.reshape(3000, -1)  # float32, as prepare() has it
    one = ZCA(X.shape[1], floor=1e-2).fit(X)
    monkeypatch.setattr(whiten, "DEVICE_ROWS", 700)
    blocks = ZCA(X.shape[1], floor=1e-2).fit(X, device="cpu")
    torch.testing.assert_close(blocks.mean, one.mean, atol=1e-12, rtol=0)
    torch.testing.assert_close(blocks.matrix, one.matrix, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(blocks(X, device="cpu"), one(X), atol=1e-5, rtol=1e-5)
    assert blocks(X, device="cpu").dtype == torch.float32
    with pytest.raises(ValueError, match="at least 2 samples"):
        ZCA(X.shape[1]).fit(X[:1], device="cpu")


def test_prepare_whitens_on_the_accelerator_only_for_large_inputs(monkeypatch):
    """prepare(device=cuda) sends ZCA to the device from DEVICE_MIN_DIM inputs on, and not on
    the CPU or below it (the fit is recorded, and run on the CPU here)."""
    import structlearn.data.prepare as prep
    from structlearn.config import load_config

    seen = []
    fit, forward = ZCA.fit, ZCA.forward
    monkeypatch.setattr(ZCA, "fit", lambda self, x, device=None: seen.append(("fit", device)) or fit(self, x))
    monkeypatch.setattr(ZCA, "forward", lambda self, x, device=None: seen.append(("apply", device)) or forward(self, x))
    cfg = load_config(None, ["data.n_train=800", "data.n_test=100"]).data  # the default mosaics
    base = prep.prepare(cfg, 0)
    d = base.train.shape[1]
    for device, min_dim, want in [("cuda", d, "cuda"), ("cuda", d + 1, None), ("cpu", d, None)]:
        seen.clear()
        monkeypatch.setattr(prep, "DEVICE_MIN_DIM", min_dim)
        got = prep.prepare(cfg, 0, device)
        assert seen == [("fit", want), ("apply", want), ("apply", want)], (device, min_dim)
        assert torch.equal(got.train, base.train)


def test_one_over_f_filter_shape_and_flattening():
    R = one_over_f_filter((64, 64), f0=0.39 * 64)
    assert R[0, 0] == 0  # DC removed
    f = np.sqrt(np.fft.fftfreq(64)[:, None] ** 2 + np.fft.fftfreq(64)[None, :] ** 2) * 64
    np.testing.assert_allclose(R, f * np.exp(-(f / (0.39 * 64)) ** 4))
    # a 1/f amplitude spectrum becomes flat at low frequencies
    rng = np.random.default_rng(0)
    spec = (rng.standard_normal((128, 128)) + 1j * rng.standard_normal((128, 128)))
    fr = np.sqrt(np.fft.fftfreq(128)[:, None] ** 2 + np.fft.fftfreq(128)[None, :] ** 2) * 128
    img = np.real(np.fft.ifft2(spec / np.maximum(fr, 1)))
    w = whiten_one_over_f(img, 0.39)
    P = np.abs(np.fft.fft2(w)) ** 2
    low = (fr > 2) & (fr < 8)
    mid = (fr > 8) & (fr < 20)
    assert 0.5 < P[low].mean() / P[mid].mean() < 2.0
    assert abs(w.std() - 1) < 1e-5
