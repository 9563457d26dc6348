"""Colour and pattern of the product in a photo: pure numpy, no torch, no Django.

Product photos mostly sit on a plain studio background (white, light grey, a flat colour). The background
is estimated from the photo's border; pixels close to it in CIELAB are left out, so a navy shirt on white
is described as navy, not as "mostly white". Photos without a plain border (a model outdoors, a lifestyle
shot, an ad creative) get centre-weighted pixels instead: the product is usually in the middle.

The colour descriptor is a soft CIELAB histogram of the product's pixels, square-rooted (Hellinger) and
L2-normalised, so a cosine between two descriptors compares colour distributions perceptually. The pattern
descriptor summarises the product's luminance gradients (orientation x scale energy, and how much of the
product is edges): checks, stripes and prints differ from plain fabric there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# Working resolution: colour and pattern need no more, and 128x128 keeps the descriptor cheap (about 1 ms).
SIDE = 128
BORDER = 4
# A pixel within this CIELAB distance of the background colour is background (JPEG noise and soft shadows
# on studio backdrops stay below it; a white shirt on white is the known hard case: see _mask).
BACKGROUND_DELTA_E = 12.0
# Border pixels this far from the border's median colour, in share, mean "no plain background".
PLAIN_BORDER_MIN_SHARE = 0.75
MIN_FOREGROUND_SHARE = 0.03

# Histogram bins: lightness, and the two opponent axes a (green-red) and b (blue-yellow).
L_BINS = 6
AB_BINS = 12
AB_RANGE = 80.0  # |a|, |b| beyond this (very saturated) fall into the outer bins
ORIENTATIONS = 8
PATTERN_DIMENSIONS = 2 * ORIENTATIONS + 2
COLOUR_DIMENSIONS = L_BINS * AB_BINS * AB_BINS
DESCRIPTOR_DIMENSIONS = COLOUR_DIMENSIONS + PATTERN_DIMENSIONS


@dataclass(frozen=True)
class ColourPattern:
    colour: np.ndarray  # (COLOUR_DIMENSIONS,) unit vector
    pattern: np.ndarray  # (PATTERN_DIMENSIONS,) unit vector
    foreground_share: float  # 0..1; 1.0 with no plain background (centre weighting instead)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 or float in 0..255 sRGB -> (..., 3) CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float32) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array(
        [
            [0.4124564, 0.2126729, 0.0193339],
            [0.3575761, 0.7151522, 0.1191920],
            [0.1804375, 0.0721750, 0.9503041],
        ],
        dtype=np.float32,
    )
    xyz /= np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


@functools.lru_cache(maxsize=8)
def _centre_weights(side: int) -> np.ndarray:
    axis = (np.arange(side, dtype=np.float32) + 0.5) / side - 0.5
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    return np.exp(-(xx**2 + yy**2) / (2 * 0.25**2)).astype(np.float32)


def foreground_weights(lab: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-pixel weights (side, side) of the product, and the foreground share (1.0: no plain border)."""
    side = lab.shape[0]
    border = np.concatenate(
        [
            lab[:BORDER].reshape(-1, 3),
            lab[-BORDER:].reshape(-1, 3),
            lab[:, :BORDER].reshape(-1, 3),
            lab[:, -BORDER:].reshape(-1, 3),
        ]
    )
    background = np.median(border, axis=0)
    border_close = np.linalg.norm(border - background, axis=1) < BACKGROUND_DELTA_E
    centre = _centre_weights(side)
    if border_close.mean() < PLAIN_BORDER_MIN_SHARE:
        return centre, 1.0
    difference = lab - background
    # Squared distances: the same test as the distance itself, without a square root per pixel.
    mask = np.einsum("hwc,hwc->hw", difference, difference) >= BACKGROUND_DELTA_E**2
    share = float(mask.mean())
    if share < MIN_FOREGROUND_SHARE:
        # Nothing stands out from the backdrop (a white shirt on white): describe the centre instead.
        return centre, 1.0
    # A little centre weighting on top keeps stray props at the edges from outweighing the product.
    return mask.astype(np.float32) * (0.5 + 0.5 * centre), share


def lab_histogram(lab: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Soft (bilinear on a and b) weighted CIELAB histogram, square-rooted and L2-normalised."""
    flat = lab.reshape(-1, 3)
    w = weights.reshape(-1)
    keep = w > 0
    flat, w = flat[keep], w[keep]
    l_pos = np.clip(flat[:, 0] / 100.0 * L_BINS - 0.5, 0, L_BINS - 1)
    ab_pos = np.clip((flat[:, 1:] + AB_RANGE) / (2 * AB_RANGE) * AB_BINS - 0.5, 0, AB_BINS - 1)
    histogram = np.zeros(L_BINS * AB_BINS * AB_BINS, dtype=np.float64)
    l0 = np.floor(l_pos).astype(np.int64)
    l1 = np.minimum(l0 + 1, L_BINS - 1)
    lw1 = l_pos - l0
    a0 = np.floor(ab_pos[:, 0]).astype(np.int64)
    b0 = np.floor(ab_pos[:, 1]).astype(np.int64)
    a1 = np.minimum(a0 + 1, AB_BINS - 1)
    b1 = np.minimum(b0 + 1, AB_BINS - 1)
    aw1 = ab_pos[:, 0] - a0
    bw1 = ab_pos[:, 1] - b0
    for li, lw in ((l0, 1 - lw1), (l1, lw1)):
        for ai, aw in ((a0, 1 - aw1), (a1, aw1)):
            for bi, bw in ((b0, 1 - bw1), (b1, bw1)):
                index = (li * AB_BINS + ai) * AB_BINS + bi
                histogram += np.bincount(index, weights=w * lw * aw * bw, minlength=histogram.size)
    vector = np.sqrt(histogram / max(histogram.sum(), 1e-12)).astype(np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def pattern_descriptor(lightness: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Gradient energy per orientation at two scales, plus edge density and contrast, L2-normalised."""
    parts = []
    total_weight = max(float(weights.sum()), 1e-6)
    image, w = np.ascontiguousarray(lightness, dtype=np.float32), weights
    edges = 0.0
    for scale in range(2):
        gy, gx = np.gradient(image)
        # sqrt and a sign fix-up rather than np.hypot and "% pi": the same values at a tenth of the cost
        # (both of those are slow paths in numpy), and this runs for every photo embedded.
        magnitude = np.sqrt(gx * gx + gy * gy)
        if scale == 0:
            edges = float(((magnitude > 4.0) * weights).sum() / total_weight)
        # Orientation modulo pi (a gradient and its opposite are one edge), in ORIENTATIONS bins.
        angle = np.arctan2(gy, gx) * np.float32(ORIENTATIONS / np.pi)
        np.add(angle, ORIENTATIONS, out=angle, where=angle < 0)
        bins = angle.astype(np.int64)
        bins[bins >= ORIENTATIONS] -= ORIENTATIONS  # exactly pi (pointing left) is orientation 0
        energy = np.bincount(bins.reshape(-1), weights=(magnitude * w).reshape(-1), minlength=ORIENTATIONS)
        parts.append(energy / max(float(w.sum()), 1e-6))
        # Half resolution: coarse stripes and checks show up here, fine texture at full resolution.
        image, w = _half(image), _half(w)
    mean = float((lightness * weights).sum() / total_weight)
    contrast = float(np.sqrt(((lightness - mean) ** 2 * weights).sum() / total_weight))
    vector = np.concatenate([*parts, [edges * 10.0, contrast / 10.0]]).astype(np.float32)
    vector = np.sqrt(np.maximum(vector, 0))
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _half(image: np.ndarray) -> np.ndarray:
    """The mean of each 2x2 block (an odd last row or column dropped), as four strided sums."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return (image[0:h:2, 0:w:2] + image[1:h:2, 0:w:2] + image[0:h:2, 1:w:2] + image[1:h:2, 1:w:2]) * 0.25


def describe(rgb: np.ndarray) -> ColourPattern:
    """Colour and pattern of an RGB image already resized to SIDE x SIDE (uint8, (SIDE, SIDE, 3))."""
    lab = srgb_to_lab(rgb)
    weights, share = foreground_weights(lab)
    return ColourPattern(
        colour=lab_histogram(lab, weights),
        pattern=pattern_descriptor(lab[..., 0], weights),
        foreground_share=share,
    )
