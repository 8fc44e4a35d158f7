"""Image sources: the bundled scikit-image photographs, or a user folder.

Every image becomes a float32 array in ``[0, 1]``: grayscale ``(H, W)`` by default, RGB
through the ITU-R BT.709 luminance of :func:`skimage.color.rgb2gray`; colour ``(3, H, W)``
(channels first) with ``color=True``, where a grayscale image is refused (it would add only
achromatic samples; :data:`BUNDLED_COLOR` are the bundled RGB photographs). RGBA is
composited on white first (a float RGBA outside ``[0, 1]`` is rescaled before compositing:
colour by its range, alpha by its maximum), 8- and 16-bit integers scaled by their maximum.
Boolean, non-finite, constant and nearly binary images (fewer than ``MIN_LEVELS`` distinct
levels) are refused with an error that names the image; a file that does not decode is "not
an image file".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# Bundled with scikit-image (no download). Natural photographs and textures only:
# hubble_deep_field, retina and immunohistochemistry are mostly flat background.
BUNDLED_DEFAULT: tuple[str, ...] = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee",
    "coins", "grass", "gravel", "moon", "rocket",
)
BUNDLED_ALL: tuple[str, ...] = BUNDLED_DEFAULT + ("hubble_deep_field", "immunohistochemistry", "retina")
BUNDLED_COLOR: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket")  # the RGB natural photographs
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MIN_LEVELS = 16  # distinct grey levels a natural image has at least


def _as_float(img: np.ndarray, name: str) -> np.ndarray:
    """Validated float64 ``(H, W)`` or ``(H, W, 3)``: RGBA composited on white, integers scaled."""
    from skimage.color import rgba2rgb

    img = np.asarray(img)
    if img.dtype == bool:
        raise ValueError(f"{name}: boolean (binary) images are not natural images; allowed dtypes: uint8, uint16, float")
    if img.ndim == 3 and img.shape[-1] == 4:
        rgba = img.astype(np.float64) / np.iinfo(img.dtype).max if img.dtype.kind == "u" else img.astype(np.float64)
        if not np.isfinite(rgba).all():
            raise ValueError(f"{name}: contains NaN or Inf pixels; allowed: finite values")
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        if rgb.min() < 0 or rgb.max() > 1:  # rescale before compositing (clipping would flatten it)
            rgb = (rgb - rgb.min()) / max(float(rgb.max() - rgb.min()), 1e-12)
        if alpha.min() < 0 or alpha.max() > 1:
            alpha = np.clip(alpha, 0, None) / max(float(alpha.max()), 1e-12)
        img = rgba2rgb(np.concatenate([rgb, alpha], -1))
    elif img.dtype.kind == "u":
        img = img.astype(np.float64) / np.iinfo(img.dtype).max
    elif img.dtype.kind == "i":
        raise ValueError(f"{name}: signed integer images are not supported; allowed dtypes: uint8, uint16, float")
    img = np.asarray(img, dtype=np.float64)
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3)):
        raise ValueError(f"{name}: shape {img.shape} is not an image; allowed: (H, W), (H, W, 3), (H, W, 4)")
    return img


def _finish(img: np.ndarray, name: str) -> np.ndarray:
    """Finite, not constant, rescaled to [0, 1] when outside it (all channels together), float32,
    at least ``MIN_LEVELS`` distinct values."""
    if not np.isfinite(img).all():
        raise ValueError(f"{name}: contains NaN or Inf pixels; allowed: finite values")
    lo, hi = float(img.min()), float(img.max())
    if hi - lo <= 1e-6:
        raise ValueError(f"{name}: constant image (all pixels {lo:.3g}); a natural image must vary")
    if lo < 0 or hi > 1:  # floats outside [0, 1]: rescale to [0, 1]
        img = (img - lo) / (hi - lo)
    out = img.astype(np.float32)
    levels = np.unique(out).size
    if levels < MIN_LEVELS:
        raise ValueError(f"{name}: only {levels} distinct grey levels; allowed: at least {MIN_LEVELS} "
                         "(a natural photograph, not a binary or posterised image)")
    return out


def to_gray_float(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert one image to float32 grayscale ``(H, W)`` in [0, 1]; validate it."""
    from skimage.color import rgb2gray

    img = _as_float(img, name)
    return _finish(rgb2gray(img) if img.ndim == 3 else img, name)


def to_rgb_float(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert one RGB(A) image to float32 ``(3, H, W)`` in [0, 1] (channels first); validate it."""
    img = _as_float(img, name)
    if img.ndim != 3:
        raise ValueError(f"{name}: a grayscale image in a colour run (data.color: true); allowed: RGB or RGBA images "
                         f"(bundled: {', '.join(BUNDLED_COLOR)})")
    return np.ascontiguousarray(_finish(img, name).transpose(2, 0, 1))


def _convert(img: np.ndarray, name: str, color: bool) -> np.ndarray:
    return to_rgb_float(img, name) if color else to_gray_float(img, name)


def load_bundled(names: tuple[str, ...] | list[str] = BUNDLED_DEFAULT, color: bool = False) -> list[np.ndarray]:
    """The named ``skimage.data`` images as float grayscale ``(H, W)`` (or colour ``(3, H, W)``) arrays."""
    import skimage.data

    if not names:
        raise ValueError(f"no bundled image names given; allowed: {', '.join(BUNDLED_ALL)}")
    out = []
    for name in names:
        if name not in BUNDLED_ALL:
            raise ValueError(f"unknown bundled image {name!r}; allowed (no download): {', '.join(BUNDLED_ALL)}")
        out.append(_convert(getattr(skimage.data, name)(), name, color))
    return out


def load_folder(folder: str | Path, color: bool = False) -> list[np.ndarray]:
    """All PNG/JPEG/TIFF files below ``folder`` (recursive, sorted), as float grayscale (or colour)."""
    from skimage.io import imread

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder {str(folder)!r} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder {str(folder)!r} holds no images; allowed suffixes: {', '.join(IMAGE_SUFFIXES)}")
    out = []
    for p in files:
        try:
            img = imread(p)
        except Exception as e:  # any decoder error: name the file, not the decoder's plugin advice
            raise ValueError(f"{str(p)!r} is not an image file: it does not decode as "
                             f"{'/'.join(s[1:].upper() for s in IMAGE_SUFFIXES[::2])} ({type(e).__name__})") from None
        out.append(_convert(img, str(p), color))
    return out


def load_images(source: str = "bundled", names: tuple[str, ...] | list[str] = BUNDLED_DEFAULT,
                color: bool = False) -> list[np.ndarray]:
    """``source == 'bundled'``: the named scikit-image images; otherwise a folder path."""
    return load_bundled(names, color) if source == "bundled" else load_folder(source, color)
