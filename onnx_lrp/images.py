"""Pictures: read images into model inputs and draw relevance as heatmaps (Pillow; no hand-written codecs).

The heatmap is Zennit's `imgify(..., symmetric=True)` look: a diverging blue-white-red map centred on zero and
scaled by max|R|, so the colour of zero is always white and the sign is never hidden by the scale.
"""
import warnings
from contextlib import contextmanager

import numpy as np

from .errors import OnnxLrpError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _pil():
    from PIL import Image
    return Image


def to_rgb(relevance, vmax=None):
    """[H, W] relevance -> [H, W, 3] uint8: red positive, blue negative, white zero, symmetric around zero."""
    r = np.asarray(relevance, dtype=np.float64)
    vmax = float(np.abs(r).max()) if vmax is None else float(vmax)
    t = np.clip(r / vmax, -1, 1) if vmax > 0 else np.zeros_like(r)
    pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], axis=-1)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def gray_to_rgb(image):
    """[H, W] values -> [H, W, 3] uint8 grey, min to max."""
    a = np.asarray(image, dtype=np.float64)
    lo, hi = a.min(), a.max()
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.repeat((a * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def relevance_map(relevance):
    """One sample's relevance as a 2-D map: channels summed ([C, H, W] -> [H, W]), as Zennit's examples do."""
    r = np.asarray(relevance)
    if r.ndim == 3:
        return r.sum(axis=0)
    if r.ndim == 1:
        return r[None, :]
    return r.reshape(-1, r.shape[-1]) if r.ndim > 2 else r


def upscale(rgb, factor):
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def fit_scale(shape, minimum=256):
    """The integer factor that makes a small map at least `minimum` pixels on its longer side (pixels stay square)."""
    return max(1, -(-minimum // max(shape[:2])))


def overlay(image_rgb, relevance, alpha=0.6):
    """The heatmap blended over the image, with its weight growing with |R| (background shows where R is ~0)."""
    r = np.asarray(relevance, dtype=np.float64)
    vmax = np.abs(r).max()
    weight = (np.abs(r) / vmax if vmax > 0 else np.zeros_like(r))[..., None] * alpha
    blended = image_rgb.astype(np.float64) * (1 - weight) + to_rgb(r).astype(np.float64) * weight
    return blended.round().astype(np.uint8)


def save_png(path, rgb):
    _pil().fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(path)


def side_by_side(*images, gap=4):
    """[H, W, 3] images of one height next to each other, separated by white columns."""
    h = max(i.shape[0] for i in images)
    parts = []
    for k, image in enumerate(images):
        pad = np.full((h - image.shape[0], image.shape[1], 3), 255, np.uint8)
        parts.append(np.concatenate([image, pad]) if len(pad) else image)
        if k < len(images) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


@contextmanager
def _opened(path):
    """The image, opened lazily (header only); a file Pillow cannot read, or one that declares more pixels than
    Pillow's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS), is an OnnxLrpError naming it."""
    Image = _pil()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # above the limit, not only twice above it
        try:
            image = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise OnnxLrpError(f"refused: the image declares more pixels than Pillow decodes safely ({exc}). "
                               "Shrink it first (or raise PIL.Image.MAX_IMAGE_PIXELS from Python if it is "
                               "genuine).", path=path) from None
        except Exception as exc:  # UnidentifiedImageError, a truncated header, ...
            raise OnnxLrpError(f"cannot be read as an image ({type(exc).__name__}: {exc}). Is it truncated, or not "
                               "an image?", path=path) from None
    with image:
        yield image


def check_image(path):
    """(width, height) from the header, without decoding the pixels; refuses what load_image would."""
    with _opened(path) as image:
        return image.size


def load_image(path, size, channels=3, mean=None, std=None, scale=1 / 255, order="rgb", layout="nchw"):
    """An image file -> (model input [C, H, W] (or [H, W, C]) float32, the resized picture [H, W, 3] uint8).
    value = (pixel * scale - mean) / std per channel, in `order` (rgb or bgr); channels=1 reads it as grey."""
    Image = _pil()
    with _opened(path) as image:
        try:
            image = image.convert("L" if channels == 1 else "RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32)
        except Exception as exc:  # truncated or corrupt pixel data
            raise OnnxLrpError(f"cannot be decoded as an image ({type(exc).__name__}: {exc}). Is it truncated?",
                               path=path) from None
    picture = np.repeat(pixels[..., None], 3, axis=-1).astype(np.uint8) if channels == 1 else pixels.astype(np.uint8)
    x = pixels[..., None] if channels == 1 else pixels
    if order == "bgr" and channels == 3:
        x = x[..., ::-1]
    x = x * np.float32(scale)
    if mean is not None:
        x = x - np.asarray(mean, np.float32)
    if std is not None:
        x = x / np.asarray(std, np.float32)
    x = np.ascontiguousarray(x.transpose(2, 0, 1) if layout == "nchw" else x, dtype=np.float32)
    return x, picture
