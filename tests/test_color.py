"""Colour inputs (issue 11): RGB images as (3, H, W) samples, measured and shown in colour.

Every colour operation is checked against the grayscale one it generalises (the same draws,
channel by channel), against float64 references, and on planted structure.
"""
import json
import math

import numpy as np
import pytest
import torch

from structlearn.config import DataConfig, load_config
from structlearn.data.images import BUNDLED_COLOR, load_bundled, to_rgb_float
from structlearn.data.mosaics import make_mosaics
from structlearn.data.patches import sample_patches
from structlearn.data.prepare import prepare
from structlearn.data.whiten import whiten_one_over_f
from structlearn.structure.color import color_split, color_summary
from structlearn.structure.locality import (
    energy_radius,
    locality_summary,
    participation_ratio,
    pixel_field,
    single_tile,
    tile_purity,
)
from structlearn.viz.montage import filters_to_rgb


@pytest.fixture(scope="module")
def rgb():
    return load_bundled(BUNDLED_COLOR[:2], color=True)


def test_bundled_colour_images_are_channels_first_in_unit_range(rgb):
    import skimage.data

    for name, im in zip(BUNDLED_COLOR, rgb):
        raw = getattr(skimage.data, name)()
        assert im.dtype == np.float32 and im.shape == (3, *raw.shape[:2])
        np.testing.assert_allclose(im, raw.transpose(2, 0, 1) / 255.0, atol=1e-7)


def test_grayscale_image_in_a_colour_run_is_refused_by_name():
    with pytest.raises(ValueError, match=r"camera: a grayscale image in a colour run.*astronaut, chelsea"):
        load_bundled(("astronaut", "camera"), color=True)
    rgba = np.concatenate([np.random.default_rng(0).random((20, 20, 3)), np.full((20, 20, 1), 0.5)], -1)
    out = to_rgb_float(rgba)  # composited on white: c * a + (1 - a)
    np.testing.assert_allclose(out, (rgba[..., :3] * 0.5 + 0.5).transpose(2, 0, 1), atol=1e-6)


def test_colour_patches_are_the_grayscale_draws_channel_by_channel(rgb):
    """The same generator state draws the same images and corners for (C, H, W) as for (H, W)."""
    got = sample_patches(rgb, (7, 9), 300, torch.Generator().manual_seed(3))
    assert got.shape == (300, 3, 7, 9)
    for c in range(3):
        ref = sample_patches([im[c] for im in rgb], (7, 9), 300, torch.Generator().manual_seed(3))
        assert torch.equal(got[:, c], ref)
    with pytest.raises(ValueError, match="other channels than image 0"):
        sample_patches([rgb[0], rgb[1][0]], (4, 4), 5, torch.Generator())


def test_colour_mosaics_tile_channels_together_and_remove_each_channels_mean(rgb):
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    m = make_mosaics(rgb, (2, 3), (6, 5), 40, g())
    assert m.x.shape == (40, 3, 12, 15)
    for c in range(3):  # channel c of the colour mosaic is the grayscale mosaic of channel c
        ref = make_mosaics([im[c] for im in rgb], (2, 3), (6, 5), 40, g())
        assert torch.equal(m.x[:, c], ref.x)
        assert torch.equal(m.tile_map, ref.tile_map)
    tiles = m.x.reshape(40, 3, 2, 6, 3, 5)
    assert tiles.mean(dim=(3, 5)).abs().max() < 1e-6  # every tile's every channel is zero-mean


def test_one_over_f_whitens_each_channel_with_a_joint_scale(rgb):
    im = rgb[0][:, :128, :160]
    out = whiten_one_over_f(im, 0.39)
    per = np.stack([whiten_one_over_f(im[c], 0.39) for c in range(3)])  # each channel at unit variance
    ratio = out.astype(np.float64) / per
    ok = np.abs(per) > 1e-3
    for c in range(3):  # per channel: the same filtered image up to one positive scale
        r = ratio[c][ok[c]]
        assert np.ptp(r) < 1e-4 * abs(r.mean()) and r.mean() > 0
    assert abs(float(out.astype(np.float64).std()) - 1) < 1e-5


def test_prepare_colour_mosaics_and_patches():
    cfg = DataConfig(kind="mosaic", grid=(2, 2), tile=(6, 6), color=True, images=BUNDLED_COLOR, n_train=1500, n_test=50,
                     zca_floor=1e-7)
    cfg.validate()
    assert cfg.input_shape == (3, 12, 12)
    p = prepare(cfg, 0)
    assert p.input_shape == (3, 12, 12) and p.train.shape == (1500, 432) and p.tile_map.shape == (12, 12)
    # ZCA on all 3 x 144 values whitens the channels jointly: the covariance is the identity but
    # for the 4 tiles x 3 channels means removed per tile and channel (exactly 12 null directions)
    ev = torch.linalg.eigvalsh(torch.cov(p.train.double().T))
    assert int((ev < 1e-3).sum()) == 12 and float((ev[12:] - 1).abs().max()) < 1e-3  # float32 data
    assert torch.equal(prepare(cfg, 0).train, p.train)  # seeded
    pat = prepare(DataConfig(kind="patches", patch=(5, 5), color=True, images=BUNDLED_COLOR[:1], n_train=500,
                             n_test=10, whitening="one_over_f"), 0)
    assert pat.input_shape == (3, 5, 5) and pat.train.shape == (500, 75)


@pytest.mark.parametrize("change, msg", [
    ({"color": "yes"}, r"data.color='yes'; allowed: true, false"),
    ({"color": True, "kind": "hierarchical"},
     r"data.color=true with data.kind='hierarchical'; allowed: data.kind mosaic or patches"),
])
def test_colour_config_errors(change, msg):
    with pytest.raises(ValueError, match=msg):
        DataConfig(**change).validate()


def test_grey_config_resumes_old_checkpoints():
    """A grayscale run's compared config has no ``color`` key, as before colour existed."""
    from structlearn.train import experiment_config

    cfg = load_config(None)
    assert "color" not in experiment_config(cfg)
    from dataclasses import replace
    assert "color: true" in experiment_config(replace(cfg, data=replace(cfg.data, color=True)))


def test_pixel_field_keeps_every_pixels_energy_and_support():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
    W[:, :, :, 4:] = 0  # only the left half of every unit
    W[0, 1:] = 0  # unit 0 lives in one channel
    W[1, :, 0, 0] = torch.tensor([0.0, 1e-30, 0.0])  # a tiny weight still counts as support
    P = pixel_field(W)
    assert torch.allclose(P ** 2, (W ** 2).sum(1), rtol=1e-12, atol=0)
    assert bool(P[1, 0, 0] > 0)
    tm = torch.zeros(8, 8, dtype=torch.long)
    tm[:, 4:] = 1
    # a field in one channel measures exactly as that grayscale field
    for measure in (lambda f: tile_purity(f, tm), lambda f: single_tile(f, tm), participation_ratio, energy_radius):
        assert torch.equal(measure(W[:1]), measure(W[0, :1]))
    assert bool(single_tile(W, tm).all()) and torch.allclose(tile_purity(W, tm), torch.ones(6, dtype=W.dtype))
    s = locality_summary(W, tm)
    assert s["density"] == pytest.approx(float((W != 0).double().mean()))  # every weight, not every pixel
    assert s["single_tile_fraction"] == 1.0


def test_color_split_recovers_planted_separable_units_and_matches_float64_svd():
    g = torch.Generator().manual_seed(1)
    n, C, H, Wd = 12, 3, 6, 7
    axis = torch.randn(n, C, generator=g, dtype=torch.float64)
    axis = axis / axis.norm(dim=1, keepdim=True)
    axis = axis * torch.where(axis.sum(1) < 0, -1.0, 1.0)[:, None]
    spatial = torch.randn(n, H, Wd, generator=g, dtype=torch.float64)
    W = axis[:, :, None, None] * spatial[:, None]
    split = color_split(W)
    assert torch.allclose(split.axis, axis, atol=1e-12)
    assert torch.allclose(split.spatial, spatial, atol=1e-12)
    assert torch.allclose(split.separability, torch.ones(n, dtype=W.dtype), atol=1e-12)
    R = torch.randn(n, C, H, Wd, generator=g, dtype=torch.float64)  # unrelated channels
    sr = color_split(R)
    for i in range(n):  # parity with numpy's SVD
        s = np.linalg.svd(R[i].reshape(C, -1).numpy(), compute_uv=False)
        assert float(sr.separability[i]) == pytest.approx(s[0] ** 2 / (s ** 2).sum(), rel=1e-12)
    assert bool((sr.separability < 0.6).all()) and bool((sr.separability >= 1 / C).all())
    gray = color_split(spatial[:, None].expand(n, C, H, Wd) / math.sqrt(C))
    assert color_summary(gray)["achromatic_fraction"] == 1.0
    assert color_summary(gray)["angle_to_gray_median"] == pytest.approx(0, abs=1e-5)
    assert color_summary(split)["separability_median"] == pytest.approx(1.0)
    empty = color_split(torch.zeros(2, 3, 4, 4))
    assert bool(empty.separability.isnan().all()) and bool((empty.spatial == 0).all())


def test_colour_montage_shows_each_unit_in_its_own_colours():
    W = np.zeros((2, 3, 4, 4))
    W[0, 0, 1, 1] = 2.0  # a red positive peak: white-ish red
    W[0, 2, 2, 2] = -1.0  # half as strong, blue negative: yellowish
    img = filters_to_rgb(W, pad=1)
    assert img.shape == (1 + 1 * 5, 1 + 2 * 5, 3)
    np.testing.assert_array_equal(img[1 + 0, 1 + 0], [128, 128, 128])  # zero is mid-grey
    np.testing.assert_array_equal(img[1 + 1, 1 + 1], [255, 128, 128])
    np.testing.assert_array_equal(img[1 + 2, 1 + 2], [128, 128, round(0.25 * 255)])
    np.testing.assert_array_equal(img[0, 0], [64, 64, 64])  # separator
    gray = filters_to_rgb(W[:, 0])
    assert gray.shape == img.shape


def test_colour_discover_localises_filters_in_tiles_and_reads_them_out(tmp_path):
    """A small colour mosaic run, end to end: filters confined to one tile well above the
    shuffled null, the read-out's colour section and a colour montage on disk."""
    from structlearn.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("""
name: colour
seed: 0
data: {kind: mosaic, grid: [2, 2], tile: [6, 6], color: true, images: [astronaut, chelsea, coffee, rocket],
       n_train: 4000, n_test: 300, zca_floor: 0.1}
layers:
  - objective: sparse_coding
    n_units: 96
    params: {lam: 1.0, n_iter: 30, eval_iter: 60}
    steps: 150
    batch_size: 128
    prune: {threshold: 0.2, finetune_steps: 30, finetune_params: {lam: 0.3}}
eval_every: 50
wandb: disabled
threads: 1
""")
    assert main(["discover", str(cfg), "--out", str(tmp_path / "runs"), "--no-progress", "--no-html"]) == 0
    run = next((tmp_path / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["input_shape"] == [3, 12, 12]
    assert summary["tile_purity_mean"] > 0.9 > summary["tile_purity_shuffled_mean"] + 0.3
    from structlearn.structure.readout import format_structure_table

    structure = json.loads((run / "structure.json").read_text())
    assert "layer 0 colour: the kernels and Gabor fits are those of" in format_structure_table(structure)
    layer = structure["layers"][0]
    assert layer["input_shape"] == [3, 12, 12]
    col = layer["color"]
    assert col["locality"]["tile_purity_mean"] == pytest.approx(summary["tile_purity_mean"], rel=1e-5)
    # the colour numbers, recomputed from the saved weights with numpy's SVD, unit by unit
    saved = torch.load(run / "layer0.pt")
    W = (saved["weight"] * saved["mask"]).double().reshape(-1, 3, 144).numpy()
    sep, grey = [], []
    for w in W[np.abs(W).reshape(len(W), -1).max(1) > 0]:
        u, s, _ = np.linalg.svd(w, full_matrices=False)
        sep.append(s[0] ** 2 / (s ** 2).sum())
        grey.append(abs(u[:, 0].sum()) / math.sqrt(3) >= math.cos(math.radians(25)))
    lower_median = float(np.sort(sep)[(len(sep) - 1) // 2])  # torch.median's convention
    assert col["separability_median"] == pytest.approx(lower_median, rel=1e-4)
    assert col["achromatic_fraction"] == pytest.approx(float(np.mean(grey)), abs=1.5 / len(grey))
    assert "median_r2" in layer["gabor"]
    from structlearn.runs.readout import run_structure
    from structlearn.runs.run import Run

    loose = run_structure(Run(run), write=False, gabor_steps=20, conv_kwargs={"threshold": 0.6})["layers"][0]
    conv, cconv = loose["conv"], loose["color"]["conv"]  # a colour conv read-out on the held-out colour mosaics
    assert conv["channels"] == len(cconv["channel_colours"]) >= 1 and 0 < conv["coverage"] <= 1
    assert 0 < cconv["equivalence_error"] < 1 and conv["equivalence_error"] == cconv["equivalence_error"]
    # the hand-off: an RGB spec whose conv stage carries the colour kernels, a module that runs on RGB
    from structlearn.export.spec import build_module
    from structlearn.runs.export import spec_from_run

    spec, kernels = spec_from_run(Run(run), conv_kwargs={"threshold": 0.6}, sharing="strict")
    assert spec["input"] == {"channels": 3, "shape": [12, 12]} and spec["stages"][0]["type"] == "conv2d"
    K = kernels[0]
    assert K.shape == (conv["channels"], 3, conv["kernel_size"], conv["kernel_size"])
    sv = torch.linalg.svdvals(K.double().flatten(2))  # each channel's kernel is colour (x) space: rank 1
    assert float((sv[:, 1] / sv[:, 0]).max()) < 1e-5
    module = build_module(spec, kernels)
    x = Run(run).data.test[:20].reshape(-1, 3, 12, 12)
    torch.testing.assert_close(module(x), torch.nn.functional.conv2d(x, K, stride=tuple(conv["stride"]),
                                                                     padding=tuple(conv["padding"])))
    # the default hand-off: every unit as one of C colour kernels (C, 3, k, k), fitted to the whole
    # colour fields; the module's responses are W_hat x, as far from the dense W x on held-out
    # colour mosaics as the stage's recorded response error says
    spec, kernels = spec_from_run(Run(run))
    st = spec["stages"][0]
    sh = structure["layers"][0]["sharing"]
    assert st["type"] == "shared_conv" and st["units"] == 96 and st["evidence"]["coverage"] == 1.0
    assert kernels[0]["kernels"].shape == (sh["channels"], 3, sh["kernel_size"], sh["kernel_size"])
    x = Run(run).data.test[:300].double().reshape(-1, 3, 12, 12)
    dense = x.flatten(1) @ Run(run).weights(0).double().T
    got = build_module(spec, kernels).double()(x).detach()
    assert float((got - dense).norm() / dense.norm()) == pytest.approx(st["evidence"]["response_error"], rel=1e-5)
    assert 0 < sh["weight_error"] < 1 and 0 < sh["response_error"] < 1
    from skimage.io import imread
    png = imread(run / "filters_after_prune.png")
    assert png.ndim == 3 and np.ptp(png[..., 0].astype(int) - png[..., 2].astype(int)) > 0  # not grey


def test_unit_table_of_colour_units():
    """The W&B / report unit table: tiles and radius of the pixel field, the Gabor fit of the
    dominant colour component, the density of every weight."""
    from structlearn.structure.units import unit_numbers

    g = torch.Generator().manual_seed(2)
    spatial = torch.zeros(5, 12, 12)
    spatial[:, 2:8, 3:9] = torch.randn(5, 6, 6, generator=g)
    axis = torch.tensor([0.6, 0.0, 0.8])  # sum > 0: the split keeps this sign
    W = axis[None, :, None, None] * spatial[:, None]
    tm = torch.arange(4).reshape(2, 2).repeat_interleave(6, 0).repeat_interleave(6, 1)
    col = unit_numbers(W, tm, gabor_steps=20, gabor_starts=1)
    ref = unit_numbers(spatial, tm, gabor_steps=20, gabor_starts=1)
    for c in ("dominant_tile", "tile_purity", "participation_ratio", "radius90", "gabor_r2", "gabor_frequency"):
        np.testing.assert_allclose(col[c], ref[c], rtol=1e-3, atol=1e-6, err_msg=c)  # the fit from an SVD-rounded start
    np.testing.assert_allclose(col["density"], ref["density"] * 2 / 3)  # the green channel is empty


def test_the_british_spelling_points_to_the_key():
    with pytest.raises(ValueError, match=r"\['colour'\] in data; allowed: .*\(did you mean 'color'\?\)"):
        load_config(None, ["data.colour=true"])
    with pytest.raises(ValueError) as e:
        load_config(None, ["data.nonsense=true"])
    assert "did you mean" not in str(e.value)


def test_colour_convolution_of_a_planted_colour_conv_layer():
    """Rows of a known Conv2d(3, C, k) whose channel kernels are colour (x) space, each channel its
    own colour (grey, red-green, blue-yellow, ...): the spatial read-out of the dominant components
    plus :func:`color_conv` give back each channel's colour, and the colour conv reproduces the
    dense responses on real colour patches (equivalence error ~ 0); giving every unit of a channel
    another colour breaks it."""
    from test_structure_readout import planted_conv

    from structlearn.structure.color import color_conv, color_equivalence_error
    from structlearn.structure.conv import conv_from_filters

    C = 4
    kernels, _, clean, where, _ = planted_conv(channels=C, k=5, stride=2, size=15, noise=0.0, dtype=torch.float64)
    colours = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [-0.5, -0.5, 1.0], [1.0, 0.2, 0.0]], dtype=torch.float64)
    colours = colours / colours.norm(dim=1, keepdim=True)
    W = colours[where[:, 0]][:, :, None, None] * clean[:, None]  # (n, 3, 15, 15), colour-separable
    split = color_split(W)
    assert torch.allclose(split.separability, torch.ones_like(split.separability), atol=1e-10)
    ro = conv_from_filters(split.spatial)
    assert bool(ro.covered.all()) and ro.channels == C
    cc = color_conv(ro, split)
    found = cc.colour.abs() @ colours.abs().T  # |cos| between found and planted colours, (C, C)
    assert bool((found.max(1).values > 1 - 1e-8).all())
    assert torch.allclose(cc.coherence, torch.ones_like(cc.coherence), atol=1e-8)
    x = torch.as_tensor(sample_patches(load_bundled(BUNDLED_COLOR[:2], color=True), (15, 15), 200,
                                       torch.Generator().manual_seed(0))).double()
    assert float(color_equivalence_error(W, ro, cc, x)) < 1e-8
    mixed = W.clone()
    odd = where[:, 0] == 0  # the grey channel's units take random colours
    rand = torch.randn(int(odd.sum()), 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mixed[odd] = (rand / rand.norm(dim=1, keepdim=True))[:, :, None, None] * clean[odd][:, None]
    split2 = color_split(mixed)
    ro2 = conv_from_filters(split2.spatial)
    assert float(color_equivalence_error(mixed, ro2, color_conv(ro2, split2), x)) > 0.1


def test_rgb_spec_takes_colour_kernels_and_names_a_wrong_shape():
    from structlearn.export.spec import build_module, make_spec

    stage = {"type": "conv2d", "out_channels": 4, "kernel_size": [3, 3], "stride": [1, 1], "padding": [0, 0]}
    spec = make_spec((3, 8, 8), [stage])
    assert spec["input"] == {"channels": 3, "shape": [8, 8]}
    K = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(build_module(spec, [K])(x), torch.nn.functional.conv2d(x, K))
    with pytest.raises(ValueError, match=r"kernels shape \(4, 3, 3\) does not match \(4, 3, 3, 3\) on 3 input channel"):
        build_module(spec, [K[:, 0]])
    with pytest.raises(ValueError, match=r"input_shape=\(2, 3, 8, 8\); allowed: \(H, W\) or \(C, H, W\)"):
        make_spec((2, 3, 8, 8), [stage])
    assert make_spec((8, 8), [stage])["input"]["channels"] == 1  # grayscale unchanged
    from structlearn.export.model import DiscoveredNet

    net = DiscoveredNet(spec, [K], num_classes=2)  # in_chans defaults to the spec's 3
    assert net.pretrained_cfg["input_size"] == (3, 8, 8) and net(x).shape == (5, 2)
    with pytest.raises(ValueError, match=r"in_chans=1; allowed: 3 \(the spec's input channels\)"):
        DiscoveredNet(spec, [K], in_chans=1)
