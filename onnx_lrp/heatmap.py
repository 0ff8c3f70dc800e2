"""Render relevance as a PNG heatmap with numpy and zlib only (no imaging library at run time)."""
import struct
import zlib

import numpy as np


def to_rgb(relevance, vmax=None):
    """[H, W] relevance -> [H, W, 3] uint8: red positive, blue negative, white zero (symmetric scale)."""
    r = np.asarray(relevance, dtype=np.float64)
    vmax = float(np.abs(r).max()) if vmax is None else float(vmax)
    t = np.clip(r / vmax, -1, 1) if vmax > 0 else np.zeros_like(r)
    pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], axis=-1)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def gray_to_rgb(image):
    a = np.asarray(image, dtype=np.float64)
    lo, hi = a.min(), a.max()
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.repeat((a * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def upscale(rgb, factor):
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def write_png(path, rgb):
    """Write an [H, W, 3] uint8 array as an 8-bit RGB PNG."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)
