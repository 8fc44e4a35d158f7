"""Labelled data: bundled-image identity task (disjoint split), class folders, CIFAR-10 python batches."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from structlearn.data.labeled import (
    bundled_identity,
    identity_task,
    load_cifar10,
    load_class_folder,
    load_labeled,
)


def test_identity_task_split_is_spatially_disjoint():
    # pixel value = row index / H: every patch reveals the rows it was cut from
    H, W = 40, 30
    rows = np.repeat((np.arange(H, dtype=np.float32) / H)[:, None], W, 1)
    split = identity_task([rows, rows[::-1].copy()], ["a", "b"], patch=(4, 4), n_train_per_class=50,
                          n_test_per_class=20, test_fraction=0.25, generator=torch.Generator().manual_seed(0))
    cut = H - 10
    tr, te = split.train, split.test
    assert tr.x.shape == (100, 4, 4) and te.x.shape == (40, 4, 4)
    assert torch.equal(tr.y, torch.tensor([0] * 50 + [1] * 50)) and split.train.classes == ("a", "b")
    a_tr, a_te = tr.x[tr.y == 0], te.x[te.y == 0]
    assert float(a_tr.max()) <= (cut - 1) / H + 1e-7 and float(a_te.min()) >= cut / H - 1e-7
    b_tr, b_te = tr.x[tr.y == 1], te.x[te.y == 1]  # flipped image: the cut is measured on its own rows
    assert float(b_tr.min()) >= (H - cut) / H - 1e-7 and float(b_te.max()) <= (H - cut - 1) / H + 1e-7


def test_bundled_identity_is_seeded_and_balanced():
    a = bundled_identity(("camera", "grass", "brick"), (8, 8), 20, 10, generator=torch.Generator().manual_seed(3))
    b = bundled_identity(("camera", "grass", "brick"), (8, 8), 20, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    assert torch.bincount(a.test.y).tolist() == [10, 10, 10] and a.train.classes == ("camera", "grass", "brick")
    assert 0 <= float(a.train.x.min()) and float(a.train.x.max()) <= 1
    with pytest.raises(ValueError, match="at least 2"):
        bundled_identity(("camera",))
    with pytest.raises(ValueError, match="test_fraction"):
        bundled_identity(("camera", "grass"), test_fraction=1.0)
    with pytest.raises(ValueError, match="unknown bundled image"):
        bundled_identity(("camera", "eagle"))


def test_colour_identity_task_draws_as_grayscale_and_prepares_per_channel():
    """A colour identity task cuts each RGB patch where the grayscale task on any one channel
    cuts its patch (same image, same corner, same disjoint split); ``prepare_task`` keeps the
    channels, removes each channel's mean and whitens the ``3 H W`` values with the run's ZCA."""
    from structlearn.data.images import BUNDLED_COLOR, load_bundled
    from structlearn.data.whiten import ZCA
    from structlearn.supervised import prepare_task

    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    col = bundled_identity(patch=(6, 6), n_train_per_class=15, n_test_per_class=5, generator=g(), color=True)
    assert col.train.classes == BUNDLED_COLOR and col.train.x.shape == (60, 3, 6, 6) and col.test.x.shape == (20, 3, 6, 6)
    for c in range(3):
        grey = identity_task([im[c] for im in load_bundled(BUNDLED_COLOR, color=True)], BUNDLED_COLOR, (6, 6), 15, 5,
                             generator=g())
        assert torch.equal(col.train.x[:, c], grey.train.x) and torch.equal(col.test.x[:, c], grey.test.x)
    x = col.train.x - col.train.x.mean(dim=(-2, -1), keepdim=True)
    zca = ZCA(108, floor=0.1).fit(x.reshape(60, -1).double())
    task = prepare_task(col, "colour", (3, 6, 6), zca)
    assert task.x_train.shape == (60, 3, 6, 6) and task.classes == 4
    want = zca(x.reshape(60, -1).double()).float().reshape(60, 3, 6, 6)
    torch.testing.assert_close(task.x_train, want)
    raw = prepare_task(col, "colour", (3, 6, 6))
    assert float(raw.x_test.mean(dim=(-2, -1)).abs().max()) < 1e-6  # each channel's own mean removed
    with pytest.raises(ValueError, match=r"images of shape \(60, 3, 6, 6\) for input_shape \(6, 6\); allowed: \(n, H, W\)"):
        prepare_task(col, "colour", (6, 6))
    with pytest.raises(ValueError, match="at least 2 images; allowed: astronaut, chelsea"):
        bundled_identity(("rocket",), color=True)


def _png(path, arr):
    from skimage.io import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, arr, check_contrast=False)


def test_class_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        for i in range(5):
            _png(tmp_path / "set" / name / f"{i}.png", rng.integers(0, 256, (8, 6)).astype(np.uint8))
    split = load_class_folder(tmp_path / "set", generator=torch.Generator().manual_seed(0))
    assert split.train.classes == ("cats", "dogs")
    assert split.train.x.shape == (8, 8, 6) and split.test.x.shape == (2, 8, 6)
    assert torch.bincount(split.test.y).tolist() == [1, 1] and torch.bincount(split.train.y).tolist() == [4, 4]
    via = load_labeled(str(tmp_path / "set"), generator=torch.Generator().manual_seed(0))
    assert torch.equal(via.test.x, split.test.x)
    _png(tmp_path / "set" / "dogs" / "big.png", rng.integers(0, 256, (16, 12)).astype(np.uint8))
    with pytest.raises(ValueError, match="different sizes"):
        load_class_folder(tmp_path / "set")
    resized = load_class_folder(tmp_path / "set", size=(8, 6))
    assert resized.train.x.shape[1:] == (8, 6) and resized.train.x.shape[0] + resized.test.x.shape[0] == 11
    (tmp_path / "set" / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_class_folder(tmp_path / "set", size=(8, 6))
    with pytest.raises(ValueError, match="does not exist"):
        load_class_folder(tmp_path / "nope")


def _batch(n: int, seed: int) -> tuple[dict, np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data = rgb.transpose(0, 3, 1, 2).reshape(n, 3072)  # R plane, G plane, B plane, each row-major
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return {b"batch_label": b"training batch", b"labels": labels, b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}, rgb, labels


@pytest.fixture
def cifar(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rgbs, labels = [], []
    for i, name in enumerate(("data_batch_1", "data_batch_2", "test_batch")):
        d, rgb, lab = _batch(7 + i, i)
        (root / name).write_bytes(pickle.dumps(d, protocol=2))
        rgbs.append(rgb)
        labels.append(lab)
    meta = {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                   "horse", "ship", "truck")], b"num_vis": 3072}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return tmp_path, rgbs, labels


def test_cifar10_python_format(cifar):
    from skimage.color import rgb2gray

    parent, rgbs, labels = cifar
    split = load_cifar10(parent)  # the parent of cifar-10-batches-py works too
    assert split.train.x.shape == (15, 32, 32) and split.test.x.shape == (9, 32, 32)
    assert split.train.y.tolist() == labels[0] + labels[1] and split.test.y.tolist() == labels[2]
    assert split.train.classes[0] == "airplane" and split.train.classes[9] == "truck"
    want = rgb2gray(np.concatenate(rgbs[:2]).astype(np.float64) / 255)
    assert np.abs(split.train.x.numpy() - want).max() < 1e-5
    colour = load_cifar10(parent / "cifar-10-batches-py", gray=False)
    assert colour.test.x.shape == (9, 3, 32, 32)
    assert np.allclose(colour.test.x.numpy().transpose(0, 2, 3, 1), rgbs[2] / 255.0, atol=1e-6)
    assert load_labeled(str(parent)).train.x.shape == (15, 32, 32)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_cifar_loader_refuses_code_and_bad_files(cifar, tmp_path, monkeypatch):
    parent, _, _ = cifar
    root = parent / "cifar-10-batches-py"
    monkeypatch.chdir(tmp_path)
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match="not allowed"):
        load_cifar10(parent)
    assert not (tmp_path / "pwned").exists()
    d, _, _ = _batch(3, 9)
    d[b"data"] = d[b"data"][:, :100]
    (root / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(ValueError, match="3072"):
        load_cifar10(parent)
    (root / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10"):
        load_cifar10(parent)
    with pytest.raises(ValueError, match="no CIFAR-10"):
        load_cifar10(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="allowed: 'bundled'"):
        load_labeled("nowhere")


def test_random_net_study_runs_on_a_cifar_folder(cifar):
    from structlearn.depth.random_nets import RandNetConfig, run_random_net_study

    parent, _, labels = cifar
    r = run_random_net_study(RandNetConfig(source=str(parent), n_nets=3, widths=(8, 16), n_bootstrap=10))
    assert r["d_in"] == 1024 and r["n_train"] == 15 and r["n_test"] == 9 and len(r["nets"]) == 3
    assert all(0 <= n["accuracy"] <= 1 and np.isfinite(n["entropy"]) for n in r["nets"])
