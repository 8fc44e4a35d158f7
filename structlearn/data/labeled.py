"""Labelled image sets for linear probes: offline bundled-image identity, class folders, CIFAR-10.

Every loader returns a :class:`LabeledSplit` of two :class:`LabeledSet` (``x: (n, H, W)``
float32 grayscale in [0, 1], ``y: (n,)`` long, ``classes``):

- :func:`bundled_identity`: which scikit-image bundled photograph a patch comes from (a
  texture/scene task that needs no download; ``color=True``: RGB patches ``(n, 3, H, W)`` of
  the colour ones). Train patches are cut from the top ``1 - test_fraction`` of every image
  and test patches from the bottom ``test_fraction``, so no test pixel was ever seen in
  training (overlapping random patches would leak). Classes are balanced.
- :func:`load_class_folder`: ``root/<class>/*.png|jpg|tif``, one sub-folder per class
  (sorted names = class order); a stratified random split from ``generator``.
- :func:`load_cifar10`: the standard python version (``data_batch_1..5``, ``test_batch``,
  ``batches.meta``: pickled dicts with ``data`` (n, 3072) uint8 R, G, B planes of 32 x 32 in
  row-major order and ``labels``). Pickles are read with an unpickler that only admits the
  NumPy array reconstruction globals those files use, so a tampered file cannot run code.
  Colour is reduced with the ITU-R BT.709 luminance of ``skimage.color.rgb2gray``
  (0.2125 R + 0.7154 G + 0.0721 B) unless ``gray=False`` (then ``x: (n, 3, 32, 32)``).

:func:`load_digits` (scikit-learn's 8 x 8 digits, 10 classes) and :func:`load_lfw_faces`
(scikit-image's ``lfw_subset``: 100 faces and 100 non-face crops of 25 x 25) ship with the
stack: stratified random splits from ``generator``.

:func:`load_labeled` dispatches on ``source``: ``"bundled"``, ``"digits"``, ``"lfw"``, a CIFAR-10
folder (holding ``data_batch_*`` or ``cifar-10-batches-py``), or a class folder.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from structlearn.data.images import BUNDLED_ALL, BUNDLED_COLOR, BUNDLED_DEFAULT, IMAGE_SUFFIXES, load_bundled, to_gray_float
from structlearn.data.patches import sample_patches

BT709 = (0.2125, 0.7154, 0.0721)


@dataclass(frozen=True)
class LabeledSet:
    x: Tensor  # (n, H, W) float32 in [0, 1] (or (n, 3, H, W) for colour CIFAR)
    y: Tensor  # (n,) long, in 0..len(classes)-1
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} samples and y {self.y.shape[0]}; allowed: the same number")


@dataclass(frozen=True)
class LabeledSplit:
    train: LabeledSet
    test: LabeledSet
    source: str


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r} out of range; allowed: (0, 1)")


def identity_task(images: Sequence[np.ndarray], names: Sequence[str], patch: tuple[int, int] = (16, 16),
                  n_train_per_class: int = 300, n_test_per_class: int = 100, test_fraction: float = 0.25,
                  generator: torch.Generator | None = None, source: str = "images") -> LabeledSplit:
    """Patches labelled by the image they come from; train patches from the top
    ``1 - test_fraction`` of each ``(H, W)`` image, test patches from the rest (disjoint).
    Colour images ``(C, H, W)`` give ``(n, C, h, w)`` patches, split by rows the same way (the
    same draws as grayscale: one image and corner per patch)."""
    _check_fraction(test_fraction)
    if min(n_train_per_class, n_test_per_class) < 1:
        raise ValueError(f"n_train_per_class={n_train_per_class}, n_test_per_class={n_test_per_class}; allowed: >= 1")
    names = tuple(names)
    if len(names) < 2 or len(names) != len(images):
        raise ValueError(f"an identity task needs at least 2 images, one name each; got {len(images)} images, "
                         f"{len(names)} names")
    g = torch.Generator().manual_seed(0) if generator is None else generator
    h, w = int(patch[0]), int(patch[1])
    parts: dict[str, list[Tensor]] = {"train": [], "test": []}
    for img, name in zip(images, names):
        cut = img.shape[-2] - int(round(test_fraction * img.shape[-2]))
        regions = {"train": img[..., :cut, :], "test": img[..., cut:, :]}
        for split, n in (("train", n_train_per_class), ("test", n_test_per_class)):
            region = regions[split]
            if region.shape[-2] < h or region.shape[-1] < w:
                raise ValueError(f"image {name!r}: its {split} region {tuple(region.shape)} is smaller than the patch "
                                 f"{h}x{w}; allowed: a smaller patch or another test_fraction")
            parts[split].append(sample_patches([region], (h, w), n, g))
    y = {s: torch.arange(len(names)).repeat_interleave(n) for s, n in (("train", n_train_per_class),
                                                                          ("test", n_test_per_class))}
    return LabeledSplit(LabeledSet(torch.cat(parts["train"]), y["train"], names),
                        LabeledSet(torch.cat(parts["test"]), y["test"], names), source)


def bundled_identity(names: Sequence[str] | None = None, patch: tuple[int, int] = (16, 16),
                     n_train_per_class: int = 300, n_test_per_class: int = 100, test_fraction: float = 0.25,
                     generator: torch.Generator | None = None, color: bool = False) -> LabeledSplit:
    """Which bundled scikit-image photograph a patch comes from (no download). ``color``: RGB
    patches ``(n, 3, h, w)`` of the colour photographs (default names: ``BUNDLED_COLOR``)."""
    names = tuple(names) if names is not None else (BUNDLED_COLOR if color else BUNDLED_DEFAULT)
    if len(names) < 2:
        allowed = BUNDLED_COLOR if color else BUNDLED_ALL
        raise ValueError(f"images={list(names)}: an identity task needs at least 2 images; allowed: {', '.join(allowed)}")
    return identity_task(load_bundled(names, color=color), names, patch, n_train_per_class, n_test_per_class,
                         test_fraction, generator, "bundled")


def stratified_split(x: Tensor, y: Tensor, classes: tuple[str, ...], test_fraction: float,
                     generator: torch.Generator | None, source: str) -> LabeledSplit:
    """``round(test_fraction * n_c)`` random test samples per class (at least 1 when the class has 2 or more)."""
    _check_fraction(test_fraction)
    g = torch.Generator().manual_seed(0) if generator is None else generator
    test_idx = []
    for c in range(len(classes)):
        idx = (y == c).nonzero(as_tuple=True)[0]
        k = int(round(test_fraction * idx.numel()))
        k = max(k, 1) if idx.numel() >= 2 else 0
        test_idx.append(idx[torch.randperm(idx.numel(), generator=g)[:k]])
    is_test = torch.zeros(y.numel(), dtype=torch.bool)
    is_test[torch.cat(test_idx)] = True
    return LabeledSplit(LabeledSet(x[~is_test], y[~is_test], classes), LabeledSet(x[is_test], y[is_test], classes), source)


def load_digits(test_fraction: float = 0.25, generator: torch.Generator | None = None) -> LabeledSplit:
    """scikit-learn's digits: 1797 images of 8 x 8 in [0, 1] (values / 16), classes 0..9."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32) / 16.0
    return stratified_split(x, torch.as_tensor(d.target).long(), tuple(str(i) for i in range(10)), test_fraction,
                            generator, "digits")


def load_lfw_faces(test_fraction: float = 0.3, generator: torch.Generator | None = None) -> LabeledSplit:
    """scikit-image's ``lfw_subset``: 200 grayscale 25 x 25 crops, the first 100 faces (class 1),
    the last 100 not (class 0)."""
    from skimage.data import lfw_subset

    x = torch.as_tensor(np.asarray(lfw_subset(), dtype=np.float32))
    y = torch.cat([torch.ones(100), torch.zeros(x.shape[0] - 100)]).long()
    return stratified_split(x, y, ("non_face", "face"), test_fraction, generator, "lfw")


def load_class_folder(root: str | Path, size: tuple[int, int] | None = None, test_fraction: float = 0.2,
                      generator: torch.Generator | None = None) -> LabeledSplit:
    """``root/<class>/<image>``; images of different sizes need ``size = (H, W)`` (resized
    with anti-aliasing). Stratified split: ``round(test_fraction * n_c)`` test images per
    class (at least 1 when the class has 2 or more)."""
    from skimage.io import imread
    from skimage.transform import resize

    _check_fraction(test_fraction)
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"class folder {str(root)!r} does not exist or is not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise ValueError(f"{str(root)!r} has {len(class_dirs)} class sub-folder(s); "
                         "allowed: one sub-folder per class, at least 2")
    xs, ys = [], []
    for c, d in enumerate(class_dirs):
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {str(d)!r} holds no images; allowed suffixes: {', '.join(IMAGE_SUFFIXES)}")
        for f in files:
            try:
                raw = imread(f)
            except Exception as e:  # any decoder error: name the file
                raise ValueError(f"cannot read image file {str(f)!r}: {type(e).__name__}: {e}") from e
            img = to_gray_float(raw, str(f))
            if size is not None and img.shape != tuple(size):
                img = resize(img, tuple(size), anti_aliasing=True).astype(np.float32)
            xs.append(img)
            ys.append(c)
    shapes = sorted({im.shape for im in xs})
    if len(shapes) > 1:
        raise ValueError(f"images in {str(root)!r} have different sizes {shapes[:4]}; pass size=(H, W) to resize them")
    x, y = torch.as_tensor(np.stack(xs)), torch.tensor(ys)
    return stratified_split(x, y, tuple(d.name for d in class_dirs), test_fraction, generator, str(root))


# ----------------------------------------------------------------------------- CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """Admits only the globals a pickled dict of NumPy arrays needs."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
        ("__builtin__", "object"), ("builtins", "object"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch file")
        if module.startswith("numpy") and "multiarray" in module:
            try:
                from numpy._core import multiarray
            except ImportError:  # numpy < 2
                from numpy.core import multiarray  # type: ignore[no-redef]
            return getattr(multiarray, name)
        if module in ("copy_reg", "copyreg"):
            import copyreg

            return getattr(copyreg, name)
        if module in ("__builtin__", "builtins"):
            return object
        if module == "_codecs":  # bytes in protocol-2 pickles written by Python 3
            import codecs

            return codecs.encode
        return getattr(np, name)


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"{str(path)!r} is not a CIFAR-10 python batch file: {type(e).__name__}: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"{str(path)!r} is not a CIFAR-10 python batch file: it holds a {type(d).__name__}, not a dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _cifar_arrays(batch: dict, path: Path, gray: bool) -> tuple[Tensor, Tensor]:
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{str(path)!r} lacks 'data' or 'labels' (CIFAR-100 files use fine_labels; "
                         f"allowed: CIFAR-10 python batches)")
    data = np.asarray(batch["data"])
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise ValueError(f"{str(path)!r}: data has shape {data.shape} and dtype {data.dtype}; allowed: (n, 3072) uint8")
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError(f"{str(path)!r}: labels must be {data.shape[0]} integers in 0..9")
    rgb = data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0  # (n, 3, 32, 32)
    x = np.tensordot(np.asarray(BT709, dtype=np.float32), rgb, axes=([0], [1])) if gray else rgb  # (n, 32, 32)
    return torch.as_tensor(np.ascontiguousarray(x)), torch.as_tensor(labels)


def cifar_folder(root: str | Path) -> Path | None:
    root = Path(root)
    for cand in (root, root / "cifar-10-batches-py"):
        if (cand / "test_batch").is_file() and any(cand.glob("data_batch_*")):
            return cand
    return None


def load_cifar10(root: str | Path, gray: bool = True) -> LabeledSplit:
    """CIFAR-10 python batches under ``root`` (or ``root/cifar-10-batches-py``)."""
    folder = cifar_folder(root)
    if folder is None:
        raise ValueError(f"{str(root)!r} holds no CIFAR-10 python batches; allowed: a folder with data_batch_1..5 and "
                         f"test_batch (or its parent holding cifar-10-batches-py)")
    train = [_cifar_arrays(_read_batch(p), p, gray) for p in sorted(folder.glob("data_batch_*"))]
    test = _cifar_arrays(_read_batch(folder / "test_batch"), folder / "test_batch", gray)
    classes = tuple(str(i) for i in range(10))
    if (folder / "batches.meta").is_file():
        names = _read_batch(folder / "batches.meta").get("label_names")
        if names is not None and len(names) == 10:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return LabeledSplit(LabeledSet(torch.cat([t[0] for t in train]), torch.cat([t[1] for t in train]), classes),
                        LabeledSet(test[0], test[1], classes), str(folder))


def load_labeled(source: str = "bundled", **kwargs) -> LabeledSplit:
    """``"bundled"`` -> :func:`bundled_identity`; ``"digits"``, ``"lfw"``; a CIFAR-10 folder -> :func:`load_cifar10`;
    any other folder -> :func:`load_class_folder`. ``kwargs`` go to that loader."""
    if source == "bundled":
        return bundled_identity(**kwargs)
    if source in ("digits", "lfw"):
        return (load_digits if source == "digits" else load_lfw_faces)(**kwargs)
    path = Path(source)
    if not path.is_dir():
        raise ValueError(f"labelled source {source!r}; allowed: 'bundled', 'digits', 'lfw', a CIFAR-10 python folder, "
                         f"or a folder with one sub-folder per class")
    if cifar_folder(path) is not None:
        return load_cifar10(path, **kwargs)
    return load_class_folder(path, **kwargs)
