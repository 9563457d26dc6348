"""Encoders that follow a space's recipe (``recommendations.recipes``) on top of a torch backbone."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from recommendations import colour
from recommendations.recipes import (
    ADAPTED,
    check_descriptor_layout,
    combine,
    descriptor_dimensions,
    recipe_dimensions,
    recipe_kind,
)

# --- descriptors from a preprocessed batch ---------------------------------------------------------------


def batch_pixels(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo an encoder's normalisation: NCHW float batch -> (n, side, side, 3) float RGB in 0..255.

    Area-downsampled to about ``colour.SIDE`` first: the descriptor needs no more, and it stays cheap. The
    arithmetic is numpy's: in torch each small op wakes the intra-op thread pool, which cost more than the
    arithmetic itself beside a model that keeps both cores busy (bench/embed.py).
    """
    array = batch.detach().float().cpu().numpy()
    n, channels, height, width = array.shape
    factor = max(1, round(width / colour.SIDE))
    if factor > 1:
        # The mean of each factor x factor block (what avg_pool2d computes), as factor² strided sums.
        rows, cols = height // factor * factor, width // factor * factor
        pooled = np.zeros((n, channels, rows // factor, cols // factor), dtype=np.float32)
        for dy in range(factor):
            for dx in range(factor):
                pooled += array[:, :, dy:rows:factor, dx:cols:factor]
        array = pooled
    area = factor * factor
    scale = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1) * (255.0 / area)
    offset = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1) * 255.0
    pixels = array * scale + offset
    np.clip(pixels, 0, 255, out=pixels)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def describe_batch(pixels: np.ndarray) -> np.ndarray:
    """(n, side, side, 3) RGB -> (n, colour + pattern dimensions) float32, each part a unit vector."""
    rows = []
    for image in pixels:
        described = colour.describe(image)
        rows.append(np.concatenate([described.colour, described.pattern]))
    return (
        np.stack(rows).astype(np.float32) if rows else np.zeros((0, colour.DESCRIPTOR_DIMENSIONS), np.float32)
    )


# --- encoders ----------------------------------------------------------------------------------------------


def load_state(data: bytes | memoryview | None) -> dict[str, Any]:
    if data is None:
        raise ValueError("This adapted space has no stored weights.")
    return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)


def dump_state(state: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    return buffer.getvalue()


class RecipeEncoder:
    """An encoder that follows a space's recipe on top of a torch backbone (``encoders.TorchEncoder``).

    ``embed_parts`` returns the vectors and the colour + pattern descriptors, which the embedding service
    stores beside them; ``embed`` and ``embed_tensors`` return the vectors alone (the Encoder interface).
    """

    def __init__(self, base: Any, recipe: Mapping[str, Any], state: Mapping[str, Any] | None = None) -> None:
        from recommendations.adaptation_model import AdaptedModel

        self.base = base
        self.recipe = dict(recipe)
        check_descriptor_layout(self.recipe)
        self.key = base.key
        self.weights_id = base.weights_id
        self.device = base.device
        self.dimensions = recipe_dimensions(base.key, recipe)
        self.descriptor_dimensions = descriptor_dimensions(recipe)
        self.adapted: AdaptedModel | None = None
        if recipe_kind(recipe) == ADAPTED:
            if state is None:
                raise ValueError("An adapted recipe needs its learned weights.")
            self.adapted = AdaptedModel.from_state(base, self.recipe, state)

    def __repr__(self) -> str:
        return f"<RecipeEncoder {recipe_kind(self.recipe)} on {self.base!r}>"

    def preprocess(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        return self.base.preprocess(image)

    def descriptors(self, batch: torch.Tensor) -> np.ndarray:
        mean, std = self.base.normalisation
        return describe_batch(batch_pixels(batch, mean, std))

    def embed_parts(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if batch.shape[0] == 0:
            return (
                np.empty((0, self.dimensions), np.float32),
                np.empty((0, self.descriptor_dimensions), np.float32),
            )
        descriptors = self.descriptors(batch)
        if self.adapted is not None:
            return self.adapted.embed(batch, descriptors), descriptors
        cnn = self.base.embed_tensors(batch)
        return combine(cnn, descriptors, self.recipe["weights"]), descriptors

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        return self.embed_parts(batch)[0]

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.empty((0, self.dimensions), dtype=np.float32)
        return self.embed_tensors(torch.stack([self.preprocess(image) for image in images]))
